//! A stretch of concurrent I/O on a virtio-blk disk, for as long as asked:
//! [`QUEUE_DEPTH`] requests always in flight, each lane writing a sector with a
//! pattern that names the sector and the round, reading it back once the write
//! completed, and checking it; lanes own disjoint sectors, so no two requests in
//! flight touch the same one. Every completion must be of a request in flight,
//! once: the counts of requests submitted and completed match at the end.

use guest_drivers::blk::{Token, VirtioBlk};
use guest_drivers::hal::Hal;
use guest_drivers::transport::Transport;

use crate::disk_pattern::{fill, first_mismatch, SECTOR_SIZE};

/// Requests in flight at once.
pub const QUEUE_DEPTH: usize = 64;

/// What the stretch counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Requests submitted.
    pub submitted: u64,
    /// Requests completed.
    pub completed: u64,
    /// Writes among them (each read back and checked).
    pub writes: u64,
}

/// One lane: its sector now, the round, and its request in flight.
#[derive(Clone, Copy)]
struct Lane {
    sector: u64,
    round: u8,
    writing: bool,
    token: Option<Token>,
}

/// Runs the stretch over the `sectors` sectors from `first` on (at least
/// [`QUEUE_DEPTH`]) until `expired` says so, then lets every lane finish its read.
/// `buffers` holds a sector for each lane.
///
/// # Errors
///
/// A request failed, a completion was of no request in flight, a sector read back
/// did not hold what was written, or requests were still in flight when
/// `hung` said to give up.
///
/// # Safety
///
/// `buffers` must be memory the device reaches at its addresses (the guests' DMA
/// pool, MMU off): the device writes and reads it while requests are in flight.
#[allow(unsafe_code)]
pub unsafe fn run<H: Hal, T: Transport>(
    blk: &mut VirtioBlk<H, T>,
    first: u64,
    sectors: u64,
    buffers: &mut [[u8; SECTOR_SIZE]; QUEUE_DEPTH],
    expired: impl Fn() -> bool,
    hung: impl Fn() -> bool,
) -> Result<Outcome, &'static str> {
    if sectors < QUEUE_DEPTH as u64 {
        return Err("the extent is smaller than the queue depth");
    }
    let mut lanes = [Lane { sector: 0, round: 0, writing: true, token: None }; QUEUE_DEPTH];
    let mut outcome = Outcome::default();
    for (i, lane) in lanes.iter_mut().enumerate() {
        lane.sector = first + i as u64;
        // SAFETY: the caller's promise on `buffers`; each lane's buffer is left
        // alone until its request completes.
        lane.token = Some(unsafe { start(blk, lane, &mut buffers[i], &mut outcome) }?);
    }
    while lanes.iter().any(|lane| lane.token.is_some()) {
        let Some(token) = blk.poll().map_err(|_| "collecting a completion failed")? else {
            if hung() {
                return Err("requests in flight never completed");
            }
            core::hint::spin_loop();
            continue;
        };
        let i = lanes
            .iter()
            .position(|lane| lane.token == Some(token))
            .ok_or("a completion of no request in flight: lost, or completed twice")?;
        blk.complete(token).map_err(|_| "a request failed")?;
        outcome.completed += 1;
        let lane = &mut lanes[i];
        lane.token = None;
        if lane.writing {
            lane.writing = false;
        } else {
            if first_mismatch(lane.round, lane.sector, &buffers[i]).is_some() {
                return Err("a sector read back does not hold what was written");
            }
            if expired() {
                continue;
            }
            // The lane's next sector: every QUEUE_DEPTH-th from its first.
            let next = lane.sector + QUEUE_DEPTH as u64;
            lane.sector = if next < first + sectors { next } else { first + i as u64 };
            lane.round = lane.round.wrapping_add(1);
            lane.writing = true;
        }
        // SAFETY: as above.
        lane.token = Some(unsafe { start(blk, lane, &mut buffers[i], &mut outcome) }?);
    }
    Ok(outcome)
}

/// Submits the lane's next request: a write of its pattern, or the read back.
///
/// # Safety
///
/// As for [`run`], on `buffer`.
#[allow(unsafe_code)]
unsafe fn start<H: Hal, T: Transport>(
    blk: &mut VirtioBlk<H, T>,
    lane: &Lane,
    buffer: &mut [u8; SECTOR_SIZE],
    outcome: &mut Outcome,
) -> Result<Token, &'static str> {
    outcome.submitted += 1;
    let token = if lane.writing {
        outcome.writes += 1;
        fill(lane.round, lane.sector, buffer);
        // SAFETY: the caller's promise; the buffer is not written until the request completes.
        unsafe { blk.submit_write(lane.sector, buffer) }
    } else {
        buffer.fill(0);
        // SAFETY: the caller's promise; the buffer is not touched until the request completes.
        unsafe { blk.submit_read(lane.sector, buffer) }
    };
    token.map_err(|_| "submitting a request failed")
}
