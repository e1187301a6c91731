//! Virtual machines: what Sluice keeps per guest.
//!
//! A [`Vm`] owns its RAM ([`GuestMemory`]), its stage-2 tables, its emulated
//! devices (vGIC, PL011, virtio-mmio slots, each behind its own lock, see
//! [`devices`]) and its vCPUs' power states; its exit statistics live in its CPUs'
//! traces (`crate::trace`). It is built from a checked
//! [`config::VmConfig`] and can be (re)loaded from it, which is how PSCI
//! `SYSTEM_RESET` restarts a VM alone.

pub mod admission;
pub mod channels;
pub mod config;
pub mod devices;
pub mod hypercall;
pub mod psci;
pub mod refusal;
pub mod trap;
pub mod vcpu;

use crate::arch::aarch64::features::guest_features;
use crate::console::BoxedConsole;
use crate::devices::pl031::BoardClock;
use crate::devices::virtio::channel::Link;
use crate::devices::virtio::VirtioBackend;
use crate::devices::BusError;
use crate::guest_dtb::{write_guest_dtb, GuestDtbError, GuestDtbSpec};
use crate::mm::guest_memory::{GuestMemory, GuestMemoryError};
use crate::mm::heap_tables::HeapTables;
use crate::mm::stage2::{Access, MemoryKind, Stage2, Stage2Error};
use crate::sync::Lock;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use config::VmConfig;
use core::fmt;
use devices::Devices;
use platform::qemu_virt;
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
    /// It was given another number of virtio devices than it is configured with.
    DeviceMismatch {
        /// Devices configured.
        configured: usize,
        /// Backends given.
        given: usize,
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
            Self::DeviceMismatch { configured, given } => {
                write!(f, "devices: {configured} configured, {given} backends given")
            }
        }
    }
}

/// A guest.
///
/// Its parts are shared by the CPUs that run its vCPUs, each behind the lock of
/// what it protects: the devices one each (see [`devices`]), the vCPUs' power
/// states one for all ([`Vm::power`]). The rest does not change once it is built.
pub struct Vm {
    /// Position in the bundle (and bit in the exit status).
    pub index: usize,
    /// Its configuration, kept for reloading on reset.
    pub config: VmConfig<'static>,
    /// Its RAM.
    pub memory: GuestMemory,
    /// Its emulated devices.
    pub devices: Devices,
    /// Its VMID (tags its TLB entries).
    pub vmid: u8,
    /// The channels its consoles have to other VMs' (`devices::virtio::channel`).
    pub channels: Vec<Arc<Link>>,
    power: Lock<Power>,
    stage2: Stage2,
    _tables: HeapTables,
}

/// The power states of a VM's vCPUs, and how often it was loaded.
pub struct Power {
    /// Each vCPU's power state.
    pub vcpus: Vec<VcpuPower>,
    /// How many times the VM has been loaded (1 after the first boot).
    boots: u32,
}

impl Vm {
    /// Builds VM `index` from `config` over `memory`, with `console` as its UART output,
    /// its RTC reading `clock`, and a virtio-mmio device for each of `backends`, in the order (and legacy
    /// interface) of `config.devices`.
    ///
    /// # Errors
    ///
    /// [`VmError`] when the memory or devices don't match the configuration, or its
    /// tables or devices can't be set up.
    pub fn new(
        index: usize,
        config: VmConfig<'static>,
        memory: GuestMemory,
        console: BoxedConsole,
        clock: &'static dyn BoardClock,
        backends: Vec<Box<dyn VirtioBackend>>,
    ) -> Result<Self, VmError> {
        if memory.size() != config.spec.memory_size
            || !memory.contains(qemu_virt::RAM_BASE, config.spec.memory_size)
        {
            return Err(VmError::RamMismatch { configured: config.spec.memory_size, given: memory.size() });
        }
        if backends.len() != config.devices.len() {
            return Err(VmError::DeviceMismatch { configured: config.devices.len(), given: backends.len() });
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
        let vcpus = config.spec.cpus.len();
        let backends = backends.into_iter().zip(config.devices.iter().map(|d| d.legacy)).collect();
        let devices = Devices::new(vcpus, console, clock, &memory, backends).map_err(VmError::Bus)?;
        Ok(Self {
            index,
            config,
            memory,
            devices,
            vmid,
            channels: Vec::new(),
            power: Lock::new(Power { vcpus: vec![VcpuPower::Off; vcpus], boots: 0 }),
            stage2,
            _tables: tables,
        })
    }

    /// The VM with its consoles' `channels` to other VMs.
    pub fn with_channels(mut self, channels: Vec<Arc<Link>>) -> Self {
        self.channels = channels;
        self
    }

    /// Whether a transfer is due on one of its channels.
    #[inline]
    pub fn channels_due(&self) -> bool {
        self.channels.iter().any(|link| link.is_due())
    }

    /// The VM's name.
    pub fn name(&self) -> &'static str {
        self.config.spec.name
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.config.spec.cpus.len()
    }

    /// Its vCPUs' power states.
    pub fn power(&self) -> &Lock<Power> {
        &self.power
    }

    /// Physical address of the stage-2 root table (for VTTBR_EL2).
    pub fn stage2_root(&self) -> u64 {
        self.stage2.root()
    }

    /// Puts the images and a fresh DTB into RAM, zeroing the rest (its memory tags
    /// too), resets the
    /// devices, and makes vCPU 0 start at the entry point with x0 = the DTB. Used at
    /// start and on `SYSTEM_RESET`, with every vCPU out of the guest and `power`
    /// (the VM's, locked) holding them there.
    ///
    /// # Errors
    ///
    /// [`VmError`] if an image doesn't fit or the DTB can't be written.
    pub fn load(&self, power: &mut Power) -> Result<(), VmError> {
        let c = &self.config.spec;
        let ram = c.ram();
        // With tag storage (what the guest gets MTE for), the tags go too.
        let zeroed = if guest_features().mte {
            self.memory.zero_with_tags(ram.base, ram.size)
        } else {
            self.memory.zero(ram.base, ram.size)
        };
        zeroed.map_err(VmError::Memory)?;
        self.memory.write(c.kernel_addr, c.kernel).map_err(VmError::Memory)?;
        if let Some((data, addr)) = c.initrd {
            self.memory.write(addr, data).map_err(VmError::Memory)?;
        }
        let spec = GuestDtbSpec {
            memory: ram,
            cpus: c.cpus.len() as u32,
            bootargs: c.bootargs,
            initrd: c.layout().initrd,
            boot_count: power.boots,
            virtio_devices: self.config.devices.len() as u32,
            pmu: guest_features().has_pmu(),
        };
        let dtb = write_guest_dtb(&spec).map_err(VmError::Dtb)?;
        self.memory.write(c.dtb_addr, &dtb).map_err(VmError::Memory)?;
        self.devices.reset();
        power.vcpus.fill(VcpuPower::Off);
        power.vcpus[0] = VcpuPower::StartPending { entry: c.entry, context: c.dtb_addr };
        power.boots += 1;
        Ok(())
    }
}
