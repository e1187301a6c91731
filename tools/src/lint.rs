//! `cargo xtask lint`: rustfmt and clippy, for the host and for the bare-metal crates.

use anyhow::{bail, Result};

use crate::build::{GUESTS_PACKAGE, GUESTS_TARGET, HYPERVISOR_PACKAGE, HYPERVISOR_TARGET};
use crate::cmd;
use crate::workspace::Workspace;

/// The fuzz crate's manifest, relative to the workspace.
const FUZZ_MANIFEST: &str = "fuzz/Cargo.toml";

/// The cargo argument lists `lint` runs, in order.
pub fn steps() -> Vec<Vec<&'static str>> {
    vec![
        vec!["fmt", "--all", "--check"],
        vec!["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        vec!["clippy", "-p", HYPERVISOR_PACKAGE, "--target", HYPERVISOR_TARGET, "--", "-D", "warnings"],
        vec!["clippy", "-p", GUESTS_PACKAGE, "--target", GUESTS_TARGET, "--", "-D", "warnings"],
        // The fuzz crate is a workspace of its own; on stable it builds without
        // the fuzzer's instrumentation, which is enough to catch a broken target.
        vec!["fmt", "--manifest-path", FUZZ_MANIFEST, "--check"],
        vec!["clippy", "--manifest-path", FUZZ_MANIFEST, "--all-targets", "--", "-D", "warnings"],
    ]
}

/// Runs every step, even after one fails, and fails if any did.
///
/// # Errors
///
/// One or more steps failed; the message lists them.
pub fn lint(ws: &Workspace) -> Result<()> {
    let mut failed = Vec::new();
    for step in steps() {
        if let Err(e) = cmd::run(ws.cargo().args(&step)) {
            eprintln!("xtask: {e:#}");
            failed.push(format!("cargo {}", step.join(" ")));
        }
    }
    if !failed.is_empty() {
        bail!("lint failed:\n  {}", failed.join("\n  "));
    }
    eprintln!("xtask: lint clean");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_covers_host_bare_metal_and_fuzz() {
        let steps: Vec<String> = steps().iter().map(|s| s.join(" ")).collect();
        assert_eq!(
            steps,
            [
                "fmt --all --check",
                "clippy --workspace --all-targets -- -D warnings",
                "clippy -p hypervisor --target aarch64-unknown-none-softfloat -- -D warnings",
                "clippy -p test-guests --target aarch64-unknown-none -- -D warnings",
                "fmt --manifest-path fuzz/Cargo.toml --check",
                "clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings",
            ]
        );
    }
}
