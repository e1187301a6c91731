//! The list registers (`ICH_LR<n>_EL2`, Arm IHI 0069H): their encoding, and
//! the two algorithms that move interrupts between the vGIC's state and them.
//!
//! [`Vgic::flush`] fills a vCPU's list registers before it enters the guest;
//! [`Vgic::sync`] folds them back after it exits. Between the two the list
//! registers own the pending and active state of the interrupts they hold, and the
//! guest acknowledges, ends and deactivates them without exiting.

use super::irq::Trigger;
use super::{Kick, Vgic, FIRST_SPI, MAX_LIST_REGS, NR_INTIDS};

/// `ICH_LR<n>_EL2.State` (IHI 0069H, `ICH_LR<n>_EL2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// 0b00: the entry holds no interrupt (or the guest completed it).
    Invalid,
    /// 0b01: pending.
    Pending,
    /// 0b10: active.
    Active,
    /// 0b11: active and pending.
    PendingActive,
}

impl LrState {
    /// The state for a (`pending`, `active`) pair.
    pub const fn new(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    /// Whether the state includes pending.
    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    /// Whether the state includes active.
    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
}

/// One list register's contents, decoded (IHI 0069H, `ICH_LR<n>_EL2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListReg {
    /// vINTID \[31:0\]: the INTID the guest sees.
    pub vintid: u32,
    /// pINTID \[44:32\] when HW = 1: the physical interrupt that the guest's
    /// deactivation deactivates. `None` for a purely virtual interrupt (HW = 0).
    pub pintid: Option<u32>,
    /// EOI \[41\] (HW = 0 only): a maintenance interrupt is raised when the guest
    /// deactivates the interrupt.
    pub eoi: bool,
    /// Priority \[55:48\].
    pub priority: u8,
    /// Group \[60\]: Group 1 when set.
    pub group1: bool,
    /// State \[63:62\].
    pub state: LrState,
}

/// Field positions of `ICH_LR<n>_EL2` (IHI 0069H, `ICH_LR<n>_EL2`).
mod field {
    /// pINTID \[44:32\].
    pub const PINTID_SHIFT: u32 = 32;
    /// pINTID is 13 bits wide.
    pub const PINTID_MASK: u64 = 0x1fff;
    /// EOI \[41\], which shares its place with pINTID\[9\] when HW = 0.
    pub const EOI: u64 = 1 << 41;
    /// Priority \[55:48\].
    pub const PRIORITY_SHIFT: u32 = 48;
    /// Group \[60\].
    pub const GROUP: u64 = 1 << 60;
    /// HW \[61\].
    pub const HW: u64 = 1 << 61;
    /// State \[63:62\].
    pub const STATE_SHIFT: u32 = 62;
}

impl ListReg {
    /// An empty list register (State = Invalid, everything zero).
    pub const EMPTY: u64 = 0;

    /// The register value.
    pub const fn encode(self) -> u64 {
        let state = match self.state {
            LrState::Invalid => 0u64,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        };
        let mut value = self.vintid as u64
            | (self.priority as u64) << field::PRIORITY_SHIFT
            | state << field::STATE_SHIFT;
        if self.group1 {
            value |= field::GROUP;
        }
        match self.pintid {
            Some(p) => value |= field::HW | (p as u64 & field::PINTID_MASK) << field::PINTID_SHIFT,
            None if self.eoi => value |= field::EOI,
            None => {}
        }
        value
    }

    /// Decodes a register value.
    pub const fn decode(value: u64) -> Self {
        let hw = value & field::HW != 0;
        Self {
            vintid: value as u32,
            pintid: if hw {
                Some(((value >> field::PINTID_SHIFT) & field::PINTID_MASK) as u32)
            } else {
                None
            },
            eoi: !hw && value & field::EOI != 0,
            priority: (value >> field::PRIORITY_SHIFT) as u8,
            group1: value & field::GROUP != 0,
            state: LrState::new(value >> field::STATE_SHIFT & 1 != 0, value >> (field::STATE_SHIFT + 1) != 0),
        }
    }
}

/// What a vCPU's list registers were last filled with, so [`Vgic::sync`] knows which
/// entries are its own.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Flushed {
    /// The values written, in list-register order.
    values: [u64; MAX_LIST_REGS],
    /// How many of `values` hold an interrupt.
    pub(super) count: usize,
}

impl Flushed {
    /// Nothing in the list registers.
    pub(super) const EMPTY: Self = Self { values: [0; MAX_LIST_REGS], count: 0 };
}

/// Sort key of a flush candidate: active ones first, then by priority (lowest value
/// first), then by INTID. INTIDs are below 1024, so they take the low 10 bits.
fn flush_key(active: bool, priority: u8, intid: u32) -> u32 {
    u32::from(!active) << 18 | u32::from(priority) << 10 | intid
}

impl Vgic {
    /// Fills `lrs` (all of them) for `vcpu`'s entry; see [`Vgic::flush`].
    pub(super) fn flush_lrs(&mut self, vcpu: usize, lrs: &mut [u64]) -> bool {
        if self.cpus[vcpu].flushed.count != 0 {
            // Flushed twice without a sync: the guest has not run, so the list
            // registers still hold what was written.
            log::debug!("vgic: vCPU {vcpu} flushed without a sync; folding its previous entries back");
            let previous = self.cpus[vcpu].flushed;
            self.sync_lrs(vcpu, &previous.values[..previous.count]);
        }
        if self.cpus[vcpu].idle_at == Some(self.generation) {
            // Nothing changed since a flush that found nothing: it still would.
            lrs.fill(ListReg::EMPTY);
            return false;
        }
        // Only interrupts that are pending, active or in a list register can be
        // listed; usually a handful, so the keys live on the stack unless many are.
        let live = self.live_intids(vcpu);
        let mut few = [0u32; 8];
        let mut all;
        let keys: &mut [u32] = if live.count_ones() as usize <= few.len() {
            &mut few
        } else {
            all = [0u32; NR_INTIDS as usize];
            &mut all
        };
        let mut count = 0;
        for intid in crate::bits::ones(live) {
            if intid >= FIRST_SPI && self.owner(vcpu, intid) != vcpu {
                continue;
            }
            let irq = self.irq(vcpu, intid);
            if irq.active || self.deliverable(irq) {
                keys[count] = flush_key(irq.active, irq.priority, intid);
                count += 1;
            }
        }
        let keys = &mut keys[..count];
        keys.sort_unstable();
        self.cpus[vcpu].idle_at = (count == 0).then_some(self.generation);

        let capacity = lrs.len().min(MAX_LIST_REGS);
        let left_over = count > capacity;
        let mut any_pending = false;
        self.cpus[vcpu].flushed.count = 0;
        for (slot, lr) in lrs.iter_mut().enumerate() {
            let Some(&key) = keys.get(slot).filter(|_| slot < capacity) else {
                *lr = ListReg::EMPTY;
                continue;
            };
            let intid = key & 0x3ff;
            let deliver = self.deliverable(self.irq(vcpu, intid));
            let irq = self.irq_mut(vcpu, intid);
            let (pending, active) = irq.place(vcpu as u8, deliver);
            let reg = ListReg {
                vintid: intid,
                pintid: irq.hw.then_some(intid),
                // A level interrupt must be resampled when the guest deactivates it;
                // with interrupts left over, any deactivation makes room for them.
                eoi: !irq.hw && (irq.trigger == Trigger::Level || left_over),
                priority: irq.priority,
                group1: irq.group1,
                state: LrState::new(pending, active),
            };
            // NPIE fires while no entry is in the Pending state itself (IHI 0069H,
            // ICH_HCR_EL2.NPIE): a pending-and-active entry does not count.
            any_pending |= pending && !active;
            *lr = reg.encode();
            let flushed = &mut self.cpus[vcpu].flushed;
            flushed.values[slot] = *lr;
            flushed.count = slot + 1;
        }
        left_over && any_pending
    }

    /// Folds `lrs` back into `vcpu`'s state; see [`Vgic::sync`].
    pub(super) fn sync_lrs(&mut self, vcpu: usize, lrs: &[u64]) -> Kick {
        // Only the entries are read back, not the whole (mostly unused) array.
        let count = core::mem::take(&mut self.cpus[vcpu].flushed.count);
        let mut kick = Kick::NONE;
        for slot in 0..count {
            let written = self.cpus[vcpu].flushed.values[slot];
            let mut back = lrs.get(slot).map_or(ListReg::decode(written), |&v| ListReg::decode(v));
            let intid = ListReg::decode(written).vintid;
            // The hardware clears State when the guest completes an entry and keeps
            // the other fields; an invalid entry is completed whatever they say.
            if back.state != LrState::Invalid && back.vintid != intid {
                log::warn!(
                    "vgic: vCPU {vcpu} LR{slot} came back with vINTID {} for {intid}; kept as flushed",
                    back.vintid
                );
                back = ListReg::decode(written);
            }
            let irq = self.irq_mut(vcpu, intid);
            if irq.fold(back.state.pending(), back.state.active()) && intid < FIRST_SPI {
                self.cpus[vcpu].hw_deactivate |= 1 << intid;
            }
            if intid >= FIRST_SPI {
                // An IROUTER write may have moved it while this vCPU held it.
                let owner = self.owner(vcpu, intid);
                if owner != vcpu && self.deliverable(self.irq(vcpu, intid)) {
                    kick |= Kick::vcpu(owner);
                }
            }
        }
        kick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::AccessWidth;

    #[test]
    fn encodes_a_pending_group1_interrupt() {
        // vINTID 48, priority 0xa0, Group 1, State pending: bits 63:62 = 01.
        let lr = ListReg {
            vintid: 48,
            pintid: None,
            eoi: false,
            priority: 0xa0,
            group1: true,
            state: LrState::Pending,
        };
        assert_eq!(lr.encode(), 0x50a0_0000_0000_0030);
        assert_eq!(ListReg::decode(0x50a0_0000_0000_0030), lr);
    }

    #[test]
    fn encodes_a_hardware_linked_timer() {
        // vINTID = pINTID = 27, HW, Group 1, priority 0x80, pending.
        let lr = ListReg {
            vintid: 27,
            pintid: Some(27),
            eoi: false,
            priority: 0x80,
            group1: true,
            state: LrState::Pending,
        };
        assert_eq!(lr.encode(), 0x7080_001b_0000_001b);
        assert_eq!(ListReg::decode(0x7080_001b_0000_001b), lr);
    }

    #[test]
    fn encodes_eoi_active_and_pending_active() {
        let lr = ListReg {
            vintid: 33,
            pintid: None,
            eoi: true,
            priority: 0,
            group1: false,
            state: LrState::Active,
        };
        // State 10, EOI bit 41.
        assert_eq!(lr.encode(), 0x8000_0200_0000_0021);
        assert_eq!(ListReg::decode(0x8000_0200_0000_0021), lr);
        let both = ListReg { eoi: false, state: LrState::PendingActive, ..lr };
        assert_eq!(both.encode(), 0xc000_0000_0000_0021);
        assert_eq!(ListReg::decode(0).state, LrState::Invalid);
        // With HW = 1, bit 41 is pINTID[9], not EOI.
        let hw = ListReg::decode(0x2000_0200_0000_0200);
        assert_eq!((hw.pintid, hw.eoi), (Some(0x200), false));
    }

    // The algorithms, through the public API.

    const LRS: usize = 4;

    fn gic(vcpus: usize) -> Vgic {
        let mut g = Vgic::new(vcpus);
        // GICD_CTLR: EnableGrp0 | EnableGrp1.
        g.distributor_write(0, AccessWidth::Word, 3);
        g
    }

    fn enable_spi(g: &mut Vgic, intid: u32, priority: u8) {
        g.distributor_write(0x100 + u64::from(intid / 32) * 4, AccessWidth::Word, 1 << (intid % 32));
        g.distributor_write(0x400 + u64::from(intid), AccessWidth::Byte, u64::from(priority));
    }

    fn enable_private(g: &mut Vgic, vcpu: usize, intid: u32, priority: u8) {
        let frame = vcpu as u64 * 0x2_0000 + 0x1_0000;
        g.redistributor_write(frame + 0x100, AccessWidth::Word, 1 << intid);
        g.redistributor_write(frame + 0x400 + u64::from(intid), AccessWidth::Byte, u64::from(priority));
    }

    fn flush(g: &mut Vgic, vcpu: usize) -> ([u64; LRS], bool) {
        let mut lrs = [0xdead; LRS];
        let more = g.flush(vcpu, &mut lrs);
        (lrs, more)
    }

    fn intids(lrs: &[u64]) -> Vec<u32> {
        lrs.iter()
            .map(|&v| ListReg::decode(v))
            .filter(|l| l.state != LrState::Invalid)
            .map(|l| l.vintid)
            .collect()
    }

    fn with_state(lr: u64, state: LrState) -> u64 {
        ListReg { state, ..ListReg::decode(lr) }.encode()
    }

    #[test]
    fn flush_empty_writes_invalid_entries() {
        let mut g = gic(1);
        assert_eq!(flush(&mut g, 0), ([0; LRS], false));
        assert_eq!(g.sync(0, &[0; LRS]), Kick::NONE);
    }

    #[test]
    fn an_idle_flush_notices_every_kind_of_change() {
        let mut g = gic(2);
        enable_spi(&mut g, 40, 0x80);
        enable_private(&mut g, 1, 27, 0x80);
        let idle = |g: &mut Vgic, vcpu| {
            g.sync(vcpu, &[0; LRS]);
            assert_eq!(flush(g, vcpu), ([0; LRS], false));
            assert_eq!(g.lrs_in_use(vcpu), 0);
        };
        // Twice idle: the second flush skips its scan and still writes nothing.
        idle(&mut g, 0);
        idle(&mut g, 0);
        // A device line.
        g.set_spi_level(40, true);
        assert_eq!(intids(&flush(&mut g, 0).0), [40]);
        assert_eq!(g.lrs_in_use(0), 1);
        g.set_spi_level(40, false);
        g.sync(0, &[0; LRS]);
        idle(&mut g, 0);
        // A hardware-linked timer on the other vCPU.
        idle(&mut g, 1);
        g.raise_hw(1, 27);
        assert_eq!(intids(&flush(&mut g, 1).0), [27]);
        // A register write: the guest makes the SPI pending through ISPENDR.
        idle(&mut g, 0);
        g.distributor_write(0x200 + 4, AccessWidth::Word, 1 << (40 - 32));
        assert_eq!(intids(&flush(&mut g, 0).0), [40]);
        // An SGI from the other vCPU (target list: vCPU 0, INTID 3).
        let mut g = gic(2);
        enable_private(&mut g, 0, 3, 0x80);
        idle(&mut g, 0);
        g.send_sgi(1, 3 << 24 | 1);
        assert_eq!(intids(&flush(&mut g, 0).0), [3]);
        // A reset forgets the rest.
        g.reset();
        g.sync(0, &[0; LRS]);
        assert_eq!(flush(&mut g, 0), ([0; LRS], false));
    }

    #[test]
    fn flush_orders_by_priority_then_intid() {
        let mut g = gic(1);
        for (intid, prio) in [(40, 0x80), (35, 0x40), (50, 0x40), (33, 0xc0)] {
            enable_spi(&mut g, intid, prio);
            g.raise_edge(0, intid);
        }
        let (lrs, more) = flush(&mut g, 0);
        assert!(!more);
        assert_eq!(intids(&lrs), [35, 50, 40, 33]);
        let first = ListReg::decode(lrs[0]);
        assert_eq!(
            (first.priority, first.state, first.pintid, first.eoi),
            (0x40, LrState::Pending, None, false)
        );
    }

    #[test]
    fn flush_puts_active_interrupts_first() {
        let mut g = gic(1);
        enable_spi(&mut g, 40, 0xf0);
        enable_spi(&mut g, 41, 0x00);
        g.raise_edge(0, 40);
        let (lrs, _) = flush(&mut g, 0);
        // The guest acknowledges 40; then 41 (higher priority) arrives.
        g.sync(0, &[with_state(lrs[0], LrState::Active), 0, 0, 0]);
        g.raise_edge(0, 41);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(intids(&lrs), [40, 41]);
        assert_eq!(ListReg::decode(lrs[0]).state, LrState::Active);
        assert_eq!(ListReg::decode(lrs[1]).state, LrState::Pending);
    }

    #[test]
    fn flush_overflow_delivers_the_rest_after_sync() {
        let mut g = gic(1);
        for intid in 32..38 {
            enable_spi(&mut g, intid, 0x80);
            g.raise_edge(0, intid);
        }
        let (lrs, more) = flush(&mut g, 0);
        assert!(more, "six pending, four list registers");
        assert_eq!(intids(&lrs), [32, 33, 34, 35]);
        assert!(lrs.iter().all(|&l| ListReg::decode(l).eoi), "any deactivation makes room");
        // The guest handles two of them completely.
        let back = [0, 0, lrs[2], lrs[3]];
        g.sync(0, &back);
        let (lrs, more) = flush(&mut g, 0);
        assert!(!more);
        assert_eq!(intids(&lrs), [34, 35, 36, 37]);
        assert!(lrs.iter().all(|&l| !ListReg::decode(l).eoi));
    }

    #[test]
    fn overflow_of_active_interrupts_relies_on_eoi_not_npie() {
        let mut g = gic(1);
        for intid in 32..37 {
            enable_spi(&mut g, intid, 0x80);
            g.distributor_write(0x300 + 4, AccessWidth::Word, 1 << (intid - 32));
        }
        let (lrs, more) = flush(&mut g, 0);
        assert!(!more, "no pending entry: NPIE would fire at once");
        assert!(lrs.iter().all(|&l| ListReg::decode(l).eoi && ListReg::decode(l).state == LrState::Active));
    }

    #[test]
    fn overflow_of_pending_and_active_interrupts_relies_on_eoi_not_npie() {
        // A guest that sets five SPIs active and pending (ISACTIVER, ISPENDR) with
        // its interrupts masked: four list registers hold them pending and active,
        // none in the Pending state, so NPIE would fire at once and for ever (the
        // fuzz guest found this as a maintenance-interrupt storm).
        let mut g = gic(1);
        for intid in 32..37 {
            enable_spi(&mut g, intid, 0x80);
            g.distributor_write(0x300 + 4, AccessWidth::Word, 1 << (intid - 32));
            g.distributor_write(0x200 + 4, AccessWidth::Word, 1 << (intid - 32));
        }
        let (lrs, more) = flush(&mut g, 0);
        assert!(lrs
            .iter()
            .all(|&l| ListReg::decode(l).state == LrState::PendingActive && ListReg::decode(l).eoi));
        assert!(!more, "no entry in the Pending state: NPIE would fire at once");
        // Merely pending entries among them: NPIE waits for their acknowledgement.
        let mut g = gic(1);
        for intid in 32..37 {
            enable_spi(&mut g, intid, 0x80);
            g.distributor_write(0x200 + 4, AccessWidth::Word, 1 << (intid - 32));
            if intid < 34 {
                g.distributor_write(0x300 + 4, AccessWidth::Word, 1 << (intid - 32));
            }
        }
        let (lrs, more) = flush(&mut g, 0);
        let states: Vec<LrState> = lrs.iter().map(|&l| ListReg::decode(l).state).collect();
        assert_eq!(
            states,
            [LrState::PendingActive, LrState::PendingActive, LrState::Pending, LrState::Pending]
        );
        assert!(more);
    }

    #[test]
    fn sync_folds_completed_active_and_pending() {
        let mut g = gic(1);
        for intid in [32, 33, 34] {
            enable_spi(&mut g, intid, 0x80);
            g.raise_edge(0, intid);
        }
        let (lrs, _) = flush(&mut g, 0);
        assert!(g.has_pending(0), "the list registers hold pending interrupts");
        // 32 completed, 33 active, 34 untouched.
        g.sync(0, &[0, with_state(lrs[1], LrState::Active), lrs[2], 0]);
        let isactive = g.distributor_read(0x304, AccessWidth::Word);
        let ispend = g.distributor_read(0x204, AccessWidth::Word);
        assert_eq!(isactive, 0b010);
        assert_eq!(ispend, 0b100);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(intids(&lrs), [33, 34]);
    }

    #[test]
    fn sync_keeps_pending_and_active_for_edges() {
        let mut g = gic(1);
        enable_spi(&mut g, 32, 0x80);
        g.raise_edge(0, 32);
        let (lrs, _) = flush(&mut g, 0);
        g.sync(0, &[with_state(lrs[0], LrState::PendingActive), 0, 0, 0]);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(ListReg::decode(lrs[0]).state, LrState::PendingActive);
    }

    #[test]
    fn level_spi_pends_again_while_the_line_is_high() {
        let mut g = gic(1);
        enable_spi(&mut g, 33, 0x80);
        g.distributor_write(0xc08, AccessWidth::Word, 0); // INTIDs 32..48 level
        assert_eq!(g.set_spi_level(33, true), Kick::vcpu(0));
        let (lrs, _) = flush(&mut g, 0);
        let lr = ListReg::decode(lrs[0]);
        assert_eq!((lr.vintid, lr.state, lr.eoi), (33, LrState::Pending, true));
        // The guest handled it but the device still holds the line.
        g.sync(0, &[0; LRS]);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(intids(&lrs), [33]);
        // Acknowledged; the guest quiets the device; deactivated.
        g.sync(0, &[with_state(lrs[0], LrState::Active), 0, 0, 0]);
        assert_eq!(g.set_spi_level(33, false), Kick::NONE);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(ListReg::decode(lrs[0]).state, LrState::Active);
        g.sync(0, &[0; LRS]);
        assert_eq!(flush(&mut g, 0), ([0; LRS], false));
    }

    #[test]
    fn hw_linked_timer_stays_until_deactivated() {
        let mut g = gic(1);
        enable_private(&mut g, 0, 27, 0x20);
        assert_eq!(g.raise_hw(0, 27), Kick::vcpu(0));
        let (lrs, _) = flush(&mut g, 0);
        let lr = ListReg::decode(lrs[0]);
        assert_eq!((lr.vintid, lr.pintid, lr.state, lr.eoi), (27, Some(27), LrState::Pending, false));
        // Exit before the guest acknowledged it: still pending, still linked.
        g.sync(0, &lrs);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(ListReg::decode(lrs[0]).pintid, Some(27));
        // Acknowledged, then deactivated by the guest.
        g.sync(0, &[with_state(lrs[0], LrState::Active), 0, 0, 0]);
        let (lrs, _) = flush(&mut g, 0);
        assert_eq!(ListReg::decode(lrs[0]).state, LrState::Active);
        g.sync(0, &[0; LRS]);
        assert_eq!(flush(&mut g, 0), ([0; LRS], false));
        assert_eq!(g.take_hw_deactivations(0), 0, "the hardware deactivated it");
    }

    #[test]
    fn hw_linked_timer_cleared_by_the_guest_needs_deactivation() {
        let mut g = gic(1);
        enable_private(&mut g, 0, 30, 0x20);
        g.raise_hw(0, 30);
        let (lrs, _) = flush(&mut g, 0);
        // Another vCPU's view is irrelevant here: clear it while it sits in the LR.
        g.redistributor_write(0x1_0280, AccessWidth::Word, 1 << 30);
        g.sync(0, &lrs);
        assert_eq!(g.take_hw_deactivations(0), 1 << 30);
        assert_eq!(g.take_hw_deactivations(0), 0);
        assert_eq!(flush(&mut g, 0), ([0; LRS], false));
    }

    #[test]
    fn disabled_interrupts_and_groups_are_not_delivered() {
        let mut g = Vgic::new(1);
        enable_spi(&mut g, 32, 0);
        g.raise_edge(0, 32);
        assert_eq!(flush(&mut g, 0).0, [0; LRS], "distributor groups disabled");
        assert!(!g.has_pending(0));
        g.sync(0, &[0; LRS]);
        // Group 0 enabled, but the interrupt is Group 1.
        g.distributor_write(0x84, AccessWidth::Word, 1);
        g.distributor_write(0, AccessWidth::Word, 1);
        assert_eq!(flush(&mut g, 0).0, [0; LRS]);
        g.sync(0, &[0; LRS]);
        assert_eq!(g.distributor_write(0, AccessWidth::Word, 2), Kick::vcpu(0));
        assert!(g.has_pending(0));
        let (lrs, _) = flush(&mut g, 0);
        assert!(ListReg::decode(lrs[0]).group1);
        g.sync(0, &lrs);
        // Disabled interrupt: stays pending, not delivered.
        g.distributor_write(0x180 + 4, AccessWidth::Word, 1);
        assert_eq!(flush(&mut g, 0).0, [0; LRS]);
        assert_eq!(g.distributor_read(0x204, AccessWidth::Word), 1);
    }

    #[test]
    fn an_spi_is_in_one_vcpus_lrs_at_a_time() {
        let mut g = gic(2);
        enable_spi(&mut g, 32, 0);
        g.raise_edge(0, 32);
        let (lrs0, _) = flush(&mut g, 0);
        assert_eq!(intids(&lrs0), [32]);
        // Re-routed to vCPU 1 while vCPU 0 holds it: vCPU 0 must exit.
        assert_eq!(g.distributor_write(0x6100, AccessWidth::Double, 1), Kick::vcpu(0));
        assert_eq!(flush(&mut g, 1).0, [0; LRS]);
        g.sync(1, &[0; LRS]);
        // vCPU 0 gives it back unacknowledged: vCPU 1 must pick it up.
        assert_eq!(g.sync(0, &lrs0), Kick::vcpu(1));
        assert_eq!(intids(&flush(&mut g, 1).0), [32]);
        assert_eq!(flush(&mut g, 0).0, [0; LRS]);
    }

    #[test]
    fn flush_twice_without_sync_keeps_state() {
        let mut g = gic(1);
        enable_spi(&mut g, 32, 0);
        g.raise_edge(0, 32);
        let (first, _) = flush(&mut g, 0);
        let (second, _) = flush(&mut g, 0);
        assert_eq!(first, second);
    }

    #[test]
    fn short_lr_array_is_honoured() {
        let mut g = gic(1);
        for intid in 32..35 {
            enable_spi(&mut g, intid, 0);
            g.raise_edge(0, intid);
        }
        let mut lrs = [0u64; 2];
        assert!(g.flush(0, &mut lrs));
        g.sync(0, &[0, 0]);
        let mut lrs = [0u64; 2];
        assert!(!g.flush(0, &mut lrs));
        assert_eq!(intids(&lrs), [34]);
    }
}
