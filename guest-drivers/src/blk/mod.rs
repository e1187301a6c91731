//! virtio-blk driver (virtio 1.2 §5.2): blocking reads, writes, flushes and GET_ID,
//! and a non-blocking submit/complete interface with many requests in flight,
//! including requests whose data is a list of segments given by device address
//! ([`VirtioBlk::submit_segments`]: what a hypervisor serving its guests' requests
//! on this device needs).
//!
//! Each request takes a slot in a table of request headers and status bytes that
//! the driver keeps in DMA memory of its own; the slot's index is the request's
//! [`Token`]. A request is a chain of three buffers (§5.2.6): the header (device
//! readable), the data (readable for a write, writable for a read), the status byte
//! (writable); through an indirect table when INDIRECT_DESC is negotiated, so each
//! request then takes one ring descriptor.
//!
//! DMA memory: 9 pages with a 256-entry queue and INDIRECT_DESC (ring 3, indirect
//! tables 4, request slots 2), 5 without INDIRECT_DESC.
#![allow(unsafe_code)]

pub mod spec;

pub use spec::SECTOR_SIZE;

use crate::dma::DmaRegion;
use crate::error::{Error, Result};
use crate::features;
use crate::hal::{Hal, PhysAddr};
use crate::init;
use crate::queue::{QueueOptions, Segment, VirtQueue};
use crate::transport::{device_id, DeviceStatus, Transport};
use spec::*;

/// Entries of the request queue (at most; the device may offer fewer).
pub const QUEUE_SIZE: usize = 256;
/// Bytes of a request slot: header, status byte, padding.
const SLOT_BYTES: usize = 32;
/// Offset of the status byte in a slot.
const STATUS_OFFSET: usize = HEADER_SIZE;
/// A status byte the device has not written yet.
const STATUS_UNSET: u8 = 0xff;
/// Entries of each indirect table: header, data, status, and one spare.
const INDIRECT_MAX: u16 = 4;
/// How many empty polls a blocking wait makes between reads of the device status.
const STATUS_POLL_INTERVAL: u32 = 1024;

/// The features this driver accepts when offered.
pub const SUPPORTED_FEATURES: u64 = F_SIZE_MAX
    | F_SEG_MAX
    | F_RO
    | F_BLK_SIZE
    | F_FLUSH
    | F_DISCARD
    | F_WRITE_ZEROES
    | features::RING_INDIRECT_DESC
    | features::RING_EVENT_IDX
    | features::VERSION_1;

/// What a request asks of the device (§5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Read sectors into the data.
    Read,
    /// Write the data to sectors.
    Write,
    /// Flush the write cache (no data; VIRTIO_BLK_F_FLUSH).
    Flush,
    /// Read the device's ID string into the data.
    GetId,
    /// Discard the ranges the data lists (VIRTIO_BLK_F_DISCARD).
    Discard,
    /// Write zeroes to the ranges the data lists (VIRTIO_BLK_F_WRITE_ZEROES).
    WriteZeroes,
}

impl Request {
    /// The request type on the wire.
    pub fn code(self) -> u32 {
        match self {
            Self::Read => T_IN,
            Self::Write => T_OUT,
            Self::Flush => T_FLUSH,
            Self::GetId => T_GET_ID,
            Self::Discard => T_DISCARD,
            Self::WriteZeroes => T_WRITE_ZEROES,
        }
    }

    /// Whether the device writes the request's data (rather than reads it).
    pub fn device_writes_data(self) -> bool {
        matches!(self, Self::Read | Self::GetId)
    }

    /// Whether the request changes the disk.
    pub fn changes_disk(self) -> bool {
        matches!(self, Self::Write | Self::Discard | Self::WriteZeroes)
    }

    /// The feature the device must have negotiated for this request, if any.
    fn feature(self) -> Option<u64> {
        match self {
            Self::Flush => Some(F_FLUSH),
            Self::Discard => Some(F_DISCARD),
            Self::WriteZeroes => Some(F_WRITE_ZEROES),
            Self::Read | Self::Write | Self::GetId => None,
        }
    }
}

/// Names a submitted request until [`VirtioBlk::complete`] returns its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u16);

impl Token {
    /// The request slot's index (below the queue size).
    pub fn index(self) -> u16 {
        self.0
    }
}

/// Where a request slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    InFlight,
    Done,
}

/// A virtio-blk device.
pub struct VirtioBlk<H: Hal, T: Transport> {
    transport: T,
    queue: VirtQueue<H, u16, QUEUE_SIZE>,
    /// Request headers and status bytes, one [`SLOT_BYTES`] slot per queue entry.
    requests: DmaRegion,
    slots: [Slot; QUEUE_SIZE],
    features: u64,
    /// The largest data buffer one request may carry.
    max_transfer: usize,
    /// The most data segments one request may have (`seg_max`), if the device says.
    max_segments: Option<u32>,
    /// The largest data segment (`size_max`), if the device says.
    max_segment_size: Option<u32>,
    /// The device was reset after a fatal error.
    broken: bool,
}

impl<H: Hal, T: Transport> VirtioBlk<H, T> {
    /// Initialises the block device behind `transport` (§3.1.1): reset, feature
    /// negotiation ([`SUPPORTED_FEATURES`] as offered), request queue 0, DRIVER_OK.
    ///
    /// # Errors
    ///
    /// [`Error::WrongDeviceType`]; [`Error::FeaturesRefused`] and the other errors of
    /// [`init::negotiate`]; [`Error::QueueUnavailable`], [`Error::NoMemory`],
    /// [`Error::BadQueueAddress`] from setting up the queue.
    pub fn new(mut transport: T, hal: H) -> Result<Self> {
        init::expect_device(&transport, device_id::BLOCK)?;
        let features = init::negotiate(&mut transport, SUPPORTED_FEATURES)?;
        let options = QueueOptions::from_features(features, INDIRECT_MAX);
        // SAFETY: the queue is dropped only after a reset: in `Drop`, or below on
        // the error paths (`abandon` resets before `queue` goes out of scope).
        let queue = match unsafe { VirtQueue::new(&mut transport, hal, 0, options) } {
            Ok(queue) => queue,
            Err(e) => {
                init::abandon(&mut transport);
                return Err(e);
            }
        };
        let requests = match DmaRegion::alloc(queue.hal(), usize::from(queue.size()) * SLOT_BYTES) {
            Ok(region) => region,
            Err(e) => {
                init::abandon(&mut transport);
                return Err(e);
            }
        };
        let mut max_transfer = u32::MAX as usize / SECTOR_SIZE * SECTOR_SIZE;
        let max_segment_size = (features & F_SIZE_MAX != 0)
            .then(|| transport.read_config_u32(CONFIG_SIZE_MAX))
            .filter(|&size| size > 0);
        if let Some(size_max) = max_segment_size.map(|s| s as usize).filter(|&s| s >= SECTOR_SIZE) {
            max_transfer = size_max / SECTOR_SIZE * SECTOR_SIZE;
        }
        let max_segments = (features & F_SEG_MAX != 0)
            .then(|| transport.read_config_u32(CONFIG_SEG_MAX))
            .filter(|&count| count > 0);
        init::driver_ok(&mut transport);
        Ok(Self {
            transport,
            queue,
            requests,
            slots: [Slot::Free; QUEUE_SIZE],
            features,
            max_transfer,
            max_segments,
            max_segment_size,
            broken: false,
        })
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The disk's size in 512-byte sectors (read from the device each time: it may
    /// change, with a configuration-change interrupt).
    pub fn capacity(&self) -> u64 {
        self.transport.read_config_u64(CONFIG_CAPACITY)
    }

    /// Whether the device is read-only (VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        self.features & F_RO != 0
    }

    /// The device's optimal block size, when it gives one (VIRTIO_BLK_F_BLK_SIZE).
    pub fn block_size(&self) -> Option<u32> {
        (self.features & F_BLK_SIZE != 0).then(|| self.transport.read_config_u32(CONFIG_BLK_SIZE))
    }

    /// The most data bytes one submitted request may carry (from `size_max`).
    pub fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    /// The most data segments one request may have (`seg_max`), if the device says.
    pub fn max_segments(&self) -> Option<u32> {
        self.max_segments
    }

    /// The largest data segment in bytes (`size_max`), if the device says.
    pub fn max_segment_size(&self) -> Option<u32> {
        self.max_segment_size
    }

    /// The request queue's size: how many requests can be in flight at once (with
    /// INDIRECT_DESC; a third as many without).
    pub fn queue_size(&self) -> u16 {
        self.queue.size()
    }

    /// The transport, for interrupt handling and inspection.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Reads sectors from `sector` on into `buf` (a non-zero multiple of 512 bytes),
    /// waiting for the device. Buffers larger than [`max_transfer`](Self::max_transfer)
    /// are split into several requests.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] for a bad length; [`Error::IoError`] (e.g. past the
    /// end of the disk) or [`Error::Unsupported`] as the device reports; the errors
    /// of [`wait`](Self::wait).
    pub fn read_blocks(&mut self, sector: u64, buf: &mut [u8]) -> Result {
        check_len(buf.len())?;
        let step = self.max_transfer;
        for (i, chunk) in buf.chunks_mut(step).enumerate() {
            let at = sector + (i * step / SECTOR_SIZE) as u64;
            // SAFETY: `wait` returns only once the device has completed the request
            // or has been reset, so `chunk` outlives the device's use of it.
            let token = unsafe { self.submit_read(at, chunk)? };
            self.wait(token)?;
        }
        Ok(())
    }

    /// Writes `buf` (a non-zero multiple of 512 bytes) to the sectors from `sector`
    /// on, waiting for the device.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`]; otherwise as for [`read_blocks`](Self::read_blocks).
    pub fn write_blocks(&mut self, sector: u64, buf: &[u8]) -> Result {
        check_len(buf.len())?;
        let step = self.max_transfer;
        for (i, chunk) in buf.chunks(step).enumerate() {
            let at = sector + (i * step / SECTOR_SIZE) as u64;
            // SAFETY: as in `read_blocks`: the request is over before `chunk` is.
            let token = unsafe { self.submit_write(at, chunk)? };
            self.wait(token)?;
        }
        Ok(())
    }

    /// Flushes the device's write cache and waits. Without VIRTIO_BLK_F_FLUSH the
    /// device writes through, and this does nothing.
    ///
    /// # Errors
    ///
    /// As for [`read_blocks`](Self::read_blocks).
    pub fn flush(&mut self) -> Result {
        if self.features & F_FLUSH == 0 {
            return Ok(());
        }
        let token = self.submit_flush()?;
        self.wait(token)
    }

    /// Reads the device's ID string (up to 20 bytes, NUL-padded when shorter) into
    /// `id`; returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the device has no ID; as for
    /// [`read_blocks`](Self::read_blocks).
    pub fn get_id(&mut self, id: &mut [u8; ID_BYTES]) -> Result<usize> {
        id.fill(0);
        // SAFETY: waited for below, as in `read_blocks`.
        let token = unsafe { self.submit(T_GET_ID, 0, Some((&mut id[..], true))) }?;
        self.wait(token)?;
        Ok(id.iter().position(|&b| b == 0).unwrap_or(ID_BYTES))
    }

    /// Starts reading sectors from `sector` on into `buf` and returns at once.
    ///
    /// # Safety
    ///
    /// The device writes `buf` until the request completes: `buf` must stay valid
    /// and must not be read or written until [`complete`](Self::complete) has
    /// returned anything but [`Error::NotReady`] for the token, or this driver has
    /// been dropped or has reported an error that resets the device (the device then
    /// stops using it).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] for a length that is not a non-zero multiple of 512
    /// or exceeds [`max_transfer`](Self::max_transfer); [`Error::QueueFull`] when no
    /// slot or descriptor is free (complete some requests first); [`Error::Broken`].
    pub unsafe fn submit_read(&mut self, sector: u64, buf: &mut [u8]) -> Result<Token> {
        self.check_transfer(buf.len())?;
        // SAFETY: the caller keeps `buf` alive and untouched, as this fn requires.
        unsafe { self.submit(T_IN, sector, Some((buf, true))) }
    }

    /// Starts writing `buf` to the sectors from `sector` on and returns at once.
    ///
    /// # Safety
    ///
    /// The device reads `buf` until the request completes: `buf` must stay valid and
    /// must not be written until [`complete`](Self::complete) has returned anything
    /// but [`Error::NotReady`] for the token (or the device was reset, as for
    /// [`submit_read`](Self::submit_read)).
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`]; otherwise as for [`submit_read`](Self::submit_read).
    pub unsafe fn submit_write(&mut self, sector: u64, buf: &[u8]) -> Result<Token> {
        if self.read_only() {
            return Err(Error::ReadOnly);
        }
        self.check_transfer(buf.len())?;
        let data = (buf.as_ptr() as usize, buf.len());
        // SAFETY: the caller keeps `buf` alive and unwritten; the device only reads it.
        unsafe { self.submit_raw(T_OUT, sector, Some((data, false))) }
    }

    /// Starts a cache flush and returns at once.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] without VIRTIO_BLK_F_FLUSH; [`Error::QueueFull`],
    /// [`Error::Broken`].
    pub fn submit_flush(&mut self) -> Result<Token> {
        if self.features & F_FLUSH == 0 {
            return Err(Error::Unsupported);
        }
        // SAFETY: no caller buffer; the header and status are the driver's own.
        unsafe { self.submit_raw(T_FLUSH, 0, None) }
    }

    /// Starts `request` at `sector` with its data in `data`, segments given by device
    /// address and length, in order, and returns at once. The header and the status
    /// byte are the driver's own: the device never sees a copy the caller can change.
    ///
    /// # Safety
    ///
    /// Each segment must be memory the device may read (or, for a request whose
    /// device writes its data, write) until [`complete`](Self::complete) has returned
    /// anything but [`Error::NotReady`] for the token, or the device has been reset.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] for a request that changes a read-only disk;
    /// [`Error::Unsupported`] when its feature was not negotiated;
    /// [`Error::InvalidParam`] for data a flush must not have or another request
    /// must, a read or write whose length is not a non-zero multiple of 512, more
    /// segments than `seg_max`, a segment longer than `size_max` or empty;
    /// [`Error::QueueFull`], [`Error::Broken`].
    pub unsafe fn submit_segments(
        &mut self,
        request: Request,
        sector: u64,
        data: &[(PhysAddr, u32)],
    ) -> Result<Token> {
        if request.changes_disk() && self.read_only() {
            return Err(Error::ReadOnly);
        }
        if request.feature().is_some_and(|feature| self.features & feature == 0) {
            return Err(Error::Unsupported);
        }
        if (request == Request::Flush) != data.is_empty() {
            return Err(Error::InvalidParam);
        }
        if matches!(request, Request::Read | Request::Write) {
            let total: u64 = data.iter().map(|&(_, len)| u64::from(len)).sum();
            check_len(usize::try_from(total).map_err(|_| Error::InvalidParam)?)?;
        }
        let too_many = self.max_segments.is_some_and(|max| data.len() > max as usize);
        let too_long = |len: u32| len == 0 || self.max_segment_size.is_some_and(|max| len > max);
        if too_many || data.iter().any(|&(_, len)| too_long(len)) {
            return Err(Error::InvalidParam);
        }
        let device_writable = request.device_writes_data();
        let segment = |i: usize| Segment { addr: data[i].0, len: data[i].1, device_writable };
        // SAFETY: the caller keeps the segments valid, as this fn requires.
        unsafe { self.submit_chain(request.code(), sector, data.len(), segment) }
    }

    /// Takes one completion from the device, if there is one, and returns its token;
    /// its result waits for [`complete`](Self::complete). For interrupt handlers.
    ///
    /// # Errors
    ///
    /// [`Error::BadUsedId`] / [`Error::BadUsedIndex`] when the device breaks the
    /// protocol: the device is then reset, every request in flight is over (its
    /// result is lost) and the driver reports [`Error::Broken`] from then on.
    pub fn poll(&mut self) -> Result<Option<Token>> {
        if self.broken {
            return Err(Error::Broken);
        }
        match self.queue.get_buf() {
            Ok(Some(used)) => {
                self.slots[usize::from(used.token)] = Slot::Done;
                Ok(Some(Token(used.token)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.break_device();
                Err(e)
            }
        }
    }

    /// Whether the request `token` is complete (its result waits for `complete`).
    pub fn is_done(&self, token: Token) -> bool {
        self.slots.get(usize::from(token.0)) == Some(&Slot::Done)
    }

    /// The result of request `token`, if it is complete; the token is then spent.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] while it is in flight (the token stays valid);
    /// [`Error::IoError`] / [`Error::Unsupported`] as the device reports;
    /// [`Error::InvalidToken`] for a token not in flight; the errors of
    /// [`poll`](Self::poll).
    pub fn complete(&mut self, token: Token) -> Result {
        if self.broken {
            return Err(Error::Broken);
        }
        let index = usize::from(token.0);
        match self.slots.get(index) {
            None | Some(Slot::Free) => return Err(Error::InvalidToken),
            Some(_) => {}
        }
        while self.slots[index] == Slot::InFlight {
            if self.poll()?.is_none() {
                return Err(Error::NotReady);
            }
        }
        self.slots[index] = Slot::Free;
        match self.requests.read_u8(index * SLOT_BYTES + STATUS_OFFSET) {
            S_OK => Ok(()),
            S_UNSUPP => Err(Error::Unsupported),
            _ => Err(Error::IoError),
        }
    }

    /// Waits (spinning) for request `token` and returns its result.
    ///
    /// # Errors
    ///
    /// As for [`complete`](Self::complete), except [`Error::NotReady`]; and
    /// [`Error::DeviceNeedsReset`] when the device sets DEVICE_NEEDS_RESET (it is
    /// then reset, as for a protocol error).
    pub fn wait(&mut self, token: Token) -> Result {
        let mut polls = 0u32;
        loop {
            match self.complete(token) {
                Err(Error::NotReady) => {}
                result => return result,
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(STATUS_POLL_INTERVAL) {
                self.check_status()?;
            }
            crate::relax::relax();
        }
    }

    /// Whether the device still works: once it sets DEVICE_NEEDS_RESET (or broke
    /// the protocol before), it is reset, every request in flight is over (its
    /// result is lost), and this reports the error. For interrupt handlers: a device
    /// that gives up says so with a configuration-change interrupt.
    ///
    /// # Errors
    ///
    /// [`Error::DeviceNeedsReset`] the first time, [`Error::Broken`] after.
    pub fn check_status(&mut self) -> Result {
        if self.broken {
            return Err(Error::Broken);
        }
        if self.transport.status().contains(DeviceStatus::DEVICE_NEEDS_RESET) {
            self.break_device();
            return Err(Error::DeviceNeedsReset);
        }
        Ok(())
    }

    /// Requests in flight or completed and not yet collected by `complete`.
    pub fn outstanding(&self) -> usize {
        self.slots.iter().filter(|&&s| s != Slot::Free).count()
    }

    /// Reads and acknowledges the interrupt status (see
    /// [`crate::transport::interrupt`]); call it from the device's interrupt handler,
    /// then [`poll`](Self::poll) for completions.
    pub fn ack_interrupt(&mut self) -> u32 {
        self.transport.take_interrupt()
    }

    /// Asks for an interrupt at the next completion. Returns false when completions
    /// are already waiting: poll them instead of waiting for an interrupt.
    pub fn enable_interrupts(&mut self) -> bool {
        self.queue.enable_cb()
    }

    /// Asks the device not to interrupt on completions (a hint).
    pub fn disable_interrupts(&mut self) {
        self.queue.disable_cb();
    }

    fn check_transfer(&self, len: usize) -> Result {
        check_len(len)?;
        if len > self.max_transfer {
            return Err(Error::InvalidParam);
        }
        Ok(())
    }

    /// Submits a request whose data (if any) is the slice `data.0`, device-writable
    /// when `data.1`.
    ///
    /// # Safety
    ///
    /// As for [`submit_read`](Self::submit_read) on the data slice.
    unsafe fn submit(&mut self, kind: u32, sector: u64, data: Option<(&mut [u8], bool)>) -> Result<Token> {
        let data = data.map(|(buf, writable)| ((buf.as_mut_ptr() as usize, buf.len()), writable));
        // SAFETY: forwarded from the caller.
        unsafe { self.submit_raw(kind, sector, data) }
    }

    /// Submits a request with data at `((address, length), device_writable)`.
    ///
    /// # Safety
    ///
    /// The data must stay valid, untouched by the CPU (unwritten if only readable by
    /// the device), until the request completes or the device is reset.
    unsafe fn submit_raw(
        &mut self,
        kind: u32,
        sector: u64,
        data: Option<((usize, usize), bool)>,
    ) -> Result<Token> {
        let data = data.map(|((addr, len), device_writable)| Segment {
            addr: self.queue.hal().virt_to_phys(addr),
            // Too long for a descriptor: 0, which the queue refuses.
            len: u32::try_from(len).unwrap_or(0),
            device_writable,
        });
        let data = data.as_slice();
        // SAFETY: forwarded from the caller.
        unsafe { self.submit_chain(kind, sector, data.len(), |i| data[i]) }
    }

    /// Submits a request of `kind` at `sector` whose `count` data segments are
    /// `data(0)`, `data(1)`, ...: the chain is the request slot's header, the data,
    /// the slot's status byte.
    ///
    /// # Safety
    ///
    /// As for [`submit_segments`](Self::submit_segments) on the data segments.
    unsafe fn submit_chain(
        &mut self,
        kind: u32,
        sector: u64,
        count: usize,
        data: impl Fn(usize) -> Segment,
    ) -> Result<Token> {
        if self.broken {
            return Err(Error::Broken);
        }
        let size = usize::from(self.queue.size());
        let index = self.slots[..size].iter().position(|&s| s == Slot::Free).ok_or(Error::QueueFull)?;
        let at = index * SLOT_BYTES;
        self.requests.write_u32(at, kind);
        self.requests.write_u32(at + 4, 0);
        self.requests.write_u64(at + 8, sector);
        self.requests.write_u8(at + STATUS_OFFSET, STATUS_UNSET);

        let header =
            Segment { addr: self.requests.paddr(at), len: HEADER_SIZE as u32, device_writable: false };
        let status = Segment { addr: self.requests.paddr(at + STATUS_OFFSET), len: 1, device_writable: true };
        let last = count + 1;
        let segment = |i: usize| match i {
            0 => header,
            i if i == last => status,
            i => data(i - 1),
        };
        // SAFETY: the header and status live in `requests` until the driver is
        // dropped (after a reset); the data is the caller's promise.
        unsafe { self.queue.add_chain(count + 2, segment, index as u16) }?;
        self.slots[index] = Slot::InFlight;
        self.queue.kick(&mut self.transport);
        Ok(Token(index as u16))
    }

    /// After a fatal error: resets the device so it lets go of every buffer, and
    /// refuses all further requests.
    fn break_device(&mut self) {
        self.broken = true;
        init::abandon(&mut self.transport);
        self.slots = [Slot::Free; QUEUE_SIZE];
    }
}

impl<H: Hal, T: Transport> Drop for VirtioBlk<H, T> {
    fn drop(&mut self) {
        // Stop the device before its rings and request slots are freed.
        let _ = self.transport.reset();
        // SAFETY: the device is reset, so no longer uses the slots; they came from
        // the queue's HAL and are not used again.
        unsafe { self.requests.free(self.queue.hal()) };
    }
}

/// Checks a data length: a non-zero multiple of the sector size.
fn check_len(len: usize) -> Result {
    if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(Error::InvalidParam);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
