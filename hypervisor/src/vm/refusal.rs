//! Why a VM of the bundle was not started: what the boot log says after
//! `vm[N] refused:`. The other VMs start regardless.

use super::config::ConfigError;
use super::VmError;
use crate::mm::guest_memory::GuestMemoryError;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a VM was refused at start.
#[derive(Debug)]
pub enum Refusal {
    /// Its description in the bundle is not usable.
    Config(ConfigError),
    /// Its `host_base` RAM is not free host RAM.
    HostBaseNotFree {
        /// First byte asked for.
        base: u64,
        /// One past the last.
        end: u64,
    },
    /// Its `host_base` RAM overlaps another VM's.
    HostBaseOverlapsPinned,
    /// Not enough free RAM is left for it.
    NoRam {
        /// Bytes asked for.
        bytes: u64,
    },
    /// Not enough free RAM is left for the disk of its virtio slot `slot`.
    NoDiskRam {
        /// The slot.
        slot: usize,
        /// Bytes asked for.
        bytes: u64,
    },
    /// The disk of its virtio slot `slot` could not be filled.
    Disk {
        /// The slot.
        slot: usize,
        /// Why.
        error: GuestMemoryError,
    },
    /// The disk of its virtio slot `slot` is on a host device the machine lacks.
    NoHostDisk {
        /// The slot.
        slot: usize,
        /// The ID of the host device asked for.
        id: String,
    },
    /// The console of its virtio slot `slot` names a channel that joins nothing:
    /// the name must be given to exactly two consoles, in two VMs.
    Channel {
        /// The slot.
        slot: usize,
        /// The channel's name.
        name: String,
        /// The VMs (bundle order) whose consoles give that name.
        ends_in: Vec<usize>,
    },
    /// It could not be built or loaded.
    Vm(VmError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::HostBaseNotFree { base, end } => {
                write!(f, "host_base: [{base:#x}, {end:#x}) is not free RAM")
            }
            Self::HostBaseOverlapsPinned => f.write_str("host_base: overlaps another VM's pinned RAM"),
            Self::NoRam { bytes } => write!(f, "not enough free RAM for {} MiB", bytes >> 20),
            Self::NoDiskRam { slot, bytes } => {
                write!(f, "virtio[{slot}]: not enough free RAM for a {} MiB disk", bytes >> 20)
            }
            Self::Disk { slot, error } => write!(f, "virtio[{slot}]: {error}"),
            Self::NoHostDisk { slot, id } => {
                write!(f, "virtio[{slot}]: the machine has no disk {id:?} (QEMU's -device virtio-blk-device,serial={id})")
            }
            Self::Channel { slot, name, ends_in } => write!(
                f,
                "virtio[{slot}]: channel {name:?} has {} end(s), in VMs {ends_in:?}; it needs one console in each of two VMs",
                ends_in.len()
            ),
            Self::Vm(e) => write!(f, "{e}"),
        }
    }
}

impl From<ConfigError> for Refusal {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<VmError> for Refusal {
    fn from(e: VmError) -> Self {
        Self::Vm(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn says_what_is_wrong_and_where() {
        let cases = [
            (
                Refusal::HostBaseNotFree { base: 0x4000_0000, end: 0x4800_0000 },
                "host_base: [0x40000000, 0x48000000) is not free RAM",
            ),
            (Refusal::NoRam { bytes: 64 << 20 }, "not enough free RAM for 64 MiB"),
            (
                Refusal::NoDiskRam { slot: 1, bytes: 4 << 20 },
                "virtio[1]: not enough free RAM for a 4 MiB disk",
            ),
            (
                Refusal::Disk { slot: 0, error: GuestMemoryError::OutOfRange { ipa: 0, len: 0x10 } },
                "virtio[0]: [0x0, 0x10) is not guest RAM",
            ),
            (
                Refusal::Vm(VmError::RamMismatch { configured: 0x1000, given: 0 }),
                "RAM: 0x1000 bytes configured, 0x0 given",
            ),
        ];
        for (refusal, text) in cases {
            assert_eq!(refusal.to_string(), text);
        }
    }
}
