//! How a driver reaches its device: the [`Transport`] trait (virtio 1.2 §4) and its
//! implementation for virtio-mmio ([`mmio::MmioTransport`], §4.2).

pub mod mmio;

use core::ops::{BitOr, BitOrAssign};

use crate::error::{Error, Result};
use crate::hal::PhysAddr;

/// Device IDs (virtio 1.2 §5).
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device (§5.2).
    pub const BLOCK: u32 = 2;
    /// Console (§5.3).
    pub const CONSOLE: u32 = 3;
    /// Entropy source (§5.4).
    pub const ENTROPY: u32 = 4;
}

/// The device status field (virtio 1.2 §2.1): bits the driver sets as it
/// initialises the device, and one the device sets when it needs a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStatus(pub u32);

impl DeviceStatus {
    /// The driver has noticed the device.
    pub const ACKNOWLEDGE: Self = Self(1);
    /// The driver knows how to drive the device.
    pub const DRIVER: Self = Self(2);
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: Self = Self(4);
    /// The driver has acknowledged the features it understands; feature negotiation
    /// is complete (not used by legacy devices).
    pub const FEATURES_OK: Self = Self(8);
    /// The device has hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: Self = Self(64);
    /// The driver gave up on the device.
    pub const FAILED: Self = Self(128);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for DeviceStatus {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for DeviceStatus {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// InterruptStatus bits (virtio 1.2 §4.2.2).
pub mod interrupt {
    /// The device used a buffer in at least one virtqueue.
    pub const USED_BUFFER: u32 = 1;
    /// The device's configuration changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// The operations a virtio transport offers a driver.
///
/// The queue operations act on the queue chosen by the last
/// [`queue_select`](Transport::queue_select), as the registers do. Configuration-space
/// offsets are bytes from the start of the device-specific configuration.
pub trait Transport {
    /// The device type (see [`device_id`]).
    fn device_id(&self) -> u32;

    /// Whether the device speaks the legacy interface (virtio-mmio version 1): no
    /// VERSION_1, no FEATURES_OK, no ConfigGeneration, one 32-bit feature word.
    fn is_legacy(&self) -> bool;

    /// Reads all 64 feature bits the device offers.
    fn read_device_features(&mut self) -> u64;

    /// Writes the feature bits the driver accepts.
    fn write_driver_features(&mut self, features: u64);

    /// Reads the device status.
    fn status(&self) -> DeviceStatus;

    /// Writes the device status; 0 resets the device.
    fn set_status(&mut self, status: DeviceStatus);

    /// Selects the queue that the queue operations below act on.
    fn queue_select(&mut self, queue: u16);

    /// The selected queue's maximum size; 0 when the queue does not exist.
    fn queue_max_size(&self) -> u16;

    /// Sets the selected queue's size.
    fn queue_set_size(&mut self, size: u16);

    /// Gives the device the selected queue's descriptor table, driver (available)
    /// area and device (used) area.
    ///
    /// # Errors
    ///
    /// [`Error::BadQueueAddress`] when the transport cannot express them (a legacy
    /// transport needs the legacy layout, see [`crate::queue::RingLayout`]).
    fn queue_set_addresses(&mut self, desc: PhysAddr, driver: PhysAddr, device: PhysAddr) -> Result;

    /// Enables (or, before DRIVER_OK, disables) the selected queue.
    fn queue_set_ready(&mut self, ready: bool);

    /// Whether the selected queue is live (set up and enabled).
    fn queue_ready(&self) -> bool;

    /// Tells the device that `queue` has new available buffers.
    fn notify(&mut self, queue: u16);

    /// Reads the interrupt status (see [`interrupt`]).
    fn interrupt_status(&self) -> u32;

    /// Acknowledges the interrupt causes in `bits`.
    fn ack_interrupt(&mut self, bits: u32);

    /// Reads InterruptStatus and acknowledges every bit set; returns them (0 if the
    /// device raised nothing). What a driver's interrupt handler does first.
    fn take_interrupt(&mut self) -> u32 {
        let status = self.interrupt_status();
        if status != 0 {
            self.ack_interrupt(status);
        }
        status
    }

    /// The configuration generation (§2.5.1); always 0 on legacy devices.
    fn config_generation(&self) -> u32;

    /// Reads the configuration byte at `offset`.
    fn read_config_u8(&self, offset: usize) -> u8;
    /// Reads the little-endian `u16` at `offset` (2-byte aligned).
    fn read_config_u16(&self, offset: usize) -> u16;
    /// Reads the little-endian `u32` at `offset` (4-byte aligned).
    fn read_config_u32(&self, offset: usize) -> u32;
    /// Writes the configuration byte at `offset`.
    fn write_config_u8(&mut self, offset: usize, value: u8);
    /// Writes a little-endian `u16` at `offset` (2-byte aligned).
    fn write_config_u16(&mut self, offset: usize, value: u16);
    /// Writes a little-endian `u32` at `offset` (4-byte aligned).
    fn write_config_u32(&mut self, offset: usize, value: u32);

    /// Reads a 64-bit configuration field as two 32-bit reads, repeating while the
    /// configuration generation changes underneath (§2.5.1, §4.2.2.2).
    fn read_config_u64(&self, offset: usize) -> u64 {
        loop {
            let before = self.config_generation();
            let lo = self.read_config_u32(offset);
            let hi = self.read_config_u32(offset + 4);
            if self.config_generation() == before {
                return u64::from(hi) << 32 | u64::from(lo);
            }
        }
    }

    /// Resets the device (§2.1.2): writes 0 to the status and waits for it to read 0.
    ///
    /// # Errors
    ///
    /// [`Error::ResetTimeout`] when the device never reads 0.
    fn reset(&mut self) -> Result {
        self.set_status(DeviceStatus(0));
        for _ in 0..RESET_POLLS {
            if self.status().0 == 0 {
                return Ok(());
            }
            crate::relax::relax();
        }
        Err(Error::ResetTimeout)
    }

    /// Sets up queue `queue` with `size` entries at the given addresses and enables
    /// it (§4.2.3.2 for virtio-mmio).
    ///
    /// # Errors
    ///
    /// [`Error::QueueUnavailable`] when the queue does not exist, is already live, or
    /// is smaller than `size`; [`Error::BadQueueAddress`] as for
    /// [`queue_set_addresses`](Transport::queue_set_addresses).
    fn setup_queue(
        &mut self,
        queue: u16,
        size: u16,
        desc: PhysAddr,
        driver: PhysAddr,
        device: PhysAddr,
    ) -> Result {
        self.queue_select(queue);
        if self.queue_ready() || self.queue_max_size() < size || size == 0 {
            return Err(Error::QueueUnavailable);
        }
        self.queue_set_size(size);
        self.queue_set_addresses(desc, driver, device)?;
        self.queue_set_ready(true);
        Ok(())
    }
}

/// How many times [`Transport::reset`] reads the status back before giving up.
const RESET_POLLS: usize = 1_000_000;

impl<T: Transport + ?Sized> Transport for &mut T {
    fn device_id(&self) -> u32 {
        (**self).device_id()
    }
    fn is_legacy(&self) -> bool {
        (**self).is_legacy()
    }
    fn read_device_features(&mut self) -> u64 {
        (**self).read_device_features()
    }
    fn write_driver_features(&mut self, features: u64) {
        (**self).write_driver_features(features)
    }
    fn status(&self) -> DeviceStatus {
        (**self).status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        (**self).set_status(status)
    }
    fn queue_select(&mut self, queue: u16) {
        (**self).queue_select(queue)
    }
    fn queue_max_size(&self) -> u16 {
        (**self).queue_max_size()
    }
    fn queue_set_size(&mut self, size: u16) {
        (**self).queue_set_size(size)
    }
    fn queue_set_addresses(&mut self, desc: PhysAddr, driver: PhysAddr, device: PhysAddr) -> Result {
        (**self).queue_set_addresses(desc, driver, device)
    }
    fn queue_set_ready(&mut self, ready: bool) {
        (**self).queue_set_ready(ready)
    }
    fn queue_ready(&self) -> bool {
        (**self).queue_ready()
    }
    fn notify(&mut self, queue: u16) {
        (**self).notify(queue)
    }
    fn interrupt_status(&self) -> u32 {
        (**self).interrupt_status()
    }
    fn ack_interrupt(&mut self, bits: u32) {
        (**self).ack_interrupt(bits)
    }
    fn config_generation(&self) -> u32 {
        (**self).config_generation()
    }
    fn read_config_u8(&self, offset: usize) -> u8 {
        (**self).read_config_u8(offset)
    }
    fn read_config_u16(&self, offset: usize) -> u16 {
        (**self).read_config_u16(offset)
    }
    fn read_config_u32(&self, offset: usize) -> u32 {
        (**self).read_config_u32(offset)
    }
    fn write_config_u8(&mut self, offset: usize, value: u8) {
        (**self).write_config_u8(offset, value)
    }
    fn write_config_u16(&mut self, offset: usize, value: u16) {
        (**self).write_config_u16(offset, value)
    }
    fn write_config_u32(&mut self, offset: usize, value: u32) {
        (**self).write_config_u32(offset, value)
    }
}
