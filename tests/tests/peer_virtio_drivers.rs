//! Sluice's device models driven by a peer front-end nobody here wrote: rcore-os'
//! `virtio-drivers` crate, through its public `Transport` trait (implemented in
//! `peer/transport.rs` register by register over a slot) and its `Hal` (over the
//! shared region, bouncing what lies outside it). Two sides written by one team can
//! agree on a mistake; these tests hold our devices to someone else's reading of
//! the spec, and cross-check the peer against guest-drivers on one disk.

mod peer;

use std::sync::Arc;

use guest_drivers::blk::VirtioBlk;
use guest_drivers::features::{RING_EVENT_IDX, RING_INDIRECT_DESC};
use hypervisor::devices::virtio::status;
use peer::hal::{install, PeerHal};
use peer::transport::PeerTransport;
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::SharedRegion;
use sluice_tests::rig::{blk_slot, console_slot, transport, Variant, SERIAL};
use sluice_tests::slot::Slot;
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::Error;

type PeerBlk = VirtIOBlk<PeerHal, PeerTransport>;
type PeerConsole = VirtIOConsole<PeerHal, PeerTransport>;

const SECTORS: u64 = 128;
const RING_FEATURES: u64 = RING_EVENT_IDX | RING_INDIRECT_DESC;

/// (legacy, feature bits hidden from the peer).
const VARIANTS: [(bool, u64); 4] = [(false, 0), (true, 0), (false, RING_FEATURES), (true, RING_EVENT_IDX)];

#[test]
fn peer_blk_reads_writes_and_identifies() {
    for (legacy, hide) in VARIANTS {
        let region = SharedRegion::with_default_size();
        let _hal = install(&region);
        let disk = Disk::patterned(SECTORS);
        let slot = blk_slot(&region, &disk, legacy, false);
        let mut blk = PeerBlk::new(PeerTransport::hiding(&slot, hide)).unwrap();
        let what = format!("legacy {legacy}, hidden {hide:#x}");

        assert_eq!(blk.capacity(), SECTORS);
        assert!(!blk.readonly());
        let mut id = [0u8; 20];
        assert_eq!(blk.device_id(&mut id), Ok(SERIAL.len()), "{what}");
        assert_eq!(&id[..SERIAL.len()], SERIAL);

        // Buffers on the stack and the heap (bounced by the peer's HAL) ...
        let mut sector = [0u8; SECTOR];
        blk.read_blocks(5, &mut sector).unwrap();
        assert_eq!(sector.to_vec(), disk.read(5, 1), "{what}");
        let data = pattern(500, 8 * SECTOR);
        blk.write_blocks(9, &data).unwrap();
        assert_eq!(disk.read(9, 8), data, "{what}");
        let mut back = vec![0u8; 8 * SECTOR];
        blk.read_blocks(9, &mut back).unwrap();
        assert_eq!(back, data);

        // ... and in the shared region, used in place; the last sector too.
        let mut buf = region.buffer(SECTOR, 1);
        buf.as_mut_slice().copy_from_slice(&pattern(501, SECTOR));
        blk.write_blocks(SECTORS as usize - 1, buf.as_slice()).unwrap();
        assert_eq!(disk.read(SECTORS - 1, 1), pattern(501, SECTOR));
        blk.flush().unwrap();

        // Past the end: the device's IOERR, as the peer reports it.
        assert_eq!(blk.read_blocks(SECTORS as usize, &mut sector), Err(Error::IoError), "{what}");
        assert_eq!(blk.write_blocks(SECTORS as usize - 1, &[0u8; 2 * SECTOR]), Err(Error::IoError));
        assert_eq!(disk.read(SECTORS - 1, 1), pattern(501, SECTOR));
        assert_eq!(slot.status() & status::DEVICE_NEEDS_RESET, 0);

        drop((blk, buf));
        assert_eq!(slot.status(), 0, "the peer resets the device when it goes");
        assert_eq!(region.pages_in_use(), 0, "{what}: every DMA and bounce page came back");
    }
}

#[test]
fn peer_blk_with_requests_in_flight() {
    for (legacy, hide) in VARIANTS {
        let region = SharedRegion::with_default_size();
        let _hal = install(&region);
        let disk = Disk::patterned(SECTORS);
        let slot = blk_slot(&region, &disk, legacy, false);
        let mut blk = PeerBlk::new(PeerTransport::hiding(&slot, hide)).unwrap();
        // The peer's queue has 16 entries: 16 requests with indirect tables, 5 without.
        let n = if hide & RING_INDIRECT_DESC == 0 { 16 } else { 5 };
        let mut reqs: Vec<BlkReq> = (0..n).map(|_| BlkReq::default()).collect();
        let mut resps: Vec<BlkResp> = (0..n).map(|_| BlkResp::default()).collect();
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; 2 * SECTOR]).collect();

        slot.hold_notifies(true);
        let mut tokens = Vec::new();
        for (i, ((req, resp), buf)) in reqs.iter_mut().zip(resps.iter_mut()).zip(bufs.iter_mut()).enumerate()
        {
            // SAFETY: `req`, `buf` and `resp` are left alone until their completion.
            tokens.push(unsafe { blk.read_blocks_nb(3 * i, req, buf, resp) }.unwrap());
        }
        assert_eq!(blk.peek_used(), None, "nothing ran yet");
        slot.hold_notifies(false);
        slot.release_notifies();
        for i in 0..n {
            assert_eq!(blk.peek_used(), Some(tokens[i]));
            // SAFETY: the same buffers as submitted.
            unsafe { blk.complete_read_blocks(tokens[i], &reqs[i], &mut bufs[i], &mut resps[i]) }.unwrap();
            assert_eq!(resps[i].status(), RespStatus::OK);
            assert_eq!(bufs[i], disk.read(3 * i as u64, 2), "legacy {legacy} hidden {hide:#x} request {i}");
        }
        drop(blk);
        assert_eq!(region.pages_in_use(), 0);
    }
}

#[test]
fn peer_blk_on_a_read_only_disk() {
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let _hal = install(&region);
        let disk = Disk::patterned(SECTORS);
        let slot = blk_slot(&region, &disk, legacy, true);
        let mut blk = PeerBlk::new(PeerTransport::new(&slot)).unwrap();
        assert!(blk.readonly());
        // The peer sends the write anyway; the device refuses it.
        assert_eq!(blk.write_blocks(2, &[0xffu8; SECTOR]), Err(Error::IoError));
        assert_eq!(disk.read(2, 1), pattern(2, SECTOR));
        let mut buf = [0u8; SECTOR];
        blk.read_blocks(2, &mut buf).unwrap();
        assert_eq!(buf.to_vec(), pattern(2, SECTOR));
    }
}

#[test]
fn peer_and_guest_drivers_agree_on_one_disk() {
    for legacy in [false, true] {
        let region = SharedRegion::with_default_size();
        let _hal = install(&region);
        let disk = Disk::new(SECTORS);
        let peer_slot = blk_slot(&region, &disk, legacy, false);
        let ours_slot = blk_slot(&region, &disk, !legacy, false);
        let mut peer = PeerBlk::new(PeerTransport::new(&peer_slot)).unwrap();
        let v = Variant { legacy: !legacy, event_idx: true, indirect: true };
        let mut ours = VirtioBlk::new(transport(&ours_slot, v), RegionHal::new(&region)).unwrap();

        let theirs = pattern(1, 4 * SECTOR);
        peer.write_blocks(10, &theirs).unwrap();
        let mut buf = region.buffer(4 * SECTOR, 0);
        ours.read_blocks(10, buf.as_mut_slice()).unwrap();
        assert_eq!(buf.as_slice(), theirs);

        buf.as_mut_slice().copy_from_slice(&pattern(2, 4 * SECTOR));
        ours.write_blocks(20, buf.as_slice()).unwrap();
        let mut back = vec![0u8; 4 * SECTOR];
        peer.read_blocks(20, &mut back).unwrap();
        assert_eq!(back, pattern(2, 4 * SECTOR));
    }
}

fn peer_console(
    region: &Arc<SharedRegion>,
    legacy: bool,
    hide: u64,
) -> (Slot, sluice_tests::console_sink::ConsoleSink, PeerConsole) {
    let (slot, sink) = console_slot(region, legacy);
    let console = PeerConsole::new(PeerTransport::hiding(&slot, hide)).unwrap();
    (slot, sink, console)
}

#[test]
fn peer_console_output_and_input() {
    for (legacy, hide) in VARIANTS {
        let region = SharedRegion::with_default_size();
        let _hal = install(&region);
        let (slot, sink, mut console) = peer_console(&region, legacy, hide);
        let what = format!("legacy {legacy}, hidden {hide:#x}");

        console.send_bytes(b"hello from the peer\n").unwrap();
        for &c in b"abc" {
            console.send(c).unwrap();
        }
        console.emergency_write(b'!').unwrap();
        assert_eq!(sink.take(), b"hello from the peer\nabc!", "{what}");

        assert_eq!(console.recv(true), Ok(None));
        assert_eq!(slot.input(b"ping"), 4);
        assert_eq!(console.ack_interrupt(), Ok(true), "{what}: the input raised an interrupt");
        let mut got = Vec::new();
        while let Some(c) = console.recv(true).unwrap() {
            got.push(c);
        }
        assert_eq!(got, b"ping", "{what}");

        // More than the peer's one receive buffer (a page): the device holds the
        // rest until the peer posts its buffer again.
        let long = pattern(3, 6000);
        assert_eq!(slot.input(&long[..4096]), 4096);
        assert_eq!(slot.input(&long[4096..]), 6000 - 4096);
        let mut got = Vec::new();
        while let Some(c) = console.recv(true).unwrap() {
            got.push(c);
        }
        assert_eq!(got, long, "{what}");
        assert_eq!(slot.with(|m| m.backend().input_dropped()), 0);
        drop(console);
        assert_eq!(slot.status(), 0);
    }
}
