//! guest-drivers' virtio-console on both ends of a channel between two VMs (each
//! slot with RAM of its own), joined by Sluice's link: what one writes the other
//! reads, in order, whole; a reader that stops holds the writer back (its ring
//! fills, no error) and lets it go when it reads again; a side that resets finds the
//! channel working when its driver comes back; a flood arrives whole. The transfer
//! runs between accesses, as Sluice's exits run it (`pump`).

use std::sync::Arc;

use guest_drivers::console::{VirtioConsole, RX_BUFFERS, RX_BUFFER_SIZE, TX_BUFFERS};
use hypervisor::devices::virtio::channel::{ChannelPort, Link};
use hypervisor::devices::virtio::Budget;
use sluice_tests::hal::RegionHal;
use sluice_tests::region::SharedRegion;
use sluice_tests::rig::{transport, TestTransport, Variant};
use sluice_tests::slot::Slot;

type Console = VirtioConsole<RegionHal, TestTransport>;

/// One VM's end: its RAM, its slot, its driver.
struct End {
    region: Arc<SharedRegion>,
    slot: Slot,
    console: Console,
}

fn end(link: &Arc<Link>, v: Variant) -> End {
    let region = SharedRegion::with_default_size();
    let slot = Slot::new(Box::new(ChannelPort::new(link.clone())), &region, v.legacy);
    let console = VirtioConsole::new(transport(&slot, v), RegionHal::new(&region)).expect("console init");
    End { region, slot, console }
}

fn pair(v: Variant) -> (Arc<Link>, End, End) {
    let link = Arc::new(Link::new("test", (0, 0), (1, 0)));
    let (a, b) = (end(&link, v), end(&link, v));
    (link, a, b)
}

/// Runs the transfers due, a budget each, as the exits of either VM would.
fn pump(link: &Link, a: &Slot, b: &Slot) {
    while link.take_due() {
        a.with(|first| b.with(|second| link.transfer(first, second, &mut Budget::per_call())));
    }
}

/// Writes all of `data` from `from`, pumping, while `to` reads; returns what `to` read.
fn send(link: &Link, from: &mut End, to: &mut End, data: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut sent = 0;
    let mut buf = [0u8; 1000];
    let mut idle = 0;
    while got.len() < data.len() {
        sent += from.console.try_write(&data[sent..]).unwrap();
        pump(link, &from.slot, &to.slot);
        let n = to.console.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        pump(link, &from.slot, &to.slot);
        idle = if n == 0 { idle + 1 } else { 0 };
        assert!(idle < 1000, "no progress after {} of {} bytes", got.len(), data.len());
    }
    got
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 24) as u8).collect()
}

#[test]
fn lines_go_both_ways_in_order_in_every_variant() {
    for v in Variant::all() {
        let (link, mut a, mut b) = pair(v);
        for i in 0..200 {
            let line = format!("line {i}\n");
            assert_eq!(send(&link, &mut a, &mut b, line.as_bytes()), line.as_bytes(), "{v:?}");
            let sum = format!("sum {}\n", line.bytes().map(u32::from).sum::<u32>());
            assert_eq!(send(&link, &mut b, &mut a, sum.as_bytes()), sum.as_bytes(), "{v:?}");
        }
        let _ = (&a.region, &b.region);
    }
}

#[test]
fn a_flood_arrives_whole() {
    let (link, mut a, mut b) = pair(Variant::MODERN);
    let data = pattern(1 << 20, 7);
    assert!(send(&link, &mut a, &mut b, &data) == data);
    assert_eq!(link.moved(0), 1 << 20);
}

#[test]
fn a_reader_that_stops_holds_the_writer_back_without_error() {
    let (link, mut a, mut b) = pair(Variant::MODERN);
    let data = pattern(64 * 1024, 3);
    let mut sent = 0;
    loop {
        let n = a.console.try_write(&data[sent..]).unwrap();
        pump(&link, &a.slot, &b.slot);
        if n == 0 {
            break;
        }
        sent += n;
    }
    // b's posted buffers are full, and every one of a's transmit buffers waits.
    assert_eq!(sent, RX_BUFFERS * RX_BUFFER_SIZE + TX_BUFFERS * 256);
    assert_eq!(a.console.try_write(b"x"), Ok(0));
    // b reads: everything comes, in order, and a may write again.
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.len() < sent {
        let n = b.console.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        pump(&link, &a.slot, &b.slot);
        assert!(n > 0 || got.len() == sent, "stuck at {}", got.len());
    }
    assert!(got == data[..sent]);
    assert!(a.console.try_write(b"x").unwrap() == 1);
}

#[test]
fn a_side_that_resets_finds_the_channel_working_again() {
    let (link, mut a, mut b) = pair(Variant::MODERN);
    assert_eq!(send(&link, &mut a, &mut b, b"before"), b"before");
    // b's driver goes away (its device is reset); what a writes meanwhile waits.
    let End { region, slot, console } = b;
    drop(console);
    assert_eq!(a.console.try_write(b"during"), Ok(6));
    pump(&link, &a.slot, &slot);
    let console =
        VirtioConsole::new(transport(&slot, Variant::MODERN), RegionHal::new(&region)).expect("init again");
    let mut b = End { region, slot, console };
    pump(&link, &a.slot, &b.slot);
    assert_eq!(send(&link, &mut a, &mut b, b"after"), b"duringafter");
    assert_eq!(send(&link, &mut b, &mut a, b"back"), b"back");
}
