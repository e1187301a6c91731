//! The figures `cargo xtask bench` collects: what the guest measured per path, what the
//! hypervisor's trace summed per stage, per run, and the Linux guest's figures.

use serde::{Deserialize, Serialize};

/// The trace segments, in stage order. Each one is the time from the previous stage the
/// exit reached to this stage.
pub const SEGMENTS: [&str; 7] =
    ["decode", "dispatch", "transport", "backend", "complete", "inject", "return"];

/// What ran the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The guest under Sluice.
    Sluice,
    /// The same guest on plain QEMU, with QEMU's own devices.
    Reference,
}

impl Side {
    /// The name used in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            Side::Sluice => "Sluice",
            Side::Reference => "plain QEMU",
        }
    }
}

pub use crate::clock::Clock;

/// One histogram bucket: `count` samples in `[lo, hi)`, in the path's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Lower bound, inclusive.
    pub lo: u64,
    /// Upper bound, exclusive.
    pub hi: u64,
    /// Samples in the bucket.
    pub count: u64,
}

/// One path the guest measured, e.g. `hvc-null`: its summary and its histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Path {
    /// The path's name, e.g. `hvc-null`.
    pub name: String,
    /// The guest's phase number while it measured this path; matches [`StageSums::phase`].
    pub phase: u32,
    /// The unit of every figure, `ns`.
    pub unit: String,
    /// Iterations measured.
    pub n: u64,
    /// Fastest iteration.
    pub min: u64,
    /// Median iteration.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest iteration.
    pub max: u64,
    /// Mean iteration.
    pub mean: f64,
    /// The histogram, buckets in ascending order.
    pub hist: Vec<Bucket>,
}

/// The hypervisor's trace sums for one phase and one exit reason, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSums {
    /// The guest's phase number.
    pub phase: u32,
    /// The exit reason: `mmio`, `hvc`, `irq`, `wfi`, ...
    pub reason: String,
    /// Exits traced.
    pub exits: u64,
    /// Segment name (one of [`SEGMENTS`]) and its total ns over all exits, in stage order.
    pub ns: Vec<(String, u64)>,
}

/// One QEMU run of the benchmark guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// What ran the guest.
    pub side: Side,
    /// How time was kept.
    pub clock: Clock,
    /// Whether the hypervisor traced its stages (always false on plain QEMU).
    pub trace: bool,
    /// The paths the guest measured, in the order it reported them.
    pub paths: Vec<Path>,
    /// The hypervisor's stage sums, by phase then reason.
    pub stages: Vec<StageSums>,
    /// Why the run produced nothing, e.g. `QEMU timed out`.
    pub error: Option<String>,
}

/// One Linux guest run's figures; `None` where the run did not report one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinuxRow {
    /// What ran, e.g. `Sluice, -icount shift=0`.
    pub label: String,
    /// Guest uptime when `/init` started, in seconds.
    pub boot_to_init_s: Option<f64>,
    /// MiB/s of `dd` from `/dev/vda`.
    pub read_mib_s: Option<f64>,
    /// MiB/s of `dd bs=1M iflag=direct` from `/dev/vda`.
    #[serde(default)]
    pub direct_mib_s: Option<f64>,
    /// Microseconds per 4 KiB direct read of `/dev/vda`.
    #[serde(default)]
    pub direct_read_us: Option<f64>,
}

/// Everything one `cargo xtask bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The benchmark guest's runs.
    pub runs: Vec<Run>,
    /// The Linux guest's runs.
    pub linux: Vec<LinuxRow>,
    /// The VM-to-VM channel's runs (Sluice only: plain QEMU has no equivalent).
    #[serde(default)]
    pub channel: Vec<Run>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!((Side::Sluice.label(), Side::Reference.label()), ("Sluice", "plain QEMU"));
        assert_eq!((Clock::Wall.label(), Clock::Icount.label()), ("wall clock", "-icount shift=0"));
        assert_eq!((Clock::Wall.slug(), Clock::Icount.slug()), ("wall", "icount"));
    }

    #[test]
    fn stage_sums_round_trip_through_json() {
        let s = StageSums { phase: 3, reason: "mmio".into(), exits: 2, ns: vec![("decode".into(), 7)] };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"phase":3,"reason":"mmio","exits":2,"ns":[["decode",7]]}"#);
        assert_eq!(serde_json::from_str::<StageSums>(&json).unwrap(), s);
    }
}
