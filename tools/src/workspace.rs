//! Where things are: the workspace root, its target directory, and the files the tools make.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmd;

/// What `cargo metadata --no-deps --format-version 1` says (the parts the tools use).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The workspace's root directory.
    pub workspace_root: PathBuf,
    /// The target directory (honours `CARGO_TARGET_DIR` and cargo config).
    pub target_directory: PathBuf,
    /// The workspace members.
    pub packages: Vec<Package>,
}

/// One package of the workspace.
#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its targets (lib, bins, tests, ...).
    pub targets: Vec<Target>,
}

/// One target of a package.
#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its kinds (`bin`, `lib`, ...).
    pub kind: Vec<String>,
}

impl Metadata {
    /// Parses `cargo metadata` output.
    ///
    /// # Errors
    ///
    /// The JSON does not have the expected shape.
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json).context("cannot understand `cargo metadata` output")
    }

    /// The names of `package`'s bin targets, sorted.
    ///
    /// # Errors
    ///
    /// The workspace has no such package.
    pub fn bins(&self, package: &str) -> Result<Vec<String>> {
        let package = self
            .packages
            .iter()
            .find(|p| p.name == package)
            .with_context(|| format!("the workspace has no package {package:?}"))?;
        let mut bins: Vec<String> = package
            .targets
            .iter()
            .filter(|t| t.kind.iter().any(|k| k == "bin"))
            .map(|t| t.name.clone())
            .collect();
        bins.sort();
        Ok(bins)
    }
}

/// The workspace the tools work on.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// What cargo says about it.
    pub metadata: Metadata,
}

impl Workspace {
    /// Asks cargo about the workspace this xtask belongs to.
    ///
    /// # Errors
    ///
    /// `cargo metadata` fails or prints something unexpected.
    pub fn discover() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(cargo_program());
        command.args(["metadata", "--no-deps", "--format-version", "1"]).current_dir(manifest_dir);
        let json = cmd::output(&mut command)?;
        Ok(Self { metadata: Metadata::parse(&json)? })
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.metadata.workspace_root
    }

    /// The target directory.
    pub fn target_dir(&self) -> &Path {
        &self.metadata.target_directory
    }

    /// `cargo` with the workspace root as its working directory.
    pub fn cargo(&self) -> Command {
        let mut command = Command::new(cargo_program());
        command.current_dir(self.root());
        command
    }

    /// A command run in the workspace root (so rust-toolchain.toml applies).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(self.root());
        command
    }

    /// Everything the tools produce: `<target>/sluice`.
    pub fn out_dir(&self) -> PathBuf {
        self.target_dir().join("sluice")
    }

    /// The hypervisor's raw image, QEMU's `-kernel`.
    pub fn hypervisor_bin(&self) -> PathBuf {
        self.out_dir().join("sluice.bin")
    }

    /// The hypervisor's ELF, for gdb.
    pub fn hypervisor_elf(&self) -> PathBuf {
        self.out_dir().join("sluice.elf")
    }

    /// Where `guest:NAME` images are: `<out>/guests/NAME.bin`.
    pub fn guests_dir(&self) -> PathBuf {
        self.out_dir().join("guests")
    }

    /// The bundle file of the scenario at `config`: `<out>/bundles/<stem>.dtb`.
    pub fn bundle_path(&self, config: &Path) -> PathBuf {
        self.out_dir().join("bundles").join(format!("{}.dtb", scenario_name(config)))
    }

    /// The scenario directory, `tests/scenarios`.
    pub fn scenarios_dir(&self) -> PathBuf {
        self.root().join("tests").join("scenarios")
    }

    /// `path` relative to the workspace root when it is inside it, for shorter output.
    pub fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(self.root()).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The cargo that runs us (`$CARGO`), or `cargo` from PATH.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A scenario's name: its file name without `.toml`.
pub fn scenario_name(config: &Path) -> String {
    config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
        "packages": [
            {"name": "hypervisor", "targets": [
                {"name": "hypervisor", "kind": ["lib"], "src_path": "x"},
                {"name": "sluice", "kind": ["bin"], "src_path": "y"}]},
            {"name": "test-guests", "targets": [
                {"name": "virtio_blk", "kind": ["bin"]},
                {"name": "hello", "kind": ["bin"]},
                {"name": "test_guests", "kind": ["lib"]}]}
        ],
        "workspace_root": "/w",
        "target_directory": "/w/target",
        "version": 1
    }"#;

    fn workspace() -> Workspace {
        Workspace { metadata: Metadata::parse(JSON).unwrap() }
    }

    #[test]
    fn metadata_gives_bins_sorted() {
        let metadata = Metadata::parse(JSON).unwrap();
        assert_eq!(metadata.bins("test-guests").unwrap(), ["hello", "virtio_blk"]);
        assert_eq!(metadata.bins("hypervisor").unwrap(), ["sluice"]);
        assert!(metadata.bins("nope").unwrap_err().to_string().contains("\"nope\""));
    }

    #[test]
    fn output_paths_live_under_target_sluice() {
        let ws = workspace();
        assert_eq!(ws.hypervisor_bin(), Path::new("/w/target/sluice/sluice.bin"));
        assert_eq!(ws.hypervisor_elf(), Path::new("/w/target/sluice/sluice.elf"));
        assert_eq!(ws.guests_dir(), Path::new("/w/target/sluice/guests"));
        assert_eq!(
            ws.bundle_path(Path::new("tests/scenarios/hello.toml")),
            Path::new("/w/target/sluice/bundles/hello.dtb")
        );
        assert_eq!(ws.scenarios_dir(), Path::new("/w/tests/scenarios"));
        assert_eq!(ws.relative(Path::new("/w/target/x")), Path::new("target/x"));
        assert_eq!(ws.relative(Path::new("/elsewhere")), Path::new("/elsewhere"));
    }

    #[test]
    fn discover_finds_this_workspace() {
        let ws = Workspace::discover().unwrap();
        assert!(ws.root().join("platform").is_dir());
        assert!(ws.metadata.packages.iter().any(|p| p.name == "xtask"));
    }
}
