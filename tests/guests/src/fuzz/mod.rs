//! The logic of the hostile fuzz guest (`src/bin/fuzz.rs`): what it picks and how it
//! keeps itself alive, as plain code with host tests. The guest binary does the
//! accesses.
//!
//! From a seed ([`Args`], `seed=N ops=M` in the bootargs) the guest makes `M`
//! operations, each of one [`Kind`]:
//!
//! - `virtio`: a read or write of a random width (1, 2, 4, 8 bytes, aligned or not)
//!   and value at a register of one of its virtio-mmio slots, an empty slot or just
//!   past the window ([`regs`]);
//! - `chain`: descriptor chains built in its own RAM on a queue it made live,
//!   published (with random index jumps) and notified ([`chain`]);
//! - `gic`, `uart`: random accesses in the GIC distributor and redistributors and in
//!   the PL011, and just past them ([`regs`]);
//! - `psci`: random PSCI and SMCCC calls over `hvc` and `smc` ([`calls`]).
//!
//! What the guest must never do to itself, and how it is kept from it:
//!
//! - a device must never write into memory the guest lives on. Every address the
//!   guest gives a device is outside RAM or inside the device's own area of RAM
//!   ([`space`]), the device only walks descriptor tables the guest wrote in the
//!   same operation (the register fuzzer never notifies an existing queue, and a
//!   chain operation sets its queue up again after any other write to the slot),
//!   and what a device writes (used rings, data) never lands on those tables;
//! - PSCI calls that would stop it (`SYSTEM_OFF`, `SYSTEM_RESET`, `CPU_OFF` of
//!   itself, suspends) are never made, and a `CPU_ON` that could start a CPU of this
//!   VM starts it at the parking routine or at an address outside RAM, which Sluice
//!   refuses with `INVALID_ADDRESS` ([`calls::sanitize`]);
//! - the aborts and undefined instructions that come back are counted and skipped
//!   (`exceptions::skip_faults`);
//! - bytes that reach the console (virtio-console transmits, emergency writes, PL011
//!   data) carry no letters ([`sanitize_byte`]), so no line the guest causes can
//!   read like a test verdict (`FAIL`, `panicked`); a virtio-console operation makes
//!   the device read at most [`chain::CONSOLE_BUDGET`] bytes of RAM.

pub mod calls;
pub mod chain;
pub mod regs;
pub mod space;

use core::fmt;

/// The seed when the bootargs name none.
pub const DEFAULT_SEED: u64 = 1;
/// Operations when the bootargs name no count.
pub const DEFAULT_OPS: u64 = 20_000;

/// What the bootargs ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args {
    /// The PRNG's seed.
    pub seed: u64,
    /// How many operations to make.
    pub ops: u64,
}

/// A bootargs value that is no number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadArg<'a> {
    /// The key.
    pub key: &'static str,
    /// What it said.
    pub value: &'a str,
}

impl fmt::Display for BadArg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {}={:?} in the bootargs (a decimal or 0x number)", self.key, self.value)
    }
}

/// Parses a decimal or `0x` hexadecimal number.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Args {
    /// Reads `seed=N` and `ops=M` from `bootargs` (defaults [`DEFAULT_SEED`] and
    /// [`DEFAULT_OPS`]).
    ///
    /// # Errors
    ///
    /// A value that is no number.
    pub fn parse(bootargs: &str) -> Result<Self, BadArg<'_>> {
        let get = |key: &'static str, default: u64| match crate::bootargs::value(bootargs, key) {
            None => Ok(default),
            Some(value) => parse_number(value).ok_or(BadArg { key, value }),
        };
        Ok(Self { seed: get("seed", DEFAULT_SEED)?, ops: get("ops", DEFAULT_OPS)? })
    }
}

/// The width of one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    B1,
    /// 16 bits.
    B2,
    /// 32 bits.
    B4,
    /// 64 bits.
    B8,
}

impl Width {
    /// All four.
    pub const ALL: [Width; 4] = [Width::B1, Width::B2, Width::B4, Width::B8];

    /// Bytes accessed.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::B1 => 1,
            Self::B2 => 2,
            Self::B4 => 4,
            Self::B8 => 8,
        }
    }

    /// The low bytes of `value` that an access of this width moves.
    pub const fn mask(self, value: u64) -> u64 {
        match self {
            Self::B8 => value,
            _ => value & ((1 << (8 * self.bytes())) - 1),
        }
    }
}

/// The kinds of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// virtio-mmio register accesses.
    Virtio,
    /// Descriptor chains, published and notified.
    Chain,
    /// GIC distributor and redistributor accesses.
    Gic,
    /// PL011 accesses.
    Uart,
    /// PSCI and SMCCC calls.
    Psci,
}

impl Kind {
    /// Every kind, in summary order.
    pub const ALL: [Kind; 5] = [Kind::Virtio, Kind::Chain, Kind::Gic, Kind::Uart, Kind::Psci];
    /// How often each is picked, in [`Kind::ALL`]'s order.
    pub const WEIGHTS: [u32; 5] = [30, 25, 20, 8, 17];

    /// Its name in the summary.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Virtio => "virtio",
            Self::Chain => "chain",
            Self::Gic => "gic",
            Self::Uart => "uart",
            Self::Psci => "psci",
        }
    }

    /// Its index in [`Kind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What a run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations made, per kind ([`Kind::ALL`]'s order).
    pub ops: [u64; 5],
    /// Operations that took at least one fault back, per kind.
    pub faulted: [u64; 5],
    /// Data aborts taken.
    pub data_aborts: u64,
    /// Undefined-instruction exceptions taken.
    pub undefined: u64,
    /// CPU_ON calls that succeeded (the CPU went to the parking routine).
    pub cpus_started: u64,
    /// Times a chain operation had to set its device up again.
    pub setups: u64,
    /// Chain operations after which the device said DEVICE_NEEDS_RESET.
    pub needs_reset: u64,
}

impl Tally {
    /// Records one operation of `kind` that took `faults` faults.
    pub fn record(&mut self, kind: Kind, faults: u64) {
        self.ops[kind.index()] += 1;
        if faults > 0 {
            self.faulted[kind.index()] += 1;
        }
    }

    /// Operations made.
    pub fn total(&self) -> u64 {
        self.ops.iter().sum()
    }

    /// Faults taken.
    pub fn faults(&self) -> u64 {
        self.data_aborts + self.undefined
    }
}

/// The guest's last line: `fuzz: seed S done: N operations in T ms; ...`. The tools
/// (`cargo xtask fuzz-guest`) read the seed, the count and the time from it.
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    /// The seed.
    pub seed: u64,
    /// What was counted.
    pub tally: &'a Tally,
    /// How long the operations took, by the guest's counter.
    pub ms: u64,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.tally;
        write!(f, "fuzz: seed {} done: {} ops in {} ms;", self.seed, t.total(), self.ms)?;
        for kind in Kind::ALL {
            let i = kind.index();
            write!(f, " {} {}/{}", kind.name(), t.ops[i], t.faulted[i])?;
        }
        write!(
            f,
            " (ops/faulted); faulted back {} ({} aborts, {} undefined); cpu_on {}; setups {}; resets {}",
            t.faults(),
            t.data_aborts,
            t.undefined,
            t.cpus_started,
            t.setups,
            t.needs_reset
        )
    }
}

/// A byte that may go to the console: letters become control characters (for
/// upper case) or digits and punctuation (lower case), so that no run of bytes the
/// fuzzer has a device print can spell a word; everything else, control characters
/// and bytes above 0x7e included, goes as it is (the console shows them escaped).
pub const fn sanitize_byte(byte: u8) -> u8 {
    if byte.is_ascii_alphabetic() {
        byte ^ 0x40
    } else {
        byte
    }
}

/// `value` with each of its bytes passed through [`sanitize_byte`].
pub fn sanitize_value(value: u64) -> u64 {
    let mut bytes = value.to_le_bytes();
    bytes.iter_mut().for_each(|b| *b = sanitize_byte(*b));
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seed_and_ops() {
        assert_eq!(Args::parse("seed=7 ops=100"), Ok(Args { seed: 7, ops: 100 }));
        assert_eq!(Args::parse("ops=0x10 name=x"), Ok(Args { seed: DEFAULT_SEED, ops: 16 }));
        assert_eq!(Args::parse(""), Ok(Args { seed: DEFAULT_SEED, ops: DEFAULT_OPS }));
        assert_eq!(
            Args::parse("seed=18446744073709551615").map(|a| a.seed),
            Ok(u64::MAX),
            "every u64 is a seed"
        );
        let bad = Args::parse("seed=seven").unwrap_err();
        assert_eq!(bad, BadArg { key: "seed", value: "seven" });
        assert_eq!(bad.to_string(), "bad seed=\"seven\" in the bootargs (a decimal or 0x number)");
        assert!(Args::parse("ops=-1").is_err());
    }

    #[test]
    fn widths_mask_their_bytes() {
        assert_eq!(Width::B1.mask(0x1234), 0x34);
        assert_eq!(Width::B2.mask(0x12_3456), 0x3456);
        assert_eq!(Width::B4.mask(u64::MAX), 0xffff_ffff);
        assert_eq!(Width::B8.mask(u64::MAX), u64::MAX);
        assert_eq!(Width::ALL.map(Width::bytes), [1, 2, 4, 8]);
    }

    #[test]
    fn kinds_line_up_with_their_weights() {
        assert_eq!(Kind::ALL.len(), Kind::WEIGHTS.len());
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn the_summary_says_everything_on_one_line() {
        let mut tally = Tally::default();
        tally.record(Kind::Virtio, 0);
        tally.record(Kind::Virtio, 2);
        tally.record(Kind::Psci, 0);
        tally.data_aborts = 2;
        tally.cpus_started = 1;
        let line = Summary { seed: 7, tally: &tally, ms: 12 }.to_string();
        assert_eq!(
            line,
            "fuzz: seed 7 done: 3 ops in 12 ms; virtio 2/1 chain 0/0 gic 0/0 uart 0/0 psci 1/0 (ops/faulted); \
             faulted back 2 (2 aborts, 0 undefined); cpu_on 1; setups 0; resets 0"
        );
        // The console holds a VM's line back up to 256 bytes before it sends it
        // unfinished: a long run's summary fits.
        let long = Tally {
            ops: [99_999; 5],
            faulted: [99_999; 5],
            data_aborts: 999_999,
            undefined: 999_999,
            cpus_started: 99_999,
            setups: 99_999,
            needs_reset: 99_999,
        };
        let line = Summary { seed: 9_999_999_999, tally: &long, ms: 999_999 }.to_string();
        assert!(line.len() < 256, "{} bytes: {line}", line.len());
    }

    #[test]
    fn console_bytes_spell_nothing() {
        for b in 0..=255u8 {
            assert!(!sanitize_byte(b).is_ascii_alphabetic(), "{b:#x}");
        }
        assert_eq!(sanitize_byte(b'\n'), b'\n');
        assert_eq!(sanitize_byte(0x1b), 0x1b);
        assert_eq!(sanitize_byte(b'F'), 0x06);
        assert_eq!(sanitize_byte(b'f'), b'&');
        assert_eq!(
            sanitize_value(u64::from_le_bytes(*b"FAIL\n\0\x7f\xff")).to_le_bytes(),
            *b"\x06\x01\x09\x0c\n\0\x7f\xff"
        );
    }
}
