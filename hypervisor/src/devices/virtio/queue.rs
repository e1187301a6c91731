//! The device side of a split virtqueue (virtio 1.2 §2.7).
//!
//! A [`Queue`] holds what the transport learned about one virtqueue (size, ring
//! addresses, negotiated ring features) and the device's two cursors: the next
//! available-ring entry to consume and the next used-ring entry to fill. Every ring
//! access is a copy through [`GuestMemory`]; nothing here refers into guest RAM.
//!
//! The guest is not trusted: a head or `next` index out of the table, a chain longer
//! than the queue (which is also how a loop shows), a nested indirect table, an
//! indirect table of a bad length, a buffer outside RAM, or an available index that
//! moved by more than the queue size are all [`QueueError`]s, after which the
//! transport sets DEVICE_NEEDS_RESET. All index arithmetic wraps at 2^16.
//!
//! Memory ordering follows §2.7.13: the device reads `avail.idx` before the ring
//! entries and descriptors it covers, writes a used element before publishing
//! `used.idx`, and publishes `used.idx` before reading `used_event` (or the
//! available ring's flags) to decide on an interrupt, each with a full fence.

use core::sync::atomic::{fence, Ordering};

use super::chain::{Buffer, Chain};
pub use super::queue_error::{QueueError, Ring};
use crate::mm::guest_memory::{GuestMemory, GuestMemoryError};
use crate::trace::{self, Stage};

/// Descriptor flags (§2.7.5).
mod desc_flags {
    /// The buffer continues in the descriptor `next`.
    pub const NEXT: u16 = 1;
    /// The buffer is device-writable.
    pub const WRITE: u16 = 2;
    /// The buffer is a table of descriptors.
    pub const INDIRECT: u16 = 4;
}

/// VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks for no used-buffer notifications
/// (§2.7.7; honoured when EVENT_IDX is not negotiated).
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Bytes of one descriptor.
const DESC_SIZE: u64 = 16;

/// `vring_need_event` (§2.7.10): whether moving an index from `old` to `new` passed
/// `event`, in wrapping 16-bit arithmetic.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One descriptor as read from a table.
#[derive(Debug, Clone, Copy)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// The device side of one split virtqueue.
#[derive(Debug, Clone)]
pub struct Queue {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
    indirect: bool,
    /// The next available-ring entry to consume (free-running).
    next_avail: u16,
    /// The next used-ring entry to fill, and `used.idx` as published (free-running).
    next_used: u16,
    /// `used.idx` when the interrupt was last decided on.
    signalled_used: u16,
}

impl Queue {
    /// A queue of at most `max_size` entries (a power of two), in its reset state:
    /// not ready, size `max_size`, rings at 0.
    pub fn new(max_size: u16) -> Self {
        debug_assert!(max_size.is_power_of_two() && max_size <= super::MAX_QUEUE_SIZE);
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
            event_idx: false,
            indirect: false,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
        }
    }

    /// Back to the reset state (a device reset).
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// QueueNumMax.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The queue size the driver chose (QueueNum).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Sets the size; returns false, changing nothing, unless `size` is a power of two
    /// no larger than the maximum (§2.7: split queue sizes are powers of two).
    pub fn set_size(&mut self, size: u32) -> bool {
        match u16::try_from(size) {
            Ok(size) if size.is_power_of_two() && size <= self.max_size => {
                self.size = size;
                true
            }
            _ => false,
        }
    }

    /// Descriptor table address.
    pub fn desc_addr(&self) -> u64 {
        self.desc
    }

    /// Driver area (available ring) address.
    pub fn avail_addr(&self) -> u64 {
        self.avail
    }

    /// Device area (used ring) address.
    pub fn used_addr(&self) -> u64 {
        self.used
    }

    /// Sets the three ring addresses (checked by [`check_layout`](Self::check_layout)
    /// before the queue is made ready).
    pub fn set_addresses(&mut self, desc: u64, avail: u64, used: u64) {
        self.desc = desc;
        self.avail = avail;
        self.used = used;
    }

    /// Whether the driver made the queue ready.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Makes the queue ready or not. Either way its cursors start again from 0, as
    /// for a freshly set-up ring.
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = 0;
    }

    /// Uses the ring features the driver accepted.
    pub fn set_features(&mut self, event_idx: bool, indirect: bool) {
        self.event_idx = event_idx;
        self.indirect = indirect;
    }

    /// Checks that the three areas are aligned (descriptors 16, available 2, used 4)
    /// and lie in RAM, with the `used_event`/`avail_event` fields included.
    ///
    /// # Errors
    ///
    /// `RingMisaligned` or `RingOutOfRange` for the first area at fault.
    pub fn check_layout(&self, mem: &GuestMemory) -> Result<(), QueueError> {
        let size = u64::from(self.size);
        let areas = [
            (Ring::Descriptors, self.desc, DESC_SIZE * size, 16),
            (Ring::Available, self.avail, 6 + 2 * size, 2),
            (Ring::Used, self.used, 6 + 8 * size, 4),
        ];
        for (ring, addr, len, align) in areas {
            if !addr.is_multiple_of(align) {
                return Err(QueueError::RingMisaligned { ring, addr });
            }
            if !mem.contains(addr, len) {
                return Err(QueueError::RingOutOfRange { ring, addr, len });
            }
        }
        Ok(())
    }

    /// Takes the next chain the driver made available, if any, into `chain`
    /// (which is overwritten); false, `chain` untouched, when there is none.
    ///
    /// With EVENT_IDX, finding the ring empty writes `avail_event` (the next entry the
    /// device will read, so the driver's next addition notifies) and, after a fence,
    /// looks once more, so an entry added meanwhile is not left without a notify.
    ///
    /// # Errors
    ///
    /// A [`QueueError`] for a bad index, chain or buffer; the entry is consumed then.
    pub fn pop_into(&mut self, mem: &GuestMemory, chain: &mut Chain) -> Result<bool, QueueError> {
        if !self.ready {
            return Ok(false);
        }
        if self.pending(mem)? == 0 {
            if !self.event_idx {
                return Ok(false);
            }
            mem.write_u16(self.avail_event_addr(), self.next_avail)?;
            fence(Ordering::SeqCst);
            if self.pending(mem)? == 0 {
                return Ok(false);
            }
        }
        // Read the entry and its descriptors only after seeing the index that covers them.
        fence(Ordering::SeqCst);
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.avail + 4 + 2 * slot)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.walk(mem, head, chain).map(|()| true)
    }

    /// [`Queue::pop_into`] a new chain (for tests, which don't mind 4 KiB moves).
    #[cfg(test)]
    pub fn pop(&mut self, mem: &GuestMemory) -> Result<Option<Chain>, QueueError> {
        let mut chain = Chain::new(0);
        Ok(self.pop_into(mem, &mut chain)?.then_some(chain))
    }

    /// Returns a chain to the driver: used element `(head, len)`, then `used.idx`.
    /// `len` is the number of bytes the device wrote into the chain's buffers.
    ///
    /// # Errors
    ///
    /// `UsedHeadOutOfRange` for a head past the table (a device bug); `Memory` if the
    /// ring is no longer RAM.
    pub fn push_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if head >= self.size {
            return Err(QueueError::UsedHeadOutOfRange { head });
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used + 4 + 8 * slot;
        mem.write_u32(elem, u32::from(head))?;
        mem.write_u32(elem + 4, len)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element must be visible before the index that publishes it.
        fence(Ordering::SeqCst);
        mem.write_u16(self.used + 2, self.next_used)?;
        trace::point(Stage::UsedPublished);
        Ok(())
    }

    /// Whether the driver wants a used-buffer notification for what was pushed since
    /// the last call: with EVENT_IDX when `used.idx` passed `used_event`
    /// (`vring_need_event`), otherwise unless the driver set NO_INTERRUPT. False when
    /// nothing was pushed.
    pub fn needs_interrupt(&mut self, mem: &GuestMemory) -> bool {
        let (old, new) = (self.signalled_used, self.next_used);
        if !self.ready || old == new {
            return false;
        }
        self.signalled_used = new;
        // The published used.idx must be visible before the driver's field is read.
        fence(Ordering::SeqCst);
        // The rings were checked when the queue was made ready: a failure here means
        // the VM's memory changed, and an extra interrupt is the harmless answer.
        if self.event_idx {
            mem.read_u16(self.used_event_addr()).map_or(true, |event| need_event(event, new, old))
        } else {
            mem.read_u16(self.avail).map_or(true, |flags| flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }

    /// Entries the driver made available that the device hasn't read.
    fn pending(&self, mem: &GuestMemory) -> Result<u16, QueueError> {
        let avail = mem.read_u16(self.avail + 2)?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexJump { avail, next: self.next_avail });
        }
        Ok(pending)
    }

    /// `used_event`, after the available ring's entries.
    fn used_event_addr(&self) -> u64 {
        self.avail + 4 + 2 * u64::from(self.size)
    }

    /// `avail_event`, after the used ring's elements.
    fn avail_event_addr(&self) -> u64 {
        self.used + 4 + 8 * u64::from(self.size)
    }

    /// Follows the chain at `head` (with at most one indirect table, at its end).
    fn walk(&self, mem: &GuestMemory, head: u16, chain: &mut Chain) -> Result<(), QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange { head });
        }
        chain.restart(head);
        // The table being walked, its entry count, and the descriptors visited in it:
        // more visits than entries means a loop.
        let (mut table, mut entries, mut visited) = (self.desc, self.size, 0u16);
        let mut in_indirect = false;
        let mut index = head;
        loop {
            if visited >= entries {
                return Err(QueueError::ChainTooLong { head });
            }
            visited += 1;
            let d = read_descriptor(mem, table + DESC_SIZE * u64::from(index))?;
            if d.flags & desc_flags::INDIRECT != 0 {
                if in_indirect {
                    return Err(QueueError::NestedIndirect { head });
                }
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated { head });
                }
                if d.flags & desc_flags::NEXT != 0 {
                    return Err(QueueError::IndirectWithNext { head });
                }
                let count = d.len / DESC_SIZE as u32;
                if d.len == 0 || d.len % DESC_SIZE as u32 != 0 || count > u32::from(self.size) {
                    return Err(QueueError::IndirectTableLength { head, len: d.len });
                }
                if !mem.contains(d.addr, u64::from(d.len)) {
                    return Err(QueueError::BufferOutOfRange { head, addr: d.addr, len: d.len });
                }
                // The WRITE flag of the descriptor naming the table means nothing
                // (§2.7.5.3.2); the table's entries are chained from entry 0.
                (table, entries, visited, index) = (d.addr, count as u16, 0, 0);
                in_indirect = true;
                continue;
            }
            if d.len != 0 && !mem.contains(d.addr, u64::from(d.len)) {
                return Err(QueueError::BufferOutOfRange { head, addr: d.addr, len: d.len });
            }
            chain.push(Buffer { addr: d.addr, len: d.len }, d.flags & desc_flags::WRITE != 0, self.size)?;
            if d.flags & desc_flags::NEXT == 0 {
                return Ok(());
            }
            if d.next >= entries {
                return Err(QueueError::NextOutOfRange { head, next: d.next });
            }
            index = d.next;
        }
    }
}

fn read_descriptor(mem: &GuestMemory, addr: u64) -> Result<Descriptor, GuestMemoryError> {
    let mut raw = [0u8; DESC_SIZE as usize];
    mem.read(addr, &mut raw)?;
    let field = |range: core::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..range.len()].copy_from_slice(&raw[range]);
        u64::from_le_bytes(b)
    };
    Ok(Descriptor {
        addr: field(0..8),
        len: field(8..12) as u32,
        flags: field(12..14) as u16,
        next: field(14..16) as u16,
    })
}

#[cfg(test)]
mod tests;
