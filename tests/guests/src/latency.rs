//! Latency figures from samples: min, percentiles, max, mean and a histogram, and
//! how the `bench` guest prints them, as JSON lines (one summary line, then the
//! histogram in lines short enough for any console):
//!
//! ```text
//! {"path":"hvc-null","phase":1,"unit":"ns","n":1000,"min":320,"p50":336,"p99":400,"max":1200,"mean":340.5}
//! {"path":"hvc-null","hist":[[320,336,12],[336,352,900]]}
//! ```
//!
//! Samples are counter ticks; what is printed is nanoseconds at the counter's
//! frequency. Percentiles are nearest-rank (the smallest sample with at least p% of
//! the samples at or below it). Histogram buckets are log-linear: one per tick
//! below 8 ticks, then eight per power of two, so each bucket is at most 12.5% wide
//! whatever the scale; `[lo, hi, count]` is a half-open range in nanoseconds. Only
//! buckets with samples are printed.

use core::fmt;

use platform::counter::ticks_to_ns;

/// Histogram buckets per histogram line.
pub const BUCKETS_PER_LINE: usize = 8;

/// What a set of samples comes to, in counter ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Smallest.
    pub min: u64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The sample at percentile `p` (0 < p ≤ 100) of `sorted`, by nearest rank.
pub fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).clamp(1, n.max(1));
    sorted.get(rank as usize - 1).copied()
}

/// Sorts `samples` and sums them up; `None` when there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    let (&min, &max) = (samples.first()?, samples.last()?);
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Some(Summary {
        n: samples.len(),
        min,
        p50: percentile(samples, 50)?,
        p99: percentile(samples, 99)?,
        max,
        mean: sum as f64 / samples.len() as f64,
    })
}

/// The histogram bucket `[lo, hi)` that `ticks` falls in.
pub fn bucket(ticks: u64) -> (u64, u64) {
    if ticks < 8 {
        return (ticks, ticks + 1);
    }
    let shift = 63 - ticks.leading_zeros() - 3;
    let lo = (ticks >> shift) << shift;
    (lo, lo.saturating_add(1 << shift))
}

/// The summary line of path `name`, tagged with its trace `phase` (no newline).
pub struct SummaryLine<'a> {
    /// The path.
    pub name: &'a str,
    /// Its trace phase.
    pub phase: u32,
    /// Its figures, in counter ticks.
    pub summary: &'a Summary,
    /// The counter's frequency.
    pub hz: u64,
}

impl fmt::Display for SummaryLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, hz) = (self.summary, self.hz);
        let mean_ns = if hz == 0 { 0.0 } else { s.mean * 1e9 / hz as f64 };
        write!(
            f,
            "{{\"path\":\"{}\",\"phase\":{},\"unit\":\"ns\",\"n\":{},\"min\":{},\"p50\":{},\"p99\":{},\"max\":{},\"mean\":{mean_ns:.1}}}",
            self.name,
            self.phase,
            s.n,
            ticks_to_ns(s.min, hz),
            ticks_to_ns(s.p50, hz),
            ticks_to_ns(s.p99, hz),
            ticks_to_ns(s.max, hz),
        )
    }
}

/// Sorts `samples` (counter ticks at `hz`) and calls `line` with path `name`'s
/// summary line (tagged with its trace `phase`), then its histogram lines; nothing
/// for no samples.
pub fn report(
    name: &str,
    phase: u32,
    samples: &mut [u64],
    hz: u64,
    mut line: impl FnMut(fmt::Arguments<'_>),
) {
    let Some(summary) = summarize(samples) else { return };
    line(format_args!("{}", SummaryLine { name, phase, summary: &summary, hz }));
    let _ = histogram_lines(name, samples, hz, |args| {
        line(args);
        Ok(())
    });
}

/// Calls `line` with each histogram line of path `name` for `sorted` samples.
///
/// # Errors
///
/// Whatever `line` returns.
pub fn histogram_lines(
    name: &str,
    sorted: &[u64],
    hz: u64,
    mut line: impl FnMut(fmt::Arguments<'_>) -> fmt::Result,
) -> fmt::Result {
    let mut buckets = Buckets { sorted };
    loop {
        let chunk: [Option<(u64, u64, usize)>; BUCKETS_PER_LINE] = core::array::from_fn(|_| buckets.next());
        if chunk[0].is_none() {
            return Ok(());
        }
        line(format_args!("{{\"path\":\"{name}\",\"hist\":[{}]}}", Chunk { chunk: &chunk, hz }))?;
    }
}

/// The non-empty buckets of sorted samples, in order.
struct Buckets<'a> {
    sorted: &'a [u64],
}

impl Iterator for Buckets<'_> {
    type Item = (u64, u64, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let (lo, hi) = bucket(*self.sorted.first()?);
        let count = self.sorted.partition_point(|&s| s < hi);
        self.sorted = &self.sorted[count..];
        Some((lo, hi, count))
    }
}

struct Chunk<'a> {
    chunk: &'a [Option<(u64, u64, usize)>],
    hz: u64,
}

impl fmt::Display for Chunk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi, count)) in self.chunk.iter().flatten().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}[{},{},{count}]", ticks_to_ns(lo, self.hz), ticks_to_ns(hi, self.hz))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_HZ: u64 = 62_500_000;

    #[test]
    fn percentiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50), Some(50));
        assert_eq!(percentile(&sorted, 99), Some(99));
        assert_eq!(percentile(&sorted, 100), Some(100));
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 99), Some(4));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn summary_of_known_samples() {
        let mut samples = [5, 1, 4, 2, 3, 100, 2, 2, 3, 8];
        let s = summarize(&mut samples).unwrap();
        assert_eq!(samples, [1, 2, 2, 2, 3, 3, 4, 5, 8, 100]);
        assert_eq!(s, Summary { n: 10, min: 1, p50: 3, p99: 100, max: 100, mean: 13.0 });
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn buckets_are_log_linear() {
        assert_eq!(bucket(0), (0, 1));
        assert_eq!(bucket(7), (7, 8));
        assert_eq!(bucket(8), (8, 9));
        assert_eq!(bucket(15), (15, 16));
        assert_eq!(bucket(16), (16, 18));
        assert_eq!(bucket(17), (16, 18));
        assert_eq!(bucket(100), (96, 104));
        assert_eq!(bucket(1000), (960, 1024));
        assert_eq!(bucket(u64::MAX), (0xf000_0000_0000_0000, u64::MAX));
        // Every value lies in its bucket, and buckets are at most 1/8 of lo wide.
        for v in 8..5000 {
            let (lo, hi) = bucket(v);
            assert!(lo <= v && v < hi && (hi - lo) * 8 <= lo, "{v}: {lo}..{hi}");
        }
    }

    #[test]
    fn summary_line() {
        let s = Summary { n: 3, min: 20, p50: 21, p99: 30, max: 30, mean: 23.5 };
        let line = SummaryLine { name: "hvc-null", phase: 1, summary: &s, hz: QEMU_HZ };
        assert_eq!(
            line.to_string(),
            "{\"path\":\"hvc-null\",\"phase\":1,\"unit\":\"ns\",\"n\":3,\"min\":320,\"p50\":336,\"p99\":480,\"max\":480,\"mean\":376.0}"
        );
    }

    #[test]
    fn histogram_lines_in_chunks() {
        // Ten distinct buckets (ticks 0..=9), then 40 samples of 100 ticks.
        let mut sorted: Vec<u64> = (0..10).collect();
        sorted.extend([100; 40]);
        let mut lines = Vec::new();
        histogram_lines("x", &sorted, 1_000_000_000, |args| {
            lines.push(args.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            lines,
            [
                "{\"path\":\"x\",\"hist\":[[0,1,1],[1,2,1],[2,3,1],[3,4,1],[4,5,1],[5,6,1],[6,7,1],[7,8,1]]}",
                "{\"path\":\"x\",\"hist\":[[8,9,1],[9,10,1],[96,104,40]]}",
            ]
        );
        let total: usize = Buckets { sorted: &sorted }.map(|b| b.2).sum();
        assert_eq!(total, sorted.len());
    }
}
