//! Self-hosted debug at EL1 (Arm ARM D2): hardware breakpoint 0, watchpoint 0 and
//! software step, each provoked on purpose and caught with
//! [`crate::exceptions::expect_debug`], and the registers a reset clears.
#![allow(unsafe_code)]

use core::arch::asm;

/// MDSCR_EL1.SS: software step.
const MDSCR_SS: u64 = 1 << 0;
/// MDSCR_EL1.KDE: debug exceptions at the EL they target (EL1 here).
const MDSCR_KDE: u64 = 1 << 13;
/// MDSCR_EL1.MDE: breakpoints and watchpoints.
const MDSCR_MDE: u64 = 1 << 15;
/// DBGBCR<n>_EL1: enabled, at EL1 and EL0 (PMC 0b11), all four bytes (BAS 0xf).
const BCR_EL1_EL0: u64 = (0xf << 5) | (0b11 << 1) | 1;
/// DBGWCR<n>_EL1: enabled, at EL1 and EL0 (PAC 0b11), stores (LSC 0b10), all eight
/// bytes of a doubleword (BAS 0xff).
const WCR_STORES: u64 = (0xff << 5) | (0b10 << 3) | (0b11 << 1) | 1;
/// SPSR for an `eret` to EL1h with A, I and F masked, D clear, and SS set: the next
/// instruction is stepped.
const SPSR_EL1H_STEP: u64 = (1 << 21) | (0b111 << 6) | 0b0101;

/// Unlocks the OS lock (OSLAR_EL1 = 0), as an OS does before using debug (it is
/// locked at reset).
pub fn unlock_os_lock() {
    // SAFETY: debug configuration only.
    unsafe { asm!("msr oslar_el1, xzr", "isb", options(nomem, nostack, preserves_flags)) };
}

/// Whether the OS lock is locked (OSLSR_EL1.OSLK).
pub fn os_lock_locked() -> bool {
    let value: u64;
    // SAFETY: reading a debug status register.
    unsafe { asm!("mrs {}, oslsr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value & 0b10 != 0
}

/// What a VM restart must clear: MDSCR_EL1, breakpoint 0's control and value,
/// watchpoint 0's control and value.
pub fn registers() -> [u64; 5] {
    let (mdscr, bcr, bvr, wcr, wvr): (u64, u64, u64, u64, u64);
    // SAFETY: reading debug registers.
    unsafe {
        asm!(
            "mrs {0}, mdscr_el1", "mrs {1}, dbgbcr0_el1", "mrs {2}, dbgbvr0_el1",
            "mrs {3}, dbgwcr0_el1", "mrs {4}, dbgwvr0_el1",
            out(reg) mdscr, out(reg) bcr, out(reg) bvr, out(reg) wcr, out(reg) wvr,
            options(nomem, nostack, preserves_flags),
        )
    };
    [mdscr, bcr, bvr, wcr, wvr]
}

/// Programs breakpoint 0 at `address` and watchpoint 0 on stores to `watched`,
/// with MDSCR_EL1 set to `mdscr` (without MDE nothing fires).
pub fn program(address: u64, watched: u64, mdscr: u64) {
    // SAFETY: debug configuration only; with D masked nothing fires here.
    unsafe {
        asm!(
            "msr daifset, #8",
            "msr dbgbvr0_el1, {address}", "msr dbgbcr0_el1, {bcr}",
            "msr dbgwvr0_el1, {watched}", "msr dbgwcr0_el1, {wcr}",
            "msr mdscr_el1, {mdscr}", "isb",
            address = in(reg) address, bcr = in(reg) BCR_EL1_EL0,
            watched = in(reg) watched, wcr = in(reg) WCR_STORES, mdscr = in(reg) mdscr,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Sets breakpoint 0 on an instruction and runs it; returns that instruction's
/// address (where the exception must say it happened).
pub fn hit_breakpoint() -> u64 {
    let target: u64;
    // SAFETY: the breakpoint is on the `nop` below, which runs again once caught.
    unsafe {
        asm!(
            "msr daifset, #8",
            "adr {target}, 2f",
            "msr dbgbvr0_el1, {target}",
            "msr dbgbcr0_el1, {bcr}",
            "msr mdscr_el1, {mdscr}",
            "isb",
            "msr daifclr, #8",
            "isb",
            "2:",
            "nop",
            "msr dbgbcr0_el1, xzr",
            "isb",
            target = out(reg) target, bcr = in(reg) BCR_EL1_EL0, mdscr = in(reg) MDSCR_MDE | MDSCR_KDE,
            options(nomem, nostack, preserves_flags),
        );
    }
    target
}

/// Sets watchpoint 0 on `slot` and stores `value` there; the store runs again
/// once the exception is caught.
pub fn hit_watchpoint(slot: &mut u64, value: u64) {
    let address = slot as *mut u64;
    // SAFETY: `slot` is a valid doubleword; the watchpoint only watches it.
    unsafe {
        asm!(
            "msr daifset, #8",
            "msr dbgwvr0_el1, {address}",
            "msr dbgwcr0_el1, {wcr}",
            "msr mdscr_el1, {mdscr}",
            "isb",
            "msr daifclr, #8",
            "isb",
            "str {value}, [{address}]",
            "msr dbgwcr0_el1, xzr",
            "isb",
            address = in(reg) address, wcr = in(reg) WCR_STORES, mdscr = in(reg) MDSCR_MDE | MDSCR_KDE,
            value = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// Steps one 32-bit load from `address` (from RAM, or from a device register:
/// under a hypervisor that load traps and is emulated, and the step must still end
/// right after it). Returns the address after the load, where the step exception
/// must say the guest stopped, and what it read.
pub fn step_load(address: u64) -> (u64, u64) {
    let (after, value): (u64, u64);
    // SAFETY: `eret` to the next instructions at EL1 with SS set, D clear; the step
    // exception comes back after the load, and its handler turns stepping off. The
    // caller gives an address it may read.
    unsafe {
        asm!(
            "msr daifset, #8",
            "msr mdscr_el1, {mdscr}",
            "isb",
            "adr {after}, 3f",
            "adr {scratch}, 2f",
            "msr elr_el1, {scratch}",
            "msr spsr_el1, {spsr}",
            "eret",
            "2:",
            "ldr {value:w}, [{address}]",
            "3:",
            "nop",
            mdscr = in(reg) MDSCR_SS | MDSCR_KDE, spsr = in(reg) SPSR_EL1H_STEP, address = in(reg) address,
            after = out(reg) after, value = out(reg) value, scratch = out(reg) _,
            options(nostack),
        )
    };
    (after, value)
}
