//! The transport's registers, driven by the test driver over a fake backend.

use super::*;
use crate::devices::virtio::testing::{
    bring_up, r, ram, w, DriverQueue, FakeBackend, FakeLog, FAKE_DEVICE_ID, FAKE_FEATURES, RAM_BASE, RAM_SIZE,
};
use std::sync::{Arc, Mutex};

const RING_FEATURES: u64 = transport_features::RING_EVENT_IDX | transport_features::RING_INDIRECT_DESC;
const ALL: u64 = FAKE_FEATURES | RING_FEATURES | transport_features::VERSION_1;
const S_ACK: u32 = status::ACKNOWLEDGE as u32;
const S_DRV: u32 = status::DRIVER as u32;
const S_FOK: u32 = status::FEATURES_OK as u32;
const S_DOK: u32 = status::DRIVER_OK as u32;
const S_FAILED: u32 = status::FAILED as u32;
const S_RESET: u32 = status::DEVICE_NEEDS_RESET as u32;

fn device(legacy: bool) -> (VirtioMmio, GuestMemory, Arc<Mutex<FakeLog>>) {
    let mem = ram();
    let (backend, log) = FakeBackend::new(2);
    (VirtioMmio::new(backend, mem.clone(), legacy), mem, log)
}

fn set_driver_features(dev: &mut VirtioMmio, features: u64) {
    w(dev, reg::DRIVER_FEATURES_SEL, 0);
    w(dev, reg::DRIVER_FEATURES, features as u32);
    w(dev, reg::DRIVER_FEATURES_SEL, 1);
    w(dev, reg::DRIVER_FEATURES, (features >> 32) as u32);
}

fn device_features(dev: &mut VirtioMmio) -> u64 {
    w(dev, reg::DEVICE_FEATURES_SEL, 0);
    let low = r(dev, reg::DEVICE_FEATURES);
    w(dev, reg::DEVICE_FEATURES_SEL, 1);
    let high = r(dev, reg::DEVICE_FEATURES);
    u64::from(low) | u64::from(high) << 32
}

/// Two driver queues of 8 entries, in separate parts of RAM.
fn driver_queues(mem: &GuestMemory) -> (DriverQueue, DriverQueue) {
    (DriverQueue::new(mem, 8, RAM_BASE), DriverQueue::new(mem, 8, RAM_BASE + 0x1_0000))
}

fn buf(n: u64) -> u64 {
    RAM_BASE + 0x8_0000 + n * 0x1000
}

#[test]
fn identification() {
    let (mut dev, _, _) = device(false);
    assert_eq!(r(&mut dev, reg::MAGIC), 0x7472_6976);
    assert_eq!(r(&mut dev, reg::VERSION), 2);
    assert_eq!(r(&mut dev, reg::DEVICE_ID), FAKE_DEVICE_ID);
    assert_eq!(r(&mut dev, reg::VENDOR_ID), 0x4543_4c53);
    assert_eq!(dev.name(), "fake");
    // Read-only: writes change nothing.
    w(&mut dev, reg::MAGIC, 0);
    w(&mut dev, reg::VERSION, 7);
    assert_eq!((r(&mut dev, reg::MAGIC), r(&mut dev, reg::VERSION)), (0x7472_6976, 2));
    let (mut legacy, _, _) = device(true);
    assert_eq!(r(&mut legacy, reg::VERSION), 1);
    assert!(legacy.is_legacy() && !dev.is_legacy());
}

#[test]
fn device_features_by_selector() {
    let (mut dev, _, _) = device(false);
    assert_eq!(device_features(&mut dev), ALL);
    w(&mut dev, reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(r(&mut dev, reg::DEVICE_FEATURES), 0);
    w(&mut dev, reg::DEVICE_FEATURES_SEL, u32::MAX);
    assert_eq!(r(&mut dev, reg::DEVICE_FEATURES), 0);
    // Legacy devices don't offer VERSION_1.
    let (mut legacy, _, _) = device(true);
    assert_eq!(device_features(&mut legacy), FAKE_FEATURES | RING_FEATURES);
}

#[test]
fn driver_features_by_selector_until_negotiated() {
    let (mut dev, _, _) = device(false);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    set_driver_features(&mut dev, 0x0000_0001_1000_0001);
    w(&mut dev, reg::DRIVER_FEATURES_SEL, 0);
    assert_eq!(r(&mut dev, reg::DRIVER_FEATURES), 0x1000_0001);
    w(&mut dev, reg::DRIVER_FEATURES_SEL, 1);
    assert_eq!(r(&mut dev, reg::DRIVER_FEATURES), 1);
    // Words past the second are not stored.
    w(&mut dev, reg::DRIVER_FEATURES_SEL, 2);
    w(&mut dev, reg::DRIVER_FEATURES, 0xffff_ffff);
    assert_eq!(r(&mut dev, reg::DRIVER_FEATURES), 0);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK);
    // After FEATURES_OK the features are fixed.
    w(&mut dev, reg::DRIVER_FEATURES_SEL, 0);
    w(&mut dev, reg::DRIVER_FEATURES, 0);
    assert_eq!(r(&mut dev, reg::DRIVER_FEATURES), 0x1000_0001);
}

#[test]
fn legal_status_steps() {
    let (mut dev, mem, log) = device(false);
    let (q0, q1) = driver_queues(&mem);
    for step in [S_ACK, S_ACK | S_DRV] {
        w(&mut dev, reg::STATUS, step);
        assert_eq!(r(&mut dev, reg::STATUS), step);
    }
    set_driver_features(&mut dev, ALL);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK);
    assert_eq!(log.lock().unwrap().activated, None);
    // Writing the same value again changes nothing.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    bring_up_queues(&mut dev, &[&q0, &q1]);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    let log = log.lock().unwrap();
    assert_eq!(log.activated, Some(ALL));
    assert_eq!(log.polls, 1, "DRIVER_OK polls the backend once");
}

/// Sets up queues as `bring_up` does, without touching the status.
fn bring_up_queues(dev: &mut VirtioMmio, queues: &[&DriverQueue]) {
    for (i, q) in queues.iter().enumerate() {
        w(dev, reg::QUEUE_SEL, i as u32);
        w(dev, reg::QUEUE_NUM, u32::from(q.size));
        for (offset, addr) in
            [(reg::QUEUE_DESC_LOW, q.desc), (reg::QUEUE_DRIVER_LOW, q.avail), (reg::QUEUE_DEVICE_LOW, q.used)]
        {
            w(dev, offset, addr as u32);
            w(dev, offset + 4, (addr >> 32) as u32);
        }
        w(dev, reg::QUEUE_READY, 1);
    }
}

#[test]
fn acknowledge_and_driver_in_one_write() {
    let (mut dev, _, _) = device(false);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV);
}

#[test]
fn illegal_status_steps_are_ignored() {
    let (mut dev, _, log) = device(false);
    // Straight to DRIVER_OK, or skipping a step.
    for bad in [S_DOK, S_ACK | S_DRV | S_FOK | S_DOK, S_DRV, S_ACK | S_FOK] {
        w(&mut dev, reg::STATUS, bad);
        assert_eq!(r(&mut dev, reg::STATUS), 0, "{bad:#x}");
    }
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    set_driver_features(&mut dev, ALL);
    // DRIVER_OK without FEATURES_OK is legacy only.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_DOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    // Clearing bits other than by a reset.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    // The driver cannot set DEVICE_NEEDS_RESET; it is masked from its writes.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK | S_DOK | S_RESET);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    // Values wider than a byte are not statuses.
    w(&mut dev, reg::STATUS, 0x100 | S_ACK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_DOK);
    assert_eq!(log.lock().unwrap().activated, Some(ALL));
}

#[test]
fn failed_freezes_until_reset() {
    let (mut dev, _, log) = device(false);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FAILED);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FAILED);
    set_driver_features(&mut dev, ALL);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FAILED | S_FOK);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FAILED);
    w(&mut dev, reg::STATUS, 0);
    assert_eq!(r(&mut dev, reg::STATUS), 0);
    assert_eq!(log.lock().unwrap().resets, 1);
    w(&mut dev, reg::STATUS, S_ACK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK);
}

#[test]
fn features_ok_refused_for_unknown_features_or_missing_version_1() {
    let (mut dev, _, _) = device(false);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    // Bit 3 was not offered.
    set_driver_features(&mut dev, ALL | 1 << 3);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV, "unknown feature accepted");
    // VERSION_1 left out of a modern device.
    set_driver_features(&mut dev, FAKE_FEATURES);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV, "missing VERSION_1 accepted");
    // DRIVER_OK can't follow a refused FEATURES_OK.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV);
    // A subset with VERSION_1 is fine.
    set_driver_features(&mut dev, transport_features::VERSION_1 | 1);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK);
}

#[test]
fn legacy_negotiation() {
    let (mut dev, mem, log) = device(true);
    // No VERSION_1 needed, and FEATURES_OK may be skipped; unoffered bits are dropped.
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    set_driver_features(&mut dev, 1 | 1 << 3);
    let q = DriverQueue::new(&mem, 8, RAM_BASE);
    w(&mut dev, reg::GUEST_PAGE_SIZE, 4096);
    w(&mut dev, reg::QUEUE_SEL, 0);
    w(&mut dev, reg::QUEUE_NUM, 8);
    w(&mut dev, reg::QUEUE_ALIGN, 4);
    w(&mut dev, reg::QUEUE_PFN, (RAM_BASE / 4096) as u32);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_DOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_DOK);
    assert_eq!(log.lock().unwrap().activated, Some(1));
    // The legacy layout with QueueAlign 4 is the test driver's layout.
    let mut q = q;
    let head = q.add(&mem, &[(buf(0), 7, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 0);
    assert_eq!(q.take_used(&mem), Some((u32::from(head), 7)));
    assert!(dev.interrupt_level());

    // FEATURES_OK is also accepted from a legacy driver, with the same check.
    let (mut dev, _, _) = device(true);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    set_driver_features(&mut dev, 1 | 1 << 3);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV);
    set_driver_features(&mut dev, 1);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK);
}

#[test]
fn legacy_queue_registers() {
    let (mut dev, _, _) = device(true);
    assert_eq!(r(&mut dev, reg::GUEST_PAGE_SIZE), 4096);
    w(&mut dev, reg::GUEST_PAGE_SIZE, 3000);
    assert_eq!(r(&mut dev, reg::GUEST_PAGE_SIZE), 4096, "not a power of two");
    w(&mut dev, reg::GUEST_PAGE_SIZE, 0x1_0000);
    assert_eq!(r(&mut dev, reg::GUEST_PAGE_SIZE), 0x1_0000);
    w(&mut dev, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut dev, reg::QUEUE_NUM_MAX), 256);
    assert_eq!(r(&mut dev, reg::QUEUE_ALIGN), 4096);
    w(&mut dev, reg::QUEUE_ALIGN, 100);
    assert_eq!(r(&mut dev, reg::QUEUE_ALIGN), 4096);
    w(&mut dev, reg::QUEUE_ALIGN, 64);
    w(&mut dev, reg::QUEUE_NUM, 16);
    // pfn = RAM_BASE / 64 KiB pages.
    let pfn = (RAM_BASE >> 16) as u32;
    w(&mut dev, reg::QUEUE_PFN, pfn);
    assert_eq!(r(&mut dev, reg::QUEUE_PFN), pfn);
    let q = &dev.queues[1];
    assert!(q.ready());
    assert_eq!(q.desc_addr(), RAM_BASE);
    assert_eq!(q.avail_addr(), RAM_BASE + 16 * 16);
    assert_eq!(q.used_addr(), (RAM_BASE + 16 * 16 + 6 + 2 * 16).next_multiple_of(64));
    // Set-up registers are fixed while the queue is in use.
    w(&mut dev, reg::QUEUE_ALIGN, 128);
    assert_eq!(r(&mut dev, reg::QUEUE_ALIGN), 64);
    w(&mut dev, reg::QUEUE_NUM, 32);
    assert_eq!(dev.queues[1].size(), 16);
    // PFN 0 stops the queue.
    w(&mut dev, reg::QUEUE_PFN, 0);
    assert_eq!(r(&mut dev, reg::QUEUE_PFN), 0);
    assert!(!dev.queues[1].ready());
    // Modern-only registers are absent.
    for offset in [reg::QUEUE_READY, reg::QUEUE_DESC_LOW, reg::SHM_LEN_LOW, reg::CONFIG_GENERATION] {
        w(&mut dev, offset, 1);
        assert_eq!(r(&mut dev, offset), 0, "{offset:#x}");
    }
    // The page size survives a reset; queue registers don't.
    w(&mut dev, reg::STATUS, 0);
    assert_eq!(r(&mut dev, reg::GUEST_PAGE_SIZE), 0x1_0000);
    w(&mut dev, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut dev, reg::QUEUE_ALIGN), 4096);
}

#[test]
fn legacy_bad_pfn_needs_reset() {
    let (mut dev, _, _) = device(true);
    w(&mut dev, reg::STATUS, S_ACK | S_DRV);
    // The rings would run past the end of RAM.
    w(&mut dev, reg::QUEUE_PFN, ((RAM_BASE + RAM_SIZE - 4096) / 4096) as u32);
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_RESET);
    assert_eq!(r(&mut dev, reg::QUEUE_PFN), 0);
    assert!(!dev.queues[0].ready());
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
    // Outside RAM altogether.
    let (mut dev, _, _) = device(true);
    w(&mut dev, reg::QUEUE_PFN, 1);
    assert_eq!(r(&mut dev, reg::STATUS), S_RESET);
    // Modern devices don't have QueuePFN.
    let (mut dev, _, _) = device(false);
    w(&mut dev, reg::QUEUE_PFN, 1);
    assert_eq!((r(&mut dev, reg::STATUS), r(&mut dev, reg::QUEUE_PFN)), (0, 0));
    w(&mut dev, reg::GUEST_PAGE_SIZE, 8192);
    assert_eq!(r(&mut dev, reg::GUEST_PAGE_SIZE), 0);
}

#[test]
fn queue_registers() {
    let (mut dev, _, _) = device(false);
    w(&mut dev, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut dev, reg::QUEUE_SEL), 0, "QueueSel is write-only");
    assert_eq!(r(&mut dev, reg::QUEUE_NUM_MAX), 256);
    assert_eq!(r(&mut dev, reg::QUEUE_READY), 0);
    for bad in [0, 3, 100, 512, 0x1_0000] {
        w(&mut dev, reg::QUEUE_NUM, bad);
        assert_eq!(dev.queues[1].size(), 256, "QueueNum {bad}");
    }
    w(&mut dev, reg::QUEUE_NUM, 64);
    assert_eq!(dev.queues[1].size(), 64);
    let addrs = [
        (reg::QUEUE_DESC_LOW, RAM_BASE),
        (reg::QUEUE_DRIVER_LOW, RAM_BASE + 0x400),
        (reg::QUEUE_DEVICE_LOW, RAM_BASE + 0x800),
    ];
    for (offset, addr) in addrs {
        w(&mut dev, offset, addr as u32);
        w(&mut dev, offset + 4, (addr >> 32) as u32 | 0x1234);
        assert_eq!(r(&mut dev, offset), addr as u32);
        assert_eq!(r(&mut dev, offset + 4), (addr >> 32) as u32 | 0x1234);
        w(&mut dev, offset + 4, (addr >> 32) as u32);
    }
    assert_eq!(dev.queues[1].desc_addr(), RAM_BASE);
    assert_eq!(dev.queues[1].avail_addr(), RAM_BASE + 0x400);
    assert_eq!(dev.queues[1].used_addr(), RAM_BASE + 0x800);
    w(&mut dev, reg::QUEUE_READY, 1);
    assert_eq!(r(&mut dev, reg::QUEUE_READY), 1);
    // While ready, set-up writes are ignored.
    w(&mut dev, reg::QUEUE_NUM, 8);
    w(&mut dev, reg::QUEUE_DESC_LOW, 0);
    assert_eq!((dev.queues[1].size(), dev.queues[1].desc_addr()), (64, RAM_BASE));
    w(&mut dev, reg::QUEUE_READY, 0);
    assert_eq!(r(&mut dev, reg::QUEUE_READY), 0);
    // Queue 0 was untouched; queue 2 does not exist.
    w(&mut dev, reg::QUEUE_SEL, 0);
    assert_eq!((r(&mut dev, reg::QUEUE_READY), dev.queues[0].size()), (0, 256));
    w(&mut dev, reg::QUEUE_SEL, 2);
    assert_eq!(r(&mut dev, reg::QUEUE_NUM_MAX), 0);
    w(&mut dev, reg::QUEUE_NUM, 8);
    w(&mut dev, reg::QUEUE_READY, 1);
    w(&mut dev, reg::QUEUE_DESC_LOW, 0x1000);
    assert_eq!((r(&mut dev, reg::QUEUE_READY), r(&mut dev, reg::QUEUE_DESC_LOW)), (0, 0));
    assert_eq!(r(&mut dev, reg::STATUS), 0);
}

#[test]
fn bad_ring_addresses_need_reset() {
    let cases = [
        (RAM_BASE + 8, RAM_BASE + 0x400, RAM_BASE + 0x800),
        (RAM_BASE, RAM_BASE + 0x401, RAM_BASE + 0x800),
        (RAM_BASE, RAM_BASE + 0x400, RAM_BASE + 0x802),
        (RAM_BASE - 0x1000, RAM_BASE + 0x400, RAM_BASE + 0x800),
        (RAM_BASE, RAM_BASE + RAM_SIZE, RAM_BASE + 0x800),
        (RAM_BASE, RAM_BASE + 0x400, RAM_BASE + RAM_SIZE - 0x20),
        (RAM_BASE, RAM_BASE + 0x400, u64::MAX - 3),
    ];
    for (desc, avail, used) in cases {
        let (mut dev, _, _) = device(false);
        w(&mut dev, reg::STATUS, S_ACK | S_DRV);
        set_driver_features(&mut dev, ALL);
        w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK);
        let mut q = DriverQueue::new(&ram(), 8, RAM_BASE);
        (q.desc, q.avail, q.used) = (desc, avail, used);
        bring_up_queues(&mut dev, &[&q]);
        assert_eq!(r(&mut dev, reg::QUEUE_READY), 0, "{desc:#x} {avail:#x} {used:#x}");
        assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_RESET);
        assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
        assert!(dev.interrupt_level());
        // Nothing goes on until a reset.
        w(&mut dev, reg::STATUS, S_ACK | S_DRV | S_FOK | S_DOK);
        assert_eq!(r(&mut dev, reg::STATUS), S_ACK | S_DRV | S_FOK | S_RESET);
        w(&mut dev, reg::STATUS, 0);
        assert_eq!(r(&mut dev, reg::STATUS), 0);
        assert!(!dev.interrupt_level());
    }
}

#[test]
fn notify_runs_the_backend_and_raises_the_interrupt() {
    let (mut dev, mem, log) = device(false);
    let (mut q0, mut q1) = driver_queues(&mem);
    // Before DRIVER_OK notifications are ignored.
    w(&mut dev, reg::QUEUE_NOTIFY, 0);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    assert!(!dev.interrupt_level());
    let head = q1.add(&mem, &[(buf(0), 16, false), (buf(1), 100, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert_eq!(q1.take_used(&mem), Some((u32::from(head), 100)));
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::USED_BUFFER);
    assert!(dev.interrupt_level());
    w(&mut dev, reg::INTERRUPT_ACK, interrupt::USED_BUFFER);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), 0);
    assert!(!dev.interrupt_level());
    // Notifying a queue with nothing new raises nothing; nonexistent queues are ignored.
    w(&mut dev, reg::QUEUE_NOTIFY, 0);
    w(&mut dev, reg::QUEUE_NOTIFY, 7);
    assert!(!dev.interrupt_level());
    assert_eq!(log.lock().unwrap().notified, [1, 0]);
    // A queue that is not ready is not processed.
    w(&mut dev, reg::QUEUE_SEL, 0);
    w(&mut dev, reg::QUEUE_READY, 0);
    q0.add(&mem, &[(buf(0), 1, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 0);
    assert_eq!(log.lock().unwrap().notified, [1, 0]);
}

#[test]
fn event_idx_suppresses_interrupts_through_the_transport() {
    let (mut dev, mem, _) = device(false);
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    // used_event = 1: no interrupt for the first completion (index 0 -> 1 doesn't pass 1).
    q1.set_used_event(&mem, 1);
    q1.add(&mem, &[(buf(0), 1, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert!(q1.take_used(&mem).is_some());
    assert!(!dev.interrupt_level());
    assert_eq!(q1.avail_event(&mem), 1, "avail_event follows the device");
    q1.add(&mem, &[(buf(0), 1, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert!(dev.interrupt_level());
    // Without EVENT_IDX, NO_INTERRUPT is honoured.
    let (mut dev, mem, _) = device(false);
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, FAKE_FEATURES | transport_features::VERSION_1, &[&q0, &q1]);
    q1.set_avail_flags(&mem, 1);
    q1.add(&mem, &[(buf(0), 1, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert!(q1.take_used(&mem).is_some());
    assert!(!dev.interrupt_level());
    assert_eq!(q1.avail_event(&mem), 0, "no avail_event without EVENT_IDX");
}

#[test]
fn queue_errors_need_reset() {
    let (mut dev, mem, log) = device(false);
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    // A chain with a buffer outside RAM.
    q1.add(&mem, &[(RAM_BASE + RAM_SIZE, 4, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert_eq!(r(&mut dev, reg::STATUS) & S_RESET, S_RESET);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
    // No more processing until a reset.
    q1.add(&mem, &[(buf(0), 4, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert_eq!(log.lock().unwrap().notified, [1]);
    assert!(q1.take_used(&mem).is_none());
    // After a reset and a new bring-up the device works again.
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    q1.add(&mem, &[(buf(0), 4, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert_eq!(q1.take_used(&mem), Some((0, 4)));
    // A backend error does the same.
    let (q0, q1) = driver_queues(&mem);
    let (mut backend, _) = FakeBackend::new(2);
    backend.fail = true;
    let mut failing = VirtioMmio::new(backend, mem.clone(), false);
    bring_up(&mut failing, ALL, &[&q0, &q1]);
    w(&mut failing, reg::QUEUE_NOTIFY, 0);
    assert_eq!(r(&mut failing, reg::STATUS) & S_RESET, S_RESET);
    assert_eq!(r(&mut failing, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
}

#[test]
fn reset_in_the_middle() {
    let (mut dev, mem, log) = device(false);
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    q1.add(&mem, &[(buf(0), 4, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    dev.config_changed();
    let generation = r(&mut dev, reg::CONFIG_GENERATION);
    w(&mut dev, reg::QUEUE_SEL, 1);
    w(&mut dev, reg::DEVICE_FEATURES_SEL, 1);
    assert!(dev.interrupt_level());
    // Requests in flight when the driver resets are dropped with the queues.
    q1.add(&mem, &[(buf(0), 4, true)]);
    let resets = log.lock().unwrap().resets;
    w(&mut dev, reg::STATUS, 0);
    assert_eq!(r(&mut dev, reg::STATUS), 0);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), 0);
    assert!(!dev.interrupt_level());
    assert_eq!(log.lock().unwrap().resets, resets + 1);
    assert_eq!(dev.queue_sel, 0);
    for i in 0..2 {
        w(&mut dev, reg::QUEUE_SEL, i);
        assert_eq!(r(&mut dev, reg::QUEUE_READY), 0);
        assert_eq!(r(&mut dev, reg::QUEUE_DESC_LOW), 0);
        assert_eq!(dev.queues[i as usize].size(), 256);
    }
    assert_eq!((dev.device_features_sel, dev.driver_features_sel, dev.driver_features), (0, 0, 0));
    assert_eq!(r(&mut dev, reg::CONFIG_GENERATION), generation, "the generation keeps counting");
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    assert_eq!(log.lock().unwrap().notified, [1]);
    assert!(q1.take_used(&mem).is_some());
    assert!(q1.take_used(&mem).is_none());
}

#[test]
fn interrupt_ack_clears_only_what_it_names() {
    let (mut dev, mem, _) = device(false);
    let (q0, mut q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    q1.add(&mem, &[(buf(0), 4, true)]);
    w(&mut dev, reg::QUEUE_NOTIFY, 1);
    dev.config_changed();
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), 3);
    w(&mut dev, reg::INTERRUPT_STATUS, 0);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), 3, "InterruptStatus is read-only");
    w(&mut dev, reg::INTERRUPT_ACK, interrupt::CONFIG_CHANGE);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::USED_BUFFER);
    assert_eq!(r(&mut dev, reg::INTERRUPT_ACK), 0, "InterruptACK is write-only");
    w(&mut dev, reg::INTERRUPT_ACK, u32::MAX);
    assert!(!dev.interrupt_level());
}

#[test]
fn config_generation_and_change_interrupt() {
    let (mut dev, _, _) = device(false);
    assert_eq!(r(&mut dev, reg::CONFIG_GENERATION), 0);
    dev.config_changed();
    dev.config_changed();
    assert_eq!(r(&mut dev, reg::CONFIG_GENERATION), 2);
    assert_eq!(r(&mut dev, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
    w(&mut dev, reg::CONFIG_GENERATION, 0);
    assert_eq!(r(&mut dev, reg::CONFIG_GENERATION), 2);
}

#[test]
fn control_registers_are_32_bit_only() {
    let (mut dev, _, _) = device(false);
    for width in [AccessWidth::Byte, AccessWidth::Half, AccessWidth::Double] {
        assert_eq!(dev.read(reg::MAGIC, width), 0, "{width:?}");
        dev.write(reg::STATUS, width, u64::from(S_ACK));
        assert_eq!(r(&mut dev, reg::STATUS), 0, "{width:?}");
    }
    // Unaligned word accesses too.
    assert_eq!(dev.read(reg::MAGIC + 1, AccessWidth::Word), 0);
    dev.write(reg::STATUS + 2, AccessWidth::Word, u64::from(S_ACK));
    assert_eq!(r(&mut dev, reg::STATUS), 0);
    // Unknown and write-only offsets read as zero, and ignore writes.
    for offset in [
        0x018,
        0x01c,
        0x02c,
        0x048,
        0x04c,
        0x054,
        0x068,
        0x074,
        0x0f8,
        reg::QUEUE_NOTIFY,
        reg::DEVICE_FEATURES_SEL,
    ] {
        w(&mut dev, offset, 0xffff_ffff);
        assert_eq!(r(&mut dev, offset), 0, "{offset:#x}");
    }
    assert_eq!(r(&mut dev, reg::STATUS), 0);
    // The upper half of a 64-bit store's value is not part of a 32-bit register.
    dev.write(reg::STATUS, AccessWidth::Word, 0xffff_0000_0000_0000 | u64::from(S_ACK));
    assert_eq!(r(&mut dev, reg::STATUS), S_ACK);
}

#[test]
fn shared_memory_and_queue_reset_registers() {
    let (mut dev, _, _) = device(false);
    for sel in [0, 5] {
        w(&mut dev, reg::SHM_SEL, sel);
        assert_eq!(r(&mut dev, reg::SHM_LEN_LOW), u32::MAX);
        assert_eq!(r(&mut dev, reg::SHM_LEN_HIGH), u32::MAX);
    }
    assert_eq!(r(&mut dev, reg::SHM_SEL), 0);
    w(&mut dev, reg::QUEUE_RESET, 1);
    assert_eq!(r(&mut dev, reg::QUEUE_RESET), 0);
}

#[test]
fn config_space_any_width_any_offset() {
    let (mut dev, _, _) = device(false);
    // The fake's configuration is 0x10, 0x11, ... 0x1f.
    assert_eq!(dev.read(0x100, AccessWidth::Byte), 0x10);
    assert_eq!(dev.read(0x103, AccessWidth::Byte), 0x13);
    assert_eq!(dev.read(0x101, AccessWidth::Half), 0x1211);
    assert_eq!(dev.read(0x105, AccessWidth::Word), 0x1817_1615);
    assert_eq!(dev.read(0x107, AccessWidth::Double), 0x1e1d_1c1b_1a19_1817);
    // Past the end: zeros.
    assert_eq!(dev.read(0x10e, AccessWidth::Word), 0x1f1e);
    assert_eq!(dev.read(0x1fc, AccessWidth::Word), 0);
    // Writes at odd offsets, each width.
    dev.write(0x101, AccessWidth::Byte, 0xaa);
    dev.write(0x103, AccessWidth::Half, 0xccbb);
    dev.write(0x105, AccessWidth::Word, 0x1122_3344);
    dev.write(0x109, AccessWidth::Double, 0x0102_0304_0506_0708);
    let bytes: Vec<u8> = (0..16).map(|i| dev.read(0x100 + i, AccessWidth::Byte) as u8).collect();
    assert_eq!(bytes, [0x10, 0xaa, 0x12, 0xbb, 0xcc, 0x44, 0x33, 0x22, 0x11, 8, 7, 6, 5, 4, 3, 2]);
    // The transport registers were not touched.
    assert_eq!(r(&mut dev, reg::STATUS), 0);
}

#[test]
fn input_reaches_the_backend_and_polls_when_live() {
    let (mut dev, mem, log) = device(false);
    assert_eq!(dev.input(b"abcdef"), 4);
    assert_eq!(log.lock().unwrap().polls, 0, "not live: no poll");
    let (q0, q1) = driver_queues(&mem);
    bring_up(&mut dev, ALL, &[&q0, &q1]);
    assert_eq!(dev.input(b"gh"), 2);
    let log = log.lock().unwrap();
    assert_eq!(log.input, b"abcdgh");
    assert_eq!(log.polls, 2, "one at DRIVER_OK, one after input");
    assert_eq!(dev.backend().input_dropped(), 0);
}
