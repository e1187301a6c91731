//! Where the guest image lies, from the linker script's symbols (`platform/ld/guest.ld`).

extern "C" {
    static _image_start: u8;
    static _image_end: u8;
}

/// Address of the image's first byte (its load address).
pub fn start() -> u64 {
    (&raw const _image_start) as u64
}

/// One past the image's last byte, .bss and stack included (4 KiB aligned).
pub fn end() -> u64 {
    (&raw const _image_end) as u64
}
