//! Making vCPUs on other CPUs exit, so they look at their VM.

use super::machine::machine;
use crate::arch::aarch64::el2;
use crate::vm::Vm;

/// SGI one CPU sends another to make it exit its guest and look at its VM.
pub(super) const KICK_SGI: u32 = 0;

/// Makes the vCPUs the VM marked exit (except `current`, which is exiting anyway).
pub(super) fn send_kicks(vm: &mut Vm, current: Option<usize>) {
    let mut kicks = core::mem::take(&mut vm.kicks);
    if let Some(current) = current {
        kicks &= !(1 << current);
    }
    while kicks != 0 {
        let vcpu = kicks.trailing_zeros() as usize;
        kicks &= kicks - 1;
        if let Some(&cpu) = vm.config.cpus.get(vcpu) {
            el2::send_sgi(KICK_SGI, machine().cpus[cpu as usize].mpidr);
        }
    }
}
