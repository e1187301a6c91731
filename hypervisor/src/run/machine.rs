//! What the CPUs share, set up once by the boot CPU, and how each VM ended.

use crate::drivers::gicv3::Gic;
use crate::drivers::host_disks::HostDiskIrq;
use crate::trace::CpuTrace;
use crate::vm::Vm;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};
use platform::bundle::MAX_VMS;
use spin::Once;

/// Everything the CPUs share, set up once by the boot CPU.
pub struct Machine {
    /// The VMs by index; `None` for a VM that was refused. Each VM locks its own
    /// parts (see [`Vm`]).
    pub vms: Vec<Option<Vm>>,
    /// Counter frequency, for reports.
    pub counter_hz: u64,
    /// The host CPUs, by index in the host DTB's `/cpus`.
    pub cpus: Vec<HostCpu>,
    /// Whether the trace is detailed (every stage stamped, the rings written).
    pub detailed_trace: bool,
    /// The host GIC.
    pub gic: Gic,
    /// List registers per CPU.
    pub list_registers: usize,
    /// The host UART's interrupt, taken by CPU 0.
    pub uart_intid: Option<u32>,
    /// The host disks' interrupts, each taken by the first CPU of the VM it serves.
    pub host_disk_irqs: Vec<HostDiskIrq>,
}

/// What Sluice keeps per host CPU: everything the trap path needs to know about
/// the CPU it runs on, in one place.
pub struct HostCpu {
    /// Its MPIDR_EL1 (for SGIs and the GIC's redistributor).
    pub mpidr: u64,
    /// What it runs: (VM index, vCPU index); `None` for a CPU left idle.
    pub slot: Option<(usize, usize)>,
    /// Its trace.
    pub trace: &'static CpuTrace,
}

/// The machine, once booted.
pub static MACHINE: Once<Machine> = Once::new();

/// How each VM ended.
pub static ENDS: [AtomicU8; MAX_VMS] = [const { AtomicU8::new(RUNNING) }; MAX_VMS];

/// Running, or not started yet.
pub const RUNNING: u8 = 0;

/// Powered off by the guest.
pub const CLEAN: u8 = 1;

/// Stopped by a fault, or refused.
pub const FAILED: u8 = 2;

pub(super) fn machine() -> &'static Machine {
    MACHINE.get().expect("CPUs run only after boot")
}

/// VM `index`, which was built (a CPU only runs a VM that was).
pub(super) fn vm(index: usize) -> &'static Vm {
    machine().vms[index].as_ref().expect("a CPU only runs a VM that was built")
}

pub(super) fn vm_ended(index: usize) -> bool {
    ENDS[index].load(Ordering::SeqCst) != RUNNING
}

/// The CPUs that run VM `vm_index`'s vCPUs.
pub(super) fn cpus_of(vm_index: usize) -> impl Iterator<Item = usize> {
    let cpus = &machine().cpus;
    (0..cpus.len()).filter(move |&cpu| cpus[cpu].slot.is_some_and(|(vm, _)| vm == vm_index))
}
