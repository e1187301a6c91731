//! Stage-2 translation tables for one VM (Arm ARM DDI 0487, chapter D8: the VMSAv8-64
//! translation system, stage 2 of the EL1&0 regime).
//!
//! The layout is fixed:
//!
//! - 4 KiB translation granule (VTCR_EL2.TG0 = 0b00);
//! - a 39-bit IPA space (VTCR_EL2.T0SZ = 25), so the initial lookup is at level 1
//!   (VTCR_EL2.SL0 = 0b01) from a single 4 KiB root table whose 512 entries cover
//!   1 GiB each; no concatenated root tables are needed;
//! - leaves are 2 MiB level-2 blocks wherever the IPA and the PA are 2 MiB aligned and
//!   at least 2 MiB remain to be mapped, and 4 KiB level-3 pages elsewhere;
//! - output addresses up to 48 bits (the descriptor format without FEAT_LPA2).
//!
//! The tables live in a [`TableMemory`]: identity-mapped frames in the hypervisor, a
//! fake with made-up physical addresses in the tests. The code only ever handles
//! physical addresses and asks the `TableMemory` for the table behind one.
//!
//! [`Stage2::map`] only turns invalid entries into valid ones; it never replaces a
//! valid entry. Translation faults are never held in a TLB, so no break-before-make
//! sequence and no TLB invalidation is needed after a `map` (Arm ARM D8, "Translation
//! Lookaside Buffers"). The caller still has to make the new entries visible to the
//! table walker (`DSB ISHST`) before the guest runs on them.

use core::fmt;

/// Bits of the guest-physical (IPA) address space.
pub const IPA_BITS: u32 = 39;
/// Bits of output (host-physical) address the descriptors can hold.
pub const PA_BITS: u32 = 48;
/// Size of a level-3 page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block.
pub const BLOCK_SIZE: u64 = 2 << 20;

/// Entries in one translation table (4 KiB of 8-byte descriptors).
const ENTRIES: usize = 512;
/// The level the walk starts at (VTCR_EL2.SL0 = 1 with a 4 KiB granule).
const START_LEVEL: usize = 1;
/// The level of page descriptors.
const PAGE_LEVEL: usize = 3;
/// The level of the blocks `map` creates.
const BLOCK_LEVEL: usize = 2;

// Descriptor fields, Arm ARM D8.3 (VMSAv8-64 translation table descriptor formats) and
// its stage-2 block and page attribute fields.
/// Bit 0: the descriptor is valid.
const DESC_VALID: u64 = 1 << 0;
/// Bit 1: table (levels 0-2) or page (level 3); 0 means block at levels 1-2.
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// Next-level table address or output address, bits [47:12].
const ADDR_MASK: u64 = ((1 << PA_BITS) - 1) & !(PAGE_SIZE - 1);
/// Stage-2 MemAttr[3:0], descriptor bits [5:2].
const MEMATTR_SHIFT: u32 = 2;
/// MemAttr for Normal memory, Outer and Inner Write-Back Cacheable.
const MEMATTR_NORMAL_WB: u64 = 0b1111;
/// MemAttr for Device-nGnRE memory.
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
/// MemAttr[3:2] = 0b00 means Device memory (with HCR_EL2.FWB = 0).
const MEMATTR_DEVICE_CLASS_MASK: u64 = 0b1100;
/// Stage-2 access permissions S2AP[1:0], descriptor bits [7:6].
const S2AP_SHIFT: u32 = 6;
/// S2AP: read-only.
const S2AP_READ_ONLY: u64 = 0b01;
/// S2AP: read/write.
const S2AP_READ_WRITE: u64 = 0b11;
/// Shareability SH[1:0], descriptor bits [9:8].
const SH_SHIFT: u32 = 8;
/// SH: Inner Shareable.
const SH_INNER: u64 = 0b11;
/// Access flag, bit 10: set, so the first access does not fault.
const AF: u64 = 1 << 10;
// XN[1:0] (bits [54:53]) stay 0: every mapping is executable at EL1 and EL0.

/// Memory that holds translation tables (identity-mapped frames in the hypervisor, a
/// fake in tests).
pub trait TableMemory {
    /// A zeroed, 4 KiB aligned table; returns its physical address, or `None` when out
    /// of memory.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table at `pa`, which [`alloc_table`](Self::alloc_table) returned earlier.
    fn table(&self, pa: u64) -> &[u64; 512];
    /// The table at `pa`, which [`alloc_table`](Self::alloc_table) returned earlier,
    /// for writing.
    fn table_mut(&mut self, pa: u64) -> &mut [u64; 512];
}

/// The memory type of a mapping (stage-2 MemAttr, Arm ARM D8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM: Normal memory, Inner and Outer Write-Back Cacheable, Inner Shareable.
    Normal,
    /// MMIO: Device-nGnRE (shareability is ignored for Device memory).
    Device,
}

/// What the guest may do with a mapping (stage-2 S2AP, Arm ARM D8.3). Every mapping is
/// executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Loads and stores.
    ReadWrite,
    /// Loads only; a store takes a stage-2 permission fault to EL2.
    ReadOnly,
}

/// Where an IPA leads, as [`Stage2::translate`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the IPA translates to.
    pub pa: u64,
    /// Memory type of the mapping.
    pub kind: MemoryKind,
    /// Access permissions of the mapping.
    pub access: Access,
    /// Size of the block or page holding the IPA (4 KiB, 2 MiB or 1 GiB).
    pub block_size: u64,
}

/// Why a mapping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage2Error {
    /// The [`TableMemory`] had no table left.
    OutOfMemory,
    /// The IPA, PA or size is not a multiple of 4 KiB, or the size is zero.
    Misaligned {
        /// Requested guest-physical start.
        ipa: u64,
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: u64,
    },
    /// The range goes beyond the 39-bit IPA space or beyond 48-bit physical addresses.
    OutOfRange {
        /// Requested guest-physical start.
        ipa: u64,
        /// Requested physical start.
        pa: u64,
        /// Requested size.
        size: u64,
    },
    /// Part of the range is mapped already.
    AlreadyMapped {
        /// The first mapped IPA in the requested range.
        ipa: u64,
    },
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfMemory => write!(f, "out of memory for stage-2 tables"),
            Self::Misaligned { ipa, pa, size } => {
                write!(f, "stage-2 mapping ipa {ipa:#x} -> pa {pa:#x} size {size:#x} is not 4 KiB aligned")
            }
            Self::OutOfRange { ipa, pa, size } => write!(
                f,
                "stage-2 mapping ipa {ipa:#x} -> pa {pa:#x} size {size:#x} exceeds the \
                 {IPA_BITS}-bit IPA or {PA_BITS}-bit PA space"
            ),
            Self::AlreadyMapped { ipa } => write!(f, "ipa {ipa:#x} is mapped already"),
        }
    }
}

/// Whether `value` is a multiple of `align`, a power of two.
const fn is_aligned(value: u64, align: u64) -> bool {
    value & (align - 1) == 0
}

/// Address bits translated below `level`: 30 at level 1, 21 at level 2, 12 at level 3.
const fn level_shift(level: usize) -> u32 {
    12 + 9 * (PAGE_LEVEL - level) as u32
}

/// Bytes one entry at `level` covers.
const fn level_size(level: usize) -> u64 {
    1 << level_shift(level)
}

/// Index of the entry for `ipa` in a table at `level`.
const fn level_index(ipa: u64, level: usize) -> usize {
    ((ipa >> level_shift(level)) as usize) % ENTRIES
}

/// What one descriptor is (Arm ARM D8.3).
enum Descriptor {
    /// Bit 0 clear, or the reserved level-3 encoding 0b01: faults.
    Invalid,
    /// Points to the next-level table at this physical address.
    Table(u64),
    /// A block or page.
    Leaf(u64),
}

impl Descriptor {
    fn decode(desc: u64, level: usize) -> Self {
        let is_valid = desc & DESC_VALID != 0;
        let table_or_page = desc & DESC_TABLE_OR_PAGE != 0;
        match (is_valid, table_or_page, level == PAGE_LEVEL) {
            (false, _, _) => Self::Invalid,
            (true, true, false) => Self::Table(desc & ADDR_MASK),
            (true, true, true) | (true, false, false) => Self::Leaf(desc),
            (true, false, true) => Self::Invalid,
        }
    }
}

/// The deepest entry a walk reaches for one IPA.
enum Walk {
    /// An invalid entry at `level`: nothing in its `level_size(level)` span is mapped.
    Hole { level: usize },
    /// A block or page descriptor at `level`.
    Leaf { desc: u64, level: usize },
}

/// A block (level 2) or page (level 3) descriptor for `pa` (Arm ARM D8.3, stage-2
/// attributes).
fn leaf_descriptor(pa: u64, level: usize, kind: MemoryKind, access: Access) -> u64 {
    let kind_bits = match kind {
        MemoryKind::Normal => (MEMATTR_NORMAL_WB << MEMATTR_SHIFT) | (SH_INNER << SH_SHIFT),
        MemoryKind::Device => MEMATTR_DEVICE_NGNRE << MEMATTR_SHIFT,
    };
    let s2ap = match access {
        Access::ReadWrite => S2AP_READ_WRITE,
        Access::ReadOnly => S2AP_READ_ONLY,
    };
    let type_bits = if level == PAGE_LEVEL { DESC_VALID | DESC_TABLE_OR_PAGE } else { DESC_VALID };
    (pa & ADDR_MASK) | kind_bits | (s2ap << S2AP_SHIFT) | AF | type_bits
}

/// One VM's stage-2 translation tables.
#[derive(Debug)]
pub struct Stage2 {
    /// Physical address of the level-1 root table.
    root: u64,
}

impl Stage2 {
    /// Creates empty tables: one zeroed root table, so every IPA faults.
    ///
    /// # Errors
    ///
    /// [`Stage2Error::OutOfMemory`] if `mem` has no table for the root.
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, Stage2Error> {
        let root = alloc_table(mem)?;
        Ok(Self { root })
    }

    /// Physical address of the root table, for [`vttbr_el2`].
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `size` bytes at guest-physical `ipa` to physical `pa`.
    ///
    /// Uses 2 MiB blocks where IPA and PA are both 2 MiB aligned and 2 MiB or more
    /// remain, 4 KiB pages for the rest. The whole range is checked first, and every
    /// table it needs is allocated before the first leaf is written, so a refused
    /// mapping leaves no part of the range mapped (an out-of-memory failure may leave
    /// empty tables behind; later mappings reuse them).
    ///
    /// # Errors
    ///
    /// - [`Stage2Error::Misaligned`] if `ipa`, `pa` or `size` is not a multiple of
    ///   4 KiB, or `size` is zero;
    /// - [`Stage2Error::OutOfRange`] if the range ends beyond 2^39 (IPA) or 2^48 (PA);
    /// - [`Stage2Error::AlreadyMapped`] if any page of the range is mapped already;
    /// - [`Stage2Error::OutOfMemory`] if `mem` runs out of tables.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        ipa: u64,
        pa: u64,
        size: u64,
        kind: MemoryKind,
        access: Access,
    ) -> Result<(), Stage2Error> {
        if size == 0 || !is_aligned(ipa | pa | size, PAGE_SIZE) {
            return Err(Stage2Error::Misaligned { ipa, pa, size });
        }
        let fits = |start: u64, bits: u32| start.checked_add(size).is_some_and(|end| end <= 1 << bits);
        if !fits(ipa, IPA_BITS) || !fits(pa, PA_BITS) {
            return Err(Stage2Error::OutOfRange { ipa, pa, size });
        }
        self.check_unmapped(mem, ipa, ipa + size)?;
        // First pass: allocate every table the range needs, so running out of memory
        // cannot leave a partial mapping. Second pass: write the leaves; it allocates
        // nothing and takes the same block/page decisions (see `place`).
        self.place(mem, ipa, pa, size, None)?;
        self.place(mem, ipa, pa, size, Some((kind, access)))
    }

    /// Where `ipa` leads, or `None` if it is unmapped (or outside the IPA space).
    pub fn translate(&self, mem: &impl TableMemory, ipa: u64) -> Option<Translation> {
        if ipa >= 1 << IPA_BITS {
            return None;
        }
        let Walk::Leaf { desc, level } = self.walk(mem, ipa) else {
            return None;
        };
        let block_size = level_size(level);
        let memattr = (desc >> MEMATTR_SHIFT) & 0b1111;
        let kind =
            if memattr & MEMATTR_DEVICE_CLASS_MASK == 0 { MemoryKind::Device } else { MemoryKind::Normal };
        let access = match (desc >> S2AP_SHIFT) & 0b11 {
            S2AP_READ_WRITE => Access::ReadWrite,
            S2AP_READ_ONLY => Access::ReadOnly,
            // No access, or write-only: `map` never creates those.
            _ => return None,
        };
        Some(Translation {
            pa: (desc & ADDR_MASK & !(block_size - 1)) | (ipa & (block_size - 1)),
            kind,
            access,
            block_size,
        })
    }

    /// Walks the tables for `ipa` down to its leaf or to the invalid entry that stops
    /// the walk (Arm ARM D8.2, translation table walk).
    fn walk(&self, mem: &impl TableMemory, ipa: u64) -> Walk {
        let mut table = self.root;
        let mut level = START_LEVEL;
        loop {
            let desc = mem.table(table)[level_index(ipa, level)];
            match Descriptor::decode(desc, level) {
                Descriptor::Invalid => return Walk::Hole { level },
                Descriptor::Leaf(desc) => return Walk::Leaf { desc, level },
                // Level 3 never decodes as a table, so the walk ends there.
                Descriptor::Table(next) => {
                    table = next;
                    level += 1;
                }
            }
        }
    }

    /// Fails with the first mapped IPA in `[start, end)`, skipping unmapped spans a
    /// whole invalid entry at a time.
    fn check_unmapped(&self, mem: &impl TableMemory, start: u64, end: u64) -> Result<(), Stage2Error> {
        let mut ipa = start;
        while ipa < end {
            match self.walk(mem, ipa) {
                Walk::Leaf { .. } => return Err(Stage2Error::AlreadyMapped { ipa }),
                Walk::Hole { level } => {
                    let span = level_size(level);
                    ipa = (ipa & !(span - 1)) + span;
                }
            }
        }
        Ok(())
    }

    /// Goes over the range chunk by chunk, creating the tables each chunk needs and,
    /// if `leaf` is given, writing its block or page descriptor.
    ///
    /// A chunk is a block if IPA and PA are 2 MiB aligned, 2 MiB or more remain and the
    /// level-2 entry is invalid; if that entry already holds a table (left empty by an
    /// earlier failed `map`), the chunk is filled with pages instead. A first pass
    /// without `leaf` only creates tables inside page-filled slots, so a second pass
    /// takes exactly the same decisions and needs no new table.
    fn place(
        &mut self,
        mem: &mut impl TableMemory,
        ipa: u64,
        pa: u64,
        size: u64,
        leaf: Option<(MemoryKind, Access)>,
    ) -> Result<(), Stage2Error> {
        let mut offset = 0;
        while offset < size {
            let (ipa, pa, remaining) = (ipa + offset, pa + offset, size - offset);
            let l2 = next_table(mem, self.root, START_LEVEL, ipa)?;
            let slot = mem.table(l2)[level_index(ipa, BLOCK_LEVEL)];
            let is_block =
                is_aligned(ipa | pa, BLOCK_SIZE) && remaining >= BLOCK_SIZE && slot & DESC_VALID == 0;
            let (table, level) = if is_block {
                (l2, BLOCK_LEVEL)
            } else {
                (next_table(mem, l2, BLOCK_LEVEL, ipa)?, PAGE_LEVEL)
            };
            if let Some((kind, access)) = leaf {
                mem.table_mut(table)[level_index(ipa, level)] = leaf_descriptor(pa, level, kind, access);
            }
            offset += level_size(level);
        }
        Ok(())
    }
}

/// Allocates a table and checks the allocator kept its promise.
fn alloc_table(mem: &mut impl TableMemory) -> Result<u64, Stage2Error> {
    let pa = mem.alloc_table().ok_or(Stage2Error::OutOfMemory)?;
    assert!(
        is_aligned(pa, PAGE_SIZE) && pa < 1 << PA_BITS,
        "TableMemory returned an unusable table address {pa:#x}"
    );
    Ok(pa)
}

/// The table that the entry for `ipa` in `table` (at `level`) points to, created if
/// the entry is invalid.
fn next_table(mem: &mut impl TableMemory, table: u64, level: usize, ipa: u64) -> Result<u64, Stage2Error> {
    let index = level_index(ipa, level);
    match Descriptor::decode(mem.table(table)[index], level) {
        Descriptor::Table(next) => Ok(next),
        // `map` checked the range first, so this is only reached for a range that
        // overlaps a mapping, which it refuses the same way.
        Descriptor::Leaf(_) => Err(Stage2Error::AlreadyMapped { ipa }),
        Descriptor::Invalid => {
            let next = alloc_table(mem)?;
            // A stage-2 table descriptor has no attribute fields worth setting.
            mem.table_mut(table)[index] = next | DESC_VALID | DESC_TABLE_OR_PAGE;
            Ok(next)
        }
    }
}

/// Bits of physical address that an ID_AA64MMFR0_EL1.PARange (or VTCR_EL2.PS) value
/// stands for; reserved values count as 48 bits, the most this layout's descriptors hold.
pub fn pa_bits(pa_range: u8) -> u32 {
    match pa_range & 0xf {
        0b0000 => 32,
        0b0001 => 36,
        0b0010 => 40,
        0b0011 => 42,
        0b0100 => 44,
        _ => 48,
    }
}

/// VTCR_EL2 for this layout, given ID_AA64MMFR0_EL1.PARange (Arm ARM, VTCR_EL2
/// register description).
///
/// Fields: T0SZ = 25 (39-bit IPA), SL0 = 0b01 (start at level 1), IRGN0 = ORGN0 = 0b01
/// (table walks Write-Back cacheable), SH0 = 0b11 (Inner Shareable), TG0 = 0b00
/// (4 KiB), PS = PARange clamped to 0b101 (48 bits: without FEAT_LPA2 the descriptors
/// hold no more), VS = 0 (8-bit VMID), HA = HD = 0, bit 31 RES1.
///
/// PS bounds the output addresses only, and those are the host's own RAM and devices,
/// which fit the CPU's PARange by definition; so any PARange is accepted. On a CPU
/// whose PARange is below 40 bits (32 or 36), the 39-bit IPA space is larger than the
/// physical address size: the guest layout still fits, but the Arm ARM does not
/// promise how a walk behaves for IPAs above the PA size (KVM warns about this setup
/// and Bao shrinks its IPA space instead). No QEMU CPU model with EL2 has such a
/// small PARange; the caller may refuse such a CPU using [`pa_bits`].
pub fn vtcr_el2(pa_range: u8) -> u64 {
    const T0SZ: u64 = 64 - IPA_BITS as u64;
    const SL0_LEVEL1: u64 = 0b01 << 6;
    const IRGN0_WBWA: u64 = 0b01 << 8;
    const ORGN0_WBWA: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const TG0_4K: u64 = 0b00 << 14;
    const PS_SHIFT: u32 = 16;
    const RES1: u64 = 1 << 31;
    let ps = u64::from((pa_range & 0xf).min(0b101));
    T0SZ | SL0_LEVEL1 | IRGN0_WBWA | ORGN0_WBWA | SH0_INNER | TG0_4K | (ps << PS_SHIFT) | RES1
}

/// VTTBR_EL2 from the root table's address and an 8-bit VMID (Arm ARM, VTTBR_EL2
/// register description: BADDR in bits `[47:1]`, VMID in bits `[55:48]`, CnP = 0).
pub fn vttbr_el2(root: u64, vmid: u8) -> u64 {
    debug_assert!(is_aligned(root, PAGE_SIZE), "stage-2 root {root:#x} not 4 KiB aligned");
    (root & ADDR_MASK) | (u64::from(vmid) << 48)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    /// Physical address of the fake's first table: made-up numbers, never pointers,
    /// so mixing up an address and a table index or pointer shows.
    const FAKE_BASE: u64 = 0x8000_0000;

    /// Table memory with fake physical addresses and an optional limit.
    struct FakeMemory {
        tables: Vec<Box<[u64; 512]>>,
        limit: usize,
    }

    impl FakeMemory {
        fn new() -> Self {
            Self::with_limit(usize::MAX)
        }

        fn with_limit(limit: usize) -> Self {
            Self { tables: Vec::new(), limit }
        }

        fn index(&self, pa: u64) -> usize {
            assert!(pa >= FAKE_BASE && is_aligned(pa - FAKE_BASE, 4096), "bad table pa {pa:#x}");
            let i = ((pa - FAKE_BASE) / 4096) as usize;
            assert!(i < self.tables.len(), "table pa {pa:#x} never allocated");
            i
        }
    }

    impl TableMemory for FakeMemory {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            self.tables.push(Box::new([0; 512]));
            Some(FAKE_BASE + 4096 * (self.tables.len() as u64 - 1))
        }

        fn table(&self, pa: u64) -> &[u64; 512] {
            &self.tables[self.index(pa)]
        }

        fn table_mut(&mut self, pa: u64) -> &mut [u64; 512] {
            let i = self.index(pa);
            &mut self.tables[i]
        }
    }

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;

    fn rw_normal(s2: &mut Stage2, mem: &mut FakeMemory, ipa: u64, pa: u64, size: u64) {
        s2.map(mem, ipa, pa, size, MemoryKind::Normal, Access::ReadWrite).unwrap();
    }

    /// Checks that every page of `[ipa, ipa + size)` translates to `pa + offset` with
    /// the block size `expected_size(offset)`.
    fn assert_maps(
        s2: &Stage2,
        mem: &FakeMemory,
        ipa: u64,
        pa: u64,
        size: u64,
        expected_size: impl Fn(u64) -> u64,
    ) {
        for offset in (0..size).step_by(PAGE_SIZE as usize) {
            let t = s2.translate(mem, ipa + offset + 0x123).unwrap();
            assert_eq!(t.pa, pa + offset + 0x123, "ipa {:#x}", ipa + offset);
            assert_eq!(t.block_size, expected_size(offset), "ipa {:#x}", ipa + offset);
            assert_eq!((t.kind, t.access), (MemoryKind::Normal, Access::ReadWrite));
        }
    }

    #[test]
    fn new_tables_map_nothing() {
        let mut mem = FakeMemory::new();
        let s2 = Stage2::new(&mut mem).unwrap();
        assert_eq!(s2.root(), FAKE_BASE);
        assert_eq!(s2.translate(&mem, 0), None);
        assert_eq!(s2.translate(&mem, 0x4000_0000), None);
        assert_eq!(s2.translate(&mem, 1 << 39), None);
    }

    #[test]
    fn aligned_ranges_use_2mib_blocks() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        rw_normal(&mut s2, &mut mem, 0x4000_0000, 0x8_4020_0000, 8 * MIB);
        // Root and one level-2 table; no level-3 table.
        assert_eq!(mem.tables.len(), 2);
        assert_maps(&s2, &mem, 0x4000_0000, 0x8_4020_0000, 8 * MIB, |_| BLOCK_SIZE);
        assert_eq!(s2.translate(&mem, 0x4000_0000 - 1), None);
        assert_eq!(s2.translate(&mem, 0x4000_0000 + 8 * MIB), None);
    }

    #[test]
    fn unaligned_head_and_tail_use_pages() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        // 3 pages of head, two blocks, 5 pages of tail.
        let (ipa, pa) = (0x401f_d000, 0x1_001f_d000);
        let size = 3 * PAGE_SIZE + 2 * BLOCK_SIZE + 5 * PAGE_SIZE;
        rw_normal(&mut s2, &mut mem, ipa, pa, size);
        let head = 3 * PAGE_SIZE;
        assert_maps(&s2, &mem, ipa, pa, size, |off| {
            if (head..head + 2 * BLOCK_SIZE).contains(&off) {
                BLOCK_SIZE
            } else {
                PAGE_SIZE
            }
        });
        // Root, one level-2 table, a level-3 table each for head and tail.
        assert_eq!(mem.tables.len(), 4);
        assert_eq!(s2.translate(&mem, ipa - 1), None);
        assert_eq!(s2.translate(&mem, ipa + size), None);
    }

    #[test]
    fn short_or_differently_aligned_ranges_use_pages() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        // IPA aligned, PA only 4 KiB aligned: no block is possible.
        rw_normal(&mut s2, &mut mem, 0x4000_0000, 0x8000_1000 + (1 << 32), 4 * MIB);
        assert_maps(&s2, &mem, 0x4000_0000, 0x8000_1000 + (1 << 32), 4 * MIB, |_| PAGE_SIZE);
        // Both aligned but shorter than a block.
        rw_normal(&mut s2, &mut mem, 0x8000_0000, 0x2_0000_0000, MIB);
        assert_maps(&s2, &mem, 0x8000_0000, 0x2_0000_0000, MIB, |_| PAGE_SIZE);
        // 3 MiB aligned: one block and 1 MiB of pages.
        rw_normal(&mut s2, &mut mem, 0xc000_0000, 0x3_0000_0000, 3 * MIB);
        assert_maps(&s2, &mem, 0xc000_0000, 0x3_0000_0000, 3 * MIB, |off| {
            if off < BLOCK_SIZE {
                BLOCK_SIZE
            } else {
                PAGE_SIZE
            }
        });
    }

    #[test]
    fn descriptors_match_the_architecture() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        // A Normal RW block: IPA 0x4000_0000 is root index 1, level-2 index 0.
        rw_normal(&mut s2, &mut mem, 0x4000_0000, 0x4020_0000, BLOCK_SIZE);
        let l2 = FAKE_BASE + 4096;
        assert_eq!(mem.table(s2.root())[1], l2 | 0b11);
        // OA | AF (0x400) | SH=11 (0x300) | S2AP=11 (0xc0) | MemAttr=1111 (0x3c) | block (0b01).
        assert_eq!(mem.table(l2)[0], 0x4020_07fd);

        // A Device RW page: IPA 0x0900_0000 is root index 0, level-2 index 0x48.
        s2.map(&mut mem, 0x0900_0000, 0x0900_0000, PAGE_SIZE, MemoryKind::Device, Access::ReadWrite).unwrap();
        let (l2_low, l3) = (FAKE_BASE + 2 * 4096, FAKE_BASE + 3 * 4096);
        assert_eq!(mem.table(s2.root())[0], l2_low | 0b11);
        assert_eq!(mem.table(l2_low)[0x48], l3 | 0b11);
        // OA | AF (0x400) | SH=00 | S2AP=11 (0xc0) | MemAttr=0001 (0x04) | page (0b11).
        assert_eq!(mem.table(l3)[0], 0x0900_04c7);

        // A Normal read-only page in the same level-3 table: S2AP=01 (0x40).
        s2.map(&mut mem, 0x0900_1000, 0x1_2345_6000, PAGE_SIZE, MemoryKind::Normal, Access::ReadOnly)
            .unwrap();
        assert_eq!(mem.table(l3)[1], 0x1_2345_677f);
    }

    #[test]
    fn translate_reports_kind_and_access() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        s2.map(&mut mem, 0x0900_0000, 0x0900_0000, PAGE_SIZE, MemoryKind::Device, Access::ReadWrite).unwrap();
        s2.map(&mut mem, 0x4000_0000, 0x5000_0000, BLOCK_SIZE, MemoryKind::Normal, Access::ReadOnly).unwrap();
        assert_eq!(
            s2.translate(&mem, 0x0900_0018),
            Some(Translation {
                pa: 0x0900_0018,
                kind: MemoryKind::Device,
                access: Access::ReadWrite,
                block_size: PAGE_SIZE,
            })
        );
        assert_eq!(
            s2.translate(&mem, 0x401f_fff8),
            Some(Translation {
                pa: 0x501f_fff8,
                kind: MemoryKind::Normal,
                access: Access::ReadOnly,
                block_size: BLOCK_SIZE,
            })
        );
    }

    #[test]
    fn translate_follows_a_1gib_block() {
        let mut mem = FakeMemory::new();
        let s2 = Stage2::new(&mut mem).unwrap();
        // `map` never writes one, but the walk understands level-1 blocks.
        mem.table_mut(s2.root())[2] =
            leaf_descriptor(0x40_0000_0000, 1, MemoryKind::Normal, Access::ReadWrite);
        let t = s2.translate(&mem, 0x8765_4321).unwrap();
        assert_eq!((t.pa, t.block_size), (0x40_0765_4321, 1 << 30));
    }

    #[test]
    fn overlapping_mappings_are_refused_without_partial_mapping() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        rw_normal(&mut s2, &mut mem, 0x4000_0000, 0x1_0000_0000, BLOCK_SIZE);
        rw_normal(&mut s2, &mut mem, 0x5000_3000, 0x2_0000_3000, PAGE_SIZE);
        let tables = mem.tables.len();

        // Starts in free space, runs into the block.
        let err =
            s2.map(&mut mem, 0x3fe0_0000, 0x3_0000_0000, 4 * MIB, MemoryKind::Normal, Access::ReadWrite);
        assert_eq!(err, Err(Stage2Error::AlreadyMapped { ipa: 0x4000_0000 }));
        assert_eq!(s2.translate(&mem, 0x3fe0_0000), None);
        // A page inside the block.
        let err =
            s2.map(&mut mem, 0x4010_0000, 0x3_0000_0000, PAGE_SIZE, MemoryKind::Normal, Access::ReadWrite);
        assert_eq!(err, Err(Stage2Error::AlreadyMapped { ipa: 0x4010_0000 }));
        // A block over a slot that holds a mapped page.
        let err =
            s2.map(&mut mem, 0x5000_0000, 0x3_0000_0000, BLOCK_SIZE, MemoryKind::Normal, Access::ReadWrite);
        assert_eq!(err, Err(Stage2Error::AlreadyMapped { ipa: 0x5000_3000 }));
        assert_eq!(s2.translate(&mem, 0x5000_0000), None);
        // Nothing was allocated or changed.
        assert_eq!(mem.tables.len(), tables);
        assert_eq!(s2.translate(&mem, 0x5000_3000).unwrap().pa, 0x2_0000_3000);
        // The free pages beside the mapped one can still be mapped.
        rw_normal(&mut s2, &mut mem, 0x5000_0000, 0x3_0000_0000, 3 * PAGE_SIZE);
        rw_normal(&mut s2, &mut mem, 0x5000_4000, 0x3_0000_4000, BLOCK_SIZE - 4 * PAGE_SIZE);
    }

    #[test]
    fn misaligned_and_out_of_range_requests_are_refused() {
        let mut mem = FakeMemory::new();
        let mut s2 = Stage2::new(&mut mem).unwrap();
        let mut map = |ipa, pa, size| s2.map(&mut mem, ipa, pa, size, MemoryKind::Normal, Access::ReadWrite);
        for (ipa, pa, size) in [(0x800, 0, 4096), (0, 0x800, 4096), (0, 0, 100), (0, 0, 0)] {
            assert_eq!(map(ipa, pa, size), Err(Stage2Error::Misaligned { ipa, pa, size }));
        }
        let ipa_top = 1u64 << 39;
        let pa_top = 1u64 << 48;
        for (ipa, pa, size) in [
            (ipa_top - 4096, 0, 8192),
            (ipa_top, 0, 4096),
            (0, pa_top - 4096, 8192),
            (0, u64::MAX - 4095, 4096),
            (0, 0, u64::MAX - 4095),
        ] {
            assert_eq!(map(ipa, pa, size), Err(Stage2Error::OutOfRange { ipa, pa, size }));
        }
        // The very top page of both spaces is fine.
        map(ipa_top - 4096, pa_top - 4096, 4096).unwrap();
        assert_eq!(s2.translate(&mem, ipa_top - 1).unwrap().pa, pa_top - 1);
    }

    #[test]
    fn out_of_memory_leaves_nothing_mapped() {
        assert_eq!(Stage2::new(&mut FakeMemory::with_limit(0)).unwrap_err(), Stage2Error::OutOfMemory);
        // Root and one level-2 table fit; the level-3 tables for head and tail do not.
        let mut mem = FakeMemory::with_limit(3);
        let mut s2 = Stage2::new(&mut mem).unwrap();
        let (ipa, pa, size) = (0x401f_f000, 0x1_001f_f000, 2 * BLOCK_SIZE);
        let err = s2.map(&mut mem, ipa, pa, size, MemoryKind::Normal, Access::ReadWrite);
        assert_eq!(err, Err(Stage2Error::OutOfMemory));
        for offset in (0..size).step_by(PAGE_SIZE as usize) {
            assert_eq!(s2.translate(&mem, ipa + offset), None);
        }
        // With memory to spare, the same mapping succeeds and reuses the empty table.
        mem.limit = 4;
        rw_normal(&mut s2, &mut mem, ipa, pa, size);
        assert_maps(&s2, &mem, ipa, pa, size, |off| {
            if (PAGE_SIZE..PAGE_SIZE + BLOCK_SIZE).contains(&off) {
                BLOCK_SIZE
            } else {
                PAGE_SIZE
            }
        });
    }

    #[test]
    fn empty_tables_left_by_a_failed_map_get_pages() {
        let mut mem = FakeMemory::with_limit(3);
        let mut s2 = Stage2::new(&mut mem).unwrap();
        // The head page's level-3 table (slot 0x4000_0000) is created, the tail's is not.
        let err =
            s2.map(&mut mem, 0x401f_f000, 0x401f_f000, 2 * BLOCK_SIZE, MemoryKind::Normal, Access::ReadWrite);
        assert_eq!(err, Err(Stage2Error::OutOfMemory));
        assert_eq!(mem.tables.len(), 3);
        // An aligned block over that slot is filled with pages, needing no new table.
        rw_normal(&mut s2, &mut mem, 0x4000_0000, 0x4000_0000, BLOCK_SIZE);
        assert_maps(&s2, &mem, 0x4000_0000, 0x4000_0000, BLOCK_SIZE, |_| PAGE_SIZE);
        assert_eq!(mem.tables.len(), 3);
    }

    #[test]
    fn vtcr_fields() {
        // T0SZ 25 | SL0 1 | IRGN0 1 | ORGN0 1 | SH0 3 | TG0 0 | RES1 bit 31, PS varies.
        assert_eq!(vtcr_el2(0b0010), 0x8002_3559);
        assert_eq!(vtcr_el2(0b0101), 0x8005_3559);
        assert_eq!(vtcr_el2(0b0001), 0x8001_3559);
        // 52 bits and reserved values clamp to 48.
        assert_eq!(vtcr_el2(0b0110), 0x8005_3559);
        assert_eq!(vtcr_el2(0b1111), 0x8005_3559);
        assert_eq!(pa_bits(0b0100), 44);
        assert_eq!(pa_bits(0b0110), 48);
    }

    #[test]
    fn vttbr_fields() {
        assert_eq!(vttbr_el2(0x8000_3000, 0), 0x8000_3000);
        assert_eq!(vttbr_el2(0x8000_3000, 7), 0x0007_0000_8000_3000);
        assert_eq!(vttbr_el2(0xffff_ffff_f000, 0xff), 0x00ff_ffff_ffff_f000);
    }
}
