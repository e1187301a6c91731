//! One exit as the trace keeps it: the counter at trap entry and how far into the
//! exit each later stage was reached.

use crate::trace::stats::ExitReason;

/// A point on the trap path, in the order an exit passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The trap handler starts (registers already saved).
    Entry,
    /// The syndrome is decoded (and, for exits other than hypercalls and MMIO,
    /// interrupts taken and list registers folded in).
    Decoded,
    /// An MMIO access is routed to its device.
    Dispatched,
    /// A virtio backend starts on a notified queue.
    BackendStart,
    /// The backend published a used-ring entry (the last one, if several).
    UsedPublished,
    /// The backend is done and the transport decided on the interrupt.
    BackendEnd,
    /// Pending virtual interrupts are written to the list registers.
    Injected,
    /// About to return to the guest.
    Return,
}

/// Segments of an exit: one per stage after [`Stage::Entry`].
pub const SEGMENTS: usize = 7;

impl Stage {
    /// Every stage, in path order.
    pub const ALL: [Stage; SEGMENTS + 1] = [
        Self::Entry,
        Self::Decoded,
        Self::Dispatched,
        Self::BackendStart,
        Self::UsedPublished,
        Self::BackendEnd,
        Self::Injected,
        Self::Return,
    ];

    /// Position in [`Stage::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Name of the segment that ends at this stage (from the previous stage the exit
    /// reached); `""` for the entry.
    pub const fn segment(self) -> &'static str {
        match self {
            Self::Entry => "",
            Self::Decoded => "decode",
            Self::Dispatched => "dispatch",
            Self::BackendStart => "transport",
            Self::UsedPublished => "backend",
            Self::BackendEnd => "complete",
            Self::Injected => "inject",
            Self::Return => "return",
        }
    }
}

/// One exit: when it entered, when it reached each later stage, and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Counter at trap entry.
    pub entry: u64,
    /// Counter ticks from the entry to each stage after it ([`Stage::ALL`]`[1..]`);
    /// [`Record::NOT_REACHED`] for a stage the exit did not pass.
    pub offsets: [u32; SEGMENTS],
    /// Why the guest exited.
    pub reason: ExitReason,
    /// The guest's phase tag when it exited.
    pub phase: u8,
    /// VM index.
    pub vm: u8,
    /// vCPU index.
    pub vcpu: u8,
}

/// Words a [`Record`] packs into.
pub const RECORD_WORDS: usize = 5;

impl Record {
    /// Offset of a stage the exit did not reach.
    pub const NOT_REACHED: u32 = u32::MAX;

    /// Counter ticks from entry to return (0 if the return was not stamped).
    pub fn total(&self) -> u64 {
        match self.offsets[SEGMENTS - 1] {
            Self::NOT_REACHED => 0,
            t => u64::from(t),
        }
    }

    /// Ticks of each segment: from the previous stage the exit reached to this one,
    /// 0 for a stage it did not reach. They add up to [`Record::total`].
    pub fn segments(&self) -> [u64; SEGMENTS] {
        let mut out = [0; SEGMENTS];
        let mut previous = 0u64;
        for (slot, &offset) in out.iter_mut().zip(&self.offsets) {
            if offset != Self::NOT_REACHED {
                let at = u64::from(offset);
                *slot = at.saturating_sub(previous);
                previous = previous.max(at);
            }
        }
        out
    }

    /// The record as ring words.
    pub fn to_words(&self) -> [u64; RECORD_WORDS] {
        let o = |i: usize| u64::from(self.offsets[i]);
        let meta = u64::from(self.reason as u8)
            | u64::from(self.phase) << 8
            | u64::from(self.vm) << 16
            | u64::from(self.vcpu) << 24;
        [self.entry, o(0) | o(1) << 32, o(2) | o(3) << 32, o(4) | o(5) << 32, o(6) | meta << 32]
    }

    /// A record back from its words; `None` if the reason is unknown.
    pub fn from_words(w: [u64; RECORD_WORDS]) -> Option<Self> {
        let lo = |x: u64| x as u32;
        let hi = |x: u64| (x >> 32) as u32;
        let meta = hi(w[4]);
        Some(Self {
            entry: w[0],
            offsets: [lo(w[1]), hi(w[1]), lo(w[2]), hi(w[2]), lo(w[3]), hi(w[3]), lo(w[4])],
            reason: ExitReason::from_index(meta as u8)?,
            phase: (meta >> 8) as u8,
            vm: (meta >> 16) as u8,
            vcpu: (meta >> 24) as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u32 = Record::NOT_REACHED;

    fn record(offsets: [u32; SEGMENTS]) -> Record {
        Record { entry: 1000, offsets, reason: ExitReason::Mmio, phase: 3, vm: 2, vcpu: 1 }
    }

    #[test]
    fn stages_are_in_path_order_with_segment_names() {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage.index(), i);
        }
        let names: alloc::vec::Vec<_> = Stage::ALL[1..].iter().map(|s| s.segment()).collect();
        assert_eq!(names, ["decode", "dispatch", "transport", "backend", "complete", "inject", "return"]);
    }

    #[test]
    fn segments_skip_stages_not_reached_and_add_up() {
        // An hvc: decoded at 5, injected at 9, returned at 12.
        let r = record([5, N, N, N, N, 9, 12]);
        assert_eq!(r.segments(), [5, 0, 0, 0, 0, 4, 3]);
        assert_eq!(r.total(), 12);
        assert_eq!(r.segments().iter().sum::<u64>(), r.total());
        // A blk notify reaches every stage.
        let r = record([2, 3, 5, 40, 41, 45, 47]);
        assert_eq!(r.segments(), [2, 1, 2, 35, 1, 4, 2]);
        assert_eq!(r.segments().iter().sum::<u64>(), 47);
    }

    #[test]
    fn a_stage_stamped_out_of_order_counts_zero() {
        // A used entry published before the dispatch stamp (can't happen on the trap
        // path, but the sums must not wrap).
        let r = record([5, 8, N, 6, N, N, 10]);
        assert_eq!(r.segments(), [5, 3, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn no_return_stamp_means_no_total() {
        assert_eq!(record([1, N, N, N, N, N, N]).total(), 0);
    }

    #[test]
    fn words_round_trip() {
        let r = record([1, 2, N, 4, 5, 6, 0x7fff_ffff]);
        assert_eq!(Record::from_words(r.to_words()), Some(r));
        let mut words = r.to_words();
        words[4] |= 0xff << 32;
        assert_eq!(Record::from_words(words), None);
    }
}
