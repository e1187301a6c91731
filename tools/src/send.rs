//! Typed input for a test scenario (`[[expect.send]]`): when each send is due, and
//! what is wrong when one never was. Pure; the runner does the I/O.
//!
//! Send `k` is due once its `after` substring has appeared in QEMU's serial output
//! (stdout) after the match that triggered send `k - 1` (after the start, for the
//! first). The output is searched as a byte stream, not line by line, so a prompt that
//! ends without a newline (`login: `) triggers a send too.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::status::Ending;

/// One checked `[[expect.send]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The substring to wait for; never empty, never a line break.
    pub after: String,
    /// The bytes to write to QEMU's stdin then.
    pub text: Vec<u8>,
}

/// Finds the steps that are due as output arrives.
#[derive(Debug, Clone)]
pub struct Schedule {
    steps: Vec<Step>,
    /// The first step not yet due.
    next: usize,
    /// Output after the last match not yet ruled out as the start of the next one.
    window: Vec<u8>,
}

impl Schedule {
    /// A schedule for `steps`, none due yet.
    pub fn new(steps: Vec<Step>) -> Self {
        Self { steps, next: 0, window: Vec::new() }
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Takes more serial output; returns the steps it makes due (indices into
    /// [`Schedule::steps`], in order; often empty).
    pub fn feed(&mut self, bytes: &[u8]) -> Range<usize> {
        let first = self.next;
        let Some(step) = self.steps.get(self.next) else {
            return first..first;
        };
        self.window.extend_from_slice(bytes);
        let mut needle = step.after.as_bytes();
        while let Some(at) = find(&self.window, needle) {
            self.window.drain(..at + needle.len());
            self.next += 1;
            match self.steps.get(self.next) {
                Some(step) => needle = step.after.as_bytes(),
                None => {
                    self.window = Vec::new();
                    return first..self.next;
                }
            }
        }
        // Only the last `needle.len() - 1` bytes can still begin a match.
        let keep = needle.len().saturating_sub(1);
        let cut = self.window.len().saturating_sub(keep);
        self.window.drain(..cut);
        first..self.next
    }
}

/// How far a run's typed input got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps written to QEMU's stdin in full.
    pub sent: usize,
    /// Why writing step `sent` failed, if it did.
    pub error: Option<String>,
    /// When the last step was written.
    pub last_sent_at: Option<Instant>,
    /// How long after the last step QEMU exited (if it exited after all of them).
    pub quit_after: Option<Duration>,
}

/// What is wrong with a run's typed input: one message for the first step that was
/// not sent (the later ones wait for it), or none.
pub fn check(steps: &[Step], progress: &Progress, ending: Ending) -> Vec<String> {
    let k = progress.sent;
    let Some(step) = steps.get(k) else {
        return Vec::new();
    };
    let field = format!("expect.send[{k}]");
    let mut message = match &progress.error {
        Some(error) => format!("{field}: writing {} to QEMU's stdin failed: {error}", shown(&step.text)),
        None => {
            let since = match k {
                0 => String::new(),
                _ => format!(" after send[{}]'s match {:?}", k - 1, steps[k - 1].after),
            };
            let end = match ending {
                Ending::Exited(_) => "QEMU exited",
                Ending::TimedOut(_) => "the timeout",
            };
            format!(
                "{field} never triggered: {:?} did not appear in the serial output{since} before {end}, so {} was not sent",
                step.after,
                shown(&step.text)
            )
        }
    };
    let later = steps.len() - k - 1;
    if later > 0 {
        message += &format!(" ({later} later send(s) not sent either)");
    }
    vec![message]
}

/// Bytes as a quoted string with escapes, as a TOML file would write them.
pub fn shown(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Where `needle` (not empty) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Steps from `(after, text)` pairs, for tests.
#[cfg(test)]
pub fn steps(pairs: &[(&str, &str)]) -> Vec<Step> {
    pairs
        .iter()
        .map(|(after, text)| Step { after: (*after).to_owned(), text: text.as_bytes().to_vec() })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How many of `steps` the whole of `output` makes due.
    fn due_in(steps: &[Step], output: &[u8]) -> usize {
        let mut schedule = Schedule::new(steps.to_vec());
        schedule.feed(output);
        schedule.next
    }

    #[test]
    fn a_step_is_due_when_its_substring_appears() {
        let mut schedule = Schedule::new(steps(&[("echo: ready", "hello\r")]));
        assert_eq!(schedule.feed(b"boot\r\n"), 0..0);
        assert_eq!(schedule.feed(b"echo: ready\r\n"), 0..1);
        assert_eq!(schedule.feed(b"echo: ready\r\n"), 1..1);
        assert_eq!(schedule.next, 1);
        assert_eq!(schedule.steps()[0].text, b"hello\r");
    }

    #[test]
    fn a_prompt_without_newline_triggers() {
        assert_eq!(due_in(&steps(&[("login: ", "root\r")]), b"\r\nlogin: "), 1);
    }

    #[test]
    fn a_match_split_across_chunks_is_found() {
        let mut schedule = Schedule::new(steps(&[("ready", "x")]));
        for chunk in [&b"re"[..], b"a", b"", b"dy"] {
            let due = schedule.feed(chunk);
            assert_eq!(due.end, usize::from(chunk == b"dy"), "{chunk:?}");
        }
    }

    #[test]
    fn each_step_looks_after_the_previous_match() {
        let two = steps(&[("> ", "a\r"), ("> ", "b\r")]);
        // One prompt is one send; the second waits for the next prompt.
        assert_eq!(due_in(&two, b"> "), 1);
        assert_eq!(due_in(&two, b"> > "), 2);
        // Out of order: "b" appeared only before "a", so the second step is not due.
        let ordered = steps(&[("a", "1"), ("b", "2")]);
        assert_eq!(due_in(&ordered, b"b a"), 1);
        assert_eq!(due_in(&ordered, b"a b"), 2);
        // A match right after the previous one, even in the same chunk.
        assert_eq!(due_in(&ordered, b"ab"), 2);
        // But not overlapping it.
        assert_eq!(due_in(&steps(&[("aa", "1"), ("a", "2")]), b"aa"), 1);
    }

    #[test]
    fn several_steps_can_fall_due_in_one_chunk() {
        let mut schedule = Schedule::new(steps(&[("1", "a"), ("2", "b"), ("3", "c")]));
        assert_eq!(schedule.feed(b"1 2"), 0..2);
        assert_eq!(schedule.feed(b" 3 4"), 2..3);
        assert_eq!(schedule.feed(b"1 2 3"), 3..3);
    }

    #[test]
    fn the_window_stays_small() {
        let mut schedule = Schedule::new(steps(&[("needle", "x")]));
        for _ in 0..1000 {
            schedule.feed(&[b'.'; 100]);
        }
        assert!(schedule.window.len() < "needle".len());
        schedule.feed(b"need");
        assert_eq!(schedule.feed(b"le"), 0..1);
    }

    #[test]
    fn no_steps_no_failures() {
        assert_eq!(Schedule::new(Vec::new()).feed(b"anything"), 0..0);
        let ended = Ending::Exited(Some(0));
        assert!(check(&[], &Progress::default(), ended).is_empty());
        let one = steps(&[("a", "b")]);
        let sent = Progress { sent: 1, ..Progress::default() };
        assert!(check(&one, &sent, ended).is_empty());
    }

    #[test]
    fn a_step_that_never_triggered_is_named() {
        let all = steps(&[("echo: ready", "hello\r"), ("hello", "\u{1}x"), ("z", "z")]);
        let none = Progress::default();
        assert_eq!(
            check(&all, &none, Ending::Exited(Some(0))),
            ["expect.send[0] never triggered: \"echo: ready\" did not appear in the serial \
              output before QEMU exited, so \"hello\\r\" was not sent (2 later send(s) not sent either)"]
        );
        let one = Progress { sent: 1, ..Progress::default() };
        assert_eq!(
            check(&all, &one, Ending::TimedOut(Duration::from_secs(5))),
            ["expect.send[1] never triggered: \"hello\" did not appear in the serial output \
              after send[0]'s match \"echo: ready\" before the timeout, so \"\\u{1}x\" was not \
              sent (1 later send(s) not sent either)"]
        );
    }

    #[test]
    fn a_failed_write_is_reported() {
        let all = steps(&[("a", "b")]);
        let broken = Progress { sent: 0, error: Some("Broken pipe".to_owned()), ..Progress::default() };
        assert_eq!(
            check(&all, &broken, Ending::Exited(Some(0))),
            ["expect.send[0]: writing \"b\" to QEMU's stdin failed: Broken pipe"]
        );
    }
}
