//! Typed console input: escape keys acted on, bytes handed to the VM in focus.

use super::kicks::send_kicks;
use super::machine::machine;
use super::power::{current_status, power_off};
use crate::arch::aarch64::el2::ThisCpuInterface;
use crate::arch::aarch64::virtual_interface::VirtualInterface;
use crate::console::mux::InputAction;
use crate::logger;
use crate::vgic::VgicSession;
use crate::vm::Vm;
use log::info;

/// Hands what was typed on the host UART to the VM in focus, or acts on an escape
/// key.
pub(super) fn console_input() {
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

/// Moves queued console input into the VM: all of it into a running virtio-console
/// (Linux's hvc0; it holds or drops what its driver hasn't taken), else into the
/// PL011 as it makes room.
pub(super) fn refill_input<I: VirtualInterface>(vm: &Vm, gic: &mut VgicSession<'_, I>) {
    if vm.devices.virtio_console_input(gic, |typed| logger::take_input(vm.index, typed)) {
        return;
    }
    vm.devices.uart_input(gic, || {
        let mut byte = [0u8];
        (logger::take_input(vm.index, &mut byte) == 1).then_some(byte[0])
    });
}

/// Queues a typed byte for VM `vm_index` and hands it over. No CPU holds a device
/// lock for longer than one access, so this waits only that long; the vCPUs the
/// input concerns are kicked.
fn deliver_input(vm_index: usize, byte: u8) {
    let Some(Some(vm)) = machine().vms.get(vm_index) else { return };
    logger::queue_input(vm_index, byte);
    let mut gic = VgicSession::<ThisCpuInterface>::remote(vm.devices.vgic());
    refill_input(vm, &mut gic);
    send_kicks(vm, gic.finish());
}
