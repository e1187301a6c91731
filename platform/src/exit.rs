//! What QEMU's exit status means when Sluice powers the machine off.
//!
//! The hypervisor exits through semihosting `SYS_EXIT` with a status built here; the
//! test runner decodes the same status, so both sides share one definition.
//!
//! - `0`: every VM stopped cleanly (PSCI `SYSTEM_OFF`).
//! - bit `n` (`n < 7`): VM `n` (in config order) ended by a fault or was refused.
//! - bit 7: the hypervisor itself panicked.

use crate::bundle::MAX_VMS;

/// Bit set when the hypervisor panicked.
pub const HYPERVISOR_PANIC: u8 = 0x80;

/// How one VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest asked to power off.
    Clean,
    /// The guest faulted fatally, or the hypervisor refused to start it.
    Failed,
}

/// Builds the exit status from how each VM ended (index = VM index).
pub fn status(ends: impl IntoIterator<Item = VmEnd>) -> u8 {
    ends.into_iter()
        .take(MAX_VMS)
        .enumerate()
        .filter(|(_, end)| *end == VmEnd::Failed)
        .fold(0, |status, (i, _)| status | (1 << i))
}

/// Whether VM `index` ended by a fault according to `status`.
pub fn vm_failed(status: u8, index: usize) -> bool {
    index < MAX_VMS && status & (1 << index) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_marks_failed_vms() {
        assert_eq!(status([VmEnd::Clean, VmEnd::Clean]), 0);
        let s = status([VmEnd::Clean, VmEnd::Failed, VmEnd::Failed]);
        assert_eq!(s, 0b110);
        assert!(!vm_failed(s, 0) && vm_failed(s, 1) && vm_failed(s, 2));
        assert_eq!(s & HYPERVISOR_PANIC, 0);
    }
}
