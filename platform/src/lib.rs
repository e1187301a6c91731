//! Board facts and the boot contract shared by the hypervisor, the guests and the tools.
//!
//! Everything a board defines lives in one module per board (`qemu_virt`), as data.
//! The boot contract (how the tools hand scenarios to the hypervisor, and how the
//! hypervisor reports how the VMs ended) lives in `bundle` and `exit`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "writer")]
extern crate alloc;
#[cfg(feature = "build")]
extern crate std;

pub mod admission;
#[cfg(feature = "build")]
pub mod build;
pub mod bundle;
pub mod counter;
pub mod exit;
pub mod hypercall;
pub mod image;
pub mod layout;
pub mod qemu_virt;

/// A range of physical or guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First address of the region.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// Creates a region of `size` bytes starting at `base`.
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last address, or `None` if the region wraps the address space.
    pub const fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// Whether `addr` lies inside the region.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    /// Whether `[addr, addr + len)` lies entirely inside the region.
    pub fn contains_range(&self, addr: u64, len: u64) -> bool {
        match (addr.checked_add(len), self.end()) {
            (Some(end), Some(self_end)) => addr >= self.base && end <= self_end,
            _ => false,
        }
    }

    /// Whether the two regions share at least one address.
    pub fn overlaps(&self, other: &Region) -> bool {
        let (Some(a_end), Some(b_end)) = (self.end(), other.end()) else {
            return true;
        };
        self.size != 0 && other.size != 0 && self.base < b_end && other.base < a_end
    }
}

#[cfg(test)]
mod tests {
    use super::Region;

    #[test]
    fn overlap_is_symmetric_and_half_open() {
        let a = Region::new(0x1000, 0x1000);
        let b = Region::new(0x2000, 0x1000);
        assert!(!a.overlaps(&b) && !b.overlaps(&a));
        let c = Region::new(0x1fff, 2);
        assert!(a.overlaps(&c) && c.overlaps(&a) && b.overlaps(&c));
        assert!(!a.overlaps(&Region::new(0x1800, 0)));
    }

    #[test]
    fn contains_range_rejects_wrapping() {
        let r = Region::new(0x4000_0000, 0x100_0000);
        assert!(r.contains_range(0x4000_0000, 0x100_0000));
        assert!(!r.contains_range(0x40ff_ffff, 2));
        assert!(!r.contains_range(u64::MAX, 2));
        assert!(r.contains(0x40ff_ffff) && !r.contains(0x4100_0000));
    }
}
