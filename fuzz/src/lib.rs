//! What the fuzz targets in `fuzz_targets/` share: guest RAM with guard bytes
//! around it ([`ram`]), a logger that formats every line the hypervisor logs
//! ([`init_logging`]), an access width the fuzzer picks ([`Width`]), and the seed
//! inputs checked in under `corpus/` ([`seeds`]).
//!
//! The targets reach the hypervisor only through its public API, as the trap
//! path and the boot code do; nothing here is compiled into the product.

pub mod ram;
pub mod seeds;

use std::fmt::Write;
use std::sync::Once;

use hypervisor::devices::AccessWidth;
use libfuzzer_sys::arbitrary::{self, Arbitrary};

/// The width of a register access, as the fuzzer picks it.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl Width {
    /// The hypervisor's name for it.
    pub fn get(self) -> AccessWidth {
        match self {
            Self::Byte => AccessWidth::Byte,
            Self::Half => AccessWidth::Half,
            Self::Word => AccessWidth::Word,
            Self::Double => AccessWidth::Double,
        }
    }
}

/// A logger that formats every record and throws the text away, so the format
/// strings of the hypervisor's log lines (guest-caused ones included) run on the
/// fuzzer's inputs too: a panic while formatting a log line is a hypervisor crash
/// like any other.
struct FormatEverything;

impl log::Log for FormatEverything {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut sink = Discard;
        let _ = write!(sink, "{}", record.args());
    }

    fn flush(&self) {}
}

/// A `fmt::Write` that keeps nothing.
struct Discard;

impl Write for Discard {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        Ok(())
    }
}

/// Installs [`FormatEverything`] at the `Trace` level (once per process).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&FormatEverything).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
}
