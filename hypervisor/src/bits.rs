//! Sets kept as bitmaps (vCPUs to kick, virtio slots with work left, interrupts).

/// The positions of the bits set in `bits`, lowest first.
pub fn ones(mut bits: u128) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        let position = (bits != 0).then(|| bits.trailing_zeros())?;
        bits &= bits - 1;
        Some(position)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn lists_the_set_bits_lowest_first() {
        assert_eq!(ones(0).count(), 0);
        assert_eq!(ones(0b1011).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(ones(1 << 127 | 1 << 64).collect::<Vec<_>>(), [64, 127]);
    }
}
