//! Host tools the scenarios need: finds QEMU, and installs it where that is allowed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;
use crate::qemu::QEMU;

/// The Debian/Ubuntu package with `qemu-system-aarch64`.
pub const QEMU_PACKAGE: &str = "qemu-system-arm";

/// What to do about a missing program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// It is there.
    Nothing,
    /// We are root and have apt-get: install it.
    AptInstall,
    /// Tell the person what to run.
    AskUser,
}

/// Decides what to do, from what we found.
pub fn plan(found: bool, is_root: bool, has_apt: bool) -> Plan {
    match (found, is_root && has_apt) {
        (true, _) => Plan::Nothing,
        (false, true) => Plan::AptInstall,
        (false, false) => Plan::AskUser,
    }
}

/// Finds `program` in the directories of a `PATH`-style list.
pub fn find_in(program: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Finds `program` on this process's PATH.
pub fn find(program: &str) -> Option<PathBuf> {
    find_in(program, &std::env::var_os("PATH").unwrap_or_default())
}

fn is_root() -> bool {
    cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Makes sure `qemu-system-aarch64` is on PATH, installing it with apt-get as root.
///
/// # Errors
///
/// QEMU is missing and cannot be installed here; the message says what to run.
pub fn ensure_qemu() -> Result<()> {
    match plan(find(QEMU).is_some(), is_root(), find("apt-get").is_some()) {
        Plan::Nothing => Ok(()),
        Plan::AskUser => {
            bail!("{QEMU} is not on PATH; install it with:\n  sudo apt-get install {QEMU_PACKAGE}")
        }
        Plan::AptInstall => {
            eprintln!("xtask: {QEMU} is not on PATH; installing {QEMU_PACKAGE} with apt-get");
            cmd::run(Command::new("apt-get").arg("update"))?;
            cmd::run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
                "install",
                "-y",
                QEMU_PACKAGE,
            ]))?;
            if find(QEMU).is_none() {
                bail!("{QEMU} is still not on PATH after installing {QEMU_PACKAGE}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_installs_only_as_root_with_apt() {
        assert_eq!(plan(true, false, false), Plan::Nothing);
        assert_eq!(plan(true, true, true), Plan::Nothing);
        assert_eq!(plan(false, true, true), Plan::AptInstall);
        assert_eq!(plan(false, true, false), Plan::AskUser);
        assert_eq!(plan(false, false, true), Plan::AskUser);
    }

    #[test]
    fn find_in_wants_an_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testutil::TempDir::new("deps-path");
        let tool = dir.write("bin/tool", b"#!/bin/sh\n");
        dir.write("bin/data", b"");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = std::env::join_paths([dir.path().join("none"), dir.path().join("bin")]).unwrap();
        assert_eq!(find_in("tool", &path_var), Some(tool));
        assert_eq!(find_in("data", &path_var), None);
        assert_eq!(find_in("missing", &path_var), None);
    }
}
