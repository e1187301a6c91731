//! Per-VM exit statistics, in the spirit of Jailhouse's `jailhouse cell stats`.
//!
//! Every exit is counted, with the counter ticks it took, in its CPU's trace sums
//! (`crate::trace`: per-CPU atomics, no lock, no allocation); when a VM stops, the
//! sums of its CPUs are added into an [`ExitStats`] ([`ExitStats::add`]), and
//! [`ExitStats::write_report`] turns them into a table, converting ticks with the
//! counter frequency (CNTFRQ_EL0). [`ExitReason`] is the classification both use.

use core::fmt;

/// Why the guest exited to EL2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// A stage-2 data abort on an emulated device (MMIO emulation).
    Mmio,
    /// An `HVC` call (PSCI and hypervisor calls).
    Hvc,
    /// A trapped `SMC` call.
    Smc,
    /// A trapped `WFI` or `WFE`.
    Wfi,
    /// A trapped system register access.
    SysReg,
    /// A stage-2 instruction abort.
    InstructionAbort,
    /// A physical interrupt taken while the guest ran.
    Irq,
    /// Any other exception class.
    Other,
}

impl ExitReason {
    /// Every reason, in report order.
    pub const ALL: [ExitReason; 8] = [
        Self::Mmio,
        Self::Hvc,
        Self::Smc,
        Self::Wfi,
        Self::SysReg,
        Self::InstructionAbort,
        Self::Irq,
        Self::Other,
    ];

    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mmio => "mmio",
            Self::Hvc => "hvc",
            Self::Smc => "smc",
            Self::Wfi => "wfi",
            Self::SysReg => "sysreg",
            Self::InstructionAbort => "inst-abort",
            Self::Irq => "irq",
            Self::Other => "other",
        }
    }

    /// Position in [`ExitReason::ALL`] and in the counter arrays.
    const fn index(self) -> usize {
        self as usize
    }

    /// The reason at `index` in [`ExitReason::ALL`].
    pub fn from_index(index: u8) -> Option<Self> {
        Self::ALL.get(usize::from(index)).copied()
    }
}

/// Number of exit reasons.
const REASONS: usize = ExitReason::ALL.len();

/// Exit counts and handling time per [`ExitReason`] for one VM (or one vCPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStats {
    /// Exits per reason.
    counts: [u64; REASONS],
    /// Counter ticks spent handling exits, per reason.
    ticks: [u64; REASONS],
}

impl Default for ExitStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitStats {
    /// All counters at zero.
    pub const fn new() -> Self {
        Self { counts: [0; REASONS], ticks: [0; REASONS] }
    }

    /// Counts one exit for `reason` that took `ticks` counter ticks to handle.
    /// Counters saturate instead of wrapping.
    #[cfg(test)]
    pub fn record(&mut self, reason: ExitReason, ticks: u64) {
        self.add(reason, 1, ticks);
    }

    /// Adds `count` exits for `reason` that took `ticks` counter ticks together
    /// (saturating).
    pub fn add(&mut self, reason: ExitReason, count: u64, ticks: u64) {
        let i = reason.index();
        self.counts[i] = self.counts[i].saturating_add(count);
        self.ticks[i] = self.ticks[i].saturating_add(ticks);
    }

    /// Exits recorded for `reason`.
    pub fn count(&self, reason: ExitReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Counter ticks recorded for `reason`.
    pub fn ticks(&self, reason: ExitReason) -> u64 {
        self.ticks[reason.index()]
    }

    /// Exits recorded for all reasons (saturating).
    pub fn total_count(&self) -> u64 {
        self.counts.iter().fold(0, |sum, &c| sum.saturating_add(c))
    }

    /// Counter ticks recorded for all reasons (saturating).
    pub fn total_ticks(&self) -> u64 {
        self.ticks.iter().fold(0, |sum, &t| sum.saturating_add(t))
    }

    /// Sets every counter back to zero.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Writes the table, with time converted from counter ticks at `counter_hz`.
    ///
    /// A header line `vm "NAME" exit statistics:`, one row per reason that occurred
    /// (in [`ExitReason::ALL`] order), then a total row. Each row gives the count, the
    /// total handling time in microseconds (one decimal, rounded to nearest) and the
    /// average per exit in nanoseconds (rounded to nearest):
    ///
    /// ```text
    /// vm "linux" exit statistics:
    ///   mmio               3 exits          6.0 us total       2000 ns avg
    ///   total              3 exits          6.0 us total       2000 ns avg
    /// ```
    ///
    /// If `counter_hz` is zero (CNTFRQ_EL0 not set up), times are written as `n/a`.
    ///
    /// # Errors
    ///
    /// Whatever `out` returns.
    pub fn write_report(&self, out: &mut impl fmt::Write, vm_name: &str, counter_hz: u64) -> fmt::Result {
        writeln!(out, "vm \"{vm_name}\" exit statistics:")?;
        for reason in ExitReason::ALL {
            let count = self.count(reason);
            if count != 0 {
                write_row(out, reason.name(), count, self.ticks(reason), counter_hz)?;
            }
        }
        write_row(out, "total", self.total_count(), self.total_ticks(), counter_hz)
    }
}

/// Writes one report row.
fn write_row(out: &mut impl fmt::Write, label: &str, count: u64, ticks: u64, counter_hz: u64) -> fmt::Result {
    write!(out, "  {label:<10} {count:>10} exits ")?;
    if counter_hz == 0 {
        return writeln!(out, "{:>12} us total {:>10} ns avg", "n/a", "n/a");
    }
    let tenths_us = div_round(u128::from(ticks) * 10_000_000, u128::from(counter_hz));
    let avg_ns = if count == 0 {
        0
    } else {
        div_round(u128::from(ticks) * 1_000_000_000, u128::from(count) * u128::from(counter_hz))
    };
    writeln!(out, "{:>10}.{} us total {avg_ns:>10} ns avg", tenths_us / 10, tenths_us % 10)
}

/// `n / d` rounded to nearest, for `d > 0`. `n` is at most `u64::MAX * 10^9`, so the
/// sum cannot overflow a u128.
fn div_round(n: u128, d: u128) -> u128 {
    (n + d / 2) / d
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    /// QEMU virt's counter frequency (62.5 MHz, 16 ns per tick).
    const QEMU_HZ: u64 = 62_500_000;

    #[test]
    fn counts_and_ticks_per_reason() {
        let mut s = ExitStats::new();
        s.record(ExitReason::Mmio, 100);
        s.record(ExitReason::Mmio, 50);
        s.record(ExitReason::Hvc, 7);
        assert_eq!((s.count(ExitReason::Mmio), s.ticks(ExitReason::Mmio)), (2, 150));
        assert_eq!((s.count(ExitReason::Hvc), s.ticks(ExitReason::Hvc)), (1, 7));
        assert_eq!((s.count(ExitReason::Irq), s.ticks(ExitReason::Irq)), (0, 0));
        assert_eq!((s.total_count(), s.total_ticks()), (3, 157));
        s.reset();
        assert_eq!(s, ExitStats::default());
    }

    #[test]
    fn all_lists_each_reason_once_in_index_order() {
        for (i, reason) in ExitReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let names: alloc::vec::Vec<_> = ExitReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["mmio", "hvc", "smc", "wfi", "sysreg", "inst-abort", "irq", "other"]);
    }

    #[test]
    fn report_text() {
        let mut s = ExitStats::new();
        // 3 MMIO exits, 375 ticks = 6 us, 2000 ns each.
        for _ in 0..3 {
            s.record(ExitReason::Mmio, 125);
        }
        // 1 WFI exit of 1 tick = 16 ns: 0.016 us rounds to 0.0.
        s.record(ExitReason::Wfi, 1);
        // 2 IRQs, 2_000_003 ticks = 32000.048 us, 16000024 ns each.
        s.record(ExitReason::Irq, 1_000_000);
        s.record(ExitReason::Irq, 1_000_003);
        let mut text = String::new();
        s.write_report(&mut text, "linux", QEMU_HZ).unwrap();
        let expected = "\
vm \"linux\" exit statistics:
  mmio                3 exits          6.0 us total       2000 ns avg
  wfi                 1 exits          0.0 us total         16 ns avg
  irq                 2 exits      32000.0 us total   16000024 ns avg
  total               6 exits      32006.1 us total    5334344 ns avg
";
        assert_eq!(text, expected);
    }

    #[test]
    fn report_rounds_to_nearest() {
        let mut s = ExitStats::new();
        // 1_000_000 Hz: 1 tick = 1 us. 3 exits over 5 ticks: 1666.67 ns avg.
        s.record(ExitReason::Smc, 2);
        s.record(ExitReason::Smc, 2);
        s.record(ExitReason::Smc, 1);
        let mut text = String::new();
        s.write_report(&mut text, "a", 1_000_000).unwrap();
        assert!(text.contains("  smc                 3 exits          5.0 us total       1667 ns avg\n"));
        // 0.05 us rounds up to 0.1.
        let mut s = ExitStats::new();
        s.record(ExitReason::Hvc, 1);
        let mut text = String::new();
        s.write_report(&mut text, "b", 20_000_000).unwrap();
        assert!(text.contains("  hvc                 1 exits          0.1 us total         50 ns avg\n"));
    }

    #[test]
    fn empty_report_has_header_and_total() {
        let mut text = String::new();
        ExitStats::new().write_report(&mut text, "idle", QEMU_HZ).unwrap();
        assert_eq!(
            text,
            "vm \"idle\" exit statistics:\n  total               0 exits          0.0 us total          0 ns avg\n"
        );
    }

    #[test]
    fn saturates_and_converts_huge_values() {
        let mut s = ExitStats::new();
        s.record(ExitReason::Other, u64::MAX);
        s.record(ExitReason::Other, u64::MAX);
        s.record(ExitReason::SysReg, 0);
        assert_eq!(s.ticks(ExitReason::Other), u64::MAX);
        let mut text = String::new();
        // 1 Hz: u64::MAX seconds, in tenths of us, needs more than 64 bits.
        s.write_report(&mut text, "big", 1).unwrap();
        assert!(text.contains("  other               2 exits 18446744073709551615000000.0 us total"));
    }

    #[test]
    fn zero_frequency_writes_na() {
        let mut s = ExitStats::new();
        s.record(ExitReason::Mmio, 10);
        let mut text = String::new();
        s.write_report(&mut text, "x", 0).unwrap();
        assert_eq!(
            text,
            "vm \"x\" exit statistics:\n  mmio                1 exits          n/a us total        n/a ns avg\n  total               1 exits          n/a us total        n/a ns avg\n"
        );
    }
}
