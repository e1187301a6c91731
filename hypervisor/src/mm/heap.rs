//! The hypervisor's heap: a static region in .bss, managed by a buddy allocator.
#![allow(unsafe_code)]

use buddy_system_allocator::LockedHeap;

/// Bytes of heap.
const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapMemory([u8; HEAP_SIZE]);

static mut HEAP_MEMORY: HeapMemory = HeapMemory([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap region to the allocator; called once, first thing at boot.
pub fn init() {
    // SAFETY: called once on the boot CPU before any allocation; the region is ours
    // alone from here on and is only reached through the allocator.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_MEMORY) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}
