//! Entry: the arm64 `Image` header, EL2 → EL1, stack, .bss, vectors, FP/SIMD, then Rust.
//!
//! The header follows Linux `Documentation/arch/arm64/booting.rst`: a loader (Sluice,
//! or QEMU's `-kernel`) places the image at a 2 MiB aligned RAM base + `text_offset`
//! and enters its first instruction with the MMU off and `x0` = DTB address.
//!
//! On plain QEMU with `virtualization=on` the guest starts at EL2; it then makes EL1
//! AArch64, leaves FP/SIMD and the EL1 timer untrapped, installs a tiny EL2 vector
//! table that answers any `hvc` with SMCCC `NOT_SUPPORTED`, and drops to EL1h. Under
//! Sluice and on QEMU without EL2 it starts at EL1.
//!
//! CPUs started later with PSCI CPU_ON (see `smp`) enter at `guest_secondary_entry`
//! and go the same way, each on its own stack.
#![allow(unsafe_code)]

use core::arch::global_asm;

use platform::image::MAGIC;

/// Where the image wants to be placed, from a 2 MiB aligned RAM base.
const TEXT_OFFSET: u64 = 0x20_0000;
/// Header flags: little-endian (bit 0 = 0), 4 KiB pages (bits 1-2 = 1), placed near
/// the base of RAM (bit 3 = 0). The code is linked for RAM at 0x4000_0000 (QEMU
/// virt's, and every Sluice guest's); loaded anywhere else it stops at once.
const FLAGS: u64 = 0b0010;
/// SPSR for the drop to EL1: D, A, I and F masked, EL1h (Arm ARM C5.2.19).
const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// HCR_EL2: RW (EL1 is AArch64), APK and API (no pointer-auth traps).
const HCR_EL2_EL1_AARCH64: u64 = (1 << 31) | (1 << 40) | (1 << 41);
/// CPTR_EL2 (E2H = 0): only the RES1 bits, so neither FP/SIMD (TFP) nor SVE (TZ) trap.
const CPTR_EL2_NO_TRAPS: u64 = 0x32ff;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD at EL1 and EL0 untrapped.
const CPACR_EL1_FPEN: u64 = 0b11 << 20;

global_asm!(
    r#"
    // EL2 (plain QEMU with virtualization=on): run the guest at EL1, at label \el1.
    // Used by the boot CPU and by every CPU started with PSCI CPU_ON.
    .macro GUEST_EL2_TO_EL1 el1
    ldr     x9, ={hcr}
    msr     hcr_el2, x9
    ldr     x9, ={cptr}
    msr     cptr_el2, x9
    mrs     x9, cnthctl_el2
    orr     x9, x9, #3               // EL1PCTEN | EL1PCEN: EL1 may use its timer
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr         // every CPU's virtual count is the same
    adrp    x9, .Lguest_el2_vectors
    add     x9, x9, :lo12:.Lguest_el2_vectors
    msr     vbar_el2, x9
    ldr     x9, ={spsr}
    msr     spsr_el2, x9
    adrp    x9, \el1
    add     x9, x9, :lo12:\el1
    msr     elr_el2, x9
    eret
    .endm

    .section .text.boot, "ax"
    .global _start
_start:
    b       .Lguest_boot             // code0
    .word   0                        // code1
    .quad   {text_offset}            // text_offset
    .quad   _image_size              // image_size, from the linker script
    .quad   {flags}                  // flags
    .quad   0                        // res2
    .quad   0                        // res3
    .quad   0                        // res4
    .word   {magic}                  // magic: "ARM\x64"
    .word   0                        // res5: no PE/COFF header

.Lguest_boot:
    mov     x19, x0                  // keep the DTB address
    adr     x9, _start               // the code is not position-independent:
    ldr     x10, =_start             // stop if not loaded at its link address
    cmp     x9, x10
    b.ne    .Lguest_hang
    mrs     x9, CurrentEL
    ubfx    x9, x9, #2, #2
    cmp     x9, #1
    b.eq    .Lguest_el1
    cmp     x9, #2
    b.ne    .Lguest_hang             // EL3: not a place a guest starts at

    GUEST_EL2_TO_EL1 .Lguest_el1

.Lguest_el1:
    msr     daifset, #0xf
    adrp    x9, _stack_top
    add     x9, x9, :lo12:_stack_top
    mov     sp, x9

    adrp    x9, _bss_start
    add     x9, x9, :lo12:_bss_start
    adrp    x10, _bss_end
    add     x10, x10, :lo12:_bss_end
.Lguest_zero_bss:
    cmp     x9, x10
    b.hs    .Lguest_bss_done
    stp     xzr, xzr, [x9], #16
    b       .Lguest_zero_bss
.Lguest_bss_done:

    adrp    x9, guest_el1_vectors
    add     x9, x9, :lo12:guest_el1_vectors
    msr     vbar_el1, x9
    mrs     x9, cpacr_el1
    orr     x9, x9, #{cpacr_fpen}
    msr     cpacr_el1, x9
    isb

    mov     x0, x19
    bl      {rust_start}
.Lguest_hang:
    wfe
    b       .Lguest_hang

    // A CPU started with PSCI CPU_ON (`smp::start_cpu`): x0 = context id = the
    // CPU's per-CPU slot (below {max_cpus}). Same set-up as the boot CPU, on the slot's
    // own stack, without touching .bss; then `smp::secondary_start(slot)`.
    .global guest_secondary_entry
guest_secondary_entry:
    mov     x19, x0
    mrs     x9, CurrentEL
    ubfx    x9, x9, #2, #2
    cmp     x9, #1
    b.eq    .Lguest_secondary_el1
    cmp     x9, #2
    b.ne    .Lguest_hang
    GUEST_EL2_TO_EL1 .Lguest_secondary_el1

.Lguest_secondary_el1:
    msr     daifset, #0xf
    cmp     x19, #{max_cpus}
    b.hs    .Lguest_hang
    adrp    x9, .Lguest_secondary_stacks
    add     x9, x9, :lo12:.Lguest_secondary_stacks
    add     x10, x19, #1             // the top of slot x19
    mov     x11, #{secondary_stack_size}
    madd    x9, x10, x11, x9
    mov     sp, x9
    adrp    x9, guest_el1_vectors
    add     x9, x9, :lo12:guest_el1_vectors
    msr     vbar_el1, x9
    mrs     x9, cpacr_el1
    orr     x9, x9, #{cpacr_fpen}
    msr     cpacr_el1, x9
    isb
    mov     x0, x19
    bl      {secondary_start}
    b       .Lguest_hang
    .purgem GUEST_EL2_TO_EL1

    // One stack per per-CPU slot (slot 0, the boot CPU's, stays unused: it has
    // the linker script's stack).
    .pushsection .bss.guest_secondary_stacks, "aw", %nobits
    .balign 16
.Lguest_secondary_stacks:
    .space  {max_cpus} * {secondary_stack_size}
    .popsection

    // EL2 vectors for plain QEMU with virtualization=on (VBAR_EL2 needs 2 KiB
    // alignment). Only "synchronous from a lower EL, AArch64" (offset 0x400) does
    // something: an `hvc` gets x0 = -1 (SMCCC NOT_SUPPORTED), using TPIDR_EL2 as
    // the one scratch register so every other guest register survives. Anything
    // else stops the CPU.
    .balign 2048
.Lguest_el2_vectors:
    .rept   8
    .balign 0x80
    b       .Lguest_hang
    .endr
    .balign 0x80
    msr     tpidr_el2, x1
    mrs     x1, esr_el2
    lsr     x1, x1, #26
    cmp     x1, #0x16                // EC = HVC from AArch64
    b.ne    .Lguest_hang
    mov     x0, #-1
    mrs     x1, tpidr_el2
    eret
    .rept   7
    .balign 0x80
    b       .Lguest_hang
    .endr
    .ltorg
"#,
    text_offset = const TEXT_OFFSET,
    flags = const FLAGS,
    magic = const MAGIC,
    hcr = const HCR_EL2_EL1_AARCH64,
    cptr = const CPTR_EL2_NO_TRAPS,
    spsr = const SPSR_EL1H_MASKED,
    cpacr_fpen = const CPACR_EL1_FPEN,
    rust_start = sym rust_start,
    max_cpus = const crate::cpu::MAX_CPUS,
    secondary_stack_size = const crate::smp::SECONDARY_STACK_SIZE,
    secondary_start = sym crate::smp::secondary_start,
);

/// First Rust code: picks the PSCI conduit from the DTB, then runs the guest.
extern "C" fn rust_start(dtb: usize) -> ! {
    crate::psci::init_from_dtb(dtb);
    extern "Rust" {
        fn __test_guest_main(dtb: usize) -> !;
    }
    // SAFETY: `entry!` defines `__test_guest_main` with exactly this signature; the
    // machine is set up as a Rust function expects (stack, .bss, FP/SIMD).
    unsafe { __test_guest_main(dtb) }
}

/// Names a guest's `fn(dtb: usize) -> !` as the function the runtime calls at boot.
///
/// Use it once per guest binary, in its bare-metal build: `test_guests::entry!(main);`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by the runtime once the CPU is at EL1 with a stack and vectors.
        #[allow(unsafe_code)] // `no_mangle`: the runtime finds the guest by this name.
        #[no_mangle]
        pub fn __test_guest_main(dtb: usize) -> ! {
            let main: fn(usize) -> ! = $main;
            main(dtb)
        }
    };
}
