//! `cargo xtask fuzz`: the coverage-guided fuzz targets in `fuzz/` (libFuzzer,
//! through cargo-fuzz), each run for a bounded time.
//!
//! The targets need the sanitizer and coverage flags of a nightly compiler, the
//! product does not: a nightly toolchain is installed for fuzzing alone
//! (`rustup toolchain install nightly --profile minimal`), and cargo-fuzz with
//! `cargo install`, when missing. Where that fails, fuzzing fails and says why: a
//! run that cannot start is a failure, never a skip.
//!
//! Everything produced lands under `target/fuzz/`: the build, a scratch corpus
//! per target (`corpus/<target>`, where libFuzzer adds what it finds, next to the
//! checked-in seeds of `fuzz/corpus/<target>`), crash artifacts
//! (`artifacts/<target>`) and each run's full log (`logs/<target>.log`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::deps;
use crate::workspace::Workspace;

/// Every fuzz target, in the order they run.
pub const TARGETS: [&str; 6] = ["syndrome", "virtio_mmio", "vgic", "bundle", "host_dtb", "guest_dtb"];
/// Seconds per target of `cargo xtask fuzz`.
pub const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target in `cargo xtask test`.
pub const TEST_SECONDS: u64 = 15;
/// The cargo-fuzz release series the fuzz crate is laid out for.
const CARGO_FUZZ_VERSION: &str = "^0.13";
/// An input that runs longer than this is a hang, reported like a crash.
const INPUT_TIMEOUT_SECS: u64 = 10;
/// Artifact name prefixes that mean the target failed (libFuzzer also writes
/// `slow-unit-` files, which are only slow).
const FAILURE_PREFIXES: [&str; 4] = ["crash-", "timeout-", "oom-", "leak-"];

/// Whether `rustup toolchain list` shows a nightly toolchain.
pub fn has_nightly(toolchain_list: &str) -> bool {
    toolchain_list.lines().any(|line| line.trim_start().starts_with("nightly"))
}

/// Finds or installs the nightly toolchain the fuzz crate is built with.
///
/// # Errors
///
/// There is no rustup, or it cannot install nightly (no network to its server).
pub fn ensure_nightly() -> Result<()> {
    if deps::find("rustup").is_none() {
        bail!("fuzzing needs a nightly toolchain, installed with rustup, and there is no rustup");
    }
    let list = cmd::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if has_nightly(&list) {
        return Ok(());
    }
    eprintln!(
        "xtask: fuzzing needs a nightly toolchain (for the sanitizer and coverage flags); installing it"
    );
    cmd::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("cannot install the nightly toolchain fuzzing needs (rustup toolchain install nightly)")
}

/// `cargo fuzz ARGS` with the nightly toolchain, run in the workspace root.
fn cargo_fuzz(ws: &Workspace) -> Command {
    let mut command = ws.command("rustup");
    command.args(["run", "nightly", "cargo", "fuzz"]);
    command
}

/// Installs cargo-fuzz with `cargo install` if `cargo fuzz` is not there.
///
/// # Errors
///
/// The install fails (no network to crates.io, no C++ compiler for libFuzzer).
pub fn ensure_cargo_fuzz(ws: &Workspace) -> Result<()> {
    if cmd::output(ws.command("cargo").args(["fuzz", "--version"])).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: cargo-fuzz is missing; installing it (about two minutes)");
    cmd::run(ws.command("cargo").args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]))
        .context("cannot install cargo-fuzz (cargo install cargo-fuzz --locked)")
}

/// What one target's run said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs run.
    pub executions: u64,
    /// Inputs per second, on average.
    pub exec_per_sec: u64,
    /// Coverage: code edges (`cov:`) and features (`ft:`) seen, as last printed.
    pub cov: Option<u64>,
    /// See `cov`.
    pub ft: Option<u64>,
    /// Corpus entries at the end (`corp:`).
    pub corpus: Option<u64>,
    /// Inputs that crashed, hung or ran out of memory.
    pub failures: Vec<String>,
    /// Inputs that were only slow.
    pub slow: Vec<String>,
}

/// Reads libFuzzer's output (with `-print_final_stats=1`).
pub fn parse_output(text: &str) -> Report {
    let mut report = Report::default();
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty())?.parse().ok()
    };
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            report.executions = n.trim().parse().unwrap_or(report.executions);
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            report.exec_per_sec = n.trim().parse().unwrap_or(report.exec_per_sec);
        } else if line.starts_with('#') && line.contains(" cov: ") {
            report.cov = field(line, " cov: ").or(report.cov);
            report.ft = field(line, " ft: ").or(report.ft);
            report.corpus = field(line, " corp: ").or(report.corpus);
        }
        if let Some(path) = line.split("Test unit written to ").nth(1) {
            let path = path.trim().to_owned();
            let name =
                Path::new(&path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if FAILURE_PREFIXES.iter().any(|p| name.starts_with(p)) {
                report.failures.push(path);
            } else {
                report.slow.push(path);
            }
        }
    }
    report
}

/// What to show of a failed run: the panic and its message (up to the stack
/// trace), or else the lines before libFuzzer's error report.
pub fn failure_message(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    if let Some(start) = lines.iter().position(|l| l.contains("panicked at")) {
        let rest = &lines[start..];
        let end = rest
            .iter()
            .position(|l| l.starts_with("stack backtrace") || l.starts_with("=="))
            .unwrap_or(rest.len());
        return rest[..end.min(12)].to_vec();
    }
    let end = lines.iter().position(|l| l.contains("ERROR: libFuzzer")).unwrap_or(lines.len());
    lines[end.saturating_sub(12)..(end + 1).min(lines.len())].to_vec()
}

/// The libFuzzer arguments of one run.
pub fn libfuzzer_args(seconds: u64, artifacts: &Path, corpora: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        format!("-max_total_time={seconds}"),
        "-print_final_stats=1".to_owned(),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        format!("-artifact_prefix={}/", artifacts.display()),
    ];
    args.extend(corpora.iter().map(|c| c.display().to_string()));
    args
}

/// One line of the summary table.
pub fn summary_line(target: &str, report: &Report) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    format!(
        "{target:<12} {:>12} execs {:>8}/s  cov {:>6}  ft {:>7}  corpus {:>6}  {}",
        report.executions,
        report.exec_per_sec,
        opt(report.cov),
        opt(report.ft),
        opt(report.corpus),
        if report.failures.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} FAILED", report.failures.len())
        },
    )
}

/// Builds every target and runs `targets` (all when empty) for `seconds` each.
/// Returns whether every target ran clean.
///
/// # Errors
///
/// Nightly or cargo-fuzz cannot be had, the build fails, or a target
/// cannot be started: a run that did not happen is an error, not a pass.
pub fn run(ws: &Workspace, targets: &[&str], seconds: u64) -> Result<bool> {
    let targets: Vec<&str> = if targets.is_empty() { TARGETS.to_vec() } else { targets.to_vec() };
    ensure_nightly()?;
    ensure_cargo_fuzz(ws)?;
    let out = ws.target_dir().join("fuzz");
    let fuzz_dir = ws.root().join("fuzz");
    cmd::run(
        cargo_fuzz(ws)
            .args(["build", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg("--debug-assertions")
            .arg("--target-dir")
            .arg(&out),
    )
    .context("the fuzz targets do not build")?;

    let mut summary = Vec::new();
    let mut clean = true;
    for target in targets {
        let report = run_target(ws, &out, target, seconds)?;
        for failure in &report.failures {
            eprintln!("xtask: {target}: failing input {failure}");
            eprintln!("xtask:   replay: {} {failure}", ws.relative(&binary(&out, target)?).display());
            eprintln!(
                "xtask:   show:   cargo +nightly fuzz fmt --fuzz-dir fuzz --target-dir {} -a {target} {failure}",
                ws.relative(&out).display()
            );
        }
        clean &= report.failures.is_empty();
        summary.push(summary_line(target, &report));
    }
    eprintln!("xtask: fuzzing, {seconds} s per target:");
    for line in &summary {
        eprintln!("  {line}");
    }
    Ok(clean)
}

/// The built binary of `target` under `out` (cargo-fuzz builds for the host
/// triple: `out/<triple>/release/<target>`).
fn binary(out: &Path, target: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?;
    entries
        .flatten()
        .map(|e| e.path().join("release").join(target))
        .find(|p| p.is_file())
        .with_context(|| format!("no built fuzz target {target} under {}", out.display()))
}

/// Runs one target for `seconds`, its output to `out/logs/<target>.log`.
fn run_target(ws: &Workspace, out: &Path, target: &str, seconds: u64) -> Result<Report> {
    let binary = binary(out, target)?;
    let scratch = out.join("corpus").join(target);
    let artifacts = out.join("artifacts").join(target);
    let logs = out.join("logs");
    for dir in [&scratch, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut corpora = vec![scratch];
    let seeds = ws.root().join("fuzz").join("corpus").join(target);
    if seeds.is_dir() {
        corpora.push(seeds);
    }
    let log_path = logs.join(format!("{target}.log"));
    let mut log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut command = ws.command(&binary);
    command
        .args(libfuzzer_args(seconds, &artifacts, &corpora))
        // As cargo-fuzz runs its targets.
        .env("ASAN_OPTIONS", "detect_odr_violation=0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("xtask: fuzzing {target} for {seconds} s (log: {})", ws.relative(&log_path).display());
    let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let reader = std::thread::spawn(move || -> std::io::Result<String> {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            writeln!(log, "{line}")?;
            text.push_str(&line);
            text.push('\n');
        }
        Ok(text)
    });
    // libFuzzer stops itself; this only guards against a run that never ends.
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{target} did not stop after {seconds} s; see {}", log_path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = reader.join().map_err(|_| anyhow::anyhow!("the log reader of {target} panicked"))??;
    let mut report = parse_output(&text);
    if !status.success() && report.failures.is_empty() {
        // Ended badly without an artifact (it could not start, say): show why.
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        bail!("fuzz target {target} failed ({status}) without a failing input; see {}", log_path.display());
    }
    if !report.failures.is_empty() {
        for line in failure_message(&text) {
            eprintln!("  {line}");
        }
    }
    report.failures.iter_mut().for_each(|f| *f = ws.relative(Path::new(f)).display().to_string());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "\
INFO: Seed: 1667065871
#2	INITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb
#1024	pulse  cov: 190 ft: 196 corp: 30/1100b lim: 4096 exec/s: 512 rss: 60Mb
#2507843	DONE   cov: 195 ft: 201 corp: 33/1221b lim: 4096 exec/s: 119421 rss: 373Mb
Done 2507843 runs in 21 second(s)
stat::number_of_executed_units: 2507843
stat::average_exec_per_sec:     119421
stat::new_units_added:          45
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              373
";

    const CRASHED: &str = "\
#8000	NEW    cov: 180 ft: 190 corp: 30/1000b lim: 4096 exec/s: 8000 rss: 60Mb L: 30/40 MS: 1 ChangeBit-
thread '<unnamed>' panicked at fuzz_targets/syndrome.rs:108:13:
==5640== ERROR: libFuzzer: deadly signal
MS: 2 CopyPart-ChangeByte-; base unit: 0123
artifact_prefix='target/fuzz/artifacts/syndrome/'; Test unit written to target/fuzz/artifacts/syndrome/crash-9f8b
Base64: vAAA
stat::number_of_executed_units: 8379
stat::average_exec_per_sec:     0
slow-unit: artifact_prefix='x/'; Test unit written to x/slow-unit-77
";

    #[test]
    fn parses_a_clean_run() {
        let report = parse_output(CLEAN);
        assert_eq!(
            report,
            Report {
                executions: 2_507_843,
                exec_per_sec: 119_421,
                cov: Some(195),
                ft: Some(201),
                corpus: Some(33),
                failures: vec![],
                slow: vec![],
            }
        );
        let line = summary_line("syndrome", &report);
        assert!(
            line.starts_with("syndrome") && line.contains("2507843 execs") && line.ends_with("ok"),
            "{line}"
        );
        assert!(line.contains("cov    195") && line.contains("ft     201"), "{line}");
    }

    #[test]
    fn parses_a_crash_and_tells_slow_units_apart() {
        let report = parse_output(CRASHED);
        assert_eq!(report.failures, ["target/fuzz/artifacts/syndrome/crash-9f8b"]);
        assert_eq!(report.slow, ["x/slow-unit-77"]);
        assert_eq!((report.executions, report.cov, report.ft), (8379, Some(180), Some(190)));
        assert!(summary_line("syndrome", &report).ends_with("1 FAILED"));
        let text = "x\nthread '<unnamed>' panicked at a.rs:1:2:\nassertion failed\n  left: 0\nstack backtrace:\n  0: f\n";
        assert_eq!(
            failure_message(text),
            ["thread '<unnamed>' panicked at a.rs:1:2:", "assertion failed", "  left: 0"]
        );
        let asan = "a\nb\n==1== ERROR: libFuzzer: out-of-memory (used: 2100Mb)\nc\n";
        assert_eq!(failure_message(asan), ["a", "b", "==1== ERROR: libFuzzer: out-of-memory (used: 2100Mb)"]);
        assert_eq!(parse_output("").cov, None);
    }

    #[test]
    fn libfuzzer_runs_for_the_time_given_with_scratch_corpus_first() {
        let corpora = [PathBuf::from("/t/fuzz/corpus/vgic"), PathBuf::from("/w/fuzz/corpus/vgic")];
        let args = libfuzzer_args(15, Path::new("/t/fuzz/artifacts/vgic"), &corpora);
        assert_eq!(
            args,
            [
                "-max_total_time=15",
                "-print_final_stats=1",
                "-timeout=10",
                "-artifact_prefix=/t/fuzz/artifacts/vgic/",
                "/t/fuzz/corpus/vgic",
                "/w/fuzz/corpus/vgic",
            ]
        );
    }

    #[test]
    fn nightly_is_found_in_rustups_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(!has_nightly("stable-x86_64-unknown-linux-gnu (default)\n1.95.0-x86_64-unknown-linux-gnu\n"));
        assert!(!has_nightly(""));
    }

    #[test]
    fn every_target_is_in_the_fuzz_crate() {
        let ws = Workspace::discover().unwrap();
        let manifest = std::fs::read_to_string(ws.root().join("fuzz").join("Cargo.toml")).unwrap();
        for target in TARGETS {
            assert!(manifest.contains(&format!("name = \"{target}\"")), "{target} is not a [[bin]] of fuzz/");
            assert!(ws.root().join("fuzz/fuzz_targets").join(format!("{target}.rs")).is_file());
        }
        assert_eq!(manifest.matches("[[bin]]").count(), TARGETS.len(), "a fuzz target missing from TARGETS");
    }
}
