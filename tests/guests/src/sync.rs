//! Coordination between the guest's CPUs: a spin lock and a spin barrier, both made
//! of atomics alone.
//!
//! The guests run with the MMU off, where every data access is to Device memory;
//! QEMU (and so Sluice on QEMU) implements the exclusive load/store pairs the
//! read-modify-write atomics compile to for any memory type, which is all the test
//! guests need (on hardware, exclusives to Device memory are IMPLEMENTATION DEFINED:
//! Arm ARM B2.9).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One turn of a spin-wait loop.
fn relax() {
    #[cfg(bare_metal)]
    crate::cpu::relax();
    #[cfg(not(bare_metal))]
    core::hint::spin_loop();
}

/// A spin lock that masks IRQs while held and that the CPU holding it may take
/// again (then it does nothing), so an interrupt handler or a fault report that
/// prints while its CPU is in the middle of a line does not deadlock.
pub struct SpinLock {
    /// The holder's affinity + 1, or 0 when free.
    owner: AtomicU64,
}

/// Proof that the lock is held; dropping it releases the lock.
pub struct SpinGuard<'a> {
    lock: &'a SpinLock,
    /// Whether this guard took the lock (false: its CPU already held it).
    took: bool,
    #[cfg(bare_metal)]
    _masked: crate::irq::Masked,
}

impl SpinLock {
    /// A free lock.
    pub const fn new() -> Self {
        Self { owner: AtomicU64::new(0) }
    }

    /// Takes the lock on behalf of the CPU with affinity `me`, spinning while another
    /// CPU holds it. Returns false if `me` already held it.
    // On the host only the unit tests take the lock (the guests' `lock` is bare metal).
    #[cfg_attr(not(bare_metal), allow(dead_code))]
    fn lock_as(&self, me: u64) -> bool {
        let me = me + 1;
        if self.owner.load(Ordering::Relaxed) == me {
            return false;
        }
        while self.owner.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            relax();
        }
        true
    }

    /// Takes the lock with IRQs masked on the calling CPU.
    #[cfg(bare_metal)]
    pub fn lock(&self) -> SpinGuard<'_> {
        let masked = crate::irq::Masked::new();
        let took = self.lock_as(crate::cpu::affinity());
        SpinGuard { lock: self, took, _masked: masked }
    }
}

impl Default for SpinLock {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SpinGuard<'_> {
    fn drop(&mut self) {
        if self.took {
            self.lock.owner.store(0, Ordering::Release);
        }
        // Then `_masked` restores the IRQ mask.
    }
}

/// A reusable barrier for a fixed number of CPUs (sense-reversing: a generation
/// count tells one round from the next).
pub struct SpinBarrier {
    cpus: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    /// A barrier that `cpus` CPUs wait at.
    pub const fn new(cpus: usize) -> Self {
        Self { cpus, arrived: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }

    /// Waits until all the CPUs have called it (this round).
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.cpus {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.store(generation.wrapping_add(1), Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                relax();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_holder_may_take_the_lock_again() {
        let lock = SpinLock::new();
        assert!(lock.lock_as(0x100));
        assert!(!lock.lock_as(0x100));
        assert_eq!(lock.owner.load(Ordering::Relaxed), 0x101);
        lock.owner.store(0, Ordering::Release);
        assert!(lock.lock_as(0));
    }

    #[test]
    fn the_lock_excludes_other_cpus() {
        let lock = Arc::new(SpinLock::new());
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|cpu| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        assert!(lock.lock_as(cpu));
                        // Not atomic as a whole: only the lock keeps it exact.
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                        lock.owner.store(0, Ordering::Release);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 4000);
    }

    #[test]
    fn the_barrier_holds_every_round() {
        let barrier = Arc::new(SpinBarrier::new(3));
        let phase = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (barrier, phase) = (barrier.clone(), phase.clone());
                std::thread::spawn(move || {
                    for round in 0..50 {
                        phase.fetch_add(1, Ordering::SeqCst);
                        barrier.wait();
                        // Everyone arrived at this round before anyone went on.
                        assert!(phase.load(Ordering::SeqCst) >= 3 * (round + 1));
                        barrier.wait();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
