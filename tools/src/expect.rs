//! Judges a finished QEMU run against a scenario's `[expect]`: pure functions only.

use std::time::Duration;

use crate::send::{self, Progress};
use crate::status::describe;
use crate::validate::Expect;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself: its exit code, or `None` if a signal ended it.
    Exited(Option<i32>),
    /// QEMU ran past the timeout and was killed.
    TimedOut(Duration),
}

/// Checks that each of `expected` appears in `output`, in order, each on a later line
/// than the one before. Returns one message per missing entry (empty: all found).
pub fn check_lines(output: &[String], expected: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    // Index of the first line the next entry may match on, and the last match.
    let mut from = 0;
    let mut last_match: Option<(usize, &str)> = None;
    for (k, text) in expected.iter().enumerate() {
        let found = output[from.min(output.len())..]
            .iter()
            .position(|line| line.contains(text.as_str()))
            .map(|offset| from + offset);
        match found {
            Some(index) => {
                from = index + 1;
                last_match = Some((index, text));
            }
            None => {
                let mut message =
                    format!("expected line {} of {} not found: {text:?}", k + 1, expected.len());
                if let Some((index, previous)) = last_match {
                    message += &format!(" (looked after line {}, which matched {previous:?})", index + 1);
                    if let Some(early) = output[..from].iter().position(|l| l.contains(text.as_str())) {
                        message += &format!("; it appears only earlier, on line {}", early + 1);
                    }
                }
                failures.push(message);
            }
        }
    }
    failures
}

/// Checks that none of `absent` appears in `output`. Returns one message per entry found.
pub fn check_absent(output: &[String], absent: &[String]) -> Vec<String> {
    absent
        .iter()
        .filter_map(|text| {
            let index = output.iter().position(|line| line.contains(text.as_str()))?;
            Some(format!("{text:?} must not appear, but line {} has it: {}", index + 1, output[index].trim()))
        })
        .collect()
}

/// Everything wrong with a run; empty when it met `expect`. `typed` says how far the
/// scenario's typed input (`expect.sends`) got.
pub fn judge(
    expect: &Expect,
    ending: Ending,
    output: &[String],
    vm_names: &[String],
    typed: &Progress,
) -> Vec<String> {
    let mut failures = Vec::new();
    let wanted = expect.exit_status;
    match ending {
        Ending::TimedOut(after) => failures
            .push(format!("timed out after {} s (expect.timeout_secs); QEMU was killed", after.as_secs())),
        Ending::Exited(None) => failures.push("QEMU was killed by a signal".to_owned()),
        Ending::Exited(Some(code)) if code == i32::from(wanted) => {}
        Ending::Exited(Some(code)) => {
            let got = match u8::try_from(code) {
                Ok(status) => describe(status, vm_names),
                Err(_) => "not a hypervisor status".to_owned(),
            };
            failures.push(format!(
                "QEMU exited with status {code} ({got}), expected {wanted} ({})",
                describe(wanted, vm_names)
            ));
        }
    }
    failures.extend(send::check(&expect.sends, typed, ending));
    failures.extend(check_lines(output, &expect.lines));
    failures.extend(check_absent(output, &expect.absent));
    failures
}

/// The last `count` lines of `output`.
pub fn tail(output: &[String], count: usize) -> &[String] {
    &output[output.len().saturating_sub(count)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits captured output into lines, without `\n` or the serial port's `\r`.
    fn split_lines(output: &str) -> Vec<String> {
        output.lines().map(|line| line.trim_end_matches('\r').to_owned()).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn output() -> Vec<String> {
        split_lines("boot\r\nhello from vm0\r\nticks: 1\nticks: 2\ndone\n")
    }

    #[test]
    fn substrings_in_order_pass() {
        assert!(check_lines(&output(), &strings(&["hello", "ticks: 1", "done"])).is_empty());
        assert!(check_lines(&output(), &[]).is_empty());
    }

    #[test]
    fn each_match_must_be_on_a_later_line() {
        // "ticks" twice needs two lines; three times fails.
        assert!(check_lines(&output(), &strings(&["ticks", "ticks"])).is_empty());
        let failures = check_lines(&output(), &strings(&["ticks", "ticks", "ticks"]));
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("expected line 3 of 3 not found: \"ticks\""));
        // Two entries found on the same line are not enough.
        let failures = check_lines(&output(), &strings(&["hello", "vm0"]));
        assert_eq!(failures.len(), 1, "{failures:?}");
    }

    #[test]
    fn out_of_order_says_where_it_was() {
        let failures = check_lines(&output(), &strings(&["done", "boot"]));
        assert_eq!(
            failures,
            ["expected line 2 of 2 not found: \"boot\" (looked after line 5, which matched \"done\"); \
              it appears only earlier, on line 1"]
        );
    }

    #[test]
    fn missing_first_line_is_reported_and_later_ones_still_checked() {
        let failures = check_lines(&output(), &strings(&["nope", "hello", "gone"]));
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0], "expected line 1 of 3 not found: \"nope\"");
        assert!(failures[1].starts_with("expected line 3 of 3 not found: \"gone\" (looked after line 2"));
    }

    #[test]
    fn absent_substrings_fail_when_present() {
        assert!(check_absent(&output(), &strings(&["panicked"])).is_empty());
        assert_eq!(
            check_absent(&output(), &strings(&["panicked", "ticks"])),
            ["\"ticks\" must not appear, but line 3 has it: ticks: 1"]
        );
    }

    fn expect(status: u8) -> Expect {
        Expect {
            timeout: Duration::from_secs(10),
            exit_status: status,
            lines: strings(&["hello"]),
            absent: strings(&["panicked"]),
            sends: Vec::new(),
            reference: Vec::new(),
        }
    }

    fn judged(expect: &Expect, ending: Ending, output: &[String], names: &[String]) -> Vec<String> {
        judge(expect, ending, output, names, &Progress::default())
    }

    #[test]
    fn a_good_run_passes() {
        assert!(judged(&expect(0), Ending::Exited(Some(0)), &output(), &[]).is_empty());
        assert!(judged(&expect(2), Ending::Exited(Some(2)), &output(), &[]).is_empty());
    }

    #[test]
    fn wrong_status_is_decoded() {
        let names = strings(&["hello", "bad"]);
        let failures = judged(&expect(0), Ending::Exited(Some(2)), &output(), &names);
        assert_eq!(
            failures,
            ["QEMU exited with status 2 (VM 1 (\"bad\") failed), expected 0 (every VM stopped cleanly)"]
        );
    }

    #[test]
    fn timeout_and_signal_fail() {
        let failures = judged(&expect(0), Ending::TimedOut(Duration::from_secs(10)), &output(), &[]);
        assert_eq!(failures, ["timed out after 10 s (expect.timeout_secs); QEMU was killed"]);
        let failures = judged(&expect(0), Ending::Exited(None), &output(), &[]);
        assert_eq!(failures, ["QEMU was killed by a signal"]);
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = split_lines("panicked at x");
        let failures = judged(&expect(0), Ending::Exited(Some(128)), &bad, &[]);
        assert_eq!(failures.len(), 3, "{failures:?}");
    }

    #[test]
    fn a_send_that_never_triggered_fails_the_run() {
        let mut expect = expect(0);
        expect.sends = vec![send::Step { after: "login:".to_owned(), text: b"root\r".to_vec() }];
        let ending = Ending::Exited(Some(0));
        let failures = judged(&expect, ending, &output(), &[]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("expect.send[0] never triggered: \"login:\""));
        let sent = Progress { sent: 1, error: None };
        assert!(judge(&expect, ending, &output(), &[], &sent).is_empty());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(&output(), 2), strings(&["ticks: 2", "done"]));
        assert_eq!(tail(&output(), 40).len(), 5);
    }
}
