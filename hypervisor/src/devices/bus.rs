//! The MMIO bus: routes a trapped guest access to the device that owns the address.
//!
//! Devices are kept sorted by base address over non-overlapping ranges, so an access
//! is routed with one binary search. Routing allocates nothing; only
//! [`MmioBus::insert`] (at VM setup) does.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use platform::Region;

use super::{AccessWidth, MmioDevice};

/// Why the bus refused a device or an access.
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
    /// No single device covers the whole access.
    Unmapped {
        /// Address of the access.
        addr: u64,
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
            Self::Unmapped { addr } => write!(f, "no device covers the access at {addr:#x}"),
        }
    }
}

/// A device on the bus with the range it answers.
struct Slot {
    region: Region,
    device: Box<dyn MmioDevice>,
}

/// Emulated devices by guest-physical address range.
#[derive(Default)]
pub struct MmioBus {
    /// Sorted by `region.base`; the regions don't overlap, are non-empty and don't wrap.
    slots: Vec<Slot>,
}

impl fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.slots.iter().map(|s| (s.device.name(), s.region))).finish()
    }
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// Puts `device` on the bus at `region`.
    ///
    /// # Errors
    ///
    /// - [`BusError::InvalidRegion`] if `region` is empty or wraps the address space;
    /// - [`BusError::Overlap`] if `region` shares an address with a device already on
    ///   the bus (the error names both).
    pub fn insert(&mut self, region: Region, device: Box<dyn MmioDevice>) -> Result<(), BusError> {
        if region.size == 0 || region.end().is_none() {
            return Err(BusError::InvalidRegion { device: device.name().to_string(), region });
        }
        let pos = self.slots.partition_point(|s| s.region.base < region.base);
        // The slots are sorted and disjoint, so only the neighbours can overlap.
        let neighbours = pos.checked_sub(1).into_iter().chain([pos]);
        for i in neighbours {
            if let Some(slot) = self.slots.get(i).filter(|s| s.region.overlaps(&region)) {
                return Err(BusError::Overlap {
                    device: device.name().to_string(),
                    region,
                    existing: slot.device.name().to_string(),
                    existing_region: slot.region,
                });
            }
        }
        self.slots.insert(pos, Slot { region, device });
        Ok(())
    }

    /// Reads `width` at guest-physical `addr`; the value is masked to the width.
    ///
    /// # Errors
    ///
    /// [`BusError::Unmapped`] if no single device covers `[addr, addr + width)`.
    pub fn read(&mut self, addr: u64, width: AccessWidth) -> Result<u64, BusError> {
        let slot = self.slot_for(addr, width)?;
        let offset = addr - slot.region.base;
        Ok(slot.device.read(offset, width) & width.mask())
    }

    /// Writes the low `width` bytes of `value` at guest-physical `addr`.
    ///
    /// # Errors
    ///
    /// [`BusError::Unmapped`] if no single device covers `[addr, addr + width)`.
    pub fn write(&mut self, addr: u64, width: AccessWidth, value: u64) -> Result<(), BusError> {
        let slot = self.slot_for(addr, width)?;
        let offset = addr - slot.region.base;
        slot.device.write(offset, width, value & width.mask());
        Ok(())
    }

    /// Name of the device whose range holds `addr`, if any.
    pub fn device_at(&self, addr: u64) -> Option<&str> {
        let i = self.index_for(addr)?;
        Some(self.slots[i].device.name())
    }

    /// Index of the slot whose range holds `addr`.
    fn index_for(&self, addr: u64) -> Option<usize> {
        let i = self.slots.partition_point(|s| s.region.base <= addr).checked_sub(1)?;
        self.slots[i].region.contains(addr).then_some(i)
    }

    /// The slot that holds the whole access.
    fn slot_for(&mut self, addr: u64, width: AccessWidth) -> Result<&mut Slot, BusError> {
        match self.index_for(addr) {
            Some(i) if self.slots[i].region.contains_range(addr, width.bytes()) => Ok(&mut self.slots[i]),
            _ => Err(BusError::Unmapped { addr }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use std::sync::{Arc, Mutex};

    /// One access a fake device saw.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Seen {
        Read(u64, AccessWidth),
        Write(u64, AccessWidth, u64),
    }

    /// A device that records its accesses and reads back a fixed value.
    struct Recorder {
        name: &'static str,
        value: u64,
        log: Arc<Mutex<Vec<Seen>>>,
    }

    impl MmioDevice for Recorder {
        fn name(&self) -> &str {
            self.name
        }

        fn read(&mut self, offset: u64, width: AccessWidth) -> u64 {
            self.log.lock().unwrap().push(Seen::Read(offset, width));
            self.value
        }

        fn write(&mut self, offset: u64, width: AccessWidth, value: u64) {
            self.log.lock().unwrap().push(Seen::Write(offset, width, value));
        }
    }

    fn recorder(name: &'static str, value: u64) -> (Box<dyn MmioDevice>, Arc<Mutex<Vec<Seen>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let dev = Recorder { name, value, log: log.clone() };
        (Box::new(dev), log)
    }

    /// A bus with "uart" at 0x0900_0000 (4 KiB), "blk" at 0x0a00_0000 and "net" at
    /// 0x0a00_0200 (0x200 each), inserted out of order.
    fn bus() -> (MmioBus, [Arc<Mutex<Vec<Seen>>>; 3]) {
        let mut bus = MmioBus::new();
        let (net, net_log) = recorder("net", 0x1111_2222_3333_4444);
        let (uart, uart_log) = recorder("uart", 0xaabb_ccdd_eeff_0011);
        let (blk, blk_log) = recorder("blk", 0x7472_6976);
        bus.insert(Region::new(0x0a00_0200, 0x200), net).unwrap();
        bus.insert(Region::new(0x0900_0000, 0x1000), uart).unwrap();
        bus.insert(Region::new(0x0a00_0000, 0x200), blk).unwrap();
        (bus, [uart_log, blk_log, net_log])
    }

    #[test]
    fn routes_by_address_with_offsets() {
        let (mut bus, [uart, blk, net]) = bus();
        assert_eq!(bus.read(0x0900_0018, AccessWidth::Word), Ok(0xeeff_0011));
        bus.write(0x0a00_0050, AccessWidth::Word, 3).unwrap();
        assert_eq!(bus.read(0x0a00_03f8, AccessWidth::Double), Ok(0x1111_2222_3333_4444));
        bus.write(0x0a00_0200, AccessWidth::Byte, 0x5a).unwrap();
        assert_eq!(*uart.lock().unwrap(), vec![Seen::Read(0x18, AccessWidth::Word)]);
        assert_eq!(*blk.lock().unwrap(), vec![Seen::Write(0x50, AccessWidth::Word, 3)]);
        assert_eq!(
            *net.lock().unwrap(),
            vec![Seen::Read(0x1f8, AccessWidth::Double), Seen::Write(0, AccessWidth::Byte, 0x5a)]
        );
    }

    #[test]
    fn reads_and_writes_are_masked_to_the_width() {
        let (mut bus, [uart, ..]) = bus();
        assert_eq!(bus.read(0x0900_0000, AccessWidth::Byte), Ok(0x11));
        assert_eq!(bus.read(0x0900_0000, AccessWidth::Half), Ok(0x0011));
        assert_eq!(bus.read(0x0900_0000, AccessWidth::Double), Ok(0xaabb_ccdd_eeff_0011));
        bus.write(0x0900_0000, AccessWidth::Half, 0xdead_beef).unwrap();
        assert_eq!(uart.lock().unwrap().last(), Some(&Seen::Write(0, AccessWidth::Half, 0xbeef)));
    }

    #[test]
    fn accesses_outside_or_across_devices_are_unmapped() {
        let (mut bus, logs) = bus();
        fn unmapped<T>(addr: u64) -> Result<T, BusError> {
            Err(BusError::Unmapped { addr })
        }
        // Below every device, in a gap, past the last one.
        assert_eq!(bus.read(0x0800_0000, AccessWidth::Word), unmapped(0x0800_0000));
        assert_eq!(bus.read(0x0900_1000, AccessWidth::Word), unmapped(0x0900_1000));
        assert_eq!(bus.read(0x0a00_0400, AccessWidth::Byte), unmapped(0x0a00_0400));
        assert_eq!(bus.write(u64::MAX, AccessWidth::Byte, 0), unmapped(u64::MAX));
        // Straddling the end of one device, into the next or into a gap.
        assert_eq!(bus.read(0x0a00_01fc, AccessWidth::Double), unmapped(0x0a00_01fc));
        assert_eq!(bus.write(0x0900_0ffe, AccessWidth::Word, 0), unmapped(0x0900_0ffe));
        assert_eq!(bus.read(u64::MAX - 1, AccessWidth::Double), unmapped(u64::MAX - 1));
        // No device saw any of it.
        assert!(logs.iter().all(|log| log.lock().unwrap().is_empty()));
        // The last bytes of a device are fine.
        assert_eq!(bus.read(0x0a00_01fc, AccessWidth::Word), Ok(0x7472_6976));
    }

    #[test]
    fn device_at_names_the_owner() {
        let (bus, _) = bus();
        assert_eq!(bus.device_at(0x0900_0000), Some("uart"));
        assert_eq!(bus.device_at(0x0900_0fff), Some("uart"));
        assert_eq!(bus.device_at(0x0900_1000), None);
        assert_eq!(bus.device_at(0x0a00_01ff), Some("blk"));
        assert_eq!(bus.device_at(0x0a00_0200), Some("net"));
        assert_eq!(bus.device_at(0), None);
        assert_eq!(MmioBus::new().device_at(0x0900_0000), None);
    }

    #[test]
    fn overlapping_regions_are_refused_naming_both() {
        let (mut bus, _) = bus();
        for region in [
            Region::new(0x08ff_f000, 0x1001),     // runs into the uart
            Region::new(0x0900_0800, 0x10),       // inside the uart
            Region::new(0x0a00_01ff, 1),          // last byte of blk
            Region::new(0x0800_0000, 0x400_0000), // covers everything
        ] {
            let (dev, _) = recorder("new", 0);
            let err = bus.insert(region, dev).unwrap_err();
            let BusError::Overlap { device, existing, .. } = &err else {
                panic!("{err:?}");
            };
            assert_eq!(device, "new");
            assert!(["uart", "blk"].contains(&existing.as_str()), "{existing}");
        }
        let (dev, _) = recorder("gic", 0);
        let err = bus.insert(Region::new(0x0900_0000, 4), dev).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device \"gic\" at 0x9000000 size 0x4 overlaps device \"uart\" at 0x9000000 size 0x1000"
        );
        // Adjacent ranges are fine.
        let (dev, _) = recorder("next", 0);
        bus.insert(Region::new(0x0a00_0400, 0x200), dev).unwrap();
        let (dev, _) = recorder("prev", 0);
        bus.insert(Region::new(0x08ff_f000, 0x1000), dev).unwrap();
        assert_eq!(bus.device_at(0x0a00_0400), Some("next"));
        assert_eq!(bus.device_at(0x08ff_ffff), Some("prev"));
    }

    #[test]
    fn empty_and_wrapping_regions_are_refused() {
        let mut bus = MmioBus::new();
        for region in [Region::new(0x1000, 0), Region::new(u64::MAX - 0xff, 0x200)] {
            let (dev, _) = recorder("bad", 0);
            assert_eq!(
                bus.insert(region, dev),
                Err(BusError::InvalidRegion { device: "bad".to_string(), region })
            );
        }
        assert_eq!(BusError::Unmapped { addr: 0x10 }.to_string(), "no device covers the access at 0x10");
    }
}
