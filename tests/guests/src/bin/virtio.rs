//! `virtio`: drives a virtio-blk and a virtio-console through the `guest-drivers`
//! front-ends, the same on Sluice's devices and on plain QEMU's (modern and legacy),
//! so that a driver bug and a device bug can be told apart.
//!
//! The devices are found through the DTB's `virtio,mmio` nodes (see
//! `test_guests::virtio`): QEMU puts its devices in the highest slots, Sluice in
//! the lowest. The guest then
//!
//! 1. initialises the virtio-blk and prints what it is and its capacity and serial
//!    (GET_ID);
//! 2. writes patterns to extents across the disk, the last sector included (each
//!    sector carries its number), flushes, reads them back and compares, and checks
//!    that the sectors around them did not change;
//! 3. checks that requests past the end fail with an I/O error and change nothing;
//! 4. submits a batch of non-blocking reads and sleeps in `wfi` until they complete:
//!    the device's interrupt handler acknowledges InterruptStatus and collects the
//!    completions (`disable_cb` while it polls, then `enable_cb`, polling again when
//!    that says buffers arrived meanwhile);
//! 5. initialises the virtio-console, writes a line through it, and another through
//!    its emergency write (EMERG_WRITE) when offered;
//! 6. says it is done (on the PL011) and powers off.
//!
//! Its lines under Sluice (the contract of `tests/scenarios/virtio.toml`; on plain
//! QEMU the first and sixth name QEMU's slot, vendor, interrupt and features, and
//! the counts in the fifth's parentheses vary):
//!
//! ```text
//! virtio: blk at 0xa000000: virtio-mmio modern (2), vendor "SLCE", INTID 48 level, features 0x130000246
//! virtio: blk capacity 8192 sectors, serial "disk0"
//! virtio: blk write/flush/read-back ok (53 sectors)
//! virtio: blk out-of-range request failed as it should (3 requests)
//! virtio: blk 16 requests completed by interrupt (1 interrupt(s), 0 re-poll(s))
//! virtio: console at 0xa000200: virtio-mmio modern (2), vendor "SLCE", INTID 49 level, features 0x130000004
//! virtio: hello through virtio-console
//! virtio: hello through emerg_wr
//! virtio: done
//! ```
//!
//! The virtio-console lines travel through the virtio-console alone, so seeing them
//! proves its transmit path (and the emergency write). Any failed check prints
//! `virtio: FAIL ...` and powers off. With `rounds=N` in the bootargs step 2 runs N
//! times (then `virtio: blk write/flush/read-back ok N times`), to keep checking
//! the disk while other VMs run. With `stress=MS`, after the out-of-range check it
//! keeps 64 requests in flight for MS ms (`test_guests::blk_stress`) and says how
//! many (`virtio: blk stress: ...`).
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("virtio is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;

    use guest_drivers::blk::spec::ID_BYTES;
    use guest_drivers::blk::VirtioBlk;
    use guest_drivers::console::VirtioConsole;
    use guest_drivers::hal::BumpHal;
    use guest_drivers::transport::device_id;
    use guest_drivers::transport::mmio::{MmioTransport, MmioVersion};
    use guest_drivers::Error;
    use test_guests::disk_pattern::{self, Extent, MAX_GUARDS, MIN_CAPACITY, SECTOR_SIZE};
    use test_guests::line::Escaped;
    use test_guests::virtio::{self, Slot};
    use test_guests::{gic, println, psci};

    /// DMA memory for the drivers.
    pub(crate) type Hal = &'static BumpHal;
    /// The block driver on a virtio-mmio slot.
    pub(crate) type Blk = VirtioBlk<Hal, MmioTransport>;

    /// The pattern seed of what the test writes.
    pub(crate) const SEED: u8 = 0x5a;
    /// The pattern seed of writes that must not happen.
    const REFUSED_SEED: u8 = 0xc3;
    /// Sectors per blocking request (the buffer lives on the stack).
    const CHUNK_SECTORS: u64 = 8;

    const CONSOLE_LINE: &[u8] = b"virtio: hello through virtio-console\r\n";
    const EMERGENCY_LINE: &[u8] = b"virtio: hello through emerg_wr\r\n";

    test_guests::entry!(main);

    fn main(dtb: usize) -> ! {
        let slots = virtio::read_slots(dtb)
            .unwrap_or_else(|e| fail(format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let hal = virtio::take_dma_hal().unwrap_or_else(|| fail(format_args!("the DMA pool is taken")));
        let [blk, console] = virtio::claim_first(&slots, [device_id::BLOCK, device_id::CONSOLE])
            .unwrap_or_else(|(slot, e)| fail(format_args!("virtio-mmio slot at {:#x}: {e}", slot.base)));
        let count = slots.len();
        let Some((blk_slot, blk_transport)) = blk else {
            fail(format_args!("no virtio-blk behind the DTB's {count} virtio,mmio node(s)"))
        };
        let Some((console_slot, console_transport)) = console else {
            fail(format_args!("no virtio-console behind the DTB's {count} virtio,mmio node(s)"))
        };

        gic::init_distributor().unwrap_or_else(|e| fail(format_args!("gic: {e}")));
        gic::init_cpu().unwrap_or_else(|e| fail(format_args!("gic: {e}")));

        let mut blk = Blk::new(blk_transport, hal)
            .unwrap_or_else(|e| fail(format_args!("virtio-blk at {:#x}: {e}", blk_slot.base)));
        // The blocking requests below poll; interrupts are for the batch.
        blk.disable_interrupts();
        describe("blk", &blk_slot, blk.transport(), blk.features());
        let capacity = blk.capacity();
        let mut id = [0u8; ID_BYTES];
        let id_len = blk.get_id(&mut id).unwrap_or_else(|e| fail(format_args!("blk GET_ID: {e}")));
        println!("virtio: blk capacity {capacity} sectors, serial \"{}\"", Escaped(&id[..id_len]));
        if capacity < MIN_CAPACITY {
            fail(format_args!("the disk has {capacity} sectors; the test needs {MIN_CAPACITY}"));
        }

        let sectors = write_read_back(&mut blk, capacity);
        println!("virtio: blk write/flush/read-back ok ({sectors} sectors)");

        // `rounds=N` in the bootargs: the write/flush/read-back N times in all, so the
        // disk is checked for as long as other VMs run (tests/scenarios/fuzz.toml).
        let rounds = test_guests::dtb::BootInfo::read(dtb)
            .ok()
            .and_then(|info| test_guests::bootargs::value(info.bootargs?, "rounds"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1);
        if rounds > 1 {
            for _ in 1..rounds {
                write_read_back(&mut blk, capacity);
            }
            println!("virtio: blk write/flush/read-back ok {rounds} times");
        }

        let refused = out_of_range(&mut blk, capacity);
        println!("virtio: blk out-of-range request failed as it should ({refused} requests)");

        // `reads=N` in the bootargs: time N polled 4 KiB reads (a measurement, not a test).
        let reads = test_guests::dtb::BootInfo::read(dtb)
            .ok()
            .and_then(|info| test_guests::bootargs::value(info.bootargs?, "reads"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if reads > 0 {
            let mut buf = [0u8; 4096];
            let start = test_guests::timer::counter();
            for i in 0..reads {
                blk.read_blocks((i * 8) % (capacity - 8), &mut buf)
                    .unwrap_or_else(|e| fail(format_args!("timed read {i}: {e}")));
            }
            let ticks = test_guests::timer::counter() - start;
            let ns = u128::from(ticks) * 1_000_000_000
                / u128::from(test_guests::timer::frequency())
                / u128::from(reads);
            println!("virtio: {reads} polled 4 KiB reads, {ns} ns each");
        }

        // `stress=MS` in the bootargs: MS ms of concurrent writes and read-backs at
        // queue depth 64 (tests/scenarios/disk-files.toml).
        let stress_ms = test_guests::dtb::BootInfo::read(dtb)
            .ok()
            .and_then(|info| test_guests::bootargs::value(info.bootargs?, "stress"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if stress_ms > 0 {
            stress(&mut blk, capacity, hal, stress_ms);
        }

        let Some(interrupt) = blk_slot.interrupt_or_default() else {
            fail(format_args!("no interrupt for the virtio-blk at {:#x}", blk_slot.base))
        };
        let done = batch::run(blk, interrupt);
        println!(
            "virtio: blk {} requests completed by interrupt ({} interrupt(s), {} re-poll(s))",
            done.completed, done.interrupts, done.repolls
        );

        let mut console = VirtioConsole::new(console_transport, hal)
            .unwrap_or_else(|e| fail(format_args!("virtio-console at {:#x}: {e}", console_slot.base)));
        describe("console", &console_slot, console.transport(), console.features());
        console.write(CONSOLE_LINE).unwrap_or_else(|e| fail(format_args!("console write: {e}")));
        for (i, &byte) in EMERGENCY_LINE.iter().enumerate() {
            match console.emergency_write(byte) {
                Ok(()) => {}
                Err(Error::Unsupported) if i == 0 => {
                    println!("virtio: console offers no EMERG_WRITE");
                    break;
                }
                Err(e) => fail(format_args!("console emergency write: {e}")),
            }
        }

        println!("virtio: done");
        psci::system_off()
    }

    /// Prints where a device is and what it negotiated.
    fn describe(what: &str, slot: &Slot, transport: &MmioTransport, features: u64) {
        let version = match transport.version() {
            MmioVersion::Modern => "modern (2)",
            MmioVersion::Legacy => "legacy (1)",
        };
        let vendor = transport.vendor_id().to_le_bytes();
        let interrupt = slot.interrupt_or_default();
        let interrupt =
            interrupt.as_ref().map_or(&"no interrupt" as &dyn fmt::Display, |i| i as &dyn fmt::Display);
        println!(
            "virtio: {what} at {:#x}: virtio-mmio {version}, vendor \"{}\", {interrupt}, features {features:#x}",
            slot.base,
            Escaped(&vendor)
        );
    }

    /// The pieces of at most [`CHUNK_SECTORS`] an extent is written and read in.
    fn chunks(e: Extent) -> impl Iterator<Item = (u64, usize)> {
        (e.start..e.end())
            .step_by(CHUNK_SECTORS as usize)
            .map(move |at| (at, ((e.end() - at).min(CHUNK_SECTORS) as usize) * SECTOR_SIZE))
    }

    /// Writes the pattern over the test's extents, flushes, reads them back and
    /// compares; checks the sectors around them kept what they held. Returns the
    /// number of sectors written.
    fn write_read_back(blk: &mut Blk, capacity: u64) -> u64 {
        let (guards, guard_count) = disk_pattern::guards(capacity);
        let guards = &guards[..guard_count];
        let mut saved = [[0u8; SECTOR_SIZE]; MAX_GUARDS];
        for (&sector, copy) in guards.iter().zip(saved.iter_mut()) {
            blk.read_blocks(sector, copy)
                .unwrap_or_else(|e| fail(format_args!("blk read of sector {sector}: {e}")));
        }

        let extents = disk_pattern::extents(capacity);
        let mut buf = [0u8; CHUNK_SECTORS as usize * SECTOR_SIZE];
        for &e in &extents {
            for (at, len) in chunks(e) {
                disk_pattern::fill(SEED, at, &mut buf[..len]);
                blk.write_blocks(at, &buf[..len]).unwrap_or_else(|err| {
                    fail(format_args!("blk write of {} sectors at {at}: {err}", len / SECTOR_SIZE))
                });
            }
        }
        blk.flush().unwrap_or_else(|e| fail(format_args!("blk flush: {e}")));

        for &e in &extents {
            for (at, len) in chunks(e) {
                buf.fill(0);
                blk.read_blocks(at, &mut buf[..len]).unwrap_or_else(|err| {
                    fail(format_args!("blk read of {} sectors at {at}: {err}", len / SECTOR_SIZE))
                });
                if let Some((sector, offset, found)) = disk_pattern::first_mismatch(SEED, at, &buf[..len]) {
                    let wrote = disk_pattern::pattern_byte(SEED, sector, offset);
                    fail(format_args!(
                        "blk read-back: sector {sector} byte {offset} reads {found:#04x}, wrote {wrote:#04x}"
                    ));
                }
            }
        }

        let mut now = [0u8; SECTOR_SIZE];
        for (&sector, before) in guards.iter().zip(saved.iter()) {
            blk.read_blocks(sector, &mut now)
                .unwrap_or_else(|e| fail(format_args!("blk read of sector {sector}: {e}")));
            if now != *before {
                fail(format_args!("blk sector {sector}, next to a written extent, changed"));
            }
        }
        extents.iter().map(|e| e.count).sum()
    }

    /// Requests past the end of the disk must fail with IOERR and change nothing.
    /// Returns how many were tried.
    fn out_of_range(blk: &mut Blk, capacity: u64) -> usize {
        let mut buf = [0u8; 2 * SECTOR_SIZE];
        let mut tried = 0;
        let mut refused = |what: fmt::Arguments<'_>, result: Result<(), Error>| {
            tried += 1;
            match result {
                Err(Error::IoError) => {}
                Ok(()) => fail(format_args!("blk {what} succeeded")),
                Err(e) => fail(format_args!("blk {what} failed with \"{e}\", not an I/O error")),
            }
        };
        refused(
            format_args!("read of sector {capacity}, the end"),
            blk.read_blocks(capacity, &mut buf[..SECTOR_SIZE]),
        );
        refused(
            format_args!("read of sector {}", u64::MAX),
            blk.read_blocks(u64::MAX, &mut buf[..SECTOR_SIZE]),
        );
        disk_pattern::fill(REFUSED_SEED, capacity - 1, &mut buf);
        refused(format_args!("write of 2 sectors across the end"), blk.write_blocks(capacity - 1, &buf));

        let last = capacity - 1;
        blk.read_blocks(last, &mut buf[..SECTOR_SIZE])
            .unwrap_or_else(|e| fail(format_args!("blk read of sector {last}: {e}")));
        if disk_pattern::first_mismatch(SEED, last, &buf[..SECTOR_SIZE]).is_some() {
            fail(format_args!("blk: the refused write across the end changed sector {last}"));
        }
        tried
    }

    /// Reports a failed check and powers off.
    pub(crate) fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("virtio: FAIL {what}");
        psci::system_off()
    }

    /// `ms` ms of concurrent I/O at queue depth 64 over sectors no other step uses
    /// (between the batch extent and the middle of the disk), polled.
    #[allow(unsafe_code)]
    fn stress(blk: &mut Blk, capacity: u64, hal: Hal, ms: u64) {
        use guest_drivers::hal::Hal as _;
        use test_guests::blk_stress::{self, QUEUE_DEPTH};
        let bytes = core::mem::size_of::<[[u8; SECTOR_SIZE]; QUEUE_DEPTH]>();
        let Some((_, memory)) = hal.dma_alloc(bytes.div_ceil(4096)) else {
            fail(format_args!("blk stress: no DMA memory for its buffers"))
        };
        // SAFETY: fresh zeroed pages of the DMA pool, this function's alone (never
        // given back: the guest powers off after its test), byte arrays need no
        // alignment.
        let buffers = unsafe { &mut *memory.as_ptr().cast::<[[u8; SECTOR_SIZE]; QUEUE_DEPTH]>() };
        let (first, end) = (disk_pattern::BATCH_START + disk_pattern::BATCH_SECTORS + 32, capacity / 2 - 8);
        let (deadline, give_up) =
            (test_guests::timer::Deadline::after_ms(ms), test_guests::timer::Deadline::after_ms(ms + 10_000));
        // SAFETY: the buffers are the DMA pool's, which the device reaches (MMU off).
        let outcome = unsafe {
            blk_stress::run(
                blk,
                first,
                end.saturating_sub(first),
                buffers,
                || deadline.expired(),
                || give_up.expired(),
            )
        }
        .unwrap_or_else(|e| fail(format_args!("blk stress: {e}")));
        if outcome.submitted != outcome.completed {
            fail(format_args!(
                "blk stress: {} requests submitted, {} completed",
                outcome.submitted, outcome.completed
            ));
        }
        println!(
            "virtio: blk stress: {} requests at queue depth {QUEUE_DEPTH} in {ms} ms, every one completed once; {} sectors written and read back as written",
            outcome.submitted, outcome.writes
        );
    }

    /// The interrupt-driven batch of reads.
    mod batch {
        #![allow(unsafe_code)]

        use guest_drivers::blk::Token;
        use guest_drivers::transport::interrupt::USED_BUFFER;
        use guest_drivers::Error;
        use test_guests::disk_pattern::{self, BATCH_SECTORS, BATCH_START, SECTOR_SIZE};
        use test_guests::shared::IrqShared;
        use test_guests::virtio::Interrupt;
        use test_guests::{gic, irq, timer};

        use super::{fail, Blk, SEED};

        /// Reads in the batch, one sector each.
        const REQUESTS: usize = 16;
        /// How long the batch may take.
        const TIMEOUT_MS: u64 = 10_000;
        /// The watchdog tick that wakes the CPU from `wfi` to look at the time.
        const TICK_MS: u64 = 20;

        /// The device and the batch's state, shared with the interrupt handler.
        struct Batch {
            blk: Blk,
            /// The request of each read, until it completes.
            tokens: [Option<Token>; REQUESTS],
            /// Each read's result, once it completed.
            results: [Option<Result<(), Error>>; REQUESTS],
            completed: usize,
            interrupts: usize,
            /// The InterruptStatus bits the handler acknowledged.
            status: u32,
            /// Times `enable_cb` said completions came in while the handler polled.
            repolls: usize,
            /// A completion the handler could not account for.
            failure: Option<Error>,
        }

        static BATCH: IrqShared<Batch> = IrqShared::new();

        /// What the batch counted.
        pub(crate) struct Outcome {
            pub(crate) completed: usize,
            pub(crate) interrupts: usize,
            pub(crate) repolls: usize,
        }

        impl Batch {
            fn done(&self) -> bool {
                self.completed == REQUESTS || self.failure.is_some()
            }

            /// The device interrupted: acknowledge, then collect until `enable_cb`
            /// says nothing came in meanwhile (virtio 1.2 §2.7.7, the race that
            /// `enable_cb` closes).
            fn on_interrupt(&mut self) {
                self.interrupts += 1;
                // Lower the line first: a completion after this raises it again.
                self.status |= self.blk.ack_interrupt();
                loop {
                    self.blk.disable_interrupts();
                    self.collect();
                    if self.failure.is_some() || self.blk.enable_interrupts() {
                        return;
                    }
                    self.repolls += 1;
                }
            }

            /// Takes every completion the used ring holds.
            fn collect(&mut self) {
                loop {
                    let token = match self.blk.poll() {
                        Ok(Some(token)) => token,
                        Ok(None) => return,
                        Err(e) => {
                            self.failure = Some(e);
                            return;
                        }
                    };
                    let Some(i) = self.tokens.iter().position(|t| *t == Some(token)) else {
                        self.failure = Some(Error::InvalidToken);
                        return;
                    };
                    self.tokens[i] = None;
                    self.results[i] = Some(self.blk.complete(token));
                    self.completed += 1;
                }
            }
        }

        /// The handler of the device's SPI.
        fn on_interrupt(intid: u32) {
            if BATCH.with(Batch::on_interrupt).is_none() {
                fail(format_args!("interrupt {intid} before the virtio-blk was set up for it"));
            }
        }

        /// The sector read `i` reads: the batch extent in a scrambled order.
        fn sector_of(i: usize) -> u64 {
            BATCH_START + (i as u64 * 7) % BATCH_SECTORS
        }

        /// Submits [`REQUESTS`] reads at once with the device's interrupt on, sleeps
        /// until the handler has collected them all, and checks what they read.
        /// The driver stays with the handler.
        pub(crate) fn run(mut blk: Blk, interrupt: Interrupt) -> Outcome {
            // The requests so far ran with interrupts off (`disable_cb`), which is a
            // hint: QEMU interrupts for a queue's first used buffer whatever
            // `used_event` says (a SHOULD NOT of virtio 1.2 §2.7.10). What came then
            // is old news.
            blk.ack_interrupt();
            let batch = Batch {
                blk,
                tokens: [None; REQUESTS],
                results: [None; REQUESTS],
                completed: 0,
                interrupts: 0,
                status: 0,
                repolls: 0,
                failure: None,
            };
            if BATCH.put(batch).is_some() {
                fail(format_args!("a batch was already running"));
            }
            irq::register(interrupt.intid, on_interrupt);
            gic::enable_spi(interrupt.intid, interrupt.trigger);
            // A tick that wakes the CPU now and then: a lost interrupt ends in a
            // FAIL, not a hang.
            irq::register(timer::INTID, timer::handle_interrupt);
            gic::enable_private(timer::INTID);
            timer::start_periodic(
                timer::ticks_from_ms(timer::frequency(), TICK_MS),
                TIMEOUT_MS / TICK_MS + 1,
            );
            let deadline = timer::Deadline::after_ms(TIMEOUT_MS);

            let mut bufs = [0u8; REQUESTS * SECTOR_SIZE];
            BATCH.with(|b| {
                if !b.blk.enable_interrupts() {
                    fail(format_args!("blk: completions were waiting before the batch"));
                }
                for (i, buf) in bufs.chunks_mut(SECTOR_SIZE).enumerate() {
                    let sector = sector_of(i);
                    // SAFETY: `bufs` outlives every request: this function returns
                    // only once all have completed (a failure powers off instead),
                    // and nothing touches `bufs` until then.
                    match unsafe { b.blk.submit_read(sector, buf) } {
                        Ok(token) => b.tokens[i] = Some(token),
                        Err(e) => fail(format_args!("blk submit of read {i} (sector {sector}): {e}")),
                    }
                }
            });

            irq::enable();
            let finished = || BATCH.with(|b| b.done()).unwrap_or(true);
            while !finished() {
                if deadline.expired() {
                    let (completed, interrupts) =
                        BATCH.with(|b| (b.completed, b.interrupts)).unwrap_or_default();
                    fail(format_args!(
                        "blk batch: {completed} of {REQUESTS} reads completed, {interrupts} interrupt(s) in {TIMEOUT_MS} ms"
                    ));
                }
                irq::wait_unless(|| finished() || deadline.expired());
            }
            timer::stop();

            let Some((failure, results, status, outcome)) = BATCH.with(|b| {
                let outcome =
                    Outcome { completed: b.completed, interrupts: b.interrupts, repolls: b.repolls };
                (b.failure, b.results, b.status, outcome)
            }) else {
                fail(format_args!("blk batch: the device went missing"))
            };
            if let Some(e) = failure {
                fail(format_args!("blk batch: collecting completions: {e}"));
            }
            for (i, result) in results.iter().enumerate() {
                if let Some(Err(e)) = result {
                    fail(format_args!("blk batch: read {i} (sector {}) failed: {e}", sector_of(i)));
                }
            }
            if outcome.interrupts == 0 || status & USED_BUFFER == 0 {
                fail(format_args!(
                    "blk batch: {} interrupt(s), InterruptStatus bits {status:#x}: no used-buffer interrupt",
                    outcome.interrupts
                ));
            }
            for (i, buf) in bufs.chunks(SECTOR_SIZE).enumerate() {
                if let Some((sector, offset, found)) = disk_pattern::first_mismatch(SEED, sector_of(i), buf) {
                    fail(format_args!(
                        "blk batch: read {i}: sector {sector} byte {offset} reads {found:#04x}"
                    ));
                }
            }
            outcome
        }
    }
}
