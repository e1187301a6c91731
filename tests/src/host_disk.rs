//! Two levels of virtio, as a VM's file-backed disk has them: a guest's driver
//! (guest-drivers) talks to Sluice's `HostBlk` in the VM's slot, which drives the
//! machine's disk with guest-drivers too. The machine's disk is modelled by Sluice's
//! own RAM-disk device in a second slot (the "host" slot), standing in for QEMU's.
//!
//! Memory, as under Sluice: the VM's RAM is the guest driver's ring region, at
//! [`GUEST_BASE`], then a data window whose two halves are swapped in host memory,
//! so a guest buffer across the window's middle is two host pieces. `HostBlk`'s
//! own DMA memory and the data window are what the host device sees, at their host
//! addresses; the guest's rings it never sees. A guest-physical address passed to
//! the host device untranslated points outside what it sees, and fails.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use guest_drivers::blk::VirtioBlk;
use guest_drivers::hal::{Hal, PhysAddr};
use guest_drivers::transport::mmio::{MmioTransport, RegisterAccess};
use hypervisor::devices::virtio::blk::host::HostBlk;
use hypervisor::devices::virtio::blk::Blk;
use hypervisor::mm::guest_memory::{GuestMemory, RamChunk};

use crate::disk::Disk;
use crate::filter::QueueLimit;
use crate::hal::RegionHal;
use crate::region::{SharedRegion, GUEST_BASE};
use crate::slot::{Slot, SlotRegisters};

/// The machine's disk's ID, as the tools name it.
pub const HOST_ID: &[u8] = b"sluice-0-0";
/// What the VM's disk answers GET_ID with.
pub const GUEST_SERIAL: &[u8] = b"guest-disk";
/// Pages of each region.
const PAGES: usize = 256;

/// The registers of the host slot, for `HostBlk`, which must be `Send`.
#[derive(Debug, Clone)]
pub struct HostRegisters(QueueLimit<SlotRegisters>);

// SAFETY: a rig lives on one thread: the slot behind these registers (an `Rc`) is
// never touched from another.
unsafe impl Send for HostRegisters {}

impl RegisterAccess for HostRegisters {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.write32(offset, value);
    }
    fn read16(&self, offset: usize) -> u16 {
        self.0.read16(offset)
    }
    fn write16(&mut self, offset: usize, value: u16) {
        self.0.write16(offset, value);
    }
    fn read8(&self, offset: usize) -> u8 {
        self.0.read8(offset)
    }
    fn write8(&mut self, offset: usize, value: u8) {
        self.0.write8(offset, value);
    }
}

/// DMA pages whose device address is their host address, as Sluice's `HeapDma`
/// at EL2 gives them; from a region, so the host device's view can cover them.
#[derive(Debug, Clone)]
pub struct IdentityHal(Arc<SharedRegion>);

// SAFETY: pages come zeroed, page aligned and contiguous from the region's
// allocator, one run per allocation until freed; the host device sees the region
// at its host addresses, so the identity is the translation.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let (_, memory) = self.0.alloc_pages(pages)?;
        Some((memory.as_ptr() as PhysAddr, memory))
    }

    unsafe fn dma_dealloc(&self, paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) {
        let ipa = self.0.to_guest(paddr as usize).expect("a page of the region");
        self.0.free_pages(ipa, pages);
    }

    fn virt_to_phys(&self, vaddr: usize) -> PhysAddr {
        vaddr as PhysAddr
    }
}

/// `HostBlk` as the rig builds it.
pub type RigHostBlk = HostBlk<IdentityHal, MmioTransport<HostRegisters>>;

/// The two slots and their memory.
pub struct HostDiskRig {
    /// The guest driver's DMA memory (the VM's RAM at [`GUEST_BASE`]).
    pub rings: Arc<SharedRegion>,
    /// The data window of the VM's RAM.
    pub data: Arc<SharedRegion>,
    /// `HostBlk`'s DMA memory.
    pub host_dma: Arc<SharedRegion>,
    /// The machine's disk.
    pub disk: Disk,
    /// The model of the machine's device.
    pub host: Slot,
    /// The VM's device, `HostBlk`.
    pub vm: Slot,
    /// The VM's RAM, as the guest sees it.
    vm_memory: GuestMemory,
}

/// A chunk of memory a device sees at `ipa`, behind host memory at `host`.
fn chunk(ipa: u64, host: usize, size: usize) -> RamChunk {
    RamChunk { ipa, pa: host as u64, host, size: size as u64 }
}

impl HostDiskRig {
    /// A disk of `sectors` sectors whose device has queues of at most `host_queue`
    /// entries; read-only disks if asked.
    pub fn new(sectors: u64, host_queue: u16, read_only: bool) -> Self {
        let (rings, data, host_dma) =
            (SharedRegion::new(PAGES), SharedRegion::new(PAGES), SharedRegion::new(PAGES));
        let disk = Disk::new(sectors);
        let mut seen = [&host_dma, &data].map(|r| chunk(r.host_base() as u64, r.host_base(), r.len()));
        seen.sort_by_key(|c| c.ipa);
        // SAFETY: the regions are live allocations of the rig, kept alive by the slot.
        let host_view = unsafe { GuestMemory::new(seen.to_vec()) };
        let model = Box::new(Blk::new(disk.memory(), false, HOST_ID));
        let host = Slot::with_memory(model, host_view, vec![host_dma.clone(), data.clone()], false);
        let registers = HostRegisters(QueueLimit::new(host.registers(), host_queue));
        let transport = MmioTransport::from_registers(registers).expect("the host device");
        let driver = VirtioBlk::new(transport, IdentityHal(host_dma.clone())).expect("the host driver");
        let backend: RigHostBlk =
            HostBlk::new(driver, IdentityHal(host_dma.clone()), read_only, GUEST_SERIAL);

        let half = data.len() / 2;
        let window = GUEST_BASE + rings.len() as u64;
        let ram = vec![
            chunk(GUEST_BASE, rings.host_base(), rings.len()),
            chunk(window, data.host_base() + half, half),
            chunk(window + half as u64, data.host_base(), half),
        ];
        // SAFETY: as above.
        let vm_view = unsafe { GuestMemory::new(ram) };
        let vm =
            Slot::with_memory(Box::new(backend), vm_view.clone(), vec![rings.clone(), data.clone()], false);
        Self { rings, data, host_dma, disk, host, vm, vm_memory: vm_view }
    }

    /// Guest-physical address of byte `offset` of the data window.
    pub fn data_ipa(&self, offset: usize) -> u64 {
        GUEST_BASE + self.rings.len() as u64 + offset as u64
    }

    /// Writes `bytes` at byte `offset` of the data window, as the guest would.
    pub fn write_data(&self, offset: usize, bytes: &[u8]) {
        self.vm_memory.write(self.data_ipa(offset), bytes).expect("inside the window");
    }

    /// Reads `len` bytes at byte `offset` of the data window.
    pub fn read_data(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.vm_memory.read(self.data_ipa(offset), &mut out).expect("inside the window");
        out
    }

    /// The guest's driver of the VM's disk.
    pub fn guest(&self) -> VirtioBlk<RegionHal, MmioTransport<SlotRegisters>> {
        let transport = MmioTransport::from_registers(self.vm.registers()).expect("the VM's device");
        VirtioBlk::new(transport, RegionHal::new(&self.rings)).expect("the guest driver")
    }

    /// Delivers the host device's interrupt to `HostBlk` if its line is up, as
    /// Sluice's interrupt handler does; returns whether it was.
    pub fn host_interrupt(&self) -> bool {
        let up = self.host.interrupt_level();
        if up {
            self.vm.with(|m| m.host_interrupt());
        }
        up
    }
}
