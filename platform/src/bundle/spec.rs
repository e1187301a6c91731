//! The typed bundle: what one VM and one virtio device are, and the rules a spec
//! must keep. The tools check a spec before they write it (`write`), the hypervisor
//! after it reads it (`read`); both run the same [`VmSpec::check`] and
//! [`DeviceSpec::check`].

use core::fmt;
use core::ops::Deref;

use super::{
    CONSOLE_CHANNEL, DEVICE_NODE, DISK, DISK_HOST_DEVICE, DISK_SERIAL, DISK_SIZE, MAX_HOST_CPUS,
    MAX_SERIAL_LEN, MEMORY_GRANULE, SECTOR_SIZE, VM_BOOTARGS, VM_CPUS, VM_HOST_BASE, VM_KERNEL,
    VM_MEMORY_SIZE, VM_NAME,
};
use crate::layout::ImageLayout;
use crate::{qemu_virt, Region};

/// Longest VM name (the hypervisor keeps it, with its NUL, in 32 bytes).
pub const MAX_NAME_LEN: usize = 31;
/// Longest kernel command line.
pub const MAX_BOOTARGS_LEN: usize = 1024;

/// One VM, as the bundle describes it (its devices are [`DeviceSpec`]s beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec<'a> {
    /// Name for logs and console tags.
    pub name: &'a str,
    /// Host CPU indices; vCPU `i` runs on `cpus[i]`.
    pub cpus: CpuList,
    /// RAM size in bytes.
    pub memory_size: u64,
    /// Host-physical base the RAM is pinned at, if any.
    pub host_base: Option<u64>,
    /// The image.
    pub kernel: &'a [u8],
    /// Guest-physical load address of the image.
    pub kernel_addr: u64,
    /// Guest-physical entry point.
    pub entry: u64,
    /// Guest-physical address of the guest DTB.
    pub dtb_addr: u64,
    /// The initrd and its guest-physical load address.
    pub initrd: Option<(&'a [u8], u64)>,
    /// Kernel command line.
    pub bootargs: Option<&'a str>,
}

/// One virtio device of a VM; device `n` sits in virtio-mmio slot `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec<'a> {
    /// What it is.
    pub kind: DeviceKind<'a>,
    /// Legacy virtio-mmio (version 1).
    pub legacy: bool,
}

/// The kinds of virtio device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind<'a> {
    /// virtio-blk over a RAM disk.
    Blk(DiskSpec<'a>),
    /// virtio-console on the shared UART.
    Console,
    /// virtio-console joined to another VM's console of the same channel name.
    Channel(&'a str),
}

/// A disk: where its sectors live, and what the guest is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec<'a> {
    /// Where the sectors live.
    pub medium: Medium<'a>,
    /// Writes are refused.
    pub read_only: bool,
    /// `GET_ID`'s answer.
    pub serial: Option<&'a str>,
}

/// Where a disk's sectors live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium<'a> {
    /// In host RAM the hypervisor sets aside, gone when the machine stops.
    Ram {
        /// Size in bytes, a multiple of [`SECTOR_SIZE`].
        size: u64,
        /// Initial contents of the disk's first bytes.
        image: Option<&'a [u8]>,
    },
    /// On one of the machine's own virtio-blk devices (a disk image file QEMU was
    /// given), which the hypervisor drives: the device whose `GET_ID` is `id`.
    HostDevice {
        /// The host device's ID string.
        id: &'a str,
    },
}

impl DiskSpec<'_> {
    /// Bytes of host RAM the disk takes (a RAM disk's size; nothing for a host device).
    pub fn ram_size(&self) -> Option<u64> {
        match self.medium {
            Medium::Ram { size, .. } => Some(size),
            Medium::HostDevice { .. } => None,
        }
    }
}

/// A bundle property that breaks a rule, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The property (`memory-size`, `disk-size`, ...).
    pub property: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.reason)
    }
}

/// A VM's host CPUs, in vCPU order: at most [`MAX_HOST_CPUS`], no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuList {
    cpus: [u32; MAX_HOST_CPUS],
    len: usize,
}

impl CpuList {
    /// The list of `cpus`, or `None` when there are more than [`MAX_HOST_CPUS`].
    pub fn new(cpus: &[u32]) -> Option<Self> {
        let mut list = Self::default();
        list.cpus.get_mut(..cpus.len())?.copy_from_slice(cpus);
        list.len = cpus.len();
        Some(list)
    }
}

impl Deref for CpuList {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.cpus[..self.len]
    }
}

impl fmt::Debug for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The rule for a VM's name.
///
/// # Errors
///
/// Why the name is refused.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > MAX_NAME_LEN {
        Err("is longer than 31 bytes")
    } else {
        Ok(())
    }
}

/// The rule for a VM's CPU list (that the CPUs exist is the machine's business).
///
/// # Errors
///
/// Why the list is refused.
pub fn check_cpus(cpus: &[u32]) -> Result<(), &'static str> {
    if cpus.is_empty() {
        return Err("is empty; a VM needs at least one CPU");
    }
    if cpus.iter().enumerate().any(|(i, cpu)| cpus[..i].contains(cpu)) {
        return Err("lists a CPU twice");
    }
    Ok(())
}

/// The rule for a VM's RAM size.
///
/// # Errors
///
/// Why the size is refused.
pub fn check_memory_size(bytes: u64) -> Result<(), &'static str> {
    if bytes == 0 || !bytes.is_multiple_of(MEMORY_GRANULE) {
        Err("must be a non-zero multiple of 2 MiB")
    } else if bytes > qemu_virt::RAM_MAX_SIZE {
        Err("is more than the guest address space holds (255 GiB)")
    } else {
        Ok(())
    }
}

/// The rule for where a VM's RAM is pinned in host memory.
///
/// # Errors
///
/// Why the base is refused.
pub fn check_host_base(base: u64) -> Result<(), &'static str> {
    if base.is_multiple_of(MEMORY_GRANULE) {
        Ok(())
    } else {
        Err("must be 2 MiB aligned")
    }
}

/// The rule for a kernel command line.
///
/// # Errors
///
/// Why it is refused.
pub fn check_bootargs(bootargs: &str) -> Result<(), &'static str> {
    if bootargs.len() > MAX_BOOTARGS_LEN {
        Err("is longer than 1024 bytes")
    } else if bootargs.contains('\0') {
        Err("contains a NUL character")
    } else {
        Ok(())
    }
}

/// The rule for a disk's size.
///
/// # Errors
///
/// Why it is refused.
pub fn check_disk_size(bytes: u64) -> Result<(), &'static str> {
    if bytes == 0 || !bytes.is_multiple_of(SECTOR_SIZE) {
        Err("must be a non-zero multiple of 512")
    } else {
        Ok(())
    }
}

/// The rule for a disk's serial number (`GET_ID`'s answer).
///
/// # Errors
///
/// Why it is refused.
pub fn check_serial(serial: &str) -> Result<(), &'static str> {
    if serial.len() > MAX_SERIAL_LEN || !serial.is_ascii() {
        Err("must be at most 20 ASCII characters")
    } else if serial.contains('\0') {
        Err("contains a NUL character")
    } else {
        Ok(())
    }
}

/// Turns a rule's refusal into a [`Fault`] of `property`.
fn at(property: &'static str, rule: Result<(), &'static str>) -> Result<(), Fault> {
    rule.map_err(|reason| Fault { property, reason })
}

impl VmSpec<'_> {
    /// The VM's guest-physical RAM.
    pub fn ram(&self) -> Region {
        qemu_virt::guest_ram(self.memory_size)
    }

    /// Where its images sit in its RAM.
    pub fn layout(&self) -> ImageLayout {
        ImageLayout {
            ram: self.ram(),
            kernel: Region::new(self.kernel_addr, self.kernel.len() as u64),
            entry: self.entry,
            dtb_addr: self.dtb_addr,
            initrd: self.initrd.map(|(data, addr)| Region::new(addr, data.len() as u64)),
        }
    }

    /// Checks every rule a VM spec keeps on its own.
    ///
    /// # Errors
    ///
    /// The first property that breaks one.
    pub fn check(&self) -> Result<(), Fault> {
        at(VM_NAME, check_name(self.name))?;
        at(VM_CPUS, check_cpus(&self.cpus))?;
        at(VM_MEMORY_SIZE, check_memory_size(self.memory_size))?;
        if let Some(base) = self.host_base {
            at(VM_HOST_BASE, check_host_base(base))?;
        }
        if self.kernel.is_empty() {
            return Err(Fault { property: VM_KERNEL, reason: "is empty" });
        }
        // The rule the tools placed the images by (`crate::layout`).
        self.layout()
            .check()
            .map_err(|fault| Fault { property: fault.property(), reason: fault.reason() })?;
        if let Some(bootargs) = self.bootargs {
            at(VM_BOOTARGS, check_bootargs(bootargs))?;
        }
        Ok(())
    }
}

/// Checks that a VM's devices fit its virtio-mmio slots.
///
/// # Errors
///
/// A fault of the device nodes when there are more devices than slots.
pub fn check_device_count(count: usize) -> Result<(), Fault> {
    if count > qemu_virt::VIRTIO_MMIO_SLOTS as usize {
        Err(Fault { property: DEVICE_NODE, reason: "more devices than virtio-mmio slots" })
    } else {
        Ok(())
    }
}

impl DeviceSpec<'_> {
    /// Checks every rule a device spec keeps.
    ///
    /// # Errors
    ///
    /// The first property that breaks one.
    pub fn check(&self) -> Result<(), Fault> {
        if let DeviceKind::Channel(name) = self.kind {
            return at(CONSOLE_CHANNEL, check_name(name));
        }
        let DeviceKind::Blk(disk) = &self.kind else { return Ok(()) };
        match disk.medium {
            Medium::Ram { size, image } => {
                at(DISK_SIZE, check_disk_size(size))?;
                if image.is_some_and(|image| image.len() as u64 > size) {
                    return Err(Fault { property: DISK, reason: "is larger than the disk" });
                }
            }
            Medium::HostDevice { id } => at(DISK_HOST_DEVICE, check_serial(id))?,
        }
        if let Some(serial) = disk.serial {
            at(DISK_SERIAL, check_serial(serial))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn good() -> VmSpec<'static> {
        VmSpec {
            name: "hello",
            cpus: CpuList::new(&[0]).unwrap(),
            memory_size: 64 * MIB,
            host_base: None,
            kernel: &[0x14; 4096],
            kernel_addr: 0x4020_0000,
            entry: 0x4020_0000,
            dtb_addr: 0x4000_0000 + 62 * MIB,
            initrd: None,
            bootargs: Some("console=ttyAMA0"),
        }
    }

    fn property(spec: VmSpec<'_>) -> &'static str {
        spec.check().unwrap_err().property
    }

    #[test]
    fn a_good_spec_passes() {
        assert_eq!(good().check(), Ok(()));
        assert_eq!(good().ram(), Region::new(0x4000_0000, 64 * MIB));
    }

    #[test]
    fn each_rule_names_its_property() {
        assert_eq!(property(VmSpec { name: "", ..good() }), VM_NAME);
        assert_eq!(property(VmSpec { name: "abcdefghijabcdefghijabcdefghijab", ..good() }), VM_NAME);
        assert_eq!(property(VmSpec { cpus: CpuList::new(&[]).unwrap(), ..good() }), VM_CPUS);
        assert_eq!(property(VmSpec { cpus: CpuList::new(&[1, 1]).unwrap(), ..good() }), VM_CPUS);
        for size in [0, 3 * MIB, qemu_virt::RAM_MAX_SIZE + 2 * MIB] {
            assert_eq!(property(VmSpec { memory_size: size, ..good() }), VM_MEMORY_SIZE);
        }
        assert_eq!(property(VmSpec { host_base: Some(0x4010_0000), ..good() }), VM_HOST_BASE);
        assert_eq!(property(VmSpec { kernel: &[], ..good() }), VM_KERNEL);
        assert_eq!(property(VmSpec { entry: 0x4000_0000, ..good() }), super::super::VM_ENTRY);
        assert_eq!(property(VmSpec { bootargs: Some("a\0b"), ..good() }), VM_BOOTARGS);
    }

    #[test]
    fn a_cpu_list_holds_what_sluice_drives() {
        assert_eq!(&*CpuList::new(&[3, 1]).unwrap(), &[3, 1]);
        assert!(CpuList::new(&[0; MAX_HOST_CPUS]).is_some());
        assert!(CpuList::new(&[0; MAX_HOST_CPUS + 1]).is_none());
    }

    #[test]
    fn disks_keep_their_rules() {
        let disk = |size, image: Option<&'static [u8]>, serial| DeviceSpec {
            kind: DeviceKind::Blk(DiskSpec { medium: Medium::Ram { size, image }, read_only: false, serial }),
            legacy: false,
        };
        let host = |id| DeviceSpec {
            kind: DeviceKind::Blk(DiskSpec {
                medium: Medium::HostDevice { id },
                read_only: true,
                serial: None,
            }),
            legacy: false,
        };
        assert_eq!(host("sluice-0-1").check(), Ok(()));
        assert_eq!(host("").check(), Ok(()), "QEMU's default ID is empty, though the tools always set one");
        assert_eq!(host("012345678901234567890").check().unwrap_err().property, DISK_HOST_DEVICE);
        assert_eq!(disk(4096, Some(&[1; 10]), Some("disk0")).check(), Ok(()));
        assert_eq!(disk(1000, None, None).check().unwrap_err().property, DISK_SIZE);
        assert_eq!(disk(512, Some(&[0; 513]), None).check().unwrap_err().property, DISK);
        assert_eq!(disk(512, None, Some("012345678901234567890")).check().unwrap_err().property, DISK_SERIAL);
        assert_eq!(DeviceSpec { kind: DeviceKind::Console, legacy: true }.check(), Ok(()));
        assert!(check_device_count(32).is_ok() && check_device_count(33).is_err());
    }
}
