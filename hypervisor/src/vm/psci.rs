//! PSCI and SMCCC calls made by a guest, emulated per VM.
//!
//! Function IDs and return codes follow Arm DEN 0022 (PSCI 1.1) and DEN 0028 (SMC
//! Calling Convention 1.1). Pure: the trap path decodes x0..x3 with [`decode`] and
//! carries out the [`PsciOutcome`] that [`handle`] returns.

/// Return codes (PSCI 1.1, 5.2.2).
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// Unknown or unsupported function (also SMCCC's `NOT_SUPPORTED`).
    pub const NOT_SUPPORTED: i64 = -1;
    /// A parameter is invalid.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// The operation is denied.
    pub const DENIED: i64 = -3;
    /// The target CPU is already on.
    pub const ALREADY_ON: i64 = -4;
    /// The entry point is not a valid address.
    pub const INVALID_ADDRESS: i64 = -9;
}

/// Function IDs.
pub mod fid {
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON (SMC32 form; the SMC64 form is 0xC400_0003).
    pub const CPU_ON: u32 = 0x8400_0003;
    /// AFFINITY_INFO (SMC32 form; SMC64 is 0xC400_0004).
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    /// Bit 30 of a function ID: the SMC64 calling convention.
    pub const SMC64: u32 = 0x4000_0000;
}

/// PSCI version Sluice implements: 1.1.
pub const PSCI_VERSION: u32 = 0x0001_0001;
/// SMCCC version Sluice implements: 1.1.
pub const SMCCC_VERSION: u32 = 0x0001_0001;
/// MIGRATE_INFO_TYPE: no Trusted OS, migration not required.
const MIGRATE_NOT_REQUIRED: i64 = 2;

/// Whether `function` is a well-formed SMCCC fast-call function ID of a defined
/// service owner (SMCCC 1.1, 2.5): bits [63:32] and [23:16] zero, bit 31 (fast) set,
/// and an owner that is not a reserved range (7..=47). A guest probing a service
/// Sluice lacks sends one of these; anything else is garbage.
pub fn is_well_formed(function: u64) -> bool {
    let owner = (function >> 24) & 0x3f;
    function >> 32 == 0
        && function & (1 << 31) != 0
        && (function >> 16) & 0xff == 0
        && !(7..=47).contains(&owner)
}

/// A decoded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciCall {
    /// SMCCC_VERSION.
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES(function).
    SmcccArchFeatures(u32),
    /// PSCI_VERSION.
    Version,
    /// PSCI_FEATURES(function).
    Features(u32),
    /// CPU_ON(target MPIDR, entry point, context id).
    CpuOn {
        /// Target MPIDR affinity fields.
        target: u64,
        /// Entry point address.
        entry: u64,
        /// Value for the new CPU's x0.
        context: u64,
    },
    /// CPU_OFF.
    CpuOff,
    /// AFFINITY_INFO(target, lowest affinity level).
    AffinityInfo {
        /// Target MPIDR affinity fields.
        target: u64,
        /// Lowest affinity level.
        level: u64,
    },
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// A function Sluice doesn't implement.
    Unknown(u64),
}

/// Decodes a call from the guest's x0..x3 (SMCCC 1.1: the function ID is w0).
pub fn decode(x: [u64; 4]) -> PsciCall {
    if x[0] >> 32 != 0 {
        return PsciCall::Unknown(x[0]);
    }
    let function = x[0] as u32;
    let smc64 = function & fid::SMC64 != 0;
    // SMC32 arguments are the low 32 bits of each register.
    let arg = |i: usize| if smc64 { x[i] } else { x[i] & 0xffff_ffff };
    match function & !fid::SMC64 {
        fid::SMCCC_VERSION if !smc64 => PsciCall::SmcccVersion,
        fid::SMCCC_ARCH_FEATURES if !smc64 => PsciCall::SmcccArchFeatures(x[1] as u32),
        fid::PSCI_VERSION if !smc64 => PsciCall::Version,
        fid::PSCI_FEATURES if !smc64 => PsciCall::Features(x[1] as u32),
        fid::CPU_ON => PsciCall::CpuOn { target: arg(1), entry: arg(2), context: arg(3) },
        fid::CPU_OFF if !smc64 => PsciCall::CpuOff,
        fid::AFFINITY_INFO => PsciCall::AffinityInfo { target: arg(1), level: arg(2) },
        fid::MIGRATE_INFO_TYPE if !smc64 => PsciCall::MigrateInfoType,
        fid::SYSTEM_OFF if !smc64 => PsciCall::SystemOff,
        fid::SYSTEM_RESET if !smc64 => PsciCall::SystemReset,
        _ => PsciCall::Unknown(x[0]),
    }
}

/// What the trap path must do for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Put the value in x0 and return to the guest.
    Return(i64),
    /// Stop the VM: the guest powered off.
    SystemOff,
    /// Restart the VM from its images.
    SystemReset,
    /// Stop the calling vCPU.
    CpuOff,
    /// Start vCPU `vcpu` at `entry` with `context` in x0 (then return SUCCESS).
    CpuOn {
        /// Index of the vCPU to start.
        vcpu: usize,
        /// Entry point.
        entry: u64,
        /// Value for its x0.
        context: u64,
    },
}

/// What [`handle`] needs to know about the calling VM.
pub trait VcpuView {
    /// Number of vCPUs the VM has.
    fn vcpu_count(&self) -> usize;
    /// Whether vCPU `index` is running.
    fn is_on(&self, index: usize) -> bool;
}

/// The vCPU index named by an MPIDR value: Sluice gives vCPU `i` Aff0 = `i` and
/// zeros in Aff1..Aff3.
fn vcpu_of(target: u64, view: &impl VcpuView) -> Option<usize> {
    let affinity = target & 0xff_00ff_ffff;
    (affinity < view.vcpu_count() as u64).then_some(affinity as usize)
}

/// The answer to a call that depends on no VM state (a version, a feature query,
/// an unknown function); `None` for a call about the VM's vCPUs or power.
pub fn answer(call: PsciCall) -> Option<i64> {
    match call {
        PsciCall::SmcccVersion => Some(SMCCC_VERSION.into()),
        PsciCall::SmcccArchFeatures(function) => Some(match function {
            fid::SMCCC_VERSION | fid::SMCCC_ARCH_FEATURES => ret::SUCCESS,
            // No firmware workarounds (ARCH_WORKAROUND_1/2/3) are offered.
            _ => ret::NOT_SUPPORTED,
        }),
        PsciCall::Version => Some(PSCI_VERSION.into()),
        PsciCall::Features(function) => Some(features(function)),
        PsciCall::MigrateInfoType => Some(MIGRATE_NOT_REQUIRED),
        PsciCall::Unknown(_) => Some(ret::NOT_SUPPORTED),
        PsciCall::CpuOn { .. }
        | PsciCall::CpuOff
        | PsciCall::AffinityInfo { .. }
        | PsciCall::SystemOff
        | PsciCall::SystemReset => None,
    }
}

/// Carries out a call for a VM described by `view`.
pub fn handle(call: PsciCall, view: &impl VcpuView) -> PsciOutcome {
    use PsciOutcome::Return;
    if let Some(value) = answer(call) {
        return Return(value);
    }
    match call {
        PsciCall::CpuOn { target, entry, context } => match vcpu_of(target, view) {
            None => Return(ret::INVALID_PARAMETERS),
            Some(vcpu) if view.is_on(vcpu) => Return(ret::ALREADY_ON),
            Some(vcpu) => PsciOutcome::CpuOn { vcpu, entry, context },
        },
        PsciCall::CpuOff => PsciOutcome::CpuOff,
        PsciCall::AffinityInfo { target, level } => match (level, vcpu_of(target, view)) {
            (0, Some(vcpu)) => Return(if view.is_on(vcpu) { 0 } else { 1 }),
            _ => Return(ret::INVALID_PARAMETERS),
        },
        PsciCall::SystemOff => PsciOutcome::SystemOff,
        PsciCall::SystemReset => PsciOutcome::SystemReset,
        // Answered above.
        PsciCall::SmcccVersion
        | PsciCall::SmcccArchFeatures(_)
        | PsciCall::Version
        | PsciCall::Features(_)
        | PsciCall::MigrateInfoType
        | PsciCall::Unknown(_) => Return(ret::NOT_SUPPORTED),
    }
}

/// PSCI_FEATURES: 0 for an implemented function, NOT_SUPPORTED otherwise.
fn features(function: u32) -> i64 {
    let implemented = matches!(
        function,
        fid::SMCCC_VERSION
            | fid::PSCI_VERSION
            | fid::PSCI_FEATURES
            | fid::CPU_OFF
            | fid::CPU_ON
            | fid::AFFINITY_INFO
            | fid::MIGRATE_INFO_TYPE
            | fid::SYSTEM_OFF
            | fid::SYSTEM_RESET
    ) || matches!(function, 0xc400_0003 | 0xc400_0004);
    if implemented {
        ret::SUCCESS
    } else {
        ret::NOT_SUPPORTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vm {
        on: [bool; 2],
    }

    impl VcpuView for Vm {
        fn vcpu_count(&self) -> usize {
            self.on.len()
        }
        fn is_on(&self, index: usize) -> bool {
            self.on[index]
        }
    }

    const ONE_ON: Vm = Vm { on: [true, false] };

    fn call(x: [u64; 4]) -> PsciOutcome {
        handle(decode(x), &ONE_ON)
    }

    #[test]
    fn versions() {
        assert_eq!(call([0x8400_0000, 0, 0, 0]), PsciOutcome::Return(0x1_0001));
        assert_eq!(call([0x8000_0000, 0, 0, 0]), PsciOutcome::Return(0x1_0001));
    }

    #[test]
    fn features_of_implemented_and_unknown_functions() {
        assert_eq!(call([0x8400_000a, 0x8400_0008, 0, 0]), PsciOutcome::Return(0));
        assert_eq!(call([0x8400_000a, 0xc400_0003, 0, 0]), PsciOutcome::Return(0));
        assert_eq!(call([0x8400_000a, 0x8000_0000, 0, 0]), PsciOutcome::Return(0));
        // CPU_SUSPEND is not implemented.
        assert_eq!(call([0x8400_000a, 0xc400_0001, 0, 0]), PsciOutcome::Return(-1));
        assert_eq!(call([0x8000_0001, 0x8000_8000, 0, 0]), PsciOutcome::Return(-1));
    }

    #[test]
    fn system_off_and_reset() {
        assert_eq!(call([0x8400_0008, 0, 0, 0]), PsciOutcome::SystemOff);
        assert_eq!(call([0x8400_0009, 0, 0, 0]), PsciOutcome::SystemReset);
    }

    #[test]
    fn well_formed_function_ids() {
        assert!(is_well_formed(0x8400_0050), "TRNG_VERSION");
        assert!(is_well_formed(0x8600_ff01), "vendor hypervisor UID");
        assert!(is_well_formed(0xc400_0003));
        assert!(!is_well_formed(0xdead_beef), "reserved owner, non-zero bits 23:16");
        assert!(!is_well_formed(0x0400_0000), "not a fast call");
        assert!(!is_well_formed(0x1_8400_0000));
    }

    #[test]
    fn garbage_is_not_supported() {
        assert_eq!(call([0xdead_beef, 0, 0, 0]), PsciOutcome::Return(-1));
        assert_eq!(call([0x1_8400_0000, 0, 0, 0]), PsciOutcome::Return(-1));
        assert_eq!(call([0xc400_0008, 0, 0, 0]), PsciOutcome::Return(-1), "SYSTEM_OFF has no SMC64 form");
    }

    #[test]
    fn cpu_on_targets_by_mpidr() {
        assert_eq!(call([0xc400_0003, 0, 0x4000_0000, 7]), PsciOutcome::Return(ret::ALREADY_ON));
        assert_eq!(
            call([0xc400_0003, 1, 0x4008_0000, 7]),
            PsciOutcome::CpuOn { vcpu: 1, entry: 0x4008_0000, context: 7 }
        );
        assert_eq!(call([0xc400_0003, 2, 0, 0]), PsciOutcome::Return(ret::INVALID_PARAMETERS));
        assert_eq!(call([0xc400_0003, 0x100, 0, 0]), PsciOutcome::Return(ret::INVALID_PARAMETERS));
        // SMC32 CPU_ON ignores the upper halves of its arguments.
        assert_eq!(
            call([0x8400_0003, 0xffff_ffff_0000_0001, 0xffff_ffff_4000_0000, 0]),
            PsciOutcome::CpuOn { vcpu: 1, entry: 0x4000_0000, context: 0 }
        );
    }

    #[test]
    fn affinity_info() {
        assert_eq!(call([0xc400_0004, 0, 0, 0]), PsciOutcome::Return(0));
        assert_eq!(call([0xc400_0004, 1, 0, 0]), PsciOutcome::Return(1));
        assert_eq!(call([0xc400_0004, 1, 1, 0]), PsciOutcome::Return(ret::INVALID_PARAMETERS));
    }
}
