//! Damage done to a scenario's boot bundle on purpose (`[expect] bundle_damage`), to
//! see the hypervisor refuse a truncated or corrupted bundle with a message instead
//! of crashing. Each damage is a run of its own.
//!
//! | entry | what it does |
//! | --- | --- |
//! | `"truncate N"` | keeps the first `N` bytes |
//! | `"xor OFFSET MASK"` | XORs the byte at `OFFSET` with `MASK` (1..=255) |
//! | `"word OFFSET VALUE"` | writes the big-endian 32-bit `VALUE` at `OFFSET` (the FDT's cell size) |
//!
//! Numbers are decimal or `0x` hexadecimal.

use std::fmt;

use crate::units::parse_u64;

/// One way to damage a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Keep the first `len` bytes.
    Truncate {
        /// Bytes kept.
        len: u64,
    },
    /// XOR the byte at `offset` with `mask`.
    Xor {
        /// Byte offset.
        offset: u64,
        /// Non-zero mask.
        mask: u8,
    },
    /// Write a big-endian 32-bit `value` at `offset`.
    Word {
        /// Byte offset.
        offset: u64,
        /// The value.
        value: u32,
    },
}

impl Damage {
    /// Reads an entry of `bundle_damage`.
    ///
    /// # Errors
    ///
    /// Saying what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let words: Vec<&str> = entry.split_whitespace().collect();
        let number = |text: &str| parse_u64(text).map_err(|e| format!("{text:?}: {e}"));
        match words.as_slice() {
            ["truncate", len] => Ok(Self::Truncate { len: number(len)? }),
            ["xor", offset, mask] => {
                let mask = u8::try_from(number(mask)?)
                    .ok()
                    .filter(|&m| m != 0)
                    .ok_or_else(|| format!("mask {mask} is not in 1..=255"))?;
                Ok(Self::Xor { offset: number(offset)?, mask })
            }
            ["word", offset, value] => {
                let value =
                    u32::try_from(number(value)?).map_err(|_| format!("{value} does not fit 32 bits"))?;
                Ok(Self::Word { offset: number(offset)?, value })
            }
            _ => Err("write \"truncate N\", \"xor OFFSET MASK\" or \"word OFFSET VALUE\"".to_owned()),
        }
    }

    /// Applies the damage to `bundle`.
    ///
    /// # Errors
    ///
    /// The damage lies past the bundle's end (the scenario names an offset the bundle
    /// doesn't have, so the run would test nothing).
    pub fn apply(self, bundle: &mut Vec<u8>) -> Result<(), String> {
        let len = bundle.len() as u64;
        let past = || format!("{self} is past the bundle's end ({len} bytes)");
        match self {
            Self::Truncate { len: keep } if keep < len => bundle.truncate(keep as usize),
            Self::Xor { offset, mask } if offset < len => bundle[offset as usize] ^= mask,
            Self::Word { offset, value } if offset.checked_add(4).is_some_and(|end| end <= len) => {
                bundle[offset as usize..offset as usize + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ => return Err(past()),
        }
        Ok(())
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncate { len } => write!(f, "truncated to {len} bytes"),
            Self::Xor { offset, mask } => write!(f, "byte {offset:#x} XOR {mask:#04x}"),
            Self::Word { offset, value } => write!(f, "word {offset:#x} = {value:#010x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        assert_eq!(Damage::parse("truncate 0x100"), Ok(Damage::Truncate { len: 256 }));
        assert_eq!(Damage::parse("xor 8 0xff"), Ok(Damage::Xor { offset: 8, mask: 0xff }));
        assert_eq!(Damage::parse("word 0x4 0xffffffff"), Ok(Damage::Word { offset: 4, value: u32::MAX }));
        assert!(Damage::parse("xor 8 0").unwrap_err().contains("not in 1..=255"));
        assert!(Damage::parse("xor 8 256").is_err());
        assert!(Damage::parse("word 0 0x100000000").unwrap_err().contains("32 bits"));
        assert!(Damage::parse("shred 4").unwrap_err().starts_with("write \"truncate N\""));
        assert!(Damage::parse("truncate x").is_err());
    }

    #[test]
    fn damage_is_applied() {
        let mut bundle = vec![0u8; 16];
        Damage::Xor { offset: 3, mask: 0x81 }.apply(&mut bundle).unwrap();
        assert_eq!(bundle[3], 0x81);
        Damage::Word { offset: 12, value: 0xd00d_feed }.apply(&mut bundle).unwrap();
        assert_eq!(&bundle[12..], &[0xd0, 0x0d, 0xfe, 0xed]);
        Damage::Truncate { len: 5 }.apply(&mut bundle).unwrap();
        assert_eq!(bundle.len(), 5);
    }

    #[test]
    fn damage_past_the_end_is_an_error() {
        let mut bundle = vec![0u8; 16];
        assert!(Damage::Truncate { len: 16 }.apply(&mut bundle).is_err());
        assert!(Damage::Xor { offset: 16, mask: 1 }.apply(&mut bundle).is_err());
        let err = Damage::Word { offset: 13, value: 1 }.apply(&mut bundle).unwrap_err();
        assert_eq!(err, "word 0xd = 0x00000001 is past the bundle's end (16 bytes)");
        assert!(Damage::Word { offset: u64::MAX, value: 1 }.apply(&mut bundle).is_err());
        assert_eq!(bundle, vec![0u8; 16]);
    }
}
