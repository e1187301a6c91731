//! guest-drivers' virtio-console driver against Sluice's virtio-console model, legacy
//! and modern, EVENT_IDX on and off: output reaching the console sink, host input
//! arriving through `read`, input held while no receive buffer is posted (and
//! dropped, counted, past the device's bound), the emergency write, receive
//! interrupts, both queues past the 16-bit wrap, and a device with small queues.

use std::sync::Arc;

use guest_drivers::console::spec::F_EMERG_WRITE;
use guest_drivers::console::{VirtioConsole, RX_BUFFERS, RX_BUFFER_SIZE};
use guest_drivers::transport::interrupt;
use guest_drivers::transport::mmio::{reg, MmioTransport};
use guest_drivers::Error;
use hypervisor::devices::virtio::console::INPUT_CAPACITY;
use hypervisor::devices::AccessWidth;
use sluice_tests::console_sink::ConsoleSink;
use sluice_tests::disk::pattern;
use sluice_tests::filter::{FeatureFilter, QueueLimit, WriteHook};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::SharedRegion;
use sluice_tests::rig::{console_slot, filtered_transport, transport, TestTransport, Variant};
use sluice_tests::slot::Slot;

type Console = VirtioConsole<RegionHal, TestTransport>;

fn rig(v: Variant) -> (Arc<SharedRegion>, Slot, ConsoleSink, Console) {
    let region = SharedRegion::with_default_size();
    let (slot, sink) = console_slot(&region, v.legacy);
    let console = VirtioConsole::new(transport(&slot, v), RegionHal::new(&region)).expect("console init");
    (region, slot, sink, console)
}

/// Reads until `len` bytes came or nothing more does.
fn read_all<H: guest_drivers::Hal + Clone, T: guest_drivers::Transport>(
    console: &mut VirtioConsole<H, T>,
    len: usize,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 700];
    while got.len() < len {
        let n = console.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// Console variants: ring features matter, INDIRECT does not (single buffers).
fn variants() -> impl Iterator<Item = Variant> {
    Variant::all().filter(|v| v.indirect)
}

#[test]
fn output_reaches_the_console_sink() {
    for v in Variant::all() {
        let (region, slot, sink, mut console) = rig(v);
        let mut hello = region.buffer(14, 0);
        hello.as_mut_slice().copy_from_slice(b"hello, sluice\n");
        console.write(hello.as_slice()).unwrap();
        assert_eq!(sink.take(), b"hello, sluice\n", "{v:?}");

        // Longer than any bounce buffer, at an odd address.
        let text = pattern(9, 5000);
        let mut long = region.buffer(text.len(), 3);
        long.as_mut_slice().copy_from_slice(&text);
        console.write(long.as_slice()).unwrap();
        for _ in 0..100 {
            console.write(&hello.as_slice()[..1]).unwrap();
        }
        let mut expected = text.clone();
        expected.extend([b'h'; 100]);
        assert_eq!(sink.take(), expected, "{v:?}");

        console.emergency_write(b'!').unwrap();
        assert_eq!(sink.take(), b"!");
        assert_eq!(slot.stats().bad_control_accesses, 0);
    }
}

#[test]
fn input_arrives_through_read() {
    for v in variants() {
        let (_region, slot, _sink, mut console) = rig(v);
        assert_eq!(console.ack_interrupt(), 0);
        assert!(!console.has_input());
        let mut buf = [0u8; 64];
        assert_eq!(console.read(&mut buf), Ok(0));

        assert_eq!(slot.input(b"typed\n"), 6);
        assert!(slot.interrupt_level(), "{v:?}: input raises the used-buffer interrupt");
        assert_eq!(console.ack_interrupt(), interrupt::USED_BUFFER);
        assert!(console.has_input());
        assert_eq!(console.read(&mut buf[..3]), Ok(3));
        assert_eq!(&buf[..3], b"typ");
        assert_eq!(slot.input(b"more"), 4);
        assert_eq!(read_all(&mut console, 7), b"ed\nmore", "{v:?}");
        assert_eq!(console.read(&mut buf), Ok(0));

        // Many small inputs, each its own buffer, many times round the ring.
        let mut expected = Vec::new();
        for i in 0..3 * RX_BUFFERS {
            let line = format!("line {i}\n");
            assert_eq!(slot.input(line.as_bytes()), line.len());
            expected.extend_from_slice(line.as_bytes());
            if i % 5 == 4 {
                assert_eq!(read_all(&mut console, expected.len()), expected, "{v:?}");
                expected.clear();
            }
        }
        assert_eq!(read_all(&mut console, expected.len()), expected, "{v:?}");
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 0);
    }
}

#[test]
fn input_beyond_the_posted_buffers_is_held() {
    for v in variants() {
        let (_region, slot, _sink, mut console) = rig(v);
        let posted = RX_BUFFERS * RX_BUFFER_SIZE;

        // Enough to fill every posted buffer, then more: held by the device.
        let first = pattern(1, posted);
        let second = pattern(2, 1000);
        assert_eq!(slot.input(&first), posted);
        assert_eq!(slot.input(&second), second.len(), "held, not dropped");
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 0);
        // Reading empties and reposts buffers; the held bytes follow, in order.
        let mut expected = first.clone();
        expected.extend_from_slice(&second);
        assert_eq!(read_all(&mut console, expected.len()), expected, "{v:?}");

        // Past what the device holds, input is dropped and counted.
        assert_eq!(slot.input(&first), posted);
        let held = pattern(3, INPUT_CAPACITY);
        assert_eq!(slot.input(&held), INPUT_CAPACITY);
        assert_eq!(slot.input(b"lost"), 0);
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 4);
        let mut expected = first.clone();
        expected.extend_from_slice(&held);
        assert_eq!(read_all(&mut console, expected.len() + 10), expected, "{v:?}");
    }
}

#[test]
fn input_before_the_driver_is_ready_is_held() {
    for v in variants() {
        let region = SharedRegion::with_default_size();
        let (slot, _sink) = console_slot(&region, v.legacy);
        // The input comes right after the driver reset the device and said DRIVER:
        // before any queue or receive buffer exists.
        let typist = slot.clone();
        let mut typed = false;
        let hook = move |offset: usize, value: u32| {
            if offset == reg::STATUS && value == 3 && !typed {
                typed = true;
                assert_eq!(typist.input(b"early bird"), 10);
            }
        };
        let regs = WriteHook::new(FeatureFilter::new(slot.registers(), v.hidden(), 0), hook);
        let transport = MmioTransport::from_registers(regs).unwrap();
        let mut console = VirtioConsole::new(transport, RegionHal::new(&region)).unwrap();
        assert_eq!(read_all(&mut console, 10), b"early bird", "{v:?}");
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 0);
    }
}

#[test]
fn emergency_write_needs_no_queue() {
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let (slot, sink) = console_slot(&region, legacy);
        // Straight after reset, before any driver: a 32-bit store to emerg_wr.
        slot.write(0x108, AccessWidth::Word, u64::from(b'#'));
        // A byte store works as well.
        slot.write(0x108, AccessWidth::Byte, u64::from(b'$'));
        assert_eq!(sink.take(), b"#$");

        let v = Variant { legacy, event_idx: true, indirect: true };
        let mut console = VirtioConsole::new(transport(&slot, v), RegionHal::new(&region)).unwrap();
        console.emergency_write(b'E').unwrap();
        assert_eq!(sink.take(), b"E");
        drop(console);

        // Without EMERG_WRITE negotiated, the driver refuses.
        let mut console =
            VirtioConsole::new(filtered_transport(&slot, F_EMERG_WRITE, 0), RegionHal::new(&region)).unwrap();
        assert_eq!(console.emergency_write(b'X'), Err(Error::Unsupported));
        assert!(sink.take().is_empty());
    }
}

#[test]
fn receive_interrupts_follow_enable_and_disable() {
    for v in variants() {
        let (_region, slot, _sink, mut console) = rig(v);
        console.ack_interrupt();

        console.disable_rx_interrupts();
        assert_eq!(slot.input(b"quiet"), 5);
        assert!(!slot.interrupt_level(), "{v:?}: input while interrupts are off");
        assert!(!console.enable_rx_interrupts(), "{v:?}: input is waiting");
        assert_eq!(read_all(&mut console, 5), b"quiet");
        assert!(console.enable_rx_interrupts(), "{v:?}");

        assert_eq!(slot.input(b"loud"), 4);
        assert!(slot.interrupt_level(), "{v:?}");
        assert_eq!(console.ack_interrupt(), interrupt::USED_BUFFER);
        assert_eq!(read_all(&mut console, 4), b"loud");
    }
}

#[test]
fn a_new_driver_after_a_reset_starts_clean() {
    for v in variants() {
        let (region, slot, sink, console) = rig(v);
        assert_eq!(slot.input(b"for the old driver"), 18);
        drop(console);
        assert_eq!(slot.status(), 0);
        assert_eq!(region.pages_in_use(), 0);

        // Typed while no driver runs: held, then emptied by the next driver's reset
        // (a new driver starts from a clean line).
        assert_eq!(slot.input(b"nobody listens"), 14);
        let mut console = VirtioConsole::new(transport(&slot, v), RegionHal::new(&region)).unwrap();
        assert_eq!(console.read(&mut [0u8; 32]), Ok(0));
        assert_eq!(slot.input(b"hi"), 2);
        assert_eq!(read_all(&mut console, 2), b"hi");
        let mut out = region.buffer(3, 0);
        out.as_mut_slice().copy_from_slice(b"ok\n");
        console.write(out.as_slice()).unwrap();
        assert_eq!(sink.take(), b"ok\n");
    }
}

/// Both queues' indices past 65535: a byte typed and read back, and a byte
/// written, each time round.
#[test]
fn queues_wrap_past_65535() {
    for v in [Variant::MODERN, Variant { legacy: true, event_idx: false, indirect: false }] {
        let (region, slot, sink, mut console) = rig(v);
        let mut out = region.buffer(1, 0);
        let mut byte = [0u8; 1];
        for n in 0..65536 + 300u32 {
            let b = (n % 251) as u8;
            assert_eq!(slot.input(&[b]), 1);
            assert_eq!(console.read(&mut byte), Ok(1), "{v:?} after {n}");
            assert_eq!(byte[0], b);
            out.as_mut_slice()[0] = b;
            console.write(out.as_slice()).unwrap();
            if n.is_multiple_of(8192) {
                assert_eq!(sink.take().last(), Some(&b));
            }
        }
        assert_eq!(slot.status() & hypervisor::devices::virtio::status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 0);
    }
}

/// A device with 8-entry queues: the driver posts 8 receive buffers, not 16, and
/// input past them waits in the device.
#[test]
fn a_device_with_small_queues() {
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let (slot, _sink) = console_slot(&region, legacy);
        let v = Variant { legacy, event_idx: true, indirect: true };
        let regs = QueueLimit::new(FeatureFilter::new(slot.registers(), v.hidden(), 0), 8);
        let mut console =
            VirtioConsole::new(MmioTransport::from_registers(regs).unwrap(), RegionHal::new(&region))
                .unwrap();
        let data = pattern(8, 8 * RX_BUFFER_SIZE + 100);
        assert_eq!(slot.input(&data), data.len());
        assert_eq!(read_all(&mut console, data.len()), data, "legacy {legacy}");
    }
}
