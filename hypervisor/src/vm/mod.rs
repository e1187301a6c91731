//! Virtual machines: what Sluice keeps per guest.
//!
//! A [`Vm`] owns its RAM ([`GuestMemory`]), its stage-2 tables, its emulated
//! devices (vGIC, PL011, virtio-mmio slots) and its vCPUs' power states; its exit
//! statistics live in its CPUs' traces (`crate::trace`). It is built from a checked
//! [`config::VmConfig`] and can be (re)loaded from it, which is how PSCI
//! `SYSTEM_RESET` restarts a VM alone.

pub mod admission;
pub mod config;
pub mod hypercall;
pub mod psci;
pub mod stats;
pub mod trap;
pub mod vcpu;

use crate::console::BoxedConsole;
use crate::devices::pl011::Pl011;
use crate::devices::virtio::VirtioMmio;
use crate::devices::{BusError, MmioBus};
use crate::guest_dtb::{write_guest_dtb, GuestDtbError, GuestDtbSpec};
use crate::mm::guest_memory::{GuestMemory, GuestMemoryError};
use crate::mm::heap_tables::HeapTables;
use crate::mm::stage2::{Access, MemoryKind, Stage2, Stage2Error};
use crate::vgic::Vgic;
use alloc::vec;
use alloc::vec::Vec;
use config::VmConfig;
use core::fmt;
use platform::{qemu_virt, Region};
use vcpu::VcpuPower;

/// Why a VM could not be built or loaded.
#[derive(Debug)]
pub enum VmError {
    /// Its stage-2 tables could not be built.
    Stage2(Stage2Error),
    /// An image did not fit in its RAM.
    Memory(GuestMemoryError),
    /// Its device tree could not be written.
    Dtb(GuestDtbError),
    /// Its devices overlap.
    Bus(BusError),
    /// Its RAM is not what the configuration asks for.
    RamMismatch {
        /// Bytes configured.
        configured: u64,
        /// Bytes given.
        given: u64,
    },
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage2(e) => write!(f, "stage-2 tables: {e}"),
            Self::Memory(e) => write!(f, "loading images: {e}"),
            Self::Dtb(e) => write!(f, "guest DTB: {e}"),
            Self::Bus(e) => write!(f, "devices: {e}"),
            Self::RamMismatch { configured, given } => {
                write!(f, "RAM: {configured:#x} bytes configured, {given:#x} given")
            }
        }
    }
}

/// A guest.
pub struct Vm {
    /// Position in the bundle (and bit in the exit status).
    pub index: usize,
    /// Its configuration, kept for reloading on reset.
    pub config: VmConfig<'static>,
    /// Its RAM.
    pub memory: GuestMemory,
    /// Its emulated devices.
    pub bus: MmioBus,
    /// Its VMID (tags its TLB entries).
    pub vmid: u8,
    /// Its emulated PL011 (outside the bus: console input reaches it too).
    pub uart: Pl011,
    /// Its virtual GIC.
    pub vgic: Vgic,
    /// Its virtio-mmio devices; device n sits in slot n.
    pub virtio: Vec<VirtioMmio>,
    /// Each vCPU's power state.
    pub vcpus: Vec<VcpuPower>,
    /// vCPUs (bit per index) that must be made to exit once the trap path lets go
    /// of the VM, so they see new interrupts or power states.
    pub kicks: u16,
    /// How many times the VM has been loaded (1 after the first boot).
    pub boots: u32,
    /// A virtio device has work its budget cut short (see
    /// `devices::virtio::budget`): the trap path goes on with it on the next exit.
    pub virtio_backlog: bool,
    /// All of that work waits for the VM's share of the console.
    pub virtio_backlog_waits: bool,
    stage2: Stage2,
    _tables: HeapTables,
}

impl Vm {
    /// Builds VM `index` from `config` over `memory`, with `console` as its UART output.
    ///
    /// # Errors
    ///
    /// [`VmError`] when the memory doesn't match the configuration, or its tables or
    /// devices can't be set up.
    pub fn new(
        index: usize,
        config: VmConfig<'static>,
        memory: GuestMemory,
        console: BoxedConsole,
        virtio: Vec<VirtioMmio>,
    ) -> Result<Self, VmError> {
        if memory.size() != config.memory_size || !memory.contains(qemu_virt::RAM_BASE, config.memory_size) {
            return Err(VmError::RamMismatch { configured: config.memory_size, given: memory.size() });
        }
        let mut tables = HeapTables::new();
        let mut stage2 = Stage2::new(&mut tables).map_err(VmError::Stage2)?;
        for chunk in memory.chunks() {
            stage2
                .map(&mut tables, chunk.ipa, chunk.pa, chunk.size, MemoryKind::Normal, Access::ReadWrite)
                .map_err(VmError::Stage2)?;
        }
        // VMID 0 is left unused so a stale VTTBR never matches a guest's TLB entries.
        let vmid = u8::try_from(index + 1).expect("at most MAX_VMS VMs");
        let vcpus = config.cpus.len();
        Ok(Self {
            index,
            config,
            memory,
            bus: MmioBus::new(),
            vmid,
            uart: Pl011::new(console),
            vgic: Vgic::new(vcpus),
            virtio,
            vcpus: vec![VcpuPower::Off; vcpus],
            kicks: 0,
            boots: 0,
            virtio_backlog: false,
            virtio_backlog_waits: false,
            stage2,
            _tables: tables,
        })
    }

    /// The VM's name.
    pub fn name(&self) -> &'static str {
        self.config.name
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.config.cpus.len()
    }

    /// Sets the PL011's interrupt line (SPI 1) from its state, after an access or new
    /// input changed it.
    pub fn update_uart_interrupt(&mut self) {
        let kick = self.vgic.set_spi_level(32 + qemu_virt::UART_SPI, self.uart.interrupt_pending());
        self.kick(kick.0);
    }

    /// Sets virtio slot `slot`'s interrupt line (SPI 16 + slot) from its device.
    pub fn update_virtio_interrupt(&mut self, slot: usize) {
        let level = self.virtio[slot].interrupt_level();
        let kick = self.vgic.set_spi_level(32 + qemu_virt::VIRTIO_MMIO_FIRST_SPI + slot as u32, level);
        self.kick(kick.0);
    }

    /// Goes on with the virtio work that budgets cut short, one budget per device.
    pub fn work_on_virtio_backlog(&mut self) {
        for slot in 0..self.virtio.len() {
            if self.virtio[slot].has_backlog() {
                self.virtio[slot].work_on_backlog();
                self.update_virtio_interrupt(slot);
            }
        }
        self.note_virtio_backlog();
    }

    /// Sets [`Vm::virtio_backlog`] and [`Vm::virtio_backlog_waits`] from the devices.
    pub fn note_virtio_backlog(&mut self) {
        let backlogged = || self.virtio.iter().filter(|d| d.has_backlog());
        self.virtio_backlog = backlogged().next().is_some();
        self.virtio_backlog_waits = backlogged().all(VirtioMmio::backlog_waits);
    }

    /// The slot of the VM's virtio-console, if its driver has it running.
    fn live_virtio_console(&self) -> Option<usize> {
        self.virtio.iter().position(|d| {
            d.backend().device_id() == crate::devices::virtio::device_id::CONSOLE
                && d.status() & crate::devices::virtio::status::DRIVER_OK != 0
        })
    }

    /// Whether console input goes to a virtio-console (its driver has it running)
    /// rather than the PL011.
    pub fn has_virtio_console(&self) -> bool {
        self.live_virtio_console().is_some()
    }

    /// Gives typed console input to the VM's virtio-console, if its driver has it
    /// running (the console holds, or drops and counts, what its driver hasn't taken
    /// yet); returns false, taking nothing, when there is none (use the PL011).
    pub fn virtio_console_input(&mut self, bytes: &[u8]) -> bool {
        let Some(slot) = self.live_virtio_console() else { return false };
        self.virtio[slot].input(bytes);
        self.update_virtio_interrupt(slot);
        true
    }

    /// Marks vCPUs (a bit each) to be made to exit after this trap.
    pub fn kick(&mut self, vcpus: u16) {
        self.kicks |= vcpus;
    }

    /// Physical address of the stage-2 root table (for VTTBR_EL2).
    pub fn stage2_root(&self) -> u64 {
        self.stage2.root()
    }

    /// Puts the images and a fresh DTB into RAM, zeroing the rest, resets the
    /// devices, and makes vCPU 0 start at the entry point with x0 = the DTB. Used at
    /// start and on `SYSTEM_RESET`, with every vCPU out of the guest.
    ///
    /// # Errors
    ///
    /// [`VmError`] if an image doesn't fit or the DTB can't be written.
    pub fn load(&mut self) -> Result<(), VmError> {
        let c = &self.config;
        let ram = c.ram();
        self.memory.zero(ram.base, ram.size).map_err(VmError::Memory)?;
        self.memory.write(c.kernel_addr, c.kernel).map_err(VmError::Memory)?;
        if let Some((data, addr)) = c.initrd {
            self.memory.write(addr, data).map_err(VmError::Memory)?;
        }
        let spec = GuestDtbSpec {
            memory: ram,
            cpus: c.cpus.len() as u32,
            bootargs: c.bootargs,
            initrd: c.initrd.map(|(data, addr)| Region::new(addr, data.len() as u64)),
            boot_count: self.boots,
            virtio_devices: c.devices.len() as u32,
        };
        let dtb = write_guest_dtb(&spec).map_err(VmError::Dtb)?;
        self.memory.write(c.dtb_addr, &dtb).map_err(VmError::Memory)?;
        self.uart.reset();
        self.vgic.reset();
        // Devices start over; what they emulate (a disk's contents) stays.
        for device in &mut self.virtio {
            device.reset();
        }
        self.vcpus.fill(VcpuPower::Off);
        self.vcpus[0] = VcpuPower::StartPending { entry: c.entry, context: c.dtb_addr };
        self.kicks = 0;
        self.virtio_backlog = false;
        self.virtio_backlog_waits = false;
        self.boots += 1;
        Ok(())
    }
}
