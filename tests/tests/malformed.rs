//! Malformed driver input against Sluice's device models, with rings built by hand
//! in the shared region and every register access a trapped-style one: descriptors
//! outside RAM, looping chains, chains longer than the queue, nested indirect
//! tables, an available index that jumps, zero-length buffers, short blk headers,
//! and rings placed outside RAM. Each ends in an error status in the used ring or
//! in DEVICE_NEEDS_RESET with a configuration interrupt, never a panic; a device
//! that needs a reset does nothing more until it is reset, and then works again.
//! Random rings, last, check the "never a panic" part more widely, and that Sluice's
//! virtio-blk on the machine's disk hands that disk only requests it checked.

use std::sync::Arc;

use guest_drivers::transport::interrupt;
use guest_drivers::transport::mmio::reg;
use hypervisor::devices::virtio::{status, transport_features};
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::region::{RegionBuffer, SharedRegion, GUEST_BASE, PAGE};
use sluice_tests::rig::{blk_slot, console_slot};
use sluice_tests::rings::{bring_up, desc, notify, write_desc, write_ring_addresses, RawQueue};
use sluice_tests::slot::Slot;

/// Queue size used here: small, so chains can outgrow it.
const QSIZE: u16 = 8;
/// Ring features negotiated (both, so indirect tables are legal).
const RING: u64 = transport_features::RING_INDIRECT_DESC | transport_features::RING_EVENT_IDX;
const R: bool = false;
const W: bool = true;
/// virtio-blk status values (§5.2.6).
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;

/// A blk device over a hand-built queue, with the buffers of one request.
struct Blk {
    region: Arc<SharedRegion>,
    disk: Disk,
    slot: Slot,
    q: RawQueue,
    /// An IN header for sector 1.
    hdr: RegionBuffer,
    data: RegionBuffer,
    status: RegionBuffer,
    /// A page for indirect tables.
    table: RegionBuffer,
}

impl Blk {
    fn new(legacy: bool) -> Self {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(16);
        let slot = blk_slot(&region, &disk, legacy, false);
        let q = RawQueue::new(&region, QSIZE);
        bring_up(&slot, RING, &[&q]);
        let mut hdr = region.buffer(16, 0);
        hdr.as_mut_slice()[8] = 1;
        let data = region.buffer(SECTOR, 0);
        let mut status = region.buffer(1, 0);
        status.as_mut_slice()[0] = 0xff;
        let table = region.buffer(PAGE, 0);
        Self { region, disk, slot, q, hdr, data, status, table }
    }

    fn hdr(&self) -> u64 {
        self.hdr.guest_addr()
    }
    fn data(&self) -> u64 {
        self.data.guest_addr()
    }
    fn status(&self) -> u64 {
        self.status.guest_addr()
    }
    fn table(&self) -> u64 {
        self.table.guest_addr()
    }

    /// Entry `index` of the indirect table page.
    fn table_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(&self.region, self.table() + 16 * u64::from(index), addr, len, flags, next);
    }

    fn notify(&self) {
        notify(&self.slot, 0);
    }

    fn status_byte(&self) -> u8 {
        self.status.as_slice()[0]
    }

    /// A well-formed read of sector 1; returns `(used.len, status)`.
    fn good_read(&mut self) -> Option<(u32, u8)> {
        self.status.as_mut_slice()[0] = 0xff;
        let chain = [(self.hdr(), 16, R), (self.data(), SECTOR as u32, W), (self.status(), 1, W)];
        let head = self.q.add_chain(&chain);
        self.notify();
        let (id, len) = self.q.pop_used()?;
        assert_eq!(id, u32::from(head));
        Some((len, self.status_byte()))
    }

    /// The device refused the input as a whole: DEVICE_NEEDS_RESET and a
    /// configuration interrupt, nothing in the used ring, and no more work done
    /// until a reset; after the reset it works.
    fn expect_needs_reset(&mut self, what: &str) {
        let s = self.slot.status();
        assert_ne!(s & status::DEVICE_NEEDS_RESET, 0, "{what}: status {s:#x}");
        assert_ne!(self.slot.interrupt_status() & interrupt::CONFIG_CHANGE, 0, "{what}");
        assert!(self.slot.interrupt_level(), "{what}");
        assert_eq!(self.q.pop_used(), None, "{what}: nothing completed");
        // Dead until reset: a good request is ignored, and so are status writes.
        assert_eq!(self.good_read(), None, "{what}: work done while it needs a reset");
        self.slot.write32(reg::STATUS, u32::from(s | status::DRIVER_OK));
        assert_eq!(self.slot.status(), s, "{what}");
        self.recover(what);
    }

    /// Resets the device, brings it up over a fresh queue, and reads a sector.
    fn recover(&mut self, what: &str) {
        self.slot.write32(reg::STATUS, 0);
        assert_eq!(self.slot.status(), 0, "{what}: reset");
        assert_eq!(self.slot.interrupt_status(), 0, "{what}: reset clears interrupts");
        self.q = RawQueue::new(&self.region, QSIZE);
        bring_up(&self.slot, RING, &[&self.q]);
        assert_eq!(self.good_read(), Some((SECTOR as u32 + 1, S_OK)), "{what}: works after the reset");
        assert_eq!(self.data.as_slice(), self.disk.read(1, 1));
    }

    /// The request completed with `status` and `used.len` = `len`, and the device
    /// carries on.
    fn expect_completed(&mut self, head: u16, len: u32, status: u8, what: &str) {
        assert_eq!(self.q.pop_used(), Some((u32::from(head), len)), "{what}");
        assert_eq!(self.status_byte(), status, "{what}");
        assert_eq!(self.slot.status() & status::DEVICE_NEEDS_RESET, 0, "{what}");
        assert_eq!(self.good_read(), Some((SECTOR as u32 + 1, S_OK)), "{what}: carries on");
    }
}

fn both(mut f: impl FnMut(Blk, &str)) {
    f(Blk::new(false), "modern");
    f(Blk::new(true), "legacy");
}

#[test]
fn descriptors_outside_ram() {
    both(|mut b, mode| {
        let end = b.region.guest_end();
        for (addr, len, what) in [
            (0x1000, SECTOR as u32, "below RAM"),
            (GUEST_BASE - 1, 2, "straddling RAM's start"),
            (end, SECTOR as u32, "just past RAM"),
            (end - 100, SECTOR as u32, "straddling RAM's end"),
            (u64::MAX - 10, SECTOR as u32, "wrapping the address space"),
            (0x0a00_0000, 0x200, "on a virtio-mmio slot"),
        ] {
            let what = format!("{mode}: data {what}");
            b.status.as_mut_slice()[0] = 0xff;
            b.q.add_chain(&[(b.hdr(), 16, R), (addr, len, W), (b.status(), 1, W)]);
            b.notify();
            assert_eq!(b.status_byte(), 0xff, "{what}: nothing executed");
            b.expect_needs_reset(&what);
        }
        // The header outside RAM, and an indirect table outside RAM.
        b.q.add_chain(&[(end + 0x1000, 16, R), (b.status(), 1, W)]);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: header outside RAM"));
        b.q.set_desc(0, end - 8, 48, desc::INDIRECT, 0);
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: indirect table outside RAM"));
    });
}

#[test]
fn looping_chains() {
    both(|mut b, mode| {
        // 0 -> 1 -> 0 -> ...
        b.q.set_desc(0, b.hdr(), 16, desc::NEXT, 1);
        b.q.set_desc(1, b.status(), 1, desc::NEXT | desc::WRITE, 0);
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: two-descriptor loop"));
        // A descriptor that names itself.
        b.q.set_desc(3, b.hdr(), 16, desc::NEXT, 3);
        b.q.publish(3);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: self loop"));
        // A loop inside an indirect table.
        b.table_desc(0, b.hdr(), 16, desc::NEXT, 1);
        b.table_desc(1, b.data(), SECTOR as u32, desc::NEXT | desc::WRITE, 2);
        b.table_desc(2, b.status(), 1, desc::NEXT | desc::WRITE, 1);
        b.q.set_desc(0, b.table(), 3 * 16, desc::INDIRECT, 0);
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: loop in an indirect table"));
    });
}

#[test]
fn chains_longer_than_the_queue() {
    both(|mut b, mode| {
        // An indirect table of twice the queue size, every entry chained: a valid
        // shape, but more buffers than the queue allows.
        let n = 2 * QSIZE;
        b.table_desc(0, b.hdr(), 16, desc::NEXT, 1);
        for i in 1..n - 1 {
            b.table_desc(i, b.data() + u64::from(i), 1, desc::NEXT | desc::WRITE, i + 1);
        }
        b.table_desc(n - 1, b.status(), 1, desc::WRITE, 0);
        b.q.set_desc(0, b.table(), u32::from(n) * 16, desc::INDIRECT, 0);
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: indirect table longer than the queue"));
        // Every ring descriptor chained, the last pointing past the table.
        for i in 0..QSIZE {
            b.q.set_desc(i, b.data(), 1, desc::NEXT | desc::WRITE, i + 1);
        }
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: next past the table"));
        // A head that is not a descriptor.
        b.q.publish(QSIZE + 3);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: head past the table"));
    });
}

#[test]
fn bad_indirect_tables() {
    both(|mut b, mode| {
        b.table_desc(0, b.hdr(), 16, desc::NEXT, 1);
        b.table_desc(1, b.table() + 0x800, 32, desc::INDIRECT, 0);
        write_desc(&b.region, b.table() + 0x800, b.status(), 1, desc::WRITE, 0);
        b.q.set_desc(0, b.table(), 2 * 16, desc::INDIRECT, 0);
        b.q.publish(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: nested indirect table"));

        for (len, flags, what) in [
            (0, desc::INDIRECT, "empty table"),
            (24, desc::INDIRECT, "length not a multiple of 16"),
            (32, desc::INDIRECT | desc::NEXT, "indirect with NEXT"),
        ] {
            b.table_desc(0, b.hdr(), 16, desc::NEXT, 1);
            b.table_desc(1, b.status(), 1, desc::WRITE, 0);
            b.q.set_desc(0, b.table(), len, flags, 1);
            b.q.publish(0);
            b.notify();
            b.expect_needs_reset(&format!("{mode}: {what}"));
        }

        // A readable buffer after a writable one.
        b.q.add_chain(&[(b.hdr(), 16, R), (b.status(), 1, W), (b.data(), 16, R)]);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: readable after writable"));
    });

    // Indirect tables without VIRTIO_F_RING_INDIRECT_DESC.
    let mut b = Blk::new(false);
    bring_up(&b.slot, 0, &[&b.q]);
    b.table_desc(0, b.hdr(), 16, desc::NEXT, 1);
    b.table_desc(1, b.status(), 1, desc::WRITE, 0);
    b.q.set_desc(0, b.table(), 2 * 16, desc::INDIRECT, 0);
    b.q.publish(0);
    b.notify();
    b.expect_needs_reset("indirect not negotiated");
}

#[test]
fn available_index_jumps() {
    both(|mut b, mode| {
        b.q.set_avail_idx(QSIZE + 1);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: jump by the queue size + 1"));
        // Backwards, which is a jump of almost 2^16 forwards.
        assert!(b.good_read().is_some());
        b.q.set_avail_idx(0);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: backwards"));
        b.q.set_avail_idx(0x8000);
        b.notify();
        b.expect_needs_reset(&format!("{mode}: half the index space"));

        // Exactly the queue size is legal: that many requests run.
        for i in 0..QSIZE {
            b.q.set_desc(i, b.hdr(), 16, 0, 0);
            let head = i;
            b.q.publish(head);
        }
        b.notify();
        for i in 0..QSIZE {
            // A chain with no writable byte: nowhere for the status, completed empty.
            assert_eq!(b.q.pop_used(), Some((u32::from(i), 0)), "{mode}");
        }
        assert_eq!(b.slot.status() & status::DEVICE_NEEDS_RESET, 0);
        assert!(b.good_read().is_some());
    });
}

#[test]
fn zero_length_buffers() {
    both(|mut b, mode| {
        // Zero-length buffers anywhere in a good request are skipped, even at an
        // address that is not RAM (there is nothing to reach).
        b.status.as_mut_slice()[0] = 0xff;
        let head = b.q.add_chain(&[
            (b.hdr(), 16, R),
            (0, 0, R),
            (b.data(), SECTOR as u32, W),
            (b.region.guest_end() + 0x10_0000, 0, W),
            (b.status(), 1, W),
        ]);
        b.notify();
        b.expect_completed(head, SECTOR as u32 + 1, S_OK, &format!("{mode}: zero-length buffers skipped"));
        assert_eq!(b.data.as_slice(), b.disk.read(1, 1));

        // The status buffer empty: nowhere to answer; completed with nothing written.
        b.status.as_mut_slice()[0] = 0xff;
        let head = b.q.add_chain(&[(b.hdr(), 16, R), (b.data(), SECTOR as u32, W), (b.status(), 0, W)]);
        b.notify();
        // The data buffer's last byte is the status then: one sector does not fit.
        assert_eq!(b.q.pop_used(), Some((u32::from(head), 1)), "{mode}");
        assert_eq!(b.data.as_slice()[SECTOR - 1], S_IOERR, "{mode}: status in the last writable byte");
        assert!(b.good_read().is_some());

        let head = b.q.add_chain(&[(b.hdr(), 16, R), (b.status(), 0, W)]);
        b.notify();
        assert_eq!(b.q.pop_used(), Some((u32::from(head), 0)), "{mode}: no writable byte");
        // An empty header is a short one.
        b.status.as_mut_slice()[0] = 0xff;
        let head = b.q.add_chain(&[(b.hdr(), 0, R), (b.status(), 1, W)]);
        b.notify();
        b.expect_completed(head, 1, S_IOERR, &format!("{mode}: empty header"));
        // Nothing but one empty buffer.
        let head = b.q.add_chain(&[(b.hdr(), 0, R)]);
        b.notify();
        assert_eq!(b.q.pop_used(), Some((u32::from(head), 0)), "{mode}: one empty buffer");
        assert!(b.good_read().is_some());
    });
}

#[test]
fn blk_headers_too_short() {
    both(|mut b, mode| {
        for len in [1, 8, 15] {
            b.status.as_mut_slice()[0] = 0xff;
            let head = b.q.add_chain(&[(b.hdr(), len, R), (b.status(), 1, W)]);
            b.notify();
            b.expect_completed(head, 1, S_IOERR, &format!("{mode}: {len}-byte header"));
        }
        // A short header with data after it: the data is not taken for the header's
        // rest. Here 8 header bytes then an OUT payload: the first 8 payload bytes
        // would complete a header, which the device must then read as such (the
        // stream is what counts, §2.6.4), so it is a valid OUT of sector 3.
        let mut payload = region_bytes(&b.region, &[0u8; 8 + SECTOR]);
        payload.as_mut_slice()[..8].copy_from_slice(&3u64.to_le_bytes());
        payload.as_mut_slice()[8..].copy_from_slice(&pattern(33, SECTOR));
        let mut out_hdr = region_bytes(&b.region, &[0u8; 8]);
        out_hdr.as_mut_slice()[0] = 1;
        b.status.as_mut_slice()[0] = 0xff;
        let head = b.q.add_chain(&[
            (out_hdr.guest_addr(), 8, R),
            (payload.guest_addr(), 8 + SECTOR as u32, R),
            (b.status(), 1, W),
        ]);
        b.notify();
        b.expect_completed(head, 1, S_OK, &format!("{mode}: header across two buffers"));
        assert_eq!(b.disk.read(3, 1), pattern(33, SECTOR));
        // And no status buffer at all: the request is not run.
        let head =
            b.q.add_chain(&[(out_hdr.guest_addr(), 8, R), (payload.guest_addr(), 8 + SECTOR as u32, R)]);
        payload.as_mut_slice()[..8].copy_from_slice(&4u64.to_le_bytes());
        b.notify();
        assert_eq!(b.q.pop_used(), Some((u32::from(head), 0)), "{mode}");
        assert_eq!(b.disk.read(4, 1), pattern(4, SECTOR), "{mode}: a request without a status is not run");
    });
}

fn region_bytes(region: &Arc<SharedRegion>, bytes: &[u8]) -> RegionBuffer {
    let mut b = region.buffer(bytes.len(), 0);
    b.as_mut_slice().copy_from_slice(bytes);
    b
}

#[test]
fn rings_outside_ram_or_misaligned() {
    let region = SharedRegion::with_default_size();
    let disk = Disk::patterned(16);
    let end = region.guest_end();
    for (desc_at, what) in
        [(0x1000, "below RAM"), (end - 16, "overrunning RAM"), (GUEST_BASE + 8, "misaligned")]
    {
        let slot = blk_slot(&region, &disk, false, false);
        let q = RawQueue::new(&region, QSIZE);
        slot.write32(reg::STATUS, 3);
        slot.write32(reg::DRIVER_FEATURES_SEL, 1);
        slot.write32(reg::DRIVER_FEATURES, 1);
        slot.write32(reg::STATUS, 11);
        slot.write32(reg::QUEUE_NUM, u32::from(QSIZE));
        write_ring_addresses(&slot, desc_at, q.avail, q.used);
        slot.write32(reg::QUEUE_READY, 1);
        assert_eq!(slot.read32(reg::QUEUE_READY), 0, "{what}: queue refused");
        assert_ne!(slot.status() & status::DEVICE_NEEDS_RESET, 0, "{what}");
        assert_ne!(slot.interrupt_status() & interrupt::CONFIG_CHANGE, 0, "{what}");
        slot.write32(reg::STATUS, 0);
        bring_up(&slot, RING, &[&q]);
    }
    // Legacy: a QueuePFN whose rings run past RAM.
    let slot = blk_slot(&region, &disk, true, false);
    slot.write32(reg::STATUS, 3);
    slot.write32(reg::QUEUE_NUM, u32::from(QSIZE));
    slot.write32(reg::LEGACY_QUEUE_PFN, ((end - PAGE as u64) / PAGE as u64) as u32);
    assert_eq!(slot.read32(reg::LEGACY_QUEUE_PFN), 0);
    assert_ne!(slot.status() & status::DEVICE_NEEDS_RESET, 0);
    slot.write32(reg::STATUS, 0);
    let q = RawQueue::new(&region, QSIZE);
    bring_up(&slot, RING, &[&q]);
}

#[test]
fn console_queues_take_bad_input_too() {
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let (slot, sink) = console_slot(&region, legacy);
        let mut rx = RawQueue::new(&region, QSIZE);
        let mut tx = RawQueue::new(&region, QSIZE);
        bring_up(&slot, RING, &[&rx, &tx]);
        let text = region_bytes(&region, b"out");
        let inbox = region.buffer(16, 0);

        // Zero-length buffers: transmitted as nothing; received into as nothing (the
        // input waits for the next buffer).
        tx.add_chain(&[(text.guest_addr(), 0, R)]);
        tx.add_chain(&[(text.guest_addr(), 3, R)]);
        notify(&slot, 1);
        assert_eq!(tx.pop_used(), Some((0, 0)));
        assert_eq!(tx.pop_used(), Some((1, 0)));
        assert_eq!(sink.take(), b"out");
        rx.add_chain(&[(inbox.guest_addr(), 0, W)]);
        rx.add_chain(&[(inbox.guest_addr(), 16, W)]);
        notify(&slot, 0);
        assert_eq!(slot.input(b"in"), 2);
        assert_eq!(rx.pop_used(), Some((0, 0)));
        assert_eq!(rx.pop_used(), Some((1, 2)));
        assert_eq!(&inbox.as_slice()[..2], b"in");

        // A receive buffer outside RAM: found when input arrives, not before.
        rx.add_chain(&[(region.guest_end(), 16, W)]);
        notify(&slot, 0);
        assert_eq!(slot.status() & status::DEVICE_NEEDS_RESET, 0);
        slot.input(b"x");
        assert_ne!(slot.status() & status::DEVICE_NEEDS_RESET, 0, "legacy {legacy}");
        assert_ne!(slot.interrupt_status() & interrupt::CONFIG_CHANGE, 0);
        // Dead until reset: transmit does nothing.
        tx.add_chain(&[(text.guest_addr(), 3, R)]);
        notify(&slot, 1);
        assert!(sink.take().is_empty());

        let mut tx = fresh(&slot, &region);
        tx.add_chain(&[(text.guest_addr(), 3, R)]);
        notify(&slot, 1);
        assert_eq!(sink.take(), b"out");
        // A transmit chain that loops.
        tx.set_desc(1, text.guest_addr(), 3, desc::NEXT, 1);
        tx.publish(1);
        notify(&slot, 1);
        assert_ne!(slot.status() & status::DEVICE_NEEDS_RESET, 0);
        assert!(sink.take().is_empty());
        let mut tx = fresh(&slot, &region);
        tx.add_chain(&[(text.guest_addr(), 3, R)]);
        notify(&slot, 1);
        assert_eq!(sink.take(), b"out", "legacy {legacy}: works after the reset");
    }
}

/// Resets a console and brings it up over fresh queues; returns the transmit queue.
fn fresh(slot: &Slot, region: &Arc<SharedRegion>) -> RawQueue {
    slot.write32(reg::STATUS, 0);
    let rx = RawQueue::new(region, QSIZE);
    let tx = RawQueue::new(region, QSIZE);
    bring_up(slot, RING, &[&rx, &tx]);
    tx
}

/// xorshift64: deterministic noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fills a queue with random descriptors (addresses mostly in RAM, sometimes near
/// its end or anywhere; random lengths, flags and links), random ring entries, and
/// now and then a random index. `rough` makes every part of it likelier to be bad.
fn scribble(q: &mut RawQueue, region: &SharedRegion, noise: &mut Noise, table: u64, rough: bool) {
    let end = region.guest_end();
    let odds = if rough { 4 } else { 64 };
    let addr = |noise: &mut Noise| match noise.below(odds) {
        0 => noise.next(),
        1 => end - noise.below(64),
        2 => table,
        _ => GUEST_BASE + 0x10_0000 + noise.below(0x8_0000),
    };
    // Mild rounds chain descriptors in order, readable ones first (mostly valid
    // shapes); rough ones link and flag them at random.
    let split = noise.below(u64::from(q.size)) as u16;
    let flags = |noise: &mut Noise, i: u16| {
        let indirect = if noise.below(odds) == 0 { desc::INDIRECT } else { 0 };
        let write = if rough { noise.below(2) == 1 } else { i >= split };
        (noise.below(2) as u16 * desc::NEXT) | if write { desc::WRITE } else { 0 } | indirect
    };
    for i in 0..q.size {
        let a = addr(noise);
        let len = match noise.below(odds) {
            0 => noise.next() as u32,
            1 => 0,
            _ => noise.below(2048) as u32,
        };
        let next = match noise.below(odds) {
            0 => noise.below(0x1_0000),
            _ if rough => noise.below(u64::from(q.size)),
            _ => u64::from(i) + 1,
        };
        q.set_desc(i, a, len, flags(noise, i), next as u16);
    }
    for i in 0..16 {
        let a = addr(noise);
        let len = noise.below(1024) as u32;
        let next = if rough { noise.below(20) as u16 } else { i as u16 + 1 };
        write_desc(region, table + 16 * i, a, len, flags(noise, i as u16), next);
    }
    for _ in 0..=noise.below(if rough { u64::from(q.size) } else { 3 }) {
        q.publish(noise.below(u64::from(q.size) + u64::from(rough)) as u16);
    }
    if noise.below(odds) == 0 {
        q.set_avail_idx(noise.next() as u16);
    }
}

/// What a round of random input may end in: completions naming real heads, or the
/// device asking for a reset. Never a panic (which would fail the test). Returns
/// the number of completions.
fn check_outcome(slot: &Slot, queues: &mut [&mut RawQueue]) -> usize {
    let mut used = 0;
    for q in queues.iter_mut() {
        while let Some((id, _len)) = q.pop_used() {
            assert!(id < u32::from(q.size), "used id {id}");
            used += 1;
        }
    }
    if slot.status() & status::DEVICE_NEEDS_RESET != 0 {
        assert_ne!(slot.interrupt_status() & interrupt::CONFIG_CHANGE, 0);
    }
    used
}

#[test]
fn random_rings_never_panic_the_devices() {
    let mut noise = Noise(0x5eed_1234_abcd_9876);
    let region = SharedRegion::with_default_size();
    let table = region.buffer(PAGE, 0);
    // Fill the buffers' area with noise too, so headers and segments are random.
    let junk: Vec<u8> = (0..0x9_0000).map(|_| noise.next() as u8).collect();
    region.write(GUEST_BASE + 0x10_0000, &junk).unwrap();
    let disk = Disk::patterned(64);
    let (mut resets, mut completions) = (0, 0);
    let rounds = 600;
    for round in 0..rounds {
        let legacy = round % 2 == 1;
        let rough = round % 3 == 0;
        let needs_reset = if round % 4 < 2 {
            let slot = blk_slot(&region, &disk, legacy, round % 8 == 0);
            let mut q = RawQueue::new(&region, QSIZE);
            bring_up(&slot, if round % 5 == 0 { 0 } else { RING }, &[&q]);
            scribble(&mut q, &region, &mut noise, table.guest_addr(), rough);
            notify(&slot, 0);
            completions += check_outcome(&slot, &mut [&mut q]);
            slot.status() & status::DEVICE_NEEDS_RESET != 0
        } else {
            let (slot, _sink) = console_slot(&region, legacy);
            let mut rx = RawQueue::new(&region, QSIZE);
            let mut tx = RawQueue::new(&region, QSIZE);
            bring_up(&slot, RING, &[&rx, &tx]);
            scribble(&mut rx, &region, &mut noise, table.guest_addr(), rough);
            scribble(&mut tx, &region, &mut noise, table.guest_addr() + 0x800, rough);
            notify(&slot, 1);
            slot.input(&junk[..noise.below(600) as usize]);
            notify(&slot, 0);
            completions += check_outcome(&slot, &mut [&mut rx, &mut tx]);
            slot.status() & status::DEVICE_NEEDS_RESET != 0
        };
        resets += usize::from(needs_reset);
    }
    // Both outcomes happen, many times.
    assert!(resets > rounds / 5 && resets < rounds * 4 / 5, "{resets} of {rounds} rounds needed a reset");
    assert!(completions > rounds / 2, "{completions} completions");
}

/// Register accesses a driver should not make: notifications too early or for
/// queues that don't exist, narrow accesses to control registers, selectors out of
/// range, bad queue sizes, stores to read-only configuration, accesses off the end
/// of the slot. Each is ignored; none disturbs the device.
#[test]
fn stray_register_accesses_are_ignored() {
    use hypervisor::devices::AccessWidth::{Byte, Double, Half, Word};
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(16);
        let slot = blk_slot(&region, &disk, legacy, false);
        let mut q = RawQueue::new(&region, QSIZE);
        bring_up(&slot, RING, &[&q]);
        let data = region.buffer(SECTOR, 0);
        let mut hdr = region.buffer(16, 0);
        hdr.as_mut_slice()[8] = 2;
        let status_buf = region.buffer(1, 0);
        let request = [
            (hdr.guest_addr(), 16, R),
            (data.guest_addr(), SECTOR as u32, W),
            (status_buf.guest_addr(), 1, W),
        ];

        // Notifications for queues that don't exist.
        q.add_chain(&request);
        for queue in [1, 7, 0xffff, u32::MAX] {
            slot.write32(reg::QUEUE_NOTIFY, queue);
        }
        assert_eq!(q.pop_used(), None);
        // Narrow and misaligned control accesses read 0 and change nothing: an 8-bit
        // store of 0 to Status is not a reset.
        let live = slot.status();
        for (offset, width) in
            [(0x70, Byte), (0x70, Half), (0x72, Half), (0x71, Word), (0x70, Double), (0x50, Byte)]
        {
            slot.write(offset, width, 0);
            assert_eq!(slot.read(offset, width), 0, "{offset:#x} {width:?}");
        }
        assert_eq!(slot.status(), live);
        assert_eq!(q.pop_used(), None, "a narrow QueueNotify is no notify");
        // The queue's registers cannot change under a live queue, nor can features.
        slot.write32(reg::QUEUE_SEL, 0);
        slot.write32(reg::QUEUE_NUM, 2);
        slot.write32(reg::DRIVER_FEATURES_SEL, 0);
        slot.write32(reg::DRIVER_FEATURES, u32::MAX);
        // Selectors past the end.
        slot.write32(reg::QUEUE_SEL, u32::MAX);
        assert_eq!(slot.read32(reg::QUEUE_NUM_MAX), 0);
        slot.write32(reg::QUEUE_NUM, 4);
        slot.write32(reg::DEVICE_FEATURES_SEL, 7);
        assert_eq!(slot.read32(reg::DEVICE_FEATURES), 0);
        slot.write32(reg::QUEUE_SEL, 0);
        // Read-only configuration, and accesses running off the slot's end.
        for width in [Byte, Half, Word, Double] {
            slot.write(0x100, width, u64::MAX);
            slot.write(0x1ff, width, u64::MAX);
            assert_eq!(slot.read(0x1ff, width), 0);
            assert_eq!(slot.read(0x1fc, width) & 0xff, 0);
        }
        assert_eq!(slot.read(0x100, Double), disk.sectors(), "capacity unchanged");

        // After all that, the request made before runs on a proper notify.
        notify(&slot, 0);
        assert_eq!(q.pop_used(), Some((0, SECTOR as u32 + 1)), "legacy {legacy}");
        assert_eq!(status_buf.as_slice(), [S_OK]);
        assert_eq!(data.as_slice(), disk.read(2, 1));
        assert_eq!(slot.status(), live);

        // A queue size that is not a power of two is refused at setup.
        slot.write32(reg::STATUS, 0);
        slot.write32(reg::QUEUE_SEL, 0);
        slot.write32(reg::QUEUE_NUM, 6);
        assert_eq!(slot.read32(reg::QUEUE_NUM), 256, "QueueNum 6 refused");

        // Before DRIVER_OK the device does no work; the chain waits for a notify
        // after it.
        slot.write32(reg::STATUS, 3);
        slot.write32(reg::DRIVER_FEATURES_SEL, 1);
        slot.write32(reg::DRIVER_FEATURES, u32::from(!legacy));
        if !legacy {
            slot.write32(reg::STATUS, 11);
        }
        let mut q = RawQueue::new(&region, QSIZE);
        slot.write32(reg::QUEUE_NUM, u32::from(QSIZE));
        if legacy {
            slot.write32(reg::LEGACY_QUEUE_PFN, (q.desc / PAGE as u64) as u32);
        } else {
            write_ring_addresses(&slot, q.desc, q.avail, q.used);
            slot.write32(reg::QUEUE_READY, 1);
        }
        q.add_chain(&request);
        notify(&slot, 0);
        assert_eq!(q.pop_used(), None, "legacy {legacy}: work before DRIVER_OK");
        slot.write32(reg::STATUS, if legacy { 7 } else { 15 });
        notify(&slot, 0);
        assert_eq!(q.pop_used(), Some((0, SECTOR as u32 + 1)), "legacy {legacy}");
    }
}

/// Random rings against Sluice's virtio-blk on the machine's disk (`HostBlk`, the
/// host disk a model: see `sluice_tests::host_disk`): whatever a guest puts in its
/// ring, Sluice hands the host disk only what it checked, so the host device never
/// refuses anything (it would want a reset) and nothing panics; a reset of the
/// guest's device after each round waits for what the host still has.
#[test]
fn random_rings_reach_the_host_disk_only_checked() {
    use sluice_tests::host_disk::HostDiskRig;
    let mut noise = Noise(0x0d15_c0de_5eed_0013);
    let (mut resets, mut completions, mut forwarded) = (0, 0, 0);
    let rounds = 300;
    for round in 0..rounds {
        let rig = HostDiskRig::new(64, 256, round % 8 == 0);
        // Random headers, ranges and data where the chains point (the data window).
        let junk: Vec<u8> = (0..0x9_0000).map(|_| noise.next() as u8).collect();
        rig.write_data(0, &junk);
        let table = rig.rings.buffer(PAGE, 0);
        let mut q = RawQueue::new(&rig.rings, QSIZE);
        bring_up(&rig.vm, if round % 5 == 0 { 0 } else { RING }, &[&q]);
        if round % 2 == 0 {
            plausible_requests(&mut q, &rig, &mut noise);
        } else {
            scribble(&mut q, &rig.rings, &mut noise, table.guest_addr(), round % 3 == 0);
        }
        notify(&rig.vm, 0);
        for _ in 0..4 {
            rig.host_interrupt();
        }
        completions += check_outcome(&rig.vm, &mut [&mut q]);
        resets += usize::from(rig.vm.status() & status::DEVICE_NEEDS_RESET != 0);
        assert_eq!(
            rig.host.status() & status::DEVICE_NEEDS_RESET,
            0,
            "round {round}: Sluice handed the host disk something it refused"
        );
        rig.vm.write32(reg::STATUS, 0);
        forwarded += rig.host.stats().notifies;
    }
    assert!(resets > 0 && resets < rounds, "{resets} of {rounds} rounds needed a reset");
    assert!(completions > rounds / 4, "{completions} completions");
    assert!(forwarded > rounds as u64 / 10, "only {forwarded} requests reached the host disk");
}

/// Requests shaped like a driver's, with random types (some unknown), sectors (some
/// past the end), data pieces (lengths whole sectors or not, some outside RAM, some
/// across the data window's middle, where the VM's RAM is two host pieces) and
/// DISCARD/WRITE_ZEROES ranges (some past the end, some with flags), for
/// `random_rings_reach_the_host_disk_only_checked`: many reach the host disk.
fn plausible_requests(q: &mut RawQueue, rig: &sluice_tests::host_disk::HostDiskRig, noise: &mut Noise) {
    const TYPES: [u32; 7] = [0, 1, 4, 8, 11, 13, 99];
    let middle = rig.data.len() / 2;
    for request in 0..2usize {
        let base = request * 0x2_0000;
        let kind = TYPES[noise.below(7) as usize];
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&noise.below(80).to_le_bytes());
        rig.write_data(base, &header);
        let mut chain = vec![(rig.data_ipa(base), 16, R)];
        if kind == 11 || kind == 13 {
            let count = 1 + noise.below(3) as usize;
            for i in 0..count {
                let mut range = [0u8; 16];
                range[..8].copy_from_slice(&noise.below(70).to_le_bytes());
                range[8..12].copy_from_slice(&(noise.below(8) as u32).to_le_bytes());
                range[12..].copy_from_slice(&(noise.below(4) as u32 / 3).to_le_bytes());
                rig.write_data(base + 16 + 16 * i, &range);
            }
            chain.push((rig.data_ipa(base + 16), 16 * count as u32, R));
        } else if kind != 4 {
            for _ in 0..=noise.below(3) {
                let len = [512, 1024, 4096, 100, 0][noise.below(5) as usize];
                let addr = match noise.below(8) {
                    0 => 0x1000,
                    1 => rig.data_ipa(middle - 512),
                    _ => rig.data_ipa(0x4_0000 + noise.below(0x1_0000) as usize),
                };
                chain.push((addr, len, kind != 1));
            }
        }
        chain.push((rig.data_ipa(base + 0x1000), 1, W));
        q.add_chain(&chain);
    }
}
