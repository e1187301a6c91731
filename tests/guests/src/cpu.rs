//! The few things a guest asks of its own CPU: its exception level, its identity
//! (MPIDR_EL1, and the per-CPU index derived from it), and ways to wait.

/// Most CPUs a guest runs on: per-CPU data (stacks, GIC frames, timer state) has
/// this many slots, indexed by [`index`].
pub const MAX_CPUS: usize = 8;

/// MPIDR_EL1's affinity fields (Aff3 in \[39:32\], Aff2..Aff0 in \[23:0\]): what PSCI
/// and the GIC take as a CPU's address.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

#[cfg(bare_metal)]
pub use self::regs::{affinity, current_el, halt, index, mpidr, relax, wait_for_interrupt};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod regs {
    use core::arch::asm;

    use super::{MAX_CPUS, MPIDR_AFFINITY_MASK};

    /// The exception level the CPU runs at (CurrentEL.EL, Arm ARM D23.2.37).
    pub fn current_el() -> u8 {
        let el: u64;
        // SAFETY: reading CurrentEL has no side effects.
        unsafe { asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack, preserves_flags)) };
        ((el >> 2) & 3) as u8
    }

    /// MPIDR_EL1 as it reads (bit 31 is RES1; under a hypervisor, VMPIDR_EL2's value).
    pub fn mpidr() -> u64 {
        let mpidr: u64;
        // SAFETY: reading MPIDR_EL1 has no side effects.
        unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags)) };
        mpidr
    }

    /// This CPU's affinity fields ([`MPIDR_AFFINITY_MASK`] of MPIDR_EL1).
    pub fn affinity() -> u64 {
        mpidr() & MPIDR_AFFINITY_MASK
    }

    /// The slot of this CPU's per-CPU data: MPIDR_EL1.Aff0. QEMU virt (up to 8 CPUs) and
    /// Sluice number CPUs 0, 1, ... in Aff0 with the higher fields zero.
    ///
    /// # Panics
    ///
    /// If Aff0 is [`MAX_CPUS`] or more: this runtime has no slot for the CPU.
    pub fn index() -> usize {
        let aff0 = (mpidr() & 0xff) as usize;
        assert!(aff0 < MAX_CPUS, "cpu: MPIDR {:#x} has no per-CPU slot", mpidr());
        aff0
    }

    /// Waits for an interrupt (`wfi`). Wakes when one is pending even while PSTATE.I
    /// masks it, so "mask, check, `wfi`, unmask" waits without losing a wake-up.
    pub fn wait_for_interrupt() {
        // SAFETY: `wfi` only waits; `dsb sy` before it completes outstanding accesses.
        unsafe { asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
    }

    /// A pause in a spin-wait loop: `yield`, the hint that this CPU is waiting. On
    /// QEMU without multi-threaded TCG (e.g. with `-icount`) it hands the host
    /// thread to the next vCPU, the one being waited for; elsewhere it costs nothing.
    pub fn relax() {
        // SAFETY: `yield` is a hint with no architectural effect.
        unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
    }

    /// Sleeps forever, for when powering off did not work.
    pub fn halt() -> ! {
        loop {
            // SAFETY: `wfe` only waits for an event.
            unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
        }
    }
}
