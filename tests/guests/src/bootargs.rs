//! `key=value` words of a guest's bootargs (`/chosen/bootargs`), as in
//! `name=left ticks=5`.

/// The value of the first `key=value` word of `args`, if there is one.
pub fn value<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace()
        .find_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// A guest's name from `name=...`, as the prefix of its lines: `"left "`, or `""`
/// without one. Lets two instances of one guest be told apart in one console.
pub fn name_prefix<'a>(args: &'a str) -> NamePrefix<'a> {
    NamePrefix(value(args, "name").filter(|n| !n.is_empty()))
}

/// Shows `NAME ` (with the space), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamePrefix<'a>(pub Option<&'a str>);

impl core::fmt::Display for NamePrefix<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(name) => write!(f, "{name} "),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_by_key() {
        let args = "name=left ticks=5  console=ttyAMA0";
        assert_eq!(value(args, "name"), Some("left"));
        assert_eq!(value(args, "ticks"), Some("5"));
        assert_eq!(value(args, "console"), Some("ttyAMA0"));
        assert_eq!(value(args, "tick"), None); // a prefix of a key is no key
        assert_eq!(value(args, "left"), None);
        assert_eq!(value("name= x", "name"), Some(""));
        assert_eq!(value("name=a name=b", "name"), Some("a"));
        assert_eq!(value("", "name"), None);
    }

    #[test]
    fn names_the_prefix() {
        assert_eq!(name_prefix("name=right").to_string(), "right ");
        assert_eq!(name_prefix("ticks=3").to_string(), "");
        assert_eq!(name_prefix("name=").to_string(), "");
    }
}
