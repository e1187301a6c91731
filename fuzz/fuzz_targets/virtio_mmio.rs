//! The virtio-mmio transport with a blk and a console device behind it, over guest
//! RAM made of three guarded chunks (two contiguous, one after a hole).
//!
//! The input is a sequence of what a guest can do: register reads and writes at any
//! offset of the slot, width and value; the usual driver steps (negotiation, queue
//! setup) with fuzzed values; descriptors, available-ring entries, blk request
//! headers and raw bytes written into RAM; notifications; and, for the console,
//! host input. Each device is modern or legacy, the disk read-only or not.
//!
//! Invariants: nothing panics; no guard byte around the RAM or the disk changes
//! (nor does AddressSanitizer see an access past them); the identification
//! registers never change; the status register holds a state the driver-status
//! machine can reach, and reads what `status()` says; InterruptStatus holds only
//! the two defined bits and the interrupt line follows it; a device writes guest
//! RAM only in the used ring of one of its ready queues or in a buffer that a
//! device-writable descriptor of one of them names; a read-only disk never changes;
//! a blk request made the way a driver makes one, once completed, did what virtio
//! 1.2 §5.2.6 and `blk.rs` say (status byte, `used.len`, the data read or written,
//! nothing else on the disk changed).
#![no_main]

use std::sync::OnceLock;

use hypervisor::console::ConsoleOutput;
use hypervisor::devices::virtio::blk::Blk;
use hypervisor::devices::virtio::console::Console;
use hypervisor::devices::virtio::mmio::reg;
use hypervisor::devices::virtio::{status, VirtioMmio, MAX_QUEUE_SIZE};
use hypervisor::devices::{AccessWidth, MmioDevice};
use hypervisor::mm::guest_memory::GuestMemory;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use platform::qemu_virt::VIRTIO_MMIO_SLOT_SIZE;
use sluice_fuzz::ram::GuardedRam;
use sluice_fuzz::Width;

const RAM_BASE: u64 = platform::qemu_virt::RAM_BASE;
/// Guest RAM: 8 KiB and 4 KiB contiguous in guest-physical space (separate host
/// allocations), a 4 KiB hole, 4 KiB more. Small, so that fuzzed addresses land
/// on rings and buffers often; a queue of 256 entries still fits.
const RAM_LAYOUT: [(u64, usize); 3] =
    [(RAM_BASE, 0x2000), (RAM_BASE + 0x2000, 0x1000), (RAM_BASE + 0x4000, 0x1000)];
/// From the first byte of RAM to the last.
const RAM_SPAN: u64 = 0x5000;
/// The disk: 16 sectors.
const DISK_BYTES: usize = 16 * 512;

/// Where the request ops put their buffers: away from the queues of `BringUp`
/// (blk at +0, console at +0x1000 and +0x4000, each under 0x210 bytes).
mod scratch {
    use super::RAM_BASE;
    /// A blk request header.
    pub const HEADER: u64 = RAM_BASE + 0x800;
    /// An indirect table.
    pub const TABLE: u64 = RAM_BASE + 0xa00;
    /// Up to 2 KiB of blk data, across the boundary of the first two chunks.
    pub const DATA: u64 = RAM_BASE + 0x1c00;
    /// A blk status byte.
    pub const STATUS: u64 = RAM_BASE + 0x2c00;
    /// Console buffers (up to 1 KiB).
    pub const CONSOLE: u64 = RAM_BASE + 0x4400;
}

/// Descriptor flags (§2.7.5).
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// A guest-physical address: mostly in or just around RAM, sometimes anywhere.
#[derive(Debug, Clone, Copy)]
struct Addr(u64);

impl<'a> Arbitrary<'a> for Addr {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw = u32::arbitrary(u)?;
        Ok(Self(if raw >> 28 == 0xf {
            u64::from(raw) << 32 | u64::from(u32::arbitrary(u)?)
        } else {
            RAM_BASE - 0x40 + u64::from(raw) % (RAM_SPAN + 0x80)
        }))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (4, Some(8))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum Dev {
    Blk,
    Console,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Read {
        dev: Dev,
        offset: u16,
        width: Width,
    },
    Write {
        dev: Dev,
        offset: u16,
        width: Width,
        value: u64,
    },
    /// Reset, ACKNOWLEDGE, DRIVER, the driver's features, then FEATURES_OK (modern)
    /// or GuestPageSize 4096 (legacy). With `offered`, the features are cut to what
    /// the device offers (and VERSION_1 added).
    Negotiate {
        dev: Dev,
        features: u64,
        offered: bool,
    },
    Status {
        dev: Dev,
        value: u8,
    },
    /// DRIVER_OK added to the status the device has.
    DriverOk {
        dev: Dev,
    },
    /// A driver's whole bring-up: `Negotiate` with the offered features, every
    /// queue set up with 2^size entries (blk's at the start of RAM, console's one
    /// page on and in the last chunk), DRIVER_OK.
    BringUp {
        dev: Dev,
        features: u64,
        size: u8,
    },
    /// A blk request as a driver makes one, then the notify: a header (type from
    /// the spec's list or any, sector), `sectors` sectors of data (read or written
    /// as the type says, in one or two buffers, across a chunk boundary; for
    /// DISCARD and WRITE_ZEROES one segment), a status byte; the chain direct or in
    /// an indirect table.
    BlkRequest {
        kind: u8,
        sector: u8,
        sectors: u8,
        flags: u8,
        split: bool,
        indirect: bool,
    },
    /// A console transmit of `len` bytes, then the notify.
    ConsoleTx {
        len: u16,
    },
    /// The work a notify's budget cut short goes on for one more budget (as the
    /// VM's next exit does).
    Backlog {
        dev: Dev,
    },
    /// `count` receive buffers of `len` bytes posted, then the notify.
    ConsoleRx {
        len: u16,
        count: u8,
    },
    /// QueueSel, QueueNum (2^size), the ring addresses and QueueReady (modern), or
    /// QueueAlign (2^align) and QueuePFN from `desc` (legacy), as a driver does.
    SetupQueue {
        dev: Dev,
        queue: u8,
        size: u8,
        align: u8,
        exact: bool,
        desc: Addr,
        avail: Addr,
        used: Addr,
    },
    Notify {
        dev: Dev,
        queue: u8,
    },
    /// Descriptor `index` of a queue set up with `SetupQueue`.
    Desc {
        dev: Dev,
        queue: u8,
        index: u16,
        addr: Addr,
        len: u16,
        flags: u8,
        next: u16,
    },
    /// A descriptor at `table + 16 * index` (an indirect table).
    TableDesc {
        table: Addr,
        index: u8,
        addr: Addr,
        len: u16,
        flags: u8,
        next: u16,
    },
    /// Buffers as one chain in the next descriptors, made available.
    Chain {
        dev: Dev,
        queue: u8,
        buffers: Vec<(Addr, u16, bool)>,
    },
    /// `head` in the next available-ring entry, and the index moved on.
    Publish {
        dev: Dev,
        queue: u8,
        head: u16,
    },
    /// The available ring's index, flags or `used_event`, set to `value`.
    AvailField {
        dev: Dev,
        queue: u8,
        field: u8,
        value: u16,
    },
    /// A blk request header (type, reserved, sector) at `at`.
    BlkHeader {
        at: Addr,
        kind: u8,
        sector: u16,
    },
    /// Any bytes anywhere in RAM.
    Ram {
        at: Addr,
        bytes: Vec<u8>,
    },
    /// Console input from the host.
    Input {
        bytes: Vec<u8>,
    },
    /// InterruptStatus read and acknowledged, as an interrupt handler does.
    Acknowledge {
        dev: Dev,
    },
    ConfigChanged {
        dev: Dev,
    },
    Reset {
        dev: Dev,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    blk_legacy: bool,
    console_legacy: bool,
    read_only: bool,
    ops: Vec<Op>,
}

/// A blk request the harness made, to check what came of it.
#[derive(Debug)]
struct BlkRequest {
    kind: u32,
    sector: u64,
    sectors: u16,
    flags: u32,
    data_len: u16,
}

/// The disk's contents at the start of every run: each byte different from its
/// neighbours and from the same byte of the next sectors.
fn disk_pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| (0..DISK_BYTES).map(|i| (i * 7 + i / 512 * 13 + 1) as u8).collect())
}

/// Console output, thrown away.
struct Counter;

impl ConsoleOutput for Counter {
    fn write(&mut self, _bytes: &[u8]) {}
}

/// The driver's idea of one queue it set up.
#[derive(Debug, Clone, Copy, Default)]
struct DriverQueue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    /// Set up by `BringUp`, where the request ops' buffers don't overlap it.
    standard: bool,
}

/// One device and what the harness knows of it.
struct Device {
    mmio: VirtioMmio,
    legacy: bool,
    device_id: u32,
    /// QueueSel as the device has it (the harness restores it after looking at
    /// other queues).
    queue_sel: u32,
    queues: [DriverQueue; 4],
}

impl Device {
    fn read(&mut self, offset: u64) -> u32 {
        self.mmio.read(offset, AccessWidth::Word) as u32
    }

    /// Every write goes through here, so `queue_sel` follows the device's.
    fn write(&mut self, offset: u64, width: AccessWidth, value: u64) {
        self.mmio.write(offset, width, value);
        if width == AccessWidth::Word && offset == reg::QUEUE_SEL {
            self.queue_sel = value as u32;
        }
        if width == AccessWidth::Word && offset == reg::STATUS && value as u32 == 0 {
            self.queue_sel = 0;
        }
    }

    fn write32(&mut self, offset: u64, value: u32) {
        self.write(offset, AccessWidth::Word, u64::from(value));
    }
}

struct Harness {
    ram: &'static GuardedRam,
    disk: &'static GuardedRam,
    read_only: bool,
    mem: GuestMemory,
    blk: Device,
    console: Device,
    /// RAM as of the last device operation (empty: to be taken again).
    before: Vec<u8>,
    after: Vec<u8>,
}

fn statics() -> (&'static GuardedRam, &'static GuardedRam) {
    static RAM: OnceLock<(&'static GuardedRam, &'static GuardedRam)> = OnceLock::new();
    *RAM.get_or_init(|| (GuardedRam::leak(&RAM_LAYOUT), GuardedRam::leak(&[(0, DISK_BYTES)])))
}

fuzz_target!(|input: Input| {
    sluice_fuzz::init_logging();
    let (ram, disk) = statics();
    ram.clear();
    disk.clear();
    let blk = Blk::new(disk.memory(), input.read_only, b"fuzz-disk");
    let console = Console::new(Box::new(Counter));
    let device = |mmio: VirtioMmio, legacy, device_id| Device {
        mmio,
        legacy,
        device_id,
        queue_sel: 0,
        queues: [DriverQueue::default(); 4],
    };
    disk.memory().write(0, disk_pattern()).expect("the disk is that large");
    let mut h = Harness {
        ram,
        disk,
        read_only: input.read_only,
        mem: ram.memory(),
        blk: device(VirtioMmio::new(Box::new(blk), ram.memory(), input.blk_legacy), input.blk_legacy, 2),
        console: device(
            VirtioMmio::new(Box::new(console), ram.memory(), input.console_legacy),
            input.console_legacy,
            3,
        ),
        before: Vec::new(),
        after: Vec::new(),
    };
    for op in &input.ops {
        h.apply(op);
        for dev in [Dev::Blk, Dev::Console] {
            check_registers(h.device(dev));
        }
        ram.check_guards();
        disk.check_guards();
    }
    if input.read_only {
        let mut image = Vec::new();
        disk.snapshot(&mut image);
        assert!(image == disk_pattern(), "a read-only disk was written");
    }
});

impl Harness {
    fn device(&mut self, dev: Dev) -> &mut Device {
        match dev {
            Dev::Blk => &mut self.blk,
            Dev::Console => &mut self.console,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Read { dev, offset, width } => {
                let offset = u64::from(*offset) % VIRTIO_MMIO_SLOT_SIZE;
                let width = width.get();
                let value = self.device_op(*dev, |d| d.mmio.read(offset, width));
                assert!(value <= width.mask(), "read {value:#x} as {width:?} at {offset:#x}");
            }
            Op::Write { dev, offset, width, value } => {
                let offset = u64::from(*offset) % VIRTIO_MMIO_SLOT_SIZE;
                self.device_op(*dev, |d| d.write(offset, width.get(), *value));
            }
            Op::Negotiate { dev, features, offered } => {
                self.device_op(*dev, |d| negotiate(d, *features, *offered))
            }
            Op::Status { dev, value } => self.device_op(*dev, |d| d.write32(reg::STATUS, u32::from(*value))),
            Op::BringUp { dev, features, size } => {
                let size = 1u32 << (size % 5);
                let bases: &[u64] = match dev {
                    Dev::Blk => &[RAM_BASE],
                    Dev::Console => &[RAM_BASE + 0x1000, RAM_BASE + 0x4000],
                };
                self.device_op(*dev, |d| negotiate(d, *features, true));
                for (queue, &base) in bases.iter().enumerate() {
                    let (desc, avail, used) = (Addr(base), Addr(base + 0x100), Addr(base + 0x180));
                    let (avail, used) =
                        self.device_op(*dev, |d| setup_queue(d, queue as u32, size, 16, desc, avail, used));
                    self.guest_write(|m| m.zero(avail, 4).and(m.zero(used, 4)));
                    self.device(*dev).queues[queue].standard = true;
                }
                self.device_op(*dev, |d| {
                    let value = d.read(reg::STATUS) | u32::from(status::DRIVER_OK);
                    d.write32(reg::STATUS, value);
                    assert!(
                        d.mmio.status() & status::DRIVER_OK != 0,
                        "the device refused DRIVER_OK after a bring-up"
                    );
                });
            }
            Op::BlkRequest { kind, sector, sectors, flags, split, indirect } => {
                self.blk_request(*kind, *sector, *sectors, *flags, *split, *indirect)
            }
            Op::ConsoleTx { len } => {
                let len = len % 0x400;
                self.chain(Dev::Console, 1, &[(Addr(scratch::CONSOLE), len, false)]);
                self.device_op(Dev::Console, |d| d.write32(reg::QUEUE_NOTIFY, 1));
            }
            Op::ConsoleRx { len, count } => {
                let len = len % 0x100;
                for i in 0..(count % 4) + 1 {
                    let at = scratch::CONSOLE + u64::from(i) * 0x100;
                    self.chain(Dev::Console, 0, &[(Addr(at), len, true)]);
                }
                self.device_op(Dev::Console, |d| d.write32(reg::QUEUE_NOTIFY, 0));
            }
            Op::DriverOk { dev } => self.device_op(*dev, |d| {
                let value = d.read(reg::STATUS) | u32::from(status::DRIVER_OK);
                d.write32(reg::STATUS, value);
            }),
            Op::SetupQueue { dev, queue, size, align, exact, desc, avail, used } => {
                let size = 1u32 << (size % 10);
                // Aligned as the spec asks, unless the input says otherwise.
                let (desc, avail, used) = if *exact {
                    (*desc, *avail, *used)
                } else {
                    (Addr(desc.0 & !15), Addr(avail.0 & !1), Addr(used.0 & !3))
                };
                let align = 1u32 << (align % 13);
                let (avail, used) = self.device_op(*dev, |d| {
                    setup_queue(d, u32::from(*queue % 4), size, align, desc, avail, used)
                });
                // The driver zeroes the rings' flags and indices (after the fact here,
                // so that only the device's own writes happen inside `device_op`).
                self.guest_write(|m| m.zero(avail, 4).and(m.zero(used, 4)));
            }
            Op::Notify { dev, queue } => {
                self.device_op(*dev, |d| d.write32(reg::QUEUE_NOTIFY, u32::from(*queue % 4)))
            }
            Op::Desc { dev, queue, index, addr, len, flags, next } => {
                let q = self.device(*dev).queues[usize::from(*queue % 4)];
                let index = if q.size == 0 { *index } else { *index % q.size };
                self.write_desc(
                    q.desc.wrapping_add(16 * u64::from(index)),
                    addr.0,
                    u32::from(*len),
                    u16::from(*flags),
                    *next,
                );
            }
            Op::TableDesc { table, index, addr, len, flags, next } => {
                self.write_desc(
                    table.0.wrapping_add(16 * u64::from(*index)),
                    addr.0,
                    u32::from(*len),
                    u16::from(*flags),
                    *next,
                );
            }
            Op::Chain { dev, queue, buffers } => {
                self.chain(*dev, usize::from(*queue % 4), buffers);
            }
            Op::Publish { dev, queue, head } => {
                let q = &mut self.device(*dev).queues[usize::from(*queue % 4)];
                let slot = u64::from(q.avail_idx % q.size.max(1));
                q.avail_idx = q.avail_idx.wrapping_add(1);
                let (avail, idx) = (q.avail, q.avail_idx);
                self.guest_write(|m| {
                    m.write_u16(avail.wrapping_add(4 + 2 * slot), *head)
                        .and(m.write_u16(avail.wrapping_add(2), idx))
                });
            }
            Op::AvailField { dev, queue, field, value } => {
                let q = &mut self.device(*dev).queues[usize::from(*queue % 4)];
                let at = match field % 3 {
                    0 => {
                        q.avail_idx = *value;
                        q.avail.wrapping_add(2)
                    }
                    1 => q.avail,
                    _ => q.avail.wrapping_add(4 + 2 * u64::from(q.size)),
                };
                self.guest_write(|m| m.write_u16(at, *value));
            }
            Op::BlkHeader { at, kind, sector } => {
                let kinds = [0u32, 1, 4, 8, 11, 13, u32::from(*kind)];
                let mut header = [0u8; 16];
                header[..4].copy_from_slice(&kinds[usize::from(*kind) % kinds.len()].to_le_bytes());
                header[8..].copy_from_slice(&u64::from(*sector % 24).to_le_bytes());
                self.guest_write(|m| m.write(at.0, &header));
            }
            Op::Ram { at, bytes } => {
                let bytes = &bytes[..bytes.len().min(64)];
                self.guest_write(|m| m.write(at.0, bytes));
            }
            Op::Backlog { dev } => self.device_op(*dev, |d| {
                let had = d.mmio.has_backlog();
                d.mmio.work_on_backlog();
                assert!(had || !d.mmio.has_backlog(), "a backlog out of nothing");
            }),
            Op::Input { bytes } => {
                let taken = self.device_op(Dev::Console, |d| d.mmio.input(bytes));
                assert!(taken <= bytes.len());
            }
            Op::Acknowledge { dev } => self.device_op(*dev, |d| {
                let isr = d.read(reg::INTERRUPT_STATUS);
                d.write32(reg::INTERRUPT_ACK, isr);
                assert_eq!(d.read(reg::INTERRUPT_STATUS), 0, "InterruptStatus after acknowledging it all");
                assert!(!d.mmio.interrupt_level());
            }),
            Op::ConfigChanged { dev } => self.device_op(*dev, |d| {
                let generation = d.read(0xfc);
                d.mmio.config_changed();
                assert!(d.mmio.interrupt_level(), "a configuration change without an interrupt");
                if !d.legacy {
                    assert_eq!(d.read(0xfc), generation.wrapping_add(1), "ConfigGeneration");
                }
            }),
            Op::Reset { dev } => self.device_op(*dev, |d| {
                d.mmio.reset();
                d.queue_sel = 0;
                assert_eq!((d.mmio.status(), d.mmio.interrupt_level()), (0, false), "after a reset");
            }),
        }
    }

    /// The guest writes its RAM (refused where it is no RAM, like a guest's store
    /// that faults).
    fn guest_write<E>(&mut self, write: impl FnOnce(&GuestMemory) -> Result<(), E>) {
        let _ = write(&self.mem);
        self.before.clear();
    }

    fn write_desc(&mut self, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        self.guest_write(|m| {
            m.write_u64(at, addr)?;
            m.write_u32(at.wrapping_add(8), len)?;
            m.write_u16(at.wrapping_add(12), flags)?;
            m.write_u16(at.wrapping_add(14), next)
        });
    }

    /// `buffers` as one chain in the queue's next free descriptors (round robin),
    /// made available.
    fn chain(&mut self, dev: Dev, queue: usize, buffers: &[(Addr, u16, bool)]) -> u16 {
        self.chain_flags(dev, queue, buffers, 0)
    }

    /// [`chain`](Self::chain) with `extra` flags on every descriptor.
    fn chain_flags(&mut self, dev: Dev, queue: usize, buffers: &[(Addr, u16, bool)], extra: u16) -> u16 {
        let q = self.device(dev).queues[queue];
        let size = q.size.max(1);
        let mut index = q.next_desc % size;
        let head = index;
        let buffers = &buffers[..buffers.len().min(usize::from(size))];
        for (i, &(addr, len, writable)) in buffers.iter().enumerate() {
            let next = (index + 1) % size;
            let flags =
                if i + 1 < buffers.len() { NEXT } else { 0 } | if writable { WRITE } else { 0 } | extra;
            self.write_desc(q.desc.wrapping_add(16 * u64::from(index)), addr.0, u32::from(len), flags, next);
            index = next;
        }
        let q = &mut self.device(dev).queues[queue];
        q.next_desc = index;
        let slot = u64::from(q.avail_idx % size);
        q.avail_idx = q.avail_idx.wrapping_add(1);
        let (avail, idx) = (q.avail, q.avail_idx);
        self.guest_write(|m| {
            m.write_u16(avail.wrapping_add(4 + 2 * slot), head).and(m.write_u16(avail.wrapping_add(2), idx))
        });
        head
    }

    fn blk_request(&mut self, kind: u8, sector: u8, sectors: u8, flags: u8, split: bool, indirect: bool) {
        const KINDS: [u32; 6] = [0, 1, 4, 8, 11, 13];
        let kind = KINDS.get(usize::from(kind)).copied().unwrap_or(u32::from(kind));
        let sector = u64::from(sector % 20);
        let sectors = u16::from(sectors % 5);
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        self.guest_write(|m| m.write(scratch::HEADER, &header));
        let data_len = if matches!(kind, 11 | 13) {
            // One DISCARD / WRITE_ZEROES segment: sector, sectors, flags.
            let mut segment = [0u8; 16];
            segment[..8].copy_from_slice(&sector.to_le_bytes());
            segment[8..12].copy_from_slice(&u32::from(sectors).to_le_bytes());
            segment[12..].copy_from_slice(&u32::from(flags & 3).to_le_bytes());
            self.guest_write(|m| m.write(scratch::DATA, &segment));
            16
        } else {
            sectors * 512
        };
        let data_writable = matches!(kind, 0 | 8);
        if data_writable {
            // Something the device must overwrite.
            self.guest_write(|m| m.write(scratch::DATA, &[0xee; 2048][..usize::from(data_len)]));
        }
        let mut buffers = vec![(Addr(scratch::HEADER), 16, false)];
        if data_len > 0 {
            if split {
                let first = data_len / 2;
                buffers.push((Addr(scratch::DATA), first, data_writable));
                buffers.push((Addr(scratch::DATA + u64::from(first)), data_len - first, data_writable));
            } else {
                buffers.push((Addr(scratch::DATA), data_len, data_writable));
            }
        }
        buffers.push((Addr(scratch::STATUS), 1, true));
        // A status the device must overwrite.
        self.guest_write(|m| m.write(scratch::STATUS, &[0xff]));
        // A queue smaller than the chain gets only its first descriptors.
        let whole = indirect || buffers.len() <= usize::from(self.blk.queues[0].size);
        let head = if indirect {
            for (i, &(addr, len, writable)) in buffers.iter().enumerate() {
                let last = i + 1 == buffers.len();
                let flags = if last { 0 } else { NEXT } | if writable { WRITE } else { 0 };
                let at = scratch::TABLE + 16 * i as u64;
                self.write_desc(at, addr.0, u32::from(len), flags, i as u16 + 1);
            }
            let table = (Addr(scratch::TABLE), 16 * buffers.len() as u16, false);
            self.chain_flags(Dev::Blk, 0, &[table], INDIRECT)
        } else {
            self.chain(Dev::Blk, 0, &buffers)
        };
        let q = self.blk.queues[0];
        let used_idx = |mem: &GuestMemory| mem.read_u16(q.used.wrapping_add(2)).ok();
        let used_before = used_idx(&self.mem);
        let (mut disk_before, mut data) = (Vec::new(), vec![0; usize::from(data_len)]);
        self.disk.snapshot(&mut disk_before);
        let _ = self.mem.read(scratch::DATA, &mut data);
        self.device_op(Dev::Blk, |d| d.write32(reg::QUEUE_NOTIFY, 0));

        // What the request did, when it is sure the device took this very chain: the
        // queue is the bring-up's, the device is live, and exactly one used element
        // came back, for this head.
        let live = self.blk.mmio.status() & (status::DRIVER_OK | status::FAILED | status::DEVICE_NEEDS_RESET)
            == status::DRIVER_OK;
        let Some(before) = used_before.filter(|_| q.standard && live && whole) else { return };
        if used_idx(&self.mem) != Some(before.wrapping_add(1)) {
            return;
        }
        let elem = q.used + 4 + 8 * u64::from(before % q.size.max(1));
        let (Ok(id), Ok(len)) = (self.mem.read_u32(elem), self.mem.read_u32(elem + 4)) else { return };
        if id != u32::from(head) {
            return;
        }
        let request = BlkRequest { kind, sector, sectors, flags: u32::from(flags & 3), data_len };
        self.check_blk_request(&request, &disk_before, &data, len);
    }

    /// A completed blk request against virtio 1.2 §5.2.6 and the choices
    /// documented in `devices/virtio/blk.rs`.
    fn check_blk_request(&self, r: &BlkRequest, disk_before: &[u8], data_before: &[u8], used_len: u32) {
        let mut disk = Vec::new();
        self.disk.snapshot(&mut disk);
        let mut data = vec![0; usize::from(r.data_len)];
        let _ = self.mem.read(scratch::DATA, &mut data);
        let mut status = [0u8; 1];
        self.mem.read(scratch::STATUS, &mut status).expect("the status byte is RAM");
        let capacity = DISK_BYTES as u64;
        let offset = r.sector * 512;
        let bytes = u64::from(r.sectors) * 512;
        let in_range = offset + bytes <= capacity;
        let range = offset.min(capacity) as usize..(offset + bytes).min(capacity) as usize;
        let (expected_status, expected_len): (u8, u32) = match r.kind {
            0 if in_range => {
                assert_eq!(&data[..], &disk_before[range.clone()], "IN: the data is not the disk's ({r:?})");
                (0, u32::from(r.data_len) + 1)
            }
            0 => (1, 1),
            1 if in_range && !self.read_only => {
                assert_eq!(&disk[range.clone()], data_before, "OUT: the disk does not hold the data ({r:?})");
                (0, 1)
            }
            1 => (1, 1),
            4 => (0, 1),
            8 => {
                let n = usize::from(r.data_len).min(20);
                let mut serial = [0u8; 20];
                serial[..9].copy_from_slice(b"fuzz-disk");
                assert_eq!(&data[..n], &serial[..n], "GET_ID ({r:?})");
                (0, n as u32 + 1)
            }
            11 | 13 => {
                let allowed = if r.kind == 13 { 1 } else { 0 };
                if r.flags & !allowed != 0 {
                    (2, 1)
                } else if self.read_only || !in_range {
                    (1, 1)
                } else {
                    let zeroed = disk[range.clone()].iter().all(|&b| b == 0);
                    assert!(zeroed, "DISCARD/WRITE_ZEROES left data ({r:?})");
                    (0, 1)
                }
            }
            _ => (2, 1),
        };
        assert_eq!(status[0], expected_status, "the status of {r:?}");
        assert_eq!(used_len, expected_len, "used.len of {r:?}");
        // Nothing but what the request names changed on the disk.
        let touched = match (r.kind, expected_status) {
            (1 | 11 | 13, 0) => range,
            _ => 0..0,
        };
        if disk_before[..touched.start] != disk[..touched.start]
            || disk_before[touched.end..] != disk[touched.end..]
        {
            panic!("{r:?} changed the disk outside {touched:?}");
        }
    }

    /// Runs `op` on a device and checks what it wrote into guest RAM.
    fn device_op<R>(&mut self, dev: Dev, op: impl FnOnce(&mut Device) -> R) -> R {
        if self.before.is_empty() {
            self.ram.snapshot(&mut self.before);
        }
        let result = op(self.device(dev));
        self.ram.snapshot(&mut self.after);
        if self.after != self.before {
            let (ram, before, after) =
                (self.ram, std::mem::take(&mut self.before), std::mem::take(&mut self.after));
            check_writes(ram, self.device(dev), &before, &after);
            (self.before, self.after) = (before, after);
        }
        std::mem::swap(&mut self.before, &mut self.after);
        result
    }
}

/// The status register, the interrupt state and the identification registers.
fn check_registers(d: &mut Device) {
    assert_eq!(d.read(reg::MAGIC), 0x7472_6976);
    assert_eq!(d.read(reg::VERSION), if d.legacy { 1 } else { 2 });
    assert_eq!(d.read(reg::DEVICE_ID), d.device_id);
    assert_eq!(d.read(reg::VENDOR_ID), u32::from_le_bytes(*b"SLCE"));
    let value = d.read(reg::STATUS);
    assert_eq!(value, u32::from(d.mmio.status()), "the status register and status() disagree");
    let (ack, drv, fok, dok) = (status::ACKNOWLEDGE, status::DRIVER, status::FEATURES_OK, status::DRIVER_OK);
    let driver_bits = value as u8 & !(status::FAILED | status::DEVICE_NEEDS_RESET);
    let mut reachable = vec![0, ack, ack | drv, ack | drv | fok, ack | drv | fok | dok];
    if d.legacy {
        reachable.push(ack | drv | dok);
    }
    assert!(reachable.contains(&driver_bits), "status {value:#x} is no state of the driver-status machine");
    let isr = d.read(reg::INTERRUPT_STATUS);
    assert_eq!(isr & !3, 0, "InterruptStatus {isr:#x}");
    assert_eq!(
        d.mmio.interrupt_level(),
        isr != 0,
        "the interrupt line does not follow InterruptStatus {isr:#x}"
    );
}

fn negotiate(d: &mut Device, features: u64, offered: bool) {
    let features = if offered {
        d.write32(reg::DEVICE_FEATURES_SEL, 0);
        let low = d.read(reg::DEVICE_FEATURES);
        d.write32(reg::DEVICE_FEATURES_SEL, 1);
        let high = d.read(reg::DEVICE_FEATURES);
        let all = u64::from(low) | u64::from(high) << 32;
        assert_eq!(all >> 32 & 1, u64::from(!d.legacy), "VERSION_1 is offered by modern devices only");
        features & all | all & 1 << 32
    } else {
        features
    };
    let (ack, drv) = (u32::from(status::ACKNOWLEDGE), u32::from(status::DRIVER));
    d.write32(reg::STATUS, 0);
    d.write32(reg::STATUS, ack);
    d.write32(reg::STATUS, ack | drv);
    d.write32(reg::DRIVER_FEATURES_SEL, 0);
    d.write32(reg::DRIVER_FEATURES, features as u32);
    if d.legacy {
        d.write32(reg::GUEST_PAGE_SIZE, 4096);
    } else {
        d.write32(reg::DRIVER_FEATURES_SEL, 1);
        d.write32(reg::DRIVER_FEATURES, (features >> 32) as u32);
        d.write32(reg::STATUS, ack | drv | u32::from(status::FEATURES_OK));
        if offered {
            assert_ne!(
                d.read(reg::STATUS) & u32::from(status::FEATURES_OK),
                0,
                "offered features {features:#x} refused"
            );
        }
    }
}

/// Sets queue `queue` up; returns where its available and used rings are.
fn setup_queue(
    d: &mut Device,
    queue: u32,
    size: u32,
    align: u32,
    desc: Addr,
    avail: Addr,
    used: Addr,
) -> (u64, u64) {
    d.write32(reg::QUEUE_SEL, queue);
    d.write32(reg::QUEUE_NUM, size);
    let size = d.read(reg::QUEUE_NUM) as u16;
    let (desc, avail, used) = if d.legacy {
        let page = 4096;
        d.write32(reg::QUEUE_ALIGN, align);
        let align = u64::from(d.read(reg::QUEUE_ALIGN)).max(1);
        let page_size = u64::from(d.read(reg::GUEST_PAGE_SIZE)).max(1);
        let pfn = (desc.0 / page) as u32;
        let desc = u64::from(pfn) * page_size;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(align);
        d.write32(reg::QUEUE_PFN, pfn);
        (desc, avail, used)
    } else {
        for (offset, addr) in
            [(reg::QUEUE_DESC_LOW, desc.0), (reg::QUEUE_DRIVER_LOW, avail.0), (reg::QUEUE_DEVICE_LOW, used.0)]
        {
            d.write32(offset, addr as u32);
            d.write32(offset + 4, (addr >> 32) as u32);
        }
        d.write32(reg::QUEUE_READY, 1);
        (desc.0, avail.0, used.0)
    };
    if let Some(q) = d.queues.get_mut(queue as usize) {
        *q = DriverQueue { size, desc, avail, used, next_desc: 0, avail_idx: 0, standard: false };
    }
    (avail, used)
}

/// One queue as the device has it.
struct QueueLayout {
    size: u64,
    desc: u64,
    avail: u64,
    used: u64,
}

/// The ready queues of `d`, read through its registers (QueueSel restored after).
fn ready_queues(d: &mut Device) -> Vec<QueueLayout> {
    let mut queues = Vec::new();
    for queue in 0..4 {
        d.mmio.write(reg::QUEUE_SEL, AccessWidth::Word, queue);
        let size = u64::from(d.read(reg::QUEUE_NUM));
        let pair = |d: &mut Device, offset| u64::from(d.read(offset)) | u64::from(d.read(offset + 4)) << 32;
        if d.legacy {
            let pfn = u64::from(d.read(reg::QUEUE_PFN));
            if pfn == 0 {
                continue;
            }
            let desc = pfn * u64::from(d.read(reg::GUEST_PAGE_SIZE));
            let avail = desc + 16 * size;
            let used = (avail + 6 + 2 * size).next_multiple_of(u64::from(d.read(reg::QUEUE_ALIGN)));
            queues.push(QueueLayout { size, desc, avail, used });
        } else if d.read(reg::QUEUE_READY) == 1 {
            let (desc, avail, used) = (
                pair(d, reg::QUEUE_DESC_LOW),
                pair(d, reg::QUEUE_DRIVER_LOW),
                pair(d, reg::QUEUE_DEVICE_LOW),
            );
            queues.push(QueueLayout { size, desc, avail, used });
        }
    }
    d.mmio.write(reg::QUEUE_SEL, AccessWidth::Word, u64::from(d.queue_sel));
    queues
}

/// Reads `N` bytes at `ipa` from a RAM snapshot.
fn snapshot_bytes<const N: usize>(ram: &GuardedRam, snapshot: &[u8], ipa: u64) -> Option<[u8; N]> {
    let mut index = 0u64;
    for (base, size) in ram.chunks() {
        if ipa >= base && ipa.checked_add(N as u64)? <= base + size {
            let at = (index + ipa - base) as usize;
            return snapshot[at..at + N].try_into().ok();
        }
        index += size;
    }
    None
}

/// A descriptor (address, length, flags) from a RAM snapshot.
fn descriptor(ram: &GuardedRam, snapshot: &[u8], at: u64) -> Option<(u64, u64, u16)> {
    let raw: [u8; 16] = snapshot_bytes(ram, snapshot, at)?;
    let addr = u64::from_le_bytes(raw[..8].try_into().ok()?);
    let len = u64::from(u32::from_le_bytes(raw[8..12].try_into().ok()?));
    let flags = u16::from_le_bytes(raw[12..14].try_into().ok()?);
    Some((addr, len, flags))
}

/// Checks that every byte the device changed lies in the used ring of one of its
/// ready queues or in a buffer a device-writable descriptor of one of them names
/// (in the table, or in an indirect table it points to). Skipped when the guest
/// laid a writable buffer or a used ring over a descriptor table or an available
/// ring: the device may then legitimately change the very descriptors that say
/// where it may write.
fn check_writes(ram: &GuardedRam, d: &mut Device, before: &[u8], after: &[u8]) {
    let queues = ready_queues(d);
    let mut writable: Vec<(u64, u64)> = Vec::new();
    let mut read_only: Vec<(u64, u64)> = Vec::new();
    for q in &queues {
        writable.push((q.used, q.used.saturating_add(6 + 8 * q.size)));
        read_only.push((q.desc, q.desc.saturating_add(16 * q.size)));
        read_only.push((q.avail, q.avail.saturating_add(6 + 2 * q.size)));
        for snapshot in [before, after] {
            for i in 0..q.size.min(u64::from(MAX_QUEUE_SIZE)) {
                let Some((addr, len, flags)) = descriptor(ram, snapshot, q.desc.wrapping_add(16 * i)) else {
                    continue;
                };
                if flags & INDIRECT != 0 {
                    read_only.push((addr, addr.saturating_add(len)));
                    for j in 0..(len / 16).min(q.size) {
                        let Some((addr, len, flags)) = descriptor(ram, snapshot, addr.wrapping_add(16 * j))
                        else {
                            continue;
                        };
                        if flags & WRITE != 0 {
                            writable.push((addr, addr.saturating_add(len)));
                        }
                    }
                } else if flags & WRITE != 0 {
                    writable.push((addr, addr.saturating_add(len)));
                }
            }
        }
    }
    let overlaps = |a: &(u64, u64), b: &(u64, u64)| a.0 < b.1 && b.0 < a.1;
    if writable.iter().any(|w| read_only.iter().any(|r| overlaps(w, r))) {
        return;
    }
    // Blocks first (a `memcmp` each), bytes only in the blocks that changed.
    const BLOCK: usize = 64;
    for (block, (old, new)) in before.chunks(BLOCK).zip(after.chunks(BLOCK)).enumerate() {
        if old == new {
            continue;
        }
        for (offset, (old, new)) in old.iter().zip(new).enumerate().filter(|(_, (o, n))| o != n) {
            let ipa = ram.address_of(block * BLOCK + offset);
            assert!(
            writable.iter().any(|&(start, end)| (start..end).contains(&ipa)),
            "the {} device wrote {ipa:#x} ({old:#04x} -> {new:#04x}), outside its used rings and writable buffers",
                if d.device_id == 2 { "blk" } else { "console" },
            );
        }
    }
}
