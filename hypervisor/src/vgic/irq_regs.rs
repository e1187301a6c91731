//! The per-INTID registers that the distributor and a redistributor's SGI_base frame
//! share: same offsets, same layout, different INTIDs.
//!
//! Arm IHI 0069H, `GICD_IGROUPR<n>`, `GICD_ISENABLER<n>`, `GICD_ICENABLER<n>`,
//! `GICD_ISPENDR<n>`, `GICD_ICPENDR<n>`, `GICD_ISACTIVER<n>`, `GICD_ICACTIVER<n>`,
//! `GICD_IPRIORITYR<n>` and `GICD_ICFGR<n>`, and their GICR_*0 counterparts. With
//! affinity routing enabled the distributor's copies for INTIDs 0-31 are RAZ/WI and
//! the redistributor holds them (IHI 0069H, "Affinity routing"); the caller says
//! which INTIDs its block implements, the others read as 0 and ignore writes.

use core::ops::Range;

use super::access::Sizes;
use super::irq::{Irq, Trigger};
use super::{Kick, Vgic, FIRST_PPI};
use crate::devices::AccessWidth;

/// One of the shared per-INTID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BankReg {
    /// IGROUPR: 1 bit per INTID, Group 1 when set.
    Group,
    /// ISENABLER: writing 1 enables.
    SetEnable,
    /// ICENABLER: writing 1 disables.
    ClearEnable,
    /// ISPENDR: writing 1 makes pending.
    SetPending,
    /// ICPENDR: writing 1 clears the pending latch.
    ClearPending,
    /// ISACTIVER: writing 1 activates.
    SetActive,
    /// ICACTIVER: writing 1 deactivates.
    ClearActive,
    /// IPRIORITYR: 8 bits per INTID.
    Priority,
    /// ICFGR: 2 bits per INTID, the upper one (Int_config\[1\]) set for edge.
    Config,
}

impl BankReg {
    /// The register at `offset` and the first INTID it covers, or `None` if `offset`
    /// is not in one of the shared ranges (0x0080-0x07FF, 0x0C00-0x0CFF).
    pub(super) fn decode(offset: u64) -> Option<(Self, u32)> {
        let bit_reg = |base: u64| ((offset - base) / 4 * 32) as u32;
        let reg = match offset {
            0x0080..0x0100 => (Self::Group, bit_reg(0x0080)),
            0x0100..0x0180 => (Self::SetEnable, bit_reg(0x0100)),
            0x0180..0x0200 => (Self::ClearEnable, bit_reg(0x0180)),
            0x0200..0x0280 => (Self::SetPending, bit_reg(0x0200)),
            0x0280..0x0300 => (Self::ClearPending, bit_reg(0x0280)),
            0x0300..0x0380 => (Self::SetActive, bit_reg(0x0300)),
            0x0380..0x0400 => (Self::ClearActive, bit_reg(0x0380)),
            0x0400..0x0800 => (Self::Priority, (offset - 0x0400) as u32),
            0x0C00..0x0D00 => (Self::Config, ((offset - 0x0C00) / 4 * 16) as u32),
            _ => return None,
        };
        Some(reg)
    }

    /// The access sizes it accepts.
    fn sizes(self) -> Sizes {
        match self {
            Self::Priority => Sizes::ByteOrWord,
            _ => Sizes::Word,
        }
    }

    /// How many INTIDs an access of `width` covers.
    fn span(self, width: AccessWidth) -> u32 {
        match self {
            Self::Priority => width.bytes() as u32,
            Self::Config => 16,
            _ => 32,
        }
    }
}

/// The block an access reached: who is asking and which INTIDs it implements.
#[derive(Clone, Debug)]
pub(super) struct Bank {
    /// For logs: "GICD" or "GICR".
    pub(super) block: &'static str,
    /// The vCPU whose SGIs and PPIs the block holds (any for the distributor).
    pub(super) vcpu: usize,
    /// The INTIDs it implements; the others are RAZ/WI.
    pub(super) intids: Range<u32>,
}

impl Vgic {
    /// Reads the shared register at `offset` of `bank`, or `None` if `offset` is not
    /// one.
    pub(super) fn bank_read(&self, bank: &Bank, offset: u64, width: AccessWidth) -> Option<u64> {
        let (reg, first) = BankReg::decode(offset)?;
        if !reg.sizes().allow(bank.block, offset, width) {
            return Some(0);
        }
        let mut value = 0u64;
        for i in 0..reg.span(width) {
            let intid = first + i;
            if !bank.intids.contains(&intid) {
                continue;
            }
            let irq = self.irq(bank.vcpu, intid);
            let field = match reg {
                BankReg::Group => u64::from(irq.group1),
                BankReg::SetEnable | BankReg::ClearEnable => u64::from(irq.enabled),
                BankReg::SetPending | BankReg::ClearPending => u64::from(irq.pending_visible()),
                BankReg::SetActive | BankReg::ClearActive => u64::from(irq.active_visible()),
                BankReg::Priority => u64::from(irq.priority),
                BankReg::Config => u64::from(irq.trigger == Trigger::Edge) << 1,
            };
            value |= field << (i * field_bits(reg));
        }
        Some(value)
    }

    /// Writes `value` to the shared register at `offset` of `bank`: the vCPUs to
    /// kick, or `None` if `offset` is not one of these registers.
    pub(super) fn bank_write(
        &mut self,
        bank: &Bank,
        offset: u64,
        width: AccessWidth,
        value: u64,
    ) -> Option<Kick> {
        let (reg, first) = BankReg::decode(offset)?;
        if !reg.sizes().allow(bank.block, offset, width) {
            return Some(Kick::NONE);
        }
        let vcpu = bank.vcpu;
        let bits = field_bits(reg);
        let mask = (1u64 << bits) - 1;
        let mut kick = Kick::NONE;
        for i in 0..reg.span(width) {
            let intid = first + i;
            if !bank.intids.contains(&intid) {
                continue;
            }
            let field = value >> (i * bits) & mask;
            kick |= match reg {
                BankReg::Group => self.update(vcpu, intid, |irq| irq.group1 = field != 0),
                BankReg::Priority => self.update(vcpu, intid, |irq| irq.priority = field as u8),
                // SGIs are always edge-triggered: GICR_ICFGR0 is read-only.
                BankReg::Config if intid < FIRST_PPI => Kick::NONE,
                BankReg::Config => self.update(vcpu, intid, |irq| {
                    irq.trigger = if field & 0b10 != 0 { Trigger::Edge } else { Trigger::Level };
                }),
                _ if field == 0 => Kick::NONE,
                BankReg::SetEnable => self.update(vcpu, intid, |irq| irq.enabled = true),
                BankReg::ClearEnable => self.update(vcpu, intid, |irq| irq.enabled = false),
                BankReg::SetPending => self.update(vcpu, intid, Irq::set_pending),
                BankReg::ClearPending => self.update_hw(vcpu, intid, Irq::clear_pending),
                BankReg::SetActive => {
                    let owner = self.owner(vcpu, intid);
                    self.update(vcpu, intid, |irq| {
                        if !irq.in_lr && !irq.active {
                            irq.vcpu = owner as u8;
                        }
                        irq.set_active();
                    })
                }
                BankReg::ClearActive => self.update_hw(vcpu, intid, Irq::clear_active),
            };
        }
        Some(kick)
    }
}

/// Bits per INTID in `reg`.
fn field_bits(reg: BankReg) -> u32 {
    match reg {
        BankReg::Priority => 8,
        BankReg::Config => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_offsets() {
        assert_eq!(BankReg::decode(0x0080), Some((BankReg::Group, 0)));
        assert_eq!(BankReg::decode(0x0104), Some((BankReg::SetEnable, 32)));
        assert_eq!(BankReg::decode(0x01fc), Some((BankReg::ClearEnable, 992)));
        assert_eq!(BankReg::decode(0x0208), Some((BankReg::SetPending, 64)));
        assert_eq!(BankReg::decode(0x0284), Some((BankReg::ClearPending, 32)));
        assert_eq!(BankReg::decode(0x0300), Some((BankReg::SetActive, 0)));
        assert_eq!(BankReg::decode(0x0384), Some((BankReg::ClearActive, 32)));
        assert_eq!(BankReg::decode(0x0421), Some((BankReg::Priority, 33)));
        assert_eq!(BankReg::decode(0x0c04), Some((BankReg::Config, 16)));
        assert_eq!(BankReg::decode(0x0c08), Some((BankReg::Config, 32)));
        assert_eq!(BankReg::decode(0x0800), None);
        assert_eq!(BankReg::decode(0x0d00), None);
        assert_eq!(BankReg::decode(0x0000), None);
    }
}
