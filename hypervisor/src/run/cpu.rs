//! A CPU's loop: wait for its vCPU to be started, prepare EL2 for it, enter the
//! guest; idle or park when there is nothing to run.

use super::interrupts::service_interrupts;
use super::kicks::KICK_SGI;
use super::machine::{machine, vm, vm_ended, MACHINE};
use super::power::fatal;
use crate::arch::aarch64::el2;
use crate::arch::aarch64::features::guest_features;
use crate::arch::aarch64::intid::{
    HYP_TIMER, LINKED_PPI_MASK, MAINTENANCE, PHYSICAL_TIMER, PMU_OVERFLOW, VIRTUAL_TIMER,
};
use crate::arch::aarch64::stacks::trap_stack_top;
use crate::arch::aarch64::trap_frame::TrapFrame;
use crate::arch::aarch64::vectors::enter_guest;
use crate::vm::vcpu::VcpuPower;
use crate::vm::Vm;

/// A CPU's life after its EL2 set-up: run the vCPU it is given, or idle.
pub fn cpu_main(cpu: usize) -> ! {
    let m = machine();
    el2::set_cpu_index(cpu);
    el2::init_cpu();
    let pmu = if guest_features().has_pmu() { 1 << PMU_OVERFLOW } else { 0 };
    let sgi_and_ppis = (1 << KICK_SGI)
        | (1 << MAINTENANCE)
        | (1 << VIRTUAL_TIMER)
        | (1 << PHYSICAL_TIMER)
        | pmu
        | (1 << HYP_TIMER);
    if m.gic.init_cpu(m.cpus[cpu].mpidr, sgi_and_ppis).is_none() {
        fatal(format_args!("no GIC redistributor for CPU {cpu}"));
    }
    let Some((vm, vcpu)) = m.cpus[cpu].slot else { park(cpu) };
    let frame = wait_for_start(cpu, vm, vcpu);
    // SAFETY: this CPU's trap stack is unused until now (we run on its boot stack),
    // and `wait_for_start` set EL2 up for the vCPU.
    #[allow(unsafe_code)]
    unsafe {
        enter_guest(trap_stack_top(cpu), &frame)
    }
}

/// The VM that owns the calling CPU, if any (for `guest_log`).
pub fn current_vm() -> Option<usize> {
    let m = MACHINE.get()?;
    m.cpus.get(el2::cpu_index()).and_then(|c| c.slot).map(|(vm, _)| vm)
}

/// Idles until vCPU `vcpu` of VM `vm` is started, then prepares EL2 for it and
/// returns its first frame. Parks the CPU for good if the VM ends meanwhile.
pub(super) fn wait_for_start(cpu: usize, vm_index: usize, vcpu: usize) -> TrapFrame {
    // No vCPU runs here now: whatever the last one left must not fire.
    quiesce(cpu);
    loop {
        if vm_ended(vm_index) {
            park(cpu);
        }
        {
            let vm = vm(vm_index);
            let mut power = vm.power().lock();
            match power.vcpus[vcpu] {
                VcpuPower::StartPending { entry, context } => {
                    power.vcpus[vcpu] = VcpuPower::On;
                    prepare_vcpu(cpu, vm, vcpu);
                    return TrapFrame::boot(entry, context);
                }
                VcpuPower::Stopping => power.vcpus[vcpu] = VcpuPower::Off,
                VcpuPower::Off | VcpuPower::On => {}
            }
        }
        idle_once(cpu);
    }
}

/// Leaves this CPU quiet after its vCPU stopped (the VM powered off, faulted or is
/// restarting, or the vCPU was turned off): the guest's EL1 timers and PMU off, the
/// virtual CPU interface off and empty, and their physical interrupts neither
/// pending nor active. Otherwise a stopped guest's armed timer would keep interrupting a CPU
/// nobody runs a guest on, burning a host thread, and under `-icount` (one thread runs
/// every CPU in turn) starving every other VM.
pub(super) fn quiesce(cpu: usize) {
    let m = machine();
    el2::quiesce_guest(m.list_registers);
    el2::disarm_hyp_timer();
    m.gic.clear_ppis(m.cpus[cpu].mpidr, LINKED_PPI_MASK);
}

/// Stops this CPU for good, quiet, still serving console input if it is the boot CPU.
pub(super) fn park(cpu: usize) -> ! {
    quiesce(cpu);
    loop {
        idle_once(cpu);
    }
}

/// Puts this CPU's EL1 (with the PMU, debug and tag state the guest owns) and
/// virtual GIC interface in their reset state for `vcpu` and points stage 2 at its
/// VM.
fn prepare_vcpu(cpu: usize, vm: &Vm, vcpu: usize) {
    let m = machine();
    el2::reset_el1_state();
    el2::reset_virtual_interface(m.list_registers);
    m.gic.deactivate_ppis(m.cpus[cpu].mpidr, LINKED_PPI_MASK);
    el2::switch_to_vm(vm.stage2_root(), vm.vmid, vcpu);
}

/// Sleeps until a physical interrupt is pending, then handles it (no vCPU runs).
fn idle_once(cpu: usize) {
    el2::wait_for_interrupt();
    service_interrupts(cpu, false);
}
