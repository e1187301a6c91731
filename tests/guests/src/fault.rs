//! What an exception taken at EL1 says: the syndrome (ESR_EL1), the fault address
//! (FAR_EL1), where it happened (ELR_EL1), and which vector took it.
//!
//! Exception classes follow the Arm ARM, D23.2.41 (ESR_EL1.EC).

use core::fmt;

/// Exception classes (ESR_ELx.EC) the guests meet.
pub mod ec {
    /// Unknown reason: `udf`, or an instruction that is undefined here (e.g. `hvc`
    /// without EL2, `smc` without EL3).
    pub const UNKNOWN: u8 = 0x00;
    /// Trapped FP/SIMD access.
    pub const FP_ACCESS: u8 = 0x07;
    /// Illegal execution state.
    pub const ILLEGAL_STATE: u8 = 0x0e;
    /// `svc` from AArch64.
    pub const SVC64: u8 = 0x15;
    /// `hvc` from AArch64.
    pub const HVC64: u8 = 0x16;
    /// `smc` from AArch64.
    pub const SMC64: u8 = 0x17;
    /// Trapped `msr`/`mrs`/system instruction.
    pub const SYSREG: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Instruction abort taken without a change of exception level.
    pub const IABT_SAME: u8 = 0x21;
    /// PC alignment fault.
    pub const PC_ALIGN: u8 = 0x22;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
    /// Data abort taken without a change of exception level.
    pub const DABT_SAME: u8 = 0x25;
    /// SP alignment fault.
    pub const SP_ALIGN: u8 = 0x26;
    /// SError interrupt.
    pub const SERROR: u8 = 0x2f;
    /// Hardware breakpoint taken without a change of exception level.
    pub const BREAKPOINT_SAME: u8 = 0x31;
    /// Software step taken without a change of exception level.
    pub const SOFTWARE_STEP_SAME: u8 = 0x33;
    /// Watchpoint taken without a change of exception level.
    pub const WATCHPOINT_SAME: u8 = 0x35;
    /// `brk` from AArch64.
    pub const BRK64: u8 = 0x3c;
}

/// A synchronous exception as the guest saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1: the syndrome.
    pub esr: u64,
    /// FAR_EL1: the faulting address (meaningful for aborts).
    pub far: u64,
    /// ELR_EL1: the address of the instruction that took the exception.
    pub elr: u64,
}

impl Fault {
    /// The exception class, ESR bits \[31:26\].
    pub const fn ec(&self) -> u8 {
        ((self.esr >> 26) & 0x3f) as u8
    }

    /// Whether `expect_fault` may recover from it, taken at the guest's own EL: a
    /// data abort or an undefined instruction (by skipping the instruction), or an
    /// instruction abort (by returning to the link register: see `probe::call_at`).
    pub const fn is_recoverable(&self) -> bool {
        matches!(self.ec(), ec::DABT_SAME | ec::UNKNOWN | ec::IABT_SAME)
    }

    /// Whether it is a debug exception taken at the guest's own EL: a hardware
    /// breakpoint, a software step or a watchpoint.
    pub const fn is_debug(&self) -> bool {
        matches!(self.ec(), ec::BREAKPOINT_SAME | ec::SOFTWARE_STEP_SAME | ec::WATCHPOINT_SAME)
    }

    /// Whether FAR_EL1 holds the faulting address (aborts and PC alignment faults;
    /// for other classes it is UNKNOWN).
    pub const fn has_address(&self) -> bool {
        matches!(self.ec(), ec::IABT_LOWER | ec::IABT_SAME | ec::PC_ALIGN | ec::DABT_LOWER | ec::DABT_SAME)
    }

    /// A short name of the exception class.
    pub const fn class_name(&self) -> &'static str {
        match self.ec() {
            ec::UNKNOWN => "undefined instruction",
            ec::FP_ACCESS => "FP/SIMD access trap",
            ec::ILLEGAL_STATE => "illegal execution state",
            ec::SVC64 => "svc",
            ec::HVC64 => "hvc",
            ec::SMC64 => "smc",
            ec::SYSREG => "system register trap",
            ec::IABT_LOWER | ec::IABT_SAME => "instruction abort",
            ec::PC_ALIGN => "PC alignment fault",
            ec::DABT_LOWER | ec::DABT_SAME => "data abort",
            ec::SP_ALIGN => "SP alignment fault",
            ec::SERROR => "SError",
            ec::BREAKPOINT_SAME => "breakpoint",
            ec::SOFTWARE_STEP_SAME => "software step",
            ec::WATCHPOINT_SAME => "watchpoint",
            ec::BRK64 => "brk",
            _ => "other",
        }
    }
}

/// Which of the 16 vector-table entries took an exception (Arm ARM D1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vector(pub u8);

impl Vector {
    /// Synchronous exception from the current EL while using SP_ELx: the one entry
    /// that expected faults come through.
    pub const SYNC_CURRENT_SPX: Vector = Vector(4);

    /// Whether the entry is a synchronous one.
    pub const fn is_sync(self) -> bool {
        self.0 & 3 == 0
    }

    /// Whether the entry is an IRQ one taken at the current EL (with SP_EL0 or
    /// SP_ELx): the guest's own interrupts.
    pub const fn is_current_el_irq(self) -> bool {
        self.0 & 3 == 1 && self.0 < 8
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = ["synchronous", "IRQ", "FIQ", "SError"][usize::from(self.0 % 4)];
        let from = match self.0 / 4 {
            0 => "current EL with SP_EL0",
            1 => "current EL with SP_ELx",
            2 => "lower EL, AArch64",
            3 => "lower EL, AArch32",
            _ => "unknown vector",
        };
        write!(f, "{kind} from {from}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(esr: u64) -> Fault {
        Fault { esr, far: 0, elr: 0 }
    }

    #[test]
    fn decodes_the_exception_class() {
        // Data abort, same EL, IL=1, synchronous external abort (DFSC 0x10).
        let dabt = fault(0x9600_0010);
        assert_eq!(dabt.ec(), ec::DABT_SAME);
        assert!(dabt.is_recoverable() && dabt.has_address());
        assert_eq!(dabt.class_name(), "data abort");
        // `udf #0`: EC 0, IL=1.
        let udf = fault(0x0200_0000);
        assert_eq!(udf.ec(), ec::UNKNOWN);
        assert!(udf.is_recoverable() && !udf.has_address());
        // Instruction abort, same EL: recovered by returning from the call.
        let iabt = fault(0x8600_0010);
        assert_eq!(iabt.ec(), ec::IABT_SAME);
        assert!(iabt.is_recoverable() && iabt.has_address());
        assert!(!fault(0x8200_0010).is_recoverable(), "from EL0");
        assert!(!fault(0x5a00_0000).is_recoverable()); // hvc
    }

    #[test]
    fn names_the_vector() {
        assert!(Vector::SYNC_CURRENT_SPX.is_sync());
        assert_eq!(Vector::SYNC_CURRENT_SPX.to_string(), "synchronous from current EL with SP_ELx");
        assert!(!Vector(5).is_sync());
        assert!(Vector(5).is_current_el_irq() && Vector(1).is_current_el_irq());
        assert!(!Vector(9).is_current_el_irq() && !Vector(4).is_current_el_irq());
        assert_eq!(Vector(11).to_string(), "SError from lower EL, AArch64");
    }
}
