//! `smp`: two CPUs, their interrupts and their timers.
//!
//! Needs two CPUs (from its DTB). The boot CPU (CPU 0) sets up the GIC, starts CPU 1
//! with PSCI CPU_ON and checks that AFFINITY_INFO calls it on; then the two play
//! SGI ping-pong (CPU 0 sends SGI 1, CPU 1's handler answers with SGI 2) 100 times;
//! then both run their virtual timer at 100 Hz for 50 ticks at the same time, each
//! measuring the counter time its ticks took; then CPU 1 powers itself off with
//! CPU_OFF and CPU 0 waits until AFFINITY_INFO calls it off. Its lines (the contract
//! of `tests/scenarios/smp.toml`; N varies):
//!
//! ```text
//! smp: 2 cpu(s)
//! smp: cpu1 online (mpidr 0x80000001)
//! smp: 100 sgi round trips
//! smp: cpu0 timer 50 ticks in N ms
//! smp: cpu1 timer 50 ticks in N ms
//! smp: cpu1 off
//! smp: done (boot N)
//! ```
//!
//! With `reset-race=N` in its bootargs it does something else: on each boot CPU 0
//! starts CPU 1 (which must come online and be reported on), prints
//! `smp: race boot B of N`, and then both CPUs call PSCI `SYSTEM_RESET` at the same
//! moment; at boot N CPU 0 calls `SYSTEM_OFF` while CPU 1 calls `SYSTEM_RESET`. The
//! hypervisor must restart the VM exactly once per race (the boot count in the DTB
//! goes up by one, which the scenario sees in the lines) and end it exactly once; if
//! the reset wins the last race, boot N + 1 says `smp: race over` and powers off.
//!
//! The `online` and `cpu1 timer` lines are printed by CPU 1. Under emulation the
//! counter's relation to wall-clock time is loose, so the timer check is only that
//! all 50 ticks came and that the counter advanced at least 49 periods meanwhile. A
//! failed check prints `smp: FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("smp is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use test_guests::dtb::BootInfo;
    use test_guests::psci::{self, AffinityState};
    use test_guests::sync::SpinBarrier;
    use test_guests::timer::{self, Deadline};
    use test_guests::{cpu, gic, irq, println, smp};

    /// The SGI CPU 0 sends to CPU 1.
    const SGI_PING: u32 = 1;
    /// The SGI CPU 1 answers with.
    const SGI_PONG: u32 = 2;
    const ROUND_TRIPS: u32 = 100;
    const TIMER_HZ: u64 = 100;
    const TIMER_TICKS: u64 = 50;
    /// How long one wait for the other CPU may take before the test fails (counter
    /// time; generous, for slow emulation).
    const WAIT_MS: u64 = 10_000;

    /// CPU 0's MPIDR, where CPU 1 sends its pongs.
    static BOOT_MPIDR: AtomicU64 = AtomicU64::new(0);
    static CPU1_ONLINE: AtomicBool = AtomicBool::new(false);
    static PINGS: AtomicU32 = AtomicU32::new(0);
    static PONGS: AtomicU32 = AtomicU32::new(0);
    /// Both CPUs start their timers together and meet again when both are done.
    static TIMER_BARRIER: SpinBarrier = SpinBarrier::new(2);
    /// Set by CPU 0 once it printed its timer line: CPU 1's turn.
    static CPU0_TIMER_PRINTED: AtomicBool = AtomicBool::new(false);
    /// Set by CPU 1 once it printed its timer line: it is about to call CPU_OFF.
    static CPU1_FINISHED: AtomicBool = AtomicBool::new(false);

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb)
            .unwrap_or_else(|e| fail(format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        println!("smp: {} cpu(s)", info.cpus);
        if info.cpus < 2 {
            fail(format_args!("needs 2 cpus, the DTB has {}", info.cpus));
        }
        let Some(cpu1) = info.cpu_id(1) else { fail(format_args!("the DTB's second cpu node has no reg")) };
        BOOT_MPIDR.store(cpu::mpidr(), Ordering::Relaxed);
        let bootargs = info.bootargs.unwrap_or("");
        if let Some(boots) = bootargs.split_whitespace().find_map(|a| a.strip_prefix("reset-race=")) {
            let boots =
                boots.parse().unwrap_or_else(|_| fail(format_args!("reset-race={boots}: not a number")));
            race_resets(cpu1, info.boot_count.unwrap_or(0), boots);
        }

        gic::init_distributor().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        irq::register(SGI_PING, on_ping);
        irq::register(SGI_PONG, on_pong);
        irq::register(timer::INTID, timer::handle_interrupt);
        init_this_cpu(SGI_PONG);

        bring_up_cpu1(cpu1, cpu1_main);

        for trip in 1..=ROUND_TRIPS {
            gic::send_sgi(SGI_PING, cpu1);
            wait_for(
                format_args!(
                    "pong {trip} ({} pings, {} pongs so far)",
                    PINGS.load(Ordering::Relaxed),
                    PONGS.load(Ordering::Relaxed)
                ),
                || PONGS.load(Ordering::Acquire) >= trip,
            );
        }
        let (pings, pongs) = (PINGS.load(Ordering::Acquire), PONGS.load(Ordering::Acquire));
        if pings != ROUND_TRIPS || pongs != ROUND_TRIPS {
            fail(format_args!("{pings} pings and {pongs} pongs for {ROUND_TRIPS} round trips"));
        }
        println!("smp: {ROUND_TRIPS} sgi round trips");

        TIMER_BARRIER.wait();
        let result = run_timer();
        TIMER_BARRIER.wait();
        report_timer(0, result);
        CPU0_TIMER_PRINTED.store(true, Ordering::Release);

        wait_for(format_args!("cpu1 to finish"), || CPU1_FINISHED.load(Ordering::Acquire));
        let deadline = Deadline::after_ms(WAIT_MS);
        loop {
            match psci::affinity_info(cpu1) {
                Ok(AffinityState::Off) => break,
                Ok(_) if !deadline.expired() => cpu::relax(),
                Ok(state) => fail(format_args!("cpu1 still {state} after CPU_OFF")),
                Err(e) => fail(format_args!("AFFINITY_INFO(cpu1) returned {e}")),
            }
        }
        println!("smp: cpu1 off");
        // `reset-once` in the bootargs: restart the VM once (PSCI SYSTEM_RESET; Sluice
        // counts boots in /chosen/sluice,boot-count) and run everything again.
        let reset_once = bootargs.split_whitespace().any(|a| a == "reset-once");
        let boot = info.boot_count.unwrap_or(0);
        if reset_once && boot == 0 {
            println!("smp: resetting");
            psci::system_reset()
        }
        println!("smp: done (boot {boot})");
        psci::system_off()
    }

    /// CPU 1: answers pings, runs its timer, then powers itself off.
    fn cpu1_main(slot: usize) -> ! {
        init_this_cpu(SGI_PING);
        println!("smp: cpu{slot} online (mpidr {:#x})", cpu::mpidr());
        CPU1_ONLINE.store(true, Ordering::Release);

        TIMER_BARRIER.wait();
        let result = run_timer();
        TIMER_BARRIER.wait();
        wait_for(format_args!("cpu0's timer line"), || CPU0_TIMER_PRINTED.load(Ordering::Acquire));
        report_timer(slot, result);
        CPU1_FINISHED.store(true, Ordering::Release);

        irq::disable();
        let e = psci::cpu_off();
        fail(format_args!("cpu{slot}: CPU_OFF returned {e}"))
    }

    /// Both CPUs leave this together to race their resets.
    static RACE_BARRIER: SpinBarrier = SpinBarrier::new(2);

    /// `reset-race=N`, boot `boot`: bring CPU 1 up, then race it to `SYSTEM_RESET`
    /// (or, at boot N, race its reset with our `SYSTEM_OFF`).
    fn race_resets(cpu1: u64, boot: u32, boots: u32) -> ! {
        if boot > boots {
            println!("smp: race over (boot {boot}: the last reset won over SYSTEM_OFF)");
            psci::system_off()
        }
        bring_up_cpu1(cpu1, racer_main);
        println!("smp: race boot {boot} of {boots}");
        RACE_BARRIER.wait();
        if boot == boots {
            psci::system_off()
        }
        psci::system_reset()
    }

    /// Starts CPU 1 (affinity `cpu1`) at `entry` with PSCI CPU_ON, waits until it
    /// says it is online, and checks that AFFINITY_INFO calls it on.
    fn bring_up_cpu1(cpu1: u64, entry: fn(usize) -> !) {
        if let Err(e) = smp::start_cpu(cpu1, entry) {
            fail(format_args!("starting cpu1 (mpidr {cpu1:#x}): {e}"));
        }
        wait_for(format_args!("cpu1 to come online"), || CPU1_ONLINE.load(Ordering::Acquire));
        match psci::affinity_info(cpu1) {
            Ok(AffinityState::On) => {}
            Ok(state) => fail(format_args!("AFFINITY_INFO says cpu1 is {state}, not on")),
            Err(e) => fail(format_args!("AFFINITY_INFO(cpu1) returned {e}")),
        }
    }

    /// CPU 1 in `reset-race` mode: come online, then reset the VM with CPU 0.
    fn racer_main(_slot: usize) -> ! {
        CPU1_ONLINE.store(true, Ordering::Release);
        RACE_BARRIER.wait();
        psci::system_reset()
    }

    /// Sets up the calling CPU's redistributor and CPU interface, enables its SGI
    /// `sgi` and its virtual timer interrupt, and unmasks IRQs.
    fn init_this_cpu(sgi: u32) {
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic on this cpu: {e}")));
        gic::enable_private(sgi);
        gic::enable_private(timer::INTID);
        irq::enable();
    }

    /// CPU 1's SGI 1: count it, answer CPU 0.
    fn on_ping(_intid: u32) {
        PINGS.store(PINGS.load(Ordering::Relaxed) + 1, Ordering::Release);
        gic::send_sgi(SGI_PONG, BOOT_MPIDR.load(Ordering::Relaxed));
    }

    /// CPU 0's SGI 2: count it.
    fn on_pong(_intid: u32) {
        PONGS.store(PONGS.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// What one CPU's timer run gave: ticks, counter ticks from the start to the
    /// last tick, and the period.
    struct TimerResult {
        ticks: u64,
        elapsed: u64,
        period: u64,
    }

    /// Runs the calling CPU's timer for [`TIMER_TICKS`] ticks at [`TIMER_HZ`].
    fn run_timer() -> TimerResult {
        let period = timer::period(timer::frequency(), TIMER_HZ);
        let start = timer::start_periodic(period, TIMER_TICKS);
        let deadline = Deadline::after_ms(WAIT_MS);
        while timer::ticks() < TIMER_TICKS && !deadline.expired() {
            cpu::relax();
        }
        timer::stop();
        TimerResult { ticks: timer::ticks(), elapsed: timer::last_tick_at() - start, period }
    }

    /// Prints CPU `slot`'s timer line, or fails.
    fn report_timer(slot: usize, r: TimerResult) {
        if r.ticks != TIMER_TICKS {
            fail(format_args!("cpu{slot} timer: {} of {TIMER_TICKS} ticks in {} s", r.ticks, WAIT_MS / 1000));
        }
        if r.elapsed < (TIMER_TICKS - 1) * r.period {
            fail(format_args!(
                "cpu{slot} timer: {TIMER_TICKS} ticks of {} counter ticks in only {} counter ticks",
                r.period, r.elapsed
            ));
        }
        let ms = timer::ms_from_ticks(timer::frequency(), r.elapsed);
        println!("smp: cpu{slot} timer {} ticks in {ms} ms", r.ticks);
    }

    /// Spins until `done()` holds; fails after [`WAIT_MS`].
    fn wait_for(what: fmt::Arguments<'_>, done: impl Fn() -> bool) {
        let deadline = Deadline::after_ms(WAIT_MS);
        while !done() {
            if deadline.expired() {
                fail(format_args!("waited {WAIT_MS} ms for {what}"));
            }
            cpu::relax();
        }
    }

    /// Reports a failed check and powers off (from either CPU).
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("smp: FAIL {what}");
        psci::system_off()
    }
}
