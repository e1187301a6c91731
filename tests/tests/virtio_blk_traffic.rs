//! Traffic through guest-drivers' virtio-blk driver and Sluice's model: many
//! requests in flight at the device at once, completed in an order other than the
//! one they were submitted in; the 16-bit ring indices wrapping past 65535; and
//! interrupt suppression (`disable_cb` / `enable_cb`) with and without EVENT_IDX;
//! batches across the wrap; and a device whose queues are smaller than the
//! driver's.
//!
//! To have requests in flight at the device, the test holds QueueNotify stores and
//! releases them later, as a device running on another CPU would see them.

use std::sync::Arc;

use guest_drivers::blk::{Token, VirtioBlk};
use guest_drivers::transport::interrupt;
use guest_drivers::transport::mmio::MmioTransport;
use guest_drivers::Error;
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::filter::{FeatureFilter, QueueLimit};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::{RegionBuffer, SharedRegion};
use sluice_tests::rig::{blk_slot, transport, TestTransport, Variant};
use sluice_tests::slot::Slot;

type Blk = VirtioBlk<RegionHal, TestTransport>;

const SECTORS: u64 = 512;

fn rig(variant: Variant) -> (Arc<SharedRegion>, Disk, Slot, Blk) {
    let region = SharedRegion::new(1024);
    let disk = Disk::new(SECTORS);
    let slot = blk_slot(&region, &disk, variant.legacy, false);
    let blk = VirtioBlk::new(transport(&slot, variant), RegionHal::new(&region)).expect("blk init");
    (region, disk, slot, blk)
}

/// A permutation of `0..n` far from the identity and from its reverse.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x1234_5678_u32;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        order.swap(i, x as usize % (i + 1));
    }
    order
}

#[test]
fn many_requests_in_flight_complete_in_any_order() {
    for v in [
        Variant::MODERN,
        Variant { legacy: false, event_idx: false, indirect: false },
        Variant { legacy: false, event_idx: true, indirect: false },
        Variant { legacy: true, event_idx: false, indirect: true },
    ] {
        let (region, disk, slot, mut blk) = rig(v);
        // One request is one ring descriptor through an indirect table, three without.
        let capacity = if v.indirect { 256 } else { 256 / 3 };

        // Writes, all at the device before it runs.
        slot.hold_notifies(true);
        let mut bufs: Vec<RegionBuffer> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        for i in 0..capacity {
            let mut b = region.buffer(SECTOR, i % 7);
            b.as_mut_slice().copy_from_slice(&pattern(i as u64, SECTOR));
            // SAFETY: `b` stays in `bufs`, unwritten, until its request completes.
            tokens.push(unsafe { blk.submit_write(i as u64, b.as_slice()) }.unwrap());
            bufs.push(b);
        }
        let spare = region.buffer(SECTOR, 0);
        // SAFETY: refused at once; the device never sees it.
        assert_eq!(unsafe { blk.submit_write(999, spare.as_slice()) }, Err(Error::QueueFull), "{v:?}");
        assert_eq!(blk.outstanding(), capacity);
        // With EVENT_IDX the device asked for one notification and got it; without,
        // every submission notifies.
        let expected = if v.event_idx { 1 } else { capacity };
        assert_eq!(slot.held_notifies(), expected, "{v:?}");
        assert!(disk.read(0, 1).iter().all(|&b| b == 0), "nothing ran yet");
        for &t in &tokens[..3] {
            assert_eq!(blk.complete(t), Err(Error::NotReady));
        }

        slot.hold_notifies(false);
        slot.release_notifies();
        for i in shuffled(capacity) {
            assert_eq!(blk.complete(tokens[i]), Ok(()), "{v:?} request {i}");
            assert_eq!(blk.complete(tokens[i]), Err(Error::InvalidToken), "a token is spent once");
        }
        assert_eq!(blk.outstanding(), 0);
        for i in 0..capacity {
            assert_eq!(disk.read(i as u64, 1), pattern(i as u64, SECTOR), "{v:?} sector {i}");
        }

        // Reads, in flight together, collected backwards, then an interleaving of
        // submissions and completions with the device running part of the time.
        slot.hold_notifies(true);
        for (i, b) in bufs.iter_mut().enumerate() {
            b.as_mut_slice().fill(0);
            // SAFETY: `b` is not touched until `complete` returned for its token.
            tokens[i] = unsafe { blk.submit_read(i as u64, b.as_mut_slice()) }.unwrap();
        }
        slot.release_notifies();
        slot.hold_notifies(false);
        for i in (0..capacity).rev() {
            blk.complete(tokens[i]).unwrap();
            assert_eq!(bufs[i].as_slice(), pattern(i as u64, SECTOR), "{v:?} read {i}");
        }

        // Each round submits 20 (the device running at once or held), completes the
        // previous round's leftovers and every other new one, and carries the rest.
        let mut carried: Vec<(usize, Token)> = Vec::new();
        for round in 0..8usize {
            slot.hold_notifies(round % 2 == 0);
            let mut fresh = Vec::new();
            for k in 0..20 {
                let i = (round * 20 + k) % capacity;
                // SAFETY: a buffer is in one request at a time: a request lives at most
                // two rounds, and an index comes round again only after four.
                let t = unsafe { blk.submit_read(i as u64, bufs[i].as_mut_slice()) }.unwrap();
                fresh.push((i, t));
            }
            slot.release_notifies();
            let (now, later): (Vec<_>, Vec<_>) = fresh.into_iter().enumerate().partition(|(n, _)| n % 2 == 1);
            for (i, t) in carried.drain(..).chain(now.into_iter().map(|(_, p)| p)) {
                blk.complete(t).unwrap();
                assert_eq!(bufs[i].as_slice(), pattern(i as u64, SECTOR));
            }
            carried = later.into_iter().map(|(_, p)| p).collect();
        }
        slot.hold_notifies(false);
        for (i, t) in carried {
            blk.wait(t).unwrap();
            assert_eq!(bufs[i].as_slice(), pattern(i as u64, SECTOR));
        }
        assert_eq!(blk.outstanding(), 0);
    }
}

/// Requests past index 65535: FLUSH, the cheapest (header and status, no data),
/// with a write and read-back checked every few thousand and all around the wrap.
#[test]
fn ring_indices_wrap_past_65535() {
    for v in [
        Variant::MODERN,
        Variant { legacy: false, event_idx: false, indirect: false },
        Variant { legacy: true, event_idx: true, indirect: false },
    ] {
        let (region, disk, slot, mut blk) = rig(v);
        let mut buf = region.buffer(SECTOR, 1);
        let mut checked = 0;
        let requests: u32 = 65536 + 700;
        let mut n: u32 = 0;
        while n < requests {
            // Each checked round is three requests (write, flush, read).
            if n.is_multiple_of(4096) || (65530..65545).contains(&n) {
                let sector = u64::from(n) % SECTORS;
                let data = pattern(u64::from(n), SECTOR);
                buf.as_mut_slice().copy_from_slice(&data);
                blk.write_blocks(sector, buf.as_slice()).unwrap();
                blk.flush().unwrap();
                buf.as_mut_slice().fill(0);
                blk.read_blocks(sector, buf.as_mut_slice()).unwrap();
                assert_eq!(buf.as_slice(), data, "{v:?} after {n} requests");
                assert_eq!(disk.read(sector, 1), data);
                checked += 1;
                n += 3;
            } else {
                blk.flush().unwrap();
                n += 1;
            }
        }
        assert!(checked > 16);
        assert_eq!(slot.stats().bad_control_accesses, 0);
        assert_eq!(slot.stats().notifies, u64::from(n), "{v:?}: one notify per request");
    }
}

#[test]
fn interrupts_follow_enable_and_disable() {
    for v in [
        Variant::MODERN,
        Variant { legacy: false, event_idx: false, indirect: true },
        Variant::LEGACY,
        Variant { legacy: true, event_idx: false, indirect: false },
    ] {
        let (region, _disk, slot, mut blk) = rig(v);
        let mut buf = region.buffer(4 * SECTOR, 0);
        blk.ack_interrupt();
        assert!(!slot.interrupt_level());

        // Asked for: one used-buffer interrupt, acknowledged by the driver.
        assert!(blk.enable_interrupts(), "nothing is waiting");
        blk.read_blocks(0, buf.as_mut_slice()).unwrap();
        assert!(slot.interrupt_level(), "{v:?}");
        assert_eq!(blk.ack_interrupt(), interrupt::USED_BUFFER);
        assert!(!slot.interrupt_level());

        // Suppressed: no interrupt for completions the driver polls for.
        blk.disable_interrupts();
        for sector in 0..5 {
            blk.read_blocks(sector, buf.as_mut_slice()).unwrap();
        }
        assert!(!slot.interrupt_level(), "{v:?}: interrupts while disabled");

        // The race enable_cb reports: a completion arrived while interrupts were off;
        // enabling says "poll again" instead of leaving the caller to wait.
        slot.hold_notifies(true);
        // SAFETY: `buf` is left alone until the request completes.
        let t = unsafe { blk.submit_read(1, buf.as_mut_slice()) }.unwrap();
        slot.release_notifies();
        assert!(!slot.interrupt_level(), "{v:?}");
        assert!(!blk.enable_interrupts(), "{v:?}: a completion is waiting");
        assert_eq!(blk.poll(), Ok(Some(t)));
        blk.complete(t).unwrap();
        assert!(blk.enable_interrupts());

        // Interrupts are on again: the next completion raises one.
        // SAFETY: as above.
        let t = unsafe { blk.submit_read(2, buf.as_mut_slice()) }.unwrap();
        slot.release_notifies();
        assert!(slot.interrupt_level(), "{v:?}");
        assert_eq!(blk.ack_interrupt(), interrupt::USED_BUFFER);
        blk.complete(t).unwrap();
        slot.hold_notifies(false);
    }
}

/// Batches of requests made available together, the notifications held until the
/// batch is complete, across the 16-bit wrap: with EVENT_IDX the driver notifies
/// once per batch (`vring_need_event` on `avail_event`, in wrapping arithmetic) and
/// the device interrupts once per batch (on `used_event`); without it, every
/// request notifies.
#[test]
fn batches_across_the_wrap() {
    for v in [
        Variant::MODERN,
        Variant { legacy: true, event_idx: true, indirect: false },
        Variant { legacy: false, event_idx: false, indirect: true },
    ] {
        let (_region, _disk, slot, mut blk) = rig(v);
        let batch = if v.indirect { 200 } else { 80 };
        let mut done = 0u32;
        let mut tokens = Vec::with_capacity(batch);
        assert!(blk.enable_interrupts());
        while done < 65536 + 1000 {
            slot.hold_notifies(true);
            for _ in 0..batch {
                tokens.push(blk.submit_flush().unwrap());
            }
            let held = slot.held_notifies();
            assert_eq!(held, if v.event_idx { 1 } else { batch }, "{v:?} after {done}");
            slot.hold_notifies(false);
            slot.release_notifies();
            assert!(slot.interrupt_level(), "{v:?} after {done}");
            assert_eq!(blk.ack_interrupt(), interrupt::USED_BUFFER);
            for t in tokens.drain(..).rev() {
                blk.complete(t).unwrap();
            }
            done += batch as u32;
        }
        assert_eq!(slot.stats().bad_control_accesses, 0);
    }
}

/// A device that offers queues smaller than the driver's: the driver takes the
/// device's size, and fills and wraps the smaller ring.
#[test]
fn a_device_with_small_queues() {
    for (v, max) in [
        (Variant::MODERN, 16),
        (Variant { legacy: false, event_idx: false, indirect: false }, 4),
        (Variant::LEGACY, 8),
    ] {
        let region = SharedRegion::new(256);
        let disk = Disk::new(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let regs = QueueLimit::new(FeatureFilter::new(slot.registers(), v.hidden(), 0), max);
        let transport = MmioTransport::from_registers(regs).unwrap();
        let mut blk = VirtioBlk::new(transport, RegionHal::new(&region)).unwrap();
        assert_eq!(blk.queue_size(), max);
        let capacity = if v.indirect { usize::from(max) } else { usize::from(max) / 3 };

        let mut bufs: Vec<RegionBuffer> = (0..capacity).map(|_| region.buffer(SECTOR, 0)).collect();
        for round in 0..40u64 {
            slot.hold_notifies(round % 2 == 0);
            let mut tokens = Vec::new();
            for (i, b) in bufs.iter_mut().enumerate() {
                b.as_mut_slice().copy_from_slice(&pattern(round * 100 + i as u64, SECTOR));
                // SAFETY: completed below before `b` is touched again.
                tokens.push(unsafe { blk.submit_write(i as u64, b.as_slice()) }.unwrap());
            }
            // SAFETY: refused at once.
            assert_eq!(unsafe { blk.submit_write(0, bufs[0].as_slice()) }, Err(Error::QueueFull), "{v:?}");
            slot.hold_notifies(false);
            slot.release_notifies();
            for i in shuffled(capacity) {
                blk.complete(tokens[i]).unwrap();
                assert_eq!(disk.read(i as u64, 1), pattern(round * 100 + i as u64, SECTOR), "{v:?}");
            }
        }
    }
}
