//! One CPU's trace: the exit it is handling, its ring of recent exits and its sums.

use super::record::{Record, Stage, SEGMENTS};
use super::ring::Ring;
use super::sums::Sums;
use crate::trace::stats::ExitReason;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// A stage not stamped during the current exit.
const UNSTAMPED: u64 = u64::MAX;

/// A CPU's trace. Only its CPU calls [`CpuTrace::begin`], [`CpuTrace::stamp`],
/// [`CpuTrace::finish`] and [`CpuTrace::set_phase`]; any CPU may read the ring and
/// the sums.
pub struct CpuTrace {
    /// Counter value per stage of the exit in progress.
    stamps: [AtomicU64; SEGMENTS + 1],
    /// VM and vCPU of the exit in progress.
    vm: AtomicU8,
    vcpu: AtomicU8,
    /// The phase the guest tagged its exits with.
    phase: AtomicU8,
    /// Phase of the exit in progress (taken at entry).
    exit_phase: AtomicU8,
    ring: Ring,
    sums: Sums,
}

impl CpuTrace {
    /// A trace whose ring keeps `records` exits.
    pub fn new(records: usize) -> Self {
        Self {
            stamps: [const { AtomicU64::new(UNSTAMPED) }; SEGMENTS + 1],
            vm: AtomicU8::new(0),
            vcpu: AtomicU8::new(0),
            phase: AtomicU8::new(0),
            exit_phase: AtomicU8::new(0),
            ring: Ring::new(records),
            sums: Sums::new(),
        }
    }

    /// Trap entry at counter `now`, for vCPU `vcpu` of VM `vm`.
    pub fn begin(&self, now: u64, vm: usize, vcpu: usize) {
        self.stamps[0].store(now, Ordering::Relaxed);
        for stamp in &self.stamps[1..] {
            stamp.store(UNSTAMPED, Ordering::Relaxed);
        }
        self.vm.store(vm as u8, Ordering::Relaxed);
        self.vcpu.store(vcpu as u8, Ordering::Relaxed);
        self.exit_phase.store(self.phase.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Trap entry at counter `now`, for vCPU `vcpu` of VM `vm`: [`CpuTrace::begin`]
    /// if the trace is `detailed`, else [`CpuTrace::begin_total`].
    #[inline]
    pub fn begin_exit(&self, now: u64, vm: usize, vcpu: usize, detailed: bool) {
        if detailed {
            self.begin(now, vm, vcpu);
        } else {
            self.begin_total(now);
        }
    }

    /// The return to the guest at counter `now`: [`CpuTrace::finish`] if the trace
    /// is `detailed`, else [`CpuTrace::finish_total`].
    #[inline]
    pub fn finish_exit(&self, now: u64, reason: ExitReason, detailed: bool) {
        if detailed {
            self.finish(now, reason, true);
        } else {
            self.finish_total(now, reason);
        }
    }

    /// Trap entry at counter `now` when only the exit statistics are kept: the
    /// entry stamp and the phase, nothing else (see [`CpuTrace::finish_total`]).
    pub fn begin_total(&self, now: u64) {
        self.stamps[0].store(now, Ordering::Relaxed);
        self.exit_phase.store(self.phase.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The return to the guest at counter `now` of an exit begun with
    /// [`CpuTrace::begin_total`]: it is counted, with its total time, in the sums.
    pub fn finish_total(&self, now: u64, reason: ExitReason) {
        let ticks = now.saturating_sub(self.stamps[0].load(Ordering::Relaxed));
        self.sums.add_total(self.exit_phase.load(Ordering::Relaxed), reason, ticks);
    }

    /// The exit in progress reached `stage` at counter `now` (a later stamp of the
    /// same stage replaces an earlier one).
    pub fn stamp(&self, stage: Stage, now: u64) {
        self.stamps[stage.index()].store(now, Ordering::Relaxed);
    }

    /// The return to the guest at counter `now`: the exit is added to the sums, and
    /// to the ring if `detailed`. Returns its record.
    pub fn finish(&self, now: u64, reason: ExitReason, detailed: bool) -> Record {
        self.stamp(Stage::Return, now);
        let entry = self.stamps[0].load(Ordering::Relaxed);
        let mut offsets = [Record::NOT_REACHED; SEGMENTS];
        for (offset, stamp) in offsets.iter_mut().zip(&self.stamps[1..]) {
            let at = stamp.load(Ordering::Relaxed);
            if at != UNSTAMPED {
                // Saturate below NOT_REACHED: an exit of 2^32 ticks (over a minute
                // at 62.5 MHz) stays "reached".
                *offset = u32::try_from(at.saturating_sub(entry)).unwrap_or(u32::MAX - 1).min(u32::MAX - 1);
            }
        }
        let record = Record {
            entry,
            offsets,
            reason,
            phase: self.exit_phase.load(Ordering::Relaxed),
            vm: self.vm.load(Ordering::Relaxed),
            vcpu: self.vcpu.load(Ordering::Relaxed),
        };
        if detailed {
            self.ring.push(&record);
        }
        self.sums.add(&record);
        record
    }

    /// Tags exits from the next one on with `phase` (the caller checks the range).
    /// The exit in progress, the call that asked, is untagged: it belongs to no
    /// measured path.
    pub fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Relaxed);
        self.exit_phase.store(0, Ordering::Relaxed);
    }

    /// The last exits.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The sums.
    pub fn sums(&self) -> &Sums {
        &self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const N: u32 = Record::NOT_REACHED;

    fn exit(cpu: &CpuTrace, at: u64, stages: &[(Stage, u64)], reason: ExitReason, detailed: bool) -> Record {
        cpu.begin(at, 1, 0);
        for &(stage, t) in stages {
            cpu.stamp(stage, at + t);
        }
        let end = stages.iter().map(|s| s.1).max().unwrap_or(0) + 2;
        cpu.finish(at + end, reason, detailed)
    }

    #[test]
    fn an_exit_becomes_a_record_with_offsets_from_its_entry() {
        let cpu = CpuTrace::new(8);
        let r = exit(&cpu, 1000, &[(Stage::Decoded, 3), (Stage::Injected, 7)], ExitReason::Hvc, true);
        assert_eq!(r.entry, 1000);
        assert_eq!(r.offsets, [3, N, N, N, N, 7, 9]);
        assert_eq!((r.vm, r.vcpu, r.phase), (1, 0, 0));
        // The next exit starts clean: no stamp of this one leaks into it.
        let r = exit(&cpu, 2000, &[(Stage::Decoded, 1)], ExitReason::Mmio, true);
        assert_eq!(r.offsets, [1, N, N, N, N, N, 3]);
        assert_eq!(cpu.ring().pushed(), 2);
    }

    #[test]
    fn the_phase_applies_from_the_next_exit() {
        let cpu = CpuTrace::new(8);
        cpu.begin(0, 0, 0);
        // The hypercall that sets the phase is itself still untagged.
        cpu.set_phase(5);
        assert_eq!(cpu.finish(4, ExitReason::Hvc, true).phase, 0);
        assert_eq!(exit(&cpu, 10, &[], ExitReason::Mmio, true).phase, 5);
        assert_eq!(cpu.sums().totals(5, ExitReason::Mmio).exits, 1);
        // Nor is the one that ends the phase.
        cpu.begin(20, 0, 0);
        cpu.set_phase(0);
        assert_eq!(cpu.finish(24, ExitReason::Hvc, true).phase, 0);
        assert_eq!(cpu.sums().totals(5, ExitReason::Hvc).exits, 0);
    }

    #[test]
    fn undetailed_exits_reach_the_sums_but_not_the_ring() {
        let cpu = CpuTrace::new(8);
        exit(&cpu, 0, &[], ExitReason::Wfi, false);
        assert_eq!(cpu.ring().pushed(), 0);
        assert_eq!(cpu.sums().totals(0, ExitReason::Wfi).exits, 1);
    }

    #[test]
    fn a_counted_exit_adds_its_total_under_its_phase() {
        let cpu = CpuTrace::new(8);
        cpu.set_phase(3);
        cpu.begin_total(100);
        cpu.finish_total(140, ExitReason::Hvc);
        let totals = cpu.sums().totals(3, ExitReason::Hvc);
        assert_eq!((totals.exits, totals.total, totals.segments), (1, 40, [0; SEGMENTS]));
        assert_eq!(cpu.ring().pushed(), 0);
    }

    #[test]
    fn cpus_keep_their_own_exits() {
        let cpus: Vec<CpuTrace> = (0..2).map(|_| CpuTrace::new(4)).collect();
        std::thread::scope(|s| {
            for (i, cpu) in cpus.iter().enumerate() {
                s.spawn(move || {
                    let reason = if i == 0 { ExitReason::Mmio } else { ExitReason::Hvc };
                    for n in 0..1000 {
                        exit(cpu, n * 100, &[(Stage::Decoded, i as u64 + 1)], reason, true);
                    }
                });
            }
        });
        assert_eq!(cpus[0].sums().totals(0, ExitReason::Mmio).exits, 1000);
        assert_eq!(cpus[0].sums().totals(0, ExitReason::Hvc).exits, 0);
        assert_eq!(cpus[1].sums().totals(0, ExitReason::Hvc).exits, 1000);
        let mut decoded = Vec::new();
        cpus[1].ring().recent(4, |r| decoded.push((r.reason, r.offsets[0], r.entry)));
        assert_eq!(decoded, (996..1000).map(|n| (ExitReason::Hvc, 2, n * 100)).collect::<Vec<_>>());
    }
}
