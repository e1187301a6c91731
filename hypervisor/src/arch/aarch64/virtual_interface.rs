//! The GIC's virtual CPU interface, as the vGIC drives it on the CPU a vCPU runs
//! on: its list registers (ICH_LR<n>_EL2), its control register (ICH_HCR_EL2), the
//! deactivation of the physical interrupts linked to virtual ones, and the level of
//! the sources behind those links (the EL1 timers, the PMU). The bare-metal build implements it over the
//! real registers (`el2::ThisCpuInterface`); host tests over values.

/// One CPU's virtual interface.
pub trait VirtualInterface {
    /// How many list registers the CPU has.
    fn list_register_count(&self) -> usize;
    /// List register `index`.
    fn read_lr(&self, index: usize) -> u64;
    /// Writes list register `index`.
    fn write_lr(&mut self, index: usize, value: u64);
    /// Enables the interface; with `more_pending`, also the maintenance interrupt
    /// that says the list registers ran out of pending entries (ICH_HCR_EL2.NPIE).
    fn enable(&mut self, more_pending: bool);
    /// Deactivates physical interrupt `intid` (one the guest can no longer).
    fn deactivate_physical(&mut self, intid: u32);
    /// Whether the source behind hardware-linked `intid` (an EL1 timer, the PMU)
    /// asserts its interrupt.
    fn linked_ppi_asserts(&self, intid: u32) -> bool;
}

/// For host tests: a CPU with no list registers and linked sources that never assert, so
/// whatever is pending stays in the vGIC, where the test can look.
#[cfg(test)]
pub struct NoListRegisters;

#[cfg(test)]
impl VirtualInterface for NoListRegisters {
    fn list_register_count(&self) -> usize {
        0
    }
    fn read_lr(&self, _index: usize) -> u64 {
        0
    }
    fn write_lr(&mut self, _index: usize, _value: u64) {}
    fn enable(&mut self, _more_pending: bool) {}
    fn deactivate_physical(&mut self, _intid: u32) {}
    fn linked_ppi_asserts(&self, _intid: u32) -> bool {
        false
    }
}
