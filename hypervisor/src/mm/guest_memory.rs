//! The one way Sluice reads and writes a guest's RAM.
//!
//! Guest RAM is a list of chunks of host memory, each mapped at a guest-physical
//! address. Every access names a guest-physical range that is checked against the
//! chunks first; nothing outside this module holds a pointer or a Rust reference
//! into guest memory. Copies are made with volatile word accesses, because a guest
//! may change its memory at any time.
#![allow(unsafe_code)]

use alloc::vec::Vec;
use platform::Region;

/// A run of guest RAM backed by contiguous host memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamChunk {
    /// Guest-physical address of the first byte.
    pub ipa: u64,
    /// Host-physical address of the first byte (what stage 2 maps).
    pub pa: u64,
    /// Address at which the hypervisor reaches the first byte.
    pub host: usize,
    /// Length in bytes.
    pub size: u64,
}

/// Why a guest memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// Some byte of `[ipa, ipa + len)` is not guest RAM.
    OutOfRange {
        /// First address of the access.
        ipa: u64,
        /// Length of the access.
        len: u64,
    },
}

impl core::fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange { ipa, len } => {
                write!(f, "[{ipa:#x}, {:#x}) is not guest RAM", ipa.saturating_add(*len))
            }
        }
    }
}

/// A VM's RAM.
#[derive(Debug)]
pub struct GuestMemory {
    chunks: Vec<RamChunk>,
}

impl GuestMemory {
    /// Guest memory made of `chunks`.
    ///
    /// # Safety
    ///
    /// For as long as the value lives, each chunk's `[host, host + size)` must be
    /// memory the hypervisor can read and write, owned by this VM alone, and never
    /// referenced by Rust references.
    pub unsafe fn new(mut chunks: Vec<RamChunk>) -> Self {
        chunks.sort_by_key(|c| c.ipa);
        Self { chunks }
    }

    /// The chunks, in guest-physical order (for building stage-2 tables).
    pub fn chunks(&self) -> &[RamChunk] {
        &self.chunks
    }

    /// Total bytes of RAM.
    pub fn size(&self) -> u64 {
        self.chunks.iter().map(|c| c.size).sum()
    }

    /// Whether all of `[ipa, ipa + len)` is RAM.
    pub fn contains(&self, ipa: u64, len: u64) -> bool {
        self.spans(ipa, len).is_ok()
    }

    /// Copies `data` into guest memory at `ipa`.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if any byte of the destination is not RAM; nothing is written then.
    pub fn write(&self, ipa: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let mut done = 0;
        for (host, len) in self.spans(ipa, data.len() as u64)? {
            // SAFETY: `spans` returned a range inside one chunk, which `new`'s contract
            // makes valid, exclusively ours and unreferenced; `data` has `len` bytes left.
            unsafe { volatile_copy(data[done..].as_ptr(), host as *mut u8, len) };
            done += len;
        }
        Ok(())
    }

    /// Fills `[ipa, ipa + len)` with zeros.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if any byte is not RAM; nothing is written then.
    pub fn zero(&self, ipa: u64, len: u64) -> Result<(), GuestMemoryError> {
        for (host, len) in self.spans(ipa, len)? {
            // SAFETY: `spans` returned a range inside one chunk (see `new`).
            unsafe { volatile_zero(host as *mut u8, len) };
        }
        Ok(())
    }

    /// Copies guest memory at `ipa` into `buf`.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if any byte of the source is not RAM; `buf` is unchanged then.
    pub fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let mut done = 0;
        for (host, len) in self.spans(ipa, buf.len() as u64)? {
            // SAFETY: as in `write`, with `buf` as the destination.
            unsafe { volatile_copy(host as *const u8, buf[done..].as_mut_ptr(), len) };
            done += len;
        }
        Ok(())
    }

    /// Reads a little-endian u32 at `ipa`.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the four bytes are not all RAM.
    pub fn read_u32(&self, ipa: u64) -> Result<u32, GuestMemoryError> {
        let mut bytes = [0; 4];
        self.read(ipa, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// The host ranges `(address, length)` behind `[ipa, ipa + len)`, after checking
    /// that all of it is RAM.
    fn spans(
        &self,
        ipa: u64,
        len: u64,
    ) -> Result<impl Iterator<Item = (usize, usize)> + '_, GuestMemoryError> {
        let error = GuestMemoryError::OutOfRange { ipa, len };
        let end = ipa.checked_add(len).ok_or(error)?;
        // Check coverage first, so a refused access has no effect.
        let mut cursor = ipa;
        for c in &self.chunks {
            if cursor >= end {
                break;
            }
            if Region::new(c.ipa, c.size).contains(cursor) {
                cursor = (c.ipa + c.size).min(end);
            }
        }
        if cursor < end {
            return Err(error);
        }
        Ok(self.chunks.iter().filter_map(move |c| {
            let start = ipa.max(c.ipa);
            let stop = end.min(c.ipa + c.size);
            (start < stop).then(|| (c.host + (start - c.ipa) as usize, (stop - start) as usize))
        }))
    }
}

/// Copies `len` bytes with volatile accesses, a word at a time where both sides align.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes,
/// and the two ranges must not overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    let mut i = 0;
    if (src as usize) % 8 == (dst as usize) % 8 {
        while i < len && !(src as usize + i).is_multiple_of(8) {
            // SAFETY: i < len, inside both ranges (caller's contract).
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
            i += 1;
        }
        while i + 8 <= len {
            // SAFETY: both pointers are 8-aligned here and the 8 bytes are in range.
            unsafe { (dst.add(i) as *mut u64).write_volatile((src.add(i) as *const u64).read_volatile()) };
            i += 8;
        }
    }
    while i < len {
        // SAFETY: i < len, inside both ranges (caller's contract).
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// Writes `len` zero bytes with volatile accesses.
///
/// # Safety
///
/// `dst` must be valid for `len` bytes of writes.
unsafe fn volatile_zero(dst: *mut u8, len: usize) {
    let mut i = 0;
    while i < len && !(dst as usize + i).is_multiple_of(8) {
        // SAFETY: i < len (caller's contract).
        unsafe { dst.add(i).write_volatile(0) };
        i += 1;
    }
    while i + 8 <= len {
        // SAFETY: aligned and in range.
        unsafe { (dst.add(i) as *mut u64).write_volatile(0) };
        i += 8;
    }
    while i < len {
        // SAFETY: i < len.
        unsafe { dst.add(i).write_volatile(0) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Two chunks of fake RAM: 64 KiB at 0x4000_0000 and 64 KiB right after it,
    /// backed by two separate host buffers.
    fn two_chunks() -> (GuestMemory, Vec<u64>, Vec<u64>) {
        let a = vec![0u64; 8192];
        let b = vec![0u64; 8192];
        let chunks = vec![
            RamChunk { ipa: 0x4001_0000, pa: 0x9000_0000, host: b.as_ptr() as usize, size: 0x1_0000 },
            RamChunk { ipa: 0x4000_0000, pa: 0x8000_0000, host: a.as_ptr() as usize, size: 0x1_0000 },
        ];
        // SAFETY: the buffers outlive the GuestMemory in every test and are only
        // touched through it until it is dropped.
        (unsafe { GuestMemory::new(chunks) }, a, b)
    }

    #[test]
    fn round_trips_across_a_chunk_boundary() {
        let (mem, _a, _b) = two_chunks();
        let data: Vec<u8> = (0..100u8).collect();
        mem.write(0x4000_ffd3, &data).unwrap();
        let mut back = vec![0u8; 100];
        mem.read(0x4000_ffd3, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(mem.read_u32(0x4000_ffd3).unwrap(), u32::from_le_bytes([0, 1, 2, 3]));
        assert_eq!(mem.size(), 0x2_0000);
    }

    #[test]
    fn refuses_out_of_range_without_writing() {
        let (mem, _a, _b) = two_chunks();
        let err = mem.write(0x4001_fff0, &[0xaa; 32]).unwrap_err();
        assert_eq!(err, GuestMemoryError::OutOfRange { ipa: 0x4001_fff0, len: 32 });
        let mut b = [0u8; 16];
        mem.read(0x4001_fff0, &mut b).unwrap();
        assert_eq!(b, [0; 16], "a refused write must not write the part that fits");
        assert!(mem.read(0x3fff_ffff, &mut [0; 2]).is_err());
        assert!(mem.read(u64::MAX, &mut [0; 2]).is_err());
        assert!(!mem.contains(0x4002_0000, 1));
        assert!(mem.contains(0x4000_0000, 0x2_0000));
    }

    #[test]
    fn zero_clears_a_range() {
        let (mem, _a, _b) = two_chunks();
        mem.write(0x4000_fff0, &[0xff; 32]).unwrap();
        mem.zero(0x4000_fff8, 16).unwrap();
        let mut back = [0u8; 32];
        mem.read(0x4000_fff0, &mut back).unwrap();
        assert_eq!(&back[..8], &[0xff; 8]);
        assert_eq!(&back[8..24], &[0; 16]);
        assert_eq!(&back[24..], &[0xff; 8]);
    }
}
