//! A ring of the last exits one CPU handled.
//!
//! One writer (the CPU that owns the ring) and any number of readers, without locks:
//! the writer fills a slot, then publishes it by advancing `head` (release); a
//! reader copies a slot, then checks `head` again and drops the copy if the writer
//! may have started to overwrite it meanwhile (the seqlock pattern, with `head` as
//! the sequence). A slot is a few `AtomicU64` words, so a torn copy is detected,
//! never undefined.

use super::record::{Record, RECORD_WORDS};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// The last `capacity` records one CPU pushed.
pub struct Ring {
    words: Box<[AtomicU64]>,
    /// Records a reader can get: one slot less than there are, so the one the writer
    /// may be filling is never among them.
    capacity: u64,
    /// Records pushed so far; record `i` lives in slot `i % (capacity + 1)`.
    head: AtomicU64,
}

impl Ring {
    /// An empty ring of `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let words = (0..(capacity + 1) * RECORD_WORDS).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self { words: words.into_boxed_slice(), capacity: capacity as u64, head: AtomicU64::new(0) }
    }

    /// Records it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Records pushed since it was made (kept or overwritten).
    pub fn pushed(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    fn slot(&self, index: u64) -> &[AtomicU64] {
        let at = (index % (self.capacity + 1)) as usize * RECORD_WORDS;
        &self.words[at..at + RECORD_WORDS]
    }

    /// Appends `record`, overwriting the oldest when full. Only the owning CPU
    /// pushes.
    pub fn push(&self, record: &Record) {
        let index = self.head.load(Ordering::Relaxed);
        // The previous push's `head` store must be visible before these words are: a
        // reader that sees one of them then sees `head` past the record they replace.
        fence(Ordering::Release);
        for (word, value) in self.slot(index).iter().zip(record.to_words()) {
            word.store(value, Ordering::Relaxed);
        }
        self.head.store(index + 1, Ordering::Release);
    }

    /// Calls `f` with up to the `max` most recent records, oldest first, skipping
    /// any the writer overwrote while they were read.
    pub fn recent(&self, max: usize, mut f: impl FnMut(Record)) {
        let head = self.head.load(Ordering::Acquire);
        let kept = head.min(self.capacity).min(max as u64);
        for index in head - kept..head {
            let mut words = [0u64; RECORD_WORDS];
            for (value, word) in words.iter_mut().zip(self.slot(index)) {
                *value = word.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            // The writer starts on record `index + capacity + 1` (same slot) only
            // once `head` reached it.
            if self.head.load(Ordering::Relaxed) > index + self.capacity {
                continue;
            }
            if let Some(record) = Record::from_words(words) {
                f(record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::SEGMENTS;
    use crate::trace::stats::ExitReason;
    use alloc::vec::Vec;

    fn record(entry: u64) -> Record {
        Record { entry, offsets: [entry as u32; SEGMENTS], reason: ExitReason::Hvc, phase: 1, vm: 0, vcpu: 0 }
    }

    fn entries(ring: &Ring, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        ring.recent(max, |r| out.push(r.entry));
        out
    }

    #[test]
    fn keeps_records_in_order_until_full() {
        let ring = Ring::new(4);
        assert!(entries(&ring, 10).is_empty());
        for e in 1..=3 {
            ring.push(&record(e));
        }
        assert_eq!(entries(&ring, 10), [1, 2, 3]);
        assert_eq!(entries(&ring, 2), [2, 3]);
        assert_eq!(ring.pushed(), 3);
    }

    #[test]
    fn wraps_around_keeping_the_newest() {
        let ring = Ring::new(4);
        for e in 1..=10 {
            ring.push(&record(e));
        }
        assert_eq!(entries(&ring, 100), [7, 8, 9, 10]);
        assert_eq!(ring.pushed(), 10);
        let mut full = Vec::new();
        ring.recent(100, |r| full.push(r));
        assert_eq!(full[3], record(10));
    }

    #[test]
    fn a_zero_capacity_ring_keeps_one() {
        let ring = Ring::new(0);
        ring.push(&record(1));
        ring.push(&record(2));
        assert_eq!((ring.capacity(), entries(&ring, 5)), (1, [2].into()));
    }

    #[test]
    fn a_reader_beside_the_writer_sees_only_whole_records() {
        let ring = std::sync::Arc::new(Ring::new(8));
        let writer = {
            let ring = ring.clone();
            std::thread::spawn(move || (1..=20_000).for_each(|e| ring.push(&record(e))))
        };
        while !writer.is_finished() {
            ring.recent(8, |r| {
                // Every word of a record carries its entry: a torn copy would differ.
                assert!(r.offsets.iter().all(|&o| o == r.entry as u32), "torn record {r:?}");
            });
        }
        writer.join().unwrap();
        assert_eq!(entries(&ring, 8), (19_993..=20_000).collect::<Vec<_>>());
    }
}
