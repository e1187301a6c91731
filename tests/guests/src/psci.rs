//! PSCI (Arm DEN 0022, PSCI 1.1): version, features, power off, through the conduit
//! the DTB names.
//!
//! The `/psci` node's `method` says which instruction reaches the PSCI implementation:
//! Sluice says `hvc` (and serves a trapped `smc` the same way); plain QEMU says `hvc`
//! without EL2 and `smc` with `virtualization=on`.

use core::fmt;

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000a;

/// The instruction that makes a PSCI call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`: the hypervisor answers.
    Hvc,
    /// `smc #0`: the secure monitor answers (or a hypervisor that traps `smc`).
    Smc,
}

impl Conduit {
    /// The conduit a `/psci` `method` property names (`"hvc"` or `"smc"`).
    pub fn from_method(method: &str) -> Option<Self> {
        match method {
            "hvc" => Some(Self::Hvc),
            "smc" => Some(Self::Smc),
            _ => None,
        }
    }

    /// The other instruction.
    pub const fn other(self) -> Self {
        match self {
            Self::Hvc => Self::Smc,
            Self::Smc => Self::Hvc,
        }
    }

    /// The instruction's name, as the DTB spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hvc => "hvc",
            Self::Smc => "smc",
        }
    }
}

impl fmt::Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PSCI version, as PSCI_VERSION returns it (major in bits \[30:16\], minor in \[15:0\]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

impl Version {
    /// Decodes PSCI_VERSION's x0, or `None` if it is an error code (negative as a
    /// 32-bit value, bit 31 set).
    pub const fn from_ret(x0: u64) -> Option<Self> {
        let v = x0 as u32;
        if v & (1 << 31) != 0 {
            return None;
        }
        Some(Self {
            major: (v >> 16) as u16,
            minor: v as u16,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(bare_metal)]
pub use self::calls::{call, conduit, features, init_from_dtb, system_off, version};

#[cfg(bare_metal)]
mod calls {
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::{Conduit, Version, PSCI_FEATURES, PSCI_VERSION, SYSTEM_OFF};
    use crate::dtb::BootInfo;
    use crate::smccc;

    /// Whether the conduit is `smc` (the default, `hvc`, is Sluice's).
    static USE_SMC: AtomicBool = AtomicBool::new(false);

    /// Takes the conduit from the DTB at `dtb`; keeps `hvc` if the DTB has none.
    pub fn init_from_dtb(dtb: usize) {
        if let Ok(Some(conduit)) = BootInfo::read(dtb).map(|info| info.psci) {
            USE_SMC.store(conduit == Conduit::Smc, Ordering::Relaxed);
        }
    }

    /// The conduit PSCI calls use.
    pub fn conduit() -> Conduit {
        if USE_SMC.load(Ordering::Relaxed) {
            Conduit::Smc
        } else {
            Conduit::Hvc
        }
    }

    /// Makes the call `function(a1, a2, a3)` through `via`; returns x0.
    pub fn call(via: Conduit, function: u32, a1: u64, a2: u64, a3: u64) -> u64 {
        let f = u64::from(function);
        match via {
            Conduit::Hvc => smccc::hvc(f, a1, a2, a3),
            Conduit::Smc => smccc::smc(f, a1, a2, a3),
        }
    }

    /// PSCI_VERSION through `via`.
    ///
    /// # Errors
    ///
    /// The call's (negative) return value when it is not a version.
    pub fn version(via: Conduit) -> Result<Version, i64> {
        let ret = call(via, PSCI_VERSION, 0, 0, 0);
        Version::from_ret(ret).ok_or(ret as i64)
    }

    /// PSCI_FEATURES(`function`) through the DTB's conduit: 0 (or feature flags) if
    /// implemented, `NOT_SUPPORTED` (-1) if not.
    pub fn features(function: u32) -> i32 {
        call(conduit(), PSCI_FEATURES, u64::from(function), 0, 0) as i32
    }

    /// SYSTEM_OFF through the DTB's conduit; halts if the call returns.
    pub fn system_off() -> ! {
        call(conduit(), SYSTEM_OFF, 0, 0, 0);
        crate::cpu::halt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conduit_comes_from_the_method_property() {
        assert_eq!(Conduit::from_method("hvc"), Some(Conduit::Hvc));
        assert_eq!(Conduit::from_method("smc"), Some(Conduit::Smc));
        assert_eq!(Conduit::from_method("HVC"), None);
        assert_eq!(Conduit::from_method(""), None);
        assert_eq!(Conduit::Hvc.other(), Conduit::Smc);
        assert_eq!(Conduit::Smc.to_string(), "smc");
    }

    #[test]
    fn decodes_versions_and_errors() {
        assert_eq!(
            Version::from_ret(0x1_0001),
            Some(Version { major: 1, minor: 1 })
        );
        assert_eq!(Version::from_ret(0x2).unwrap().to_string(), "0.2");
        // NOT_SUPPORTED, as a 64-bit or a 32-bit -1.
        assert_eq!(Version::from_ret(u64::MAX), None);
        assert_eq!(Version::from_ret(0xffff_ffff), None);
    }
}
