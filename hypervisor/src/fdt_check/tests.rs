//! Tests of the structure check, and the corruption engine that the bundle's and
//! the host DTB's tests share.

use super::*;
use crate::host::tests::qemu_like_dtb;
use crate::vm::config::tests::realistic_bundle;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use fdt::node::FdtNode;
use fdt::Fdt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Deterministic corruptions of a good blob (xorshift64, no dependency).
pub(crate) struct Corruptor {
    state: u64,
}

impl Corruptor {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed | 1 }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Replaces `out` with `good` damaged in one to three ways.
    pub(crate) fn corrupt(&mut self, good: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(good);
        for _ in 0..=self.below(3) {
            self.damage(out);
        }
    }

    fn damage(&mut self, blob: &mut Vec<u8>) {
        let words = blob.len() / 4;
        if words < 11 {
            blob.truncate(self.below(blob.len() + 1));
            return;
        }
        match self.below(8) {
            // Flip bits in one to four bytes.
            0 => {
                for _ in 0..=self.below(4) {
                    let at = self.below(blob.len());
                    blob[at] ^= 1 << self.below(8);
                }
            }
            // A random word, anywhere.
            1 => {
                let at = self.below(words);
                let value = self.next() as u32;
                put(blob, at, value);
            }
            // A boundary value, anywhere.
            2 | 3 => {
                let at = self.below(words);
                let value = self.boundary(blob.len(), get(blob, at));
                put(blob, at, value);
            }
            // A header field (not the magic).
            4 => {
                let at = 1 + self.below(9);
                let value = if self.below(2) == 0 {
                    self.next() as u32
                } else {
                    self.boundary(blob.len(), get(blob, at))
                };
                put(blob, at, value);
            }
            // Cut short.
            5 => blob.truncate(self.below(blob.len())),
            // Cut short, with a header that says so.
            6 => {
                let len = (HEADER_SIZE + self.below(blob.len() - HEADER_SIZE)) & !3;
                blob.truncate(len);
                put(blob, 1, len as u32);
                for (offset, size) in [(2, 9), (3, 8)] {
                    let (start, old) = (get(blob, offset) as usize, get(blob, size) as usize);
                    put(blob, size, old.min(len.saturating_sub(start)) as u32);
                }
            }
            // Remove or repeat a word of the structure block, keeping the header
            // consistent, so that the tokens after it shift.
            _ => {
                let (off, size) = (get(blob, 2) as usize, get(blob, 9) as usize);
                if !off.is_multiple_of(4) || size < 4 || off + size > blob.len() {
                    blob.truncate(self.below(blob.len()));
                    return;
                }
                let at = off + 4 * self.below(size / 4);
                let delta: i64 = if self.below(2) == 0 {
                    blob.drain(at..at + 4);
                    -4
                } else {
                    let word: Vec<u8> = blob[at..at + 4].to_vec();
                    blob.splice(at..at, word);
                    4
                };
                let strings_follow = get(blob, 3) as usize >= off + size;
                for (i, moves) in [(1, true), (9, true), (3, strings_follow)] {
                    if moves {
                        let value = (i64::from(get(blob, i)) + delta) as u32;
                        put(blob, i, value);
                    }
                }
            }
        }
    }

    /// A value that parsers often get wrong, for a word that held `old` in a blob
    /// of `len` bytes.
    fn boundary(&mut self, len: usize, old: u32) -> u32 {
        let len = len as u32;
        let choices = [
            0,
            1,
            2,
            3,
            4,
            5,
            9,
            0xffff_ffff,
            0xffff_fffc,
            0x7fff_ffff,
            0x8000_0000,
            len,
            len.wrapping_sub(4),
            len.wrapping_add(4),
            old.wrapping_add(4),
            old.wrapping_sub(4),
            old.wrapping_add(1),
            old.wrapping_sub(1),
            old.wrapping_mul(2),
            64,
        ];
        choices[self.below(choices.len())]
    }
}

/// Word `i` (big-endian) of `blob`.
fn get(blob: &[u8], i: usize) -> u32 {
    be32(blob, i * 4).unwrap_or_default()
}

/// Sets word `i` (big-endian) of `blob`, if it has one.
fn put(blob: &mut [u8], i: usize, value: u32) {
    if let Some(word) = blob.get_mut(i * 4..i * 4 + 4) {
        word.copy_from_slice(&value.to_be_bytes());
    }
}

/// Runs every `fdt` reader that the module documentation says is safe on an
/// accepted blob, over every node and property; false if `all_nodes` and a walk
/// through `children` disagree on how many nodes there are.
fn exercise(blob: &[u8]) -> bool {
    let Ok(fdt) = Fdt::new(blob) else { return true };
    let Some(root) = fdt.find_node("/") else { return true };
    fn visit(node: FdtNode<'_, '_>, found: &mut usize) {
        *found += 1;
        read(node);
        for child in node.children() {
            visit(child, found);
        }
    }
    fn read(node: FdtNode<'_, '_>) {
        for p in node.properties() {
            let _ = (p.name, p.as_str(), p.as_usize());
        }
        let _ = node.property("reg").map(|p| p.value.len());
        let _ = node.compatible().map(|c| c.all().count());
        let _ = node.reg().map(Iterator::count);
        let _ = node.cell_sizes();
    }
    let mut by_children = 0;
    visit(root, &mut by_children);
    let mut by_all = 0;
    for node in fdt.all_nodes() {
        by_all += 1;
        read(node);
    }
    let _ = fdt.find_compatible(&["arm,pl011", "none"]);
    by_all == by_children
}

/// Whether `exercise` panics inside the `fdt` crate on `blob`.
fn crate_panics(blob: &[u8]) -> bool {
    catch_unwind(AssertUnwindSafe(|| exercise(blob))).is_err()
}

/// Assembles a structure block and strings block token by token, under a header
/// that describes them: reservation block at 0x28 (just the terminator),
/// structure block at 0x38, strings block after it.
#[derive(Default, Clone)]
struct Raw {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

/// Where `Raw` puts the structure block.
const STRUCT: u32 = 0x38;

impl Raw {
    fn word(mut self, word: u32) -> Self {
        self.structure.extend_from_slice(&word.to_be_bytes());
        self
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        self.structure.extend_from_slice(bytes);
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
        self
    }

    fn begin(self, name: &str) -> Self {
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        self.word(FDT_BEGIN_NODE).bytes(&name)
    }

    fn end_node(self) -> Self {
        self.word(FDT_END_NODE)
    }

    fn end(self) -> Self {
        self.word(FDT_END)
    }

    fn nop(self) -> Self {
        self.word(FDT_NOP)
    }

    /// A property, its name added to the strings block.
    fn prop(mut self, name: &str, value: &[u8]) -> Self {
        let name_offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.word(FDT_PROP).word(value.len() as u32).word(name_offset).bytes(value)
    }

    /// Offset in the blob of the next token.
    fn here(&self) -> u32 {
        STRUCT + self.structure.len() as u32
    }

    fn build(&self) -> Vec<u8> {
        let strings = STRUCT + self.structure.len() as u32;
        let total = strings + self.strings.len() as u32;
        let header = [MAGIC, total, STRUCT, strings, 0x28, 17, 16, 0, self.strings.len() as u32];
        let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        blob.extend_from_slice(&(self.structure.len() as u32).to_be_bytes());
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// A small tree: a root with a property and a child with `reg`.
fn small() -> Raw {
    Raw::default()
        .begin("")
        .prop("#address-cells", &1u32.to_be_bytes())
        .prop("#size-cells", &1u32.to_be_bytes())
        .begin("dev@1000")
        .prop("reg", &[0, 0, 0x10, 0, 0, 0, 0x10, 0])
        .end_node()
        .end_node()
        .end()
}

/// `check`'s verdict on `blob`, and that the crate can read what it accepts.
fn verdict(blob: &[u8]) -> Result<(), FdtError> {
    let result = check(blob);
    if result.is_ok() {
        assert!(exercise(blob), "all_nodes and children see different trees");
    }
    result
}

#[test]
fn accepts_well_formed_trees() {
    assert_eq!(verdict(&small().build()), Ok(()));
    assert_eq!(verdict(&realistic_bundle()), Ok(()));
    assert_eq!(verdict(qemu_like_dtb()), Ok(()));
    // The tree may be shorter than the slice it sits in (a loader's region).
    let mut padded = realistic_bundle();
    padded.extend_from_slice(&[0xa5; 100]);
    assert_eq!(verdict(&padded), Ok(()));
    // NOPs before and after the root are read correctly by the crate.
    let nops = Raw::default().nop().begin("").end_node().nop().nop().end();
    assert_eq!(verdict(&nops.build()), Ok(()));
}

#[test]
fn refuses_bad_headers() {
    let good = small().build();
    let with = |word: usize, value: u32| {
        let mut blob = good.clone();
        put(&mut blob, word, value);
        check(&blob)
    };
    let total = good.len() as u32;
    assert_eq!(check(&good[..39]), Err(FdtError::TooShortForHeader { len: 39 }));
    assert_eq!(with(0, 0xedfe_0dd0), Err(FdtError::BadMagic { found: 0xedfe_0dd0 }));
    assert_eq!(with(1, 0x27), Err(FdtError::TotalSizeTooSmall { totalsize: 0x27 }));
    assert_eq!(
        with(1, total + 1),
        Err(FdtError::TotalSizePastBlob { totalsize: total + 1, len: good.len() })
    );
    assert_eq!(with(5, 16), Err(FdtError::UnsupportedVersion { version: 16, last_comp_version: 16 }));
    assert_eq!(with(6, 18), Err(FdtError::UnsupportedVersion { version: 17, last_comp_version: 18 }));
    assert_eq!(
        with(9, total),
        Err(FdtError::BlockOutOfBounds {
            block: Block::Structure,
            start: STRUCT.into(),
            end: u64::from(STRUCT + total),
            totalsize: total
        })
    );
    let size_struct = get(&good, 9);
    assert!(matches!(
        with(2, 0x20),
        Err(FdtError::BlockOutOfBounds { block: Block::Structure, start: 0x20, .. })
    ));
    assert!(matches!(with(8, 0xffff_ffff), Err(FdtError::BlockOutOfBounds { block: Block::Strings, .. })));
    assert!(matches!(with(3, total + 1), Err(FdtError::BlockOutOfBounds { block: Block::Strings, .. })));
    assert!(matches!(
        with(4, total + 8),
        Err(FdtError::BlockOutOfBounds { block: Block::MemoryReservations, .. })
    ));
    assert_eq!(
        with(4, 0x2c),
        Err(FdtError::Misaligned { block: Block::MemoryReservations, offset: 0x2c, align: 8 })
    );
    assert_eq!(with(9, size_struct - 2), Err(FdtError::StructSizeMisaligned { size: size_struct - 2 }));
    assert!(matches!(
        with(3, 0x28),
        Err(FdtError::BlocksOverlap { first: Block::MemoryReservations, second: Block::Strings, .. })
    ));
    assert!(matches!(
        with(3, STRUCT + 8),
        Err(FdtError::BlocksOverlap { first: Block::Structure, second: Block::Strings, .. })
    ));
    // A reservation block with no (0, 0) entry before totalsize.
    let mut blob = good.clone();
    blob.resize(good.len().next_multiple_of(8) + 24, 1);
    let total = blob.len() as u32;
    put(&mut blob, 1, total);
    put(&mut blob, 4, total - 24);
    assert_eq!(
        check(&blob),
        Err(FdtError::ReservationsUnterminated { offset: total - 24, totalsize: total })
    );
}

#[test]
fn refuses_every_truncation_of_a_real_bundle() {
    let bundle = realistic_bundle();
    for len in 0..bundle.len() {
        let expected = if len < HEADER_SIZE {
            FdtError::TooShortForHeader { len }
        } else {
            FdtError::TotalSizePastBlob { totalsize: bundle.len() as u32, len }
        };
        assert_eq!(check(&bundle[..len]), Err(expected), "cut at {len:#x}");
    }
    // The same cuts inside the structure block, with a header that agrees.
    let size = get(&bundle, 9);
    for cut in (0..size).step_by(4) {
        let mut blob = bundle.clone();
        put(&mut blob, 9, cut);
        let result = check(&blob);
        assert!(
            matches!(
                result,
                Err(FdtError::MissingEnd { .. }
                    | FdtError::PropertyPastBlock { .. }
                    | FdtError::PropertyHeaderPastBlock { .. }
                    | FdtError::UnterminatedNodeName { .. })
            ),
            "structure block cut to {cut:#x}: {result:?}"
        );
    }
}

#[test]
fn refuses_malformed_structure() {
    let at = |raw: &Raw| raw.here();
    // A property whose length runs past the block.
    let head = Raw::default().begin("");
    let offset = at(&head);
    let mut blob = head.clone().prop("a", &[0; 4]).end_node().end().build();
    put(&mut blob, offset as usize / 4 + 1, 0x10000);
    let block_end = STRUCT + get(&blob, 9);
    assert_eq!(check(&blob), Err(FdtError::PropertyPastBlock { offset, len: 0x10000, block_end }));
    assert_eq!(
        FdtError::PropertyPastBlock { offset: 0x1a4, len: 0x10000, block_end: 0x3f0 }.to_string(),
        "property at offset 0x1a4: length 0x10000 runs past the structure block (which ends at 0x3f0)"
    );
    // A name offset past the strings block, and one whose name has no NUL.
    let mut blob = head.clone().prop("a", &[]).end_node().end().build();
    put(&mut blob, offset as usize / 4 + 2, 2);
    assert_eq!(
        check(&blob),
        Err(FdtError::NameOffsetPastStrings { offset, name_offset: 2, strings_size: 2 })
    );
    let mut blob = head.clone().prop("a", &[]).end_node().end().build();
    let last = blob.len() - 1;
    blob[last] = b'b';
    assert_eq!(check(&blob), Err(FdtError::UnterminatedPropertyName { offset, name_offset: 0 }));
    let mut blob = head.clone().prop("a", &[]).end_node().end().build();
    blob[last - 1] = 0xff;
    assert_eq!(check(&blob), Err(FdtError::PropertyNameNotUtf8 { offset, name_offset: 0 }));
    // A property cut after its token.
    let blob = head.clone().word(FDT_PROP).word(0).build();
    assert_eq!(check(&blob), Err(FdtError::PropertyHeaderPastBlock { offset, block_end: offset + 8 }));
    // Node names.
    let blob = Raw::default().word(FDT_BEGIN_NODE).word(0x6162_6364).word(0x6566_6768).build();
    assert_eq!(check(&blob), Err(FdtError::UnterminatedNodeName { offset: STRUCT }));
    let blob = head.clone().begin("\u{e9}").end_node().end_node().end().build();
    let mut bad = blob.clone();
    bad[offset as usize + 4] = 0xc3;
    bad[offset as usize + 5] = 0x28;
    assert_eq!(check(&bad), Err(FdtError::NodeNameNotUtf8 { offset }));
    assert_eq!(check(&blob), Ok(()));
    let blob = Raw::default().begin("root").end_node().end().build();
    assert_eq!(check(&blob), Err(FdtError::RootNameNotEmpty { offset: STRUCT }));
    // Nesting.
    let once = Raw::default().begin("").end_node();
    let second = at(&once);
    assert_eq!(
        check(&once.clone().begin("").end_node().end().build()),
        Err(FdtError::SecondRoot { offset: second })
    );
    assert_eq!(
        check(&once.clone().end_node().end().build()),
        Err(FdtError::UnbalancedEndNode { offset: second })
    );
    assert_eq!(
        check(&head.clone().end_node().end_node().build()),
        Err(FdtError::UnbalancedEndNode { offset: offset + 4 })
    );
    assert_eq!(check(&once.clone().build()), Err(FdtError::MissingEnd { offset: second, open: 0 }));
    assert_eq!(check(&head.clone().build()), Err(FdtError::MissingEnd { offset, open: 1 }));
    assert_eq!(check(&head.clone().end().build()), Err(FdtError::EndInsideNode { offset, open: 1 }));
    assert_eq!(check(&Raw::default().nop().end().build()), Err(FdtError::NoRoot { offset: STRUCT + 4 }));
    assert_eq!(check(&Raw::default().end().build()), Err(FdtError::NoRoot { offset: STRUCT }));
    assert_eq!(
        check(&once.clone().end().nop().build()),
        Err(FdtError::DataAfterEnd { offset: second, trailing: 4 })
    );
    // Tokens.
    assert_eq!(check(&head.clone().word(5).build()), Err(FdtError::UnknownToken { offset, token: 5 }));
    assert_eq!(
        check(&Raw::default().word(0).build()),
        Err(FdtError::UnknownToken { offset: STRUCT, token: 0 })
    );
    assert_eq!(check(&head.clone().nop().end_node().end().build()), Err(FdtError::NopInsideNode { offset }));
    let prop = Raw::default().prop("a", &[]);
    assert_eq!(check(&prop.end().build()), Err(FdtError::PropertyOutsideNode { offset: STRUCT }));
    let child = head.clone().begin("c").end_node();
    let after = at(&child);
    assert_eq!(
        check(&child.prop("a", &[]).end_node().end().build()),
        Err(FdtError::PropertyAfterChild { offset: after })
    );
    // The cell counts the crate's `cell_sizes` reads.
    let blob = head.clone().prop("#address-cells", &[0, 2]).end_node().end().build();
    assert_eq!(check(&blob), Err(FdtError::BadCellCount { offset, name: "#address-cells", len: 2 }));
    let blob = head.clone().prop("#size-cells", &[0; 8]).end_node().end().build();
    assert_eq!(check(&blob), Err(FdtError::BadCellCount { offset, name: "#size-cells", len: 8 }));
}

/// A chain of `depth` nested nodes (the root is the first).
fn nested(depth: u32) -> Vec<u8> {
    let mut raw = Raw::default().begin("");
    for _ in 1..depth {
        raw = raw.prop("#address-cells", &1u32.to_be_bytes()).begin("n");
    }
    for _ in 0..depth {
        raw = raw.end_node();
    }
    raw.end().build()
}

#[test]
fn depth_is_bounded_where_the_crate_needs_it() {
    assert_eq!(verdict(&nested(MAX_DEPTH)), Ok(()));
    let deeper = nested(MAX_DEPTH + 1);
    assert!(matches!(check(&deeper), Err(FdtError::TooDeep { .. })));
    assert!(crate_panics(&deeper), "fdt 0.1.5's all_nodes indexes past its 64 parents");
}

/// Each of these reaches a panic in `fdt` 0.1.5 (the site in the comment); the
/// check must refuse them all. If an upgrade of the crate stops one panicking,
/// revisit the list in the module documentation.
#[test]
fn the_fdt_crate_panics_where_the_check_refuses() {
    let head = Raw::default().begin("");
    let offset = head.here() as usize;
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // lib.rs:413: structure block past the slice, though totalsize is not.
    let mut blob = small().build();
    let size = get(&blob, 9);
    put(&mut blob, 9, size + 0x100);
    cases.push(("structure block past the slice", blob));
    // node.rs:508
    let mut blob = head.clone().prop("a", &[0; 4]).end_node().end().build();
    put(&mut blob, offset / 4 + 1, 0x1000);
    cases.push(("property length past the block", blob));
    // node.rs:505
    cases.push(("property cut after its token", head.clone().word(FDT_PROP).word(0).build()));
    // lib.rs:401
    let mut blob = head.clone().prop("a", &[]).end_node().end().build();
    put(&mut blob, offset / 4 + 2, 0x40);
    cases.push(("name offset past the strings", blob));
    // lib.rs:405
    let mut blob = head.clone().prop("a", &[]).end_node().end().build();
    let at = blob.len() - 2;
    blob[at] = 0xff;
    cases.push(("property name not UTF-8", blob));
    // node.rs:349 (find_node)
    cases.push((
        "node name without NUL",
        Raw::default().word(FDT_BEGIN_NODE).word(0x6162_6364).word(0x6566_6768).build(),
    ));
    // node.rs:426 (all_nodes)
    let mut blob = head.clone().begin("x").end_node().end_node().end().build();
    blob[offset + 4] = 0xff;
    cases.push(("node name not UTF-8", blob));
    // node.rs:408
    cases.push(("END_NODE closing nothing", head.clone().end_node().end_node().end().build()));
    // node.rs:433
    cases.push(("64 deep", nested(MAX_DEPTH + 1)));
    // node.rs:472 (skip_current_node)
    cases.push((
        "NOP between properties",
        head.clone().begin("c").prop("a", &[]).nop().prop("b", &[]).end_node().end_node().end().build(),
    ));
    cases.push((
        "NOP between children",
        head.clone()
            .begin("c")
            .begin("d")
            .end_node()
            .nop()
            .begin("e")
            .end_node()
            .end_node()
            .end_node()
            .end()
            .build(),
    ));
    cases.push((
        "property after a child",
        head.clone().begin("c").begin("d").end_node().prop("a", &[]).end_node().end_node().end().build(),
    ));
    // node.rs:88
    cases.push(("no END_NODE", head.clone().prop("a", &[]).build()));
    // node.rs:214
    cases.push((
        "#address-cells of two bytes",
        head.clone()
            .prop("#address-cells", &[0, 2])
            .begin("c")
            .prop("reg", &[0; 8])
            .end_node()
            .end_node()
            .end()
            .build(),
    ));
    for (what, blob) in cases {
        assert!(check(&blob).is_err(), "{what}: accepted");
        assert!(crate_panics(&blob), "{what}: fdt no longer panics; revisit fdt_check's list");
    }
}

/// Runs `count` corruptions of `good` through `check`, and the crate's readers
/// through every blob it accepts; returns (accepted, refused).
fn fuzz(good: &[u8], seed: u64, count: usize) -> (usize, usize) {
    let mut corruptor = Corruptor::new(seed);
    let mut blob = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..count {
        corruptor.corrupt(good, &mut blob);
        match check(&blob) {
            Ok(()) => {
                accepted += 1;
                match catch_unwind(AssertUnwindSafe(|| exercise(&blob))) {
                    Ok(true) => {}
                    Ok(false) => {
                        panic!("variant {i} (seed {seed:#x}) passed the check and the fdt crate misread it")
                    }
                    Err(_) => {
                        panic!("variant {i} (seed {seed:#x}) passed the check and panicked the fdt crate")
                    }
                }
            }
            Err(e) => {
                refused += 1;
                let message = e.to_string();
                assert!(message.contains("0x"), "variant {i}: {message}");
            }
        }
    }
    (accepted, refused)
}

#[test]
fn nothing_the_check_accepts_panics_the_crate() {
    // The bundle's and host DTB's own tests run 100,000 variants through
    // parse_bundle and read_host_dtb; these drive the crate's readers directly.
    let (accepted, refused) = fuzz(&realistic_bundle(), 0x5eed_0001, 10_000);
    assert!(accepted > 100 && refused > 5_000, "bundle: {accepted} accepted, {refused} refused");
    let (accepted, refused) = fuzz(qemu_like_dtb(), 0x5eed_0002, 10_000);
    assert!(accepted > 100 && refused > 5_000, "host DTB: {accepted} accepted, {refused} refused");
}

/// One example of every refusal.
fn every_refusal() -> Vec<FdtError> {
    let (offset, name_offset, len, totalsize) = (0x1a4, 0x10, 0x10000, 0x400);
    let range = (0x38, 0x100);
    let block = Block::Structure;
    Vec::from([
        FdtError::TooShortForHeader { len: 12 },
        FdtError::BadMagic { found: 0 },
        FdtError::TotalSizeTooSmall { totalsize: 8 },
        FdtError::TotalSizePastBlob { totalsize, len: 0x200 },
        FdtError::UnsupportedVersion { version: 16, last_comp_version: 16 },
        FdtError::BlockOutOfBounds { block, start: range.0, end: range.1, totalsize },
        FdtError::Misaligned { block, offset, align: 4 },
        FdtError::StructSizeMisaligned { size: 0x102 },
        FdtError::BlocksOverlap {
            first: Block::MemoryReservations,
            first_range: (0x28, 0x48),
            second: block,
            second_range: range,
        },
        FdtError::ReservationsUnterminated { offset: 0x28, totalsize },
        FdtError::MissingEnd { offset, open: 2 },
        FdtError::UnterminatedNodeName { offset },
        FdtError::NodeNameNotUtf8 { offset },
        FdtError::RootNameNotEmpty { offset },
        FdtError::SecondRoot { offset },
        FdtError::TooDeep { offset },
        FdtError::PropertyOutsideNode { offset },
        FdtError::PropertyAfterChild { offset },
        FdtError::PropertyHeaderPastBlock { offset, block_end: offset + 8 },
        FdtError::PropertyPastBlock { offset, len, block_end: 0x3f0 },
        FdtError::NameOffsetPastStrings { offset, name_offset, strings_size: 8 },
        FdtError::UnterminatedPropertyName { offset, name_offset },
        FdtError::PropertyNameNotUtf8 { offset, name_offset },
        FdtError::BadCellCount { offset, name: "#size-cells", len: 2 },
        FdtError::UnbalancedEndNode { offset },
        FdtError::NopInsideNode { offset },
        FdtError::EndInsideNode { offset, open: 1 },
        FdtError::NoRoot { offset },
        FdtError::DataAfterEnd { offset, trailing: 8 },
        FdtError::UnknownToken { offset, token: 5 },
    ])
}

/// Which refusal `e` is; does not compile when a refusal is added without a case
/// here and an example in `every_refusal`.
fn kind(e: &FdtError) -> usize {
    match e {
        FdtError::TooShortForHeader { .. } => 0,
        FdtError::BadMagic { .. } => 1,
        FdtError::TotalSizeTooSmall { .. } => 2,
        FdtError::TotalSizePastBlob { .. } => 3,
        FdtError::UnsupportedVersion { .. } => 4,
        FdtError::BlockOutOfBounds { .. } => 5,
        FdtError::Misaligned { .. } => 6,
        FdtError::StructSizeMisaligned { .. } => 7,
        FdtError::BlocksOverlap { .. } => 8,
        FdtError::ReservationsUnterminated { .. } => 9,
        FdtError::MissingEnd { .. } => 10,
        FdtError::UnterminatedNodeName { .. } => 11,
        FdtError::NodeNameNotUtf8 { .. } => 12,
        FdtError::RootNameNotEmpty { .. } => 13,
        FdtError::SecondRoot { .. } => 14,
        FdtError::TooDeep { .. } => 15,
        FdtError::PropertyOutsideNode { .. } => 16,
        FdtError::PropertyAfterChild { .. } => 17,
        FdtError::PropertyHeaderPastBlock { .. } => 18,
        FdtError::PropertyPastBlock { .. } => 19,
        FdtError::NameOffsetPastStrings { .. } => 20,
        FdtError::UnterminatedPropertyName { .. } => 21,
        FdtError::PropertyNameNotUtf8 { .. } => 22,
        FdtError::BadCellCount { .. } => 23,
        FdtError::UnbalancedEndNode { .. } => 24,
        FdtError::NopInsideNode { .. } => 25,
        FdtError::EndInsideNode { .. } => 26,
        FdtError::NoRoot { .. } => 27,
        FdtError::DataAfterEnd { .. } => 28,
        FdtError::UnknownToken { .. } => 29,
    }
}

#[test]
fn every_refusal_says_what_is_wrong_and_where() {
    let refusals = every_refusal();
    let kinds: Vec<usize> = refusals.iter().map(kind).collect();
    assert_eq!(kinds, (0..30).collect::<Vec<_>>(), "one example of each refusal, in order");
    let messages: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    for (e, message) in refusals.iter().zip(&messages) {
        assert!(!message.is_empty(), "{e:?}");
        // Where: a byte offset, a size or a range, in hex.
        assert!(message.contains("0x"), "{e:?}: {message}");
        // What: more than a bare location.
        assert!(message.split_whitespace().count() >= 6, "{e:?}: {message}");
        let same = messages.iter().filter(|m| *m == message).count();
        assert_eq!(same, 1, "two refusals read the same: {message}");
    }
    assert!(FdtError::BadMagic { found: 0 }.is_not_a_device_tree());
    assert!(FdtError::TooShortForHeader { len: 0 }.is_not_a_device_tree());
    assert!(!FdtError::TotalSizeTooSmall { totalsize: 0 }.is_not_a_device_tree());
}
