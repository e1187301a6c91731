//! QEMU's command line for a scenario, and the terminal it runs on.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub use crate::clock::Clock;
use crate::devices::MachineDisk;
use crate::units::MIB;
use crate::validate::{Machine, Scenario};

/// The QEMU program.
pub const QEMU: &str = "qemu-system-aarch64";
/// The board: QEMU virt with EL2 and a GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// The port `-s` opens for gdb.
pub const GDB_PORT: u16 = 1234;

/// How QEMU talks to the person or program running it. In both, the serial port is
/// QEMU's stdin and stdout and nothing else is: no monitor, no display, and no QEMU
/// escape key, so every byte typed (Ctrl-A and Ctrl-C included) reaches the
/// hypervisor's UART, whose console multiplexer has its own escape keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// `cargo xtask run`: the serial port on the terminal, which QEMU's stdio chardev
    /// sets raw while it runs; `signal=off` leaves Ctrl-C to the guest instead of
    /// letting the terminal turn it into SIGINT.
    Interactive,
    /// The test runner: the serial port on QEMU's stdin and stdout (pipes).
    Captured,
}

/// Everything the command line depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `-smp` and `-m`.
    pub machine: Machine,
    /// The hypervisor's raw image (`-kernel`).
    pub hypervisor: PathBuf,
    /// The boot bundle (`-initrd`).
    pub bundle: PathBuf,
    /// Where the console goes.
    pub console: Console,
    /// A file that gets a copy of everything the console shows (QEMU's chardev log),
    /// for reading Sluice's exit status after an interactive run.
    pub console_log: Option<PathBuf>,
    /// How time is kept.
    pub clock: Clock,
    /// Wait for gdb on [`GDB_PORT`] before the first instruction (`-s -S`).
    pub gdb: bool,
    /// The machine's own disks: the VMs' file-backed disks.
    pub disks: Vec<MachineDisk>,
}

impl Invocation {
    /// A run of `scenario` whose console the tools capture and read, without gdb:
    /// what every test, benchmark and figure runs.
    pub fn captured(scenario: &Scenario, hypervisor: PathBuf, bundle: PathBuf, clock: Clock) -> Self {
        Self {
            machine: scenario.machine,
            hypervisor,
            bundle,
            console: Console::Captured,
            console_log: None,
            clock,
            gdb: false,
            disks: scenario.machine_disks(),
        }
    }
}

/// QEMU's `-machine` value: `machine`, with tag storage when `mte`.
pub fn machine_option(machine: &str, mte: bool) -> String {
    if mte {
        format!("{machine},mte=on")
    } else {
        machine.to_owned()
    }
}

/// QEMU's arguments (without the program name).
pub fn args(invocation: &Invocation) -> Vec<OsString> {
    let smp = invocation.machine.cpus.to_string();
    // Validation keeps machine memory a multiple of 2 MiB, so whole MiB are exact.
    let memory = format!("{}M", invocation.machine.memory / MIB);
    let machine = machine_option(MACHINE, invocation.machine.mte);
    let head = ["-machine", &machine, "-cpu", "max", "-smp", &smp, "-m", &memory];
    let mut args: Vec<OsString> = head.iter().map(OsString::from).collect();
    args.push("-kernel".into());
    args.push(invocation.hypervisor.clone().into());
    args.push("-initrd".into());
    args.push(invocation.bundle.clone().into());
    // QEMU's option syntax doubles a comma inside a value.
    let log = invocation
        .console_log
        .as_ref()
        .map(|path| format!(",logfile={},logappend=off", path.display().to_string().replace(',', ",,")));
    let chardev = match invocation.console {
        Console::Interactive => format!("stdio,id=console,signal=off{}", log.unwrap_or_default()),
        Console::Captured => format!("stdio,id=console{}", log.unwrap_or_default()),
    };
    let console =
        ["-display", "none", "-monitor", "none", "-chardev", &chardev, "-serial", "chardev:console"];
    let gdb: &[&str] = if invocation.gdb { &["-s", "-S"] } else { &[] };
    args.extend(disk_args(&invocation.disks));
    // No semihosting, ever: QEMU would serve it to guests at EL1 too (host files, host
    // commands, QEMU's exit). Sluice powers off through PSCI and prints its status.
    let tail = ["-no-reboot"];
    args.extend(tail.iter().chain(&console).chain(invocation.clock.args()).chain(gdb).map(OsString::from));
    args
}

/// QEMU's arguments giving the machine `disks`: each a raw `-drive` (read-only if
/// asked) behind a `virtio-blk-device` with its ID, on modern virtio-mmio (which
/// only Sluice sees: its guests see the transports Sluice emulates).
fn disk_args(disks: &[MachineDisk]) -> Vec<OsString> {
    if disks.is_empty() {
        return Vec::new();
    }
    let mut args: Vec<OsString> = ["-global", "virtio-mmio.force-legacy=false"].map(OsString::from).into();
    for (n, disk) in disks.iter().enumerate() {
        // QEMU's option syntax doubles a comma inside a value.
        let file = disk.path.display().to_string().replace(',', ",,");
        let read_only = if disk.read_only { ",readonly=on" } else { "" };
        args.push("-drive".into());
        args.push(format!("file={file},if=none,format=raw,id=disk{n}{read_only}").into());
        args.push("-device".into());
        args.push(format!("virtio-blk-device,drive=disk{n},serial={}", disk.id).into());
    }
    args
}

/// The terminal's settings, saved while QEMU runs on it and put back when dropped.
///
/// QEMU's stdio chardev sets the terminal raw (no echo, no line editing, no signals
/// with `signal=off`) and restores it when it exits normally; this guard restores it
/// also when QEMU was killed or crashed.
pub struct TerminalGuard {
    /// `stty -g`'s output, if stdin is a terminal.
    saved: Option<String>,
}

impl TerminalGuard {
    /// Saves the settings of the terminal on stdin, if it is one.
    pub fn save() -> Self {
        let saved = std::io::stdin().is_terminal().then(|| stty(&["-g"])).flatten();
        Self { saved }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = stty(&[saved]);
        }
    }
}

/// Runs `stty` on the terminal on stdin; its output, if it succeeded.
fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// How to attach gdb to a QEMU started with `gdb` set.
pub fn gdb_hint(elf: &std::path::Path) -> String {
    format!(
        "QEMU waits for gdb on port {GDB_PORT}; attach with:\n  gdb-multiarch {} -ex 'target remote :{GDB_PORT}'",
        elf.display()
    )
}

/// The whole command line, for showing to people.
pub fn display(args: &[OsString]) -> String {
    std::iter::once(QEMU.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::GIB;

    fn invocation(console: Console, gdb: bool) -> Invocation {
        Invocation {
            machine: Machine { cpus: 2, memory: GIB, mte: false },
            hypervisor: "target/sluice/sluice.bin".into(),
            bundle: "target/sluice/bundles/hello.dtb".into(),
            console,
            console_log: None,
            clock: Clock::Wall,
            gdb,
            disks: Vec::new(),
        }
    }

    fn line(invocation: &Invocation) -> String {
        display(&args(invocation))
    }

    #[test]
    fn file_backed_disks_become_the_machines_devices() {
        let mut run = invocation(Console::Captured, false);
        run.disks = vec![
            MachineDisk { path: "disks/root,1.img".into(), id: "sluice-0-0".into(), read_only: false },
            MachineDisk { path: "/data/ro.img".into(), id: "sluice-1-2".into(), read_only: true },
        ];
        let line = line(&run);
        assert!(
            line.contains(
                "-global virtio-mmio.force-legacy=false \
                 -drive file=disks/root,,1.img,if=none,format=raw,id=disk0 \
                 -device virtio-blk-device,drive=disk0,serial=sluice-0-0 \
                 -drive file=/data/ro.img,if=none,format=raw,id=disk1,readonly=on \
                 -device virtio-blk-device,drive=disk1,serial=sluice-1-2"
            ),
            "{line}"
        );
        assert!(!line.contains("semihosting"));
    }

    #[test]
    fn interactive_command_line() {
        let mut interactive = invocation(Console::Interactive, false);
        interactive.console_log = Some("target/sluice/console,1.log".into());
        assert_eq!(
            line(&interactive),
            "qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 1024M \
             -kernel target/sluice/sluice.bin -initrd target/sluice/bundles/hello.dtb -no-reboot \
             -display none -monitor none \
             -chardev stdio,id=console,signal=off,logfile=target/sluice/console,,1.log,logappend=off \
             -serial chardev:console"
        );
    }

    #[test]
    fn captured_command_line() {
        assert!(line(&invocation(Console::Captured, false)).ends_with(
            "-no-reboot -display none -monitor none -chardev stdio,id=console -serial chardev:console"
        ));
    }

    #[test]
    fn tag_storage_goes_on_the_machine() {
        let mut tagged = invocation(Console::Captured, false);
        tagged.machine.mte = true;
        assert!(line(&tagged).contains("-machine virt,virtualization=on,gic-version=3,mte=on -cpu max"));
        assert!(line(&invocation(Console::Captured, false))
            .contains("-machine virt,virtualization=on,gic-version=3 -cpu"));
    }

    #[test]
    fn icount_goes_on_the_command_line() {
        let mut icount = invocation(Console::Captured, false);
        icount.clock = Clock::Icount;
        assert!(line(&icount).ends_with("-serial chardev:console -icount shift=0"));
        assert_eq!(Clock::parse("icount"), Some(Clock::Icount));
        assert_eq!(Clock::parse("wall"), Some(Clock::Wall));
        assert_eq!(Clock::parse("real"), None);
    }

    #[test]
    fn no_command_line_gives_a_guest_a_way_out() {
        // Semihosting would hand guests host files, host commands and QEMU's exit.
        for console in [Console::Interactive, Console::Captured] {
            for gdb in [false, true] {
                for clock in [Clock::Wall, Clock::Icount] {
                    let mut invocation = invocation(console, gdb);
                    invocation.clock = clock;
                    let line = line(&invocation);
                    assert!(!line.contains("semihosting"), "{line}");
                    assert!(line.contains("-monitor none"), "{line}");
                }
            }
        }
    }

    #[test]
    fn nothing_takes_the_escape_key_before_the_hypervisor() {
        for console in [Console::Interactive, Console::Captured] {
            let line = line(&invocation(console, false));
            assert!(!line.contains("-nographic"), "{line}");
            assert!(line.contains("-monitor none"), "{line}");
            assert!(!line.contains("mux=on"), "{line}");
        }
    }

    #[test]
    fn the_terminal_guard_never_fails() {
        // Under `cargo test` stdin may or may not be a terminal; either way the guard
        // saves and restores without failing.
        drop(TerminalGuard::save());
    }

    #[test]
    fn gdb_waits_for_the_debugger() {
        assert!(line(&invocation(Console::Interactive, true)).ends_with("-serial chardev:console -s -S"));
        assert!(!line(&invocation(Console::Interactive, false)).contains(" -S"));
        let hint = gdb_hint(std::path::Path::new("target/sluice/sluice.elf"));
        assert!(hint.ends_with("gdb-multiarch target/sluice/sluice.elf -ex 'target remote :1234'"));
    }
}
