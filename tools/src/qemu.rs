//! QEMU's command line for a scenario.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::units::MIB;
use crate::validate::Machine;

/// The QEMU program.
pub const QEMU: &str = "qemu-system-aarch64";
/// The board: QEMU virt with EL2 and a GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// The port `-s` opens for gdb.
pub const GDB_PORT: u16 = 1234;

/// How QEMU talks to the person or program running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// `cargo xtask run`: serial and monitor on the terminal (`-nographic`).
    Interactive,
    /// The test runner: serial on stdout, no monitor, no display.
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
    /// Wait for gdb on [`GDB_PORT`] before the first instruction (`-s -S`).
    pub gdb: bool,
}

/// QEMU's arguments (without the program name).
pub fn args(invocation: &Invocation) -> Vec<OsString> {
    let smp = invocation.machine.cpus.to_string();
    // Validation keeps machine memory a multiple of 2 MiB, so whole MiB are exact.
    let memory = format!("{}M", invocation.machine.memory / MIB);
    let head = [
        "-machine", MACHINE, "-cpu", "max", "-smp", &smp, "-m", &memory,
    ];
    let mut args: Vec<OsString> = head.iter().map(OsString::from).collect();
    args.push("-kernel".into());
    args.push(invocation.hypervisor.clone().into());
    args.push("-initrd".into());
    args.push(invocation.bundle.clone().into());
    let console: &[&str] = match invocation.console {
        Console::Interactive => &["-nographic"],
        Console::Captured => &["-display", "none", "-monitor", "none", "-serial", "stdio"],
    };
    let gdb: &[&str] = if invocation.gdb { &["-s", "-S"] } else { &[] };
    let tail = [
        "-semihosting-config",
        "enable=on,target=native",
        "-no-reboot",
    ];
    args.extend(tail.iter().chain(console).chain(gdb).map(OsString::from));
    args
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
            machine: Machine {
                cpus: 2,
                memory: GIB,
            },
            hypervisor: "target/sluice/sluice.bin".into(),
            bundle: "target/sluice/bundles/hello.dtb".into(),
            console,
            gdb,
        }
    }

    fn line(invocation: &Invocation) -> String {
        display(&args(invocation))
    }

    #[test]
    fn interactive_command_line() {
        assert_eq!(
            line(&invocation(Console::Interactive, false)),
            "qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3 -cpu max -smp 2 -m 1024M \
             -kernel target/sluice/sluice.bin -initrd target/sluice/bundles/hello.dtb \
             -semihosting-config enable=on,target=native -no-reboot -nographic"
        );
    }

    #[test]
    fn captured_command_line() {
        assert!(line(&invocation(Console::Captured, false))
            .ends_with("-no-reboot -display none -monitor none -serial stdio"));
    }

    #[test]
    fn gdb_waits_for_the_debugger() {
        assert!(line(&invocation(Console::Interactive, true)).ends_with("-nographic -s -S"));
        assert!(!line(&invocation(Console::Interactive, false)).contains(" -S"));
        let hint = gdb_hint(std::path::Path::new("target/sluice/sluice.elf"));
        assert!(hint.ends_with("gdb-multiarch target/sluice/sluice.elf -ex 'target remote :1234'"));
    }
}
