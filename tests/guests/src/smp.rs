//! Starting the guest's other CPUs with PSCI CPU_ON.
//!
//! [`start_cpu`] hands PSCI the entry point `guest_secondary_entry` (in `boot`) and,
//! as context id, the started CPU's per-CPU slot (its MPIDR Aff0, see
//! [`crate::cpu::index`]). That code sets up the CPU like the boot CPU (EL1, the
//! slot's own stack of [`SECONDARY_STACK_SIZE`], the vector table, FP/SIMD) and calls
//! the `main` given to `start_cpu` with the slot. Everything else a CPU needs (its
//! GIC redistributor and CPU interface, its timer) it sets up itself in `main`.

use crate::cpu::{MAX_CPUS, MPIDR_AFFINITY_MASK};

/// Stack of each CPU started by [`start_cpu`].
pub const SECONDARY_STACK_SIZE: usize = 16 * 1024;

/// The per-CPU slot of the CPU with MPIDR affinity `target`: its Aff0, if the higher
/// affinity fields are zero and Aff0 is below [`MAX_CPUS`].
pub const fn slot_of(target: u64) -> Option<usize> {
    let aff0 = target & 0xff;
    if target & MPIDR_AFFINITY_MASK != aff0 || aff0 as usize >= MAX_CPUS {
        return None;
    }
    Some(aff0 as usize)
}

#[cfg(bare_metal)]
pub use self::start::{start_cpu, StartError};

#[cfg(bare_metal)]
pub(crate) use self::start::secondary_start;

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod start {
    use core::fmt;
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, Ordering};

    use super::slot_of;
    use crate::cpu::{self, MAX_CPUS};
    use crate::psci;

    /// What a started CPU runs, given its slot; never returns.
    type SecondaryMain = fn(usize) -> !;

    /// The `main` of each slot, as a `SecondaryMain` cast to a pointer (null: none).
    static MAINS: [AtomicPtr<()>; MAX_CPUS] = [const { AtomicPtr::new(ptr::null_mut()) }; MAX_CPUS];

    extern "C" {
        /// The entry of CPUs started by PSCI, in `boot`.
        fn guest_secondary_entry() -> !;
    }

    /// Why a CPU was not started.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StartError {
        /// The CPU has no per-CPU slot (see `slot_of`), or it is the caller.
        NoSlot(u64),
        /// CPU_ON failed.
        Psci(psci::Error),
    }

    impl fmt::Display for StartError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::NoSlot(target) => write!(f, "no per-CPU slot for MPIDR {target:#x}"),
                Self::Psci(e) => write!(f, "CPU_ON returned {e}"),
            }
        }
    }

    /// Starts the CPU with MPIDR affinity `target` (a CPU node's `reg` in the DTB)
    /// running `main(slot)`; returns its slot. The CPU may still be on its way when
    /// this returns: `main` says when it is up.
    ///
    /// # Errors
    ///
    /// [`StartError::NoSlot`] for a CPU without a slot or the calling CPU itself,
    /// [`StartError::Psci`] with what CPU_ON returned (e.g. ALREADY_ON).
    pub fn start_cpu(target: u64, main: fn(usize) -> !) -> Result<usize, StartError> {
        let slot = slot_of(target).filter(|&slot| slot != cpu::index()).ok_or(StartError::NoSlot(target))?;
        MAINS[slot].store(main as *mut (), Ordering::Release);
        let entry = guest_secondary_entry as *const () as u64;
        psci::cpu_on(target, entry, slot as u64).map_err(StartError::Psci)?;
        Ok(slot)
    }

    /// Called by `guest_secondary_entry` with the slot (the CPU_ON context id), at
    /// EL1 with a stack and vectors.
    pub(crate) extern "C" fn secondary_start(slot: usize) -> ! {
        let p = MAINS[slot].load(Ordering::Acquire);
        if p.is_null() {
            crate::println!("guest: cpu slot {slot} started without a main");
            cpu::halt();
        }
        // SAFETY: the only non-null values stored are `SecondaryMain`s cast by
        // `start_cpu`.
        let main = unsafe { core::mem::transmute::<*mut (), SecondaryMain>(p) };
        main(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aff0_of_the_first_cluster() {
        assert_eq!(slot_of(0), Some(0));
        assert_eq!(slot_of(1), Some(1));
        assert_eq!(slot_of(0x8000_0001), Some(1)); // bit 31 (RES1) is no affinity
        assert_eq!(slot_of(MAX_CPUS as u64 - 1), Some(MAX_CPUS - 1));
        assert_eq!(slot_of(MAX_CPUS as u64), None);
        assert_eq!(slot_of(0x100), None); // Aff1 = 1
        assert_eq!(slot_of(0x1_0000_0000), None); // Aff3 = 1
    }
}
