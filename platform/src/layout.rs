//! The rule a VM's images obey in its RAM, the one the tools place them by and the
//! hypervisor checks the bundle against: the kernel inside RAM with its entry point
//! in it, the guest DTB's area and the initrd inside RAM, none of the three
//! overlapping.

use crate::bundle::{self, GUEST_DTB_MAX_SIZE};
use crate::Region;

/// Where a VM's images sit in its RAM (guest-physical addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLayout {
    /// The VM's RAM.
    pub ram: Region,
    /// The kernel image (its file, or the size its header reserves).
    pub kernel: Region,
    /// Where the boot CPU starts.
    pub entry: u64,
    /// Where the guest DTB is written.
    pub dtb_addr: u64,
    /// The initrd, if any.
    pub initrd: Option<Region>,
}

/// What breaks the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutFault {
    /// The kernel does not fit in RAM at its address.
    KernelOutsideRam,
    /// The entry point is not a 4-byte aligned address inside the kernel.
    EntryOutsideKernel,
    /// The DTB address is misaligned, or its area does not fit in RAM.
    DtbOutsideRam,
    /// The DTB's area overlaps the kernel.
    DtbOverlapsKernel,
    /// The initrd does not fit in RAM at its address.
    InitrdOutsideRam,
    /// The initrd overlaps the kernel or the DTB's area.
    InitrdOverlaps,
}

impl LayoutFault {
    /// The bundle property at fault.
    pub fn property(self) -> &'static str {
        match self {
            Self::KernelOutsideRam => bundle::VM_KERNEL,
            Self::EntryOutsideKernel => bundle::VM_ENTRY,
            Self::DtbOutsideRam | Self::DtbOverlapsKernel => bundle::VM_DTB_ADDR,
            Self::InitrdOutsideRam => bundle::VM_INITRD,
            Self::InitrdOverlaps => bundle::VM_INITRD_ADDR,
        }
    }

    /// What is wrong with it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::KernelOutsideRam => "does not fit in the VM's RAM at kernel-addr",
            Self::EntryOutsideKernel => "must be a 4-byte aligned address inside the image",
            Self::DtbOutsideRam => "must be 8-byte aligned with room for the DTB inside RAM",
            Self::DtbOverlapsKernel => "overlaps the image",
            Self::InitrdOutsideRam => "does not fit in the VM's RAM at initrd-addr",
            Self::InitrdOverlaps => "overlaps the image or the DTB",
        }
    }
}

impl ImageLayout {
    /// The area the guest DTB may take.
    pub fn dtb_area(&self) -> Region {
        Region::new(self.dtb_addr, GUEST_DTB_MAX_SIZE)
    }

    /// Checks the rule.
    ///
    /// # Errors
    ///
    /// The first [`LayoutFault`], in the order the enum lists them.
    pub fn check(&self) -> Result<(), LayoutFault> {
        let (ram, kernel, dtb) = (self.ram, self.kernel, self.dtb_area());
        if !ram.contains_range(kernel.base, kernel.size) {
            return Err(LayoutFault::KernelOutsideRam);
        }
        if !kernel.contains(self.entry) || !self.entry.is_multiple_of(4) {
            return Err(LayoutFault::EntryOutsideKernel);
        }
        if !self.dtb_addr.is_multiple_of(8) || !ram.contains_range(dtb.base, dtb.size) {
            return Err(LayoutFault::DtbOutsideRam);
        }
        if dtb.overlaps(&kernel) {
            return Err(LayoutFault::DtbOverlapsKernel);
        }
        if let Some(initrd) = self.initrd {
            if !ram.contains_range(initrd.base, initrd.size) {
                return Err(LayoutFault::InitrdOutsideRam);
            }
            if initrd.overlaps(&kernel) || initrd.overlaps(&dtb) {
                return Err(LayoutFault::InitrdOverlaps);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn good() -> ImageLayout {
        ImageLayout {
            ram: Region::new(0x4000_0000, 64 * MIB),
            kernel: Region::new(0x4020_0000, MIB),
            entry: 0x4020_0000,
            dtb_addr: 0x4000_0000 + 62 * MIB,
            initrd: Some(Region::new(0x4000_0000 + 60 * MIB, MIB)),
        }
    }

    #[test]
    fn a_good_layout_passes() {
        assert_eq!(good().check(), Ok(()));
        assert_eq!(ImageLayout { initrd: None, ..good() }.check(), Ok(()));
    }

    #[test]
    fn each_fault_is_found_and_named() {
        let cases = [
            (ImageLayout { kernel: Region::new(0x3fff_f000, MIB), ..good() }, LayoutFault::KernelOutsideRam),
            (ImageLayout { entry: 0x4030_0000, ..good() }, LayoutFault::EntryOutsideKernel),
            (ImageLayout { entry: 0x4020_0002, ..good() }, LayoutFault::EntryOutsideKernel),
            (ImageLayout { dtb_addr: 0x4000_0000 + 64 * MIB - 8, ..good() }, LayoutFault::DtbOutsideRam),
            (ImageLayout { dtb_addr: 0x4020_0004, ..good() }, LayoutFault::DtbOutsideRam),
            (ImageLayout { dtb_addr: 0x4020_0008, ..good() }, LayoutFault::DtbOverlapsKernel),
            (
                ImageLayout { initrd: Some(Region::new(0x4000_0000 + 63 * MIB, 2 * MIB)), ..good() },
                LayoutFault::InitrdOutsideRam,
            ),
            (
                ImageLayout { initrd: Some(Region::new(0x4020_0000, 16)), ..good() },
                LayoutFault::InitrdOverlaps,
            ),
            (
                ImageLayout { initrd: Some(Region::new(0x4000_0000 + 62 * MIB, 16)), ..good() },
                LayoutFault::InitrdOverlaps,
            ),
        ];
        for (layout, fault) in cases {
            assert_eq!(layout.check(), Err(fault), "{layout:?}");
        }
        assert_eq!(LayoutFault::DtbOverlapsKernel.property(), "dtb-addr");
    }
}
