//! `timers`: a disabled or masked EL1 timer is not pending, and its interrupt is not
//! delivered later, for the virtual and the physical timer alike.
//!
//! For each timer, with IRQs masked at the CPU: arm it 1 ms ahead and wait until its
//! interrupt is pending (ISR_EL1.I, and GICR_ISPENDR0); then disable it (ENABLE = 0),
//! or in a second round mask it (IMASK = 1), and check that the interrupt is no
//! longer pending (GICR_ISPENDR0, then ISR_EL1), that unmasking IRQs delivers
//! nothing, and that enabling the timer again with a far deadline delivers nothing
//! either (a stale interrupt would come at once). Last, the timer armed 1 ms ahead
//! with IRQs unmasked interrupts once. What a level-sensitive timer line does on
//! real hardware and on plain QEMU; under a hypervisor the interrupt sits in a list
//! register, and the hypervisor must resample the timer. Its lines:
//!
//! ```text
//! timers: virtual timer disabled: not pending, nothing delivered, fires again
//! timers: virtual timer masked: not pending, nothing delivered, fires again
//! timers: physical timer disabled: ...
//! timers: physical timer masked: ...
//! timers: done
//! ```
//!
//! A failed check prints `timers: FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("timers is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{AtomicU32, Ordering};

    use test_guests::el1_timer::{El1Timer, ENABLE, IMASK};
    use test_guests::timer::{self, Deadline};
    use test_guests::{gic, irq, println, psci};

    /// How far ahead the timer is armed to fire.
    const SOON_MS: u64 = 1;
    /// The longest the guest waits for an interrupt that must come.
    const PATIENCE_MS: u64 = 1000;
    /// How long the guest waits for one that must not come.
    const QUIET_MS: u64 = 5;

    /// Interrupts taken, per timer (virtual, physical).
    static TAKEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];

    test_guests::entry!(main);

    fn main(_dtb: usize) -> ! {
        gic::init_distributor().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        for timer in El1Timer::ALL {
            timer.set_control(0);
            irq::register(timer.intid(), on_timer);
            gic::enable_private(timer.intid());
        }
        for timer in El1Timer::ALL {
            for (how, control) in [("disabled", 0), ("masked", ENABLE | IMASK)] {
                check(timer, how, control);
            }
        }
        println!("timers: done");
        psci::system_off()
    }

    /// One round: `timer` fires, is turned off by writing `control`, and must then
    /// be quiet.
    fn check(timer: El1Timer, how: &str, control: u64) {
        let frequency = timer::frequency();
        let intid = timer.intid();
        let name = timer.name();
        irq::disable();
        let before = taken(timer);
        timer.set_deadline(timer.count() + timer::ticks_from_ms(frequency, SOON_MS));
        timer.set_control(ENABLE);
        let patience = Deadline::after_ms(PATIENCE_MS);
        while !irq::pending() {
            if patience.expired() {
                fail(format_args!("the {name} timer fired but its interrupt never became pending"));
            }
        }
        if !gic::is_pending_private(intid) {
            fail(format_args!("the {name} timer's interrupt is pending at the CPU but not in GICR_ISPENDR0"));
        }

        timer.set_control(control);
        if gic::is_pending_private(intid) {
            fail(format_args!(
                "the {name} timer is {how}, yet its interrupt is still pending in GICR_ISPENDR0"
            ));
        }
        if irq::pending() {
            fail(format_args!(
                "the {name} timer is {how}, yet an IRQ is still pending at the CPU (ISR_EL1.I)"
            ));
        }
        quiet_for(QUIET_MS);
        if taken(timer) != before {
            fail(format_args!("the {name} timer is {how}, yet its interrupt was delivered"));
        }

        // Enabled again with a deadline far away: nothing may come now.
        timer.set_deadline(timer.count() + timer::ticks_from_ms(frequency, 10 * PATIENCE_MS));
        timer.set_control(ENABLE);
        quiet_for(QUIET_MS);
        timer.set_control(0);
        if taken(timer) != before {
            fail(format_args!(
                "the {name} timer was {how}, then enabled with a far deadline: a stale interrupt was delivered"
            ));
        }

        // And it still works.
        timer.set_deadline(timer.count() + timer::ticks_from_ms(frequency, SOON_MS));
        timer.set_control(ENABLE);
        irq::enable();
        let patience = Deadline::after_ms(PATIENCE_MS);
        while taken(timer) == before {
            if patience.expired() {
                fail(format_args!("the {name} timer, armed again, never interrupted"));
            }
        }
        irq::disable();
        if taken(timer) != before + 1 {
            fail(format_args!("the {name} timer, armed once, interrupted {} times", taken(timer) - before));
        }
        println!("timers: {name} timer {how}: not pending, nothing delivered, fires again");
    }

    /// Unmasks IRQs for `ms` milliseconds, then masks them again.
    fn quiet_for(ms: u64) {
        irq::enable();
        let end = Deadline::after_ms(ms);
        while !end.expired() {}
        irq::disable();
    }

    fn index(timer: El1Timer) -> usize {
        match timer {
            El1Timer::Virtual => 0,
            El1Timer::Physical => 1,
        }
    }

    fn taken(timer: El1Timer) -> u32 {
        TAKEN[index(timer)].load(Ordering::Acquire)
    }

    /// Either timer's interrupt: counts it and disables that timer (its level goes
    /// down with it).
    fn on_timer(intid: u32) {
        for timer in El1Timer::ALL.into_iter().filter(|t| t.intid() == intid) {
            timer.set_control(0);
            TAKEN[index(timer)].fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Reports a failed check and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("timers: FAIL {what}");
        psci::system_off()
    }
}
