//! [`guest_drivers::Hal`] over a [`SharedRegion`]: DMA pages from the region, and the
//! translation a guest under a hypervisor would make (host address to guest-physical).
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use guest_drivers::hal::{Hal, PhysAddr};

use crate::region::SharedRegion;

/// The guest-drivers HAL of a test: pages from `region`, device address = offset in
/// the region + [`crate::region::GUEST_BASE`].
#[derive(Debug, Clone)]
pub struct RegionHal {
    region: Arc<SharedRegion>,
}

impl RegionHal {
    /// A HAL over `region`.
    pub fn new(region: &Arc<SharedRegion>) -> Self {
        Self { region: region.clone() }
    }
}

// SAFETY: pages come zeroed and page aligned from the region's allocator, each run
// handed out once until freed, contiguous for the device as for the CPU (one
// allocation, one linear translation); `virt_to_phys` is that translation, and
// refuses (panics) for memory outside the region, which the device could not see.
unsafe impl Hal for RegionHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        self.region.alloc_pages(pages)
    }

    unsafe fn dma_dealloc(&self, paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) {
        self.region.free_pages(paddr, pages);
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        self.region.to_guest(vaddr).unwrap_or_else(|| {
            panic!(
                "buffer at {vaddr:#x} is outside the shared region: a test must give drivers region memory"
            )
        })
    }
}
