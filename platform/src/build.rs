//! For the build scripts of the bare-metal crates: the one switch for bare-metal-only
//! code, `cfg(bare_metal)`, and the board's linker scripts (in `platform/ld/`).

use std::env;
use std::path::Path;
use std::println;

/// Which image a crate's binaries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The hypervisor at EL2 (`ld/hypervisor.ld`).
    Hypervisor,
    /// A bare-metal guest for QEMU virt (`ld/guest.ld`).
    Guest,
}

/// Called from a build script: declares `cfg(bare_metal)`, and for an AArch64
/// `target_os = "none"` build sets it and links the crate's binaries with `image`'s
/// linker script.
pub fn configure(image: Image) {
    println!("cargo::rustc-check-cfg=cfg(bare_metal)");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "aarch64" && os == "none" {
        println!("cargo::rustc-cfg=bare_metal");
        let name = match image {
            Image::Hypervisor => "hypervisor.ld",
            Image::Guest => "guest.ld",
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ld").join(name);
        println!("cargo::rerun-if-changed={}", script.display());
        println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    }
}
