//! The generic counter (CNTPCT/CNTVCT): its ticks in nanoseconds, for everyone
//! who reports times read from it (the hypervisor's trace, the latency guest).

/// Nanoseconds in `ticks` of a counter running at `hz`, rounded down; 0 if the
/// frequency is unknown (0), `u64::MAX` if it does not fit.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(hz)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_ticks_to_nanoseconds() {
        // QEMU virt's counter: 62.5 MHz, 16 ns per tick.
        assert_eq!(ticks_to_ns(1, 62_500_000), 16);
        assert_eq!(ticks_to_ns(3, 1_000_000_000), 3);
        assert_eq!(ticks_to_ns(1, 3), 333_333_333);
        assert_eq!(ticks_to_ns(5, 0), 0);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }
}
