//! PSCI (Arm DEN 0022, PSCI 1.1): version, features, CPU power (on, off, affinity
//! info), power off, through the conduit the DTB names.
//!
//! The `/psci` node's `method` says which instruction reaches the PSCI implementation:
//! Sluice says `hvc` (and serves a trapped `smc` the same way); plain QEMU says `hvc`
//! without EL2 and `smc` with `virtualization=on`.

use core::fmt;

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000a;
/// CPU_OFF.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON, SMC64 (64-bit entry point and context id).
pub const CPU_ON: u32 = 0xc400_0003;
/// AFFINITY_INFO, SMC64.
pub const AFFINITY_INFO: u32 = 0xc400_0004;

/// A PSCI error code (DEN 0022, 5.2.2), as the signed value x0 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub i64);

impl Error {
    /// NOT_SUPPORTED.
    pub const NOT_SUPPORTED: Self = Self(-1);
    /// INVALID_PARAMETERS.
    pub const INVALID_PARAMETERS: Self = Self(-2);
    /// DENIED.
    pub const DENIED: Self = Self(-3);
    /// ALREADY_ON.
    pub const ALREADY_ON: Self = Self(-4);
    /// ON_PENDING.
    pub const ON_PENDING: Self = Self(-5);
    /// INTERNAL_FAILURE.
    pub const INTERNAL_FAILURE: Self = Self(-6);
    /// NOT_PRESENT.
    pub const NOT_PRESENT: Self = Self(-7);
    /// DISABLED.
    pub const DISABLED: Self = Self(-8);
    /// INVALID_ADDRESS.
    pub const INVALID_ADDRESS: Self = Self(-9);

    /// Decodes a call's x0: `Ok(value)` when it is not negative.
    ///
    /// # Errors
    ///
    /// The error code when x0 is negative.
    pub const fn check(x0: u64) -> Result<u64, Self> {
        if (x0 as i64) < 0 {
            Err(Self(x0 as i64))
        } else {
            Ok(x0)
        }
    }

    /// The code's name in the PSCI specification, if it has one.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            -1 => "NOT_SUPPORTED",
            -2 => "INVALID_PARAMETERS",
            -3 => "DENIED",
            -4 => "ALREADY_ON",
            -5 => "ON_PENDING",
            -6 => "INTERNAL_FAILURE",
            -7 => "NOT_PRESENT",
            -8 => "DISABLED",
            -9 => "INVALID_ADDRESS",
            _ => return None,
        })
    }
}

impl fmt::Display for Error {
    /// `-4 (ALREADY_ON)`, or just the number for a code PSCI does not define.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// What AFFINITY_INFO says of a CPU (DEN 0022, 5.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffinityState {
    /// ON (0).
    On,
    /// OFF (1).
    Off,
    /// ON_PENDING (2): CPU_ON was called, the CPU is not running yet.
    OnPending,
}

impl AffinityState {
    /// Decodes AFFINITY_INFO's x0.
    ///
    /// # Errors
    ///
    /// The error code for any other value (negative, or a state PSCI does not define).
    pub const fn from_ret(x0: u64) -> Result<Self, Error> {
        match x0 {
            0 => Ok(Self::On),
            1 => Ok(Self::Off),
            2 => Ok(Self::OnPending),
            _ => Err(Error(x0 as i64)),
        }
    }
}

impl fmt::Display for AffinityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
            Self::OnPending => "on pending",
        })
    }
}

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
        Some(Self { major: (v >> 16) as u16, minor: v as u16 })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(bare_metal)]
pub use self::calls::{
    affinity_info, call, conduit, cpu_off, cpu_on, features, init_from_dtb, system_off, system_reset, version,
};

#[cfg(bare_metal)]
mod calls {
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::{
        AffinityState, Conduit, Error, Version, AFFINITY_INFO, CPU_OFF, CPU_ON, PSCI_FEATURES, PSCI_VERSION,
        SYSTEM_OFF, SYSTEM_RESET,
    };
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

    /// CPU_ON: starts the CPU whose MPIDR affinity is `target` at physical address
    /// `entry` (MMU off, at the caller's EL or the highest non-secure one below the
    /// PSCI implementation), with `context_id` in its x0.
    ///
    /// # Errors
    ///
    /// What the call returned, e.g. [`Error::ALREADY_ON`] or [`Error::INVALID_PARAMETERS`].
    pub fn cpu_on(target: u64, entry: u64, context_id: u64) -> Result<(), Error> {
        Error::check(call(conduit(), CPU_ON, target, entry, context_id)).map(|_| ())
    }

    /// CPU_OFF: powers the calling CPU down. Returns only if that failed (e.g.
    /// [`Error::DENIED`]), with the error.
    pub fn cpu_off() -> Error {
        match Error::check(call(conduit(), CPU_OFF, 0, 0, 0)) {
            Err(e) => e,
            // Success never returns; a return value that is no error is still a failure.
            Ok(v) => Error(v as i64),
        }
    }

    /// AFFINITY_INFO for the CPU whose MPIDR affinity is `target` (lowest affinity
    /// level 0: that one CPU).
    ///
    /// # Errors
    ///
    /// What the call returned when it is no state, e.g. [`Error::INVALID_PARAMETERS`].
    pub fn affinity_info(target: u64) -> Result<AffinityState, Error> {
        AffinityState::from_ret(call(conduit(), AFFINITY_INFO, target, 0, 0))
    }

    /// SYSTEM_OFF through the DTB's conduit; halts if the call returns.
    pub fn system_off() -> ! {
        call(conduit(), SYSTEM_OFF, 0, 0, 0);
        crate::cpu::halt()
    }

    /// SYSTEM_RESET through the DTB's conduit; halts if the call returns.
    pub fn system_reset() -> ! {
        call(conduit(), SYSTEM_RESET, 0, 0, 0);
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
    fn decodes_cpu_power_results() {
        assert_eq!(Error::check(0), Ok(0));
        assert_eq!(Error::check(-4i64 as u64), Err(Error::ALREADY_ON));
        assert_eq!(Error::ALREADY_ON.to_string(), "-4 (ALREADY_ON)");
        assert_eq!(Error(-42).to_string(), "-42");
        assert_eq!(AffinityState::from_ret(0), Ok(AffinityState::On));
        assert_eq!(AffinityState::from_ret(1), Ok(AffinityState::Off));
        assert_eq!(AffinityState::from_ret(2), Ok(AffinityState::OnPending));
        assert_eq!(AffinityState::from_ret(-2i64 as u64), Err(Error::INVALID_PARAMETERS));
        assert_eq!(AffinityState::OnPending.to_string(), "on pending");
    }

    #[test]
    fn decodes_versions_and_errors() {
        assert_eq!(Version::from_ret(0x1_0001), Some(Version { major: 1, minor: 1 }));
        assert_eq!(Version::from_ret(0x2).unwrap().to_string(), "0.2");
        // NOT_SUPPORTED, as a 64-bit or a 32-bit -1.
        assert_eq!(Version::from_ret(u64::MAX), None);
        assert_eq!(Version::from_ret(0xffff_ffff), None);
    }
}
