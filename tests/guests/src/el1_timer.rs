//! Both EL1 timers of the Generic Timer (Arm ARM D11), the virtual one (CNTV_*,
//! PPI 11) and the physical one (CNTP_*, PPI 14), driven the same way: a deadline,
//! and the control register's ENABLE, IMASK and ISTATUS bits.
#![allow(unsafe_code)]

use core::arch::asm;
use platform::qemu_virt::{PHYSICAL_TIMER_PPI, VIRTUAL_TIMER_PPI};

/// CNTx_CTL_EL0.ENABLE.
pub const ENABLE: u64 = 1 << 0;
/// CNTx_CTL_EL0.IMASK: the interrupt is masked.
pub const IMASK: u64 = 1 << 1;
/// CNTx_CTL_EL0.ISTATUS: the timer condition is met.
pub const ISTATUS: u64 = 1 << 2;

/// One of the EL1 timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum El1Timer {
    /// CNTV: compares against the virtual count.
    Virtual,
    /// CNTP: compares against the physical count.
    Physical,
}

impl El1Timer {
    /// Both, virtual first.
    pub const ALL: [Self; 2] = [Self::Virtual, Self::Physical];

    /// Its interrupt's INTID.
    pub const fn intid(self) -> u32 {
        16 + match self {
            Self::Virtual => VIRTUAL_TIMER_PPI,
            Self::Physical => PHYSICAL_TIMER_PPI,
        }
    }

    /// Its name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Virtual => "virtual",
            Self::Physical => "physical",
        }
    }

    /// The count it compares against, read after the instructions before it.
    pub fn count(self) -> u64 {
        let c: u64;
        // SAFETY: reading a counter has no side effects.
        unsafe {
            match self {
                Self::Virtual => asm!("isb", "mrs {}, cntvct_el0", out(reg) c, options(nomem, nostack)),
                Self::Physical => asm!("isb", "mrs {}, cntpct_el0", out(reg) c, options(nomem, nostack)),
            }
        }
        c
    }

    /// Sets its deadline (CVAL).
    pub fn set_deadline(self, cval: u64) {
        // SAFETY: the deadline only decides when the timer condition is met.
        unsafe {
            match self {
                Self::Virtual => asm!("msr cntv_cval_el0, {}", in(reg) cval, options(nomem, nostack)),
                Self::Physical => asm!("msr cntp_cval_el0, {}", in(reg) cval, options(nomem, nostack)),
            }
        }
    }

    /// Writes its control register (ENABLE, IMASK), in effect before what follows.
    pub fn set_control(self, ctl: u64) {
        // SAFETY: enables, disables or masks this CPU's timer; nothing else.
        unsafe {
            match self {
                Self::Virtual => asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack)),
                Self::Physical => asm!("msr cntp_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack)),
            }
        }
    }

    /// Reads its control register.
    pub fn control(self) -> u64 {
        let ctl: u64;
        // SAFETY: reading the control register has no side effects.
        unsafe {
            match self {
                Self::Virtual => asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack)),
                Self::Physical => asm!("mrs {}, cntp_ctl_el0", out(reg) ctl, options(nomem, nostack)),
            }
        }
        ctl
    }
}
