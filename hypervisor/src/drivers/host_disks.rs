//! The machine's own virtio-blk devices (disk image files QEMU was given with
//! `-drive`/`-device`), which hold the VMs' file-backed disks: found among the
//! host DTB's virtio-mmio transports, set up with `guest-drivers`, and named by
//! their ID (`GET_ID`), which the tools set to what the bundle asks for.

use alloc::string::String;
use alloc::vec::Vec;

use guest_drivers::blk::VirtioBlk;
use guest_drivers::transport::mmio::{MmioSlot, MmioTransport};
use guest_drivers::transport::Transport;
use log::{info, warn};

use super::dma::HeapDma;
use crate::host::HostVirtio;

/// The driver of one host disk.
pub type HostDiskDriver = VirtioBlk<HeapDma, MmioTransport<MmioSlot>>;

/// A host disk, set up and named.
pub struct HostDisk {
    /// Its driver.
    pub driver: HostDiskDriver,
    /// Its ID string.
    pub id: String,
    /// Its interrupt, if the DTB names one.
    pub intid: Option<u32>,
}

/// Which VM's device a host disk's interrupt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDiskIrq {
    /// The host disk's INTID.
    pub intid: u32,
    /// The VM.
    pub vm: usize,
    /// The VM's virtio slot that the disk is behind.
    pub slot: usize,
}

/// The host disks found, while the VMs claim them.
pub struct HostDisks {
    unclaimed: Vec<HostDisk>,
    irqs: Vec<HostDiskIrq>,
}

impl HostDisks {
    /// Probes `transports` for disks ([`probe`]).
    pub fn probe(transports: &[HostVirtio]) -> Self {
        Self { unclaimed: probe(transports), irqs: Vec::new() }
    }

    /// Takes the disk named `id` for VM `vm`'s virtio slot `slot`.
    pub fn claim(&mut self, id: &str, vm: usize, slot: usize) -> Option<HostDiskDriver> {
        let at = self.unclaimed.iter().position(|disk| disk.id == id)?;
        let disk = self.unclaimed.swap_remove(at);
        if let Some(intid) = disk.intid {
            self.irqs.push(HostDiskIrq { intid, vm, slot });
        } else {
            warn!("host disk {id:?} has no interrupt: its requests complete only when the guest notifies");
        }
        Some(disk.driver)
    }

    /// Where the claimed disks' interrupts go; the rest are dropped (and so reset).
    pub fn into_irqs(self) -> Vec<HostDiskIrq> {
        self.irqs
    }
}

/// Sets up every virtio-blk device among `transports` and reads its ID. A device
/// that can't be set up or has no ID is left alone, with a warning.
#[allow(unsafe_code)]
fn probe(transports: &[HostVirtio]) -> Vec<HostDisk> {
    let mut disks = Vec::new();
    for transport in transports {
        let base = transport.region.base as usize;
        // SAFETY: the host DTB names a virtio-mmio register block here, which EL2
        // maps as device memory; Sluice drives the machine's devices alone, and each
        // transport is probed once.
        let Ok(mmio) = (unsafe { MmioTransport::new(base) }) else { continue };
        if mmio.device_id() != guest_drivers::transport::device_id::BLOCK {
            continue;
        }
        let mut driver = match VirtioBlk::new(mmio, HeapDma) {
            Ok(driver) => driver,
            Err(e) => {
                warn!("host disk at {base:#x}: cannot set it up: {e:?}");
                continue;
            }
        };
        let mut id = [0; guest_drivers::blk::spec::ID_BYTES];
        let id = match driver.get_id(&mut id) {
            Ok(len) => String::from_utf8_lossy(&id[..len]).into_owned(),
            Err(e) => {
                warn!("host disk at {base:#x}: no ID ({e:?}); left alone");
                continue;
            }
        };
        info!(
            "host disk {id:?} at {base:#x}: {} MiB{}",
            driver.capacity() >> 11,
            if driver.read_only() { ", read-only" } else { "" }
        );
        disks.push(HostDisk { driver, id, intid: transport.intid });
    }
    disks
}
