//! `bench`: the latency guest of `cargo xtask bench`. It times the trap-and-notify
//! paths a guest of Sluice takes, the same way under Sluice and on plain QEMU with
//! QEMU's own devices, and prints each path's figures as JSON lines
//! (`test_guests::latency`).
//!
//! Each path runs `warmup` untimed iterations, then `iterations` timed ones
//! (bootargs `iterations=N warmup=N flood=N`, defaults 1000, 50 and [`FLOOD`]), timed with the
//! virtual counter (CNTVCT_EL0, read after an `isb`). The timed iterations are
//! tagged with the path's phase through Sluice's `TRACE_PHASE` hypercall, so the
//! hypervisor's per-stage sums can be matched to the path (on plain QEMU the call
//! returns NOT_SUPPORTED and changes nothing). The paths:
//!
//! | phase | path | what one sample is |
//! | ---: | --- | --- |
//! | 1 | `hvc-null` | `hvc #0` with Sluice's null function, round trip |
//! | 2 | `mmio-read` | a read of the virtio-blk's VendorID register |
//! | 3 | `mmio-write` | a write of 0 to the virtio-blk's QueueSel register |
//! | 4 | `blk-read-irq-handler` | a 4 KiB virtio-blk read: submit (add_buf, kick) to the completion interrupt's handler |
//! | 4 | `blk-read-irq` | the same read: submit to `get_buf` in that handler |
//! | 5 | `blk-read-poll` | the same read with callbacks disabled: submit to `get_buf` by polling |
//! | 6 | `console-tx-1` | a 1-byte virtio-console transmit, to the buffer's return |
//! | 7 | `console-tx-64` | the same with 64 bytes |
//! | 8 | `vtimer` | virtual timer: programmed deadline to handler entry, spinning |
//! | 9 | `vtimer-wfi` | the same, waiting in `wfi` |
//! | 10 | `hvc-unknown` | `hvc #0` with a function nobody offers, round trip (Sluice answers NOT_SUPPORTED and logs it, rate-limited) |
//! | 11 | `hvc-psci-version` | `hvc #0` with PSCI_VERSION, round trip: a known call to set `hvc-unknown` against |
//! | 12 | `gicd-read` | one trapped read of a GIC distributor register (GICD_IIDR) |
//! | 13 | `first-instruction` | one sample: the counter when the guest's `main` starts, i.e. the time from the machine's start (counter 0) to the guest's first instructions: Sluice's start-up, or plain QEMU's |
//! | 14 | `sgi` | an SGI from CPU 0 (a write of ICC_SGI1R_EL1) to CPU 1, waiting in `wfi`, until CPU 1's handler runs (only with 2 CPUs in the DTB) |
//! | 15 | `blk-read-disk-irq-handler`, `blk-read-disk-irq` | phase 4's paths on a second virtio-blk, if there is one: under Sluice a disk image file, served on QEMU's own device (only with a second blk) |
//! | 16 | `blk-read-disk-poll` | phase 5's path on that disk |
//!
//! Before `hvc-null`, untimed, the guest floods Sluice with [`FLOOD`] unknown
//! hypercalls: the log lines they cause are rate-limited, so neither `hvc-null` nor
//! `hvc-unknown` may change with it (compare with a run of an older Sluice).
//!
//! The console payloads are dots, 64-byte ones ending a line. The guest ends with
//! `bench: done` and powers off; any failure prints `bench: FAIL ...`.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("bench is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use guest_drivers::blk::VirtioBlk;
    use guest_drivers::console::VirtioConsole;
    use guest_drivers::hal::BumpHal;
    use guest_drivers::mmio::Reg32;
    use guest_drivers::transport::device_id;
    use guest_drivers::transport::mmio::MmioTransport;
    use platform::hypercall;
    use test_guests::dtb::BootInfo;
    use test_guests::latency;
    use test_guests::shared::IrqShared;
    use test_guests::virtio::{self, Slot};
    use test_guests::{bootargs, cpu, gic, irq, println, psci, smccc, smp, timer};

    type Blk = VirtioBlk<&'static BumpHal, MmioTransport>;

    /// Most timed iterations per path.
    const MAX_ITERATIONS: usize = 2048;
    /// Bytes of one blk read.
    const READ_BYTES: usize = 4096;
    /// How far ahead the timer paths set their deadline, in counter ticks.
    const TIMER_LEAD: u64 = 2000;
    /// How long any one iteration may take before the guest gives up.
    const ITERATION_TIMEOUT_MS: u64 = 5_000;

    /// Unknown hypercalls made before the first timed path.
    const FLOOD: u32 = 65_536;
    /// A function ID nobody implements (not even a well-formed SMCCC one).
    const UNKNOWN_FUNCTION: u32 = 0xdead_beef;

    /// Offset of QueueSel in a virtio-mmio register block (virtio 1.2 §4.2.2).
    const QUEUE_SEL: usize = 0x030;
    /// GICD_IIDR's offset in the distributor.
    const GICD_IIDR: usize = 0x008;
    /// The SGI of path `sgi`.
    const SGI: u32 = 3;

    /// The samples of the path being timed (two figures per iteration at most).
    static SAMPLES: [[AtomicU64; MAX_ITERATIONS]; 2] =
        [const { [const { AtomicU64::new(0) }; MAX_ITERATIONS] }; 2];

    test_guests::entry!(main);

    /// How many iterations, from the bootargs.
    struct Plan {
        iterations: usize,
        warmup: usize,
        /// Unknown hypercalls made before timing (`flood=N`, default [`FLOOD`]).
        flood: u32,
        /// The MPIDR affinity of the DTB's second CPU, if it has one (path `sgi`).
        second_cpu: Option<u64>,
    }

    fn plan(dtb: usize) -> Plan {
        let args = BootInfo::read(dtb).ok().and_then(|info| info.bootargs).unwrap_or("");
        let second_cpu =
            BootInfo::read(dtb).ok().filter(|info| info.cpus >= 2).and_then(|info| info.cpu_id(1));
        let number =
            |key, default| bootargs::value(args, key).and_then(|v| v.parse().ok()).unwrap_or(default);
        Plan {
            iterations: number("iterations", 1000).clamp(1, MAX_ITERATIONS),
            warmup: number("warmup", 50),
            flood: number("flood", FLOOD as usize) as u32,
            second_cpu,
        }
    }

    fn main(dtb: usize) -> ! {
        // The virtual counter starts at 0 with the machine (Sluice leaves CNTVOFF at 0).
        let first_instruction = timer::counter();
        let plan = plan(dtb);
        let slots = virtio::read_slots(dtb)
            .unwrap_or_else(|e| fail(format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let hal = virtio::take_dma_hal().unwrap_or_else(|| fail(format_args!("the DMA pool is taken")));
        // A second blk, if there is one, is the disk of phases 15 and 16.
        let [blk, console, disk] =
            virtio::claim_first(&slots, [device_id::BLOCK, device_id::CONSOLE, device_id::BLOCK])
                .unwrap_or_else(|(slot, e)| fail(format_args!("virtio-mmio slot at {:#x}: {e}", slot.base)));
        let Some((blk_slot, blk)) = blk else { fail(format_args!("no virtio-blk")) };
        let Some((_, console)) = console else { fail(format_args!("no virtio-console")) };
        gic::init_distributor().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        let mut blk = Blk::new(blk, hal).unwrap_or_else(|e| fail(format_args!("virtio-blk: {e}")));
        let mut console =
            VirtioConsole::new(console, hal).unwrap_or_else(|e| fail(format_args!("virtio-console: {e}")));
        let hz = timer::frequency();
        let sluice = call(hypercall::NULL, 0) == 0;
        println!(
            "bench: {} iterations per path after {} warm-up, counter at {hz} Hz, {}",
            plan.iterations,
            plan.warmup,
            if sluice { "Sluice's hypercalls answer" } else { "no Sluice hypercalls (plain QEMU?)" }
        );

        for _ in 0..plan.flood {
            call(UNKNOWN_FUNCTION, 0);
        }
        println!("bench: {} unknown hypercalls made before timing", plan.flood);
        measure(&plan, 1, ["hvc-null"], || {
            let start = timer::counter();
            call(hypercall::NULL, 0);
            [timer::counter() - start]
        });
        measure(&plan, 2, ["mmio-read"], || {
            let start = timer::counter();
            core::hint::black_box(blk.transport().vendor_id());
            [timer::counter() - start]
        });
        let queue_sel = queue_sel(&blk_slot);
        measure(&plan, 3, ["mmio-write"], || {
            let start = timer::counter();
            queue_sel.write(0);
            [timer::counter() - start]
        });

        let sectors = (blk.capacity().saturating_sub(8)).max(1);
        blk = blk_by_interrupt(&plan, blk, &blk_slot, sectors, 4, ["blk-read-irq-handler", "blk-read-irq"]);
        blk_by_polling(&plan, &mut blk, sectors, 5, "blk-read-poll");
        // Under Sluice, the second disk is a disk image file on the machine's own disk.
        if let Some((disk_slot, disk)) = disk {
            let mut disk =
                Blk::new(disk, hal).unwrap_or_else(|e| fail(format_args!("second virtio-blk: {e}")));
            disk.disable_interrupts();
            let sectors = (disk.capacity().saturating_sub(8)).max(1);
            let names = ["blk-read-disk-irq-handler", "blk-read-disk-irq"];
            disk = blk_by_interrupt(&plan, disk, &disk_slot, sectors, 15, names);
            blk_by_polling(&plan, &mut disk, sectors, 16, "blk-read-disk-poll");
        }

        let dots = [b'.'; 64];
        let mut line = dots;
        line[63] = b'\n';
        let mut sent = 0usize;
        measure(&plan, 6, ["console-tx-1"], || {
            sent += 1;
            let byte = if sent.is_multiple_of(64) { &line[63..] } else { &dots[..1] };
            let start = timer::counter();
            console.write(byte).unwrap_or_else(|e| fail(format_args!("console write: {e}")));
            [timer::counter() - start]
        });
        console.write(b"\n").unwrap_or_else(|e| fail(format_args!("console write: {e}")));
        measure(&plan, 7, ["console-tx-64"], || {
            let start = timer::counter();
            console.write(&line).unwrap_or_else(|e| fail(format_args!("console write: {e}")));
            [timer::counter() - start]
        });

        vtimer(&plan, 8, "vtimer", false);
        vtimer(&plan, 9, "vtimer-wfi", true);
        measure(&plan, 10, ["hvc-unknown"], || {
            let start = timer::counter();
            call(UNKNOWN_FUNCTION, 0);
            [timer::counter() - start]
        });
        measure(&plan, 11, ["hvc-psci-version"], || {
            let start = timer::counter();
            call(psci::PSCI_VERSION, 0);
            [timer::counter() - start]
        });

        let iidr = gicd_iidr();
        measure(&plan, 12, ["gicd-read"], || {
            let start = timer::counter();
            core::hint::black_box(iidr.read());
            [timer::counter() - start]
        });
        SAMPLES[0][0].store(first_instruction, Ordering::Relaxed);
        report("first-instruction", 13, &SAMPLES[0][..1]);
        if let Some(cpu1) = plan.second_cpu {
            sgi_round_trip(&plan, cpu1);
        }

        println!("bench: done");
        psci::system_off()
    }

    /// Sluice hypercall `function` with argument `arg`.
    fn call(function: u32, arg: u64) -> i64 {
        smccc::hvc(u64::from(function), arg, 0, 0) as i64
    }

    /// The QueueSel register of the virtio-mmio slot.
    #[allow(unsafe_code)]
    fn queue_sel(slot: &Slot) -> Reg32 {
        // SAFETY: the slot is a virtio-mmio register block named by the DTB (device
        // memory, mapped: the MMU is off), and QueueSel is an aligned 32-bit
        // register. Writing 0 selects queue 0, the blk driver's only queue, which
        // the driver touches only through QueueNotify (which names its queue).
        unsafe { Reg32::new(slot.base as usize + QUEUE_SEL) }
    }

    /// GICD_IIDR, the GIC distributor's implementer register: a read with no side
    /// effects.
    #[allow(unsafe_code)]
    fn gicd_iidr() -> Reg32 {
        // SAFETY: the distributor is at QEMU virt's GICD base (device memory, mapped:
        // the MMU is off) and GICD_IIDR is an aligned, read-only 32-bit register.
        unsafe { Reg32::new(platform::qemu_virt::GICD.base as usize + GICD_IIDR) }
    }

    /// Runs `once` `warmup` times, then `iterations` times tagged with `phase`,
    /// and prints what the samples of each of its `K` figures come to.
    fn measure<const K: usize>(
        plan: &Plan,
        phase: u32,
        names: [&str; K],
        mut once: impl FnMut() -> [u64; K],
    ) {
        for _ in 0..plan.warmup {
            once();
        }
        call(hypercall::TRACE_PHASE, u64::from(phase));
        for i in 0..plan.iterations {
            for (samples, value) in SAMPLES.iter().zip(once()) {
                samples[i].store(value, Ordering::Relaxed);
            }
        }
        call(hypercall::TRACE_PHASE, 0);
        for (samples, name) in SAMPLES.iter().zip(names) {
            report(name, phase, &samples[..plan.iterations]);
        }
    }

    /// Prints the summary and histogram lines of one path.
    fn report(name: &str, phase: u32, samples: &[AtomicU64]) {
        let mut sorted = [0u64; MAX_ITERATIONS];
        for (out, sample) in sorted.iter_mut().zip(samples) {
            *out = sample.load(Ordering::Relaxed);
        }
        latency::report(name, phase, &mut sorted[..samples.len()], timer::frequency(), |args| {
            println!("{args}")
        });
    }

    /// Gives up: says why and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("bench: FAIL {what}");
        psci::system_off()
    }

    /// The blk driver while its interrupt handler may use it.
    static BLK: IrqShared<Blk> = IrqShared::new();
    /// Counter at the completion interrupt handler's entry.
    static HANDLER_AT: AtomicU64 = AtomicU64::new(0);
    /// Counter when the handler's `get_buf` returned the request.
    static COMPLETED_AT: AtomicU64 = AtomicU64::new(0);
    /// The handler collected the request.
    static COMPLETED: AtomicBool = AtomicBool::new(false);

    /// The virtio-blk's interrupt: acknowledge, collect the completion.
    fn on_blk_interrupt(_intid: u32) {
        let entered = timer::counter();
        BLK.with(|blk| {
            blk.ack_interrupt();
            while let Some(token) = blk.poll().unwrap_or_else(|e| fail(format_args!("blk poll: {e}"))) {
                COMPLETED_AT.store(timer::counter(), Ordering::Relaxed);
                blk.complete(token).unwrap_or_else(|e| fail(format_args!("blk read: {e}")));
                HANDLER_AT.store(entered, Ordering::Relaxed);
                COMPLETED.store(true, Ordering::Release);
            }
        });
    }

    /// A read by interrupt, as phase `phase`'s two paths `names` (to the handler, and
    /// to `get_buf` in it); hands the driver back.
    #[allow(unsafe_code)]
    fn blk_by_interrupt(
        plan: &Plan,
        mut blk: Blk,
        slot: &Slot,
        sectors: u64,
        phase: u32,
        names: [&str; 2],
    ) -> Blk {
        let Some(interrupt) = slot.interrupt_or_default() else {
            fail(format_args!("no interrupt for the virtio-blk at {:#x}", slot.base))
        };
        // What completed while interrupts were off is old news.
        blk.ack_interrupt();
        blk.enable_interrupts();
        if BLK.put(blk).is_some() {
            fail(format_args!("the blk driver was shared twice"));
        }
        irq::register(interrupt.intid, on_blk_interrupt);
        gic::enable_spi(interrupt.intid, interrupt.trigger);
        irq::enable();
        let mut buf = [0u8; READ_BYTES];
        let mut sector = 0u64;
        measure(plan, phase, names, || {
            sector = (sector + 8) % sectors;
            COMPLETED.store(false, Ordering::Relaxed);
            let start = BLK
                .with(|blk| {
                    let start = timer::counter();
                    // SAFETY: `buf` is not touched until the handler has collected
                    // the request (the wait below), and outlives it.
                    unsafe { blk.submit_read(sector, &mut buf) }
                        .unwrap_or_else(|e| fail(format_args!("blk submit: {e}")));
                    start
                })
                .unwrap_or_else(|| fail(format_args!("the blk driver went missing")));
            let deadline = timer::Deadline::after_ms(ITERATION_TIMEOUT_MS);
            while !COMPLETED.load(Ordering::Acquire) {
                if deadline.expired() {
                    fail(format_args!("no completion interrupt for a blk read in {ITERATION_TIMEOUT_MS} ms"));
                }
                core::hint::spin_loop();
            }
            [HANDLER_AT.load(Ordering::Relaxed) - start, COMPLETED_AT.load(Ordering::Relaxed) - start]
        });
        irq::disable();
        gic::disable_spi(interrupt.intid);
        BLK.take().unwrap_or_else(|| fail(format_args!("the blk driver went missing")))
    }

    /// A read by polling, as phase `phase`'s path `name`.
    #[allow(unsafe_code)]
    fn blk_by_polling(plan: &Plan, blk: &mut Blk, sectors: u64, phase: u32, name: &str) {
        blk.disable_interrupts();
        let mut buf = [0u8; READ_BYTES];
        let mut sector = 0u64;
        measure(plan, phase, [name], || {
            sector = (sector + 8) % sectors;
            let start = timer::counter();
            // SAFETY: `buf` is not touched until `complete` returned the request.
            let token = unsafe { blk.submit_read(sector, &mut buf) }
                .unwrap_or_else(|e| fail(format_args!("blk submit: {e}")));
            let deadline = timer::Deadline::after_ms(ITERATION_TIMEOUT_MS);
            while blk.poll().unwrap_or_else(|e| fail(format_args!("blk poll: {e}"))).is_none() {
                if deadline.expired() {
                    fail(format_args!("a polled blk read did not complete in {ITERATION_TIMEOUT_MS} ms"));
                }
                core::hint::spin_loop();
            }
            let end = timer::counter();
            blk.complete(token).unwrap_or_else(|e| fail(format_args!("blk read: {e}")));
            [end - start]
        });
        // QEMU may interrupt anyway (disable_cb is a hint): clear what it raised.
        blk.ack_interrupt();
    }

    /// Counter at the timer handler's entry.
    static TIMER_AT: AtomicU64 = AtomicU64::new(0);
    /// The timer fired.
    static FIRED: AtomicBool = AtomicBool::new(false);

    fn on_timer(_intid: u32) {
        TIMER_AT.store(timer::counter(), Ordering::Relaxed);
        timer::stop();
        FIRED.store(true, Ordering::Release);
    }

    /// The counter when CPU 1's SGI handler ran, and whether it has since the last
    /// SGI was sent.
    static SGI_AT: AtomicU64 = AtomicU64::new(0);
    static SGI_TAKEN: AtomicBool = AtomicBool::new(false);
    /// CPU 1 is up, its SGI enabled.
    static CPU1_READY: AtomicBool = AtomicBool::new(false);

    /// CPU 1: takes SGIs in `wfi`, for ever (the VM powers off under it).
    fn cpu1_main(_slot: usize) -> ! {
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic on cpu1: {e}")));
        irq::register(SGI, on_sgi);
        gic::enable_private(SGI);
        irq::enable();
        CPU1_READY.store(true, Ordering::Release);
        loop {
            irq::wait_unless(|| false);
        }
    }

    fn on_sgi(_intid: u32) {
        SGI_AT.store(timer::counter(), Ordering::Relaxed);
        SGI_TAKEN.store(true, Ordering::Release);
    }

    /// Path `sgi`: CPU 0 sends CPU 1 (affinity `cpu1`) an SGI; one sample is the
    /// time until CPU 1's handler reads the counter (both read the same virtual
    /// counter).
    fn sgi_round_trip(plan: &Plan, cpu1: u64) {
        if let Err(e) = smp::start_cpu(cpu1, cpu1_main) {
            fail(format_args!("starting cpu1 (mpidr {cpu1:#x}): {e}"));
        }
        let give_up = timer::Deadline::after_ms(ITERATION_TIMEOUT_MS);
        while !CPU1_READY.load(Ordering::Acquire) {
            if give_up.expired() {
                fail(format_args!("cpu1 did not come up in {ITERATION_TIMEOUT_MS} ms"));
            }
            cpu::relax();
        }
        measure(plan, 14, ["sgi"], || {
            SGI_TAKEN.store(false, Ordering::Relaxed);
            let give_up = timer::Deadline::after_ms(ITERATION_TIMEOUT_MS);
            let start = timer::counter();
            gic::send_sgi(SGI, cpu1);
            while !SGI_TAKEN.load(Ordering::Acquire) {
                if give_up.expired() {
                    fail(format_args!("cpu1 did not take the SGI in {ITERATION_TIMEOUT_MS} ms"));
                }
                cpu::relax();
            }
            [SGI_AT.load(Ordering::Relaxed).saturating_sub(start)]
        });
    }

    /// Paths `vtimer` and `vtimer-wfi`: deadline to handler entry.
    fn vtimer(plan: &Plan, phase: u32, name: &str, sleep: bool) {
        irq::register(timer::INTID, on_timer);
        gic::enable_private(timer::INTID);
        irq::enable();
        measure(plan, phase, [name], || {
            FIRED.store(false, Ordering::Relaxed);
            let deadline = timer::counter() + TIMER_LEAD;
            timer::fire_at(deadline);
            let give_up = timer::Deadline::after_ms(ITERATION_TIMEOUT_MS);
            while !FIRED.load(Ordering::Acquire) {
                if give_up.expired() {
                    fail(format_args!("the timer did not fire in {ITERATION_TIMEOUT_MS} ms"));
                }
                if sleep {
                    irq::wait_unless(|| FIRED.load(Ordering::Acquire));
                } else {
                    core::hint::spin_loop();
                }
            }
            [TIMER_AT.load(Ordering::Relaxed) - deadline]
        });
        irq::disable();
    }
}
