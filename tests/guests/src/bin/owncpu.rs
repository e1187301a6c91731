//! `owncpu`: a guest owns its CPU as on plain QEMU: the PMU, the debug registers
//! and the board's clock.
//!
//! With no `owncpu.role` in its bootargs it checks, in order:
//!
//! - the PMU: the cycle counter and an INST_RETIRED counter around a known loop
//!   (exact under `-icount`); a counter's overflow interrupt (PPI 7, INTID 23);
//!   and that a loop of clock reads, which trap to a hypervisor, counts the
//!   guest's instructions only, though it asks to count EL2 too (NSH set);
//! - debug: a hardware breakpoint, a watchpoint and a software step, each taken
//!   with the syndrome QEMU gives; and a step over a trapped load ends right after
//!   it;
//! - the PL031: it reads the board's time (not 1970) and advances; it can be set
//!   (to 2100) and reads back what was set; its alarm interrupts (SPI 2).
//!
//! Each check prints `owncpu: <what>: ...` and the guest ends with `owncpu: done`.
//!
//! With `owncpu.role=witness` it reads its own clock for a few seconds while
//! another VM sets its own: every read must be the board's time. With
//! `owncpu.role=reset` (under Sluice: it needs `/chosen/sluice,boot-count`) the
//! first boot leaves the PMU counting, breakpoints and watchpoints programmed, the
//! OS lock open and the clock set to 2100, then resets the VM; the second boot
//! checks that all of it is as on a first boot (and, with tag storage, that a
//! granule tagged before is untagged). With `owncpu.role=mte` it checks memory
//! tagging: a granule tagged through STG, a load with its tag, a tag check fault
//! with another. A failed check prints
//! `owncpu: FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("owncpu is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{AtomicU32, Ordering};

    use test_guests::dtb::BootInfo;
    use test_guests::exceptions::expect_debug;
    use test_guests::exceptions::expect_fault;
    use test_guests::fault::Fault;
    use test_guests::timer::{self, Deadline};
    use test_guests::{bootargs, debug, gic, irq, mte, pmu, println, psci, rtc};

    /// Turns of the known loop: 2 instructions each.
    const LOOP_TURNS: u64 = 10_000;
    /// Instructions around the loop that the counters may see besides it.
    const LOOP_SLACK: u64 = 16;
    /// Clock reads in the check that nothing is counted at EL2.
    const CLOCK_READS: u64 = 50;
    /// At most this many guest instructions per clock read (a load, a count-down
    /// and a branch); a trap counted would add hundreds.
    const PER_READ: u64 = 8;
    /// 2020-01-01: the board's clock is at least this (not 1970).
    const YEAR_2020: u32 = 1_577_836_800;
    /// 2100-01-01, what the guest sets its clock to.
    const YEAR_2100: u32 = 4_102_444_800;
    /// Syndromes QEMU gives at EL1 for EL1: breakpoint; watchpoint on a store;
    /// software step of an instruction that is no load-exclusive (ISV set).
    const ESR_BREAKPOINT: u64 = 0xc600_0022;
    const ESR_WATCHPOINT_WRITE: u64 = 0xd600_0062;
    const ESR_STEP: u64 = 0xcf00_0022;
    /// ESR.ISV of a software step: the EX bit is valid.
    const ESR_STEP_ISV: u64 = 1 << 24;

    /// PMU overflow interrupts taken.
    static OVERFLOWS: AtomicU32 = AtomicU32::new(0);
    /// Clock alarms taken.
    static ALARMS: AtomicU32 = AtomicU32::new(0);

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb).unwrap_or_else(|e| fail(format_args!("dtb: {e:?}")));
        gic::init_distributor().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        irq::register(timer::INTID, timer::handle_interrupt);
        gic::enable_private(timer::INTID);
        match info.bootargs.and_then(|args| bootargs::value(args, "owncpu.role")) {
            None => {
                check_pmu();
                check_debug();
                check_rtc();
                println!("owncpu: done");
            }
            Some("witness") => witness(),
            Some("mte") => check_mte(),
            Some("reset") => match info.boot_count {
                Some(0) => leave_state_and_reset(),
                Some(_) => check_reset_state(),
                None => fail(format_args!("role reset needs Sluice's /chosen/sluice,boot-count")),
            },
            Some(role) => fail(format_args!("unknown owncpu.role {role:?}")),
        }
        psci::system_off()
    }

    fn check_pmu() {
        let version = pmu::version();
        if version == 0 || version == 0xf {
            fail(format_args!("pmu: ID_AA64DFR0_EL1.PMUVer is {version}: no PMUv3"));
        }
        let counters = pmu::counters();
        if counters < 2 {
            fail(format_args!("pmu: {counters} event counters"));
        }
        if !pmu::implements(pmu::INST_RETIRED) {
            fail(format_args!("pmu: INST_RETIRED is not implemented (QEMU counts it only under -icount)"));
        }
        // Counter 0 counts instructions, at EL2 too if it may: nothing must show.
        pmu::set_control(pmu::pmcr::E | pmu::pmcr::P | pmu::pmcr::C);
        pmu::set_event(0, pmu::INST_RETIRED | pmu::COUNT_EL2);
        pmu::set_cycle_filter(pmu::COUNT_EL2);
        pmu::enable(1 | 1 << pmu::CYCLE_COUNTER);
        let expected = 2 * LOOP_TURNS;
        // The fewest of three: another CPU's instructions never make it fewer.
        let (instructions, cycles) =
            (0..3).map(|_| pmu::around(0, || pmu::known_loop(LOOP_TURNS))).min().unwrap_or_default();
        if !(expected..=expected + LOOP_SLACK).contains(&instructions) {
            fail(format_args!(
                "pmu: a loop of {expected} instructions counted {instructions} (INST_RETIRED)"
            ));
        }
        if cycles == 0 || cycles > 1000 * expected {
            fail(format_args!("pmu: a loop of {expected} instructions took {cycles} cycles"));
        }
        println!(
            "owncpu: pmu: PMUVer {version}, {counters} counters; a loop of {expected} instructions counts {instructions} instructions, {cycles} cycles"
        );

        let (instructions, cycles) = (0..3)
            .map(|_| {
                pmu::around(0, || {
                    for _ in 0..CLOCK_READS {
                        core::hint::black_box(rtc::now());
                    }
                })
            })
            .min()
            .unwrap_or_default();
        if instructions > CLOCK_READS * PER_READ || cycles > CLOCK_READS * PER_READ * 4 {
            fail(format_args!(
                "pmu: {CLOCK_READS} clock reads counted {instructions} instructions and {cycles} cycles: more than the guest's own"
            ));
        }
        println!(
            "owncpu: pmu: nothing counted outside the guest ({CLOCK_READS} clock reads: {instructions} instructions, {cycles} cycles)"
        );

        // Counter 1 counts cycles from 5000 short of overflowing, and interrupts.
        // QEMU 7.2 checks for the overflow one count early under -icount and then
        // not again until the next exception (or PMU access): the guest's 1 ms
        // timer tick brings one, as a running OS's would.
        irq::register(pmu::OVERFLOW_INTID, on_overflow);
        gic::enable_private(pmu::OVERFLOW_INTID);
        pmu::set_event(1, pmu::CPU_CYCLES);
        pmu::set_count(1, 0xffff_ffff - 5000);
        pmu::clear_overflow(u32::MAX);
        pmu::enable_interrupts(1 << 1);
        timer::start_periodic(timer::ticks_from_ms(timer::frequency(), 1), 2000);
        irq::enable();
        pmu::enable(1 << 1);
        let patience = Deadline::after_ms(1000);
        while OVERFLOWS.load(Ordering::Acquire) == 0 {
            if patience.expired() {
                fail(format_args!(
                    "pmu: counter 1 overflowed but no interrupt {} came (overflow flags {:#x}, PMCR {:#x})",
                    pmu::OVERFLOW_INTID,
                    pmu::overflowed(),
                    pmu::control(),
                ));
            }
            irq::wait_unless(|| OVERFLOWS.load(Ordering::Acquire) != 0);
        }
        irq::disable();
        timer::stop();
        if OVERFLOWS.load(Ordering::Acquire) != 1 {
            fail(format_args!("pmu: one overflow, {} interrupts", OVERFLOWS.load(Ordering::Acquire)));
        }
        pmu::set_control(pmu::pmcr::P | pmu::pmcr::C);
        pmu::disable(u32::MAX);
        println!("owncpu: pmu: counter overflow interrupt (PPI 7) taken once");
    }

    /// PPI 7: counter 1 overflowed; stops it and clears the flag (the line drops).
    fn on_overflow(_intid: u32) {
        pmu::disable(1 << 1);
        pmu::disable_interrupts(1 << 1);
        pmu::clear_overflow(1 << 1);
        OVERFLOWS.fetch_add(1, Ordering::AcqRel);
    }

    fn check_debug() {
        debug::unlock_os_lock();
        let mut target = 0;
        let hit = expect_debug(|| target = debug::hit_breakpoint());
        expect_exception("breakpoint", hit, ESR_BREAKPOINT, target, None);
        println!("owncpu: debug: hardware breakpoint taken (ESR {ESR_BREAKPOINT:#x})");

        let mut slot = 0u64;
        let address = core::ptr::addr_of!(slot) as u64;
        let hit = expect_debug(|| debug::hit_watchpoint(&mut slot, 0x5a));
        let elr = hit.map_or(0, |f| f.elr);
        expect_exception("watchpoint", hit, ESR_WATCHPOINT_WRITE, elr, Some(address));
        if core::hint::black_box(slot) != 0x5a {
            fail(format_args!("debug: the watched store did not happen once resumed"));
        }
        println!(
            "owncpu: debug: watchpoint taken on a store (ESR {ESR_WATCHPOINT_WRITE:#x}, FAR the address)"
        );

        let word = 0x600d_f00du32;
        let mut stepped = (0, 0);
        let hit = expect_debug(|| stepped = debug::step_load(core::ptr::addr_of!(word) as u64));
        expect_exception("software step", hit, ESR_STEP, stepped.0, None);
        if stepped.1 != u64::from(word) {
            fail(format_args!("debug: the stepped load read {:#x}", stepped.1));
        }
        println!("owncpu: debug: software step taken after one instruction (ESR {ESR_STEP:#x})");

        // Under a hypervisor the load traps and is emulated, and the step completes
        // on the return to the guest: the exception then says only that the step
        // was pending (ISV clear, as under KVM), not whether the load was exclusive.
        let hit = expect_debug(|| stepped = debug::step_load(rtc::data_register()))
            .map(|f| Fault { esr: f.esr | ESR_STEP_ISV, ..f });
        expect_exception("software step over a clock read", hit, ESR_STEP, stepped.0, None);
        if (stepped.1 as u32) < YEAR_2020 {
            fail(format_args!("debug: the stepped clock read gave {}", stepped.1));
        }
        println!("owncpu: debug: software step over a device load ends right after it");
    }

    /// Checks that a debug exception came with syndrome `esr` at `elr` (and, for a
    /// watchpoint, fault address `far`).
    fn expect_exception(what: &str, hit: Option<Fault>, esr: u64, elr: u64, far: Option<u64>) {
        let Some(hit) = hit else { fail(format_args!("debug: no {what} exception")) };
        if hit.esr != esr || hit.elr != elr || far.is_some_and(|far| far != hit.far) {
            fail(format_args!(
                "debug: {what}: ESR {:#x} at {:#x} (FAR {:#x}); expected ESR {esr:#x} at {elr:#x}{}",
                hit.esr,
                hit.elr,
                hit.far,
                if far.is_some() { " with FAR the watched address" } else { "" }
            ));
        }
    }

    fn check_rtc() {
        if rtc::part_number() != 0x31 {
            fail(format_args!("rtc: PeriphID0 is {:#x}, not a PL031's 0x31", rtc::part_number()));
        }
        let first = rtc::now();
        if first < YEAR_2020 {
            fail(format_args!("rtc: reads {first}, before 2020: not the board's time"));
        }
        sleep_ms(1100);
        let second = rtc::now();
        if second <= first || second > first + 120 {
            fail(format_args!("rtc: read {first}, then {second} a second later"));
        }
        println!("owncpu: rtc: the board's time, advancing");

        rtc::set(YEAR_2100);
        let now = rtc::now();
        if rtc::loaded() != YEAR_2100 || !(YEAR_2100..YEAR_2100 + 5).contains(&now) {
            fail(format_args!("rtc: set to {YEAR_2100}, loads {} and reads {now}", rtc::loaded()));
        }
        println!("owncpu: rtc: set to 2100, reads it back");

        irq::register(rtc::INTID, on_alarm);
        gic::enable_spi(rtc::INTID, gic::Trigger::Level);
        rtc::set_alarm(rtc::now() + 2);
        // The timer wakes the wait below if the alarm never comes.
        timer::fire_at(timer::counter() + timer::ticks_from_ms(timer::frequency(), 10_000));
        irq::enable();
        let patience = Deadline::after_ms(10_000);
        while ALARMS.load(Ordering::Acquire) == 0 {
            if patience.expired() {
                fail(format_args!("rtc: no alarm interrupt {} within 10 s", rtc::INTID));
            }
            irq::wait_unless(|| ALARMS.load(Ordering::Acquire) != 0);
        }
        irq::disable();
        timer::stop();
        if rtc::alarm_raised() || ALARMS.load(Ordering::Acquire) != 1 {
            fail(format_args!("rtc: the alarm came {} times", ALARMS.load(Ordering::Acquire)));
        }
        println!("owncpu: rtc: alarm interrupt (SPI 2) taken once");
    }

    /// SPI 2: the alarm; clears and masks it (the line drops).
    fn on_alarm(_intid: u32) {
        rtc::clear_alarm();
        ALARMS.fetch_add(1, Ordering::AcqRel);
    }

    /// Sleeps `ms` milliseconds with `wfi` (so an idle machine's clock need not
    /// count instructions to get there).
    fn sleep_ms(ms: u64) {
        let end = Deadline::after_ms(ms);
        timer::fire_at(timer::counter() + timer::ticks_from_ms(timer::frequency(), ms));
        irq::enable();
        while !end.expired() {
            irq::wait_unless(|| end.expired());
        }
        irq::disable();
        timer::stop();
    }

    /// Reads the clock for a few seconds: it must be the board's all along, however
    /// another VM sets its own.
    fn witness() {
        let (first, mut last) = (rtc::now(), rtc::now());
        for _ in 0..8 {
            sleep_ms(500);
            let now = rtc::now();
            if now < last || !(YEAR_2020..YEAR_2100 - 1).contains(&now) {
                fail(format_args!("witness: rtc: read {last}, then {now}: not the board's time"));
            }
            last = now;
        }
        println!("owncpu: witness: rtc: the board's time throughout ({first}..{last})");
    }

    /// DFSC of a synchronous tag check fault.
    const TAG_CHECK_FAULT: u64 = 0x11;
    /// A granule of RAM the reset check tags (well above the image, below the DTB).
    const TAGGED_GRANULE: u64 = 0x4200_0000;

    /// Memory tagging with tag storage: a granule tagged, loads through a pointer
    /// with its tag and through one with another.
    fn check_mte() {
        let version = mte::mte_version();
        if !mte::has_tag_storage() {
            fail(format_args!("mte: ID_AA64PFR1_EL1.MTE is {version}: no tag storage"));
        }
        mte::enable();
        static GRANULE: Granule = Granule([0x5a5a_5a5a, 0]);
        let address = core::ptr::addr_of!(GRANULE) as u64;
        let tagged = mte::with_tag(address, 0x3);
        mte::store_tag(tagged);
        if mte::load_tag(address) != 0x3 {
            fail(format_args!("mte: tagged 3, the granule's tag reads {}", mte::load_tag(address)));
        }
        if mte::load(tagged) != 0x5a5a_5a5a {
            fail(format_args!("mte: a load with the right tag read {:#x}", mte::load(tagged)));
        }
        let fault = expect_fault(|| {
            core::hint::black_box(mte::load(mte::with_tag(address, 0x5)));
        });
        match fault {
            Some(f) if f.esr & 0x3f == TAG_CHECK_FAULT => {}
            other => {
                fail(format_args!("mte: a load with the wrong tag gave {other:x?}, not a tag check fault"))
            }
        }
        println!("owncpu: mte: MTE {version}; a tagged granule loads with its tag, faults with another (tag check fault)");
    }

    /// 16 bytes, one tag granule.
    #[repr(C, align(16))]
    struct Granule([u64; 2]);

    /// Breakpoint and watchpoint addresses the first boot leaves programmed.
    const LEFT_BREAKPOINT: u64 = 0x4000_1000;
    const LEFT_WATCHPOINT: u64 = 0x4000_2000;

    /// First boot: leaves the PMU, debug registers and clock changed, then resets.
    fn leave_state_and_reset() {
        debug::unlock_os_lock();
        // Kernel debug on, but no MDE: nothing fires.
        debug::program(LEFT_BREAKPOINT, LEFT_WATCHPOINT, 1 << 13);
        pmu::set_event(0, pmu::INST_RETIRED | pmu::COUNT_EL2);
        pmu::set_cycle_filter(pmu::COUNT_EL2);
        pmu::enable(1 | 1 << pmu::CYCLE_COUNTER);
        pmu::enable_interrupts(1 << 2);
        pmu::set_control(pmu::pmcr::E);
        rtc::set(YEAR_2100);
        if mte::has_tag_storage() {
            mte::enable();
            mte::store_tag(mte::with_tag(TAGGED_GRANULE, 0x7));
        }
        println!("owncpu: reset: PMU counting, debug registers set, clock at 2100; resetting");
        psci::system_reset()
    }

    /// Second boot: everything the first changed is as on a first boot.
    fn check_reset_state() {
        let pmu_state = [
            pmu::control() & pmu::pmcr::E,
            u64::from(pmu::enabled()),
            u64::from(pmu::interrupts_enabled()),
            u64::from(pmu::overflowed()),
            pmu::event(0),
            pmu::cycle_filter(),
            pmu::count(0),
            pmu::cycles(),
            pmu::user_access(),
        ];
        if pmu_state != [0; 9] {
            fail(format_args!(
                "reset: PMU (E, enabled, interrupts, overflows, event 0, cycle filter, count 0, cycles, user access) is {pmu_state:#x?}"
            ));
        }
        let debug_state = debug::registers();
        if debug_state != [0; 5] || !debug::os_lock_locked() {
            fail(format_args!(
                "reset: MDSCR, DBGBCR0, DBGBVR0, DBGWCR0, DBGWVR0 are {debug_state:#x?}, OS lock locked: {}",
                debug::os_lock_locked()
            ));
        }
        let now = rtc::now();
        if !(YEAR_2020..YEAR_2100 - 1).contains(&now) || rtc::loaded() != 0 {
            fail(format_args!("reset: the clock reads {now} and loads {}: not the board's", rtc::loaded()));
        }
        if mte::has_tag_storage() {
            mte::enable();
            let tag = mte::load_tag(TAGGED_GRANULE);
            if tag != 0 {
                fail(format_args!("reset: a granule tagged 7 before the reset is tagged {tag}"));
            }
            println!("owncpu: reset: memory tags clear");
        }
        println!(
            "owncpu: reset: PMU stopped and clear, debug registers clear, OS lock locked, clock the board's"
        );
    }

    /// Reports a failed check and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("owncpu: FAIL {what}");
        psci::system_off()
    }
}
