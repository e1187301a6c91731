//! Two channel ends, each in a VM of its own (fake RAM each), driven by the test
//! driver, joined by a link.

use super::*;
use crate::devices::virtio::testing::{bring_up, ram, w, DriverQueue, RAM_BASE};
use crate::devices::virtio::transport_features;
use alloc::vec;
use alloc::vec::Vec;

/// One end: its device, its VM's memory, its driver's queues.
struct End {
    dev: VirtioMmio,
    mem: GuestMemory,
    rx: DriverQueue,
    tx: DriverQueue,
}

/// Where an end's driver keeps its data: transmit bytes, then receive buffers.
const TX_DATA: u64 = RAM_BASE + 0x2_0000;
const RX_DATA: u64 = RAM_BASE + 0x8_0000;

const FEATURES: u64 = transport_features::VERSION_1 | transport_features::RING_EVENT_IDX;

fn end(link: &Arc<Link>) -> End {
    let mem = ram();
    let dev = VirtioMmio::new(Box::new(ChannelPort::new(link.clone())), mem.clone(), false);
    let rx = DriverQueue::new(&mem, 16, RAM_BASE);
    let tx = DriverQueue::new(&mem, 16, RAM_BASE + 0x1_0000);
    let mut end = End { dev, mem, rx, tx };
    bring_up(&mut end.dev, FEATURES, &[&end.rx, &end.tx]);
    end
}

/// Two live ends of link "c".
fn pair() -> (Arc<Link>, End, End) {
    let link = Arc::new(Link::new("c", (1, 0), (0, 2)));
    assert_eq!(link.ends(), [(0, 2), (1, 0)], "ends in lock order");
    let (a, b) = (end(&link), end(&link));
    (link, a, b)
}

impl End {
    /// Queues `bytes` for transmission at `at` (offset in TX_DATA) and notifies.
    fn send(&mut self, at: u64, bytes: &[u8]) -> u16 {
        self.mem.write(TX_DATA + at, bytes).unwrap();
        let head = self.tx.add(&self.mem, &[(TX_DATA + at, bytes.len() as u32, false)]);
        w(&mut self.dev, 0x50, 1);
        head
    }

    /// Posts a receive buffer of `len` bytes at `at` (offset in RX_DATA) and notifies.
    fn post(&mut self, at: u64, len: u32) -> u16 {
        let head = self.rx.add(&self.mem, &[(RX_DATA + at, len, true)]);
        w(&mut self.dev, 0x50, 0);
        head
    }

    /// Everything received so far, in order, from buffers posted at `ats` (each
    /// taken off the list once used: the test driver reuses descriptors).
    fn received(&mut self, ats: &mut Vec<(u16, u64)>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((id, len)) = self.rx.take_used(&self.mem) {
            let index = ats.iter().position(|(head, _)| u32::from(*head) == id).expect("a posted buffer");
            let at = ats.remove(index).1;
            let mut bytes = vec![0; len as usize];
            self.mem.read(RX_DATA + at, &mut bytes).unwrap();
            out.extend(bytes);
        }
        out
    }
}

/// Transfers until nothing is due (each call one budget), as the exits would.
fn run(link: &Link, a: &mut End, b: &mut End) -> u32 {
    let mut transfers = 0;
    while link.take_due() {
        link.transfer(&mut a.dev, &mut b.dev, &mut Budget::per_call());
        transfers += 1;
        assert!(transfers < 10_000, "the link never settles");
    }
    transfers
}

#[test]
fn bytes_arrive_in_order_once_into_odd_buffers() {
    let (link, mut a, mut b) = pair();
    let text: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut posted = Vec::new();
    // Buffers of odd sizes: 1, 7, 13, ... bytes.
    let mut at = 0;
    for len in (0..16).map(|i| 1 + 6 * i) {
        posted.push((b.post(at, len), at));
        at += u64::from(len);
    }
    a.send(0, &text[..400]);
    a.send(400, &text[400..]);
    run(&link, &mut a, &mut b);
    let mut got = b.received(&mut posted);
    // 16 buffers hold 736 bytes: the rest waits for more.
    assert_eq!(got, text[..got.len()]);
    assert_eq!(got.len(), 736);
    assert_eq!(a.tx.take_used(&a.mem), Some((0, 0)), "the first chain went whole");
    assert_eq!(a.tx.take_used(&a.mem), None, "the second waits: backpressure");
    // More buffers: the rest comes, then the second chain is returned.
    for i in 0..2 {
        posted.push((b.post(0x1000 + 0x200 * i, 0x200), 0x1000 + 0x200 * i));
    }
    run(&link, &mut a, &mut b);
    got.extend(b.received(&mut posted));
    assert_eq!(got, text);
    assert_eq!(a.tx.take_used(&a.mem), Some((1, 0)));
    assert_eq!((link.moved(0), link.moved(1)), (1000, 0), "counted from the first device given");
}

#[test]
fn both_ways_at_once() {
    let (link, mut a, mut b) = pair();
    let (mut pa, mut pb) = (vec![(a.post(0, 64), 0)], vec![(b.post(0, 64), 0)]);
    a.send(0, b"ping");
    b.send(0, b"pong");
    run(&link, &mut a, &mut b);
    assert_eq!(b.received(&mut pb), b"ping");
    assert_eq!(a.received(&mut pa), b"pong");
}

#[test]
fn a_receiver_that_never_reads_stalls_only_the_sender_s_ring() {
    let (link, mut a, mut b) = pair();
    for i in 0..16 {
        a.send(i * 16, b"0123456789abcdef");
    }
    run(&link, &mut a, &mut b);
    assert_eq!(a.tx.take_used(&a.mem), None, "nothing returned: the ring is full, no error");
    assert_eq!(a.dev.status() & crate::devices::virtio::status::DEVICE_NEEDS_RESET, 0);
    // The other way still works.
    let mut pa = vec![(a.post(0, 64), 0)];
    b.send(0, b"still here");
    run(&link, &mut a, &mut b);
    assert_eq!(a.received(&mut pa), b"still here");
}

#[test]
fn a_flood_goes_a_budget_at_a_time_without_loss() {
    let (link, mut a, mut b) = pair();
    // 8 chains of 40 KiB into 12 buffers of 40 KiB: 320 KiB, five budgets at
    // least; a buffer a budget stopped in is returned part full.
    let chunk: Vec<u8> = (0..0xa000u32).map(|i| (i * 7 % 256) as u8).collect();
    let mut posted = Vec::new();
    for i in 0..12u64 {
        if i < 8 {
            a.send(0, &chunk);
        }
        let at = 0xa000 * i;
        posted.push((b.post(at, 0xa000), at));
    }
    let transfers = run(&link, &mut a, &mut b);
    assert!(transfers >= 5, "{transfers} transfers for 320 KiB");
    let got = b.received(&mut posted);
    assert_eq!(got.len(), 8 * 0xa000);
    assert!(got.chunks(0xa000).all(|c| c == chunk));
    assert_eq!((0..8).filter_map(|_| a.tx.take_used(&a.mem)).count(), 8, "every chain returned once");
}

#[test]
fn a_reset_drops_the_chain_in_flight_and_counts_it_and_the_link_goes_on() {
    let (link, mut a, mut b) = pair();
    let mut posted = vec![(b.post(0, 10), 0)];
    a.send(0, b"0123456789abcdefghij");
    run(&link, &mut a, &mut b);
    assert_eq!(b.received(&mut posted), b"0123456789");
    // a's driver resets with 10 bytes not delivered.
    w(&mut a.dev, 0x70, 0);
    a.tx = DriverQueue::new(&a.mem, 16, RAM_BASE + 0x1_0000);
    a.rx = DriverQueue::new(&a.mem, 16, RAM_BASE);
    bring_up(&mut a.dev, FEATURES, &[&a.rx, &a.tx]);
    posted.push((b.post(0x100, 64), 0x100));
    a.send(0, b"after");
    run(&link, &mut a, &mut b);
    assert_eq!(b.received(&mut posted), b"after", "nothing of the dropped rest, nothing twice");
}

#[test]
fn a_peer_that_is_not_live_holds_the_bytes_until_it_is() {
    let link = Arc::new(Link::new("c", (0, 0), (1, 0)));
    let mut a = end(&link);
    let mem = ram();
    let mut b_dev = VirtioMmio::new(Box::new(ChannelPort::new(link.clone())), mem.clone(), false);
    a.send(0, b"early");
    link.take_due();
    link.transfer(&mut a.dev, &mut b_dev, &mut Budget::per_call());
    assert_eq!(a.tx.take_used(&a.mem), None, "held, not dropped");
    let (rx, tx) = (DriverQueue::new(&mem, 16, RAM_BASE), DriverQueue::new(&mem, 16, RAM_BASE + 0x1_0000));
    bring_up(&mut b_dev, FEATURES, &[&rx, &tx]);
    let mut b = End { dev: b_dev, mem, rx, tx };
    let mut posted = vec![(b.post(0, 64), 0)];
    run(&link, &mut a, &mut b);
    assert_eq!(b.received(&mut posted), b"early");
}

#[test]
fn a_bad_ring_resets_its_own_device_only() {
    let (link, mut a, mut b) = pair();
    // b posts a buffer outside its RAM.
    b.rx.add(&b.mem, &[(0x1000, 64, true)]);
    w(&mut b.dev, 0x50, 0);
    a.send(0, b"x");
    run(&link, &mut a, &mut b);
    let needs_reset = crate::devices::virtio::status::DEVICE_NEEDS_RESET;
    assert_ne!(b.dev.status() & needs_reset, 0, "b's driver broke its ring");
    assert_eq!(a.dev.status() & needs_reset, 0, "a goes on");
    assert_eq!(a.tx.take_used(&a.mem), None, "a's bytes wait for b's reset");
}
