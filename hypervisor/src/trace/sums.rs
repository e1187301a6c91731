//! Running sums of exits per phase and exit reason, per segment: what a benchmark
//! reads back as the per-stage breakdown, and what the exit statistics are made of.

use super::record::{Record, SEGMENTS};
use super::MAX_PHASES;
use crate::trace::stats::{ExitReason, ExitStats};
use core::sync::atomic::{AtomicU64, Ordering};

const REASONS: usize = ExitReason::ALL.len();

/// Exits and ticks for one (phase, reason).
struct Cell {
    exits: AtomicU64,
    /// Ticks per segment, then the total (entry to return).
    ticks: [AtomicU64; SEGMENTS + 1],
}

/// What one (phase, reason) adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Exits.
    pub exits: u64,
    /// Counter ticks per segment ([`super::Stage::ALL`]`[1..]`).
    pub segments: [u64; SEGMENTS],
    /// Counter ticks from entry to return.
    pub total: u64,
}

/// Sums per phase and reason for one CPU. Written only by that CPU (plain load and
/// store, no read-modify-write); read by anyone.
pub struct Sums {
    cells: [[Cell; REASONS]; MAX_PHASES],
}

impl Default for Sums {
    fn default() -> Self {
        Self::new()
    }
}

/// Adds to a counter only this CPU writes (a plain load and store; 64 bits of
/// counter ticks or exits do not wrap in centuries).
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

impl Sums {
    /// Everything at zero.
    pub const fn new() -> Self {
        Self {
            cells: [const {
                [const { Cell { exits: AtomicU64::new(0), ticks: [const { AtomicU64::new(0) }; SEGMENTS + 1] } };
                    REASONS]
            }; MAX_PHASES],
        }
    }

    /// Adds one exit (a phase out of range counts as phase 0).
    pub fn add(&self, record: &Record) {
        let phase = if usize::from(record.phase) < MAX_PHASES { usize::from(record.phase) } else { 0 };
        let cell = &self.cells[phase][record.reason as usize];
        bump(&cell.exits, 1);
        for (ticks, segment) in cell.ticks.iter().zip(record.segments()) {
            bump(ticks, segment);
        }
        bump(&cell.ticks[SEGMENTS], record.total());
    }

    /// Adds one exit known only by its total time (the trace is not detailed).
    pub fn add_total(&self, phase: u8, reason: ExitReason, ticks: u64) {
        let phase = if usize::from(phase) < MAX_PHASES { usize::from(phase) } else { 0 };
        let cell = &self.cells[phase][reason as usize];
        bump(&cell.exits, 1);
        bump(&cell.ticks[SEGMENTS], ticks);
    }

    /// What `phase` and `reason` add up to.
    pub fn totals(&self, phase: usize, reason: ExitReason) -> Totals {
        let Some(row) = self.cells.get(phase) else { return Totals::default() };
        let cell = &row[reason as usize];
        let mut totals = Totals { exits: cell.exits.load(Ordering::Relaxed), ..Totals::default() };
        for (out, ticks) in totals.segments.iter_mut().zip(&cell.ticks) {
            *out = ticks.load(Ordering::Relaxed);
        }
        totals.total = cell.ticks[SEGMENTS].load(Ordering::Relaxed);
        totals
    }

    /// Adds this CPU's exits, all phases together, to `stats`.
    pub fn add_to_exit_stats(&self, stats: &mut ExitStats) {
        for phase in 0..MAX_PHASES {
            for reason in ExitReason::ALL {
                let t = self.totals(phase, reason);
                stats.add(reason, t.exits, t.total);
            }
        }
    }

    /// Sets everything back to zero (only the owning CPU, or while it is stopped).
    pub fn clear(&self) {
        for cell in self.cells.iter().flatten() {
            cell.exits.store(0, Ordering::Relaxed);
            cell.ticks.iter().for_each(|t| t.store(0, Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u32 = Record::NOT_REACHED;

    fn record(phase: u8, reason: ExitReason, offsets: [u32; SEGMENTS]) -> Record {
        Record { entry: 0, offsets, reason, phase, vm: 0, vcpu: 0 }
    }

    #[test]
    fn sums_per_phase_and_reason() {
        let sums = Sums::new();
        sums.add(&record(2, ExitReason::Mmio, [2, 3, 5, 40, 41, 45, 47]));
        sums.add(&record(2, ExitReason::Mmio, [4, 5, 7, 42, 43, 47, 49]));
        sums.add(&record(2, ExitReason::Hvc, [5, N, N, N, N, 9, 12]));
        sums.add(&record(0, ExitReason::Mmio, [1, N, N, N, N, N, 2]));
        let blk = sums.totals(2, ExitReason::Mmio);
        assert_eq!(blk, Totals { exits: 2, segments: [6, 2, 4, 70, 2, 8, 4], total: 96 });
        assert_eq!(sums.totals(2, ExitReason::Hvc).segments, [5, 0, 0, 0, 0, 4, 3]);
        assert_eq!(sums.totals(0, ExitReason::Mmio).exits, 1);
        assert_eq!(sums.totals(1, ExitReason::Mmio), Totals::default());
        assert_eq!(sums.totals(MAX_PHASES, ExitReason::Mmio), Totals::default());
    }

    #[test]
    fn exit_statistics_come_from_the_sums() {
        let sums = Sums::new();
        sums.add(&record(2, ExitReason::Mmio, [2, 3, 5, 40, 41, 45, 47]));
        sums.add(&record(0, ExitReason::Mmio, [1, N, N, N, N, N, 3]));
        sums.add(&record(200, ExitReason::Wfi, [N, N, N, N, N, N, 9]));
        let mut stats = ExitStats::new();
        sums.add_to_exit_stats(&mut stats);
        assert_eq!((stats.count(ExitReason::Mmio), stats.ticks(ExitReason::Mmio)), (2, 50));
        assert_eq!((stats.count(ExitReason::Wfi), stats.ticks(ExitReason::Wfi)), (1, 9));
        assert_eq!(stats.total_count(), 3);
        sums.clear();
        assert_eq!(sums.totals(2, ExitReason::Mmio), Totals::default());
    }
}
