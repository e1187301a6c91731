//! The trace as JSON lines, one object per line, for `cargo xtask bench` and for
//! anyone reading a dump:
//!
//! ```text
//! {"trace":"stages","vm":"bench","cpu":0,"phase":3,"reason":"mmio","exits":1000,"ns":{"decode":12000,...,"return":7000}}
//! {"trace":"exit","vm":"bench","cpu":0,"vcpu":0,"phase":3,"reason":"mmio","at_ns":123456,"ns":{"decode":16,...}}
//! ```
//!
//! `stages` lines carry the sums for one phase and exit reason on one CPU (total
//! nanoseconds per segment over `exits` exits); `exit` lines one exit from the ring,
//! with only the segments it reached. Times are converted from counter ticks at
//! the counter's frequency and rounded down.

use super::record::{Record, Stage, SEGMENTS};
use super::sums::Sums;
use super::MAX_PHASES;
use crate::trace::stats::ExitReason;
use core::fmt::{self, Write};
use platform::counter::ticks_to_ns;

/// `text` as a JSON string.
struct JsonStr<'a>(&'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// `"ns":{...}` with the segments `reached` says to include.
fn write_segments(
    out: &mut impl Write,
    ticks: &[u64; SEGMENTS],
    reached: impl Fn(usize) -> bool,
    hz: u64,
) -> fmt::Result {
    out.write_str("\"ns\":{")?;
    let mut first = true;
    for (i, stage) in Stage::ALL[1..].iter().enumerate() {
        if reached(i) {
            let comma = if first { "" } else { "," };
            write!(out, "{comma}\"{}\":{}", stage.segment(), ticks_to_ns(ticks[i], hz))?;
            first = false;
        }
    }
    out.write_char('}')
}

/// One `stages` line per phase and reason that has exits on this CPU.
///
/// # Errors
///
/// Whatever `out` returns.
pub fn write_stages(out: &mut impl Write, vm: &str, cpu: usize, sums: &Sums, hz: u64) -> fmt::Result {
    for phase in 0..MAX_PHASES {
        for reason in ExitReason::ALL {
            let t = sums.totals(phase, reason);
            if t.exits == 0 {
                continue;
            }
            write!(
                out,
                "{{\"trace\":\"stages\",\"vm\":{},\"cpu\":{cpu},\"phase\":{phase},\"reason\":\"{}\",\"exits\":{},",
                JsonStr(vm),
                reason.name(),
                t.exits
            )?;
            write_segments(out, &t.segments, |_| true, hz)?;
            out.write_str("}\n")?;
        }
    }
    Ok(())
}

/// One `exit` line for `record`, taken on CPU `cpu`.
///
/// # Errors
///
/// Whatever `out` returns.
pub fn write_exit(out: &mut impl Write, vm: &str, cpu: usize, record: &Record, hz: u64) -> fmt::Result {
    write!(
        out,
        "{{\"trace\":\"exit\",\"vm\":{},\"cpu\":{cpu},\"vcpu\":{},\"phase\":{},\"reason\":\"{}\",\"at_ns\":{},",
        JsonStr(vm),
        record.vcpu,
        record.phase,
        record.reason.name(),
        ticks_to_ns(record.entry, hz)
    )?;
    write_segments(out, &record.segments(), |i| record.offsets[i] != Record::NOT_REACHED, hz)?;
    out.write_str("}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    const QEMU_HZ: u64 = 62_500_000;
    const N: u32 = Record::NOT_REACHED;

    #[test]
    fn stages_lines_per_phase_and_reason() {
        let sums = Sums::new();
        let r = |phase, reason, offsets| Record { entry: 0, offsets, reason, phase, vm: 0, vcpu: 0 };
        sums.add(&r(3, ExitReason::Mmio, [2, 3, 5, 40, 41, 45, 47]));
        sums.add(&r(1, ExitReason::Hvc, [5, N, N, N, N, 9, 12]));
        let mut text = String::new();
        write_stages(&mut text, "be\"nch", 2, &sums, QEMU_HZ).unwrap();
        assert_eq!(
            text,
            "{\"trace\":\"stages\",\"vm\":\"be\\\"nch\",\"cpu\":2,\"phase\":1,\"reason\":\"hvc\",\"exits\":1,\
             \"ns\":{\"decode\":80,\"dispatch\":0,\"transport\":0,\"backend\":0,\"complete\":0,\"inject\":64,\"return\":48}}\n\
             {\"trace\":\"stages\",\"vm\":\"be\\\"nch\",\"cpu\":2,\"phase\":3,\"reason\":\"mmio\",\"exits\":1,\
             \"ns\":{\"decode\":32,\"dispatch\":16,\"transport\":32,\"backend\":560,\"complete\":16,\"inject\":64,\"return\":32}}\n"
        );
    }

    #[test]
    fn exit_line_has_only_the_segments_reached() {
        let record = Record {
            entry: 10,
            offsets: [5, N, N, N, N, 9, 12],
            reason: ExitReason::Hvc,
            phase: 4,
            vm: 1,
            vcpu: 1,
        };
        let mut text = String::new();
        write_exit(&mut text, "a\n", 1, &record, QEMU_HZ).unwrap();
        assert_eq!(
            text,
            "{\"trace\":\"exit\",\"vm\":\"a\\u000a\",\"cpu\":1,\"vcpu\":1,\"phase\":4,\"reason\":\"hvc\",\"at_ns\":160,\
             \"ns\":{\"decode\":80,\"inject\":64,\"return\":48}}\n"
        );
    }
}
