//! Interrupt handling: a handler per INTID, called from the EL1 IRQ vector, and the
//! PSTATE.I mask.
//!
//! A guest registers its handlers ([`register`]) before it unmasks IRQs ([`enable`]).
//! The IRQ vectors of `exceptions` call [`dispatch`], which acknowledges each pending
//! interrupt (ICC_IAR1_EL1), calls its handler with IRQs masked, and ends it
//! (ICC_EOIR1_EL1), until none is pending. An interrupt nobody registered is
//! unexpected: the guest says so and powers off. The table is shared by all CPUs;
//! SGI and PPI handlers run on the CPU that took the interrupt.
#![allow(unsafe_code)]

use core::arch::asm;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::gic;

/// What handles one interrupt; gets the INTID.
pub type Handler = fn(intid: u32);

/// INTIDs with a handler slot: SGIs, PPIs, and the SPIs of QEMU virt's devices
/// (UART 33, RTC 34, GPIO 39, virtio-mmio 48..80).
pub const MAX_INTID: u32 = 96;

/// The handler of each INTID, as a `Handler` cast to a pointer (null: none).
static HANDLERS: [AtomicPtr<()>; MAX_INTID as usize] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_INTID as usize];

/// Makes `handler` the handler of `intid` on every CPU (replacing any before).
///
/// # Panics
///
/// If `intid` is [`MAX_INTID`] or more.
pub fn register(intid: u32, handler: Handler) {
    assert!(intid < MAX_INTID, "irq: no handler slot for INTID {intid}");
    HANDLERS[intid as usize].store(handler as *mut (), Ordering::Release);
}

fn handler(intid: u32) -> Option<Handler> {
    let slot = HANDLERS.get(intid as usize)?;
    let p = slot.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: the only non-null values stored are `Handler`s cast by `register`.
    Some(unsafe { core::mem::transmute::<*mut (), Handler>(p) })
}

/// Handles every pending interrupt; called by the IRQ vectors with IRQs masked.
pub fn dispatch() {
    loop {
        let iar = gic::acknowledge();
        let intid = iar & 0xff_ffff;
        if intid >= gic::FIRST_SPECIAL_INTID {
            return;
        }
        match handler(intid) {
            Some(f) => f(intid),
            None => {
                crate::println!("guest: unexpected interrupt {intid} (no handler)");
                crate::psci::system_off()
            }
        }
        gic::end_of_interrupt(iar);
    }
}

/// Unmasks IRQs on the calling CPU (clears PSTATE.I).
pub fn enable() {
    // SAFETY: unmasking IRQs lets the vector run `dispatch`, which is sound at any
    // point of the guest; the clobber keeps memory accesses on their side of it.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs on the calling CPU (sets PSTATE.I).
pub fn disable() {
    // SAFETY: masking IRQs only delays them.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Whether IRQs are masked on the calling CPU.
pub fn is_disabled() -> bool {
    let daif: u64;
    // SAFETY: reading DAIF has no side effects.
    unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
    daif & (1 << 7) != 0
}

/// Whether an IRQ is pending at the calling CPU's interface, masked or not
/// (ISR_EL1.I): under a hypervisor, a virtual IRQ in its list registers.
pub fn pending() -> bool {
    let isr: u64;
    // SAFETY: reading ISR_EL1 has no side effects.
    unsafe { asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack, preserves_flags)) };
    isr & (1 << 7) != 0
}

/// Masks IRQs until the guard is dropped, then restores the mask as it was.
pub struct Masked {
    was_disabled: bool,
}

impl Masked {
    /// Masks IRQs on the calling CPU.
    pub fn new() -> Self {
        let was_disabled = is_disabled();
        disable();
        Self { was_disabled }
    }
}

impl Default for Masked {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Masked {
    fn drop(&mut self) {
        if !self.was_disabled {
            enable();
        }
    }
}

/// Sleeps until an interrupt comes unless `ready()` already holds, then handles it:
/// checks with IRQs masked and sleeps with `wfi` (which wakes on a pending IRQ even
/// while masked), so an interrupt between the check and the sleep is not missed.
/// Call with IRQs unmasked; returns after at most one sleep.
pub fn wait_unless(ready: impl FnOnce() -> bool) {
    disable();
    if !ready() {
        crate::cpu::wait_for_interrupt();
    }
    enable();
}
