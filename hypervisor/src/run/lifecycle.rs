//! Stopping and restarting a VM: its other vCPUs told to leave, its statistics and
//! trace printed, how it ended recorded.

use super::kicks::send_kicks;
use super::machine::{cpus_of, lock_vm, machine, vm_ended, CLEAN, ENDS, FAILED};
use super::power::power_off_if_done;
use crate::arch::aarch64::el2;
use crate::guest_log;
use crate::logger;
use crate::trace;
use crate::vm::stats::ExitStats;
use crate::vm::vcpu::VcpuPower;
use crate::vm::Vm;
use alloc::string::String;
use core::sync::atomic::Ordering;
use log::{error, info};
use spin::MutexGuard;

/// Prints the VM's trace as JSON lines: the sums of each of its CPUs, and up to
/// `exits` of each one's most recent exits.
pub(super) fn dump_trace(vm: &Vm, exits: usize) {
    let Some(t) = trace::tracer() else { return };
    let hz = machine().counter_hz;
    let mut text = String::new();
    for cpu in cpus_of(vm.index) {
        let Some(trace) = t.cpu(cpu) else { continue };
        let _ = trace::json::write_stages(&mut text, vm.name(), cpu, trace.sums(), hz);
        trace.ring().recent(exits, |record| {
            let _ = trace::json::write_exit(&mut text, vm.name(), cpu, &record, hz);
        });
    }
    logger::print(format_args!("{text}"));
}

/// Makes every other vCPU of the VM leave the guest and waits until they have.
pub(super) fn stop_other_vcpus(vm: &mut MutexGuard<'_, Vm>, vcpu: usize) {
    for other in 0..vm.vcpus.len() {
        if other != vcpu && vm.vcpus[other] != VcpuPower::Off {
            vm.vcpus[other] = VcpuPower::Stopping;
            vm.kick(1 << other);
        }
    }
    send_kicks(vm, Some(vcpu));
}

/// Restarts a VM from its images (PSCI `SYSTEM_RESET` on `vcpu`, which has told the
/// other vCPUs to leave): waits until they have, then reloads the VM and starts vCPU
/// 0 again. False if the VM ended instead (it stopped meanwhile, or reloading it
/// failed): the caller parks its CPU.
pub(super) fn restart_vm(vm_index: usize, vcpu: usize) -> bool {
    loop {
        // Neither sleeping nor reloading with another vCPU still in the guest.
        let mut vm = lock_vm(vm_index);
        if vm_ended(vm_index) {
            return false;
        }
        if vm.vcpus.iter().all(|p| *p == VcpuPower::Off) {
            match vm.load() {
                Ok(()) => {
                    vm.kick(1);
                    send_kicks(&mut vm, None);
                    return true;
                }
                Err(e) => {
                    error!("vm \"{}\" stopped: reloading it failed: {e}", vm.name());
                    stop_vm(vm, vcpu, FAILED);
                    return false;
                }
            }
        }
        drop(vm);
        <el2::Yield as spin::relax::RelaxStrategy>::relax();
    }
}

/// Stops the VM `vcpu` belongs to: its other vCPUs leave the guest, its statistics
/// are printed, how it ended is recorded; powers the machine off if it was the last
/// VM. The caller then parks its CPU.
pub(super) fn stop_vm(mut vm: MutexGuard<'_, Vm>, vcpu: usize, end: u8) {
    logger::flush_vm_output(vm.index);
    if end == CLEAN {
        info!("vm \"{}\" powered off", vm.name());
    }
    vm.vcpus[vcpu] = VcpuPower::Off;
    stop_other_vcpus(&mut vm, vcpu);
    // One print, so another CPU's output can't split the table.
    let mut report = String::new();
    let _ = exit_stats(vm.index).write_report(&mut report, vm.name(), machine().counter_hz);
    if let Some(log) = guest_log::installed() {
        let suppressed = log.suppressed_total(vm.index);
        if suppressed.iter().any(|&n| n > 0) {
            report += "  log lines suppressed: ";
            let _ = guest_log::write_counts(&mut report, &suppressed);
            report += "\n";
        }
    }
    logger::print(format_args!("{report}"));
    dump_trace(&vm, 0);
    // Recorded only now, so the machine can't power off under the report.
    ENDS[vm.index].store(end, Ordering::SeqCst);
    drop(vm);
    power_off_if_done();
}

/// The VM's exit statistics, from the trace sums of its CPUs.
fn exit_stats(vm_index: usize) -> ExitStats {
    let mut stats = ExitStats::new();
    if let Some(t) = trace::tracer() {
        cpus_of(vm_index).filter_map(|cpu| t.cpu(cpu)).for_each(|c| c.sums().add_to_exit_stats(&mut stats));
    }
    stats
}
