//! Reference runs: a scenario's guest on plain QEMU with QEMU's own devices.
//!
//! A driver bug and a device-model bug look alike from inside one run; running the
//! same guest against QEMU's virtio-mmio devices (modern with
//! `-global virtio-mmio.force-legacy=false`, or legacy) tells them apart. The guest
//! gets what its VM would get under Sluice: its CPUs, RAM, image, initrd,
//! bootargs, disks (copied to scratch files, so the run can't change the originals)
//! and a virtio-console sharing the serial port.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::devices::{DeviceKind, Disk, Medium, Mode};
use crate::qemu::{Clock, Console};
use crate::units::MIB;
use crate::validate::Vm;

/// The files a reference run boots from, written under `dir`.
pub struct Files {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    disks: Vec<Option<PathBuf>>,
}

/// Writes the VM's image, initrd and disks as files under `dir`.
///
/// # Errors
///
/// A file cannot be written.
pub fn write_files(vm: &Vm, dir: &Path) -> Result<Files> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let kernel = write("kernel.bin", &vm.kernel)?;
    let initrd = vm.initrd.as_deref().map(|bytes| write("initrd.img", bytes)).transpose()?;
    let mut disks = Vec::new();
    for (slot, device) in vm.devices.iter().enumerate() {
        disks.push(match &device.kind {
            DeviceKind::Blk(Disk { medium: Medium::Ram { size, image }, .. }) => {
                let mut bytes = image.clone().unwrap_or_default();
                bytes.resize(*size as usize, 0);
                Some(write(&format!("disk{slot}.img"), &bytes)?)
            }
            DeviceKind::Blk(Disk { medium: Medium::File { file, .. }, .. }) => {
                // A copy, so the reference run leaves the VM's own disk as it was.
                let copy = dir.join(format!("disk{slot}.img"));
                crate::sparse::copy(&file.path, &copy)?;
                Some(copy)
            }
            DeviceKind::Console | DeviceKind::Channel(_) => None,
        });
    }
    Ok(Files { kernel, initrd, disks })
}

/// QEMU's arguments for `vm` on plain QEMU virt (EL1, no Sluice; with tag storage
/// when `mte`) in `mode`, with
/// the serial port and any virtio-console on QEMU's stdin and stdout (multiplexed:
/// QEMU's Ctrl-A c switches between them). On an interactive `console`, Ctrl-C goes
/// to the guest. Time is kept by `clock`.
pub fn args(vm: &Vm, files: &Files, mode: Mode, console: Console, clock: Clock, mte: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let smp = vm.cpus.len().to_string();
    let memory = format!("{}M", vm.memory / MIB);
    let machine = crate::qemu::machine_option("virt,gic-version=3", mte);
    push(&["-machine", &machine, "-cpu", "max", "-smp", &smp, "-m", &memory]);
    push(&["-display", "none", "-monitor", "none", "-no-reboot"]);
    push(clock.args());
    let chardev = match console {
        Console::Interactive => "stdio,id=term,mux=on,signal=off",
        Console::Captured => "stdio,id=term,mux=on",
    };
    push(&["-chardev", chardev, "-serial", "chardev:term"]);
    if mode == Mode::Modern {
        push(&["-global", "virtio-mmio.force-legacy=false"]);
    }
    for (slot, device) in vm.devices.iter().enumerate() {
        match (&device.kind, &files.disks[slot]) {
            (DeviceKind::Blk(disk), Some(path)) => {
                let mut drive = format!("if=none,id=disk{slot},format=raw,file={}", path.display());
                if disk.read_only {
                    drive += ",readonly=on";
                }
                let mut dev = format!("virtio-blk-device,drive=disk{slot}");
                if let Some(serial) = &disk.serial {
                    dev += &format!(",serial={serial}");
                }
                push(&["-drive", &drive, "-device", &dev]);
            }
            _ => push(&["-device", "virtio-serial-device", "-device", "virtconsole,chardev=term"]),
        }
    }
    args.push("-kernel".into());
    args.push(files.kernel.clone().into());
    if let Some(initrd) = &files.initrd {
        args.push("-initrd".into());
        args.push(initrd.clone().into());
    }
    if let Some(bootargs) = &vm.bootargs {
        args.push("-append".into());
        args.push(bootargs.into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{Device, Disk};
    use crate::layout;
    use platform::qemu_virt::RAM_BASE;

    fn vm() -> Vm {
        let kernel = vec![1; 100];
        Vm {
            name: "v".into(),
            cpus: platform::bundle::spec::CpuList::new(&[0, 1]).unwrap(),
            memory: 64 * MIB,
            host_base: None,
            layout: layout::place(64 * MIB, &kernel, Some(RAM_BASE), None).unwrap(),
            kernel,
            initrd: None,
            bootargs: Some("a=1".into()),
            devices: vec![
                Device {
                    kind: DeviceKind::Blk(Disk {
                        medium: Medium::Ram { size: 4096, image: None },
                        read_only: true,
                        serial: Some("d0".into()),
                    }),
                    legacy: false,
                },
                Device { kind: DeviceKind::Console, legacy: false },
            ],
        }
    }

    #[test]
    fn modern_command_line_has_the_devices() {
        let files = Files { kernel: "/k".into(), initrd: None, disks: vec![Some("/d0".into()), None] };
        let line: Vec<String> = args(&vm(), &files, Mode::Modern, Console::Captured, Clock::Wall, false)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = line.join(" ");
        assert!(line.contains("-machine virt,gic-version=3 -cpu max -smp 2 -m 64M"), "{line}");
        assert!(line.contains("-global virtio-mmio.force-legacy=false"), "{line}");
        assert!(line.contains("-drive if=none,id=disk0,format=raw,file=/d0,readonly=on"), "{line}");
        assert!(line.contains("-device virtio-blk-device,drive=disk0,serial=d0"), "{line}");
        assert!(line.contains("-device virtconsole,chardev=term"), "{line}");
        assert!(line.ends_with("-kernel /k -append a=1"), "{line}");
        let tagged = args(&vm(), &files, Mode::Modern, Console::Captured, Clock::Wall, true);
        assert!(tagged.iter().any(|a| a == "virt,gic-version=3,mte=on"));
        let legacy = args(&vm(), &files, Mode::Legacy, Console::Captured, Clock::Wall, false);
        let interactive = args(&vm(), &files, Mode::Legacy, Console::Interactive, Clock::Wall, false);
        assert!(interactive.iter().any(|a| a == "stdio,id=term,mux=on,signal=off"));
        assert!(!legacy.iter().any(|a| a == "-global"));
    }

    #[test]
    fn reference_runs_give_the_guest_no_way_out_and_keep_the_clock() {
        let files = Files { kernel: "/k".into(), initrd: None, disks: vec![Some("/d0".into()), None] };
        for mode in [Mode::Modern, Mode::Legacy] {
            for console in [Console::Interactive, Console::Captured] {
                for clock in [Clock::Wall, Clock::Icount] {
                    let line: Vec<String> = args(&vm(), &files, mode, console, clock, false)
                        .iter()
                        .map(|a| a.to_string_lossy().into())
                        .collect();
                    let line = line.join(" ");
                    assert!(!line.contains("semihosting"), "{line}");
                    assert!(line.contains("-monitor none"), "{line}");
                    assert_eq!(line.contains("-icount shift=0"), clock == Clock::Icount, "{line}");
                }
            }
        }
    }
}
