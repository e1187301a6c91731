//! `virtio_drivers::transport::Transport` over a [`Slot`]: each method makes the
//! register accesses the peer's own `MmioTransport` makes (virtio 1.2 §4.2.2, and
//! §4.2.4 for legacy), as traps into Sluice's device model.

use hypervisor::devices::AccessWidth;
use sluice_tests::slot::Slot;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr, Result, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

mod reg {
    pub const DEVICE_ID: usize = 0x008;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const GUEST_PAGE_SIZE: usize = 0x028;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM_MAX: usize = 0x034;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_ALIGN: usize = 0x03c;
    pub const QUEUE_PFN: usize = 0x040;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const CONFIG_GENERATION: usize = 0x0fc;
    pub const CONFIG: usize = 0x100;
    pub const CONFIG_SIZE: usize = 0x100;
}

/// The peer's transport to a device model in a slot.
#[derive(Debug)]
pub struct PeerTransport {
    slot: Slot,
    device_type: DeviceType,
    legacy: bool,
    /// Feature bits the driver is not shown.
    hide: u64,
}

impl PeerTransport {
    /// A transport to the device in `slot`.
    ///
    /// # Panics
    ///
    /// If the slot holds no device of a type the peer knows.
    pub fn new(slot: &Slot) -> Self {
        Self::hiding(slot, 0)
    }

    /// A transport that hides the feature bits `hide` from the driver.
    ///
    /// # Panics
    ///
    /// As for [`new`](Self::new).
    pub fn hiding(slot: &Slot, hide: u64) -> Self {
        let device_type = DeviceType::try_from(slot.read32(reg::DEVICE_ID)).expect("a known device type");
        let legacy = slot.read32(reg::VERSION) == 1;
        Self { slot: slot.clone(), device_type, legacy, hide }
    }

    fn read(&self, offset: usize) -> u32 {
        self.slot.read32(offset)
    }

    fn write(&mut self, offset: usize, value: u32) {
        self.slot.write32(offset, value);
    }

    /// One configuration access of `width` bytes at `offset`.
    fn config_read(&self, offset: usize, width: AccessWidth) -> u64 {
        self.slot.read((reg::CONFIG + offset) as u64, width)
    }

    /// Splits `len` bytes at `offset` into the widest aligned accesses (at most 4
    /// bytes, as the peer's MMIO transport), calling `f(offset, width)` for each.
    fn accesses(offset: usize, len: usize, mut f: impl FnMut(usize, AccessWidth)) {
        let mut at = offset;
        while at < offset + len {
            let left = offset + len - at;
            let width = [4, 2, 1].into_iter().find(|&w| left >= w && at.is_multiple_of(w)).unwrap_or(1);
            f(at, AccessWidth::from_bytes(width as u64).expect("1, 2 or 4"));
            at += width;
        }
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        // As the peer's MmioTransport: reset the device when the transport goes.
        self.set_status(DeviceStatus::empty());
    }
}

impl Transport for PeerTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.write(reg::DEVICE_FEATURES_SEL, 0);
        let low = self.read(reg::DEVICE_FEATURES);
        self.write(reg::DEVICE_FEATURES_SEL, 1);
        let high = self.read(reg::DEVICE_FEATURES);
        (u64::from(high) << 32 | u64::from(low)) & !self.hide
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.write(reg::DRIVER_FEATURES_SEL, 0);
        self.write(reg::DRIVER_FEATURES, driver_features as u32);
        self.write(reg::DRIVER_FEATURES_SEL, 1);
        self.write(reg::DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.write(reg::QUEUE_SEL, queue.into());
        self.read(reg::QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.write(reg::QUEUE_NOTIFY, queue.into());
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.read(reg::STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.write(reg::STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        if self.legacy {
            self.write(reg::GUEST_PAGE_SIZE, guest_page_size);
        }
    }

    fn requires_legacy_layout(&self) -> bool {
        self.legacy
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.write(reg::QUEUE_SEL, queue.into());
        self.write(reg::QUEUE_NUM, size);
        if self.legacy {
            // The peer lays a legacy queue out from one page; only the PFN goes to the
            // device, which finds the other areas from it (§2.7's legacy layout).
            assert_eq!(descriptors % PAGE_SIZE as u64, 0);
            assert_eq!(driver_area, descriptors + 16 * u64::from(size));
            assert!(device_area > driver_area && device_area.is_multiple_of(PAGE_SIZE as u64));
            self.write(reg::QUEUE_ALIGN, PAGE_SIZE as u32);
            self.write(reg::QUEUE_PFN, (descriptors / PAGE_SIZE as u64) as u32);
        } else {
            for (low, addr) in [
                (reg::QUEUE_DESC_LOW, descriptors),
                (reg::QUEUE_DRIVER_LOW, driver_area),
                (reg::QUEUE_DEVICE_LOW, device_area),
            ] {
                self.write(low, addr as u32);
                self.write(low + 4, (addr >> 32) as u32);
            }
            self.write(reg::QUEUE_READY, 1);
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        self.write(reg::QUEUE_SEL, queue.into());
        if self.legacy {
            self.write(reg::QUEUE_NUM, 0);
            self.write(reg::QUEUE_ALIGN, 0);
            self.write(reg::QUEUE_PFN, 0);
        } else {
            self.write(reg::QUEUE_READY, 0);
            while self.read(reg::QUEUE_READY) != 0 {}
            self.write(reg::QUEUE_NUM, 0);
            for low in [reg::QUEUE_DESC_LOW, reg::QUEUE_DRIVER_LOW, reg::QUEUE_DEVICE_LOW] {
                self.write(low, 0);
                self.write(low + 4, 0);
            }
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.write(reg::QUEUE_SEL, queue.into());
        let offset = if self.legacy { reg::QUEUE_PFN } else { reg::QUEUE_READY };
        self.read(offset) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let pending = self.read(reg::INTERRUPT_STATUS);
        if pending != 0 {
            self.write(reg::INTERRUPT_ACK, pending);
        }
        InterruptStatus::from_bits_truncate(pending)
    }

    fn read_config_generation(&self) -> u32 {
        self.read(reg::CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
        let len = size_of::<T>();
        if offset + len > reg::CONFIG_SIZE {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut bytes = vec![0u8; len];
        Self::accesses(offset, len, |at, width| {
            let value = self.config_read(at, width).to_le_bytes();
            let n = width.bytes() as usize;
            bytes[at - offset..at - offset + n].copy_from_slice(&value[..n]);
        });
        T::read_from_bytes(&bytes).map_err(|_| Error::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(&mut self, offset: usize, value: T) -> Result<()> {
        let bytes = value.as_bytes();
        if offset + bytes.len() > reg::CONFIG_SIZE {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let slot = self.slot.clone();
        Self::accesses(offset, bytes.len(), |at, width| {
            let mut word = [0u8; 8];
            let n = width.bytes() as usize;
            word[..n].copy_from_slice(&bytes[at - offset..at - offset + n]);
            slot.write((reg::CONFIG + at) as u64, width, u64::from_le_bytes(word));
        });
        Ok(())
    }
}
