//! What a trapped system register access does.
//!
//! Sluice traps the ID registers (HCR_EL2.TID3), the PMU (MDCR_EL2.TPM/TPMCR), the
//! debug registers (MDCR_EL2.TDA/TDOSA/TDRA) and implementation-defined registers
//! (HCR_EL2.TIDCP). Guests see ID registers that advertise only what Sluice
//! virtualises; PMU and debug registers read as zero and ignore writes; anything
//! else is an undefined instruction in the guest.

use super::esr::{SysReg, SysRegAccess};

/// What the trap path does with a trapped access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysRegOutcome {
    /// Put this value in the transfer register and step past the instruction.
    Read(u64),
    /// Ignore the write and step past the instruction.
    Ignored,
    /// Inject an undefined instruction exception.
    Undefined,
}

/// OSLSR_EL1 as the guest sees it: OS lock implemented (OSLM = 0b10), unlocked.
const OSLSR_EL1_VALUE: u64 = 0b1000;

/// Decides a trapped access; `read_id` reads the real value of an ID register.
pub fn emulate(access: SysRegAccess, read_id: impl FnOnce(SysReg) -> u64) -> SysRegOutcome {
    let reg = access.reg;
    if is_id_register(reg) {
        return if access.read {
            SysRegOutcome::Read(sanitize_id(reg, read_id(reg)))
        } else {
            SysRegOutcome::Undefined
        };
    }
    if is_pmu_register(reg) || reg.op0 == 2 {
        return match (access.read, reg) {
            (true, OSLSR_EL1) => SysRegOutcome::Read(OSLSR_EL1_VALUE),
            (true, _) => SysRegOutcome::Read(0),
            (false, _) => SysRegOutcome::Ignored,
        };
    }
    SysRegOutcome::Undefined
}

/// ID_AA64PFR0_EL1.
pub const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
/// ID_AA64PFR1_EL1.
pub const ID_AA64PFR1_EL1: SysReg = SysReg::new(3, 0, 0, 4, 1);
/// ID_AA64DFR0_EL1.
pub const ID_AA64DFR0_EL1: SysReg = SysReg::new(3, 0, 0, 5, 0);
/// ID_AA64DFR1_EL1.
pub const ID_AA64DFR1_EL1: SysReg = SysReg::new(3, 0, 0, 5, 1);
/// OSLSR_EL1.
pub const OSLSR_EL1: SysReg = SysReg::new(2, 0, 1, 1, 4);

/// The feature ID space: op0 = 3, op1 = 0, CRn = 0, CRm = 1..=7 (Arm ARM D23.3.1).
pub fn is_id_register(reg: SysReg) -> bool {
    reg.op0 == 3 && reg.op1 == 0 && reg.crn == 0 && (1..=7).contains(&reg.crm)
}

/// AArch32 ID registers (CRm 1..=3): Sluice guests run AArch64 only at EL0 and EL1.
fn is_aarch32_id_register(reg: SysReg) -> bool {
    is_id_register(reg) && reg.crm <= 3
}

/// PMU registers: PMCR_EL0 and friends (CRn 9), event counters (CRn 14, CRm 8..=15).
fn is_pmu_register(reg: SysReg) -> bool {
    let el0_block = reg.op0 == 3 && reg.op1 == 3 && reg.crn == 9 && (12..=14).contains(&reg.crm);
    let intens = reg.op0 == 3 && reg.op1 == 0 && reg.crn == 9 && reg.crm == 14 && matches!(reg.op2, 1 | 2);
    let counters = reg.op0 == 3 && reg.op1 == 3 && reg.crn == 14 && reg.crm >= 8;
    el0_block || intens || counters
}

/// Clears `[lo, lo + 4)` in `value`.
const fn clear_field(value: u64, lo: u32) -> u64 {
    value & !(0xf << lo)
}

/// The value of an ID register as a guest sees it.
pub fn sanitize_id(reg: SysReg, real: u64) -> u64 {
    if is_aarch32_id_register(reg) {
        return 0;
    }
    match reg {
        // EL0 and EL1 AArch64 only (0b0001); no AMU (bits 47:44), no MPAM (43:40),
        // no RAS (31:28): they would need state Sluice doesn't switch.
        ID_AA64PFR0_EL1 => {
            let v = clear_field(clear_field(clear_field(real, 44), 40), 28);
            (v & !0xff) | 0x11
        }
        // No MTE (11:8), SME (27:24), MPAM fraction (19:16), RAS fraction (15:12).
        ID_AA64PFR1_EL1 => clear_field(clear_field(clear_field(clear_field(real, 8), 24), 16), 12),
        // Keep DebugVer, BRPs, WRPs and CTX_CMPs; no trace, PMU, SPE, BRBE or the rest.
        ID_AA64DFR0_EL1 => real & 0xf0f0_f00f,
        ID_AA64DFR1_EL1 => 0,
        _ => real,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reg: SysReg) -> SysRegAccess {
        SysRegAccess { reg, rt: 0, read: true }
    }

    fn write(reg: SysReg) -> SysRegAccess {
        SysRegAccess { reg, rt: 0, read: false }
    }

    #[test]
    fn dfr0_hides_pmu_and_trace_but_keeps_debug() {
        // QEMU max: PMUVer 6, TraceVer 0, DebugVer 9, BRPs 5, WRPs 3, CTX_CMPs 1.
        let real = 0x0000_0001_1030_5609;
        assert_eq!(emulate(read(ID_AA64DFR0_EL1), |_| real), SysRegOutcome::Read(0x1030_5009));
    }

    #[test]
    fn pfr0_advertises_aarch64_only_without_amu_mpam_ras() {
        let real = 0x1201_1011_1111_2222;
        let v = sanitize_id(ID_AA64PFR0_EL1, real);
        assert_eq!(v & 0xff, 0x11);
        assert_eq!(v >> 40 & 0xff, 0);
        assert_eq!(v >> 28 & 0xf, 0);
        assert_eq!(v >> 32 & 0xf, 1, "SVE stays visible");
    }

    #[test]
    fn pfr1_hides_mte_and_sme() {
        let v = sanitize_id(ID_AA64PFR1_EL1, 0x0000_0000_0101_0321);
        assert_eq!(v, 0x0000_0000_0000_0021);
    }

    #[test]
    fn id_registers_are_read_only_and_aarch32_ones_read_zero() {
        assert_eq!(emulate(write(ID_AA64PFR0_EL1), |_| 0), SysRegOutcome::Undefined);
        let id_pfr0 = SysReg::new(3, 0, 0, 1, 0);
        assert_eq!(emulate(read(id_pfr0), |_| 0x1234), SysRegOutcome::Read(0));
        let isar0 = SysReg::new(3, 0, 0, 6, 0);
        assert_eq!(emulate(read(isar0), |_| 0x1234), SysRegOutcome::Read(0x1234));
    }

    #[test]
    fn pmu_and_debug_read_zero_and_ignore_writes() {
        let pmcr_el0 = SysReg::new(3, 3, 9, 12, 0);
        assert_eq!(emulate(read(pmcr_el0), |_| unreachable!()), SysRegOutcome::Read(0));
        assert_eq!(emulate(write(pmcr_el0), |_| unreachable!()), SysRegOutcome::Ignored);
        let pmintenset = SysReg::new(3, 0, 9, 14, 1);
        assert_eq!(emulate(write(pmintenset), |_| 0), SysRegOutcome::Ignored);
        let mdscr_el1 = SysReg::new(2, 0, 0, 2, 2);
        assert_eq!(emulate(read(mdscr_el1), |_| 0), SysRegOutcome::Read(0));
        assert_eq!(emulate(read(OSLSR_EL1), |_| 0), SysRegOutcome::Read(0b1000));
    }

    #[test]
    fn anything_else_is_undefined() {
        let impl_defined = SysReg::new(3, 1, 15, 2, 0);
        assert_eq!(emulate(read(impl_defined), |_| 0), SysRegOutcome::Undefined);
    }
}
