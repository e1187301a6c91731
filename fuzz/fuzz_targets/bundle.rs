//! The boot bundle reader, `parse_bundle`, on any bytes (the seeds in
//! `corpus/bundle/` are realistic bundles for it to mutate), for a machine of 8
//! CPUs.
//!
//! Invariants: nothing panics, the error messages included; a bundle that reads
//! passed the structural check first; every VM it accepts is one the hypervisor
//! can honour: a name, CPUs that exist and that no earlier accepted VM has, RAM a
//! non-zero multiple of 2 MiB within the guest address space, the image, entry
//! point, DTB and initrd inside it without overlapping, at most 32 devices, disks
//! of whole sectors holding their images, serials of at most 20 bytes.
#![no_main]

use hypervisor::fdt_check;
use hypervisor::vm::config::{parse_bundle, ConfigError};
use libfuzzer_sys::fuzz_target;
use platform::bundle::spec::{DeviceKind, DiskSpec, Medium};
use platform::{bundle as b, qemu_virt, Region};

const HOST_CPUS: usize = 8;

fuzz_target!(|data: &[u8]| {
    sluice_fuzz::init_logging();
    let bundle = match parse_bundle(data, HOST_CPUS) {
        Ok(bundle) => bundle,
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("boot bundle: ") && message.len() > 14, "{message:?}");
            if let ConfigError::Malformed(fdt) = e {
                assert_eq!(fdt_check::check(data), Err(fdt));
            }
            return;
        }
    };
    assert_eq!(fdt_check::check(data), Ok(()));
    assert!(bundle.vms.len() <= b::MAX_VMS);
    let mut taken: Vec<u32> = Vec::new();
    for (index, vm) in bundle.vms.iter().enumerate() {
        let vm = match vm {
            Ok(vm) => vm,
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains(&format!("vm[{index}]")), "{message:?}");
                continue;
            }
        };
        let devices = &vm.devices;
        let vm = &vm.spec;
        assert!(!vm.name.is_empty());
        assert!(!vm.cpus.is_empty());
        for (i, cpu) in vm.cpus.iter().enumerate() {
            assert!((*cpu as usize) < HOST_CPUS, "vm[{index}] has CPU {cpu}");
            assert!(!vm.cpus[..i].contains(cpu), "vm[{index}] lists CPU {cpu} twice");
            assert!(!taken.contains(cpu), "vm[{index}] has CPU {cpu}, which an earlier VM has");
        }
        taken.extend(vm.cpus.iter());
        assert!(vm.memory_size > 0 && vm.memory_size % b::MEMORY_GRANULE == 0);
        assert!(vm.memory_size <= qemu_virt::RAM_MAX_SIZE);
        assert!(vm.host_base.is_none_or(|base| base % b::MEMORY_GRANULE == 0));
        let ram = vm.ram();
        let kernel = Region::new(vm.kernel_addr, vm.kernel.len() as u64);
        assert!(!vm.kernel.is_empty() && ram.contains_range(kernel.base, kernel.size));
        assert!(kernel.contains(vm.entry) && vm.entry % 4 == 0);
        let dtb = Region::new(vm.dtb_addr, b::GUEST_DTB_MAX_SIZE);
        assert!(vm.dtb_addr % 8 == 0 && ram.contains_range(dtb.base, dtb.size));
        assert!(!dtb.overlaps(&kernel));
        if let Some((data, addr)) = vm.initrd {
            let initrd = Region::new(addr, data.len() as u64);
            assert!(ram.contains_range(initrd.base, initrd.size));
            assert!(!initrd.overlaps(&kernel) && !initrd.overlaps(&dtb));
        }
        assert!(devices.len() <= qemu_virt::VIRTIO_MMIO_SLOTS as usize);
        for device in devices {
            if let DeviceKind::Blk(DiskSpec { medium, serial, .. }) = &device.kind {
                if let Medium::Ram { size, image } = medium {
                    assert!(*size > 0 && size % b::SECTOR_SIZE == 0);
                    assert!(image.is_none_or(|image| image.len() as u64 <= *size));
                }
                assert!(serial.is_none_or(|serial| serial.len() <= b::MAX_SERIAL_LEN));
            }
        }
    }
});
