//! The one way Sluice reads and writes a guest's RAM.
//!
//! Guest RAM is a list of chunks of host memory, each mapped at a guest-physical
//! address. Every access names a guest-physical range that is checked against the
//! chunks first; nothing outside this module holds a pointer or a Rust reference
//! into guest memory. A guest may change its memory at any time, so the compiler
//! must not assume it stays put: copies are made by an assembly loop (64 bytes a
//! step, `ldp`/`stp`, which the compiler cannot see into) with volatile word
//! accesses at the edges, and typed accesses are volatile.
//!
//! The typed accessors ([`GuestMemory::read_u16`] and friends) make one single-copy
//! atomic access when the value is naturally aligned, so a device reading a ring
//! index that the guest updates concurrently sees either the old or the new value,
//! never a mix of the two (virtio 1.2 §2.7: the ring indices are naturally aligned
//! 16-bit fields written with one store).
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
///
/// A clone is another view of the same memory (it copies the chunk list, not the
/// RAM): device models that need to reach the VM's RAM hold one. The contract of
/// [`GuestMemory::new`] covers every clone.
#[derive(Debug, Clone)]
pub struct GuestMemory {
    chunks: Vec<RamChunk>,
}

impl GuestMemory {
    /// Guest memory made of `chunks`.
    ///
    /// # Safety
    ///
    /// For as long as the value or any of its clones lives, each chunk's
    /// `[host, host + size)` must be memory the hypervisor can read and write, owned
    /// by this VM alone, and never referenced by Rust references.
    pub unsafe fn new(mut chunks: Vec<RamChunk>) -> Self {
        chunks.sort_by_key(|c| c.ipa);
        Self { chunks }
    }

    /// Memory made of one buffer that lives for ever, seen at `ipa` (host tests, and
    /// anything else that owns a leaked buffer). The chunk's `pa` is the buffer's
    /// address.
    pub fn from_static(ipa: u64, ram: &'static mut [u8]) -> Self {
        let host = ram.as_mut_ptr() as usize;
        let chunk = RamChunk { ipa, pa: host as u64, host, size: ram.len() as u64 };
        // SAFETY: `ram` is borrowed mutably for 'static and moved in here, so nothing
        // else can ever reference those bytes; from now on they are reached only
        // through raw pointers by this value and its clones.
        unsafe { Self::new(alloc::vec![chunk]) }
    }

    /// The chunks, in guest-physical order (for building stage-2 tables).
    pub fn chunks(&self) -> &[RamChunk] {
        &self.chunks
    }

    /// The same memory cut off at `len` bytes from the lowest address (a disk whose
    /// RAM was allocated in larger blocks than its size).
    pub fn prefix(&self, len: u64) -> Self {
        let base = self.chunks.first().map_or(0, |c| c.ipa);
        let end = base.saturating_add(len);
        let chunks = self
            .chunks
            .iter()
            .filter(|c| c.ipa < end)
            .map(|c| RamChunk { size: c.size.min(end - c.ipa), ..*c })
            .collect();
        Self { chunks }
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
        if let Some(host) = self.host_within_chunk(ipa, data.len()) {
            // SAFETY: the range lies inside one chunk, valid, exclusively ours and
            // unreferenced (see `new`).
            unsafe { copy_bytes(data.as_ptr(), host as *mut u8, data.len()) };
            return Ok(());
        }
        let mut done = 0;
        for (host, len) in self.spans(ipa, data.len() as u64)? {
            // SAFETY: `spans` returned a range inside one chunk, which `new`'s contract
            // makes valid, exclusively ours and unreferenced; `data` has `len` bytes left.
            unsafe { copy_bytes(data[done..].as_ptr(), host as *mut u8, len) };
            done += len;
        }
        Ok(())
    }

    /// Copies `len` bytes of `src` (another VM's RAM, or a disk) at `src_ipa` into
    /// this memory at `ipa`, with no copy in between.
    ///
    /// # Errors
    ///
    /// `OutOfRange` (for this memory's range, or `src`'s) if any byte of either side
    /// is not RAM; nothing is written then.
    pub fn copy_from(
        &self,
        ipa: u64,
        src: &GuestMemory,
        src_ipa: u64,
        len: u64,
    ) -> Result<(), GuestMemoryError> {
        if !src.contains(src_ipa, len) {
            return Err(GuestMemoryError::OutOfRange { ipa: src_ipa, len });
        }
        let mut done = 0;
        for (host, n) in self.spans(ipa, len)? {
            let mut to = host;
            for (from, m) in src.spans(src_ipa + done, n as u64)? {
                // SAFETY: both ranges come from `spans`, each inside one chunk of its
                // memory (valid, exclusively the VM's or the disk's, see `new`); the
                // `m`s of `src` add up to this span's `n`, so `to` stays inside it.
                unsafe { copy_bytes(from as *const u8, to as *mut u8, m) };
                to += m;
            }
            done += n as u64;
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
            unsafe { zero_bytes(host as *mut u8, len, false) };
        }
        Ok(())
    }

    /// Zeroes guest memory at `ipa` as [`Self::zero`] does, and its allocation
    /// tags too, in whole `DC GZVA` blocks: for a VM's RAM when it (re)starts on a
    /// CPU with tag storage (which EL2 reaches: `arch::aarch64::el2::mmu_on`), so it
    /// finds nothing of a previous run, tags included. (A device's writes into
    /// guest buffers use [`Self::zero`]: they leave the guest's tags alone.)
    ///
    /// # Errors
    ///
    /// `OutOfRange` if any byte of the range is not RAM; nothing is zeroed then.
    pub fn zero_with_tags(&self, ipa: u64, len: u64) -> Result<(), GuestMemoryError> {
        for (host, len) in self.spans(ipa, len)? {
            // SAFETY: `spans` returned a range inside one chunk (see `new`).
            unsafe { zero_bytes(host as *mut u8, len, true) };
        }
        Ok(())
    }

    /// Copies guest memory at `ipa` into `buf`.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if any byte of the source is not RAM; `buf` is unchanged then.
    pub fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        if let Some(host) = self.host_within_chunk(ipa, buf.len()) {
            // SAFETY: as in `write`, with `buf` as the destination.
            unsafe { copy_bytes(host as *const u8, buf.as_mut_ptr(), buf.len()) };
            return Ok(());
        }
        let mut done = 0;
        for (host, len) in self.spans(ipa, buf.len() as u64)? {
            // SAFETY: as in `write`, with `buf` as the destination.
            unsafe { copy_bytes(host as *const u8, buf[done..].as_mut_ptr(), len) };
            done += len;
        }
        Ok(())
    }

    /// Reads a little-endian u32 at `ipa`, with one 32-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the four bytes are not all RAM.
    pub fn read_u32(&self, ipa: u64) -> Result<u32, GuestMemoryError> {
        self.read_scalar(ipa)
    }

    /// Reads a little-endian u16 at `ipa`, with one 16-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the two bytes are not all RAM.
    pub fn read_u16(&self, ipa: u64) -> Result<u16, GuestMemoryError> {
        self.read_scalar(ipa)
    }

    /// Reads a little-endian u64 at `ipa`, with one 64-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the eight bytes are not all RAM.
    pub fn read_u64(&self, ipa: u64) -> Result<u64, GuestMemoryError> {
        self.read_scalar(ipa)
    }

    /// Writes `value` little-endian at `ipa`, with one 16-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the two bytes are not all RAM; nothing is written then.
    pub fn write_u16(&self, ipa: u64, value: u16) -> Result<(), GuestMemoryError> {
        self.write_scalar(ipa, value)
    }

    /// Writes `value` little-endian at `ipa`, with one 32-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the four bytes are not all RAM; nothing is written then.
    pub fn write_u32(&self, ipa: u64, value: u32) -> Result<(), GuestMemoryError> {
        self.write_scalar(ipa, value)
    }

    /// Writes `value` little-endian at `ipa`, with one 64-bit access when it is aligned.
    ///
    /// # Errors
    ///
    /// `OutOfRange` if the eight bytes are not all RAM; nothing is written then.
    pub fn write_u64(&self, ipa: u64, value: u64) -> Result<(), GuestMemoryError> {
        self.write_scalar(ipa, value)
    }

    fn read_scalar<T: LeScalar>(&self, ipa: u64) -> Result<T, GuestMemoryError> {
        if let Some(host) = self.aligned_host(ipa, T::SIZE) {
            // SAFETY: `aligned_host` found all of the value inside one chunk (valid
            // and exclusively ours, see `new`) at an address aligned for `T`.
            return Ok(unsafe { (host as *const T).read_volatile() }.le_to_native());
        }
        let mut bytes = [0; 8];
        self.read(ipa, &mut bytes[..T::SIZE])?;
        Ok(T::from_le_bytes(&bytes[..T::SIZE]))
    }

    fn write_scalar<T: LeScalar>(&self, ipa: u64, value: T) -> Result<(), GuestMemoryError> {
        if let Some(host) = self.aligned_host(ipa, T::SIZE) {
            // SAFETY: as in `read_scalar`.
            unsafe { (host as *mut T).write_volatile(value.native_to_le()) };
            return Ok(());
        }
        let mut bytes = [0; 8];
        value.to_le_bytes(&mut bytes[..T::SIZE]);
        self.write(ipa, &bytes[..T::SIZE])
    }

    /// The host address of `[ipa, ipa + len)` if it lies inside one chunk and the
    /// host address is a multiple of `len` (a power of two).
    fn aligned_host(&self, ipa: u64, len: usize) -> Option<usize> {
        self.host_within_chunk(ipa, len).filter(|host| host.is_multiple_of(len))
    }

    /// The host address of `[ipa, ipa + len)` if it lies inside one chunk: the
    /// common case (a descriptor, a header, a buffer), with no span list to walk.
    #[inline]
    fn host_within_chunk(&self, ipa: u64, len: usize) -> Option<usize> {
        let c = self.chunks.iter().find(|c| ipa.wrapping_sub(c.ipa) < c.size)?;
        let offset = ipa - c.ipa;
        (len as u64 <= c.size - offset).then(|| c.host + offset as usize)
    }

    /// The host ranges `(address, length)` behind `[ipa, ipa + len)`, after checking
    /// that all of it is RAM.
    fn spans(
        &self,
        ipa: u64,
        len: u64,
    ) -> Result<impl Iterator<Item = (usize, usize)> + '_, GuestMemoryError> {
        Ok(self.chunk_spans(ipa, len)?.map(|(c, offset, len)| (c.host + offset as usize, len as usize)))
    }

    /// The host-physical ranges `(address, length)` behind `[ipa, ipa + len)`, in
    /// order, one per chunk it touches, after checking that all of it is RAM: where a
    /// device doing DMA for the guest finds its bytes.
    ///
    /// # Errors
    ///
    /// [`GuestMemoryError::OutOfRange`] if any of the range is not RAM.
    pub fn physical_spans(
        &self,
        ipa: u64,
        len: u64,
    ) -> Result<impl Iterator<Item = (u64, u64)> + '_, GuestMemoryError> {
        Ok(self.chunk_spans(ipa, len)?.map(|(c, offset, len)| (c.pa + offset, len)))
    }

    /// The chunks behind `[ipa, ipa + len)`, each with the offset and length of the
    /// part in the range, after checking that all of it is RAM.
    fn chunk_spans(
        &self,
        ipa: u64,
        len: u64,
    ) -> Result<impl Iterator<Item = (&RamChunk, u64, u64)> + '_, GuestMemoryError> {
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
            (start < stop).then(|| (c, start - c.ipa, stop - start))
        }))
    }
}

/// The unsigned integers the typed accessors move.
trait LeScalar: Copy {
    const SIZE: usize;
    /// A value as loaded from little-endian memory, in native order.
    fn le_to_native(self) -> Self;
    /// A native value in the order to store as little-endian.
    fn native_to_le(self) -> Self;
    fn from_le_bytes(bytes: &[u8]) -> Self;
    fn to_le_bytes(self, out: &mut [u8]);
}

macro_rules! le_scalar {
    ($($ty:ty),*) => {$(
        impl LeScalar for $ty {
            const SIZE: usize = core::mem::size_of::<$ty>();
            fn le_to_native(self) -> Self {
                <$ty>::from_le(self)
            }
            fn native_to_le(self) -> Self {
                <$ty>::to_le(self)
            }
            fn from_le_bytes(bytes: &[u8]) -> Self {
                let mut b = [0; core::mem::size_of::<$ty>()];
                b.copy_from_slice(bytes);
                <$ty>::from_le_bytes(b)
            }
            fn to_le_bytes(self, out: &mut [u8]) {
                out.copy_from_slice(&<$ty>::to_le_bytes(self));
            }
        }
    )*};
}
le_scalar!(u16, u32, u64);

/// Copies `len` bytes at memory speed: the 64-byte blocks with [`copy_blocks`], the
/// rest with [`volatile_copy`].
///
/// # Safety
///
/// As [`volatile_copy`].
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let done = len / 64 * 64;
    // SAFETY: the blocks and the tail lie inside the caller's ranges.
    unsafe {
        if done > 0 {
            copy_blocks(src, dst, done / 64);
        }
        volatile_copy(src.add(done), dst.add(done), len - done);
    }
}

/// Copies `blocks` blocks of 64 bytes with an `ldp`/`stp` loop, opaque to the
/// compiler (EL2 allows unaligned accesses to Normal memory: SCTLR_EL2.A = 0).
///
/// # Safety
///
/// As [`volatile_copy`], for `64 * blocks` bytes; `blocks` is not 0.
#[cfg(bare_metal)]
unsafe fn copy_blocks(src: *const u8, dst: *mut u8, blocks: usize) {
    // SAFETY: the loop reads [src, src + 64 * blocks) and writes [dst, dst + 64 *
    // blocks), which the caller allows; the registers it changes are declared.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a}, {b}, [{src}], #16",
            "ldp {c}, {d}, [{src}], #16",
            "stp {a}, {b}, [{dst}], #16",
            "stp {c}, {d}, [{dst}], #16",
            "ldp {a}, {b}, [{src}], #16",
            "ldp {c}, {d}, [{src}], #16",
            "stp {a}, {b}, [{dst}], #16",
            "stp {c}, {d}, [{dst}], #16",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) blocks => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack)
        )
    };
}

/// [`copy_blocks`] on the host (tests, where nothing else touches the buffers).
///
/// # Safety
///
/// As [`volatile_copy`], for `64 * blocks` bytes.
#[cfg(not(bare_metal))]
unsafe fn copy_blocks(src: *const u8, dst: *mut u8, blocks: usize) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, 64 * blocks) };
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

/// Writes `len` zero bytes at `dst`. In the bare-metal build the whole cache blocks
/// in the middle go with `DC ZVA`, one instruction per block (64 bytes on QEMU's
/// CPUs, where it is a host memset), the unaligned edges with [`volatile_zero`]:
/// zeroing a VM's RAM at load is then a fraction of a second, not seconds, under
/// emulation. (RAM is Normal memory in EL2's tables, as `DC ZVA` requires.) With
/// `tags`, those blocks go with `DC GZVA`, which zeroes their allocation tags too.
///
/// # Safety
///
/// `dst` must be valid for `len` bytes of writes.
unsafe fn zero_bytes(dst: *mut u8, len: usize, tags: bool) {
    #[cfg(not(bare_metal))]
    let _ = tags;
    #[cfg(bare_metal)]
    if let Some(block) = zva_block_size() {
        let (start, end) = ((dst as usize).next_multiple_of(block), (dst as usize + len) / block * block);
        if start < end {
            // SAFETY: both edges lie inside [dst, dst + len) (caller's contract).
            unsafe {
                volatile_zero(dst, start - dst as usize);
                volatile_zero(end as *mut u8, dst as usize + len - end);
            }
            let mut at = start;
            if tags {
                while at < end {
                    // SAFETY: as below; DC GZVA (`sys #3, c7, c4, #4`) zeroes one block
                    // and its allocation tags, which the guest alone uses.
                    unsafe {
                        core::arch::asm!("sys #3, c7, c4, #4, {}", in(reg) at, options(nostack, preserves_flags))
                    };
                    at += block;
                }
            }
            // Four blocks a step while they fit, then one.
            while at + 4 * block <= end {
                // SAFETY: the four blocks lie inside [dst, dst + len), which the
                // caller lets us write; DC ZVA writes zeros to exactly one block.
                unsafe {
                    core::arch::asm!(
                        "dc zva, {a}", "dc zva, {b}", "dc zva, {c}", "dc zva, {d}",
                        a = in(reg) at, b = in(reg) at + block, c = in(reg) at + 2 * block, d = in(reg) at + 3 * block,
                        options(nostack, preserves_flags)
                    )
                };
                at += 4 * block;
            }
            while at < end {
                // SAFETY: as above, for one block.
                unsafe { core::arch::asm!("dc zva, {}", in(reg) at, options(nostack, preserves_flags)) };
                at += block;
            }
            // SAFETY: a barrier only; the zeros are seen before what follows.
            unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
            return;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { volatile_zero(dst, len) }
}

/// The bytes `DC ZVA` zeroes (DCZID_EL0.BS words), or `None` where it is prohibited
/// (DCZID_EL0.DZP).
#[cfg(bare_metal)]
fn zva_block_size() -> Option<usize> {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags))
    };
    (dczid & (1 << 4) == 0).then(|| 4 << (dczid & 0xf))
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
    fn copies_of_every_length_and_alignment_land_exactly() {
        let (mem, _a, _b) = two_chunks();
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        for start in [0x4000_0001, 0x4000_0005, 0x4000_ff41, 0x4000_ffff] {
            for len in [0, 1, 7, 63, 64, 65, 128, 200, 300] {
                mem.zero(0x4000_0000, 0x2_0000).unwrap();
                mem.write(start, &data[..len]).unwrap();
                let mut back = vec![0u8; len + 2];
                mem.read(start - 1, &mut back).unwrap();
                assert_eq!(back[0], 0, "nothing written before {start:#x}");
                assert_eq!(&back[1..=len], &data[..len], "{len} bytes at {start:#x}");
                assert_eq!(back[len + 1], 0, "nothing written after {len} bytes at {start:#x}");
            }
        }
    }

    #[test]
    fn copies_between_memories_across_both_sides_chunks() {
        let (vm, _a, _b) = two_chunks();
        let (disk_a, disk_b) = (vec![0u64; 512], vec![0u64; 512]);
        let chunk = |ipa, buf: &Vec<u64>| RamChunk { ipa, pa: 0, host: buf.as_ptr() as usize, size: 4096 };
        // SAFETY: the buffers outlive `disk` and are touched only through it.
        let disk = unsafe { GuestMemory::new(vec![chunk(0, &disk_a), chunk(4096, &disk_b)]) };
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        disk.write(3000, &data).unwrap();
        // 3000 bytes that cross the disk's chunk boundary into the VM's.
        vm.copy_from(0x4000_f800, &disk, 3000, 3000).unwrap();
        let mut back = vec![0u8; 3000];
        vm.read(0x4000_f800, &mut back).unwrap();
        assert_eq!(back, data);
        // Out of range on either side: refused, nothing written.
        vm.zero(0x4000_0000, 0x100).unwrap();
        let refused = GuestMemoryError::OutOfRange { ipa: 8000, len: 0x100 };
        assert_eq!(vm.copy_from(0x4000_0000, &disk, 8000, 0x100), Err(refused));
        assert!(vm.copy_from(0x4001_ff80, &disk, 0, 0x100).is_err());
        assert_eq!(vm.read_u64(0x4000_0000).unwrap(), 0);
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
    fn typed_accessors_aligned_unaligned_and_across_chunks() {
        let (mem, _a, _b) = two_chunks();
        mem.write_u16(0x4000_0002, 0xbeef).unwrap();
        mem.write_u32(0x4000_0004, 0x1234_5678).unwrap();
        mem.write_u64(0x4000_0008, 0x0102_0304_0506_0708).unwrap();
        let mut raw = [0u8; 14];
        mem.read(0x4000_0002, &mut raw).unwrap();
        assert_eq!(raw, [0xef, 0xbe, 0x78, 0x56, 0x34, 0x12, 8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(mem.read_u16(0x4000_0002).unwrap(), 0xbeef);
        assert_eq!(mem.read_u64(0x4000_0008).unwrap(), 0x0102_0304_0506_0708);
        // Unaligned, and straddling the two chunks: byte copies, same result.
        mem.write_u64(0x4000_fffb, u64::MAX - 1).unwrap();
        assert_eq!(mem.read_u64(0x4000_fffb).unwrap(), u64::MAX - 1);
        mem.write_u16(0x4000_ffff, 0xa55a).unwrap();
        assert_eq!(mem.read_u16(0x4000_ffff).unwrap(), 0xa55a);
        assert_eq!((mem.read_u32(0x4000_fffe).unwrap() >> 8) & 0xffff, 0xa55a);
        // Out of range: refused, nothing written.
        assert!(mem.write_u32(0x4001_fffe, 0xffff_ffff).is_err());
        assert_eq!(mem.read_u16(0x4001_fffe).unwrap(), 0);
        assert!(mem.read_u16(0x4002_0000).is_err());
        assert!(mem.read_u64(u64::MAX - 3).is_err());
    }

    #[test]
    fn clones_and_static_buffers_view_the_same_memory() {
        let mem = GuestMemory::from_static(0x1000, alloc::boxed::Box::leak(vec![0u8; 64].into_boxed_slice()));
        let view = mem.clone();
        mem.write_u32(0x1010, 7).unwrap();
        assert_eq!(view.read_u32(0x1010).unwrap(), 7);
        assert_eq!(view.size(), 64);
        assert!(!view.contains(0x1040, 1));
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

    #[test]
    fn a_prefix_ends_where_it_is_told() {
        let (mem, _a, _b) = two_chunks();
        let short = mem.prefix(0x1_8000);
        assert_eq!(short.size(), 0x1_8000);
        assert!(short.contains(0x4001_7fff, 1));
        assert!(!short.contains(0x4001_8000, 1));
        assert_eq!(mem.prefix(0x8000).chunks().len(), 1);
    }
}
