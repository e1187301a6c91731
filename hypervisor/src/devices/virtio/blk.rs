//! virtio-blk (virtio 1.2 §5.2) over a disk held in memory.
//!
//! The disk is a [`GuestMemory`] whose "guest-physical" addresses are byte offsets
//! into the disk: the hypervisor backs it with host RAM chunks, tests with a buffer.
//! Its capacity is the run of memory from offset 0, in whole 512-byte sectors. The
//! disk is not device state: a reset (or the VM's `SYSTEM_RESET`) leaves it as it is.
//!
//! One request queue; requests run synchronously when the driver notifies it. Each
//! request is a 16-byte header (type, reserved, sector) at the start of the readable
//! bytes, data, and a status byte as the last writable byte (§5.2.6); buffer
//! boundaries don't matter. Choices:
//!
//! - IN, OUT: the data must be whole sectors inside the disk, else IOERR; OUT, DISCARD
//!   and WRITE_ZEROES on a read-only disk get IOERR.
//! - FLUSH succeeds at once (a RAM disk has no cache); GET_ID writes the serial (up to
//!   20 bytes, NUL-padded, as much as the buffer takes).
//! - DISCARD zeroes the sectors (a RAM disk has nothing to unmap; zeroes are the
//!   deterministic answer); WRITE_ZEROES zeroes them. More segments than
//!   `max_*_seg` or a flag the type doesn't allow is UNSUPP; a segment of more than
//!   `max_*_sectors` or outside the disk is IOERR, and nothing is changed then.
//! - Unknown types get UNSUPP.
//! - A header shorter than 16 bytes gets IOERR. A chain with no writable byte has
//!   nowhere for the status: it is completed with `used.len` 0 and a warning.
//! - `used.len` is the number of bytes written into the guest's buffers: the data read
//!   (IN, GET_ID) plus the status byte.

use crate::guest_log;
use crate::guest_log::Kind;

use super::chain::{Chain, Cursor};
use super::queue::{Queue, QueueError};
use super::{device_id, read_config_image, Budget, Progress, VirtioBackend, MAX_QUEUE_SIZE};
use crate::mm::guest_memory::GuestMemory;
use alloc::boxed::Box;

/// Feature bits (§5.2.3).
pub mod feature {
    /// `size_max` is valid.
    pub const SIZE_MAX: u64 = 1 << 1;
    /// `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// The disk is read-only.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// FLUSH requests.
    pub const FLUSH: u64 = 1 << 9;
    /// DISCARD requests, limits in the configuration.
    pub const DISCARD: u64 = 1 << 13;
    /// WRITE_ZEROES requests, limits in the configuration.
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types (§5.2.6).
mod request {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Request status values (§5.2.6).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request not supported.
    pub const UNSUPP: u8 = 2;
}

/// Bytes per sector, the unit of `capacity` and of request offsets (the bundle's
/// disk sizes are multiples of it too).
pub use platform::bundle::SECTOR_SIZE;
/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;
/// `size_max`: the largest single buffer a driver should use (1 MiB).
pub const SIZE_MAX: u32 = 1 << 20;
/// `seg_max`: data buffers per request, the queue size less header and status.
pub const SEG_MAX: u32 = MAX_QUEUE_SIZE as u32 - 2;
/// `max_discard_sectors` and `max_write_zeroes_sectors`: 2 GiB per segment.
pub const MAX_ZERO_SECTORS: u32 = 1 << 22;
/// `max_discard_seg` and `max_write_zeroes_seg`.
pub const MAX_ZERO_SEGMENTS: u32 = 16;
/// `discard_sector_alignment`, in sectors.
pub const DISCARD_ALIGNMENT: u32 = 1;

/// Header bytes of every request.
const HEADER: u64 = 16;
/// Bytes of one DISCARD / WRITE_ZEROES segment.
const SEGMENT: u64 = 16;
/// WRITE_ZEROES segment flag: the device may unmap.
const FLAG_UNMAP: u32 = 1;

/// Offsets in `struct virtio_blk_config` (§5.2.4).
mod config {
    pub const CAPACITY: usize = 0;
    pub const SIZE_MAX: usize = 8;
    pub const SEG_MAX: usize = 12;
    pub const BLK_SIZE: usize = 20;
    pub const NUM_QUEUES: usize = 34;
    pub const MAX_DISCARD_SECTORS: usize = 36;
    pub const MAX_DISCARD_SEG: usize = 40;
    pub const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    pub const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    pub const MAX_WRITE_ZEROES_SEG: usize = 52;
    /// Through `write_zeroes_may_unmap` and its padding.
    pub const LEN: usize = 60;
}

/// A virtio block device over a disk in memory.
pub struct Blk {
    disk: GuestMemory,
    capacity: u64,
    read_only: bool,
    serial: [u8; ID_BYTES],
    /// Where requests are read (see [`Chain::new`]); out while a queue is served.
    chain: Option<Box<Chain>>,
}

impl Blk {
    /// A block device over `disk` (addresses are byte offsets into the disk), read-only
    /// if asked, answering GET_ID with `serial` (its first 20 bytes).
    pub fn new(disk: GuestMemory, read_only: bool, serial: &[u8]) -> Self {
        let mut end = 0;
        for c in disk.chunks() {
            if c.ipa != end {
                break;
            }
            end += c.size;
        }
        let mut id = [0; ID_BYTES];
        let n = serial.len().min(ID_BYTES);
        id[..n].copy_from_slice(&serial[..n]);
        Self { disk, capacity: end / SECTOR_SIZE, read_only, serial: id, chain: None }
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The configuration space image.
    fn config(&self) -> [u8; config::LEN] {
        let mut c = [0; config::LEN];
        let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
        put(config::CAPACITY, &self.capacity.to_le_bytes());
        put(config::SIZE_MAX, &SIZE_MAX.to_le_bytes());
        put(config::SEG_MAX, &SEG_MAX.to_le_bytes());
        put(config::BLK_SIZE, &(SECTOR_SIZE as u32).to_le_bytes());
        put(config::NUM_QUEUES, &1u16.to_le_bytes());
        put(config::MAX_DISCARD_SECTORS, &MAX_ZERO_SECTORS.to_le_bytes());
        put(config::MAX_DISCARD_SEG, &MAX_ZERO_SEGMENTS.to_le_bytes());
        put(config::DISCARD_SECTOR_ALIGNMENT, &DISCARD_ALIGNMENT.to_le_bytes());
        put(config::MAX_WRITE_ZEROES_SECTORS, &MAX_ZERO_SECTORS.to_le_bytes());
        put(config::MAX_WRITE_ZEROES_SEG, &MAX_ZERO_SEGMENTS.to_le_bytes());
        c
    }

    /// The disk byte offset of `bytes` bytes at `sector`, if all inside the disk.
    fn range(&self, sector: u64, bytes: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(bytes)?;
        (end <= self.capacity * SECTOR_SIZE).then_some(offset)
    }

    /// Runs one request; returns `used.len`.
    fn execute(&mut self, chain: &Chain, mem: &GuestMemory) -> Result<u32, QueueError> {
        let Some(status_at) =
            chain.writable().iter().rev().find(|b| b.len > 0).map(|b| b.addr + u64::from(b.len) - 1)
        else {
            guest_log!(
                Kind::Virtio,
                Warn,
                "virtio-blk: request {} has no status byte; completed with nothing written",
                chain.head()
            );
            return Ok(0);
        };
        // The data the device may write: everything writable but the status byte.
        let data_in = chain.writable_len() - 1;
        let mut reader = chain.reader();
        let mut header = [0u8; HEADER as usize];
        let (status, written) = if reader.read(mem, &mut header)? < header.len() {
            guest_log!(
                Kind::Virtio,
                Warn,
                "virtio-blk: request {} has a header shorter than {HEADER} bytes",
                chain.head()
            );
            (status::IOERR, 0)
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let mut sector = [0; 8];
            sector.copy_from_slice(&header[8..16]);
            let sector = u64::from_le_bytes(sector);
            let data_out = reader.remaining();
            let mut writer = chain.writer();
            match kind {
                request::IN => self.read(mem, sector, &mut writer, data_in)?,
                request::OUT => (self.write(mem, sector, &mut reader, data_out)?, 0),
                request::FLUSH => (status::OK, 0),
                request::GET_ID => {
                    let n = (data_in as usize).min(ID_BYTES);
                    writer.write(mem, &self.serial[..n])?;
                    (status::OK, n as u64)
                }
                request::DISCARD => (self.zero(mem, &mut reader, data_out, false)?, 0),
                request::WRITE_ZEROES => (self.zero(mem, &mut reader, data_out, true)?, 0),
                _ => (status::UNSUPP, 0),
            }
        };
        mem.write(status_at, &[status])?;
        Ok(u32::try_from(written + 1).unwrap_or(u32::MAX))
    }

    /// IN: disk to guest; returns the status and the bytes written.
    fn read(
        &self,
        mem: &GuestMemory,
        sector: u64,
        writer: &mut Cursor<'_>,
        len: u64,
    ) -> Result<(u8, u64), QueueError> {
        let Some(offset) = self.range(sector, len).filter(|_| len.is_multiple_of(SECTOR_SIZE)) else {
            return Ok((status::IOERR, 0));
        };
        // Straight from the disk into the guest's buffers (`range` checked the disk
        // side, the queue the guest's).
        let done = writer.write_from(mem, &self.disk, offset, len)?;
        Ok((status::OK, done))
    }

    /// OUT: guest to disk.
    fn write(
        &mut self,
        mem: &GuestMemory,
        sector: u64,
        reader: &mut Cursor<'_>,
        len: u64,
    ) -> Result<u8, QueueError> {
        if self.read_only {
            return Ok(status::IOERR);
        }
        let Some(offset) = self.range(sector, len).filter(|_| len.is_multiple_of(SECTOR_SIZE)) else {
            return Ok(status::IOERR);
        };
        // Straight from the guest's buffers to the disk.
        reader.read_into(mem, &self.disk, offset, len)?;
        Ok(status::OK)
    }

    /// DISCARD (`write_zeroes` false) or WRITE_ZEROES: checks every segment, then
    /// zeroes them all.
    fn zero(
        &mut self,
        mem: &GuestMemory,
        reader: &mut Cursor<'_>,
        len: u64,
        write_zeroes: bool,
    ) -> Result<u8, QueueError> {
        if len == 0 || !len.is_multiple_of(SEGMENT) {
            return Ok(status::IOERR);
        }
        if len / SEGMENT > u64::from(MAX_ZERO_SEGMENTS) {
            return Ok(status::UNSUPP);
        }
        let allowed_flags = if write_zeroes { FLAG_UNMAP } else { 0 };
        // The segments are copied into Sluice's memory once, then checked, then
        // acted on: the guest (another of its vCPUs) can't change one between its
        // check and its use.
        let count = (len / SEGMENT) as usize;
        let mut segments = [(0u64, 0u32); MAX_ZERO_SEGMENTS as usize];
        for segment in &mut segments[..count] {
            let mut raw = [0u8; SEGMENT as usize];
            reader.read(mem, &mut raw)?;
            let mut sector = [0; 8];
            sector.copy_from_slice(&raw[..8]);
            let sectors = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let flags = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]);
            if flags & !allowed_flags != 0 {
                return Ok(status::UNSUPP);
            }
            *segment = (u64::from_le_bytes(sector), sectors);
        }
        let mut ranges = [(0u64, 0u64); MAX_ZERO_SEGMENTS as usize];
        for (range, &(sector, sectors)) in ranges.iter_mut().zip(&segments[..count]) {
            let bytes = u64::from(sectors) * SECTOR_SIZE;
            match self.range(sector, bytes) {
                Some(offset) if !self.read_only && sectors <= MAX_ZERO_SECTORS => *range = (offset, bytes),
                _ => return Ok(status::IOERR),
            }
        }
        for &(offset, bytes) in &ranges[..count] {
            if self.disk.zero(offset, bytes).is_err() {
                return Ok(status::IOERR);
            }
        }
        Ok(status::OK)
    }
}

impl VirtioBackend for Blk {
    fn name(&self) -> &str {
        "virtio-blk"
    }

    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { feature::RO } else { 0 };
        feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | feature::DISCARD
            | feature::WRITE_ZEROES
            | ro
    }

    fn queue_count(&self) -> usize {
        1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_image(&self.config(), offset, data);
    }

    /// Nothing in the configuration is writable (`writeback` needs CONFIG_WCE).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {}

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<Progress, QueueError> {
        let Some(q) = queues.get_mut(index) else { return Ok(Progress::Done) };
        // The chain each request is read into: made once, reused (it is 4 KiB).
        let mut chain = self.chain.take().unwrap_or_else(|| Box::new(Chain::new(0)));
        let progress = self.serve(q, &mut chain, mem);
        self.chain = Some(chain);
        progress
    }
}

impl Blk {
    /// Executes the requests on `q`, each read into `chain`, within one budget.
    fn serve(&mut self, q: &mut Queue, chain: &mut Chain, mem: &GuestMemory) -> Result<Progress, QueueError> {
        let mut budget = Budget::per_call();
        loop {
            if !budget.take_chain() {
                return Ok(Progress::More);
            }
            if !q.pop_into(mem, chain)? {
                return Ok(Progress::Done);
            }
            let len = self.execute(chain, mem)?;
            q.push_used(mem, chain.head(), len)?;
            // A request is done whole: what it moved counts after the fact.
            budget.spend_bytes(chain.readable_len().saturating_add(chain.writable_len()));
        }
    }
}

#[cfg(test)]
mod tests;
