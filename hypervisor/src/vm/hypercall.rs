//! Sluice's own hypercalls (`platform::hypercall`): the null call, and the trace's
//! phase tag and dump.

use super::psci::ret;
use super::Vm;
use crate::trace;
use platform::hypercall::{MAX_DUMPED_EXITS, NULL, TRACE_DUMP, TRACE_PHASE};

/// Answers a Sluice hypercall (function in `x[0]`, argument in `x[1]`), or `None`
/// if `x[0]` is not one.
pub fn handle(vm: &mut Vm, x: [u64; 2]) -> Option<i64> {
    let function = u32::try_from(x[0]).ok()?;
    // SMC32: the argument is the low 32 bits.
    let arg = x[1] & 0xffff_ffff;
    match function {
        NULL => Some(0),
        TRACE_PHASE => Some(if trace::set_phase(arg) { 0 } else { ret::INVALID_PARAMETERS }),
        TRACE_DUMP => {
            vm.trace_dump = Some(arg.min(MAX_DUMPED_EXITS) as usize);
            Some(0)
        }
        _ => None,
    }
}
