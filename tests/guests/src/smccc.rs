//! Raw SMC Calling Convention calls (Arm DEN 0028, SMCCC 1.1) through `hvc #0` or
//! `smc #0`, and how to show what they return.
//!
//! The calls are plain functions: what the firmware or hypervisor does with a call is
//! its business; a call it does not know returns [`NOT_SUPPORTED`] (or, on a machine
//! without that exception level, the instruction is undefined: see
//! `exceptions::expect_fault`).

use core::fmt;

/// SMCCC `NOT_SUPPORTED` (and PSCI's), as the 64-bit value in x0.
pub const NOT_SUPPORTED: i64 = -1;

/// An SMCCC return value in x0: negative values are error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ret(pub u64);

impl Ret {
    /// The value as a signed 64-bit number.
    pub const fn signed(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Display for Ret {
    /// Negative values (error codes) in decimal, others in hex: `-1`, `0x10001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signed() {
            n if n < 0 => write!(f, "{n}"),
            _ => write!(f, "{:#x}", self.0),
        }
    }
}

#[cfg(bare_metal)]
pub use self::calls::{hvc, smc};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod calls {
    use core::arch::asm;

    /// One SMCCC call through `$insn` with x0..x3; evaluates to the returned x0.
    macro_rules! smccc_call {
        ($insn:literal, $x0:expr, $x1:expr, $x2:expr, $x3:expr) => {{
            let ret;
            // SAFETY: an SMCCC call hands control to a higher EL and comes back with
            // x0..x3 changed and x4..x17 possibly changed (SMCCC 1.0 allows it), which
            // the operands say; it does not touch this guest's memory.
            unsafe {
                asm!(
                    $insn,
                    inlateout("x0") $x0 => ret,
                    inlateout("x1") $x1 => _,
                    inlateout("x2") $x2 => _,
                    inlateout("x3") $x3 => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                    out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                    out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                    out("x16") _, out("x17") _,
                    options(nostack),
                );
            }
            ret
        }};
    }

    /// `hvc #0` with x0..x3; returns x0.
    pub fn hvc(x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
        smccc_call!("hvc #0", x0, x1, x2, x3)
    }

    /// `smc #0` with x0..x3; returns x0 (EL3, or a hypervisor trapping `smc`, answers).
    pub fn smc(x0: u64, x1: u64, x2: u64, x3: u64) -> u64 {
        smccc_call!("smc #0", x0, x1, x2, x3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_errors_in_decimal_and_values_in_hex() {
        assert_eq!(Ret(u64::MAX).to_string(), "-1");
        assert_eq!(Ret(NOT_SUPPORTED as u64).signed(), -1);
        assert_eq!(Ret((-3i64) as u64).to_string(), "-3");
        assert_eq!(Ret(0x1_0001).to_string(), "0x10001");
        assert_eq!(Ret(0).to_string(), "0x0");
    }
}
