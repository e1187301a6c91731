//! Sluice's own hypercalls: SMCCC fast calls (SMC32) in the vendor-specific
//! hypervisor service range (owner 6, SMCCC 1.4 §6), made with `hvc #0`.
//!
//! | function      | x0            | x1                    | returns in x0           |
//! | ------------- | ------------- | --------------------- | ----------------------- |
//! | null          | `0x8600_0000` | -                     | 0                       |
//! | trace phase   | `0x8600_0001` | phase, 0 to 15        | 0, or -2 (invalid)      |
//! | trace dump    | `0x8600_0002` | most recent exits     | 0                       |
//!
//! `null` does nothing: its round trip is the floor of any trap. `trace phase` tags
//! the calling vCPU's later exits (0 = untagged; the call itself is untagged), so a
//! benchmark can read the per-stage breakdown of each path it measures. `trace
//! dump` prints the VM's trace (sums, then up to x1 of each vCPU's latest exits) as
//! JSON lines on the console. Elsewhere (plain QEMU, another hypervisor) the calls
//! return SMCCC's NOT_SUPPORTED (-1).

/// Does nothing and returns 0.
pub const NULL: u32 = 0x8600_0000;
/// Tags the calling vCPU's exits from the next one on with a phase (x1).
pub const TRACE_PHASE: u32 = 0x8600_0001;
/// Prints the VM's trace, with up to x1 recent exits per vCPU.
pub const TRACE_DUMP: u32 = 0x8600_0002;

/// Phases `TRACE_PHASE` accepts: 0 to `PHASES - 1`.
pub const PHASES: u64 = 32;

/// Most exits per vCPU `TRACE_DUMP` prints.
pub const MAX_DUMPED_EXITS: u64 = 1024;
