//! Tracepoints on the trap path.
//!
//! Every exit from a guest is timestamped with the counter at up to eight
//! [`Stage`]s, from trap entry to the return to the guest. Each CPU keeps its own
//! [`CpuTrace`]: the exit being handled, a ring of the last exits ([`Ring`]) and
//! running sums per phase and exit reason ([`Sums`]), all in atomics written only by
//! that CPU, so recording takes no lock and allocates nothing, and any CPU can read
//! them for a dump. The per-VM exit statistics are read from the same sums.
//!
//! Tracing is switched at run time ([`install`]'s `detailed`): off, only the trap
//! entry and the return are stamped (what the exit statistics need), and the ring is
//! not written. A guest tags its exits with a phase (a Sluice hypercall, see
//! `platform::hypercall`) so a benchmark can tell its measured paths apart.
//!
//! The pure parts take timestamps as arguments and are tested on the host. The trap
//! path holds its CPU's [`CpuTrace`] and calls [`CpuTrace::begin_exit`] and
//! [`CpuTrace::finish_exit`] itself with the counter it read; the stages in
//! between, deep in the device models, go through [`point`], which reads the clock
//! and the CPU index through the functions given to [`install`], and does nothing
//! before it.

pub mod cpu;
pub mod json;
pub mod record;
pub mod ring;
pub mod stats;
pub mod sums;

pub use cpu::CpuTrace;
pub use record::{Record, Stage, SEGMENTS};
pub use ring::Ring;
pub use sums::Sums;

use alloc::vec::Vec;
use spin::Once;

/// Phases a guest can tag its exits with (0 is "untagged").
pub const MAX_PHASES: usize = platform::hypercall::PHASES as usize;

/// Exits each CPU's ring keeps.
pub const RING_RECORDS: usize = 1024;

/// The machine's tracer: one [`CpuTrace`] per CPU and how to read the clock.
pub struct Tracer {
    cpus: Vec<CpuTrace>,
    clock: fn() -> u64,
    this_cpu: fn() -> usize,
    detailed: bool,
}

impl Tracer {
    /// CPU `index`'s trace.
    pub fn cpu(&self, index: usize) -> Option<&CpuTrace> {
        self.cpus.get(index)
    }

    /// Whether every stage is stamped and the rings written.
    pub fn detailed(&self) -> bool {
        self.detailed
    }

    fn current(&self) -> &CpuTrace {
        &self.cpus[(self.this_cpu)()]
    }
}

static TRACER: Once<Tracer> = Once::new();

/// Sets tracing up for `cpus` CPUs (once; later calls change nothing). `clock`
/// reads the counter with the ordering the architecture requires, `this_cpu` gives
/// the calling CPU's index.
pub fn install(cpus: usize, detailed: bool, clock: fn() -> u64, this_cpu: fn() -> usize) -> &'static Tracer {
    TRACER.call_once(|| Tracer {
        cpus: (0..cpus).map(|_| CpuTrace::new(RING_RECORDS)).collect(),
        clock,
        this_cpu,
        detailed,
    })
}

/// The tracer, once installed.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// This CPU's exit reached `stage` (ignored when tracing is not detailed).
#[inline]
pub fn point(stage: Stage) {
    if let Some(t) = TRACER.get() {
        if t.detailed {
            t.current().stamp(stage, (t.clock)());
        }
    }
}

/// Tags this CPU's exits from the next one on with `phase`; false if out of range.
pub fn set_phase(phase: u64) -> bool {
    let Some(phase) = u8::try_from(phase).ok().filter(|&p| usize::from(p) < MAX_PHASES) else {
        return false;
    };
    if let Some(t) = TRACER.get() {
        t.current().set_phase(phase);
    }
    true
}

/// Counter ticks one tracepoint costs, measured by stamping `points` of them on a
/// scratch trace (the same code the trap path runs).
pub fn measure_point_cost(points: u32) -> Option<u64> {
    let t = TRACER.get()?;
    let scratch = CpuTrace::new(1);
    let start = (t.clock)();
    for _ in 0..points {
        scratch.stamp(Stage::Dispatched, (t.clock)());
    }
    let end = (t.clock)();
    Some((end - start) / u64::from(points.max(1)))
}
