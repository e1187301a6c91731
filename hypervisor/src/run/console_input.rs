//! Typed console input: escape keys acted on, bytes handed to the VM in focus.

use super::kicks::{send_kicks, KICK_SGI};
use super::machine::{cpus_of, machine};
use super::power::{current_status, power_off};
use crate::arch::aarch64::el2;
use crate::console::mux::{InputAction, INPUT_QUEUE_LEN};
use crate::logger;
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
pub(super) fn refill_input(vm: &mut Vm) {
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
        None => cpus_of(vm_index).for_each(|cpu| el2::send_sgi(KICK_SGI, machine().cpus[cpu].mpidr)),
    }
}
