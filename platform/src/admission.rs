//! What fits in the machine's RAM: one rule, applied by the tools when they write a
//! scenario's bundle and by the hypervisor when it boots one, so that whatever the
//! tools accept boots, and what they refuse the hypervisor would refuse too.
//!
//! The machine's RAM holds the hypervisor ([`HYPERVISOR_RESERVED`]: its image with
//! heap and stacks, the host DTB, and the 2 MiB blocks that reserved regions leave
//! partly used at their edges), the boot bundle (rounded up to whole 2 MiB blocks:
//! it holds every image), and then each VM in bundle order: its RAM and each of its
//! RAM disks, every one a whole number of 2 MiB blocks (a 512-byte disk takes 2
//! MiB). A VM that doesn't fit in what the ones before it left is refused.

use core::fmt;

use crate::bundle::MEMORY_GRANULE;

/// Host RAM the hypervisor keeps for itself.
pub const HYPERVISOR_RESERVED: u64 = 64 << 20;

/// `bytes` rounded up to whole 2 MiB blocks (saturating).
pub const fn in_blocks(bytes: u64) -> u64 {
    match bytes.checked_next_multiple_of(MEMORY_GRANULE) {
        Some(rounded) => rounded,
        None => u64::MAX,
    }
}

/// Host RAM a VM takes: its RAM and each of its RAM disks, in whole 2 MiB blocks.
pub fn vm_footprint(memory: u64, disks: impl IntoIterator<Item = u64>) -> u64 {
    disks.into_iter().fold(in_blocks(memory), |total, disk| total.saturating_add(in_blocks(disk)))
}

/// Why something does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The hypervisor's reserve and the bundle alone need more than the machine has.
    Machine {
        /// The machine's RAM.
        memory: u64,
        /// The bundle's size.
        bundle: u64,
    },
    /// A VM needs more than the VMs before it left.
    Vm {
        /// What it needs ([`vm_footprint`]).
        footprint: u64,
        /// What was left.
        left: u64,
    },
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes.div_ceil(1 << 20);
        match *self {
            Self::Machine { memory, bundle } => write!(
                f,
                "the machine's {} MiB of RAM cannot hold the hypervisor's {} MiB and the {} MiB boot bundle",
                mib(memory),
                mib(HYPERVISOR_RESERVED),
                mib(in_blocks(bundle))
            ),
            Self::Vm { footprint, left } => write!(
                f,
                "needs {} MiB of host RAM (its RAM and disks, in 2 MiB blocks), but only {} MiB are left",
                mib(footprint),
                mib(left)
            ),
        }
    }
}

/// The machine's RAM, handed out to VMs in bundle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    left: u64,
}

impl Ledger {
    /// A machine with `memory` bytes of RAM booting a bundle of `bundle` bytes.
    ///
    /// # Errors
    ///
    /// [`Shortfall::Machine`]: not even the hypervisor and the bundle fit.
    pub fn new(memory: u64, bundle: u64) -> Result<Self, Shortfall> {
        let taken = HYPERVISOR_RESERVED.saturating_add(in_blocks(bundle));
        match memory.checked_sub(taken) {
            Some(left) => Ok(Self { left }),
            None => Err(Shortfall::Machine { memory, bundle }),
        }
    }

    /// Takes a VM's `footprint` ([`vm_footprint`]).
    ///
    /// # Errors
    ///
    /// [`Shortfall::Vm`], taking nothing, when it doesn't fit.
    pub fn admit(&mut self, footprint: u64) -> Result<(), Shortfall> {
        match self.left.checked_sub(footprint) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(Shortfall::Vm { footprint, left: self.left }),
        }
    }

    /// RAM still free for VMs.
    pub fn left(&self) -> u64 {
        self.left
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    const MIB: u64 = 1 << 20;

    #[test]
    fn disks_and_ram_take_whole_blocks() {
        assert_eq!(vm_footprint(64 * MIB, []), 64 * MIB);
        assert_eq!(vm_footprint(64 * MIB, [512; 32]), 128 * MIB, "32 tiny disks take 2 MiB each");
        assert_eq!(vm_footprint(u64::MAX, [1]), u64::MAX);
    }

    #[test]
    fn the_bundle_and_the_hypervisor_come_first() {
        assert_eq!(Ledger::new(256 * MIB, 1).unwrap().left(), 256 * MIB - 64 * MIB - 2 * MIB);
        let huge = Ledger::new(256 * MIB, 1 << 30).unwrap_err();
        assert_eq!(huge, Shortfall::Machine { memory: 256 * MIB, bundle: 1 << 30 });
        assert_eq!(
            huge.to_string(),
            "the machine's 256 MiB of RAM cannot hold the hypervisor's 64 MiB and the 1024 MiB boot bundle"
        );
    }

    #[test]
    fn vms_are_admitted_in_order_while_they_fit() {
        let mut ledger = Ledger::new(256 * MIB, 3 * MIB).unwrap();
        assert_eq!(ledger.left(), 188 * MIB);
        assert_eq!(ledger.admit(128 * MIB), Ok(()));
        let refused = ledger.admit(64 * MIB).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "needs 64 MiB of host RAM (its RAM and disks, in 2 MiB blocks), but only 60 MiB are left"
        );
        assert_eq!(ledger.admit(60 * MIB), Ok(()), "a refusal takes nothing");
        assert_eq!(ledger.left(), 0);
    }
}
