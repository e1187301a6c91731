//! `ticker`: prints a line per tick of its virtual timer, then powers off.
//!
//! Bootargs: `name=NAME` (optional, tells two tickers apart), `ticks=N` (default
//! 5), `late_ms=N` (fail if a tick's line is printed more than N ms of counter time
//! after the tick was due: the pace a real-time guest needs) and `leave=armed` (power off with both EL1 timers armed to fire 50 ms later,
//! as a careless guest would). One tick every 50 ms of the virtual counter, interrupt-driven, with the CPU
//! in `wfi` between ticks. Its lines (`tests/scenarios/two-vms.toml` runs two):
//!
//! ```text
//! ticker: NAME tick 1/N
//! ...
//! ticker: NAME tick N/N
//! ticker: NAME done
//! ```
//!
//! Without a name the lines read `ticker: tick 1/N`. A failed check prints
//! `ticker: NAME FAIL ...` and powers off.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("ticker is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use test_guests::bootargs::{self, NamePrefix};
    use test_guests::dtb::BootInfo;
    use test_guests::timer;
    use test_guests::{gic, irq, println, psci};

    const DEFAULT_TICKS: u64 = 5;
    const TICK_MS: u64 = 50;

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb)
            .unwrap_or_else(|e| fail(NamePrefix(None), format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let args = info.bootargs.unwrap_or("");
        let name = bootargs::name_prefix(args);
        let count = match bootargs::value(args, "ticks") {
            None => DEFAULT_TICKS,
            Some(n) => match n.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => fail(name, format_args!("bad ticks={n:?} in the bootargs")),
            },
        };

        gic::init_distributor().unwrap_or_else(|e| fail(name, format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(name, format_args!("gic: {e}")));
        irq::register(timer::INTID, timer::handle_interrupt);
        gic::enable_private(timer::INTID);
        irq::enable();

        let late_ms = match bootargs::value(args, "late_ms").map(str::parse::<u64>) {
            None => None,
            Some(Ok(ms)) => Some(ms),
            Some(Err(_)) => fail(name, format_args!("bad late_ms in the bootargs")),
        };
        let frequency = timer::frequency();
        let period = timer::ticks_from_ms(frequency, TICK_MS);
        let start = timer::start_periodic(period, count);
        let mut printed = 0;
        // The latest a line came after its tick was due, and which tick that was.
        let mut latest = (0, 0);
        while printed < count {
            irq::wait_unless(|| timer::ticks() > printed);
            // Ticks that came while the CPU was busy are printed one by one.
            while printed < timer::ticks() {
                printed += 1;
                println!("ticker: {name}tick {printed}/{count}");
                let late = timer::counter().saturating_sub(start + printed * period);
                if late > latest.0 {
                    latest = (late, printed);
                }
            }
        }
        if let Some(bound) = late_ms {
            let (late, tick) = (timer::ms_from_ticks(frequency, latest.0), latest.1);
            if late > bound {
                fail(
                    name,
                    format_args!(
                        "tick {tick}'s line came {late} ms after the tick was due (late_ms={bound})"
                    ),
                );
            }
            println!(
                "ticker: {name}every line within {bound} ms of its tick (the latest {late} ms, tick {tick})"
            );
        }
        if bootargs::value(args, "leave") == Some("armed") {
            irq::disable();
            timer::leave_armed(timer::counter() + timer::ticks_from_ms(frequency, TICK_MS));
            println!("ticker: {name}done, timers left armed");
        } else {
            println!("ticker: {name}done");
        }
        psci::system_off()
    }

    /// Reports a failed check and powers off.
    fn fail(name: NamePrefix<'_>, what: fmt::Arguments<'_>) -> ! {
        println!("ticker: {name}FAIL {what}");
        psci::system_off()
    }
}
