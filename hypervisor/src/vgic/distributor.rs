//! The emulated distributor (GICD), per Arm IHI 0069H, "GIC Distributor
//! register map" and the GICD_* register descriptions.
//!
//! It is configured for a single Security state with affinity routing: GICD_CTLR.DS
//! and GICD_CTLR.ARE read as one and ignore writes, so the registers for SGIs and
//! PPIs live in the redistributors and the distributor's copies (word 0 of the 1-bit
//! registers, GICD_IPRIORITYR0-7, GICD_ICFGR0-1) are RAZ/WI, as are
//! GICD_ITARGETSR, GICD_SGIR, GICD_CPENDSGIR and GICD_SPENDSGIR (legacy operation
//! only), GICD_IGRPMODR and GICD_NSACR (two Security states only). SPIs are INTIDs
//! 32-127; `GICD_IROUTER<n>` routes each to a vCPU.

use super::access::{reserved, Sizes};
use super::ident::{self, Block, ID_START, IIDR};
use super::irq_regs::Bank;
use super::{Kick, Vgic, FIRST_SPI, NR_INTIDS};
use crate::devices::AccessWidth;

/// Register offsets from the distributor's base (IHI 0069H, "The GIC Distributor
/// register map"). The per-INTID registers are in [`super::irq_regs`].
mod reg {
    /// GICD_CTLR: control.
    pub const CTLR: u64 = 0x0000;
    /// GICD_TYPER: features.
    pub const TYPER: u64 = 0x0004;
    /// GICD_IIDR: implementer.
    pub const IIDR: u64 = 0x0008;
    /// GICD_TYPER2: more features (none).
    pub const TYPER2: u64 = 0x000c;
    /// GICD_STATUSR: error reporting (none).
    pub const STATUSR: u64 = 0x0010;
    /// `GICD_ITARGETSR<n>`: legacy targets, RAZ/WI with ARE = 1.
    pub const ITARGETSR: core::ops::Range<u64> = 0x0800..0x0c00;
    /// `GICD_IGRPMODR<n>`: group modifiers, RAZ/WI with DS = 1.
    pub const IGRPMODR: core::ops::Range<u64> = 0x0d00..0x0d80;
    /// `GICD_NSACR<n>`: Non-secure access control, RAZ/WI with DS = 1.
    pub const NSACR: core::ops::Range<u64> = 0x0e00..0x0f00;
    /// GICD_SGIR: legacy SGI generation, WI with ARE = 1.
    pub const SGIR: u64 = 0x0f00;
    /// `GICD_CPENDSGIR<n>` and `GICD_SPENDSGIR<n>`: legacy SGI pending, RAZ/WI.
    pub const PENDSGIR: core::ops::Range<u64> = 0x0f10..0x0f30;
    /// `GICD_IROUTER<n>`: 64-bit routing register of SPI n at 0x6000 + 8n.
    pub const IROUTER: u64 = 0x6000;
    /// One past the last `GICD_IROUTER<n>.`
    pub const IROUTER_END: u64 = 0x8000;
    /// Last ID register (CIDR3).
    pub const ID_END: u64 = 0xfffc;
}

/// GICD_CTLR fields with GICD_CTLR.DS = 1 (IHI 0069H, GICD_CTLR).
mod ctlr {
    /// EnableGrp0 \[0\].
    pub const ENABLE_GRP0: u32 = 1 << 0;
    /// EnableGrp1 \[1\].
    pub const ENABLE_GRP1: u32 = 1 << 1;
    /// ARE \[4\]: affinity routing, RAO/WI.
    pub const ARE: u32 = 1 << 4;
    /// DS \[6\]: single Security state, RAO/WI.
    pub const DS: u32 = 1 << 6;
}

/// GICD_TYPER: ITLinesNumber \[4:0\] = 3 (INTIDs up to 32 * (3 + 1) - 1 = 127),
/// CPUNumber \[7:5\] = 0 (meaningful only without affinity routing), SecurityExtn
/// \[10\] = 0, MBIS \[16\] = 0, LPIS \[17\] = 0, IDbits \[23:19\] = 9 (10-bit INTIDs), A3V
/// \[24\] = 1 (GICD_IROUTER keeps Aff3), No1N \[25\] = 0 (IRM = 1 is honoured by
/// choosing vCPU 0), RSS \[26\] = 0 (SGI targets Aff0 0-15).
pub const TYPER: u32 = 3 | 9 << 19 | 1 << 24;

/// The bits of `GICD_IROUTER<n>` that are not RES0: Aff0 \[7:0\], Aff1 \[15:8\], Aff2
/// \[23:16\], Interrupt_Routing_Mode \[31\], Aff3 \[39:32\].
pub const IROUTER_MASK: u64 = 0x0000_00ff_80ff_ffff;
/// `GICD_IROUTER<n>.Interrupt_Routing_Mode`: 1 of N (any PE).
pub const IROUTER_IRM: u64 = 1 << 31;

/// Name of the block in logs.
const BLOCK: &str = "GICD";

/// The distributor's view of the per-INTID registers: SPIs only.
const SPIS: Bank = Bank { block: BLOCK, vcpu: 0, intids: FIRST_SPI..NR_INTIDS };

impl Vgic {
    /// A read of the distributor; see [`Vgic::distributor_read`].
    pub(super) fn gicd_read(&self, offset: u64, width: AccessWidth) -> u64 {
        if let Some(value) = self.bank_read(&SPIS, offset, width) {
            return value;
        }
        let word = |value: u32| if Sizes::Word.allow(BLOCK, offset, width) { u64::from(value) } else { 0 };
        match offset {
            reg::CTLR => word(self.ctlr()),
            reg::TYPER => word(TYPER),
            reg::IIDR => word(IIDR),
            reg::TYPER2 | reg::STATUSR | reg::SGIR => word(0),
            o if reg::IGRPMODR.contains(&o) || reg::NSACR.contains(&o) => word(0),
            o if reg::ITARGETSR.contains(&o) || reg::PENDSGIR.contains(&o) => {
                Sizes::ByteOrWord.allow(BLOCK, offset, width);
                0
            }
            reg::IROUTER..reg::IROUTER_END => self.irouter_read(offset, width),
            ID_START..=reg::ID_END if ident::id_register(Block::Distributor, offset).is_some() => {
                word(ident::id_register(Block::Distributor, offset).unwrap_or(0))
            }
            _ => {
                reserved(BLOCK, offset, width, false);
                0
            }
        }
    }

    /// A write to the distributor; see [`Vgic::distributor_write`].
    pub(super) fn gicd_write(&mut self, offset: u64, width: AccessWidth, value: u64) -> Kick {
        if let Some(kick) = self.bank_write(&SPIS, offset, width, value) {
            return kick;
        }
        match offset {
            reg::CTLR if Sizes::Word.allow(BLOCK, offset, width) => self.write_ctlr(value as u32),
            reg::CTLR | reg::TYPER | reg::IIDR | reg::TYPER2 | reg::STATUSR | reg::SGIR => {
                // Read-only, or write-ignored with DS = 1 and ARE = 1.
                Sizes::Word.allow(BLOCK, offset, width);
                Kick::NONE
            }
            o if reg::IGRPMODR.contains(&o) || reg::NSACR.contains(&o) => {
                Sizes::Word.allow(BLOCK, offset, width);
                Kick::NONE
            }
            o if reg::ITARGETSR.contains(&o) || reg::PENDSGIR.contains(&o) => {
                Sizes::ByteOrWord.allow(BLOCK, offset, width);
                Kick::NONE
            }
            reg::IROUTER..reg::IROUTER_END => self.irouter_write(offset, width, value),
            ID_START..=reg::ID_END if ident::id_register(Block::Distributor, offset).is_some() => {
                Sizes::Word.allow(BLOCK, offset, width);
                Kick::NONE
            }
            _ => {
                reserved(BLOCK, offset, width, true);
                Kick::NONE
            }
        }
    }

    /// GICD_CTLR as the guest reads it.
    fn ctlr(&self) -> u32 {
        let mut value = ctlr::ARE | ctlr::DS;
        if self.group0_enabled {
            value |= ctlr::ENABLE_GRP0;
        }
        if self.group1_enabled {
            value |= ctlr::ENABLE_GRP1;
        }
        value
    }

    /// GICD_CTLR write: the group enables change; every vCPU re-evaluates what it
    /// may deliver.
    fn write_ctlr(&mut self, value: u32) -> Kick {
        let group0 = value & ctlr::ENABLE_GRP0 != 0;
        let group1 = value & ctlr::ENABLE_GRP1 != 0;
        if (group0, group1) == (self.group0_enabled, self.group1_enabled) {
            return Kick::NONE;
        }
        self.group0_enabled = group0;
        self.group1_enabled = group1;
        Kick::all(self.vcpu_count())
    }

    /// The SPI whose `GICD_IROUTER<n>` `offset` falls in, if it is one (n = 32..=127),
    /// and whether `offset` is the upper half.
    fn irouter_spi(offset: u64) -> Option<(u32, bool)> {
        let n = ((offset - reg::IROUTER) / 8) as u32;
        (FIRST_SPI..NR_INTIDS).contains(&n).then_some((n, offset % 8 == 4))
    }

    /// `GICD_IROUTER<n>` read: a doubleword, or either half.
    fn irouter_read(&self, offset: u64, width: AccessWidth) -> u64 {
        if !Sizes::WordOrDouble.allow(BLOCK, offset, width) {
            return 0;
        }
        let Some((intid, upper)) = Self::irouter_spi(offset) else {
            // GICD_IROUTER0-31 are reserved: SGIs and PPIs are not routed.
            return 0;
        };
        let route = self.routes[(intid - FIRST_SPI) as usize];
        match (width, upper) {
            (AccessWidth::Double, _) => route,
            (_, false) => route & 0xffff_ffff,
            (_, true) => route >> 32,
        }
    }

    /// `GICD_IROUTER<n>` write: a doubleword, or either half.
    fn irouter_write(&mut self, offset: u64, width: AccessWidth, value: u64) -> Kick {
        if !Sizes::WordOrDouble.allow(BLOCK, offset, width) {
            return Kick::NONE;
        }
        let Some((intid, upper)) = Self::irouter_spi(offset) else {
            return Kick::NONE;
        };
        let old = self.routes[(intid - FIRST_SPI) as usize];
        let route = match (width, upper) {
            (AccessWidth::Double, _) => value,
            (_, false) => old & !0xffff_ffff | value & 0xffff_ffff,
            (_, true) => old & 0xffff_ffff | (value & 0xffff_ffff) << 32,
        };
        self.set_route(intid, route & IROUTER_MASK)
    }

    /// Stores SPI `intid`'s route. An SPI that a vCPU holds (in a list register, or
    /// active there) stays with it until it is given back; the holder is kicked so
    /// that happens soon. A deliverable SPI that changes vCPU kicks the new one.
    fn set_route(&mut self, intid: u32, route: u64) -> Kick {
        let before = self.owner(0, intid);
        self.routes[(intid - FIRST_SPI) as usize] = route;
        let target = self.route_target(route);
        let irq = self.irq(0, intid);
        if irq.in_lr {
            if usize::from(irq.vcpu) != target {
                return Kick::vcpu(irq.vcpu.into());
            }
            return Kick::NONE;
        }
        let after = self.owner(0, intid);
        if after != before && self.deliverable(irq) {
            return Kick::vcpu(after);
        }
        Kick::NONE
    }

    /// The vCPU a `GICD_IROUTER<n>` value designates: the one whose affinity
    /// (0.0.0.index) it names; vCPU 0 for IRM = 1 (1 of N: any will do) or for an
    /// affinity that names no vCPU.
    pub(super) fn route_target(&self, route: u64) -> usize {
        let aff0 = (route & 0xff) as usize;
        let upper = route & IROUTER_MASK & !IROUTER_IRM & !0xff;
        if route & IROUTER_IRM == 0 && upper == 0 && aff0 < self.vcpu_count() {
            aff0
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessWidth::{Byte, Double, Half, Word};

    fn read(g: &mut Vgic, offset: u64) -> u64 {
        g.distributor_read(offset, Word)
    }

    fn write(g: &mut Vgic, offset: u64, value: u64) -> Kick {
        g.distributor_write(offset, Word, value)
    }

    #[test]
    fn identification() {
        let mut g = Vgic::new(2);
        assert_eq!(read(&mut g, 0x0004), 0x0148_0003, "GICD_TYPER");
        assert_eq!(read(&mut g, 0x0004) & 0x1f, 3, "ITLinesNumber");
        assert_eq!(read(&mut g, 0x0004) >> 19 & 0x1f, 9, "IDbits");
        assert_eq!(read(&mut g, 0x0004) & (1 << 10 | 1 << 16 | 1 << 17), 0, "no SecurityExtn, MBIS, LPIs");
        assert_eq!(read(&mut g, 0x0008), 0x5300_043b, "GICD_IIDR");
        assert_eq!(read(&mut g, 0x0008) & 0xfff, 0x43b, "implementer Arm");
        assert_eq!(read(&mut g, 0x000c), 0, "GICD_TYPER2");
        assert_eq!(read(&mut g, 0x0010), 0, "GICD_STATUSR");
        assert_eq!(read(&mut g, 0xffe8), 0x3b, "GICD_PIDR2");
        assert_eq!(read(&mut g, 0xffe8) >> 4 & 0xf, 3, "ArchRev");
        assert_eq!(read(&mut g, 0xfffc), 0xb1, "GICD_CIDR3");
        write(&mut g, 0x0004, 0);
        assert_eq!(read(&mut g, 0x0004), 0x0148_0003, "read-only");
    }

    #[test]
    fn ctlr_enables_groups_with_ds_and_are_fixed() {
        let mut g = Vgic::new(3);
        assert_eq!(read(&mut g, 0), 0x50, "ARE | DS, groups disabled");
        assert_eq!(write(&mut g, 0, 0x3), Kick(0b111));
        assert_eq!(read(&mut g, 0), 0x53);
        assert_eq!(write(&mut g, 0, 0x3), Kick::NONE, "no change, no kick");
        // ARE, DS can't be cleared; RWP (bit 31) reads 0.
        write(&mut g, 0, 0x8000_0001);
        assert_eq!(read(&mut g, 0), 0x51);
        // Not a word: ignored.
        g.distributor_write(0, Byte, 0);
        assert_eq!(read(&mut g, 0), 0x51);
        assert_eq!(g.distributor_read(0, Half), 0);
    }

    #[test]
    fn enable_set_and_clear() {
        let mut g = Vgic::new(1);
        write(&mut g, 0x0104, 0x8000_0001);
        assert_eq!(read(&mut g, 0x0104), 0x8000_0001);
        assert_eq!(read(&mut g, 0x0184), 0x8000_0001, "ICENABLER reads the same state");
        write(&mut g, 0x0104, 0x2);
        assert_eq!(read(&mut g, 0x0104), 0x8000_0003, "writing 0 has no effect");
        write(&mut g, 0x0184, 0x8000_0000);
        assert_eq!(read(&mut g, 0x0104), 0x3);
        // INTIDs 0-31 are RAZ/WI here (ARE = 1).
        write(&mut g, 0x0100, u64::from(u32::MAX));
        assert_eq!(read(&mut g, 0x0100), 0);
        // Beyond INTID 127: reserved.
        write(&mut g, 0x0110, u64::from(u32::MAX));
        assert_eq!(read(&mut g, 0x0110), 0);
        // Byte access to a word register: ignored.
        g.distributor_write(0x0108, Byte, 1);
        assert_eq!(read(&mut g, 0x0108), 0);
    }

    #[test]
    fn pending_set_and_clear() {
        let mut g = Vgic::new(1);
        write(&mut g, 0x0000, 0x2);
        write(&mut g, 0x0084, u64::from(u32::MAX));
        assert_eq!(write(&mut g, 0x0204, 0b1010), Kick::NONE, "disabled: nothing to deliver");
        assert_eq!(read(&mut g, 0x0204), 0b1010);
        assert_eq!(read(&mut g, 0x0284), 0b1010);
        write(&mut g, 0x0284, 0b0010);
        assert_eq!(read(&mut g, 0x0204), 0b1000);
        assert_eq!(write(&mut g, 0x0104, 0b1000), Kick::vcpu(0), "enabled while pending");
        assert!(g.has_pending(0));
        write(&mut g, 0x0284, 0b1000);
        assert!(!g.has_pending(0));
    }

    #[test]
    fn active_set_and_clear() {
        let mut g = Vgic::new(1);
        write(&mut g, 0x0308, 0x0000_0100);
        assert_eq!(read(&mut g, 0x0308), 0x100);
        assert_eq!(read(&mut g, 0x0388), 0x100);
        write(&mut g, 0x0388, 0x0000_0100);
        assert_eq!(read(&mut g, 0x0308), 0);
    }

    #[test]
    fn groups() {
        let mut g = Vgic::new(1);
        write(&mut g, 0x0080, u64::from(u32::MAX));
        assert_eq!(read(&mut g, 0x0080), 0, "word 0 RAZ/WI");
        write(&mut g, 0x0088, 0xf0f0_f0f0);
        assert_eq!(read(&mut g, 0x0088), 0xf0f0_f0f0);
    }

    #[test]
    fn priority_bytes_and_words() {
        let mut g = Vgic::new(1);
        write(&mut g, 0x0420, 0x4433_2211);
        assert_eq!(g.distributor_read(0x0421, Byte), 0x22);
        g.distributor_write(0x0423, Byte, 0xff);
        assert_eq!(read(&mut g, 0x0420), 0xff33_2211, "all 8 bits kept");
        assert_eq!(g.distributor_read(0x0423, Byte), 0xff);
        // INTIDs 0-31 RAZ/WI; beyond 127 reserved.
        write(&mut g, 0x0400, u64::from(u32::MAX));
        assert_eq!(read(&mut g, 0x0400), 0);
        g.distributor_write(0x0480, Byte, 1);
        assert_eq!(g.distributor_read(0x0480, Byte), 0);
        // Half-word and unaligned word accesses are not allowed.
        g.distributor_write(0x0420, Half, 0);
        assert_eq!(read(&mut g, 0x0420), 0xff33_2211);
        assert_eq!(g.distributor_read(0x0422, Word), 0);
    }

    #[test]
    fn config_edge_bit_only() {
        let mut g = Vgic::new(1);
        assert_eq!(read(&mut g, 0x0c08), 0xaaaa_aaaa, "SPIs reset edge");
        write(&mut g, 0x0c08, 0xffff_fff0);
        // Int_config[0] is RES0; INTIDs 32 and 33 level.
        assert_eq!(read(&mut g, 0x0c08), 0xaaaa_aaa0);
        assert_eq!(read(&mut g, 0x0c00), 0, "SGIs and PPIs: in the redistributor");
        assert_eq!(read(&mut g, 0x0c04), 0);
    }

    #[test]
    fn raz_wi_registers_and_reserved_offsets() {
        let mut g = Vgic::new(1);
        for offset in [
            0x0800, 0x0820, 0x0d00, 0x0d04, 0x0e00, 0x0f00, 0x0f10, 0x0f20, 0x0014, 0x0040, 0x5000, 0xffcc,
            0xc000, 0x6000, 0x60f8, 0x6400,
        ] {
            write(&mut g, offset, u64::from(u32::MAX));
            assert_eq!(read(&mut g, offset), 0, "offset {offset:#x}");
        }
        assert_eq!(g.distributor_read(0x0801, Byte), 0);
    }

    #[test]
    fn irouter_doubleword_and_halves() {
        let mut g = Vgic::new(4);
        let spi40 = 0x6000 + 8 * 40;
        assert_eq!(g.distributor_read(spi40, Double), 0);
        g.distributor_write(spi40, Double, 0xffff_ff12_ffff_ff03);
        assert_eq!(g.distributor_read(spi40, Double), 0x12_80ff_ff03, "RES0 bits dropped");
        assert_eq!(g.distributor_read(spi40, Word), 0x80ff_ff03);
        assert_eq!(g.distributor_read(spi40 + 4, Word), 0x12);
        g.distributor_write(spi40 + 4, Word, 0);
        g.distributor_write(spi40, Word, 2);
        assert_eq!(g.distributor_read(spi40, Double), 2);
        g.distributor_write(spi40 + 4, Word, 1);
        assert_eq!(g.distributor_read(spi40, Double), 0x1_0000_0002);
        // Misaligned doubleword, byte access: ignored.
        g.distributor_write(spi40 + 4, Double, 0);
        g.distributor_write(spi40, Byte, 0);
        assert_eq!(g.distributor_read(spi40, Double), 0x1_0000_0002);
        assert_eq!(g.distributor_read(spi40, Byte), 0);
        assert_eq!(g.distributor_read(0x6000 + 8 * 127, Double), 0);
    }

    #[test]
    fn spi_routing_follows_irouter() {
        let mut g = Vgic::new(4);
        write(&mut g, 0, 0x3);
        write(&mut g, 0x0104, 1 << 8); // SPI 40
        g.distributor_write(0x6000 + 8 * 40, Double, 2);
        assert_eq!(g.raise_edge(0, 40), Kick::vcpu(2));
        assert!(g.has_pending(2) && !g.has_pending(0));
        // Moved while pending: the new vCPU is kicked.
        assert_eq!(g.distributor_write(0x6000 + 8 * 40, Double, 3), Kick::vcpu(3));
        assert!(g.has_pending(3) && !g.has_pending(2));
        // IRM = 1, or an affinity naming no vCPU: vCPU 0.
        assert_eq!(g.distributor_write(0x6000 + 8 * 40, Double, 1 << 31), Kick::vcpu(0));
        assert!(g.has_pending(0));
        g.distributor_write(0x6000 + 8 * 40, Double, 3);
        assert_eq!(g.distributor_write(0x6000 + 8 * 40, Double, 1 << 8 | 3), Kick::vcpu(0));
        assert_eq!(g.distributor_write(0x6000 + 8 * 40, Double, 7), Kick::NONE, "still vCPU 0");
        assert_eq!(g.distributor_write(0x6000 + 8 * 40, Double, 1 << 32 | 1), Kick::NONE);
        assert!(g.has_pending(0));
        assert_eq!(g.distributor_read(0x6000 + 8 * 40, Double), 1 << 32 | 1, "the written value is kept");
    }

    #[test]
    fn set_spi_level_kicks_the_routed_vcpu() {
        let mut g = Vgic::new(2);
        write(&mut g, 0, 0x3);
        write(&mut g, 0x0c08, 0); // level
        write(&mut g, 0x0104, 1 << 1); // SPI 33
        g.distributor_write(0x6000 + 8 * 33, Double, 1);
        assert_eq!(g.set_spi_level(33, true), Kick::vcpu(1));
        assert_eq!(g.set_spi_level(33, true), Kick::NONE, "no change");
        assert_eq!(read(&mut g, 0x0204), 0b10);
        assert_eq!(g.set_spi_level(33, false), Kick::NONE);
        assert_eq!(read(&mut g, 0x0204), 0);
        assert_eq!(g.set_spi_level(5, true), Kick::NONE, "not an SPI");
        assert_eq!(g.set_spi_level(128, true), Kick::NONE, "no such SPI");
    }

    #[test]
    fn edge_spi_latches_rising_edges_of_set_spi_level() {
        let mut g = Vgic::new(1);
        write(&mut g, 0, 0x3);
        write(&mut g, 0x0104, 1 << 1);
        assert_eq!(g.set_spi_level(33, true), Kick::vcpu(0));
        g.set_spi_level(33, false);
        assert_eq!(read(&mut g, 0x0204), 0b10, "latched");
    }
}
