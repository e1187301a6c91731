//! Injecting a synchronous exception into a guest at EL1.
//!
//! Computes what the hardware would do on taking the exception to EL1 (Arm ARM
//! D1.10 "Exception entry"): the values of ELR_EL1, SPSR_EL1, ESR_EL1 and FAR_EL1,
//! and the PC and PSTATE to return to. Pure, so it is tested on the host; the trap
//! path writes the result into the registers.

/// PSTATE.M for EL0 (AArch64).
const MODE_EL0T: u64 = 0b0000;
/// PSTATE.M for EL1 using SP_EL0.
const MODE_EL1T: u64 = 0b0100;
/// PSTATE.M for EL1 using SP_EL1.
pub const MODE_EL1H: u64 = 0b0101;
/// PSTATE.M[4]: the exception came from AArch32.
const MODE_AARCH32: u64 = 1 << 4;
/// PSTATE.{D,A,I,F}: all masked.
pub const DAIF_MASKED: u64 = 0b1111 << 6;
/// PSTATE.PAN.
const PAN: u64 = 1 << 22;
/// PSTATE.SSBS.
const SSBS: u64 = 1 << 12;
/// Condition flags N, Z, C, V.
const NZCV: u64 = 0b1111 << 28;
/// PSTATE.DIT and PSTATE.UAO... only DIT is kept across exception entry.
const DIT: u64 = 1 << 24;
/// SCTLR_EL1.SPAN: when 0, PAN is set on exception entry to EL1.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS: the SSBS value on exception entry.
const SCTLR_DSSBS: u64 = 1 << 44;
/// ESR.IL: 32-bit instruction.
const ESR_IL: u64 = 1 << 25;

/// Data or instruction fault status: synchronous external abort, not on a walk.
const FSC_EXTERNAL_ABORT: u64 = 0b01_0000;

/// The exception to give the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestException {
    /// A synchronous external abort on a data access at guest virtual address `far`.
    DataAbort {
        /// Faulting virtual address.
        far: u64,
        /// Whether the access was a write.
        write: bool,
    },
    /// A synchronous external abort on an instruction fetch at `far`.
    InstructionAbort {
        /// Faulting virtual address.
        far: u64,
    },
    /// An undefined instruction (EC 0x00).
    Undefined,
}

/// Register values that deliver an exception to EL1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// ELR_EL1: where the guest's handler returns to (the faulting instruction).
    pub elr_el1: u64,
    /// SPSR_EL1: the guest's PSTATE when it faulted.
    pub spsr_el1: u64,
    /// ESR_EL1: the syndrome the guest's handler reads.
    pub esr_el1: u64,
    /// FAR_EL1, for aborts.
    pub far_el1: Option<u64>,
    /// Where the guest continues: its vector for this exception.
    pub pc: u64,
    /// The guest's PSTATE on entry to the vector.
    pub pstate: u64,
}

/// Computes the exception entry for `exception`, taken by a guest that was at `pc`
/// with PSTATE `spsr` (the value in SPSR_EL2), whose VBAR_EL1 and SCTLR_EL1 are given.
pub fn inject(exception: GuestException, pc: u64, spsr: u64, vbar_el1: u64, sctlr_el1: u64) -> Injection {
    let mode = spsr & 0b1_1111;
    let from_el1 = mode & MODE_AARCH32 == 0 && mode & 0b1100 == 0b0100;
    // Vector offsets (Arm ARM D1.10.2): current EL with SP_EL0, current EL with SP_ELx,
    // lower EL in AArch64, lower EL in AArch32; synchronous exceptions at +0.
    let vector_offset = match mode {
        MODE_EL1T => 0x000,
        MODE_EL1H => 0x200,
        MODE_EL0T => 0x400,
        m if m & MODE_AARCH32 != 0 => 0x600,
        _ => 0x200,
    };
    let (ec, iss, far) = match exception {
        GuestException::DataAbort { far, write } => {
            let ec = if from_el1 { 0x25 } else { 0x24 };
            (ec, FSC_EXTERNAL_ABORT | ((write as u64) << 6), Some(far))
        }
        GuestException::InstructionAbort { far } => {
            let ec = if from_el1 { 0x21 } else { 0x20 };
            (ec, FSC_EXTERNAL_ABORT, Some(far))
        }
        GuestException::Undefined => (0x00, 0, None),
    };
    let mut pstate = (spsr & (NZCV | DIT)) | DAIF_MASKED | MODE_EL1H;
    if sctlr_el1 & SCTLR_SPAN == 0 {
        pstate |= PAN;
    }
    if sctlr_el1 & SCTLR_DSSBS != 0 {
        pstate |= SSBS;
    }
    Injection {
        elr_el1: pc,
        spsr_el1: spsr,
        esr_el1: (ec << 26) | ESR_IL | iss,
        far_el1: far,
        pc: (vbar_el1 & !0x7ff) + vector_offset,
        pstate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VBAR: u64 = 0x4020_1000;
    /// SCTLR_EL1 with SPAN set (no PAN on entry), DSSBS clear.
    const SCTLR: u64 = 0x30d0_0800 | SCTLR_SPAN;

    #[test]
    fn data_abort_from_el1h_goes_to_current_el_spx_vector() {
        let spsr = 0x6000_03c5; // Z and C set, DAIF masked, EL1h
        let inj = inject(
            GuestException::DataAbort { far: 0x4400_0000, write: false },
            0x4020_0100,
            spsr,
            VBAR,
            SCTLR,
        );
        assert_eq!(inj.pc, VBAR + 0x200);
        assert_eq!(inj.elr_el1, 0x4020_0100);
        assert_eq!(inj.spsr_el1, spsr);
        assert_eq!(inj.esr_el1, 0x9600_0010);
        assert_eq!(inj.far_el1, Some(0x4400_0000));
        assert_eq!(inj.pstate, 0x6000_03c5);
    }

    #[test]
    fn write_abort_from_el0_goes_to_lower_el_vector() {
        let inj = inject(GuestException::DataAbort { far: 0x1000, write: true }, 0x400, 0, VBAR, SCTLR);
        assert_eq!(inj.pc, VBAR + 0x400);
        assert_eq!(inj.esr_el1, 0x9200_0050);
    }

    #[test]
    fn el1t_and_aarch32_vectors() {
        let el1t = inject(GuestException::Undefined, 0, MODE_EL1T, VBAR, SCTLR);
        assert_eq!(el1t.pc, VBAR);
        let aarch32 = inject(GuestException::Undefined, 0, 0x10, VBAR, SCTLR);
        assert_eq!(aarch32.pc, VBAR + 0x600);
    }

    #[test]
    fn undefined_and_instruction_abort_syndromes() {
        let und = inject(GuestException::Undefined, 0x10, MODE_EL1H, VBAR, SCTLR);
        assert_eq!(und.esr_el1, 0x0200_0000);
        assert_eq!(und.far_el1, None);
        let iabt = inject(GuestException::InstructionAbort { far: 0x1000 }, 0x1000, MODE_EL1H, VBAR, SCTLR);
        assert_eq!(iabt.esr_el1, 0x8600_0010);
    }

    #[test]
    fn vbar_low_bits_are_ignored_and_pan_follows_span() {
        let inj = inject(GuestException::Undefined, 0, MODE_EL1H, VBAR | 0x7ff, 0x30d0_0800 & !SCTLR_SPAN);
        assert_eq!(inj.pc, VBAR + 0x200);
        assert_ne!(inj.pstate & PAN, 0);
    }
}
