//! The EL1 vector table, and recovering from faults a test provokes on purpose.
//!
//! Every vector saves the interrupted context (general registers, ELR, SPSR, FP/SIMD
//! state: the Rust handler may use FP/SIMD registers itself) in a `TrapFrame` on the
//! stack and calls `el1_trap`. An IRQ goes to `irq::dispatch`. A synchronous data abort or undefined instruction
//! taken while [`expect_fault`] is running its closure is recorded and execution
//! resumes at the next instruction; while [`skip_faults`] is on (the fuzz guest), each
//! one is counted and skipped the same way. Anything else is unexpected: the guest
//! prints what it got and powers off.
#![allow(unsafe_code)]

use core::arch::{asm, global_asm};
use core::mem::{offset_of, size_of};
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};

use crate::fault::{Fault, Vector};

/// The context a vector saves, in the layout the assembly below uses.
#[repr(C)]
struct TrapFrame {
    /// x0..x30.
    x: [u64; 31],
    /// ELR_EL1: where `eret` returns to.
    elr: u64,
    spsr: u64,
    fpsr: u64,
    fpcr: u64,
    _pad: u64,
    /// q0..q31.
    q: [u128; 32],
}

const FRAME_SIZE: usize = size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 800 && FRAME_SIZE & 15 == 0);
const _: () = assert!(offset_of!(TrapFrame, elr) == 248);
const _: () = assert!(offset_of!(TrapFrame, fpsr) == 264);
const _: () = assert!(offset_of!(TrapFrame, q) == 288);

global_asm!(
    r#"
    .macro GUEST_EL1_VECTOR index
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x1, #\index
    b       .Lguest_el1_trap_common
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global guest_el1_vectors
guest_el1_vectors:
    GUEST_EL1_VECTOR 0
    GUEST_EL1_VECTOR 1
    GUEST_EL1_VECTOR 2
    GUEST_EL1_VECTOR 3
    GUEST_EL1_VECTOR 4
    GUEST_EL1_VECTOR 5
    GUEST_EL1_VECTOR 6
    GUEST_EL1_VECTOR 7
    GUEST_EL1_VECTOR 8
    GUEST_EL1_VECTOR 9
    GUEST_EL1_VECTOR 10
    GUEST_EL1_VECTOR 11
    GUEST_EL1_VECTOR 12
    GUEST_EL1_VECTOR 13
    GUEST_EL1_VECTOR 14
    GUEST_EL1_VECTOR 15
    .purgem GUEST_EL1_VECTOR

.Lguest_el1_trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x9, elr_el1
    mrs     x10, spsr_el1
    stp     x9, x10, [sp, #248]
    mrs     x9, fpsr
    mrs     x10, fpcr
    stp     x9, x10, [sp, #264]
    add     x9, sp, #288
    stp     q0, q1, [x9, #0]
    stp     q2, q3, [x9, #32]
    stp     q4, q5, [x9, #64]
    stp     q6, q7, [x9, #96]
    stp     q8, q9, [x9, #128]
    stp     q10, q11, [x9, #160]
    stp     q12, q13, [x9, #192]
    stp     q14, q15, [x9, #224]
    stp     q16, q17, [x9, #256]
    stp     q18, q19, [x9, #288]
    stp     q20, q21, [x9, #320]
    stp     q22, q23, [x9, #352]
    stp     q24, q25, [x9, #384]
    stp     q26, q27, [x9, #416]
    stp     q28, q29, [x9, #448]
    stp     q30, q31, [x9, #480]

    mov     x0, sp                   // x1 = vector index
    bl      {handler}

    add     x9, sp, #288
    ldp     q0, q1, [x9, #0]
    ldp     q2, q3, [x9, #32]
    ldp     q4, q5, [x9, #64]
    ldp     q6, q7, [x9, #96]
    ldp     q8, q9, [x9, #128]
    ldp     q10, q11, [x9, #160]
    ldp     q12, q13, [x9, #192]
    ldp     q14, q15, [x9, #224]
    ldp     q16, q17, [x9, #256]
    ldp     q18, q19, [x9, #288]
    ldp     q20, q21, [x9, #320]
    ldp     q22, q23, [x9, #352]
    ldp     q24, q25, [x9, #384]
    ldp     q26, q27, [x9, #416]
    ldp     q28, q29, [x9, #448]
    ldp     q30, q31, [x9, #480]
    ldp     x9, x10, [sp, #264]
    msr     fpsr, x9
    msr     fpcr, x10
    ldp     x9, x10, [sp, #248]
    msr     elr_el1, x9
    msr     spsr_el1, x10
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    add     sp, sp, #{frame_size}
    eret
"#,
    frame_size = const FRAME_SIZE,
    handler = sym el1_trap,
);

/// Set while `expect_fault` runs its closure.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Set by the handler when it recovered from a fault while armed.
static FAULTED: AtomicBool = AtomicBool::new(false);
static FAULT_ESR: AtomicU64 = AtomicU64::new(0);
static FAULT_FAR: AtomicU64 = AtomicU64::new(0);
static FAULT_ELR: AtomicU64 = AtomicU64::new(0);

/// Set while `expect_debug` runs its closure.
static DEBUG_ARMED: AtomicBool = AtomicBool::new(false);
/// The debug exception taken while armed (ESR 0: none).
static DEBUG_ESR: AtomicU64 = AtomicU64::new(0);
static DEBUG_FAR: AtomicU64 = AtomicU64::new(0);
static DEBUG_ELR: AtomicU64 = AtomicU64::new(0);

/// Set while faults are counted and skipped (see [`skip_faults`]).
static SKIPPING: AtomicBool = AtomicBool::new(false);
static SKIPPED_DATA_ABORTS: AtomicU64 = AtomicU64::new(0);
static SKIPPED_UNDEFINED: AtomicU64 = AtomicU64::new(0);

/// The faults [`skip_faults`] counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Data aborts.
    pub data_aborts: u64,
    /// Undefined-instruction exceptions.
    pub undefined: u64,
}

/// Turns counting and skipping on or off: while on, every data abort and undefined
/// instruction taken at EL1 (on SP_ELx, outside [`expect_fault`], which goes first)
/// is counted and execution resumes after the faulting instruction, as
/// `expect_fault` does for one fault. Instruction aborts and everything else stay
/// unexpected. For a program whose every access that may fault is one instruction
/// whose result nothing relies on ([`crate::probe`]), such as the fuzz guest.
pub fn skip_faults(on: bool) {
    compiler_fence(Ordering::SeqCst);
    SKIPPING.store(on, Ordering::SeqCst);
    compiler_fence(Ordering::SeqCst);
}

/// How many faults were counted and skipped (see [`skip_faults`]).
pub fn skipped_faults() -> Skipped {
    Skipped {
        data_aborts: SKIPPED_DATA_ABORTS.load(Ordering::SeqCst),
        undefined: SKIPPED_UNDEFINED.load(Ordering::SeqCst),
    }
}

/// Runs `f`; if it takes a synchronous data abort, undefined-instruction exception or
/// instruction abort, returns what the guest saw, else `None`.
///
/// After a data abort or an undefined instruction the faulting instruction is skipped
/// (execution resumes at ELR + 4), so whatever it would have loaded is left as it
/// was: `f` should make its faulting access with one instruction whose result nothing
/// relies on (see [`crate::probe`]). After an instruction abort execution resumes at
/// the link register, as if the call that branched there had returned: `f` should
/// branch with one `blr` ([`crate::probe::call_at`]). After the first fault the guard
/// is off again: a second fault inside the same `f` is unexpected. Not reentrant.
pub fn expect_fault<F: FnOnce()>(f: F) -> Option<Fault> {
    FAULTED.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    compiler_fence(Ordering::SeqCst);
    f();
    compiler_fence(Ordering::SeqCst);
    ARMED.store(false, Ordering::SeqCst);
    FAULTED.load(Ordering::SeqCst).then(|| Fault {
        esr: FAULT_ESR.load(Ordering::SeqCst),
        far: FAULT_FAR.load(Ordering::SeqCst),
        elr: FAULT_ELR.load(Ordering::SeqCst),
    })
}

/// Runs `f`, which is to take one debug exception at EL1 (a hardware breakpoint,
/// a watchpoint or a software step); returns what the guest saw, else `None`.
///
/// On the exception, `MDSCR_EL1` is cleared (no more debug exceptions) and
/// execution resumes where the exception says: a breakpoint's or watchpoint's
/// instruction runs again, now without the debug event; a step goes on after the
/// stepped instruction. Not reentrant.
pub fn expect_debug<F: FnOnce()>(f: F) -> Option<Fault> {
    DEBUG_ESR.store(0, Ordering::SeqCst);
    DEBUG_ARMED.store(true, Ordering::SeqCst);
    compiler_fence(Ordering::SeqCst);
    f();
    compiler_fence(Ordering::SeqCst);
    DEBUG_ARMED.store(false, Ordering::SeqCst);
    let esr = DEBUG_ESR.load(Ordering::SeqCst);
    (esr != 0).then(|| Fault {
        esr,
        far: DEBUG_FAR.load(Ordering::SeqCst),
        elr: DEBUG_ELR.load(Ordering::SeqCst),
    })
}

/// Called by every vector with the saved context and the vector's index.
extern "C" fn el1_trap(frame: &mut TrapFrame, index: u64) {
    let vector = Vector(index as u8);
    if vector.is_current_el_irq() {
        crate::irq::dispatch();
        return;
    }
    let (esr, far): (u64, u64);
    // SAFETY: reading ESR_EL1 and FAR_EL1 has no side effects.
    unsafe {
        asm!(
            "mrs {esr}, esr_el1",
            "mrs {far}, far_el1",
            esr = out(reg) esr,
            far = out(reg) far,
            options(nomem, nostack, preserves_flags),
        );
    }
    let fault = Fault { esr, far, elr: frame.elr };
    if vector == Vector::SYNC_CURRENT_SPX && fault.is_debug() && DEBUG_ARMED.load(Ordering::SeqCst) {
        DEBUG_ARMED.store(false, Ordering::SeqCst);
        // SAFETY: turning the guest's own debug exceptions off touches no memory.
        unsafe { asm!("msr mdscr_el1, xzr", "isb", options(nomem, nostack, preserves_flags)) };
        DEBUG_FAR.store(fault.far, Ordering::SeqCst);
        DEBUG_ELR.store(fault.elr, Ordering::SeqCst);
        DEBUG_ESR.store(fault.esr, Ordering::SeqCst);
        return;
    }
    if vector == Vector::SYNC_CURRENT_SPX && fault.is_recoverable() && ARMED.load(Ordering::SeqCst) {
        ARMED.store(false, Ordering::SeqCst);
        FAULT_ESR.store(fault.esr, Ordering::SeqCst);
        FAULT_FAR.store(fault.far, Ordering::SeqCst);
        FAULT_ELR.store(fault.elr, Ordering::SeqCst);
        FAULTED.store(true, Ordering::SeqCst);
        if fault.ec() == crate::fault::ec::IABT_SAME {
            // Nothing to skip at an address that can't be fetched: return to the caller.
            frame.elr = frame.x[30];
        } else {
            // Every A64 instruction is 4 bytes: resume after the faulting one.
            frame.elr += 4;
        }
        return;
    }
    if vector == Vector::SYNC_CURRENT_SPX && SKIPPING.load(Ordering::SeqCst) {
        let counter = match fault.ec() {
            crate::fault::ec::DABT_SAME => Some(&SKIPPED_DATA_ABORTS),
            crate::fault::ec::UNKNOWN => Some(&SKIPPED_UNDEFINED),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::SeqCst);
            // Every A64 instruction is 4 bytes: resume after the faulting one.
            frame.elr += 4;
            return;
        }
    }
    if vector.is_sync() && fault.has_address() {
        crate::println!(
            "guest: unexpected exception ({vector}): {} (ESR {:#010x}, ELR {:#x}, FAR {:#x})",
            fault.class_name(),
            fault.esr,
            fault.elr,
            fault.far,
        );
    } else if vector.is_sync() {
        crate::println!(
            "guest: unexpected exception ({vector}): {} (ESR {:#010x}, ELR {:#x})",
            fault.class_name(),
            fault.esr,
            fault.elr,
        );
    } else {
        crate::println!(
            "guest: unexpected exception ({vector}): ESR {:#010x}, ELR {:#x}",
            fault.esr,
            fault.elr,
        );
    }
    crate::psci::system_off()
}
