//! Physical interrupts taken at EL2, and the list registers through which the
//! vCPU on this CPU sees its virtual ones.

use super::console_input::console_input;
use super::kicks::KICK_SGI;
use super::machine::machine;
use crate::arch::aarch64::el2;
use crate::arch::aarch64::intid::{HYP_TIMER, MAINTENANCE, PHYSICAL_TIMER, SPURIOUS, VIRTUAL_TIMER};
use crate::vm::Vm;
use log::{debug, warn};

/// Most list registers a CPU can have.
pub(super) const MAX_LIST_REGISTERS: usize = 16;

/// What [`service_interrupts`] leaves for the trap path.
#[derive(Default)]
pub(super) struct Taken {
    /// Timer interrupts (a bit per INTID) to forward to the vCPU.
    pub(super) timers: u32,
    /// The maintenance interrupt came and is still active: its cause (list
    /// registers the guest completed, or ran dry of pending ones) goes away when the
    /// list registers are written again, and only then may it be deactivated, or it
    /// would fire again at once.
    pub(super) maintenance: bool,
}

/// Acknowledges every pending physical interrupt. With a vCPU running here
/// (`guest_running`) the timers are left for it and the maintenance interrupt stays
/// active until [`finish_maintenance`].
pub(super) fn service_interrupts(cpu: usize, guest_running: bool) -> Taken {
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
            MAINTENANCE if guest_running => taken.maintenance = true,
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
            KICK_SGI | MAINTENANCE => el2::deactivate(intid),
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
pub(super) fn finish_maintenance(taken: &Taken) {
    if taken.maintenance {
        el2::deactivate(MAINTENANCE);
    }
}

/// Reads this CPU's list registers into the vGIC. Returns how many the last flush
/// filled (the hardware still holds them until the next flush).
pub(super) fn sync_list_registers(vm: &mut Vm, vcpu: usize) -> usize {
    // Only those the last flush filled can have changed.
    let n = vm.vgic.lrs_in_use(vcpu).min(machine().list_registers).min(MAX_LIST_REGISTERS);
    if n == 0 {
        return 0;
    }
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
pub(super) fn flush_list_registers(vm: &mut Vm, vcpu: usize, in_hardware: usize) {
    // Timer interrupts the guest dropped while the physical one was still active.
    let stale = vm.vgic.take_hw_deactivations(vcpu);
    for intid in [VIRTUAL_TIMER, PHYSICAL_TIMER] {
        if stale & (1 << intid) != 0 {
            el2::deactivate(intid);
        }
    }
    if in_hardware == 0 && vm.vgic.flush_is_idle(vcpu) {
        // Empty list registers that would stay empty (and NPIE off, as the flush
        // that emptied them left it): nothing to write.
        return;
    }
    let n = machine().list_registers.min(MAX_LIST_REGISTERS);
    let mut lrs = [0u64; MAX_LIST_REGISTERS];
    let more = vm.vgic.flush(vcpu, &mut lrs[..n]);
    // The ones filled now, and the ones filled before that must be cleared; the
    // rest are empty already.
    let written = in_hardware.max(vm.vgic.lrs_in_use(vcpu)).min(n);
    for (i, lr) in lrs.iter().enumerate().take(written) {
        el2::write_lr(i, *lr);
    }
    el2::set_virtual_interface(more);
}
