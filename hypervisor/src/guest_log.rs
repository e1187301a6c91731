//! Log lines a guest can cause, rate-limited per VM and per kind.
//!
//! A guest decides how often it makes an unknown hypercall, touches an address it
//! has no device at, or hands a device a bad ring; each of those is worth a line, but
//! a guest doing it in a loop must not flood the shared console (which every VM and
//! Sluice print on) or spend Sluice's time formatting. So every such line goes
//! through [`guest_log!`], which lets [`BURST`] lines of each [`Kind`] through per
//! VM in each [`WINDOW_MS`] window and counts the rest. The count is said when the
//! burst is over: with the first line let through in a later window, when the VM
//! goes idle after the window has passed ([`GuestLog::report_quiet`]), and in the
//! VM's exit statistics ([`GuestLog::suppressed_total`]).
//!
//! A suppressed line costs a counter read and a few atomic operations: it is never
//! formatted. The state is in atomics, per VM and kind, so any CPU of a VM may log
//! without a lock. The VM a line is about is the one that owns the CPU it is logged
//! on (partitioning gives each CPU to one VM), which is how device models deep in
//! the trap path log without knowing their VM.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use platform::bundle::MAX_VMS;
use spin::Once;

/// Lines of one kind a VM may cause per window.
pub const BURST: u32 = 10;
/// The window, in milliseconds.
pub const WINDOW_MS: u64 = 1000;

/// What a guest-caused line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Hypercalls and SMCCC calls Sluice doesn't offer, or malformed ones.
    Hypercall,
    /// PSCI calls with bad arguments.
    Psci,
    /// Loads and stores Sluice refused (no device there, no syndrome, bad widths).
    Mmio,
    /// Exceptions Sluice gave back to the guest (aborts, undefined instructions).
    Fault,
    /// Virtio devices: bad rings, descriptors and register use.
    Virtio,
    /// The virtual GIC: bad register use.
    Gic,
    /// The emulated PL011: bad register use.
    Uart,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] =
        [Self::Hypercall, Self::Psci, Self::Mmio, Self::Fault, Self::Virtio, Self::Gic, Self::Uart];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hypercall => "hypercall",
            Self::Psci => "psci",
            Self::Mmio => "mmio",
            Self::Fault => "fault",
            Self::Virtio => "virtio",
            Self::Gic => "gic",
            Self::Uart => "uart",
        }
    }
}

const KINDS: usize = Kind::ALL.len();

/// One VM's allowance for one kind of line.
struct Bucket {
    /// Counter value at the start of the current window.
    window_start: AtomicU64,
    /// Lines let through in the current window (may run a little past [`BURST`] when
    /// CPUs race).
    let_through: AtomicU32,
    /// Lines suppressed since the machine started.
    total: AtomicU64,
    /// What `total` was when the count was last said.
    said: AtomicU64,
}

impl Bucket {
    const fn new() -> Self {
        Self {
            window_start: AtomicU64::new(0),
            let_through: AtomicU32::new(0),
            total: AtomicU64::new(0),
            said: AtomicU64::new(0),
        }
    }

    /// Starts a new window at `now` if the current one is over; returns the
    /// suppressed count not said yet if this call started it.
    fn roll(&self, now: u64, window: u64) -> Option<u64> {
        let start = self.window_start.load(Ordering::Acquire);
        if now.wrapping_sub(start) < window {
            return None;
        }
        // One CPU wins the new window; the others see it started.
        self.window_start.compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire).ok()?;
        self.let_through.store(0, Ordering::Release);
        Some(self.take_unsaid())
    }

    /// The lines suppressed since the count was last said, which are said now.
    fn take_unsaid(&self) -> u64 {
        let total = self.total.load(Ordering::Acquire);
        total - self.said.swap(total, Ordering::AcqRel).min(total)
    }

    /// Whether lines were suppressed that were not said yet.
    fn has_unsaid(&self) -> bool {
        self.total.load(Ordering::Acquire) != self.said.load(Ordering::Acquire)
    }
}

/// Whether a line may be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; `suppressed` lines of its kind were dropped before it and not said yet.
    Print {
        /// Lines dropped since the count was last said.
        suppressed: u64,
    },
    /// Drop it (counted).
    Drop,
}

/// The allowances of every VM, and what the global entry points need.
pub struct GuestLog {
    buckets: [[Bucket; KINDS]; MAX_VMS],
    /// Counter ticks per window.
    window: u64,
    names: Vec<String>,
    clock: fn() -> u64,
    current_vm: fn() -> Option<usize>,
}

impl GuestLog {
    /// Allowances for VMs called `names` (index = VM index), whose windows are
    /// [`WINDOW_MS`] of a counter running at `counter_hz`, read by `clock`; lines are
    /// about the VM `current_vm` says owns the calling CPU.
    pub fn new(
        names: Vec<String>,
        counter_hz: u64,
        clock: fn() -> u64,
        current_vm: fn() -> Option<usize>,
    ) -> Self {
        Self {
            buckets: [const { [const { Bucket::new() }; KINDS] }; MAX_VMS],
            window: (counter_hz / 1000).saturating_mul(WINDOW_MS).max(1),
            names,
            clock,
            current_vm,
        }
    }

    /// Whether VM `vm` may print a line of `kind` at counter value `now`.
    pub fn admit(&self, vm: usize, kind: Kind, now: u64) -> Verdict {
        let Some(bucket) = self.bucket(vm, kind) else { return Verdict::Print { suppressed: 0 } };
        if let Some(suppressed) = bucket.roll(now, self.window) {
            bucket.let_through.fetch_add(1, Ordering::AcqRel);
            return Verdict::Print { suppressed };
        }
        // A flood only reads `let_through`: the one write it costs is the count.
        if bucket.let_through.load(Ordering::Acquire) < BURST
            && bucket.let_through.fetch_add(1, Ordering::AcqRel) < BURST
        {
            return Verdict::Print { suppressed: 0 };
        }
        bucket.total.fetch_add(1, Ordering::AcqRel);
        Verdict::Drop
    }

    /// The suppressed counts of VM `vm` whose window is over at `now` and that were
    /// not said yet, by kind; taking them starts a new window each.
    pub fn take_quiet(&self, vm: usize, now: u64) -> [u64; KINDS] {
        let mut quiet = [0; KINDS];
        for (i, &kind) in Kind::ALL.iter().enumerate() {
            let Some(bucket) = self.bucket(vm, kind) else { continue };
            if bucket.has_unsaid() {
                quiet[i] = bucket.roll(now, self.window).unwrap_or(0);
            }
        }
        quiet
    }

    /// Lines of each kind VM `vm` had suppressed since the machine started.
    pub fn suppressed_total(&self, vm: usize) -> [u64; KINDS] {
        let mut totals = [0; KINDS];
        for (i, &kind) in Kind::ALL.iter().enumerate() {
            totals[i] = self.bucket(vm, kind).map_or(0, |b| b.total.load(Ordering::Acquire));
        }
        totals
    }

    /// VM `vm`'s name, for the lines' `vm "name": ` prefix.
    pub fn name(&self, vm: usize) -> &str {
        self.names.get(vm).map_or("?", String::as_str)
    }

    fn bucket(&self, vm: usize, kind: Kind) -> Option<&Bucket> {
        self.buckets.get(vm).map(|kinds| &kinds[kind as usize])
    }
}

/// The suppressed counts in `counts` (by kind, [`Kind::ALL`] order) as
/// `hypercall 65526, mmio 3`; empty when all are zero.
pub fn write_counts(out: &mut impl Write, counts: &[u64; KINDS]) -> fmt::Result {
    let mut first = true;
    for (kind, &count) in Kind::ALL.iter().zip(counts).filter(|(_, &c)| c > 0) {
        write!(out, "{}{} {count}", if first { "" } else { ", " }, kind.name())?;
        first = false;
    }
    Ok(())
}

static GUEST_LOG: Once<GuestLog> = Once::new();

/// Sets the machine's guest log up (once; later calls change nothing).
pub fn install(log: GuestLog) -> &'static GuestLog {
    GUEST_LOG.call_once(|| log)
}

/// The machine's guest log, once installed.
pub fn installed() -> Option<&'static GuestLog> {
    GUEST_LOG.get()
}

/// Logs a line of `kind` at `level` about the VM that owns this CPU, if its
/// allowance lets it through, prefixed `vm "name": ` (and said to follow suppressed
/// ones if so). Before [`install`] (host tests) or outside a VM's CPU, logs it as is.
/// Use [`guest_log!`], which checks the level before anything else (against
/// `log::max_level`, the one filter Sluice's logger has, without calling into it).
pub fn log(kind: Kind, level: log::Level, args: fmt::Arguments<'_>) {
    let Some((g, vm)) = GUEST_LOG.get().and_then(|g| Some((g, (g.current_vm)()?))) else {
        log::log!(level, "{args}");
        return;
    };
    match g.admit(vm, kind, (g.clock)()) {
        Verdict::Drop => {}
        Verdict::Print { suppressed } => {
            if suppressed > 0 {
                log::log!(level, "vm \"{}\": {suppressed} more {} lines suppressed", g.name(vm), kind.name());
            }
            log::log!(level, "vm \"{}\": {args}", g.name(vm));
        }
    }
}

/// Says the suppressed counts of VM `vm` whose burst is over (call it when the VM
/// goes idle or stops).
pub fn report_quiet(vm: usize) {
    let Some(g) = GUEST_LOG.get() else { return };
    let quiet = g.take_quiet(vm, (g.clock)());
    if quiet.iter().any(|&n| n > 0) {
        let mut text = String::new();
        let _ = write_counts(&mut text, &quiet);
        log::warn!("vm \"{}\": log lines suppressed: {text}", g.name(vm));
    }
}

/// Logs a line a guest caused, rate-limited (see the module): `guest_log!(Kind::Mmio,
/// Warn, "...", args)`. The VM's name is added in front.
#[macro_export]
macro_rules! guest_log {
    ($kind:expr, $level:ident, $($arg:tt)+) => {
        if log::Level::$level <= log::max_level() {
            $crate::guest_log::log($kind, log::Level::$level, format_args!($($arg)+));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const HZ: u64 = 1_000_000;
    const WINDOW: u64 = HZ / 1000 * WINDOW_MS;

    fn log() -> GuestLog {
        GuestLog::new(vec!["a".to_string(), "b".to_string()], HZ, || 0, || Some(0))
    }

    fn printed(verdicts: &[Verdict]) -> usize {
        verdicts.iter().filter(|v| matches!(v, Verdict::Print { .. })).count()
    }

    #[test]
    fn a_burst_goes_through_then_lines_are_counted() {
        let g = log();
        let now = WINDOW;
        let verdicts: Vec<Verdict> = (0..65_536).map(|_| g.admit(0, Kind::Hypercall, now)).collect();
        assert_eq!(printed(&verdicts), BURST as usize);
        assert_eq!(verdicts[0], Verdict::Print { suppressed: 0 });
        assert_eq!(g.suppressed_total(0)[0], 65_536 - u64::from(BURST));
        // The next window's first line says how many were dropped.
        assert_eq!(g.admit(0, Kind::Hypercall, 2 * WINDOW), Verdict::Print { suppressed: 65_526 });
        assert_eq!(g.admit(0, Kind::Hypercall, 2 * WINDOW + 1), Verdict::Print { suppressed: 0 });
        assert_eq!(g.suppressed_total(0)[0], 65_526, "the total stays");
    }

    #[test]
    fn vms_and_kinds_have_their_own_allowance() {
        let g = log();
        let now = WINDOW;
        for _ in 0..100 {
            g.admit(0, Kind::Mmio, now);
        }
        assert_eq!(g.admit(0, Kind::Mmio, now), Verdict::Drop);
        assert_eq!(g.admit(0, Kind::Virtio, now), Verdict::Print { suppressed: 0 });
        assert_eq!(g.admit(1, Kind::Mmio, now), Verdict::Print { suppressed: 0 });
        // A VM index beyond the table is never limited (and never panics).
        assert_eq!(g.admit(MAX_VMS, Kind::Mmio, now), Verdict::Print { suppressed: 0 });
    }

    #[test]
    fn the_count_is_said_once_the_burst_is_over() {
        let g = log();
        for _ in 0..15 {
            g.admit(1, Kind::Gic, WINDOW);
        }
        assert_eq!(g.take_quiet(1, WINDOW + 1), [0; KINDS], "still in the window");
        let quiet = g.take_quiet(1, 2 * WINDOW);
        assert_eq!(quiet[Kind::Gic as usize], 5);
        assert_eq!(g.take_quiet(1, 4 * WINDOW), [0; KINDS], "said once");
        let mut text = String::new();
        write_counts(&mut text, &quiet).unwrap();
        assert_eq!(text, "gic 5");
        let mut both = [0; KINDS];
        both[0] = 3;
        both[4] = 1;
        text.clear();
        write_counts(&mut text, &both).unwrap();
        assert_eq!(text, "hypercall 3, virtio 1");
    }

    #[test]
    fn cpus_of_one_vm_share_the_allowance_without_a_lock() {
        let g = std::sync::Arc::new(log());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let g = std::sync::Arc::clone(&g);
                std::thread::spawn(move || {
                    (0..10_000).filter(|_| g.admit(0, Kind::Psci, WINDOW) != Verdict::Drop).count()
                })
            })
            .collect();
        let printed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(printed, BURST as usize);
        assert_eq!(g.suppressed_total(0)[Kind::Psci as usize], 40_000 - u64::from(BURST));
    }

    #[test]
    fn a_counter_that_wraps_still_rolls_windows() {
        let g = log();
        for _ in 0..20 {
            g.admit(0, Kind::Uart, u64::MAX - 5);
        }
        assert_eq!(g.admit(0, Kind::Uart, WINDOW), Verdict::Print { suppressed: 10 });
    }
}
