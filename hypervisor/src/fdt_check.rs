//! Checks the structure of a flattened device tree before the `fdt` crate reads it.
//!
//! The format is the Devicetree Specification v0.4, chapter 5 ("Flattened
//! Devicetree (DTB) Format"): a header (§5.2), the memory reservation block
//! (§5.3), the structure block (§5.4) and the strings block (§5.5).
//!
//! # Why a check, not a replacement reader
//!
//! Sluice keeps the `fdt` crate (DESIGN.md chose it to read both the host DTB and
//! the boot bundle) and proves, in one linear walk over the blob, everything the
//! crate takes for granted. Every panic we found in `fdt` 0.1.5 comes from
//! trusting an offset, a length, a terminator or the nesting of the blob; on a
//! well-formed tree its readers are correct. The walk is short, allocates nothing
//! and says precisely what is wrong and where, which the crate's three-valued
//! `FdtError` cannot. A reader of our own would be far more parsing code to get
//! right, would have to reproduce the node and property API that `host.rs`,
//! `vm/config.rs` and the tools' and guests' code share, and would still leave
//! the same crate in those other users. The price is that this module tracks one
//! version of the crate: the sites below are those of 0.1.5, and the test
//! `the_fdt_crate_panics_where_the_check_refuses` fails if an upgrade changes
//! them, so that whoever upgrades revisits this list.
//!
//! # Panic sites in `fdt` 0.1.5
//!
//! Reached by structure; [`check`] refuses every blob that can reach them:
//!
//! - `lib.rs:409` `strings_block` and `lib.rs:413` `structs_block` slice
//!   `data[off..off + size]`; `Fdt::new` only compares `totalsize` with the slice,
//!   so a block past the end panics in every reader. `lib.rs:244`
//!   (`memory_reservations`, unused by Sluice) slices from `off_mem_rsvmap`.
//! - `lib.rs:401` `cstr_at_offset`: `strings[nameoff..]` past the strings block,
//!   and `expect` when no NUL follows `nameoff`; `lib.rs:405` `str_at_offset`:
//!   `expect` on a property name that is not UTF-8.
//! - `node.rs:505` `NodeProperty::parse`: `expect` when the block ends inside a
//!   property's length and name offset; `node.rs:508`: `remaining[..len]` when the
//!   value runs past the structure block.
//! - `node.rs:84`, `:88`, `:462`, `:466`: `peek_u32().unwrap()` where the block ends
//!   before the next token (no END_NODE or END).
//! - `node.rs:107`, `:349`, `:426`, `:458`: `expect` on a node name without a NUL
//!   before the end of the block; `:426`, `:458`: `unwrap` on a name that is not
//!   UTF-8 (at `:349` the `?` returns in the middle of a token, and `find_node`'s
//!   caller then reads the name's bytes as tokens; at `:107` `children` stops
//!   early).
//! - `node.rs:408` `all_nodes`: `parent_index -= 1` underflows on an END_NODE that
//!   closes nothing; `node.rs:433`: `parents[parent_index]` is out of bounds for a
//!   node 64 deep (64 slots, slot 0 unused), hence [`MAX_DEPTH`].
//! - `node.rs:456`, `:472` `skip_current_node`: `assert_eq!(.., "bad node")` when
//!   anything but END_NODE follows a node's properties and children, which
//!   happens for a property after a child node, a missing END_NODE, and an FDT_NOP
//!   between properties or children (legal in the format; see
//!   [`FdtError::NopInsideNode`]). It also recurses once per level of nesting.
//! - `node.rs:214`, `:219` `cell_sizes` (called by `reg`, `raw_reg`, `Cpu::ids`):
//!   `expect` on a `#address-cells` or `#size-cells` shorter than 4 bytes. The check
//!   refuses either property unless it is exactly one cell, as the specification
//!   (§2.3.5) defines them.
//!
//! Reached by values in a well-formed tree; the Sluice call sites avoid them and
//! read the properties themselves (`host.rs`):
//!
//! - `lib.rs:224` `chosen`: `expect` when there is no `/chosen`; `lib.rs:229`
//!   `cpus`: `expect` when there is no `/cpus`.
//! - `standard_nodes.rs:23` `bootargs`, `:32` `stdout`, `:44` `stdin`:
//!   `value[..len - 1]` underflows on an empty property.
//! - `standard_nodes.rs:133` `Cpu::ids`: `expect` on a CPU without `reg`;
//!   `:189`, `:190` `CpuIds::first`: `unwrap` on a `reg` shorter than
//!   `#address-cells`, and `:191`, `:203` `panic!` for `#address-cells` other than
//!   1 or 2.
//! - `lib.rs:281` `Fdt::find_node` looks a missing path up in `/aliases` and
//!   resolves the alias with `find_node` again (`standard_nodes.rs:105`): an alias
//!   naming itself, or a cycle of them, recurses until the stack overflows.
//! - Unused by Sluice, listed so that nobody starts using them unguarded:
//!   `memory` (`lib.rs:239`), `root` (`:265`), `find_all_nodes` (`:344`),
//!   `Root::model` (`standard_nodes.rs:68`), `Root::compatible` (`:73`),
//!   `Compatible::first` (`:218`), `Memory::regions` (`:256`),
//!   `initial_mapped_area` (`:265`-`:267`), `clock_frequency` and
//!   `timebase_frequency` (`:145`-`:163`), `Fdt::from_ptr` (`lib.rs:207`).
//!
//! Once [`check`] accepts a blob, `Fdt::new`, `find_node("/")`, `all_nodes`,
//! `find_compatible`, and on any node `properties`, `property`, `children`,
//! `reg`, `cell_sizes` and `compatible`, and on any property `as_str` and
//! `as_usize`, cannot panic.

use core::fmt;

/// FDT header magic (§5.2).
const MAGIC: u32 = 0xd00d_feed;
/// Size of the version 17 header (§5.2).
pub const HEADER_SIZE: usize = 40;
/// The format version the `fdt` crate reads: 17 (it uses `size_dt_struct`,
/// which version 17 added, and version 16's unit names).
const VERSION: u32 = 17;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
/// §5.4.1. (`fdt` 0.1.5 calls 5 FDT_END, `node.rs:15`; it never needs the token
/// to find the end of the tree, so that slip is harmless, and 5 is refused here
/// as unknown.)
const FDT_END: u32 = 9;

/// The deepest nesting accepted, the root being depth 1. `fdt` 0.1.5's
/// `all_nodes` keeps the open nodes in a 64-slot array indexed by depth, so a
/// node at depth 64 would index past it.
pub const MAX_DEPTH: u32 = 63;

/// A block of the blob that the header locates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The memory reservation block (§5.3).
    MemoryReservations,
    /// The structure block (§5.4).
    Structure,
    /// The strings block (§5.5).
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MemoryReservations => "memory reservation block",
            Self::Structure => "structure block",
            Self::Strings => "strings block",
        })
    }
}

/// What is wrong with a flattened device tree, and where (byte offsets from the
/// start of the blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// The blob cannot hold the header.
    TooShortForHeader {
        /// Length of the blob.
        len: usize,
    },
    /// The first word is not the FDT magic.
    BadMagic {
        /// What it is instead.
        found: u32,
    },
    /// `totalsize` is smaller than the header.
    TotalSizeTooSmall {
        /// The header's `totalsize`.
        totalsize: u32,
    },
    /// `totalsize` is larger than the blob.
    TotalSizePastBlob {
        /// The header's `totalsize`.
        totalsize: u32,
        /// Length of the blob.
        len: usize,
    },
    /// A format version the `fdt` crate does not read.
    UnsupportedVersion {
        /// The header's `version`.
        version: u32,
        /// The header's `last_comp_version`.
        last_comp_version: u32,
    },
    /// A block does not lie between the end of the header and `totalsize`.
    BlockOutOfBounds {
        /// Which block.
        block: Block,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The header's `totalsize`.
        totalsize: u32,
    },
    /// A block does not start at the alignment the specification requires.
    Misaligned {
        /// Which block.
        block: Block,
        /// Its first byte.
        offset: u32,
        /// The alignment required, in bytes.
        align: u32,
    },
    /// `size_dt_struct` is not a whole number of tokens.
    StructSizeMisaligned {
        /// The header's `size_dt_struct`.
        size: u32,
    },
    /// Two blocks share bytes.
    BlocksOverlap {
        /// The block that starts first.
        first: Block,
        /// Its range.
        first_range: (u64, u64),
        /// The other block.
        second: Block,
        /// Its range.
        second_range: (u64, u64),
    },
    /// No (0, 0) entry ends the memory reservation block before `totalsize`.
    ReservationsUnterminated {
        /// Where the block starts.
        offset: u32,
        /// The header's `totalsize`.
        totalsize: u32,
    },
    /// The structure block ends without FDT_END.
    MissingEnd {
        /// Where the block ends.
        offset: u32,
        /// Nodes still open there.
        open: u32,
    },
    /// A node's name has no NUL before the end of the structure block.
    UnterminatedNodeName {
        /// The node's FDT_BEGIN_NODE token.
        offset: u32,
    },
    /// A node's name is not UTF-8.
    NodeNameNotUtf8 {
        /// The node's FDT_BEGIN_NODE token.
        offset: u32,
    },
    /// The root node has a name.
    RootNameNotEmpty {
        /// The root's FDT_BEGIN_NODE token.
        offset: u32,
    },
    /// A node begins after the root node ended.
    SecondRoot {
        /// Its FDT_BEGIN_NODE token.
        offset: u32,
    },
    /// A node is nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Its FDT_BEGIN_NODE token.
        offset: u32,
    },
    /// A property outside every node.
    PropertyOutsideNode {
        /// Its FDT_PROP token.
        offset: u32,
    },
    /// A property after one of its node's children.
    PropertyAfterChild {
        /// Its FDT_PROP token.
        offset: u32,
    },
    /// The structure block ends inside a property's length and name offset.
    PropertyHeaderPastBlock {
        /// The FDT_PROP token.
        offset: u32,
        /// Where the structure block ends.
        block_end: u32,
    },
    /// A property's value runs past the structure block.
    PropertyPastBlock {
        /// The FDT_PROP token.
        offset: u32,
        /// The property's length.
        len: u32,
        /// Where the structure block ends.
        block_end: u32,
    },
    /// A property's name offset is outside the strings block.
    NameOffsetPastStrings {
        /// The FDT_PROP token.
        offset: u32,
        /// The name offset.
        name_offset: u32,
        /// The size of the strings block.
        strings_size: u32,
    },
    /// A property's name has no NUL before the end of the strings block.
    UnterminatedPropertyName {
        /// The FDT_PROP token.
        offset: u32,
        /// The name offset.
        name_offset: u32,
    },
    /// A property's name is not UTF-8.
    PropertyNameNotUtf8 {
        /// The FDT_PROP token.
        offset: u32,
        /// The name offset.
        name_offset: u32,
    },
    /// `#address-cells` or `#size-cells` is not a single 32-bit cell.
    BadCellCount {
        /// The FDT_PROP token.
        offset: u32,
        /// Which of the two.
        name: &'static str,
        /// The property's length.
        len: u32,
    },
    /// FDT_END_NODE with no node open.
    UnbalancedEndNode {
        /// The token.
        offset: u32,
    },
    /// FDT_NOP inside the root node. The format allows it, but `fdt` 0.1.5
    /// steps over NOPs only in some places (`skip_current_node` panics on one
    /// between properties or children, `all_nodes` stops early at one before an
    /// END_NODE, `find_node` stops at one between siblings), so Sluice accepts NOPs
    /// only before and after the root node.
    NopInsideNode {
        /// The token.
        offset: u32,
    },
    /// FDT_END while nodes are open.
    EndInsideNode {
        /// The token.
        offset: u32,
        /// Nodes still open.
        open: u32,
    },
    /// FDT_END before any node.
    NoRoot {
        /// The token.
        offset: u32,
    },
    /// Bytes of the structure block after FDT_END.
    DataAfterEnd {
        /// The FDT_END token.
        offset: u32,
        /// How many bytes follow it.
        trailing: u32,
    },
    /// A token the format does not define.
    UnknownToken {
        /// Where.
        offset: u32,
        /// Its value.
        token: u32,
    },
}

impl FdtError {
    /// Whether the blob is no device tree at all (too short for a header, or
    /// without the magic), rather than a damaged one.
    pub fn is_not_a_device_tree(&self) -> bool {
        matches!(self, Self::TooShortForHeader { .. } | Self::BadMagic { .. })
    }
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShortForHeader { len } => {
                write!(f, "{len:#x} bytes are too few for the {HEADER_SIZE:#x}-byte FDT header")
            }
            Self::BadMagic { found } => {
                write!(f, "header at offset 0x0: magic is {found:#010x}, not {MAGIC:#010x}")
            }
            Self::TotalSizeTooSmall { totalsize } => write!(
                f,
                "header at offset 0x4: totalsize {totalsize:#x} is smaller than the {HEADER_SIZE:#x}-byte header"
            ),
            Self::TotalSizePastBlob { totalsize, len } => write!(
                f,
                "header at offset 0x4: totalsize {totalsize:#x} runs past the end of the {len:#x}-byte blob"
            ),
            Self::UnsupportedVersion { version, last_comp_version } => write!(
                f,
                "header at offset 0x14: version {version:#x} (last compatible {last_comp_version:#x}) \
                 cannot be read; version {VERSION:#x} is"
            ),
            Self::BlockOutOfBounds { block, start, end, totalsize } => write!(
                f,
                "{block} at {start:#x}..{end:#x} does not lie between the end of the header \
                 ({HEADER_SIZE:#x}) and totalsize ({totalsize:#x})"
            ),
            Self::Misaligned { block, offset, align } => {
                write!(f, "{block} at offset {offset:#x} is not aligned to {align:#x} bytes")
            }
            Self::StructSizeMisaligned { size } => write!(
                f,
                "header at offset 0x24: structure block size {size:#x} is not a multiple of 4 bytes"
            ),
            Self::BlocksOverlap { first, first_range, second, second_range } => write!(
                f,
                "{first} at {:#x}..{:#x} overlaps the {second} at {:#x}..{:#x}",
                first_range.0, first_range.1, second_range.0, second_range.1
            ),
            Self::ReservationsUnterminated { offset, totalsize } => write!(
                f,
                "memory reservation block at offset {offset:#x}: no (0, 0) entry ends it before \
                 totalsize ({totalsize:#x})"
            ),
            Self::MissingEnd { offset, open } => write!(
                f,
                "structure block ends at offset {offset:#x} without FDT_END ({open} node(s) still open)"
            ),
            Self::UnterminatedNodeName { offset } => {
                write!(f, "node at offset {offset:#x}: name has no NUL before the end of the structure block")
            }
            Self::NodeNameNotUtf8 { offset } => write!(f, "node at offset {offset:#x}: name is not UTF-8"),
            Self::RootNameNotEmpty { offset } => {
                write!(f, "root node at offset {offset:#x}: name is not empty")
            }
            Self::SecondRoot { offset } => {
                write!(f, "node at offset {offset:#x} begins after the root node ended (a second root)")
            }
            Self::TooDeep { offset } => write!(
                f,
                "node at offset {offset:#x} is nested deeper than {MAX_DEPTH} levels (the root is level 1)"
            ),
            Self::PropertyOutsideNode { offset } => {
                write!(f, "property at offset {offset:#x} is outside every node")
            }
            Self::PropertyAfterChild { offset } => write!(
                f,
                "property at offset {offset:#x} follows a child node; a node's properties must come first"
            ),
            Self::PropertyHeaderPastBlock { offset, block_end } => write!(
                f,
                "property at offset {offset:#x}: its length and name offset run past the structure block \
                 (which ends at {block_end:#x})"
            ),
            Self::PropertyPastBlock { offset, len, block_end } => write!(
                f,
                "property at offset {offset:#x}: length {len:#x} runs past the structure block \
                 (which ends at {block_end:#x})"
            ),
            Self::NameOffsetPastStrings { offset, name_offset, strings_size } => write!(
                f,
                "property at offset {offset:#x}: name offset {name_offset:#x} is past the \
                 {strings_size:#x}-byte strings block"
            ),
            Self::UnterminatedPropertyName { offset, name_offset } => write!(
                f,
                "property at offset {offset:#x}: name at strings offset {name_offset:#x} has no NUL \
                 before the end of the strings block"
            ),
            Self::PropertyNameNotUtf8 { offset, name_offset } => write!(
                f,
                "property at offset {offset:#x}: name at strings offset {name_offset:#x} is not UTF-8"
            ),
            Self::BadCellCount { offset, name, len } => write!(
                f,
                "property at offset {offset:#x}: {name} is {len:#x} bytes long, not one 4-byte cell"
            ),
            Self::UnbalancedEndNode { offset } => {
                write!(f, "FDT_END_NODE at offset {offset:#x} closes no open node")
            }
            Self::NopInsideNode { offset } => write!(
                f,
                "FDT_NOP at offset {offset:#x} is inside a node; Sluice accepts NOPs only before and \
                 after the root node"
            ),
            Self::EndInsideNode { offset, open } => {
                write!(f, "FDT_END at offset {offset:#x} with {open} node(s) still open")
            }
            Self::NoRoot { offset } => write!(f, "FDT_END at offset {offset:#x} before any node: no root node"),
            Self::DataAfterEnd { offset, trailing } => write!(
                f,
                "FDT_END at offset {offset:#x} is followed by {trailing:#x} more bytes of the structure block"
            ),
            Self::UnknownToken { offset, token } => {
                write!(f, "unknown token {token:#010x} at offset {offset:#x} of the structure block")
            }
        }
    }
}

/// Checks that `blob` holds a whole, well-formed flattened device tree that the
/// `fdt` crate can read without panicking (see the module documentation). The
/// tree may be shorter than `blob` (`totalsize` says where it ends).
///
/// # Errors
///
/// The first thing found wrong, as an [`FdtError`].
pub fn check(blob: &[u8]) -> Result<(), FdtError> {
    let header = Header::read(blob)?;
    let rsvmap = header.reservations(blob)?;
    let structure = header.block(Block::Structure, header.off_dt_struct, header.size_dt_struct, 4)?;
    let strings = header.block(Block::Strings, header.off_dt_strings, header.size_dt_strings, 1)?;
    if !header.size_dt_struct.is_multiple_of(4) {
        return Err(FdtError::StructSizeMisaligned { size: header.size_dt_struct });
    }
    let blocks =
        [(Block::MemoryReservations, rsvmap), (Block::Structure, structure), (Block::Strings, strings)];
    for (i, &(a, a_range)) in blocks.iter().enumerate() {
        for &(b, b_range) in &blocks[i + 1..] {
            let empty = |r: (u64, u64)| r.0 == r.1;
            if !empty(a_range) && !empty(b_range) && a_range.0 < b_range.1 && b_range.0 < a_range.1 {
                let ((first, first_range), (second, second_range)) = if a_range.0 <= b_range.0 {
                    ((a, a_range), (b, b_range))
                } else {
                    ((b, b_range), (a, a_range))
                };
                return Err(FdtError::BlocksOverlap { first, first_range, second, second_range });
            }
        }
    }
    // The ranges were checked against totalsize, and totalsize against the blob.
    let bytes = |r: (u64, u64)| blob.get(r.0 as usize..r.1 as usize).unwrap_or_default();
    Walk::new(bytes(structure), header.off_dt_struct, bytes(strings)).run()
}

/// The header fields the check needs (§5.2).
struct Header {
    totalsize: u32,
    off_dt_struct: u32,
    off_dt_strings: u32,
    off_mem_rsvmap: u32,
    size_dt_strings: u32,
    size_dt_struct: u32,
}

impl Header {
    fn read(blob: &[u8]) -> Result<Self, FdtError> {
        if blob.len() < HEADER_SIZE {
            return Err(FdtError::TooShortForHeader { len: blob.len() });
        }
        let word = |i: usize| be32(blob, i * 4).unwrap_or_default();
        if word(0) != MAGIC {
            return Err(FdtError::BadMagic { found: word(0) });
        }
        let totalsize = word(1);
        if (totalsize as usize) < HEADER_SIZE {
            return Err(FdtError::TotalSizeTooSmall { totalsize });
        }
        if totalsize as usize > blob.len() {
            return Err(FdtError::TotalSizePastBlob { totalsize, len: blob.len() });
        }
        let (version, last_comp_version) = (word(5), word(6));
        if version < VERSION || last_comp_version > VERSION {
            return Err(FdtError::UnsupportedVersion { version, last_comp_version });
        }
        Ok(Self {
            totalsize,
            off_dt_struct: word(2),
            off_dt_strings: word(3),
            off_mem_rsvmap: word(4),
            size_dt_strings: word(8),
            size_dt_struct: word(9),
        })
    }

    /// The block at `offset` of `size` bytes, checked to lie after the header,
    /// within `totalsize`, and aligned to `align`.
    fn block(&self, block: Block, offset: u32, size: u32, align: u32) -> Result<(u64, u64), FdtError> {
        let (start, end) = (u64::from(offset), u64::from(offset) + u64::from(size));
        if start < HEADER_SIZE as u64 || end > u64::from(self.totalsize) {
            return Err(FdtError::BlockOutOfBounds { block, start, end, totalsize: self.totalsize });
        }
        if !offset.is_multiple_of(align) {
            return Err(FdtError::Misaligned { block, offset, align });
        }
        Ok((start, end))
    }

    /// The memory reservation block, up to and including its (0, 0) entry (§5.3).
    fn reservations(&self, blob: &[u8]) -> Result<(u64, u64), FdtError> {
        let (start, _) = self.block(Block::MemoryReservations, self.off_mem_rsvmap, 0, 8)?;
        let mut at = start;
        loop {
            let entry =
                blob.get(at as usize..(at + 16) as usize).filter(|_| at + 16 <= u64::from(self.totalsize));
            let Some(entry) = entry else {
                return Err(FdtError::ReservationsUnterminated {
                    offset: self.off_mem_rsvmap,
                    totalsize: self.totalsize,
                });
            };
            at += 16;
            if entry.iter().all(|&b| b == 0) {
                return Ok((start, at));
            }
        }
    }
}

/// A walk over the structure block, token by token (§5.4).
struct Walk<'a> {
    block: &'a [u8],
    /// Offset of the block in the blob, for messages.
    base: u32,
    strings: &'a [u8],
    /// Where the next token is, from the start of the block.
    pos: usize,
    /// Nodes open.
    depth: u32,
    /// Whether a root node has begun.
    rooted: bool,
    /// Whether the innermost open node may still have properties (it has no
    /// child yet).
    props_allowed: bool,
}

impl<'a> Walk<'a> {
    fn new(block: &'a [u8], base: u32, strings: &'a [u8]) -> Self {
        Self { block, base, strings, pos: 0, depth: 0, rooted: false, props_allowed: false }
    }

    /// Offset in the blob of `pos` in the block. Both fit in a `u32`: the
    /// block lies within `totalsize`.
    fn at(&self, pos: usize) -> u32 {
        self.base.saturating_add(pos as u32)
    }

    fn run(mut self) -> Result<(), FdtError> {
        loop {
            let offset = self.at(self.pos);
            let Some(token) = be32(self.block, self.pos) else {
                return Err(FdtError::MissingEnd { offset, open: self.depth });
            };
            match token {
                FDT_BEGIN_NODE => self.begin_node(offset)?,
                FDT_END_NODE => {
                    if self.depth == 0 {
                        return Err(FdtError::UnbalancedEndNode { offset });
                    }
                    self.depth -= 1;
                    // Back in the parent, which now has had a child.
                    self.props_allowed = false;
                    self.pos += 4;
                }
                FDT_PROP => self.property(offset)?,
                FDT_NOP => {
                    if self.depth > 0 {
                        return Err(FdtError::NopInsideNode { offset });
                    }
                    self.pos += 4;
                }
                FDT_END => {
                    if self.depth > 0 {
                        return Err(FdtError::EndInsideNode { offset, open: self.depth });
                    }
                    if !self.rooted {
                        return Err(FdtError::NoRoot { offset });
                    }
                    let trailing = self.block.len() - (self.pos + 4);
                    if trailing != 0 {
                        return Err(FdtError::DataAfterEnd { offset, trailing: trailing as u32 });
                    }
                    return Ok(());
                }
                token => return Err(FdtError::UnknownToken { offset, token }),
            }
        }
    }

    /// FDT_BEGIN_NODE, then the NUL-terminated name, padded to 4 bytes.
    fn begin_node(&mut self, offset: u32) -> Result<(), FdtError> {
        if self.depth == 0 {
            if self.rooted {
                return Err(FdtError::SecondRoot { offset });
            }
            self.rooted = true;
        }
        let name_start = self.pos + 4;
        let rest = self.block.get(name_start..).unwrap_or_default();
        let name = c_str(rest).ok_or(FdtError::UnterminatedNodeName { offset })?;
        if core::str::from_utf8(name).is_err() {
            return Err(FdtError::NodeNameNotUtf8 { offset });
        }
        if self.depth == 0 && !name.is_empty() {
            return Err(FdtError::RootNameNotEmpty { offset });
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FdtError::TooDeep { offset });
        }
        self.props_allowed = true;
        // The NUL lies inside the block, whose size is a multiple of 4: the
        // padding does too.
        self.pos = align4(name_start + name.len() + 1);
        Ok(())
    }

    /// FDT_PROP, its length and name offset, then the value, padded to 4 bytes.
    fn property(&mut self, offset: u32) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::PropertyOutsideNode { offset });
        }
        if !self.props_allowed {
            return Err(FdtError::PropertyAfterChild { offset });
        }
        let block_end = self.at(self.block.len());
        let (Some(len), Some(name_offset)) = (be32(self.block, self.pos + 4), be32(self.block, self.pos + 8))
        else {
            return Err(FdtError::PropertyHeaderPastBlock { offset, block_end });
        };
        let value_start = self.pos + 12;
        let value_end = value_start as u64 + u64::from(len);
        if value_end > self.block.len() as u64 {
            return Err(FdtError::PropertyPastBlock { offset, len, block_end });
        }
        let name = self.strings.get(name_offset as usize..).filter(|rest| !rest.is_empty()).ok_or(
            FdtError::NameOffsetPastStrings { offset, name_offset, strings_size: self.strings.len() as u32 },
        )?;
        let name = c_str(name).ok_or(FdtError::UnterminatedPropertyName { offset, name_offset })?;
        let name =
            core::str::from_utf8(name).map_err(|_| FdtError::PropertyNameNotUtf8 { offset, name_offset })?;
        // `cell_sizes` reads these as one big-endian cell (§2.3.5).
        for cells in ["#address-cells", "#size-cells"] {
            if name == cells && len != 4 {
                return Err(FdtError::BadCellCount { offset, name: cells, len });
            }
        }
        self.pos = align4(value_end as usize);
        Ok(())
    }
}

/// The big-endian word at `at`, if `bytes` holds it.
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

/// The bytes of `bytes` before its first NUL, if it has one.
fn c_str(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == 0)?;
    bytes.get(..end)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
pub(crate) mod tests;
