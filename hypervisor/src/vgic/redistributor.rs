//! The emulated redistributors (GICR), per Arm IHI 0069H, "GIC
//! Redistributor register map" and the GICR_* register descriptions.
//!
//! Each vCPU has one redistributor: a 64 KiB RD_base frame (control, identification,
//! power management) followed by a 64 KiB SGI_base frame (the vCPU's SGIs and
//! PPIs, INTIDs 0-31). Frame `i` of the region belongs to vCPU `i`. There are no
//! LPIs: GICR_CTLR, GICR_PROPBASER and GICR_PENDBASER read as zero and ignore
//! writes.

use super::access::{reserved, Sizes};
use super::ident::{self, Block, ID_START, IIDR};
use super::irq_regs::Bank;
use super::{Kick, Vgic, FIRST_SPI};
use crate::devices::AccessWidth;

/// Size of one redistributor: RD_base and SGI_base.
pub const FRAME_SIZE: u64 = 0x2_0000;
/// Offset of the SGI_base frame in a redistributor.
pub const SGI_BASE: u64 = 0x1_0000;

/// RD_base register offsets (IHI 0069H, "Redistributor registers for control and
/// physical LPIs"), and SGI_base ones that are not shared with the distributor.
mod reg {
    /// GICR_CTLR: control (no LPIs: zero).
    pub const CTLR: u64 = 0x0000;
    /// GICR_IIDR: implementer.
    pub const IIDR: u64 = 0x0004;
    /// GICR_TYPER: 64 bits, features and affinity.
    pub const TYPER: u64 = 0x0008;
    /// Upper half of GICR_TYPER.
    pub const TYPER_HI: u64 = 0x000c;
    /// GICR_STATUSR: error reporting (none).
    pub const STATUSR: u64 = 0x0010;
    /// GICR_WAKER: power management handshake.
    pub const WAKER: u64 = 0x0014;
    /// GICR_PROPBASER (0x0070) and GICR_PENDBASER (0x0078), 64 bits each: the LPI
    /// configuration and pending tables (no LPIs).
    pub const LPI_TABLES: core::ops::Range<u64> = 0x0070..0x0080;
    /// Last ID register (CIDR3).
    pub const ID_END: u64 = 0xfffc;
    /// SGI_base: GICR_IGRPMODR0, RAZ/WI with DS = 1.
    pub const IGRPMODR0: u64 = 0x0d00;
    /// SGI_base: GICR_NSACR, RAZ/WI with DS = 1.
    pub const NSACR: u64 = 0x0e00;
}

/// GICR_TYPER.Last \[4\]: the last redistributor of the region.
const TYPER_LAST: u64 = 1 << 4;
/// GICR_WAKER.ProcessorSleep \[1\].
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// GICR_WAKER.ChildrenAsleep \[2\].
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// Name of the block in logs.
const BLOCK: &str = "GICR";

/// Where in the redistributor region an access falls.
enum Frame {
    /// vCPU `.0`'s RD_base frame, at offset `.1` in it.
    RdBase(usize, u64),
    /// vCPU `.0`'s SGI_base frame, at offset `.1` in it.
    SgiBase(usize, u64),
}

impl Vgic {
    /// Splits a region offset into its frame, or `None` beyond the last vCPU's.
    fn frame(&self, offset: u64) -> Option<Frame> {
        let vcpu = usize::try_from(offset / FRAME_SIZE).ok().filter(|&v| v < self.vcpu_count())?;
        let inner = offset % FRAME_SIZE;
        Some(if inner < SGI_BASE {
            Frame::RdBase(vcpu, inner)
        } else {
            Frame::SgiBase(vcpu, inner - SGI_BASE)
        })
    }

    /// vCPU `vcpu`'s view of the per-INTID registers: its SGIs and PPIs.
    fn private_bank(vcpu: usize) -> Bank {
        Bank { block: BLOCK, vcpu, intids: 0..FIRST_SPI }
    }

    /// A read of the redistributor region; see [`Vgic::redistributor_read`].
    pub(super) fn gicr_read(&self, offset: u64, width: AccessWidth) -> u64 {
        match self.frame(offset) {
            Some(Frame::RdBase(vcpu, inner)) => self.rd_base_read(vcpu, inner, width),
            Some(Frame::SgiBase(vcpu, inner)) => self.sgi_base_read(vcpu, inner, width),
            None => {
                reserved(BLOCK, offset, width, false);
                0
            }
        }
    }

    /// A write to the redistributor region; see [`Vgic::redistributor_write`].
    pub(super) fn gicr_write(&mut self, offset: u64, width: AccessWidth, value: u64) -> Kick {
        match self.frame(offset) {
            Some(Frame::RdBase(vcpu, inner)) => {
                self.rd_base_write(vcpu, inner, width, value);
                Kick::NONE
            }
            Some(Frame::SgiBase(vcpu, inner)) => self.sgi_base_write(vcpu, inner, width, value),
            None => {
                reserved(BLOCK, offset, width, true);
                Kick::NONE
            }
        }
    }

    /// GICR_TYPER of vCPU `vcpu` (IHI 0069H, GICR_TYPER): Affinity_Value \[63:32\] =
    /// 0.0.0.`vcpu`, Processor_Number \[23:8\] = `vcpu`, Last \[4\] on the last frame;
    /// PLPIS, VLPIS, DirectLPI, DPGS are 0.
    fn typer(&self, vcpu: usize) -> u64 {
        let mut value = (vcpu as u64) << 32 | (vcpu as u64) << 8;
        if vcpu + 1 == self.vcpu_count() {
            value |= TYPER_LAST;
        }
        value
    }

    /// GICR_WAKER: ChildrenAsleep follows ProcessorSleep at once (there is nothing
    /// to quiesce), which completes the handshake of IHI 0069H "Power management".
    fn waker(&self, vcpu: usize) -> u32 {
        if self.cpus[vcpu].asleep {
            WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
        } else {
            0
        }
    }

    /// A read of vCPU `vcpu`'s RD_base frame.
    fn rd_base_read(&self, vcpu: usize, offset: u64, width: AccessWidth) -> u64 {
        let word = |value: u32| if Sizes::Word.allow(BLOCK, offset, width) { u64::from(value) } else { 0 };
        match offset {
            reg::CTLR | reg::STATUSR => word(0),
            reg::IIDR => word(IIDR),
            reg::WAKER => word(self.waker(vcpu)),
            reg::TYPER | reg::TYPER_HI => {
                if !Sizes::WordOrDouble.allow(BLOCK, offset, width) {
                    return 0;
                }
                let typer = self.typer(vcpu);
                match (width, offset) {
                    (AccessWidth::Double, _) => typer,
                    (_, reg::TYPER) => typer & 0xffff_ffff,
                    _ => typer >> 32,
                }
            }
            o if reg::LPI_TABLES.contains(&o) => {
                Sizes::WordOrDouble.allow(BLOCK, offset, width);
                0
            }
            ID_START..=reg::ID_END if ident::id_register(Block::Redistributor, offset).is_some() => {
                word(ident::id_register(Block::Redistributor, offset).unwrap_or(0))
            }
            _ => {
                reserved(BLOCK, offset, width, false);
                0
            }
        }
    }

    /// A write to vCPU `vcpu`'s RD_base frame.
    fn rd_base_write(&mut self, vcpu: usize, offset: u64, width: AccessWidth, value: u64) {
        match offset {
            reg::WAKER => {
                if Sizes::Word.allow(BLOCK, offset, width) {
                    self.cpus[vcpu].asleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
                }
            }
            // Read-only, or RAZ/WI without LPIs.
            reg::CTLR | reg::IIDR | reg::STATUSR => {
                Sizes::Word.allow(BLOCK, offset, width);
            }
            reg::TYPER | reg::TYPER_HI => {
                Sizes::WordOrDouble.allow(BLOCK, offset, width);
            }
            o if reg::LPI_TABLES.contains(&o) => {
                Sizes::WordOrDouble.allow(BLOCK, offset, width);
            }
            ID_START..=reg::ID_END if ident::id_register(Block::Redistributor, offset).is_some() => {
                Sizes::Word.allow(BLOCK, offset, width);
            }
            _ => reserved(BLOCK, offset, width, true),
        }
    }

    /// A read of vCPU `vcpu`'s SGI_base frame.
    fn sgi_base_read(&self, vcpu: usize, offset: u64, width: AccessWidth) -> u64 {
        if let Some(value) = self.bank_read(&Self::private_bank(vcpu), offset, width) {
            return value;
        }
        match offset {
            reg::IGRPMODR0 | reg::NSACR => {
                Sizes::Word.allow(BLOCK, offset, width);
                0
            }
            _ => {
                reserved(BLOCK, SGI_BASE + offset, width, false);
                0
            }
        }
    }

    /// A write to vCPU `vcpu`'s SGI_base frame.
    fn sgi_base_write(&mut self, vcpu: usize, offset: u64, width: AccessWidth, value: u64) -> Kick {
        if let Some(kick) = self.bank_write(&Self::private_bank(vcpu), offset, width, value) {
            return kick;
        }
        match offset {
            reg::IGRPMODR0 | reg::NSACR => {
                Sizes::Word.allow(BLOCK, offset, width);
            }
            _ => reserved(BLOCK, SGI_BASE + offset, width, true),
        }
        Kick::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccessWidth::{Byte, Double, Half, Word};

    /// Offset of vCPU `vcpu`'s SGI_base register `offset`.
    fn sgi(vcpu: u64, offset: u64) -> u64 {
        vcpu * FRAME_SIZE + SGI_BASE + offset
    }

    fn read(g: &mut Vgic, offset: u64) -> u64 {
        g.redistributor_read(offset, Word)
    }

    fn write(g: &mut Vgic, offset: u64, value: u64) -> Kick {
        g.redistributor_write(offset, Word, value)
    }

    #[test]
    fn typer_affinity_and_last() {
        let mut g = Vgic::new(3);
        assert_eq!(g.redistributor_read(0x0008, Double), 0);
        assert_eq!(g.redistributor_read(FRAME_SIZE + 0x0008, Double), 0x1_0000_0100);
        assert_eq!(g.redistributor_read(2 * FRAME_SIZE + 0x0008, Double), 0x2_0000_0210);
        assert_eq!(read(&mut g, 2 * FRAME_SIZE + 0x0008), 0x210, "low half");
        assert_eq!(read(&mut g, 2 * FRAME_SIZE + 0x000c), 0x2, "high half");
        assert_eq!(g.redistributor_read(2 * FRAME_SIZE + 0x000c, Double), 0, "misaligned");
        // Only the last frame has Last.
        for vcpu in 0..2 {
            assert_eq!(read(&mut g, vcpu * FRAME_SIZE + 0x0008) & 1 << 4, 0);
        }
        // Beyond the last frame: nothing.
        assert_eq!(g.redistributor_read(3 * FRAME_SIZE + 0x0008, Double), 0);
        assert_eq!(read(&mut g, 3 * FRAME_SIZE + 0xffe8), 0);
        let one = Vgic::new(1);
        assert_eq!(one.redistributor_read(0x0008, Double), 0x10);
    }

    #[test]
    fn identification_and_lpi_registers() {
        let mut g = Vgic::new(2);
        assert_eq!(read(&mut g, 0x0004), 0x5300_043b, "GICR_IIDR");
        assert_eq!(read(&mut g, FRAME_SIZE + 0xffe8), 0x3b, "GICR_PIDR2");
        assert_eq!(read(&mut g, 0x0000), 0, "GICR_CTLR");
        assert_eq!(read(&mut g, 0x0010), 0, "GICR_STATUSR");
        write(&mut g, 0x0000, 1);
        assert_eq!(read(&mut g, 0x0000), 0, "EnableLPIs is RES0");
        g.redistributor_write(0x0070, Double, 0x1234_5000);
        g.redistributor_write(0x0078, Double, 0x1234_5000);
        assert_eq!(g.redistributor_read(0x0070, Double), 0);
        assert_eq!(g.redistributor_read(0x0078, Double), 0);
        assert_eq!(read(&mut g, 0x007c), 0);
        write(&mut g, 0x0008, 0);
        assert_eq!(read(&mut g, FRAME_SIZE + 0x0008), 0x110);
    }

    #[test]
    fn waker_handshake() {
        let mut g = Vgic::new(2);
        assert_eq!(read(&mut g, 0x0014), 0b110, "reset: asleep");
        write(&mut g, 0x0014, 0);
        assert_eq!(read(&mut g, 0x0014), 0, "awake, children awake at once");
        assert_eq!(read(&mut g, FRAME_SIZE + 0x0014), 0b110, "per vCPU");
        write(&mut g, 0x0014, 0b010);
        assert_eq!(read(&mut g, 0x0014), 0b110);
        // ChildrenAsleep is read-only.
        write(&mut g, 0x0014, 0b100);
        assert_eq!(read(&mut g, 0x0014), 0);
        g.redistributor_write(0x0014, Byte, 0b10);
        assert_eq!(read(&mut g, 0x0014), 0, "bytes ignored");
    }

    #[test]
    fn reserved_offsets_read_zero() {
        let mut g = Vgic::new(1);
        for offset in [
            0x0018,
            0x0040,
            0x0100,
            0x8000,
            sgi(0, 0x0004),
            sgi(0, 0x0084),
            sgi(0, 0x0420),
            sgi(0, 0x0c08),
            sgi(0, 0x0d00),
            sgi(0, 0x0e00),
            sgi(0, 0xffe8),
            sgi(0, 0x8000),
        ] {
            write(&mut g, offset, u64::from(u32::MAX));
            assert_eq!(read(&mut g, offset), 0, "offset {offset:#x}");
        }
        assert_eq!(g.redistributor_read(0x0014, Half), 0);
    }

    #[test]
    fn private_enable_pending_active_per_vcpu() {
        let mut g = Vgic::new(2);
        g.distributor_write(0, Word, 0x3);
        write(&mut g, sgi(1, 0x0080), u64::from(u32::MAX));
        assert_eq!(write(&mut g, sgi(1, 0x0100), 1 << 27 | 1 << 3), Kick::NONE);
        assert_eq!(read(&mut g, sgi(1, 0x0100)), 1 << 27 | 1 << 3);
        assert_eq!(read(&mut g, sgi(1, 0x0180)), 1 << 27 | 1 << 3);
        assert_eq!(read(&mut g, sgi(0, 0x0100)), 0, "banked per vCPU");
        write(&mut g, sgi(1, 0x0180), 1 << 3);
        assert_eq!(read(&mut g, sgi(1, 0x0100)), 1 << 27);
        assert_eq!(write(&mut g, sgi(1, 0x0200), 1 << 27), Kick::vcpu(1));
        assert_eq!(read(&mut g, sgi(1, 0x0280)), 1 << 27);
        write(&mut g, sgi(1, 0x0280), 1 << 27);
        assert_eq!(read(&mut g, sgi(1, 0x0200)), 0);
        write(&mut g, sgi(1, 0x0300), 1 << 16);
        assert_eq!(read(&mut g, sgi(1, 0x0380)), 1 << 16);
        write(&mut g, sgi(1, 0x0380), 1 << 16);
        assert_eq!(read(&mut g, sgi(1, 0x0300)), 0);
    }

    #[test]
    fn private_priorities_bytes_and_words() {
        let mut g = Vgic::new(1);
        write(&mut g, sgi(0, 0x0418), 0x8070_6050);
        assert_eq!(g.redistributor_read(sgi(0, 0x041b), Byte), 0x80);
        g.redistributor_write(sgi(0, 0x0400), Byte, 0xa0);
        assert_eq!(read(&mut g, sgi(0, 0x0400)), 0xa0);
        assert_eq!(read(&mut g, sgi(0, 0x041c)), 0);
        g.redistributor_write(sgi(0, 0x0418), Half, 0);
        assert_eq!(read(&mut g, sgi(0, 0x0418)), 0x8070_6050);
    }

    #[test]
    fn sgi_config_fixed_ppi_config_writable() {
        let mut g = Vgic::new(1);
        assert_eq!(read(&mut g, sgi(0, 0x0c00)), 0xaaaa_aaaa);
        write(&mut g, sgi(0, 0x0c00), 0);
        assert_eq!(read(&mut g, sgi(0, 0x0c00)), 0xaaaa_aaaa, "SGIs are always edge");
        assert_eq!(read(&mut g, sgi(0, 0x0c04)), 0xaaaa_aaaa);
        // PPI 27 (bits 23:22) level.
        write(&mut g, sgi(0, 0x0c04), 0xaaaa_aaaa & !(0b11 << 22));
        assert_eq!(read(&mut g, sgi(0, 0x0c04)), 0xaa2a_aaaa);
    }
}
