//! Hand-built split virtqueues (virtio 1.2 §2.7) in a [`SharedRegion`], to put exact
//! bytes, wrong ones included, where a device model will look; and the register
//! sequence that brings a device up over them (§3.1.1).
//!
//! Every ring access goes through the region's bounds-checked accessors, at the
//! guest-physical addresses the device uses.

use std::sync::Arc;

use guest_drivers::transport::mmio::reg;
use hypervisor::devices::virtio::{status, transport_features};

use crate::region::{SharedRegion, PAGE};
use crate::slot::Slot;

/// Descriptor flags (§2.7.5).
pub mod desc {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// Device-writable.
    pub const WRITE: u16 = 2;
    /// An indirect table.
    pub const INDIRECT: u16 = 4;
}

/// A split virtqueue laid out by hand: descriptors at a page, the available ring
/// right after them, the used ring at the next page (the legacy layout, which suits
/// modern devices too).
#[derive(Debug)]
pub struct RawQueue {
    region: Arc<SharedRegion>,
    /// Queue size.
    pub size: u16,
    /// Descriptor table (guest-physical).
    pub desc: u64,
    /// Available ring.
    pub avail: u64,
    /// Used ring.
    pub used: u64,
    pages: usize,
    avail_idx: u16,
    last_used: u16,
    next_free: u16,
}

impl RawQueue {
    /// A zeroed queue of `size` entries in `region`.
    ///
    /// # Panics
    ///
    /// When the region is full.
    pub fn new(region: &Arc<SharedRegion>, size: u16) -> Self {
        let n = u64::from(size);
        let avail_offset = 16 * n;
        let used_offset = (avail_offset + 6 + 2 * n).next_multiple_of(PAGE as u64);
        let pages = (used_offset + 6 + 8 * n).div_ceil(PAGE as u64) as usize;
        let (base, _) = region.alloc_pages(pages).expect("region full");
        Self {
            region: region.clone(),
            size,
            desc: base,
            avail: base + avail_offset,
            used: base + used_offset,
            pages,
            avail_idx: 0,
            last_used: 0,
            next_free: 0,
        }
    }

    /// Writes descriptor `index` of the queue's table (any index: a bad one is the
    /// test's business).
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        write_desc(&self.region, self.desc + 16 * u64::from(index), addr, len, flags, next);
    }

    /// Puts `bufs` `(address, length, device-writable)` in the next descriptors (round
    /// robin) as one chain, publishes it, and returns its head.
    pub fn add_chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_free;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = self.next_free;
            self.next_free = (self.next_free + 1) % self.size;
            let more = i + 1 < bufs.len();
            let flags = if more { desc::NEXT } else { 0 } | if writable { desc::WRITE } else { 0 };
            self.set_desc(index, addr, len, flags, self.next_free);
        }
        self.publish(head);
        head
    }

    /// Makes the chain at `head` available: ring entry, then the index.
    pub fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.region.write_u16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.region.write_u16(self.avail + 2, self.avail_idx);
    }

    /// Writes `avail.idx` as given, whatever the ring holds.
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.region.write_u16(self.avail + 2, idx);
    }

    /// `used.idx` as the device published it.
    pub fn used_idx(&self) -> u16 {
        self.region.read_u16(self.used + 2)
    }

    /// The next used element `(id, len)`, if the device published one.
    pub fn pop_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.last_used {
            return None;
        }
        let at = self.used + 4 + 8 * u64::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        Some((self.region.read_u32(at), self.region.read_u32(at + 4)))
    }
}

impl Drop for RawQueue {
    fn drop(&mut self) {
        self.region.free_pages(self.desc, self.pages);
    }
}

/// Writes one descriptor at `at` (§2.7.5: addr, len, flags, next).
pub fn write_desc(region: &SharedRegion, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    region.write_u64(at, addr);
    region.write_u32(at + 8, len);
    region.write_u16(at + 12, flags);
    region.write_u16(at + 14, next);
}

/// Writes a modern queue's three ring addresses (QueueDesc, QueueDriver,
/// QueueDevice, low word then high word) to the selected queue.
pub fn write_ring_addresses(slot: &Slot, desc: u64, avail: u64, used: u64) {
    for (offset, addr) in
        [(reg::QUEUE_DESC_LOW, desc), (reg::QUEUE_DRIVER_LOW, avail), (reg::QUEUE_DEVICE_LOW, used)]
    {
        slot.write32(offset, addr as u32);
        slot.write32(offset + 4, (addr >> 32) as u32);
    }
}

/// Brings the device in `slot` up over `queues` (queue `i` is `queues[i]`) with
/// `features` (VERSION_1 is added for a modern device), as §3.1.1 says: reset,
/// ACKNOWLEDGE, DRIVER, features, FEATURES_OK (modern), queues, DRIVER_OK.
///
/// # Panics
///
/// If the device refuses a step.
pub fn bring_up(slot: &Slot, features: u64, queues: &[&RawQueue]) {
    let legacy = slot.with(|m| m.is_legacy());
    let features = if legacy { features } else { features | transport_features::VERSION_1 };
    slot.write32(reg::STATUS, 0);
    let mut s = u32::from(status::ACKNOWLEDGE | status::DRIVER);
    slot.write32(reg::STATUS, s);
    slot.write32(reg::DRIVER_FEATURES_SEL, 0);
    slot.write32(reg::DRIVER_FEATURES, features as u32);
    slot.write32(reg::DRIVER_FEATURES_SEL, 1);
    slot.write32(reg::DRIVER_FEATURES, (features >> 32) as u32);
    if !legacy {
        s |= u32::from(status::FEATURES_OK);
        slot.write32(reg::STATUS, s);
        assert_eq!(slot.read32(reg::STATUS), s, "device refused features {features:#x}");
    } else {
        slot.write32(reg::LEGACY_GUEST_PAGE_SIZE, PAGE as u32);
    }
    for (i, q) in queues.iter().enumerate() {
        slot.write32(reg::QUEUE_SEL, i as u32);
        slot.write32(reg::QUEUE_NUM, u32::from(q.size));
        if legacy {
            slot.write32(reg::LEGACY_QUEUE_ALIGN, PAGE as u32);
            slot.write32(reg::LEGACY_QUEUE_PFN, (q.desc / PAGE as u64) as u32);
            assert_ne!(slot.read32(reg::LEGACY_QUEUE_PFN), 0, "queue {i} refused");
        } else {
            write_ring_addresses(slot, q.desc, q.avail, q.used);
            slot.write32(reg::QUEUE_READY, 1);
            assert_eq!(slot.read32(reg::QUEUE_READY), 1, "queue {i} refused");
        }
    }
    s |= u32::from(status::DRIVER_OK);
    slot.write32(reg::STATUS, s);
    assert_eq!(slot.read32(reg::STATUS), s, "device did not go live");
}

/// Notifies queue `index`.
pub fn notify(slot: &Slot, index: u16) {
    slot.write32(reg::QUEUE_NOTIFY, index.into());
}
