//! Each CPU's life after boot: run its vCPU, handle its traps and physical
//! interrupts, idle while its vCPU is off, and stop, restart or power off VMs.
//!
//! A VM has no lock of its own: an exit locks only what it touches (the device an
//! MMIO access reaches, the vGIC, the vCPUs' power states), one at a time, and never
//! while it sleeps; the exits that need only the trapping CPU (the null hypercall,
//! ID register reads) take no lock at all. Work for another CPU (a new pending
//! interrupt, a `CPU_ON`, a stop) is left in the VM's state and signalled with the
//! kick SGI, which makes that CPU exit and look; the kicks an exit causes are a
//! value it returns (`vgic::VgicSession::finish`).
//!
//! | module | what |
//! | --- | --- |
//! | [`machine`] | what the CPUs share: the VMs, the GIC, how each VM ended |
//! | [`kicks`] | making another CPU exit its guest |
//! | [`power`] | powering the machine off, and fatal errors |
//! | [`console_input`] | typed input handed to the VM in focus |
//! | [`channels`] | transfers between VMs' joined consoles |
//! | [`interrupts`] | physical interrupts at EL2, and the list registers |
//! | [`cpu`] | a CPU's loop: start its vCPU, idle, park |
//! | [`lifecycle`] | stopping and restarting a VM |
//! | [`exit`] | the trap path: every exit from a guest |

mod channels;
mod console_input;
mod cpu;
mod exit;
mod host_disks;
mod interrupts;
mod kicks;
mod lifecycle;
mod machine;
mod power;

pub use cpu::{cpu_main, current_vm};
pub use machine::{HostCpu, Machine, CLEAN, ENDS, FAILED, MACHINE, RUNNING};
pub use power::{fatal, power_off_if_done};
