//! Making vCPUs on other CPUs exit, so they look at their VM.

use super::machine::machine;
use crate::arch::aarch64::el2;
use crate::bits::ones;
use crate::vgic::Kick;
use crate::vm::Vm;

/// SGI one CPU sends another to make it exit its guest and look at its VM.
pub(super) const KICK_SGI: u32 = 0;

/// Makes the vCPUs of `vm` in `kicks` exit.
pub(super) fn send_kicks(vm: &Vm, kicks: Kick) {
    for vcpu in ones(kicks.0.into()) {
        if let Some(&cpu) = vm.config.spec.cpus.get(vcpu as usize) {
            el2::send_sgi(KICK_SGI, machine().cpus[cpu as usize].mpidr);
        }
    }
}
