//! The hypervisor's own stage-1 translation at EL2: an identity map.
//!
//! Device space below RAM is mapped as Device-nGnRE and RAM (from the host DTB) as
//! Normal write-back memory, with 1 GiB blocks where a whole gigabyte is RAM and
//! 2 MiB blocks in the gigabytes RAM only partly covers. VA = PA, 39 bits
//! (TCR_EL2.T0SZ = 25), walks start at level 1 (Arm ARM D8.2). Pure: it fills tables
//! that the caller owns.

use platform::Region;

/// MAIR_EL2: attribute 0 is Device-nGnRE, attribute 1 Normal Write-Back RW-allocate.
pub const MAIR_EL2: u64 = 0x04 | (0xff << 8);
/// MAIR_EL2 on a CPU with tag storage: attribute 1 is Tagged Normal Write-Back, so
/// EL2 can clear the tags of a VM's RAM (it never checks them: SCTLR_EL2.TCF = 0).
pub const MAIR_EL2_TAGGED: u64 = 0x04 | (0xf0 << 8);
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
/// Access flag.
const AF: u64 = 1 << 10;
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Execute-never at EL2.
const XN: u64 = 1 << 54;
const BLOCK: u64 = 0b01;
const TABLE: u64 = 0b11;
const GIB: u64 = 1 << 30;
const TWO_MIB: u64 = 2 << 20;
/// Size of the VA space (and so the highest identity-mapped address).
pub const VA_BITS: u32 = 39;

/// TCR_EL2 for this layout, with the output size from ID_AA64MMFR0_EL1.PARange.
pub fn tcr_el2(pa_range: u8) -> u64 {
    let t0sz = 64 - VA_BITS as u64;
    let ps = (pa_range.min(0b101) as u64) << 16;
    (1 << 31) | (1 << 23) | ps | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | t0sz
}

/// Why the map could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum El2MapError {
    /// RAM reaches beyond the 39-bit VA space.
    RamTooHigh(Region),
    /// More partly covered gigabytes than level-2 tables.
    TooManyPartialGigabytes,
}

/// Fills `l1` (and as many of `l2` as needed) with the identity map; `l2_pa(i)` is
/// the physical address of `l2[i]`.
///
/// # Errors
///
/// [`El2MapError`] if RAM doesn't fit the layout.
pub fn build(
    ram: &[Region],
    l1: &mut [u64; 512],
    l2: &mut [[u64; 512]],
    l2_pa: impl Fn(usize) -> u64,
) -> Result<(), El2MapError> {
    l1.fill(0);
    // The first gigabyte of QEMU virt is devices (GIC, UART, virtio-mmio, flash).
    l1[0] = ATTR_DEVICE | AF | XN | BLOCK;
    let mut used_l2 = 0;
    for region in ram {
        let end = region.end().filter(|&e| e <= 1 << VA_BITS).ok_or(El2MapError::RamTooHigh(*region))?;
        // Whole 2 MiB blocks only.
        let start = region.base.next_multiple_of(TWO_MIB);
        let end = end - end % TWO_MIB;
        let mut addr = start;
        while addr < end {
            let gib = (addr / GIB) as usize;
            if addr % GIB == 0 && end - addr >= GIB && l1[gib] == 0 {
                l1[gib] = addr | ATTR_NORMAL | SH_INNER | AF | BLOCK;
                addr += GIB;
                continue;
            }
            if l1[gib] & 0b11 != TABLE {
                if used_l2 == l2.len() {
                    return Err(El2MapError::TooManyPartialGigabytes);
                }
                l2[used_l2].fill(0);
                l1[gib] = l2_pa(used_l2) | TABLE;
                used_l2 += 1;
            }
            let table = (0..used_l2).find(|&i| l2_pa(i) == l1[gib] & !0xfff).expect("table just linked");
            let stop = end.min((gib as u64 + 1) * GIB);
            while addr < stop {
                l2[table][((addr % GIB) / TWO_MIB) as usize] = addr | ATTR_NORMAL | SH_INNER | AF | BLOCK;
                addr += TWO_MIB;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L2_BASE: u64 = 0x7000_0000;

    fn map(ram: &[Region]) -> ([u64; 512], [[u64; 512]; 2]) {
        let mut l1 = [0; 512];
        let mut l2 = [[0; 512]; 2];
        build(ram, &mut l1, &mut l2, |i| L2_BASE + i as u64 * 4096).unwrap();
        (l1, l2)
    }

    #[test]
    fn whole_gigabytes_get_1gib_blocks() {
        let (l1, _) = map(&[Region::new(GIB, 2 * GIB)]);
        assert_eq!(l1[0], 0x0040_0000_0000_0401);
        assert_eq!(l1[1], 0x4000_0000 | 0x705);
        assert_eq!(l1[2], 0x8000_0000 | 0x705);
        assert_eq!(l1[3], 0);
    }

    #[test]
    fn a_partial_gigabyte_gets_2mib_blocks() {
        let (l1, l2) = map(&[Region::new(GIB, 256 << 20)]);
        assert_eq!(l1[1], L2_BASE | TABLE);
        assert_eq!(l2[0][0], 0x4000_0000 | 0x705);
        assert_eq!(l2[0][127], 0x4fe0_0000 | 0x705);
        assert_eq!(l2[0][128], 0);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut l1 = [0; 512];
        let mut l2 = [[0; 512]; 1];
        let too_high = [Region::new(1 << 39, GIB)];
        assert!(matches!(build(&too_high, &mut l1, &mut l2, |_| 0), Err(El2MapError::RamTooHigh(_))));
        let two_partials = [Region::new(GIB, 256 << 20), Region::new(3 * GIB, 256 << 20)];
        assert_eq!(
            build(&two_partials, &mut l1, &mut l2, |i| i as u64 * 4096),
            Err(El2MapError::TooManyPartialGigabytes)
        );
    }

    #[test]
    fn tcr_layout() {
        assert_eq!(tcr_el2(0b101), 0x8085_3519);
        assert_eq!(tcr_el2(0b110), 0x8085_3519, "clamped to 48 bits");
    }
}
