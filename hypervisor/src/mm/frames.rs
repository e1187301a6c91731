//! Host RAM for guests: what is free, and handing it out in 2 MiB blocks.
//!
//! Free RAM is the DTB's RAM minus what is in use (the hypervisor image, the host
//! DTB, the boot bundle, RAM pinned by the configuration). Guest RAM is allocated
//! from it by a buddy allocator in 2 MiB units, as power-of-two chunks each aligned
//! to its size, so stage 2 maps it with 2 MiB blocks.

use alloc::vec::Vec;
use buddy_system_allocator::FrameAllocator;
use platform::bundle::MEMORY_GRANULE;
use platform::Region;

/// `ram` with every `reserved` range removed (each reserved range first widened to
/// whole 2 MiB blocks), in address order.
pub fn subtract(ram: &[Region], reserved: &[Region]) -> Vec<Region> {
    let mut free: Vec<Region> = ram.to_vec();
    for r in reserved {
        let start = r.base - r.base % MEMORY_GRANULE;
        let end = r.end().unwrap_or(u64::MAX).next_multiple_of(MEMORY_GRANULE);
        free = free
            .into_iter()
            .flat_map(|f| {
                let f_end = f.end().unwrap_or(u64::MAX);
                let below = (f.base < start).then(|| Region::new(f.base, start.min(f_end) - f.base));
                let above = (f_end > end).then(|| Region::new(end.max(f.base), f_end - end.max(f.base)));
                [below, above].into_iter().flatten()
            })
            .filter(|f| f.size > 0)
            .collect();
    }
    free.sort_by_key(|f| f.base);
    free
}

/// Hands out host RAM for guests.
pub struct RamAllocator {
    blocks: FrameAllocator<40>,
}

impl RamAllocator {
    /// An allocator over `free`; partial 2 MiB blocks at the edges are left out.
    pub fn new(free: &[Region]) -> Self {
        let mut blocks = FrameAllocator::new();
        for f in free {
            let start = f.base.div_ceil(MEMORY_GRANULE);
            let end = f.end().unwrap_or(u64::MAX) / MEMORY_GRANULE;
            if end > start {
                blocks.add_frame(start as usize, end as usize);
            }
        }
        Self { blocks }
    }

    /// `size` bytes (a multiple of 2 MiB) as `(physical address, length)` chunks,
    /// largest first, or `None` (with nothing taken) if there isn't enough.
    pub fn alloc(&mut self, size: u64) -> Option<Vec<(u64, u64)>> {
        let mut units = size / MEMORY_GRANULE;
        let mut chunks = Vec::new();
        while units > 0 {
            let chunk = 1u64 << (63 - units.leading_zeros());
            match self.blocks.alloc(chunk as usize) {
                Some(first) => chunks.push((first as u64 * MEMORY_GRANULE, chunk * MEMORY_GRANULE)),
                None => {
                    self.free(&chunks);
                    return None;
                }
            }
            units -= chunk;
        }
        Some(chunks)
    }

    /// Gives chunks from [`alloc`](Self::alloc) back.
    pub fn free(&mut self, chunks: &[(u64, u64)]) {
        for (pa, len) in chunks {
            self.blocks.dealloc((pa / MEMORY_GRANULE) as usize, (len / MEMORY_GRANULE) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn subtract_splits_and_widens_to_blocks() {
        let ram = [Region::new(0x4000_0000, 1024 * MIB)];
        let reserved = [Region::new(0x4020_0000, 5 * MIB), Region::new(0x4800_0100, 0x100)];
        assert_eq!(
            subtract(&ram, &reserved),
            [
                Region::new(0x4000_0000, 2 * MIB),
                Region::new(0x4080_0000, 0x4800_0000 - 0x4080_0000),
                Region::new(0x4820_0000, 0x8000_0000 - 0x4820_0000),
            ]
        );
    }

    #[test]
    fn subtract_everything_leaves_nothing() {
        let ram = [Region::new(0x4000_0000, 64 * MIB)];
        assert!(subtract(&ram, &[Region::new(0x3000_0000, 0x2000_0000)]).is_empty());
    }

    #[test]
    fn alloc_gives_aligned_power_of_two_chunks() {
        let mut a = RamAllocator::new(&[Region::new(0x4000_0000, 1024 * MIB)]);
        let chunks = a.alloc(96 * MIB).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].1, 64 * MIB);
        assert_eq!(chunks[1].1, 32 * MIB);
        for (pa, len) in &chunks {
            assert_eq!(pa % len, 0);
        }
        assert!(a.alloc(2048 * MIB).is_none());
        // What a failed allocation took is given back: all the rest is still there.
        assert!(a.alloc(512 * MIB).is_some());
    }
}
