//! The trap path: every exit from a guest, from the vector's call to the return.

use super::console_input::refill_input;
use super::cpu::{park, wait_for_start};
use super::interrupts::{
    finish_maintenance, flush_list_registers, service_interrupts, sync_list_registers, Taken,
};
use super::kicks::send_kicks;
use super::lifecycle::{dump_trace, restart_vm, stop_other_vcpus, stop_vm};
use super::machine::{lock_vm, machine, vm_ended, CLEAN, FAILED};
use super::power::fatal;
use crate::arch::aarch64::el2::{self, El1Cpu};
use crate::arch::aarch64::esr::Trap;
use crate::arch::aarch64::intid::{PHYSICAL_TIMER, VIRTUAL_TIMER};
use crate::arch::aarch64::vectors::kind;
use crate::guest_log;
use crate::logger;
use crate::trace::{self, CpuTrace, Stage};
use crate::vm::stats::ExitReason;
use crate::vm::trap::{self, handle_on_cpu, handle_with_vm, ExitAction, Syndrome};
use crate::vm::vcpu::{TrapFrame, VcpuPower};
use log::{error, info};

/// How long a guest runs between two budgets of its devices' left-over work: a
/// ten-thousandth of a second (the counter frequency divided by this).
const BACKLOG_SLICES_PER_SECOND: u64 = 10_000;

/// The same when all that work waits for the VM's share of the console: 2 ms,
/// time for 256 bytes of it.
const WAITING_SLICES_PER_SECOND: u64 = 500;

/// Handles a trap from the guest running on this CPU: on the CPU alone if the exit
/// needs nothing of the VM (see [`handle_on_cpu`]), else with the VM locked.
pub fn trap_from_guest(frame: &mut TrapFrame, trap_kind: u64) {
    let cpu = el2::cpu_index();
    let m = machine();
    let host = &m.cpus[cpu];
    let (vm_index, vcpu) = host.slot.expect("a guest runs only on a CPU given one");
    let exit = Exit { trace: host.trace, detailed: m.detailed_trace };
    exit.trace.begin_exit(el2::counter(), vm_index, vcpu, exit.detailed);
    let trap = if trap_kind == kind::SYNC {
        let (esr, far, hpfar) = el2::syndrome();
        let syndrome = Syndrome { esr, far, hpfar };
        let trap = trap::decode(syndrome);
        exit.stamp(Stage::Decoded);
        if let Some((reason, action)) = handle_on_cpu(&trap, frame, &mut El1Cpu) {
            if let ExitAction::DumpTrace { exits } = action {
                dump_trace(&lock_vm(vm_index), exits.into());
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

/// The rest of the exits: interrupts, and traps that read or change the VM.
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

    let mut vm = lock_vm(vm_index);
    let in_hardware = sync_list_registers(&mut vm, vcpu);
    // The `decode` segment of these exits includes the lock and the sync.
    exit.stamp(Stage::Decoded);
    if vm_ended(vm_index) || vm.vcpus[vcpu] != VcpuPower::On {
        // Asked to leave: the VM stops or restarts, or this vCPU was turned off.
        if vm.vcpus[vcpu] == VcpuPower::Stopping {
            vm.vcpus[vcpu] = VcpuPower::Off;
        }
        drop(vm);
        el2::disable_virtual_interface();
        finish_maintenance(&taken);
        exit.finish(if is_interrupt { ExitReason::Irq } else { ExitReason::Other });
        *frame = wait_for_start(cpu, vm_index, vcpu);
        return;
    }
    for intid in [VIRTUAL_TIMER, PHYSICAL_TIMER] {
        // A timer the guest disabled or masked since is no longer pending.
        let kick = vm.vgic.resample_hw(vcpu, intid, el2::el1_timer_asserts(intid));
        vm.kick(kick.0);
        if taken.timers & (1 << intid) != 0 {
            let kick = vm.vgic.raise_hw(vcpu, intid);
            vm.kick(kick.0);
        }
    }
    if vm.virtio_backlog {
        // One more budget of the work a notify left (devices::virtio::budget).
        vm.work_on_virtio_backlog();
    }
    if is_interrupt && logger::has_queued_input(vm_index) {
        // Input queued while this VM's lock was taken (the kick that came with it).
        refill_input(&mut vm);
    }
    let (reason, action) = match trap {
        Some((trap, syndrome)) => handle_with_vm(&mut vm, vcpu, frame, &mut El1Cpu, trap, syndrome),
        None if trap_kind == kind::SERROR => {
            error!("vm \"{}\" stopped: SError (asynchronous abort) at pc {:#x}", vm.name(), frame.elr);
            (ExitReason::Other, ExitAction::Fault)
        }
        None => (ExitReason::Irq, ExitAction::Resume),
    };
    if reason == ExitReason::Mmio && logger::has_queued_input(vm_index) {
        // The guest may have read its UART and made room.
        refill_input(&mut vm);
    }
    if let ExitAction::DumpTrace { exits } = action {
        dump_trace(&vm, exits.into());
    }
    if !matches!(action, ExitAction::Resume | ExitAction::WaitForInterrupt | ExitAction::DumpTrace { .. }) {
        exit.finish(reason);
    }
    match action {
        ExitAction::Resume | ExitAction::WaitForInterrupt | ExitAction::DumpTrace { .. } => {
            if vm.virtio_backlog {
                // Exit again after a slice of guest time, for the next budget: the
                // guest, other vCPUs and console input get their turn in between,
                // and the work goes on even if the guest never exits by itself (a
                // driver that spins on its used ring).
                let slices = if vm.virtio_backlog_waits {
                    WAITING_SLICES_PER_SECOND
                } else {
                    BACKLOG_SLICES_PER_SECOND
                };
                el2::arm_hyp_timer(machine().counter_hz / slices);
            }
            flush_list_registers(&mut vm, vcpu, in_hardware);
            trace::point(Stage::Injected);
            finish_maintenance(&taken);
            send_kicks(&mut vm, Some(vcpu));
            drop(vm);
            exit.finish(reason);
            if action == ExitAction::WaitForInterrupt {
                logger::flush_vm_output(vm_index);
                guest_log::report_quiet(vm_index);
                // A pending physical interrupt (a kick, a timer) wakes us; back in the
                // guest it traps at once and is handled like any other.
                el2::wait_for_interrupt();
            }
        }
        ExitAction::VcpuOff => {
            el2::disable_virtual_interface();
            finish_maintenance(&taken);
            vm.vcpus[vcpu] = VcpuPower::Off;
            send_kicks(&mut vm, Some(vcpu));
            drop(vm);
            *frame = wait_for_start(cpu, vm_index, vcpu);
        }
        ExitAction::Reset => {
            el2::disable_virtual_interface();
            finish_maintenance(&taken);
            info!("vm \"{}\": system reset", vm.name());
            // Every other vCPU is told to leave before the lock is let go: one that
            // asks for a reset (or a power-off) at the same moment finds itself
            // stopping when it gets the lock, so the VM restarts exactly once.
            vm.vcpus[vcpu] = VcpuPower::Off;
            stop_other_vcpus(&mut vm, vcpu);
            drop(vm);
            if !restart_vm(vm_index, vcpu) {
                park(cpu);
            }
            *frame = wait_for_start(cpu, vm_index, vcpu);
        }
        ExitAction::PowerOff | ExitAction::Fault => {
            el2::disable_virtual_interface();
            finish_maintenance(&taken);
            stop_vm(vm, vcpu, if action == ExitAction::PowerOff { CLEAN } else { FAILED });
            park(cpu)
        }
    }
}

/// An exception taken at EL2 itself: a hypervisor bug.
pub fn hypervisor_fault(frame: &mut TrapFrame, trap_kind: u64) {
    let (esr, far, _) = el2::syndrome();
    fatal(format_args!(
        "exception at EL2 (kind {trap_kind}): ESR {esr:#x}, ELR {:#x}, FAR {far:#x}",
        frame.elr
    ));
}
