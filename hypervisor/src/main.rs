//! The Sluice EL2 image.
//!
//! The entry point is `_start` in `arch::aarch64::boot`; this file only supplies the
//! panic handler for the bare-metal build, and a host stub so that `cargo test` at
//! the workspace root builds every crate.
#![cfg_attr(bare_metal, no_std, no_main)]

#[cfg(bare_metal)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hypervisor::run::fatal(format_args!("panicked: {info}"))
}

// The library holds everything; make sure it is linked in.
#[cfg(bare_metal)]
use hypervisor as _;

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("sluice runs at EL2 on AArch64: build and run it with `cargo xtask run`");
}
