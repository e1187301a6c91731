//! Which access sizes each GIC register accepts.
//!
//! Per Arm IHI 0069H (the "Configurations" notes of each register description, and
//! the chapter on the memory-mapped registers): registers are 32 bits wide and
//! accessed as words, except that the byte-accessible ones (GICD_IPRIORITYR,
//! GICD_ITARGETSR, GICD_CPENDSGIR, GICD_SPENDSGIR) also accept bytes and the 64-bit
//! ones (GICD_IROUTER, GICR_TYPER, GICR_PROPBASER, GICR_PENDBASER) accept a
//! doubleword or either 32-bit half. Every access is naturally aligned. An access of
//! another size is treated as reserved: it reads 0 and writes are ignored.

use crate::devices::AccessWidth;

/// The access sizes a register accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sizes {
    /// 32-bit only.
    Word,
    /// 8 or 32 bits.
    ByteOrWord,
    /// 64 bits, or 32 bits at either half.
    WordOrDouble,
}

impl Sizes {
    /// Whether an access of `width` at `offset` is allowed; logs the ones that are not.
    pub(super) fn allow(self, block: &str, offset: u64, width: AccessWidth) -> bool {
        let size_ok = match self {
            Self::Word => width == AccessWidth::Word,
            Self::ByteOrWord => matches!(width, AccessWidth::Byte | AccessWidth::Word),
            Self::WordOrDouble => matches!(width, AccessWidth::Word | AccessWidth::Double),
        };
        let ok = size_ok && offset.is_multiple_of(width.bytes());
        if !ok {
            crate::guest_log!(
                crate::guest_log::Kind::Gic,
                Debug,
                "vgic: {}-byte access to {block} offset {offset:#x} ignored",
                width.bytes()
            );
        }
        ok
    }
}

/// Logs an access to a reserved or unimplemented offset, which reads 0 and ignores
/// writes.
pub(super) fn reserved(block: &str, offset: u64, width: AccessWidth, write: bool) {
    crate::guest_log!(
        crate::guest_log::Kind::Gic,
        Debug,
        "vgic: {}-byte {} of reserved {block} offset {offset:#x} ignored",
        width.bytes(),
        if write { "write" } else { "read" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_alignment() {
        use AccessWidth::*;
        assert!(Sizes::Word.allow("t", 4, Word));
        assert!(!Sizes::Word.allow("t", 4, Byte));
        assert!(!Sizes::Word.allow("t", 4, Double));
        assert!(!Sizes::Word.allow("t", 2, Word));
        assert!(Sizes::ByteOrWord.allow("t", 3, Byte));
        assert!(!Sizes::ByteOrWord.allow("t", 2, Half));
        assert!(Sizes::WordOrDouble.allow("t", 4, Word));
        assert!(Sizes::WordOrDouble.allow("t", 8, Double));
        assert!(!Sizes::WordOrDouble.allow("t", 4, Double));
        assert!(!Sizes::WordOrDouble.allow("t", 4, Half));
    }
}
