//! A vCPU's general-purpose registers as the trap entry saves them.

use super::inject::{DAIF_MASKED, MODE_EL1H};

/// The guest registers the trap entry saves on EL2's stack; the layout is shared
/// with the assembly in [`super::vectors`] (x0..x30, ELR_EL2, SPSR_EL2).
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL2: where the guest resumes.
    pub elr: u64,
    /// SPSR_EL2: the guest's PSTATE.
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes.
    pub _pad: u64,
}

/// SPSR_ELx.SS: software step (Arm ARM D2.12).
const SPSR_SS: u64 = 1 << 21;
/// SPSR_ELx.BTYPE (bits 11:10): branch target identification.
const SPSR_BTYPE: u64 = 0b11 << 10;

/// Size of [`TrapFrame`] in bytes, as the assembly knows it.
pub const TRAP_FRAME_SIZE: usize = 34 * 8;
const _: () = assert!(core::mem::size_of::<TrapFrame>() == TRAP_FRAME_SIZE);

impl TrapFrame {
    /// The frame that starts a vCPU at `entry` in EL1h with interrupts masked and
    /// `x0` = `arg` (the DTB address for the boot CPU, as Linux's boot protocol asks).
    pub fn boot(entry: u64, arg: u64) -> Self {
        let mut x = [0; 31];
        x[0] = arg;
        Self { x, elr: entry, spsr: DAIF_MASKED | MODE_EL1H, _pad: 0 }
    }

    /// Register `n` as an instruction reads it: 31 is the zero register.
    pub fn reg(&self, n: u8) -> u64 {
        self.x.get(n as usize).copied().unwrap_or(0)
    }

    /// Writes register `n`; writes to 31 (the zero register) are discarded.
    pub fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = value;
        }
    }

    /// Steps past the 4-byte instruction that trapped, which Sluice carried out: as
    /// after any instruction that completes, PSTATE.BTYPE is 0 and a software step
    /// in progress is done (PSTATE.SS = 0, so a guest stepping it takes its step
    /// exception right after it, as KVM's `kvm_skip_instr` does).
    pub fn skip_instruction(&mut self) {
        self.elr = self.elr.wrapping_add(4);
        self.spsr &= !(SPSR_SS | SPSR_BTYPE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_31_reads_zero_and_ignores_writes() {
        let mut f = TrapFrame::boot(0x4020_0000, 0x43e0_0000);
        assert_eq!(f.reg(0), 0x43e0_0000);
        f.set_reg(31, 5);
        assert_eq!(f.reg(31), 0);
        f.set_reg(30, 7);
        assert_eq!(f.reg(30), 7);
        f.skip_instruction();
        assert_eq!(f.elr, 0x4020_0004);
        assert_eq!(f.spsr, 0x3c5);
    }

    #[test]
    fn stepping_past_an_instruction_completes_a_software_step() {
        let mut f = TrapFrame::boot(0x4020_0000, 0);
        f.spsr |= SPSR_SS | SPSR_BTYPE;
        f.skip_instruction();
        assert_eq!(f.spsr, 0x3c5, "SS and BTYPE cleared, the rest kept");
    }
}
