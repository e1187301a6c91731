//! Damage done to a scenario's boot bundle on purpose (`[expect] bundle_damage`), to
//! see the hypervisor refuse a truncated or corrupted bundle with a message instead
//! of crashing. Each damage is a run of its own.
//!
//! | entry | what it does |
//! | --- | --- |
//! | `"truncate N"` | keeps the first `N` bytes |
//! | `"xor OFFSET MASK"` | XORs the byte at `OFFSET` with `MASK` (1..=255) |
//! | `"word OFFSET VALUE"` | writes the big-endian 32-bit `VALUE` at `OFFSET` (the FDT's cell size) |
//! | `"property NAME VALUE"` | sets every 4- or 8-byte property called `NAME` to `VALUE` (a well-formed bundle with values the hypervisor refuses) |
//!
//! Numbers are decimal or `0x` hexadecimal.

use std::fmt;

use crate::units::parse_u64;

/// One way to damage a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Set every property `name` of one or two cells to `value`.
    Property {
        /// The property's name.
        name: String,
        /// Its new value, in as many cells as it has.
        value: u64,
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
            ["property", name, value] => {
                Ok(Self::Property { name: (*name).to_owned(), value: number(value)? })
            }
            _ => Err(
                "write \"truncate N\", \"xor OFFSET MASK\", \"word OFFSET VALUE\" or \"property NAME VALUE\""
                    .to_owned(),
            ),
        }
    }

    /// Applies the damage to `bundle`.
    ///
    /// # Errors
    ///
    /// The damage lies past the bundle's end, or the bundle has no property to set
    /// (the scenario names something the bundle doesn't have, so the run would test
    /// nothing).
    pub fn apply(&self, bundle: &mut Vec<u8>) -> Result<(), String> {
        let len = bundle.len() as u64;
        let past = || format!("{self} is past the bundle's end ({len} bytes)");
        match *self {
            Self::Truncate { len: keep } if keep < len => bundle.truncate(keep as usize),
            Self::Xor { offset, mask } if offset < len => bundle[offset as usize] ^= mask,
            Self::Word { offset, value } if offset.checked_add(4).is_some_and(|end| end <= len) => {
                bundle[offset as usize..offset as usize + 4].copy_from_slice(&value.to_be_bytes());
            }
            Self::Property { ref name, value } => {
                let found = set_properties(bundle, name, value);
                if found == 0 {
                    return Err(format!("the bundle has no 4- or 8-byte property {name:?}"));
                }
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
            Self::Property { name, value } => write!(f, "every {name} = {value:#x}"),
        }
    }
}

/// FDT structure-block tokens.
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;

/// Sets every property called `name` whose value is one or two cells in the
/// well-formed FDT `blob` (the tools wrote it) to `value`; returns how many it set.
fn set_properties(blob: &mut [u8], name: &str, value: u64) -> usize {
    let word =
        |blob: &[u8], at: usize| blob.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap()));
    let (Some(structs), Some(strings)) = (word(blob, 8), word(blob, 12)) else { return 0 };
    let strings = strings as usize;
    let mut at = structs as usize;
    let mut found = 0;
    while let Some(token) = word(blob, at) {
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let Some(nul) = blob[at..].iter().position(|&b| b == 0) else { return found };
                at += (nul + 1).next_multiple_of(4);
            }
            FDT_END_NODE | FDT_NOP => {}
            FDT_PROP => {
                let (Some(len), Some(name_offset)) = (word(blob, at), word(blob, at + 4)) else {
                    return found;
                };
                let (len, value_at) = (len as usize, at + 8);
                let name_at = strings + name_offset as usize;
                let is_named = blob
                    .get(name_at..)
                    .is_some_and(|s| s.starts_with(name.as_bytes()) && s.get(name.len()) == Some(&0));
                if is_named && (len == 4 || len == 8) && value_at + len <= blob.len() {
                    let bytes = value.to_be_bytes();
                    blob[value_at..value_at + len].copy_from_slice(&bytes[8 - len..]);
                    found += 1;
                }
                at = value_at + len.next_multiple_of(4);
            }
            _ => return found,
        }
    }
    found
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
        let property = Damage::Property { name: "memory-size".into(), value: 0x10_0001 };
        assert_eq!(Damage::parse("property memory-size 0x100001"), Ok(property));
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
    fn a_property_is_set_wherever_it_is() {
        let mut fdt = vm_fdt::FdtWriter::new().unwrap();
        let root = fdt.begin_node("").unwrap();
        for name in ["vm@0", "vm@1"] {
            let vm = fdt.begin_node(name).unwrap();
            fdt.property_string("vm-name", "a").unwrap();
            fdt.property_u64("memory-size", 64 << 20).unwrap();
            fdt.property_u32("cpus", 0).unwrap();
            fdt.end_node(vm).unwrap();
        }
        fdt.end_node(root).unwrap();
        let mut bundle = fdt.finish().unwrap();
        let damage = Damage::parse("property memory-size 0x100001").unwrap();
        damage.apply(&mut bundle).unwrap();
        Damage::parse("property cpus 7").unwrap().apply(&mut bundle).unwrap();
        let parsed = fdt::Fdt::new(&bundle).unwrap();
        for vm in ["/vm@0", "/vm@1"] {
            let node = parsed.find_node(vm).unwrap();
            assert_eq!(node.property("memory-size").unwrap().as_usize(), Some(0x10_0001));
            assert_eq!(node.property("cpus").unwrap().as_usize(), Some(7));
            assert_eq!(node.property("vm-name").unwrap().as_str(), Some("a"));
        }
        let err = Damage::parse("property vm-name 1").unwrap().apply(&mut bundle).unwrap_err();
        assert_eq!(err, "the bundle has no 4- or 8-byte property \"vm-name\"");
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
