//! The EL1 virtual timer (Arm ARM D11, the Generic Timer): the counter, deadlines,
//! and a periodic tick that stops by itself after a number of ticks.
//!
//! The tick is interrupt-driven: [`start_periodic`] arms CNTV_CVAL_EL0 one period
//! ahead; [`handle_interrupt`] (register it for [`INTID`]) counts a tick when
//! CNTV_CTL_EL0.ISTATUS says the deadline passed, moves the deadline one period on
//! (so ticks do not drift, and tick n never comes before start + n periods), and
//! disables the timer after the last tick. The state is per CPU: each CPU has its own
//! virtual timer.

use platform::qemu_virt::VIRTUAL_TIMER_PPI;

/// INTID of the virtual timer's interrupt (PPI 11).
pub const INTID: u32 = 16 + VIRTUAL_TIMER_PPI;

/// Counter ticks in one period of a `hz` tick, for a counter of `frequency` Hz.
pub const fn period(frequency: u64, hz: u64) -> u64 {
    frequency / hz
}

/// Counter ticks in `ms` milliseconds.
pub const fn ticks_from_ms(frequency: u64, ms: u64) -> u64 {
    (frequency as u128 * ms as u128 / 1000) as u64
}

/// Whole milliseconds in `ticks` counter ticks.
pub const fn ms_from_ticks(frequency: u64, ticks: u64) -> u64 {
    if frequency == 0 {
        return 0;
    }
    (ticks as u128 * 1000 / frequency as u128) as u64
}

#[cfg(bare_metal)]
pub use self::hw::{
    counter, fire_at, frequency, handle_interrupt, last_tick_at, leave_armed, start_periodic, stop, ticks,
    Deadline,
};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod hw {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use super::{ticks_from_ms, INTID};
    use crate::cpu::{self, MAX_CPUS};

    /// CNTV_CTL_EL0.ENABLE.
    const CTL_ENABLE: u64 = 1 << 0;
    /// CNTV_CTL_EL0.IMASK.
    const CTL_IMASK: u64 = 1 << 1;
    /// CNTV_CTL_EL0.ISTATUS: the timer condition is met.
    const CTL_ISTATUS: u64 = 1 << 2;

    /// Per-CPU tick state, by [`cpu::index`].
    struct PerCpu {
        period: AtomicU64,
        /// Ticks still to come before the timer stops itself.
        remaining: AtomicU64,
        ticks: AtomicU64,
        /// Counter value when the last tick was handled.
        last_tick_at: AtomicU64,
    }

    static STATE: [PerCpu; MAX_CPUS] = [const {
        PerCpu {
            period: AtomicU64::new(0),
            remaining: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            last_tick_at: AtomicU64::new(0),
        }
    }; MAX_CPUS];

    /// CNTFRQ_EL0: the counter's frequency in Hz.
    pub fn frequency() -> u64 {
        let f: u64;
        // SAFETY: reading CNTFRQ_EL0 has no side effects.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags)) };
        f
    }

    /// CNTVCT_EL0, the virtual count, read after the instructions before it (`isb`).
    pub fn counter() -> u64 {
        let c: u64;
        // SAFETY: reading CNTVCT_EL0 has no side effects.
        unsafe {
            asm!(
                "isb",
                "mrs {}, cntvct_el0",
                out(reg) c,
                options(nomem, nostack, preserves_flags),
            );
        }
        c
    }

    fn set_compare(cval: u64) {
        // SAFETY: CNTV_CVAL_EL0 only sets when the timer condition is met.
        unsafe { asm!("msr cntv_cval_el0, {}", in(reg) cval, options(nomem, nostack, preserves_flags)) };
    }

    fn compare() -> u64 {
        let cval: u64;
        // SAFETY: reading CNTV_CVAL_EL0 has no side effects.
        unsafe { asm!("mrs {}, cntv_cval_el0", out(reg) cval, options(nomem, nostack, preserves_flags)) };
        cval
    }

    fn set_control(ctl: u64) {
        // SAFETY: CNTV_CTL_EL0 enables or masks this CPU's virtual timer; the `isb`
        // makes the change take effect before what follows.
        unsafe {
            asm!(
                "msr cntv_ctl_el0, {}",
                "isb",
                in(reg) ctl,
                options(nomem, nostack, preserves_flags),
            );
        }
    }

    fn control() -> u64 {
        let ctl: u64;
        // SAFETY: reading CNTV_CTL_EL0 has no side effects.
        unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) ctl, options(nomem, nostack, preserves_flags)) };
        ctl
    }

    fn this_cpu() -> &'static PerCpu {
        &STATE[cpu::index()]
    }

    /// Starts a tick on the calling CPU: one every `period` counter ticks, `count`
    /// of them, then the timer disables itself. Returns the counter value the
    /// periods are counted from. The caller enables [`INTID`] and registers
    /// [`handle_interrupt`] for it.
    pub fn start_periodic(period: u64, count: u64) -> u64 {
        assert!(period > 0 && count > 0, "timer: empty tick");
        let state = this_cpu();
        set_control(CTL_IMASK);
        state.period.store(period, Ordering::Relaxed);
        state.remaining.store(count, Ordering::Relaxed);
        state.ticks.store(0, Ordering::Relaxed);
        let start = counter();
        state.last_tick_at.store(start, Ordering::Relaxed);
        set_compare(start + period);
        set_control(CTL_ENABLE);
        start
    }

    /// Arms the calling CPU's timer once, for counter value `deadline` (its
    /// interrupt stays up until [`stop`]). The caller enables [`INTID`] and
    /// registers its own handler for it.
    pub fn fire_at(deadline: u64) {
        set_control(CTL_IMASK);
        this_cpu().remaining.store(0, Ordering::Relaxed);
        set_compare(deadline);
        set_control(CTL_ENABLE);
    }

    /// Leaves both of the calling CPU's EL1 timers (virtual and physical) armed for
    /// counter value `deadline`, their interrupts unmasked: from then on each keeps
    /// asserting its interrupt until someone turns it off. What a guest does that
    /// powers off (or is stopped) without tidying up; the hypervisor must not let it
    /// fire on.
    pub fn leave_armed(deadline: u64) {
        set_compare(deadline);
        set_control(CTL_ENABLE);
        // SAFETY: the EL1 physical timer (which the hypervisor lets EL1 use) is armed
        // the same way; nothing in this program relies on it.
        unsafe {
            asm!(
                "msr cntp_cval_el0, {}",
                "msr cntp_ctl_el0, {}",
                "isb",
                in(reg) deadline,
                in(reg) CTL_ENABLE,
                options(nomem, nostack, preserves_flags),
            );
        }
    }

    /// Stops the calling CPU's timer.
    pub fn stop() {
        set_control(0);
        this_cpu().remaining.store(0, Ordering::Relaxed);
    }

    /// Ticks counted on the calling CPU since [`start_periodic`].
    pub fn ticks() -> u64 {
        this_cpu().ticks.load(Ordering::Acquire)
    }

    /// Counter value when the calling CPU handled its last tick (the start value
    /// before the first).
    pub fn last_tick_at() -> u64 {
        this_cpu().last_tick_at.load(Ordering::Acquire)
    }

    /// The handler for [`INTID`]: counts a tick if the timer condition is met and
    /// sets the next deadline, or stops the timer after the last tick. An interrupt
    /// without the condition (spurious) is not counted.
    pub fn handle_interrupt(intid: u32) {
        debug_assert_eq!(intid, INTID);
        if control() & CTL_ISTATUS == 0 {
            return;
        }
        let state = this_cpu();
        let now = counter();
        let remaining = state.remaining.load(Ordering::Relaxed);
        if remaining <= 1 {
            // The last tick, or a timer nobody started: the level goes down with it.
            set_control(0);
            state.remaining.store(0, Ordering::Relaxed);
        } else {
            state.remaining.store(remaining - 1, Ordering::Relaxed);
            set_compare(compare() + state.period.load(Ordering::Relaxed));
        }
        if remaining > 0 {
            state.last_tick_at.store(now, Ordering::Release);
            // Only this CPU's handler writes its count: no read-modify-write needed.
            let ticks = state.ticks.load(Ordering::Relaxed);
            state.ticks.store(ticks + 1, Ordering::Release);
        }
    }

    /// A point in counter time, for waits that must not hang.
    #[derive(Debug, Clone, Copy)]
    pub struct Deadline(u64);

    impl Deadline {
        /// `ms` milliseconds from now.
        pub fn after_ms(ms: u64) -> Self {
            Self(counter() + ticks_from_ms(frequency(), ms))
        }

        /// Whether it has passed.
        pub fn expired(self) -> bool {
            counter() >= self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_between_ms_and_counter_ticks() {
        // QEMU's counter runs at 62.5 MHz; Arm's recommendation is 1 GHz.
        assert_eq!(INTID, 27);
        assert_eq!(period(62_500_000, 100), 625_000);
        assert_eq!(period(62_500_000, 20), 3_125_000);
        assert_eq!(ticks_from_ms(62_500_000, 50), 3_125_000);
        assert_eq!(ms_from_ticks(62_500_000, 31_250_000), 500);
        assert_eq!(ms_from_ticks(1_000_000_000, u64::MAX), 18_446_744_073_709);
        assert_eq!(ms_from_ticks(0, 5), 0);
    }
}
