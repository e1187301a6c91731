//! A minimal GICv3 driver: the distributor, this CPU's redistributor and the CPU
//! interface through the ICC_* system registers.
//!
//! Everything follows the GICv3/v4 architecture specification (Arm IHI 0069): the
//! register descriptions of its programmers' model chapter, named below by register. Only Group 1 interrupts with affinity routing are used, the
//! setup a non-secure EL1 sees both on plain QEMU virt (`gic-version=3`) and under
//! Sluice's emulated GIC. Every MMIO access is one load or store of the register's
//! width (32 bits, or 64 for GICR_TYPER and GICD_IROUTER<n>, as Linux makes them),
//! without writeback ([`guest_drivers::mmio`]), so a hypervisor can decode each trapped
//! access from its syndrome.
//!
//! Bring-up: [`init_distributor`] once (on the boot CPU), [`init_cpu`] on every
//! CPU, then [`enable_private`] (SGIs and PPIs, per CPU) or [`enable_spi`] (routed to
//! the calling CPU) for each interrupt a guest takes. [`crate::irq`] acknowledges and
//! ends them.

use core::fmt;

/// INTIDs from here up to 1023 are special (1023: spurious, nothing pending).
pub const FIRST_SPECIAL_INTID: u32 = 1020;
/// First SPI.
pub const FIRST_SPI: u32 = 32;
/// Number of SGIs (INTIDs 0..16).
pub const SGI_COUNT: u32 = 16;
/// The priority every enabled interrupt gets: the middle, well below the mask (0xff).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// How an SPI signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Asserted while the device wants attention (e.g. the PL011, the timers).
    Level,
    /// One edge per event.
    Edge,
}

/// Why the GIC could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicError {
    /// GICD_PIDR2.ArchRev is not GICv3 or GICv4 (the value read).
    NotGicv3(u32),
    /// No redistributor frame says it belongs to this CPU (its affinity).
    NoRedistributor(u64),
    /// ICC_SRE_EL1.SRE stays 0: no system-register access to the CPU interface.
    NoSystemRegisters,
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGicv3(pidr2) => write!(f, "GICD_PIDR2 {pidr2:#x} is no GICv3"),
            Self::NoRedistributor(aff) => {
                write!(f, "no redistributor for the CPU with affinity {aff:#x}")
            }
            Self::NoSystemRegisters => f.write_str("ICC_SRE_EL1.SRE does not stick"),
        }
    }
}

/// Whether a PIDR2 value (GICD_PIDR2 or GICR_PIDR2) names GICv3 or GICv4 (ArchRev,
/// bits \[7:4\]).
pub const fn is_gicv3_pidr2(pidr2: u32) -> bool {
    matches!((pidr2 >> 4) & 0xf, 3 | 4)
}

/// The affinity field of GICR_TYPER (bits \[63:32\]: Aff3.Aff2.Aff1.Aff0) that a
/// CPU with MPIDR `mpidr` has.
pub const fn typer_affinity(mpidr: u64) -> u32 {
    let aff3 = (mpidr >> 32) & 0xff;
    (aff3 << 24 | mpidr & 0xff_ffff) as u32
}

/// GICD_IROUTER<n> for an SPI routed to the CPU with MPIDR `mpidr`
/// (Interrupt_Routing_Mode 0: that CPU only).
pub const fn irouter(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// ICC_SGI1R_EL1 that sends SGI `intid` to the one CPU with MPIDR `target`: Aff3,
/// Aff2 and Aff1 name the cluster, TargetList bit (Aff0 % 16) and RS (Aff0 / 16)
/// the CPU in it, IRM 0.
pub const fn sgi1r(intid: u32, target: u64) -> u64 {
    let aff0 = target & 0xff;
    let aff1 = (target >> 8) & 0xff;
    let aff2 = (target >> 16) & 0xff;
    let aff3 = (target >> 32) & 0xff;
    let rs = aff0 / 16;
    let target_list = 1 << (aff0 % 16);
    aff3 << 48 | rs << 44 | aff2 << 32 | ((intid & 0xf) as u64) << 24 | aff1 << 16 | target_list
}

/// Number of SPIs a distributor implements, from GICD_TYPER.ITLinesNumber (bits
/// \[4:0\]): 32 × (N + 1) INTIDs in all, less the 32 private ones, at most up to 1019.
pub const fn spi_count(gicd_typer: u32) -> u32 {
    let lines = 32 * ((gicd_typer & 0x1f) + 1);
    let lines = if lines > FIRST_SPECIAL_INTID { FIRST_SPECIAL_INTID } else { lines };
    lines - FIRST_SPI
}

/// The 32-bit word and bit of a one-bit-per-INTID register (IGROUPR, ISENABLER...).
pub const fn bit_of(intid: u32) -> (usize, u32) {
    ((intid / 32) as usize, 1 << (intid % 32))
}

/// The 32-bit word of IPRIORITYR<n> for `intid`, and its value with the byte of
/// `intid` set to `priority`.
pub const fn with_priority(word: u32, intid: u32, priority: u8) -> u32 {
    let shift = (intid % 4) * 8;
    word & !(0xff << shift) | (priority as u32) << shift
}

/// `word` of ICFGR<n> (two bits per INTID, bit 1 of each set for edge) with the field
/// of `intid` set for `trigger`.
pub const fn with_trigger(word: u32, intid: u32, trigger: Trigger) -> u32 {
    let bit = 2 << ((intid % 16) * 2);
    match trigger {
        Trigger::Edge => word | bit,
        Trigger::Level => word & !bit,
    }
}

#[cfg(bare_metal)]
pub use self::hw::{
    acknowledge, disable_spi, enable_private, enable_spi, end_of_interrupt, init_cpu, init_distributor,
    is_pending_private, send_sgi, spis,
};

#[cfg(bare_metal)]
#[allow(unsafe_code)]
mod hw {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    use platform::qemu_virt::{GICD, GICR_BASE, GICR_FRAME_SIZE};

    use super::{
        bit_of, irouter, is_gicv3_pidr2, sgi1r, spi_count, typer_affinity, with_priority, with_trigger,
        GicError, Trigger, DEFAULT_PRIORITY, FIRST_SPI, SGI_COUNT,
    };
    use crate::cpu::{self, MAX_CPUS};
    use guest_drivers::mmio::{Reg32, Reg64};

    /// Distributor registers (IHI 0069, the GICD_* register map).
    mod gicd {
        pub const CTLR: usize = 0x0000;
        pub const TYPER: usize = 0x0004;
        pub const IGROUPR: usize = 0x0080;
        pub const ISENABLER: usize = 0x0100;
        pub const ICENABLER: usize = 0x0180;
        pub const ICPENDR: usize = 0x0280;
        pub const IPRIORITYR: usize = 0x0400;
        pub const ICFGR: usize = 0x0c00;
        pub const IROUTER: usize = 0x6000;
        pub const PIDR2: usize = 0xffe8;
        /// CTLR.RWP: a write to CTLR or ICENABLER is still taking effect.
        pub const CTLR_RWP: u32 = 1 << 31;
        /// CTLR.ARE (ARE_NS in the non-secure view): affinity routing.
        pub const CTLR_ARE: u32 = 1 << 4;
        /// CTLR.EnableGrp1 (EnableGrp1A in the non-secure view).
        pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
    }

    /// Redistributor registers: the RD_base frame, and SGI_base = RD_base + 64 KiB
    /// (IHI 0069, the GICR_* register map).
    mod gicr {
        pub const CTLR: usize = 0x0000;
        pub const TYPER: usize = 0x0008;
        pub const WAKER: usize = 0x0014;
        pub const PIDR2: usize = 0xffe8;
        pub const SGI_BASE: usize = 0x1_0000;
        pub const IGROUPR0: usize = SGI_BASE + 0x0080;
        pub const ISENABLER0: usize = SGI_BASE + 0x0100;
        pub const ICENABLER0: usize = SGI_BASE + 0x0180;
        pub const ISPENDR0: usize = SGI_BASE + 0x0200;
        pub const IPRIORITYR: usize = SGI_BASE + 0x0400;
        /// CTLR.RWP: a write to ICENABLER0 is still taking effect.
        pub const CTLR_RWP: u32 = 1 << 3;
        /// TYPER.VLPIS: the frame has two more 64 KiB frames (GICv4 vLPIs).
        pub const TYPER_VLPIS: u64 = 1 << 1;
        /// TYPER.Last: the last redistributor of the region.
        pub const TYPER_LAST: u64 = 1 << 4;
        /// WAKER.ProcessorSleep.
        pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
        /// WAKER.ChildrenAsleep.
        pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
    }

    /// Most redistributors walked: as many as fit in QEMU virt's redistributor region
    /// (0x080a_0000..0x0900_0000).
    const MAX_REDISTRIBUTORS: usize = 123;

    /// Each CPU's RD_base (0: not found yet), by [`cpu::index`].
    static RD_BASE: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
    /// SPIs the distributor implements, from GICD_TYPER.
    static SPIS: AtomicU32 = AtomicU32::new(0);

    /// A 32-bit register at `base + offset`.
    fn reg32(base: usize, offset: usize) -> Reg32 {
        // SAFETY: callers pass the distributor's base or a redistributor frame found
        // by `find_redistributor`, and an offset of a 32-bit register from IHI 0069
        // inside it; GIC registers are device memory with no effect on RAM.
        unsafe { Reg32::new(base + offset) }
    }

    /// Reads the 64-bit register at `addr` with one 64-bit load.
    fn read64(addr: usize) -> u64 {
        // SAFETY: as `reg32`: an aligned 64-bit GIC register (GICR_TYPER).
        unsafe { Reg64::new(addr) }.read()
    }

    /// Writes the 64-bit register at `addr` with one 64-bit store.
    fn write64(addr: usize, value: u64) {
        // SAFETY: as `reg32`: an aligned 64-bit GIC register (GICD_IROUTER<n>).
        unsafe { Reg64::new(addr) }.write(value)
    }

    fn gicd(offset: usize) -> Reg32 {
        reg32(GICD.base as usize, offset)
    }

    /// Sets `mask` in the 32-bit register `reg` (read, modify, write).
    fn set_bits(reg: Reg32, mask: u32) {
        reg.write(reg.read() | mask);
    }

    fn wait_while_set(reg: Reg32, mask: u32) {
        while reg.read() & mask != 0 {
            core::hint::spin_loop();
        }
    }

    /// Sets up the distributor: affinity routing on, every SPI disabled, not pending
    /// and in Group 1, Group 1 forwarding on. Call once, on the boot CPU, before
    /// [`enable_spi`].
    ///
    /// # Errors
    ///
    /// [`GicError::NotGicv3`] if the distributor is no GICv3.
    pub fn init_distributor() -> Result<(), GicError> {
        let pidr2 = gicd(gicd::PIDR2).read();
        if !is_gicv3_pidr2(pidr2) {
            return Err(GicError::NotGicv3(pidr2));
        }
        let ctlr = gicd(gicd::CTLR);
        ctlr.write(0);
        wait_while_set(ctlr, gicd::CTLR_RWP);

        let spis = spi_count(gicd(gicd::TYPER).read());
        SPIS.store(spis, Ordering::Relaxed);
        for word in 1..=(spis / 32) as usize {
            gicd(gicd::ICENABLER + 4 * word).write(u32::MAX);
            gicd(gicd::ICPENDR + 4 * word).write(u32::MAX);
            gicd(gicd::IGROUPR + 4 * word).write(u32::MAX);
        }
        wait_while_set(ctlr, gicd::CTLR_RWP);

        // IHI 0069, GICD_CTLR: ARE is changed only while the groups are disabled.
        ctlr.write(gicd::CTLR_ARE);
        wait_while_set(ctlr, gicd::CTLR_RWP);
        ctlr.write(gicd::CTLR_ARE | gicd::CTLR_ENABLE_GRP1);
        wait_while_set(ctlr, gicd::CTLR_RWP);
        Ok(())
    }

    /// Number of SPIs the distributor has (0 before [`init_distributor`]).
    pub fn spis() -> u32 {
        SPIS.load(Ordering::Relaxed)
    }

    /// Walks the redistributor frames for the one whose GICR_TYPER affinity is this
    /// CPU's, up to the frame that says it is the last.
    fn find_redistributor() -> Result<usize, GicError> {
        let wanted = typer_affinity(cpu::mpidr());
        let mut frame = GICR_BASE as usize;
        for _ in 0..MAX_REDISTRIBUTORS {
            if !is_gicv3_pidr2(reg32(frame, gicr::PIDR2).read()) {
                break;
            }
            let typer = read64(frame + gicr::TYPER);
            if (typer >> 32) as u32 == wanted {
                return Ok(frame);
            }
            if typer & gicr::TYPER_LAST != 0 {
                break;
            }
            frame += GICR_FRAME_SIZE as usize;
            if typer & gicr::TYPER_VLPIS != 0 {
                frame += GICR_FRAME_SIZE as usize;
            }
        }
        Err(GicError::NoRedistributor(cpu::affinity()))
    }

    /// This CPU's RD_base, once [`init_cpu`] found it.
    fn redistributor() -> usize {
        let base = RD_BASE[cpu::index()].load(Ordering::Relaxed);
        assert!(base != 0, "gic: init_cpu was not called on this CPU");
        base
    }

    /// Sets up the calling CPU: wakes its redistributor, disables its SGIs and PPIs
    /// and puts them in Group 1, then turns on the CPU interface (system registers,
    /// priority mask open, no preemption grouping, Group 1 on). Call on every CPU,
    /// after [`init_distributor`] ran on one of them.
    ///
    /// # Errors
    ///
    /// [`GicError::NoRedistributor`] or [`GicError::NoSystemRegisters`].
    pub fn init_cpu() -> Result<(), GicError> {
        let rd = find_redistributor()?;
        RD_BASE[cpu::index()].store(rd, Ordering::Relaxed);

        // IHI 0069, GICR_WAKER: mark the CPU awake, wait until its interface is.
        let waker = reg32(rd, gicr::WAKER);
        waker.write(waker.read() & !gicr::WAKER_PROCESSOR_SLEEP);
        wait_while_set(waker, gicr::WAKER_CHILDREN_ASLEEP);

        reg32(rd, gicr::ICENABLER0).write(u32::MAX);
        wait_while_set(reg32(rd, gicr::CTLR), gicr::CTLR_RWP);
        reg32(rd, gicr::IGROUPR0).write(u32::MAX);

        init_cpu_interface()
    }

    fn init_cpu_interface() -> Result<(), GicError> {
        let sre: u64;
        // SAFETY: ICC_SRE_EL1.SRE = 1 selects the system-register interface (bit 0);
        // the `isb` makes the change visible to the accesses that follow.
        unsafe {
            asm!(
                "mrs {t}, icc_sre_el1",
                "orr {t}, {t}, #1",
                "msr icc_sre_el1, {t}",
                "isb",
                "mrs {t}, icc_sre_el1",
                t = out(reg) sre,
                options(nomem, nostack, preserves_flags),
            );
        }
        if sre & 1 == 0 {
            return Err(GicError::NoSystemRegisters);
        }
        // SAFETY: CPU interface set-up (IHI 0069, ICC_PMR_EL1, ICC_BPR1_EL1 and
        // ICC_IGRPEN1_EL1): let every priority through,
        // no group priority bits, signal Group 1 interrupts. No memory is involved.
        unsafe {
            asm!(
                "msr icc_pmr_el1, {pmr}",
                "msr icc_bpr1_el1, xzr",
                "msr icc_igrpen1_el1, {on}",
                "isb",
                pmr = in(reg) 0xffu64,
                on = in(reg) 1u64,
                options(nomem, nostack, preserves_flags),
            );
        }
        Ok(())
    }

    /// Sets the priority byte of `intid` in the IPRIORITYR block at `base`.
    fn set_priority(base: usize, intid: u32) {
        let reg = reg32(base, 4 * (intid / 4) as usize);
        reg.write(with_priority(reg.read(), intid, DEFAULT_PRIORITY));
    }

    /// Enables SGI or PPI `intid` (0..32) on the calling CPU, in Group 1 at
    /// [`DEFAULT_PRIORITY`]. PPIs keep the trigger the hardware gives them.
    pub fn enable_private(intid: u32) {
        assert!(intid < FIRST_SPI, "gic: {intid} is no SGI or PPI");
        let rd = redistributor();
        let (_, bit) = bit_of(intid);
        set_bits(reg32(rd, gicr::IGROUPR0), bit);
        set_priority(rd + gicr::IPRIORITYR, intid);
        reg32(rd, gicr::ISENABLER0).write(bit);
    }

    /// Whether SGI or PPI `intid` (0..32) of the calling CPU is pending, as its
    /// redistributor says (GICR_ISPENDR0).
    pub fn is_pending_private(intid: u32) -> bool {
        assert!(intid < FIRST_SPI, "gic: {intid} is no SGI or PPI");
        let (_, bit) = bit_of(intid);
        reg32(redistributor(), gicr::ISPENDR0).read() & bit != 0
    }

    /// Enables SPI `intid` (32 and up), in Group 1 at [`DEFAULT_PRIORITY`] with
    /// `trigger`, routed to the calling CPU.
    pub fn enable_spi(intid: u32, trigger: Trigger) {
        assert!(
            (FIRST_SPI..FIRST_SPI + spis()).contains(&intid),
            "gic: {intid} is no SPI of this distributor ({} SPIs)",
            spis()
        );
        let base = GICD.base as usize;
        let (word, bit) = bit_of(intid);
        set_bits(gicd(gicd::IGROUPR + 4 * word), bit);
        set_priority(base + gicd::IPRIORITYR, intid);
        let icfgr = gicd(gicd::ICFGR + 4 * (intid / 16) as usize);
        icfgr.write(with_trigger(icfgr.read(), intid, trigger));
        write64(base + gicd::IROUTER + 8 * intid as usize, irouter(cpu::mpidr()));
        gicd(gicd::ISENABLER + 4 * word).write(bit);
    }

    /// Disables SPI `intid` (ICENABLER; a pending one stays pending).
    pub fn disable_spi(intid: u32) {
        let (word, bit) = bit_of(intid);
        gicd(gicd::ICENABLER + 4 * word).write(bit);
    }

    /// Acknowledges the highest-priority pending Group 1 interrupt: ICC_IAR1_EL1,
    /// whose INTID field (bits \[23:0\]) is 1023 when none is pending.
    pub fn acknowledge() -> u32 {
        let iar: u64;
        // SAFETY: reading ICC_IAR1_EL1 activates the interrupt it returns; the caller
        // (crate::irq) ends it with `end_of_interrupt`.
        unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nomem, nostack)) };
        iar as u32
    }

    /// Ends the interrupt `iar` (as [`acknowledge`] returned it): ICC_EOIR1_EL1 drops
    /// the running priority and, with EOImode 0, deactivates it.
    pub fn end_of_interrupt(iar: u32) {
        // SAFETY: ends an interrupt this CPU acknowledged; no memory is involved.
        unsafe {
            asm!(
                "msr icc_eoir1_el1, {}",
                "isb",
                in(reg) u64::from(iar),
                options(nomem, nostack, preserves_flags),
            );
        }
    }

    /// Sends SGI `intid` (0..16) to the CPU with MPIDR `target`, after the calling
    /// CPU's earlier memory accesses (so the receiver sees what they wrote).
    pub fn send_sgi(intid: u32, target: u64) {
        assert!(intid < SGI_COUNT, "gic: {intid} is no SGI");
        // SAFETY: `dsb` orders earlier accesses before the SGI (a system-register
        // write is not ordered by a `dmb`, as Linux's `gic_send_ipi` notes); the
        // write only signals.
        unsafe {
            asm!(
                "dsb sy",
                "msr icc_sgi1r_el1, {}",
                "isb",
                in(reg) sgi1r(intid, target),
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_gicv3_and_gicv4() {
        assert!(is_gicv3_pidr2(0x3b)); // QEMU's GICD_PIDR2
        assert!(is_gicv3_pidr2(0x4b));
        assert!(!is_gicv3_pidr2(0x2b)); // GICv2
        assert!(!is_gicv3_pidr2(0));
    }

    #[test]
    fn packs_affinity_for_the_redistributor_and_routing() {
        // MPIDR with the RES1 bit 31 and U/MT bits, CPU 1 of cluster 0.
        assert_eq!(typer_affinity(0x8000_0001), 1);
        assert_eq!(typer_affinity(0x0000_00ab_0001_0203), 0xab01_0203);
        assert_eq!(irouter(0x8000_0102), 0x102);
        assert_eq!(irouter(0x0000_00ab_8001_0203), 0xab_0001_0203);
    }

    #[test]
    fn builds_sgi1r_for_one_target() {
        // SGI 1 to CPU 1 (Aff0 = 1): TargetList bit 1, INTID in [27:24].
        assert_eq!(sgi1r(1, 0x8000_0001), 0x0100_0002);
        // SGI 2 to CPU 0.
        assert_eq!(sgi1r(2, 0x8000_0000), 0x0200_0001);
        // Aff0 = 17 (range selector 1, bit 1), Aff1 = 2, Aff2 = 3, Aff3 = 4.
        assert_eq!(
            sgi1r(15, 0x04_0003_0211),
            (4 << 48) | (1 << 44) | (3 << 32) | (15 << 24) | (2 << 16) | 0b10
        );
    }

    #[test]
    fn counts_spis_from_typer() {
        assert_eq!(spi_count(0), 0);
        assert_eq!(spi_count(0x3780_0008), 256); // QEMU virt: ITLinesNumber 8
        assert_eq!(spi_count(0x1f), 1020 - 32);
    }

    #[test]
    fn edits_one_field_of_a_shared_word() {
        assert_eq!(bit_of(33), (1, 1 << 1));
        assert_eq!(bit_of(27), (0, 1 << 27));
        assert_eq!(with_priority(0xffff_ffff, 33, 0xa0), 0xffff_a0ff);
        assert_eq!(with_priority(0, 27, 0xa0), 0xa000_0000);
        // INTID 33 is field 1 of ICFGR2: bits [3:2], edge = bit 3.
        assert_eq!(with_trigger(0, 33, Trigger::Edge), 0b1000);
        assert_eq!(with_trigger(u32::MAX, 33, Trigger::Level), !0b1000);
    }
}
