//! Guest RAM (or a RAM disk) for the device models under the fuzzer, with guard
//! bytes around every chunk.
//!
//! Each chunk is its own host allocation: [`GUARD`] bytes of [`GUARD_BYTE`], the
//! chunk, and [`GUARD`] more. The device models reach the chunks only through the
//! [`GuestMemory`] built over them, as at EL2; a device that wrote outside its VM's
//! RAM through some path that skipped the bounds checks would change a guard
//! byte ([`GuardedRam::check_guards`]) or, past the allocation, trip
//! AddressSanitizer. Several chunks, not all contiguous on the host or in the
//! guest-physical space, make accesses that cross a chunk boundary or fall in a
//! hole part of what is fuzzed: a VM's RAM is made of such chunks too.
//!
//! The allocations are made once per process and never freed, so a
//! [`GuestMemory`] view can never outlive them; each run clears them
//! ([`GuardedRam::clear`]).
#![allow(unsafe_code)]

use hypervisor::mm::guest_memory::{GuestMemory, RamChunk};

/// Guard bytes before and after each chunk.
pub const GUARD: usize = 64;
/// What the guard bytes hold.
pub const GUARD_BYTE: u8 = 0xa5;

/// One chunk: where the guest sees it and where its allocation (guards
/// included) starts.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    ipa: u64,
    size: usize,
    /// Host address of the first guard byte.
    alloc: usize,
}

/// Memory made of guarded chunks, and the [`GuestMemory`] over it.
#[derive(Debug)]
pub struct GuardedRam {
    chunks: Vec<Chunk>,
    memory: GuestMemory,
}

impl GuardedRam {
    /// Allocates chunks of `(guest-physical address, size)` for the rest of the
    /// process (keep the result in a `static`) and writes their guards.
    pub fn leak(layout: &[(u64, usize)]) -> &'static Self {
        let chunks: Vec<Chunk> = layout
            .iter()
            .map(|&(ipa, size)| {
                let alloc: &'static mut [u8] = Box::leak(vec![0u8; size + 2 * GUARD].into_boxed_slice());
                Chunk { ipa, size, alloc: alloc.as_mut_ptr() as usize }
            })
            .collect();
        let ram_chunks = chunks
            .iter()
            .map(|c| RamChunk {
                ipa: c.ipa,
                pa: (c.alloc + GUARD) as u64,
                host: c.alloc + GUARD,
                size: c.size as u64,
            })
            .collect();
        // SAFETY: every chunk lies inside an allocation leaked above, so it stays
        // readable and writable for the rest of the process; nothing but this value
        // (through raw pointers, for the guards) and the views it hands out reaches
        // the allocations, and no Rust reference to them is kept (the `&'static mut`
        // from `Box::leak` was turned into an address at once).
        let memory = unsafe { GuestMemory::new(ram_chunks) };
        let ram = Box::leak(Box::new(Self { chunks, memory }));
        ram.clear();
        ram
    }

    /// Another view of the memory, for a device model.
    pub fn memory(&self) -> GuestMemory {
        self.memory.clone()
    }

    /// The chunks as `(guest-physical address, size)`, lowest first.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut chunks: Vec<_> = self.chunks.iter().map(|c| (c.ipa, c.size as u64)).collect();
        chunks.sort_unstable();
        chunks.into_iter()
    }

    /// Total bytes of RAM.
    pub fn size(&self) -> usize {
        self.chunks.iter().map(|c| c.size).sum()
    }

    /// Zeroes the RAM and rewrites the guards.
    pub fn clear(&self) {
        for c in &self.chunks {
            self.memory.zero(c.ipa, c.size as u64).expect("a chunk is RAM");
            for i in (0..GUARD).chain(GUARD + c.size..2 * GUARD + c.size) {
                // SAFETY: `i` is inside the chunk's allocation (see `leak`), in a
                // guard, which no view of the memory covers.
                unsafe { (c.alloc as *mut u8).add(i).write_volatile(GUARD_BYTE) };
            }
        }
    }

    /// Panics, saying where, if a guard byte changed.
    pub fn check_guards(&self) {
        const INTACT: [u8; GUARD] = [GUARD_BYTE; GUARD];
        for c in &self.chunks {
            for (start, side) in [(0, "before"), (GUARD + c.size, "after")] {
                // SAFETY: the guard lies inside the chunk's allocation (see `leak`),
                // which no view of the memory covers; the slice lives for this
                // comparison only (a plain `memcmp`, which the fuzzer's coverage
                // instrumentation leaves alone, unlike a loop over the bytes).
                let guard = unsafe { std::slice::from_raw_parts((c.alloc + start) as *const u8, GUARD) };
                if guard != INTACT {
                    let i = guard.iter().position(|&b| b != GUARD_BYTE).unwrap_or(0);
                    panic!(
                        "guard byte {i} {side} the chunk at {:#x} was overwritten: a write outside guest RAM",
                        c.ipa
                    );
                }
            }
        }
    }

    /// Every byte of RAM, chunk after chunk in guest-physical order, into `out`
    /// (a plain copy: the fuzzer's thread is the only one that reaches the memory).
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut chunks = self.chunks.clone();
        chunks.sort_unstable_by_key(|c| c.ipa);
        for c in chunks {
            // SAFETY: the chunk lies inside its allocation (see `leak`), which lives
            // for the rest of the process; nothing writes it during the copy.
            let bytes = unsafe { std::slice::from_raw_parts((c.alloc + GUARD) as *const u8, c.size) };
            out.extend_from_slice(bytes);
        }
    }

    /// The guest-physical address of byte `index` of a [`snapshot`](Self::snapshot).
    pub fn address_of(&self, mut index: usize) -> u64 {
        for (ipa, size) in self.chunks() {
            if (index as u64) < size {
                return ipa + index as u64;
            }
            index -= size as usize;
        }
        panic!("byte {index} is past the snapshot");
    }
}
