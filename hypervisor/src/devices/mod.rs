//! Emulated devices, the MMIO bus that says which one owns an address, and the
//! interrupt lines they drive.
//!
//! A device is a state machine over register offsets: the trap path reaches it only
//! through [`MmioDevice::read`] and [`MmioDevice::write`], and hears its interrupt
//! line through [`Wired`], which pushes each change of level to an
//! [`InterruptSink`] (the VM's vGIC).

pub mod bus;
pub mod irq;
pub mod pl011;
pub mod pl031;
pub mod virtio;

pub use crate::arch::aarch64::esr::AccessWidth;
pub use bus::{BusError, MmioBus};
pub use irq::{InterruptSink, Unwired, Wired};

/// An emulated device behind a range of guest-physical addresses.
///
/// Offsets are relative to the start of the device's range. A device never fails an
/// access: registers it doesn't implement read as zero and ignore writes.
pub trait MmioDevice: Send {
    /// Short name for logs ("pl011", "virtio-blk").
    fn name(&self) -> &str;
    /// A load of `width` at `offset`; the result is zero-extended to 64 bits.
    fn read(&mut self, offset: u64, width: AccessWidth) -> u64;
    /// A store of the low `width` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, width: AccessWidth, value: u64);
    /// Whether the device asserts its interrupt line now.
    fn interrupt_level(&self) -> bool;
    /// Returns the device to its reset state (its line goes low).
    fn reset(&mut self);
}
