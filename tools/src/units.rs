//! Sizes and addresses as people write them in scenario files, and as messages show them.

use platform::Region;

/// One kibibyte.
pub const KIB: u64 = 1 << 10;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Parses an unsigned number: decimal, or hexadecimal with `0x`; `_` may group digits.
///
/// # Errors
///
/// A message if `text` is not such a number or does not fit in 64 bits.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    let digits: String = text.trim().chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (hex.to_owned(), 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("{text:?} is not a number"));
    }
    u64::from_str_radix(&digits, radix).map_err(|_| format!("{text:?} does not fit in 64 bits"))
}

/// Parses a size: a number of bytes, optionally followed by `K`, `M` or `G` (binary
/// multiples; `KiB`, `MiB`, `GiB` and lower case are accepted too).
///
/// # Errors
///
/// A message saying what is wrong with `text`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let is_hex = lower.starts_with("0x");
    let suffixes: [(&str, u64); 6] =
        [("kib", KIB), ("mib", MIB), ("gib", GIB), ("k", KIB), ("m", MIB), ("g", GIB)];
    let (number, unit) = suffixes
        .iter()
        .filter(|_| !is_hex)
        .find_map(|&(suffix, unit)| lower.strip_suffix(suffix).map(|n| (n, unit)))
        .unwrap_or((lower.as_str(), 1));
    let value = parse_u64(number)
        .map_err(|_| format!("{text:?} is not a size (write bytes, or a number with a K, M or G suffix)"))?;
    value.checked_mul(unit).ok_or_else(|| format!("{text:?} does not fit in 64 bits"))
}

/// Formats a byte count the way messages show it: `3 MiB`, `1 GiB`, `4097 bytes`.
pub fn fmt_size(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b.is_multiple_of(GIB) => format!("{} GiB", b / GIB),
        b if b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b if b.is_multiple_of(KIB) => format!("{} KiB", b / KIB),
        1 => "1 byte".to_owned(),
        b => format!("{b} bytes"),
    }
}

/// Formats a region as the half-open interval `[0x40000000, 0x44000000)`.
pub fn fmt_region(region: &Region) -> String {
    match region.end() {
        Some(end) => format!("[{:#x}, {end:#x})", region.base),
        None => format!("[{:#x}, beyond 2^64)", region.base),
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_decimal_and_hex() {
        assert_eq!(parse_u64("1234"), Ok(1234));
        assert_eq!(parse_u64("0x5000_0000"), Ok(0x5000_0000));
        assert_eq!(parse_u64(" 0X10 "), Ok(16));
        assert!(parse_u64("").is_err());
        assert!(parse_u64("0x").is_err());
        assert!(parse_u64("12a").is_err());
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("0x1_0000_0000_0000_0000").is_err());
    }

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 * MIB));
        assert_eq!(parse_size("1G"), Ok(GIB));
        assert_eq!(parse_size("4k"), Ok(4 * KIB));
        assert_eq!(parse_size("2MiB"), Ok(2 * MIB));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x200000"), Ok(2 * MIB));
        assert!(parse_size("64Q").unwrap_err().contains("is not a size"));
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").unwrap_err().contains("64 bits"));
    }

    #[test]
    fn sizes_format_in_the_largest_exact_unit() {
        assert_eq!(fmt_size(3 * MIB), "3 MiB");
        assert_eq!(fmt_size(GIB), "1 GiB");
        assert_eq!(fmt_size(1536 * MIB), "1536 MiB");
        assert_eq!(fmt_size(8 * KIB), "8 KiB");
        assert_eq!(fmt_size(4097), "4097 bytes");
        assert_eq!(fmt_size(0), "0 bytes");
    }

    #[test]
    fn regions_format_half_open() {
        let r = Region::new(0x4000_0000, 0x400_0000);
        assert_eq!(fmt_region(&r), "[0x40000000, 0x44000000)");
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
    }
}
