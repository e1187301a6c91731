//! A [`Hal`] on the host heap whose device addresses are the CPU's with one high bit
//! flipped: a driver that forgets to translate hands the device an address that
//! faults when the fake device uses it.
#![allow(unsafe_code)]

use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::hal::{Hal, PhysAddr, PAGE_SIZE};

/// The bit that tells a fake device address from a CPU address (non-canonical on
/// x86_64, outside the user address range on AArch64).
pub const FAKE_PHYS_BIT: u64 = 1 << 52;

/// A heap-backed HAL that counts its live pages and can be told to run out.
#[derive(Debug, Clone, Default)]
pub struct FakeHal {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Pages allocated and not freed.
    live: AtomicUsize,
    /// Allocations left before `dma_alloc` fails (`usize::MAX`: unlimited).
    allocs_left: AtomicUsize,
}

impl FakeHal {
    /// A HAL with unlimited memory.
    pub fn new() -> Self {
        let hal = Self::default();
        hal.counters.allocs_left.store(usize::MAX, Ordering::Relaxed);
        hal
    }

    /// A HAL whose `dma_alloc` fails after `n` successful allocations.
    pub fn failing_after(n: usize) -> Self {
        let hal = Self::default();
        hal.counters.allocs_left.store(n, Ordering::Relaxed);
        hal
    }

    /// Pages allocated and not yet freed, by this HAL and its clones.
    pub fn live_pages(&self) -> usize {
        self.counters.live.load(Ordering::Relaxed)
    }

    /// The CPU address of device address `paddr`.
    pub fn phys_to_virt(paddr: PhysAddr) -> usize {
        (paddr ^ FAKE_PHYS_BIT) as usize
    }

    fn layout(pages: usize) -> Layout {
        Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
    }
}

// SAFETY: memory comes zeroed from the global allocator, page aligned, owned by the
// caller until `dma_dealloc`; the translation is a bijection the fake device undoes.
unsafe impl Hal for FakeHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let left = &self.counters.allocs_left;
        if left.load(Ordering::Relaxed) == 0 {
            return None;
        }
        if left.load(Ordering::Relaxed) != usize::MAX {
            left.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: the layout has a non-zero size (pages >= 1 from every caller).
        let ptr = NonNull::new(unsafe { alloc_zeroed(Self::layout(pages.max(1))) })?;
        self.counters.live.fetch_add(pages, Ordering::Relaxed);
        Some((self.virt_to_phys(ptr.as_ptr() as usize), ptr))
    }

    unsafe fn dma_dealloc(&self, _paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) {
        self.counters.live.fetch_sub(pages, Ordering::Relaxed);
        // SAFETY: the caller passes back what `dma_alloc` returned, with its size.
        unsafe { dealloc(vaddr.as_ptr(), Self::layout(pages.max(1))) }
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        vaddr as PhysAddr ^ FAKE_PHYS_BIT
    }
}
