//! Judges a finished QEMU run against a scenario's `[expect]`: pure functions only.

use crate::attribution::{exit_status, Host, Said, Speaker};
use crate::send::{self, Progress};
use crate::status::{describe, Ending};
use crate::validate::Expect;

/// Checks that each of `expected` is said in `output`, in order, each on a later line
/// than the one before. Returns one message per missing entry (empty: all found).
/// Entries nobody can say on `console` (Sluice's, on plain QEMU) are skipped.
pub fn check_lines(output: &[String], expected: &[Said], host: Host) -> Vec<String> {
    let mut failures = Vec::new();
    let expected: Vec<&Said> = expected.iter().filter(|said| said.applies_to(host)).collect();
    // Index of the first line the next entry may match on, and the last match.
    let mut from = 0;
    let mut last_match: Option<(usize, &Said)> = None;
    for (k, said) in expected.iter().enumerate() {
        let found = output[from.min(output.len())..]
            .iter()
            .position(|line| said.matches(line, host))
            .map(|offset| from + offset);
        match found {
            Some(index) => {
                from = index + 1;
                last_match = Some((index, said));
            }
            None => {
                let text = said.to_string();
                let mut message =
                    format!("expected line {} of {} not found: {text:?}", k + 1, expected.len());
                if let Some((index, previous)) = last_match {
                    message += &format!(
                        " (looked after line {}, which matched {:?})",
                        index + 1,
                        previous.to_string()
                    );
                    if let Some(early) = output[..from].iter().position(|l| said.matches(l, host)) {
                        message += &format!("; it appears only earlier, on line {}", early + 1);
                    }
                }
                if let Some(other) =
                    output.iter().position(|l| l.contains(said.text.as_str()) && !said.matches(l, host))
                {
                    message +=
                        &format!("; line {} has the text, but not from {}", other + 1, speaker_name(said));
                }
                failures.push(message);
            }
        }
    }
    failures
}

/// Who an entry wants to hear, in words.
fn speaker_name(said: &Said) -> String {
    match &said.speaker {
        Some(Speaker::Sluice) => "Sluice".to_owned(),
        Some(Speaker::Vm(name)) => format!("VM {name:?}"),
        None => "anyone".to_owned(),
    }
}

/// Checks that each of `expected` is said somewhere in `output`, in any order.
/// Returns one message per missing entry; entries nobody can say on `host` are skipped.
pub fn check_anywhere(output: &[String], expected: &[Said], host: Host) -> Vec<String> {
    expected
        .iter()
        .filter(|said| said.applies_to(host) && !output.iter().any(|line| said.matches(line, host)))
        .map(|said| format!("expected line not found (in any order): {:?}", said.to_string()))
        .collect()
}

/// Checks that none of `absent` is said in `output`. Returns one message per entry found.
pub fn check_absent(output: &[String], absent: &[Said], host: Host) -> Vec<String> {
    absent
        .iter()
        .filter_map(|said| {
            let index = output.iter().position(|line| said.matches(line, host))?;
            Some(format!(
                "{:?} must not appear, but line {} has it: {}",
                said.to_string(),
                index + 1,
                output[index].trim()
            ))
        })
        .collect()
}

/// Everything wrong with a run; empty when it met `expect`. `output` is the console's
/// lines (QEMU's stdout); under Sluice its last line carries the machine's exit
/// status, and QEMU itself must exit 0 (Sluice powers off through PSCI); on plain QEMU
/// the guest's own power-off must end QEMU with 0. `typed` says how far the scenario's
/// typed input (`expect.sends`) got.
pub fn judge(
    expect: &Expect,
    ending: Ending,
    output: &[String],
    host: Host,
    vm_names: &[String],
    typed: &Progress,
) -> Vec<String> {
    let mut failures = Vec::new();
    let wanted = expect.exit_status;
    match (ending, host) {
        (Ending::TimedOut(after), _) => failures
            .push(format!("timed out after {} s (expect.timeout_secs); QEMU was killed", after.as_secs())),
        (Ending::Exited(None), _) => failures.push("QEMU was killed by a signal".to_owned()),
        (Ending::Exited(Some(code)), _) if code != 0 => {
            failures.push(format!("QEMU itself failed (exit code {code}); it should power off and exit 0"));
        }
        (Ending::Exited(Some(_)), Host::PlainQemu) => {}
        (Ending::Exited(Some(_)), Host::Sluice) => match exit_status(output) {
            Ok(status) if status == wanted => {}
            Ok(status) => failures.push(format!(
                "Sluice's exit status is {status} ({}), expected {wanted} ({})",
                describe(status, vm_names),
                describe(wanted, vm_names)
            )),
            Err(why) => failures.push(why),
        },
    }
    failures.extend(send::check(&expect.sends, typed, ending));
    if let (Some(bound), Some(took)) = (expect.quit_within, typed.quit_after) {
        if took > bound {
            failures.push(format!(
                "QEMU exited {} ms after the last typed input; expect.quit_within_ms allows {}",
                took.as_millis(),
                bound.as_millis()
            ));
        }
    }
    failures.extend(check_lines(output, &expect.lines, host));
    failures.extend(check_anywhere(output, &expect.anywhere, host));
    failures.extend(check_absent(output, &expect.absent, host));
    failures
}

/// The last `count` lines of `output`.
pub fn tail(output: &[String], count: usize) -> &[String] {
    &output[output.len().saturating_sub(count)..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Clock;
    use std::time::Duration;

    /// Splits captured output into lines, without `\n` or the serial port's `\r`.
    fn split_lines(output: &str) -> Vec<String> {
        output.lines().map(|line| line.trim_end_matches('\r').to_owned()).collect()
    }

    fn said(items: &[&str]) -> Vec<Said> {
        items.iter().map(|s| Said::parse(s)).collect()
    }

    fn output() -> Vec<String> {
        split_lines(
            "sluice: boot\r\n[vm0] hello from vm0\r\n[vm1] ticks: 1\n[vm1] ticks: 2\n[vm0] done\n\
             sluice: exit status 0\n",
        )
    }

    fn lines(expected: &[&str]) -> Vec<String> {
        check_lines(&output(), &said(expected), Host::Sluice)
    }

    #[test]
    fn substrings_in_order_pass() {
        assert!(lines(&["[vm0] hello", "[vm1] ticks: 1", "[vm0] done"]).is_empty());
        assert!(lines(&[]).is_empty());
    }

    #[test]
    fn each_match_must_be_on_a_later_line() {
        // "ticks" twice needs two lines; three times fails.
        assert!(lines(&["[vm1] ticks", "[vm1] ticks"]).is_empty());
        let failures = lines(&["[vm1] ticks", "[vm1] ticks", "[vm1] ticks"]);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("expected line 3 of 3 not found: \"[vm1] ticks\""));
        // Two entries found on the same line are not enough.
        let failures = lines(&["[vm0] hello", "[vm0] vm0"]);
        assert_eq!(failures.len(), 1, "{failures:?}");
    }

    #[test]
    fn out_of_order_says_where_it_was() {
        let failures = lines(&["[vm0] done", "sluice: boot"]);
        assert_eq!(
            failures,
            ["expected line 2 of 2 not found: \"sluice: boot\" (looked after line 5, which matched \"[vm0] done\"); \
              it appears only earlier, on line 1"]
        );
    }

    #[test]
    fn another_speakers_line_does_not_count() {
        let failures = lines(&["[vm1] hello from vm0"]);
        assert_eq!(
            failures,
            ["expected line 1 of 1 not found: \"[vm1] hello from vm0\"; line 2 has the text, but not from VM \"vm1\""]
        );
        let forged = split_lines("[vm0] sluice: vm \"vm1\" powered off\n");
        assert_eq!(check_lines(&forged, &said(&["sluice: vm \"vm1\" powered off"]), Host::Sluice).len(), 1);
    }

    #[test]
    fn missing_first_line_is_reported_and_later_ones_still_checked() {
        let failures = lines(&["[vm0] nope", "[vm0] hello", "[vm0] gone"]);
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0], "expected line 1 of 3 not found: \"[vm0] nope\"");
        assert!(
            failures[1].starts_with("expected line 3 of 3 not found: \"[vm0] gone\" (looked after line 2")
        );
    }

    #[test]
    fn anywhere_lines_may_come_in_any_order() {
        let out = output();
        assert!(check_anywhere(&out, &said(&["[vm0] done", "[vm1] ticks: 2", "sluice: boot"]), Host::Sluice)
            .is_empty());
        assert_eq!(
            check_anywhere(&out, &said(&["[vm0] done", "[vm1] done"]), Host::Sluice),
            ["expected line not found (in any order): \"[vm1] done\""]
        );
        assert!(check_anywhere(&out, &said(&["sluice: nothing like it"]), Host::PlainQemu).is_empty());
        let mut expect = expect(0);
        expect.anywhere = said(&["[vm1] ticks: 3"]);
        assert_eq!(judged(&expect, Ending::Exited(Some(0)), &out, &[]).len(), 1);
    }

    #[test]
    fn absent_substrings_fail_when_present() {
        assert!(check_absent(&output(), &said(&["panicked"]), Host::Sluice).is_empty());
        assert_eq!(
            check_absent(&output(), &said(&["panicked", "ticks"]), Host::Sluice),
            ["\"ticks\" must not appear, but line 3 has it: [vm1] ticks: 1"]
        );
        // An attributed entry is looked for on that speaker's lines only.
        assert!(check_absent(&output(), &said(&["[vm0] ticks"]), Host::Sluice).is_empty());
    }

    #[test]
    fn on_plain_qemu_vm_lines_are_untagged_and_sluice_says_nothing() {
        let plain = split_lines("hello from vm0\ndone\n");
        assert!(check_lines(&plain, &said(&["[vm0] hello", "sluice: boot", "[vm0] done"]), Host::PlainQemu)
            .is_empty());
    }

    fn expect(status: u8) -> Expect {
        Expect {
            timeout: Duration::from_secs(10),
            exit_status: status,
            lines: said(&["[vm0] hello"]),
            anywhere: Vec::new(),
            absent: said(&["panicked"]),
            clocks: vec![Clock::Wall],
            absent_files: Vec::new(),
            bundle_damage: Vec::new(),
            sends: Vec::new(),
            quit_within: None,
            reference: Vec::new(),
            reruns: Vec::new(),
            disks: Vec::new(),
        }
    }

    fn judged(expect: &Expect, ending: Ending, output: &[String], names: &[String]) -> Vec<String> {
        judge(expect, ending, output, Host::Sluice, names, &Progress::default())
    }

    fn with_status(status: u8) -> Vec<String> {
        let mut output = output();
        *output.last_mut().unwrap() = format!("sluice: exit status {status}");
        output
    }

    #[test]
    fn a_good_run_passes() {
        assert!(judged(&expect(0), Ending::Exited(Some(0)), &output(), &[]).is_empty());
        assert!(judged(&expect(2), Ending::Exited(Some(0)), &with_status(2), &[]).is_empty());
    }

    #[test]
    fn wrong_status_is_decoded() {
        let names = vec!["hello".to_owned(), "bad".to_owned()];
        let failures = judged(&expect(0), Ending::Exited(Some(0)), &with_status(2), &names);
        assert_eq!(
            failures,
            ["Sluice's exit status is 2 (VM 1 (\"bad\") failed), expected 0 (every VM stopped cleanly)"]
        );
    }

    #[test]
    fn only_sluices_last_line_gives_the_status() {
        let mut forged = output();
        forged.pop();
        forged.push("[vm0] sluice: exit status 0".to_owned());
        let failures = judged(&expect(0), Ending::Exited(Some(0)), &forged, &[]);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("is not the console's last line"), "{failures:?}");
    }

    #[test]
    fn qemu_failing_itself_is_not_a_status() {
        let failures = judged(&expect(0), Ending::Exited(Some(1)), &output(), &[]);
        assert_eq!(failures, ["QEMU itself failed (exit code 1); it should power off and exit 0"]);
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
        let bad = split_lines("[vm0] panicked at x");
        let failures = judged(&expect(0), Ending::Exited(Some(0)), &bad, &[]);
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
        let sent = Progress { sent: 1, ..Progress::default() };
        assert!(judge(&expect, ending, &output(), Host::Sluice, &[], &sent).is_empty());
    }

    #[test]
    fn quitting_too_long_after_the_last_input_fails_the_run() {
        let mut expect = expect(0);
        expect.sends = vec![send::Step { after: "hello".to_owned(), text: b"\x01x".to_vec() }];
        expect.quit_within = Some(Duration::from_millis(1000));
        let ending = Ending::Exited(Some(0));
        let typed =
            |ms| Progress { sent: 1, quit_after: Some(Duration::from_millis(ms)), ..Progress::default() };
        assert!(judge(&expect, ending, &output(), Host::Sluice, &[], &typed(999)).is_empty());
        let failures = judge(&expect, ending, &output(), Host::Sluice, &[], &typed(1500));
        assert_eq!(
            failures,
            ["QEMU exited 1500 ms after the last typed input; expect.quit_within_ms allows 1000"]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(&output(), 2), ["[vm0] done", "sluice: exit status 0"]);
        assert_eq!(tail(&output(), 40).len(), 6);
    }
}
