//! Writing specs as a bundle (feature `writer`): what the tools pack, and what the
//! hypervisor's tests build their bundles with. A spec that breaks a rule is
//! refused here, so the tools never write a bundle the hypervisor would refuse for it.

use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use vm_fdt::{FdtWriter, FdtWriterResult};

use super::read::Header;
use super::spec::{check_device_count, DeviceKind, DeviceSpec, Fault, Medium, VmSpec};
use super::{
    COMPATIBLE, CONSOLE_CHANNEL, DEVICE_KIND, DEVICE_LEGACY, DEVICE_NODE, DISK, DISK_HOST_DEVICE,
    DISK_READ_ONLY, DISK_SERIAL, DISK_SIZE, KIND_BLK, KIND_CONSOLE, LOG_LEVEL, MAX_VMS, TRACE, TRACE_OFF,
    TRACE_ON, VM_BOOTARGS, VM_CPUS, VM_DTB_ADDR, VM_ENTRY, VM_HOST_BASE, VM_INITRD, VM_INITRD_ADDR,
    VM_KERNEL, VM_KERNEL_ADDR, VM_MEMORY_SIZE, VM_NAME, VM_NODE,
};

/// One VM to write: its spec and its devices in slot order.
pub type VmEntry<'a> = (VmSpec<'a>, Vec<DeviceSpec<'a>>);

/// Why a bundle was not written.
#[derive(Debug)]
pub enum WriteError {
    /// More VMs than the exit status can report.
    TooManyVms(usize),
    /// A VM's spec breaks a rule.
    Vm {
        /// VM index.
        vm: usize,
        /// The rule broken.
        fault: Fault,
    },
    /// A device's spec breaks a rule.
    Device {
        /// VM index.
        vm: usize,
        /// Device index (= slot).
        device: usize,
        /// The rule broken.
        fault: Fault,
    },
    /// The tree writer refused (e.g. the images add up to more than 4 GiB).
    Fdt(vm_fdt::Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyVms(n) => write!(f, "{n} VMs, at most {MAX_VMS} are supported"),
            Self::Vm { vm, fault } => write!(f, "vm[{vm}].{fault}"),
            Self::Device { vm, device, fault } => write!(f, "vm[{vm}].virtio[{device}].{fault}"),
            Self::Fdt(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for WriteError {}

/// Checks every spec and writes the bundle.
///
/// # Errors
///
/// The first spec that breaks a rule, or the tree writer's refusal.
pub fn write(header: &Header<'_>, vms: &[VmEntry<'_>]) -> Result<Vec<u8>, WriteError> {
    if vms.len() > MAX_VMS {
        return Err(WriteError::TooManyVms(vms.len()));
    }
    for (vm, (spec, devices)) in vms.iter().enumerate() {
        spec.check().map_err(|fault| WriteError::Vm { vm, fault })?;
        check_device_count(devices.len()).map_err(|fault| WriteError::Vm { vm, fault })?;
        for (device, spec) in devices.iter().enumerate() {
            spec.check().map_err(|fault| WriteError::Device { vm, device, fault })?;
        }
    }
    write_unchecked(header, vms).map_err(WriteError::Fdt)
}

/// Writes the bundle as given, rules or not: for tests that need a bad bundle.
///
/// # Errors
///
/// The tree writer's refusal.
pub fn write_unchecked(header: &Header<'_>, vms: &[VmEntry<'_>]) -> FdtWriterResult<Vec<u8>> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", COMPATIBLE)?;
    if let Some(level) = header.log_level {
        fdt.property_string(LOG_LEVEL, level)?;
    }
    fdt.property_string(TRACE, if header.trace { TRACE_ON } else { TRACE_OFF })?;
    for (index, (spec, devices)) in vms.iter().enumerate() {
        let node = fdt.begin_node(&format!("{VM_NODE}@{index}"))?;
        write_vm(&mut fdt, spec)?;
        for (slot, device) in devices.iter().enumerate() {
            let node = fdt.begin_node(&format!("{DEVICE_NODE}@{slot}"))?;
            write_device(&mut fdt, device)?;
            fdt.end_node(node)?;
        }
        fdt.end_node(node)?;
    }
    fdt.end_node(root)?;
    fdt.finish()
}

fn write_vm(fdt: &mut FdtWriter, vm: &VmSpec<'_>) -> FdtWriterResult<()> {
    fdt.property_string(VM_NAME, vm.name)?;
    fdt.property_array_u32(VM_CPUS, &vm.cpus)?;
    fdt.property_u64(VM_MEMORY_SIZE, vm.memory_size)?;
    if let Some(base) = vm.host_base {
        fdt.property_u64(VM_HOST_BASE, base)?;
    }
    fdt.property(VM_KERNEL, vm.kernel)?;
    fdt.property_u64(VM_KERNEL_ADDR, vm.kernel_addr)?;
    fdt.property_u64(VM_ENTRY, vm.entry)?;
    fdt.property_u64(VM_DTB_ADDR, vm.dtb_addr)?;
    if let Some((data, addr)) = vm.initrd {
        fdt.property(VM_INITRD, data)?;
        fdt.property_u64(VM_INITRD_ADDR, addr)?;
    }
    if let Some(bootargs) = vm.bootargs {
        fdt.property_string(VM_BOOTARGS, bootargs)?;
    }
    Ok(())
}

fn write_device(fdt: &mut FdtWriter, device: &DeviceSpec<'_>) -> FdtWriterResult<()> {
    if device.legacy {
        fdt.property_null(DEVICE_LEGACY)?;
    }
    match &device.kind {
        DeviceKind::Console => fdt.property_string(DEVICE_KIND, KIND_CONSOLE),
        DeviceKind::Channel(name) => {
            fdt.property_string(DEVICE_KIND, KIND_CONSOLE)?;
            fdt.property_string(CONSOLE_CHANNEL, name)
        }
        DeviceKind::Blk(disk) => {
            fdt.property_string(DEVICE_KIND, KIND_BLK)?;
            match disk.medium {
                Medium::Ram { size, image } => {
                    fdt.property_u64(DISK_SIZE, size)?;
                    if let Some(image) = image {
                        fdt.property(DISK, image)?;
                    }
                }
                Medium::HostDevice { id } => fdt.property_string(DISK_HOST_DEVICE, id)?,
            }
            if disk.read_only {
                fdt.property_null(DISK_READ_ONLY)?;
            }
            if let Some(serial) = disk.serial {
                fdt.property_string(DISK_SERIAL, serial)?;
            }
            Ok(())
        }
    }
}

#[cfg(all(test, feature = "fdt"))]
mod tests {
    use super::*;
    use crate::bundle::read;
    use crate::bundle::spec::{CpuList, DiskSpec};
    use alloc::string::ToString;
    use alloc::vec;
    use fdt::Fdt;

    const MIB: u64 = 1 << 20;

    fn linux() -> VmEntry<'static> {
        let spec = VmSpec {
            name: "linux",
            cpus: CpuList::new(&[1, 2]).unwrap(),
            memory_size: 64 * MIB,
            host_base: Some(0x5000_0000),
            kernel: &[0x5a; 1000],
            kernel_addr: 0x4008_0000,
            entry: 0x4008_0000,
            dtb_addr: 0x4000_0000 + 62 * MIB,
            initrd: Some((&[7; 300], 0x4000_0000 + 32 * MIB)),
            bootargs: Some("console=ttyAMA0"),
        };
        let disk = DiskSpec {
            medium: Medium::Ram { size: 4096, image: Some(&[1; 100]) },
            read_only: true,
            serial: Some("disk0"),
        };
        let file =
            DiskSpec { medium: Medium::HostDevice { id: "sluice-1-2" }, read_only: false, serial: None };
        let devices = vec![
            DeviceSpec { kind: DeviceKind::Blk(disk), legacy: false },
            DeviceSpec { kind: DeviceKind::Console, legacy: true },
            DeviceSpec { kind: DeviceKind::Channel("log"), legacy: false },
            DeviceSpec { kind: DeviceKind::Blk(file), legacy: false },
        ];
        (spec, devices)
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let header = Header { log_level: Some("trace"), trace: false };
        let mut bare = linux();
        bare.0 = VmSpec {
            name: "bare",
            cpus: CpuList::new(&[0]).unwrap(),
            host_base: None,
            initrd: None,
            ..bare.0
        };
        bare.1.clear();
        let vms = [bare, linux()];
        let blob = write(&header, &vms).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert_eq!(read::header(&root), Ok(header));
        let nodes: Vec<_> = read::vm_nodes(&root).collect();
        assert_eq!(nodes.len(), 2);
        for (node, (spec, devices)) in nodes.iter().zip(&vms) {
            assert_eq!(&read::vm(node).unwrap(), spec);
            let read: Result<Vec<_>, _> = read::devices(node).collect();
            assert_eq!(&read.unwrap(), devices);
        }
    }

    #[test]
    fn a_spec_that_breaks_a_rule_is_not_written() {
        let header = Header { log_level: None, trace: true };
        let (mut spec, devices) = linux();
        spec.memory_size = 3 * MIB;
        let err = write(&header, &[(spec, devices)]).unwrap_err();
        assert_eq!(err.to_string(), "vm[0].memory-size: must be a non-zero multiple of 2 MiB");
        let (spec, mut devices) = linux();
        devices[0].kind = DeviceKind::Blk(DiskSpec {
            medium: Medium::Ram { size: 1000, image: None },
            read_only: false,
            serial: None,
        });
        let err = write(&header, &[(spec, devices)]).unwrap_err();
        assert_eq!(err.to_string(), "vm[0].virtio[0].disk-size: must be a non-zero multiple of 512");
    }
}
