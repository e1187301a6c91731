//! An identity-mapped [`Hal`] that hands out pages from one region: what a bare-metal
//! guest with the MMU off needs.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{Hal, PhysAddr, PAGE_SIZE};

/// Allocates DMA pages upwards from a region the guest sets aside, with virtual
/// address = device address.
///
/// Freeing gives memory back only when it is the most recent allocation (enough for
/// a driver that is dropped and made again); anything else stays allocated.
#[derive(Debug)]
pub struct BumpHal {
    /// First address of the region.
    start: usize,
    /// One past the region's last address.
    end: usize,
    /// The next free address (page aligned).
    next: AtomicUsize,
}

impl BumpHal {
    /// A HAL over `len` bytes at `start` (rounded inwards to whole pages).
    ///
    /// # Safety
    ///
    /// The region must be RAM that the CPU accesses at these addresses and the device
    /// at the same addresses (an identity map, or the MMU off), used by nothing else
    /// for as long as the HAL or any memory from it is in use; every buffer later
    /// handed to a driver must also be identity mapped.
    pub const unsafe fn new(start: usize, len: usize) -> Self {
        let first = start.next_multiple_of(PAGE_SIZE);
        let end = (start + len) / PAGE_SIZE * PAGE_SIZE;
        let end = if end < first { first } else { end };
        Self { start: first, end, next: AtomicUsize::new(first) }
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> usize {
        self.end - self.next.load(Ordering::Relaxed)
    }

    /// The region's page-aligned start.
    pub fn start(&self) -> usize {
        self.start
    }
}

// SAFETY: pages come from the region `new`'s caller reserved, each handed out once
// (the cursor moves with a compare-exchange), zeroed here, page aligned and
// contiguous; `new`'s contract makes the identity translation correct.
unsafe impl Hal for BumpHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let bytes = pages.checked_mul(PAGE_SIZE)?;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let new = cur.checked_add(bytes).filter(|&n| n <= self.end)?;
            match self.next.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let ptr = NonNull::new(cur as *mut u8)?;
        // SAFETY: `cur..cur + bytes` lies inside the reserved region and was just
        // taken by this call alone. Volatile word stores: the MMU may be off, where
        // RAM is Device memory and a wide or unaligned store would fault.
        unsafe {
            let words = ptr.as_ptr().cast::<u64>();
            for i in 0..bytes / 8 {
                words.add(i).write_volatile(0);
            }
        }
        Some((cur as PhysAddr, ptr))
    }

    unsafe fn dma_dealloc(&self, _paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) {
        let start = vaddr.as_ptr() as usize;
        let end = start + pages * PAGE_SIZE;
        // Roll back only the latest allocation; the rest is leaked.
        let _ = self.next.compare_exchange(end, start, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        vaddr as PhysAddr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Pages([u8; 4 * PAGE_SIZE]);

    #[test]
    fn hands_out_zeroed_pages_until_full_and_rolls_back_the_last() {
        let mut mem = Pages([0xff; 4 * PAGE_SIZE]);
        let base = mem.0.as_mut_ptr() as usize;
        // SAFETY: `mem` is ours and outlives the HAL.
        let hal = unsafe { BumpHal::new(base, 4 * PAGE_SIZE) };
        let (pa, va) = hal.dma_alloc(3).unwrap();
        assert_eq!(pa, base as u64);
        assert_eq!(va.as_ptr() as usize, base);
        assert!(hal.dma_alloc(2).is_none());
        assert!(mem.0[..3 * PAGE_SIZE].iter().all(|&b| b == 0));
        assert!(mem.0[3 * PAGE_SIZE..].iter().all(|&b| b == 0xff));
        let (pb, vb) = hal.dma_alloc(1).unwrap();
        assert_eq!(pb, (base + 3 * PAGE_SIZE) as u64);
        // SAFETY: the allocation above, unused.
        unsafe { hal.dma_dealloc(pb, vb, 1) };
        assert_eq!(hal.free_bytes(), PAGE_SIZE);
        // SAFETY: not the latest allocation any more: a no-op.
        unsafe { hal.dma_dealloc(pa, va, 1) };
        assert_eq!(hal.free_bytes(), PAGE_SIZE);
    }
}
