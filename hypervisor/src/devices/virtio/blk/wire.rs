//! The virtio-blk wire format (virtio 1.2 §5.2) both block devices speak: feature
//! bits, request types and status values, the configuration layout, and reading a
//! request's header and finding its status byte.

use super::super::chain::{Chain, Cursor};
use super::super::queue::QueueError;
use super::super::MAX_QUEUE_SIZE;
use crate::guest_log;
use crate::guest_log::Kind;
use crate::mm::guest_memory::GuestMemory;

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
pub mod request {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// The device ID string.
    pub const GET_ID: u32 = 8;
    /// Discard sectors.
    pub const DISCARD: u32 = 11;
    /// Write zeroes.
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
pub const HEADER: u64 = 16;
/// Bytes of one DISCARD / WRITE_ZEROES segment.
pub const SEGMENT: u64 = 16;
/// WRITE_ZEROES segment flag: the device may unmap.
pub const FLAG_UNMAP: u32 = 1;

/// Offsets in `struct virtio_blk_config` (§5.2.4).
pub mod config {
    /// `capacity`.
    pub const CAPACITY: usize = 0;
    /// `size_max`.
    pub const SIZE_MAX: usize = 8;
    /// `seg_max`.
    pub const SEG_MAX: usize = 12;
    /// `blk_size`.
    pub const BLK_SIZE: usize = 20;
    /// `num_queues`.
    pub const NUM_QUEUES: usize = 34;
    /// `max_discard_sectors`.
    pub const MAX_DISCARD_SECTORS: usize = 36;
    /// `max_discard_seg`.
    pub const MAX_DISCARD_SEG: usize = 40;
    /// `discard_sector_alignment`.
    pub const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    /// `max_write_zeroes_sectors`.
    pub const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    /// `max_write_zeroes_seg`.
    pub const MAX_WRITE_ZEROES_SEG: usize = 52;
    /// Through `write_zeroes_may_unmap` and its padding.
    pub const LEN: usize = 60;
}

/// What a device tells its driver in the configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// The largest data segment (`size_max`).
    pub size_max: u32,
    /// The most data segments per request (`seg_max`).
    pub seg_max: u32,
    /// The optimal block size (`blk_size`).
    pub blk_size: u32,
    /// Discard and write-zeroes limits: (`max_*_sectors`, `max_*_seg`), if offered.
    pub zeroing: Option<(u32, u32)>,
}

impl Config {
    /// The configuration space image.
    pub fn image(&self) -> [u8; config::LEN] {
        let mut c = [0; config::LEN];
        let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
        put(config::CAPACITY, &self.capacity.to_le_bytes());
        put(config::SIZE_MAX, &self.size_max.to_le_bytes());
        put(config::SEG_MAX, &self.seg_max.to_le_bytes());
        put(config::BLK_SIZE, &self.blk_size.to_le_bytes());
        put(config::NUM_QUEUES, &1u16.to_le_bytes());
        if let Some((sectors, segments)) = self.zeroing {
            put(config::MAX_DISCARD_SECTORS, &sectors.to_le_bytes());
            put(config::MAX_DISCARD_SEG, &segments.to_le_bytes());
            put(config::DISCARD_SECTOR_ALIGNMENT, &DISCARD_ALIGNMENT.to_le_bytes());
            put(config::MAX_WRITE_ZEROES_SECTORS, &sectors.to_le_bytes());
            put(config::MAX_WRITE_ZEROES_SEG, &segments.to_le_bytes());
        }
        c
    }
}

/// A request's header, copied into Sluice's memory once: what is checked is what
/// is used, whatever the guest writes to its own copy afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The request type ([`request`]).
    pub kind: u32,
    /// The first sector.
    pub sector: u64,
}

/// A request read off a chain, or why it can't be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A request: its header, where its status byte goes, and how many data bytes
    /// the device may write (every writable byte but the status).
    Request {
        /// The header.
        header: Header,
        /// Guest-physical address of the status byte: the last writable byte.
        status_at: u64,
        /// Writable data bytes before the status byte.
        data_in: u64,
    },
    /// No writable byte: nowhere for a status; completed with nothing written.
    NoStatus,
    /// A header shorter than [`HEADER`] bytes: IOERR at `status_at`.
    ShortHeader {
        /// Where the status byte goes.
        status_at: u64,
    },
}

/// Reads the request in `chain`: its header through `reader` (which is left at
/// the first byte after it) and where its status byte is (§5.2.6; buffer
/// boundaries don't matter).
///
/// # Errors
///
/// A [`QueueError`] when the chain's buffers are not the guest's RAM.
pub fn parse(chain: &Chain, reader: &mut Cursor<'_>, mem: &GuestMemory) -> Result<Parsed, QueueError> {
    let Some(status_at) =
        chain.writable().iter().rev().find(|b| b.len > 0).map(|b| b.addr + u64::from(b.len) - 1)
    else {
        guest_log!(
            Kind::Virtio,
            Warn,
            "virtio-blk: request {} has no status byte; completed with nothing written",
            chain.head()
        );
        return Ok(Parsed::NoStatus);
    };
    let mut raw = [0u8; HEADER as usize];
    if reader.read(mem, &mut raw)? < raw.len() {
        guest_log!(
            Kind::Virtio,
            Warn,
            "virtio-blk: request {} has a header shorter than {HEADER} bytes",
            chain.head()
        );
        return Ok(Parsed::ShortHeader { status_at });
    }
    let kind = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let mut sector = [0; 8];
    sector.copy_from_slice(&raw[8..16]);
    let header = Header { kind, sector: u64::from_le_bytes(sector) };
    Ok(Parsed::Request { header, status_at, data_in: chain.writable_len() - 1 })
}

/// GET_ID's answer for `serial`: its first [`ID_BYTES`] bytes, NUL-padded.
pub fn serial_id(serial: &[u8]) -> [u8; ID_BYTES] {
    let mut id = [0; ID_BYTES];
    let n = serial.len().min(ID_BYTES);
    id[..n].copy_from_slice(&serial[..n]);
    id
}

/// GET_ID: writes `serial` (as much as the `data_in` writable bytes take) through
/// `writer`; returns the bytes written.
///
/// # Errors
///
/// A [`QueueError`] when the buffers are not the guest's RAM.
pub fn answer_get_id(
    serial: &[u8; ID_BYTES],
    mem: &GuestMemory,
    writer: &mut Cursor<'_>,
    data_in: u64,
) -> Result<u64, QueueError> {
    let n = (data_in as usize).min(ID_BYTES);
    writer.write(mem, &serial[..n])?;
    Ok(n as u64)
}

/// The ranges of a DISCARD or WRITE_ZEROES request, copied into Sluice's memory
/// once: what is checked is what is used, whatever the guest writes to its copy
/// afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroRanges {
    /// How many of `ranges` there are.
    pub count: usize,
    /// `(sector, sectors, flags)` of each.
    pub ranges: [(u64, u32, u32); MAX_ZERO_SEGMENTS as usize],
}

impl ZeroRanges {
    /// The ranges, in the request's order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.ranges[..self.count].iter().copied()
    }
}

/// Reads the `len` bytes of ranges under `reader` (16 bytes each: sector, sectors,
/// flags) for a DISCARD (`write_zeroes` false) or WRITE_ZEROES request.
///
/// # Errors
///
/// `Ok(Err(status))` for a request to refuse: IOERR for a length that is not whole
/// ranges, UNSUPP for more than [`MAX_ZERO_SEGMENTS`] or a flag the type does not
/// allow; a [`QueueError`] when the buffers are not the guest's RAM.
pub fn read_zero_ranges(
    reader: &mut Cursor<'_>,
    mem: &GuestMemory,
    len: u64,
    write_zeroes: bool,
) -> Result<Result<ZeroRanges, u8>, QueueError> {
    if len == 0 || !len.is_multiple_of(SEGMENT) {
        return Ok(Err(status::IOERR));
    }
    if len / SEGMENT > u64::from(MAX_ZERO_SEGMENTS) {
        return Ok(Err(status::UNSUPP));
    }
    let allowed_flags = if write_zeroes { FLAG_UNMAP } else { 0 };
    let mut read =
        ZeroRanges { count: (len / SEGMENT) as usize, ranges: [(0, 0, 0); MAX_ZERO_SEGMENTS as usize] };
    for range in &mut read.ranges[..read.count] {
        let mut raw = [0u8; SEGMENT as usize];
        reader.read(mem, &mut raw)?;
        let mut sector = [0; 8];
        sector.copy_from_slice(&raw[..8]);
        let sectors = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let flags = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]);
        if flags & !allowed_flags != 0 {
            return Ok(Err(status::UNSUPP));
        }
        *range = (u64::from_le_bytes(sector), sectors, flags);
    }
    Ok(Ok(read))
}
