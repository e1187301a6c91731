//! A value shared between a guest's main flow and its interrupt handlers (a
//! driver whose completions an interrupt handler collects, say).
//!
//! [`IrqShared::with`] lends the value with IRQs masked and the lock held, so a
//! handler never runs in the middle of the main flow's use on the same CPU, nor
//! another CPU's; a nested `with` on the same CPU (the lock is the runtime's
//! re-entrant [`SpinLock`]) is refused with a panic instead of lending the value
//! twice.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::sync::SpinLock;

/// A slot for one `T`, empty at first.
pub struct IrqShared<T> {
    lock: SpinLock,
    /// A `with` is running (the lock is re-entrant on one CPU; this is not).
    lent: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is reached only under `lock` with `lent` set, so by one CPU and
// one flow at a time; `T: Send` lets it be used from whichever CPU holds the lock.
unsafe impl<T: Send> Sync for IrqShared<T> {}

impl<T> IrqShared<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Self { lock: SpinLock::new(), lent: AtomicBool::new(false), value: UnsafeCell::new(None) }
    }

    /// Runs `f` on the whole slot with IRQs masked and the lock held.
    ///
    /// # Panics
    ///
    /// When called from inside another `with` of the same slot.
    fn access<R>(&self, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        let _held = self.lock.lock();
        assert!(!self.lent.swap(true, Ordering::Acquire), "shared: nested use of one IrqShared");
        // SAFETY: the lock excludes other CPUs, the masked IRQs this CPU's handlers,
        // and `lent` a nested call: this is the only reference to the value.
        let result = f(unsafe { &mut *self.value.get() });
        self.lent.store(false, Ordering::Release);
        result
    }

    /// Puts `value` in the slot; returns what was there.
    pub fn put(&self, value: T) -> Option<T> {
        self.access(|slot| slot.replace(value))
    }

    /// Takes the value out, leaving the slot empty.
    pub fn take(&self) -> Option<T> {
        self.access(Option::take)
    }

    /// Runs `f` on the value with IRQs masked; `None` when the slot is empty.
    ///
    /// # Panics
    ///
    /// When called from inside another `with` of the same slot.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.access(|slot| slot.as_mut().map(f))
    }
}

impl<T> Default for IrqShared<T> {
    fn default() -> Self {
        Self::new()
    }
}
