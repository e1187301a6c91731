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
}

/// Reads the figures from the init's lines that VM `vm` printed on `console` (the
/// first boot's).
pub fn parse(output: &[String], host: Host, vm: &str) -> Option<Figures> {
    let after = |line: &str, marker: &str| line.split_once(marker).map(|(_, rest)| rest.to_owned());
    let boot_to_init = said_by(output, host, vm)
        .find_map(|l| after(l, "init: reached /init at "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())?;
    let read_mib_s = said_by(output, host, vm)
        .find_map(|l| after(l, "init: dd read "))
        .and_then(|rest| rest.rsplit_once('(')?.1.split_whitespace().next()?.parse().ok())?;
    Some(Figures { boot_to_init, read_mib_s })
}

/// The table: one row per run.
pub fn table(rows: &[(String, Option<Figures>)]) -> String {
    let mut text =
        String::from("| run | boot to /init (s) | dd read of /dev/vda (MiB/s) |\n| --- | ---: | ---: |\n");
    for (label, figures) in rows {
        match figures {
            Some(f) => text += &format!("| {label} | {:.2} | {:.1} |\n", f.boot_to_init, f.read_mib_s),
            None => text += &format!("| {label} | failed | failed |\n"),
        }
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
        let plain = reference::args(vm, &files, Mode::Modern, Console::Captured, clock);
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
            "[linux] init: reached /init at 11.00 s of uptime",
        ]);
        let sluice = Host::Sluice;
        assert_eq!(parse(&output, sluice, "linux"), Some(Figures { boot_to_init: 10.73, read_mib_s: 26.7 }));
        assert_eq!(parse(&output[..1], sluice, "linux"), None);
        assert_eq!(parse(&output, sluice, "other"), None, "another VM's lines are not the figures");
    }

    #[test]
    fn table_has_a_row_per_run() {
        let rows = vec![
            ("Sluice, wall clock".to_owned(), Some(Figures { boot_to_init: 10.7, read_mib_s: 26.7 })),
            ("plain QEMU, wall clock".to_owned(), None),
        ];
        assert_eq!(
            table(&rows),
            "| run | boot to /init (s) | dd read of /dev/vda (MiB/s) |\n| --- | ---: | ---: |\n\
             | Sluice, wall clock | 10.70 | 26.7 |\n| plain QEMU, wall clock | failed | failed |\n"
        );
    }
}
