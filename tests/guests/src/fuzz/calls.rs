//! Random PSCI and SMCCC calls (Arm DEN 0022, PSCI 1.1; DEN 0028, SMCCC 1.4), made
//! safe for the caller by [`sanitize`].
//!
//! The function IDs are known PSCI and SMCCC functions in both calling conventions,
//! well-formed IDs of services nobody offers (SMCCC 2.5: fast call, bits 23:16
//! zero, any owner), Sluice's own hypercalls, and garbage; the arguments are
//! interesting values or random ones. `CPU_ON` gets garbage targets (bits above
//! the affinity fields, CPUs that don't exist) and garbage entry points (outside
//! RAM, misaligned).

use crate::cpu::MPIDR_AFFINITY_MASK;
use crate::fuzz::space::Space;
use crate::prng::Rng;

/// Function IDs (SMC32 forms; [`SMC64`] marks the SMC64 ones).
pub mod fid {
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_SOC_ID.
    pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
    /// SMCCC_ARCH_WORKAROUND_1.
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND.
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON.
    pub const CPU_ON: u32 = 0x8400_0003;
    /// AFFINITY_INFO.
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// MIGRATE.
    pub const MIGRATE: u32 = 0x8400_0005;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    /// CPU_FREEZE.
    pub const CPU_FREEZE: u32 = 0x8400_000b;
    /// CPU_DEFAULT_SUSPEND.
    pub const CPU_DEFAULT_SUSPEND: u32 = 0x8400_000c;
    /// SYSTEM_SUSPEND.
    pub const SYSTEM_SUSPEND: u32 = 0x8400_000e;
    /// SYSTEM_RESET2.
    pub const SYSTEM_RESET2: u32 = 0x8400_0012;
    /// SYSTEM_OFF2 (PSCI 1.3).
    pub const SYSTEM_OFF2: u32 = 0x8400_0015;
    /// Bit 30: the SMC64 calling convention.
    pub const SMC64: u32 = 0x4000_0000;
}

/// Functions that could stop, suspend, reset or move the caller (in either
/// convention): never called.
const BANNED: [u32; 10] = [
    fid::CPU_SUSPEND,
    fid::CPU_OFF,
    fid::MIGRATE,
    fid::SYSTEM_OFF,
    fid::SYSTEM_RESET,
    fid::CPU_FREEZE,
    fid::CPU_DEFAULT_SUSPEND,
    fid::SYSTEM_SUSPEND,
    fid::SYSTEM_RESET2,
    fid::SYSTEM_OFF2,
];

/// PSCI functions called with random arguments (the banned ones are left out here
/// and filtered again by [`sanitize`]).
const PSCI: [u32; 8] = [
    fid::PSCI_VERSION,
    fid::CPU_ON,
    fid::AFFINITY_INFO,
    fid::MIGRATE_INFO_TYPE,
    fid::PSCI_FEATURES,
    0x8400_0007, // MIGRATE_INFO_UP_CPU
    0x8400_000d, // NODE_HW_STATE
    0x8400_0010, // PSCI_STAT_RESIDENCY
];

/// The instruction a call is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `hvc #0`.
    Hvc,
    /// `smc #0` (Sluice traps and serves it like `hvc`).
    Smc,
    /// `hvc #0x1234`: not an SMCCC call at all.
    HvcImm,
}

/// One call: the instruction and x0..x3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The instruction.
    pub via: Via,
    /// x0 (the function ID in w0) to x3.
    pub x: [u64; 4],
}

/// What [`sanitize`] protects.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// MPIDR affinity of each of the VM's CPUs (the DTB's CPU `reg`s).
    pub cpus: &'a [u64],
    /// Where a CPU started by CPU_ON may go: the parking routine.
    pub park: u64,
    /// The VM's RAM.
    pub space: &'a Space,
}

/// An argument: an interesting value or a random one.
fn argument(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0 => 0,
        1 => rng.below(4),
        2 => u64::MAX,
        3 => 0xffff_ffff,
        4 => 1 << rng.below(64),
        5 => u64::from(rng.next_u32()),
        _ => rng.next_u64(),
    }
}

/// A `CPU_ON` target: one of the VM's CPUs (sometimes with junk above the affinity
/// fields), a CPU it doesn't have, or garbage.
fn target(rng: &mut Rng, ctx: &Context<'_>) -> u64 {
    let real = if ctx.cpus.is_empty() { 0 } else { rng.pick(ctx.cpus) };
    match rng.below(6) {
        0 | 1 => real,
        2 => real | rng.pick(&[1 << 31, 1 << 30, 0xff << 24, 1 << 40, 0xff << 56]),
        3 => rng.range(ctx.cpus.len() as u64, 256),
        4 => rng.pick(&[0x100, 0x1_0000, 1 << 32, 0xff_00ff_ffff]),
        _ => argument(rng),
    }
}

/// A `CPU_ON` entry point: the parking routine, or garbage.
fn entry(rng: &mut Rng, ctx: &Context<'_>) -> u64 {
    match rng.below(6) {
        0 | 1 => ctx.park,
        2 => ctx.park + rng.range(1, 4),
        3 => ctx.space.outside(rng),
        4 => ctx.space.ram().first().map_or(0, |r| r.base + rng.below(r.size)),
        _ => argument(rng),
    }
}

/// A random call, made safe by [`sanitize`].
pub fn generate(rng: &mut Rng, ctx: &Context<'_>) -> Call {
    let smc64 = if rng.coin() { fid::SMC64 } else { 0 };
    let mut x = [u64::from(fid::PSCI_VERSION), argument(rng), argument(rng), argument(rng)];
    match rng.below(10) {
        0 | 1 => x[0] = u64::from(rng.pick(&PSCI) | smc64),
        2 | 3 => {
            x[0] = u64::from(fid::CPU_ON | smc64);
            x[1] = target(rng, ctx);
            x[2] = entry(rng, ctx);
        }
        4 => {
            x[0] = u64::from(fid::AFFINITY_INFO | smc64);
            x[1] = target(rng, ctx);
            x[2] = rng.pick(&[0, 0, 1, 2, 3, 4, u64::MAX]);
        }
        5 => {
            x[0] = u64::from(rng.pick(&[fid::PSCI_FEATURES, fid::SMCCC_ARCH_FEATURES]));
            x[1] = match rng.below(3) {
                0 => u64::from(rng.pick(&BANNED) | smc64),
                1 => u64::from(rng.pick(&PSCI) | smc64),
                _ => argument(rng),
            };
        }
        6 => {
            let vendor = 0x8600_0000 | rng.range(3, 0x100) as u32;
            x[0] = u64::from(rng.pick(&[
                fid::SMCCC_VERSION,
                fid::SMCCC_ARCH_SOC_ID,
                fid::SMCCC_ARCH_WORKAROUND_1,
                0x8000_7fff, // SMCCC_ARCH_WORKAROUND_2
                0x8000_3fff, // SMCCC_ARCH_WORKAROUND_3
                0x8600_ff01, // vendor hypervisor service UID
                platform::hypercall::NULL,
                platform::hypercall::TRACE_PHASE,
                vendor,
            ]));
        }
        7 => {
            // Well-formed (SMCCC 2.5), of any owner: fast call, bits 23:16 zero.
            let owner = rng.below(64) as u32;
            x[0] = u64::from(0x8000_0000 | smc64 | owner << 24 | u32::from(rng.next_u16()));
        }
        8 => x[0] = u64::from(rng.next_u32()),
        _ => x[0] = rng.next_u64(),
    }
    let via = match rng.below(16) {
        0 => Via::HvcImm,
        1..=5 => Via::Smc,
        _ => Via::Hvc,
    };
    Call { via, x: sanitize(x, ctx) }
}

/// Makes a call safe for the caller, changing as little as it can:
///
/// - a function that could stop, suspend, reset or move a CPU or the VM (listed in
///   `BANNED`, in either convention) becomes `PSCI_VERSION`;
/// - `CPU_ON` of one of the VM's own CPUs may only start it at the parking routine,
///   or at an address with no byte of its first instruction in RAM (Sluice answers
///   `INVALID_ADDRESS`): anything else would run whatever lies there, so the entry
///   becomes the parking routine;
/// - Sluice's trace dump (which prints the VM's trace on the console) becomes the
///   null hypercall.
///
/// The function ID is read as SMCCC says, from w0 (Sluice refuses a call whose x0
/// has upper bits set; a hypervisor that ignores them must not be fooled either),
/// and SMC32 arguments as their low 32 bits.
pub fn sanitize(mut x: [u64; 4], ctx: &Context<'_>) -> [u64; 4] {
    let w0 = x[0] as u32;
    let function = w0 & !fid::SMC64;
    if BANNED.contains(&function) {
        x[0] = u64::from(fid::PSCI_VERSION);
    } else if function == fid::CPU_ON {
        let arg = |v: u64| if w0 & fid::SMC64 != 0 { v } else { v & 0xffff_ffff };
        let target = arg(x[1]) & MPIDR_AFFINITY_MASK;
        let own = ctx.cpus.iter().any(|&cpu| cpu & MPIDR_AFFINITY_MASK == target);
        let entry = arg(x[2]);
        if own && entry != ctx.park && ctx.space.touches_ram(entry, 4) {
            x[2] = ctx.park;
        }
    } else if w0 == platform::hypercall::TRACE_DUMP {
        x[0] = u64::from(platform::hypercall::NULL);
    }
    x
}

/// Whether a `CPU_ON` call returned success: the CPU was started (at the parking
/// routine).
pub fn started_a_cpu(x: &[u64; 4], ret: u64) -> bool {
    (x[0] as u32) & !fid::SMC64 == fid::CPU_ON && ret == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::space::DeviceKind;
    use platform::Region;

    const PARK: u64 = 0x4020_1000;

    fn space() -> Space {
        let ram = Region::new(0x4000_0000, 32 << 20);
        Space::new(&[ram], Region::new(0x4020_0000, 0x3_0000), &[], &[DeviceKind::Blk]).unwrap()
    }

    #[test]
    fn stopping_calls_are_never_made() {
        let space = space();
        let ctx = Context { cpus: &[0, 1], park: PARK, space: &space };
        for banned in BANNED {
            for form in [banned, banned | fid::SMC64] {
                for upper in [0, 1 << 32] {
                    let x = sanitize([u64::from(form) | upper, 0, 0, 0], &ctx);
                    assert_eq!(x[0], u64::from(fid::PSCI_VERSION), "{form:#x}");
                }
            }
        }
        let x = sanitize([u64::from(platform::hypercall::TRACE_DUMP), 1 << 20, 0, 0], &ctx);
        assert_eq!(x[0], u64::from(platform::hypercall::NULL));
        assert_eq!(sanitize([0x8400_0000, 1, 2, 3], &ctx), [0x8400_0000, 1, 2, 3]);
    }

    #[test]
    fn cpu_on_of_an_own_cpu_goes_to_the_parking_routine_or_outside_ram() {
        let space = space();
        let ctx = Context { cpus: &[0, 1], park: PARK, space: &space };
        let on = |x0: u32, target: u64, entry: u64| sanitize([u64::from(x0), target, entry, 7], &ctx)[2];
        assert_eq!(on(0xc400_0003, 1, 0x4030_0000), PARK, "in RAM");
        assert_eq!(on(0xc400_0003, 1, PARK + 2), PARK, "misaligned");
        assert_eq!(on(0xc400_0003, 0x8000_0001, 0x4030_0000), PARK, "bit 31 is no affinity");
        assert_eq!(on(0xc400_0003, 1, 0x3fff_fffe), PARK, "its instruction reaches RAM");
        assert_eq!(on(0xc400_0003, 1, 0x1000), 0x1000, "outside RAM: refused");
        assert_eq!(on(0xc400_0003, 1, PARK), PARK);
        assert_eq!(on(0xc400_0003, 2, 0x4030_0000), 0x4030_0000, "no such CPU: refused");
        assert_eq!(on(0xc400_0003, 0x100, 0x4030_0000), 0x4030_0000, "Aff1 = 1: no such CPU");
        // SMC32: only the low halves count.
        assert_eq!(on(0x8400_0003, 1 << 32 | 1, 1 << 32 | 0x4030_0000), PARK);
        assert_eq!(on(0x8400_0003, 1 << 32 | 2, 0x4030_0000), 0x4030_0000);
        // SMC64: Aff3 counts.
        assert_eq!(on(0xc400_0003, 1 << 32 | 1, 0x4030_0000), 0x4030_0000);
    }

    #[test]
    fn generated_calls_are_safe_and_varied() {
        let space = space();
        let ctx = Context { cpus: &[0, 1], park: PARK, space: &space };
        let mut rng = Rng::new(11);
        let (mut parked, mut refused, mut garbage, mut smc) = (0, 0, 0, 0);
        for _ in 0..50_000 {
            let call = generate(&mut rng, &ctx);
            let w0 = call.x[0] as u32;
            let function = w0 & !fid::SMC64;
            assert!(!BANNED.contains(&function), "{:#x}", call.x[0]);
            assert_ne!(w0, platform::hypercall::TRACE_DUMP);
            if function == fid::CPU_ON {
                let smc64 = w0 & fid::SMC64 != 0;
                let arg = |v: u64| if smc64 { v } else { v & 0xffff_ffff };
                let own = matches!(arg(call.x[1]) & MPIDR_AFFINITY_MASK, 0 | 1);
                let entry = arg(call.x[2]);
                if own && entry == PARK {
                    parked += 1;
                } else if own {
                    assert!(!space.touches_ram(entry, 4), "{entry:#x}");
                    refused += 1;
                }
            }
            if function >> 24 != 0x84 {
                garbage += 1;
            }
            if call.via == Via::Smc {
                smc += 1;
            }
        }
        assert!(parked > 1000 && refused > 500, "{parked} parked, {refused} refused");
        assert!(garbage > 10_000 && smc > 5_000);
    }
}
