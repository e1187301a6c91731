//! DMA memory for Sluice's drivers of the machine's own virtio devices: pages of
//! Sluice's heap, whose addresses are physical ones too (EL2 maps RAM one to one).

use alloc::alloc::{alloc_zeroed, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

use guest_drivers::hal::{Hal, PhysAddr, PAGE_SIZE};

/// Rings and request slots from the heap, the device addressing them by their
/// physical address: the virtual one.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapDma;

fn layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok().filter(|l| l.size() > 0)
}

// SAFETY: the pages come zeroed and page-aligned from the global allocator, belong
// to the driver alone until it gives them back, and are one run of the heap, which
// is RAM identity-mapped at EL2, so the device sees byte `i` at `paddr + i` and
// `virt_to_phys` is the identity. The heap is normal write-back memory; QEMU's
// devices are coherent with the CPUs' caches.
#[allow(unsafe_code)]
unsafe impl Hal for HeapDma {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let layout = layout(pages)?;
        // SAFETY: `layout` has a non-zero size (checked in `layout`).
        let memory = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some((memory.as_ptr() as PhysAddr, memory))
    }

    unsafe fn dma_dealloc(&self, _paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) {
        let Some(layout) = layout(pages) else { return };
        // SAFETY: the caller gives back exactly one earlier `dma_alloc` of `pages`
        // pages, which `alloc_zeroed` made with this layout.
        unsafe { dealloc(vaddr.as_ptr(), layout) };
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        vaddr as PhysAddr
    }
}
