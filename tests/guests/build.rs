//! Sets the one switch for bare-metal-only code (`cfg(bare_metal)`) and, for that
//! build, links the guest images with the guests' linker script.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bare_metal)");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "aarch64" && os == "none" {
        println!("cargo::rustc-cfg=bare_metal");
        let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
        let script = manifest.join("../../platform/ld/guest.ld");
        println!("cargo::rerun-if-changed={}", script.display());
        println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    }
}
