//! Memory shared by a driver and a device model, seen at different addresses by each.
//!
//! A [`SharedRegion`] is one page-aligned host allocation. The device models see it
//! as guest RAM at [`GUEST_BASE`] (QEMU virt's RAM base) through a `GuestMemory`;
//! the drivers under test reach it at its host address. The two never coincide, so
//! a driver that hands the device a host address instead of translating it
//! (`virt_to_phys`) points the device outside guest RAM, and the device says so
//! (DEVICE_NEEDS_RESET) instead of quietly working.
//!
//! The region is also a small page allocator: the HALs take DMA pages from it, and
//! tests take data buffers ([`RegionBuffer`]) from it, at any byte offset.
#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use hypervisor::mm::guest_memory::{GuestMemory, GuestMemoryError, RamChunk};

/// Where the device models see the region: QEMU virt's RAM base, as a guest has it.
pub const GUEST_BASE: u64 = platform::qemu_virt::RAM_BASE;
/// The page size the allocator counts in (the HALs' too).
pub const PAGE: usize = 4096;
/// Default size of a region: enough for a blk and a console driver, their rings and
/// every buffer a test uses.
pub const DEFAULT_PAGES: usize = 512;

/// A page-aligned run of host memory shared by drivers and device models.
///
/// Neither side holds a Rust reference into it for longer than one access, except
/// the buffers a test hands a driver, under the driver's contract (the CPU leaves a
/// buffer alone while the device owns it), as for a guest's DMA buffer.
#[derive(Debug)]
pub struct SharedRegion {
    /// Host address of the first byte (page aligned).
    host: usize,
    len: usize,
    /// The device's view, for the test's own reads and writes of "guest memory".
    view: GuestMemory,
    /// Which pages are allocated.
    used: Mutex<Vec<bool>>,
}

impl SharedRegion {
    /// A zeroed region of `pages` pages.
    pub fn new(pages: usize) -> Arc<Self> {
        let len = pages.max(1) * PAGE;
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let host =
            NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout)).as_ptr() as usize;
        // The point of the region: no host address of it is a guest address of it.
        let (h, g, n) = (host as u64, GUEST_BASE, len as u64);
        assert!(h + n <= g || g + n <= h, "host memory at {h:#x} overlaps its guest view");
        let chunk = RamChunk { ipa: GUEST_BASE, pa: host as u64, host, size: len as u64 };
        // SAFETY: the allocation is ours, readable and writable, and freed only in
        // `drop`; this view lives inside the region, and every other view is made by
        // `device_view`, whose callers keep the region alive for as long as the view.
        // Rust references into it exist only as described on the type.
        let view = unsafe { GuestMemory::new(vec![chunk]) };
        Arc::new(Self { host, len, view, used: Mutex::new(vec![false; pages.max(1)]) })
    }

    /// A region of [`DEFAULT_PAGES`].
    pub fn with_default_size() -> Arc<Self> {
        Self::new(DEFAULT_PAGES)
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, PAGE).expect("region layout")
    }

    /// Host address of the first byte.
    pub fn host_base(&self) -> usize {
        self.host
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: it has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The guest-physical address of the host address `vaddr`, if it is in the region.
    pub fn to_guest(&self, vaddr: usize) -> Option<u64> {
        let offset = vaddr.checked_sub(self.host).filter(|&o| o < self.len)?;
        Some(GUEST_BASE + offset as u64)
    }

    /// The first guest-physical address past the region.
    pub fn guest_end(&self) -> u64 {
        GUEST_BASE + self.len as u64
    }

    /// A device-side view of the region (guest RAM at [`GUEST_BASE`]).
    ///
    /// The view points into the region without owning it: whoever holds it must also
    /// hold an `Arc` of the region, and drop the view first (see
    /// [`crate::slot::Slot`]).
    pub(crate) fn device_view(&self) -> GuestMemory {
        self.view.clone()
    }

    /// Allocates `pages` contiguous zeroed pages: their guest-physical address and
    /// host pointer, or `None` when the region is full.
    pub fn alloc_pages(&self, pages: usize) -> Option<(u64, NonNull<u8>)> {
        let pages = pages.max(1);
        let mut used = self.used.lock().expect("region allocator");
        let mut run = 0;
        let mut first = None;
        for (i, &u) in used.iter().enumerate() {
            run = if u { 0 } else { run + 1 };
            if run == pages {
                first = Some(i + 1 - pages);
                break;
            }
        }
        let first = first?;
        used[first..first + pages].fill(true);
        drop(used);
        let ipa = GUEST_BASE + (first * PAGE) as u64;
        self.view.zero(ipa, (pages * PAGE) as u64).expect("pages inside the region");
        let host = NonNull::new((self.host + first * PAGE) as *mut u8)?;
        Some((ipa, host))
    }

    /// Gives back `pages` pages from [`alloc_pages`](Self::alloc_pages) at `ipa`.
    ///
    /// # Panics
    ///
    /// If they are not allocated pages of this region (a test or HAL bug).
    pub fn free_pages(&self, ipa: u64, pages: usize) {
        let first = ipa.checked_sub(GUEST_BASE).map(|o| o as usize / PAGE).expect("page in the region");
        let mut used = self.used.lock().expect("region allocator");
        let run = used.get_mut(first..first + pages.max(1)).expect("pages in the region");
        assert!(run.iter().all(|&u| u), "freeing pages that are not allocated");
        run.fill(false);
    }

    /// Pages allocated now.
    pub fn pages_in_use(&self) -> usize {
        self.used.lock().expect("region allocator").iter().filter(|&&u| u).count()
    }

    /// A zeroed buffer of `len` bytes that starts `misalign` bytes past a page
    /// boundary (so not sector- or even word-aligned when `misalign` is odd).
    ///
    /// # Panics
    ///
    /// When the region is full.
    pub fn buffer(self: &Arc<Self>, len: usize, misalign: usize) -> RegionBuffer {
        let pages = (misalign + len).div_ceil(PAGE).max(1);
        let (ipa, host) = self.alloc_pages(pages).expect("shared region full");
        RegionBuffer {
            region: self.clone(),
            page_ipa: ipa,
            pages,
            host: host.as_ptr() as usize + misalign,
            len,
        }
    }

    /// Copies guest memory at `ipa` into `out`, as the device would see it.
    ///
    /// # Errors
    ///
    /// When the range is not all in the region.
    pub fn read(&self, ipa: u64, out: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.view.read(ipa, out)
    }

    /// Writes `data` at guest-physical `ipa`.
    ///
    /// # Errors
    ///
    /// When the range is not all in the region.
    pub fn write(&self, ipa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.view.write(ipa, data)
    }

    /// Reads the little-endian u16 at `ipa` (one access when aligned).
    ///
    /// # Panics
    ///
    /// Outside the region.
    pub fn read_u16(&self, ipa: u64) -> u16 {
        self.view.read_u16(ipa).expect("inside the region")
    }

    /// Reads the little-endian u32 at `ipa`.
    ///
    /// # Panics
    ///
    /// Outside the region.
    pub fn read_u32(&self, ipa: u64) -> u32 {
        self.view.read_u32(ipa).expect("inside the region")
    }

    /// Writes a little-endian u16 at `ipa` (one access when aligned).
    ///
    /// # Panics
    ///
    /// Outside the region.
    pub fn write_u16(&self, ipa: u64, value: u16) {
        self.view.write_u16(ipa, value).expect("inside the region");
    }

    /// Writes a little-endian u32 at `ipa`.
    ///
    /// # Panics
    ///
    /// Outside the region.
    pub fn write_u32(&self, ipa: u64, value: u32) {
        self.view.write_u32(ipa, value).expect("inside the region");
    }

    /// Writes a little-endian u64 at `ipa`.
    ///
    /// # Panics
    ///
    /// Outside the region.
    pub fn write_u64(&self, ipa: u64, value: u64) {
        self.view.write_u64(ipa, value).expect("inside the region");
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every device view is gone (the
        // views' holders keep an `Arc` of the region), and so is every buffer.
        unsafe { dealloc(self.host as *mut u8, Self::layout(self.len)) }
    }
}

/// A data buffer in a [`SharedRegion`], for handing to a driver. Its pages go back
/// to the region when it is dropped.
#[derive(Debug)]
pub struct RegionBuffer {
    region: Arc<SharedRegion>,
    page_ipa: u64,
    pages: usize,
    host: usize,
    len: usize,
}

impl RegionBuffer {
    /// The bytes, for the CPU (the driver, or the test between requests).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `host..host + len` lies in pages this buffer owns in a live region
        // (the `Arc`); the CPU side makes no other reference to them, and the device
        // reads or writes them only while a driver has handed them over, during which
        // the driver's contract keeps the CPU off them.
        unsafe { std::slice::from_raw_parts(self.host as *const u8, self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the reference unique on the CPU
        // side.
        unsafe { std::slice::from_raw_parts_mut(self.host as *mut u8, self.len) }
    }

    /// The guest-physical address of the first byte.
    pub fn guest_addr(&self) -> u64 {
        self.region.to_guest(self.host).expect("buffer inside its region")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for RegionBuffer {
    fn drop(&mut self) {
        self.region.free_pages(self.page_ipa, self.pages);
    }
}
