//! `cargo xtask`: builds Sluice and its test guests, packs boot bundles, runs QEMU, and
//! runs the tests.
//!
//! ```text
//! cargo xtask build                       hypervisor + test guests -> target/sluice/
//! cargo xtask bundle CONFIG [-o FILE]     check a scenario and write its boot bundle
//! cargo xtask run [CONFIG] [--gdb]        build, pack and boot a scenario in QEMU
//! cargo xtask test [--scenario NAME]...   host tests, fuzz targets, every QEMU scenario with [expect]
//! cargo xtask fuzz [TARGET] [--time S]    the libFuzzer targets in fuzz/, S seconds each
//! cargo xtask fuzz-guest [--time S]       the hostile fuzz guest under Sluice, seed after seed
//! cargo xtask lint                        rustfmt and clippy, host and bare-metal
//! cargo xtask kit [--refresh]             Linux guest kit -> target/sluice/kit/
//! cargo xtask bench [--iterations N]      latency report -> target/sluice/bench/
//! ```
#![forbid(unsafe_code)]

mod admission;
mod attribution;
mod bench;
mod build;
mod bundle;
mod clock;
mod cmd;
mod config;
mod damage;
mod deps;
mod devices;
mod disk_check;
mod expect;
mod figures;
mod fuzz;
mod fuzz_guest;
mod kit;
mod layout;
mod lint;
mod qemu;
mod reference;
mod regular_file;
mod runner;
mod scenarios;
mod send;
mod sparse;
mod status;
#[cfg(test)]
mod testutil;
mod units;
mod validate;
mod workspace;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::qemu::{Clock, Console, Invocation};
use crate::workspace::Workspace;

/// The scenario `cargo xtask run` boots when given none (relative to the workspace root).
const DEFAULT_SCENARIO: &str = "tests/scenarios/linux.toml";

#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", about = "Build, pack, run and test Sluice")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the hypervisor and the test guests into target/sluice/.
    Build,
    /// Check a scenario and write its boot bundle (inspect it with `dtc -I dtb -O dts`).
    Bundle {
        /// The scenario file.
        config: PathBuf,
        /// Where to write the bundle [default: target/sluice/bundles/<name>.dtb].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Build everything, pack a scenario and boot it in QEMU on this terminal.
    Run {
        /// The scenario file [default: tests/scenarios/linux.toml].
        config: Option<PathBuf>,
        /// Make QEMU wait for gdb on port 1234 before the first instruction.
        #[arg(long)]
        gdb: bool,
        /// Boot the scenario's first VM on plain QEMU with QEMU's own virtio devices
        /// (modern) instead of under Sluice, for comparison.
        #[arg(long)]
        reference: bool,
    },
    /// Run the host tests, build, then run every QEMU scenario that has an [expect] table.
    Test {
        /// Run only this scenario (file name without .toml); may be repeated.
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Skip `cargo test --workspace`.
        #[arg(long)]
        no_host: bool,
        /// Skip the short run of every fuzz target (`cargo xtask fuzz --time 15`).
        #[arg(long)]
        no_fuzz: bool,
    },
    /// Run the coverage-guided fuzz targets in fuzz/ (libFuzzer through cargo-fuzz;
    /// installs a nightly toolchain and cargo-fuzz when missing).
    Fuzz {
        /// Only this target [default: all].
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(fuzz::TARGETS))]
        target: Option<String>,
        /// Seconds per target.
        #[arg(long = "time", value_name = "S", default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
    },
    /// Run the hostile fuzz guest under Sluice beside a well-behaved VM, one seed after
    /// another, until the time is up or a run fails (then say its seed and log).
    FuzzGuest {
        /// Start no new run after S seconds.
        #[arg(long = "time", value_name = "S", default_value_t = fuzz_guest::DEFAULT_SECONDS)]
        seconds: u64,
        /// The first seed (then counting up) [default: the time of day].
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Operations per run.
        #[arg(long, value_name = "M", default_value_t = fuzz_guest::DEFAULT_OPS,
              value_parser = clap::value_parser!(u64).range(1..))]
        ops: u64,
    },
    /// Check formatting and run clippy (host and bare-metal targets).
    Lint,
    /// Linux's boot time to /init and a disk read, under Sluice and on plain QEMU,
    /// wall clock and -icount, in one table.
    Figures,
    /// Time the trap-and-notify paths with the latency guest, under Sluice and on
    /// plain QEMU, wall clock and -icount, plus the Linux figures; write a report
    /// with plots to target/sluice/bench/.
    Bench {
        /// Timed iterations per path (at most 2048).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=2048))]
        iterations: u32,
        /// Untimed iterations before them.
        #[arg(long, default_value_t = 50)]
        warmup: u32,
        /// Skip the Linux scenario's figures.
        #[arg(long)]
        no_linux: bool,
    },
    /// Build the Linux guest kit from Debian's arm64 packages into target/sluice/kit/:
    /// kernel Image, initramfs (busybox, virtio modules, tests/linux/init), ext4 disk.
    Kit {
        /// Ask the archive for the newest packages even when the cache has a kit.
        #[arg(long)]
        refresh: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command.execute() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cmd {
    fn execute(self) -> Result<ExitCode> {
        let ws = Workspace::discover()?;
        match self {
            Self::Build => build::build_all(&ws).map(|_| ExitCode::SUCCESS),
            Self::Bundle { config, output } => bundle_command(&ws, &config, output),
            Self::Run { config, gdb, reference } => run_command(&ws, config, gdb, reference),
            Self::Test { scenarios, no_host, no_fuzz } => test_command(&ws, &scenarios, no_host, no_fuzz),
            Self::Fuzz { target, seconds } => {
                let targets: Vec<&str> = target.as_deref().into_iter().collect();
                let clean = fuzz::run(&ws, &targets, seconds)?;
                Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            Self::FuzzGuest { seconds, seed, ops } => {
                fuzz_guest::command(&ws, fuzz_guest::Options { seconds, seed, ops })
            }
            Self::Lint => lint::lint(&ws).map(|()| ExitCode::SUCCESS),
            Self::Figures => figures::command(&ws).map(|()| ExitCode::SUCCESS),
            Self::Bench { iterations, warmup, no_linux } => {
                let options = bench::Options { iterations, warmup, linux: !no_linux };
                bench::command(&ws, options).map(|()| ExitCode::SUCCESS)
            }
            Self::Kit { refresh } => kit::command(&ws, refresh).map(|()| ExitCode::SUCCESS),
        }
    }
}

fn bundle_command(ws: &Workspace, config: &Path, output: Option<PathBuf>) -> Result<ExitCode> {
    let scenario = admission::load(config, &ws.guests_dir())?;
    let output = output.unwrap_or_else(|| ws.bundle_path(config));
    bundle::write(&scenario, &output)?;
    eprintln!("xtask: wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}

fn run_command(ws: &Workspace, config: Option<PathBuf>, gdb: bool, reference: bool) -> Result<ExitCode> {
    let config = config.unwrap_or_else(|| ws.root().join(DEFAULT_SCENARIO));
    deps::ensure_qemu()?;
    let built = build::build_all(ws)?;
    if scenarios::need_kit(std::slice::from_ref(&config)) {
        kit::build(ws, false).context("the Linux guest kit (cargo xtask kit) could not be made")?;
    }
    let scenario = admission::load(&config, &ws.guests_dir())?;
    let console_log = ws.out_dir().join("console.log");
    let args = if reference {
        let vm = &scenario.vms[0];
        let files = reference::write_files(vm, &ws.out_dir().join("reference").join(&vm.name))?;
        reference::args(
            vm,
            &files,
            devices::Mode::Modern,
            Console::Interactive,
            Clock::Wall,
            scenario.machine.mte,
        )
    } else {
        let bundle_path = ws.bundle_path(&config);
        bundle::write(&scenario, &bundle_path)?;
        qemu::args(&Invocation {
            machine: scenario.machine,
            hypervisor: ws.relative(&built.hypervisor_bin),
            bundle: ws.relative(&bundle_path),
            console: Console::Interactive,
            console_log: Some(ws.relative(&console_log)),
            clock: Clock::Wall,
            gdb,
            disks: scenario.machine_disks(),
        })
    };
    eprintln!("$ {}", qemu::display(&args));
    if gdb {
        eprintln!("xtask: {}", qemu::gdb_hint(&ws.relative(&built.hypervisor_elf)));
    }
    if reference {
        eprintln!("xtask: plain QEMU: Ctrl-A c switches between ttyAMA0 and hvc0, Ctrl-A x quits");
    } else {
        eprintln!("xtask: the console is Sluice's: Ctrl-A h for help, Ctrl-A x to quit");
    }
    let _ = std::fs::remove_file(&console_log);
    let terminal = qemu::TerminalGuard::save();
    let exit = ws
        .command(qemu::QEMU)
        .args(&args)
        .status()
        .with_context(|| format!("cannot start {}", qemu::QEMU))?;
    drop(terminal);
    if reference {
        eprintln!("xtask: plain QEMU exited ({exit})");
        return Ok(if exit.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    let console = std::fs::read(&console_log).unwrap_or_default();
    let lines: Vec<String> = String::from_utf8_lossy(&console).lines().map(str::to_owned).collect();
    match status::from_run(exit, &lines) {
        Ok(status) => {
            eprintln!("xtask: {}", status::describe(status, &scenario.vm_names()));
            Ok(ExitCode::from(status))
        }
        Err(why) => {
            eprintln!("xtask: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test_command(ws: &Workspace, scenarios: &[String], no_host: bool, no_fuzz: bool) -> Result<ExitCode> {
    let selected = scenarios::selected(ws, scenarios)?;
    if !no_host {
        cmd::run(ws.cargo().args(["test", "--workspace"])).context("host tests failed")?;
    }
    if !no_fuzz && !fuzz::run(ws, &[], fuzz::TEST_SECONDS)? {
        anyhow::bail!("a fuzz target failed (its input is named above)");
    }
    deps::ensure_qemu()?;
    build::build_all(ws)?;
    if scenarios::need_kit(&selected) {
        kit::build(ws, false).context("the Linux guest kit (cargo xtask kit) could not be made")?;
    }
    scenarios::run_all(ws, &selected, !scenarios.is_empty())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cli_parses_every_command() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()));
        assert!(matches!(parse(&["build"]).unwrap().command, Cmd::Build));
        let Cmd::Bundle { config, output } = parse(&["bundle", "s.toml", "-o", "b.dtb"]).unwrap().command
        else {
            panic!("not bundle");
        };
        assert_eq!((config, output), (PathBuf::from("s.toml"), Some(PathBuf::from("b.dtb"))));
        let Cmd::Run { config, gdb, reference } = parse(&["run", "--gdb"]).unwrap().command else {
            panic!("not run");
        };
        assert_eq!((config, gdb, reference), (None, true, false));
        let Cmd::Run { reference, .. } = parse(&["run", "--reference"]).unwrap().command else {
            panic!("not run");
        };
        assert!(reference);
        let Cmd::Test { scenarios, no_host, no_fuzz } =
            parse(&["test", "--scenario", "a", "--scenario", "b", "--no-host"]).unwrap().command
        else {
            panic!("not test");
        };
        assert_eq!((scenarios, no_host, no_fuzz), (vec!["a".to_owned(), "b".to_owned()], true, false));
        assert!(matches!(parse(&["test", "--no-fuzz"]).unwrap().command, Cmd::Test { no_fuzz: true, .. }));
        assert!(matches!(parse(&["lint"]).unwrap().command, Cmd::Lint));
        assert!(matches!(parse(&["kit"]).unwrap().command, Cmd::Kit { refresh: false }));
        assert!(matches!(parse(&["kit", "--refresh"]).unwrap().command, Cmd::Kit { refresh: true }));
        let Cmd::Bench { iterations, warmup, no_linux } = parse(&["bench", "--no-linux"]).unwrap().command
        else {
            panic!("not bench");
        };
        assert_eq!((iterations, warmup, no_linux), (1000, 50, true));
        assert!(parse(&["bench", "--iterations", "5000"]).is_err(), "more than the guest keeps");
        assert!(parse(&["bundle"]).is_err());
    }

    #[test]
    fn cli_parses_fuzz() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()));
        let Cmd::Fuzz { target, seconds } = parse(&["fuzz"]).unwrap().command else { panic!("not fuzz") };
        assert_eq!((target, seconds), (None, fuzz::DEFAULT_SECONDS));
        let Cmd::Fuzz { target, seconds } = parse(&["fuzz", "vgic", "--time", "10"]).unwrap().command else {
            panic!("not fuzz");
        };
        assert_eq!((target.as_deref(), seconds), (Some("vgic"), 10));
        assert!(parse(&["fuzz", "nonesuch"]).is_err(), "only the fuzz crate's targets");
        assert!(parse(&["fuzz", "--time", "soon"]).is_err());
    }

    #[test]
    fn cli_parses_fuzz_guest() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()));
        let Cmd::FuzzGuest { seconds, seed, ops } = parse(&["fuzz-guest"]).unwrap().command else {
            panic!("not fuzz-guest");
        };
        assert_eq!((seconds, seed, ops), (fuzz_guest::DEFAULT_SECONDS, None, fuzz_guest::DEFAULT_OPS));
        let Cmd::FuzzGuest { seconds, seed, ops } =
            parse(&["fuzz-guest", "--time", "120", "--seed", "7", "--ops", "1000"]).unwrap().command
        else {
            panic!("not fuzz-guest");
        };
        assert_eq!((seconds, seed, ops), (120, Some(7), 1000));
        assert!(parse(&["fuzz-guest", "--ops", "0"]).is_err(), "a run makes at least one operation");
        assert!(parse(&["fuzz-guest", "--seed", "-1"]).is_err());
        assert!(parse(&["fuzz-guest", "7"]).is_err());
    }
}
