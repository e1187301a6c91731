//! The identification registers of the emulated distributor and redistributors.
//!
//! GICD_IIDR / GICR_IIDR (Arm IHI 0069H, their register descriptions) and the
//! CoreSight-style ID registers at 0xFFD0-0xFFFC of each block (IHI 0069H,
//! GICD_PIDR2 / GICR_PIDR2; only PIDR2.ArchRev is architected, the rest is
//! IMPLEMENTATION DEFINED).

/// GICD_IIDR and GICR_IIDR: ProductID 0x53 ('S', for Sluice) \[31:24\], Variant 0
/// \[19:16\], Revision 0 \[15:12\], Implementer 0x43B \[11:0\] (Arm's JEP106 code: bank
/// 4, i.e. continuation code 0x4, identity 0x3B). The product ID matches no
/// implementation that Linux has errata workarounds for.
pub(super) const IIDR: u32 = 0x5300_043b;

/// The block whose ID registers are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Block {
    /// The distributor (GICD).
    Distributor,
    /// A redistributor's RD_base frame (GICR).
    Redistributor,
}

/// First ID register (PIDR4).
pub(super) const ID_START: u64 = 0xffd0;
/// PIDR2: ArchRev \[7:4\] = 3 (GICv3), JEDEC \[3\] = 1, DES_1 \[2:0\] = 3 (bits 6:4 of
/// Arm's JEP106 identity 0x3B).
pub(super) const PIDR2: u32 = 0x3b;

/// The ID register at `offset` (0xFFD0..=0xFFFC), or `None` if `offset` is not one.
///
/// Values: PIDR4 0x44 (4 KiB count 2^4, JEP106 continuation 4), PIDR5-7 0, PIDR0 the
/// part number's low byte (0x92 distributor, 0x93 redistributor, as GIC-500 style
/// parts number them), PIDR1 0xB4 (DES_0 = 0xB, part number high nibble 4), PIDR2
/// above, PIDR3 0, CIDR0-3 0x0D, 0xF0, 0x05, 0xB1 (the CoreSight preamble).
pub(super) fn id_register(block: Block, offset: u64) -> Option<u32> {
    let part = match block {
        Block::Distributor => 0x92,
        Block::Redistributor => 0x93,
    };
    let value = match offset {
        0xffd0 => 0x44,                   // PIDR4
        0xffd4 | 0xffd8 | 0xffdc => 0x00, // PIDR5..7
        0xffe0 => part,                   // PIDR0
        0xffe4 => 0xb4,                   // PIDR1
        0xffe8 => PIDR2,                  // PIDR2
        0xffec => 0x00,                   // PIDR3
        0xfff0 => 0x0d,                   // CIDR0
        0xfff4 => 0xf0,                   // CIDR1
        0xfff8 => 0x05,                   // CIDR2
        0xfffc => 0xb1,                   // CIDR3
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_registers() {
        assert_eq!(id_register(Block::Distributor, 0xffe8), Some(0x3b));
        assert_eq!(id_register(Block::Redistributor, 0xffe8), Some(0x3b));
        assert_eq!(id_register(Block::Distributor, 0xffe0), Some(0x92));
        assert_eq!(id_register(Block::Redistributor, 0xffe0), Some(0x93));
        let cidr: Vec<_> = (0..4).map(|i| id_register(Block::Distributor, 0xfff0 + 4 * i)).collect();
        assert_eq!(cidr, [Some(0x0d), Some(0xf0), Some(0x05), Some(0xb1)]);
        assert_eq!(id_register(Block::Distributor, 0xffe9), None);
        assert_eq!(id_register(Block::Distributor, 0xffcc), None);
        // ArchRev = 3.
        assert_eq!(PIDR2 >> 4 & 0xf, 3);
    }
}
