//! Physical interrupts taken at EL2. (The list registers through which the vCPU on
//! this CPU sees its virtual ones are `vgic::VgicSession`'s.)

use super::console_input::console_input;
use super::host_disks::host_disk_interrupt;
use super::kicks::KICK_SGI;
use super::machine::machine;
use crate::arch::aarch64::el2;
use crate::arch::aarch64::features::guest_features;
use crate::arch::aarch64::intid::{
    HYP_TIMER, MAINTENANCE, PHYSICAL_TIMER, PMU_OVERFLOW, SPURIOUS, VIRTUAL_TIMER,
};
use log::{debug, warn};

/// What [`service_interrupts`] leaves for the trap path.
#[derive(Default)]
pub(super) struct Taken {
    /// Interrupts of the guest's timers and PMU (a bit per INTID) to forward to the
    /// vCPU.
    pub(super) linked: u32,
    /// The maintenance interrupt came and is still active: its cause (list
    /// registers the guest completed, or ran dry of pending ones) goes away when the
    /// list registers are written again, and only then may it be deactivated, or it
    /// would fire again at once.
    pub(super) maintenance: bool,
    /// Host disks that interrupted (a bit per index in `Machine::host_disk_irqs`),
    /// left active for the trap path, which hands their completions over with the
    /// vCPU's own vGIC session (`host_disks::take_host_disks`).
    pub(super) host_disks: u32,
}

/// Acknowledges every pending physical interrupt. With a vCPU running here
/// (`guest_running`) the timers' and PMU's are left for it and the maintenance interrupt stays
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
            VIRTUAL_TIMER | PHYSICAL_TIMER | PMU_OVERFLOW if guest_running => taken.linked |= 1 << intid,
            MAINTENANCE if guest_running => taken.maintenance = true,
            i if Some(i) == m.uart_intid => {
                // Drain the UART before deactivating: its level interrupt would come
                // straight back otherwise.
                console_input();
                el2::deactivate(intid);
            }
            i if m.host_disk_irqs.iter().any(|irq| irq.intid == i) => {
                let disks = m.host_disk_irqs.iter().enumerate().filter(|(_, irq)| irq.intid == i);
                if guest_running {
                    disks.for_each(|(index, _)| taken.host_disks |= 1 << index);
                } else {
                    // Each disk's line drops when its interrupt is acknowledged, in there.
                    disks.for_each(|(_, &irq)| host_disk_interrupt(irq));
                    el2::deactivate(intid);
                }
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
            PMU_OVERFLOW => {
                // The same for the PMU, which `quiesce` stopped.
                el2::stop_pmu(&guest_features());
                el2::deactivate(intid);
                warn!("CPU {cpu}: PMU interrupt with no vCPU running; the PMU is now off");
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
