//! The CPU's performance monitors (PMUv3) as a guest at EL1 uses them: the cycle
//! counter and the first event counters, their event types and filters, overflow
//! flags and interrupt enables (Arm ARM D12). Every register is the guest's own
//! when its hypervisor passes the PMU through.
#![allow(unsafe_code)]

use core::arch::asm;

/// INST_RETIRED: instructions architecturally executed.
pub const INST_RETIRED: u64 = 0x08;
/// CPU_CYCLES.
pub const CPU_CYCLES: u64 = 0x11;
/// PMEVTYPER<n>_EL0 / PMCCFILTR_EL0.NSH: count at EL2 too (if allowed).
pub const COUNT_EL2: u64 = 1 << 27;
/// The cycle counter's bit in the enable, interrupt and overflow sets.
pub const CYCLE_COUNTER: u32 = 31;
/// The PMU's overflow interrupt on QEMU virt (PPI 7).
pub const OVERFLOW_INTID: u32 = 23;

/// PMCR_EL0 bits.
pub mod pmcr {
    /// Enable.
    pub const E: u64 = 1 << 0;
    /// Reset the event counters.
    pub const P: u64 = 1 << 1;
    /// Reset the cycle counter.
    pub const C: u64 = 1 << 2;
}

macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading a PMU register has no side effects.
        unsafe { asm!(concat!("isb\nmrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}

macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: the PMU's registers only count; writing them touches no memory.
        unsafe { asm!(concat!("msr ", $name, ", {}\nisb"), in(reg) value, options(nomem, nostack, preserves_flags)) };
    }};
}

/// The PMUv3 version ID_AA64DFR0_EL1.PMUVer gives (0: none, 0xf: not PMUv3).
pub fn version() -> u64 {
    (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf
}

/// PMCR_EL0.
pub fn control() -> u64 {
    read_sysreg!("pmcr_el0")
}

/// Writes PMCR_EL0.
pub fn set_control(value: u64) {
    write_sysreg!("pmcr_el0", value);
}

/// Number of event counters (PMCR_EL0.N).
pub fn counters() -> u32 {
    ((control() >> 11) & 0x1f) as u32
}

/// Whether the CPU counts common event `event` (below 0x20: PMCEID0_EL0).
pub fn implements(event: u64) -> bool {
    event < 32 && read_sysreg!("pmceid0_el0") & (1 << event) != 0
}

/// Selects event counter `n` for [`set_event`] and [`set_count`] (PMSELR_EL0).
fn select(n: u32) {
    write_sysreg!("pmselr_el0", u64::from(n));
}

/// Makes event counter `n` count `event_and_filter` (PMEVTYPER<n>_EL0, through
/// PMXEVTYPER_EL0).
pub fn set_event(n: u32, event_and_filter: u64) {
    select(n);
    write_sysreg!("pmxevtyper_el0", event_and_filter);
}

/// Event counter `n`'s type and filter.
pub fn event(n: u32) -> u64 {
    select(n);
    read_sysreg!("pmxevtyper_el0")
}

/// Sets event counter `n` (PMEVCNTR<n>_EL0, through PMXEVCNTR_EL0).
pub fn set_count(n: u32, value: u64) {
    select(n);
    write_sysreg!("pmxevcntr_el0", value);
}

/// Event counter `n`.
pub fn count(n: u32) -> u64 {
    select(n);
    read_sysreg!("pmxevcntr_el0")
}

/// The cycle counter (PMCCNTR_EL0).
pub fn cycles() -> u64 {
    read_sysreg!("pmccntr_el0")
}

/// The cycle counter's filter (PMCCFILTR_EL0).
pub fn set_cycle_filter(filter: u64) {
    write_sysreg!("pmccfiltr_el0", filter);
}

/// The cycle counter's filter.
pub fn cycle_filter() -> u64 {
    read_sysreg!("pmccfiltr_el0")
}

/// Starts the counters in `mask` (PMCNTENSET_EL0).
pub fn enable(mask: u32) {
    write_sysreg!("pmcntenset_el0", u64::from(mask));
}

/// Stops the counters in `mask` (PMCNTENCLR_EL0).
pub fn disable(mask: u32) {
    write_sysreg!("pmcntenclr_el0", u64::from(mask));
}

/// The counters that run.
pub fn enabled() -> u32 {
    read_sysreg!("pmcntenset_el0") as u32
}

/// Lets the counters in `mask` interrupt on overflow (PMINTENSET_EL1).
pub fn enable_interrupts(mask: u32) {
    write_sysreg!("pmintenset_el1", u64::from(mask));
}

/// Stops the counters in `mask` interrupting (PMINTENCLR_EL1).
pub fn disable_interrupts(mask: u32) {
    write_sysreg!("pmintenclr_el1", u64::from(mask));
}

/// The counters that may interrupt.
pub fn interrupts_enabled() -> u32 {
    read_sysreg!("pmintenset_el1") as u32
}

/// The counters that overflowed (PMOVSSET_EL0).
pub fn overflowed() -> u32 {
    read_sysreg!("pmovsset_el0") as u32
}

/// Clears the overflow flags in `mask` (PMOVSCLR_EL0).
pub fn clear_overflow(mask: u32) {
    write_sysreg!("pmovsclr_el0", u64::from(mask));
}

/// PMUSERENR_EL0.
pub fn user_access() -> u64 {
    read_sysreg!("pmuserenr_el0")
}

/// What event counter `n` and the cycle counter count while `f` runs:
/// `(events, cycles)`.
pub fn around(n: u32, f: impl FnOnce()) -> (u64, u64) {
    let (e0, c0) = (count(n), cycles());
    f();
    let (e1, c1) = (count(n), cycles());
    (e1.wrapping_sub(e0) & 0xffff_ffff, c1.wrapping_sub(c0))
}

/// Runs `2 * n + 1` instructions: a count-down loop of two instructions a turn.
#[inline(always)]
pub fn known_loop(n: u64) {
    // SAFETY: only counts a register down.
    unsafe { asm!("2:", "subs {n}, {n}, #1", "b.ne 2b", n = inout(reg) n => _, options(nomem, nostack)) };
}
