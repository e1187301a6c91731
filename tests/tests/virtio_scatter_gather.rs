//! Scatter-gather layouts the blk driver never makes, built with guest-drivers'
//! split virtqueue directly (`add_buf` with many readable and writable buffers) and
//! run through Sluice's virtio-blk model: headers split across buffers, data in
//! segments of odd sizes at odd addresses, the status byte at the end of a data
//! buffer, chains longer than an indirect table, and the DISCARD / WRITE_ZEROES
//! requests the driver does not send. The device must see one byte stream
//! whatever the framing (virtio 1.2 §2.6.4).

use std::sync::Arc;

use guest_drivers::blk::spec::{F_DISCARD, F_WRITE_ZEROES, S_IOERR, S_OK, S_UNSUPP, T_GET_ID, T_IN, T_OUT};
use guest_drivers::blk::SUPPORTED_FEATURES;
use guest_drivers::init;
use guest_drivers::queue::{QueueOptions, VirtQueue};
use guest_drivers::transport::Transport;
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::{RegionBuffer, SharedRegion};
use sluice_tests::rig::{blk_slot, transport, TestTransport, Variant, SERIAL};
use sluice_tests::slot::Slot;

/// VIRTIO_BLK_T_DISCARD and VIRTIO_BLK_T_WRITE_ZEROES (§5.2.6).
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;
/// Entries of an indirect table in these tests.
const INDIRECT_MAX: u16 = 8;

/// A blk device driven by hand through guest-drivers' virtqueue.
struct RawBlk {
    transport: TestTransport,
    queue: VirtQueue<RegionHal, u32, 256>,
    next_token: u32,
}

impl RawBlk {
    fn new(slot: &Slot, region: &Arc<SharedRegion>, v: Variant, extra: u64) -> Self {
        let mut transport = transport(slot, v);
        let features = init::negotiate(&mut transport, SUPPORTED_FEATURES | extra).unwrap();
        let options = QueueOptions::from_features(features, INDIRECT_MAX);
        // SAFETY: `Drop` resets the device before the queue is dropped.
        let queue = unsafe { VirtQueue::new(&mut transport, RegionHal::new(region), 0, options) }.unwrap();
        init::driver_ok(&mut transport);
        Self { transport, queue, next_token: 0 }
    }

    /// Runs one chain; returns `used.len`.
    fn run(&mut self, out: &[&[u8]], inp: &mut [&mut [u8]]) -> u32 {
        let token = self.next_token;
        self.next_token += 1;
        // SAFETY: the device is done with the buffers when this returns: it completes
        // on the notify, and the completion is taken below.
        unsafe { self.queue.add_buf(out, inp, token) }.unwrap();
        assert!(self.queue.kick(&mut self.transport));
        let used = self.queue.get_buf().unwrap().expect("completed on the notify");
        assert_eq!(used.token, token);
        assert!(!self.queue.has_used());
        used.len
    }
}

impl Drop for RawBlk {
    fn drop(&mut self) {
        self.transport.reset().unwrap();
    }
}

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// A region buffer holding `bytes`, starting `misalign` bytes into a page.
fn filled(region: &Arc<SharedRegion>, bytes: &[u8], misalign: usize) -> RegionBuffer {
    let mut b = region.buffer(bytes.len(), misalign);
    b.as_mut_slice().copy_from_slice(bytes);
    b
}

/// Cuts `buf` into pieces of the given lengths (the last takes the rest).
fn cut<'a>(mut buf: &'a mut [u8], lens: &[usize]) -> Vec<&'a mut [u8]> {
    let mut out = Vec::new();
    for &len in lens {
        let (a, b) = buf.split_at_mut(len);
        out.push(a);
        buf = b;
    }
    if !buf.is_empty() {
        out.push(buf);
    }
    out
}

fn variants() -> [Variant; 4] {
    [
        Variant::MODERN,
        Variant { legacy: false, event_idx: false, indirect: false },
        Variant { legacy: true, event_idx: false, indirect: true },
        Variant { legacy: true, event_idx: true, indirect: false },
    ]
}

#[test]
fn requests_split_across_odd_segments() {
    for v in variants() {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut blk = RawBlk::new(&slot, &region, v, 0);

        // IN: the header in two pieces (7 + 9 bytes), the data in four segments of odd
        // sizes at an odd address, the status alone.
        let hdr = filled(&region, &header(T_IN, 2), 3);
        let (h1, h2) = hdr.as_slice().split_at(7);
        let mut data = region.buffer(1024, 5);
        let mut status = region.buffer(1, 2047);
        status.as_mut_slice()[0] = 0xff;
        let mut inp = cut(data.as_mut_slice(), &[100, 300, 112]);
        inp.push(status.as_mut_slice());
        assert_eq!(blk.run(&[h1, h2], &mut inp), 1024 + 1, "{v:?}");
        assert_eq!(status.as_slice(), [S_OK]);
        assert_eq!(data.as_slice(), disk.read(2, 2), "{v:?}");

        // OUT: data in three readable segments (1 + 511 + 1024 bytes).
        let payload = pattern(77, 3 * SECTOR);
        let hdr = filled(&region, &header(T_OUT, 40), 0);
        let src = filled(&region, &payload, 1);
        let (d1, rest) = src.as_slice().split_at(1);
        let (d2, d3) = rest.split_at(511);
        status.as_mut_slice()[0] = 0xff;
        assert_eq!(blk.run(&[hdr.as_slice(), d1, d2, d3], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_OK]);
        assert_eq!(disk.read(40, 3), payload, "{v:?}");

        // IN whose status byte is the last byte of the one writable buffer.
        let hdr = filled(&region, &header(T_IN, 40), 9);
        let mut both = region.buffer(SECTOR + 1, 4093);
        both.as_mut_slice()[SECTOR] = 0xff;
        assert_eq!(blk.run(&[hdr.as_slice()], &mut [both.as_mut_slice()]), SECTOR as u32 + 1);
        assert_eq!(both.as_slice()[..SECTOR], payload[..SECTOR]);
        assert_eq!(both.as_slice()[SECTOR], S_OK);

        // GET_ID into a 20-byte answer cut in two.
        let hdr = filled(&region, &header(T_GET_ID, 0), 0);
        let mut id = region.buffer(21, 1);
        let mut inp = cut(id.as_mut_slice(), &[13, 7]);
        assert_eq!(blk.run(&[hdr.as_slice()], &mut inp), 21);
        assert_eq!(&id.as_slice()[..SERIAL.len()], SERIAL);
        assert_eq!(id.as_slice()[20], S_OK);
        assert_eq!(slot.stats().bad_control_accesses, 0);
    }
}

#[test]
fn chains_longer_than_an_indirect_table() {
    for v in variants() {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut blk = RawBlk::new(&slot, &region, v, 0);
        // 4 data segments: 6 buffers, one indirect table when INDIRECT is on; 64: 66
        // buffers, direct descriptors even then (longer than a table).
        for segments in [4usize, 64] {
            let bytes = 16 * SECTOR;
            let payload = pattern(segments as u64, bytes);
            let hdr = filled(&region, &header(T_OUT, 8), 0);
            let src = filled(&region, &payload, 7);
            let mut out: Vec<&[u8]> = vec![hdr.as_slice()];
            out.extend(src.as_slice().chunks(bytes / segments));
            let mut status = region.buffer(1, 0);
            assert_eq!(blk.run(&out, &mut [status.as_mut_slice()]), 1);
            assert_eq!(status.as_slice(), [S_OK], "{v:?} {segments}");
            assert_eq!(disk.read(8, 16), payload, "{v:?} {segments}");

            let hdr = filled(&region, &header(T_IN, 8), 0);
            let mut dst = region.buffer(bytes + 1, 3);
            let mut inp: Vec<&mut [u8]> = dst.as_mut_slice().chunks_mut(bytes / segments).collect();
            assert_eq!(blk.run(&[hdr.as_slice()], &mut inp), bytes as u32 + 1);
            assert_eq!(dst.as_slice()[..bytes], payload[..], "{v:?} {segments}");
            assert_eq!(dst.as_slice()[bytes], S_OK);
        }
        assert_eq!(blk.queue.num_free(), blk.queue.size(), "every descriptor is back");
    }
}

#[test]
fn status_codes_for_bad_requests() {
    for v in variants() {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut blk = RawBlk::new(&slot, &region, v, 0);
        let mut status = region.buffer(1, 0);

        // An unknown request type.
        let hdr = filled(&region, &header(0x77, 0), 0);
        assert_eq!(blk.run(&[hdr.as_slice()], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_UNSUPP]);
        // Data that is not whole sectors.
        let hdr = filled(&region, &header(T_IN, 0), 0);
        let mut data = region.buffer(700, 0);
        assert_eq!(blk.run(&[hdr.as_slice()], &mut [data.as_mut_slice(), status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_IOERR]);
        // A header cut short (8 of 16 bytes).
        let hdr = filled(&region, &header(T_IN, 0)[..8], 0);
        assert_eq!(blk.run(&[hdr.as_slice()], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_IOERR]);
        // The device is fine after all of these.
        let hdr = filled(&region, &header(T_IN, 63), 0);
        let mut data = region.buffer(SECTOR, 0);
        assert_eq!(blk.run(&[hdr.as_slice()], &mut [data.as_mut_slice(), status.as_mut_slice()]), 513);
        assert_eq!(status.as_slice(), [S_OK]);
        assert_eq!(data.as_slice(), disk.read(63, 1));
    }
}

/// One DISCARD / WRITE_ZEROES segment: sector, sector count, flags.
fn zero_segment(sector: u64, sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s[12..].copy_from_slice(&flags.to_le_bytes());
    s
}

#[test]
fn discard_and_write_zeroes() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut blk = RawBlk::new(&slot, &region, v, F_DISCARD | F_WRITE_ZEROES);
        let mut status = region.buffer(1, 0);

        // WRITE_ZEROES of two ranges (one with UNMAP, which it allows), the segments
        // split across buffers.
        let hdr = filled(&region, &header(T_WRITE_ZEROES, 0), 0);
        let mut segs = zero_segment(4, 2, 1).to_vec();
        segs.extend(zero_segment(10, 1, 0));
        let segs = filled(&region, &segs, 3);
        let (s1, s2) = segs.as_slice().split_at(20);
        assert_eq!(blk.run(&[hdr.as_slice(), s1, s2], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_OK], "{v:?}");
        assert_eq!(disk.read(4, 2), vec![0; 2 * SECTOR]);
        assert_eq!(disk.read(10, 1), vec![0; SECTOR]);
        assert_eq!(disk.read(6, 1), pattern(6, SECTOR));

        // DISCARD zeroes too; with the UNMAP flag (WRITE_ZEROES only) it is UNSUPP.
        let hdr = filled(&region, &header(T_DISCARD, 0), 0);
        let seg = filled(&region, &zero_segment(20, 3, 0), 0);
        assert_eq!(blk.run(&[hdr.as_slice(), seg.as_slice()], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_OK]);
        assert_eq!(disk.read(20, 3), vec![0; 3 * SECTOR]);
        let seg = filled(&region, &zero_segment(30, 1, 1), 0);
        assert_eq!(blk.run(&[hdr.as_slice(), seg.as_slice()], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_UNSUPP]);
        assert_eq!(disk.read(30, 1), pattern(30, SECTOR));

        // A range past the end is IOERR, and nothing of the request is done: the
        // first, valid segment is not zeroed either.
        let mut segs = zero_segment(40, 1, 0).to_vec();
        segs.extend(zero_segment(63, 2, 0));
        let segs = filled(&region, &segs, 0);
        let hdr = filled(&region, &header(T_WRITE_ZEROES, 0), 0);
        assert_eq!(blk.run(&[hdr.as_slice(), segs.as_slice()], &mut [status.as_mut_slice()]), 1);
        assert_eq!(status.as_slice(), [S_IOERR]);
        assert_eq!(disk.read(40, 1), pattern(40, SECTOR));
    }
}
