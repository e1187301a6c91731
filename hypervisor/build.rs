//! Sets `cfg(bare_metal)` and the linker script for the EL2 image (see `platform::build`).

fn main() {
    platform::build::configure(platform::build::Image::Hypervisor);
}
