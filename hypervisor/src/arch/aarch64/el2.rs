//! EL2 register setup and the guest's EL1 state, on the real CPU.
//!
//! Everything here executes MSR/MRS on the boot or trapping CPU; the values written
//! come from the pure modules (`el2_tables`, `mm::stage2`, `inject`).
#![allow(unsafe_code)]

use super::el2_tables::{self, MAIR_EL2 as MAIR_VALUE, MAIR_EL2_TAGGED};
use super::esr::SysReg;
use super::features::{guest_features, has_tag_storage, CpuIds, GuestFeatures};
use super::guest_cpu::GuestCpu;
use super::inject::Injection;
use super::sysreg::PMCR_EL0 as PMCR;
use crate::mm::stage2;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;
use platform::Region;

/// Reads a system register by name (for those `aarch64-cpu` doesn't describe).
macro_rules! mrs {
    ($reg:literal) => {{
        let value: u64;
        // SAFETY: reading an ID or EL2-visible system register has no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) value, options(nomem, nostack)) };
        value
    }};
}

/// Writes a system register by name (for those `aarch64-cpu` doesn't describe).
macro_rules! msr {
    ($reg:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: the callers below only write EL2 configuration or guest EL1 state,
        // with values that keep the hypervisor's own execution intact.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), in(reg) value, options(nostack)) };
    }};
}

/// ID_AA64MMFR0_EL1.PARange.
pub fn pa_range() -> u8 {
    (ID_AA64MMFR0_EL1.get() & 0xf) as u8
}

/// The level-1 and level-2 tables of the EL2 identity map.
#[repr(C, align(4096))]
struct El2Tables {
    l1: [u64; 512],
    l2: [[u64; 512]; 4],
}

static mut EL2_TABLES: El2Tables = El2Tables { l1: [0; 512], l2: [[0; 512]; 4] };

/// Builds the EL2 identity map over `ram` (once, on the boot CPU) and turns this
/// CPU's MMU and caches on.
///
/// # Errors
///
/// [`el2_tables::El2MapError`] if RAM doesn't fit the map; the MMU stays off then.
pub fn enable_mmu(ram: &[Region]) -> Result<(), el2_tables::El2MapError> {
    // SAFETY: called once on the boot CPU before any other CPU runs and before the MMU
    // is on, so nothing else refers to the tables.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(EL2_TABLES) };
    let l2_base = tables.l2.as_ptr() as u64;
    el2_tables::build(ram, &mut tables.l1, &mut tables.l2, |i| l2_base + i as u64 * 4096)?;
    mmu_on();
    Ok(())
}

/// Turns this CPU's EL2 MMU and caches on over the tables [`enable_mmu`] built.
pub fn mmu_on() {
    let tagged = has_tag_storage(ID_AA64PFR1_EL1.get());
    MAIR_EL2.set(if tagged { MAIR_EL2_TAGGED } else { MAIR_VALUE });
    TCR_EL2.set(el2_tables::tcr_el2(pa_range()));
    TTBR0_EL2.set(core::ptr::addr_of!(EL2_TABLES) as u64);
    barrier::dsb(barrier::SY);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating this CPU's EL2 TLB before first use of the tables.
    unsafe { core::arch::asm!("tlbi alle2", "dsb nsh", "isb", options(nostack)) };
    // M (MMU), C (data cache), I (instruction cache), SA (stack alignment check).
    const SCTLR_EL2_RES1: u64 = (3 << 28) | (3 << 22) | (1 << 18) | (1 << 16) | (1 << 11) | (3 << 4);
    // ATA (bit 43) where there is tag storage: EL2 may clear tags, never checks them.
    let ata = if tagged { 1 << 43 } else { 0 };
    SCTLR_EL2.set(SCTLR_EL2_RES1 | ata | (1 << 12) | (1 << 3) | (1 << 2) | 1);
    barrier::isb(barrier::SY);
}

/// HCR_EL2 for running a guest: EL1 is AArch64 (RW), stage 2 on (VM), physical
/// interrupts and SErrors routed to EL2 (IMO/FMO/AMO), broadcast TLB and barrier
/// maintenance (FB, BSU = inner shareable), set/way ops upgraded (SWIO), and traps
/// for WFI (TWI), SMC (TSC), ID registers (TID3) and implementation-defined
/// registers (TIDCP). Pointer authentication is left to the guest (API, APK) when the
/// CPU has it.
fn hcr_el2() -> u64 {
    let mut hcr = (1 << 31)
        | (1 << 20)
        | (1 << 19)
        | (1 << 18)
        | (1 << 13)
        | (1 << 10)
        | (1 << 9)
        | (1 << 5)
        | (1 << 4)
        | (1 << 3)
        | (1 << 1)
        | 1;
    let isar1 = ID_AA64ISAR1_EL1.get();
    let has_pauth = (isar1 >> 4) & 0xff != 0 || (isar1 >> 24) & 0xff != 0;
    if has_pauth {
        hcr |= (1 << 41) | (1 << 40);
    }
    hcr | guest_features().hcr_el2()
}

/// What the CPU says about its PMU, debug and MTE, for
/// [`GuestFeatures::decide`]; `pmu_ppi` is the host DTB's.
pub fn cpu_ids(pmu_ppi: Option<u32>) -> CpuIds {
    let dfr0 = ID_AA64DFR0_EL1.get();
    let pmu_version = (dfr0 >> 8) & 0xf;
    let has_pmu = pmu_version != 0 && pmu_version != 0xf;
    CpuIds { dfr0, pfr1: ID_AA64PFR1_EL1.get(), pmcr: if has_pmu { mrs!("pmcr_el0") } else { 0 }, pmu_ppi }
}

/// Sets the EL2 controls that don't depend on the VM: traps and timer access.
pub fn init_cpu() {
    // The PMU and debug registers as `features` decides.
    MDCR_EL2.set(guest_features().mdcr_el2(ID_AA64DFR0_EL1.get(), MDCR_EL2.get()));
    // FP/SIMD untrapped, SVE untrapped when present (TZ = 0), SME and trace trapped.
    let has_sve = (ID_AA64PFR0_EL1.get() >> 32) & 0xf != 0;
    let cptr = if has_sve { 0x32ff } else { 0x33ff };
    CPTR_EL2.set(cptr | (1 << 20));
    barrier::isb(barrier::SY);
    if has_sve {
        // The largest vector length the CPU offers.
        msr!("S3_4_C1_C2_0", 0xf); // ZCR_EL2
    }
    // EL1 may read the physical counter and use the EL1 physical timer.
    CNTHCTL_EL2.set(0b11);
    CNTVOFF_EL2.set(0);
    msr!("vpidr_el2", MIDR_EL1.get());
    barrier::isb(barrier::SY);
}

/// Points stage 2 at `vm`'s tables, gives vCPU `vcpu` its MPIDR, and flushes the
/// VMID's stale TLB entries.
pub fn switch_to_vm(stage2_root: u64, vmid: u8, vcpu: usize) {
    VTCR_EL2.set(stage2::vtcr_el2(pa_range()));
    VTTBR_EL2.set(stage2::vttbr_el2(stage2_root, vmid));
    // MPIDR: bit 31 RES1, Aff0 = vCPU index.
    VMPIDR_EL2.set((1 << 31) | vcpu as u64);
    HCR_EL2.set(hcr_el2());
    barrier::isb(barrier::SY);
    // SAFETY: makes the table writes visible to the walker, then invalidates stage 1 and
    // 2 entries of the current VMID only.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// Puts the guest's EL1 system registers in their reset state: MMU and caches off,
/// no vectors, timers off, so a (re)started VM finds nothing of a previous run.
pub fn reset_el1_state() {
    // SCTLR_EL1 reset value: RES1 bits (LSMAOE, nTLSMD, EIS, SPAN, EOS, TSCXT), MMU off.
    SCTLR_EL1.set(0x30d0_0800);
    VBAR_EL1.set(0);
    CPACR_EL1.set(0);
    TCR_EL1.set(0);
    TTBR0_EL1.set(0);
    TTBR1_EL1.set(0);
    MAIR_EL1.set(0);
    AMAIR_EL1.set(0);
    CONTEXTIDR_EL1.set(0);
    TPIDR_EL1.set(0);
    TPIDR_EL0.set(0);
    TPIDRRO_EL0.set(0);
    SP_EL0.set(0);
    SP_EL1.set(0);
    ELR_EL1.set(0);
    SPSR_EL1.set(0);
    ESR_EL1.set(0);
    FAR_EL1.set(0);
    PAR_EL1.set(0);
    CNTKCTL_EL1.set(0);
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    CNTV_CVAL_EL0.set(0);
    CNTP_CVAL_EL0.set(0);
    barrier::isb(barrier::SY);
    reset_owned_state(&guest_features());
}

/// Zeroes the first `breakpoints` breakpoints' and `watchpoints` watchpoints'
/// control and value registers (there are at most 16 of each).
macro_rules! clear_debug_pairs {
    ($breakpoints:expr, $watchpoints:expr; $($n:literal)*) => {
        $(
            if $n < $breakpoints {
                // SAFETY: breakpoint $n exists (below ID_AA64DFR0_EL1.BRPs + 1); its
                // registers only concern the guest's EL1 and EL0.
                unsafe {
                    core::arch::asm!(
                        concat!("msr dbgbcr", $n, "_el1, xzr"),
                        concat!("msr dbgbvr", $n, "_el1, xzr"),
                        options(nostack)
                    )
                };
            }
            if $n < $watchpoints {
                // SAFETY: as above, for watchpoint $n.
                unsafe {
                    core::arch::asm!(
                        concat!("msr dbgwcr", $n, "_el1, xzr"),
                        concat!("msr dbgwvr", $n, "_el1, xzr"),
                        options(nostack)
                    )
                };
            }
        )*
    };
}

/// Puts what the guest owns of its CPU (see [`super::features`]) in the state it
/// has when the machine starts: the PMU stopped with every counter, event type,
/// enable and overflow flag cleared; every breakpoint and watchpoint off,
/// `MDSCR_EL1` clear, the OS lock locked (as at reset); the tag registers clear.
pub fn reset_owned_state(features: &GuestFeatures) {
    if let Some(pmcr) = features.pmcr_reset() {
        msr!("pmcr_el0", pmcr);
        msr!("pmcntenclr_el0", u64::from(u32::MAX));
        msr!("pmintenclr_el1", u64::from(u32::MAX));
        msr!("pmovsclr_el0", u64::from(u32::MAX));
        let counters = if let super::features::Pmu::PassedThrough { counters, .. } = features.pmu {
            counters
        } else {
            0
        };
        for n in 0..u64::from(counters) {
            msr!("pmselr_el0", n);
            barrier::isb(barrier::SY);
            msr!("pmxevtyper_el0", 0);
        }
        msr!("pmselr_el0", 0);
        msr!("pmccfiltr_el0", 0);
        msr!("pmuserenr_el0", 0);
    }
    msr!("mdscr_el1", 0);
    clear_debug_pairs!(features.breakpoints, features.watchpoints; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    msr!("osdlr_el1", 0);
    msr!("oslar_el1", 1);
    if features.mte {
        msr!("S3_0_C1_C0_6", 0); // GCR_EL1
        msr!("S3_0_C1_C0_5", 0); // RGSR_EL1
        msr!("S3_0_C5_C6_0", 0); // TFSR_EL1
        msr!("S3_0_C5_C6_1", 0); // TFSRE0_EL1
    }
    barrier::isb(barrier::SY);
}

/// Stops the guest's PMU from counting or interrupting (a stopped vCPU's CPU must
/// stay quiet): counting off, overflow interrupts masked.
pub fn stop_pmu(features: &GuestFeatures) {
    if let Some(pmcr) = features.pmcr_reset() {
        msr!("pmcr_el0", pmcr);
        msr!("pmintenclr_el1", u64::from(u32::MAX));
        barrier::isb(barrier::SY);
    }
}

/// The CPU's counter, read in order with the instructions around it.
#[inline]
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Counter ticks per second.
pub fn counter_hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// Syndrome registers of the current trap.
#[inline]
pub fn syndrome() -> (u64, u64, u64) {
    (ESR_EL2.get(), FAR_EL2.get(), HPFAR_EL2.get())
}

/// The trapping vCPU's EL1 state, reached through the real registers.
pub struct El1Cpu;

impl GuestCpu for El1Cpu {
    fn vbar_el1(&self) -> u64 {
        VBAR_EL1.get()
    }

    fn sctlr_el1(&self) -> u64 {
        SCTLR_EL1.get()
    }

    fn set_exception_registers(&mut self, injection: &Injection) {
        ELR_EL1.set(injection.elr_el1);
        SPSR_EL1.set(injection.spsr_el1);
        ESR_EL1.set(injection.esr_el1);
        if let Some(far) = injection.far_el1 {
            FAR_EL1.set(far);
        }
    }

    fn read_register(&self, reg: SysReg) -> u64 {
        if reg == PMCR {
            mrs!("pmcr_el0")
        } else {
            read_id_register(reg)
        }
    }

    fn write_pmcr(&mut self, value: u64) {
        msr!("pmcr_el0", value);
        barrier::isb(barrier::SY);
    }

    fn guest_va_to_ipa(&self, va: u64) -> Option<u64> {
        let saved = PAR_EL1.get();
        // SAFETY: AT only writes PAR_EL1, which is restored below.
        unsafe { core::arch::asm!("at s1e1r, {}", "isb", in(reg) va, options(nostack)) };
        let par = PAR_EL1.get();
        PAR_EL1.set(saved);
        (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (va & 0xfff))
    }
}

/// Reads the AArch64 ID register `reg` (op0 3, op1 0, CRn 0, CRm 4..=7); the rest of
/// the ID space reads as zero here and is sanitised by the caller.
fn read_id_register(reg: SysReg) -> u64 {
    match (reg.crm, reg.op2) {
        (4, 0) => ID_AA64PFR0_EL1.get(),
        (4, 1) => ID_AA64PFR1_EL1.get(),
        (4, 4) => mrs!("S3_0_C0_C4_4"), // ID_AA64ZFR0_EL1
        (4, 5) => mrs!("S3_0_C0_C4_5"), // ID_AA64SMFR0_EL1
        (5, 0) => ID_AA64DFR0_EL1.get(),
        (5, 1) => ID_AA64DFR1_EL1.get(),
        (5, 4) => ID_AA64AFR0_EL1.get(),
        (5, 5) => ID_AA64AFR1_EL1.get(),
        (6, 0) => ID_AA64ISAR0_EL1.get(),
        (6, 1) => ID_AA64ISAR1_EL1.get(),
        (6, 2) => mrs!("S3_0_C0_C6_2"), // ID_AA64ISAR2_EL1
        (7, 0) => ID_AA64MMFR0_EL1.get(),
        (7, 1) => ID_AA64MMFR1_EL1.get(),
        (7, 2) => ID_AA64MMFR2_EL1.get(),
        _ => 0,
    }
}

/// How the machine is powered off.
pub mod power {
    /// Asks the host firmware to power off through PSCI `SYSTEM_OFF` over SMC.
    pub fn psci_system_off() -> ! {
        // SAFETY: SYSTEM_OFF does not return when it succeeds; if it fails we park.
        unsafe { core::arch::asm!("smc #0", inout("x0") 0x8400_0008u64 => _, options(nostack)) };
        park()
    }

    /// Stops this CPU for good.
    pub fn park() -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }
}

/// Turns on this CPU's GIC CPU interface for EL2's own use: system register access
/// (ICC_SRE_EL2.SRE, and Enable so EL1 may use it too), all priorities unmasked,
/// EOImode = 1 (priority drop and deactivation separate), Group 1 enabled.
pub fn gic_cpu_interface_on() {
    msr!("S3_4_C12_C9_5", 0xf); // ICC_SRE_EL2: SRE | DFB | DIB | Enable
    barrier::isb(barrier::SY);
    msr!("S3_0_C4_C6_0", 0xff); // ICC_PMR_EL1
    msr!("S3_0_C12_C12_3", 0); // ICC_BPR1_EL1
    msr!("S3_0_C12_C12_4", 1 << 1); // ICC_CTLR_EL1.EOImode
    msr!("S3_0_C12_C12_7", 1); // ICC_IGRPEN1_EL1
    barrier::isb(barrier::SY);
}

/// Acknowledges the highest-priority pending Group 1 interrupt (ICC_IAR1_EL1); 1023
/// means none.
pub fn ack_irq() -> u32 {
    let iar = mrs!("S3_0_C12_C12_0");
    barrier::dsb(barrier::SY);
    (iar & 0xff_ffff) as u32
}

/// Drops the running priority of `intid` (ICC_EOIR1_EL1); with EOImode = 1 it stays
/// active.
pub fn end_of_interrupt(intid: u32) {
    msr!("S3_0_C12_C12_1", intid as u64);
}

/// Deactivates `intid` (ICC_DIR_EL1).
pub fn deactivate(intid: u32) {
    msr!("S3_0_C12_C11_1", intid as u64);
}

/// Sends SGI `intid` to the CPU with affinity `mpidr` (ICC_SGI1R_EL1, GICv3 12.2.17).
pub fn send_sgi(intid: u32, mpidr: u64) {
    let aff0 = mpidr & 0xff;
    let value = ((mpidr >> 32 & 0xff) << 48)
        | ((aff0 >> 4) << 44)
        | ((mpidr >> 16 & 0xff) << 32)
        | ((intid as u64 & 0xf) << 24)
        | ((mpidr >> 8 & 0xff) << 16)
        | (1 << (aff0 & 0xf));
    barrier::dsb(barrier::SY);
    msr!("S3_0_C12_C11_5", value);
    barrier::isb(barrier::SY);
}

/// Number of list registers (ICH_VTR_EL2.ListRegs + 1).
pub fn list_register_count() -> usize {
    (mrs!("S3_4_C12_C11_1") & 0x1f) as usize + 1
}

/// Reads ICH_LR<n>_EL2.
pub fn read_lr(n: usize) -> u64 {
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        _ => ICH_LR15_EL2.get(),
    }
}

/// Writes ICH_LR<n>_EL2.
pub fn write_lr(n: usize, value: u64) {
    match n {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        _ => ICH_LR15_EL2.set(value),
    }
}

/// ICH_HCR_EL2: the virtual CPU interface on, and a maintenance interrupt when no
/// list register holds a pending interrupt any more (NPIE) if `more_pending`.
pub fn set_virtual_interface(more_pending: bool) {
    ICH_HCR_EL2.set(1 | if more_pending { 1 << 3 } else { 0 });
}

/// Turns the virtual CPU interface off (ICH_HCR_EL2.En = 0): no virtual interrupts
/// and no maintenance interrupts while no vCPU runs on this CPU.
pub fn disable_virtual_interface() {
    ICH_HCR_EL2.set(0);
    barrier::isb(barrier::SY);
}

/// Clears the virtual CPU interface state of a vCPU that (re)starts: list registers,
/// active priorities and the guest's VMCR (priority mask, group enables).
pub fn reset_virtual_interface(list_registers: usize) {
    for n in 0..list_registers {
        write_lr(n, 0);
    }
    ICH_AP0R0_EL2.set(0);
    ICH_AP1R0_EL2.set(0);
    ICH_VMCR_EL2.set(0);
    set_virtual_interface(false);
    barrier::isb(barrier::SY);
}

/// Turns off the guest's EL1 timers (CNTV_CTL_EL0, CNTP_CTL_EL0): a stopped vCPU
/// must not leave a timer that keeps firing at a CPU nobody runs a guest on.
pub fn disable_el1_timers() {
    CNTV_CTL_EL0.set(0);
    CNTP_CTL_EL0.set(0);
    barrier::isb(barrier::SY);
}

/// Whether the source of hardware-linked PPI `intid` (see [`super::intid`])
/// asserts its interrupt now: for the guest's EL1 timers, enabled, its condition
/// met (ISTATUS) and not masked (IMASK); for its PMU, enabled with an overflow
/// whose interrupt is enabled. Any other INTID: false.
pub fn linked_ppi_asserts(intid: u32) -> bool {
    let ctl = match intid {
        super::intid::VIRTUAL_TIMER => CNTV_CTL_EL0.get(),
        super::intid::PHYSICAL_TIMER => CNTP_CTL_EL0.get(),
        super::intid::PMU_OVERFLOW => {
            return mrs!("pmcr_el0") & 1 != 0 && mrs!("pmovsset_el0") & mrs!("pmintenset_el1") != 0;
        }
        _ => return false,
    };
    // ENABLE (bit 0) and ISTATUS (bit 2) set, IMASK (bit 1) clear.
    ctl & 0b111 == 0b101
}

/// The virtual CPU interface of the CPU this runs on, over its registers.
pub struct ThisCpuInterface {
    /// ICH_VTR_EL2.ListRegs + 1, capped at what the vGIC uses.
    pub list_registers: usize,
}

impl super::virtual_interface::VirtualInterface for ThisCpuInterface {
    #[inline]
    fn list_register_count(&self) -> usize {
        self.list_registers
    }
    fn read_lr(&self, index: usize) -> u64 {
        read_lr(index)
    }
    fn write_lr(&mut self, index: usize, value: u64) {
        write_lr(index, value);
    }
    fn enable(&mut self, more_pending: bool) {
        set_virtual_interface(more_pending);
    }
    fn deactivate_physical(&mut self, intid: u32) {
        deactivate(intid);
    }
    #[inline]
    fn linked_ppi_asserts(&self, intid: u32) -> bool {
        linked_ppi_asserts(intid)
    }
}

/// Arms the EL2 physical timer (CNTHP, PPI 10) to interrupt this CPU when the
/// counter reaches `at`: Sluice's own alarm, which no guest can see or touch.
pub fn arm_hyp_timer_at(at: u64) {
    msr!("cnthp_cval_el2", at);
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET);
    barrier::isb(barrier::SY);
}

/// Turns the EL2 physical timer off (its interrupt goes away with it).
pub fn disarm_hyp_timer() {
    CNTHP_CTL_EL2.set(0);
    barrier::isb(barrier::SY);
}

/// Leaves this CPU's guest state quiet when its vCPU stops (VM off, faulted, reset,
/// or the vCPU turned off): EL1 timers and PMU off, and the virtual CPU interface off with
/// no list register, active priority or guest interface setting left behind.
pub fn quiesce_guest(list_registers: usize) {
    disable_el1_timers();
    stop_pmu(&guest_features());
    reset_virtual_interface(list_registers);
    disable_virtual_interface();
}

/// How a CPU waits for a lock another CPU holds: `yield`, the hint that it is
/// spinning (Linux's `cpu_relax` on arm64). On QEMU without multi-threaded TCG (e.g.
/// under `-icount`), where one host thread runs every CPU in turn, it hands that
/// thread to the next CPU, which may be the holder; the default `isb` doesn't, and
/// a waiter could then keep the holder from ever running again.
pub struct Yield;

impl spin::relax::RelaxStrategy for Yield {
    #[inline(always)]
    fn relax() {
        // SAFETY: `yield` is a hint with no architectural effect.
        unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
    }
}

/// Sleeps until an interrupt is pending (interrupts stay masked at EL2; the trap or
/// idle path acknowledges it afterwards).
pub fn wait_for_interrupt() {
    barrier::dsb(barrier::SY);
    aarch64_cpu::asm::wfi();
}

/// This CPU's index in the host DTB's `/cpus`, as [`set_cpu_index`] recorded it in
/// TPIDR_EL2.
#[inline]
pub fn cpu_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// Records this CPU's index for [`cpu_index`].
pub fn set_cpu_index(index: usize) {
    TPIDR_EL2.set(index as u64);
}

/// This CPU's MPIDR_EL1.
pub fn mpidr() -> u64 {
    MPIDR_EL1.get()
}

/// Starts host CPU `mpidr` at `entry` with `context` in x0 through the host firmware's
/// PSCI `CPU_ON` over SMC; returns PSCI's status.
pub fn host_cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    let mut x0 = 0xc400_0003u64;
    // SAFETY: CPU_ON starts another CPU at `entry`; it doesn't touch this CPU's state
    // beyond the SMCCC result registers.
    unsafe {
        core::arch::asm!("smc #0", inout("x0") x0, inout("x1") mpidr => _, inout("x2") entry => _, inout("x3") context => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _,
            out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack))
    };
    x0 as i64
}
