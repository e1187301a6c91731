//! What a disk test writes where: sector contents that name their sector, and the
//! extents a test writes (including the disk's last sector), with the sectors around
//! them that must stay as they were.

/// Bytes per sector (the unit of virtio-blk requests).
pub const SECTOR_SIZE: usize = 512;

/// The extents below need at least this many sectors.
pub const MIN_CAPACITY: u64 = 256;

/// The first sector of the extent that a batch of reads goes over.
pub const BATCH_START: u64 = 64;
/// Sectors in that extent.
pub const BATCH_SECTORS: u64 = 32;

/// A run of sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First sector.
    pub start: u64,
    /// Number of sectors.
    pub count: u64,
}

impl Extent {
    /// One past the last sector.
    pub const fn end(&self) -> u64 {
        self.start + self.count
    }

    /// Whether `sector` lies in it.
    pub const fn contains(&self, sector: u64) -> bool {
        sector >= self.start && sector < self.end()
    }
}

/// The byte at `offset` of sector `sector` in the pattern of run `seed`: the first 8
/// bytes are the sector number (little-endian), so a sector written to the wrong
/// place is told apart, and the rest mix the sector, the offset and the seed.
pub const fn pattern_byte(seed: u8, sector: u64, offset: usize) -> u8 {
    if offset < 8 {
        return (sector >> (8 * offset)) as u8;
    }
    let x = sector.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (offset as u64).wrapping_mul(0x2545_f491);
    (x >> 29) as u8 ^ (offset as u8).wrapping_mul(7) ^ seed
}

/// Fills `buf` (whole sectors) with the pattern of the sectors from `sector` on.
pub fn fill(seed: u8, sector: u64, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(SECTOR_SIZE).enumerate() {
        for (offset, byte) in chunk.iter_mut().enumerate() {
            *byte = pattern_byte(seed, sector + i as u64, offset);
        }
    }
}

/// The first byte of `buf` (whole sectors, from `sector` on) that differs from the
/// pattern: its sector and offset, and the byte found.
pub fn first_mismatch(seed: u8, sector: u64, buf: &[u8]) -> Option<(u64, usize, u8)> {
    for (i, chunk) in buf.chunks(SECTOR_SIZE).enumerate() {
        let at = sector + i as u64;
        for (offset, &byte) in chunk.iter().enumerate() {
            if byte != pattern_byte(seed, at, offset) {
                return Some((at, offset, byte));
            }
        }
    }
    None
}

/// The extents a disk test of a disk of `capacity` sectors (at least
/// [`MIN_CAPACITY`]) writes: the first sector, a run of 8, the batch extent, 3
/// across the middle, 8 just before the end and the last sector. Disjoint, in order.
pub const fn extents(capacity: u64) -> [Extent; 6] {
    [
        Extent { start: 0, count: 1 },
        Extent { start: 7, count: 8 },
        Extent { start: BATCH_START, count: BATCH_SECTORS },
        Extent { start: capacity / 2 - 1, count: 3 },
        Extent { start: capacity - 9, count: 8 },
        Extent { start: capacity - 1, count: 1 },
    ]
}

/// Most guard sectors [`guards`] gives.
pub const MAX_GUARDS: usize = 12;

/// The sectors right before and after each extent that no extent holds: writes must
/// leave them as they were. Returns them and how many there are.
pub fn guards(capacity: u64) -> ([u64; MAX_GUARDS], usize) {
    let all = extents(capacity);
    let mut out = [0; MAX_GUARDS];
    let mut n = 0;
    for e in &all {
        let around = [e.start.checked_sub(1), Some(e.end()).filter(|&s| s < capacity)];
        for sector in around.into_iter().flatten() {
            if !all.iter().any(|x| x.contains(sector)) && !out[..n].contains(&sector) {
                out[n] = sector;
                n += 1;
            }
        }
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_carry_their_number_and_differ_by_seed() {
        let mut buf = [0u8; 2 * SECTOR_SIZE];
        fill(1, 0x1234, &mut buf);
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), 0x1234);
        assert_eq!(u64::from_le_bytes(buf[512..520].try_into().unwrap()), 0x1235);
        assert_eq!(first_mismatch(1, 0x1234, &buf), None);
        assert_eq!(first_mismatch(1, 0x1235, &buf).map(|m| m.0), Some(0x1235));
        let mut other = [0u8; 2 * SECTOR_SIZE];
        fill(2, 0x1234, &mut other);
        assert_ne!(buf[8..], other[8..]);
        buf[700] ^= 0xff;
        assert_eq!(first_mismatch(1, 0x1234, &buf), Some((0x1235, 188, buf[700])));
        // A zeroed sector is no pattern (a read that did nothing is caught).
        assert!(first_mismatch(1, 9, &[0; SECTOR_SIZE]).is_some());
    }

    #[test]
    fn extents_are_disjoint_in_order_and_reach_the_last_sector() {
        for capacity in [MIN_CAPACITY, 8192, 1 << 30] {
            let e = extents(capacity);
            assert!(e.windows(2).all(|w| w[0].end() <= w[1].start), "{e:?}");
            assert_eq!(e[5].end(), capacity);
            assert!(e[2].contains(BATCH_START) && e[2].contains(BATCH_START + BATCH_SECTORS - 1));
        }
    }

    #[test]
    fn guards_surround_the_extents_and_lie_outside_them() {
        let (guards, n) = guards(8192);
        assert_eq!(&guards[..n], &[1, 6, 15, 63, 96, 4094, 4098, 8182]);
        let (_, n) = super::guards(MIN_CAPACITY);
        assert!(n <= MAX_GUARDS);
    }
}
