//! Making vCPUs on other CPUs exit, so they look at their VM.

use super::machine::machine;
use crate::arch::aarch64::el2;
use crate::vgic::Kick;
use crate::vm::Vm;

/// SGI one CPU sends another to make it exit its guest and look at its VM.
pub(super) const KICK_SGI: u32 = 0;

/// Makes the vCPUs of `vm` in `kicks` exit.
pub(super) fn send_kicks(vm: &Vm, kicks: Kick) {
    let mut kicks = kicks.0;
    while kicks != 0 {
        let vcpu = kicks.trailing_zeros() as usize;
        kicks &= kicks - 1;
        if let Some(&cpu) = vm.config.cpus.get(vcpu) {
            el2::send_sgi(KICK_SGI, machine().cpus[cpu as usize].mpidr);
        }
    }
}
