//! Descriptor chains for a live virtqueue (virtio 1.2 §2.7): tables, indirect tables
//! and available-ring entries, mostly well-formed, often not.
//!
//! [`build`] writes one operation's worth into the device's area through a
//! [`Memory`]: the whole descriptor table (every entry: the new chains' descriptors,
//! and inert ones that point outside RAM), the indirect tables the chains use, the
//! request headers and data, and the whole available ring, its index last. The
//! caller then notifies. Chains are virtio-blk requests (random types and sectors,
//! past the end of the disk too) or virtio-console transmit and receive buffers;
//! the damage some of them get: lengths that are zero, short or huge (outside RAM),
//! buffers outside RAM or across its ends, missing status bytes, readable after
//! writable, `next` past the table, loops, indirect tables that are nested, carry
//! NEXT, have bad lengths or were not negotiated, heads past the table, and
//! available indices that jump.
//!
//! What keeps the guest safe (see the [`super`] module): every in-RAM buffer is in
//! the device's data area or its scratch areas, every table the device may walk is
//! written here in full, and no buffer the device may write overlaps a table.
//!
//! What keeps the console readable: a virtio-console operation lets the device read
//! at most [`CONSOLE_BUDGET`] bytes of RAM. Every table entry the device may visit
//! is written here, a chain that visits an entry twice loops and is refused, so one
//! chain reads at most the sum of the in-RAM lengths of all entries of the tables,
//! and the operation at most that times the entries it publishes; the builder keeps
//! that product within the budget. (One notify that makes Sluice print tens of MiB
//! is a known problem, issue 11, tracked apart; this fuzzer is not for finding it.)

use platform::Region;

use super::sanitize_byte;
use super::space::{DeviceArea, Space};
use crate::prng::Rng;

/// Descriptor flags (§2.7.5), as the drivers in `guest_drivers` name them.
pub mod flags {
    use guest_drivers::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};

    /// The buffer continues in descriptor `next`.
    pub const NEXT: u16 = DESC_F_NEXT;
    /// Device-writable.
    pub const WRITE: u16 = DESC_F_WRITE;
    /// The buffer is a table of descriptors.
    pub const INDIRECT: u16 = DESC_F_INDIRECT;
}

/// Bytes of one descriptor.
pub const DESC_SIZE: u64 = guest_drivers::queue::DESC_SIZE as u64;
/// Most bytes of RAM one virtio-console operation lets the device read.
pub const CONSOLE_BUDGET: u64 = 4096;

/// virtio-blk request types (§5.2.6): the drivers' own from `guest_drivers`, and the
/// two they don't send.
pub mod blk {
    use guest_drivers::blk::spec;

    /// Read.
    pub const IN: u32 = spec::T_IN;
    /// Write.
    pub const OUT: u32 = spec::T_OUT;
    /// Flush.
    pub const FLUSH: u32 = spec::T_FLUSH;
    /// The device's serial.
    pub const GET_ID: u32 = spec::T_GET_ID;
    /// Discard.
    pub const DISCARD: u32 = 11;
    /// Write zeroes.
    pub const WRITE_ZEROES: u32 = 13;
    /// Sector size.
    pub const SECTOR: u64 = spec::SECTOR_SIZE as u64;
}

/// One descriptor (§2.7.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// [`flags`].
    pub flags: u16,
    /// The next descriptor, with NEXT.
    pub next: u16,
}

impl Desc {
    /// Its 16 bytes, little-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..].copy_from_slice(&self.next.to_le_bytes());
        b
    }

    /// The descriptor in `b`.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&b[..8]);
        Self {
            addr: u64::from_le_bytes(addr),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

/// Where the builder writes: the guest's RAM, or a fake in tests.
pub trait Memory {
    /// Writes `bytes` at guest-physical `addr` (in RAM the guest lent the device).
    fn write(&mut self, addr: u64, bytes: &[u8]);
}

/// A queue as the guest set it up and left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Its index (QueueSel).
    pub index: u32,
    /// Its size (QueueNum as the device reads it back), 1 to 256.
    pub size: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Available ring.
    pub avail: u64,
    /// Used ring.
    pub used: u64,
    /// VIRTIO_F_RING_INDIRECT_DESC was negotiated.
    pub indirect: bool,
    /// The available index last published: the device has taken every entry before.
    pub avail_idx: u16,
}

/// Where a queue's rings may go, in one of the device's areas (all aligned as
/// §2.7 asks, and apart: the used ring never overlaps the descriptor table).
pub fn layout(rng: &mut Rng, space: &Space, device: usize, size: u16) -> (u64, u64, u64) {
    let area = space.area(device);
    let size64 = u64::from(size);
    let (desc_len, avail_len, used_len) = (DESC_SIZE * size64, 6 + 2 * size64, 6 + 8 * size64);
    let mut desc = area.desc().base;
    let mut avail = area.avail().base + 4 * rng.below(16);
    let mut used = if rng.chance(1, 16) { avail } else { area.used().base + 4 * rng.below(16) };
    let [start, end] = space.scratch(device);
    // Now and then one ring at the very start or the very end of RAM.
    let ends = [start.map(|s| (s.base, true)), end.and_then(|e| e.end().map(|top| (top, false)))];
    if let Some((at, bottom)) = ends[rng.below(2) as usize].filter(|_| rng.chance(1, 6)) {
        let place = |len: u64, align: u64| if bottom { at } else { (at - len) & !(align - 1) };
        match rng.below(3) {
            0 => desc = place(desc_len, 16),
            1 => avail = place(avail_len, 2),
            _ => used = place(used_len, 4),
        }
    }
    (desc, avail, used)
}

/// A layout the device must refuse: one ring misaligned, outside RAM, or across the
/// end of RAM.
pub fn bad_layout(rng: &mut Rng, space: &Space, device: usize, size: u16) -> (u64, u64, u64) {
    let (mut desc, mut avail, mut used) = layout(rng, space, device, size);
    let area = space.area(device);
    let which = rng.below(3);
    let misaligned = [area.desc().base + 8, area.avail().base + 1, area.used().base + 2][which as usize];
    let bad = match rng.below(4) {
        0 => misaligned,
        1 => space.outside_range(rng, 0x1000).0,
        2 => 0,
        _ => match space.scratch(device)[1].and_then(|e| e.end()) {
            Some(top) => top - rng.range(1, 8),
            None => space.outside(rng),
        },
    };
    match which {
        0 => desc = bad,
        1 => avail = bad,
        _ => used = bad,
    }
    (desc, avail, used)
}

/// What one operation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// virtio-blk requests on a disk of `capacity` sectors.
    Blk {
        /// The disk's size in sectors.
        capacity: u64,
    },
    /// virtio-console transmit buffers (the device prints them).
    ConsoleTx,
    /// virtio-console receive buffers.
    ConsoleRx,
}

/// What [`build`] published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The new available index.
    pub idx: u16,
    /// Available entries the device may take (0 when the index jumped by more than
    /// the queue size, which the device must refuse).
    pub taken: u16,
    /// New chains built.
    pub chains: usize,
    /// In-RAM bytes all table entries point at (what one chain reads at most).
    pub table_bytes: u64,
}

/// One buffer of a chain, before it is placed in a table.
#[derive(Debug, Clone, Copy)]
struct Segment {
    addr: u64,
    len: u32,
    write: bool,
}

/// A table written in this operation: its address and entries.
#[derive(Debug, Clone, Copy)]
struct Table {
    addr: u64,
    entries: [Desc; 256],
    count: usize,
}

impl Table {
    fn new(addr: u64, count: usize) -> Self {
        Self { addr, entries: [Desc::default(); 256], count }
    }

    fn region(&self) -> Region {
        Region::new(self.addr, DESC_SIZE * self.count as u64)
    }
}

/// The builder's state for one operation.
struct Builder<'a> {
    rng: &'a mut Rng,
    space: &'a Space,
    device: usize,
    area: DeviceArea,
    traffic: Traffic,
    queue: Queue,
    /// Bytes of RAM the tables may still point at.
    budget: u64,
    main: Table,
    taken_slots: [bool; 256],
    indirect: [Option<Table>; 2],
    /// Whether writable buffers may go in the scratch areas (no table there).
    scratch_buffers: bool,
}

/// Whether `[addr, addr + len)` has any byte in RAM, counted for the budget.
fn ram_len(space: &Space, d: &Desc) -> u64 {
    if space.touches_ram(d.addr, u64::from(d.len)) {
        u64::from(d.len)
    } else {
        0
    }
}

impl Builder<'_> {
    /// A descriptor that reads and writes nothing in RAM: outside RAM (often huge),
    /// or empty; flags and `next` random.
    fn inert(&mut self) -> Desc {
        let len = match self.rng.below(4) {
            0 => 0,
            1 => u32::MAX - self.rng.below(0x100) as u32,
            _ => self.rng.next_u32(),
        };
        let (addr, len) = self.space.outside_range(self.rng, u64::from(len));
        Desc { addr, len: len as u32, flags: self.rng.next_u16(), next: self.rng.next_u16() }
    }

    /// A buffer of about `len` bytes the device may use: in the data area, or (for
    /// virtio-blk, sometimes) in a scratch area or across an end of RAM.
    fn buffer(&mut self, len: u64, write: bool) -> Segment {
        let data = self.area.data();
        let len = len.min(data.size);
        let [start, end] = self.space.scratch(self.device);
        let scratch = if self.scratch_buffers { [start, end][self.rng.below(2) as usize] } else { None };
        let addr = match scratch {
            Some(s) if self.rng.chance(1, 8) => {
                let top = s.end().unwrap_or(u64::MAX);
                let ram_end = end.and_then(|e| e.end()) == Some(top);
                match self.rng.below(3) {
                    // Across the start or the end of RAM: the device must refuse it.
                    0 if !ram_end => s.base.wrapping_sub(self.rng.range(1, 16)),
                    0 => top - self.rng.range(1, 16).min(len.max(1)),
                    _ => s.base + self.rng.below(s.size.saturating_sub(len).max(1)),
                }
            }
            _ => data.base + self.rng.below(data.size - len + 1),
        };
        Segment { addr, len: len as u32, write }
    }

    /// A buffer outside RAM, of any length.
    fn outside(&mut self, write: bool) -> Segment {
        let random = u64::from(self.rng.next_u32());
        let len = self.rng.pick(&[0, 1, 512, 0x1_0000, u64::from(u32::MAX), random]);
        let (addr, len) = self.space.outside_range(self.rng, len);
        Segment { addr, len: len as u32, write }
    }

    /// A length for a virtio-console buffer, out of the budget: mostly short (each
    /// byte is a byte of console output), now and then all of it.
    fn console_len(&mut self) -> u64 {
        let want = match self.rng.below(1024) {
            0 => self.budget,
            1..=4 => self.rng.below(self.budget + 1),
            5..=160 => 0,
            _ => self.rng.below(17),
        };
        want.min(self.budget)
    }

    /// Takes `seg`'s in-RAM bytes from the budget; a segment that doesn't fit is
    /// made empty.
    fn charge(&mut self, mut seg: Segment) -> Segment {
        let cost = ram_len(self.space, &Desc { addr: seg.addr, len: seg.len, flags: 0, next: 0 });
        if cost > self.budget {
            seg.len = 0;
        } else {
            self.budget -= cost;
        }
        seg
    }

    /// The buffers of one request.
    fn segments(&mut self, mem: &mut dyn Memory, out: &mut [Segment; 256]) -> usize {
        let mut n = 0;
        let mut push = |s: Segment, out: &mut [Segment; 256]| {
            if n < out.len() {
                out[n] = s;
                n += 1;
            }
        };
        match self.traffic {
            Traffic::Blk { capacity } => {
                let random = self.rng.next_u32();
                let kind = match self.rng.weighted(&[30, 25, 10, 10, 5, 5, 5]) {
                    0 => blk::IN,
                    1 => blk::OUT,
                    2 => blk::FLUSH,
                    3 => blk::GET_ID,
                    4 => blk::DISCARD,
                    5 => blk::WRITE_ZEROES,
                    _ => self.rng.pick(&[2, 3, 5, 7, 9, 10, 12, 14, u32::MAX, random]),
                };
                let sectors = self.rng.range(1, 9);
                let sector = match self.rng.below(10) {
                    0 => 0,
                    1 => capacity.saturating_sub(1),
                    2 => capacity,
                    3 => capacity.saturating_sub(sectors - 1).max(1),
                    4 => capacity + self.rng.below(1 << 20),
                    5 => self.rng.pick(&[u64::MAX, u64::MAX / blk::SECTOR, u64::MAX / blk::SECTOR + 1]),
                    6 => self.rng.next_u64(),
                    _ => self.rng.below(capacity.max(1)),
                };
                let mut header = self.buffer(16, false);
                if self.rng.chance(1, 16) {
                    header.len = self.rng.below(16) as u32;
                }
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&kind.to_le_bytes());
                if self.rng.chance(1, 8) {
                    bytes[4..8].copy_from_slice(&self.rng.next_u32().to_le_bytes());
                }
                bytes[8..].copy_from_slice(&sector.to_le_bytes());
                self.fill(mem, header, &bytes);
                push(header, out);
                let data_len = if self.rng.chance(1, 8) {
                    self.rng.below(4 * blk::SECTOR)
                } else {
                    sectors * blk::SECTOR
                };
                match kind {
                    blk::IN | blk::OUT => self.split(data_len, kind == blk::IN, &mut push, out),
                    blk::GET_ID => {
                        let len = self.rng.pick(&[20, 20, 0, 1, 19, 64]);
                        push(self.buffer(len, true), out);
                    }
                    blk::DISCARD | blk::WRITE_ZEROES => {
                        let count = self.rng.pick(&[1, 1, 2, 16, 17, 0]);
                        let seg = self.buffer(16 * count, false);
                        for i in 0..count {
                            let mut s = [0u8; 16];
                            let start =
                                if self.rng.coin() { self.rng.below(capacity.max(1)) } else { sector };
                            s[..8].copy_from_slice(&start.to_le_bytes());
                            let random = self.rng.next_u32();
                            let num = self.rng.pick(&[1, 8, 0, 1 << 22, (1 << 22) + 1, random]);
                            s[8..12].copy_from_slice(&num.to_le_bytes());
                            let random = self.rng.next_u32();
                            let flags = self.rng.pick(&[0, 0, 1, 2, random]);
                            s[12..].copy_from_slice(&flags.to_le_bytes());
                            let at = Segment { addr: seg.addr + 16 * i, len: 16, write: false };
                            self.fill(mem, at, &s);
                        }
                        push(seg, out);
                    }
                    _ => {}
                }
                if !self.rng.chance(1, 16) {
                    let len = if self.rng.chance(1, 16) { self.rng.below(4) } else { 1 };
                    push(self.buffer(len, true), out);
                }
            }
            Traffic::ConsoleTx | Traffic::ConsoleRx => {
                let write = self.traffic == Traffic::ConsoleRx;
                for _ in 0..self.rng.range(1, 4) {
                    let len = if write { self.rng.range(1, 257) } else { self.console_len() };
                    let seg = self.buffer(len, write);
                    let seg = if write { seg } else { self.charge(seg) };
                    if !write {
                        self.fill_text(mem, seg);
                    }
                    push(seg, out);
                }
            }
        }
        n
    }

    /// Splits `len` bytes of data into up to four buffers (some maybe empty).
    fn split(
        &mut self,
        len: u64,
        write: bool,
        push: &mut impl FnMut(Segment, &mut [Segment; 256]),
        out: &mut [Segment; 256],
    ) {
        let pieces = self.rng.range(1, 5);
        let mut left = len;
        for i in 0..pieces {
            let part = if i + 1 == pieces { left } else { self.rng.below(left + 1) };
            left -= part;
            push(self.buffer(part, write), out);
        }
    }

    /// Writes `bytes` over the RAM part of `seg` that is lent to the device.
    fn fill(&mut self, mem: &mut dyn Memory, seg: Segment, bytes: &[u8]) {
        let n = bytes.len().min(seg.len as usize);
        if n > 0
            && self.space.in_ram(seg.addr, n as u64)
            && self.space.is_lent(self.device, seg.addr, n as u64)
        {
            mem.write(seg.addr, &bytes[..n]);
        }
    }

    /// Fills a transmit buffer with random bytes that spell nothing: mostly digits
    /// and punctuation, sometimes any byte (control characters and bytes above
    /// 0x7e, which the console shows escaped).
    fn fill_text(&mut self, mem: &mut dyn Memory, seg: Segment) {
        const PLAIN: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~";
        let any = self.rng.chance(1, 8);
        let mut chunk = [0u8; 64];
        let mut done = 0u64;
        while done < u64::from(seg.len) {
            let n = (u64::from(seg.len) - done).min(64) as usize;
            for b in &mut chunk[..n] {
                *b = if any { sanitize_byte(self.rng.next_u8()) } else { self.rng.pick(PLAIN) };
            }
            self.fill(mem, Segment { addr: seg.addr + done, len: n as u32, write: false }, &chunk[..n]);
            done += n as u64;
        }
    }

    /// Damages some of a chain's buffers: empty, outside RAM, or the wrong way round.
    fn damage_segments(&mut self, segs: &mut [Segment]) {
        if segs.is_empty() || !self.rng.chance(1, 5) {
            return;
        }
        let i = self.rng.below(segs.len() as u64) as usize;
        match self.rng.below(4) {
            0 => segs[i].len = 0,
            1 => segs[i] = self.outside(segs[i].write),
            2 => segs[i].write = !segs[i].write,
            _ => {
                segs[i].len = segs[i]
                    .len
                    .saturating_add(self.rng.range(1, 600) as u32)
                    .min(self.area.data().size as u32)
            }
        }
        // A longer or turned-round buffer must stay within the data area and the
        // budget: place it again.
        if segs[i].len != 0 && self.space.touches_ram(segs[i].addr, u64::from(segs[i].len)) {
            let placed = self.buffer(u64::from(segs[i].len), segs[i].write);
            segs[i] = if self.traffic == Traffic::ConsoleTx { self.charge(placed) } else { placed };
        }
    }

    /// A free slot of the main table.
    fn free_slot(&mut self) -> Option<u16> {
        let size = usize::from(self.queue.size);
        let free = self.taken_slots[..size].iter().filter(|&&t| !t).count();
        if free == 0 {
            return None;
        }
        let mut k = self.rng.below(free as u64);
        for (i, taken) in self.taken_slots[..size].iter_mut().enumerate() {
            if !*taken {
                if k == 0 {
                    *taken = true;
                    return Some(i as u16);
                }
                k -= 1;
            }
        }
        None
    }

    /// Puts a chain of `segs` in the main table, or in an indirect table named by a
    /// main-table entry; returns the head, if there was room.
    fn place(&mut self, segs: &[Segment]) -> Option<u16> {
        let desc = |s: &Segment| Desc {
            addr: s.addr,
            len: s.len,
            flags: if s.write { flags::WRITE } else { 0 },
            next: 0,
        };
        let size = usize::from(self.queue.size);
        let free_indirect = self.indirect.iter().position(Option::is_none);
        let odds = if self.queue.indirect { 3 } else { 24 };
        if let Some(which) = free_indirect.filter(|_| self.rng.chance(1, odds)) {
            let head = self.free_slot()?;
            let slot = self.area.indirect(which);
            let misalign = if self.rng.chance(1, 8) { self.rng.range(1, 16) } else { 0 };
            let addr = slot.base + misalign;
            let room = ((slot.size - misalign) / DESC_SIZE) as usize;
            // The chain and some spare entries.
            let count = (segs.len() + self.rng.below(3) as usize).clamp(1, room);
            let mut len = DESC_SIZE as u32 * count as u32;
            let mut indirect_flags = flags::INDIRECT;
            match self.rng.below(24) {
                0 => len = self.rng.pick(&[0, 8, len + 1, len - 1]),
                1 if size < room => len = DESC_SIZE as u32 * (size as u32 + 1),
                2 => indirect_flags |= flags::NEXT,
                3 => indirect_flags |= flags::WRITE,
                _ => {}
            }
            // Every entry the length covers is written (a device that took a bad
            // length anyway would find nothing stale there).
            let written = count.max((len as usize).div_ceil(DESC_SIZE as usize)).min(room);
            let mut table = Table::new(addr, written);
            for i in 0..written {
                table.entries[i] = self.inert();
            }
            let chained = segs.len().min(count);
            for (i, s) in segs.iter().enumerate().take(chained) {
                let mut d = desc(s);
                if i + 1 < chained {
                    d.flags |= flags::NEXT;
                    d.next = (i + 1) as u16;
                }
                table.entries[i] = d;
            }
            match self.rng.below(16) {
                // Nested: an entry that names this very table.
                0 => {
                    let i = self.rng.below(count as u64) as usize;
                    table.entries[i] = Desc { addr, len, flags: flags::INDIRECT, next: 0 };
                }
                // A link past the table, or a loop.
                1 => {
                    let i = self.rng.below(count as u64) as usize;
                    table.entries[i].flags |= flags::NEXT;
                    table.entries[i].next = self.rng.pick(&[0, i as u16, count as u16, 0xffff]);
                }
                _ => {}
            }
            self.main.entries[usize::from(head)] =
                Desc { addr, len, flags: indirect_flags, next: self.rng.below(size as u64 + 2) as u16 };
            self.indirect[which] = Some(table);
            return Some(head);
        }
        let mut slots = [0u16; 256];
        let mut n = 0;
        for _ in segs {
            match self.free_slot() {
                Some(s) => {
                    slots[n] = s;
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 {
            return None;
        }
        for i in 0..n {
            let mut d = desc(&segs[i]);
            if i + 1 < n {
                d.flags |= flags::NEXT;
                d.next = slots[i + 1];
            }
            self.main.entries[usize::from(slots[i])] = d;
        }
        // Damage to the links: past the table, a loop, random flags.
        let last = usize::from(slots[n - 1]);
        match self.rng.below(24) {
            0 => {
                self.main.entries[last].flags |= flags::NEXT;
                self.main.entries[last].next = self.rng.pick(&[self.queue.size, self.queue.size + 1, 0xffff]);
            }
            1 => {
                self.main.entries[last].flags |= flags::NEXT;
                self.main.entries[last].next = slots[self.rng.below(n as u64) as usize];
            }
            // Random flags, but never INDIRECT: the buffer is no table written now.
            2 => {
                let i = usize::from(slots[self.rng.below(n as u64) as usize]);
                self.main.entries[i].flags = self.rng.next_u16() & !flags::INDIRECT;
            }
            _ => {}
        }
        Some(slots[0])
    }

    /// The in-RAM bytes all entries of all tables point at.
    fn table_bytes(&self) -> u64 {
        let main = self.main.entries[..self.main.count].iter();
        let indirect = self.indirect.iter().flatten().flat_map(|t| t.entries[..t.count].iter());
        main.chain(indirect).map(|d| ram_len(self.space, d)).sum()
    }

    /// Empties in-RAM entries (table pointers first) until the tables point at no
    /// more than `limit` bytes.
    fn enforce(&mut self, limit: u64) {
        while self.table_bytes() > limit {
            let space = self.space;
            let biggest = |t: &mut Table| {
                t.entries[..t.count]
                    .iter_mut()
                    .filter(|d| ram_len(space, d) > 0)
                    .max_by_key(|d| d.len)
                    .map(|d| d.len = 0)
            };
            if biggest(&mut self.main).is_some() {
                continue;
            }
            for t in self.indirect.iter_mut().flatten() {
                biggest(t);
            }
        }
    }

    fn write_table(&mut self, mem: &mut dyn Memory, table: &Table) {
        for (i, d) in table.entries[..table.count].iter().enumerate() {
            let at = table.addr + DESC_SIZE * i as u64;
            if self.space.in_ram(at, DESC_SIZE) && self.space.is_lent(self.device, at, DESC_SIZE) {
                mem.write(at, &d.to_bytes());
            }
        }
    }

    fn write_u16(&mut self, mem: &mut dyn Memory, at: u64, value: u16) {
        if self.space.in_ram(at, 2) && self.space.is_lent(self.device, at, 2) {
            mem.write(at, &value.to_le_bytes());
        }
    }

    /// A garbage available-ring value: small, or with the top bit set.
    fn junk_u16(&mut self) -> u16 {
        match self.rng.below(3) {
            0 => self.rng.below(u64::from(self.queue.size) + 4) as u16,
            1 => 0x8000 | self.rng.next_u16(),
            _ => self.rng.next_u16() & 0x3fff,
        }
    }
}

/// Builds one operation on `queue` of `device` (set up with [`layout`]), writes it
/// through `mem`, and says what it published. The caller notifies, then (if the
/// device is still well) records [`Published::idx`] as the queue's `avail_idx`.
pub fn build(
    rng: &mut Rng,
    space: &Space,
    device: usize,
    queue: Queue,
    traffic: Traffic,
    mem: &mut dyn Memory,
) -> Published {
    let size = usize::from(queue.size.clamp(1, 256));
    let queue = Queue { size: size as u16, ..queue };
    let area = space.area(device);
    let main = Table::new(queue.desc, size);
    let desc_in_scratch = space.scratch(device).iter().flatten().any(|s| s.overlaps(&main.region()));
    let mut b = Builder {
        rng,
        space,
        device,
        area,
        traffic,
        queue,
        budget: u64::MAX,
        main,
        taken_slots: [false; 256],
        indirect: [None, None],
        scratch_buffers: !desc_in_scratch && traffic != Traffic::ConsoleTx,
    };

    // How many new chains, and how many entries the device may take in all: the
    // new ones and stale ones, or more than the queue holds.
    let chains = (b.rng.range(1, 4) as usize).min(size);
    let total = match b.rng.below(20) {
        0 | 1 => chains + b.rng.below((size - chains) as u64 + 1) as usize,
        2 => size + 1 + b.rng.below(u64::from(b.queue.size)) as usize,
        3 => 0,
        _ => chains,
    };
    let taken = if total <= size { total } else { 0 };
    let limit = CONSOLE_BUDGET / taken.max(1) as u64;
    if traffic == Traffic::ConsoleTx {
        // What the buffers may have; the rest is for the indirect tables (counted
        // too: a device that did not take them as tables would read them).
        b.budget = limit - (limit / 4).min(2 * 16 * 16);
    }

    for i in 0..size {
        b.main.entries[i] = b.inert();
    }
    let mut heads = [0u16; 3];
    let mut built = 0;
    let mut segs = [Segment { addr: 0, len: 0, write: false }; 256];
    for head in heads.iter_mut().take(chains) {
        let mut n = b.segments(mem, &mut segs);
        // Sometimes a long chain: the request's data in many small pieces.
        if n > 0 && b.rng.chance(1, 32) && traffic != Traffic::ConsoleTx {
            while n < size {
                let len = b.rng.below(8);
                segs[n] = b.buffer(len, segs[n - 1].write);
                n += 1;
            }
        }
        b.damage_segments(&mut segs[..n]);
        let Some(h) = b.place(&segs[..n]) else { break };
        *head = h;
        built += 1;
    }
    if traffic == Traffic::ConsoleTx {
        b.enforce(limit);
    }

    let main = b.main;
    b.write_table(mem, &main);
    for table in b.indirect.into_iter().flatten() {
        b.write_table(mem, &table);
    }

    // The available ring: the new heads among the entries the device takes, junk
    // elsewhere; flags and used_event; the index last.
    let idx = queue.avail_idx.wrapping_add(total as u16);
    let start = queue.avail_idx;
    for s in 0..size {
        let slot = start.wrapping_add(s as u16);
        let at = queue.avail + 4 + 2 * u64::from(slot % size as u16);
        let head = heads.get(s).filter(|_| s < built && !b.rng.chance(1, 32));
        let value = head.copied().unwrap_or_else(|| b.junk_u16());
        b.write_u16(mem, at, value);
    }
    let flags = b.rng.pick(&[0, 0, 1, 1, 0x8001, 0x3fff]);
    b.write_u16(mem, queue.avail, flags);
    let used_event = match b.rng.below(4) {
        0 => idx,
        1 => idx.wrapping_sub(1),
        2 => queue.avail_idx,
        _ => b.junk_u16(),
    };
    b.write_u16(mem, queue.avail + 4 + 2 * size as u64, used_event);
    b.write_u16(mem, queue.avail + 2, idx);
    let table_bytes = b.table_bytes();
    Published { idx, taken: taken as u16, chains: built, table_bytes }
}

#[cfg(test)]
mod tests;
