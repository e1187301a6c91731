//! What the trap path needs of the trapping vCPU beyond its saved registers: a
//! few EL1 system registers, and its stage-1 translation. The bare-metal build
//! reads the real registers (`el2::El1Cpu`); host tests use values.

use super::esr::SysReg;
use super::inject::Injection;

/// The trapping vCPU's state that is not in its trap frame.
pub trait GuestCpu {
    /// VBAR_EL1.
    fn vbar_el1(&self) -> u64;
    /// SCTLR_EL1.
    fn sctlr_el1(&self) -> u64;
    /// Writes ELR_EL1, SPSR_EL1, ESR_EL1 and FAR_EL1 for an injected exception.
    fn set_exception_registers(&mut self, injection: &Injection);
    /// The real value of an ID register or of `PMCR_EL0`.
    fn read_register(&self, reg: SysReg) -> u64;
    /// Writes `PMCR_EL0` (the one register Sluice writes for a trapped access).
    fn write_pmcr(&mut self, value: u64);
    /// The guest-physical address of guest virtual address `va` (stage 1 only), if
    /// the guest's own tables map it.
    fn guest_va_to_ipa(&self, va: u64) -> Option<u64>;
}
