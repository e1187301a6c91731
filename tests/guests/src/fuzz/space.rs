//! Where the fuzz guest lets its devices read and write.
//!
//! Each device gets an area of the RAM the guest does not otherwise use (above its
//! image, away from the DTB and the initrd), laid out the same way
//! ([`DeviceArea`]): a slot for the descriptor table, two for indirect tables, one
//! each for the available and the used ring, and the data area the buffers come
//! from. The first virtio-blk device also owns a scratch page pair at each end of
//! RAM, for rings and buffers at (and across) the first and last bytes of RAM.
//!
//! Every in-RAM address the guest hands a device comes from here, so nothing a
//! device writes can land on the guest's code, data or stack. Everything else it
//! hands out lies outside RAM ([`Space::outside`]): zero, the devices' own registers,
//! just below and just past RAM, the top of the address space.

use platform::{qemu_virt, Region};

use crate::dtb::MAX_MEMORY_REGIONS;
use crate::prng::Rng;

/// Most devices the fuzzer drives.
pub const MAX_DEVICES: usize = 4;
/// Device areas start on this boundary.
pub const AREA_ALIGN: u64 = 0x1_0000;
/// Largest queue the areas have room for: its descriptor table fills the table slot.
pub const MAX_QUEUE: u16 = 256;
/// Offset of the descriptor table slot (16 bytes x [`MAX_QUEUE`]).
pub const DESC_OFFSET: u64 = 0x0000;
/// Offset of the two indirect-table slots, [`INDIRECT_SLOT`] bytes each.
pub const INDIRECT_OFFSET: u64 = 0x1000;
/// Bytes of one indirect-table slot: a table of [`MAX_QUEUE`] entries.
pub const INDIRECT_SLOT: u64 = 0x1000;
/// Offset of the available ring slot (6 + 2 x [`MAX_QUEUE`] bytes).
pub const AVAIL_OFFSET: u64 = 0x3000;
/// Offset of the used ring slot (6 + 8 x [`MAX_QUEUE`] bytes).
pub const USED_OFFSET: u64 = 0x3400;
/// Offset of the data area.
pub const DATA_OFFSET: u64 = 0x4000;
/// The longest ring area (a descriptor table of [`MAX_QUEUE`] entries): a ring address
/// handed out at least this far below an area's end keeps the whole ring inside.
pub const RING_SLACK: u64 = 16 * MAX_QUEUE as u64 + 16;
/// Bytes of each scratch area at the ends of RAM.
pub const SCRATCH: u64 = 0x2000;

const _: () = assert!(INDIRECT_OFFSET >= DESC_OFFSET + 16 * MAX_QUEUE as u64);
const _: () = assert!(AVAIL_OFFSET >= INDIRECT_OFFSET + 2 * INDIRECT_SLOT);
const _: () = assert!(USED_OFFSET >= AVAIL_OFFSET + 6 + 2 * MAX_QUEUE as u64 + 64);
const _: () = assert!(DATA_OFFSET >= USED_OFFSET + 6 + 8 * MAX_QUEUE as u64 + 64);
const _: () = assert!(SCRATCH > RING_SLACK);

/// What sits in a virtio-mmio slot, as far as the fuzzer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk (DeviceID 2).
    Blk,
    /// virtio-console (DeviceID 3).
    Console,
    /// Anything else.
    Other,
}

impl DeviceKind {
    /// The kind of DeviceID `id`.
    pub const fn from_id(id: u32) -> Self {
        match id {
            2 => Self::Blk,
            3 => Self::Console,
            _ => Self::Other,
        }
    }

    /// Bytes of its data area.
    pub const fn data_size(self) -> u64 {
        match self {
            Self::Blk => 0x1_0000,
            Self::Console | Self::Other => 0x4000,
        }
    }

    /// Number of virtqueues the fuzzer drives.
    pub const fn queues(self) -> u32 {
        match self {
            Self::Blk => 1,
            Self::Console => 2,
            Self::Other => 0,
        }
    }
}

/// One device's area of RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceArea {
    /// Its first byte ([`AREA_ALIGN`] aligned).
    pub base: u64,
    /// Its size.
    pub size: u64,
}

impl DeviceArea {
    /// All of it.
    pub const fn region(&self) -> Region {
        Region::new(self.base, self.size)
    }

    /// The descriptor table slot.
    pub const fn desc(&self) -> Region {
        Region::new(self.base + DESC_OFFSET, 16 * MAX_QUEUE as u64)
    }

    /// Indirect-table slot `i` (0 or 1).
    pub const fn indirect(&self, i: usize) -> Region {
        Region::new(self.base + INDIRECT_OFFSET + i as u64 * INDIRECT_SLOT, INDIRECT_SLOT)
    }

    /// The available ring slot.
    pub const fn avail(&self) -> Region {
        Region::new(self.base + AVAIL_OFFSET, USED_OFFSET - AVAIL_OFFSET)
    }

    /// The used ring slot.
    pub const fn used(&self) -> Region {
        Region::new(self.base + USED_OFFSET, DATA_OFFSET - USED_OFFSET)
    }

    /// The data area.
    pub const fn data(&self) -> Region {
        Region::new(self.base + DATA_OFFSET, self.size - DATA_OFFSET)
    }
}

/// Why no space could be laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceError {
    /// The image is in no RAM range.
    ImageOutsideRam,
    /// The device areas don't fit between the image and the top of RAM.
    NoRoom,
    /// More devices than [`MAX_DEVICES`].
    TooManyDevices,
}

impl core::fmt::Display for SpaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::ImageOutsideRam => "the image lies in no RAM range",
            Self::NoRoom => "no room for the device areas above the image",
            Self::TooManyDevices => "more virtio devices than the fuzzer drives",
        })
    }
}

/// The guest's RAM and what it lends each device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    ram: [Region; MAX_MEMORY_REGIONS],
    ram_count: usize,
    areas: [Option<DeviceArea>; MAX_DEVICES],
    kinds: [DeviceKind; MAX_DEVICES],
    devices: usize,
    /// The scratch areas at the start and the end of the RAM range holding the
    /// image, when free, and the device that owns them.
    scratch: [Option<Region>; 2],
    scratch_owner: Option<usize>,
}

fn overlaps_any(r: Region, others: &[Region]) -> bool {
    others.iter().any(|o| o.size != 0 && o.overlaps(&r))
}

impl Space {
    /// Lays out an area for each of `kinds` (device `i` is `kinds[i]`) in the RAM
    /// range that holds `image`, above it, away from `reserved` (the DTB, the
    /// initrd) and from the scratch areas at the ends of RAM.
    ///
    /// # Errors
    ///
    /// When the image is not in RAM or the areas don't fit.
    pub fn new(
        ram: &[Region],
        image: Region,
        reserved: &[Region],
        kinds: &[DeviceKind],
    ) -> Result<Self, SpaceError> {
        if kinds.len() > MAX_DEVICES {
            return Err(SpaceError::TooManyDevices);
        }
        let mut space = Self {
            ram: [Region::new(0, 0); MAX_MEMORY_REGIONS],
            ram_count: ram.len().min(MAX_MEMORY_REGIONS),
            areas: [None; MAX_DEVICES],
            kinds: [DeviceKind::Other; MAX_DEVICES],
            devices: kinds.len(),
            scratch: [None; 2],
            scratch_owner: None,
        };
        space.ram[..space.ram_count].copy_from_slice(&ram[..space.ram_count]);
        let home = *ram.iter().find(|r| r.contains(image.base)).ok_or(SpaceError::ImageOutsideRam)?;
        let home_end = home.end().ok_or(SpaceError::NoRoom)?;
        let start = Region::new(home.base, SCRATCH);
        let end = Region::new(home_end.saturating_sub(SCRATCH), SCRATCH);
        let mut used = [image, Region::new(0, 0), Region::new(0, 0)];
        for (slot, r) in used[1..].iter_mut().zip(reserved) {
            *slot = *r;
        }
        let taken = |r: Region| overlaps_any(r, &used) || overlaps_any(r, reserved);

        let mut next = image.end().ok_or(SpaceError::NoRoom)?.next_multiple_of(AREA_ALIGN);
        for (i, &kind) in kinds.iter().enumerate() {
            space.kinds[i] = kind;
            let area = DeviceArea { base: next, size: DATA_OFFSET + kind.data_size() };
            let r = area.region();
            let fits = r.end().is_some_and(|e| e <= end.base) && !taken(r) && !r.overlaps(&start);
            if !fits {
                return Err(SpaceError::NoRoom);
            }
            space.areas[i] = Some(area);
            next = (area.base + area.size).next_multiple_of(AREA_ALIGN);
        }
        let areas: [Region; MAX_DEVICES] =
            core::array::from_fn(|i| space.areas[i].map_or(Region::new(0, 0), |a| a.region()));
        space.scratch_owner = kinds.iter().position(|&k| k == DeviceKind::Blk);
        if space.scratch_owner.is_some() {
            for (slot, r) in space.scratch.iter_mut().zip([start, end]) {
                if home.size >= 4 * SCRATCH && !taken(r) && !overlaps_any(r, &areas) {
                    *slot = Some(r);
                }
            }
        }
        Ok(space)
    }

    /// The RAM ranges.
    pub fn ram(&self) -> &[Region] {
        &self.ram[..self.ram_count]
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.devices
    }

    /// Device `i`'s kind.
    pub fn kind(&self, device: usize) -> DeviceKind {
        self.kinds[device]
    }

    /// Device `i`'s area.
    ///
    /// # Panics
    ///
    /// If there is no device `i`.
    pub fn area(&self, device: usize) -> DeviceArea {
        self.areas[device].expect("a device of this space")
    }

    /// The scratch areas (start and end of RAM) device `i` may use.
    pub fn scratch(&self, device: usize) -> [Option<Region>; 2] {
        if self.scratch_owner == Some(device) {
            self.scratch
        } else {
            [None; 2]
        }
    }

    /// Whether the byte at `addr` is RAM.
    pub fn is_ram(&self, addr: u64) -> bool {
        self.ram().iter().any(|r| r.contains(addr))
    }

    /// Whether `[addr, addr + len)` lies in one RAM range (what a device accepts as
    /// a buffer). A zero-length range at a RAM address is in RAM.
    pub fn in_ram(&self, addr: u64, len: u64) -> bool {
        let Some(last) = addr.checked_add(len.saturating_sub(1)) else { return false };
        self.ram().iter().any(|r| r.contains(addr) && r.contains(last))
    }

    /// Whether any byte of `[addr, addr + len)` is RAM; a range that runs past the
    /// top of the address space wraps to 0.
    pub fn touches_ram(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let hits =
            |lo: u64, hi: u64| self.ram().iter().any(|r| r.base <= hi && r.end().is_none_or(|end| end > lo));
        match addr.checked_add(len - 1) {
            Some(last) => hits(addr, last),
            None => hits(addr, u64::MAX) || hits(0, addr.wrapping_add(len - 1)),
        }
    }

    /// Whether a device may read and write all of `[addr, addr + len)` as far as it
    /// is RAM: every RAM byte of it lies in `device`'s area or in one of its scratch
    /// areas (a range that runs past the top of the address space wraps to 0).
    pub fn is_lent(&self, device: usize, addr: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let area = self.areas[device].map(|a| a.region());
        let lent = |lo: u64, hi: u64| {
            area.into_iter()
                .chain(self.scratch(device).into_iter().flatten())
                .any(|r| r.base <= lo && r.end().is_none_or(|end| hi < end))
        };
        // Each RAM range's part of [lo, hi] must be lent.
        let check = |lo: u64, hi: u64| {
            self.ram().iter().all(|r| {
                let top = r.end().map_or(u64::MAX, |end| end - 1);
                let (a, b) = (lo.max(r.base), hi.min(top));
                a > b || lent(a, b)
            })
        };
        match addr.checked_add(len - 1) {
            Some(last) => check(addr, last),
            None => check(addr, u64::MAX) && check(0, addr.wrapping_add(len - 1)),
        }
    }

    fn ram_holding(&self, addr: u64) -> Option<Region> {
        self.ram().iter().copied().find(|r| r.contains(addr))
    }

    /// The top of the RAM range holding `device`'s area.
    fn home_end(&self, device: usize) -> u64 {
        self.ram_holding(self.area(device).base).and_then(|r| r.end()).unwrap_or(u64::MAX)
    }

    /// An address outside RAM (the byte itself; a range from it may reach RAM).
    pub fn outside(&self, rng: &mut Rng) -> u64 {
        loop {
            let top = self.ram().iter().filter_map(|r| r.end()).max().unwrap_or(0);
            let bottom = self.ram().iter().map(|r| r.base).min().unwrap_or(0);
            let addr = match rng.below(12) {
                0 => 0,
                1 => rng.pick(&[qemu_virt::GICD.base, qemu_virt::GICR_BASE, qemu_virt::UART.base]),
                2 => qemu_virt::VIRTIO_MMIO_BASE + rng.below(0x4000),
                3 => bottom.wrapping_sub(rng.range(1, 0x40)),
                4 => top + rng.below(0x40),
                5 => rng.pick(&[1 << 32, 1 << 39, 1 << 40, 1 << 48, 0xffff_f000]),
                6 => u64::MAX - rng.below(0x40),
                7 => rng.below(bottom.max(1)),
                8 => u64::from(rng.next_u32()),
                9 => 0xffff_ffff_ffff_f000 | rng.below(0x1000),
                _ => rng.next_u64(),
            };
            if !self.is_ram(addr) {
                return addr;
            }
        }
    }

    /// A range outside RAM of about `len` bytes: `(addr, len)` with no byte of it in
    /// RAM (the length may come back shorter).
    pub fn outside_range(&self, rng: &mut Rng, len: u64) -> (u64, u64) {
        for _ in 0..8 {
            let addr = self.outside(rng);
            if !self.touches_ram(addr, len) {
                return (addr, len);
            }
        }
        // Past every RAM range: wrapping stops at the top of the address space.
        let top = self.ram().iter().filter_map(|r| r.end()).max().unwrap_or(0);
        (top, len.min(u64::MAX - top))
    }

    /// A value for the high half of a ring address: with any low half, the address
    /// is either the low half alone (high half 0, see [`Space::ring_low`]) or lies in
    /// a 4 GiB window without RAM.
    pub fn ring_high(&self, rng: &mut Rng) -> u32 {
        loop {
            let high = match rng.below(4) {
                0 => 0,
                1 => rng.pick(&[1, 0x80, 0xffff, u32::MAX]),
                _ => rng.next_u32(),
            };
            if high == 0 || !self.touches_ram(u64::from(high) << 32, 1 << 32) {
                return high;
            }
        }
    }

    /// A value for the low half of a ring address of `device`: with a high half
    /// from [`Space::ring_high`] the address is outside RAM, or at least
    /// [`RING_SLACK`] bytes below the end of the device's area, or in its scratch
    /// areas. Sometimes misaligned.
    pub fn ring_low(&self, device: usize, rng: &mut Rng) -> u32 {
        loop {
            let area = self.area(device);
            let [start, end] = self.scratch(device);
            let addr = match rng.below(8) {
                0..=2 => {
                    let offset = rng.below(area.size - RING_SLACK);
                    area.base + if rng.chance(3, 4) { offset & !15 } else { offset }
                }
                3 => rng.pick(&[area.desc().base, area.avail().base, area.used().base, area.data().base]),
                4 if end.is_some() => self.home_end(device) - rng.range(1, RING_SLACK),
                5 if start.is_some() => {
                    let base = start.map_or(0, |s| s.base);
                    if rng.coin() {
                        base + rng.below(SCRATCH - RING_SLACK)
                    } else {
                        base.wrapping_sub(rng.range(1, 0x100))
                    }
                }
                _ => self.outside(rng),
            };
            if let Ok(low) = u32::try_from(addr) {
                if self.is_lent(device, addr, RING_SLACK) {
                    return low;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: Region = Region::new(0x4000_0000, 32 << 20);
    const IMAGE: Region = Region::new(0x4020_0000, 0x3_0000);
    const DTB: Region = Region::new(0x41e0_0000, 0x2000);

    fn space() -> Space {
        Space::new(&[RAM], IMAGE, &[DTB], &[DeviceKind::Blk, DeviceKind::Console]).unwrap()
    }

    #[test]
    fn areas_sit_above_the_image_apart() {
        let s = space();
        let (blk, console) = (s.area(0), s.area(1));
        assert_eq!(blk.base, 0x4023_0000);
        assert_eq!(blk.size, DATA_OFFSET + 0x1_0000);
        assert_eq!(console.base, 0x4025_0000);
        assert!(!blk.region().overlaps(&console.region()));
        assert_eq!(blk.data(), Region::new(0x4023_4000, 0x1_0000));
        assert_eq!(blk.used().end(), Some(blk.data().base));
        assert_eq!(
            s.scratch(0),
            [Some(Region::new(0x4000_0000, SCRATCH)), Some(Region::new(0x41ff_e000, SCRATCH))]
        );
        assert_eq!(s.scratch(1), [None, None], "only the first blk has scratch areas");
        assert_eq!(s.kind(1), DeviceKind::Console);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let small = Region::new(0x4000_0000, 0x24_0000);
        assert_eq!(Space::new(&[small], IMAGE, &[], &[DeviceKind::Blk]), Err(SpaceError::NoRoom));
        let outside = Region::new(0x8000_0000, 0x1000);
        assert_eq!(Space::new(&[RAM], outside, &[], &[]), Err(SpaceError::ImageOutsideRam));
        assert_eq!(Space::new(&[RAM], IMAGE, &[], &[DeviceKind::Other; 5]), Err(SpaceError::TooManyDevices));
        // A DTB at the end of RAM (plain QEMU puts it elsewhere) takes the scratch away.
        let dtb = Region::new(0x41ff_f000, 0x1000);
        let s = Space::new(&[RAM], IMAGE, &[dtb], &[DeviceKind::Blk]).unwrap();
        assert_eq!(s.scratch(0)[1], None);
        assert!(s.scratch(0)[0].is_some());
    }

    #[test]
    fn ram_ranges_and_wrapping() {
        let s = space();
        assert!(s.in_ram(0x4000_0000, 0));
        assert!(s.in_ram(0x41ff_fff0, 0x10));
        assert!(!s.in_ram(0x41ff_fff0, 0x11));
        assert!(!s.in_ram(0x3fff_ffff, 2));
        assert!(s.touches_ram(0x3fff_ffff, 2));
        assert!(!s.touches_ram(0x4200_0000, 0x1000));
        assert!(!s.touches_ram(0x4000_0000, 0));
        assert!(s.touches_ram(u64::MAX - 1, 0x4000_0010), "wraps around to RAM");
        assert!(!s.touches_ram(u64::MAX - 1, 0x10));
    }

    #[test]
    fn lent_ranges() {
        let s = space();
        let (blk, console) = (s.area(0), s.area(1));
        assert!(s.is_lent(0, blk.base, blk.size));
        assert!(!s.is_lent(0, blk.base, blk.size + 1));
        assert!(!s.is_lent(0, console.base, 1));
        assert!(s.is_lent(1, console.data().base, 0x4000));
        assert!(!s.is_lent(1, IMAGE.base, 1));
        assert!(s.is_lent(1, 0x0900_0000, 0x1000), "outside RAM");
        assert!(s.is_lent(1, 0x4200_0000, u64::MAX - 0x4200_0000), "from the top of RAM up");
        // The blk's scratch: across the end of RAM, and up from below its start.
        assert!(s.is_lent(0, 0x41ff_fff0, 0x100));
        assert!(s.is_lent(0, 0x3fff_fff0, 0x100));
        assert!(!s.is_lent(0, 0x3fff_fff0, SCRATCH + 0x100), "past the start scratch");
        assert!(!s.is_lent(0, 0x41ff_0000, 0x1_0000), "below the end scratch");
        assert!(!s.is_lent(1, 0x41ff_fff0, 0x100), "not the console's");
    }

    #[test]
    fn generated_addresses_are_safe() {
        let s = space();
        let mut rng = Rng::new(5);
        let mut in_area = 0;
        for _ in 0..20_000 {
            let a = s.outside(&mut rng);
            assert!(!s.is_ram(a), "{a:#x}");
            let (a, len) = s.outside_range(&mut rng, 1 << 20);
            assert!(!s.touches_ram(a, len), "{a:#x}+{len:#x}");
            for device in 0..2 {
                let low = u64::from(s.ring_low(device, &mut rng));
                let high = u64::from(s.ring_high(&mut rng));
                assert!(s.is_lent(device, low, RING_SLACK), "device {device}: {low:#x}");
                let addr = high << 32 | low;
                assert!(s.is_lent(device, addr, RING_SLACK), "device {device}: {addr:#x}");
                if s.area(device).region().contains(low) {
                    in_area += 1;
                }
            }
        }
        assert!(in_area > 5_000, "{in_area} ring addresses in the areas");
    }
}
