//! How guest-visible time is kept in a QEMU run: the host's clock, or `-icount`.

use serde::{Deserialize, Serialize};

/// How guest-visible time is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// The host's clock: real, and noisy under TCG.
    Wall,
    /// `-icount shift=0`: one nanosecond per guest instruction, repeatable run to run;
    /// one host thread runs every CPU in turn, so a CPU that spins or storms stalls
    /// every VM.
    Icount,
}

impl Clock {
    /// Parses a scenario's `"wall"` or `"icount"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "wall" => Some(Self::Wall),
            "icount" => Some(Self::Icount),
            _ => None,
        }
    }

    /// The name used in tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            Self::Wall => "wall clock",
            Self::Icount => "-icount shift=0",
        }
    }

    /// The short name used in file names and scenarios.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Wall => "wall",
            Self::Icount => "icount",
        }
    }

    /// QEMU's arguments for this clock.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Self::Wall => &[],
            Self::Icount => &["-icount", "shift=0"],
        }
    }
}
