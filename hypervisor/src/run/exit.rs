//! The trap path: every exit from a guest, from the vector's call to the return.
//!
//! Three ways through, each touching only what it needs: exits that need nothing
//! but the vCPU's registers ([`handle_on_cpu`]), MMIO accesses (the device reached,
//! and the vGIC if that changes), and the rest ([`exit_with_vm`]: interrupts, power
//! calls, faults), which fold the list registers in and look at the vCPU's power
//! state.

use super::channels::serve_channels;
use super::console_input::refill_input;
use super::cpu::{park, wait_for_start};
use super::host_disks::take_host_disks;
use super::interrupts::{finish_maintenance, service_interrupts, Taken};
use super::kicks::send_kicks;
use super::lifecycle::{dump_trace, restart_vm, stop_other_vcpus, stop_vm};
use super::machine::{machine, vm, vm_ended, CLEAN, FAILED};
use super::power::fatal;
use crate::arch::aarch64::el2::{self, El1Cpu, ThisCpuInterface};
use crate::arch::aarch64::esr::{decode_data_abort, ec, exception_class, MmioAccess, Trap};
use crate::arch::aarch64::intid::LINKED_PPIS;
use crate::arch::aarch64::trap_frame::TrapFrame;
use crate::arch::aarch64::vectors::kind;
use crate::guest_log;
use crate::logger;
use crate::trace::stats::ExitReason;
use crate::trace::{self, CpuTrace, Stage};
use crate::vgic::VgicSession;
use crate::vm::trap::{self, handle_on_cpu, handle_with_vm, ExitAction, Syndrome};
use crate::vm::vcpu::VcpuPower;
use crate::vm::Vm;
use log::{error, info};

/// How long a guest runs between two budgets of its devices' left-over work: a
/// ten-thousandth of a second (the counter frequency divided by this).
const BACKLOG_SLICES_PER_SECOND: u64 = 10_000;

/// The same when all that work waits for the VM's share of the console: 2 ms,
/// time for 256 bytes of it.
const WAITING_SLICES_PER_SECOND: u64 = 500;

/// Handles a trap from the guest running on this CPU: the exception vectors
/// (`arch::aarch64::vectors`) call it by this name with the frame they saved.
#[allow(unsafe_code)]
// SAFETY (no_mangle): the name is Sluice's alone, and only the vector table calls it.
#[no_mangle]
pub extern "C" fn sluice_trap_from_guest(frame: &mut TrapFrame, trap_kind: u64) {
    let cpu = el2::cpu_index();
    let m = machine();
    let host = &m.cpus[cpu];
    let (vm_index, vcpu) = host.slot.expect("a guest runs only on a CPU given one");
    let exit = Exit { trace: host.trace, detailed: m.detailed_trace };
    exit.trace.begin_exit(el2::counter(), vm_index, vcpu, exit.detailed);
    let trap = if trap_kind == kind::SYNC {
        let (esr, far, hpfar) = el2::syndrome();
        let syndrome = Syndrome { esr, far, hpfar };
        // MMIO first, decoded straight from the syndrome: the commonest exit.
        if exception_class(esr) == ec::DABT_LOWER {
            if let Ok(access) = decode_data_abort(esr, far, hpfar) {
                exit.stamp(Stage::Decoded);
                let interface = ThisCpuInterface { list_registers: m.list_registers };
                mmio_exit(exit, vm(vm_index), vcpu, interface, frame, access, far);
                return;
            }
        }
        let trap = trap::decode(syndrome);
        exit.stamp(Stage::Decoded);
        if let Some((reason, action)) = handle_on_cpu(&trap, frame, &mut El1Cpu) {
            if let ExitAction::DumpTrace { exits } = action {
                dump_trace(vm(vm_index), exits.into());
            }
            exit.finish(reason);
            return;
        }
        Some((trap, syndrome))
    } else {
        None
    };
    exit_with_vm(cpu, exit, vm_index, vcpu, frame, trap_kind, trap);
}

/// The exit in progress on this CPU, for its trace.
#[derive(Clone, Copy)]
struct Exit {
    trace: &'static CpuTrace,
    detailed: bool,
}

impl Exit {
    /// The exit reached `stage` (stamped only when the trace is detailed).
    #[inline]
    fn stamp(self, stage: Stage) {
        if self.detailed {
            self.trace.stamp(stage, el2::counter());
        }
    }

    /// The exit is over: the guest is re-entered now.
    fn finish(self, reason: ExitReason) {
        self.trace.finish_exit(el2::counter(), reason, self.detailed);
    }
}

/// The vGIC session of the vCPU exiting on this CPU.
#[inline]
fn local_vgic(vm: &Vm, vcpu: usize) -> VgicSession<'_, ThisCpuInterface> {
    VgicSession::local(vm.devices.vgic(), vcpu, ThisCpuInterface { list_registers: machine().list_registers })
}

/// An emulated MMIO access: only the device it reaches is locked, and the vGIC
/// only if the access reads or changes it (a GIC register, an interrupt line that
/// moved). Anything the VM's other vCPUs must see comes to them with a kick; a vCPU
/// asked to stop meanwhile learns it from that kick, at its next exit.
#[inline(never)]
fn mmio_exit(
    exit: Exit,
    vm: &Vm,
    vcpu: usize,
    interface: ThisCpuInterface,
    frame: &mut TrapFrame,
    access: MmioAccess,
    far: u64,
) {
    let mut gic = VgicSession::local(vm.devices.vgic(), vcpu, interface);
    if vm.devices.has_backlog() {
        // One more budget of the work a notify left (devices::virtio::budget).
        vm.devices.work_on_backlog(&mut gic);
    }
    trap::mmio(vm, frame, &mut El1Cpu, access, far, &mut gic);
    if !vm.channels.is_empty() {
        serve_channels(vm, &mut gic);
    }
    if logger::has_queued_input(vm.index) {
        // The guest may have read its UART and made room.
        refill_input(vm, &mut gic);
    }
    if vm.devices.has_backlog() || vm.devices.rtc_alarm_due().is_some() || vm.channels_due() {
        arm_alarms(vm);
    }
    let kicks = gic.finish();
    trace::point(Stage::Injected);
    send_kicks(vm, kicks);
    exit.finish(ExitReason::Mmio);
}

/// Makes this CPU exit at the earliest of: a slice of guest time from now, for the
/// next budget of its devices' left-over work (the guest, other vCPUs and console
/// input get their turn in between, and the work goes on even if the guest never
/// exits by itself: a driver that spins on its used ring), or of a channel
/// transfer a budget cut short; the VM's RTC alarm.
/// Each of the VM's CPUs arms its own timer for the alarm, so whichever exits
/// first fires it, whatever the others do.
fn arm_alarms(vm: &Vm) {
    let backlog = (vm.devices.has_backlog() || vm.channels_due()).then(|| {
        let slices =
            if vm.devices.backlog_waits() { WAITING_SLICES_PER_SECOND } else { BACKLOG_SLICES_PER_SECOND };
        el2::counter() + machine().counter_hz / slices
    });
    let earliest = match (backlog, vm.devices.rtc_alarm_due()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(at) = earliest {
        el2::arm_hyp_timer_at(at);
    }
}

/// The rest of the exits: interrupts, and traps that read or change the VM's
/// vCPUs, power or memory.
#[inline(never)]
fn exit_with_vm(
    cpu: usize,
    exit: Exit,
    vm_index: usize,
    vcpu: usize,
    frame: &mut TrapFrame,
    trap_kind: u64,
    trap: Option<(Trap, Syndrome)>,
) {
    let is_interrupt = matches!(trap_kind, kind::IRQ | kind::FIQ);
    let taken = if is_interrupt { service_interrupts(cpu, true) } else { Taken::default() };
    let vm = vm(vm_index);
    let mut gic = local_vgic(vm, vcpu);
    gic.sync();
    if taken.host_disks != 0 {
        take_host_disks(taken.host_disks, vm, &mut gic);
    }
    // The `decode` segment of these exits includes the sync.
    exit.stamp(Stage::Decoded);
    if !still_running(vm, vcpu) {
        leave(cpu, exit, vm, vcpu, frame, gic, &taken, is_interrupt);
        return;
    }
    for intid in LINKED_PPIS {
        if taken.linked & (1 << intid) != 0 {
            gic.update(|v| v.raise_hw(vcpu, intid));
        }
    }
    if vm.devices.has_backlog() {
        // One more budget of the work a notify left (devices::virtio::budget).
        vm.devices.work_on_backlog(&mut gic);
    }
    if vm.devices.rtc_alarm_due().is_some_and(|due| el2::counter() >= due) {
        vm.devices.fire_rtc_alarm(&mut gic);
    }
    if !vm.channels.is_empty() {
        serve_channels(vm, &mut gic);
    }
    if is_interrupt && logger::has_queued_input(vm_index) {
        // Input queued for this VM (the kick that came with it).
        refill_input(vm, &mut gic);
    }
    let (reason, action) = match trap {
        Some((trap, syndrome)) => handle_with_vm(vm, vcpu, frame, &mut El1Cpu, trap, syndrome, &mut gic),
        None if trap_kind == kind::SERROR => {
            error!("vm \"{}\" stopped: SError (asynchronous abort) at pc {:#x}", vm.name(), frame.elr);
            (ExitReason::Other, ExitAction::Fault)
        }
        None => (ExitReason::Irq, ExitAction::Resume),
    };
    if let ExitAction::DumpTrace { exits } = action {
        dump_trace(vm, exits.into());
    }
    match action {
        ExitAction::Resume | ExitAction::WaitForInterrupt | ExitAction::DumpTrace { .. } => {
            if vm.devices.has_backlog() || vm.devices.rtc_alarm_due().is_some() || vm.channels_due() {
                arm_alarms(vm);
            }
            let kicks = gic.finish();
            trace::point(Stage::Injected);
            finish_maintenance(&taken);
            send_kicks(vm, kicks);
            exit.finish(reason);
            if action == ExitAction::WaitForInterrupt {
                logger::flush_vm_output(vm_index);
                guest_log::report_quiet(vm_index);
                // A pending physical interrupt (a kick, a timer) wakes us; back in the
                // guest it traps at once and is handled like any other.
                el2::wait_for_interrupt();
            }
        }
        ExitAction::VcpuOff | ExitAction::Reset | ExitAction::PowerOff | ExitAction::Fault => {
            exit.finish(reason);
            end_vcpu(cpu, vm, vcpu, frame, gic, &taken, action);
        }
    }
}

/// Whether the vCPU may go on: its VM runs, and nobody turned it off or told it to
/// stop (a reset or power-off from another vCPU).
fn still_running(vm: &Vm, vcpu: usize) -> bool {
    !vm_ended(vm.index) && vm.power().lock().vcpus[vcpu] == VcpuPower::On
}

/// The vCPU was asked to leave (the VM stops or restarts, or it was turned off):
/// it waits to be started again (`wait_for_start` turns a stopping vCPU off), or
/// its CPU parks if the VM ends.
#[allow(clippy::too_many_arguments)]
fn leave(
    cpu: usize,
    exit: Exit,
    vm: &Vm,
    vcpu: usize,
    frame: &mut TrapFrame,
    mut gic: VgicSession<'_, ThisCpuInterface>,
    taken: &Taken,
    is_interrupt: bool,
) {
    send_kicks(vm, gic.abandon());
    el2::disable_virtual_interface();
    finish_maintenance(taken);
    exit.finish(if is_interrupt { ExitReason::Irq } else { ExitReason::Other });
    *frame = wait_for_start(cpu, vm.index, vcpu);
}

/// The vCPU stops: it was turned off (PSCI `CPU_OFF`), or it resets, powers off or
/// faults its VM. Returns with a new frame when the vCPU is started again.
fn end_vcpu(
    cpu: usize,
    vm: &Vm,
    vcpu: usize,
    frame: &mut TrapFrame,
    mut gic: VgicSession<'_, ThisCpuInterface>,
    taken: &Taken,
    action: ExitAction,
) {
    el2::disable_virtual_interface();
    finish_maintenance(taken);
    let kicks = gic.abandon();
    let mut power = vm.power().lock();
    if vm_ended(vm.index) || power.vcpus[vcpu] != VcpuPower::On {
        // Another vCPU stopped or reset the VM first: that one is what happens, once
        // (and `wait_for_start` turns this stopping vCPU off).
        drop(power);
        send_kicks(vm, kicks);
        *frame = wait_for_start(cpu, vm.index, vcpu);
        return;
    }
    power.vcpus[vcpu] = VcpuPower::Off;
    match action {
        ExitAction::Reset => {
            info!("vm \"{}\": system reset", vm.name());
            // Every other vCPU is told to leave before the lock is let go: one that
            // asks for a reset (or a power-off) at the same moment finds itself
            // stopping when it gets the lock, so the VM restarts exactly once.
            let kicks = kicks | stop_other_vcpus(&mut power, vcpu);
            drop(power);
            send_kicks(vm, kicks);
            if !restart_vm(vm.index, vcpu) {
                park(cpu);
            }
        }
        ExitAction::PowerOff | ExitAction::Fault => {
            send_kicks(vm, kicks);
            stop_vm(vm, power, vcpu, if action == ExitAction::PowerOff { CLEAN } else { FAILED });
            park(cpu)
        }
        _ => {
            drop(power);
            send_kicks(vm, kicks);
        }
    }
    *frame = wait_for_start(cpu, vm.index, vcpu);
}

/// An exception taken at EL2 itself: a hypervisor bug. The exception vectors call
/// it by this name.
#[allow(unsafe_code)]
// SAFETY (no_mangle): the name is Sluice's alone, and only the vector table calls it.
#[no_mangle]
pub extern "C" fn sluice_hypervisor_fault(frame: &mut TrapFrame, trap_kind: u64) {
    let (esr, far, _) = el2::syndrome();
    fatal(format_args!(
        "exception at EL2 (kind {trap_kind}): ESR {esr:#x}, ELR {:#x}, FAR {far:#x}",
        frame.elr
    ));
}
