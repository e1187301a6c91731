//! Transfers over the channels between VMs' consoles (`devices::virtio::channel`).
//!
//! A notify on either end only marks its link due. The exit that made it (or any
//! later exit of either VM, or its EL2 timer while a transfer's budget left work)
//! runs the transfer here, its own device let go: both ends' devices locked in the
//! link's order (VM, then slot, ascending: every transfer takes them so, and no
//! other path holds two devices, so none waits for the other for good), one budget
//! of bytes moved both ways, then each device's interrupt line told to its own VM:
//! the exiting vCPU's through its session, the other VM's through a remote one,
//! whose vCPUs are kicked. The sender's CPU never waits for the receiver's vCPU.

use super::kicks::send_kicks;
use super::machine::machine;
use crate::arch::aarch64::el2::ThisCpuInterface;
use crate::devices::virtio::channel::Link;
use crate::devices::virtio::Budget;
use crate::vgic::VgicSession;
use crate::vm::Vm;

/// Runs the transfers due on `local`'s channels; `gic` is the exiting vCPU's session.
pub(super) fn serve_channels(local: &Vm, gic: &mut VgicSession<'_, ThisCpuInterface>) {
    for link in &local.channels {
        // A load first: most exits find nothing due, and leave the line alone.
        if link.is_due() && link.take_due() {
            transfer(local, link, gic);
        }
    }
}

/// One budget of transfer over `link`.
fn transfer(local: &Vm, link: &Link, gic: &mut VgicSession<'_, ThisCpuInterface>) {
    let [(vm_a, slot_a), (vm_b, slot_b)] = link.ends();
    // A VM refused at boot never joins: the other end's bytes wait, as for a peer
    // that never comes up.
    let built = |index: usize| machine().vms.get(index).and_then(Option::as_ref);
    let (Some(a), Some(b)) = (built(vm_a), built(vm_b)) else { return };
    let (Some(device_a), Some(device_b)) = (a.devices.virtio_device(slot_a), b.devices.virtio_device(slot_b))
    else {
        return;
    };
    let mut first = device_a.lock();
    let mut second = device_b.lock();
    link.transfer(first.device_mut(), second.device_mut(), &mut Budget::per_call());
    for (vm, device) in [(a, &mut first), (b, &mut second)] {
        if vm.index == local.index {
            device.drive_now(gic);
        } else {
            let mut remote = VgicSession::<ThisCpuInterface>::remote(vm.devices.vgic());
            device.drive_now(&mut remote);
            send_kicks(vm, remote.finish());
        }
    }
}
