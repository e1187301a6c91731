//! A region of DMA memory from the [`Hal`], read and written only through volatile
//! accesses at bounds-checked offsets, since the device reads and writes it
//! concurrently: no Rust reference into it is ever kept.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use crate::error::{Error, Result};
use crate::hal::{Hal, PhysAddr, PAGE_SIZE};

/// Pages from [`Hal::dma_alloc`], owned by one driver object.
///
/// It does not free itself (it does not hold the HAL): its owner calls
/// [`free`](DmaRegion::free) once the device has stopped using it, or leaks it.
#[derive(Debug)]
pub(crate) struct DmaRegion {
    paddr: PhysAddr,
    vaddr: NonNull<u8>,
    pages: usize,
}

// SAFETY: the region is owned exclusively, like a `Box<[u8]>`; moving the owner to
// another CPU moves the only handle.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// Allocates `bytes` (rounded up to whole pages), zeroed.
    ///
    /// # Errors
    ///
    /// [`Error::NoMemory`] when the HAL has none.
    pub(crate) fn alloc(hal: &impl Hal, bytes: usize) -> Result<Self> {
        let pages = bytes.div_ceil(PAGE_SIZE).max(1);
        let (paddr, vaddr) = hal.dma_alloc(pages).ok_or(Error::NoMemory)?;
        Ok(Self { paddr, vaddr, pages })
    }

    /// Gives the pages back.
    ///
    /// # Safety
    ///
    /// `hal` is the HAL the region came from, the device no longer uses the region,
    /// and neither is it used (nor freed) again.
    pub(crate) unsafe fn free(&self, hal: &impl Hal) {
        // SAFETY: the values `dma_alloc` returned; the caller vouches the device is
        // done with the memory.
        unsafe { hal.dma_dealloc(self.paddr, self.vaddr, self.pages) }
    }

    /// The region's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// The device-visible address of byte `offset`.
    pub(crate) fn paddr(&self, offset: usize) -> PhysAddr {
        assert!(offset <= self.len(), "DMA offset out of range");
        self.paddr + offset as PhysAddr
    }

    /// The pointer to `len` bytes at `offset`, checked against the region's bounds and
    /// the alignment `align`.
    fn ptr(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        let end = offset.checked_add(len);
        assert!(end.is_some_and(|e| e <= self.len()), "DMA access out of range");
        assert!(offset.is_multiple_of(align), "misaligned DMA access");
        // SAFETY: the offset lies inside the allocation (checked above).
        unsafe { self.vaddr.as_ptr().add(offset) }
    }

    /// Reads the byte at `offset`.
    pub(crate) fn read_u8(&self, offset: usize) -> u8 {
        // SAFETY: in bounds (checked by `ptr`); the region is valid until freed.
        unsafe { self.ptr(offset, 1, 1).read_volatile() }
    }

    /// Writes the byte at `offset`.
    pub(crate) fn write_u8(&self, offset: usize, value: u8) {
        // SAFETY: in bounds (checked by `ptr`); the region is valid until freed.
        unsafe { self.ptr(offset, 1, 1).write_volatile(value) }
    }

    /// Reads the little-endian `u16` at `offset` (2-byte aligned).
    pub(crate) fn read_u16(&self, offset: usize) -> u16 {
        // SAFETY: in bounds and aligned (checked by `ptr`); valid until freed.
        u16::from_le(unsafe { self.ptr(offset, 2, 2).cast::<u16>().read_volatile() })
    }

    /// Writes a little-endian `u16` at `offset` (2-byte aligned).
    pub(crate) fn write_u16(&self, offset: usize, value: u16) {
        // SAFETY: in bounds and aligned (checked by `ptr`); valid until freed.
        unsafe { self.ptr(offset, 2, 2).cast::<u16>().write_volatile(value.to_le()) }
    }

    /// Reads the little-endian `u32` at `offset` (4-byte aligned).
    pub(crate) fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: in bounds and aligned (checked by `ptr`); valid until freed.
        u32::from_le(unsafe { self.ptr(offset, 4, 4).cast::<u32>().read_volatile() })
    }

    /// Writes a little-endian `u32` at `offset` (4-byte aligned).
    pub(crate) fn write_u32(&self, offset: usize, value: u32) {
        // SAFETY: in bounds and aligned (checked by `ptr`); valid until freed.
        unsafe { self.ptr(offset, 4, 4).cast::<u32>().write_volatile(value.to_le()) }
    }

    /// Writes a little-endian `u64` at `offset` (8-byte aligned).
    pub(crate) fn write_u64(&self, offset: usize, value: u64) {
        // SAFETY: in bounds and aligned (checked by `ptr`); valid until freed.
        unsafe { self.ptr(offset, 8, 8).cast::<u64>().write_volatile(value.to_le()) }
    }

    /// Copies `src` to `offset`, one volatile byte store at a time (as
    /// [`Self::read_bytes`]).
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) {
        let dst = self.ptr(offset, src.len(), 1);
        for (i, s) in src.iter().enumerate() {
            // SAFETY: `offset + i` is in bounds (the whole range was checked).
            unsafe { dst.add(i).write_volatile(*s) };
        }
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`, one volatile byte load at a
    /// time (with the MMU off RAM is Device memory, where a wide unaligned load faults).
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        let src = self.ptr(offset, dst.len(), 1);
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: `offset + i` is in bounds (the whole range was checked).
            *d = unsafe { src.add(i).read_volatile() };
        }
    }
}
