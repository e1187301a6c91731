//! Waiting for a device in a polling loop.
#![allow(unsafe_code)]

/// A pause in a polling loop. On AArch64 it is `yield`, the hint that this CPU is
/// waiting: QEMU without multi-threaded TCG (under `-icount`, where one host thread
/// runs every CPU in turn) then hands the thread to the next CPU, which may be the
/// one the driver waits for (under Sluice, the other end of a channel); Rust's
/// `spin_loop` there is an `isb`, which doesn't. Elsewhere it is `spin_loop`.
#[inline]
pub fn relax() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `yield` is a hint with no architectural effect.
    unsafe {
        core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::hint::spin_loop();
}
