//! `[[expect.disk]]`: what a VM's file-backed disk must hold once a scenario's runs
//! are over, checked on the host with e2fsprogs: the file system is clean
//! (`e2fsck -fn`), and files hold what the guest wrote (`debugfs -R "cat PATH"`).
//! Data a guest wrote and flushed must be in the file QEMU was given.

use std::path::Path;
use std::process::Command;

use crate::config::DiskCheckConfig;
use crate::devices::Device;

/// A checked `[[expect.disk]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCheck {
    /// The VM's index.
    pub vm: usize,
    /// Its slot.
    pub slot: usize,
    /// `e2fsck -fn` must find nothing.
    pub fsck: bool,
    /// `(path, text)` pairs.
    pub files: Vec<(String, String)>,
}

/// Checks the tables against the VMs: each names a VM and one of its file-backed
/// disks. `vms` are `(name, devices)`.
///
/// # Errors
///
/// One `field: reason` line for each table that is wrong.
pub fn check(configs: &[DiskCheckConfig], vms: &[(&str, &[Device])]) -> Result<Vec<DiskCheck>, Vec<String>> {
    let mut checks = Vec::new();
    let mut errors = Vec::new();
    for (k, config) in configs.iter().enumerate() {
        let Some(vm) = vms.iter().position(|(name, _)| *name == config.vm) else {
            errors.push(format!("expect.disk[{k}].vm: no VM is named {:?}", config.vm));
            continue;
        };
        let file_backed = vms[vm].1.get(config.slot).and_then(Device::machine_disk).is_some();
        if !file_backed {
            errors.push(format!(
                "expect.disk[{k}].slot: virtio[{}] of vm {:?} is not a file-backed disk",
                config.slot, config.vm
            ));
            continue;
        }
        if let Some(file) = config.files.iter().find(|f| !f.path.starts_with('/') || f.path.contains('"')) {
            errors.push(format!("expect.disk[{k}].files: {:?} is not an absolute path", file.path));
            continue;
        }
        let files = config.files.iter().map(|f| (f.path.clone(), f.text.clone())).collect();
        checks.push(DiskCheck { vm, slot: config.slot, fsck: config.fsck, files });
    }
    if errors.is_empty() {
        Ok(checks)
    } else {
        Err(errors)
    }
}

/// Runs `check` on the disk image `image`; returns one message per failure.
pub fn run(check: &DiskCheck, image: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let shown = image.display();
    if check.fsck {
        match Command::new("e2fsck").args(["-f", "-n"]).arg(image).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => failures.push(format!(
                "e2fsck -fn {shown} says the file system is not clean ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end()
            )),
            Err(e) => failures.push(format!("cannot run e2fsck: {e}")),
        }
    }
    for (path, text) in &check.files {
        let command = format!("cat \"{path}\"");
        match Command::new("debugfs").args(["-R", &command]).arg(image).output() {
            Ok(out) if out.status.success() => {
                let found = String::from_utf8_lossy(&out.stdout);
                let found = found.strip_suffix('\n').unwrap_or(&found);
                if found != text {
                    // debugfs says a file is missing on stderr, and exits 0.
                    let said = String::from_utf8_lossy(&out.stderr);
                    let said =
                        said.lines().filter(|l| !l.starts_with("debugfs ")).collect::<Vec<_>>().join("; ");
                    failures.push(format!("{path} on {shown} holds {found:?}, not {text:?} {said}"));
                }
            }
            Ok(out) => failures.push(format!(
                "debugfs cannot read {path} on {shown}: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )),
            Err(e) => failures.push(format!("cannot run debugfs: {e}")),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileCheckConfig;
    use crate::devices::{DeviceKind, Disk, Medium};
    use crate::regular_file::DiskFile;

    fn devices() -> Vec<Device> {
        let file = DiskFile { path: "/d.img".into(), size: 4096 };
        let disk =
            Disk { medium: Medium::File { file, id: "sluice-0-0".into() }, read_only: false, serial: None };
        let ram = Disk { medium: Medium::Ram { size: 4096, image: None }, read_only: false, serial: None };
        vec![
            Device { kind: DeviceKind::Blk(disk), legacy: false },
            Device { kind: DeviceKind::Blk(ram), legacy: false },
        ]
    }

    fn config(vm: &str, slot: usize, path: &str) -> DiskCheckConfig {
        let files = vec![FileCheckConfig { path: path.into(), text: "hi".into() }];
        DiskCheckConfig { vm: vm.into(), slot, fsck: true, files }
    }

    #[test]
    fn a_check_names_a_file_backed_disk() {
        let devices = devices();
        let vms = [("linux", devices.as_slice())];
        let checks = check(&[config("linux", 0, "/a.txt")], &vms).unwrap();
        let expected = DiskCheck { vm: 0, slot: 0, fsck: true, files: vec![("/a.txt".into(), "hi".into())] };
        assert_eq!(checks, [expected]);
        let errors =
            check(&[config("bsd", 0, "/a"), config("linux", 1, "/a"), config("linux", 0, "a")], &vms)
                .unwrap_err();
        assert_eq!(
            errors,
            [
                "expect.disk[0].vm: no VM is named \"bsd\"",
                "expect.disk[1].slot: virtio[1] of vm \"linux\" is not a file-backed disk",
                "expect.disk[2].files: \"a\" is not an absolute path",
            ]
        );
    }
}
