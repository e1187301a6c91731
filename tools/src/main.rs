//! `cargo xtask`: placeholder until the tools land.
fn main() {}
