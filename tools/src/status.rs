//! What Sluice's exit status says about a run, in words (decoded with `platform::exit`).

use std::process::ExitStatus;
use std::time::Duration;

use platform::bundle::MAX_VMS;
use platform::exit::{vm_failed, HYPERVISOR_PANIC};

use crate::attribution::exit_status;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself: its exit code, or `None` if a signal ended it.
    Exited(Option<i32>),
    /// QEMU ran past the timeout and was killed.
    TimedOut(Duration),
}

/// Describes an exit status of the hypervisor, naming VMs by their config names.
pub fn describe(status: u8, vm_names: &[String]) -> String {
    if status == 0 {
        return "every VM stopped cleanly".to_owned();
    }
    let mut parts = Vec::new();
    if status & HYPERVISOR_PANIC != 0 {
        parts.push("the hypervisor panicked".to_owned());
    }
    for index in (0..MAX_VMS).filter(|&i| vm_failed(status, i)) {
        parts.push(match vm_names.get(index) {
            Some(name) => format!("VM {index} ({name:?}) failed"),
            None => format!("VM {index} failed, but the scenario has no such VM (did QEMU itself fail?)"),
        });
    }
    parts.join("; ")
}

/// The machine's exit status from a run of Sluice: QEMU must have exited by itself
/// with 0 (Sluice powers off through PSCI), and Sluice's status line must end
/// `console` (see [`crate::attribution::exit_status`]).
///
/// # Errors
///
/// Saying what went wrong instead, in words.
pub fn from_run(exit: ExitStatus, console: &[String]) -> Result<u8, String> {
    match exit.code() {
        Some(0) => exit_status(console),
        Some(code) => Err(format!("QEMU itself failed (exit code {code}) before Sluice powered off")),
        None => Err(format!("QEMU did not exit normally ({exit})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::exit::{status, VmEnd};

    fn names() -> Vec<String> {
        vec!["hello".to_owned(), "bad".to_owned()]
    }

    #[test]
    fn zero_is_a_clean_stop() {
        assert_eq!(describe(0, &names()), "every VM stopped cleanly");
    }

    #[test]
    fn failed_vms_are_named() {
        let s = status([VmEnd::Clean, VmEnd::Failed]);
        assert_eq!(describe(s, &names()), "VM 1 (\"bad\") failed");
        let s = status([VmEnd::Failed, VmEnd::Failed]);
        assert_eq!(describe(s, &names()), "VM 0 (\"hello\") failed; VM 1 (\"bad\") failed");
    }

    #[test]
    fn panic_and_unknown_vms_are_said() {
        assert_eq!(describe(HYPERVISOR_PANIC, &names()), "the hypervisor panicked");
        let text = describe(HYPERVISOR_PANIC | 0b100, &names());
        assert!(text.starts_with("the hypervisor panicked; VM 2 failed, but"), "{text}");
    }
}
