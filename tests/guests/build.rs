//! Sets `cfg(bare_metal)` and the guests' linker script (see `platform::build`).

fn main() {
    platform::build::configure(platform::build::Image::Guest);
}
