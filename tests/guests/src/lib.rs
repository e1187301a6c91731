//! The runtime of Sluice's bare-metal test guests.
//!
//! Each guest (`src/bin/`) is one raw arm64 `Image` that boots the same way under
//! Sluice and on plain `qemu-system-aarch64 -machine virt -kernel guest.bin`: the
//! loader puts it at RAM base + 0x20_0000 and passes the DTB address in `x0`. The
//! runtime brings the CPU to EL1 with the MMU off, installs an EL1 vector table that
//! can recover from faults a test provoked on purpose (`exceptions::expect_fault`),
//! and calls the guest's `main(dtb)` (see `entry!`). Everything a guest knows about
//! its machine comes from its DTB ([`dtb::BootInfo`]).
//!
//! For interrupts and several CPUs the runtime has a minimal GICv3 driver (`gic`),
//! per-INTID handlers (`irq`), the virtual timer (`timer`), PSCI CPU_ON of the other
//! CPUs (`smp`), spin locks and barriers (`sync`), a value shared with interrupt
//! handlers (`shared`) and interrupt-driven console input (`uart_rx`). For virtio,
//! `virtio` finds the `virtio,mmio` slots in the DTB and hands out their transports
//! and DMA memory for the `guest-drivers` front-ends.
//!
//! The parts that run only on the bare machine are `cfg(bare_metal)`; the decoding
//! and planning logic around them is plain code with host unit tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod blk_stress;
pub mod bootargs;
pub mod cpu;
pub mod disk_pattern;
pub mod dtb;
pub mod fault;
pub mod fuzz;
pub mod gic;
pub mod latency;
pub mod line;
pub mod memtest;
pub mod prng;
pub mod psci;
pub mod smccc;
pub mod smp;
pub mod sync;
pub mod timer;
pub mod uart_rx;
pub mod virtio;

#[cfg(bare_metal)]
mod boot;
#[cfg(bare_metal)]
pub mod debug;
#[cfg(bare_metal)]
pub mod el1_timer;
#[cfg(bare_metal)]
pub mod exceptions;
#[cfg(bare_metal)]
pub mod image;
#[cfg(bare_metal)]
pub mod irq;
#[cfg(bare_metal)]
pub mod mte;
#[cfg(bare_metal)]
mod panic;
#[cfg(bare_metal)]
pub mod pmu;
#[cfg(bare_metal)]
pub mod probe;
#[cfg(bare_metal)]
pub mod rtc;
#[cfg(bare_metal)]
pub mod shared;
#[cfg(bare_metal)]
pub mod uart;
