//! How Sluice tells the tools the machine's exit status.
//!
//! When the last VM stops, Sluice closes the console to guests, prints one last line,
//! `sluice: exit status N`, and powers the machine off through the host's PSCI
//! `SYSTEM_OFF`. Nothing a guest can reach carries the status: QEMU runs without
//! semihosting, and every guest line on the console is tagged `[name] `, so no guest
//! can print a line that starts with `sluice: `, let alone the last one. The tools
//! read the status from that last line only ([`parse_status_line`]).
//!
//! - `0`: every VM stopped cleanly (PSCI `SYSTEM_OFF`).
//! - bit `n` (`n < 7`): VM `n` (in config order) ended by a fault or was refused.
//! - bit 7: the hypervisor itself hit a fatal error.

use core::fmt;

use crate::bundle::MAX_VMS;

/// Bit set when the hypervisor panicked.
pub const HYPERVISOR_PANIC: u8 = 0x80;

/// What starts every line Sluice prints on the console.
pub const SLUICE_PREFIX: &str = "sluice: ";

/// The words before the number on the status line (after [`SLUICE_PREFIX`]).
const STATUS_WORDS: &str = "exit status ";

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

/// The status line without its `sluice: ` prefix (Sluice's logger adds that):
/// `exit status N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine(pub u8);

impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STATUS_WORDS}{}", self.0)
    }
}

/// The status in a console line that is exactly `sluice: exit status N` (a trailing
/// `\r` allowed), or `None`.
pub fn parse_status_line(line: &str) -> Option<u8> {
    let digits = line.trim_end_matches('\r').strip_prefix(SLUICE_PREFIX)?.strip_prefix(STATUS_WORDS)?;
    let leading_zero = digits.len() > 1 && digits.starts_with('0');
    if digits.is_empty() || leading_zero || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn status_marks_failed_vms() {
        assert_eq!(status([VmEnd::Clean, VmEnd::Clean]), 0);
        let s = status([VmEnd::Clean, VmEnd::Failed, VmEnd::Failed]);
        assert_eq!(s, 0b110);
        assert!(!vm_failed(s, 0) && vm_failed(s, 1) && vm_failed(s, 2));
        assert_eq!(s & HYPERVISOR_PANIC, 0);
    }

    #[test]
    fn the_status_line_round_trips() {
        for status in [0u8, 1, 3, 0x7f, 0x80, 255] {
            let line = format!("{SLUICE_PREFIX}{}", StatusLine(status));
            assert_eq!(parse_status_line(&line), Some(status), "{line}");
            assert_eq!(parse_status_line(&format!("{line}\r")), Some(status));
        }
    }

    #[test]
    fn only_the_exact_line_is_a_status() {
        for line in [
            "[vm] sluice: exit status 0",
            "sluice: exit status ",
            "sluice: exit status 256",
            "sluice: exit status 0 ",
            "sluice: exit status +1",
            "sluice: exit status 0001",
            "sluice: exit status 01",
            "sluice:  exit status 0",
            "exit status 0",
            "",
        ] {
            assert_eq!(parse_status_line(line), None, "{line:?}");
        }
    }
}
