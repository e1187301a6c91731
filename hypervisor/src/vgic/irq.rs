//! The state of one virtual interrupt, and how register writes and list registers
//! change it.
//!
//! The states follow the GICv3 architecture specification (Arm IHI 0069H),
//! "Interrupt handling state machine": an interrupt is inactive, pending, active, or
//! active and pending. For a level-sensitive interrupt the pending state is the OR of
//! the input line and a latch that GICD_ISPENDR sets (the same section's
//! level-sensitive case); for an edge-triggered one it is the latch alone, set by an
//! edge or GICD_ISPENDR.
//!
//! While an interrupt sits in a list register (LR) the LR, not this record, holds its
//! pending and active state: the guest acknowledges and deactivates it there without
//! exiting. Register writes that reach the interrupt meanwhile are recorded as
//! [`LrEdits`] and applied when the LR is folded back ([`Irq::fold`]).

/// How an interrupt becomes pending (`GICD_ICFGR<n>.Int_config`, IHI 0069H).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered: each edge (or GICD_ISPENDR write) latches the pending state.
    #[default]
    Edge,
    /// Level-sensitive: pending while the input line is asserted (or latched by
    /// GICD_ISPENDR until the interrupt is acknowledged).
    Level,
}

/// Register writes that hit an interrupt while a list register held it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LrEdits {
    /// ICPENDR: drop the pending state the LR comes back with.
    pub(super) clear_pending: bool,
    /// ISPENDR: the (level) interrupt is pending again even if the LR was acknowledged.
    pub(super) set_pending: bool,
    /// ICACTIVER: drop the active state the LR comes back with.
    pub(super) clear_active: bool,
    /// ISACTIVER: active whatever the LR comes back with.
    pub(super) set_active: bool,
}

/// One virtual interrupt of a VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Irq {
    /// GICD_ISENABLER / GICR_ISENABLER0.
    pub(super) enabled: bool,
    /// Pending latch: set by an edge or ISPENDR, cleared by ICPENDR or on
    /// acknowledgement (moved into a list register).
    pub(super) latch: bool,
    /// Input line level, for level-sensitive interrupts driven by a device.
    pub(super) line: bool,
    /// Active (acknowledged, not yet deactivated), as of the last fold.
    pub(super) active: bool,
    /// GICD_IPRIORITYR: all 8 bits; the virtual CPU interface keeps the ones it
    /// implements.
    pub(super) priority: u8,
    /// GICD_IGROUPR: Group 1 when set, Group 0 otherwise.
    pub(super) group1: bool,
    /// GICD_ICFGR.
    pub(super) trigger: Trigger,
    /// Hardware-linked: delivered with `ICH_LR<n>_EL2.HW` = 1 and pINTID = vINTID, so
    /// the guest's deactivation deactivates the physical interrupt.
    pub(super) hw: bool,
    /// A list register of vCPU `vcpu` holds the interrupt.
    pub(super) in_lr: bool,
    /// The list register was written with the pending state.
    pub(super) lr_pending: bool,
    /// The vCPU that holds it (in a list register, or active there). Only meaningful
    /// while `in_lr || active`.
    pub(super) vcpu: u8,
    /// Writes to apply when the list register is folded back.
    pub(super) edits: LrEdits,
}

impl Irq {
    /// Whether the interrupt is pending in this record (IHI 0069H, "Interrupt
    /// handling state machine").
    pub(super) fn pending(&self) -> bool {
        self.latch || (self.trigger == Trigger::Level && self.line)
    }

    /// Whether the guest sees it pending: this record's state, or the pending state a
    /// list register was given (and no ICPENDR has cleared since).
    pub(super) fn pending_visible(&self) -> bool {
        self.pending() || (self.in_lr && self.lr_pending && !self.edits.clear_pending)
    }

    /// Whether the guest sees it active.
    pub(super) fn active_visible(&self) -> bool {
        self.active
    }

    /// GICD_ISPENDR: latch the pending state.
    pub(super) fn set_pending(&mut self) {
        self.latch = true;
        if self.in_lr {
            self.edits.set_pending = true;
        }
    }

    /// GICD_ICPENDR: clear the pending latch (a level interrupt whose line is still
    /// asserted stays pending). Returns whether a hardware-linked interrupt was dropped
    /// with its physical interrupt still active, which the caller must deactivate.
    pub(super) fn clear_pending(&mut self) -> bool {
        self.latch = false;
        if self.in_lr {
            self.edits.clear_pending = true;
            self.edits.set_pending = false;
        }
        self.drop_hw_if_idle()
    }

    /// GICD_ISACTIVER: make it active.
    pub(super) fn set_active(&mut self) {
        self.active = true;
        if self.in_lr {
            self.edits.set_active = true;
        }
    }

    /// GICD_ICACTIVER: make it inactive. Returns whether a hardware-linked interrupt
    /// was dropped with its physical interrupt still active.
    pub(super) fn clear_active(&mut self) -> bool {
        self.active = false;
        if self.in_lr {
            self.edits.clear_active = true;
            self.edits.set_active = false;
        }
        self.drop_hw_if_idle()
    }

    /// Outside a list register, a hardware-linked interrupt that is neither pending
    /// nor active loses its link; its physical interrupt is still active.
    fn drop_hw_if_idle(&mut self) -> bool {
        if self.hw && !self.in_lr && !self.latch && !self.active {
            self.hw = false;
            return true;
        }
        false
    }

    /// Hands the interrupt to a list register of `vcpu`: returns the (pending,
    /// active) state to write there, given whether it may be delivered as pending
    /// now (`deliver`: pending, enabled, its group enabled). The pending state of an
    /// edge-triggered or hardware-linked interrupt moves into the LR; a level one's
    /// stays defined by its line and latch.
    ///
    /// A hardware-linked interrupt is never written pending and active (IHI 0069H,
    /// `ICH_LR<n>_EL2`: with HW = 1 the physical interrupt carries the pending
    /// state): while active, its new pending state stays here.
    pub(super) fn place(&mut self, vcpu: u8, deliver: bool) -> (bool, bool) {
        let pending = deliver && !(self.hw && self.active);
        if pending && (self.hw || self.trigger == Trigger::Edge) {
            self.latch = false;
        }
        self.in_lr = true;
        self.lr_pending = pending;
        self.vcpu = vcpu;
        self.edits = LrEdits::default();
        (pending, self.active)
    }

    /// Folds back the state a list register came back with (`lr_pending`,
    /// `lr_active`; both false when the guest completed it), applying the writes
    /// recorded meanwhile. Returns whether a hardware-linked interrupt lost its link
    /// with its physical interrupt still active (the LR held it, so the hardware
    /// never deactivated it): the caller must deactivate the physical interrupt.
    pub(super) fn fold(&mut self, lr_pending: bool, lr_active: bool) -> bool {
        let edits = core::mem::take(&mut self.edits);
        let was_valid = lr_pending || lr_active;
        let pending = lr_pending && !edits.clear_pending;
        self.active = (lr_active && !edits.clear_active) || edits.set_active;
        if self.hw || self.trigger == Trigger::Edge {
            self.latch |= pending;
        } else if !lr_pending {
            // A level interrupt the guest acknowledged: the ISPENDR latch is consumed
            // (IHI 0069H, "Interrupt handling state machine"), unless ISPENDR was
            // written again since.
            self.latch = edits.set_pending;
        }
        self.in_lr = false;
        self.lr_pending = false;
        if self.hw && !self.latch && !self.active {
            self.hw = false;
            return was_valid;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level() -> Irq {
        Irq { trigger: Trigger::Level, ..Irq::default() }
    }

    #[test]
    fn pending_is_latch_or_level_line() {
        let mut edge = Irq { line: true, ..Irq::default() };
        assert!(!edge.pending(), "an edge interrupt ignores its line level");
        edge.set_pending();
        assert!(edge.pending());
        assert!(!edge.clear_pending());
        assert!(!edge.pending());

        let mut irq = level();
        irq.line = true;
        assert!(irq.pending());
        irq.set_pending();
        irq.line = false;
        assert!(irq.pending(), "the ISPENDR latch holds a level interrupt pending");
        irq.clear_pending();
        assert!(!irq.pending());
    }

    #[test]
    fn clear_pending_keeps_level_line() {
        let mut irq = level();
        irq.line = true;
        irq.set_pending();
        irq.clear_pending();
        assert!(irq.pending(), "the line is still asserted");
    }

    #[test]
    fn edge_pending_moves_into_the_lr_and_back() {
        let mut irq = Irq { latch: true, ..Irq::default() };
        assert_eq!(irq.place(2, true), (true, false));
        assert!(!irq.latch && irq.in_lr && irq.lr_pending && irq.vcpu == 2);
        assert!(irq.pending_visible());
        // Not yet acknowledged: pending again.
        assert!(!irq.fold(true, false));
        assert!(irq.latch && !irq.in_lr && !irq.active);
        // Acknowledged: active.
        irq.place(2, true);
        irq.fold(false, true);
        assert!(!irq.latch && irq.active);
        // Completed.
        irq.place(2, false);
        irq.fold(false, false);
        assert!(!irq.latch && !irq.active);
    }

    #[test]
    fn edge_while_in_lr_becomes_pending_and_active() {
        let mut irq = Irq { latch: true, ..Irq::default() };
        irq.place(0, true);
        irq.set_pending();
        irq.fold(false, true);
        assert!(irq.pending() && irq.active);
    }

    #[test]
    fn level_latch_consumed_on_acknowledge() {
        let mut irq = level();
        irq.set_pending();
        assert_eq!(irq.place(0, true), (true, false));
        assert!(irq.latch, "a level interrupt keeps its latch in the LR");
        irq.fold(false, true);
        assert!(!irq.latch && irq.active);

        // ISPENDR again while in the LR survives the acknowledgement.
        let mut irq = level();
        irq.set_pending();
        irq.place(0, true);
        irq.set_pending();
        irq.fold(false, true);
        assert!(irq.latch);
    }

    #[test]
    fn writes_while_in_lr_win_over_the_lr() {
        let mut irq = Irq { latch: true, ..Irq::default() };
        irq.place(0, true);
        irq.clear_pending();
        assert!(!irq.pending_visible());
        irq.fold(true, false);
        assert!(!irq.pending(), "ICPENDR while in the LR drops its pending state");

        let mut irq = Irq { active: true, ..Irq::default() };
        irq.place(0, false);
        irq.clear_active();
        irq.fold(false, true);
        assert!(!irq.active, "ICACTIVER while in the LR drops its active state");

        let mut irq = Irq { latch: true, ..Irq::default() };
        irq.place(0, true);
        irq.set_active();
        irq.fold(true, false);
        assert!(irq.active && irq.pending());
    }

    #[test]
    fn hardware_link_ends_with_deactivation() {
        let mut irq = Irq { latch: true, hw: true, ..Irq::default() };
        assert_eq!(irq.place(0, true), (true, false));
        assert!(!irq.fold(false, true));
        assert!(irq.hw && irq.active);
        // Active: never written pending and active.
        irq.latch = true;
        assert_eq!(irq.place(0, true), (false, true));
        assert!(irq.latch);
        irq.latch = false;
        // Deactivated by the guest (the hardware deactivated the physical one).
        assert!(!irq.fold(false, false));
        assert!(!irq.hw && !irq.active && !irq.pending());
    }

    #[test]
    fn hardware_link_dropped_by_a_register_write_needs_deactivation() {
        let mut irq = Irq { latch: true, hw: true, ..Irq::default() };
        assert!(irq.clear_pending());
        assert!(!irq.hw);

        let mut irq = Irq { latch: true, hw: true, ..Irq::default() };
        irq.place(0, true);
        assert!(!irq.clear_pending(), "in the LR: decided on fold");
        assert!(irq.fold(true, false));
        assert!(!irq.hw);

        let mut irq = Irq { active: true, hw: true, ..Irq::default() };
        assert!(irq.clear_active());
    }
}
