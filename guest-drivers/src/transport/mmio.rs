//! The virtio-mmio transport (virtio 1.2 §4.2): modern (version 2) and legacy
//! (version 1, §4.2.4), told apart by the Version register.
//!
//! Every register access is one 32-bit load or store through [`Reg32`]; the device
//! configuration space is read and written with single 8-, 16- or 32-bit accesses of
//! the field's width. Each is a single plain load or store that any hypervisor can
//! decode from the trap syndrome.
//!
//! The transport reaches its registers through [`RegisterAccess`]: [`MmioSlot`] on
//! hardware, or a device model directly in a host test, which then sees exactly the
//! sequence of (offset, width, value) accesses a guest would make.
#![allow(unsafe_code)]

use super::{DeviceStatus, Transport};
use crate::error::{Error, Result};
use crate::hal::{PhysAddr, PAGE_SIZE};
use crate::mmio::{Reg16, Reg32, Reg8};
use crate::queue::RingLayout;

/// MagicValue: "virt" in little-endian ASCII.
pub const MAGIC: u32 = 0x7472_6976;
/// The size of one virtio-mmio slot on QEMU virt (and Sluice).
pub const SLOT_SIZE: usize = 0x200;
/// Offset of the device configuration space in the slot.
pub const CONFIG_OFFSET: usize = 0x100;
/// Bytes of configuration space a slot holds.
pub const CONFIG_SIZE: usize = SLOT_SIZE - CONFIG_OFFSET;

/// Register offsets (virtio 1.2 §4.2.2 and, for the legacy ones, §4.2.4).
pub mod reg {
    /// "virt".
    pub const MAGIC_VALUE: usize = 0x000;
    /// 2 (modern) or 1 (legacy).
    pub const VERSION: usize = 0x004;
    /// Device type; 0 means no device.
    pub const DEVICE_ID: usize = 0x008;
    /// Vendor.
    pub const VENDOR_ID: usize = 0x00c;
    /// The 32 feature bits chosen by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: usize = 0x010;
    /// Which feature word `DEVICE_FEATURES` shows.
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    /// The 32 driver feature bits chosen by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: usize = 0x020;
    /// Which feature word `DRIVER_FEATURES` writes.
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    /// Legacy: the guest's page size, the unit of `QUEUE_PFN`.
    pub const LEGACY_GUEST_PAGE_SIZE: usize = 0x028;
    /// Selects the queue the queue registers act on.
    pub const QUEUE_SEL: usize = 0x030;
    /// The selected queue's maximum size.
    pub const QUEUE_NUM_MAX: usize = 0x034;
    /// The selected queue's size.
    pub const QUEUE_NUM: usize = 0x038;
    /// Legacy: the used ring's alignment.
    pub const LEGACY_QUEUE_ALIGN: usize = 0x03c;
    /// Legacy: the ring's page number; 0 when the queue is not in use.
    pub const LEGACY_QUEUE_PFN: usize = 0x040;
    /// Modern: the selected queue is live.
    pub const QUEUE_READY: usize = 0x044;
    /// Write a queue index: new buffers available.
    pub const QUEUE_NOTIFY: usize = 0x050;
    /// Why the device interrupted.
    pub const INTERRUPT_STATUS: usize = 0x060;
    /// Write the handled causes.
    pub const INTERRUPT_ACK: usize = 0x064;
    /// Device status.
    pub const STATUS: usize = 0x070;
    /// Descriptor table address, low word.
    pub const QUEUE_DESC_LOW: usize = 0x080;
    /// Descriptor table address, high word.
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    /// Driver (available) area address, low word.
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    /// Driver (available) area address, high word.
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    /// Device (used) area address, low word.
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    /// Device (used) area address, high word.
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    /// Configuration generation.
    pub const CONFIG_GENERATION: usize = 0x0fc;
}

/// Single register accesses at byte offsets of a virtio-mmio slot: the hardware
/// (through [`MmioSlot`]), or anything that behaves like it, such as a device model
/// in a host test. Offsets run from the slot's base, configuration space included
/// (from [`CONFIG_OFFSET`]).
pub trait RegisterAccess {
    /// One 32-bit read.
    fn read32(&self, offset: usize) -> u32;
    /// One 32-bit write.
    fn write32(&mut self, offset: usize, value: u32);
    /// One 16-bit read (configuration space only).
    fn read16(&self, offset: usize) -> u16;
    /// One 16-bit write (configuration space only).
    fn write16(&mut self, offset: usize, value: u16);
    /// One 8-bit read (configuration space only).
    fn read8(&self, offset: usize) -> u8;
    /// One 8-bit write (configuration space only).
    fn write8(&mut self, offset: usize, value: u8);
}

/// A virtio-mmio slot in the address space: each access is one volatile load or
/// store of its width ([`Reg32`], [`Reg16`], [`Reg8`]).
#[derive(Debug)]
pub struct MmioSlot {
    base: usize,
}

impl MmioSlot {
    /// The slot at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the 4-byte-aligned address of a [`SLOT_SIZE`]-byte virtio-mmio
    /// register block (or of memory that reads like one), mapped as device memory for
    /// the value's lifetime, and no other code may drive that device meanwhile.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// The slot's base address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The address of the `width`-byte register at `offset`.
    ///
    /// # Panics
    ///
    /// When the access is misaligned or leaves the slot: the transport's offsets are
    /// constants, so that is a bug in the caller.
    fn addr(&self, offset: usize, width: usize) -> usize {
        assert!(offset.is_multiple_of(width) && offset + width <= SLOT_SIZE, "bad register access");
        self.base + offset
    }
}

impl RegisterAccess for MmioSlot {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: an aligned register inside the slot (checked), which `new`'s
        // contract keeps mapped.
        unsafe { Reg32::new(self.addr(offset, 4)) }.read()
    }

    fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { Reg32::new(self.addr(offset, 4)) }.write(value)
    }

    fn read16(&self, offset: usize) -> u16 {
        // SAFETY: as in `read32`.
        unsafe { Reg16::new(self.addr(offset, 2)) }.read()
    }

    fn write16(&mut self, offset: usize, value: u16) {
        // SAFETY: as in `read32`.
        unsafe { Reg16::new(self.addr(offset, 2)) }.write(value)
    }

    fn read8(&self, offset: usize) -> u8 {
        // SAFETY: as in `read32`.
        unsafe { Reg8::new(self.addr(offset, 1)) }.read()
    }

    fn write8(&mut self, offset: usize, value: u8) {
        // SAFETY: as in `read32`.
        unsafe { Reg8::new(self.addr(offset, 1)) }.write(value)
    }
}

/// Which interface the device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioVersion {
    /// Version 1: the legacy interface (§4.2.4).
    Legacy,
    /// Version 2: virtio 1.x.
    Modern,
}

/// A virtio-mmio device, reached through `R` (by default the hardware slot).
#[derive(Debug)]
pub struct MmioTransport<R: RegisterAccess = MmioSlot> {
    regs: R,
    version: MmioVersion,
    device_id: u32,
    /// Legacy only: the size last written to the selected queue, needed to check
    /// that the ring addresses follow the legacy layout.
    legacy_queue_size: u16,
}

impl MmioTransport<MmioSlot> {
    /// Probes the virtio-mmio slot at `base`: checks MagicValue, Version and DeviceID.
    ///
    /// # Safety
    ///
    /// As for [`MmioSlot::new`].
    ///
    /// # Errors
    ///
    /// As for [`from_registers`](Self::from_registers).
    pub unsafe fn new(base: usize) -> Result<Self> {
        // SAFETY: the caller keeps `MmioSlot::new`'s contract.
        Self::from_registers(unsafe { MmioSlot::new(base) })
    }

    /// The slot's base address.
    pub fn base(&self) -> usize {
        self.regs.base()
    }
}

impl<R: RegisterAccess> MmioTransport<R> {
    /// Probes the device behind `regs`: checks MagicValue, Version and DeviceID
    /// (§4.2.3.1.1).
    ///
    /// # Errors
    ///
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`], or [`Error::NoDevice`] for
    /// an empty slot.
    pub fn from_registers(regs: R) -> Result<Self> {
        let magic = regs.read32(reg::MAGIC_VALUE);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = match regs.read32(reg::VERSION) {
            1 => MmioVersion::Legacy,
            2 => MmioVersion::Modern,
            other => return Err(Error::UnsupportedVersion(other)),
        };
        let device_id = regs.read32(reg::DEVICE_ID);
        if device_id == 0 {
            return Err(Error::NoDevice);
        }
        Ok(Self { regs, version, device_id, legacy_queue_size: 0 })
    }

    /// The interface version the device speaks.
    pub fn version(&self) -> MmioVersion {
        self.version
    }

    /// The device's vendor ID.
    pub fn vendor_id(&self) -> u32 {
        self.regs.read32(reg::VENDOR_ID)
    }

    /// The register backend.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    fn read(&self, offset: usize) -> u32 {
        self.regs.read32(offset)
    }

    fn write(&mut self, offset: usize, value: u32) {
        self.regs.write32(offset, value)
    }

    /// The slot offset of configuration field `offset` of `width` bytes.
    ///
    /// # Panics
    ///
    /// When the field is misaligned or runs past the configuration space: the
    /// drivers' offsets are constants, so that is a bug in the caller.
    fn config(offset: usize, width: usize) -> usize {
        assert!(offset.is_multiple_of(width) && offset + width <= CONFIG_SIZE, "bad config access");
        CONFIG_OFFSET + offset
    }

    fn is_modern(&self) -> bool {
        self.version == MmioVersion::Modern
    }
}

impl<R: RegisterAccess> Transport for MmioTransport<R> {
    fn device_id(&self) -> u32 {
        self.device_id
    }

    fn is_legacy(&self) -> bool {
        self.version == MmioVersion::Legacy
    }

    fn read_device_features(&mut self) -> u64 {
        self.write(reg::DEVICE_FEATURES_SEL, 0);
        let low = self.read(reg::DEVICE_FEATURES);
        if !self.is_modern() {
            // A legacy device has one feature word.
            return u64::from(low);
        }
        self.write(reg::DEVICE_FEATURES_SEL, 1);
        let high = self.read(reg::DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    fn write_driver_features(&mut self, features: u64) {
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, features as u32);
        if self.is_modern() {
            self.write(reg::DRIVER_FEATURES_SEL, 1);
            self.write(reg::DRIVER_FEATURES, (features >> 32) as u32);
        }
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus(self.read(reg::STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.write(reg::STATUS, status.0);
    }

    fn queue_select(&mut self, queue: u16) {
        self.write(reg::QUEUE_SEL, u32::from(queue));
    }

    fn queue_max_size(&self) -> u16 {
        // A larger maximum than 16 bits can hold is usable as the largest we can use.
        u16::try_from(self.read(reg::QUEUE_NUM_MAX)).unwrap_or(0x8000)
    }

    fn queue_set_size(&mut self, size: u16) {
        self.legacy_queue_size = size;
        self.write(reg::QUEUE_NUM, u32::from(size));
    }

    fn queue_set_addresses(&mut self, desc: PhysAddr, driver: PhysAddr, device: PhysAddr) -> Result {
        if self.is_modern() {
            self.write(reg::QUEUE_DESC_LOW, desc as u32);
            self.write(reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
            self.write(reg::QUEUE_DRIVER_LOW, driver as u32);
            self.write(reg::QUEUE_DRIVER_HIGH, (driver >> 32) as u32);
            self.write(reg::QUEUE_DEVICE_LOW, device as u32);
            self.write(reg::QUEUE_DEVICE_HIGH, (device >> 32) as u32);
            return Ok(());
        }
        // Legacy: one page frame number; the device derives the other two areas from
        // it, the queue size and QueueAlign (§2.7.2 legacy layout, §4.2.4).
        let layout = RingLayout::new(self.legacy_queue_size);
        let pfn = u32::try_from(desc / PAGE_SIZE as u64).map_err(|_| Error::BadQueueAddress)?;
        if !desc.is_multiple_of(PAGE_SIZE as u64)
            || driver != desc + layout.avail_offset() as u64
            || device != desc + layout.used_offset() as u64
            || pfn == 0
        {
            return Err(Error::BadQueueAddress);
        }
        self.write(reg::LEGACY_GUEST_PAGE_SIZE, PAGE_SIZE as u32);
        self.write(reg::LEGACY_QUEUE_ALIGN, RingLayout::LEGACY_ALIGN as u32);
        self.write(reg::LEGACY_QUEUE_PFN, pfn);
        Ok(())
    }

    fn queue_set_ready(&mut self, ready: bool) {
        if self.is_modern() {
            self.write(reg::QUEUE_READY, u32::from(ready));
        } else if !ready {
            // Legacy: a queue is live while its PFN is set.
            self.write(reg::LEGACY_QUEUE_PFN, 0);
        }
    }

    fn queue_ready(&self) -> bool {
        let offset = if self.is_modern() { reg::QUEUE_READY } else { reg::LEGACY_QUEUE_PFN };
        self.read(offset) != 0
    }

    fn notify(&mut self, queue: u16) {
        self.write(reg::QUEUE_NOTIFY, u32::from(queue));
    }

    fn interrupt_status(&self) -> u32 {
        self.read(reg::INTERRUPT_STATUS)
    }

    fn ack_interrupt(&mut self, bits: u32) {
        self.write(reg::INTERRUPT_ACK, bits);
    }

    fn config_generation(&self) -> u32 {
        // Legacy devices have no ConfigGeneration register.
        if self.is_modern() {
            self.read(reg::CONFIG_GENERATION)
        } else {
            0
        }
    }

    fn read_config_u8(&self, offset: usize) -> u8 {
        self.regs.read8(Self::config(offset, 1))
    }

    fn read_config_u16(&self, offset: usize) -> u16 {
        u16::from_le(self.regs.read16(Self::config(offset, 2)))
    }

    fn read_config_u32(&self, offset: usize) -> u32 {
        u32::from_le(self.regs.read32(Self::config(offset, 4)))
    }

    fn write_config_u8(&mut self, offset: usize, value: u8) {
        self.regs.write8(Self::config(offset, 1), value)
    }

    fn write_config_u16(&mut self, offset: usize, value: u16) {
        self.regs.write16(Self::config(offset, 2), value.to_le())
    }

    fn write_config_u32(&mut self, offset: usize, value: u32) {
        self.regs.write32(Self::config(offset, 4), value.to_le())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot's registers as plain memory: reads see what the test put there.
    #[repr(C, align(4096))]
    struct Slot([u32; SLOT_SIZE / 4]);

    impl Slot {
        fn new(magic: u32, version: u32, device_id: u32) -> Self {
            let mut slot = Slot([0; SLOT_SIZE / 4]);
            slot.0[reg::MAGIC_VALUE / 4] = magic;
            slot.0[reg::VERSION / 4] = version;
            slot.0[reg::DEVICE_ID / 4] = device_id;
            slot
        }

        fn probe(&mut self) -> Result<MmioTransport> {
            // SAFETY: the slot is a live, aligned local that reads like registers.
            unsafe { MmioTransport::new(self.0.as_mut_ptr() as usize) }
        }

        fn get(&self, offset: usize) -> u32 {
            // SAFETY: an in-bounds word of the slot; volatile since the transport
            // wrote it through a raw pointer.
            unsafe { core::ptr::read_volatile(&self.0[offset / 4]) }
        }
    }

    #[test]
    fn probing_refuses_bad_magic_version_and_empty_slots() {
        assert_eq!(Slot::new(0x1234, 2, 2).probe().unwrap_err(), Error::BadMagic(0x1234));
        assert_eq!(Slot::new(MAGIC, 3, 2).probe().unwrap_err(), Error::UnsupportedVersion(3));
        assert_eq!(Slot::new(MAGIC, 0, 2).probe().unwrap_err(), Error::UnsupportedVersion(0));
        assert_eq!(Slot::new(MAGIC, 2, 0).probe().unwrap_err(), Error::NoDevice);
        let mut slot = Slot::new(MAGIC, 1, 3);
        let t = slot.probe().unwrap();
        assert_eq!(t.version(), MmioVersion::Legacy);
        assert_eq!(t.device_id(), 3);
        assert!(t.is_legacy());
    }

    #[test]
    fn modern_queue_addresses_go_to_the_64_bit_registers() {
        let mut slot = Slot::new(MAGIC, 2, 2);
        slot.0[reg::QUEUE_NUM_MAX / 4] = 256;
        let mut t = slot.probe().unwrap();
        t.setup_queue(0, 128, 0x1_2345_6000, 0x1_2345_7000, 0x1_2345_8000).unwrap();
        assert_eq!(slot.get(reg::QUEUE_NUM), 128);
        assert_eq!(slot.get(reg::QUEUE_DESC_LOW), 0x2345_6000);
        assert_eq!(slot.get(reg::QUEUE_DESC_HIGH), 1);
        assert_eq!(slot.get(reg::QUEUE_DRIVER_LOW), 0x2345_7000);
        assert_eq!(slot.get(reg::QUEUE_DEVICE_LOW), 0x2345_8000);
        assert_eq!(slot.get(reg::QUEUE_DEVICE_HIGH), 1);
        assert_eq!(slot.get(reg::QUEUE_READY), 1);
        // Now live: a second setup is refused.
        let mut t = slot.probe().unwrap();
        assert_eq!(t.setup_queue(0, 128, 0x1000, 0x2000, 0x3000), Err(Error::QueueUnavailable));
    }

    #[test]
    fn legacy_queue_setup_writes_page_size_align_and_pfn() {
        let mut slot = Slot::new(MAGIC, 1, 2);
        slot.0[reg::QUEUE_NUM_MAX / 4] = 256;
        let mut t = slot.probe().unwrap();
        let layout = RingLayout::new(64);
        let desc = 0x4010_0000u64;
        let avail = desc + layout.avail_offset() as u64;
        let used = desc + layout.used_offset() as u64;
        // Addresses that are not the legacy layout are refused.
        assert_eq!(t.setup_queue(0, 64, desc, avail, used + 8), Err(Error::BadQueueAddress));
        assert_eq!(t.setup_queue(0, 64, desc + 16, avail + 16, used + 16), Err(Error::BadQueueAddress));
        t.setup_queue(0, 64, desc, avail, used).unwrap();
        assert_eq!(slot.get(reg::LEGACY_GUEST_PAGE_SIZE), 4096);
        assert_eq!(slot.get(reg::LEGACY_QUEUE_ALIGN), 4096);
        assert_eq!(slot.get(reg::LEGACY_QUEUE_PFN), 0x40100);
        assert_eq!(slot.get(reg::QUEUE_READY), 0, "legacy never touches QueueReady");
        let mut t = slot.probe().unwrap();
        t.queue_select(0);
        assert!(t.queue_ready());
        t.queue_set_ready(false);
        assert_eq!(slot.get(reg::LEGACY_QUEUE_PFN), 0);
    }

    #[test]
    fn features_use_both_words_on_modern_and_one_on_legacy() {
        let mut slot = Slot::new(MAGIC, 2, 2);
        let mut t = slot.probe().unwrap();
        t.write_driver_features(0x0000_0001_2000_0040);
        // The last word written was the high one (selector 1).
        assert_eq!(slot.get(reg::DRIVER_FEATURES_SEL), 1);
        assert_eq!(slot.get(reg::DRIVER_FEATURES), 1);
        let mut slot = Slot::new(MAGIC, 1, 2);
        let mut t = slot.probe().unwrap();
        t.write_driver_features(0x0000_0001_2000_0040);
        assert_eq!(slot.get(reg::DRIVER_FEATURES_SEL), 0);
        assert_eq!(slot.get(reg::DRIVER_FEATURES), 0x2000_0040);
        assert_eq!(t.config_generation(), 0);
    }

    /// Records every access as (offset, width, value written or 0 for a read).
    #[derive(Default)]
    struct Recorder {
        version: u32,
        log: std::cell::RefCell<std::vec::Vec<(usize, usize, u32)>>,
    }

    impl RegisterAccess for Recorder {
        fn read32(&self, offset: usize) -> u32 {
            self.log.borrow_mut().push((offset, 4, 0));
            match offset {
                reg::MAGIC_VALUE => MAGIC,
                reg::VERSION => self.version,
                reg::DEVICE_ID => 2,
                reg::QUEUE_NUM_MAX => 8,
                reg::STATUS => 0xf,
                _ => 0,
            }
        }
        fn write32(&mut self, offset: usize, value: u32) {
            self.log.borrow_mut().push((offset, 4, value));
        }
        fn read16(&self, offset: usize) -> u16 {
            self.log.borrow_mut().push((offset, 2, 0));
            0
        }
        fn write16(&mut self, offset: usize, value: u16) {
            self.log.borrow_mut().push((offset, 2, value.into()));
        }
        fn read8(&self, offset: usize) -> u8 {
            self.log.borrow_mut().push((offset, 1, 0));
            0
        }
        fn write8(&mut self, offset: usize, value: u8) {
            self.log.borrow_mut().push((offset, 1, value.into()));
        }
    }

    #[test]
    fn control_registers_are_32_bit_and_config_fields_their_own_width() {
        for version in [1, 2] {
            let mut t = MmioTransport::from_registers(Recorder { version, ..Default::default() }).unwrap();
            let layout = RingLayout::new(8);
            let desc = 0x4000_0000u64;
            let _ = t.read_device_features();
            t.write_driver_features(1 << 32 | 1);
            t.set_status(DeviceStatus(3));
            let _ = t.status();
            t.setup_queue(
                0,
                8,
                desc,
                desc + layout.avail_offset() as u64,
                desc + layout.used_offset() as u64,
            )
            .unwrap();
            t.notify(0);
            t.ack_interrupt(t.interrupt_status());
            let _ = t.config_generation();
            let _ = (t.read_config_u8(1), t.read_config_u16(2), t.read_config_u32(4), t.read_config_u64(8));
            t.write_config_u8(1, 1);
            t.write_config_u16(2, 2);
            t.write_config_u32(4, 3);
            let log = t.registers().log.borrow();
            for &(offset, width, _) in log.iter() {
                assert!(offset.is_multiple_of(width), "misaligned {offset:#x}/{width}");
                if offset < CONFIG_OFFSET {
                    assert_eq!(width, 4, "control register {offset:#x} accessed with width {width}");
                }
                if version == 1 {
                    assert!(
                        ![reg::QUEUE_READY, reg::CONFIG_GENERATION, reg::QUEUE_DESC_LOW].contains(&offset),
                        "legacy device got modern register {offset:#x}"
                    );
                } else {
                    assert!(offset != reg::LEGACY_QUEUE_PFN && offset != reg::LEGACY_GUEST_PAGE_SIZE);
                }
            }
            let config: std::vec::Vec<_> = log.iter().filter(|a| a.0 >= CONFIG_OFFSET).copied().collect();
            let c = CONFIG_OFFSET;
            assert_eq!(
                config,
                [
                    (c + 1, 1, 0),
                    (c + 2, 2, 0),
                    (c + 4, 4, 0),
                    (c + 8, 4, 0),
                    (c + 12, 4, 0),
                    (c + 1, 1, 1),
                    (c + 2, 2, 2),
                    (c + 4, 4, 3)
                ]
            );
        }
    }

    #[test]
    fn config_space_uses_accesses_of_the_field_width() {
        let mut slot = Slot::new(MAGIC, 2, 3);
        slot.0[CONFIG_OFFSET / 4] = 0x0019_0050; // cols 80, rows 25
        let mut t = slot.probe().unwrap();
        assert_eq!(t.read_config_u16(0), 80);
        assert_eq!(t.read_config_u16(2), 25);
        assert_eq!(t.read_config_u8(2), 25);
        t.write_config_u32(8, u32::from(b'!'));
        t.write_config_u8(5, 7);
        assert_eq!(slot.get(CONFIG_OFFSET + 8), 0x21);
        assert_eq!(slot.get(CONFIG_OFFSET + 4), 0x700);
    }
}
