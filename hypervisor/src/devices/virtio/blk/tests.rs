//! virtio-blk requests through the transport, from the test driver.

use super::*;
use crate::devices::virtio::testing::{bring_up, r, ram, w, DriverQueue, RAM_BASE};
use crate::devices::virtio::{transport_features, VirtioMmio};
use crate::devices::{AccessWidth, MmioDevice};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

const SECTORS: u64 = 64;
const R: bool = false;
const W: bool = true;
const SERIAL: &[u8] = b"sluice-disk-0";

struct Rig {
    dev: VirtioMmio,
    mem: GuestMemory,
    disk: GuestMemory,
    q: DriverQueue,
}

fn disk(bytes: u64) -> GuestMemory {
    GuestMemory::from_static(0, Box::leak(vec![0u8; bytes as usize].into_boxed_slice()))
}

fn rig_with(read_only: bool, legacy: bool) -> Rig {
    let mem = ram();
    let disk = disk(SECTORS * SECTOR_SIZE);
    let blk = Blk::new(disk.clone(), read_only, SERIAL);
    let mut dev = VirtioMmio::new(Box::new(blk), mem.clone(), legacy);
    let q = DriverQueue::new(&mem, 16, RAM_BASE);
    if legacy {
        w(&mut dev, 0x70, 3);
        w(&mut dev, 0x38, 16);
        w(&mut dev, 0x3c, 4);
        w(&mut dev, 0x40, (RAM_BASE / 4096) as u32);
        w(&mut dev, 0x70, 7);
    } else {
        let features = dev.backend().features()
            | transport_features::VERSION_1
            | transport_features::RING_EVENT_IDX
            | transport_features::RING_INDIRECT_DESC;
        bring_up(&mut dev, features, &[&q]);
    }
    Rig { dev, mem, disk, q }
}

fn rig() -> Rig {
    rig_with(false, false)
}

fn buf(n: u64) -> u64 {
    RAM_BASE + 0x8_0000 + n * 0x1_0000
}

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

fn segment(sector: u64, sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s[12..].copy_from_slice(&flags.to_le_bytes());
    s
}

impl Rig {
    /// Sends `chain` and returns `used.len`.
    fn submit(&mut self, chain: &[(u64, u32, bool)]) -> u32 {
        let head = self.q.add(&self.mem, chain);
        w(&mut self.dev, 0x50, 0);
        let (id, len) = self.q.take_used(&self.mem).expect("request completed");
        assert_eq!(id, u32::from(head));
        assert!(self.dev.interrupt_level());
        w(&mut self.dev, 0x64, 1);
        len
    }

    /// One request laid out the usual way: header, data out, data in, status byte.
    /// Returns (status, used.len, data in).
    fn request(&mut self, kind: u32, sector: u64, out: &[u8], in_len: u32) -> (u8, u32, Vec<u8>) {
        self.mem.write(buf(0), &header(kind, sector)).unwrap();
        let mut chain = vec![(buf(0), 16, R)];
        if !out.is_empty() {
            self.mem.write(buf(1), out).unwrap();
            chain.push((buf(1), out.len() as u32, R));
        }
        if in_len > 0 {
            self.mem.write(buf(2), &vec![0xee; in_len as usize]).unwrap();
            chain.push((buf(2), in_len, W));
        }
        self.mem.write(buf(3), &[0xff]).unwrap();
        chain.push((buf(3), 1, W));
        let used = self.submit(&chain);
        let mut data = vec![0u8; in_len as usize];
        self.mem.read(buf(2), &mut data).unwrap();
        let mut status = [0u8];
        self.mem.read(buf(3), &mut status).unwrap();
        (status[0], used, data)
    }

    fn disk_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.disk.read(offset, &mut v).unwrap();
        v
    }

    fn config_u32(&mut self, offset: u64) -> u32 {
        self.dev.read(0x100 + offset, AccessWidth::Word) as u32
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[test]
fn identity_features_and_config() {
    let mut rig = rig();
    assert_eq!(r(&mut rig.dev, 0x08), 2);
    assert_eq!(rig.dev.name(), "virtio-blk");
    let offered = rig.dev.backend().features();
    assert_eq!(
        offered,
        feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | feature::DISCARD
            | feature::WRITE_ZEROES
    );
    assert_eq!(rig.config_u32(0), SECTORS as u32);
    assert_eq!(rig.config_u32(4), 0);
    assert_eq!(rig.config_u32(8), SIZE_MAX);
    assert_eq!(rig.config_u32(12), 254);
    assert_eq!(rig.config_u32(20), 512);
    assert_eq!(rig.dev.read(0x100 + 34, AccessWidth::Half), 1);
    assert_eq!(rig.config_u32(36), MAX_ZERO_SECTORS);
    assert_eq!(rig.config_u32(40), MAX_ZERO_SEGMENTS);
    assert_eq!(rig.config_u32(44), 1);
    assert_eq!(rig.config_u32(48), MAX_ZERO_SECTORS);
    assert_eq!(rig.config_u32(52), MAX_ZERO_SEGMENTS);
    assert_eq!(rig.dev.read(0x100 + 56, AccessWidth::Byte), 0);
    assert_eq!(rig.config_u32(60), 0);
    // Nothing is writable.
    rig.dev.write(0x100, AccessWidth::Word, 5);
    assert_eq!(rig.config_u32(0), SECTORS as u32);
    let ro = rig_with(true, false);
    assert_eq!(ro.dev.backend().features() & feature::RO, feature::RO);
}

#[test]
fn capacity_is_the_contiguous_whole_sectors_from_zero() {
    assert_eq!(Blk::new(disk(1000), false, b"").capacity(), 1);
    assert_eq!(Blk::new(disk(0), false, b"").capacity(), 0);
    assert_eq!(
        Blk::new(GuestMemory::from_static(512, Box::leak(vec![0; 4096].into_boxed_slice())), false, b"")
            .capacity(),
        0
    );
}

#[test]
fn write_then_read_back() {
    let mut rig = rig();
    let data = pattern(3 * 512, 1);
    let (status, used, _) = rig.request(request::OUT, 5, &data, 0);
    assert_eq!((status, used), (status::OK, 1));
    assert_eq!(rig.disk_bytes(5 * 512, 3 * 512), data);
    let (status, used, back) = rig.request(request::IN, 5, &[], 3 * 512);
    assert_eq!((status, used), (status::OK, 3 * 512 + 1));
    assert_eq!(back, data);
    // The last sector.
    let last = pattern(512, 9);
    assert_eq!(rig.request(request::OUT, SECTORS - 1, &last, 0).0, status::OK);
    let (status, _, back) = rig.request(request::IN, SECTORS - 1, &[], 512);
    assert_eq!((status, back), (status::OK, last));
}

#[test]
fn odd_scatter_gather() {
    let mut rig = rig();
    let data = pattern(1024, 3);
    // Header split 5 + 11 and sharing its second buffer with data; data in odd pieces;
    // a zero-length buffer in the middle.
    let mut bytes = header(request::OUT, 2).to_vec();
    bytes.extend_from_slice(&data);
    rig.mem.write(buf(0), &bytes[..5]).unwrap();
    rig.mem.write(buf(1), &bytes[5..300]).unwrap();
    rig.mem.write(buf(2), &bytes[300..]).unwrap();
    let used = rig.submit(&[
        (buf(0), 5, R),
        (buf(1), 295, R),
        (buf(4), 0, R),
        (buf(2), 1040 - 300, R),
        (buf(3), 1, W),
    ]);
    assert_eq!(used, 1);
    assert_eq!(rig.disk_bytes(1024, 1024), data);
    // Read it back into three writable buffers, the status in the last byte of the last.
    rig.mem.write(buf(0), &header(request::IN, 2)).unwrap();
    let used =
        rig.submit(&[(buf(0), 16, R), (buf(1), 100, W), (buf(2), 0, W), (buf(5), 700, W), (buf(3), 225, W)]);
    assert_eq!(used, 1025);
    let mut back = vec![0u8; 1024];
    rig.mem.read(buf(1), &mut back[..100]).unwrap();
    rig.mem.read(buf(5), &mut back[100..800]).unwrap();
    rig.mem.read(buf(3), &mut back[800..]).unwrap();
    assert_eq!(back, data);
    let mut status = [0xffu8];
    rig.mem.read(buf(3) + 224, &mut status).unwrap();
    assert_eq!(status[0], status::OK);
}

#[test]
fn out_of_range_and_partial_sectors_are_ioerr() {
    let mut rig = rig();
    for (sector, len) in
        [(SECTORS, 512), (SECTORS - 1, 1024), (u64::MAX / 512 + 1, 512), (u64::MAX, 512), (0, 100)]
    {
        let (status, used, data) = rig.request(request::IN, sector, &[], len);
        assert_eq!((status, used), (status::IOERR, 1), "read {sector} {len}");
        assert!(data.iter().all(|&b| b == 0xee), "nothing read");
        let (status, used, _) = rig.request(request::OUT, sector, &vec![1; len as usize], 0);
        assert_eq!((status, used), (status::IOERR, 1), "write {sector} {len}");
    }
    assert!(rig.disk_bytes(0, (SECTORS * 512) as usize).iter().all(|&b| b == 0));
}

#[test]
fn flush_succeeds() {
    let mut rig = rig();
    assert_eq!(rig.request(request::FLUSH, 0, &[], 0), (status::OK, 1, vec![]));
    // The sector field means nothing for a flush.
    assert_eq!(rig.request(request::FLUSH, u64::MAX, &[], 0).0, status::OK);
}

#[test]
fn get_id() {
    let mut rig = rig();
    let (status, used, id) = rig.request(request::GET_ID, 0, &[], 20);
    assert_eq!((status, used), (status::OK, 21));
    let mut want = [0u8; 20];
    want[..SERIAL.len()].copy_from_slice(SERIAL);
    assert_eq!(id, want);
    // A short buffer takes what fits.
    let (status, used, id) = rig.request(request::GET_ID, 0, &[], 6);
    assert_eq!((status, used, id.as_slice()), (status::OK, 7, &SERIAL[..6]));
    // A serial longer than 20 bytes is cut.
    let blk = Blk::new(disk(512), false, b"0123456789abcdefghijKLMN");
    assert_eq!(&blk.serial, b"0123456789abcdefghij");
}

#[test]
fn discard_and_write_zeroes() {
    let mut rig = rig();
    rig.disk.write(0, &vec![0xaa; (SECTORS * 512) as usize]).unwrap();
    let segs = [segment(1, 2, 0), segment(10, 1, 0)].concat();
    assert_eq!(rig.request(request::DISCARD, 0, &segs, 0), (status::OK, 1, vec![]));
    assert!(rig.disk_bytes(512, 1024).iter().all(|&b| b == 0));
    assert!(rig.disk_bytes(10 * 512, 512).iter().all(|&b| b == 0));
    assert!(rig.disk_bytes(0, 512).iter().all(|&b| b == 0xaa));
    assert!(rig.disk_bytes(3 * 512, 512).iter().all(|&b| b == 0xaa));
    // WRITE_ZEROES, with the unmap flag allowed.
    assert_eq!(rig.request(request::WRITE_ZEROES, 0, &segment(20, 4, 1), 0).0, status::OK);
    assert!(rig.disk_bytes(20 * 512, 4 * 512).iter().all(|&b| b == 0));
    assert!(rig.disk_bytes(24 * 512, 512).iter().all(|&b| b == 0xaa));

    let before = rig.disk_bytes(0, (SECTORS * 512) as usize);
    let cases: [(u32, Vec<u8>, u8); 8] = [
        // Flags: unmap is not a DISCARD flag; unknown flags for either.
        (request::DISCARD, segment(30, 1, 1).to_vec(), status::UNSUPP),
        (request::WRITE_ZEROES, segment(30, 1, 2).to_vec(), status::UNSUPP),
        // Too many segments.
        (request::DISCARD, segment(30, 1, 0).repeat(MAX_ZERO_SEGMENTS as usize + 1), status::UNSUPP),
        // Out of the disk, too many sectors, a bad payload length, none at all.
        (request::DISCARD, segment(SECTORS - 1, 2, 0).to_vec(), status::IOERR),
        (request::WRITE_ZEROES, segment(0, MAX_ZERO_SECTORS + 1, 0).to_vec(), status::IOERR),
        (request::WRITE_ZEROES, segment(0, 1, 0)[..12].to_vec(), status::IOERR),
        (request::DISCARD, vec![], status::IOERR),
        // A later bad segment stops the good one before it too.
        (request::WRITE_ZEROES, [segment(30, 1, 0), segment(SECTORS, 1, 0)].concat(), status::IOERR),
    ];
    for (kind, payload, want) in cases {
        assert_eq!(rig.request(kind, 0, &payload, 0).0, want, "{kind} {payload:?}");
    }
    assert_eq!(rig.disk_bytes(0, (SECTORS * 512) as usize), before, "refused requests changed the disk");
}

#[test]
fn read_only_disk() {
    let mut rig = rig_with(true, false);
    rig.disk.write(0, &pattern(512, 4)).unwrap();
    assert_eq!(rig.request(request::OUT, 0, &[0; 512], 0).0, status::IOERR);
    assert_eq!(rig.request(request::DISCARD, 0, &segment(0, 1, 0), 0).0, status::IOERR);
    assert_eq!(rig.request(request::WRITE_ZEROES, 0, &segment(0, 1, 0), 0).0, status::IOERR);
    assert_eq!(rig.disk_bytes(0, 512), pattern(512, 4));
    let (status, _, data) = rig.request(request::IN, 0, &[], 512);
    assert_eq!((status, data), (status::OK, pattern(512, 4)));
    assert_eq!(rig.request(request::FLUSH, 0, &[], 0).0, status::OK);
}

#[test]
fn unknown_types_are_unsupp() {
    let mut rig = rig();
    // GET_LIFETIME (10), SECURE_ERASE (14) and nonsense.
    for kind in [2, 10, 14, 99, u32::MAX] {
        assert_eq!(rig.request(kind, 0, &[], 0), (status::UNSUPP, 1, vec![]), "{kind}");
    }
    // Data buffers don't change that, and nothing is written into them.
    let (status, used, data) = rig.request(99, 0, &[1; 16], 8);
    assert_eq!((status, used, data), (status::UNSUPP, 1, vec![0xee; 8]));
}

#[test]
fn malformed_requests() {
    let mut rig = rig();
    // A header shorter than 16 bytes: IOERR.
    rig.mem.write(buf(0), &header(request::IN, 0)[..8]).unwrap();
    rig.mem.write(buf(3), &[0xff]).unwrap();
    assert_eq!(rig.submit(&[(buf(0), 8, R), (buf(2), 512, W), (buf(3), 1, W)]), 1);
    let mut status = [0u8];
    rig.mem.read(buf(3), &mut status).unwrap();
    assert_eq!(status[0], status::IOERR);
    // No header at all.
    assert_eq!(rig.submit(&[(buf(3), 1, W)]), 1);
    rig.mem.read(buf(3), &mut status).unwrap();
    assert_eq!(status[0], status::IOERR);
    // No writable byte for the status: completed with nothing written.
    rig.mem.write(buf(0), &header(request::FLUSH, 0)).unwrap();
    assert_eq!(rig.submit(&[(buf(0), 16, R)]), 0);
    assert_eq!(rig.submit(&[(buf(0), 16, R), (buf(3), 0, W)]), 0);
    // The device is still fine.
    assert_eq!(rig.request(request::FLUSH, 0, &[], 0).0, status::OK);
    assert_eq!(r(&mut rig.dev, 0x70) & 0x40, 0);
}

#[test]
fn the_disk_survives_a_reset() {
    let mut rig = rig();
    assert_eq!(rig.request(request::OUT, 7, &pattern(512, 5), 0).0, status::OK);
    w(&mut rig.dev, 0x70, 0);
    let features = rig.dev.backend().features() | transport_features::VERSION_1;
    let q = DriverQueue::new(&rig.mem, 16, RAM_BASE);
    bring_up(&mut rig.dev, features, &[&q]);
    rig.q = q;
    let (status, _, data) = rig.request(request::IN, 7, &[], 512);
    assert_eq!((status, data), (status::OK, pattern(512, 5)));
}

#[test]
fn legacy_transport() {
    let mut rig = rig_with(false, true);
    assert_eq!(r(&mut rig.dev, 0x04), 1);
    assert_eq!(rig.request(request::OUT, 3, &pattern(1024, 6), 0).0, status::OK);
    let (status, used, data) = rig.request(request::IN, 3, &[], 1024);
    assert_eq!((status, used, data), (status::OK, 1025, pattern(1024, 6)));
}

#[test]
fn many_requests_in_one_notify() {
    let mut rig = rig();
    let mut heads = Vec::new();
    for i in 0..5u64 {
        let h = buf(0) + i * 0x100;
        rig.mem.write(h, &header(request::OUT, i)).unwrap();
        rig.mem.write(buf(1) + i * 512, &pattern(512, i as u8)).unwrap();
        heads.push(rig.q.add(&rig.mem, &[(h, 16, R), (buf(1) + i * 512, 512, R), (buf(3) + i, 1, W)]));
    }
    w(&mut rig.dev, 0x50, 0);
    for head in heads {
        assert_eq!(rig.q.take_used(&rig.mem), Some((u32::from(head), 1)));
    }
    for i in 0..5u64 {
        assert_eq!(rig.disk_bytes(i * 512, 512), pattern(512, i as u8));
    }
}

#[test]
fn a_notify_does_one_budget_of_requests_and_the_backlog_the_rest_in_order() {
    use crate::devices::virtio::budget::BYTES_PER_CALL;
    let mut rig = rig();
    // Five 16 KiB reads (the whole disk is 32 KiB): 80 KiB, more than one budget.
    let per_request = 16 * 1024;
    let mut heads = Vec::new();
    for i in 0..5 {
        let (head, data) = (buf(0) + i * 32, buf(1) + i * u64::from(per_request));
        rig.mem.write(head, &header(request::IN, 0)).unwrap();
        let chain = [(head, 16, R), (data, per_request, W), (head + 16, 1, W)];
        heads.push(rig.q.add(&rig.mem, &chain));
    }
    w(&mut rig.dev, 0x50, 0);
    let per_call = BYTES_PER_CALL.div_ceil(u64::from(per_request) + 17) as usize;
    let mut done = Vec::new();
    while let Some((id, _)) = rig.q.take_used(&rig.mem) {
        done.push(id as u16);
    }
    assert_eq!(done, heads[..per_call], "the first notify stops when its budget is spent");
    assert!(rig.dev.has_backlog());
    rig.dev.work_on_backlog();
    while let Some((id, _)) = rig.q.take_used(&rig.mem) {
        done.push(id as u16);
    }
    assert_eq!(done, heads, "the backlog does the rest, in order");
    rig.dev.work_on_backlog();
    assert!(!rig.dev.has_backlog());
}
