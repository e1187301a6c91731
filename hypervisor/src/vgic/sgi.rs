//! Decoding the guest's writes to ICC_SGI1R_EL1 and ICC_SGI0R_EL1 (Arm IHI 0069H,
//! register descriptions of ICC_SGI1R_EL1 and ICC_SGI0R_EL1, which share a layout),
//! and finding the vCPUs they target.
//!
//! vCPU `i` of a VM has the affinity 0.0.0.`i` (Aff3.Aff2.Aff1.Aff0), which is what
//! GICR_TYPER reports and what the VM's MPIDR_EL1 must say.

use super::MAX_VCPUS;

/// Whom an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTargets {
    /// IRM = 1: every PE but the sender.
    AllButSelf,
    /// IRM = 0: the PEs `Aff3.Aff2.Aff1.<RS * 16 + n>` for each bit `n` set in `list`.
    List {
        /// Aff3 \[55:48\].
        aff3: u8,
        /// Aff2 \[39:32\].
        aff2: u8,
        /// Aff1 \[23:16\].
        aff1: u8,
        /// RS \[47:44\]: which group of 16 Aff0 values `list` covers.
        range: u8,
        /// TargetList \[15:0\].
        list: u16,
    },
}

/// A decoded ICC_SGI1R_EL1 / ICC_SGI0R_EL1 write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    /// INTID \[27:24\]: the SGI (0-15).
    pub intid: u32,
    /// Its targets.
    pub targets: SgiTargets,
}

impl SgiRequest {
    /// Decodes the 64-bit value written to the register.
    pub const fn decode(value: u64) -> Self {
        let intid = (value >> 24) as u32 & 0xf;
        let targets = if value & (1 << 40) != 0 {
            SgiTargets::AllButSelf
        } else {
            SgiTargets::List {
                aff3: (value >> 48) as u8,
                aff2: (value >> 32) as u8,
                aff1: (value >> 16) as u8,
                range: (value >> 44) as u8 & 0xf,
                list: value as u16,
            }
        };
        Self { intid, targets }
    }

    /// The vCPUs (bit `i` = vCPU `i`) of a VM with `vcpus` vCPUs that the SGI sent by
    /// vCPU `sender` reaches. Affinities that name no vCPU are ignored, as a GIC
    /// ignores targets that don't exist.
    pub fn vcpus(&self, sender: usize, vcpus: usize) -> u16 {
        let vcpus = vcpus.min(MAX_VCPUS);
        let all = if vcpus >= 16 { u16::MAX } else { (1u16 << vcpus) - 1 };
        match self.targets {
            SgiTargets::AllButSelf => all & !(1u16.checked_shl(sender as u32).unwrap_or(0)),
            SgiTargets::List { aff3: 0, aff2: 0, aff1: 0, range: 0, list } => list & all,
            // vCPUs have Aff0 below 16 and zero higher levels.
            SgiTargets::List { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_field() {
        // Aff3 0x12, RS 3, IRM 0, Aff2 0x34, INTID 5, Aff1 0x56, TargetList 0x8001.
        let value = 0x0012_3034_0556_8001;
        assert_eq!(
            SgiRequest::decode(value),
            SgiRequest {
                intid: 5,
                targets: SgiTargets::List { aff3: 0x12, aff2: 0x34, aff1: 0x56, range: 3, list: 0x8001 },
            }
        );
        // IRM = 1 ignores the affinity fields.
        assert_eq!(
            SgiRequest::decode(0x0000_0100_0f00_ffff),
            SgiRequest { intid: 15, targets: SgiTargets::AllButSelf }
        );
    }

    #[test]
    fn target_list_picks_existing_vcpus() {
        // SGI 1 to Aff0 0 and 2 (TargetList 0b101).
        let sgi = SgiRequest::decode(0x0100_0005);
        assert_eq!(sgi.vcpus(0, 4), 0b101);
        // vCPUs 2 and up don't exist in a 2-vCPU VM.
        assert_eq!(sgi.vcpus(0, 2), 0b001);
        // A non-zero Aff1 or range names no vCPU.
        assert_eq!(SgiRequest::decode(0x0001_0005).vcpus(0, 4), 0);
        assert_eq!(SgiRequest::decode(0x1000_0000_0005).vcpus(0, 4), 0);
    }

    #[test]
    fn irm_reaches_all_but_the_sender() {
        let sgi = SgiRequest::decode(1 << 40);
        assert_eq!(sgi.vcpus(1, 4), 0b1101);
        assert_eq!(sgi.vcpus(0, 1), 0);
        assert_eq!(sgi.vcpus(15, 16), 0x7fff);
    }
}
