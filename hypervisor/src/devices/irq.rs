//! Interrupt lines from devices to the VM's interrupt controller.
//!
//! A device only knows its own state; [`Wired`] holds it with the INTID of its line
//! and the level it last drove, and after every access or event tells the
//! [`InterruptSink`] when that level changed. Nobody polls a device's line, and an
//! access that changes nothing (most reads) never reaches the controller.

use super::{AccessWidth, MmioDevice};

/// Where device interrupt lines go: during an exit, the VM's vGIC (which also
/// gathers the vCPUs that must be kicked to see the change); in tests, a record.
pub trait InterruptSink {
    /// Drives the level-sensitive interrupt `intid` to `level`.
    fn set_level(&mut self, intid: u32, level: bool);
}

/// A sink that drops every change: for a device nobody listens to (tests, fuzzing).
pub struct Unwired;

impl InterruptSink for Unwired {
    fn set_level(&mut self, _intid: u32, _level: bool) {}
}

/// A device with its interrupt line.
#[derive(Debug)]
pub struct Wired<D> {
    device: D,
    intid: u32,
    /// The level the sink last heard.
    level: bool,
}

impl<D: MmioDevice> Wired<D> {
    /// `device`, its line `intid` low (as the controller's reset state has it).
    pub fn new(device: D, intid: u32) -> Self {
        Self { device, intid, level: false }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, to change; its line follows at the next [`Self::update`] or access
    /// (or at once with [`Self::drive_now`]).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Tells `irq` the device's level now, if it changed.
    pub fn drive_now(&mut self, irq: &mut impl InterruptSink) {
        self.drive(irq);
    }

    /// A load from the device (see [`MmioDevice::read`]).
    #[inline]
    pub fn read(&mut self, offset: u64, width: AccessWidth, irq: &mut impl InterruptSink) -> u64 {
        let value = self.device.read(offset, width);
        self.drive(irq);
        value
    }

    /// A store to the device (see [`MmioDevice::write`]).
    #[inline]
    pub fn write(&mut self, offset: u64, width: AccessWidth, value: u64, irq: &mut impl InterruptSink) {
        self.device.write(offset, width, value);
        self.drive(irq);
    }

    /// Anything else that changes the device (console input, left-over work): runs
    /// `f` on it, then drives the line from its new state.
    pub fn update<R>(&mut self, irq: &mut impl InterruptSink, f: impl FnOnce(&mut D) -> R) -> R {
        let result = f(&mut self.device);
        self.drive(irq);
        result
    }

    /// Resets the device; its line is low, as the controller's, which is reset with it.
    pub fn reset(&mut self) {
        self.device.reset();
        self.level = false;
    }

    /// Tells the sink the line's level, if it changed.
    #[inline]
    fn drive(&mut self, irq: &mut impl InterruptSink) {
        let level = self.device.interrupt_level();
        if level != self.level {
            self.level = level;
            irq.set_level(self.intid, level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A device whose line follows a register at offset 0.
    #[derive(Default)]
    struct Latch(u64);

    impl MmioDevice for Latch {
        fn name(&self) -> &str {
            "latch"
        }
        fn read(&mut self, _offset: u64, _width: AccessWidth) -> u64 {
            self.0
        }
        fn write(&mut self, _offset: u64, _width: AccessWidth, value: u64) {
            self.0 = value;
        }
        fn interrupt_level(&self) -> bool {
            self.0 != 0
        }
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    #[derive(Default)]
    struct Record(Vec<(u32, bool)>);

    impl InterruptSink for Record {
        fn set_level(&mut self, intid: u32, level: bool) {
            self.0.push((intid, level));
        }
    }

    #[test]
    fn the_sink_hears_changes_of_level_only() {
        let mut dev = Wired::new(Latch::default(), 48);
        let mut irq = Record::default();
        dev.read(0, AccessWidth::Word, &mut irq);
        dev.write(0, AccessWidth::Word, 1, &mut irq);
        dev.write(0, AccessWidth::Word, 2, &mut irq);
        dev.read(0, AccessWidth::Word, &mut irq);
        dev.update(&mut irq, |d| d.0 = 0);
        dev.update(&mut irq, |d| d.0 = 0);
        assert_eq!(irq.0, [(48, true), (48, false)]);
    }

    #[test]
    fn a_reset_device_starts_low_again() {
        let mut dev = Wired::new(Latch::default(), 33);
        let mut irq = Record::default();
        dev.write(0, AccessWidth::Word, 1, &mut irq);
        dev.reset();
        // The controller was reset too: raising the line again is news to it.
        dev.write(0, AccessWidth::Word, 1, &mut irq);
        assert_eq!(irq.0, [(33, true), (33, true)]);
    }
}
