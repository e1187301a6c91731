//! One exit's dealings with its VM's vGIC, on the CPU the exiting vCPU runs on.
//!
//! The vGIC is shared by the VM's vCPUs behind its own lock; what the hardware holds
//! for the vCPU (its list registers) is folded into it before anything reads or
//! changes it, and written back at the end. A [`VgicSession`] does that lazily: an
//! exit that never touches the vGIC (a read of a virtio register, a UART byte that
//! raises nothing) neither locks it nor touches the list registers. It also gathers
//! the other vCPUs that must be kicked to see what changed.
//!
//! The lock is taken for each step and let go at once, never held while a device's
//! lock is taken: the order is device, then vGIC.

use super::{Kick, Vgic, MAX_LIST_REGS};
use crate::arch::aarch64::intid::LINKED_PPIS;
use crate::arch::aarch64::virtual_interface::VirtualInterface;
use crate::devices::InterruptSink;
use crate::sync::{Lock, LockGuard};

/// A vCPU's exit as the vGIC sees it (or, for [`VgicSession::remote`], a change
/// from outside any of the VM's vCPUs: console input on another CPU).
pub struct VgicSession<'a, I: VirtualInterface> {
    vgic: &'a Lock<Vgic>,
    local: Option<Local<I>>,
    kicks: Kick,
}

/// The exiting vCPU and the interface of the CPU it runs on.
struct Local<I> {
    vcpu: usize,
    interface: I,
    /// Once its list registers are folded in: how many the last flush had filled
    /// (the hardware holds them until the next flush).
    synced: Option<usize>,
}

impl<'a, I: VirtualInterface> VgicSession<'a, I> {
    /// The exit of `vcpu`, running on the CPU whose virtual interface is `interface`.
    pub fn local(vgic: &'a Lock<Vgic>, vcpu: usize, interface: I) -> Self {
        Self { vgic, local: Some(Local { vcpu, interface, synced: None }), kicks: Kick::NONE }
    }

    /// A change from a CPU that runs none of the VM's vCPUs: nothing to fold in or
    /// write back; every vCPU it concerns is kicked.
    pub fn remote(vgic: &'a Lock<Vgic>) -> Self {
        Self { vgic, local: None, kicks: Kick::NONE }
    }

    /// Folds the vCPU's list registers into the vGIC now (if not done yet), and
    /// drops the pending state of a linked timer that no longer asserts it.
    pub fn sync(&mut self) {
        drop(self.lock());
    }

    /// The vGIC, locked, with the vCPU's list registers folded in.
    pub fn lock(&mut self) -> LockGuard<'a, Vgic> {
        let mut vgic = self.vgic.lock();
        if let Some(local) = self.local.as_mut().filter(|l| l.synced.is_none()) {
            let (in_hardware, kick) = fold_list_registers(&mut vgic, local);
            local.synced = Some(in_hardware);
            self.kicks |= kick;
            for intid in LINKED_PPIS {
                // A timer the guest disabled or masked since (a PMU overflow it
                // cleared) is no longer pending.
                let interface = &local.interface;
                self.kicks |= vgic.resample_hw(local.vcpu, intid, || interface.linked_ppi_asserts(intid));
            }
        }
        vgic
    }

    /// The vGIC, locked, as it is: for reading what the list registers cannot
    /// change (see [`Vgic::distributor_read_shows_lrs`]). Nothing is written back.
    pub fn peek(&self) -> LockGuard<'a, Vgic> {
        self.vgic.lock()
    }

    /// Runs `change` on the vGIC (see [`Self::lock`]); the vCPUs it names are kicked.
    pub fn update(&mut self, change: impl FnOnce(&mut Vgic) -> Kick) {
        let kick = change(&mut self.lock());
        self.kicks |= kick;
    }

    /// Adds vCPUs (a bit each) to those kicked once the exit is over.
    pub fn kick(&mut self, vcpus: u16) {
        self.kicks |= Kick(vcpus);
    }

    /// The exit is over and the vCPU goes back into the guest: its deliverable
    /// interrupts are written to the list registers (if the vGIC was looked at).
    /// Returns the other vCPUs to kick; the session is spent.
    #[inline]
    pub fn finish(&mut self) -> Kick {
        if let Some(local) = self.local.as_mut() {
            if let Some(in_hardware) = local.synced {
                fill_list_registers(&mut self.vgic.lock(), local, in_hardware);
            }
        }
        self.abandon()
    }

    /// The exit is over and the vCPU does not go back (it stops or waits to be
    /// started): nothing is written back. Returns the other vCPUs to kick; the
    /// session is spent.
    #[inline]
    pub fn abandon(&mut self) -> Kick {
        let kicks = core::mem::take(&mut self.kicks);
        match &mut self.local {
            Some(local) => {
                local.synced = None;
                kicks.without(local.vcpu)
            }
            None => kicks,
        }
    }
}

impl<I: VirtualInterface> InterruptSink for VgicSession<'_, I> {
    fn set_level(&mut self, intid: u32, level: bool) {
        self.update(|vgic| vgic.set_spi_level(intid, level));
    }
}

/// Reads the list registers the last flush filled into the vGIC; returns how many,
/// and the other vCPUs that must now take an SPI this one held (see [`Vgic::sync`]).
fn fold_list_registers<I: VirtualInterface>(vgic: &mut Vgic, local: &mut Local<I>) -> (usize, Kick) {
    let count = local.interface.list_register_count().min(MAX_LIST_REGS);
    // Only those the last flush filled can have changed.
    let n = vgic.lrs_in_use(local.vcpu).min(count);
    if n == 0 {
        return (0, Kick::NONE);
    }
    let mut lrs = [0u64; MAX_LIST_REGS];
    for (i, lr) in lrs.iter_mut().enumerate().take(n) {
        *lr = local.interface.read_lr(i);
    }
    (n, vgic.sync(local.vcpu, &lrs[..n]))
}

/// Writes the vCPU's deliverable interrupts into the list registers, of which the
/// first `in_hardware` hold entries of the previous flush.
#[inline(never)]
fn fill_list_registers<I: VirtualInterface>(vgic: &mut Vgic, local: &mut Local<I>, in_hardware: usize) {
    let vcpu = local.vcpu;
    // Linked interrupts (timers, PMU) the guest dropped while the physical one was still active.
    let stale = vgic.take_hw_deactivations(vcpu);
    for intid in LINKED_PPIS {
        if stale & (1 << intid) != 0 {
            local.interface.deactivate_physical(intid);
        }
    }
    if in_hardware == 0 && vgic.flush_is_idle(vcpu) {
        // Empty list registers that would stay empty (and NPIE off, as the flush
        // that emptied them left it): nothing to write.
        return;
    }
    let n = local.interface.list_register_count().min(MAX_LIST_REGS);
    // QEMU's CPUs have 4 list registers: no need to clear room for 16 then.
    let mut four = [0u64; 4];
    let mut all;
    let lrs: &mut [u64] = if n <= four.len() {
        &mut four[..n]
    } else {
        all = [0u64; MAX_LIST_REGS];
        &mut all[..n]
    };
    let more = vgic.flush(vcpu, lrs);
    // The ones filled now, and the ones filled before that must be cleared; the
    // rest are empty already.
    let written = in_hardware.max(vgic.lrs_in_use(vcpu)).min(n);
    for (i, lr) in lrs.iter().enumerate().take(written) {
        local.interface.write_lr(i, *lr);
    }
    local.interface.enable(more);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::intid::VIRTUAL_TIMER;
    use crate::devices::AccessWidth::Word;
    use crate::vgic::{ListReg, LrState};
    use alloc::vec::Vec;

    /// A CPU interface over values that counts what is done to it.
    #[derive(Default)]
    struct Recorded {
        lrs: [u64; 4],
        writes: usize,
        enabled: Option<bool>,
        deactivated: Vec<u32>,
        linked_asserts: bool,
    }

    impl VirtualInterface for &mut Recorded {
        fn list_register_count(&self) -> usize {
            4
        }
        fn read_lr(&self, index: usize) -> u64 {
            self.lrs[index]
        }
        fn write_lr(&mut self, index: usize, value: u64) {
            self.writes += 1;
            self.lrs[index] = value;
        }
        fn enable(&mut self, more_pending: bool) {
            self.enabled = Some(more_pending);
        }
        fn deactivate_physical(&mut self, intid: u32) {
            self.deactivated.push(intid);
        }
        fn linked_ppi_asserts(&self, _intid: u32) -> bool {
            self.linked_asserts
        }
    }

    /// A vGIC for 2 vCPUs, both groups on, every SGI and PPI Group 1 and enabled.
    fn vgic() -> Lock<Vgic> {
        let mut g = Vgic::new(2);
        g.distributor_write(0, Word, 3);
        for vcpu in 0..2u64 {
            let sgi_base = vcpu * super::super::GICR_FRAME_SIZE + super::super::GICR_SGI_BASE;
            g.redistributor_write(sgi_base + 0x80, Word, 0xffff_ffff);
            g.redistributor_write(sgi_base + 0x100, Word, 0xffff_ffff);
        }
        Lock::new(g)
    }

    #[test]
    fn an_exit_that_never_looks_at_the_vgic_leaves_the_list_registers_alone() {
        let gic = vgic();
        let mut hw = Recorded { lrs: [0xdead; 4], ..Recorded::default() };
        let mut session = VgicSession::local(&gic, 0, &mut hw);
        session.kick(0b10);
        assert_eq!(session.finish(), Kick(0b10));
        assert_eq!((hw.writes, hw.enabled), (0, None));
        assert_eq!(hw.lrs, [0xdead; 4]);
    }

    #[test]
    fn a_change_is_folded_in_first_and_written_back_at_the_end() {
        let gic = vgic();
        let mut hw = Recorded::default();
        // SGI 5 to vCPU 0 from itself, and SGI 6 to both.
        let mut session = VgicSession::local(&gic, 0, &mut hw);
        session.update(|v| v.send_sgi(0, 5 << 24 | 0b01));
        session.update(|v| v.send_sgi(0, 6 << 24 | 0b11));
        assert_eq!(session.finish(), Kick(0b10), "vCPU 0 is the one exiting: no kick for it");
        let listed: Vec<_> = hw.lrs.iter().map(|&lr| ListReg::decode(lr)).collect();
        assert_eq!((listed[0].vintid, listed[0].state), (5, LrState::Pending));
        assert_eq!((listed[1].vintid, listed[1].state), (6, LrState::Pending));
        assert_eq!(hw.enabled, Some(false));
        // The guest takes SGI 5 and completes it; its next exit folds that in.
        hw.lrs[0] = 0;
        let mut session = VgicSession::local(&gic, 0, &mut hw);
        assert!(session.lock().has_pending(0), "SGI 6 is still pending");
        session.finish();
        assert_eq!(ListReg::decode(hw.lrs[0]).vintid, 6);
        assert_eq!(hw.lrs[1], ListReg::EMPTY, "the entry the last flush filled is cleared");
    }

    #[test]
    fn a_remote_change_kicks_every_vcpu_it_concerns() {
        let gic = vgic();
        let mut session = VgicSession::<&mut Recorded>::remote(&gic);
        session.update(|v| v.send_sgi(0, 3 << 24 | 0b11));
        assert_eq!(session.finish(), Kick(0b11));
    }

    #[test]
    fn an_abandoned_exit_writes_nothing_back() {
        let gic = vgic();
        let mut hw = Recorded::default();
        let mut session = VgicSession::local(&gic, 1, &mut hw);
        session.update(|v| v.send_sgi(1, 2 << 24 | 0b11));
        assert_eq!(session.abandon(), Kick(0b01));
        assert_eq!((hw.writes, hw.enabled), (0, None));
    }

    #[test]
    fn a_linked_timer_that_stopped_asserting_is_dropped_at_the_fold() {
        let gic = vgic();
        gic.lock().raise_hw(0, VIRTUAL_TIMER);
        // The timer was turned off before the interrupt reached the list registers.
        let mut hw = Recorded { linked_asserts: false, ..Recorded::default() };
        let mut session = VgicSession::local(&gic, 0, &mut hw);
        assert!(!session.lock().has_pending(0));
        session.finish();
        assert_eq!(hw.deactivated, [VIRTUAL_TIMER], "the physical interrupt can fire again");
        assert_eq!(hw.lrs, [0; 4]);
    }
}
