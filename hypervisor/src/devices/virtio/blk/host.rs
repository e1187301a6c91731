//! virtio-blk over one of the machine's own virtio-blk devices (a disk image file
//! QEMU was given), driven with `guest-drivers`: the guest's requests go to the host
//! device with the guest's own pages as their data, and complete when the host
//! device says so.
//!
//! - **Zero copy.** Each data buffer's guest-physical range is translated through
//!   the VM's memory map into host-physical pieces (split where its RAM chunks
//!   split), given to the host device as descriptors; the device moves the bytes
//!   straight to or from the guest's pages. A buffer that is not the VM's RAM fails
//!   its request with IOERR.
//! - **What the guest can change after the check, and why none of it matters.**
//!   The header (type, sector) is copied into Sluice's memory once and checked
//!   there; the host device reads the driver's own copy of it, never the guest's.
//!   The status byte the host writes is the driver's too; Sluice copies the result
//!   into the guest's status byte after the host is done. The guest's descriptors
//!   are read once, when the chain is popped; rewriting them afterwards changes
//!   nothing that was submitted. What the guest can still change is its data while
//!   the host moves it, exactly as with a real disk: that only tears its own data.
//!   And each guest disk is a host device of its own, whose size the host checks
//!   every sector against: no request reaches another VM's disk.
//! - **Asynchronous.** A notify only submits; completions are collected when the
//!   host device interrupts (`VirtioBackend::poll`, from the host interrupt's
//!   handler) and on the next notify, then put on the used ring. Requests are in
//!   flight together up to the host queue's room; when it is full, the next request
//!   waits, popped, and goes first when room frees: none is dropped or reordered
//!   past another.
//! - **Reset.** A reset (the driver's, or the VM's) waits for every request in
//!   flight to complete on the host before the queue can be set up again, and
//!   writes nothing into the guest's memory for them: nothing lands in guest memory
//!   after the reset returns.
//! - FLUSH goes to the host as a flush, and completes when the host's does (a host
//!   without FLUSH writes through: OK at once). GET_ID is answered from the
//!   configured serial. DISCARD and WRITE_ZEROES are offered when the host device
//!   offers them: their ranges are copied into Sluice's memory, checked against the
//!   disk and the limits, and the host reads that copy (`range_tables`). Other
//!   types get UNSUPP.

use alloc::boxed::Box;
use alloc::vec::Vec;

use guest_drivers::blk::spec::{
    CONFIG_MAX_DISCARD_SECTORS, CONFIG_MAX_DISCARD_SEG, CONFIG_MAX_WRITE_ZEROES_SECTORS,
    CONFIG_MAX_WRITE_ZEROES_SEG, F_DISCARD, F_FLUSH, F_WRITE_ZEROES,
};
use guest_drivers::blk::{Request, Token, VirtioBlk};
use guest_drivers::hal::Hal;
use guest_drivers::transport::Transport;
use guest_drivers::Error as HostError;

use super::super::chain::{Chain, Cursor};
use super::super::queue::{Queue, QueueError};
use super::super::{device_id, read_config_image, Budget, Progress, VirtioBackend};
use super::range_tables::RangeTables;
use super::wire::{
    self, answer_get_id, feature, parse, read_zero_ranges, request, serial_id, status, Config, Parsed,
    ZeroRanges, ID_BYTES, SECTOR_SIZE,
};
use crate::guest_log;
use crate::guest_log::Kind;
use crate::mm::guest_memory::GuestMemory;

/// The most data segments a guest request may have: half the host's, since a
/// guest segment of at most [`wire::SIZE_MAX`] bytes lies in at most two of the
/// VM's RAM chunks (2 MiB-aligned blocks).
fn guest_seg_max(host_seg_max: Option<u32>) -> u32 {
    (host_seg_max.unwrap_or(wire::SEG_MAX) / 2).clamp(1, wire::SEG_MAX)
}

/// The discard and write-zeroes limits to tell the guest, `(max sectors per range,
/// max ranges)`: the host's, within Sluice's; `None` if the host offers neither.
fn zeroing_limits<H: Hal, T: Transport>(disk: &VirtioBlk<H, T>) -> Option<(u32, u32)> {
    let host = disk.transport();
    let mut limits = (wire::MAX_ZERO_SECTORS, wire::MAX_ZERO_SEGMENTS);
    let limit_of = [
        (F_DISCARD, CONFIG_MAX_DISCARD_SECTORS, CONFIG_MAX_DISCARD_SEG),
        (F_WRITE_ZEROES, CONFIG_MAX_WRITE_ZEROES_SECTORS, CONFIG_MAX_WRITE_ZEROES_SEG),
    ];
    let mut offered = false;
    for (_, sectors, ranges) in limit_of.into_iter().filter(|&(feature, _, _)| disk.features() & feature != 0)
    {
        offered = true;
        limits.0 = limits.0.min(host.read_config_u32(sectors).max(1));
        limits.1 = limits.1.min(host.read_config_u32(ranges).max(1));
    }
    offered.then_some(limits)
}

/// A guest request on the host device.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// The host driver's name for it.
    token: Token,
    /// The guest chain's head.
    head: u16,
    /// Guest-physical address of its status byte.
    status_at: u64,
    /// Data bytes the host writes into the guest's buffers when it succeeds.
    data_in: u32,
    /// The range table it names (DISCARD, WRITE_ZEROES), given back when it is over.
    table: Option<usize>,
}

/// How starting a request went.
enum Start {
    /// On the host device; it completes later.
    Submitted(InFlight),
    /// Done already: `status` (if there is a status byte) and `used.len`.
    Finished { status: Option<(u64, u8)>, used: u32 },
    /// The host queue is full: the request waits.
    NoRoom,
}

/// A virtio block device over a host virtio-blk device.
pub struct HostBlk<H: Hal, T: Transport> {
    // Declared before `tables`, so dropped (and the device reset) before them.
    disk: VirtioBlk<H, T>,
    /// Copies of the DISCARD and WRITE_ZEROES ranges, if the host offers either.
    tables: Option<RangeTables<H>>,
    config: Config,
    read_only: bool,
    serial: [u8; ID_BYTES],
    /// Guest requests on the host device, by the host token's index.
    in_flight: Vec<Option<InFlight>>,
    /// Where requests are read; reused.
    chain: Box<Chain>,
    /// `chain` holds a popped request that found the host queue full.
    stalled: bool,
    /// The host pieces of the request being started; reused.
    segments: Vec<(u64, u32)>,
}

impl<H: Hal, T: Transport> HostBlk<H, T> {
    /// A block device over the host device `disk`, read-only if asked (or if the
    /// host device is), answering GET_ID with `serial` (its first 20 bytes); `hal`
    /// gives the memory for copies of DISCARD and WRITE_ZEROES ranges.
    pub fn new(disk: VirtioBlk<H, T>, hal: H, read_only: bool, serial: &[u8]) -> Self {
        let zeroing = zeroing_limits(&disk);
        let slots = usize::from(disk.queue_size());
        let tables = zeroing.and_then(|_| RangeTables::new(hal, slots));
        let config = Config {
            capacity: disk.capacity(),
            size_max: disk.max_segment_size().map_or(wire::SIZE_MAX, |host| host.min(wire::SIZE_MAX)),
            seg_max: guest_seg_max(disk.max_segments()),
            blk_size: disk.block_size().unwrap_or(SECTOR_SIZE as u32),
            zeroing: zeroing.filter(|_| tables.is_some()),
        };
        Self {
            read_only: read_only || disk.read_only(),
            disk,
            tables,
            config,
            serial: serial_id(serial),
            in_flight: alloc::vec![None; slots],
            chain: Box::new(Chain::new(0)),
            stalled: false,
            segments: Vec::with_capacity(wire::SEG_MAX as usize),
        }
    }

    /// Requests on the host device now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().flatten().count()
    }

    /// Starts requests from `q`, within one budget; the one that found the host
    /// queue full goes first.
    fn serve(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Progress, QueueError> {
        let mut budget = Budget::per_call();
        loop {
            if !self.stalled {
                if !budget.take_chain() {
                    return Ok(Progress::More);
                }
                if !q.pop_into(mem, &mut self.chain)? {
                    return Ok(Progress::Done);
                }
            }
            match self.start(mem)? {
                Start::Submitted(request) => {
                    self.in_flight[usize::from(request.token.index())] = Some(request)
                }
                Start::Finished { status, used } => {
                    if let Some((at, value)) = status {
                        mem.write(at, &[value])?;
                    }
                    q.push_used(mem, self.chain.head(), used)?;
                }
                Start::NoRoom => {
                    // A completion frees room, and serves this request first.
                    self.stalled = true;
                    return Ok(Progress::Done);
                }
            }
            self.stalled = false;
        }
    }

    /// Reads the request in `chain` and submits it to the host, or answers it.
    #[allow(unsafe_code)]
    fn start(&mut self, mem: &GuestMemory) -> Result<Start, QueueError> {
        let chain = &self.chain;
        let mut reader = chain.reader();
        let (header, status_at, data_in) = match parse(chain, &mut reader, mem)? {
            Parsed::Request { header, status_at, data_in } => (header, status_at, data_in),
            Parsed::NoStatus => return Ok(Start::Finished { status: None, used: 0 }),
            Parsed::ShortHeader { status_at } => {
                return Ok(Start::Finished { status: Some((status_at, status::IOERR)), used: 1 })
            }
        };
        let finished = |value, written: u64| Start::Finished {
            status: Some((status_at, value)),
            used: u32::try_from(written + 1).unwrap_or(u32::MAX),
        };
        let (kind, data) = match header.kind {
            request::IN => (Request::Read, DataSide::Writable(data_in)),
            request::OUT if self.read_only => return Ok(finished(status::IOERR, 0)),
            request::OUT => (Request::Write, DataSide::Readable(reader)),
            request::FLUSH if self.disk.features() & F_FLUSH == 0 => return Ok(finished(status::OK, 0)),
            request::FLUSH => (Request::Flush, DataSide::None),
            request::GET_ID => {
                let written = answer_get_id(&self.serial, mem, &mut chain.writer(), data_in)?;
                return Ok(finished(status::OK, written));
            }
            request::DISCARD | request::WRITE_ZEROES if self.offers(header.kind) => {
                let write_zeroes = header.kind == request::WRITE_ZEROES;
                let len = reader.remaining();
                let ranges = match read_zero_ranges(&mut reader, mem, len, write_zeroes)? {
                    Ok(ranges) => ranges,
                    Err(value) => return Ok(finished(value, 0)),
                };
                let head = chain.head();
                return self.start_zeroing(&ranges, write_zeroes, head, status_at);
            }
            _ => return Ok(finished(status::UNSUPP, 0)),
        };
        let len = data.len();
        if kind != Request::Flush && !self.fits(header.sector, len) {
            return Ok(finished(status::IOERR, 0));
        }
        self.segments.clear();
        let translated = match data {
            DataSide::None => Ok(()),
            DataSide::Readable(mut cursor) => physical_segments(&mut cursor, len, mem, &mut self.segments),
            DataSide::Writable(len) => physical_segments(&mut chain.writer(), len, mem, &mut self.segments),
        };
        if translated.is_err() {
            guest_log!(
                Kind::Virtio,
                Warn,
                "virtio-blk: request {} has a buffer outside the VM's RAM; IOERR",
                chain.head()
            );
            return Ok(finished(status::IOERR, 0));
        }
        // SAFETY: every segment is the VM's RAM (checked just now), which stays
        // mapped to the VM, and so allocated, while the VM exists; the VM is not
        // torn down with requests in flight, and a reset waits for them (`drain`).
        match unsafe { self.disk.submit_segments(kind, header.sector, &self.segments) } {
            Ok(token) => {
                let data_in = if kind == Request::Read { u32::try_from(len).unwrap_or(u32::MAX) } else { 0 };
                Ok(Start::Submitted(InFlight { token, head: chain.head(), status_at, data_in, table: None }))
            }
            Err(HostError::QueueFull) => Ok(Start::NoRoom),
            Err(e) => {
                guest_log!(
                    Kind::Virtio,
                    Warn,
                    "virtio-blk: the host disk refused request {}: {e:?}",
                    chain.head()
                );
                Ok(finished(status::IOERR, 0))
            }
        }
    }

    /// Whether the guest was offered requests of type `kind` (DISCARD, WRITE_ZEROES).
    fn offers(&self, kind: u32) -> bool {
        let feature = if kind == request::DISCARD { F_DISCARD } else { F_WRITE_ZEROES };
        self.config.zeroing.is_some() && self.disk.features() & feature != 0
    }

    /// A DISCARD or WRITE_ZEROES request (chain `head`) with `ranges`, Sluice's
    /// copy of them: checked, then what the host device reads.
    #[allow(unsafe_code)]
    fn start_zeroing(
        &mut self,
        ranges: &ZeroRanges,
        write_zeroes: bool,
        head: u16,
        status_at: u64,
    ) -> Result<Start, QueueError> {
        let finished = |value| Start::Finished { status: Some((status_at, value)), used: 1 };
        let (Some((max_sectors, max_ranges)), Some(tables)) = (self.config.zeroing, self.tables.as_mut())
        else {
            return Ok(finished(status::UNSUPP));
        };
        if ranges.count > max_ranges as usize {
            return Ok(finished(status::UNSUPP));
        }
        let capacity = self.config.capacity;
        let inside = |(sector, sectors, _): (u64, u32, u32)| {
            sectors <= max_sectors
                && sector.checked_add(u64::from(sectors)).is_some_and(|end| end <= capacity)
        };
        if self.read_only || !ranges.iter().all(inside) {
            return Ok(finished(status::IOERR));
        }
        let Some((table, address, table_len)) = tables.take(ranges) else { return Ok(Start::NoRoom) };
        let request = if write_zeroes { Request::WriteZeroes } else { Request::Discard };
        // SAFETY: the table is Sluice's DMA memory, untouched until the request is
        // over (its index is given back only then), and freed only after the host
        // device is reset.
        match unsafe { self.disk.submit_segments(request, 0, &[(address, table_len)]) } {
            Ok(token) => {
                Ok(Start::Submitted(InFlight { token, head, status_at, data_in: 0, table: Some(table) }))
            }
            Err(e) => {
                tables.give_back(table);
                if e == HostError::QueueFull {
                    Ok(Start::NoRoom)
                } else {
                    Ok(finished(status::IOERR))
                }
            }
        }
    }

    /// The request is over: its range table is free again.
    fn release(&mut self, request: &InFlight) {
        if let (Some(table), Some(tables)) = (request.table, self.tables.as_mut()) {
            tables.give_back(table);
        }
    }

    /// Whether `len` bytes at `sector` are whole sectors inside the disk.
    fn fits(&self, sector: u64, len: u64) -> bool {
        let end = len.div_ceil(SECTOR_SIZE).checked_add(sector);
        len > 0 && len.is_multiple_of(SECTOR_SIZE) && end.is_some_and(|end| end <= self.config.capacity)
    }

    /// Puts every request the host has completed on the used ring.
    fn collect(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<(), QueueError> {
        loop {
            let token = match self.disk.poll() {
                Ok(Some(token)) => token,
                Ok(None) => return Ok(()),
                Err(_) if self.in_flight() == 0 => return Ok(()),
                Err(e) => {
                    guest_log!(
                        Kind::Virtio,
                        Warn,
                        "virtio-blk: the host disk failed ({e:?}); its requests get IOERR"
                    );
                    return self.fail_all(q, mem);
                }
            };
            let result = self.disk.complete(token);
            let Some(request) = self.in_flight.get_mut(usize::from(token.index())).and_then(Option::take)
            else {
                continue;
            };
            self.release(&request);
            let (value, used) = match result {
                Ok(()) => (status::OK, request.data_in.saturating_add(1)),
                Err(HostError::Unsupported) => (status::UNSUPP, 1),
                Err(_) => (status::IOERR, 1),
            };
            mem.write(request.status_at, &[value])?;
            q.push_used(mem, request.head, used)?;
        }
    }

    /// The host device broke (it was reset, so it lets go of every buffer): every
    /// request in flight ends with IOERR.
    fn fail_all(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<(), QueueError> {
        for index in 0..self.in_flight.len() {
            let Some(request) = self.in_flight[index].take() else { continue };
            self.release(&request);
            mem.write(request.status_at, &[status::IOERR])?;
            q.push_used(mem, request.head, 1)?;
        }
        Ok(())
    }

    /// Waits until the host is done with every request in flight, writing nothing
    /// into the guest's memory for them.
    fn drain(&mut self) {
        for index in 0..self.in_flight.len() {
            let Some(request) = self.in_flight[index].take() else { continue };
            // Its result is dropped: the guest reset the device and forgot it.
            let _ = self.disk.wait(request.token);
            self.release(&request);
        }
        self.stalled = false;
    }
}

/// Where a request's data is in its chain.
enum DataSide<'a> {
    /// No data (FLUSH).
    None,
    /// The readable bytes after the header, from this cursor on.
    Readable(Cursor<'a>),
    /// The first this many writable bytes (all but the status byte).
    Writable(u64),
}

impl DataSide<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::None => 0,
            Self::Readable(cursor) => cursor.remaining(),
            Self::Writable(len) => *len,
        }
    }
}

/// Appends to `segments` the host-physical pieces `(address, length)` of the
/// next `len` bytes under `cursor`.
///
/// # Errors
///
/// Some of it is not the VM's RAM.
fn physical_segments(
    cursor: &mut Cursor<'_>,
    len: u64,
    mem: &GuestMemory,
    segments: &mut Vec<(u64, u32)>,
) -> Result<(), crate::mm::guest_memory::GuestMemoryError> {
    cursor.each_span(len, |addr, _, n| {
        // A span lies in one buffer, whose length is a u32.
        segments.extend(mem.physical_spans(addr, n)?.map(|(pa, piece)| (pa, piece as u32)));
        Ok(())
    })?;
    Ok(())
}

impl<H: Hal + Send, T: Transport + Send> VirtioBackend for HostBlk<H, T> {
    fn name(&self) -> &str {
        "virtio-blk"
    }

    fn device_id(&self) -> u32 {
        device_id::BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { feature::RO } else { 0 };
        let zeroing = [(request::DISCARD, feature::DISCARD), (request::WRITE_ZEROES, feature::WRITE_ZEROES)]
            .into_iter()
            .filter(|&(kind, _)| self.offers(kind))
            .fold(0, |bits, (_, feature)| bits | feature);
        feature::SIZE_MAX | feature::SEG_MAX | feature::BLK_SIZE | feature::FLUSH | ro | zeroing
    }

    fn queue_count(&self) -> usize {
        1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_image(&self.config.image(), offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, _features: u64) {}

    fn reset(&mut self) {
        self.drain();
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<Progress, QueueError> {
        let Some(q) = queues.get_mut(index) else { return Ok(Progress::Done) };
        self.collect(q, mem)?;
        self.serve(q, mem)
    }

    /// The host device interrupted: its completions go on the used ring, and the
    /// room they free takes waiting requests. While the guest's device is not live
    /// (failed, or not set up again yet) they wait on the host's ring instead: the
    /// guest's reset collects them (`drain`) without writing its memory.
    fn host_interrupt(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemory,
        live: bool,
    ) -> Result<(), QueueError> {
        self.disk.ack_interrupt();
        let Some(q) = queues.first_mut().filter(|q| live && q.ready()) else { return Ok(()) };
        // A host device that gives up (DEVICE_NEEDS_RESET) says so with a
        // configuration-change interrupt: what it had is over, with IOERR.
        if let Err(e) = self.disk.check_status() {
            if self.in_flight() > 0 {
                guest_log!(
                    Kind::Virtio,
                    Warn,
                    "virtio-blk: the host disk failed ({e:?}); its requests get IOERR"
                );
            }
            self.fail_all(q, mem)?;
        }
        self.collect(q, mem)?;
        self.serve(q, mem).map(|_| ())
    }
}
