//! Builds the hypervisor and the test guests, and turns their ELFs into raw images.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::workspace::Workspace;

/// The hypervisor's package.
pub const HYPERVISOR_PACKAGE: &str = "hypervisor";
/// The hypervisor's bin target.
pub const HYPERVISOR_BIN: &str = "sluice";
/// The hypervisor's target: no FP/SIMD at EL2.
pub const HYPERVISOR_TARGET: &str = "aarch64-unknown-none-softfloat";
/// The test guests' package.
pub const GUESTS_PACKAGE: &str = "test-guests";
/// The test guests' target.
pub const GUESTS_TARGET: &str = "aarch64-unknown-none";

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The hypervisor's raw image.
    pub hypervisor_bin: PathBuf,
    /// The hypervisor's ELF.
    pub hypervisor_elf: PathBuf,
}

/// `cargo build` arguments for one package in release mode for `target`.
pub fn cargo_build_args(package: &str, bin: Option<&str>, target: &str) -> Vec<String> {
    let mut args = vec!["build".to_owned(), "-p".to_owned(), package.to_owned()];
    if let Some(bin) = bin {
        args.extend(["--bin".to_owned(), bin.to_owned()]);
    }
    args.extend(["--release", "--target", target].map(str::to_owned));
    args
}

/// Where cargo puts the release ELF of `bin` built for `target`.
pub fn elf_path(target_dir: &Path, target: &str, bin: &str) -> PathBuf {
    target_dir.join(target).join("release").join(bin)
}

/// The host triple from `rustc -vV` output.
pub fn host_triple(rustc_version: &str) -> Option<&str> {
    rustc_version.lines().find_map(|line| line.strip_prefix("host: ")).map(str::trim)
}

/// Where the llvm-tools component keeps `llvm-objcopy`.
pub fn objcopy_path(sysroot: &Path, host: &str) -> PathBuf {
    sysroot.join("lib/rustlib").join(host).join("bin").join("llvm-objcopy")
}

/// Whether the standard library for `target` is installed in `sysroot`.
pub fn target_installed(sysroot: &Path, target: &str) -> bool {
    sysroot.join("lib/rustlib").join(target).join("lib").is_dir()
}

/// The toolchain's sysroot (as seen from the workspace root, so rust-toolchain.toml applies).
fn sysroot(ws: &Workspace) -> Result<PathBuf> {
    let text = cmd::output(ws.command("rustc").args(["--print", "sysroot"]))?;
    Ok(PathBuf::from(text.trim()))
}

/// Finds `llvm-objcopy`, installing the llvm-tools component if it is missing.
///
/// # Errors
///
/// rustc cannot be asked, or llvm-objcopy is still missing after `rustup component add`.
pub fn find_objcopy(ws: &Workspace) -> Result<PathBuf> {
    let version = cmd::output(ws.command("rustc").arg("-vV"))?;
    let host = host_triple(&version).context("`rustc -vV` does not say the host triple")?;
    let objcopy = objcopy_path(&sysroot(ws)?, host);
    if objcopy.is_file() {
        return Ok(objcopy);
    }
    eprintln!("xtask: {} is missing; installing the llvm-tools component", objcopy.display());
    cmd::run(ws.command("rustup").args(["component", "add", "llvm-tools"]))?;
    if !objcopy.is_file() {
        bail!("{} is still missing after `rustup component add llvm-tools`", objcopy.display());
    }
    Ok(objcopy)
}

/// Runs `cargo build` for `target`, first adding the target with rustup if the
/// toolchain lacks it (rust-toolchain.toml lists it, but an existing toolchain may
/// predate that list).
fn cargo_build(ws: &Workspace, args: &[String], target: &str) -> Result<()> {
    let sysroot = sysroot(ws)?;
    if !target_installed(&sysroot, target) {
        eprintln!("xtask: the {target} target is missing; installing it with rustup");
        cmd::run(ws.command("rustup").args(["target", "add", target]))
            .with_context(|| format!("could not install {target}: run `rustup target add {target}`"))?;
    }
    cmd::run(ws.cargo().args(args))
}

/// `llvm-objcopy -O binary ELF BIN`.
fn objcopy(objcopy: &Path, elf: &Path, bin: &Path) -> Result<()> {
    let mut command = Command::new(objcopy);
    command.args(["-O", "binary"]).arg(elf).arg(bin);
    cmd::run(&mut command)
}

/// Copies `from` to `to`, creating `to`'s directory.
fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Builds the hypervisor: `target/sluice/sluice.bin` and `sluice.elf`.
///
/// # Errors
///
/// The build, the copy or objcopy fails.
pub fn build_hypervisor(ws: &Workspace, objcopy_tool: &Path) -> Result<(PathBuf, PathBuf)> {
    let args = cargo_build_args(HYPERVISOR_PACKAGE, Some(HYPERVISOR_BIN), HYPERVISOR_TARGET);
    cargo_build(ws, &args, HYPERVISOR_TARGET).context("cannot build the hypervisor")?;
    let elf = elf_path(ws.target_dir(), HYPERVISOR_TARGET, HYPERVISOR_BIN);
    let (bin, elf_copy) = (ws.hypervisor_bin(), ws.hypervisor_elf());
    copy(&elf, &elf_copy)?;
    objcopy(objcopy_tool, &elf, &bin)?;
    Ok((bin, elf_copy))
}

/// Builds every bin of the test-guests package: `target/sluice/guests/NAME.bin`.
/// Returns each guest's name and image.
///
/// # Errors
///
/// The build or objcopy fails.
pub fn build_guests(ws: &Workspace, objcopy_tool: &Path) -> Result<Vec<(String, PathBuf)>> {
    let args = cargo_build_args(GUESTS_PACKAGE, None, GUESTS_TARGET);
    cargo_build(ws, &args, GUESTS_TARGET).context("cannot build the test guests")?;
    let dir = ws.guests_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut guests = Vec::new();
    for name in ws.metadata.bins(GUESTS_PACKAGE)? {
        let bin = dir.join(format!("{name}.bin"));
        objcopy(objcopy_tool, &elf_path(ws.target_dir(), GUESTS_TARGET, &name), &bin)?;
        guests.push((name, bin));
    }
    if guests.is_empty() {
        eprintln!("xtask: note: the {GUESTS_PACKAGE} package has no bin targets yet");
    }
    Ok(guests)
}

/// Builds the hypervisor and the test guests.
///
/// # Errors
///
/// Any build step fails.
pub fn build_all(ws: &Workspace) -> Result<Built> {
    let objcopy_tool = find_objcopy(ws)?;
    let (hypervisor_bin, hypervisor_elf) = build_hypervisor(ws, &objcopy_tool)?;
    let guests = build_guests(ws, &objcopy_tool)?;
    eprintln!("xtask: built {}", ws.relative(&hypervisor_bin).display());
    for (_, bin) in &guests {
        eprintln!("xtask: built {}", ws.relative(bin).display());
    }
    Ok(Built { hypervisor_bin, hypervisor_elf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_commands() {
        assert_eq!(
            cargo_build_args(HYPERVISOR_PACKAGE, Some(HYPERVISOR_BIN), HYPERVISOR_TARGET).join(" "),
            "build -p hypervisor --bin sluice --release --target aarch64-unknown-none-softfloat"
        );
        assert_eq!(
            cargo_build_args(GUESTS_PACKAGE, None, GUESTS_TARGET).join(" "),
            "build -p test-guests --release --target aarch64-unknown-none"
        );
    }

    #[test]
    fn elf_and_objcopy_paths() {
        assert_eq!(
            elf_path(Path::new("/w/target"), HYPERVISOR_TARGET, "sluice"),
            Path::new("/w/target/aarch64-unknown-none-softfloat/release/sluice")
        );
        assert_eq!(
            objcopy_path(Path::new("/sys"), "x86_64-unknown-linux-gnu"),
            Path::new("/sys/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy")
        );
    }

    #[test]
    fn host_triple_from_rustc() {
        let text = "rustc 1.95.0\nbinary: rustc\nhost: aarch64-apple-darwin\nrelease: 1.95.0\n";
        assert_eq!(host_triple(text), Some("aarch64-apple-darwin"));
        assert_eq!(host_triple("rustc 1.0"), None);
    }

    #[test]
    fn target_installed_looks_in_the_sysroot() {
        let dir = crate::testutil::TempDir::new("sysroot");
        dir.write("lib/rustlib/aarch64-unknown-none/lib/libcore.rlib", b"");
        assert!(target_installed(dir.path(), "aarch64-unknown-none"));
        assert!(!target_installed(dir.path(), "aarch64-unknown-none-softfloat"));
    }
}
