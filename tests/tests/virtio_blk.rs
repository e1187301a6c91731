//! guest-drivers' virtio-blk driver against Sluice's virtio-blk model, over a shared
//! region the device sees at a different address than the driver, every register
//! access a trapped-style access to the model: plain I/O in every variant (legacy
//! and modern, EVENT_IDX and INDIRECT on and off), the last sector and past it, a
//! read-only disk, buffers at odd addresses, the cost of one read in traps, a
//! configuration change, and a blk and a console in one guest.

use std::sync::Arc;

use guest_drivers::blk::spec::{F_BLK_SIZE, F_RO};
use guest_drivers::blk::VirtioBlk;
use guest_drivers::console::VirtioConsole;
use guest_drivers::features::{RING_EVENT_IDX, RING_INDIRECT_DESC, VERSION_1};
use guest_drivers::transport::{interrupt, Transport};
use guest_drivers::Error;
use hypervisor::devices::virtio::status;
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::SharedRegion;
use sluice_tests::rig::{
    blk_slot, console_slot, filtered_transport, transport, TestTransport, Variant, SERIAL,
};
use sluice_tests::slot::Slot;

type Blk = VirtioBlk<RegionHal, TestTransport>;

/// Sectors of the test disks.
const SECTORS: u64 = 256;

fn rig(variant: Variant, read_only: bool) -> (Arc<SharedRegion>, Disk, Slot) {
    let region = SharedRegion::with_default_size();
    let disk = Disk::patterned(SECTORS);
    let slot = blk_slot(&region, &disk, variant.legacy, read_only);
    (region, disk, slot)
}

fn driver(region: &Arc<SharedRegion>, slot: &Slot, variant: Variant) -> Blk {
    VirtioBlk::new(transport(slot, variant), RegionHal::new(region)).expect("blk driver init")
}

#[test]
fn reads_writes_flushes_and_identifies_in_every_variant() {
    for v in Variant::all() {
        let (region, disk, slot) = rig(v, false);
        let mut blk = driver(&region, &slot, v);

        let f = blk.features();
        assert_eq!(f & RING_EVENT_IDX != 0, v.event_idx, "{v:?}");
        assert_eq!(f & RING_INDIRECT_DESC != 0, v.indirect, "{v:?}");
        assert_eq!(f & VERSION_1 != 0, !v.legacy, "{v:?}");
        assert_eq!(f & F_RO, 0);
        assert_ne!(f & F_BLK_SIZE, 0);
        assert_eq!(blk.capacity(), SECTORS);
        assert_eq!(blk.block_size(), Some(512));
        assert!(!blk.read_only());

        // The ID buffer is DMA memory too: it must be in the region.
        let mut id_buf = region.buffer(20, 5);
        let id: &mut [u8; 20] = id_buf.as_mut_slice().try_into().unwrap();
        assert_eq!(blk.get_id(id), Ok(SERIAL.len()));
        assert_eq!(&id[..SERIAL.len()], SERIAL);
        assert!(id[SERIAL.len()..].iter().all(|&b| b == 0));

        // What the disk holds, read through the driver.
        let mut buf = region.buffer(4 * SECTOR, 0);
        blk.read_blocks(3, buf.as_mut_slice()).unwrap();
        assert_eq!(buf.as_slice(), disk.read(3, 4), "{v:?}");

        // Writes land on the disk where they should, the first and last sectors too.
        for (sector, count) in [(0, 1), (17, 3), (SECTORS - 1, 1)] {
            let data = pattern(1000 + sector, count * SECTOR);
            let mut out = region.buffer(data.len(), 0);
            out.as_mut_slice().copy_from_slice(&data);
            blk.write_blocks(sector, out.as_slice()).unwrap();
            blk.flush().unwrap();
            assert_eq!(disk.read(sector, count), data, "{v:?} sector {sector}");
            let mut back = region.buffer(data.len(), 0);
            blk.read_blocks(sector, back.as_mut_slice()).unwrap();
            assert_eq!(back.as_slice(), data, "{v:?} sector {sector}");
        }
        // Neighbours untouched.
        assert_eq!(disk.read(16, 1), pattern(16, SECTOR));
        assert_eq!(disk.read(20, 1), pattern(20, SECTOR));
        assert_eq!(disk.read(SECTORS - 2, 1), pattern(SECTORS - 2, SECTOR));

        assert_eq!(slot.status() & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(slot.stats().bad_control_accesses, 0, "every register access 32-bit, aligned");
        drop((buf, id_buf, blk));
        assert_eq!(slot.status(), 0, "dropping the driver resets the device");
        assert_eq!(region.pages_in_use(), 0, "the driver gave back all its DMA pages");
    }
}

#[test]
fn out_of_range_requests_fail_with_an_io_error() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let (region, disk, slot) = rig(v, false);
        let mut blk = driver(&region, &slot, v);
        let mut one = region.buffer(SECTOR, 0);
        let mut two = region.buffer(2 * SECTOR, 0);

        assert_eq!(blk.read_blocks(SECTORS, one.as_mut_slice()), Err(Error::IoError));
        // Straddling the end: the first sector exists, the second doesn't.
        assert_eq!(blk.read_blocks(SECTORS - 1, two.as_mut_slice()), Err(Error::IoError));
        two.as_mut_slice().fill(0xee);
        assert_eq!(blk.write_blocks(SECTORS - 1, two.as_slice()), Err(Error::IoError));
        assert_eq!(disk.read(SECTORS - 1, 1), pattern(SECTORS - 1, SECTOR), "a refused write writes nothing");
        // Sector numbers whose byte offset overflows.
        assert_eq!(blk.read_blocks(u64::MAX / 512 + 1, one.as_mut_slice()), Err(Error::IoError));
        assert_eq!(blk.read_blocks(u64::MAX, one.as_mut_slice()), Err(Error::IoError));

        // The device carries on: an error status is not a broken device.
        assert_eq!(slot.status() & status::DEVICE_NEEDS_RESET, 0);
        blk.read_blocks(SECTORS - 1, one.as_mut_slice()).unwrap();
        assert_eq!(one.as_slice(), pattern(SECTORS - 1, SECTOR));
    }
}

#[test]
fn a_read_only_disk_refuses_writes() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let (region, disk, slot) = rig(v, true);
        let mut blk = driver(&region, &slot, v);
        assert!(blk.read_only());
        let mut buf = region.buffer(SECTOR, 0);
        buf.as_mut_slice().fill(0x5a);
        // The driver knows (VIRTIO_BLK_F_RO) and refuses by itself ...
        assert_eq!(blk.write_blocks(5, buf.as_slice()), Err(Error::ReadOnly));
        blk.read_blocks(5, buf.as_mut_slice()).unwrap();
        assert_eq!(buf.as_slice(), pattern(5, SECTOR));
        drop(blk);

        // ... and a driver that did not accept RO gets IOERR from the device.
        let mut blk =
            Blk::new(filtered_transport(&slot, v.hidden() | F_RO, 0), RegionHal::new(&region)).unwrap();
        assert!(!blk.read_only());
        buf.as_mut_slice().fill(0x5a);
        assert_eq!(blk.write_blocks(5, buf.as_slice()), Err(Error::IoError));
        assert_eq!(disk.read(5, 1), pattern(5, SECTOR), "the disk is unchanged");
        blk.flush().unwrap();
    }
}

#[test]
fn buffers_at_odd_addresses_and_of_odd_sizes() {
    let variants =
        [Variant::MODERN, Variant { legacy: false, event_idx: false, indirect: false }, Variant::LEGACY];
    for v in variants {
        let (region, disk, slot) = rig(v, false);
        let mut blk = driver(&region, &slot, v);
        for (i, (misalign, sectors)) in
            [(1, 1), (3, 3), (7, 8), (511, 2), (513, 1), (4095, 9), (2048, 16)].into_iter().enumerate()
        {
            let sector = 10 * i as u64 + 1;
            let data = pattern(7 * sector + misalign as u64, sectors * SECTOR);
            let mut out = region.buffer(data.len(), misalign);
            out.as_mut_slice().copy_from_slice(&data);
            blk.write_blocks(sector, out.as_slice()).unwrap();
            assert_eq!(disk.read(sector, sectors), data, "{v:?}: write from offset {misalign}");
            // Read back into a buffer misaligned differently.
            let mut back = region.buffer(data.len(), (misalign * 3) % 4096 + 1);
            blk.read_blocks(sector, back.as_mut_slice()).unwrap();
            assert_eq!(back.as_slice(), data, "{v:?}: read to offset {}", (misalign * 3) % 4096 + 1);
        }
        // Lengths that are not whole sectors never reach the device.
        let mut odd = region.buffer(700, 1);
        let before = slot.stats();
        assert_eq!(blk.read_blocks(0, odd.as_mut_slice()), Err(Error::InvalidParam));
        assert_eq!(blk.write_blocks(0, &odd.as_slice()[..0]), Err(Error::InvalidParam));
        assert_eq!(slot.stats().since(&before).traps(), 0);
    }
}

#[test]
fn a_4k_read_costs_one_trap() {
    for v in [Variant::MODERN, Variant { legacy: false, event_idx: false, indirect: false }, Variant::LEGACY]
    {
        let (region, disk, slot) = rig(v, false);
        let mut blk = driver(&region, &slot, v);
        let mut buf = region.buffer(4096, 0);
        let before = slot.stats();
        blk.read_blocks(8, buf.as_mut_slice()).unwrap();
        let cost = slot.stats().since(&before);
        // The device completes on the notify, so the driver finds the completion on
        // its first poll of the used ring: no other register access.
        assert_eq!((cost.reads, cost.writes, cost.notifies), (0, 1, 1), "{v:?}: {cost:?}");
        assert_eq!(buf.as_slice(), disk.read(8, 8));
    }
}

#[test]
fn the_wrong_device_type_is_refused() {
    let region = SharedRegion::with_default_size();
    let (console, _sink) = console_slot(&region, false);
    let err = Blk::new(transport(&console, Variant::MODERN), RegionHal::new(&region)).err();
    assert_eq!(err, Some(Error::WrongDeviceType { expected: 2, found: 3 }));
    assert_eq!(console.status(), 0, "the driver did not touch the device's status");
}

#[test]
fn a_configuration_change_reaches_the_driver() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let (region, _disk, slot, ..) = rig(v, false);
        let mut blk = driver(&region, &slot, v);
        blk.ack_interrupt();
        let generation = blk.transport().config_generation();
        slot.with(|m| m.config_changed());
        assert!(slot.interrupt_level());
        assert_eq!(blk.ack_interrupt(), interrupt::CONFIG_CHANGE, "{v:?}");
        // Modern devices count changes; legacy ones have no ConfigGeneration.
        let expected = if v.legacy { 0 } else { generation + 1 };
        assert_eq!(blk.transport().config_generation(), expected);
        assert_eq!(blk.capacity(), SECTORS);
        let mut buf = region.buffer(SECTOR, 0);
        blk.read_blocks(0, buf.as_mut_slice()).unwrap();
    }
}

/// A blk and a console device of one guest, their drivers' memory from one region,
/// used in turns.
#[test]
fn a_blk_and_a_console_share_one_guest() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let (region, disk, blk_slot) = rig(v, false);
        let (console_slot, sink) = console_slot(&region, v.legacy);
        let mut blk = driver(&region, &blk_slot, v);
        let mut console = VirtioConsole::new(transport(&console_slot, v), RegionHal::new(&region)).unwrap();
        let mut buf = region.buffer(2 * SECTOR, 1);
        let mut line = region.buffer(8, 0);
        for i in 0..50u64 {
            let data = pattern(i, 2 * SECTOR);
            buf.as_mut_slice().copy_from_slice(&data);
            blk.write_blocks(2 * i, buf.as_slice()).unwrap();
            line.as_mut_slice().copy_from_slice(&i.to_le_bytes());
            console.write(line.as_slice()).unwrap();
            assert_eq!(console_slot.input(&i.to_be_bytes()), 8);
            let mut typed = [0u8; 8];
            assert_eq!(console.read(&mut typed), Ok(8));
            assert_eq!(typed, i.to_be_bytes());
            assert_eq!(disk.read(2 * i, 2), data);
            assert_eq!(sink.take(), i.to_le_bytes());
        }
        drop((blk, console, buf, line));
        assert_eq!(region.pages_in_use(), 0);
    }
}
