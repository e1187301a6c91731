//! The Sluice EL2 image. Placeholder until the boot path lands.
#![cfg_attr(bare_metal, no_std, no_main)]

#[cfg(not(bare_metal))]
fn main() {
    eprintln!("sluice runs at EL2 on AArch64: build and run it with `cargo xtask run`");
}
