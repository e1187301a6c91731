//! Register-access wrappers that change what a driver sees of a device, to make the
//! variants a test needs from one device model.
//!
//! - [`FeatureFilter`] edits the DeviceFeatures words: hiding bits makes a driver
//!   that accepts whatever is offered run without them (EVENT_IDX off, INDIRECT
//!   off); adding bits makes the driver accept features the device never offered,
//!   which the device then refuses (FEATURES_OK stays clear).
//! - [`QueueLimit`] caps QueueNumMax, as a device with smaller queues would offer;
//! - [`WriteHook`] runs a closure after each store reaches the device (to make the
//!   host side act at an exact point of the driver's sequence).

use guest_drivers::transport::mmio::{reg, RegisterAccess};

/// The 8- and 16-bit accesses (configuration space), which these wrappers pass on
/// unchanged to `self.inner`.
macro_rules! forward_narrow_accesses {
    () => {
        fn read16(&self, offset: usize) -> u16 {
            self.inner.read16(offset)
        }

        fn write16(&mut self, offset: usize, value: u16) {
            self.inner.write16(offset, value);
        }

        fn read8(&self, offset: usize) -> u8 {
            self.inner.read8(offset)
        }

        fn write8(&mut self, offset: usize, value: u8) {
            self.inner.write8(offset, value);
        }
    };
}

/// Edits the DeviceFeatures words the driver reads: `hide` bits read as 0, `add`
/// bits read as 1. Everything else passes through unchanged.
#[derive(Debug, Clone)]
pub struct FeatureFilter<R> {
    inner: R,
    hide: u64,
    add: u64,
    /// DeviceFeaturesSel as the driver last wrote it.
    sel: u32,
}

impl<R: RegisterAccess> FeatureFilter<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, hide: u64, add: u64) -> Self {
        Self { inner, hide, add, sel: 0 }
    }
}

impl<R: RegisterAccess> RegisterAccess for FeatureFilter<R> {
    fn read32(&self, offset: usize) -> u32 {
        let value = self.inner.read32(offset);
        if offset != reg::DEVICE_FEATURES || self.sel > 1 {
            return value;
        }
        let shift = 32 * self.sel;
        (value & !((self.hide >> shift) as u32)) | (self.add >> shift) as u32
    }

    fn write32(&mut self, offset: usize, value: u32) {
        if offset == reg::DEVICE_FEATURES_SEL {
            self.sel = value;
        }
        self.inner.write32(offset, value);
    }

    forward_narrow_accesses!();
}

/// Caps the QueueNumMax the driver reads at `max` (a power of two), as a device that
/// offers smaller queues would; the device model takes any size up to its own.
#[derive(Debug, Clone)]
pub struct QueueLimit<R> {
    inner: R,
    max: u32,
}

impl<R: RegisterAccess> QueueLimit<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, max: u16) -> Self {
        Self { inner, max: max.into() }
    }
}

impl<R: RegisterAccess> RegisterAccess for QueueLimit<R> {
    fn read32(&self, offset: usize) -> u32 {
        let value = self.inner.read32(offset);
        if offset == reg::QUEUE_NUM_MAX {
            value.min(self.max)
        } else {
            value
        }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.inner.write32(offset, value);
    }

    forward_narrow_accesses!();
}

/// Runs `hook(offset, value)` after every 32-bit store reaches the device.
pub struct WriteHook<R, F> {
    inner: R,
    hook: F,
}

impl<R, F> std::fmt::Debug for WriteHook<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHook").finish_non_exhaustive()
    }
}

impl<R: RegisterAccess, F: FnMut(usize, u32)> WriteHook<R, F> {
    /// Wraps `inner`.
    pub fn new(inner: R, hook: F) -> Self {
        Self { inner, hook }
    }
}

impl<R: RegisterAccess, F: FnMut(usize, u32)> RegisterAccess for WriteHook<R, F> {
    fn read32(&self, offset: usize) -> u32 {
        self.inner.read32(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.inner.write32(offset, value);
        (self.hook)(offset, value);
    }

    forward_narrow_accesses!();
}
