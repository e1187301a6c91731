//! What of its CPU a guest owns, decided once at boot from the CPU's ID registers
//! and the host DTB, and the same on every CPU: the performance monitors, the
//! debug registers and memory tagging.
//!
//! Each vCPU has a physical CPU to itself, so what the CPU holds for EL0 and EL1
//! (counters, breakpoints, watchpoints, tags) needs no switching: it is the
//! guest's, given at VM start in its reset state ([`GuestFeatures::owned_reset`]
//! says what that is; `el2` writes it).
//!
//! - **PMU.** Passed through when the CPU has PMUv3.1 or later and the host DTB
//!   wires its overflow interrupt to PPI 7, as QEMU virt does: no PMU register
//!   traps, every event counter is the guest's (`MDCR_EL2.HPMN` = `PMCR_EL0.N`),
//!   and the overflow interrupt is forwarded hardware-linked like the timers.
//!   Nothing counts at EL2: `MDCR_EL2.HPMD` stops the event counters there whatever
//!   the guest writes to `PMEVTYPER<n>_EL0.NSH`, and `MDCR_EL2.HCCD` (PMUv3.5) the
//!   cycle counter. A CPU with PMUv3.1 to 3.4 has no HCCD: there `PMCR_EL0` is
//!   trapped and its DP bit kept set (so it reads as set), which stops the cycle counter wherever event
//!   counting is prohibited, that is at EL2. So a guest's counters see its own EL0
//!   and EL1 only; the time its traps take shows as a gap in the cycle count, as
//!   it does in the generic timer, and nothing of the hypervisor's work for other
//!   VMs (console output, other CPUs' interrupts) shows at all. PMUv3.0 has no
//!   HPMD: there the PMU stays hidden (PMUVer 0, registers trapped, read as zero).
//! - **Debug.** Always passed through (`MDCR_EL2.TDA`, `TDOSA`, `TDRA` clear,
//!   `TDE` clear): breakpoints, watchpoints, software step, the OS lock and
//!   `MDSCR_EL1` are the guest's, and debug exceptions go to its EL1. None is ever
//!   generated at EL2, whose debug target it is not.
//! - **MTE.** Given when the CPU has tag storage (`ID_AA64PFR1_EL1.MTE` >= 2,
//!   which QEMU reports only with `-machine virt,mte=on`): `HCR_EL2.ATA` set, so
//!   the guest's EL1 and EL0 reach the tags of their own RAM. Otherwise hidden.

use spin::Once;

/// `ID_AA64DFR0_EL1.PMUVer` of PMUv3.1, the first with `MDCR_EL2.HPMD`.
const PMUV3P1: u64 = 4;
/// `ID_AA64DFR0_EL1.PMUVer` of PMUv3.5, the first with `MDCR_EL2.HCCD`.
const PMUV3P5: u64 = 6;
/// `ID_AA64DFR0_EL1.PMUVer` of an IMPLEMENTATION DEFINED PMU.
const PMU_IMP_DEF: u64 = 0xf;

/// MDCR_EL2 bits (Arm ARM D23.2.122).
mod mdcr {
    /// Trap PMCR_EL0.
    pub const TPMCR: u64 = 1 << 5;
    /// Trap every PMU register.
    pub const TPM: u64 = 1 << 6;
    /// Trap the debug registers (other than the OS lock and power-down ones).
    pub const TDA: u64 = 1 << 9;
    /// Trap the OS lock and power-down registers.
    pub const TDOSA: u64 = 1 << 10;
    /// Trap the debug ROM address registers.
    pub const TDRA: u64 = 1 << 11;
    /// Trap the statistical profiling registers.
    pub const TPMS: u64 = 1 << 14;
    /// No event counting at EL2 by the counters below HPMN.
    pub const HPMD: u64 = 1 << 17;
    /// Trap the trace filter registers.
    pub const TTRF: u64 = 1 << 19;
    /// No cycle counting at EL2.
    pub const HCCD: u64 = 1 << 23;
}

/// PMCR_EL0 bits the reset writes.
mod pmcr {
    /// Enable.
    pub const E: u64 = 1 << 0;
    /// Reset the event counters.
    pub const P: u64 = 1 << 1;
    /// Reset the cycle counter.
    pub const C: u64 = 1 << 2;
    /// Disable the cycle counter where event counting is prohibited.
    pub const DP: u64 = 1 << 5;
    /// The guest-writable control bits (E, P, C, D, X, DP, LC, LP).
    pub const CONTROLS: u64 = 0xff;
}

/// HCR_EL2.ATA: EL1 and EL0 may reach allocation tags.
const HCR_ATA: u64 = 1 << 56;

/// The guest's performance monitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pmu {
    /// None for guests: every PMU register traps and reads as zero.
    Hidden,
    /// The guest's own.
    PassedThrough {
        /// Event counters (`PMCR_EL0.N`), all the guest's.
        counters: u8,
        /// `PMCR_EL0` traps, for [`GuestFeatures::pmcr_write`] (no HCCD).
        pmcr_trapped: bool,
        /// `PMCR_EL0` as it was at boot, before any guest ran: what a VM starts with.
        pmcr_at_boot: u64,
    },
}

/// What every guest gets of its CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFeatures {
    /// Its performance monitors.
    pub pmu: Pmu,
    /// Breakpoints the CPU has (`ID_AA64DFR0_EL1.BRPs` + 1).
    pub breakpoints: u8,
    /// Watchpoints the CPU has (`ID_AA64DFR0_EL1.WRPs` + 1).
    pub watchpoints: u8,
    /// Whether the guest has memory tagging with tag storage.
    pub mte: bool,
}

/// What the CPU says about itself, read once at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuIds {
    /// ID_AA64DFR0_EL1.
    pub dfr0: u64,
    /// ID_AA64PFR1_EL1.
    pub pfr1: u64,
    /// PMCR_EL0 at boot (0 without a PMU).
    pub pmcr: u64,
    /// The PPI the host DTB gives the PMU's overflow interrupt, if it has a PMU node.
    pub pmu_ppi: Option<u32>,
}

/// `[lo, lo + 4)` of `value`.
const fn field(value: u64, lo: u32) -> u64 {
    (value >> lo) & 0xf
}

/// Whether a CPU whose ID_AA64PFR1_EL1 is `pfr1` has tag storage (MTE >= 2: QEMU
/// reports it only with `-machine virt,mte=on`).
pub const fn has_tag_storage(pfr1: u64) -> bool {
    field(pfr1, 8) >= 2
}

impl GuestFeatures {
    /// Decides from what the CPU and the host DTB say; `guest_pmu_ppi` is the PPI
    /// the guest DTB names for the PMU (the link needs the same number).
    pub fn decide(ids: CpuIds, guest_pmu_ppi: u32) -> Self {
        let version = field(ids.dfr0, 8);
        let wired = ids.pmu_ppi == Some(guest_pmu_ppi);
        let pmu = if (PMUV3P1..PMU_IMP_DEF).contains(&version) && wired {
            Pmu::PassedThrough {
                counters: ((ids.pmcr >> 11) & 0x1f) as u8,
                pmcr_trapped: version < PMUV3P5,
                pmcr_at_boot: ids.pmcr,
            }
        } else {
            Pmu::Hidden
        };
        Self {
            pmu,
            breakpoints: field(ids.dfr0, 12) as u8 + 1,
            watchpoints: field(ids.dfr0, 20) as u8 + 1,
            mte: has_tag_storage(ids.pfr1),
        }
    }

    /// Whether the guest has the PMU.
    pub fn has_pmu(&self) -> bool {
        matches!(self.pmu, Pmu::PassedThrough { .. })
    }

    /// MDCR_EL2 for a guest. `dfr0` says which of SPE and the trace filter exist,
    /// whose registers trap (their controls are RES0 otherwise); `hpmn_at_boot` is
    /// the HPMN a hidden PMU keeps.
    pub fn mdcr_el2(&self, dfr0: u64, hpmn_at_boot: u64) -> u64 {
        let mut value = match self.pmu {
            Pmu::Hidden => (hpmn_at_boot & 0x1f) | mdcr::TPM | mdcr::TPMCR,
            Pmu::PassedThrough { counters, pmcr_trapped, .. } => {
                let hccd = if pmcr_trapped { mdcr::TPMCR } else { mdcr::HCCD };
                u64::from(counters) | mdcr::HPMD | hccd
            }
        };
        if field(dfr0, 32) != 0 {
            value |= mdcr::TPMS;
        }
        if field(dfr0, 40) != 0 {
            value |= mdcr::TTRF;
        }
        value & !(mdcr::TDA | mdcr::TDOSA | mdcr::TDRA)
    }

    /// HCR_EL2 bits a guest gets from these features.
    pub fn hcr_el2(&self) -> u64 {
        if self.mte {
            HCR_ATA
        } else {
            0
        }
    }

    /// What reaches `PMCR_EL0` when the guest writes `value` to it while it traps:
    /// DP kept set, so the cycle counter never counts at EL2.
    pub fn pmcr_write(&self, value: u64) -> u64 {
        value | pmcr::DP
    }

    /// The `PMCR_EL0` write that puts the PMU in the state a VM starts in: every
    /// counter reset, counting off, the other controls as at boot.
    pub fn pmcr_reset(&self) -> Option<u64> {
        match self.pmu {
            Pmu::Hidden => None,
            Pmu::PassedThrough { pmcr_at_boot, pmcr_trapped, .. } => {
                let value = (pmcr_at_boot & pmcr::CONTROLS & !pmcr::E) | pmcr::P | pmcr::C;
                Some(if pmcr_trapped { self.pmcr_write(value) } else { value })
            }
        }
    }
}

/// The features, once the boot CPU decided them.
static GUEST_FEATURES: Once<GuestFeatures> = Once::new();

/// Records the features (on the boot CPU, before any other CPU runs); later calls
/// keep the first.
pub fn install(features: GuestFeatures) -> &'static GuestFeatures {
    GUEST_FEATURES.call_once(|| features)
}

/// The features [`install`] recorded; every guest feature hidden before that.
pub fn guest_features() -> GuestFeatures {
    GUEST_FEATURES.get().copied().unwrap_or(GuestFeatures {
        pmu: Pmu::Hidden,
        breakpoints: 2,
        watchpoints: 2,
        mte: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's `max`: PMUv3.5 (6), 6 breakpoints, 4 watchpoints, 2 context
    /// comparators, DebugVer 8.4 (9); PMCR_EL0 with N = 6 (0x41013000).
    const MAX_DFR0: u64 = 0x0000_0000_1030_5609;
    const MAX_PMCR: u64 = 0x4100_3000;

    fn ids(dfr0: u64, pmu_ppi: Option<u32>) -> CpuIds {
        CpuIds { dfr0, pfr1: 0, pmcr: MAX_PMCR, pmu_ppi }
    }

    #[test]
    fn pmuv3p5_is_passed_through_with_nothing_counting_at_el2() {
        let f = GuestFeatures::decide(ids(MAX_DFR0, Some(7)), 7);
        assert_eq!(f.pmu, Pmu::PassedThrough { counters: 6, pmcr_trapped: false, pmcr_at_boot: MAX_PMCR });
        assert_eq!((f.breakpoints, f.watchpoints), (6, 4));
        let mdcr = f.mdcr_el2(MAX_DFR0, 0);
        assert_eq!(mdcr & 0x1f, 6, "HPMN: every counter the guest's");
        assert_eq!(f.mdcr_el2(MAX_DFR0, 3) & 0x1f, 6, "whatever HPMN was at boot");
        assert_eq!(mdcr & (mdcr::TPM | mdcr::TPMCR), 0, "no PMU register traps");
        assert_ne!(mdcr & mdcr::HPMD, 0);
        assert_ne!(mdcr & mdcr::HCCD, 0);
        assert_eq!(mdcr & (mdcr::TDA | mdcr::TDOSA | mdcr::TDRA), 0, "debug registers are the guest's");
    }

    #[test]
    fn pmuv3p1_traps_pmcr_to_keep_dp() {
        let dfr0 = (MAX_DFR0 & !0xf00) | (PMUV3P1 << 8);
        let f = GuestFeatures::decide(ids(dfr0, Some(7)), 7);
        let mdcr = f.mdcr_el2(dfr0, 0);
        assert_eq!(mdcr & (mdcr::TPM | mdcr::TPMCR | mdcr::HCCD), mdcr::TPMCR);
        assert_ne!(mdcr & mdcr::HPMD, 0);
        assert_eq!(f.pmcr_write(pmcr::E), pmcr::E | pmcr::DP);
        assert_eq!(f.pmcr_reset().unwrap() & pmcr::DP, pmcr::DP);
    }

    #[test]
    fn no_hpmd_no_interrupt_or_no_pmu_hides_it() {
        let v3 = (MAX_DFR0 & !0xf00) | (1 << 8);
        let none = MAX_DFR0 & !0xf00;
        let imp_def = MAX_DFR0 | 0xf00;
        for (dfr0, ppi) in
            [(v3, Some(7)), (none, Some(7)), (imp_def, Some(7)), (MAX_DFR0, None), (MAX_DFR0, Some(8))]
        {
            let f = GuestFeatures::decide(ids(dfr0, ppi), 7);
            assert_eq!(f.pmu, Pmu::Hidden, "{dfr0:#x} {ppi:?}");
            assert_eq!(f.mdcr_el2(dfr0, 0) & (mdcr::TPM | mdcr::TPMCR), mdcr::TPM | mdcr::TPMCR);
            assert_eq!(f.mdcr_el2(dfr0, 6) & 0x1f, 6, "a hidden PMU keeps the HPMN it had");
            assert_eq!(f.pmcr_reset(), None);
        }
    }

    #[test]
    fn reset_stops_and_clears_the_counters_and_keeps_the_boot_controls() {
        let f = GuestFeatures::decide(CpuIds { pmcr: MAX_PMCR | 0x41, ..ids(MAX_DFR0, Some(7)) }, 7);
        assert_eq!(f.pmcr_reset(), Some(0x40 | pmcr::P | pmcr::C), "LC kept, E off, P and C reset");
    }

    #[test]
    fn spe_and_trace_filter_registers_trap_where_they_exist() {
        let f = GuestFeatures::decide(ids(MAX_DFR0, Some(7)), 7);
        assert_eq!(f.mdcr_el2(MAX_DFR0, 0) & (mdcr::TPMS | mdcr::TTRF), 0);
        let dfr0 = MAX_DFR0 | (1 << 32) | (1 << 40);
        assert_eq!(f.mdcr_el2(dfr0, 0) & (mdcr::TPMS | mdcr::TTRF), mdcr::TPMS | mdcr::TTRF);
    }

    #[test]
    fn mte_only_with_tag_storage() {
        let with = |mte: u64| GuestFeatures::decide(CpuIds { pfr1: mte << 8, ..ids(MAX_DFR0, Some(7)) }, 7);
        assert!(!with(0).mte);
        assert!(!with(1).mte, "MTE instructions without tag storage");
        assert!(with(2).mte);
        assert_eq!(with(2).hcr_el2(), HCR_ATA);
        assert_eq!(with(1).hcr_el2(), 0);
    }
}
