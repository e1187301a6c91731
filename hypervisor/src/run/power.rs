//! Powering the machine off: when the last VM stops, when asked from the console,
//! or because Sluice cannot go on.

use super::machine::{machine, ENDS, FAILED, RUNNING};
use crate::arch::aarch64::el2::power;
use crate::logger;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use log::{error, info};
use platform::exit::{self, VmEnd, HYPERVISOR_PANIC};

/// Set when the machine is on its way off, so a fault on the way doesn't recurse.
static POWERING_OFF: AtomicBool = AtomicBool::new(false);

/// The exit status if the machine stopped now: VMs still running count as clean.
pub(super) fn current_status() -> u8 {
    let ends = (0..machine().vms.len()).map(|i| ENDS[i].load(Ordering::SeqCst));
    exit::status(ends.map(|e| if e == FAILED { VmEnd::Failed } else { VmEnd::Clean }))
}

/// Powers the machine off: the console is closed to guests and ends with Sluice's
/// status line (see `platform::exit`), then the host's PSCI turns the machine off.
pub(super) fn power_off(status: u8) -> ! {
    POWERING_OFF.store(true, Ordering::SeqCst);
    logger::close(status);
    power::psci_system_off()
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
