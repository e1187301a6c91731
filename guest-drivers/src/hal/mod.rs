//! What the drivers need from the guest's memory management: DMA memory for rings
//! and driver-owned buffers, and the address a device sees for a buffer.
//!
//! A guest with the MMU off (or an identity map) implements [`Hal`] as the identity;
//! [`BumpHal`] is such an implementation over a region the guest sets aside.
#![allow(unsafe_code)]

mod bump;

pub use bump::BumpHal;

use core::ptr::NonNull;

/// The size of the pages [`Hal::dma_alloc`] counts in.
pub const PAGE_SIZE: usize = 4096;

/// An address as the device sees it (a guest-physical address under a hypervisor).
pub type PhysAddr = u64;

/// Memory and address translation for virtio drivers.
///
/// # Safety
///
/// The drivers build descriptor rings and point the device at memory through this
/// trait, so an implementation must keep these promises:
///
/// - [`dma_alloc`](Hal::dma_alloc) returns memory that is zeroed, aligned to
///   [`PAGE_SIZE`], `pages * PAGE_SIZE` bytes long, valid for reads and writes through
///   the returned pointer, used by nothing else until it is given back, and
///   physically contiguous: the device sees byte `i` of it at `paddr + i`;
/// - [`virt_to_phys`](Hal::virt_to_phys) returns the address at which the device
///   sees the byte at `vaddr`, for any memory a driver hands the device (DMA memory
///   from this HAL, and the caller's buffers), and a buffer the caller passes is
///   contiguous for the device as it is for the CPU.
pub unsafe trait Hal {
    /// Allocates `pages` zeroed, page-aligned pages that the device can access.
    /// Returns the device-visible address and the pointer the driver uses, or `None`
    /// when no memory is left.
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)>;

    /// Gives back memory from [`dma_alloc`](Hal::dma_alloc).
    ///
    /// # Safety
    ///
    /// `paddr`, `vaddr` and `pages` must be exactly what one earlier `dma_alloc` of
    /// this HAL returned and asked for; neither the driver nor the device uses that
    /// memory any more.
    unsafe fn dma_dealloc(&self, paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize);

    /// The address at which the device sees the byte at virtual address `vaddr`.
    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr;
}

// SAFETY: forwards to `H`, which keeps the promises.
unsafe impl<H: Hal + ?Sized> Hal for &H {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        (**self).dma_alloc(pages)
    }

    unsafe fn dma_dealloc(&self, paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) {
        // SAFETY: the caller keeps `dma_dealloc`'s contract, which is `H`'s.
        unsafe { (**self).dma_dealloc(paddr, vaddr, pages) }
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        (**self).virt_to_phys(vaddr)
    }
}
