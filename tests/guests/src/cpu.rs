//! The few things a guest asks of its own CPU.
#![allow(unsafe_code)]

use core::arch::asm;

/// The exception level the CPU runs at (CurrentEL.EL, Arm ARM D23.2.37).
pub fn current_el() -> u8 {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack, preserves_flags)) };
    ((el >> 2) & 3) as u8
}

/// Sleeps forever, for when powering off did not work.
pub fn halt() -> ! {
    loop {
        // SAFETY: `wfe` only waits for an event.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}
