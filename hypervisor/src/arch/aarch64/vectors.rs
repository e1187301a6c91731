//! EL2 exception vectors, the guest register save/restore, and entering a guest.
//!
//! A trap from a guest saves x0..x30, ELR_EL2 and SPSR_EL2 as a [`TrapFrame`] on the
//! CPU's trap stack and calls `sluice_trap_from_guest(frame, kind)`; returning from
//! it restores the (possibly changed) frame and erets. An exception taken at EL2
//! itself is a hypervisor bug: it goes to `sluice_hypervisor_fault(frame, kind)`.
//! The CPU loop (`run`) defines both, by those names: this layer calls up only
//! through the linker, never through an import.
#![allow(unsafe_code)]

use super::trap_frame::{TrapFrame, TRAP_FRAME_SIZE};

/// Kinds of exception, as passed to the Rust handlers.
pub mod kind {
    /// Synchronous.
    pub const SYNC: u64 = 0;
    /// IRQ.
    pub const IRQ: u64 = 1;
    /// FIQ.
    pub const FIQ: u64 = 2;
    /// SError.
    pub const SERROR: u64 = 3;
}

core::arch::global_asm!(
    // Saves the interrupted context as a TrapFrame and calls `handler(frame, kind)`.
    ".macro VECTOR handler, kind",
    "    .balign 0x80",
    "    sub     sp, sp, #{frame_size}",
    "    stp     x0, x1, [sp, #0]",
    "    mov     x1, #\\kind",
    "    adrp    x0, \\handler",
    "    add     x0, x0, :lo12:\\handler",
    "    b       save_and_call",
    ".endm",
    "",
    ".section .text.vectors, \"ax\"",
    ".balign 0x800",
    ".global el2_vectors",
    "el2_vectors:",
    // Current EL with SP_EL0: never used at EL2.
    "    VECTOR sluice_hypervisor_fault, 0",
    "    VECTOR sluice_hypervisor_fault, 1",
    "    VECTOR sluice_hypervisor_fault, 2",
    "    VECTOR sluice_hypervisor_fault, 3",
    // Current EL with SP_EL2: the hypervisor faulted.
    "    VECTOR sluice_hypervisor_fault, 0",
    "    VECTOR sluice_hypervisor_fault, 1",
    "    VECTOR sluice_hypervisor_fault, 2",
    "    VECTOR sluice_hypervisor_fault, 3",
    // Lower EL, AArch64: the guests.
    "    VECTOR sluice_trap_from_guest, 0",
    "    VECTOR sluice_trap_from_guest, 1",
    "    VECTOR sluice_trap_from_guest, 2",
    "    VECTOR sluice_trap_from_guest, 3",
    // Lower EL, AArch32: guests' AArch32 EL0 traps go to their EL1; anything here is a guest trap.
    "    VECTOR sluice_trap_from_guest, 0",
    "    VECTOR sluice_trap_from_guest, 1",
    "    VECTOR sluice_trap_from_guest, 2",
    "    VECTOR sluice_trap_from_guest, 3",
    "",
    // x0 = handler, x1 = kind; x0/x1 of the context are saved already.
    "save_and_call:",
    "    stp     x2, x3, [sp, #16]",
    "    stp     x4, x5, [sp, #32]",
    "    stp     x6, x7, [sp, #48]",
    "    stp     x8, x9, [sp, #64]",
    "    stp     x10, x11, [sp, #80]",
    "    stp     x12, x13, [sp, #96]",
    "    stp     x14, x15, [sp, #112]",
    "    stp     x16, x17, [sp, #128]",
    "    stp     x18, x19, [sp, #144]",
    "    stp     x20, x21, [sp, #160]",
    "    stp     x22, x23, [sp, #176]",
    "    stp     x24, x25, [sp, #192]",
    "    stp     x26, x27, [sp, #208]",
    "    stp     x28, x29, [sp, #224]",
    "    mrs     x2, elr_el2",
    "    mrs     x3, spsr_el2",
    "    stp     x30, x2, [sp, #240]",
    "    str     x3, [sp, #256]",
    "    mov     x2, x0",
    "    mov     x0, sp",
    "    blr     x2",
    // Falls through: restore the frame at sp and return to it.
    ".global restore_and_eret",
    "restore_and_eret:",
    "    ldp     x30, x2, [sp, #240]",
    "    ldr     x3, [sp, #256]",
    "    msr     elr_el2, x2",
    "    msr     spsr_el2, x3",
    "    ldp     x0, x1, [sp, #0]",
    "    ldp     x2, x3, [sp, #16]",
    "    ldp     x4, x5, [sp, #32]",
    "    ldp     x6, x7, [sp, #48]",
    "    ldp     x8, x9, [sp, #64]",
    "    ldp     x10, x11, [sp, #80]",
    "    ldp     x12, x13, [sp, #96]",
    "    ldp     x14, x15, [sp, #112]",
    "    ldp     x16, x17, [sp, #128]",
    "    ldp     x18, x19, [sp, #144]",
    "    ldp     x20, x21, [sp, #160]",
    "    ldp     x22, x23, [sp, #176]",
    "    ldp     x24, x25, [sp, #192]",
    "    ldp     x26, x27, [sp, #208]",
    "    ldp     x28, x29, [sp, #224]",
    "    add     sp, sp, #{frame_size}",
    "    eret",
    // No speculation past the eret.
    "    dsb     nsh",
    "    isb",
    frame_size = const TRAP_FRAME_SIZE,
);

unsafe extern "C" {
    /// Restores the frame at the stack pointer and erets; defined above.
    fn restore_and_eret() -> !;
}

/// Switches to the top of `stack_top`'s stack and enters the guest with `frame`.
///
/// # Safety
///
/// `stack_top` must be the 16-byte aligned top of this CPU's trap stack, not in use
/// by the caller (the caller's own stack is abandoned), and the EL2 state for the
/// guest (HCR_EL2, VTTBR_EL2, ...) must be set up.
pub unsafe fn enter_guest(stack_top: usize, frame: &TrapFrame) -> ! {
    let slot = stack_top - TRAP_FRAME_SIZE;
    // SAFETY: the caller gives us the unused top of the trap stack; the frame fits there
    // and is what `restore_and_eret` pops.
    unsafe {
        core::ptr::write(slot as *mut TrapFrame, frame.clone());
        core::arch::asm!("mov sp, {slot}", "b {restore}", slot = in(reg) slot, restore = sym restore_and_eret, options(noreturn));
    }
}
