//! Single instructions that a test expects to fault, for use inside
//! [`crate::exceptions::expect_fault`] (or while [`crate::exceptions::skip_faults`]
//! is on).
//!
//! Each access is one instruction in inline assembly, so that resuming after it (ELR +
//! 4) leaves the program in a state the compiler knows: the destination registers
//! keep the zeros they were given.
#![allow(unsafe_code)]

use core::arch::asm;

use platform::Region;

use crate::fuzz::Width;

/// Loads one byte from `addr` with `ldrb` (a plain load: ISV = 1 if it traps).
pub fn load_u8(addr: u64) -> u8 {
    let value: u64;
    // SAFETY: a load changes no memory; if `addr` is not readable the CPU takes an
    // exception, which `expect_fault` turns into a skipped instruction.
    unsafe {
        asm!(
            "ldrb {v:w}, [{a}]",
            a = in(reg) addr,
            v = inout(reg) 0u64 => value,
            options(nostack, preserves_flags),
        );
    }
    value as u8
}

/// Loads 32 bits from `addr` with `ldr` (a plain load: ISV = 1 if it traps).
pub fn load_u32(addr: u64) -> u32 {
    let value: u64;
    // SAFETY: as for `load_u8`.
    unsafe {
        asm!(
            "ldr {v:w}, [{a}]",
            a = in(reg) addr,
            v = inout(reg) 0u64 => value,
            options(nostack, preserves_flags),
        );
    }
    value as u32
}

/// Loads two 64-bit words from `addr` with one `ldp x2, x3, [x1]`: an access whose
/// syndrome a hypervisor cannot use (ESR_EL2.ISV = 0).
pub fn load_pair(addr: u64) -> (u64, u64) {
    let (a, b): (u64, u64);
    // SAFETY: as for `load_u8`.
    unsafe {
        asm!(
            "ldp x2, x3, [x1]",
            in("x1") addr,
            inout("x2") 0u64 => a,
            inout("x3") 0u64 => b,
            options(nostack, preserves_flags),
        );
    }
    (a, b)
}

/// Stores `value` at `addr` with one `str`, provided `addr` lies outside every
/// range in `ram` (so it cannot touch memory this program uses).
///
/// # Panics
///
/// If `addr` lies in one of the `ram` ranges.
pub fn store_u64_outside(ram: &[Region], addr: u64, value: u64) {
    assert!(!ram.iter().any(|r| r.contains(addr)), "store_u64_outside: {addr:#x} is RAM");
    // SAFETY: `addr` is outside the guest's RAM, where all of its memory lies; the
    // store may hit a device or nothing (then it faults, see `expect_fault`).
    unsafe {
        asm!(
            "str {v}, [{a}]",
            a = in(reg) addr,
            v = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// Executes `udf #0`, the permanently undefined instruction.
pub fn udf() {
    // SAFETY: the instruction only raises an exception.
    unsafe { asm!("udf #0", options(nomem, nostack, preserves_flags)) };
}

/// `hvc #0x1234` with x0 = `x0` (SMCCC wants immediate 0); returns x0.
pub fn hvc_imm_0x1234(x0: u64) -> u64 {
    let ret;
    // SAFETY: as `smccc::hvc`: control goes to EL2 and comes back with x0..x17
    // possibly changed, as the operands say.
    unsafe {
        asm!(
            "hvc #0x1234",
            inlateout("x0") x0 => ret,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _,
            out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _,
            out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret
}

/// Calls `addr` with `blr`, as if it were a function: a fetch there that faults is
/// an instruction abort with the link register pointing back here, which
/// `expect_fault` resumes at (see [`crate::exceptions`]).
///
/// # Safety
///
/// Whatever lies at `addr` runs with this program's privileges; the caller must
/// expect the fetch to fault (e.g. `addr` is outside the guest's memory).
pub unsafe fn call_at(addr: u64) {
    // SAFETY: the caller's contract; if something did run, it could clobber any
    // caller-saved register, which the clobber list says.
    unsafe { asm!("blr {}", in(reg) addr, clobber_abi("C")) }
}

/// Makes an Arm semihosting call (`hlt #0xf000`, A64) of `operation` with the
/// parameter block at `block`; returns x0. No hypervisor may let this reach the
/// host: without a debugger, `hlt` is an undefined instruction at EL1.
pub fn semihosting(operation: u64, block: u64) -> u64 {
    let ret: u64;
    // SAFETY: if a debugger served the call it would only read `block`; without one
    // the CPU takes an undefined-instruction exception, which `expect_fault` skips.
    unsafe {
        asm!(
            "hlt #0xf000",
            inout("x0") operation => ret,
            in("x1") block,
            options(nostack, preserves_flags),
        );
    }
    ret
}

/// Points VBAR_EL1 at `vbar`: from now on exceptions go there.
///
/// # Safety
///
/// Whatever lies at `vbar` handles every exception, interrupts included; the caller
/// must expect that (e.g. a test of a guest without vectors).
pub unsafe fn set_vbar(vbar: u64) {
    // SAFETY: the caller's contract.
    unsafe { asm!("msr vbar_el1, {}", "isb", in(reg) vbar, options(nostack, preserves_flags)) }
}

/// Branches to `addr` with `br` and never comes back.
///
/// # Safety
///
/// Whatever lies at `addr` runs with this program's privileges; the caller must
/// expect it to fault (e.g. `addr` is outside the guest's memory).
pub unsafe fn branch_to(addr: u64) -> ! {
    // SAFETY: the caller's contract.
    unsafe { asm!("br {}", in(reg) addr, options(noreturn, nostack)) }
}

/// Loads `width` bytes from `addr` with one `ldrb`, `ldrh`, `ldr w` or `ldr x` (a
/// plain load: ISV = 1 if it traps), zero-extended; 0 if it faulted and was skipped.
pub fn load(addr: u64, width: Width) -> u64 {
    let value: u64;
    // SAFETY: as for `load_u8`: a load changes no memory, and a fault is skipped.
    unsafe {
        match width {
            Width::B1 => {
                asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) 0u64 => value, options(nostack, preserves_flags))
            }
            Width::B2 => {
                asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) 0u64 => value, options(nostack, preserves_flags))
            }
            Width::B4 => {
                asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) 0u64 => value, options(nostack, preserves_flags))
            }
            Width::B8 => {
                asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) 0u64 => value, options(nostack, preserves_flags))
            }
        }
    }
    value
}

/// Stores the low `width` bytes of `value` at `addr` with one `strb`, `strh`,
/// `str w` or `str x`, provided no byte of it lies in one of the `ram` ranges (so it
/// cannot touch memory this program uses).
///
/// # Panics
///
/// If a byte of `[addr, addr + width)` is in one of the `ram` ranges (or the range
/// wraps the address space).
pub fn store_outside(ram: &[Region], addr: u64, width: Width, value: u64) {
    let target = Region::new(addr, width.bytes());
    assert!(!ram.iter().any(|r| r.overlaps(&target)), "store_outside: {addr:#x} is RAM");
    // SAFETY: no byte of the store is RAM, where all of this guest's memory lies; it
    // may hit a device or nothing (then it faults, and the fault is skipped).
    unsafe {
        match width {
            Width::B1 => {
                asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
            }
            Width::B2 => {
                asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
            }
            Width::B4 => {
                asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
            }
            Width::B8 => {
                asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
            }
        }
    }
}
