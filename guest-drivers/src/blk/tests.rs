//! The blk driver against a fake virtio-blk device run on each notify.

use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

use super::*;
use crate::fake::{Chain, FakeHal, FakeQueueDevice, FakeState, FakeTransport};
use crate::features::{RING_EVENT_IDX, RING_INDIRECT_DESC, VERSION_1};

/// Sectors of the fake disk.
const SECTORS: u64 = 64;

/// The fake device's backend: a RAM disk, and whether it completes requests at once
/// or holds them for the test to complete.
struct Backend {
    disk: Vec<u8>,
    hold: bool,
    held: Vec<Chain>,
    queue: Option<FakeQueueDevice>,
    /// Data bytes of each request seen.
    transfers: Vec<usize>,
    id: Option<&'static [u8]>,
}

impl Backend {
    /// Runs one request; returns the used length.
    fn serve(&mut self, chain: &Chain) -> u32 {
        let header = chain.readable();
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        let status_desc = *chain.descs.last().unwrap();
        assert!(status_desc.writable && status_desc.len == 1);
        let data = &chain.descs[1..chain.descs.len() - 1];
        let data_len: usize = data.iter().map(|d| d.len as usize).sum();
        self.transfers.push(data_len);
        let start = sector as usize * SECTOR_SIZE;
        let in_range = sector.checked_add((data_len / SECTOR_SIZE) as u64).is_some_and(|end| end <= SECTORS);
        let (status, written) = match kind {
            T_IN if in_range => {
                let mut at = start;
                for d in data {
                    crate::fake::write_phys(d.addr, &self.disk[at..at + d.len as usize]);
                    at += d.len as usize;
                }
                (S_OK, data_len)
            }
            T_OUT if in_range => {
                let bytes: Vec<u8> =
                    data.iter().flat_map(|d| crate::fake::read_phys(d.addr, d.len as usize)).collect();
                self.disk[start..start + data_len].copy_from_slice(&bytes);
                (S_OK, 0)
            }
            T_IN | T_OUT => (S_IOERR, 0),
            T_WRITE_ZEROES => {
                for range in chain.readable()[HEADER_SIZE..].chunks_exact(16) {
                    let start = u64::from_le_bytes(range[0..8].try_into().unwrap()) as usize * SECTOR_SIZE;
                    let count = u32::from_le_bytes(range[8..12].try_into().unwrap()) as usize * SECTOR_SIZE;
                    self.disk[start..start + count].fill(0);
                }
                (S_OK, 0)
            }
            T_FLUSH => (S_OK, 0),
            T_GET_ID => match self.id {
                Some(id) => {
                    crate::fake::write_phys(data[0].addr, id);
                    (S_OK, id.len())
                }
                None => (S_UNSUPP, 0),
            },
            _ => (S_UNSUPP, 0),
        };
        crate::fake::write_phys(status_desc.addr, &[status]);
        written as u32 + 1
    }

    fn on_notify(&mut self, state: &mut FakeState, queue: u16) {
        assert_eq!(queue, 0);
        let event_idx = state.driver_features & RING_EVENT_IDX != 0;
        let device = self.queue.get_or_insert_with(|| FakeQueueDevice::new(&state.queues[0], event_idx));
        let mut chains = Vec::new();
        while let Some(chain) = device.pop() {
            chains.push(chain);
        }
        for chain in chains {
            if self.hold {
                self.held.push(chain);
            } else {
                let len = self.serve(&chain);
                self.queue.as_mut().unwrap().push_used(chain.head, len);
            }
        }
    }

    /// Completes held request `i` (in arrival order).
    fn finish(&mut self, chain: &Chain) {
        let len = self.serve(chain);
        self.queue.as_mut().unwrap().push_used(chain.head, len);
    }
}

/// A block device offering `features` (plus VERSION_1 on a modern device).
fn device(features: u64) -> (FakeTransport, Arc<Mutex<Backend>>) {
    let transport = FakeTransport::new(device_id::BLOCK, features | VERSION_1, &[64], 64);
    transport.set_config(CONFIG_CAPACITY, &SECTORS.to_le_bytes());
    transport.set_config(CONFIG_SIZE_MAX, &1024u32.to_le_bytes());
    transport.set_config(CONFIG_BLK_SIZE, &4096u32.to_le_bytes());
    let disk = (0..SECTORS as usize * SECTOR_SIZE).map(|i| (i / SECTOR_SIZE) as u8).collect();
    let backend = Arc::new(Mutex::new(Backend {
        disk,
        hold: false,
        held: Vec::new(),
        queue: None,
        transfers: Vec::new(),
        id: Some(b"sluice-disk-0"),
    }));
    let b = backend.clone();
    transport.set_notify_hook(move |state, queue| b.lock().unwrap().on_notify(state, queue));
    (transport, backend)
}

type Blk = VirtioBlk<FakeHal, FakeTransport>;

#[test]
fn initialisation_follows_the_spec_sequence() {
    let (transport, _backend) = device(F_FLUSH | F_RO | RING_EVENT_IDX | F_GEOMETRY);
    let blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    let s = transport.state();
    // reset, ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK
    assert_eq!(s.status_log, [0, 1, 3, 11, 15]);
    // Offered and understood: accepted; GEOMETRY is not understood.
    assert_eq!(s.driver_features, F_FLUSH | F_RO | RING_EVENT_IDX | VERSION_1);
    assert!(s.queues[0].ready);
    assert_eq!(s.queues[0].size, 64);
    drop(s);
    assert!(blk.read_only());
    assert_eq!(blk.capacity(), SECTORS);
    assert_eq!(blk.block_size(), None, "BLK_SIZE not offered");
}

#[test]
fn a_device_that_refuses_the_features_is_an_error() {
    let (transport, _backend) = device(F_FLUSH);
    transport.state().refuse_features = true;
    assert!(matches!(Blk::new(transport.clone(), FakeHal::new()), Err(Error::FeaturesRefused)));
    let status = transport.state().status;
    assert!(DeviceStatus(status).contains(DeviceStatus::FAILED));
    assert!(!DeviceStatus(status).contains(DeviceStatus::DRIVER_OK));
}

#[test]
fn a_modern_device_without_version_1_is_refused() {
    let (transport, _backend) = device(F_FLUSH);
    transport.state().device_features &= !VERSION_1;
    assert!(matches!(Blk::new(transport, FakeHal::new()), Err(Error::FeaturesRefused)));
}

#[test]
fn the_wrong_device_type_is_refused() {
    let transport = FakeTransport::new(device_id::CONSOLE, VERSION_1, &[8, 8], 16);
    let r = Blk::new(transport, FakeHal::new());
    assert!(matches!(r, Err(Error::WrongDeviceType { expected: 2, found: 3 })));
}

#[test]
fn a_legacy_device_skips_features_ok_and_version_1() {
    let (transport, backend) = device(F_FLUSH | RING_INDIRECT_DESC);
    transport.state().legacy = true;
    let mut blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    {
        let s = transport.state();
        assert_eq!(s.status_log, [0, 1, 3, 7]);
        assert_eq!(s.driver_features, F_FLUSH | RING_INDIRECT_DESC);
    }
    let mut buf = [0u8; 512];
    blk.read_blocks(3, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 3));
    drop(backend);
}

/// Every combination of the ring features.
const RING_FEATURE_SETS: [u64; 4] =
    [0, RING_EVENT_IDX, RING_INDIRECT_DESC, RING_EVENT_IDX | RING_INDIRECT_DESC];

#[test]
fn blocks_written_read_back_with_every_ring_feature_set() {
    for ring in RING_FEATURE_SETS {
        let (transport, backend) = device(F_FLUSH | F_BLK_SIZE | ring);
        let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
        assert_eq!(blk.features() & ring, ring);
        assert_eq!(blk.block_size(), Some(4096));
        let pattern: Vec<u8> = (0..2048).map(|i| (i * 7 + 1) as u8).collect();
        blk.write_blocks(10, &pattern).unwrap();
        blk.flush().unwrap();
        let mut back = vec![0u8; 2048];
        blk.read_blocks(10, &mut back).unwrap();
        assert_eq!(back, pattern);
        // The last sector, and one past it.
        let mut last = [0u8; 512];
        blk.read_blocks(SECTORS - 1, &mut last).unwrap();
        assert!(last.iter().all(|&b| b == (SECTORS - 1) as u8));
        assert_eq!(blk.read_blocks(SECTORS, &mut last), Err(Error::IoError));
        assert_eq!(blk.write_blocks(SECTORS - 1, &pattern[..1024]), Err(Error::IoError));
        assert_eq!(&backend.lock().unwrap().disk[10 * 512..12 * 512], &pattern[..1024]);
    }
}

#[test]
fn size_max_splits_large_transfers() {
    let (transport, backend) = device(F_SIZE_MAX);
    let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
    assert_eq!(blk.max_transfer(), 1024);
    let mut buf = vec![0u8; 3 * 1024 + 512];
    blk.read_blocks(0, &mut buf).unwrap();
    assert_eq!(backend.lock().unwrap().transfers, [1024, 1024, 1024, 512]);
    for (i, chunk) in buf.chunks(512).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8));
    }
    // SAFETY: refused before reaching the device.
    assert_eq!(unsafe { blk.submit_read(0, &mut buf) }, Err(Error::InvalidParam));
}

#[test]
fn bad_lengths_and_read_only_writes_are_refused_locally() {
    let (transport, backend) = device(F_RO);
    let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
    let mut odd = [0u8; 100];
    assert_eq!(blk.read_blocks(0, &mut odd), Err(Error::InvalidParam));
    assert_eq!(blk.read_blocks(0, &mut []), Err(Error::InvalidParam));
    assert_eq!(blk.write_blocks(0, &[0u8; 512]), Err(Error::ReadOnly));
    assert!(backend.lock().unwrap().transfers.is_empty());
    // Without FLUSH the device writes through: flush is a no-op.
    blk.flush().unwrap();
    assert_eq!(blk.submit_flush(), Err(Error::Unsupported));
}

#[test]
fn get_id_reads_the_serial_or_reports_unsupported() {
    let (transport, backend) = device(0);
    let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
    let mut id = [0u8; 20];
    assert_eq!(blk.get_id(&mut id), Ok(13));
    assert_eq!(&id[..13], b"sluice-disk-0");
    backend.lock().unwrap().id = None;
    assert_eq!(blk.get_id(&mut id), Err(Error::Unsupported));
}

#[test]
fn many_requests_in_flight_complete_out_of_order() {
    for ring in RING_FEATURE_SETS {
        let (transport, backend) = device(ring);
        let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
        backend.lock().unwrap().hold = true;
        let mut bufs = vec![[0u8; 512]; 16];
        let mut tokens = Vec::new();
        for (i, buf) in bufs.iter_mut().enumerate() {
            // SAFETY: `bufs` is not touched until every token has completed.
            tokens.push(unsafe { blk.submit_read(i as u64 * 2, buf) }.unwrap());
        }
        assert_eq!(blk.outstanding(), 16);
        assert_eq!(blk.complete(tokens[0]), Err(Error::NotReady));
        assert_eq!(blk.poll(), Ok(None));

        // The device finishes them backwards, in two batches.
        let held: Vec<Chain> = core::mem::take(&mut backend.lock().unwrap().held);
        assert_eq!(held.len(), 16);
        for chain in held[8..].iter().rev() {
            backend.lock().unwrap().finish(chain);
        }
        assert_eq!(blk.poll(), Ok(Some(tokens[15])));
        assert!(blk.is_done(tokens[15]));
        assert_eq!(blk.complete(tokens[3]), Err(Error::NotReady));
        for &t in &tokens[8..] {
            assert_eq!(blk.complete(t), Ok(()));
        }
        for chain in held[..8].iter().rev() {
            backend.lock().unwrap().finish(chain);
        }
        for &t in tokens[..8].iter().rev() {
            assert_eq!(blk.wait(t), Ok(()));
        }
        assert_eq!(blk.complete(tokens[0]), Err(Error::InvalidToken), "a spent token");
        assert_eq!(blk.outstanding(), 0);
        for (i, buf) in bufs.iter().enumerate() {
            assert!(buf.iter().all(|&b| b == (i * 2) as u8));
        }
    }
}

#[test]
fn the_queue_fills_up_and_drains() {
    // Without INDIRECT a request takes 3 of the 64 descriptors: 21 fit.
    let (transport, backend) = device(0);
    let mut blk = Blk::new(transport, FakeHal::new()).unwrap();
    backend.lock().unwrap().hold = true;
    let mut tokens = Vec::new();
    loop {
        match blk.submit_leaked_get_id() {
            Ok(t) => tokens.push(t),
            Err(e) => {
                assert_eq!(e, Error::QueueFull);
                break;
            }
        }
    }
    assert_eq!(tokens.len(), 21);
    let held: Vec<Chain> = core::mem::take(&mut backend.lock().unwrap().held);
    for chain in &held {
        backend.lock().unwrap().finish(chain);
    }
    for t in tokens {
        blk.wait(t).unwrap();
    }
}

impl Blk {
    /// A request with no caller buffer: a GET_ID into a leaked buffer.
    fn submit_leaked_get_id(&mut self) -> Result<Token> {
        let buf: &'static mut [u8] = vec![0u8; ID_BYTES].leak();
        // SAFETY: the buffer is leaked, so it outlives the request.
        unsafe { self.submit(T_GET_ID, 0, Some((buf, true))) }
    }
}

#[test]
fn a_bogus_completion_resets_the_device_and_breaks_the_driver() {
    let (transport, backend) = device(0);
    let mut blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    backend.lock().unwrap().hold = true;
    let mut buf = [0u8; 512];
    // SAFETY: the device is reset below before `buf` is used again.
    let token = unsafe { blk.submit_read(0, &mut buf) }.unwrap();
    backend.lock().unwrap().queue.as_mut().unwrap().push_used_raw(63, 0);
    assert_eq!(blk.wait(token), Err(Error::BadUsedId(63)));
    assert_eq!(transport.state().status, 0, "device reset: it lets go of the buffer");
    assert_eq!(blk.read_blocks(0, &mut buf), Err(Error::Broken));
    assert_eq!(blk.complete(token), Err(Error::Broken));
}

#[test]
fn check_status_notices_a_device_that_gave_up() {
    let (transport, _backend) = device(F_FLUSH);
    let mut blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    assert_eq!(blk.check_status(), Ok(()));
    transport.state().status |= DeviceStatus::DEVICE_NEEDS_RESET.0;
    assert_eq!(blk.check_status(), Err(Error::DeviceNeedsReset));
    assert_eq!(blk.check_status(), Err(Error::Broken));
    assert_eq!(blk.submit_flush(), Err(Error::Broken));
}

#[test]
fn device_needs_reset_ends_a_wait() {
    let (transport, backend) = device(0);
    let mut blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    backend.lock().unwrap().hold = true;
    transport.state().status |= DeviceStatus::DEVICE_NEEDS_RESET.0;
    let mut buf = [0u8; 512];
    assert_eq!(blk.read_blocks(0, &mut buf), Err(Error::DeviceNeedsReset));
    assert_eq!(transport.state().status, 0);
}

#[test]
fn interrupts_are_acknowledged_and_suppressed() {
    let (transport, _backend) = device(RING_EVENT_IDX);
    let mut blk = Blk::new(transport.clone(), FakeHal::new()).unwrap();
    transport.state().interrupt_status = 1;
    assert_eq!(blk.ack_interrupt(), 1);
    assert_eq!(transport.state().interrupt_status, 0);
    blk.disable_interrupts();
    assert!(blk.enable_interrupts());
}

#[test]
fn dropping_the_driver_resets_the_device_and_frees_its_memory() {
    for ring in RING_FEATURE_SETS {
        let (transport, _backend) = device(ring);
        let hal = FakeHal::new();
        let mut blk = Blk::new(transport.clone(), hal.clone()).unwrap();
        let mut buf = [0u8; 512];
        blk.read_blocks(1, &mut buf).unwrap();
        assert!(hal.live_pages() > 0);
        drop(blk);
        assert_eq!(hal.live_pages(), 0);
        assert_eq!(transport.state().status, 0);
        assert!(!transport.state().queues[0].ready);
    }
}

#[test]
fn init_failures_free_everything() {
    for allocs in 0..3 {
        let (transport, _backend) = device(RING_INDIRECT_DESC);
        let hal = FakeHal::failing_after(allocs);
        assert!(matches!(Blk::new(transport.clone(), hal.clone()), Err(Error::NoMemory)));
        assert_eq!(hal.live_pages(), 0);
        assert_eq!(transport.state().status, 0, "abandoned devices are reset");
    }
}

#[test]
fn the_dma_footprint_is_as_documented() {
    let transport = FakeTransport::new(device_id::BLOCK, VERSION_1 | RING_INDIRECT_DESC, &[256], 64);
    let hal = FakeHal::new();
    let _blk = Blk::new(transport, hal.clone()).unwrap();
    // Ring 3 pages, indirect tables 4, request slots 2.
    assert_eq!(hal.live_pages(), 9);
}

/// The device address of `buf`'s byte `at`, as `FakeHal` hands them out.
fn device_address(hal: &FakeHal, buf: &[u8], at: usize) -> PhysAddr {
    hal.virt_to_phys(buf.as_ptr() as usize + at)
}

#[test]
fn segments_given_by_device_address_are_written_and_read_back_in_order() {
    for ring in RING_FEATURE_SETS {
        let (transport, backend) = device(F_SEG_MAX | ring);
        transport.set_config(CONFIG_SEG_MAX, &8u32.to_le_bytes());
        let hal = FakeHal::new();
        let mut blk = Blk::new(transport, hal.clone()).unwrap();
        assert_eq!((blk.max_segments(), blk.max_segment_size()), (Some(8), None));
        let pattern: Vec<u8> = (0..2048).map(|i| (i * 3 + 5) as u8).collect();
        // Three pieces of uneven length: 512 + 1000 + 536 bytes.
        let pieces = [(0, 512), (512, 1000), (1512, 536)];
        let data: Vec<_> =
            pieces.iter().map(|&(at, len)| (device_address(&hal, &pattern, at), len)).collect();
        // SAFETY: `pattern` outlives the request, waited for next.
        let token = unsafe { blk.submit_segments(Request::Write, 20, &data) }.unwrap();
        blk.wait(token).unwrap();
        assert_eq!(&backend.lock().unwrap().disk[20 * 512..24 * 512], &pattern[..]);

        let back = vec![0u8; 2048];
        let data = [(device_address(&hal, &back, 0), 1536), (device_address(&hal, &back, 1536), 512)];
        // SAFETY: as above; the device writes `back`, which nothing else touches.
        let token = unsafe { blk.submit_segments(Request::Read, 20, &data) }.unwrap();
        blk.wait(token).unwrap();
        assert_eq!(back, pattern);
        assert_eq!(backend.lock().unwrap().transfers, [2048, 2048]);
    }
}

#[test]
fn segment_requests_are_checked_before_the_device_sees_them() {
    let (transport, backend) = device(F_SEG_MAX | F_SIZE_MAX | F_RO);
    transport.set_config(CONFIG_SEG_MAX, &2u32.to_le_bytes());
    let hal = FakeHal::new();
    let mut blk = Blk::new(transport, hal.clone()).unwrap();
    let buf = [0u8; 4096];
    let at = |offset, len| (device_address(&hal, &buf, offset), len);
    let submit = |blk: &mut Blk, request, data: &[(PhysAddr, u32)]| {
        // SAFETY: `buf` outlives every request (each is refused, or waited for below).
        unsafe { blk.submit_segments(request, 0, data) }
    };
    assert_eq!(submit(&mut blk, Request::Write, &[at(0, 512)]), Err(Error::ReadOnly));
    assert_eq!(submit(&mut blk, Request::WriteZeroes, &[at(0, 16)]), Err(Error::ReadOnly));
    assert_eq!(submit(&mut blk, Request::Flush, &[]), Err(Error::Unsupported));
    assert_eq!(submit(&mut blk, Request::Read, &[]), Err(Error::InvalidParam));
    assert_eq!(submit(&mut blk, Request::Read, &[at(0, 100)]), Err(Error::InvalidParam));
    assert_eq!(submit(&mut blk, Request::Read, &[at(0, 512), at(512, 0)]), Err(Error::InvalidParam));
    let three = [at(0, 512), at(512, 512), at(1024, 512)];
    assert_eq!(submit(&mut blk, Request::Read, &three), Err(Error::InvalidParam), "seg_max is 2");
    assert_eq!(submit(&mut blk, Request::Read, &[at(0, 2048)]), Err(Error::InvalidParam), "size_max is 1024");
    assert!(backend.lock().unwrap().transfers.is_empty());
    let token = submit(&mut blk, Request::Read, &[at(0, 1024), at(1024, 512)]).unwrap();
    assert_eq!(blk.wait(token), Ok(()));
}

#[test]
fn write_zeroes_and_discard_need_their_features() {
    let (transport, backend) = device(F_WRITE_ZEROES);
    let hal = FakeHal::new();
    let mut blk = Blk::new(transport, hal.clone()).unwrap();
    assert_eq!(blk.features() & (F_WRITE_ZEROES | F_DISCARD), F_WRITE_ZEROES);
    // One range: sectors 4..6, flags 0.
    let mut range = [0u8; 16];
    range[0..8].copy_from_slice(&4u64.to_le_bytes());
    range[8..12].copy_from_slice(&2u32.to_le_bytes());
    let data = [(device_address(&hal, &range, 0), 16)];
    // SAFETY: `range` outlives the request, waited for next.
    let token = unsafe { blk.submit_segments(Request::WriteZeroes, 0, &data) }.unwrap();
    blk.wait(token).unwrap();
    let disk = &backend.lock().unwrap().disk;
    assert!(disk[4 * 512..6 * 512].iter().all(|&b| b == 0));
    assert!(disk[6 * 512..7 * 512].iter().all(|&b| b == 6));
    // SAFETY: refused before the device sees it.
    assert_eq!(unsafe { blk.submit_segments(Request::Discard, 0, &data) }, Err(Error::Unsupported));
}
