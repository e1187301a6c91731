//! The split virtqueue, driver side (virtio 1.2 §2.7).
//!
//! The five operations a virtio front-end is built on: [`VirtQueue::add_buf`],
//! [`VirtQueue::kick`], [`VirtQueue::get_buf`], [`VirtQueue::disable_cb`] and
//! [`VirtQueue::enable_cb`] (plus [`VirtQueue::enable_cb_delayed`]), with
//! VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC.
//!
//! Ring memory comes from the [`Hal`] and is touched only through volatile accesses,
//! since the device reads and writes it concurrently. Indices are free-running `u16`s
//! compared with wrapping arithmetic; the queue size is a power of two, so
//! `idx & (size - 1)` is the ring slot at every wrap. The driver's bookkeeping (free
//! list, chain lengths, tokens) lives in the `VirtQueue` itself, never in memory the
//! device can write, so a misbehaving device can break the queue but not the driver.
//!
//! # Buffers and soundness
//!
//! The device writes into the buffers it is given long after `add_buf` returns, so
//! the buffers must outlive the borrow that `add_buf` sees. That is the caller's
//! promise: [`add_buf`](VirtQueue::add_buf) is `unsafe`, and the drivers built on it
//! ([`crate::blk`], [`crate::console`]) wrap it in safe calls that either wait for
//! the completion before returning or own the buffer memory. Owned buffers were the
//! other choice, but without an allocator they would force every caller into
//! `'static` buffers; an `unsafe` entry point with a plain contract keeps zero-copy
//! I/O on the caller's stack possible.
#![allow(unsafe_code)]

mod event;
mod layout;

pub use event::vring_need_event;
pub use layout::{
    RingLayout, AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE, USED_ELEM_SIZE,
    USED_F_NO_NOTIFY,
};

use core::sync::atomic::{fence, Ordering};

use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::features;
use crate::hal::{Hal, PhysAddr};
use crate::transport::Transport;

/// One buffer of a chain, as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Device-visible address.
    pub addr: PhysAddr,
    /// Length in bytes (not 0).
    pub len: u32,
    /// Whether the device writes it (else it reads it).
    pub device_writable: bool,
}

/// A chain the device has finished with, from [`VirtQueue::get_buf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used<T> {
    /// The token given to `add_buf`.
    pub token: T,
    /// Bytes the device wrote into the chain's writable buffers (as it reports it:
    /// callers must not trust it beyond the buffers' real size).
    pub len: u32,
    /// The chain's head descriptor, as `add_buf` returned it.
    pub head: u16,
}

/// How a queue uses the negotiated ring features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueOptions {
    /// VIRTIO_F_EVENT_IDX was negotiated: use `used_event`/`avail_event`.
    pub event_idx: bool,
    /// VIRTIO_F_INDIRECT_DESC was negotiated and chains of 2 up to this many buffers
    /// go through an indirect table (0 or 1: never).
    pub indirect_max: u16,
}

impl QueueOptions {
    /// Options from the negotiated `features`, with indirect tables of up to
    /// `indirect_max` entries when INDIRECT_DESC is among them.
    pub const fn from_features(features: u64, indirect_max: u16) -> Self {
        Self {
            event_idx: features & features::RING_EVENT_IDX != 0,
            indirect_max: if features & features::RING_INDIRECT_DESC != 0 { indirect_max } else { 0 },
        }
    }
}

/// A split virtqueue of at most `N` entries (a power of two, at most 32768), whose
/// chains carry a token of type `T` that [`get_buf`](VirtQueue::get_buf) gives back.
///
/// The token is generic so that each driver picks what identifies its requests (a
/// request slot, a buffer index, `()` when the head is enough); it is kept in the
/// driver's own memory, never in the ring.
pub struct VirtQueue<H: Hal, T, const N: usize> {
    hal: H,
    /// Descriptor table, available and used rings, in [`RingLayout`].
    ring: DmaRegion,
    layout: RingLayout,
    /// One table of `indirect_max` descriptors per head descriptor, when in use.
    indirect: Option<DmaRegion>,
    indirect_max: u16,
    queue_index: u16,
    event_idx: bool,
    /// Head of the free descriptor list, linked through `next`.
    free_head: u16,
    num_free: u16,
    /// The driver's copy of each descriptor's `next`: free-list links, and for a
    /// chain the links from its head to its last descriptor.
    next: [u16; N],
    /// For a head of an outstanding chain, how many ring descriptors it holds.
    chain_len: [u16; N],
    /// For a head of an outstanding chain, its token.
    tokens: [Option<T>; N],
    /// Outstanding chains.
    outstanding: u16,
    /// The driver's copy of `avail.idx`.
    avail_idx: u16,
    /// Chains made available since the last kick.
    num_added: u32,
    /// The used index up to which `get_buf` has consumed.
    last_used_idx: u16,
    /// `disable_cb` is in force.
    cb_disabled: bool,
    /// The device broke the protocol; every operation fails.
    broken: bool,
}

impl<H: Hal, T, const N: usize> VirtQueue<H, T, N> {
    /// Allocates queue `index` and hands it to the device: the largest power of two
    /// that is at most both `N` and the device's QueueNumMax.
    ///
    /// # Safety
    ///
    /// The ring memory is freed when the queue is dropped, so the device must have
    /// stopped using the queue by then: reset the device (write 0 to its status)
    /// before dropping the `VirtQueue`, as the drivers in this crate do.
    ///
    /// # Errors
    ///
    /// [`Error::QueueUnavailable`] when the queue does not exist (QueueNumMax 0) or is
    /// already live; [`Error::NoMemory`]; [`Error::BadQueueAddress`] when the
    /// transport cannot express the ring's addresses.
    pub unsafe fn new<Tr: Transport + ?Sized>(
        transport: &mut Tr,
        hal: H,
        index: u16,
        options: QueueOptions,
    ) -> Result<Self> {
        const { assert!(N.is_power_of_two() && N <= 32768, "queue size must be a power of two <= 32768") };
        transport.queue_select(index);
        let max = transport.queue_max_size().min(N as u16);
        if max == 0 || transport.queue_ready() {
            return Err(Error::QueueUnavailable);
        }
        let size = 1u16 << (15 - max.leading_zeros());
        let layout = RingLayout::new(size);
        let ring = DmaRegion::alloc(&hal, layout.total())?;
        let indirect_max = if options.indirect_max > 1 { options.indirect_max } else { 0 };
        let indirect = if indirect_max > 0 {
            match DmaRegion::alloc(&hal, usize::from(size) * usize::from(indirect_max) * DESC_SIZE) {
                Ok(region) => Some(region),
                Err(e) => {
                    // SAFETY: the device has not been told about the ring yet.
                    unsafe { ring.free(&hal) };
                    return Err(e);
                }
            }
        } else {
            None
        };
        let setup = transport.setup_queue(
            index,
            size,
            ring.paddr(0),
            ring.paddr(layout.avail_offset()),
            ring.paddr(layout.used_offset()),
        );
        if let Err(e) = setup {
            // SAFETY: the device refused (or never got) the addresses, so it does not
            // use the memory.
            unsafe {
                ring.free(&hal);
                if let Some(region) = indirect {
                    region.free(&hal);
                }
            }
            return Err(e);
        }
        let mut next = [0u16; N];
        for (i, n) in next.iter_mut().enumerate() {
            *n = (i + 1) as u16;
        }
        Ok(Self {
            hal,
            ring,
            layout,
            indirect,
            indirect_max,
            queue_index: index,
            event_idx: options.event_idx,
            free_head: 0,
            num_free: size,
            next,
            chain_len: [0; N],
            tokens: [const { None }; N],
            outstanding: 0,
            avail_idx: 0,
            num_added: 0,
            last_used_idx: 0,
            cb_disabled: false,
            broken: false,
        })
    }

    /// The queue's index on its device.
    pub fn queue_index(&self) -> u16 {
        self.queue_index
    }

    /// The number of entries (a power of two).
    pub fn size(&self) -> u16 {
        self.layout.size()
    }

    /// Free descriptors in the ring.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Chains made available and not yet returned by `get_buf`.
    pub fn in_flight(&self) -> u16 {
        self.outstanding
    }

    /// Whether EVENT_IDX is in use.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// The longest chain that goes through an indirect table (0: none do).
    pub fn indirect_max(&self) -> u16 {
        self.indirect_max
    }

    /// Whether the device broke the protocol (see [`Error::Broken`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The HAL the queue allocates from.
    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// Makes a chain of the readable buffers `out` followed by the writable buffers
    /// `inp` available to the device (§2.7.13), with `token` to be returned by
    /// [`get_buf`](Self::get_buf). Returns the chain's head descriptor. A running
    /// device may pick the chain up at once; [`kick`](Self::kick) notifies it, if it
    /// asked to be notified.
    ///
    /// A chain of 2 or more buffers goes through an indirect table when INDIRECT_DESC
    /// is in use and the chain fits one (it then takes a single ring descriptor).
    ///
    /// # Safety
    ///
    /// The device reads `out` and writes `inp` until the chain comes back: every
    /// buffer must stay valid (not freed, not moved) until `get_buf` returns this
    /// chain's token, or until the device is reset. Until then the caller must not
    /// write the `out` buffers nor read or write the `inp` buffers. The buffers must
    /// be memory the HAL translates (`virt_to_phys`).
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when there are too few free descriptors (a later
    /// `get_buf` frees some); [`Error::InvalidParam`] for no buffers, a zero-length
    /// buffer, a buffer or chain longer than 4 GiB, or a chain that can never fit the
    /// ring; [`Error::Broken`].
    pub unsafe fn add_buf(&mut self, out: &[&[u8]], inp: &mut [&mut [u8]], token: T) -> Result<u16> {
        let inp = &*inp;
        let segment = |hal: &H, i: usize| {
            let (buf, device_writable): (&[u8], bool) = match out.get(i) {
                Some(buf) => (buf, false),
                None => (inp[i - out.len()], true),
            };
            Segment {
                addr: hal.virt_to_phys(buf.as_ptr() as usize),
                // Too long for a descriptor: 0, which `add_chain` refuses.
                len: u32::try_from(buf.len()).unwrap_or(0),
                device_writable,
            }
        };
        self.write_chain(out.len() + inp.len(), segment, token)
    }

    /// Like [`add_buf`](Self::add_buf), for buffers given by device address.
    ///
    /// # Safety
    ///
    /// Each segment must be memory the device may read (or, if `device_writable`,
    /// write) until `get_buf` returns `token` or the device is reset, and nothing else
    /// may write the readable ones or access the writable ones meanwhile.
    ///
    /// # Errors
    ///
    /// As for [`add_buf`](Self::add_buf).
    pub unsafe fn add_segments(&mut self, segments: &[Segment], token: T) -> Result<u16> {
        self.write_chain(segments.len(), |_: &H, i| segments[i], token)
    }

    /// Like [`add_segments`](Self::add_segments), for a chain of `count` segments
    /// where the `i`th is `segment(i)` (no slice of them needs to exist).
    ///
    /// # Safety
    ///
    /// As for [`add_segments`](Self::add_segments).
    ///
    /// # Errors
    ///
    /// As for [`add_buf`](Self::add_buf).
    pub unsafe fn add_chain(
        &mut self,
        count: usize,
        segment: impl Fn(usize) -> Segment,
        token: T,
    ) -> Result<u16> {
        self.write_chain(count, |_: &H, i| segment(i), token)
    }

    /// Writes the chain of `count` segments (the `i`th is `segment(hal, i)`) and
    /// publishes its head.
    fn write_chain(&mut self, count: usize, segment: impl Fn(&H, usize) -> Segment, token: T) -> Result<u16> {
        if self.broken {
            return Err(Error::Broken);
        }
        let mut total = 0u64;
        for i in 0..count {
            let len = segment(&self.hal, i).len;
            if len == 0 {
                return Err(Error::InvalidParam);
            }
            total += u64::from(len);
        }
        if count == 0 || total > u64::from(u32::MAX) {
            return Err(Error::InvalidParam);
        }
        let use_indirect = self.indirect.is_some() && count > 1 && count <= usize::from(self.indirect_max);
        let needed = if use_indirect { 1 } else { count };
        if needed > usize::from(self.size()) {
            return Err(Error::InvalidParam);
        }
        if needed > usize::from(self.num_free) {
            return Err(Error::QueueFull);
        }
        let head = self.free_head;
        if let (true, Some(table)) = (use_indirect, &self.indirect) {
            // §2.7.5.3: a table of `count` descriptors, chained by index, referred
            // to by one ring descriptor with only the INDIRECT flag.
            let base = usize::from(head) * usize::from(self.indirect_max) * DESC_SIZE;
            for i in 0..count {
                let more = i + 1 < count;
                let next = if more { (i + 1) as u16 } else { 0 };
                write_desc(table, base + i * DESC_SIZE, segment(&self.hal, i), next, more);
            }
            let seg =
                Segment { addr: table.paddr(base), len: (count * DESC_SIZE) as u32, device_writable: false };
            write_desc_flags(&self.ring, self.layout.desc(head), seg, DESC_F_INDIRECT, 0);
            self.free_head = self.next[usize::from(head)];
        } else {
            let mut idx = head;
            for i in 0..count {
                let more = i + 1 < count;
                let next = self.next[usize::from(idx)];
                let seg = segment(&self.hal, i);
                write_desc(&self.ring, self.layout.desc(idx), seg, if more { next } else { 0 }, more);
                idx = next;
            }
            self.free_head = idx;
        }
        self.num_free -= needed as u16;
        self.chain_len[usize::from(head)] = needed as u16;
        self.tokens[usize::from(head)] = Some(token);
        self.outstanding += 1;

        // §2.7.13.2: the head goes into the next ring slot ...
        let slot = self.avail_idx & (self.size() - 1);
        self.ring.write_u16(self.layout.avail_ring(slot), head);
        // ... and §2.7.13.3.1: the descriptors and the slot are visible before the
        // index that publishes them.
        fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ring.write_u16(self.layout.avail_idx(), self.avail_idx);
        self.num_added = self.num_added.saturating_add(1);
        Ok(head)
    }

    /// Decides whether the device needs a notification for the chains added since
    /// the last kick (§2.7.13.4), and forgets them: true when it asked for one. The
    /// caller then notifies (Linux's `virtqueue_kick_prepare`).
    ///
    /// A full fence comes first: the new `avail.idx` must be visible before the
    /// device's `avail_event` (or `used.flags`) is read, or both sides could decide
    /// the other will act.
    pub fn kick_prepare(&mut self) -> bool {
        fence(Ordering::SeqCst);
        let added = core::mem::take(&mut self.num_added);
        if added == 0 || self.broken {
            return false;
        }
        if self.event_idx {
            if added > u32::from(u16::MAX) {
                // The old index is lost in the wrap: notify to be safe.
                return true;
            }
            let new = self.avail_idx;
            let old = new.wrapping_sub(added as u16);
            vring_need_event(self.ring.read_u16(self.layout.avail_event()), new, old)
        } else {
            self.ring.read_u16(self.layout.used_flags()) & USED_F_NO_NOTIFY == 0
        }
    }

    /// Notifies the device of the chains added since the last kick, if it asked for
    /// notifications (EVENT_IDX: `avail_event` lies in the added range; otherwise
    /// VRING_USED_F_NO_NOTIFY is clear). Returns whether it notified.
    pub fn kick<Tr: Transport + ?Sized>(&mut self, transport: &mut Tr) -> bool {
        let notify = self.kick_prepare();
        if notify {
            transport.notify(self.queue_index);
        }
        notify
    }

    /// Whether the device has returned chains that `get_buf` has not taken yet.
    pub fn has_used(&self) -> bool {
        !self.broken && self.ring.read_u16(self.layout.used_idx()) != self.last_used_idx
    }

    /// Takes the next chain the device has finished with, in the order the device
    /// used them (which need not be the order they were added), and frees its
    /// descriptors. `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::BadUsedId`] when the used element names a descriptor that is not the
    /// head of an outstanding chain, [`Error::BadUsedIndex`] when the device claims
    /// more used chains than it holds; the queue is broken after either, and
    /// [`Error::Broken`] is returned from then on.
    pub fn get_buf(&mut self) -> Result<Option<Used<T>>> {
        if self.broken {
            return Err(Error::Broken);
        }
        let used_idx = self.ring.read_u16(self.layout.used_idx());
        if used_idx == self.last_used_idx {
            return Ok(None);
        }
        if used_idx.wrapping_sub(self.last_used_idx) > self.outstanding {
            self.broken = true;
            return Err(Error::BadUsedIndex(used_idx));
        }
        // §2.7.14: read the element only after seeing the index that covers it.
        fence(Ordering::Acquire);
        let slot = self.last_used_idx & (self.size() - 1);
        let elem = self.layout.used_elem(slot);
        let id = self.ring.read_u32(elem);
        let len = self.ring.read_u32(elem + 4);
        let token = match usize::try_from(id).ok().filter(|&i| i < usize::from(self.size())) {
            Some(head) => self.tokens[head].take(),
            None => None,
        };
        let Some(token) = token else {
            self.broken = true;
            return Err(Error::BadUsedId(id));
        };
        let head = id as u16;
        self.free_chain(head);
        self.last_used_idx = self.last_used_idx.wrapping_add(1);
        if self.event_idx && !self.cb_disabled {
            // Ask for an interrupt at the next used chain; the fence orders this
            // store before the next read of `used.idx` (Linux's virtio_store_mb).
            self.ring.write_u16(self.layout.used_event(), self.last_used_idx);
            fence(Ordering::SeqCst);
        }
        Ok(Some(Used { token, len, head }))
    }

    /// Puts the chain at `head` back on the free list.
    fn free_chain(&mut self, head: u16) {
        let len = core::mem::take(&mut self.chain_len[usize::from(head)]);
        let mut last = head;
        for _ in 1..len {
            last = self.next[usize::from(last)];
        }
        self.next[usize::from(last)] = self.free_head;
        self.free_head = head;
        self.num_free += len;
        self.outstanding -= 1;
    }

    /// Asks the device not to interrupt for used buffers (§2.7.7). Only a hint: an
    /// interrupt already on its way, or one the device sends anyway, can still come.
    ///
    /// Without EVENT_IDX this sets VRING_AVAIL_F_NO_INTERRUPT; with it, the flag must
    /// stay 0, so `used_event` is moved just behind the last used index the driver
    /// has seen, the point the device's index reaches last.
    pub fn disable_cb(&mut self) {
        if self.cb_disabled {
            return;
        }
        self.cb_disabled = true;
        if self.event_idx {
            self.ring.write_u16(self.layout.used_event(), self.last_used_idx.wrapping_sub(1));
        } else {
            self.ring.write_u16(self.layout.avail_flags(), AVAIL_F_NO_INTERRUPT);
        }
    }

    /// Asks the device to interrupt at the next used buffer, then checks whether
    /// buffers arrived before the request was visible. Returns false when used
    /// buffers are waiting: the caller must call `get_buf` again rather than wait
    /// for an interrupt that may never come (the race of §2.7.7 and Linux's
    /// `virtqueue_enable_cb`).
    pub fn enable_cb(&mut self) -> bool {
        self.clear_no_interrupt();
        if self.event_idx {
            self.ring.write_u16(self.layout.used_event(), self.last_used_idx);
        }
        // The request must be visible before `used.idx` is read again.
        fence(Ordering::SeqCst);
        !self.broken && self.ring.read_u16(self.layout.used_idx()) == self.last_used_idx
    }

    /// Like [`enable_cb`](Self::enable_cb), but with EVENT_IDX asks for the interrupt
    /// only once about three quarters of the outstanding chains are used (fewer
    /// interrupts for a batch). Returns false when that many have already arrived,
    /// so the caller polls again. Without EVENT_IDX it is `enable_cb`.
    pub fn enable_cb_delayed(&mut self) -> bool {
        if !self.event_idx {
            return self.enable_cb();
        }
        self.clear_no_interrupt();
        let pending = self.avail_idx.wrapping_sub(self.last_used_idx);
        let bufs = (u32::from(pending) * 3 / 4) as u16;
        self.ring.write_u16(self.layout.used_event(), self.last_used_idx.wrapping_add(bufs));
        fence(Ordering::SeqCst);
        let used = self.ring.read_u16(self.layout.used_idx()).wrapping_sub(self.last_used_idx);
        !self.broken && used <= bufs
    }

    /// Ends `disable_cb`: clears VRING_AVAIL_F_NO_INTERRUPT if it was set.
    fn clear_no_interrupt(&mut self) {
        if self.cb_disabled {
            self.cb_disabled = false;
            if !self.event_idx {
                self.ring.write_u16(self.layout.avail_flags(), 0);
            }
        }
    }
}

impl<H: Hal, T, const N: usize> Drop for VirtQueue<H, T, N> {
    fn drop(&mut self) {
        // SAFETY: `new`'s contract: the device stopped using the queue before the
        // drop; the regions came from `self.hal` and are not used again.
        unsafe {
            self.ring.free(&self.hal);
            if let Some(table) = &self.indirect {
                table.free(&self.hal);
            }
        }
    }
}

/// Writes a descriptor, with NEXT when `more` and WRITE when the segment is
/// device-writable.
fn write_desc(mem: &DmaRegion, offset: usize, seg: Segment, next: u16, more: bool) {
    let mut flags = if seg.device_writable { DESC_F_WRITE } else { 0 };
    if more {
        flags |= DESC_F_NEXT;
    }
    write_desc_flags(mem, offset, seg, flags, next);
}

/// Writes the descriptor at `offset` (§2.7.5: addr, len, flags, next).
fn write_desc_flags(mem: &DmaRegion, offset: usize, seg: Segment, flags: u16, next: u16) {
    mem.write_u64(offset, seg.addr);
    mem.write_u32(offset + 8, seg.len);
    mem.write_u16(offset + 12, flags);
    mem.write_u16(offset + 14, next);
}

#[cfg(test)]
mod tests;
