//! A host disk's interrupt: its completions go to the VM device it serves.

use super::kicks::send_kicks;
use super::machine::machine;
use crate::arch::aarch64::el2::{self, ThisCpuInterface};
use crate::bits::ones;
use crate::drivers::host_disks::HostDiskIrq;
use crate::vgic::VgicSession;
use crate::vm::Vm;

/// Hands the host disk's completions to the virtio device of `irq.vm` it is behind;
/// the vCPUs that must see the guest's interrupt are kicked.
pub(super) fn host_disk_interrupt(irq: HostDiskIrq) {
    let Some(Some(vm)) = machine().vms.get(irq.vm) else { return };
    let mut gic = VgicSession::<ThisCpuInterface>::remote(vm.devices.vgic());
    vm.devices.host_interrupt(irq.slot, &mut gic);
    send_kicks(vm, gic.finish());
}

/// The host disks whose interrupts an exit of `vm`'s vCPU took (`Taken::host_disks`):
/// `vm`'s own go through that vCPU's vGIC session `gic`, so the guest's interrupt is
/// in its list registers when it is re-entered, with no kick back to this CPU; any
/// other VM's through a remote session. Each line is deactivated once its disk has
/// been acknowledged (and so has lowered it).
pub(super) fn take_host_disks(taken: u32, vm: &Vm, gic: &mut VgicSession<'_, ThisCpuInterface>) {
    let irqs = &machine().host_disk_irqs;
    for index in ones(taken.into()) {
        let irq = irqs[index as usize];
        if irq.vm == vm.index {
            vm.devices.host_interrupt(irq.slot, gic);
        } else {
            host_disk_interrupt(irq);
        }
    }
    for index in ones(taken.into()) {
        let intid = irqs[index as usize].intid;
        // Once per line, though disks may share one.
        let first = ones(taken.into()).find(|&other| irqs[other as usize].intid == intid) == Some(index);
        if first {
            el2::deactivate(intid);
        }
    }
}
