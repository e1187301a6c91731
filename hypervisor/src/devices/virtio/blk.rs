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

pub mod host;
mod range_tables;
pub mod wire;

use super::chain::{Chain, Cursor};
use super::queue::{Queue, QueueError};
use super::{device_id, read_config_image, Budget, Progress, VirtioBackend};
use crate::mm::guest_memory::GuestMemory;
use alloc::boxed::Box;
use wire::{
    answer_get_id, parse, read_zero_ranges, request, serial_id, Parsed, MAX_ZERO_SECTORS, MAX_ZERO_SEGMENTS,
};
pub use wire::{feature, status, Config, ID_BYTES, SECTOR_SIZE, SEG_MAX, SIZE_MAX};

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
        Self { disk, capacity: end / SECTOR_SIZE, read_only, serial: serial_id(serial), chain: None }
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// What the driver is told.
    fn config(&self) -> Config {
        Config {
            capacity: self.capacity,
            size_max: SIZE_MAX,
            seg_max: SEG_MAX,
            blk_size: SECTOR_SIZE as u32,
            zeroing: Some((MAX_ZERO_SECTORS, MAX_ZERO_SEGMENTS)),
        }
    }

    /// The disk byte offset of `bytes` bytes at `sector`, if all inside the disk.
    fn range(&self, sector: u64, bytes: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(bytes)?;
        (end <= self.capacity * SECTOR_SIZE).then_some(offset)
    }

    /// Runs one request; returns `used.len`.
    fn execute(&mut self, chain: &Chain, mem: &GuestMemory) -> Result<u32, QueueError> {
        let mut reader = chain.reader();
        let (header, status_at, data_in) = match parse(chain, &mut reader, mem)? {
            Parsed::Request { header, status_at, data_in } => (header, status_at, data_in),
            Parsed::NoStatus => return Ok(0),
            Parsed::ShortHeader { status_at } => {
                mem.write(status_at, &[status::IOERR])?;
                return Ok(1);
            }
        };
        let data_out = reader.remaining();
        let mut writer = chain.writer();
        let (status, written) = match header.kind {
            request::IN => self.read(mem, header.sector, &mut writer, data_in)?,
            request::OUT => (self.write(mem, header.sector, &mut reader, data_out)?, 0),
            request::FLUSH => (status::OK, 0),
            request::GET_ID => (status::OK, answer_get_id(&self.serial, mem, &mut writer, data_in)?),
            request::DISCARD => (self.zero(mem, &mut reader, data_out, false)?, 0),
            request::WRITE_ZEROES => (self.zero(mem, &mut reader, data_out, true)?, 0),
            _ => (status::UNSUPP, 0),
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
        let segments = match read_zero_ranges(reader, mem, len, write_zeroes)? {
            Ok(segments) => segments,
            Err(status) => return Ok(status),
        };
        let count = segments.count;
        let mut ranges = [(0u64, 0u64); MAX_ZERO_SEGMENTS as usize];
        for (range, (sector, sectors, _)) in ranges.iter_mut().zip(segments.iter()) {
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
        read_config_image(&self.config().image(), offset, data);
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
