//! virtio-console through the transport, from the test driver.

use super::*;
use crate::console::ConsoleOutput;
use crate::devices::virtio::testing::{bring_up, r, ram, w, DriverQueue, RAM_BASE, RAM_SIZE};
use crate::devices::virtio::{transport_features, VirtioMmio};
use crate::devices::{AccessWidth, MmioDevice};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::{Arc, Mutex};

/// A console sink that collects the bytes.
struct Collect(Arc<Mutex<Vec<u8>>>);

impl ConsoleOutput for Collect {
    fn write(&mut self, bytes: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(bytes);
    }
}

struct Rig {
    dev: VirtioMmio,
    mem: GuestMemory,
    out: Arc<Mutex<Vec<u8>>>,
    rx: DriverQueue,
    tx: DriverQueue,
}

const FEATURES: u64 = feature::EMERG_WRITE
    | transport_features::VERSION_1
    | transport_features::RING_EVENT_IDX
    | transport_features::RING_INDIRECT_DESC;

fn device() -> (VirtioMmio, GuestMemory, Arc<Mutex<Vec<u8>>>) {
    let mem = ram();
    let out = Arc::new(Mutex::new(Vec::new()));
    let console = Console::new(Box::new(Collect(out.clone())));
    (VirtioMmio::new(Box::new(console), mem.clone(), false), mem, out)
}

fn rig() -> Rig {
    let (mut dev, mem, out) = device();
    let rx = DriverQueue::new(&mem, 8, RAM_BASE);
    let tx = DriverQueue::new(&mem, 8, RAM_BASE + 0x1_0000);
    bring_up(&mut dev, FEATURES, &[&rx, &tx]);
    Rig { dev, mem, out, rx, tx }
}

/// A rig whose driver queued two chains of 256 KiB each on the transmit queue and
/// notified: the first budget is spent, the rest is backlog.
fn rig_sending_more_than_a_budget() -> Rig {
    let mut rig = rig();
    let text = vec![b'x'; 0x4_0000];
    rig.mem.write(RAM_BASE + 0x2_0000, &text).unwrap();
    rig.tx.add(&rig.mem, &[(RAM_BASE + 0x2_0000, text.len() as u32, false); 2]);
    w(&mut rig.dev, 0x50, 1);
    assert!(rig.dev.has_backlog());
    rig
}

fn buf(n: u64) -> u64 {
    RAM_BASE + 0x8_0000 + n * 0x1000
}

impl Rig {
    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    fn post_rx(&mut self, n: u64, len: u32) -> u16 {
        self.mem.write(buf(n), &vec![0xee; len as usize]).unwrap();
        self.rx.add(&self.mem, &[(buf(n), len, true)])
    }

    fn received(&mut self, n: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read(buf(n), &mut v).unwrap();
        v
    }
}

#[test]
fn identity_features_and_config() {
    let (mut dev, _, _) = device();
    assert_eq!(r(&mut dev, 0x08), 3);
    assert_eq!(dev.name(), "virtio-console");
    assert_eq!(dev.backend().features(), feature::EMERG_WRITE);
    assert_eq!(dev.backend().queue_count(), 2);
    // cols, rows, max_nr_ports, emerg_wr.
    assert_eq!(dev.read(0x100, AccessWidth::Word), 0);
    assert_eq!(dev.read(0x104, AccessWidth::Word), 1);
    assert_eq!(dev.read(0x108, AccessWidth::Word), 0);
    assert_eq!(dev.read(0x10c, AccessWidth::Word), 0);
}

#[test]
fn transmit_reaches_the_sink() {
    let mut rig = rig();
    rig.mem.write(buf(0), b"hello ").unwrap();
    rig.mem.write(buf(1), b"world\n").unwrap();
    let a = rig.tx.add(&rig.mem, &[(buf(0), 6, false), (buf(1), 6, false)]);
    let long: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    rig.mem.write(buf(2), &long).unwrap();
    let b = rig.tx.add(&rig.mem, &[(buf(2), 1000, false)]);
    w(&mut rig.dev, 0x50, 1);
    assert_eq!(rig.tx.take_used(&rig.mem), Some((u32::from(a), 0)));
    assert_eq!(rig.tx.take_used(&rig.mem), Some((u32::from(b), 0)));
    let mut want = b"hello world\n".to_vec();
    want.extend_from_slice(&long);
    assert_eq!(rig.output(), want);
    assert!(rig.dev.interrupt_level());
}

#[test]
fn receive_fills_posted_buffers() {
    let mut rig = rig();
    let a = rig.post_rx(0, 4);
    let b = rig.post_rx(1, 4);
    w(&mut rig.dev, 0x50, 0);
    assert!(!rig.dev.interrupt_level(), "nothing to receive yet");
    assert_eq!(rig.dev.input(b"abcdef"), 6);
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(a), 4)));
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(b), 2)));
    assert_eq!(rig.received(0, 4), b"abcd");
    assert_eq!(rig.received(1, 4), b"ef\xee\xee");
    assert!(rig.dev.interrupt_level());
    assert_eq!(rig.dev.backend().input_dropped(), 0);
}

#[test]
fn input_is_held_until_buffers_are_posted() {
    let mut rig = rig();
    assert_eq!(rig.dev.input(b"xyz"), 3);
    assert!(!rig.dev.interrupt_level());
    assert_eq!(rig.dev.input(b"!"), 1);
    let head = rig.post_rx(0, 16);
    // Posting alone does nothing until the driver notifies.
    assert!(rig.rx.take_used(&rig.mem).is_none());
    w(&mut rig.dev, 0x50, 0);
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(head), 4)));
    assert_eq!(rig.received(0, 4), b"xyz!");
    assert!(rig.dev.interrupt_level());
}

#[test]
fn input_across_the_ring_boundary_and_overflow() {
    let mut rig = rig();
    let first: Vec<u8> = (0..3000).map(|i| i as u8).collect();
    assert_eq!(rig.dev.input(&first), 3000);
    let head = rig.post_rx(0, 3000);
    w(&mut rig.dev, 0x50, 0);
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(head), 3000)));
    // Now the held bytes wrap around the end of the ring.
    let second: Vec<u8> = (0..5000).map(|i| (i * 3) as u8).collect();
    assert_eq!(rig.dev.input(&second), INPUT_CAPACITY);
    assert_eq!(rig.dev.backend().input_dropped(), (5000 - INPUT_CAPACITY) as u64);
    let head = rig.post_rx(0, 0x1000);
    w(&mut rig.dev, 0x50, 0);
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(head), INPUT_CAPACITY as u32)));
    assert_eq!(rig.received(0, INPUT_CAPACITY), second[..INPUT_CAPACITY]);
}

#[test]
fn input_before_driver_ok_waits_for_it() {
    let (mut dev, mem, _) = device();
    let mut rx = DriverQueue::new(&mem, 8, RAM_BASE);
    let tx = DriverQueue::new(&mem, 8, RAM_BASE + 0x1_0000);
    // The driver posts receive buffers while setting up, before DRIVER_OK.
    w(&mut dev, 0x70, 3);
    w(&mut dev, 0x24, 1);
    w(&mut dev, 0x20, 1);
    w(&mut dev, 0x70, 11);
    for (i, q) in [&rx, &tx].into_iter().enumerate() {
        w(&mut dev, 0x30, i as u32);
        w(&mut dev, 0x38, 8);
        for (offset, addr) in [(0x80, q.desc), (0x90, q.avail), (0xa0, q.used)] {
            w(&mut dev, offset, addr as u32);
            w(&mut dev, offset + 4, (addr >> 32) as u32);
        }
        w(&mut dev, 0x44, 1);
    }
    let head = rx.add(&mem, &[(buf(0), 8, true)]);
    assert_eq!(dev.input(b"hi"), 2);
    assert!(rx.take_used(&mem).is_none(), "not before DRIVER_OK");
    w(&mut dev, 0x70, 15);
    assert_eq!(rx.take_used(&mem), Some((u32::from(head), 2)));
    assert!(dev.interrupt_level());
}

#[test]
fn a_reset_drops_held_input() {
    let mut rig = rig();
    rig.dev.input(b"stale");
    let rx = DriverQueue::new(&rig.mem, 8, RAM_BASE);
    let tx = DriverQueue::new(&rig.mem, 8, RAM_BASE + 0x1_0000);
    bring_up(&mut rig.dev, FEATURES, &[&rx, &tx]);
    rig.rx = rx;
    let head = rig.post_rx(0, 8);
    rig.dev.input(b"new");
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(head), 3)));
    assert_eq!(rig.received(0, 3), b"new");
}

#[test]
fn receive_chain_without_writable_bytes_completes_empty() {
    let mut rig = rig();
    let a = rig.rx.add(&rig.mem, &[(buf(0), 8, false)]);
    let b = rig.post_rx(1, 8);
    rig.dev.input(b"ok");
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(a), 0)));
    assert_eq!(rig.rx.take_used(&rig.mem), Some((u32::from(b), 2)));
}

#[test]
fn emergency_write() {
    // Works on a device nobody set up.
    let (mut dev, _, out) = device();
    dev.write(0x108, AccessWidth::Word, u64::from(b'A') | 0xffff_ff00);
    dev.write(0x108, AccessWidth::Byte, u64::from(b'B'));
    // Bytes 9..11 of emerg_wr, and other fields, send nothing.
    dev.write(0x109, AccessWidth::Byte, u64::from(b'x'));
    dev.write(0x104, AccessWidth::Word, u64::from(b'y'));
    // A 64-bit store at 0x104 covers emerg_wr's first byte with its fifth byte.
    dev.write(0x104, AccessWidth::Double, u64::from(b'C') << 32);
    assert_eq!(out.lock().unwrap().as_slice(), b"ABC");
    assert_eq!(dev.read(0x108, AccessWidth::Word), 0);
}

#[test]
fn bad_transmit_buffer_needs_reset() {
    let mut rig = rig();
    rig.tx.add(&rig.mem, &[(RAM_BASE + RAM_SIZE - 2, 4, false)]);
    w(&mut rig.dev, 0x50, 1);
    assert_eq!(r(&mut rig.dev, 0x70) & 0x40, 0x40);
    assert_eq!(r(&mut rig.dev, 0x60), 2);
    assert!(rig.output().is_empty());
    // Input is still taken (held) but not delivered.
    let _ = rig.post_rx(0, 8);
    assert_eq!(rig.dev.input(b"q"), 1);
    assert!(rig.rx.take_used(&rig.mem).is_none());
}

#[test]
fn a_huge_chain_goes_out_a_budget_per_call_in_order() {
    use crate::devices::virtio::budget::BYTES_PER_CALL;
    let mut rig = rig();
    // Four descriptors that all point at the same 256 KiB: 1 MiB to send, as a hostile
    // driver would (the test queue has 8 entries).
    let text: Vec<u8> = (0..0x4_0000u32).map(|i| b'a' + (i % 26) as u8).collect();
    rig.mem.write(RAM_BASE + 0x2_0000, &text).unwrap();
    let huge = rig.tx.add(&rig.mem, &[(RAM_BASE + 0x2_0000, text.len() as u32, false); 4]);
    rig.mem.write(buf(0), b"after\n").unwrap();
    let after = rig.tx.add(&rig.mem, &[(buf(0), 6, false)]);

    w(&mut rig.dev, 0x50, 1);
    assert_eq!(rig.output().len() as u64, BYTES_PER_CALL, "one notify sends one budget");
    assert!(rig.dev.has_backlog());
    assert_eq!(rig.tx.take_used(&rig.mem), None, "the chain is returned only once all of it went");

    let mut calls = 1;
    while rig.dev.has_backlog() {
        let before = rig.output().len() as u64;
        rig.dev.work_on_backlog();
        assert!(rig.output().len() as u64 - before <= BYTES_PER_CALL);
        calls += 1;
        assert!(calls < 100, "the backlog never ends");
    }
    let total = 4 * text.len() as u64;
    assert_eq!(calls, total.div_ceil(BYTES_PER_CALL) + u64::from(total.is_multiple_of(BYTES_PER_CALL)));
    let mut want: Vec<u8> = text.repeat(4);
    want.extend_from_slice(b"after\n");
    assert!(rig.output() == want, "all of it, in order, then the next chain");
    assert_eq!(rig.tx.take_used(&rig.mem), Some((u32::from(huge), 0)));
    assert_eq!(rig.tx.take_used(&rig.mem), Some((u32::from(after), 0)));
}

#[test]
fn a_reset_forgets_the_chain_being_sent() {
    let mut rig = rig_sending_more_than_a_budget();
    w(&mut rig.dev, 0x70, 0);
    assert!(!rig.dev.has_backlog());
    let sent = rig.output().len();
    rig.dev.work_on_backlog();
    assert_eq!(rig.output().len(), sent);
}

/// A console sink whose share is `allowance` bytes, topped up by the test.
struct Metered {
    out: Arc<Mutex<Vec<u8>>>,
    allowance: Arc<Mutex<usize>>,
}

impl ConsoleOutput for Metered {
    fn write(&mut self, bytes: &[u8]) {
        self.offer(bytes);
    }

    fn offer(&mut self, bytes: &[u8]) -> usize {
        let mut allowance = self.allowance.lock().unwrap();
        let taken = bytes.len().min(*allowance);
        *allowance -= taken;
        self.out.lock().unwrap().extend_from_slice(&bytes[..taken]);
        taken
    }
}

#[test]
fn output_beyond_the_share_waits_in_the_guests_buffer_and_nothing_is_lost() {
    let mem = ram();
    let out = Arc::new(Mutex::new(Vec::new()));
    let allowance = Arc::new(Mutex::new(100));
    let console = Console::new(Box::new(Metered { out: out.clone(), allowance: allowance.clone() }));
    let mut dev = VirtioMmio::new(Box::new(console), mem.clone(), false);
    let rx = DriverQueue::new(&mem, 8, RAM_BASE);
    let mut tx = DriverQueue::new(&mem, 8, RAM_BASE + 0x1_0000);
    bring_up(&mut dev, FEATURES, &[&rx, &tx]);
    let text: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    mem.write(buf(0), &text).unwrap();
    let head = tx.add(&mem, &[(buf(0), 1000, false)]);
    w(&mut dev, 0x50, 1);
    assert_eq!(out.lock().unwrap().len(), 100, "the share's worth went");
    assert!(dev.has_backlog());
    dev.work_on_backlog();
    assert_eq!(out.lock().unwrap().len(), 100, "no share, no progress");
    assert_eq!(tx.take_used(&mem), None, "the buffer is still the device's");
    *allowance.lock().unwrap() = 10_000;
    dev.work_on_backlog();
    assert_eq!(*out.lock().unwrap(), text, "all of it, once, in order");
    assert_eq!(tx.take_used(&mem), Some((u32::from(head), 0)));
    assert!(!dev.has_backlog());
}

#[test]
fn a_queue_taken_down_leaves_no_backlog_behind() {
    let mut rig = rig_sending_more_than_a_budget();
    // QueueSel 1, QueueReady 0: the driver takes the transmit queue down.
    w(&mut rig.dev, 0x30, 1);
    w(&mut rig.dev, 0x44, 0);
    rig.dev.work_on_backlog();
    assert!(!rig.dev.has_backlog(), "nothing is left to come back for");
}
