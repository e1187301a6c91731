//! `cargo xtask fuzz-guest`: the hostile fuzz guest (`tests/guests/src/bin/fuzz.rs`)
//! again and again with fresh seeds, until the time is up or a run fails.
//!
//! Each run boots one fuzz VM (two vCPUs, a virtio-blk and a virtio-console) beside
//! the well-behaved `virtio` guest, which checks its own disk and console meanwhile
//! ([`scenario_text`]), and is judged like a scenario (`expect::judge`): Sluice's exit
//! status 0, every VM's lines, nothing that reads like a crash, no hang past the
//! timeout. Seeds go up by one from `--seed`, or from the time of day. Each run's
//! console goes to `target/sluice/fuzz-guest/last.log`; a failed run's also to
//! `seed-N.log`, and the command stops there with the seed, the reasons and how to
//! replay it, and fails.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};

use crate::admission;
use crate::attribution::{said_by, Host};
use crate::expect;
use crate::qemu::{self, Clock, Invocation};
use crate::runner::{self, Echo};
use crate::send::Progress;
use crate::status::Ending;
use crate::validate::{Expect, Sources};
use crate::workspace::Workspace;
use crate::{build, bundle, config, deps, validate};

/// Seconds of fuzzing when `--time` is not given.
pub const DEFAULT_SECONDS: u64 = 300;
/// Operations per run when `--ops` is not given.
pub const DEFAULT_OPS: u64 = 50_000;
/// The fuzz VM's name.
const FUZZ_VM: &str = "fuzz";
/// Rounds of the well-behaved VM's disk check (`virtio`'s `rounds=N`).
const ROUNDS: u64 = 300;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Start no new run after this many seconds (at least one run is made).
    pub seconds: u64,
    /// The first seed; `None`: the time of day.
    pub seed: Option<u64>,
    /// Operations per run.
    pub ops: u64,
}

/// How long one run may take: a minute to boot and finish, plus a millisecond per
/// operation (the guest does several thousand a second).
pub fn timeout_secs(ops: u64) -> u64 {
    60 + ops / 1000
}

/// The scenario of one run: the fuzz VM with `seed` and `ops`, the `virtio` guest
/// beside it, and what the run must show.
pub fn scenario_text(seed: u64, ops: u64) -> String {
    let timeout = timeout_secs(ops);
    format!(
        r#"[machine]
cpus = 3
memory = "256M"

[[vm]]
name = "{FUZZ_VM}"
cpus = [0, 1]
memory = "32M"
kernel = "guest:fuzz"
bootargs = "seed={seed} ops={ops}"

[[vm.virtio]]
kind = "blk"
size = "1M"

[[vm.virtio]]
kind = "console"

[[vm]]
name = "virtio"
cpus = [2]
memory = "64M"
kernel = "guest:virtio"
bootargs = "rounds={ROUNDS}"

[[vm.virtio]]
kind = "blk"
size = "4M"
serial = "disk0"

[[vm.virtio]]
kind = "console"

[expect]
timeout_secs = {timeout}
exit_status = 0
lines = [
    "[virtio] virtio: blk write/flush/read-back ok {ROUNDS} times",
    "[virtio] virtio: blk out-of-range request failed as it should",
    "[virtio] virtio: blk 16 requests completed by interrupt",
    "[virtio] virtio: hello through virtio-console",
    "[virtio] virtio: hello through emerg_wr",
    "[virtio] virtio: done",
    "sluice: every VM stopped cleanly",
]
anywhere = [
    "[{FUZZ_VM}] fuzz: seed {seed}, {ops} operations",
    "[{FUZZ_VM}] fuzz: seed {seed} done: {ops} ops in ",
]
absent = ["panicked", "fatal", "FAIL", "unexpected exception", "unexpected interrupt", "took queue"]
"#
    )
}

/// What the fuzz guest's last line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestSummary {
    /// The seed.
    pub seed: u64,
    /// Operations made.
    pub ops: u64,
    /// How long they took by the guest's clock.
    pub ms: u64,
    /// Aborts and undefined instructions that came back to the guest.
    pub faulted: u64,
}

/// Reads a summary line of the fuzz guest (`fuzz: seed S done: N ops in T ms; ...;
/// faulted back F (...); ...`, what `test_guests::fuzz::Summary` prints), from its
/// text without the VM's tag.
pub fn parse_summary(text: &str) -> Option<GuestSummary> {
    let number = |s: &str| -> Option<u64> { s.trim().parse().ok() };
    let rest = &text[text.find("fuzz: seed ")? + "fuzz: seed ".len()..];
    let (seed, rest) = rest.split_once(" done: ")?;
    let (ops, rest) = rest.split_once(" ops in ")?;
    let (ms, rest) = rest.split_once(" ms;")?;
    let faulted = rest.split_once("faulted back ")?.1.split_once(' ')?.0;
    Some(GuestSummary { seed: number(seed)?, ops: number(ops)?, ms: number(ms)?, faulted: number(faulted)? })
}

/// How one run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Everything wrong with it; empty: it passed.
    pub failures: Vec<String>,
    /// The fuzz guest's summary, if it printed one.
    pub summary: Option<GuestSummary>,
}

/// Judges a run of [`scenario_text`]`(seed, ...)`: as a scenario (`expect`), and the
/// fuzz guest's summary must name the seed.
pub fn judge_run(
    expect: &Expect,
    ending: Ending,
    console: &[String],
    vm_names: &[String],
    seed: u64,
) -> Verdict {
    let mut failures = expect::judge(expect, ending, console, Host::Sluice, vm_names, &Progress::default());
    let summary = said_by(console, Host::Sluice, FUZZ_VM).find_map(parse_summary);
    if let Some(s) = summary.filter(|s| s.seed != seed) {
        failures.push(format!("the fuzz guest says it ran seed {}, not {seed}", s.seed));
    }
    Verdict { failures, summary }
}

/// The line for a run that passed: operations per second by the wall clock (boot
/// included) and by the guest's own.
pub fn report_line(seed: u64, summary: &GuestSummary, wall: Duration) -> String {
    let rate =
        |ops: u64, secs: f64| if secs > 0.0 { format!("{:.0}", ops as f64 / secs) } else { "-".to_owned() };
    format!(
        "seed {seed}: {} ops in {:.1} s, {} ops/s ({} ops/s in the guest), {} faulted back",
        summary.ops,
        wall.as_secs_f64(),
        rate(summary.ops, wall.as_secs_f64()),
        rate(summary.ops, summary.ms as f64 / 1000.0),
        summary.faulted
    )
}

/// Runs seeds until `options.seconds` have passed or one fails.
///
/// # Errors
///
/// Building, packing or starting QEMU failed. A failed run is no error: the command
/// says what went wrong and returns a failure exit code.
pub fn command(ws: &Workspace, options: Options) -> Result<ExitCode> {
    deps::ensure_qemu()?;
    build::build_all(ws)?;
    let out = ws.out_dir().join("fuzz-guest");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let first = options
        .seed
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs()));
    eprintln!(
        "xtask: fuzz-guest: seeds from {first} up, {} operations each, for {} s",
        options.ops, options.seconds
    );
    let started = Instant::now();
    let (mut runs, mut ops, mut seed) = (0u64, 0u64, first);
    loop {
        let run_start = Instant::now();
        let (verdict, log) = run_once(ws, &out, seed, options.ops)?;
        let wall = run_start.elapsed();
        runs += 1;
        if !verdict.failures.is_empty() {
            println!("xtask: fuzz-guest: seed {seed} FAILED after {:.1} s:", wall.as_secs_f64());
            for failure in &verdict.failures {
                println!("  - {failure}");
            }
            println!("  log: {}", ws.relative(&log).display());
            println!("  replay: cargo xtask fuzz-guest --seed {seed} --ops {} --time 0", options.ops);
            return Ok(ExitCode::FAILURE);
        }
        if let Some(summary) = verdict.summary {
            ops += summary.ops;
            println!("xtask: fuzz-guest: {}", report_line(seed, &summary, wall));
        }
        if started.elapsed() >= Duration::from_secs(options.seconds) {
            break;
        }
        seed = seed.wrapping_add(1);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "xtask: fuzz-guest: {runs} run(s) clean (seeds {first} to {seed}), {ops} operations in {secs:.0} s, {:.0} ops/s",
        ops as f64 / secs.max(f64::MIN_POSITIVE)
    );
    Ok(ExitCode::SUCCESS)
}

/// Packs, boots and judges the run of `seed`; returns the verdict and the log file.
fn run_once(ws: &Workspace, out: &Path, seed: u64, ops: u64) -> Result<(Verdict, std::path::PathBuf)> {
    let config =
        config::parse(&scenario_text(seed, ops)).context("the fuzz-guest scenario does not parse")?;
    let (scenarios, guests) = (ws.scenarios_dir(), ws.guests_dir());
    let sources = Sources {
        config_dir: &scenarios,
        guests_dir: &guests,
        read: &crate::regular_file::read,
        open_disk: &crate::regular_file::open_disk,
    };
    let refused = |r| anyhow!("the fuzz-guest scenario is refused:\n{r}");
    let scenario = validate::validate(&config, &sources).map_err(refused)?;
    admission::check(&scenario)?.map_err(refused)?;
    let expect = scenario.expect.clone().context("the fuzz-guest scenario has an [expect] table")?;
    let bundle_path = out.join("fuzz-guest.dtb");
    bundle::write(&scenario, &bundle_path)?;
    let args = qemu::args(&Invocation::captured(
        &scenario,
        ws.relative(&ws.hypervisor_bin()),
        ws.relative(&bundle_path),
        Clock::Wall,
    ));
    let mut command = ws.command(qemu::QEMU);
    command.args(&args);
    let run = runner::run(&mut command, expect.timeout, Echo::Quiet, &[])?;
    let verdict = judge_run(&expect, run.ending, &run.console, &scenario.vm_names(), seed);
    let mut text = format!("$ {}\n", qemu::display(&args));
    run.output.iter().for_each(|line| {
        text += line;
        text.push('\n');
    });
    let last = out.join("last.log");
    std::fs::write(&last, &text).with_context(|| format!("cannot write {}", last.display()))?;
    if verdict.failures.is_empty() {
        return Ok((verdict, last));
    }
    let kept = out.join(format!("seed-{seed}.log"));
    std::fs::write(&kept, &text).with_context(|| format!("cannot write {}", kept.display()))?;
    Ok((verdict, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::arm64_image;
    use crate::units::MIB;

    const SUMMARY: &str = "fuzz: seed 7 done: 15000 ops in 812 ms; virtio 4537/254 chain 3670/0 gic 2980/201 \
                           uart 1200/90 psci 2613/0 (ops/faulted); faulted back 545 (545 aborts, 0 undefined); \
                           cpu_on 61; setups 2810; resets 1100";

    fn expect(seed: u64, ops: u64) -> (Expect, Vec<String>) {
        let config = config::parse(&scenario_text(seed, ops)).unwrap();
        let read = |_: &Path| Ok(arm64_image(0x20_0000, MIB, 0b10, 4096));
        let sources = Sources {
            config_dir: Path::new("/scenarios"),
            guests_dir: Path::new("/guests"),
            read: &read,
            open_disk: &crate::validate::tests::fake_open_disk,
        };
        let scenario = validate::validate(&config, &sources).unwrap();
        (scenario.expect.clone().unwrap(), scenario.vm_names())
    }

    #[test]
    fn the_scenario_is_valid_and_names_the_seed() {
        let text = scenario_text(42, 1234);
        assert!(text.contains("bootargs = \"seed=42 ops=1234\""));
        let (expect, names) = expect(42, 1234);
        assert_eq!(names, ["fuzz", "virtio"]);
        assert_eq!(expect.timeout, Duration::from_secs(61));
        assert_eq!(expect.exit_status, 0);
        assert!(expect.anywhere.iter().any(|s| s.to_string() == "[fuzz] fuzz: seed 42 done: 1234 ops in "));
    }

    #[test]
    fn reads_the_guests_summary() {
        assert_eq!(parse_summary(SUMMARY), Some(GuestSummary { seed: 7, ops: 15000, ms: 812, faulted: 545 }));
        assert_eq!(parse_summary(&format!("\\x01junk{SUMMARY}")).map(|s| s.ops), Some(15000));
        assert_eq!(parse_summary("fuzz: seed 7, 15000 operations"), None);
        assert_eq!(parse_summary("fuzz: seed 7: 5000/15000 ops, 3 faulted back"), None);
        assert_eq!(parse_summary("fuzz: seed x done: 1 ops in 2 ms; faulted back 3 (...)"), None);
    }

    /// A console of a run of seed 7 with 15000 operations that went well.
    fn good_console() -> Vec<String> {
        [
            "sluice: Sluice 0.1.0 - AArch64 hypervisor at EL2",
            "[fuzz] fuzz: seed 7, 15000 operations",
            "[virtio] virtio: blk write/flush/read-back ok 300 times",
            "[virtio] virtio: blk out-of-range request failed as it should (3 requests)",
            "[fuzz] fuzz: seed 7: 3750/15000 ops, 120 faulted back",
            "[virtio] virtio: blk 16 requests completed by interrupt (1 interrupt(s), 0 re-poll(s))",
            "[virtio] virtio: hello through virtio-console",
            "[virtio] virtio: hello through emerg_wr",
            "[virtio] virtio: done",
            "sluice: vm \"virtio\" powered off",
            "[fuzz] ^A^B&&",
            &format!("[fuzz] {SUMMARY}"),
            "sluice: vm \"fuzz\" powered off",
            "sluice: every VM stopped cleanly; powering off",
            "sluice: exit status 0",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    #[test]
    fn a_clean_run_passes_with_its_summary() {
        let (expect, names) = expect(7, 15000);
        let verdict = judge_run(&expect, Ending::Exited(Some(0)), &good_console(), &names, 7);
        assert_eq!(verdict.failures, Vec::<String>::new());
        assert_eq!(verdict.summary.map(|s| (s.ops, s.ms)), Some((15000, 812)));
        let line = report_line(7, &verdict.summary.unwrap(), Duration::from_millis(2500));
        assert_eq!(
            line,
            "seed 7: 15000 ops in 2.5 s, 6000 ops/s (18473 ops/s in the guest), 545 faulted back"
        );
    }

    #[test]
    fn failures_are_said() {
        let (expect, names) = expect(7, 15000);
        // The fuzz VM stopped as failed: no summary, status bit 0.
        let mut console = good_console();
        console.retain(|l| !l.contains("done: 15000"));
        *console.last_mut().unwrap() = "sluice: exit status 1".to_owned();
        let verdict = judge_run(&expect, Ending::Exited(Some(0)), &console, &names, 7);
        assert_eq!(verdict.summary, None);
        assert!(
            verdict.failures.iter().any(|f| f.contains("VM 0 (\"fuzz\") failed")),
            "{:?}",
            verdict.failures
        );
        assert!(verdict.failures.iter().any(|f| f.contains("in any order")), "{:?}", verdict.failures);
        // A hang.
        let verdict =
            judge_run(&expect, Ending::TimedOut(Duration::from_secs(75)), &good_console()[..5], &names, 7);
        assert!(verdict.failures[0].starts_with("timed out after 75 s"), "{:?}", verdict.failures);
        // The hypervisor gave up.
        let mut console = good_console();
        console.insert(6, "sluice: fatal: exception at EL2".to_owned());
        let verdict = judge_run(&expect, Ending::Exited(Some(0)), &console, &names, 7);
        assert!(
            verdict.failures.iter().any(|f| f.contains("\"fatal\" must not appear")),
            "{:?}",
            verdict.failures
        );
        // The well-behaved VM disturbed.
        let mut console = good_console();
        console[2] = "[virtio] virtio: FAIL blk read-back: sector 3 byte 0 reads 0x00, wrote 0x5a".to_owned();
        let verdict = judge_run(&expect, Ending::Exited(Some(0)), &console, &names, 7);
        assert!(verdict.failures.len() >= 2, "{:?}", verdict.failures);
        // Another seed's summary.
        let verdict = judge_run(&expect, Ending::Exited(Some(0)), &good_console(), &names, 8);
        assert!(verdict.failures.iter().any(|f| f.contains("ran seed 7, not 8")), "{:?}", verdict.failures);
    }

    #[test]
    fn the_timeout_grows_with_the_operations() {
        assert_eq!(timeout_secs(0), 60);
        assert_eq!(timeout_secs(DEFAULT_OPS), 110);
    }
}
