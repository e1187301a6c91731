//! Host tools the scenarios and the guest kit need: finds them, and installs the
//! missing ones with apt-get where that is allowed.

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

/// Directories searched after PATH: a person's PATH often lacks the sbin ones, where
/// Debian puts `mkfs.ext4`.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// Finds `program` on PATH or in the sbin directories.
pub fn find_tool(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(SBIN_DIRS.iter().map(PathBuf::from));
    find_in(program, &std::env::join_paths(dirs).unwrap_or(path))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// A program the tools run, and the Debian package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program's file name.
    pub program: &'static str,
    /// The Debian/Ubuntu package that installs it.
    pub package: &'static str,
}

/// `qemu-system-aarch64`.
pub const QEMU_TOOL: Tool = Tool { program: QEMU, package: QEMU_PACKAGE };

/// The packages to install for the tools that are missing, each once, in order.
pub fn missing_packages(tools: &[Tool], found: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for tool in tools.iter().filter(|tool| !found(tool.program)) {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    packages
}

/// Makes sure every one of `tools` is on PATH (or in an sbin directory), installing
/// the missing ones with one apt-get as root.
///
/// # Errors
///
/// A tool is missing and cannot be installed here; the message says what to run.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let packages = missing_packages(tools, |program| find_tool(program).is_some());
    if packages.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> =
        tools.iter().filter(|t| find_tool(t.program).is_none()).map(|t| t.program).collect();
    let (missing, packages) = (missing.join(", "), packages.join(" "));
    match plan(false, is_root(), find("apt-get").is_some()) {
        Plan::Nothing => Ok(()),
        Plan::AskUser => bail!("missing {missing}; install with:\n  sudo apt-get install {packages}"),
        Plan::AptInstall => {
            eprintln!("xtask: missing {missing}; installing {packages} with apt-get");
            cmd::run(Command::new("apt-get").arg("update"))?;
            cmd::run(
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y"])
                    .args(packages.split(' ')),
            )?;
            let still: Vec<&str> =
                tools.iter().filter(|t| find_tool(t.program).is_none()).map(|t| t.program).collect();
            if !still.is_empty() {
                bail!("still missing after installing {packages}: {}", still.join(", "));
            }
            Ok(())
        }
    }
}

/// Makes sure `qemu-system-aarch64` is on PATH, installing it with apt-get as root.
///
/// # Errors
///
/// QEMU is missing and cannot be installed here; the message says what to run.
pub fn ensure_qemu() -> Result<()> {
    ensure(&[QEMU_TOOL])
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
    fn missing_packages_are_named_once_in_order() {
        let tools = [
            Tool { program: "mkfs.ext4", package: "e2fsprogs" },
            Tool { program: "qemu-system-aarch64", package: "qemu-system-arm" },
            Tool { program: "e2fsck", package: "e2fsprogs" },
            Tool { program: "cpio", package: "cpio" },
        ];
        assert_eq!(missing_packages(&tools, |_| true), Vec::<&str>::new());
        assert_eq!(missing_packages(&tools, |p| p == "cpio"), ["e2fsprogs", "qemu-system-arm"]);
        assert_eq!(missing_packages(&tools, |_| false), ["e2fsprogs", "qemu-system-arm", "cpio"]);
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
