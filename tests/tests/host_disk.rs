//! Sluice's virtio-blk over the machine's own disk (`blk::host::HostBlk`), driven
//! from both sides with guest-drivers: the guest's driver above, the host driver
//! inside, Sluice's RAM-disk model standing in for QEMU's device below (see
//! `sluice_tests::host_disk`). What it must do: translate and split the guest's
//! buffers, copy the header once, keep requests in order when the host queue is
//! full, wait for the host on a reset, and fail requests of a host device that
//! gave up with IOERR, never hang.

use guest_drivers::blk::{Request, Token, VirtioBlk};
use guest_drivers::hal::PhysAddr;
use guest_drivers::transport::mmio::{reg, MmioTransport};
use guest_drivers::Error;
use sluice_tests::disk::{pattern, SECTOR};
use sluice_tests::hal::RegionHal;
use sluice_tests::host_disk::{HostDiskRig, GUEST_SERIAL};
use sluice_tests::slot::SlotRegisters;

type Guest = VirtioBlk<RegionHal, MmioTransport<SlotRegisters>>;

const SECTORS: u64 = 64;

/// Waits for `token`, delivering the host device's interrupts meanwhile as Sluice
/// would; gives up (with the guest device's status) if it never completes.
fn finish(rig: &HostDiskRig, guest: &mut Guest, token: Token) -> Result<(), Error> {
    for _ in 0..100 {
        rig.host_interrupt();
        match guest.complete(token) {
            Err(Error::NotReady) => {}
            result => return result,
        }
    }
    guest.check_status()?;
    panic!("request {token:?} never completed, and the device did not say why");
}

/// Starts `request` with data at the window offsets and lengths in `pieces`.
fn submit(
    rig: &HostDiskRig,
    guest: &mut Guest,
    request: Request,
    sector: u64,
    pieces: &[(usize, u32)],
) -> Token {
    let data: Vec<(PhysAddr, u32)> = pieces.iter().map(|&(at, len)| (rig.data_ipa(at), len)).collect();
    // SAFETY: the data window is the VM's RAM, alive with the rig; each test waits
    // for its requests (or resets the device) before it looks at the buffers.
    unsafe { guest.submit_segments(request, sector, &data) }.expect("submitted")
}

#[test]
fn requests_reach_the_host_disk_through_buffers_split_where_the_vm_ram_is() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    let mut guest = rig.guest();
    assert_eq!(guest.capacity(), SECTORS);
    let token = submit(&rig, &mut guest, Request::GetId, 0, &[(0, 20)]);
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    assert_eq!(rig.read_data(0, GUEST_SERIAL.len()), GUEST_SERIAL, "GET_ID answered from the VM's serial");

    // 4 KiB across the middle of the window: two pieces far apart in host memory.
    let middle = rig.data.len() / 2;
    let written = pattern(7, 4096);
    rig.write_data(middle - 1536, &written);
    let token = submit(&rig, &mut guest, Request::Write, 8, &[(middle - 1536, 4096)]);
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    assert_eq!(rig.disk.read(8, 8), written, "the host disk holds what the guest wrote, in order");

    let token = guest.submit_flush().unwrap();
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));

    // Read it back into three buffers, one of them across the middle too.
    let pieces = [(0, 1024), (middle - 512, 2048), (8192, 1024)];
    let token = submit(&rig, &mut guest, Request::Read, 8, &pieces);
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    let back: Vec<u8> = pieces.iter().flat_map(|&(at, len)| rig.read_data(at, len as usize)).collect();
    assert_eq!(back, written);

    // Past the end of the disk: IOERR, from Sluice's own check.
    let token = submit(&rig, &mut guest, Request::Read, SECTORS - 1, &[(0, 1024)]);
    assert_eq!(finish(&rig, &mut guest, token), Err(Error::IoError));
}

#[test]
fn a_buffer_outside_the_vm_ram_reaches_nothing() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    let mut guest = rig.guest();
    let data = [(0x1000, 512)];
    // SAFETY: refused by the device; nothing is written anywhere.
    let token = unsafe { guest.submit_segments(Request::Read, 0, &data) }.unwrap();
    assert_eq!(finish(&rig, &mut guest, token), Err(Error::DeviceNeedsReset));
    assert_eq!(rig.host.stats().notifies, 0, "nothing reached the host device");
}

/// The byte offset in `rig.rings` of the 16-byte header of a request of `kind`
/// at `sector` (where the guest driver put it).
fn find_header(rig: &HostDiskRig, kind: u32, sector: u64) -> u64 {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&kind.to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    let base = sluice_tests::region::GUEST_BASE;
    let mut page = vec![0; 4096];
    for offset in (0..rig.rings.len()).step_by(4096) {
        rig.rings.read(base + offset as u64, &mut page).unwrap();
        if let Some(at) = page.windows(16).position(|w| w == header) {
            return base + (offset + at) as u64;
        }
    }
    panic!("no header of type {kind} for sector {sector} in the guest's memory");
}

#[test]
fn the_host_sees_the_header_as_it_was_when_the_request_was_started() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    let mut guest = rig.guest();
    let written = pattern(3, 512);
    rig.write_data(0, &written);
    rig.host.hold_notifies(true);
    let token = submit(&rig, &mut guest, Request::Write, 3, &[(0, 512)]);
    assert_eq!(rig.host.held_notifies(), 1, "on the host device, not done yet");
    // The guest rewrites its header: the write is already Sluice's copy's.
    let header = find_header(&rig, 1, 3);
    rig.rings.write_u64(header + 8, 60);
    rig.host.release_notifies();
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    assert_eq!(rig.disk.read(3, 1), written);
    assert_eq!(rig.disk.read(60, 1), vec![0; SECTOR]);
}

#[test]
fn a_full_host_queue_holds_the_rest_in_order_and_loses_none() {
    const REQUESTS: usize = 24;
    let rig = HostDiskRig::new(SECTORS, 4, false);
    let mut guest = rig.guest();
    for sector in 0..REQUESTS as u64 {
        rig.disk.write(sector, &pattern(sector, SECTOR));
    }
    rig.host.hold_notifies(true);
    let tokens: Vec<Token> = (0..REQUESTS)
        .map(|i| submit(&rig, &mut guest, Request::Read, i as u64, &[(i * SECTOR, SECTOR as u32)]))
        .collect();
    let mut done = vec![false; REQUESTS];
    for _ in 0..100 {
        rig.host.release_notifies();
        rig.host_interrupt();
        while let Some(token) = guest.poll().unwrap() {
            let i = tokens.iter().position(|&t| t == token).expect("a token of ours");
            assert!(!done[i], "request {i} completed twice");
            done[i] = true;
            assert_eq!(guest.complete(token), Ok(()));
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    assert!(done.iter().all(|&d| d), "requests never completed: {done:?}");
    for i in 0..REQUESTS {
        assert_eq!(rig.read_data(i * SECTOR, SECTOR), pattern(i as u64, SECTOR), "request {i}");
    }
}

#[test]
fn a_reset_waits_for_the_host_and_completes_nothing_afterwards() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    let mut guest = rig.guest();
    let written = pattern(9, 1024);
    rig.write_data(4096, &written);
    rig.host.hold_notifies(true);
    let token = submit(&rig, &mut guest, Request::Write, 12, &[(4096, 1024)]);
    assert_eq!(rig.host.held_notifies(), 1);
    // The host device gets to it while Sluice waits for it: the guest's reset.
    rig.host.release_held_on_read(true);
    rig.vm.write32(reg::STATUS, 0);
    assert_eq!(rig.host.held_notifies(), 0);
    assert_eq!(rig.disk.read(12, 2), written, "the host finished the write before the reset returned");
    rig.host_interrupt();
    assert_eq!(guest.poll(), Ok(None), "nothing was put on the guest's used ring after its reset");
    assert!(!guest.is_done(token));
}

#[test]
fn a_host_device_that_gives_up_fails_its_requests_with_ioerr() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    let mut guest = rig.guest();
    rig.host.hold_notifies(true);
    let token = submit(&rig, &mut guest, Request::Read, 0, &[(0, 512)]);
    // Break the host's ring: its first descriptor now points where it sees nothing.
    let ring = rig.host_dma.host_base() as *mut u64;
    // SAFETY: the host driver's ring is the first allocation of `host_dma`, alive,
    // and nothing else touches it until the host device reads it below.
    unsafe { ring.write_volatile(0x10) };
    rig.host.release_notifies();
    assert_ne!(rig.host.status() & 0x40, 0, "the host device wants a reset");
    assert_eq!(finish(&rig, &mut guest, token), Err(Error::IoError));
    // Later requests fail at once: the host disk is gone.
    rig.host.hold_notifies(false);
    let token = submit(&rig, &mut guest, Request::Read, 0, &[(0, 512)]);
    assert_eq!(finish(&rig, &mut guest, token), Err(Error::IoError));
}

#[test]
fn write_zeroes_and_discard_reach_the_host_with_the_ranges_as_checked() {
    let rig = HostDiskRig::new(SECTORS, 256, false);
    for sector in 0..SECTORS {
        rig.disk.write(sector, &pattern(sector, SECTOR));
    }
    let mut guest = rig.guest();
    let offered = guest.features() & (1 << 13 | 1 << 14);
    assert_eq!(offered, 1 << 13 | 1 << 14, "the host offers both, so the guest is offered both");
    // One range: 2 sectors from sector 4.
    let mut range = [0u8; 16];
    range[..8].copy_from_slice(&4u64.to_le_bytes());
    range[8..12].copy_from_slice(&2u32.to_le_bytes());
    rig.write_data(0, &range);
    rig.host.hold_notifies(true);
    let token = submit(&rig, &mut guest, Request::WriteZeroes, 0, &[(0, 16)]);
    // The guest moves its range to sector 40 once the request is on its way.
    rig.write_data(0, &40u64.to_le_bytes());
    rig.host.release_notifies();
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    assert_eq!(rig.disk.read(4, 2), vec![0; 2 * SECTOR]);
    assert_eq!(rig.disk.read(40, 1), pattern(40, SECTOR), "the host saw the range as checked");
    assert_eq!(rig.disk.read(6, 1), pattern(6, SECTOR));

    rig.host.hold_notifies(false);
    rig.write_data(0, &10u64.to_le_bytes());
    let token = submit(&rig, &mut guest, Request::Discard, 0, &[(0, 16)]);
    assert_eq!(finish(&rig, &mut guest, token), Ok(()));
    assert_eq!(rig.disk.read(10, 2), vec![0; 2 * SECTOR], "the model discards by zeroing");

    // A range past the end: IOERR from Sluice's check, the disk untouched.
    rig.write_data(0, &(SECTORS - 1).to_le_bytes());
    let token = submit(&rig, &mut guest, Request::WriteZeroes, 0, &[(0, 16)]);
    assert_eq!(finish(&rig, &mut guest, token), Err(Error::IoError));
    assert_eq!(rig.disk.read(SECTORS - 1, 1), pattern(SECTORS - 1, SECTOR));
}
