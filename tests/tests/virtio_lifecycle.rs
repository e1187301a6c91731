//! A device's life with guest-drivers: reset in the middle of traffic (the driver
//! dropped, or the status written to 0 behind its back) and initialised again; a
//! device refusing the features the driver asks for; DEVICE_NEEDS_RESET reaching a
//! waiting driver; and a driver that forgets to translate addresses, which the
//! shared region's split addressing must catch.

use std::ptr::NonNull;
use std::sync::Arc;

use guest_drivers::blk::spec::F_RO;
use guest_drivers::blk::VirtioBlk;
use guest_drivers::console::spec::F_SIZE;
use guest_drivers::console::VirtioConsole;
use guest_drivers::features::VERSION_1;
use guest_drivers::hal::{Hal, PhysAddr};
use guest_drivers::transport::interrupt;
use guest_drivers::transport::mmio::reg;
use guest_drivers::Error;
use hypervisor::devices::virtio::status;
use sluice_tests::disk::{pattern, Disk, SECTOR};
use sluice_tests::hal::RegionHal;
use sluice_tests::region::SharedRegion;
use sluice_tests::rig::{blk_slot, console_slot, filtered_transport, transport, TestTransport, Variant};
use sluice_tests::slot::Slot;

type Blk = VirtioBlk<RegionHal, TestTransport>;

fn blk(slot: &Slot, region: &Arc<SharedRegion>, v: Variant) -> Blk {
    VirtioBlk::new(transport(slot, v), RegionHal::new(region)).expect("blk init")
}

/// Writes and reads back a few sectors: the device works.
fn check_io(blk: &mut Blk, region: &Arc<SharedRegion>, disk: &Disk, seed: u64) {
    let mut buf = region.buffer(2 * SECTOR, 3);
    for sector in [0, 7, disk.sectors() - 2] {
        let data = pattern(seed + sector, 2 * SECTOR);
        buf.as_mut_slice().copy_from_slice(&data);
        blk.write_blocks(sector, buf.as_slice()).unwrap();
        buf.as_mut_slice().fill(0);
        blk.read_blocks(sector, buf.as_mut_slice()).unwrap();
        assert_eq!(buf.as_slice(), data);
        assert_eq!(disk.read(sector, 2), data);
    }
}

#[test]
fn dropping_the_driver_mid_traffic_resets_the_device() {
    for v in [Variant::MODERN, Variant::LEGACY, Variant { legacy: false, event_idx: false, indirect: false }]
    {
        let region = SharedRegion::with_default_size();
        let disk = Disk::new(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut old = blk(&slot, &region, v);
        check_io(&mut old, &region, &disk, 1);

        // Writes at the device, not run yet; then the driver goes away.
        let bufs: Vec<_> = (0..10)
            .map(|i| {
                let mut b = region.buffer(SECTOR, 0);
                b.as_mut_slice().fill(0xa0 + i as u8);
                b
            })
            .collect();
        slot.hold_notifies(true);
        for (i, b) in bufs.iter().enumerate() {
            // SAFETY: the buffers outlive the driver, which resets the device when
            // dropped, after which the device no longer reads them.
            unsafe { old.submit_write(20 + i as u64, b.as_slice()) }.unwrap();
        }
        drop(old);
        assert_eq!(slot.status(), 0);
        assert!(!slot.interrupt_level());
        // The notification the device gets late finds it reset: nothing happens.
        slot.hold_notifies(false);
        assert!(slot.release_notifies() > 0);
        assert_eq!(slot.status(), 0);
        for i in 0..10 {
            assert_eq!(disk.read(20 + i, 1), vec![0; SECTOR], "sector {}", 20 + i);
        }
        drop(bufs);
        assert_eq!(region.pages_in_use(), 0, "{v:?}: the old driver freed everything");

        // A new driver starts from clean rings.
        let mut new = blk(&slot, &region, v);
        check_io(&mut new, &region, &disk, 2);
    }
}

#[test]
fn a_reset_behind_the_drivers_back_stops_the_device() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let region = SharedRegion::with_default_size();
        let disk = Disk::new(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut old = blk(&slot, &region, v);
        let mut bufs: Vec<_> = (0..8).map(|_| region.buffer(SECTOR, 1)).collect();

        // Four writes done (not yet collected), four held at the device.
        let mut tokens = Vec::new();
        for (i, b) in bufs.iter_mut().enumerate() {
            b.as_mut_slice().fill(0x10 + i as u8);
            slot.hold_notifies(i >= 4);
            // SAFETY: the buffers outlive the driver (dropped below, after the reset).
            tokens.push(unsafe { old.submit_write(i as u64, b.as_slice()) }.unwrap());
        }
        // Someone (a guest kernel's kexec, say) writes 0 to Status.
        slot.write32(reg::STATUS, 0);
        assert_eq!(slot.status(), 0);
        slot.hold_notifies(false);
        slot.release_notifies();
        // What completed before the reset is there; the rest never runs.
        for (i, &t) in tokens.iter().enumerate() {
            let result = old.complete(t);
            if i < 4 {
                assert_eq!(result, Ok(()), "{v:?} request {i}");
                assert_eq!(disk.read(i as u64, 1), vec![0x10 + i as u8; SECTOR]);
            } else {
                assert_eq!(result, Err(Error::NotReady), "{v:?} request {i}");
                assert_eq!(disk.read(i as u64, 1), vec![0; SECTOR]);
            }
        }
        // New requests go nowhere: the device is not live, so it ignores notifies.
        // SAFETY: as above.
        let t = unsafe { old.submit_write(30, bufs[0].as_slice()) }.unwrap();
        assert_eq!(old.complete(t), Err(Error::NotReady));
        assert_eq!(disk.read(30, 1), vec![0; SECTOR]);
        drop(old);

        let mut new = blk(&slot, &region, v);
        check_io(&mut new, &region, &disk, 3);
        drop(new);
        drop(bufs);
        assert_eq!(region.pages_in_use(), 0);
    }
}

#[test]
fn a_device_refusing_features_is_an_error_value() {
    let region = SharedRegion::with_default_size();
    let disk = Disk::patterned(64);
    let slot = blk_slot(&region, &disk, false, false);

    // The driver is made to accept RO on a writable disk: the device leaves
    // FEATURES_OK clear, the driver reports it and marks the device FAILED.
    let err = Blk::new(filtered_transport(&slot, 0, F_RO), RegionHal::new(&region)).err();
    assert_eq!(err, Some(Error::FeaturesRefused));
    let s = slot.status();
    assert_eq!(s & status::FEATURES_OK, 0, "status {s:#x}");
    assert_ne!(s & status::FAILED, 0, "status {s:#x}");
    assert_eq!(region.pages_in_use(), 0, "nothing allocated for a refused device");

    // A modern device that does not offer VERSION_1 is refused by the driver.
    let err = Blk::new(filtered_transport(&slot, VERSION_1, 0), RegionHal::new(&region)).err();
    assert_eq!(err, Some(Error::FeaturesRefused));
    assert_ne!(slot.status() & status::FAILED, 0);

    // The same for the console (asked to accept SIZE, which it does not offer).
    let (console, _sink) = console_slot(&region, false);
    let err = VirtioConsole::new(filtered_transport(&console, 0, F_SIZE), RegionHal::new(&region)).err();
    assert_eq!(err, Some(Error::FeaturesRefused));

    // A driver that asks for what is offered gets the device after all.
    let mut ok = blk(&slot, &region, Variant::MODERN);
    check_io(&mut ok, &region, &disk, 4);
}

/// The available ring's address, as the device was told it.
fn avail_ring(slot: &Slot) -> (u64, u16) {
    slot.write32(reg::QUEUE_SEL, 0);
    let size = slot.read32(reg::QUEUE_NUM) as u16;
    let addr = if slot.with(|m| m.is_legacy()) {
        u64::from(slot.read32(reg::LEGACY_QUEUE_PFN)) * 4096 + 16 * u64::from(size)
    } else {
        u64::from(slot.read32(reg::QUEUE_DRIVER_LOW)) | u64::from(slot.read32(reg::QUEUE_DRIVER_HIGH)) << 32
    };
    (addr, size)
}

#[test]
fn device_needs_reset_reaches_a_waiting_driver() {
    for v in [Variant::MODERN, Variant::LEGACY] {
        let region = SharedRegion::with_default_size();
        let disk = Disk::patterned(64);
        let slot = blk_slot(&region, &disk, v.legacy, false);
        let mut blk = blk(&slot, &region, v);
        let mut buf = region.buffer(SECTOR, 0);

        // A request at the device, and then the driver's ring is corrupted: its
        // available index jumps by more than the queue size.
        slot.hold_notifies(true);
        // SAFETY: the device is reset (by the driver, below) before `buf` goes.
        let t = unsafe { blk.submit_read(1, buf.as_mut_slice()) }.unwrap();
        let (avail, size) = avail_ring(&slot);
        let idx = region.read_u16(avail + 2);
        region.write_u16(avail + 2, idx.wrapping_add(size + 1));
        slot.hold_notifies(false);
        slot.release_notifies();
        assert_ne!(slot.status() & status::DEVICE_NEEDS_RESET, 0, "{v:?}");
        assert_ne!(slot.interrupt_status() & interrupt::CONFIG_CHANGE, 0, "{v:?}");

        assert_eq!(blk.wait(t), Err(Error::DeviceNeedsReset));
        assert_eq!(slot.status(), 0, "the driver reset the device");
        assert_eq!(blk.read_blocks(0, buf.as_mut_slice()), Err(Error::Broken));
        drop(blk);

        let mut blk = self::blk(&slot, &region, v);
        blk.read_blocks(1, buf.as_mut_slice()).unwrap();
        assert_eq!(buf.as_slice(), pattern(1, SECTOR));
    }
}

/// A HAL that forgets to translate: it hands the device host addresses.
#[derive(Debug, Clone)]
struct UntranslatedHal(RegionHal);

// SAFETY: memory and its lifetime as `RegionHal`'s; only the addresses are wrong,
// which is what the test shows the device refusing.
unsafe impl Hal for UntranslatedHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let (_, ptr) = self.0.dma_alloc(pages)?;
        Some((ptr.as_ptr() as u64, ptr))
    }

    unsafe fn dma_dealloc(&self, _paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) {
        let paddr = self.0.virt_to_phys(vaddr.as_ptr() as usize);
        // SAFETY: the caller's contract, with the address `RegionHal` gave.
        unsafe { self.0.dma_dealloc(paddr, vaddr, pages) }
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        vaddr as PhysAddr
    }
}

#[test]
fn a_missing_address_translation_is_caught() {
    let region = SharedRegion::with_default_size();
    let disk = Disk::patterned(64);
    let slot = blk_slot(&region, &disk, false, false);
    let hal = UntranslatedHal(RegionHal::new(&region));
    // The rings' host addresses are not guest RAM: the device refuses the queue
    // (DEVICE_NEEDS_RESET), and the first request reports it.
    let result = VirtioBlk::new(transport(&slot, Variant::MODERN), hal).and_then(|mut blk| {
        let mut buf = region.buffer(SECTOR, 0);
        blk.read_blocks(0, buf.as_mut_slice())
    });
    assert_eq!(result, Err(Error::DeviceNeedsReset));
    assert_eq!(region.pages_in_use(), 0);

    // Legacy: a host address does not even fit QueuePFN.
    let slot = blk_slot(&region, &disk, true, false);
    let hal = UntranslatedHal(RegionHal::new(&region));
    let result = VirtioBlk::new(transport(&slot, Variant::LEGACY), hal).map(|_| ());
    assert_eq!(result, Err(Error::BadQueueAddress));
}
