//! `fuzz`: a hostile guest that throws random register accesses, descriptor chains
//! and PSCI calls at the hypervisor and must survive all of it.
//!
//! Bootargs: `seed=N` (default 1) and `ops=M` (default 20000). From the seed it makes
//! `M` operations of five kinds, picked at random (see `test_guests::fuzz`):
//! virtio-mmio register accesses of every width at its devices' slots (and an empty
//! slot, and past the window), descriptor chains on a queue it made live
//! (virtio-blk requests, virtio-console transmit and receive buffers), accesses in
//! the GIC distributor and redistributors and the PL011 (and just past them), and
//! PSCI/SMCCC calls over `hvc` and `smc` (CPU_ON of its second CPU lands on a parking
//! routine that turns the CPU off again). Every abort and undefined instruction
//! that comes back is counted and skipped; interrupts stay masked throughout. It
//! prints (the contract of `tests/scenarios/fuzz.toml` and `cargo xtask
//! fuzz-guest`):
//!
//! ```text
//! fuzz: seed 7, 20000 operations
//! fuzz: seed 7: 5000/20000 ops, 812 faulted back
//! ...
//! fuzz: seed 7 done: 20000 ops in 2345 ms; virtio 6012/391 chain 4987/0 ... (ops/faulted); faulted back 3512 (...)
//! ```
//!
//! and powers off with PSCI SYSTEM_OFF. A failure to start (no DTB, bad bootargs)
//! prints `fuzz: FAIL ...`.
#![cfg_attr(bare_metal, no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("fuzz is a bare-metal guest: build it with --target aarch64-unknown-none");
}

#[cfg(bare_metal)]
mod guest {
    use core::fmt;
    use core::sync::atomic::{fence, Ordering};

    use platform::Region;
    use test_guests::dtb::{BootInfo, MAX_CPU_IDS};
    use test_guests::exceptions::{skip_faults, skipped_faults};
    use test_guests::fuzz::calls::{self, Context, Via};
    use test_guests::fuzz::chain::{self, Queue, Traffic};
    use test_guests::fuzz::regs::{self, virtio as reg, Access, VirtioTarget};
    use test_guests::fuzz::space::{DeviceKind, Space, MAX_DEVICES, MAX_QUEUE};
    use test_guests::fuzz::{Args, Kind, Summary, Tally, Width};
    use test_guests::prng::Rng;
    use test_guests::virtio::read_slots;
    use test_guests::{image, println, probe, psci, smccc, timer};

    /// virtio-mmio's magic value, "virt".
    const MAGIC: u64 = 0x7472_6976;
    /// Device status bits (virtio 1.2 §2.1).
    const ACKNOWLEDGE: u64 = 1;
    const DRIVER: u64 = 2;
    const DRIVER_OK: u64 = 4;
    const FEATURES_OK: u64 = 8;
    const DEVICE_NEEDS_RESET: u64 = 0x40;
    const FAILED: u64 = 0x80;
    /// VIRTIO_F_RING_INDIRECT_DESC and VIRTIO_F_VERSION_1.
    const RING_INDIRECT_DESC: u64 = 1 << 28;
    const VERSION_1: u64 = 1 << 32;
    /// virtio-mmio registers the set-up reads (virtio 1.2 §4.2.2).
    const VERSION: u64 = 0x004;
    const DEVICE_ID: u64 = 0x008;
    const DEVICE_FEATURES: u64 = 0x010;
    const QUEUE_NUM_MAX: u64 = 0x034;
    const INTERRUPT_STATUS: u64 = 0x060;
    /// A session's available index is started again before it reaches this, so no
    /// index the guest writes looks like a RAM address (see `chain`).
    const AVAIL_IDX_LIMIT: u16 = 0x3000;

    test_guests::entry!(main);

    /// One virtio device and the queue a chain operation last made live on it.
    #[derive(Clone, Copy)]
    struct Device {
        base: u64,
        kind: DeviceKind,
        /// virtio-blk capacity in sectors.
        capacity: u64,
        /// The live queue, if the guest left the device as the builder needs it:
        /// cleared by any other write to the slot.
        session: Option<Queue>,
        /// Whether the device was found taking a layout it should have refused.
        said_bad_layout: bool,
    }

    /// How a queue set-up went.
    enum Setup {
        /// The queue is live at a layout the builder knows.
        Live(Queue),
        /// The device refused (and says so): a notify must be ignored.
        Refused,
        /// Something the builder can't use; the device was reset.
        Unusable,
    }

    struct Fuzzer {
        rng: Rng,
        space: Space,
        devices: [Option<Device>; MAX_DEVICES],
        /// (device index, slot base) of each device.
        slots: [(usize, u64); MAX_DEVICES],
        cpus: [u64; MAX_CPU_IDS],
        cpu_count: usize,
        park: u64,
        tally: Tally,
        /// Bytes may have gone to the console since the last line the guest printed.
        dirty: bool,
        /// The operation being made (from 1).
        op: u64,
        /// Operations from this one on say what they do (`verbose=N` in the bootargs).
        verbose_from: u64,
    }

    fn main(dtb: usize) -> ! {
        let info = BootInfo::read(dtb)
            .unwrap_or_else(|e| fail(format_args!("cannot read the DTB at {dtb:#x}: {e}")));
        let args = Args::parse(info.bootargs.unwrap_or("")).unwrap_or_else(|e| fail(format_args!("{e}")));
        println!("fuzz: seed {}, {} operations", args.seed, args.ops);

        let slots =
            read_slots(dtb).unwrap_or_else(|e| fail(format_args!("cannot read the DTB's slots: {e}")));
        let mut devices = [None; MAX_DEVICES];
        let mut kinds = [DeviceKind::Other; MAX_DEVICES];
        let mut count = 0;
        for slot in slots.iter().take(MAX_DEVICES) {
            if probe::load(slot.base, Width::B4) != MAGIC || probe::load(slot.base + VERSION, Width::B4) != 2
            {
                continue;
            }
            let kind = DeviceKind::from_id(probe::load(slot.base + DEVICE_ID, Width::B4) as u32);
            let capacity = probe::load(slot.base + reg::CONFIG, Width::B4)
                | probe::load(slot.base + reg::CONFIG + 4, Width::B4) << 32;
            devices[count] =
                Some(Device { base: slot.base, kind, capacity, session: None, said_bad_layout: false });
            kinds[count] = kind;
            count += 1;
        }
        let image = Region::new(image::start(), image::end() - image::start());
        let mut reserved = [info.dtb, Region::new(0, 0)];
        if let Some(initrd) = info.initrd {
            reserved[1] = initrd;
        }
        let space = Space::new(info.memory(), image, &reserved, &kinds[..count])
            .unwrap_or_else(|e| fail(format_args!("{e}")));
        let mut cpus = [0; MAX_CPU_IDS];
        let cpu_count = info.cpus.min(MAX_CPU_IDS);
        for (i, cpu) in cpus.iter_mut().enumerate().take(cpu_count) {
            *cpu = info.cpu_id(i).unwrap_or(i as u64);
        }
        let mut slot_list = [(0, 0); MAX_DEVICES];
        for (i, d) in devices.iter().enumerate().take(count) {
            slot_list[i] = (i, d.map_or(0, |d| d.base));
        }
        let mut fuzzer = Fuzzer {
            rng: Rng::new(args.seed),
            space,
            devices,
            slots: slot_list,
            cpus,
            cpu_count,
            park: park::address(),
            tally: Tally::default(),
            dirty: false,
            op: 0,
            verbose_from: info
                .bootargs
                .and_then(|a| test_guests::bootargs::value(a, "verbose"))
                .and_then(test_guests::fuzz::parse_number)
                .unwrap_or(u64::MAX),
        };

        let progress = (args.ops / 4).max(1);
        let start = timer::counter();
        skip_faults(true);
        for done in 1..=args.ops {
            fuzzer.op = done;
            fuzzer.step();
            if done % progress == 0 && done < args.ops {
                fuzzer.line(format_args!(
                    "fuzz: seed {}: {done}/{} ops, {} faulted back",
                    args.seed,
                    args.ops,
                    fuzzer.tally.faults()
                ));
            }
        }
        skip_faults(false);
        let ms = timer::ms_from_ticks(timer::frequency(), timer::counter() - start);
        let tally = fuzzer.tally;
        fuzzer.line(format_args!("{}", Summary { seed: args.seed, tally: &tally, ms }));
        psci::system_off()
    }

    /// Reports a failure to start and powers off.
    fn fail(what: fmt::Arguments<'_>) -> ! {
        println!("fuzz: FAIL {what}");
        psci::system_off()
    }

    impl Fuzzer {
        /// Prints a line of its own, on a line of its own.
        fn line(&mut self, what: fmt::Arguments<'_>) {
            if core::mem::take(&mut self.dirty) {
                println!();
            }
            println!("{what}");
        }

        /// Says what the current operation does, from operation `verbose=N` on.
        fn say(&mut self, what: fmt::Arguments<'_>) {
            if self.op >= self.verbose_from {
                let op = self.op;
                self.line(format_args!("fuzz: op {op}: {what}"));
            }
        }

        /// One operation of a random kind.
        fn step(&mut self) {
            let kind = Kind::ALL[self.rng.weighted(&Kind::WEIGHTS)];
            let before = skipped_faults();
            match kind {
                Kind::Virtio => self.virtio(),
                Kind::Chain => self.chain(),
                Kind::Gic => {
                    let a = regs::gic_access(&mut self.rng, self.cpu_count as u64);
                    self.access(a);
                }
                Kind::Uart => {
                    let a = regs::uart_access(&mut self.rng);
                    self.dirty |= a.write.is_some();
                    self.access(a);
                }
                Kind::Psci => self.psci(),
            }
            let after = skipped_faults();
            let (aborts, undefined) =
                (after.data_aborts - before.data_aborts, after.undefined - before.undefined);
            self.tally.data_aborts += aborts;
            self.tally.undefined += undefined;
            self.tally.record(kind, aborts + undefined);
        }

        /// Makes one access; a fault comes back as a skipped instruction.
        fn access(&mut self, a: Access) -> u64 {
            self.say(format_args!("{a:x?}"));
            match a.write {
                Some(value) => {
                    probe::store_outside(self.space.ram(), a.addr, a.width, value);
                    0
                }
                None => probe::load(a.addr, a.width),
            }
        }

        fn read32(&mut self, base: u64, offset: u64) -> u64 {
            self.access(Access { addr: base + offset, width: Width::B4, write: None })
        }

        fn write32(&mut self, base: u64, offset: u64, value: u64) {
            self.access(Access { addr: base + offset, width: Width::B4, write: Some(value) });
        }

        /// A register access at a virtio slot.
        fn virtio(&mut self) {
            let count = self.devices.iter().flatten().count();
            let target = regs::virtio_target(&mut self.rng, &self.slots[..count]);
            let a = regs::virtio_access(&mut self.rng, &self.space, target);
            if let (VirtioTarget::Device { index, .. }, Some(_)) = (target, a.write) {
                if let Some(d) = self.devices[index].as_mut() {
                    // The device may not be as a chain operation left it.
                    d.session = None;
                    self.dirty |= d.kind == DeviceKind::Console;
                }
            }
            self.access(a);
        }

        /// A PSCI or SMCCC call.
        fn psci(&mut self) {
            let ctx = Context { cpus: &self.cpus[..self.cpu_count], park: self.park, space: &self.space };
            let call = calls::generate(&mut self.rng, &ctx);
            self.say(format_args!("{call:x?}"));
            let [x0, x1, x2, x3] = call.x;
            let ret = match call.via {
                Via::Hvc => smccc::hvc(x0, x1, x2, x3),
                Via::Smc => smccc::smc(x0, x1, x2, x3),
                Via::HvcImm => probe::hvc_imm_0x1234(x0),
            };
            if call.via != Via::HvcImm && calls::started_a_cpu(&call.x, ret) {
                self.tally.cpus_started += 1;
            }
        }

        /// Descriptor chains on a live queue of a virtio-blk or virtio-console.
        fn chain(&mut self) {
            let mut chainable = [0usize; MAX_DEVICES];
            let mut n = 0;
            for (i, d) in self.devices.iter().enumerate() {
                if d.is_some_and(|d| d.kind != DeviceKind::Other) {
                    chainable[n] = i;
                    n += 1;
                }
            }
            if n == 0 {
                return self.virtio();
            }
            let index = self.rng.pick(&chainable[..n]);
            let Some(mut device) = self.devices[index] else { return };
            let (queue, traffic) = match device.kind {
                DeviceKind::Blk => (0, Traffic::Blk { capacity: device.capacity }),
                _ if self.rng.coin() => (1, Traffic::ConsoleTx),
                _ => (0, Traffic::ConsoleRx),
            };
            self.dirty |= device.kind == DeviceKind::Console;
            let fresh = device.session.filter(|q| q.index == queue && q.avail_idx < AVAIL_IDX_LIMIT);
            let live = match fresh {
                Some(q) => Some(q),
                None => {
                    self.tally.setups += 1;
                    match self.setup(&mut device, index, queue) {
                        Setup::Live(q) => Some(q),
                        Setup::Refused => {
                            // The device is not live or the queue not ready: the
                            // notify must change nothing.
                            if self.rng.coin() {
                                self.write32(device.base, reg::QUEUE_NOTIFY, u64::from(queue));
                            }
                            None
                        }
                        Setup::Unusable => None,
                    }
                }
            };
            device.session = None;
            if let Some(mut q) = live {
                let published = chain::build(&mut self.rng, &self.space, index, q, traffic, &mut ram::Ram);
                self.say(format_args!("{q:x?} {traffic:?}: {published:x?}"));
                fence(Ordering::SeqCst);
                // Mostly the queue the chains are on; now and then one it doesn't have.
                let notify = if self.rng.chance(15, 16) {
                    u64::from(queue)
                } else {
                    u64::from(device.kind.queues()) + self.rng.below(4)
                };
                self.write32(device.base, reg::QUEUE_NOTIFY, notify);
                let status = self.read32(device.base, reg::STATUS);
                if status & DEVICE_NEEDS_RESET != 0 {
                    self.tally.needs_reset += 1;
                } else if status & (DRIVER_OK | FAILED) == DRIVER_OK && notify == u64::from(queue) {
                    q.avail_idx = published.idx;
                    device.session = Some(q);
                }
            }
            // Acknowledge what the device raised, or something else.
            if self.rng.coin() {
                let pending = self.read32(device.base, INTERRUPT_STATUS);
                let ack = if self.rng.chance(7, 8) { pending } else { u64::from(self.rng.next_u32()) };
                self.write32(device.base, reg::INTERRUPT_ACK, ack);
            }
            self.devices[index] = Some(device);
        }

        /// Resets `device` and makes queue `queue` live at a fresh layout (or, now and
        /// then, at one it must refuse), negotiating random features.
        fn setup(&mut self, device: &mut Device, index: usize, queue: u32) -> Setup {
            let base = device.base;
            self.write32(base, reg::STATUS, 0);
            self.write32(base, reg::STATUS, ACKNOWLEDGE);
            self.write32(base, reg::STATUS, ACKNOWLEDGE | DRIVER);
            self.write32(base, reg::DEVICE_FEATURES_SEL, 0);
            let low = self.read32(base, DEVICE_FEATURES);
            self.write32(base, reg::DEVICE_FEATURES_SEL, 1);
            let offered = low | self.read32(base, DEVICE_FEATURES) << 32;
            let mut wanted = offered & (self.rng.next_u64() | VERSION_1);
            if self.rng.chance(1, 16) {
                wanted |= 1 << self.rng.below(64);
            }
            if self.rng.chance(1, 32) {
                wanted &= !VERSION_1;
            }
            self.write32(base, reg::DRIVER_FEATURES_SEL, 0);
            self.write32(base, reg::DRIVER_FEATURES, wanted & 0xffff_ffff);
            self.write32(base, reg::DRIVER_FEATURES_SEL, 1);
            self.write32(base, reg::DRIVER_FEATURES, wanted >> 32);
            self.write32(base, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
            if self.read32(base, reg::STATUS) & FEATURES_OK == 0 {
                return Setup::Refused;
            }

            self.write32(base, reg::QUEUE_SEL, u64::from(queue));
            let max = self.read32(base, QUEUE_NUM_MAX).min(u64::from(MAX_QUEUE));
            if max == 0 {
                return Setup::Refused;
            }
            let choice = match self.rng.below(16) {
                0 => self.rng.pick(&[0, 3, max + 1, 2 * max, u64::from(u32::MAX)]),
                _ => 1 << self.rng.below(u64::from(max.ilog2()) + 1),
            };
            self.write32(base, reg::QUEUE_NUM, choice);
            let size = self.read32(base, reg::QUEUE_NUM);
            if size == 0 || size > u64::from(MAX_QUEUE) || !size.is_power_of_two() {
                self.write32(base, reg::STATUS, 0);
                return Setup::Unusable;
            }
            let size = size as u16;
            let bad = self.rng.chance(1, 12);
            let (desc, avail, used) = if bad {
                chain::bad_layout(&mut self.rng, &self.space, index, size)
            } else {
                chain::layout(&mut self.rng, &self.space, index, size)
            };
            for (offset, addr) in
                [(reg::QUEUE_DESC_LOW, desc), (reg::QUEUE_DRIVER_LOW, avail), (reg::QUEUE_DEVICE_LOW, used)]
            {
                self.write32(base, offset, addr & 0xffff_ffff);
                self.write32(base, offset + 4, addr >> 32);
            }
            self.write32(base, reg::QUEUE_READY, 1);
            let ready = self.read32(base, reg::QUEUE_READY) & 1 != 0;
            self.write32(base, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
            let status = self.read32(base, reg::STATUS);
            let live = status & (DRIVER_OK | DEVICE_NEEDS_RESET | FAILED) == DRIVER_OK;
            if bad {
                if ready && live {
                    // It took rings it should have refused: don't let it walk them.
                    if !core::mem::replace(&mut device.said_bad_layout, true) {
                        self.line(format_args!(
                            "fuzz: the device at {base:#x} took queue {queue} at desc {desc:#x} avail {avail:#x} used {used:#x} (size {size})"
                        ));
                    }
                    self.write32(base, reg::STATUS, 0);
                    return Setup::Unusable;
                }
                return Setup::Refused;
            }
            if !(ready && live) {
                return Setup::Refused;
            }
            Setup::Live(Queue {
                index: queue,
                size,
                desc,
                avail,
                used,
                indirect: wanted & RING_INDIRECT_DESC != 0,
                avail_idx: 0,
            })
        }
    }

    /// The guest's RAM as the chain builder writes it.
    mod ram {
        #![allow(unsafe_code)]

        use test_guests::fuzz::chain::Memory;

        /// Plain stores into RAM the fuzzer lent its devices.
        pub(super) struct Ram;

        impl Memory for Ram {
            fn write(&mut self, addr: u64, bytes: &[u8]) {
                let aligned = addr.is_multiple_of(8) && bytes.len().is_multiple_of(8);
                if aligned {
                    for (i, word) in bytes.chunks_exact(8).enumerate() {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(word);
                        // SAFETY: the builder writes only RAM that `Space` lent a
                        // device: above the image, away from the DTB and the initrd,
                        // used by nothing else of this program; the MMU is off, so the
                        // address is the RAM's. Aligned, as `aligned` checked.
                        unsafe {
                            core::ptr::write_volatile(
                                (addr as usize + 8 * i) as *mut u64,
                                u64::from_le_bytes(w),
                            )
                        };
                    }
                } else {
                    for (i, &b) in bytes.iter().enumerate() {
                        // SAFETY: as above, one byte at a time.
                        unsafe { core::ptr::write_volatile((addr as usize + i) as *mut u8, b) };
                    }
                }
            }
        }
    }

    /// Where a CPU started by CPU_ON goes: it turns itself off again at once.
    mod park {
        #![allow(unsafe_code)]

        use core::arch::global_asm;

        // Entered at EL1 with the MMU off, interrupts masked and x0 = the context id
        // (ignored): PSCI CPU_OFF through `hvc` (Sluice's conduit), and if that
        // returns, wait for ever.
        global_asm!(
            r#"
            .section .text.fuzz_park, "ax"
            .balign 4
            .global fuzz_park
        fuzz_park:
            movz    x0, #0x0002
            movk    x0, #0x8400, lsl #16
            hvc     #0
        1:  wfe
            b       1b
            "#
        );

        extern "C" {
            fn fuzz_park();
        }

        /// The routine's address.
        pub(super) fn address() -> u64 {
            fuzz_park as *const () as u64
        }
    }
}
