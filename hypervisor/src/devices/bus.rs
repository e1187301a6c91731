//! The MMIO bus: which device owns a guest-physical address.
//!
//! Each device of a VM is registered once, with the range it answers and a small
//! id of the caller's choosing (`vm::devices::DeviceId`: an enum, so the caller
//! dispatches with a `match`, not through a `dyn` table). Ranges are kept sorted and
//! disjoint, so an access is resolved with one binary search. Resolving allocates
//! nothing; only [`MmioBus::insert`] (at VM setup) does.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use platform::Region;

use super::AccessWidth;
/// Why the bus refused a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// The device's region is empty or wraps past the end of the address space.
    InvalidRegion {
        /// Name of the refused device.
        device: String,
        /// The region it asked for.
        region: Region,
    },
    /// The device's region overlaps one already on the bus.
    Overlap {
        /// Name of the refused device.
        device: String,
        /// The region it asked for.
        region: Region,
        /// Name of the device already on the bus.
        existing: String,
        /// That device's region.
        existing_region: Region,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRegion { device, region } => write!(
                f,
                "device {device:?} has an empty or wrapping region at {:#x} size {:#x}",
                region.base, region.size
            ),
            Self::Overlap { device, region, existing, existing_region } => write!(
                f,
                "device {device:?} at {:#x} size {:#x} overlaps device {existing:?} at {:#x} size {:#x}",
                region.base, region.size, existing_region.base, existing_region.size
            ),
        }
    }
}

/// A device on the bus with the range it answers.
#[derive(Debug)]
struct Slot<D> {
    region: Region,
    device: D,
}

/// A VM's devices by guest-physical address range.
#[derive(Debug)]
pub struct MmioBus<D> {
    /// Sorted by `region.base`; the regions don't overlap, are non-empty and don't wrap.
    slots: Vec<Slot<D>>,
    /// `slots[i].region.base`, on their own: the search reads nothing else.
    bases: Vec<u64>,
}

impl<D> Default for MmioBus<D> {
    fn default() -> Self {
        Self { slots: Vec::new(), bases: Vec::new() }
    }
}

impl<D: Copy + fmt::Display> MmioBus<D> {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` on the bus at `region`.
    ///
    /// # Errors
    ///
    /// - [`BusError::InvalidRegion`] if `region` is empty or wraps the address space;
    /// - [`BusError::Overlap`] if `region` shares an address with a device already on
    ///   the bus (the error names both).
    pub fn insert(&mut self, region: Region, device: D) -> Result<(), BusError> {
        if region.size == 0 || region.end().is_none() {
            return Err(BusError::InvalidRegion { device: device.to_string(), region });
        }
        let pos = self.slots.partition_point(|s| s.region.base < region.base);
        // The slots are sorted and disjoint, so only the neighbours can overlap.
        let neighbours = pos.checked_sub(1).into_iter().chain([pos]);
        for i in neighbours {
            if let Some(slot) = self.slots.get(i).filter(|s| s.region.overlaps(&region)) {
                return Err(BusError::Overlap {
                    device: device.to_string(),
                    region,
                    existing: slot.device.to_string(),
                    existing_region: slot.region,
                });
            }
        }
        self.slots.insert(pos, Slot { region, device });
        self.bases.insert(pos, region.base);
        Ok(())
    }

    /// The device that answers an access of `width` at `addr`, and the offset of
    /// the access in its range; `None` if no single device covers
    /// `[addr, addr + width)`.
    #[inline]
    pub fn resolve(&self, addr: u64, width: AccessWidth) -> Option<(D, u64)> {
        let slot = &self.slots[self.index_for(addr)?];
        slot.region.contains_range(addr, width.bytes()).then(|| (slot.device, addr - slot.region.base))
    }

    /// The device whose range holds `addr`, if any.
    pub fn device_at(&self, addr: u64) -> Option<D> {
        self.index_for(addr).map(|i| self.slots[i].device)
    }

    /// Index of the slot whose range holds `addr`.
    #[inline]
    fn index_for(&self, addr: u64) -> Option<usize> {
        let i = self.bases.partition_point(|&base| base <= addr).checked_sub(1)?;
        self.slots.get(i).filter(|s| s.region.contains(addr)).map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bus with "uart" at 0x0900_0000 (4 KiB), "blk" at 0x0a00_0000 and "net" at
    /// 0x0a00_0200 (0x200 each), inserted out of order.
    fn bus() -> MmioBus<&'static str> {
        let mut bus = MmioBus::new();
        bus.insert(Region::new(0x0a00_0200, 0x200), "net").unwrap();
        bus.insert(Region::new(0x0900_0000, 0x1000), "uart").unwrap();
        bus.insert(Region::new(0x0a00_0000, 0x200), "blk").unwrap();
        bus
    }

    #[test]
    fn resolves_by_address_with_offsets() {
        let bus = bus();
        assert_eq!(bus.resolve(0x0900_0018, AccessWidth::Word), Some(("uart", 0x18)));
        assert_eq!(bus.resolve(0x0a00_0050, AccessWidth::Word), Some(("blk", 0x50)));
        assert_eq!(bus.resolve(0x0a00_03f8, AccessWidth::Double), Some(("net", 0x1f8)));
        assert_eq!(bus.resolve(0x0a00_0200, AccessWidth::Byte), Some(("net", 0)));
    }

    #[test]
    fn accesses_outside_or_across_devices_are_unmapped() {
        let bus = bus();
        // Below every device, in a gap, past the last one.
        assert_eq!(bus.resolve(0x0800_0000, AccessWidth::Word), None);
        assert_eq!(bus.resolve(0x0900_1000, AccessWidth::Word), None);
        assert_eq!(bus.resolve(0x0a00_0400, AccessWidth::Byte), None);
        assert_eq!(bus.resolve(u64::MAX, AccessWidth::Byte), None);
        // Straddling the end of one device, into the next or into a gap.
        assert_eq!(bus.resolve(0x0a00_01fc, AccessWidth::Double), None);
        assert_eq!(bus.resolve(0x0900_0ffe, AccessWidth::Word), None);
        assert_eq!(bus.resolve(u64::MAX - 1, AccessWidth::Double), None);
        // The last bytes of a device are fine.
        assert_eq!(bus.resolve(0x0a00_01fc, AccessWidth::Word), Some(("blk", 0x1fc)));
    }

    #[test]
    fn device_at_names_the_owner() {
        let bus = bus();
        assert_eq!(bus.device_at(0x0900_0000), Some("uart"));
        assert_eq!(bus.device_at(0x0900_0fff), Some("uart"));
        assert_eq!(bus.device_at(0x0900_1000), None);
        assert_eq!(bus.device_at(0x0a00_01ff), Some("blk"));
        assert_eq!(bus.device_at(0x0a00_0200), Some("net"));
        assert_eq!(bus.device_at(0), None);
        assert_eq!(MmioBus::<&str>::new().device_at(0x0900_0000), None);
    }

    #[test]
    fn overlapping_regions_are_refused_naming_both() {
        let mut bus = bus();
        for region in [
            Region::new(0x08ff_f000, 0x1001),     // runs into the uart
            Region::new(0x0900_0800, 0x10),       // inside the uart
            Region::new(0x0a00_01ff, 1),          // last byte of blk
            Region::new(0x0800_0000, 0x400_0000), // covers everything
        ] {
            let err = bus.insert(region, "new").unwrap_err();
            let BusError::Overlap { device, existing, .. } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(device, "new");
            assert!(["uart", "blk"].contains(&existing.as_str()), "{existing}");
        }
        let err = bus.insert(Region::new(0x0900_0000, 4), "gic").unwrap_err();
        assert_eq!(
            err.to_string(),
            "device \"gic\" at 0x9000000 size 0x4 overlaps device \"uart\" at 0x9000000 size 0x1000"
        );
        // Adjacent ranges are fine.
        bus.insert(Region::new(0x0a00_0400, 0x200), "next").unwrap();
        bus.insert(Region::new(0x08ff_f000, 0x1000), "prev").unwrap();
        assert_eq!(bus.device_at(0x0a00_0400), Some("next"));
        assert_eq!(bus.device_at(0x08ff_ffff), Some("prev"));
    }

    #[test]
    fn empty_and_wrapping_regions_are_refused() {
        let mut bus = MmioBus::new();
        for region in [Region::new(0x1000, 0), Region::new(u64::MAX - 0xff, 0x200)] {
            assert_eq!(
                bus.insert(region, "bad"),
                Err(BusError::InvalidRegion { device: "bad".to_string(), region })
            );
        }
    }
}
