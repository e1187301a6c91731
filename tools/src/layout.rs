//! Where a VM's images go in its guest-physical RAM.
//!
//! RAM is `[RAM_BASE, RAM_BASE + memory)`. Its last 2 MiB are the DTB area: the
//! hypervisor writes the guest's DTB (at most `GUEST_DTB_MAX_SIZE` bytes) at its start.
//! An arm64 `Image` (Linux `Documentation/arch/arm64/booting.rst`) is loaded at
//! `RAM_BASE + text_offset`; a raw image at its `load_address`. Either way the entry
//! is the first byte loaded. The initrd sits page-aligned directly below the DTB area.

use std::fmt;

use platform::bundle::{GUEST_DTB_MAX_SIZE, MEMORY_GRANULE};
use platform::image::ImageHeader;
use platform::layout::{ImageLayout, LayoutFault};
use platform::qemu_virt::{self, RAM_BASE};
use platform::Region;

use crate::units::{align_down, fmt_region, fmt_size};

/// Size of the DTB area at the top of guest RAM.
pub const DTB_AREA_SIZE: u64 = MEMORY_GRANULE;
/// Alignment of the initrd.
pub const INITRD_ALIGN: u64 = 4096;
/// Alignment of a raw image's load address (one A64 instruction).
pub const ENTRY_ALIGN: u64 = 4;

const _: () = assert!(GUEST_DTB_MAX_SIZE <= DTB_AREA_SIZE);

/// Where one VM's pieces go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The VM's RAM.
    pub ram: Region,
    /// The kernel's loaded span: its bytes, and for an arm64 Image its bss too.
    pub kernel: Region,
    /// First instruction.
    pub entry: u64,
    /// The DTB area; the hypervisor writes the DTB at its base.
    pub dtb: Region,
    /// The initrd, if there is one.
    pub initrd: Option<Region>,
}

/// Why images do not fit; [`LayoutError::field`] says which config field is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The kernel file is empty.
    EmptyKernel,
    /// The arm64 Image header says big-endian.
    BigEndian,
    /// A `load_address` was given for an image whose header fixes its place.
    LoadAddressWithHeader {
        /// Where the header puts the image.
        header_addr: u64,
    },
    /// The raw image's load address is outside RAM.
    LoadAddressOutsideRam {
        /// The load address.
        addr: u64,
        /// The VM's RAM.
        ram: Region,
    },
    /// The raw image's load address cannot be an entry point.
    LoadAddressMisaligned {
        /// The load address.
        addr: u64,
    },
    /// The kernel's span does not end below the DTB area.
    KernelTooBig {
        /// Where it would be.
        kernel: Region,
        /// Where it could be.
        room: Region,
    },
    /// The initrd file is empty.
    EmptyInitrd,
    /// The initrd is larger than the RAM below the DTB area.
    InitrdTooBig {
        /// Its size.
        size: u64,
        /// The RAM below the DTB area.
        room: Region,
    },
    /// The initrd would overwrite the kernel.
    InitrdOverlapsKernel {
        /// Where the initrd goes.
        initrd: Region,
        /// Where the kernel is.
        kernel: Region,
    },
    /// The placement breaks the rule the hypervisor checks the bundle against
    /// (`platform::layout`), which the cases above should have caught.
    Rule(LayoutFault),
}

impl LayoutError {
    /// The config field (of the VM) the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyKernel | Self::BigEndian | Self::KernelTooBig { .. } => "kernel",
            Self::LoadAddressWithHeader { .. }
            | Self::LoadAddressOutsideRam { .. }
            | Self::LoadAddressMisaligned { .. } => "load_address",
            Self::EmptyInitrd | Self::InitrdTooBig { .. } | Self::InitrdOverlapsKernel { .. } => "initrd",
            Self::Rule(LayoutFault::InitrdOutsideRam | LayoutFault::InitrdOverlaps) => "initrd",
            Self::Rule(_) => "kernel",
        }
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKernel => write!(f, "the image is empty"),
            Self::BigEndian => {
                write!(f, "the arm64 Image header says big-endian; only little-endian kernels boot")
            }
            Self::LoadAddressWithHeader { header_addr } => write!(
                f,
                "the image has an arm64 Image header, which places it at {header_addr:#x}; \
                 load_address is only for raw images"
            ),
            Self::LoadAddressOutsideRam { addr, ram } => {
                write!(f, "{addr:#x} is outside the VM's RAM {}", fmt_region(ram))
            }
            Self::LoadAddressMisaligned { addr } => {
                write!(f, "{addr:#x} is not {ENTRY_ALIGN}-byte aligned")
            }
            Self::KernelTooBig { kernel, room } => write!(
                f,
                "the image needs {} ({}), which does not end below the DTB area: \
                 the room for images is {}",
                fmt_region(kernel),
                fmt_size(kernel.size),
                fmt_region(room)
            ),
            Self::EmptyInitrd => write!(f, "the initrd is empty"),
            Self::InitrdTooBig { size, room } => write!(
                f,
                "{} does not fit below the DTB area: the room for images is {}",
                fmt_size(*size),
                fmt_region(room)
            ),
            Self::InitrdOverlapsKernel { initrd, kernel } => write!(
                f,
                "the initrd at {} overlaps the kernel at {}; give the VM more memory",
                fmt_region(initrd),
                fmt_region(kernel)
            ),
            Self::Rule(fault) => write!(f, "the bundle's {} {}", fault.property(), fault.reason()),
        }
    }
}

/// The kernel's load address and span, from its bytes and the optional `load_address`.
fn place_kernel(kernel: &[u8], load_address: Option<u64>, ram: Region) -> Result<Region, LayoutError> {
    if kernel.is_empty() {
        return Err(LayoutError::EmptyKernel);
    }
    let file_size = kernel.len() as u64;
    match ImageHeader::parse(kernel) {
        Some(header) => {
            if !header.is_little_endian() {
                return Err(LayoutError::BigEndian);
            }
            let addr = RAM_BASE.saturating_add(header.text_offset);
            if load_address.is_some() {
                return Err(LayoutError::LoadAddressWithHeader { header_addr: addr });
            }
            Ok(Region::new(addr, file_size.max(header.image_size)))
        }
        None => {
            let addr = load_address.unwrap_or(RAM_BASE);
            if !ram.contains(addr) {
                return Err(LayoutError::LoadAddressOutsideRam { addr, ram });
            }
            if !addr.is_multiple_of(ENTRY_ALIGN) {
                return Err(LayoutError::LoadAddressMisaligned { addr });
            }
            Ok(Region::new(addr, file_size))
        }
    }
}

/// Places a VM's kernel and initrd in `memory` bytes of RAM.
///
/// `memory` is a non-zero multiple of `MEMORY_GRANULE` (validation checks that first).
///
/// # Errors
///
/// A [`LayoutError`] naming what does not fit or is not allowed.
pub fn place(
    memory: u64,
    kernel: &[u8],
    load_address: Option<u64>,
    initrd_size: Option<u64>,
) -> Result<Layout, LayoutError> {
    let ram = qemu_virt::guest_ram(memory);
    let ram_end = ram.end().expect("guest RAM ends below 2^64");
    let dtb_base = ram_end.saturating_sub(DTB_AREA_SIZE).max(RAM_BASE);
    let dtb = Region::new(dtb_base, ram_end - dtb_base);
    let room = Region::new(RAM_BASE, dtb_base - RAM_BASE);

    let kernel = place_kernel(kernel, load_address, ram)?;
    if !room.contains_range(kernel.base, kernel.size) {
        return Err(LayoutError::KernelTooBig { kernel, room });
    }

    let initrd = match initrd_size {
        None => None,
        Some(0) => return Err(LayoutError::EmptyInitrd),
        Some(size) => {
            let base = dtb_base
                .checked_sub(size)
                .map(|top| align_down(top, INITRD_ALIGN))
                .filter(|&base| base >= RAM_BASE)
                .ok_or(LayoutError::InitrdTooBig { size, room })?;
            let initrd = Region::new(base, size);
            if initrd.overlaps(&kernel) {
                return Err(LayoutError::InitrdOverlapsKernel { initrd, kernel });
            }
            Some(initrd)
        }
    };

    let layout = Layout { ram, kernel, entry: kernel.base, dtb, initrd };
    let rule = ImageLayout { ram, kernel, entry: layout.entry, dtb_addr: dtb.base, initrd };
    rule.check().map_err(LayoutError::Rule)?;
    Ok(layout)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::units::MIB;
    use platform::image::MAGIC;

    /// An arm64 Image of `file_size` bytes whose header says the given values.
    pub(crate) fn arm64_image(text_offset: u64, image_size: u64, flags: u64, file_size: usize) -> Vec<u8> {
        let mut image = vec![0u8; file_size.max(64)];
        image[8..16].copy_from_slice(&text_offset.to_le_bytes());
        image[16..24].copy_from_slice(&image_size.to_le_bytes());
        image[24..32].copy_from_slice(&flags.to_le_bytes());
        image[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        image
    }

    #[test]
    fn raw_image_defaults_to_ram_base() {
        let layout = place(64 * MIB, &[1; 4096], None, None).unwrap();
        assert_eq!(layout.kernel, Region::new(RAM_BASE, 4096));
        assert_eq!(layout.entry, RAM_BASE);
        assert_eq!(layout.dtb, Region::new(RAM_BASE + 62 * MIB, 2 * MIB));
        assert_eq!(layout.ram, Region::new(RAM_BASE, 64 * MIB));
        assert_eq!(layout.initrd, None);
    }

    #[test]
    fn raw_image_at_its_load_address() {
        let layout = place(64 * MIB, &[1; 100], Some(0x4008_0000), None).unwrap();
        assert_eq!(layout.kernel, Region::new(0x4008_0000, 100));
        assert_eq!(layout.entry, 0x4008_0000);
    }

    #[test]
    fn arm64_image_goes_to_text_offset_and_reserves_image_size() {
        let image = arm64_image(0x8_0000, 8 * MIB, 0, 4096);
        let layout = place(64 * MIB, &image, None, None).unwrap();
        assert_eq!(layout.kernel, Region::new(RAM_BASE + 0x8_0000, 8 * MIB));
        assert_eq!(layout.entry, RAM_BASE + 0x8_0000);
    }

    #[test]
    fn big_endian_image_is_refused() {
        let image = arm64_image(0, MIB, 1, 4096);
        let err = place(64 * MIB, &image, None, None).unwrap_err();
        assert_eq!(err, LayoutError::BigEndian);
        assert_eq!(err.field(), "kernel");
    }

    #[test]
    fn load_address_with_a_header_is_refused() {
        let image = arm64_image(0, MIB, 0, 4096);
        let err = place(64 * MIB, &image, Some(RAM_BASE), None).unwrap_err();
        assert_eq!(err.field(), "load_address");
        assert!(err.to_string().contains("arm64 Image header"), "{err}");
    }

    #[test]
    fn load_address_outside_ram_is_refused() {
        let err = place(64 * MIB, &[1; 4], Some(0x1000), None).unwrap_err();
        assert_eq!(err.field(), "load_address");
        assert_eq!(err.to_string(), "0x1000 is outside the VM's RAM [0x40000000, 0x44000000)");
        let end = RAM_BASE + 64 * MIB;
        assert!(place(64 * MIB, &[1; 4], Some(end), None).is_err());
    }

    #[test]
    fn misaligned_load_address_is_refused() {
        let err = place(64 * MIB, &[1; 4], Some(RAM_BASE + 2), None).unwrap_err();
        assert_eq!(err, LayoutError::LoadAddressMisaligned { addr: RAM_BASE + 2 });
    }

    #[test]
    fn empty_images_are_refused() {
        assert_eq!(place(64 * MIB, &[], None, None), Err(LayoutError::EmptyKernel));
        assert_eq!(place(64 * MIB, &[1], None, Some(0)), Err(LayoutError::EmptyInitrd));
    }

    #[test]
    fn kernel_must_end_below_the_dtb_area() {
        // Exactly filling the room is fine; one byte more reaches the DTB area.
        assert!(place(4 * MIB, &vec![1; 2 * MIB as usize], None, None).is_ok());
        let err = place(4 * MIB, &vec![1; 2 * MIB as usize + 1], None, None).unwrap_err();
        assert_eq!(err.field(), "kernel");
        assert!(err.to_string().contains("does not end below the DTB area"), "{err}");
        // A loaded image's bss counts, not only its file size.
        let image = arm64_image(0, 2 * MIB + 4096, 0, 4096);
        assert!(matches!(place(4 * MIB, &image, None, None), Err(LayoutError::KernelTooBig { .. })));
        // Only the DTB area: nothing fits.
        assert!(place(2 * MIB, &[1; 4], None, None).is_err());
    }

    #[test]
    fn initrd_sits_page_aligned_below_the_dtb_area() {
        let layout = place(64 * MIB, &[1; 4096], None, Some(5000)).unwrap();
        let initrd = layout.initrd.unwrap();
        assert_eq!(initrd.size, 5000);
        assert!(initrd.base.is_multiple_of(INITRD_ALIGN));
        assert!(initrd.end().unwrap() <= layout.dtb.base);
        assert!(layout.dtb.base - initrd.end().unwrap() < INITRD_ALIGN);
    }

    #[test]
    fn initrd_larger_than_ram_is_refused() {
        let err = place(4 * MIB, &[1; 4], None, Some(3 * MIB)).unwrap_err();
        assert_eq!(err.field(), "initrd");
        assert!(matches!(err, LayoutError::InitrdTooBig { .. }));
    }

    #[test]
    fn initrd_overlapping_the_kernel_is_refused() {
        let err = place(4 * MIB, &vec![1; MIB as usize], None, Some(MIB + 4096)).unwrap_err();
        assert_eq!(err.field(), "initrd");
        assert!(matches!(err, LayoutError::InitrdOverlapsKernel { .. }), "{err}");
    }
}
