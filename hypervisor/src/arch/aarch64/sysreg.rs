//! What a trapped system register access does.
//!
//! Sluice traps the ID registers (HCR_EL2.TID3) and implementation-defined
//! registers (HCR_EL2.TIDCP); the PMU's registers when the guest has no PMU
//! (MDCR_EL2.TPM), or `PMCR_EL0` alone when it must keep its DP bit
//! (MDCR_EL2.TPMCR; see [`super::features`]). Guests see ID registers that
//! advertise what they get; a hidden PMU reads as zero and ignores writes;
//! anything else that traps is an undefined instruction in the guest.

use super::esr::{SysReg, SysRegAccess};
use super::features::{GuestFeatures, Pmu};

/// What the trap path does with a trapped access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysRegOutcome {
    /// Put this value in the transfer register and step past the instruction.
    Read(u64),
    /// Write this value to the register and step past the instruction.
    Write(u64),
    /// Ignore the write and step past the instruction.
    Ignored,
    /// Inject an undefined instruction exception.
    Undefined,
}

/// Decides a trapped access that would write `written` (ignored for a read);
/// `read_real` reads the real value of an ID register or `PMCR_EL0`.
pub fn emulate(
    access: SysRegAccess,
    written: u64,
    features: &GuestFeatures,
    read_real: impl FnOnce(SysReg) -> u64,
) -> SysRegOutcome {
    let reg = access.reg;
    if is_id_register(reg) {
        return if access.read {
            SysRegOutcome::Read(sanitize_id(reg, read_real(reg), features))
        } else {
            SysRegOutcome::Undefined
        };
    }
    if is_pmu_register(reg) {
        return match (features.pmu, access.read) {
            (Pmu::Hidden, true) => SysRegOutcome::Read(0),
            (Pmu::Hidden, false) => SysRegOutcome::Ignored,
            (Pmu::PassedThrough { pmcr_trapped: true, .. }, true) if reg == PMCR_EL0 => {
                SysRegOutcome::Read(read_real(reg))
            }
            (Pmu::PassedThrough { pmcr_trapped: true, .. }, false) if reg == PMCR_EL0 => {
                SysRegOutcome::Write(features.pmcr_write(written))
            }
            // A passed-through register does not trap.
            (Pmu::PassedThrough { .. }, _) => SysRegOutcome::Undefined,
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
/// ID_AA64SMFR0_EL1: SME's features, hidden with SME.
pub const ID_AA64SMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 5);
/// PMCR_EL0.
pub const PMCR_EL0: SysReg = SysReg::new(3, 3, 9, 12, 0);

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

/// ID_AA64DFR0_EL1 fields a guest always sees as they are: DebugVer (3:0), BRPs
/// (15:12), WRPs (23:20), CTX_CMPs (31:28), DoubleLock (39:36). The debug
/// registers are the guest's.
const DFR0_DEBUG: u64 = 0x0000_00f0_f0f0_f00f;
/// ID_AA64DFR0_EL1 fields a guest sees with the PMU: PMUVer (11:8), MTPMU (51:48).
const DFR0_PMU: u64 = 0x000f_0000_0000_0f00;

/// The value of an ID register as a guest with `features` sees it.
pub fn sanitize_id(reg: SysReg, real: u64, features: &GuestFeatures) -> u64 {
    if is_aarch32_id_register(reg) {
        return 0;
    }
    match reg {
        // EL0 and EL1 AArch64 only (0b0001), no EL2 or EL3 for the guest (bits
        // 15:8); no AMU (47:44), no MPAM (43:40), no RAS (31:28): they would need
        // state Sluice doesn't switch.
        ID_AA64PFR0_EL1 => {
            let v = clear_field(clear_field(clear_field(real, 44), 40), 28);
            (v & !0xffff) | 0x11
        }
        // No SME (27:24), MPAM fraction (19:16), RAS fraction (15:12); MTE (11:8)
        // and its fraction (43:40) only with tag storage.
        ID_AA64PFR1_EL1 => {
            let v = clear_field(clear_field(clear_field(real, 24), 16), 12);
            if features.mte {
                v
            } else {
                clear_field(clear_field(v, 8), 40)
            }
        }
        // No trace, SPE, BRBE, trace buffer or filter; the PMU when passed through.
        ID_AA64DFR0_EL1 => real & if features.has_pmu() { DFR0_DEBUG | DFR0_PMU } else { DFR0_DEBUG },
        ID_AA64DFR1_EL1 | ID_AA64SMFR0_EL1 => 0,
        _ => real,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::features::CpuIds;

    /// QEMU 7.2 max: PMUVer 6, TraceVer 0, DebugVer 9, BRPs 5, WRPs 3, CTX_CMPs 1.
    const DFR0: u64 = 0x0000_0001_1030_5609;

    fn features(pmu_ppi: Option<u32>, pfr1: u64) -> GuestFeatures {
        GuestFeatures::decide(CpuIds { dfr0: DFR0, pfr1, pmcr: 6 << 11, pmu_ppi }, 7)
    }

    fn with_pmu() -> GuestFeatures {
        features(Some(7), 0)
    }

    fn without_pmu() -> GuestFeatures {
        features(None, 0)
    }

    fn read(reg: SysReg) -> SysRegAccess {
        SysRegAccess { reg, rt: 0, read: true }
    }

    fn write(reg: SysReg) -> SysRegAccess {
        SysRegAccess { reg, rt: 0, read: false }
    }

    #[test]
    fn dfr0_shows_debug_and_the_pmu_it_passes_through_but_no_spe_or_trace() {
        let seen = |f: &GuestFeatures| emulate(read(ID_AA64DFR0_EL1), 0, f, |_| DFR0);
        assert_eq!(seen(&with_pmu()), SysRegOutcome::Read(0x1030_5609));
        assert_eq!(seen(&without_pmu()), SysRegOutcome::Read(0x1030_5009));
    }

    #[test]
    fn pfr0_advertises_aarch64_only_without_amu_mpam_ras() {
        let real = 0x1201_1011_1111_2222;
        let v = sanitize_id(ID_AA64PFR0_EL1, real, &with_pmu());
        assert_eq!(v & 0xffff, 0x11, "EL0 and EL1 AArch64, no EL2 or EL3");
        assert_eq!(v >> 40 & 0xff, 0);
        assert_eq!(v >> 28 & 0xf, 0);
        assert_eq!(v >> 32 & 0xf, 1, "SVE stays visible");
    }

    #[test]
    fn pfr1_hides_sme_and_shows_mte_only_with_tag_storage() {
        let real = 0x0000_0000_0101_0321;
        assert_eq!(sanitize_id(ID_AA64PFR1_EL1, real, &features(Some(7), 0)), 0x21);
        let tagged = features(Some(7), real);
        assert!(tagged.mte);
        assert_eq!(sanitize_id(ID_AA64PFR1_EL1, real, &tagged), 0x321);
    }

    #[test]
    fn id_registers_are_read_only_and_aarch32_ones_read_zero() {
        let f = with_pmu();
        assert_eq!(emulate(write(ID_AA64PFR0_EL1), 0, &f, |_| 0), SysRegOutcome::Undefined);
        let id_pfr0 = SysReg::new(3, 0, 0, 1, 0);
        assert_eq!(emulate(read(id_pfr0), 0, &f, |_| 0x1234), SysRegOutcome::Read(0));
        let isar0 = SysReg::new(3, 0, 0, 6, 0);
        assert_eq!(emulate(read(isar0), 0, &f, |_| 0x1234), SysRegOutcome::Read(0x1234));
        assert_eq!(emulate(read(ID_AA64SMFR0_EL1), 0, &f, |_| 0x1234), SysRegOutcome::Read(0), "no SME");
    }

    #[test]
    fn a_hidden_pmu_reads_zero_and_ignores_writes() {
        let f = without_pmu();
        assert_eq!(emulate(read(PMCR_EL0), 0, &f, |_| unreachable!()), SysRegOutcome::Read(0));
        assert_eq!(emulate(write(PMCR_EL0), 1, &f, |_| unreachable!()), SysRegOutcome::Ignored);
        let pmintenset = SysReg::new(3, 0, 9, 14, 1);
        assert_eq!(emulate(write(pmintenset), 1, &f, |_| 0), SysRegOutcome::Ignored);
    }

    #[test]
    fn a_trapped_pmcr_keeps_dp_and_nothing_else_of_a_passed_through_pmu_is_emulated() {
        let dfr0 = (DFR0 & !0xf00) | (4 << 8);
        let f = GuestFeatures::decide(CpuIds { dfr0, pfr1: 0, pmcr: 6 << 11, pmu_ppi: Some(7) }, 7);
        assert_eq!(emulate(write(PMCR_EL0), 1, &f, |_| 0), SysRegOutcome::Write(1 | 1 << 5));
        assert_eq!(emulate(read(PMCR_EL0), 0, &f, |_| 0x3021), SysRegOutcome::Read(0x3021));
        let pmccntr = SysReg::new(3, 3, 9, 13, 0);
        assert_eq!(emulate(read(pmccntr), 0, &f, |_| 0), SysRegOutcome::Undefined);
        assert_eq!(emulate(read(PMCR_EL0), 0, &with_pmu(), |_| 0), SysRegOutcome::Undefined);
    }

    #[test]
    fn debug_registers_and_anything_else_are_undefined_if_they_trap() {
        let f = with_pmu();
        let impl_defined = SysReg::new(3, 1, 15, 2, 0);
        assert_eq!(emulate(read(impl_defined), 0, &f, |_| 0), SysRegOutcome::Undefined);
        let mdscr_el1 = SysReg::new(2, 0, 0, 2, 2);
        assert_eq!(emulate(read(mdscr_el1), 0, &f, |_| 0), SysRegOutcome::Undefined);
    }
}
