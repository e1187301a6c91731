//! A host disk's interrupt: its completions go to the VM device it serves.

use super::kicks::send_kicks;
use super::machine::machine;
use crate::arch::aarch64::el2::ThisCpuInterface;
use crate::drivers::host_disks::HostDiskIrq;
use crate::vgic::VgicSession;

/// Hands the host disk's completions to the virtio device of `irq.vm` it is behind;
/// the vCPUs that must see the guest's interrupt are kicked.
pub(super) fn host_disk_interrupt(irq: HostDiskIrq) {
    let Some(Some(vm)) = machine().vms.get(irq.vm) else { return };
    let mut gic = VgicSession::<ThisCpuInterface>::remote(vm.devices.vgic());
    vm.devices.host_interrupt(irq.slot, &mut gic);
    send_kicks(vm, gic.finish());
}
