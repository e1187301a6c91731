//! The first instructions: the arm64 Image header and the boot CPU's entry.
//!
//! QEMU's `-kernel` loads Sluice like a Linux kernel (Linux
//! `Documentation/arch/arm64/booting.rst`): at EL2, MMU and caches off, the host DTB's
//! address in x0. The entry checks that, clears .bss, sets up the boot stack and the
//! EL2 vectors, and calls `sluice_primary_main` (defined in `crate::boot`, reached
//! through the linker, not an import).
#![allow(unsafe_code)]

use crate::arch::aarch64::stacks::{BOOT_STACKS, STACK_SIZE};
use platform::image::MAGIC;

core::arch::global_asm!(
    ".section .text.head, \"ax\"",
    ".global _start",
    "_start:",
    // The Image header: code0/code1, text_offset, image_size, flags, reserved, magic.
    "    b       1f",
    "    .word   0",
    "    .quad   0",
    "    .quad   __image_size",
    // Little-endian, 4 KiB pages, placed close to the base of RAM.
    "    .quad   0x2",
    "    .quad   0, 0, 0",
    "    .word   {magic}",
    "    .word   0",
    "1:",
    "    msr     daifset, #0xf",
    "    mov     x19, x0",
    // Only EL2 will do.
    "    mrs     x1, CurrentEL",
    "    cmp     x1, #(2 << 2)",
    "    b.ne    2f",
    // Linked for one address: stop if the loader put us elsewhere.
    "    adr     x1, _start",
    "    ldr     x2, =_start",
    "    cmp     x1, x2",
    "    b.ne    2f",
    "    adrp    x1, __bss_start",
    "    add     x1, x1, :lo12:__bss_start",
    "    adrp    x2, __bss_end",
    "    add     x2, x2, :lo12:__bss_end",
    // 64 bytes a step (the linker script aligns both ends to 64): .bss holds the
    // heap and the stacks, megabytes that a byte-sized loop would take seconds on
    // under emulation.
    "3:  cmp     x1, x2",
    "    b.hs    4f",
    "    stp     xzr, xzr, [x1], #16",
    "    stp     xzr, xzr, [x1], #16",
    "    stp     xzr, xzr, [x1], #16",
    "    stp     xzr, xzr, [x1], #16",
    "    b       3b",
    "4:  adrp    x1, {stack}",
    "    add     x1, x1, :lo12:{stack}",
    "    add     x1, x1, #{stack_size}",
    "    mov     sp, x1",
    "    adrp    x1, el2_vectors",
    "    add     x1, x1, :lo12:el2_vectors",
    "    msr     vbar_el2, x1",
    "    isb",
    "    mov     x0, x19",
    "    bl      sluice_primary_main",
    "2:  wfe",
    "    b       2b",
    // Secondary CPUs, started by the host's PSCI CPU_ON with their index in x0: MMU
    // off, at EL2, .bss already cleared by the boot CPU.
    ".global secondary_start",
    "secondary_start:",
    "    msr     daifset, #0xf",
    "    mov     x19, x0",
    "    adrp    x1, {stack}",
    "    add     x1, x1, :lo12:{stack}",
    "    add     x2, x0, #1",
    "    mov     x3, #{stack_size}",
    "    madd    x1, x2, x3, x1",
    "    mov     sp, x1",
    "    adrp    x1, el2_vectors",
    "    add     x1, x1, :lo12:el2_vectors",
    "    msr     vbar_el2, x1",
    "    isb",
    "    mov     x0, x19",
    "    bl      sluice_secondary_main",
    "5:  wfe",
    "    b       5b",
    ".ltorg",
    magic = const MAGIC,
    stack = sym BOOT_STACKS,
    stack_size = const STACK_SIZE,
);

unsafe extern "C" {
    /// Where secondary CPUs start (above).
    fn secondary_start();
}

/// The physical address secondary CPUs start at.
pub fn secondary_entry_point() -> u64 {
    secondary_start as *const () as u64
}
