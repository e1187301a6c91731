//! The honest QEMU runner: streams the output while keeping it, types the scenario's
//! input when it is due, enforces the timeout, and never leaves QEMU behind (it is
//! killed when the runner is dropped).
//!
//! Judging the run is `expect`'s job; this module only runs it.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd;
use crate::send::{self, Progress, Schedule, Step};
use crate::status::Ending;

/// How often the runner looks whether QEMU has exited.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long the runner waits for the last output once QEMU has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether QEMU's output is copied to our terminal as it comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Copy stdout to stdout and stderr to stderr (a CI log shows the run).
    Terminal,
    /// Only collect (benchmarks, whose output goes to a log file; the runner's own
    /// tests).
    Quiet,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// How it ended.
    pub ending: Ending,
    /// Every line QEMU printed (stdout and stderr, in the order lines completed).
    pub output: Vec<String>,
    /// The lines of the serial console alone (QEMU's stdout): what the guests and
    /// Sluice printed, without QEMU's own messages.
    pub console: Vec<String>,
    /// How far the typed input got.
    pub typed: Progress,
}

/// Splits a byte stream into lines as it arrives.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Takes more bytes; returns the lines they complete, without `\n` or `\r`.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(Self::text(&line[..end]));
        }
        lines
    }

    /// The unterminated last line, if any.
    pub fn finish(self) -> Option<String> {
        (!self.pending.is_empty()).then(|| Self::text(&self.pending))
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).trim_end_matches('\r').to_owned()
    }
}

type Transcript = Arc<Mutex<Vec<String>>>;

/// Copies `source` to `sink` as it comes, shows every chunk to `tap`, and appends its
/// lines to each of `transcripts`.
fn pump(
    mut source: impl Read,
    mut sink: Option<impl Write>,
    transcripts: &[&Transcript],
    mut tap: impl FnMut(&[u8]),
) {
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 4096];
    let push = |lines: Vec<String>| {
        for transcript in transcripts {
            transcript.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend(lines.iter().cloned());
        }
    };
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(sink) = sink.as_mut() {
            // The terminal going away must not stop the collection.
            let _ = sink.write_all(&buf[..n]).and_then(|()| sink.flush());
        }
        tap(&buf[..n]);
        push(splitter.feed(&buf[..n]));
    }
    push(splitter.finish().into_iter().collect());
}

type SharedProgress = Arc<Mutex<Progress>>;

/// Writes each text that arrives to QEMU's stdin, in order, and counts them in
/// `progress`. Stdin stays open until the sender goes away (QEMU's stdout closed: it
/// exited), so QEMU never reads an early end of file. Stops at the first failed write.
fn type_input(mut stdin: ChildStdin, texts: Receiver<Vec<u8>>, progress: &SharedProgress, echo: bool) {
    for text in texts {
        let written = stdin.write_all(&text).and_then(|()| stdin.flush());
        let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(()) => {
                if echo {
                    eprintln!("\nxtask: typed expect.send[{}]: {}", progress.sent, send::shown(&text));
                }
                progress.sent += 1;
                progress.last_sent_at = Some(Instant::now());
            }
            Err(e) => {
                progress.error = Some(e.to_string());
                return;
            }
        }
    }
}

/// A running QEMU. Dropping it kills QEMU and waits for it.
struct Process {
    child: Child,
    /// The output pumps and the input typist; they end when QEMU's pipes close.
    threads: Vec<JoinHandle<()>>,
    transcript: Transcript,
    console: Transcript,
    typed: SharedProgress,
}

impl Process {
    /// Starts `command`. With `steps`, its stdin is a pipe that gets each step's text
    /// when the step is due (its stdout shows the step's `after`); without, stdin is
    /// empty.
    fn spawn(command: &mut Command, echo: Echo, steps: &[Step]) -> Result<Self> {
        let shown = cmd::describe(command);
        let stdin = if steps.is_empty() { Stdio::null() } else { Stdio::piped() };
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{shown}`"))?;
        let transcript = Transcript::default();
        let console = Transcript::default();
        let typed = SharedProgress::default();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let echo = echo == Echo::Terminal;
        let mut threads = Vec::new();
        let mut schedule = Schedule::new(steps.to_vec());
        let mut due = None;
        if let Some(stdin) = child.stdin.take() {
            let (sender, texts) = mpsc::channel();
            due = Some(sender);
            let typed = Arc::clone(&typed);
            threads.push(std::thread::spawn(move || {
                type_input(stdin, texts, &typed, echo);
            }));
        }
        threads.push({
            let transcript = Arc::clone(&transcript);
            let console = Arc::clone(&console);
            std::thread::spawn(move || {
                let tap = |bytes: &[u8]| {
                    let Some(sender) = &due else { return };
                    for k in schedule.feed(bytes) {
                        // The typist is gone only if a write failed; that is recorded.
                        let _ = sender.send(schedule.steps()[k].text.clone());
                    }
                };
                pump(stdout, echo.then(io::stdout), &[&transcript, &console], tap);
            })
        });
        threads.push({
            let transcript = Arc::clone(&transcript);
            std::thread::spawn(move || pump(stderr, echo.then(io::stderr), &[&transcript], |_| {}))
        });
        Ok(Self { child, threads, transcript, console, typed })
    }

    /// Waits until QEMU exits or `timeout` passes; on timeout, kills it.
    fn wait(&mut self, timeout: Duration) -> Result<Ending> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot wait for QEMU")? {
                return Ok(Ending::Exited(status.code()));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Ok(Ending::TimedOut(timeout));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits for the output and input threads (they end when QEMU's pipes close) and
    /// returns all the lines, the console's, and how far the input got. A program that
    /// left a child holding the pipes is not waited for long.
    fn output(&mut self) -> (Vec<String>, Vec<String>, Progress) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline && !self.threads.iter().all(JoinHandle::is_finished) {
            std::thread::sleep(POLL_INTERVAL);
        }
        for thread in std::mem::take(&mut self.threads) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        let take = |t: &Transcript| std::mem::take(&mut *t.lock().unwrap_or_else(|p| p.into_inner()));
        let typed = self.typed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (take(&self.transcript), take(&self.console), typed)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` (QEMU) to the end or to `timeout`, streaming and collecting its
/// output, and typing each of `input` on its stdin when the step is due (see
/// [`crate::send`]).
///
/// # Errors
///
/// The program cannot be started or waited for. A timeout is not an error here: it is
/// [`Ending::TimedOut`], for the caller to judge; neither is input that was never due
/// ([`Run::typed`]).
pub fn run(command: &mut Command, timeout: Duration, echo: Echo, input: &[Step]) -> Result<Run> {
    let mut process = Process::spawn(command, echo, input)?;
    let ending = process.wait(timeout)?;
    let exited_at = Instant::now();
    let (output, console, mut typed) = process.output();
    if matches!(ending, Ending::Exited(_)) && typed.sent == input.len() {
        typed.quit_after = typed.last_sent_at.map(|sent| exited_at.saturating_duration_since(sent));
    }
    Ok(Run { ending, output, console, typed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::steps;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn splitter_joins_partial_lines() {
        let mut s = LineSplitter::default();
        assert!(s.feed(b"hel").is_empty());
        assert_eq!(s.feed(b"lo\r\nwor"), ["hello"]);
        assert_eq!(s.feed(b"ld\n\nx"), ["world", ""]);
        assert_eq!(s.finish().as_deref(), Some("x"));
        assert_eq!(LineSplitter::default().finish(), None);
    }

    #[test]
    fn pump_copies_and_collects() {
        let transcript = Transcript::default();
        let mut sink = Vec::new();
        let mut seen = Vec::new();
        pump(&b"a\r\nb\nc"[..], Some(&mut sink), &[&transcript], |b| {
            seen.extend_from_slice(b);
        });
        assert_eq!(seen, b"a\r\nb\nc");
        assert_eq!(sink, b"a\r\nb\nc");
        assert_eq!(*transcript.lock().unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn collects_both_streams_and_the_exit_code() {
        let run = run(
            &mut sh("echo one; echo two >&2; printf three; exit 3"),
            Duration::from_secs(20),
            Echo::Quiet,
            &[],
        )
        .unwrap();
        assert_eq!(run.ending, Ending::Exited(Some(3)));
        let mut output = run.output.clone();
        output.sort();
        assert_eq!(output, ["one", "three", "two"]);
        assert_eq!(run.console, ["one", "three"], "the console is stdout alone");
    }

    #[test]
    fn timeout_kills_the_program() {
        let started = Instant::now();
        let run = run(&mut sh("echo started; exec sleep 30"), Duration::from_millis(300), Echo::Quiet, &[])
            .unwrap();
        assert_eq!(run.ending, Ending::TimedOut(Duration::from_millis(300)));
        assert_eq!(run.output, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hang_the_runner() {
        let started = Instant::now();
        let run = run(&mut sh("sleep 5 & echo bye"), Duration::from_secs(20), Echo::Quiet, &[]).unwrap();
        assert_eq!(run.ending, Ending::Exited(Some(0)));
        assert_eq!(run.output, ["bye"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn dropping_the_process_kills_it() {
        let process = Process::spawn(&mut sh("exec sleep 30"), Echo::Quiet, &[]).unwrap();
        let pid = process.child.id();
        drop(process);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let result = run(&mut Command::new("/nonexistent/qemu"), Duration::from_secs(1), Echo::Quiet, &[]);
        assert!(result.unwrap_err().to_string().contains("cannot start"));
    }

    #[test]
    fn input_is_typed_when_due_and_stdin_stays_open() {
        // A prompt without a newline, two answers, then a check that stdin is still
        // open: `timeout` ends `cat` (status 124) only if no end of file came first.
        let script = "printf 'name? '; read a; echo \"hello $a\"; \
                      printf 'again? '; read b; echo \"and $b\"; \
                      timeout 1 cat; echo \"cat: $?\"";
        let run = run(
            &mut sh(script),
            Duration::from_secs(20),
            Echo::Quiet,
            &steps(&[("name? ", "ann\n"), ("again? ", "bob\n")]),
        )
        .unwrap();
        assert_eq!(run.ending, Ending::Exited(Some(0)));
        assert_eq!((run.typed.sent, &run.typed.error), (2, &None));
        let quit_after = run.typed.quit_after.expect("QEMU exited after the last input");
        assert!(quit_after >= Duration::from_millis(900), "`timeout 1 cat` ran after it: {quit_after:?}");
        assert_eq!(run.output, ["name? hello ann", "again? and bob", "cat: 124"]);
    }

    #[test]
    fn input_waits_for_its_trigger() {
        // The answer must not arrive before the question: `read -t 0` sees no input.
        let script = "if read -t 0 x; then echo early; fi; sleep 0.3; \
                      if read -t 0 x; then echo early; fi; echo ready; read a; echo \"got $a\"";
        let run = run(
            Command::new("bash").args(["-c", script]),
            Duration::from_secs(20),
            Echo::Quiet,
            &steps(&[("ready", "x\n")]),
        )
        .unwrap();
        assert_eq!(run.output, ["ready", "got x"]);
        assert_eq!(run.typed.sent, 1);
    }

    #[test]
    fn input_that_never_triggers_is_not_sent() {
        let run = run(
            &mut sh("echo one; timeout 1 cat; echo \"cat: $?\""),
            Duration::from_secs(20),
            Echo::Quiet,
            &steps(&[("one", "1\n"), ("two", "2\n")]),
        )
        .unwrap();
        assert_eq!(run.output, ["one", "1", "cat: 124"]);
        assert_eq!((run.typed.sent, &run.typed.error, run.typed.quit_after), (1, &None, None));
    }

    #[test]
    fn without_input_stdin_is_empty() {
        let run = run(&mut sh("cat; echo \"cat: $?\""), Duration::from_secs(20), Echo::Quiet, &[]).unwrap();
        assert_eq!(run.output, ["cat: 0"]);
    }
}
