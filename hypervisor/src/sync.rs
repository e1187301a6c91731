//! The lock the CPUs share state with: a spin lock whose waiters, on the bare-metal
//! build, `yield` (see `arch::aarch64::el2::Yield`: under QEMU's `-icount` one host
//! thread runs every CPU, and the holder may be the CPU a waiter must hand it to).

#[cfg(bare_metal)]
use crate::arch::aarch64::el2::Yield as Relax;
#[cfg(not(bare_metal))]
use spin::relax::Spin as Relax;

/// A spin lock over `T`.
pub type Lock<T> = spin::mutex::Mutex<T, Relax>;

/// What [`Lock::lock`] returns.
pub type LockGuard<'a, T> = spin::MutexGuard<'a, T>;

/// Waits a moment for another CPU (between two tries of something it holds).
pub fn relax() {
    <Relax as spin::relax::RelaxStrategy>::relax();
}
