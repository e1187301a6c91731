//! DMA memory for the ranges of the DISCARD and WRITE_ZEROES requests that
//! `blk::host` passes to the machine's disk: one table of up to
//! [`MAX_ZERO_SEGMENTS`] ranges per request in flight. The host device reads
//! Sluice's copy of the ranges, checked, never the guest's.
#![allow(unsafe_code)]

use alloc::vec::Vec;
use core::ptr::NonNull;

use guest_drivers::hal::{Hal, PhysAddr, PAGE_SIZE};

use super::wire::{ZeroRanges, MAX_ZERO_SEGMENTS, SEGMENT};

/// Bytes of one table.
const TABLE_BYTES: usize = MAX_ZERO_SEGMENTS as usize * SEGMENT as usize;

/// The tables, taken and given back by index.
pub struct RangeTables<H: Hal> {
    hal: H,
    memory: NonNull<u8>,
    paddr: PhysAddr,
    pages: usize,
    free: Vec<bool>,
}

// SAFETY: the memory is this value's alone (and the device's while a request that
// names a table is in flight); moving the value to another CPU moves that ownership.
unsafe impl<H: Hal + Send> Send for RangeTables<H> {}

impl<H: Hal> RangeTables<H> {
    /// `count` tables of DMA memory from `hal`, or `None` when it has none.
    pub fn new(hal: H, count: usize) -> Option<Self> {
        let pages = (count * TABLE_BYTES).div_ceil(PAGE_SIZE).max(1);
        let (paddr, memory) = hal.dma_alloc(pages)?;
        Some(Self { hal, memory, paddr, pages, free: alloc::vec![true; count] })
    }

    /// Writes `ranges` into a free table; returns its index, and its device address
    /// and length for the request. `None` when every table is in use.
    pub fn take(&mut self, ranges: &ZeroRanges) -> Option<(usize, PhysAddr, u32)> {
        let index = self.free.iter().position(|&free| free)?;
        self.free[index] = false;
        let at = index * TABLE_BYTES;
        for (i, (sector, sectors, flags)) in ranges.iter().enumerate() {
            let mut raw = [0u8; SEGMENT as usize];
            raw[..8].copy_from_slice(&sector.to_le_bytes());
            raw[8..12].copy_from_slice(&sectors.to_le_bytes());
            raw[12..].copy_from_slice(&flags.to_le_bytes());
            // SAFETY: table `index` lies inside the allocation (`index < count`,
            // `ranges.count <= MAX_ZERO_SEGMENTS`), and is free: no request in flight
            // names it, so the device does not read it now.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    raw.as_ptr(),
                    self.memory.as_ptr().add(at + i * raw.len()),
                    raw.len(),
                )
            };
        }
        // The ranges are whole 16-byte records, at most MAX_ZERO_SEGMENTS of them.
        let len = (ranges.count * SEGMENT as usize) as u32;
        Some((index, self.paddr + at as PhysAddr, len))
    }

    /// Table `index` is free again (its request completed, or the device let go).
    pub fn give_back(&mut self, index: usize) {
        if let Some(free) = self.free.get_mut(index) {
            *free = true;
        }
    }
}

impl<H: Hal> Drop for RangeTables<H> {
    fn drop(&mut self) {
        // SAFETY: one `dma_alloc` of `pages` pages made these; `blk::host` drops its
        // host driver, which resets the device, before this (field order), so the
        // device reads no table any more.
        unsafe { self.hal.dma_dealloc(self.paddr, self.memory, self.pages) };
    }
}
