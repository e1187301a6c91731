//! Reading the boot bundle and checking it again.
//!
//! The tools validate a scenario before packing it (see `platform::bundle`); the
//! hypervisor still re-checks everything it relies on, and refuses a VM whose
//! configuration it cannot honour without refusing the others.

use crate::fdt_check::{self, FdtError};
use alloc::vec::Vec;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;
use platform::admission::Shortfall;
use platform::bundle as b;
use platform::bundle::read;
use platform::bundle::spec::{DeviceSpec, Fault, VmSpec};

/// A bundle, read.
#[derive(Debug)]
pub struct Bundle<'a> {
    /// Log level asked for, if any ("info", "debug", ...).
    pub log_level: Option<&'a str>,
    /// Whether every tracepoint is stamped (bundle property `trace`, default on).
    pub trace: bool,
    /// The VMs in order, each either usable or refused with the reason.
    pub vms: Vec<Result<VmConfig<'a>, ConfigError>>,
}

/// One VM's configuration, checked: its spec and its virtio devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig<'a> {
    /// What the bundle says of the VM itself.
    pub spec: VmSpec<'a>,
    /// Virtio devices; device n sits in virtio-mmio slot n.
    pub devices: Vec<DeviceSpec<'a>>,
}

/// Why the bundle or a VM in it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The bundle is not a readable FDT with the right `compatible`.
    NotABundle(&'static str),
    /// The bundle is an FDT, but a damaged one.
    Malformed(FdtError),
    /// A VM property is missing or malformed.
    Property {
        /// VM index.
        vm: usize,
        /// Property name.
        property: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A CPU given to this VM is already another's.
    CpuTaken {
        /// VM index.
        vm: usize,
        /// The CPU.
        cpu: u32,
        /// Index of the VM that has it.
        owner: usize,
    },
    /// A CPU index beyond what the machine has.
    NoSuchCpu {
        /// VM index.
        vm: usize,
        /// The CPU.
        cpu: u32,
        /// How many CPUs the machine has.
        host_cpus: usize,
    },
    /// More VMs than the exit status can report.
    TooManyVms(usize),
    /// A virtio device property is missing or malformed.
    Device {
        /// VM index.
        vm: usize,
        /// Device index (= slot).
        device: usize,
        /// Property name.
        property: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The VM's RAM and disks don't fit in the machine (`platform::admission`).
    NoRoom {
        /// VM index.
        vm: usize,
        /// By how much.
        shortfall: Shortfall,
    },
    /// Not even the hypervisor and the bundle fit in the machine.
    MachineTooSmall(Shortfall),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotABundle(why) => write!(f, "boot bundle: {why}"),
            Self::Malformed(e) => write!(f, "boot bundle: {e}"),
            Self::Property { vm, property, reason } => write!(f, "vm[{vm}].{property}: {reason}"),
            Self::CpuTaken { vm, cpu, owner } => {
                write!(f, "vm[{vm}].cpus: CPU {cpu} is already given to vm[{owner}]")
            }
            Self::NoSuchCpu { vm, cpu, host_cpus } => {
                write!(f, "vm[{vm}].cpus: CPU {cpu} does not exist (the machine has {host_cpus})")
            }
            Self::TooManyVms(n) => write!(f, "boot bundle: {n} VMs, at most {} are supported", b::MAX_VMS),
            Self::Device { vm, device, property, reason } => {
                write!(f, "vm[{vm}].virtio[{device}].{property}: {reason}")
            }
            Self::NoRoom { vm, shortfall } => write!(f, "vm[{vm}].{}: {shortfall}", b::VM_MEMORY_SIZE),
            Self::MachineTooSmall(shortfall) => write!(f, "boot bundle: {shortfall}"),
        }
    }
}

/// Reads the bundle at `blob` for a machine with `host_cpus` CPUs.
///
/// # Errors
///
/// `NotABundle`, `Malformed` or `TooManyVms` when nothing can be started; a
/// refused VM is an `Err` inside [`Bundle::vms`] instead.
pub fn parse_bundle(blob: &[u8], host_cpus: usize) -> Result<Bundle<'_>, ConfigError> {
    // The `fdt` crate panics on a damaged tree; see `fdt_check`.
    fdt_check::check(blob).map_err(|e| {
        if e.is_not_a_device_tree() {
            ConfigError::NotABundle("not a flattened device tree")
        } else {
            ConfigError::Malformed(e)
        }
    })?;
    let fdt = Fdt::new(blob).map_err(|_| ConfigError::NotABundle("not a flattened device tree"))?;
    let root = fdt.find_node("/").ok_or(ConfigError::NotABundle("no root node"))?;
    let read::Header { log_level, trace } = read::header(&root).map_err(ConfigError::NotABundle)?;
    let nodes: Vec<_> = read::vm_nodes(&root).collect();
    if nodes.len() > b::MAX_VMS {
        return Err(ConfigError::TooManyVms(nodes.len()));
    }
    let mut vms: Vec<Result<VmConfig<'_>, ConfigError>> = Vec::new();
    for (index, node) in nodes.into_iter().enumerate() {
        let vm = parse_vm(index, &node, host_cpus).and_then(|vm| {
            check_cpus_free(index, &vm, &vms)?;
            Ok(vm)
        });
        vms.push(vm);
    }
    Ok(Bundle { log_level, trace, vms })
}

/// Refuses a VM whose CPUs an earlier VM already has.
fn check_cpus_free(
    index: usize,
    vm: &VmConfig<'_>,
    earlier: &[Result<VmConfig<'_>, ConfigError>],
) -> Result<(), ConfigError> {
    for (owner, other) in earlier.iter().enumerate() {
        let Ok(other) = other else { continue };
        if let Some(&cpu) = vm.spec.cpus.iter().find(|c| other.spec.cpus.contains(c)) {
            return Err(ConfigError::CpuTaken { vm: index, cpu, owner });
        }
    }
    Ok(())
}

fn parse_vm<'a>(vm: usize, node: &FdtNode<'_, 'a>, host_cpus: usize) -> Result<VmConfig<'a>, ConfigError> {
    let spec = read::vm(node).map_err(|Fault { property, reason }| ConfigError::Property {
        vm,
        property,
        reason,
    })?;
    if let Some(&cpu) = spec.cpus.iter().find(|&&cpu| cpu as usize >= host_cpus) {
        return Err(ConfigError::NoSuchCpu { vm, cpu, host_cpus });
    }
    let devices = read::devices(node).collect::<Result<Vec<_>, _>>().map_err(
        |(device, Fault { property, reason })| ConfigError::Device { vm, device, property, reason },
    )?;
    Ok(VmConfig { spec, devices })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fdt_check::tests::Corruptor;
    use alloc::string::ToString;
    use alloc::vec;
    use platform::bundle::spec::{DeviceKind, DiskSpec, Medium};
    use platform::qemu_virt;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use vm_fdt::FdtWriter;

    const MIB: u64 = 1 << 20;

    /// (kind, disk size, disk image) of one device node.
    type TestDevice = (&'static str, Option<u64>, Option<Vec<u8>>);

    /// Properties of one VM node; `None` leaves a property out.
    #[derive(Clone)]
    struct Vm {
        name: &'static str,
        cpus: Vec<u32>,
        memory: Option<u64>,
        kernel: Vec<u8>,
        kernel_addr: u64,
        entry: u64,
        dtb_addr: u64,
        initrd: Option<(Vec<u8>, u64)>,
        devices: Vec<TestDevice>,
    }

    fn good(name: &'static str, cpu: u32) -> Vm {
        Vm {
            name,
            cpus: vec![cpu],
            memory: Some(64 * MIB),
            kernel: vec![0x14; 4096],
            kernel_addr: 0x4020_0000,
            entry: 0x4020_0000,
            dtb_addr: 0x4000_0000 + 62 * MIB,
            initrd: None,
            devices: Vec::new(),
        }
    }

    fn bundle(vms: &[Vm]) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", b::COMPATIBLE).unwrap();
        w.property_string(b::LOG_LEVEL, "debug").unwrap();
        for (i, vm) in vms.iter().enumerate() {
            let node = w.begin_node(&alloc::format!("vm@{i}")).unwrap();
            w.property_string(b::VM_NAME, vm.name).unwrap();
            w.property_array_u32(b::VM_CPUS, &vm.cpus).unwrap();
            if let Some(m) = vm.memory {
                w.property_u64(b::VM_MEMORY_SIZE, m).unwrap();
            }
            w.property(b::VM_KERNEL, &vm.kernel).unwrap();
            w.property_u64(b::VM_KERNEL_ADDR, vm.kernel_addr).unwrap();
            w.property_u64(b::VM_ENTRY, vm.entry).unwrap();
            w.property_u64(b::VM_DTB_ADDR, vm.dtb_addr).unwrap();
            if let Some((data, addr)) = &vm.initrd {
                w.property(b::VM_INITRD, data).unwrap();
                w.property_u64(b::VM_INITRD_ADDR, *addr).unwrap();
            }
            w.property_string(b::VM_BOOTARGS, "console=ttyAMA0").unwrap();
            for (slot, (kind, size, image)) in vm.devices.iter().enumerate() {
                let dev = w.begin_node(&alloc::format!("virtio@{slot}")).unwrap();
                w.property_string(b::DEVICE_KIND, kind).unwrap();
                if let Some(size) = size {
                    w.property_u64(b::DISK_SIZE, *size).unwrap();
                }
                if let Some(image) = image {
                    w.property(b::DISK, image).unwrap();
                }
                w.property_string(b::DISK_SERIAL, "disk0").unwrap();
                w.end_node(dev).unwrap();
            }
            w.end_node(node).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn refusal(vm: Vm) -> ConfigError {
        let blob = bundle(&[vm]);
        let parsed = parse_bundle(&blob, 2).unwrap();
        parsed.vms.into_iter().next().unwrap().unwrap_err()
    }

    #[test]
    fn reads_a_good_bundle() {
        let mut vm = good("hello", 0);
        vm.initrd = Some((vec![1, 2, 3], 0x4000_0000 + 32 * MIB));
        let blob = bundle(&[vm]);
        let parsed = parse_bundle(&blob, 1).unwrap();
        assert_eq!(parsed.log_level, Some("debug"));
        assert!(parsed.trace, "tracing is on unless the bundle says off");
        let vm = parsed.vms[0].as_ref().unwrap();
        assert_eq!(vm.spec.name, "hello");
        assert_eq!(*vm.spec.cpus, [0]);
        assert_eq!(vm.spec.memory_size, 64 * MIB);
        assert_eq!(vm.spec.kernel.len(), 4096);
        assert_eq!(vm.spec.initrd, Some((&[1u8, 2, 3][..], 0x4200_0000)));
        assert_eq!(vm.spec.bootargs, Some("console=ttyAMA0"));
        assert_eq!(vm.spec.ram(), platform::Region::new(0x4000_0000, 64 * MIB));
    }

    #[test]
    fn reads_devices_and_refuses_bad_ones() {
        let mut vm = good("a", 0);
        vm.devices = vec![("blk", Some(4096), Some(vec![9; 10])), ("console", None, None)];
        let blob = bundle(&[vm.clone()]);
        let parsed = parse_bundle(&blob, 1).unwrap();
        let devices = &parsed.vms[0].as_ref().unwrap().devices;
        assert_eq!(
            devices[0],
            DeviceSpec {
                kind: DeviceKind::Blk(DiskSpec {
                    medium: Medium::Ram { size: 4096, image: Some(&[9; 10]) },
                    read_only: false,
                    serial: Some("disk0")
                }),
                legacy: false
            }
        );
        assert_eq!(devices[1].kind, DeviceKind::Console);
        for (device, property) in [
            (("net", None, None), "kind"),
            (("blk", Some(1000), None), "disk-size"),
            (("blk", None, None), "disk-size"),
            (("blk", Some(512), Some(vec![0; 513])), "disk"),
        ] {
            vm.devices = vec![device];
            let err = refusal(vm.clone());
            assert!(
                matches!(err, ConfigError::Device { device: 0, property: p, .. } if p == property),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_a_blob_that_is_not_a_bundle() {
        assert!(matches!(parse_bundle(&[0u8; 64], 1), Err(ConfigError::NotABundle(_))));
    }

    /// A bundle of good VMs, one per `(memory, disk sizes)`, each on its own CPU.
    pub(crate) fn bundle_with(vms: &[(u64, &[u64])]) -> Vec<u8> {
        let vms: Vec<Vm> = vms
            .iter()
            .enumerate()
            .map(|(i, &(memory, disks))| {
                let mut vm = good(["a", "b", "c", "d", "e", "f", "g"][i], i as u32);
                vm.memory = Some(memory);
                vm.dtb_addr = 0x4000_0000 + memory - 2 * MIB;
                vm.devices = disks.iter().map(|&size| ("blk", Some(size), None)).collect();
                vm
            })
            .collect();
        bundle(&vms)
    }

    /// Two VMs with every kind of property and device, small images so that
    /// corruptions land on the structure more often than on the payload.
    pub(crate) fn realistic_bundle() -> Vec<u8> {
        let mut linux = good("linux", 0);
        linux.kernel = vec![0x14; 128];
        linux.initrd = Some((vec![7; 48], 0x4000_0000 + 32 * MIB));
        linux.devices = vec![("blk", Some(4096), Some(vec![9; 32])), ("console", None, None)];
        let mut bare = good("bare", 1);
        bare.cpus = vec![1, 2];
        bare.kernel = vec![0xd5; 64];
        bare.devices = vec![("console", None, None)];
        bundle(&[linux, bare])
    }

    #[test]
    fn the_realistic_bundle_is_good() {
        let blob = realistic_bundle();
        let parsed = parse_bundle(&blob, 4).unwrap();
        assert!(parsed.vms.iter().all(Result::is_ok), "{:?}", parsed.vms);
        assert_eq!(parsed.vms[0].as_ref().unwrap().devices.len(), 2);
    }

    #[test]
    fn refuses_a_damaged_bundle_saying_what_is_wrong() {
        let mut blob = realistic_bundle();
        blob.truncate(blob.len() - 1);
        let err = parse_bundle(&blob, 4).unwrap_err();
        let ConfigError::Malformed(e) = err else { panic!("{err:?}") };
        assert!(matches!(e, FdtError::TotalSizePastBlob { .. }), "{e:?}");
        assert_eq!(err.to_string(), alloc::format!("boot bundle: {e}"));
        assert!(err.to_string().contains("totalsize"), "{err}");
    }

    /// Corrupted bundles (seeded, so a failure can be replayed) are refused or
    /// read, never panicked on. With the host DTB's 40,000 this makes 100,000.
    #[test]
    fn corrupted_bundles_never_panic() {
        const SEED: u64 = 0xb0d1_e5ee;
        let good = realistic_bundle();
        let mut corruptor = Corruptor::new(SEED);
        let mut blob = Vec::new();
        let (mut read, mut malformed) = (0, 0);
        for i in 0..60_000 {
            corruptor.corrupt(&good, &mut blob);
            let outcome = catch_unwind(AssertUnwindSafe(|| parse_bundle(&blob, 4).map(|b| b.vms.len())))
                .unwrap_or_else(|_| panic!("variant {i} (seed {SEED:#x}) panicked parse_bundle"));
            match outcome {
                Ok(_) => read += 1,
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.len() > "boot bundle: ".len(), "variant {i}: {e:?}");
                    if let ConfigError::Malformed(e) = e {
                        malformed += 1;
                        assert!(message.ends_with(&e.to_string()) && message.contains("0x"), "{message}");
                    }
                }
            }
        }
        assert!(read > 100 && malformed > 30_000, "{read} read, {malformed} malformed");
    }

    #[test]
    fn a_cpu_given_twice_refuses_only_the_second_vm() {
        let blob = bundle(&[good("a", 0), good("b", 0), good("c", 1)]);
        let parsed = parse_bundle(&blob, 2).unwrap();
        assert!(parsed.vms[0].is_ok());
        assert_eq!(parsed.vms[1], Err(ConfigError::CpuTaken { vm: 1, cpu: 0, owner: 0 }));
        assert!(parsed.vms[2].is_ok());
        assert_eq!(
            parsed.vms[1].as_ref().unwrap_err().to_string(),
            "vm[1].cpus: CPU 0 is already given to vm[0]"
        );
    }

    #[test]
    fn refuses_cpus_the_machine_lacks() {
        assert_eq!(refusal(good("a", 2)), ConfigError::NoSuchCpu { vm: 0, cpu: 2, host_cpus: 2 });
        let mut twice = good("a", 0);
        twice.cpus = vec![1, 1];
        assert!(matches!(refusal(twice), ConfigError::Property { property: "cpus", .. }));
    }

    #[test]
    fn refuses_bad_memory_sizes() {
        for size in [None, Some(0), Some(3 * MIB), Some(qemu_virt::RAM_MAX_SIZE + 2 * MIB)] {
            let mut vm = good("a", 0);
            vm.memory = size;
            assert!(matches!(refusal(vm), ConfigError::Property { property: "memory-size", .. }), "{size:?}");
        }
    }

    #[test]
    fn refuses_images_that_do_not_fit_or_overlap() {
        let mut big = good("a", 0);
        big.kernel = vec![0; (64 * MIB) as usize];
        assert!(matches!(refusal(big), ConfigError::Property { property: "kernel", .. }));
        let mut entry = good("a", 0);
        entry.entry = 0x4000_0000;
        assert!(matches!(refusal(entry), ConfigError::Property { property: "entry", .. }));
        let mut dtb = good("a", 0);
        dtb.dtb_addr = 0x4020_0800;
        assert!(matches!(refusal(dtb), ConfigError::Property { property: "dtb-addr", .. }));
        let mut dtb_out = good("a", 0);
        dtb_out.dtb_addr = 0x4000_0000 + 64 * MIB - 8;
        assert!(matches!(refusal(dtb_out), ConfigError::Property { property: "dtb-addr", .. }));
        let mut initrd = good("a", 0);
        initrd.initrd = Some((vec![0; 8192], 0x4020_0000));
        assert!(matches!(refusal(initrd), ConfigError::Property { property: "initrd-addr", .. }));
        let mut initrd_out = good("a", 0);
        initrd_out.initrd = Some((vec![0; 8192], 0x4000_0000 + 64 * MIB - 4096));
        assert!(matches!(refusal(initrd_out), ConfigError::Property { property: "initrd", .. }));
    }
}
