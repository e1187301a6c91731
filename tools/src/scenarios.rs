//! `cargo xtask test`'s QEMU part: finds the scenarios with an `[expect]`, runs each
//! through the runner, and reports `N passed, M failed`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::admission;
use crate::damage::Damage;
use crate::devices::Mode;
use crate::devices::{Device, DeviceKind, Disk, Medium};
use crate::disk_check::{self, DiskCheck};
use crate::expect::{self, tail};
use crate::qemu::{self, Clock, Console, Invocation};
use crate::reference;
use crate::runner::{self, Echo};
use crate::sparse;
use crate::workspace::{scenario_name, Workspace};
use crate::{attribution, bundle, config, validate};

/// Lines of output a failure shows.
pub const TAIL_LINES: usize = 40;

/// How one scenario went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// How long it took, preparation included.
    pub elapsed: Duration,
    /// Everything wrong with it; empty means it passed.
    pub failures: Vec<String>,
    /// The end of QEMU's output, if QEMU ran.
    pub tail: Option<Vec<String>>,
}

impl Outcome {
    /// Whether the scenario passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report: a `PASS`/`FAIL` line, and for a failure what went wrong and the output's end.
    pub fn report(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let mut text = format!("{verdict} {} ({:.1} s)", self.name, self.elapsed.as_secs_f64());
        for failure in &self.failures {
            for (i, line) in failure.lines().enumerate() {
                text += &format!("\n  {} {line}", if i == 0 { "-" } else { " " });
            }
        }
        match &self.tail {
            _ if self.passed() => {}
            None => {}
            Some(tail) if tail.is_empty() => text += "\n  QEMU printed nothing",
            Some(tail) => {
                text += &format!("\n  last {} lines of output:", tail.len());
                for line in tail {
                    text += &format!("\n  | {line}");
                }
            }
        }
        text
    }
}

/// The closing line: `N passed, M failed`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    format!("{passed} passed, {} failed", outcomes.len() - passed)
}

/// The `*.toml` files in `dir`, sorted by name.
///
/// # Errors
///
/// The directory cannot be read.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot read {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Keeps the scenarios named in `only` (all when it is empty).
///
/// # Errors
///
/// A name in `only` matches no scenario file.
pub fn select(all: &[PathBuf], only: &[String]) -> Result<Vec<PathBuf>> {
    if only.is_empty() {
        return Ok(all.to_vec());
    }
    if let Some(unknown) = only.iter().find(|name| !all.iter().any(|p| scenario_name(p) == **name)) {
        let known: Vec<String> = all.iter().map(|p| scenario_name(p)).collect();
        bail!("no scenario named {unknown:?}; there are: {}", known.join(", "));
    }
    Ok(all.iter().filter(|p| only.contains(&scenario_name(p))).cloned().collect())
}

/// Whether the scenario at `path` is a test (has `[expect]`).
///
/// # Errors
///
/// The file cannot be read or parsed.
pub fn is_test(path: &Path) -> Result<bool> {
    Ok(config::load(path)?.expect.is_some())
}

/// Packs and runs one test scenario under each of its clocks and judges each run;
/// every problem becomes a failure.
pub fn run_one(ws: &Workspace, path: &Path) -> Vec<Outcome> {
    let name = scenario_name(path);
    let start = Instant::now();
    let loaded =
        make_blank_disks(path).and_then(|()| admission::load(path, &ws.guests_dir())).and_then(|scenario| {
            let expect = scenario
                .expect
                .clone()
                .with_context(|| format!("{}: has no [expect] table, so it is not a test", path.display()))?;
            Ok((scenario, expect))
        });
    let (scenario, expect) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return vec![outcome(name, start, Err(e))],
    };
    let mut outcomes = Vec::new();
    let damages: Vec<Option<Damage>> = match expect.bundle_damage.as_slice() {
        [] => vec![None],
        damages => damages.iter().cloned().map(Some).collect(),
    };
    for &clock in &expect.clocks {
        let clocked = |label: String| {
            if clock == Clock::Wall {
                label
            } else {
                format!("{label} under {}", clock.label())
            }
        };
        // Each clock's runs start from the disk files as the scenario names them.
        let scenario = match scratch_disks(ws, &name, scenario.clone()) {
            Ok(scenario) => scenario,
            Err(e) => {
                outcomes.push(outcome(clocked(name.clone()), Instant::now(), Err(e)));
                continue;
            }
        };
        for damage in &damages {
            let start = Instant::now();
            let mut label = clocked(name.clone());
            if let Some(damage) = damage {
                label += &format!(" ({damage})");
            }
            if label != name {
                eprintln!("\n=== {label} ===");
            }
            outcomes.push(outcome(
                label,
                start,
                try_run(ws, path, &scenario, &expect, clock, damage.as_ref()),
            ));
        }
        for (k, lines) in expect.reruns.iter().enumerate() {
            let start = Instant::now();
            let label = clocked(format!("{name}, run {} on the same disks", k + 2));
            eprintln!("\n=== {label} ===");
            let rerun = validate::Expect {
                lines: lines.clone(),
                anywhere: Vec::new(),
                sends: Vec::new(),
                quit_within: None,
                ..expect.clone()
            };
            outcomes.push(outcome(label, start, try_run(ws, path, &scenario, &rerun, clock, None)));
        }
        if !expect.disks.is_empty() {
            let start = Instant::now();
            let failures = check_disks(&scenario, &expect.disks);
            let label = clocked(format!("{name}, its disk files after the runs"));
            outcomes.push(outcome(label, start, Ok((failures, None))));
        }
    }
    outcomes
}

/// Makes the blank disk files the scenario at `path` asks for
/// (`[[expect.blank_disks]]`), where they are missing.
///
/// # Errors
///
/// The scenario cannot be read, a size is not one, or a file cannot be made.
fn make_blank_disks(path: &Path) -> Result<()> {
    let config = config::load(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for (k, blank) in config.expect.iter().flat_map(|e| e.blank_disks.iter().enumerate()) {
        let size = blank
            .size
            .bytes()
            .map_err(|e| anyhow::anyhow!("{}: expect.blank_disks[{k}].size: {e}", path.display()))?;
        sparse::make_blank(&dir.join(&blank.path), size)?;
    }
    Ok(())
}

/// Runs the `[[expect.disk]]` checks on `scenario`'s disk files.
fn check_disks(scenario: &validate::Scenario, checks: &[DiskCheck]) -> Vec<String> {
    let mut failures = Vec::new();
    for check in checks {
        let device = scenario.vms.get(check.vm).and_then(|vm| vm.devices.get(check.slot));
        match device.and_then(Device::machine_disk) {
            Some(disk) => failures.extend(disk_check::run(check, &disk.path)),
            None => failures.push(format!("vm {} has no file-backed disk in slot {}", check.vm, check.slot)),
        }
    }
    failures
}

/// `scenario` with each file-backed disk replaced by a fresh copy under
/// `target/sluice/scratch/NAME/`: a test changes no file of the source tree, and the
/// runs of one scenario under one clock (its damages, its reruns) share the copies,
/// in order.
///
/// # Errors
///
/// A disk file cannot be copied.
fn scratch_disks(ws: &Workspace, name: &str, mut scenario: validate::Scenario) -> Result<validate::Scenario> {
    let dir = ws.out_dir().join("scratch").join(name);
    for device in scenario.vms.iter_mut().flat_map(|vm| &mut vm.devices) {
        let DeviceKind::Blk(Disk { medium: Medium::File { file, id }, .. }) = &mut device.kind else {
            continue;
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let copy = dir.join(format!("{id}.img"));
        sparse::copy(&file.path, &copy)?;
        file.path = copy;
    }
    Ok(scenario)
}

/// What one run came to: its failures and the end of its output, or why it could not
/// run.
type RunResult = Result<(Vec<String>, Option<Vec<String>>)>;

/// The outcome of the run `name` that started at `start`.
fn outcome(name: String, start: Instant, result: RunResult) -> Outcome {
    let (failures, tail) = result.unwrap_or_else(|e| (vec![format!("{e:#}")], None));
    Outcome { name, elapsed: start.elapsed(), failures, tail }
}

fn try_run(
    ws: &Workspace,
    path: &Path,
    scenario: &validate::Scenario,
    expect: &validate::Expect,
    clock: Clock,
    damage: Option<&Damage>,
) -> RunResult {
    let bundle_path = ws.bundle_path(path);
    bundle::write(scenario, &bundle_path)?;
    if let Some(damage) = damage {
        let mut bytes =
            std::fs::read(&bundle_path).with_context(|| format!("cannot read {}", bundle_path.display()))?;
        damage.apply(&mut bytes).map_err(anyhow::Error::msg)?;
        std::fs::write(&bundle_path, bytes)
            .with_context(|| format!("cannot write {}", bundle_path.display()))?;
    }
    for file in &expect.absent_files {
        let file = ws.root().join(file);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", file.display()));
            }
            _ => {}
        }
    }
    let args = qemu::args(&Invocation::captured(
        scenario,
        ws.relative(&ws.hypervisor_bin()),
        ws.relative(&bundle_path),
        clock,
    ));
    eprintln!("$ {}", qemu::display(&args));
    let mut command = ws.command(qemu::QEMU);
    command.args(&args);
    let run = runner::run(&mut command, expect.timeout, Echo::Terminal, &expect.sends)?;
    let mut failures = expect::judge(
        expect,
        run.ending,
        &run.console,
        attribution::Host::Sluice,
        &scenario.vm_names(),
        &run.typed,
    );
    for file in expect.absent_files.iter().filter(|file| ws.root().join(file).exists()) {
        failures.push(format!(
            "{} exists after the run (expect.absent_files): a guest reached the host",
            file.display()
        ));
    }
    Ok((failures, Some(tail(&run.output, TAIL_LINES).to_vec())))
}

/// The plain-QEMU reference runs the scenario at `path` asks for, of its first VM
/// under its first clock, each judged like the run under Sluice on that VM's lines
/// but expecting QEMU to exit 0 (the guest's PSCI SYSTEM_OFF).
fn run_references(ws: &Workspace, path: &Path) -> Vec<Outcome> {
    let Ok(scenario) = admission::load(path, &ws.guests_dir()) else { return Vec::new() };
    let Some(expect) = scenario.expect.clone() else { return Vec::new() };
    let name = scenario_name(path);
    let mut outcomes = Vec::new();
    for mode in expect.reference.clone() {
        let start = Instant::now();
        let label = format!("{name} on plain QEMU ({})", mode.name());
        eprintln!("\n=== {label} ===");
        outcomes.push(outcome(label, start, try_reference(ws, &scenario, &name, mode)));
    }
    outcomes
}

fn try_reference(ws: &Workspace, scenario: &validate::Scenario, name: &str, mode: Mode) -> RunResult {
    let vm = &scenario.vms[0];
    let dir = ws.out_dir().join("reference").join(name);
    let files = reference::write_files(vm, &dir)?;
    let expect = scenario.expect.as_ref().context("a test scenario")?.for_plain_qemu(&vm.name);
    // The scenario's first clock: a guest that counts instructions needs icount on
    // plain QEMU too.
    let clock = expect.clocks.first().copied().unwrap_or(Clock::Wall);
    let args = reference::args(vm, &files, mode, Console::Captured, clock, scenario.machine.mte);
    eprintln!("$ {}", qemu::display(&args));
    let mut command = ws.command(qemu::QEMU);
    command.args(&args);
    let run = runner::run(&mut command, expect.timeout, Echo::Terminal, &expect.sends)?;
    let failures = expect::judge(
        &expect,
        run.ending,
        &run.console,
        attribution::Host::PlainQemu,
        &scenario.vm_names(),
        &run.typed,
    );
    Ok((failures, Some(tail(&run.output, TAIL_LINES).to_vec())))
}

/// Whether any of these scenarios boots from the Linux guest kit
/// (`target/sluice/kit/`), which `cargo xtask test` then makes first.
pub fn need_kit(paths: &[PathBuf]) -> bool {
    paths.iter().any(|p| std::fs::read_to_string(p).is_ok_and(|text| text.contains("target/sluice/kit/")))
}

/// The scenario files `cargo xtask test` considers: all, or those named in `only`.
///
/// # Errors
///
/// The scenario directory cannot be read, or a name in `only` matches no file.
pub fn selected(ws: &Workspace, only: &[String]) -> Result<Vec<PathBuf>> {
    select(&discover(&ws.scenarios_dir())?, only)
}

/// Runs the test scenarios among `paths` one after the other and prints the summary.
/// With `named` (the user picked them), a scenario without `[expect]` fails instead
/// of being skipped.
///
/// # Errors
///
/// A scenario failed, or none ran at all.
pub fn run_all(ws: &Workspace, paths: &[PathBuf], named: bool) -> Result<()> {
    let mut outcomes = Vec::new();
    for path in paths {
        let name = scenario_name(path);
        let outcome = match is_test(path) {
            Ok(false) if !named => {
                eprintln!("xtask: skipping {name}: no [expect] table");
                continue;
            }
            Ok(_) => {
                eprintln!("\n=== {name} ===");
                run_one(ws, path)
            }
            Err(e) => {
                vec![Outcome { name, elapsed: Duration::ZERO, failures: vec![format!("{e:#}")], tail: None }]
            }
        };
        for outcome in outcome {
            println!("{}", outcome.report());
            outcomes.push(outcome);
        }
        for reference in run_references(ws, path) {
            println!("{}", reference.report());
            outcomes.push(reference);
        }
    }
    println!("\n{}", summary(&outcomes));
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    if outcomes.is_empty() {
        bail!("no scenario ran (looked in {})", ws.scenarios_dir().display());
    }
    if failed > 0 {
        bail!("{failed} of {} scenarios failed", outcomes.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, failures: &[&str], tail: &[&str]) -> Outcome {
        Outcome {
            name: name.to_owned(),
            elapsed: Duration::from_millis(1234),
            failures: failures.iter().map(|s| (*s).to_owned()).collect(),
            tail: Some(tail.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn summary_counts_scenarios() {
        let outcomes = [outcome("a", &[], &[]), outcome("b", &["bad"], &[]), outcome("c", &[], &[])];
        assert_eq!(summary(&outcomes), "2 passed, 1 failed");
        assert_eq!(summary(&[]), "0 passed, 0 failed");
    }

    #[test]
    fn reports_show_time_failures_and_tail() {
        assert_eq!(outcome("hello", &[], &["x"]).report(), "PASS hello (1.2 s)");
        assert_eq!(
            outcome("bad", &["status wrong", "two\nlines"], &["out 1", "out 2"]).report(),
            "FAIL bad (1.2 s)\n  - status wrong\n  - two\n    lines\n  last 2 lines of output:\n  | out 1\n  | out 2"
        );
        assert_eq!(
            outcome("quiet", &["timed out"], &[]).report(),
            "FAIL quiet (1.2 s)\n  - timed out\n  QEMU printed nothing"
        );
        let mut refused = outcome("refused", &["vm[0].memory: bad"], &[]);
        refused.tail = None;
        assert_eq!(refused.report(), "FAIL refused (1.2 s)\n  - vm[0].memory: bad");
    }

    #[test]
    fn discover_and_select_by_name() {
        let dir = crate::testutil::TempDir::new("scenarios");
        dir.write("b.toml", b"");
        dir.write("a.toml", b"");
        dir.write("notes.md", b"");
        let all = discover(dir.path()).unwrap();
        let names: Vec<String> = all.iter().map(|p| scenario_name(p)).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(select(&all, &[]).unwrap(), all);
        assert_eq!(select(&all, &["b".to_owned()]).unwrap(), [all[1].clone()]);
        let message = select(&all, &["c".to_owned()]).unwrap_err().to_string();
        assert_eq!(message, "no scenario named \"c\"; there are: a, b");
    }

    #[test]
    fn only_files_with_expect_are_tests() {
        let dir = crate::testutil::TempDir::new("is-test");
        assert!(is_test(&dir.write("t.toml", b"[expect]\nexit_status = 0\n")).unwrap());
        assert!(!is_test(&dir.write("r.toml", b"[machine]\ncpus = 1\n")).unwrap());
        assert!(is_test(&dir.write("bad.toml", b"[expect\n")).is_err());
    }
}
