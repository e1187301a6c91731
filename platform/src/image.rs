//! The arm64 Linux `Image` header (Linux `Documentation/arch/arm64/booting.rst`).
//!
//! Sluice carries this header so QEMU's `-kernel` loads it like a Linux kernel and
//! passes the DTB in `x0`; the tools read it to place a guest kernel.

/// Offset of the magic number in the header.
pub const MAGIC_OFFSET: usize = 56;
/// The magic number, "ARM\x64" little-endian.
pub const MAGIC: u32 = 0x644d_5241;
/// Size of the header.
pub const HEADER_SIZE: usize = 64;
/// text_offset that images with `image_size == 0` imply (pre-3.17 kernels).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// What the header of an arm64 `Image` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB aligned base at which the image must be placed.
    pub text_offset: u64,
    /// Bytes the image occupies once loaded, including its bss (0 if unknown).
    pub image_size: u64,
    /// Header flags (bit 0: big-endian kernel).
    pub flags: u64,
}

impl ImageHeader {
    /// Parses the header at the start of `image`, or `None` if it is not an arm64 Image.
    pub fn parse(image: &[u8]) -> Option<Self> {
        let word = |off: usize| -> Option<u64> {
            let bytes = image.get(off..off + 8)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        };
        let magic = u32::from_le_bytes(image.get(MAGIC_OFFSET..MAGIC_OFFSET + 4)?.try_into().ok()?);
        if magic != MAGIC {
            return None;
        }
        let image_size = word(16)?;
        let text_offset = if image_size == 0 { LEGACY_TEXT_OFFSET } else { word(8)? };
        Some(Self { text_offset, image_size, flags: word(24)? })
    }

    /// Whether the kernel is little-endian (the only kind Sluice boots).
    pub fn is_little_endian(&self) -> bool {
        self.flags & 1 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn parses_a_modern_header() {
        let h = ImageHeader::parse(&header(0, 0x200_0000, 0xa)).unwrap();
        assert_eq!(h, ImageHeader { text_offset: 0, image_size: 0x200_0000, flags: 0xa });
        assert!(h.is_little_endian());
    }

    #[test]
    fn zero_image_size_implies_legacy_offset() {
        let h = ImageHeader::parse(&header(0x1234, 0, 0)).unwrap();
        assert_eq!(h.text_offset, LEGACY_TEXT_OFFSET);
    }

    #[test]
    fn rejects_missing_magic_and_short_input() {
        let mut h = header(0, 1, 0);
        h[56] = 0;
        assert_eq!(ImageHeader::parse(&h), None);
        assert_eq!(ImageHeader::parse(&h[..40]), None);
    }
}
