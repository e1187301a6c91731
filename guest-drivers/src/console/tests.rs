//! The console driver against a fake virtio-console device.

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::*;
use crate::fake::{FakeHal, FakeQueueDevice, FakeTransport};
use crate::features::{RING_EVENT_IDX, RING_INDIRECT_DESC, VERSION_1};

/// What the fake device's transmit side received.
type Output = Arc<Mutex<Vec<u8>>>;

/// A console offering `features`, whose transmit queue is served on each notify.
fn device(features: u64, queue_max: u16) -> (FakeTransport, Output) {
    let transport = FakeTransport::new(device_id::CONSOLE, features | VERSION_1, &[queue_max, queue_max], 12);
    transport.set_config(CONFIG_COLS, &80u16.to_le_bytes());
    transport.set_config(CONFIG_ROWS, &25u16.to_le_bytes());
    let output = Output::default();
    let out = output.clone();
    let mut tx: Option<FakeQueueDevice> = None;
    transport.set_notify_hook(move |state, queue| {
        if queue != TRANSMITQ {
            return;
        }
        let event_idx = state.driver_features & RING_EVENT_IDX != 0;
        let tx = tx.get_or_insert_with(|| FakeQueueDevice::new(&state.queues[1], event_idx));
        while let Some(chain) = tx.pop() {
            out.lock().unwrap().extend(chain.readable());
            tx.push_used(chain.head, 0);
        }
    });
    (transport, output)
}

type Console = VirtioConsole<FakeHal, FakeTransport>;

/// Types `input` into the device: fills the next posted receive buffers.
fn type_in(rx: &mut FakeQueueDevice, input: &[u8]) {
    let chain = rx.pop().expect("a posted receive buffer");
    assert_eq!(chain.descs.len(), 1);
    assert!(chain.descs[0].writable);
    let n = chain.write(input);
    assert_eq!(n as usize, input.len());
    rx.push_used(chain.head, n);
}

#[test]
fn initialisation_posts_receive_buffers_then_notifies_after_driver_ok() {
    let (transport, _out) = device(F_SIZE | RING_EVENT_IDX, 64);
    let console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    let s = transport.state();
    assert_eq!(s.status_log, [0, 1, 3, 11, 15]);
    assert_eq!(s.notifications, [RECEIVEQ]);
    drop(s);
    let rx = FakeQueueDevice::attach(&transport, RECEIVEQ);
    assert_eq!(rx.pending(), RX_BUFFERS as u16);
    assert_eq!(console.size(), Some((80, 25)));
    // A small queue gets as many buffers as fit.
    let (transport, _out) = device(0, 4);
    let console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    assert_eq!(FakeQueueDevice::attach(&transport, RECEIVEQ).pending(), 4);
    assert_eq!(console.size(), None);
}

#[test]
fn write_sends_the_bytes_and_waits() {
    for ring in [0, RING_EVENT_IDX] {
        let (transport, out) = device(ring, 16);
        let mut console = Console::new(transport, FakeHal::new()).unwrap();
        console.write(b"hello, ").unwrap();
        console.write(b"world\n").unwrap();
        console.write(b"").unwrap();
        for _ in 0..40 {
            console.write(b".").unwrap();
        }
        let mut expected = b"hello, world\n".to_vec();
        expected.extend([b'.'; 40]);
        assert_eq!(*out.lock().unwrap(), expected);
    }
}

#[test]
fn read_copies_from_filled_buffers_and_posts_them_again() {
    for ring in [0, RING_EVENT_IDX] {
        let (transport, _out) = device(ring, 64);
        let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
        let mut rx = FakeQueueDevice::attach(&transport, RECEIVEQ);
        let mut buf = [0u8; 8];
        assert_eq!(console.read(&mut buf), Ok(0));
        assert!(!console.has_input());
        assert!(console.enable_rx_interrupts());

        type_in(&mut rx, b"hi");
        assert!(console.has_input());
        assert!(!console.enable_rx_interrupts(), "input waiting: read it");
        assert_eq!(console.read(&mut buf[..1]), Ok(1));
        assert_eq!(buf[0], b'h');
        assert_eq!(rx.pending(), RX_BUFFERS as u16 - 1, "not empty yet: not re-posted");
        assert_eq!(console.read(&mut buf), Ok(1));
        assert_eq!(buf[0], b'i');
        assert_eq!(rx.pending(), RX_BUFFERS as u16, "emptied: posted again");

        // Input spread over several buffers is read in one go.
        type_in(&mut rx, b"abc");
        type_in(&mut rx, b"defg");
        assert_eq!(console.read(&mut buf), Ok(7));
        assert_eq!(&buf[..7], b"abcdefg");
        assert!(console.enable_rx_interrupts());
    }
}

#[test]
fn every_buffer_cycles_through_many_times() {
    let (transport, _out) = device(RING_EVENT_IDX, 16);
    let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    let mut rx = FakeQueueDevice::attach(&transport, RECEIVEQ);
    let mut got = Vec::new();
    for i in 0..1000u32 {
        type_in(&mut rx, &i.to_le_bytes());
        let mut buf = [0u8; 4];
        assert_eq!(console.read(&mut buf), Ok(4));
        got.push(u32::from_le_bytes(buf));
    }
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
}

#[test]
fn a_used_length_beyond_the_buffer_is_clamped() {
    let (transport, _out) = device(0, 16);
    let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    let mut rx = FakeQueueDevice::attach(&transport, RECEIVEQ);
    let chain = rx.pop().unwrap();
    rx.push_used(chain.head, 100_000);
    let mut buf = [0u8; 1024];
    assert_eq!(console.read(&mut buf), Ok(RX_BUFFER_SIZE));
}

#[test]
fn emergency_write_needs_the_feature() {
    let (transport, _out) = device(F_EMERG_WRITE, 16);
    let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    console.emergency_write(b'!').unwrap();
    assert_eq!(transport.state().config_writes, [(CONFIG_EMERG_WR, u32::from(b'!'))]);

    let (transport, _out) = device(0, 16);
    let mut console = Console::new(transport, FakeHal::new()).unwrap();
    assert_eq!(console.emergency_write(b'!'), Err(Error::Unsupported));
}

#[test]
fn a_bogus_receive_completion_breaks_the_driver() {
    let (transport, _out) = device(0, 16);
    let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    let mut rx = FakeQueueDevice::attach(&transport, RECEIVEQ);
    let _ = rx.pop().unwrap();
    rx.push_used_raw(99, 1);
    let mut buf = [0u8; 4];
    assert_eq!(console.read(&mut buf), Err(Error::BadUsedId(99)));
    assert_eq!(transport.state().status, 0);
    assert_eq!(console.read(&mut buf), Err(Error::Broken));
    assert_eq!(console.write(b"x"), Err(Error::Broken));
}

#[test]
fn dropping_the_console_frees_everything() {
    let (transport, _out) = device(RING_EVENT_IDX, 16);
    let hal = FakeHal::new();
    let console = Console::new(transport.clone(), hal.clone()).unwrap();
    drop(console);
    assert_eq!(hal.live_pages(), 0);
    for allocs in 0..4 {
        let (transport, _out) = device(0, 16);
        let hal = FakeHal::failing_after(allocs);
        assert!(matches!(Console::new(transport, hal.clone()), Err(Error::NoMemory)));
        assert_eq!(hal.live_pages(), 0);
    }
}

#[test]
fn the_dma_footprint_is_as_documented() {
    let (transport, _out) = device(RING_INDIRECT_DESC, 256);
    let hal = FakeHal::new();
    let _console = Console::new(transport, hal.clone()).unwrap();
    // Two 32-entry rings of 2 pages, receive and transmit buffers 1 page each; no
    // indirect tables.
    assert_eq!(hal.live_pages(), 6);
}

#[test]
fn try_write_copies_and_returns_at_once_and_mixes_with_write() {
    let (transport, out) = device(RING_EVENT_IDX, 32);
    let mut console = Console::new(transport, FakeHal::new()).unwrap();
    let long = [b'x'; TX_BUFFER_SIZE + 10];
    assert_eq!(console.try_write(&long), Ok(TX_BUFFER_SIZE), "a buffer's worth at a time");
    assert_eq!(console.try_write(b"!"), Ok(1));
    console.write(b"?").unwrap();
    assert_eq!(console.try_write(b""), Ok(0));
    assert!(console.tx_idle());
    let mut expected = std::vec![b'x'; TX_BUFFER_SIZE];
    expected.extend(b"!?");
    assert_eq!(*out.lock().unwrap(), expected);
}

#[test]
fn try_write_takes_nothing_once_the_device_holds_every_buffer() {
    // A device that never serves its transmit queue: a peer that never reads.
    let transport = FakeTransport::new(device_id::CONSOLE, VERSION_1, &[32, 32], 12);
    let mut console = Console::new(transport.clone(), FakeHal::new()).unwrap();
    for _ in 0..TX_BUFFERS {
        assert_eq!(console.try_write(b"data"), Ok(4));
    }
    assert_eq!(console.try_write(b"data"), Ok(0), "full: no error, nothing taken");
    assert!(!console.tx_idle());
    // The device returns one: there is room for one more.
    let mut tx = FakeQueueDevice::attach(&transport, TRANSMITQ);
    let chain = tx.pop().unwrap();
    assert_eq!(chain.readable(), b"data");
    tx.push_used(chain.head, 0);
    assert_eq!(console.try_write(b"more"), Ok(4));
    assert_eq!(console.try_write(b"more"), Ok(0));
}
