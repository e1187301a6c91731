//! Stopping and restarting a VM: its other vCPUs told to leave, its statistics and
//! trace printed, how it ended recorded.

use super::kicks::send_kicks;
use super::machine::{cpus_of, machine, vm, vm_ended, CLEAN, ENDS, FAILED};
use super::power::power_off_if_done;
use crate::guest_log;
use crate::logger;
use crate::sync::{self, LockGuard};
use crate::trace;
use crate::trace::stats::ExitStats;
use crate::vgic::Kick;
use crate::vm::vcpu::VcpuPower;
use crate::vm::{Power, Vm};
use alloc::string::String;
use core::fmt::Write;
use core::sync::atomic::Ordering;
use log::{error, info};

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

/// Makes every other vCPU of the VM leave the guest (their power states, in
/// `power`, say they are stopping); they are kicked once `power` is let go, as
/// `send_kicks` does with what this returns.
pub(super) fn stop_other_vcpus(power: &mut Power, vcpu: usize) -> Kick {
    let mut kicks = Kick::NONE;
    for other in 0..power.vcpus.len() {
        if other != vcpu && power.vcpus[other] != VcpuPower::Off {
            power.vcpus[other] = VcpuPower::Stopping;
            kicks |= Kick::vcpu(other);
        }
    }
    kicks
}

/// Restarts a VM from its images (PSCI `SYSTEM_RESET` on `vcpu`, which has told the
/// other vCPUs to leave): waits until they have, then reloads the VM and starts vCPU
/// 0 again. False if the VM ended instead (it stopped meanwhile, or reloading it
/// failed): the caller parks its CPU.
pub(super) fn restart_vm(vm_index: usize, vcpu: usize) -> bool {
    let vm = vm(vm_index);
    loop {
        // Neither sleeping nor reloading with another vCPU still in the guest.
        let mut power = vm.power().lock();
        if vm_ended(vm_index) {
            return false;
        }
        if power.vcpus.iter().all(|p| *p == VcpuPower::Off) {
            match vm.load(&mut power) {
                Ok(()) => {
                    drop(power);
                    send_kicks(vm, Kick::vcpu(0));
                    return true;
                }
                Err(e) => {
                    error!("vm \"{}\" stopped: reloading it failed: {e}", vm.name());
                    stop_vm(vm, power, vcpu, FAILED);
                    return false;
                }
            }
        }
        drop(power);
        sync::relax();
    }
}

/// Stops `vm`, whose power states `power` holds locked, from `vcpu`: its other
/// vCPUs leave the guest, its statistics are printed, how it ended is recorded;
/// powers the machine off if it was the last VM. The caller then parks its CPU.
pub(super) fn stop_vm(vm: &Vm, mut power: LockGuard<'_, Power>, vcpu: usize, end: u8) {
    logger::flush_vm_output(vm.index);
    if end == CLEAN {
        info!("vm \"{}\" powered off", vm.name());
    }
    power.vcpus[vcpu] = VcpuPower::Off;
    let kicks = stop_other_vcpus(&mut power, vcpu);
    send_kicks(vm, kicks);
    close_channels(vm);
    // One print, so another CPU's output can't split the table.
    let mut report = String::new();
    let _ = exit_stats(vm.index).write_report(&mut report, vm.name(), machine().counter_hz);
    for link in &vm.channels {
        let from = usize::from(link.ends()[1].0 == vm.index);
        let _ = writeln!(
            report,
            "  channel {:?}: {} bytes sent, {} received",
            link.name(),
            link.moved(from),
            link.moved(1 - from)
        );
    }
    if let Some(log) = guest_log::installed() {
        let suppressed = log.suppressed_total(vm.index);
        if suppressed.iter().any(|&n| n > 0) {
            report += "  log lines suppressed: ";
            let _ = guest_log::write_counts(&mut report, &suppressed);
            report += "\n";
        }
    }
    logger::print(format_args!("{report}"));
    dump_trace(vm, 0);
    // Recorded only now, so the machine can't power off under the report.
    ENDS[vm.index].store(end, Ordering::SeqCst);
    drop(power);
    power_off_if_done();
}

/// Resets the VM's ends of its channels: what it was sending is dropped (and
/// counted), and the other VMs see an end that is down, whose data waits, instead
/// of one whose posted buffers a stopped guest will never read.
fn close_channels(vm: &Vm) {
    for link in &vm.channels {
        let ends = link.ends().into_iter().filter(|&(index, _)| index == vm.index);
        for device in ends.filter_map(|(_, slot)| vm.devices.virtio_device(slot)) {
            device.lock().reset();
        }
    }
}

/// The VM's exit statistics, from the trace sums of its CPUs.
fn exit_stats(vm_index: usize) -> ExitStats {
    let mut stats = ExitStats::new();
    if let Some(t) = trace::tracer() {
        cpus_of(vm_index).filter_map(|cpu| t.cpu(cpu)).for_each(|c| c.sums().add_to_exit_stats(&mut stats));
    }
    stats
}
