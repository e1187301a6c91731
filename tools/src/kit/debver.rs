//! Debian version ordering, and the choice of the newest kernel package by name.
//!
//! The comparison of version parts (an upstream version, a revision, or the ABI in a
//! kernel package's name) is dpkg's (Debian Policy §5.6.12, `verrevcmp` in dpkg's
//! `lib/dpkg/version.c`): non-digit runs compare character by character with letters
//! before other characters and `~` before everything, even the end of the string;
//! digit runs compare as numbers.

use std::cmp::Ordering;

/// The weight of one character in a non-digit run (`None` is the end of the run).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// Compares two upstream versions or revisions the way dpkg does (epochs aside).
pub fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // The non-digit runs.
        while a.first().is_some_and(|c| !c.is_ascii_digit()) || b.first().is_some_and(|c| !c.is_ascii_digit())
        {
            let (ac, bc) = (order(a.first().copied()), order(b.first().copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        // The digit runs, as numbers of any length.
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (digits(a), digits(b));
        let trim = |s: &[u8]| -> Vec<u8> { s.iter().copied().skip_while(|&c| c == b'0').collect() };
        let (da, db) = (trim(&a[..na]), trim(&b[..nb]));
        let by_number = da.len().cmp(&db.len()).then_with(|| da.cmp(&db));
        if by_number != Ordering::Equal {
            return by_number;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

/// The kernel ABI a package name carries between `prefix` and `suffix`
/// (`linux-image-6.12.117+deb12-cloud-arm64-unsigned` gives `6.12.117+deb12`).
pub fn abi_of<'a>(name: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let abi = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (abi.starts_with(|c: char| c.is_ascii_digit()) && !abi.contains(char::is_whitespace)).then_some(abi)
}

/// The newest of `names` (one package name per item) that have the form
/// `<prefix><abi><suffix>`, ordered by their ABI as a Debian version.
pub fn newest<'a>(names: impl IntoIterator<Item = &'a str>, prefix: &str, suffix: &str) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|name| abi_of(name, prefix, suffix).map(|abi| (abi, name)))
        .max_by(|(a, _), (b, _)| compare_part(a, b))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_ordering() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0+", Less),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("6.12.117+deb12", "6.1.0-56", Greater),
            ("6.12.117+deb12", "6.12.9+deb12", Greater),
            ("6.1.0-10", "6.1.0-9", Greater),
            ("1~deb12u1", "1", Less),
            ("4+deb12u1+b1", "4+deb12u1", Greater),
            ("20240101000000000000", "3", Greater),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_part(a, b), want, "{a} vs {b}");
            assert_eq!(compare_part(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn abi_is_between_prefix_and_suffix() {
        let (prefix, suffix) = ("linux-image-", "-cloud-arm64-unsigned");
        assert_eq!(abi_of("linux-image-6.1.0-56-cloud-arm64-unsigned", prefix, suffix), Some("6.1.0-56"));
        assert_eq!(abi_of("linux-image-cloud-arm64-unsigned", prefix, suffix), None);
        assert_eq!(abi_of("linux-image-6.1.0-56-cloud-arm64-unsigned-dbg", prefix, suffix), None);
        assert_eq!(abi_of("linux-headers-6.1.0-56-cloud-arm64-unsigned", prefix, suffix), None);
    }

    #[test]
    fn newest_kernel_package_wins() {
        let names = [
            "linux-image-6.1.0-47-cloud-arm64-unsigned",
            "linux-image-6.12.107+deb12-cloud-arm64-unsigned",
            "linux-image-6.12.117+deb12-cloud-arm64-unsigned",
            "linux-image-6.1.0-56-cloud-arm64-unsigned",
            "linux-image-6.12.9+deb12-cloud-arm64-unsigned",
            "linux-image-cloud-arm64-unsigned-dbg",
            "linux-image-7.0~rc1-cloud-arm64-dbg",
        ];
        let (prefix, suffix) = ("linux-image-", "-cloud-arm64-unsigned");
        assert_eq!(newest(names, prefix, suffix), Some("linux-image-6.12.117+deb12-cloud-arm64-unsigned"));
        assert_eq!(
            newest(
                ["linux-image-6.1.0-9-cloud-arm64-unsigned", "linux-image-6.1.0-10-cloud-arm64-unsigned"],
                prefix,
                suffix
            ),
            Some("linux-image-6.1.0-10-cloud-arm64-unsigned")
        );
        assert_eq!(newest(["busybox-static"], prefix, suffix), None);
    }
}
