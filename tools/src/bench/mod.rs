//! `cargo xtask bench`: the latency guest (`tests/scenarios/bench.toml`) under
//! Sluice and on plain QEMU with QEMU's own devices, wall clock and `-icount
//! shift=0`, plus an icount run with Sluice's detailed trace off (what the
//! tracepoints cost), and the Linux scenario's boot and `dd` figures; then one
//! report: a table on the terminal, and `report.md`, `report.json` and SVG plots
//! under `target/sluice/bench/`.
//!
//! A run that fails shows in the report as failed; the command fails only when
//! nothing could be measured. Figures are never judged.

pub mod model;
pub mod parse;
pub mod plot;
pub mod report;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use self::model::{LinuxRow, Report, Run, Side};
use crate::admission;
use crate::devices::Mode;
use crate::qemu::{self, Clock, Console, Invocation};
use crate::reference;
use crate::runner::{self, Echo};
use crate::status::Ending;
use crate::validate::Scenario;
use crate::workspace::Workspace;
use crate::{attribution, build, bundle, deps, figures};

/// The latency guest's scenario.
pub const SCENARIO: &str = "tests/scenarios/bench.toml";
/// The VM-to-VM channel's scenario (two VMs, no plain-QEMU equivalent).
pub const CHANNEL_SCENARIO: &str = "tests/scenarios/bench-channel.toml";
/// How long one run of the latency guest may take.
const TIMEOUT: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Timed iterations per path.
    pub iterations: u32,
    /// Untimed iterations before them.
    pub warmup: u32,
    /// Also measure the Linux scenario.
    pub linux: bool,
}

/// One run of the latency guest to make.
struct Plan {
    side: Side,
    clock: Clock,
    trace: bool,
}

impl Plan {
    fn label(&self) -> String {
        let trace = if self.side == Side::Sluice && !self.trace { ", trace off" } else { "" };
        format!("{}, {}{trace}", self.side.label(), self.clock.label())
    }

    fn slug(&self) -> String {
        let side = if self.side == Side::Sluice { "sluice" } else { "qemu" };
        let trace = if self.side == Side::Sluice && !self.trace { "-untraced" } else { "" };
        format!("{side}-{}{trace}", self.clock.slug())
    }
}

/// The runs, exact ones first.
const PLANS: [Plan; 5] = [
    Plan { side: Side::Sluice, clock: Clock::Icount, trace: true },
    Plan { side: Side::Sluice, clock: Clock::Icount, trace: false },
    Plan { side: Side::Reference, clock: Clock::Icount, trace: false },
    Plan { side: Side::Sluice, clock: Clock::Wall, trace: true },
    Plan { side: Side::Reference, clock: Clock::Wall, trace: false },
];

/// Runs everything and writes the report.
///
/// # Errors
///
/// The build or the scenario can't be made, or no run produced figures.
pub fn command(ws: &Workspace, options: Options) -> Result<()> {
    deps::ensure_qemu()?;
    let built = build::build_all(ws)?;
    let out = ws.out_dir().join("bench");
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut scenario = admission::load(&ws.root().join(SCENARIO), &ws.guests_dir())?;
    let args = format!("iterations={} warmup={}", options.iterations, options.warmup);
    scenario.vms[0].bootargs = Some(args);

    let mut runs = Vec::new();
    for plan in &PLANS {
        let args = arguments(ws, &built, &mut scenario, plan, &out.join(""))?;
        let guest = scenario.vms[0].name.clone();
        runs.push(measure(ws, plan, &args, &guest, &logs.join(format!("{}.log", plan.slug()))));
    }
    if runs.iter().all(|r| r.paths.is_empty()) {
        bail!("no run of the latency guest produced figures; the logs are in {}", logs.display());
    }
    let channel = channel_runs(ws, &built, options, &out, &logs)?;
    let linux = if options.linux { linux_rows(ws, &built) } else { Vec::new() };
    let report = Report { runs, linux, channel };
    let files = report::write(&out, &report)?;
    println!("\n{}", report::table(&report));
    println!("{}", contributors(&report));
    for file in files {
        println!("xtask: wrote {}", ws.relative(&file).display());
    }
    Ok(())
}

/// QEMU's arguments for one run; its bundle is written to `out` + the plan's slug
/// + `.dtb` (`out` may end in a file-name prefix).
fn arguments(
    ws: &Workspace,
    built: &build::Built,
    scenario: &mut Scenario,
    plan: &Plan,
    out: &Path,
) -> Result<Vec<OsString>> {
    let args = match plan.side {
        Side::Sluice => {
            scenario.trace = plan.trace;
            let mut bundle_path = out.as_os_str().to_owned();
            bundle_path.push(format!("{}.dtb", plan.slug()));
            let bundle_path = std::path::PathBuf::from(bundle_path);
            bundle::write(scenario, &bundle_path)?;
            qemu::args(&Invocation::captured(
                scenario,
                ws.relative(&built.hypervisor_bin),
                ws.relative(&bundle_path),
                plan.clock,
            ))
        }
        Side::Reference => {
            let vm = &scenario.vms[0];
            let files = reference::write_files(vm, &out.join("reference"))?;
            reference::args(vm, &files, Mode::Modern, Console::Captured, plan.clock, scenario.machine.mte)
        }
    };
    Ok(args)
}

/// One run of the latency guest (VM `guest`), its output kept in `log`.
fn measure(ws: &Workspace, plan: &Plan, args: &[OsString], guest: &str, log: &Path) -> Run {
    eprintln!("xtask: bench: {}\n$ {}", plan.label(), qemu::display(args));
    let started = Instant::now();
    let mut command = ws.command(qemu::QEMU);
    command.args(args);
    let mut run = Run {
        side: plan.side,
        clock: plan.clock,
        trace: plan.trace,
        paths: vec![],
        stages: vec![],
        error: None,
    };
    let outcome = runner::run(&mut command, TIMEOUT, Echo::Quiet, &[]);
    let result = outcome.and_then(|r| {
        std::fs::write(log, r.output.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", log.display()))?;
        let console = match plan.side {
            Side::Sluice => attribution::Host::Sluice,
            Side::Reference => attribution::Host::PlainQemu,
        };
        match r.ending {
            Ending::Exited(Some(0)) if console == attribution::Host::PlainQemu => {}
            Ending::Exited(Some(0)) => match attribution::exit_status(&r.console) {
                Ok(0) => {}
                Ok(status) => bail!("Sluice's exit status is {status}; see {}", ws.relative(log).display()),
                Err(why) => bail!("{why}; see {}", ws.relative(log).display()),
            },
            Ending::Exited(code) => bail!("QEMU exited with {code:?}; see {}", ws.relative(log).display()),
            Ending::TimedOut(t) => {
                bail!("timed out after {} s; see {}", t.as_secs(), ws.relative(log).display())
            }
        }
        if r.console.iter().any(|l| l.contains("bench: FAIL")) {
            bail!("the guest failed; see {}", ws.relative(log).display());
        }
        parse::parse_output(&r.console, console, guest)
    });
    match result {
        Ok((paths, stages)) => {
            eprintln!(
                "xtask: bench: {} paths, {} stage sums in {:.1} s",
                paths.len(),
                stages.len(),
                started.elapsed().as_secs_f64()
            );
            run.paths = paths;
            run.stages = stages;
        }
        Err(e) => {
            eprintln!("xtask: bench: {}: {e:#}", plan.label());
            run.error = Some(format!("{}: {e:#}", plan.label()));
        }
    }
    run
}

/// The channel scenario's runs: Sluice under `-icount`, untraced and traced (whose
/// stage sums cover both VMs' CPUs: both tag their exits with the paths' phases),
/// then wall clock untraced; the paths are the `ping` VM's.
fn channel_runs(
    ws: &Workspace,
    built: &build::Built,
    options: Options,
    out: &Path,
    logs: &Path,
) -> Result<Vec<Run>> {
    let mut scenario = admission::load(&ws.root().join(CHANNEL_SCENARIO), &ws.guests_dir())?;
    for vm in &mut scenario.vms {
        let role = if vm.name == "ping" { "ping" } else { "pong" };
        vm.bootargs = Some(format!("channel.role={role} iterations={}", options.iterations));
    }
    let mut runs = Vec::new();
    for (clock, trace) in [(Clock::Icount, false), (Clock::Icount, true), (Clock::Wall, false)] {
        let plan = Plan { side: Side::Sluice, clock, trace };
        let args = arguments(ws, built, &mut scenario, &plan, &out.join("channel-"))?;
        runs.push(measure(ws, &plan, &args, "ping", &logs.join(format!("channel-{}.log", plan.slug()))));
    }
    Ok(runs)
}

/// The Linux scenario's figures, or one failed row saying why.
fn linux_rows(ws: &Workspace, built: &build::Built) -> Vec<LinuxRow> {
    match figures::measure_all(ws, built) {
        Ok(rows) => rows
            .into_iter()
            .map(|(label, f)| LinuxRow {
                label,
                boot_to_init_s: f.map(|f| f.boot_to_init),
                read_mib_s: f.map(|f| f.read_mib_s),
                direct_mib_s: f.and_then(|f| f.direct_mib_s),
                direct_read_us: f.and_then(|f| f.direct_read_us),
            })
            .collect(),
        Err(e) => {
            eprintln!("xtask: bench: the Linux figures could not be made: {e:#}");
            vec![LinuxRow {
                label: format!("Linux ({e:#})"),
                boot_to_init_s: None,
                read_mib_s: None,
                direct_mib_s: None,
                direct_read_us: None,
            }]
        }
    }
}

/// The three biggest contributors to the polled and interrupt-driven blk reads.
fn contributors(report: &Report) -> String {
    let mut text = String::new();
    for path in ["blk-read-poll", "blk-read-irq", "blk-read-disk-poll", "blk-read-disk-irq"] {
        let top = report::top_contributors(report, path, 3);
        if top.is_empty() {
            continue;
        }
        let parts: Vec<String> = top.iter().map(|(stage, ns)| format!("{stage} {ns:.0} ns")).collect();
        let _ = writeln!(
            text,
            "Biggest contributors to {path} (per read, traced icount run): {}",
            parts.join(", ")
        );
    }
    text
}
