//! The device's side of a split virtqueue, for tests: reads the available ring and
//! descriptors (direct and indirect) from the driver's memory and writes used
//! elements back, as a device model would.
#![allow(unsafe_code)]

use core::sync::atomic::{fence, Ordering};
use std::vec::Vec;

use super::hal::FakeHal;
use super::transport::{FakeQueueState, FakeTransport};
use crate::hal::PhysAddr;
use crate::queue::{
    vring_need_event, AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE,
    USED_F_NO_NOTIFY,
};

/// Reads `len` bytes at device address `paddr` (of memory the driver gave the
/// device through a [`FakeHal`]).
///
/// # Panics
///
/// Dereferences whatever the driver handed the device; a driver bug shows as a
/// crash of the test, which is what a test wants.
pub fn read_phys(paddr: PhysAddr, len: usize) -> Vec<u8> {
    let ptr = FakeHal::phys_to_virt(paddr) as *const u8;
    // SAFETY: test-only: the driver promised this memory to the device.
    (0..len).map(|i| unsafe { ptr.add(i).read_volatile() }).collect()
}

/// Writes `data` at device address `paddr`.
pub fn write_phys(paddr: PhysAddr, data: &[u8]) {
    let ptr = FakeHal::phys_to_virt(paddr) as *mut u8;
    for (i, &b) in data.iter().enumerate() {
        // SAFETY: test-only: the driver promised this memory to the device.
        unsafe { ptr.add(i).write_volatile(b) };
    }
}

fn read_u16(paddr: PhysAddr) -> u16 {
    u16::from_le_bytes(read_phys(paddr, 2).try_into().expect("2 bytes"))
}

fn read_u32(paddr: PhysAddr) -> u32 {
    u32::from_le_bytes(read_phys(paddr, 4).try_into().expect("4 bytes"))
}

fn read_u64(paddr: PhysAddr) -> u64 {
    u64::from_le_bytes(read_phys(paddr, 8).try_into().expect("8 bytes"))
}

/// One buffer of a chain, as the device found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeDesc {
    /// Device address.
    pub addr: PhysAddr,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub writable: bool,
}

/// A chain popped from the available ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Head descriptor index (the id to put in the used element).
    pub head: u16,
    /// Whether it came through an indirect table.
    pub indirect: bool,
    /// Its buffers in order.
    pub descs: Vec<FakeDesc>,
}

impl Chain {
    /// The readable buffers' bytes, concatenated.
    pub fn readable(&self) -> Vec<u8> {
        self.descs.iter().filter(|d| !d.writable).flat_map(|d| read_phys(d.addr, d.len as usize)).collect()
    }

    /// Total bytes of the writable buffers.
    pub fn writable_len(&self) -> usize {
        self.descs.iter().filter(|d| d.writable).map(|d| d.len as usize).sum()
    }

    /// Writes `data` across the writable buffers in order; returns the bytes written
    /// (less than `data.len()` if they are too small).
    pub fn write(&self, data: &[u8]) -> u32 {
        let mut done = 0;
        for d in self.descs.iter().filter(|d| d.writable) {
            let n = (d.len as usize).min(data.len() - done);
            write_phys(d.addr, &data[done..done + n]);
            done += n;
        }
        done as u32
    }
}

/// The device's view of one queue.
#[derive(Debug, Clone)]
pub struct FakeQueueDevice {
    desc: PhysAddr,
    avail: PhysAddr,
    used: PhysAddr,
    size: u16,
    event_idx: bool,
    /// Next available slot to read.
    pub last_avail: u16,
    /// The device's used index.
    pub used_idx: u16,
}

impl FakeQueueDevice {
    /// The device side of a queue as the driver set it up.
    ///
    /// # Panics
    ///
    /// When the queue is not ready.
    pub fn new(queue: &FakeQueueState, event_idx: bool) -> Self {
        assert!(queue.ready, "queue not set up");
        Self {
            desc: queue.desc,
            avail: queue.driver,
            used: queue.device,
            size: queue.size,
            event_idx,
            last_avail: 0,
            used_idx: 0,
        }
    }

    /// The device side of queue `index` of `transport`, with EVENT_IDX as
    /// negotiated.
    pub fn attach(transport: &FakeTransport, index: u16) -> Self {
        let s = transport.state();
        let event_idx = s.driver_features & crate::features::RING_EVENT_IDX != 0;
        Self::new(&s.queues[usize::from(index)], event_idx)
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// `avail.idx` as the driver last published it.
    pub fn avail_idx(&self) -> u16 {
        read_u16(self.avail + 2)
    }

    /// `avail.flags`.
    pub fn avail_flags(&self) -> u16 {
        read_u16(self.avail)
    }

    /// `used_event` (after the available ring).
    pub fn used_event(&self) -> u16 {
        read_u16(self.avail + 4 + 2 * u64::from(self.size))
    }

    /// Sets or clears VRING_USED_F_NO_NOTIFY.
    pub fn set_no_notify(&self, on: bool) {
        let flags = if on { USED_F_NO_NOTIFY } else { 0 };
        write_phys(self.used, &flags.to_le_bytes());
    }

    /// Writes `avail_event` (after the used ring).
    pub fn set_avail_event(&self, value: u16) {
        write_phys(self.used + 4 + 8 * u64::from(self.size), &value.to_le_bytes());
    }

    /// Chains available and not yet popped.
    pub fn pending(&self) -> u16 {
        self.avail_idx().wrapping_sub(self.last_avail)
    }

    /// Takes the next available chain, following NEXT links and indirect tables. With
    /// EVENT_IDX, then asks for a notification at the next chain (`avail_event`).
    pub fn pop(&mut self) -> Option<Chain> {
        if self.pending() == 0 {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = self.last_avail & (self.size - 1);
        let head = read_u16(self.avail + 4 + 2 * u64::from(slot));
        self.last_avail = self.last_avail.wrapping_add(1);
        if self.event_idx {
            // Like a device that wants a notify for the next chain (§2.7.10).
            self.set_avail_event(self.last_avail);
        }
        assert!(head < self.size, "head {head} out of range");
        let mut descs = Vec::new();
        let mut indirect = false;
        let (mut table, mut table_len, mut idx) = (self.desc, self.size, head);
        loop {
            assert!(descs.len() <= usize::from(self.size), "looping chain");
            let at = table + u64::from(idx) * DESC_SIZE as u64;
            let (addr, len, flags, next) =
                (read_u64(at), read_u32(at + 8), read_u16(at + 12), read_u16(at + 14));
            if flags & DESC_F_INDIRECT != 0 {
                assert!(!indirect && descs.is_empty(), "nested or mixed indirect");
                assert!(flags & DESC_F_NEXT == 0, "indirect with NEXT");
                assert!((len as usize).is_multiple_of(DESC_SIZE) && len > 0, "indirect length {len}");
                indirect = true;
                table = addr;
                table_len = (len as usize / DESC_SIZE) as u16;
                idx = 0;
                continue;
            }
            descs.push(FakeDesc { addr, len, writable: flags & DESC_F_WRITE != 0 });
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            assert!(next < table_len, "next {next} out of range");
            idx = next;
        }
        Some(Chain { head, indirect, descs })
    }

    /// Puts a used element for `head` with `len` written bytes, publishes it, and
    /// returns whether the driver wants an interrupt for it (§2.7.7.2 / §2.7.8).
    pub fn push_used(&mut self, head: u16, len: u32) -> bool {
        self.push_used_raw(u32::from(head), len)
    }

    /// As [`push_used`](Self::push_used) with any id, bogus ones included.
    pub fn push_used_raw(&mut self, id: u32, len: u32) -> bool {
        let slot = self.used_idx & (self.size - 1);
        let elem = self.used + 4 + 8 * u64::from(slot);
        write_phys(elem, &id.to_le_bytes());
        write_phys(elem + 4, &len.to_le_bytes());
        fence(Ordering::Release);
        let old = self.used_idx;
        self.used_idx = self.used_idx.wrapping_add(1);
        self.publish_used_idx();
        fence(Ordering::SeqCst);
        if self.event_idx {
            vring_need_event(self.used_event(), self.used_idx, old)
        } else {
            self.avail_flags() & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    /// Writes the device's used index to `used.idx`.
    pub fn publish_used_idx(&self) {
        write_phys(self.used + 2, &self.used_idx.to_le_bytes());
    }
}
