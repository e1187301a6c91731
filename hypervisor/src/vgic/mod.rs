//! The per-VM virtual GICv3: emulated distributor and redistributors, and the list
//! registers through which the guest's virtual CPU interface sees its interrupts.
//!
//! This is pure logic over values (Arm IHI 0069H, the GICv3 and GICv4 architecture
//! specification); the code that reads and writes the real ICH_* registers and
//! acknowledges physical interrupts drives it through [`Vgic`]'s methods.
//!
//! # Model
//!
//! - One Security state (GICD_CTLR.DS = 1) with affinity routing (ARE = 1); Group 0
//!   and Group 1 are enabled separately in GICD_CTLR and chosen per INTID by
//!   IGROUPR. No LPIs, no ITS, no message-based SPIs.
//! - INTIDs 0-15 (SGIs) and 16-31 (PPIs) are banked per vCPU, in its
//!   redistributor; SPIs are INTIDs 32-127, routed by `GICD_IROUTER<n>` to the vCPU
//!   whose affinity it names. vCPU `i` has affinity 0.0.0.`i`: its MPIDR_EL1
//!   (VMPIDR_EL2) must say so. IRM = 1, or an affinity that names no vCPU, routes to
//!   vCPU 0.
//! - Simplification: an SPI is delivered to one vCPU at a time. While a vCPU holds
//!   it (in a list register, or active there) it stays with that vCPU, even if
//!   GICD_IROUTER changes; it moves once given back.
//! - GICR_WAKER.ProcessorSleep is kept for the guest's handshake but does not gate
//!   delivery.
//!
//! # How the caller drives it
//!
//! The VM's [`Vgic`] is shared by its vCPUs behind a lock of its own;
//! [`VgicSession`] follows these steps for one exit. For each vCPU:
//!
//! 1. On an exit that reads or changes the vGIC, [`Vgic::sync`] first folds the
//!    list registers read from the hardware back into the state.
//! 2. Before entry, after such an exit, [`Vgic::flush`] fills the list registers; when it returns
//!    `true` the caller sets ICH_HCR_EL2.NPIE. The caller enables the maintenance
//!    interrupt (ICH_HCR_EL2.En) and treats it as a plain exit: entries written with
//!    `ICH_LR<n>_EL2.EOI` raise it when the guest deactivates them.
//! 3. Every operation that can make an interrupt deliverable returns a [`Kick`]: the
//!    vCPUs that must exit (an SGI to their physical CPU) so their next flush sees
//!    it. The bit of the vCPU that caused the operation may be set; it is already
//!    outside the guest and may be ignored.
//! 4. Before that flush, [`Vgic::take_hw_deactivations`] lists the physical PPIs whose
//!    hardware link was dropped without the guest deactivating them; the caller
//!    deactivates them (ICC_DIR_EL1) on that vCPU's physical CPU.
//!
//! Nothing allocates after [`Vgic::new`].

#![deny(missing_docs)]

mod access;
mod distributor;
mod ident;
mod irq;
mod irq_regs;
mod list_regs;
mod redistributor;
pub mod session;
mod sgi;

use alloc::vec;
use alloc::vec::Vec;
use core::ops::{BitOr, BitOrAssign};

use crate::bits::ones;
use crate::devices::AccessWidth;
use irq::{Irq, Trigger};
use list_regs::Flushed;

pub use list_regs::{ListReg, LrState};
pub use redistributor::{FRAME_SIZE as GICR_FRAME_SIZE, SGI_BASE as GICR_SGI_BASE};
pub use session::VgicSession;
pub use sgi::{SgiRequest, SgiTargets};

/// Most vCPUs a [`Vgic`] serves (SGI target lists cover Aff0 0-15).
pub const MAX_VCPUS: usize = 16;
/// Most list registers a CPU has (ICH_VTR_EL2.ListRegs is 4 bits).
pub const MAX_LIST_REGS: usize = 16;
/// First PPI (INTIDs 0-15 are SGIs).
pub const FIRST_PPI: u32 = 16;
/// First SPI.
pub const FIRST_SPI: u32 = 32;
/// One past the last SPI (GICD_TYPER.ITLinesNumber = 3).
pub const NR_INTIDS: u32 = 128;
/// Number of SPIs.
const NR_SPIS: usize = (NR_INTIDS - FIRST_SPI) as usize;
/// Offsets of the set- and clear-pending and -active registers, in the
/// distributor and in a redistributor's SGI_base page alike.
const PENDING_AND_ACTIVE_REGS: core::ops::Range<u64> = 0x200..0x400;

/// Which vCPUs must be made to exit so they pick up new pending state (bit i =
/// vCPU i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kick(pub u16);

impl Kick {
    /// No vCPU.
    pub const NONE: Self = Self(0);

    /// vCPU `vcpu` alone (none if `vcpu` is 16 or more).
    pub const fn vcpu(vcpu: usize) -> Self {
        if vcpu < MAX_VCPUS {
            Self(1 << vcpu)
        } else {
            Self::NONE
        }
    }

    /// vCPUs 0 to `count - 1`.
    pub const fn all(count: usize) -> Self {
        if count >= MAX_VCPUS {
            Self(u16::MAX)
        } else {
            Self((1 << count) - 1)
        }
    }

    /// Whether vCPU `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set without vCPU `vcpu` (the caller's own, which needs no kick).
    pub const fn without(self, vcpu: usize) -> Self {
        Self(self.0 & !Self::vcpu(vcpu).0)
    }
}

impl BitOr for Kick {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Kick {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// What the vGIC keeps per vCPU: its redistributor and its list registers.
#[derive(Clone, Debug)]
struct VcpuState {
    /// SGIs and PPIs.
    irqs: [Irq; FIRST_SPI as usize],
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// PPIs (bit per INTID) whose physical interrupt the caller must deactivate.
    hw_deactivate: u32,
    /// What its list registers were filled with.
    flushed: Flushed,
    /// The vGIC's generation when a flush last found nothing to deliver: until the
    /// generation moves, the next flush finds nothing either and skips its scan.
    idle_at: Option<u64>,
    /// SGIs and PPIs (bit per INTID) that are pending, active or in a list
    /// register, as of the last [`Vgic::refresh_live`]: the only ones a flush or
    /// a WFI has to look at.
    live: u32,
    /// SGIs and PPIs changed since then (their `live` bit may be stale).
    dirty: u32,
}

impl VcpuState {
    /// The reset state: everything disabled, edge-triggered, Group 0, priority 0;
    /// the redistributor asleep.
    fn new() -> Self {
        Self {
            irqs: [Irq::default(); FIRST_SPI as usize],
            asleep: true,
            hw_deactivate: 0,
            flushed: Flushed::EMPTY,
            idle_at: None,
            live: 0,
            dirty: 0,
        }
    }
}

/// The virtual GICv3 of one VM.
#[derive(Clone, Debug)]
pub struct Vgic {
    /// Per vCPU.
    cpus: Vec<VcpuState>,
    /// SPIs, INTID 32 first.
    spis: Vec<Irq>,
    /// `GICD_IROUTER<n>` of each SPI, as written (RES0 bits cleared).
    routes: Vec<u64>,
    /// GICD_CTLR.EnableGrp0.
    group0_enabled: bool,
    /// GICD_CTLR.EnableGrp1.
    group1_enabled: bool,
    /// Moves on every change that could make an interrupt deliverable (any
    /// mutable access to an interrupt, any register write, a reset); reads leave it.
    generation: u64,
    /// [`VcpuState::live`] for the SPIs (bit 0 = INTID 32).
    live_spis: u128,
    /// [`VcpuState::dirty`] for the SPIs.
    dirty_spis: u128,
}

impl Vgic {
    /// A vGIC for `vcpus` vCPUs (1..=16), all interrupts disabled, priorities 0,
    /// edge-triggered, Group 0, SPIs routed to vCPU 0, both groups disabled.
    ///
    /// # Panics
    ///
    /// If `vcpus` is 0 or more than [`MAX_VCPUS`]: the VM configuration is checked
    /// long before.
    pub fn new(vcpus: usize) -> Self {
        assert!((1..=MAX_VCPUS).contains(&vcpus), "a vGIC serves 1 to {MAX_VCPUS} vCPUs, not {vcpus}");
        Self {
            cpus: vec![VcpuState::new(); vcpus],
            spis: vec![Irq::default(); NR_SPIS],
            routes: vec![0; NR_SPIS],
            group0_enabled: false,
            group1_enabled: false,
            generation: 0,
            live_spis: 0,
            dirty_spis: 0,
        }
    }

    /// Returns to the state of [`Vgic::new`] (VM reset), with every vCPU out of the
    /// guest. Hardware-linked interrupts in flight are dropped; their PPIs are left
    /// in [`Vgic::take_hw_deactivations`] so the caller deactivates them (a PPI
    /// the hardware already deactivated is deactivated again, which has no effect).
    /// SPI line levels are forgotten too: a device whose line is still high after
    /// its own reset says so again with [`Vgic::set_spi_level`].
    pub fn reset(&mut self) {
        // Every vCPU forgets its idle flush below, so the count can start over.
        self.generation = 0;
        for cpu in &mut self.cpus {
            let linked =
                cpu.irqs.iter().enumerate().filter(|(_, irq)| irq.hw).fold(0, |acc, (i, _)| acc | 1 << i);
            let pending_deactivations = cpu.hw_deactivate | linked;
            *cpu = VcpuState::new();
            cpu.hw_deactivate = pending_deactivations;
        }
        self.spis.fill(Irq::default());
        self.routes.fill(0);
        self.group0_enabled = false;
        self.group1_enabled = false;
        (self.live_spis, self.dirty_spis) = (0, 0);
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.cpus.len()
    }

    /// A guest read of `width` at `offset` from the distributor's base (GICD,
    /// 64 KiB). Reserved offsets and widths the register does not accept read 0.
    pub fn distributor_read(&self, offset: u64, width: AccessWidth) -> u64 {
        self.gicd_read(offset, width)
    }

    /// Whether a read of the distributor register at `offset` shows pending or
    /// active states (GICD_I{S,C}{PEND,ACTIVE}R<n>), which the list registers of
    /// a running vCPU may hold: the caller folds them in first ([`Vgic::sync`]).
    /// Other registers read the same either way.
    pub fn distributor_read_shows_lrs(offset: u64) -> bool {
        (PENDING_AND_ACTIVE_REGS).contains(&offset)
    }

    /// [`Vgic::distributor_read_shows_lrs`] for the redistributor region
    /// (GICR_I{S,C}{PEND,ACTIVE}R0 in each frame's SGI_base page).
    pub fn redistributor_read_shows_lrs(offset: u64) -> bool {
        let inner = offset % GICR_FRAME_SIZE;
        inner.checked_sub(GICR_SGI_BASE).is_some_and(|sgi| PENDING_AND_ACTIVE_REGS.contains(&sgi))
    }

    /// A guest write of the low `width` bytes of `value` at `offset` from the
    /// distributor's base. Returns the vCPUs to kick.
    pub fn distributor_write(&mut self, offset: u64, width: AccessWidth, value: u64) -> Kick {
        self.touch();
        self.gicd_write(offset, width, value & width.mask())
    }

    /// A guest read of `width` at `offset` from the redistributor region's base
    /// (frame `offset / 0x2_0000` is vCPU `offset / 0x2_0000`'s). Offsets beyond the
    /// last vCPU's frame read 0.
    pub fn redistributor_read(&self, offset: u64, width: AccessWidth) -> u64 {
        self.gicr_read(offset, width)
    }

    /// A guest write to the redistributor region. Returns the vCPUs to kick.
    pub fn redistributor_write(&mut self, offset: u64, width: AccessWidth, value: u64) -> Kick {
        self.touch();
        self.gicr_write(offset, width, value & width.mask())
    }

    /// A device's interrupt line, SPI `intid` (32..128), went to `level`. A
    /// level-sensitive SPI is pending while the line is high; an edge-triggered one
    /// latches pending on a rising edge. Anything else is ignored.
    pub fn set_spi_level(&mut self, intid: u32, level: bool) -> Kick {
        if !(FIRST_SPI..NR_INTIDS).contains(&intid) {
            log::debug!("vgic: interrupt line of INTID {intid}, which is not an SPI, ignored");
            return Kick::NONE;
        }
        if self.irq(0, intid).line == level {
            // No edge: nothing changes (devices report their level on every access).
            return Kick::NONE;
        }
        self.update(0, intid, |irq| {
            if level && !irq.line && irq.trigger == Trigger::Edge {
                irq.latch = true;
            }
            irq.line = level;
        })
    }

    /// An edge on PPI or SGI `intid` of vCPU `vcpu`, or on SPI `intid` (delivered
    /// to its routed vCPU; `vcpu` is then unused): it becomes pending, as a write
    /// to ISPENDR would make it. (No device raises edges: for tests and fuzzing.)
    #[cfg(any(test, feature = "testing"))]
    pub fn raise_edge(&mut self, vcpu: usize, intid: u32) -> Kick {
        if intid >= NR_INTIDS || (intid < FIRST_SPI && !self.check_vcpu(vcpu)) {
            log::debug!("vgic: edge on INTID {intid} of vCPU {vcpu} ignored");
            return Kick::NONE;
        }
        let bank = if intid < FIRST_SPI { vcpu } else { 0 };
        self.update(bank, intid, Irq::set_pending)
    }

    /// A physical PPI `intid` (the timers' 27 and 30) fired while `vcpu` ran and was
    /// acknowledged with only a priority drop (EOImode = 1): it is injected
    /// hardware-linked (`ICH_LR<n>_EL2.HW` = 1, pINTID = vINTID = `intid`), pending
    /// until the guest deactivates it, which deactivates the physical one. So the
    /// link gives it level semantics: the timer fires again after deactivation if its
    /// condition still holds. Only PPIs can be linked; anything else is ignored.
    pub fn raise_hw(&mut self, vcpu: usize, intid: u32) -> Kick {
        if !(FIRST_PPI..FIRST_SPI).contains(&intid) || !self.check_vcpu(vcpu) {
            log::warn!(
                "vgic: hardware-linked INTID {intid} for vCPU {vcpu} ignored: only PPIs can be linked"
            );
            return Kick::NONE;
        }
        self.update(vcpu, intid, |irq| {
            irq.hw = true;
            irq.set_pending();
        })
    }

    /// Resamples hardware-linked PPI `intid` of `vcpu` from its source: when the
    /// timer behind it no longer asserts its interrupt (`asserted` says false: the guest
    /// disabled or masked it, or moved its deadline), a pending state not yet taken
    /// by the guest is dropped, and the physical interrupt, still active from when
    /// Sluice took it, is listed for deactivation ([`Vgic::take_hw_deactivations`]),
    /// so it can fire again. A level-sensitive line behaves so on real hardware; the
    /// list register would otherwise deliver the stale interrupt later. Called after
    /// [`Vgic::sync`], when the list registers are folded back.
    pub fn resample_hw(&mut self, vcpu: usize, intid: u32, asserted: impl FnOnce() -> bool) -> Kick {
        if !(FIRST_PPI..FIRST_SPI).contains(&intid) || vcpu >= self.vcpu_count() {
            return Kick::NONE;
        }
        let irq = self.irq(vcpu, intid);
        if !(irq.hw && irq.latch) || irq.in_lr || asserted() {
            return Kick::NONE;
        }
        self.update_hw(vcpu, intid, Irq::clear_pending)
    }

    /// The guest on `vcpu` wrote `value` to ICC_SGI1R_EL1 (IHI 0069H, ICC_SGI1R_EL1:
    /// TargetList \[15:0\], Aff1 \[23:16\], INTID \[27:24\], Aff2 \[39:32\], IRM \[40\], RS
    /// \[47:44\], Aff3 \[55:48\]); IRM = 1 targets all vCPUs but `vcpu`. As KVM does,
    /// the SGI is made pending whatever its group on each target.
    pub fn send_sgi(&mut self, vcpu: usize, value: u64) -> Kick {
        self.generate_sgi(vcpu, value, true)
    }

    /// The guest on `vcpu` wrote `value` to ICC_SGI0R_EL1 (same layout as
    /// ICC_SGI1R_EL1): the SGI is made pending only on targets where it is Group 0.
    pub fn send_sgi0(&mut self, vcpu: usize, value: u64) -> Kick {
        self.generate_sgi(vcpu, value, false)
    }

    /// Folds vCPU `vcpu`'s list registers, as read from the hardware on exit, back
    /// into the state; the vCPU's list registers are then free (the next
    /// [`Vgic::flush`] rewrites all of them). `lrs[i]` is `ICH_LR<i>_EL2`; only the
    /// entries the last flush filled are looked at (a missing one counts as
    /// unchanged).
    ///
    /// An entry that came back invalid was completed by the guest: an
    /// edge-triggered interrupt is done, a level-sensitive one is pending again if
    /// its line is still high, a hardware-linked one is done (the hardware
    /// deactivated the physical interrupt). Active and pending states are kept.
    ///
    /// Returns the other vCPUs to kick: those that must now take an SPI this vCPU
    /// held while GICD_IROUTER moved it.
    pub fn sync(&mut self, vcpu: usize, lrs: &[u64]) -> Kick {
        if !self.check_vcpu(vcpu) {
            return Kick::NONE;
        }
        self.sync_lrs(vcpu, lrs)
    }

    /// Fills `lrs` (all of them, as many as the CPU has; at most 16 are used) for
    /// vCPU `vcpu`'s entry: active interrupts first, so the guest can deactivate
    /// them, then pending, enabled ones whose group is enabled in GICD_CTLR, by
    /// priority (lowest value first, then lowest INTID). Unused entries are written
    /// invalid (0).
    ///
    /// - A hardware-linked interrupt gets HW = 1, pINTID = its INTID, and is never
    ///   written pending and active.
    /// - A level-sensitive interrupt gets EOI = 1, so its deactivation raises a
    ///   maintenance interrupt and [`Vgic::sync`] can resample the line.
    /// - When interrupts are left over, every non-HW entry gets EOI = 1 too, so any
    ///   deactivation makes room.
    ///
    /// Returns `true` when interrupts are left over and an entry is in the Pending
    /// state: the caller sets ICH_HCR_EL2.NPIE, so a maintenance interrupt fires
    /// once the guest has acknowledged them all. (If every entry is active, or
    /// pending and active, NPIE would fire at once and for ever; `false` is
    /// returned and the EOI bits do the job.)
    pub fn flush(&mut self, vcpu: usize, lrs: &mut [u64]) -> bool {
        if !self.check_vcpu(vcpu) {
            lrs.fill(ListReg::EMPTY);
            return false;
        }
        self.flush_lrs(vcpu, lrs)
    }

    /// Whether vCPU `vcpu` has an interrupt that could be delivered: pending,
    /// enabled, its group enabled (also while a list register holds it). For WFI:
    /// don't sleep if so. The guest's priority mask is not looked at, so this may say
    /// yes for an interrupt the guest masks.
    pub fn has_pending(&self, vcpu: usize) -> bool {
        if vcpu >= self.vcpu_count() {
            return false;
        }
        // A stale `live` bit is in `dirty`, so the two together miss nothing.
        let cpu = &self.cpus[vcpu];
        let private = cpu.live | cpu.dirty;
        let candidates = u128::from(private) | (self.live_spis | self.dirty_spis) << FIRST_SPI;
        ones(candidates).any(|intid| {
            let irq = self.irq(vcpu, intid);
            (intid < FIRST_SPI || self.owner(vcpu, intid) == vcpu)
                && irq.pending_visible()
                && irq.enabled
                && self.group_enabled(irq.group1)
        })
    }

    /// The INTIDs vCPU `vcpu` has to look at to fill its list registers: its SGIs
    /// and PPIs and the SPIs that are pending, active or in a list register.
    /// Brings the `live` bits up to date first.
    fn live_intids(&mut self, vcpu: usize) -> u128 {
        self.refresh_live(vcpu);
        u128::from(self.cpus[vcpu].live) | self.live_spis << FIRST_SPI
    }

    /// Recomputes the `live` bits of what changed: `vcpu`'s SGIs and PPIs, and
    /// the SPIs.
    fn refresh_live(&mut self, vcpu: usize) {
        let is_live = |irq: &Irq| irq.active || irq.in_lr || irq.pending_visible();
        let cpu = &mut self.cpus[vcpu];
        for i in ones(core::mem::take(&mut cpu.dirty).into()) {
            cpu.live = (cpu.live & !(1 << i)) | u32::from(is_live(&cpu.irqs[i as usize])) << i;
        }
        for i in ones(core::mem::take(&mut self.dirty_spis)) {
            self.live_spis = (self.live_spis & !(1 << i)) | u128::from(is_live(&self.spis[i as usize])) << i;
        }
    }

    /// List registers the last [`Vgic::flush`] for `vcpu` filled: the ones
    /// [`Vgic::sync`] needs back, and the ones the next flush may have to clear.
    pub fn lrs_in_use(&self, vcpu: usize) -> usize {
        self.cpus.get(vcpu).map_or(0, |cpu| cpu.flushed.count)
    }

    /// Whether a [`Vgic::flush`] for `vcpu` now would write nothing: its list
    /// registers are empty, and nothing changed since a flush found nothing to
    /// deliver. The caller may then leave the list registers as they are.
    pub fn flush_is_idle(&self, vcpu: usize) -> bool {
        self.cpus.get(vcpu).is_none_or(|cpu| cpu.flushed.count == 0 && cpu.idle_at == Some(self.generation))
    }

    /// Notes a change that may make an interrupt deliverable.
    fn touch(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Takes the PPIs (bit per INTID) of vCPU `vcpu` whose hardware link was
    /// dropped while the physical interrupt was still active (the guest cleared its
    /// pending or active state through the redistributor, or the VM was reset). The
    /// caller deactivates each (ICC_DIR_EL1) on the vCPU's physical CPU.
    pub fn take_hw_deactivations(&mut self, vcpu: usize) -> u32 {
        match self.cpus.get_mut(vcpu) {
            Some(cpu) => core::mem::take(&mut cpu.hw_deactivate),
            None => 0,
        }
    }

    // Shared by the register and list-register code.

    /// Whether `vcpu` exists; logs if not.
    fn check_vcpu(&self, vcpu: usize) -> bool {
        let ok = vcpu < self.vcpu_count();
        if !ok {
            log::warn!("vgic: no vCPU {vcpu} (the VM has {})", self.vcpu_count());
        }
        ok
    }

    /// INTID `intid` as seen from vCPU `vcpu` (its SGIs and PPIs; the SPIs).
    fn irq(&self, vcpu: usize, intid: u32) -> &Irq {
        match intid.checked_sub(FIRST_SPI) {
            None => &self.cpus[vcpu].irqs[intid as usize],
            Some(spi) => &self.spis[spi as usize],
        }
    }

    /// INTID `intid` as seen from vCPU `vcpu`, to change.
    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> &mut Irq {
        self.touch();
        match intid.checked_sub(FIRST_SPI) {
            None => {
                let cpu = &mut self.cpus[vcpu];
                cpu.dirty |= 1 << intid;
                &mut cpu.irqs[intid as usize]
            }
            Some(spi) => {
                self.dirty_spis |= 1 << spi;
                &mut self.spis[spi as usize]
            }
        }
    }

    /// Whether the distributor forwards interrupts of the group.
    fn group_enabled(&self, group1: bool) -> bool {
        if group1 {
            self.group1_enabled
        } else {
            self.group0_enabled
        }
    }

    /// Whether `irq` may be delivered as pending now.
    fn deliverable(&self, irq: &Irq) -> bool {
        irq.pending() && irq.enabled && self.group_enabled(irq.group1)
    }

    /// The vCPU INTID `intid` (seen from `vcpu`) belongs to: `vcpu` for its SGIs
    /// and PPIs; for an SPI the vCPU that holds it, or else the routed one.
    fn owner(&self, vcpu: usize, intid: u32) -> usize {
        if intid < FIRST_SPI {
            return vcpu;
        }
        let irq = self.irq(vcpu, intid);
        if irq.in_lr || irq.active {
            usize::from(irq.vcpu)
        } else {
            self.route_target(self.routes[(intid - FIRST_SPI) as usize])
        }
    }

    /// Applies `change` to INTID `intid` (seen from `vcpu`) and returns the vCPU to
    /// kick: the holder of the list register that has it, or, if it is now
    /// deliverable or became active, the vCPU it belongs to. No change, no kick.
    fn update(&mut self, vcpu: usize, intid: u32, change: impl FnOnce(&mut Irq)) -> Kick {
        self.update_hw(vcpu, intid, |irq| {
            change(irq);
            false
        })
    }

    /// [`Vgic::update`] for a change that may drop a hardware link (it returns
    /// whether the physical interrupt needs deactivating).
    fn update_hw(&mut self, vcpu: usize, intid: u32, change: impl FnOnce(&mut Irq) -> bool) -> Kick {
        let before = *self.irq(vcpu, intid);
        if change(self.irq_mut(vcpu, intid)) && intid < FIRST_SPI {
            self.cpus[vcpu].hw_deactivate |= 1 << intid;
        }
        let irq = self.irq(vcpu, intid);
        if *irq == before {
            Kick::NONE
        } else if irq.in_lr {
            Kick::vcpu(irq.vcpu.into())
        } else if self.deliverable(irq) || (irq.active && !before.active) {
            Kick::vcpu(self.owner(vcpu, intid))
        } else {
            Kick::NONE
        }
    }

    /// Makes the SGI written by `vcpu` pending on its targets (of either group if
    /// `group1`, else only where it is Group 0).
    fn generate_sgi(&mut self, vcpu: usize, value: u64, group1: bool) -> Kick {
        if !self.check_vcpu(vcpu) {
            return Kick::NONE;
        }
        let request = SgiRequest::decode(value);
        let targets = request.vcpus(vcpu, self.vcpu_count());
        let mut kick = Kick::NONE;
        for target in (0..self.vcpu_count()).filter(|&t| targets & (1 << t) != 0) {
            if group1 || !self.irq(target, request.intid).group1 {
                kick |= self.update(target, request.intid, Irq::set_pending);
            }
        }
        kick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessWidth::Word;

    /// Offset of vCPU `vcpu`'s SGI_base register `offset`.
    fn sgi_base(vcpu: u64, offset: u64) -> u64 {
        vcpu * GICR_FRAME_SIZE + GICR_SGI_BASE + offset
    }

    /// A vGIC with both groups on and every SGI/PPI Group 1 and enabled.
    fn gic(vcpus: usize) -> Vgic {
        let mut g = Vgic::new(vcpus);
        g.distributor_write(0, Word, 3);
        for v in 0..vcpus as u64 {
            g.redistributor_write(sgi_base(v, 0x80), Word, 0xffff_ffff);
            g.redistributor_write(sgi_base(v, 0x100), Word, 0xffff_ffff);
        }
        g
    }

    fn pending_sgis(g: &mut Vgic, vcpu: u64) -> u64 {
        g.redistributor_read(sgi_base(vcpu, 0x200), Word) & 0xffff
    }

    #[test]
    fn many_pending_interrupts_are_listed_by_priority_in_rounds() {
        let mut g = gic(1);
        // SPIs 32..72 Group 1 and enabled; 52..72 at priority 0x40, the rest 0x80.
        for reg in 1..3u64 {
            g.distributor_write(0x080 + 4 * reg, Word, 0xffff_ffff);
            g.distributor_write(0x100 + 4 * reg, Word, 0xffff_ffff);
        }
        for n in 0..40u32 {
            let intid = FIRST_SPI + n;
            let priority = if n >= 20 { 0x40 } else { 0x80 };
            g.distributor_write(0x400 + u64::from(intid), AccessWidth::Byte, priority);
            g.raise_edge(0, intid);
        }
        assert!(g.has_pending(0));
        let listed = |lrs: &[u64]| lrs.iter().map(|&lr| ListReg::decode(lr).vintid).collect::<Vec<_>>();
        let mut lrs = [0u64; 16];
        assert!(g.flush(0, &mut lrs), "24 are left over");
        assert_eq!(listed(&lrs), (52..68).collect::<Vec<_>>());
        // The guest completes them all; the rest come next, by priority then INTID.
        g.sync(0, &[0; 16]);
        assert!(g.flush(0, &mut lrs), "8 are left over");
        assert_eq!(listed(&lrs), (68..72).chain(32..44).collect::<Vec<_>>());
        g.sync(0, &[0; 16]);
        assert!(!g.flush(0, &mut lrs));
        assert_eq!(listed(&lrs[..8]), (44..52).collect::<Vec<_>>());
        assert_eq!(lrs[8..], [ListReg::EMPTY; 8]);
        g.sync(0, &[0; 16]);
        assert!(!g.has_pending(0));
        assert!(!g.flush(0, &mut lrs));
        assert_eq!(lrs, [ListReg::EMPTY; 16]);
    }

    #[test]
    fn only_pending_and_active_registers_need_the_list_registers() {
        for (offset, shows) in [(0x000, false), (0x008, false), (0x1fc, false), (0x200, true), (0x3fc, true)]
        {
            assert_eq!(Vgic::distributor_read_shows_lrs(offset), shows, "GICD {offset:#x}");
        }
        assert!(!Vgic::redistributor_read_shows_lrs(0x200), "RD_base page: GICR_* control registers");
        assert!(Vgic::redistributor_read_shows_lrs(GICR_SGI_BASE + 0x200));
        assert!(Vgic::redistributor_read_shows_lrs(GICR_FRAME_SIZE + GICR_SGI_BASE + 0x300));
        assert!(!Vgic::redistributor_read_shows_lrs(GICR_FRAME_SIZE + GICR_SGI_BASE + 0x100));
    }

    #[test]
    fn kick_sets() {
        assert_eq!(Kick::vcpu(3), Kick(8));
        assert_eq!(Kick::vcpu(16), Kick::NONE);
        assert_eq!(Kick::all(3), Kick(7));
        assert_eq!(Kick::all(16), Kick(0xffff));
        assert!((Kick::vcpu(1) | Kick::vcpu(2)).contains(2));
        assert!(!Kick(4).contains(1) && !Kick(4).contains(99));
        assert_eq!(Kick(6).without(1), Kick(4));
        assert!(Kick::NONE.is_empty());
        let mut k = Kick::NONE;
        k |= Kick::vcpu(0);
        assert_eq!(k, Kick(1));
    }

    #[test]
    #[should_panic]
    fn no_vcpus_is_refused() {
        Vgic::new(0);
    }

    #[test]
    fn sgi_by_target_list() {
        let mut g = gic(4);
        // SGI 3 from vCPU 0 to vCPUs 1 and 3.
        assert_eq!(g.send_sgi(0, 3 << 24 | 0b1010), Kick(0b1010));
        assert_eq!(pending_sgis(&mut g, 1), 1 << 3);
        assert_eq!(pending_sgis(&mut g, 3), 1 << 3);
        assert_eq!(pending_sgis(&mut g, 0), 0);
        assert_eq!(pending_sgis(&mut g, 2), 0);
        // To itself.
        assert_eq!(g.send_sgi(2, 5 << 24 | 0b100), Kick::vcpu(2));
        assert_eq!(pending_sgis(&mut g, 2), 1 << 5);
        // Aff1 = 1 names no vCPU.
        assert_eq!(g.send_sgi(0, 1 << 16 | 0b1), Kick::NONE);
        assert_eq!(pending_sgis(&mut g, 0), 0);
    }

    #[test]
    fn sgi_to_all_but_self() {
        let mut g = gic(3);
        assert_eq!(g.send_sgi(1, 1 << 40 | 7 << 24), Kick(0b101));
        assert_eq!(
            [pending_sgis(&mut g, 0), pending_sgis(&mut g, 1), pending_sgis(&mut g, 2)],
            [1 << 7, 0, 1 << 7]
        );
        // Already pending: no change, no kick.
        assert_eq!(g.send_sgi(1, 1 << 40 | 7 << 24), Kick::NONE);
    }

    #[test]
    fn sgi_delivered_through_the_list_registers() {
        let mut g = gic(2);
        g.send_sgi(0, 2 << 24 | 0b10);
        let mut lrs = [0u64; 4];
        assert!(!g.flush(1, &mut lrs));
        let lr = ListReg::decode(lrs[0]);
        assert_eq!((lr.vintid, lr.state, lr.group1), (2, LrState::Pending, true));
        g.sync(1, &[0; 4]);
        assert_eq!(pending_sgis(&mut g, 1), 0);
    }

    #[test]
    fn sgi0_only_for_group0() {
        let mut g = gic(2);
        assert_eq!(g.send_sgi0(0, 1 << 24 | 0b10), Kick::NONE, "SGI 1 is Group 1 on vCPU 1");
        g.redistributor_write(sgi_base(1, 0x80), Word, 0xffff_fffd);
        assert_eq!(g.send_sgi0(0, 1 << 24 | 0b10), Kick::vcpu(1));
    }

    #[test]
    fn disabled_sgi_is_pending_but_no_kick() {
        let mut g = Vgic::new(2);
        g.distributor_write(0, Word, 3);
        assert_eq!(g.send_sgi(0, 0b10), Kick::NONE);
        assert_eq!(pending_sgis(&mut g, 1), 1);
        assert!(!g.has_pending(1));
        assert_eq!(g.redistributor_write(sgi_base(1, 0x100), Word, 1), Kick::vcpu(1));
        assert!(g.has_pending(1));
    }

    #[test]
    fn a_timer_that_stops_asserting_is_no_longer_pending() {
        let mut g = gic(1);
        let ispendr0 = sgi_base(0, 0x200);
        assert_eq!(g.raise_hw(0, 27), Kick::vcpu(0));
        let mut lrs = [0u64; 4];
        g.flush(0, &mut lrs);
        assert_eq!(ListReg::decode(lrs[0]).pintid, Some(27));
        // The guest has not taken it yet; it disables its timer; the next exit
        // folds the list register back and resamples.
        g.sync(0, &lrs[..1]);
        assert_eq!(g.resample_hw(0, 27, || true), Kick::NONE, "still asserted: stays");
        assert_ne!(g.redistributor_read(ispendr0, Word) & 1 << 27, 0);
        g.resample_hw(0, 27, || false);
        assert_eq!(g.redistributor_read(ispendr0, Word) & 1 << 27, 0, "not pending any more");
        assert!(!g.has_pending(0));
        assert_eq!(g.take_hw_deactivations(0), 1 << 27, "the physical timer interrupt is deactivated");
        let mut lrs = [0xdead; 4];
        g.flush(0, &mut lrs);
        assert_eq!(lrs, [ListReg::EMPTY; 4], "nothing stale is delivered later");
    }

    #[test]
    fn a_timer_the_guest_took_is_not_resampled_away() {
        let mut g = gic(1);
        g.raise_hw(0, 30);
        let mut lrs = [0u64; 4];
        g.flush(0, &mut lrs);
        // The guest acknowledged it: the list register comes back active.
        let active = ListReg { state: LrState::Active, ..ListReg::decode(lrs[0]) }.encode();
        g.sync(0, &[active]);
        g.resample_hw(0, 30, || false);
        assert_ne!(g.redistributor_read(sgi_base(0, 0x300), Word) & 1 << 30, 0, "still active");
        assert_eq!(g.take_hw_deactivations(0), 0, "the guest deactivates it through the link");
    }

    #[test]
    fn raise_edge_on_ppi_and_spi() {
        let mut g = gic(2);
        assert_eq!(g.raise_edge(1, 23), Kick::vcpu(1));
        assert!(g.has_pending(1) && !g.has_pending(0));
        assert_eq!(g.raise_edge(5, 23), Kick::NONE, "no vCPU 5");
        assert_eq!(g.raise_edge(0, 128), Kick::NONE, "no INTID 128");
        // An SPI goes where it is routed, whatever `vcpu` says; disabled: no kick.
        assert_eq!(g.raise_edge(1, 40), Kick::NONE);
        assert_eq!(g.distributor_read(0x204, Word), 1 << 8);
    }

    #[test]
    fn raise_hw_only_for_ppis() {
        let mut g = gic(1);
        assert_eq!(g.raise_hw(0, 27), Kick::vcpu(0));
        assert_eq!(g.raise_hw(0, 3), Kick::NONE);
        assert_eq!(g.raise_hw(0, 40), Kick::NONE);
        assert_eq!(g.raise_hw(1, 27), Kick::NONE);
        let mut lrs = [0u64; 4];
        g.flush(0, &mut lrs);
        assert_eq!(ListReg::decode(lrs[0]).pintid, Some(27));
        assert_eq!(ListReg::decode(lrs[1]).state, LrState::Invalid);
    }

    #[test]
    fn hw_link_cleared_outside_the_lrs_needs_deactivation() {
        let mut g = gic(2);
        g.raise_hw(1, 30);
        assert_eq!(g.take_hw_deactivations(1), 0);
        g.redistributor_write(sgi_base(1, 0x280), Word, 1 << 30);
        assert_eq!(g.take_hw_deactivations(1), 1 << 30);
        assert_eq!(g.take_hw_deactivations(0), 0);
        assert!(!g.has_pending(1));
    }

    #[test]
    fn reset_returns_to_new_and_reports_linked_ppis() {
        let mut g = gic(2);
        g.raise_hw(0, 27);
        g.send_sgi(0, 0b11);
        g.distributor_write(0x6000 + 8 * 40, AccessWidth::Double, 1);
        g.distributor_write(0x420, Word, 0xffff_ffff);
        g.redistributor_write(0x14, Word, 0);
        let mut lrs = [0u64; 4];
        g.flush(1, &mut lrs);
        g.reset();
        assert_eq!(g.take_hw_deactivations(0), 1 << 27);
        let fresh = Vgic::new(2);
        assert_eq!(format!("{g:?}"), format!("{fresh:?}"));
        // The stale list registers of before the reset are not folded back.
        assert_eq!(g.sync(1, &lrs), Kick::NONE);
        assert_eq!(format!("{g:?}"), format!("{fresh:?}"));
    }

    #[test]
    fn out_of_range_vcpus_are_ignored() {
        let mut g = gic(1);
        let mut lrs = [5u64; 2];
        assert!(!g.flush(1, &mut lrs));
        assert_eq!(lrs, [0, 0]);
        assert_eq!(g.sync(1, &lrs), Kick::NONE);
        assert!(!g.has_pending(1));
        assert_eq!(g.take_hw_deactivations(1), 0);
        assert_eq!(g.send_sgi(1, 1), Kick::NONE);
    }
}
