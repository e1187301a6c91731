//! `virtio_drivers::Hal` over a [`SharedRegion`].
//!
//! The peer's HAL is a set of functions with no `self`, so the region is the one the
//! current thread installed with [`install`] (each test runs on its own thread).
//! DMA pages come from the region. Buffers the peer shares are translated when
//! they already lie in the region; anything else (its requests and responses on
//! the stack, its receive buffer on the heap) is bounced through region pages, as
//! `Hal::share` allows for memory the device cannot reach.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;

use sluice_tests::region::{SharedRegion, PAGE};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

thread_local! {
    static REGION: RefCell<Option<Arc<SharedRegion>>> = const { RefCell::new(None) };
}

/// Keeps a region installed for this thread's [`PeerHal`]; uninstalls it when dropped.
#[derive(Debug)]
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        REGION.with(|r| r.borrow_mut().take());
    }
}

/// Makes `region` the memory of this thread's [`PeerHal`]. Keep the guard until
/// every peer driver using it is dropped.
#[must_use]
pub fn install(region: &Arc<SharedRegion>) -> Installed {
    REGION.with(|r| *r.borrow_mut() = Some(region.clone()));
    Installed(())
}

fn region() -> Arc<SharedRegion> {
    REGION.with(|r| r.borrow().clone()).expect("no shared region installed for the peer HAL")
}

/// The peer driver's HAL.
#[derive(Debug)]
pub struct PeerHal;

/// Whether all of `buffer` lies in `region` (else it is bounced).
fn in_region(region: &SharedRegion, buffer: NonNull<[u8]>) -> Option<PhysAddr> {
    let start = buffer.as_ptr() as *mut u8 as usize;
    let len = buffer.len();
    let ipa = region.to_guest(start)?;
    (len == 0 || region.to_guest(start + len - 1).is_some()).then_some(ipa)
}

// SAFETY: DMA pages are zeroed, page aligned, contiguous and handed out once by the
// region's allocator; a shared buffer's address is either its translation (when in
// the region) or that of a bounce copy, which lives until `unshare` copies it back
// and frees it, so the device never sees memory it must not touch.
unsafe impl Hal for PeerHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // The peer treats address 0 as failure.
        region().alloc_pages(pages).unwrap_or((0, NonNull::dangling()))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        region().free_pages(paddr, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the tests reach devices through their Transport, never by MMIO pointers")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let region = region();
        if let Some(ipa) = in_region(&region, buffer) {
            return ipa;
        }
        let (ipa, _) = region.alloc_pages(buffer.len().div_ceil(PAGE)).expect("shared region full");
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's contract: `buffer` is valid for reads while shared.
            let bytes = unsafe { buffer.as_ref() };
            region.write(ipa, bytes).expect("bounce pages in the region");
        }
        ipa
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        let region = region();
        if in_region(&region, buffer).is_some() {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the caller's contract: `buffer` is the one shared, valid for
            // writes, and the device is done with it.
            let bytes = unsafe { buffer.as_mut() };
            region.read(paddr, bytes).expect("bounce pages in the region");
        }
        region.free_pages(paddr, buffer.len().div_ceil(PAGE));
    }
}
