//! Writes a checked scenario as a boot bundle: the FDT that `platform::bundle` documents.

use std::path::Path;

use anyhow::{Context, Result};
use platform::bundle::read::Header;
use platform::bundle::write::{self, VmEntry};

use crate::validate::Scenario;

/// Builds the bundle's bytes: every VM and device as its spec, checked by the
/// rules the hypervisor reads them by.
///
/// # Errors
///
/// A spec breaks a rule (a bug in the checks before), or the tree writer refuses
/// it (e.g. the images add up to more than 4 GiB).
pub fn build(scenario: &Scenario) -> Result<Vec<u8>> {
    let header = Header { log_level: Some(scenario.log_level.as_str()), trace: scenario.trace };
    let vms: Vec<VmEntry<'_>> = scenario
        .vms
        .iter()
        .map(|vm| (vm.spec(), vm.devices.iter().map(|device| device.spec()).collect()))
        .collect();
    write::write(&header, &vms).context("cannot build the boot bundle")
}

/// Builds the bundle and writes it to `path`, creating its directory.
///
/// # Errors
///
/// [`build`] fails, or the file cannot be written.
pub fn write(scenario: &Scenario, path: &Path) -> Result<()> {
    let bytes = build(scenario)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogLevel;
    use crate::devices::{Device, DeviceKind};
    use crate::layout;
    use crate::units::{GIB, MIB};
    use crate::validate::Machine;
    use crate::validate::Vm;
    use fdt::node::FdtNode;
    use fdt::Fdt;
    use platform::bundle::spec::CpuList;
    use platform::bundle::{
        COMPATIBLE, DEVICE_KIND, DEVICE_LEGACY, DISK, DISK_READ_ONLY, DISK_SERIAL, DISK_SIZE, KIND_BLK,
        KIND_CONSOLE, LOG_LEVEL, TRACE, TRACE_OFF, VM_BOOTARGS, VM_CPUS, VM_DTB_ADDR, VM_ENTRY, VM_HOST_BASE,
        VM_INITRD, VM_INITRD_ADDR, VM_KERNEL, VM_KERNEL_ADDR, VM_MEMORY_SIZE, VM_NAME,
    };
    use platform::qemu_virt::RAM_BASE;

    fn vm(name: &str, cpus: &[u32], initrd: Option<Vec<u8>>, bootargs: Option<&str>) -> Vm {
        let kernel = vec![0x5a; 1000];
        let initrd_size = initrd.as_ref().map(|b| b.len() as u64);
        Vm {
            name: name.to_owned(),
            cpus: CpuList::new(cpus).unwrap(),
            memory: 64 * MIB,
            host_base: None,
            layout: layout::place(64 * MIB, &kernel, Some(RAM_BASE + 0x8_0000), initrd_size).unwrap(),
            kernel,
            initrd,
            bootargs: bootargs.map(str::to_owned),
            devices: Vec::new(),
        }
    }

    fn scenario() -> Scenario {
        let mut second = vm("linux", &[1, 2], Some(vec![7; 300]), Some("console=ttyAMA0"));
        second.host_base = Some(0x5000_0000);
        second.devices = vec![
            Device {
                kind: DeviceKind::Blk(crate::devices::Disk {
                    medium: crate::devices::Medium::Ram { size: 4096, image: Some(vec![1; 100]) },
                    read_only: true,
                    serial: Some("disk0".into()),
                }),
                legacy: false,
            },
            Device { kind: DeviceKind::Console, legacy: true },
        ];
        Scenario {
            machine: Machine { cpus: 3, memory: GIB, mte: false },
            log_level: LogLevel::Trace,
            trace: false,
            vms: vec![vm("hello", &[0], None, None), second],
            expect: None,
        }
    }

    fn u64_prop(node: &FdtNode<'_, '_>, name: &str) -> Option<u64> {
        let value = node.property(name)?.value;
        Some(u64::from_be_bytes(value.try_into().expect("two cells")))
    }

    fn str_prop<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
        node.property(name)?.as_str()
    }

    #[test]
    fn bundle_reads_back() {
        let bytes = build(&scenario()).unwrap();
        let fdt = Fdt::new(&bytes).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert_eq!(str_prop(&root, "compatible"), Some(COMPATIBLE));
        assert_eq!(str_prop(&root, LOG_LEVEL), Some("trace"));
        assert_eq!(str_prop(&root, TRACE), Some(TRACE_OFF));

        let vms: Vec<_> = root.children().collect();
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].name, "vm@0");
        assert_eq!(vms[1].name, "vm@1");

        let hello = &vms[0];
        assert_eq!(str_prop(hello, VM_NAME), Some("hello"));
        assert_eq!(hello.property(VM_CPUS).unwrap().value, [0, 0, 0, 0]);
        assert_eq!(u64_prop(hello, VM_MEMORY_SIZE), Some(64 * MIB));
        assert_eq!(u64_prop(hello, VM_HOST_BASE), None);
        assert_eq!(hello.property(VM_KERNEL).unwrap().value, [0x5a; 1000]);
        assert_eq!(u64_prop(hello, VM_KERNEL_ADDR), Some(RAM_BASE + 0x8_0000));
        assert_eq!(u64_prop(hello, VM_ENTRY), Some(RAM_BASE + 0x8_0000));
        assert_eq!(u64_prop(hello, VM_DTB_ADDR), Some(RAM_BASE + 62 * MIB));
        assert!(hello.property(VM_INITRD).is_none());
        assert!(hello.property(VM_INITRD_ADDR).is_none());
        assert!(hello.property(VM_BOOTARGS).is_none());

        let linux = &vms[1];
        assert_eq!(str_prop(linux, VM_NAME), Some("linux"));
        assert_eq!(linux.property(VM_CPUS).unwrap().value, [0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(u64_prop(linux, VM_HOST_BASE), Some(0x5000_0000));
        assert_eq!(linux.property(VM_INITRD).unwrap().value, [7; 300]);
        let initrd_addr = u64_prop(linux, VM_INITRD_ADDR).unwrap();
        assert_eq!(initrd_addr, (RAM_BASE + 62 * MIB - 300) & !0xfff);
        assert_eq!(str_prop(linux, VM_BOOTARGS), Some("console=ttyAMA0"));
        let devices: Vec<_> = linux.children().collect();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].name, "virtio@0");
        assert_eq!(str_prop(&devices[0], DEVICE_KIND), Some(KIND_BLK));
        assert_eq!(u64_prop(&devices[0], DISK_SIZE), Some(4096));
        assert_eq!(devices[0].property(DISK).unwrap().value, [1; 100]);
        assert!(devices[0].property(DISK_READ_ONLY).is_some());
        assert!(devices[0].property(DEVICE_LEGACY).is_none());
        assert_eq!(str_prop(&devices[0], DISK_SERIAL), Some("disk0"));
        assert_eq!(str_prop(&devices[1], DEVICE_KIND), Some(KIND_CONSOLE));
        assert!(devices[1].property(DEVICE_LEGACY).is_some());
    }

    #[test]
    fn write_creates_the_directory() {
        let dir = crate::testutil::TempDir::new("bundle-write");
        let path = dir.path().join("bundles/s.dtb");
        write(&scenario(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes, build(&scenario()).unwrap());
    }
}
