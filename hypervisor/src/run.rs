//! Each CPU's life after boot: run its vCPU, handle its traps and physical
//! interrupts, idle while its vCPU is off, and stop, restart or power off VMs.
//!
//! A CPU holds its VM's lock only while it handles a trap, never while it sleeps;
//! work for another CPU (a new pending interrupt, a `CPU_ON`, a stop) is left in the
//! VM and signalled with the kick SGI, which makes that CPU exit and look.

use crate::arch::aarch64::el2::{self, power, El1Cpu};
use crate::arch::aarch64::stacks::trap_stack_top;
use crate::arch::aarch64::vectors::{enter_guest, kind};
use crate::console::mux::{InputAction, INPUT_QUEUE_LEN};
use crate::drivers::gicv3::Gic;
use crate::guest_log;
use crate::logger;
use crate::trace::{self, Stage};
use crate::vm::stats::{ExitReason, ExitStats};
use crate::vm::trap::{handle_exit, ExitAction, Syndrome};
use crate::vm::vcpu::{TrapFrame, VcpuPower};
use crate::vm::Vm;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use log::{debug, error, info, warn};
use platform::bundle::MAX_VMS;
use platform::exit::{self, VmEnd, HYPERVISOR_PANIC};
use spin::{MutexGuard, Once};

/// A VM's lock: a spin lock whose waiters `yield` (see [`el2::Yield`]).
pub type VmLock = spin::mutex::Mutex<Vm, el2::Yield>;

/// SGI one CPU sends another to make it exit its guest and look at its VM.
const KICK_SGI: u32 = 0;
/// The vGIC maintenance interrupt (PPI 9).
const MAINTENANCE_PPI: u32 = 25;
/// The EL1 virtual timer's interrupt (PPI 11), forwarded hardware-linked.
const VIRTUAL_TIMER: u32 = 27;
/// The EL1 physical timer's interrupt (PPI 14), forwarded hardware-linked.
const PHYSICAL_TIMER: u32 = 30;
/// The EL2 physical timer's interrupt (PPI 10): Sluice's alarm for virtio work left
/// over (see `devices::virtio::budget`).
const HYP_TIMER: u32 = 26;
/// How long a guest runs between two budgets of its devices' left-over work: a
/// ten-thousandth of a second (the counter frequency divided by this).
const BACKLOG_SLICES_PER_SECOND: u64 = 10_000;
/// The same when all that work waits for the VM's share of the console: 2 ms,
/// time for 256 bytes of it.
const WAITING_SLICES_PER_SECOND: u64 = 500;
/// INTID the CPU interface returns when nothing is pending.
const SPURIOUS: u32 = 1023;
/// Most list registers a CPU can have.
const MAX_LIST_REGISTERS: usize = 16;

/// Everything the CPUs share, set up once by the boot CPU.
pub struct Machine {
    /// The VMs by index; `None` for a VM that was refused.
    pub vms: Vec<Option<VmLock>>,
    /// Counter frequency, for reports.
    pub counter_hz: u64,
    /// MPIDR of each host CPU.
    pub cpu_mpidr: Vec<u64>,
    /// What each host CPU runs: (VM index, vCPU index).
    pub cpu_slot: Vec<Option<(usize, usize)>>,
    /// The host GIC.
    pub gic: Gic,
    /// List registers per CPU.
    pub list_registers: usize,
    /// The host UART's interrupt, taken by CPU 0.
    pub uart_intid: Option<u32>,
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

/// Set when the machine is on its way off, so a fault on the way doesn't recurse.
static POWERING_OFF: AtomicBool = AtomicBool::new(false);

fn machine() -> &'static Machine {
    MACHINE.get().expect("CPUs run only after boot")
}

fn lock_vm(index: usize) -> MutexGuard<'static, Vm> {
    machine().vms[index].as_ref().expect("a CPU only runs a VM that was built").lock()
}

fn vm_ended(index: usize) -> bool {
    ENDS[index].load(Ordering::SeqCst) != RUNNING
}

/// A CPU's life after its EL2 set-up: run the vCPU it is given, or idle.
pub fn cpu_main(cpu: usize) -> ! {
    let m = machine();
    el2::set_cpu_index(cpu);
    el2::init_cpu();
    let sgi_and_ppis = (1 << KICK_SGI)
        | (1 << MAINTENANCE_PPI)
        | (1 << VIRTUAL_TIMER)
        | (1 << PHYSICAL_TIMER)
        | (1 << HYP_TIMER);
    if m.gic.init_cpu(m.cpu_mpidr[cpu], sgi_and_ppis).is_none() {
        fatal(format_args!("no GIC redistributor for CPU {cpu}"));
    }
    let Some((vm, vcpu)) = m.cpu_slot[cpu] else { park(cpu) };
    let frame = wait_for_start(cpu, vm, vcpu);
    // SAFETY: this CPU's trap stack is unused until now (we run on its boot stack),
    // and `wait_for_start` set EL2 up for the vCPU.
    #[allow(unsafe_code)]
    unsafe {
        enter_guest(trap_stack_top(cpu), &frame)
    }
}

/// Idles until vCPU `vcpu` of VM `vm` is started, then prepares EL2 for it and
/// returns its first frame. Parks the CPU for good if the VM ends meanwhile.
fn wait_for_start(cpu: usize, vm_index: usize, vcpu: usize) -> TrapFrame {
    // No vCPU runs here now: whatever the last one left must not fire.
    quiesce(cpu);
    loop {
        if vm_ended(vm_index) {
            park(cpu);
        }
        {
            let mut vm = lock_vm(vm_index);
            match vm.vcpus[vcpu] {
                VcpuPower::StartPending { entry, context } => {
                    vm.vcpus[vcpu] = VcpuPower::On;
                    prepare_vcpu(cpu, &vm, vcpu);
                    return TrapFrame::boot(entry, context);
                }
                VcpuPower::Stopping => vm.vcpus[vcpu] = VcpuPower::Off,
                VcpuPower::Off | VcpuPower::On => {}
            }
        }
        idle_once(cpu);
    }
}

/// Puts this CPU's EL1 and virtual GIC interface in their reset state for `vcpu`
/// and points stage 2 at its VM.
fn prepare_vcpu(cpu: usize, vm: &Vm, vcpu: usize) {
    let m = machine();
    el2::reset_el1_state();
    el2::reset_virtual_interface(m.list_registers);
    m.gic.deactivate_ppis(m.cpu_mpidr[cpu], (1 << VIRTUAL_TIMER) | (1 << PHYSICAL_TIMER));
    el2::switch_to_vm(vm.stage2_root(), vm.vmid, vcpu);
}

/// Leaves this CPU quiet after its vCPU stopped (the VM powered off, faulted or is
/// restarting, or the vCPU was turned off): the guest's EL1 timers off, the virtual
/// CPU interface off and empty, and the timers' physical interrupts neither pending
/// nor active. Otherwise a stopped guest's armed timer would keep interrupting a CPU
/// nobody runs a guest on, burning a host thread, and under `-icount` (one thread runs
/// every CPU in turn) starving every other VM.
fn quiesce(cpu: usize) {
    let m = machine();
    el2::quiesce_guest(m.list_registers);
    el2::disarm_hyp_timer();
    m.gic.clear_ppis(m.cpu_mpidr[cpu], (1 << VIRTUAL_TIMER) | (1 << PHYSICAL_TIMER));
}

/// Sleeps until a physical interrupt is pending, then handles it (no vCPU runs).
fn idle_once(cpu: usize) {
    el2::wait_for_interrupt();
    service_interrupts(cpu, false);
}

/// Stops this CPU for good, quiet, still serving console input if it is the boot CPU.
fn park(cpu: usize) -> ! {
    quiesce(cpu);
    loop {
        idle_once(cpu);
    }
}

/// The VM that owns the calling CPU, if any (for `guest_log`).
pub fn current_vm() -> Option<usize> {
    let m = MACHINE.get()?;
    m.cpu_slot.get(el2::cpu_index()).copied().flatten().map(|(vm, _)| vm)
}

/// What [`service_interrupts`] leaves for the trap path.
#[derive(Default)]
struct Taken {
    /// Timer interrupts (a bit per INTID) to forward to the vCPU.
    timers: u32,
    /// The maintenance interrupt came and is still active: its cause (list
    /// registers the guest completed, or ran dry of pending ones) goes away when the
    /// list registers are written again, and only then may it be deactivated, or it
    /// would fire again at once.
    maintenance: bool,
}

/// Acknowledges every pending physical interrupt. With a vCPU running here
/// (`guest_running`) the timers are left for it and the maintenance interrupt stays
/// active until [`finish_maintenance`].
fn service_interrupts(cpu: usize, guest_running: bool) -> Taken {
    let m = machine();
    let mut taken = Taken::default();
    loop {
        let intid = el2::ack_irq();
        if intid >= SPURIOUS {
            break;
        }
        el2::end_of_interrupt(intid);
        match intid {
            // Deactivated by the guest through the hardware link.
            VIRTUAL_TIMER | PHYSICAL_TIMER if guest_running => taken.timers |= 1 << intid,
            MAINTENANCE_PPI if guest_running => taken.maintenance = true,
            i if Some(i) == m.uart_intid => {
                // Drain the UART before deactivating: its level interrupt would come
                // straight back otherwise.
                console_input();
                el2::deactivate(intid);
            }
            HYP_TIMER => {
                // The alarm for left-over virtio work: the trap path does it now.
                el2::disarm_hyp_timer();
                el2::deactivate(intid);
            }
            KICK_SGI | MAINTENANCE_PPI => el2::deactivate(intid),
            VIRTUAL_TIMER | PHYSICAL_TIMER => {
                // No guest runs here, and `quiesce` turned the timers off when its
                // vCPU stopped: this is a bug. Don't let the timer storm the CPU.
                el2::disable_el1_timers();
                el2::deactivate(intid);
                warn!("CPU {cpu}: timer interrupt {intid} with no vCPU running; the EL1 timers are now off");
            }
            _ => {
                debug!("CPU {cpu}: interrupt {intid} with nobody to take it");
                el2::deactivate(intid);
            }
        }
    }
    taken
}

/// Deactivates the maintenance interrupt once the list registers are rewritten.
fn finish_maintenance(taken: &Taken) {
    if taken.maintenance {
        el2::deactivate(MAINTENANCE_PPI);
    }
}

/// Hands what was typed on the host UART to the VM in focus, or acts on an escape
/// key.
fn console_input() {
    let mut buf = [0u8; 64];
    loop {
        let n = logger::receive(&mut buf);
        if n == 0 {
            break;
        }
        for &byte in &buf[..n] {
            match logger::route_input(byte) {
                InputAction::Deliver { vm, byte } => deliver_input(vm, byte),
                InputAction::PowerOff => {
                    info!("quit from the console");
                    power_off(current_status());
                }
                InputAction::Switch { .. } | InputAction::Help | InputAction::None => {}
            }
        }
    }
}

/// Queues a typed byte for VM `vm_index` and hands it over if the VM's lock is
/// free. Console input never waits for a VM: a guest may hold its lock (a trap in
/// progress) while this CPU's own VM, and Ctrl-A x, wait for the input handler. If
/// the lock is taken, the VM's CPUs are kicked, and its next exit takes the input.
fn deliver_input(vm_index: usize, byte: u8) {
    let Some(Some(slot)) = machine().vms.get(vm_index) else { return };
    logger::queue_input(vm_index, byte);
    match slot.try_lock() {
        Some(mut vm) => {
            refill_input(&mut vm);
            send_kicks(&mut vm, None);
        }
        None => cpus_of(vm_index).for_each(|cpu| el2::send_sgi(KICK_SGI, machine().cpu_mpidr[cpu])),
    }
}

/// Moves queued console input into the VM: all of it into a running virtio-console
/// (Linux's hvc0; it holds or drops what its driver hasn't taken), else into the
/// PL011 as it makes room.
fn refill_input(vm: &mut Vm) {
    if vm.has_virtio_console() {
        let mut typed = [0u8; INPUT_QUEUE_LEN];
        let n = logger::take_input(vm.index, &mut typed);
        vm.virtio_console_input(&typed[..n]);
        return;
    }
    let mut byte = [0u8];
    while vm.uart.can_take_input() && logger::take_input(vm.index, &mut byte) == 1 {
        vm.uart.push_input(byte[0]);
        vm.update_uart_interrupt();
    }
}

/// Makes the vCPUs the VM marked exit (except `current`, which is exiting anyway).
fn send_kicks(vm: &mut Vm, current: Option<usize>) {
    let kicks = core::mem::take(&mut vm.kicks);
    let m = machine();
    for vcpu in 0..vm.vcpus.len() {
        if kicks & (1 << vcpu) != 0 && Some(vcpu) != current {
            el2::send_sgi(KICK_SGI, m.cpu_mpidr[vm.config.cpus[vcpu] as usize]);
        }
    }
}

/// Reads this CPU's list registers into the vGIC. Returns how many the last flush
/// filled (the hardware still holds them until the next flush).
fn sync_list_registers(vm: &mut Vm, vcpu: usize) -> usize {
    // Only those the last flush filled can have changed.
    let n = vm.vgic.lrs_in_use(vcpu).min(machine().list_registers).min(MAX_LIST_REGISTERS);
    let mut lrs = [0u64; MAX_LIST_REGISTERS];
    for (i, lr) in lrs.iter_mut().enumerate().take(n) {
        *lr = el2::read_lr(i);
    }
    let kick = vm.vgic.sync(vcpu, &lrs[..n]);
    vm.kick(kick.0);
    n
}

/// Writes the vCPU's deliverable interrupts into this CPU's list registers, of
/// which the first `in_hardware` hold entries of the previous flush.
fn flush_list_registers(vm: &mut Vm, vcpu: usize, in_hardware: usize) {
    let n = machine().list_registers.min(MAX_LIST_REGISTERS);
    let mut lrs = [0u64; MAX_LIST_REGISTERS];
    // Timer interrupts the guest dropped while the physical one was still active.
    let stale = vm.vgic.take_hw_deactivations(vcpu);
    for intid in [VIRTUAL_TIMER, PHYSICAL_TIMER] {
        if stale & (1 << intid) != 0 {
            el2::deactivate(intid);
        }
    }
    let more = vm.vgic.flush(vcpu, &mut lrs[..n]);
    // The ones filled now, and the ones filled before that must be cleared; the
    // rest are empty already.
    let written = in_hardware.max(vm.vgic.lrs_in_use(vcpu)).min(n);
    for (i, lr) in lrs.iter().enumerate().take(written) {
        el2::write_lr(i, *lr);
    }
    el2::set_virtual_interface(more);
}

/// Handles a trap from the guest running on this CPU.
pub fn trap_from_guest(frame: &mut TrapFrame, trap_kind: u64) {
    let cpu = el2::cpu_index();
    let (vm_index, vcpu) = machine().cpu_slot[cpu].expect("a guest runs only on a CPU given one");
    trace::begin(vm_index, vcpu);
    let is_interrupt = matches!(trap_kind, kind::IRQ | kind::FIQ);
    let taken = if is_interrupt { service_interrupts(cpu, true) } else { Taken::default() };

    let mut vm = lock_vm(vm_index);
    let in_hardware = sync_list_registers(&mut vm, vcpu);
    if vm_ended(vm_index) || vm.vcpus[vcpu] != VcpuPower::On {
        // Asked to leave: the VM stops or restarts, or this vCPU was turned off.
        if vm.vcpus[vcpu] == VcpuPower::Stopping {
            vm.vcpus[vcpu] = VcpuPower::Off;
        }
        drop(vm);
        el2::disable_virtual_interface();
        finish_maintenance(&taken);
        trace::finish(if is_interrupt { ExitReason::Irq } else { ExitReason::Other });
        *frame = wait_for_start(cpu, vm_index, vcpu);
        return;
    }
    for intid in [VIRTUAL_TIMER, PHYSICAL_TIMER] {
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
    let (reason, action) = match trap_kind {
        kind::SYNC => {
            let (esr, far, hpfar) = el2::syndrome();
            handle_exit(&mut vm, vcpu, frame, &mut El1Cpu, Syndrome { esr, far, hpfar })
        }
        kind::SERROR => {
            error!("vm \"{}\" stopped: SError (asynchronous abort) at pc {:#x}", vm.name(), frame.elr);
            (ExitReason::Other, ExitAction::Fault)
        }
        _ => {
            trace::point(Stage::Decoded);
            (ExitReason::Irq, ExitAction::Resume)
        }
    };
    if reason == ExitReason::Mmio && logger::has_queued_input(vm_index) {
        // The guest may have read its UART and made room.
        refill_input(&mut vm);
    }
    if let Some(exits) = vm.trace_dump.take() {
        dump_trace(&vm, exits);
    }
    if !matches!(action, ExitAction::Resume | ExitAction::WaitForInterrupt) {
        trace::finish(reason);
    }
    match action {
        ExitAction::Resume | ExitAction::WaitForInterrupt => {
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
            trace::finish(reason);
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
            restart_vm(cpu, vm_index, vcpu);
            *frame = wait_for_start(cpu, vm_index, vcpu);
        }
        ExitAction::PowerOff | ExitAction::Fault => {
            el2::disable_virtual_interface();
            finish_maintenance(&taken);
            stop_vm(cpu, vm, vcpu, if action == ExitAction::PowerOff { CLEAN } else { FAILED })
        }
    }
}

/// The CPUs that run VM `vm_index`'s vCPUs.
fn cpus_of(vm_index: usize) -> impl Iterator<Item = usize> {
    let slots = &machine().cpu_slot;
    (0..slots.len()).filter(move |&cpu| slots[cpu].is_some_and(|(vm, _)| vm == vm_index))
}

/// The VM's exit statistics, from the trace sums of its CPUs.
fn exit_stats(vm_index: usize) -> ExitStats {
    let mut stats = ExitStats::new();
    if let Some(t) = trace::tracer() {
        cpus_of(vm_index).filter_map(|cpu| t.cpu(cpu)).for_each(|c| c.sums().add_to_exit_stats(&mut stats));
    }
    stats
}

/// Prints the VM's trace as JSON lines: the sums of each of its CPUs, and up to
/// `exits` of each one's most recent exits.
fn dump_trace(vm: &Vm, exits: usize) {
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
fn stop_other_vcpus(vm: &mut MutexGuard<'_, Vm>, vcpu: usize) {
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
/// 0 again.
fn restart_vm(cpu: usize, vm_index: usize, vcpu: usize) {
    loop {
        // Neither sleeping nor reloading with another vCPU still in the guest.
        let mut vm = lock_vm(vm_index);
        if vm_ended(vm_index) {
            drop(vm);
            park(cpu);
        }
        if vm.vcpus.iter().all(|p| *p == VcpuPower::Off) {
            match vm.load() {
                Ok(()) => {
                    vm.kick(1);
                    send_kicks(&mut vm, None);
                }
                Err(e) => {
                    error!("vm \"{}\" stopped: reloading it failed: {e}", vm.name());
                    stop_vm(cpu, vm, vcpu, FAILED);
                }
            }
            return;
        }
        drop(vm);
        <el2::Yield as spin::relax::RelaxStrategy>::relax();
    }
}

/// Stops the VM `vcpu` belongs to: its other vCPUs leave the guest, its statistics
/// are printed, how it ended is recorded; powers the machine off if it was the last
/// VM, and otherwise parks this CPU.
fn stop_vm(cpu: usize, mut vm: MutexGuard<'_, Vm>, vcpu: usize, end: u8) -> ! {
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
    park(cpu)
}

/// The exit status if the machine stopped now: VMs still running count as clean.
fn current_status() -> u8 {
    let ends = (0..machine().vms.len()).map(|i| ENDS[i].load(Ordering::SeqCst));
    exit::status(ends.map(|e| if e == FAILED { VmEnd::Failed } else { VmEnd::Clean }))
}

/// Powers the machine off once no VM runs, with a status that says how each ended
/// (at boot too, when every VM was refused).
pub fn power_off_if_done() {
    let m = machine();
    if (0..m.vms.len()).any(|i| ENDS[i].load(Ordering::SeqCst) == RUNNING) {
        return;
    }
    let status = current_status();
    if status == 0 {
        info!("every VM stopped cleanly; powering off");
    } else {
        let failed: Vec<usize> = (0..m.vms.len()).filter(|&i| exit::vm_failed(status, i)).collect();
        error!("powering off; VMs that failed: {failed:?}");
    }
    power_off(status);
}

/// Powers the machine off: the console is closed to guests and ends with Sluice's
/// status line (see `platform::exit`), then the host's PSCI turns the machine off.
fn power_off(status: u8) -> ! {
    POWERING_OFF.store(true, Ordering::SeqCst);
    logger::close(status);
    power::psci_system_off()
}

/// Stops the machine because the hypervisor cannot go on.
pub fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    if POWERING_OFF.swap(true, Ordering::SeqCst) {
        // A fault on the way off: no status line, which the tools report as such.
        power::psci_system_off();
    }
    logger::print_emergency(format_args!("fatal: {args}\n"));
    logger::close(HYPERVISOR_PANIC);
    power::psci_system_off()
}

/// An exception taken at EL2 itself: a hypervisor bug.
pub fn hypervisor_fault(frame: &mut TrapFrame, trap_kind: u64) {
    let (esr, far, _) = el2::syndrome();
    fatal(format_args!(
        "exception at EL2 (kind {trap_kind}): ESR {esr:#x}, ELR {:#x}, FAR {far:#x}",
        frame.elr
    ));
}
