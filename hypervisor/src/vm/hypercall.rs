//! Sluice's own hypercalls (`platform::hypercall`): the null call, and the trace's
//! phase tag and dump. None needs the VM: they are answered on the trapping CPU.

use super::psci::ret;
use crate::trace;
use platform::hypercall::{MAX_DUMPED_EXITS, NULL, TRACE_DUMP, TRACE_PHASE};

/// What a Sluice hypercall comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Return this value in x0.
    Return(i64),
    /// Return SUCCESS, and print the trace with up to `exits` recent exits per CPU.
    DumpTrace {
        /// Exits per CPU, capped at [`MAX_DUMPED_EXITS`].
        exits: u16,
    },
}

/// Answers a Sluice hypercall (function in `x[0]`, argument in `x[1]`), or `None`
/// if `x[0]` is not one.
pub fn handle(x: [u64; 2]) -> Option<Answer> {
    let function = u32::try_from(x[0]).ok()?;
    // SMC32: the argument is the low 32 bits.
    let arg = x[1] & 0xffff_ffff;
    match function {
        NULL => Some(Answer::Return(0)),
        TRACE_PHASE => Some(Answer::Return(if trace::set_phase(arg) { 0 } else { ret::INVALID_PARAMETERS })),
        TRACE_DUMP => Some(Answer::DumpTrace { exits: arg.min(MAX_DUMPED_EXITS) as u16 }),
        _ => None,
    }
}
