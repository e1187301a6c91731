//! Memory tagging (FEAT_MTE2) at EL1: a stage-1 identity map whose RAM is Tagged
//! Normal memory, tag checks on (synchronous), and the tag instructions a test
//! needs. QEMU keeps no caches, so turning the MMU on needs no maintenance here.
#![allow(unsafe_code)]

use core::arch::asm;

/// A 4 KiB-aligned table of 512 descriptors.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The level-1 table: 1 GiB blocks (TCR_EL1.T0SZ = 25: walks start at level 1).
static mut LEVEL1: Table = Table([0; 512]);

/// Block descriptor bits: valid block, access flag, inner shareable, MAIR index.
const BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const INNER_SHAREABLE: u64 = 0b11 << 8;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_TAGGED: u64 = 1 << 2;
/// Never executed at EL1 or EL0.
const XN: u64 = (1 << 54) | (1 << 53);
/// MAIR_EL1: attribute 0 Device-nGnRE, attribute 1 Tagged Normal Write-Back.
const MAIR: u64 = 0x04 | (0xf0 << 8);
/// TCR_EL1: T0SZ 25, walks write-back inner shareable, 4 KiB granule, no TTBR1
/// walks (EPD1), 40-bit output (IPS), top byte ignored for TTBR0 (TBI0: MTE keeps
/// the tag there).
const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (0b11 << 12) | (1 << 23) | (0b010 << 32) | (1 << 37);
/// SCTLR_EL1: MMU, data and instruction caches, tag access (ATA), synchronous tag
/// check faults at EL1 (TCF = 0b01).
const SCTLR_ON: u64 = 1 | (1 << 2) | (1 << 12) | (1 << 43) | (1 << 40);

/// Whether the CPU has tag storage: ID_AA64PFR1_EL1.MTE >= 2.
pub fn has_tag_storage() -> bool {
    mte_version() >= 2
}

/// ID_AA64PFR1_EL1.MTE.
pub fn mte_version() -> u64 {
    let pfr1: u64;
    // SAFETY: reading an ID register.
    unsafe { asm!("mrs {}, id_aa64pfr1_el1", out(reg) pfr1, options(nomem, nostack, preserves_flags)) };
    (pfr1 >> 8) & 0xf
}

/// Maps the first gigabyte as devices and the second (RAM, from 0x4000_0000) as
/// Tagged Normal memory, identity, and turns the MMU and tag checks on.
pub fn enable() {
    // SAFETY: only this function writes the table, once, before the MMU uses it.
    let table = unsafe { &mut *core::ptr::addr_of_mut!(LEVEL1) };
    table.0[0] = ATTR_DEVICE | AF | XN | BLOCK;
    table.0[1] = 0x4000_0000 | ATTR_TAGGED | INNER_SHAREABLE | AF | BLOCK;
    let base = table.0.as_ptr() as u64;
    // SAFETY: the map is the identity over everything the guest uses (its RAM and
    // the devices below it), so execution and data go on as before.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {base}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {scratch}, sctlr_el1",
            "orr {scratch}, {scratch}, {on}",
            "msr sctlr_el1, {scratch}",
            "isb",
            mair = in(reg) MAIR, tcr = in(reg) TCR, base = in(reg) base, on = in(reg) SCTLR_ON,
            scratch = out(reg) _,
            options(nostack, preserves_flags),
        )
    };
}

/// `address` with tag `tag` in its top byte (bits 59:56).
pub fn with_tag(address: u64, tag: u8) -> u64 {
    (address & !(0xff << 56)) | (u64::from(tag & 0xf) << 56)
}

/// Sets the allocation tag of the 16-byte granule at `tagged` to the tag its
/// address carries (STG).
pub fn store_tag(tagged: u64) {
    // SAFETY: changes only the tag of a granule of the guest's own RAM.
    unsafe { asm!(".inst 0xd9200800", in("x0") tagged, options(nostack, preserves_flags)) };
    // stg x0, [x0]
}

/// The allocation tag of the granule at `address` (LDG).
pub fn load_tag(address: u64) -> u8 {
    let loaded: u64;
    // SAFETY: reads a tag only.
    unsafe {
        asm!(".inst 0xd9600020", inout("x0") 0u64 => loaded, in("x1") address, options(nostack, preserves_flags))
    }; // ldg x0, [x1]
    ((loaded >> 56) & 0xf) as u8
}

/// Loads the doubleword at `tagged` (checked against its granule's tag).
pub fn load(tagged: u64) -> u64 {
    let value: u64;
    // SAFETY: `tagged` points into the guest's RAM; a tag mismatch is a fault the
    // caller expects.
    unsafe {
        asm!("ldr {}, [{}]", out(reg) value, in(reg) tagged, options(nostack, preserves_flags, readonly))
    };
    value
}
