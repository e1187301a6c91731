//! `cargo xtask figures`: the Linux scenario's boot time to `/init` and a sequential
//! read of its disk, under Sluice and on plain QEMU with QEMU's own devices, in
//! wall-clock time and with `-icount shift=0` (guest-visible time counts
//! instructions, so those figures repeat run to run), side by side from one
//! invocation. The guest measures both itself (`tests/linux/init`, from
//! `/proc/uptime`); each run powers off through the `hvc0` shell.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::admission;
use crate::attribution::{said_by, Host};
use crate::devices::Mode;
use crate::qemu::{self, Clock, Console, Invocation};
use crate::reference;
use crate::runner::{self, Echo};
use crate::send::Step;
use crate::workspace::Workspace;
use crate::{build, bundle, deps, kit};

/// The scenario measured.
pub const SCENARIO: &str = "tests/scenarios/linux.toml";

/// What one run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Guest uptime when `/init` started, in seconds.
    pub boot_to_init: f64,
    /// MiB/s of `dd` from `/dev/vda`.
    pub read_mib_s: f64,
    /// MiB/s of `dd bs=1M iflag=direct` from `/dev/vda`, if the run made it.
    pub direct_mib_s: Option<f64>,
    /// Microseconds per 4 KiB direct read (`dd iflag=direct`), if the run made them.
    pub direct_read_us: Option<f64>,
}

/// Reads the figures from the init's lines that VM `vm` printed on `console` (the
/// first boot's).
pub fn parse(output: &[String], host: Host, vm: &str) -> Option<Figures> {
    let after = |line: &str, marker: &str| line.split_once(marker).map(|(_, rest)| rest.to_owned());
    let boot_to_init = said_by(output, host, vm)
        .find_map(|l| after(l, "init: reached /init at "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())?;
    let mib_s = |rest: String| rest.rsplit_once('(')?.1.split_whitespace().next()?.parse().ok();
    let read_mib_s = said_by(output, host, vm).find_map(|l| after(l, "init: dd read ")).and_then(mib_s)?;
    let direct_mib_s = said_by(output, host, vm)
        .find_map(|l| after(l, "init: dd ").filter(|rest| rest.contains(" MiB direct from ")))
        .and_then(mib_s);
    // "init: dd N direct 4 KiB reads from /dev/vda in T s"
    let direct_read_us = said_by(output, host, vm)
        .find_map(|l| after(l, "init: dd ").filter(|rest| rest.contains(" direct 4 KiB reads ")))
        .and_then(|rest| {
            let reads: f64 = rest.split_whitespace().next()?.parse().ok()?;
            let seconds: f64 = rest.split_once(" in ")?.1.split_whitespace().next()?.parse().ok()?;
            (reads > 0.0).then(|| seconds * 1e6 / reads)
        });
    Some(Figures { boot_to_init, read_mib_s, direct_mib_s, direct_read_us })
}

/// The Linux table's heading.
pub const TABLE_HEAD: &str = "| run | boot to /init (s) | dd read of /dev/vda (MiB/s) | the same, direct (MiB/s) | 4 KiB direct read (µs) |\n| --- | ---: | ---: | ---: | ---: |\n";

/// One row of the Linux table, from `[boot, read, direct read, 4 KiB direct read]`;
/// a figure missing reads "failed" if the run failed (`ran` false), else "n/a".
pub fn table_row(label: &str, figures: [Option<f64>; 4], ran: bool) -> String {
    let cells: Vec<String> = figures
        .iter()
        .zip([2, 1, 1, 1])
        .map(|(figure, decimals)| match figure {
            Some(value) => format!("{value:.decimals$}"),
            None if ran => "n/a".to_owned(),
            None => "failed".to_owned(),
        })
        .collect();
    format!("| {label} | {} |\n", cells.join(" | "))
}

/// The table: one row per run.
pub fn table(rows: &[(String, Option<Figures>)]) -> String {
    let mut text = String::from(TABLE_HEAD);
    for (label, figures) in rows {
        text += &match figures {
            Some(f) => table_row(
                label,
                [Some(f.boot_to_init), Some(f.read_mib_s), f.direct_mib_s, f.direct_read_us],
                true,
            ),
            None => table_row(label, [None; 4], false),
        };
    }
    text
}

/// Runs the four runs and prints the table.
///
/// # Errors
///
/// The kit, the build or the scenario can't be made; a run that fails shows as
/// `failed` in the table instead.
pub fn command(ws: &Workspace) -> Result<()> {
    deps::ensure_qemu()?;
    let built = build::build_all(ws)?;
    let rows = measure_all(ws, &built)?;
    println!("\n{}", table(&rows));
    Ok(())
}

/// The four runs (Sluice and plain QEMU, wall clock and icount), labelled.
///
/// # Errors
///
/// The kit or the scenario can't be made; a run that fails gives `None`.
pub fn measure_all(ws: &Workspace, built: &build::Built) -> Result<Vec<(String, Option<Figures>)>> {
    kit::build(ws, false).context("the Linux guest kit could not be made")?;
    let config = ws.root().join(SCENARIO);
    let scenario = admission::load(&config, &ws.guests_dir())?;
    let bundle_path = ws.bundle_path(&config);
    bundle::write(&scenario, &bundle_path)?;
    let vm = &scenario.vms[0];
    let mut rows = Vec::new();
    for clock in [Clock::Wall, Clock::Icount] {
        let sluice = qemu::args(&Invocation::captured(
            &scenario,
            ws.relative(&built.hypervisor_bin),
            ws.relative(&bundle_path),
            clock,
        ));
        let files = reference::write_files(vm, &ws.out_dir().join("figures").join(&vm.name))?;
        let plain = reference::args(vm, &files, Mode::Modern, Console::Captured, clock, scenario.machine.mte);
        let label = clock.label();
        rows.push((format!("Sluice, {label}"), measure(ws, &sluice, Host::Sluice, &vm.name)));
        rows.push((format!("plain QEMU, {label}"), measure(ws, &plain, Host::PlainQemu, &vm.name)));
    }
    Ok(rows)
}

/// One run of QEMU with `args`, powered off through the hvc0 shell of VM `vm`.
fn measure(ws: &Workspace, args: &[std::ffi::OsString], host: Host, vm: &str) -> Option<Figures> {
    eprintln!("$ {}", qemu::display(args));
    let mut command = ws.command(qemu::QEMU);
    command.args(args);
    let steps = [Step { after: "init: shell on hvc0".into(), text: b"poweroff -f\r".to_vec() }];
    let run = runner::run(&mut command, Duration::from_secs(900), Echo::Terminal, &steps).ok()?;
    parse(&run.console, host, vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_the_init_lines() {
        let output = lines(&[
            "[linux] init: reached /init at 10.73 s of uptime",
            "[linux] init: dd read 32 MiB from /dev/vda in 1.2 s (26.7 MiB/s)",
            "[linux] init: dd 32 MiB direct from /dev/vda in 0.8 s (40.0 MiB/s)",
            "[linux] init: dd 8192 direct 4 KiB reads from /dev/vda in 0.4096 s",
            "[linux] init: reached /init at 11.00 s of uptime",
        ]);
        let sluice = Host::Sluice;
        let all = Figures {
            boot_to_init: 10.73,
            read_mib_s: 26.7,
            direct_mib_s: Some(40.0),
            direct_read_us: Some(50.0),
        };
        assert_eq!(parse(&output, sluice, "linux"), Some(all));
        let buffered_only = Figures { direct_mib_s: None, direct_read_us: None, ..all };
        assert_eq!(parse(&output[..2], sluice, "linux"), Some(buffered_only), "a dd without iflag=direct");
        assert_eq!(parse(&output[..1], sluice, "linux"), None);
        assert_eq!(parse(&output, sluice, "other"), None, "another VM's lines are not the figures");
    }

    #[test]
    fn table_has_a_row_per_run() {
        let rows = vec![
            (
                "Sluice, wall clock".to_owned(),
                Some(Figures {
                    boot_to_init: 10.7,
                    read_mib_s: 26.7,
                    direct_mib_s: Some(40.0),
                    direct_read_us: None,
                }),
            ),
            ("plain QEMU, wall clock".to_owned(), None),
        ];
        let table = table(&rows);
        assert!(table.starts_with(TABLE_HEAD));
        assert_eq!(
            &table[TABLE_HEAD.len()..],
            "| Sluice, wall clock | 10.70 | 26.7 | 40.0 | n/a |\n| plain QEMU, wall clock | failed | failed | failed | failed |\n"
        );
    }
}
