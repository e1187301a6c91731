//! The seed inputs of the `bundle` and `host_dtb` targets, and the test that keeps
//! the checked-in copies under `corpus/` in step with them.
//!
//! The fuzzer mutates what it is given: seeds that are valid, realistic inputs let
//! it start from the deep end (every property of every node read and checked)
//! instead of rediscovering the FDT format. The bundles follow
//! `platform::bundle`'s format as `cargo xtask bundle` writes it, with small
//! images so that mutations land on the structure; the host DTB has QEMU virt's
//! shape. `corpus/host_dtb/qemu-virt-2cpu.dtb` is not generated here: it is the DTB
//! of QEMU 7.2's `-M virt,gic-version=3,virtualization=on -smp 2 -m 1G` with
//! `-initrd` and `-append`, dumped with `dumpdtb` and packed with
//! `dtc -I dtb -O dtb`.
//!
//! To rewrite the generated seeds after a format change:
//! `SLUICE_WRITE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml --lib`.

use platform::bundle as b;
use vm_fdt::{FdtWriter, FdtWriterResult};

const MIB: u64 = 1 << 20;
const RAM_BASE: u64 = platform::qemu_virt::RAM_BASE;

/// One virtio device of a seed VM.
struct Device {
    kind: &'static str,
    legacy: bool,
    disk_size: u64,
    image: &'static [u8],
    read_only: bool,
    serial: Option<&'static str>,
}

const CONSOLE: Device =
    Device { kind: b::KIND_CONSOLE, legacy: false, disk_size: 0, image: &[], read_only: false, serial: None };

/// One VM of a seed bundle.
struct Vm {
    name: &'static str,
    cpus: &'static [u32],
    memory: u64,
    host_base: Option<u64>,
    kernel: &'static [u8],
    initrd: Option<&'static [u8]>,
    bootargs: Option<&'static str>,
    devices: Vec<Device>,
}

impl Vm {
    /// A VM the way the tools lay one out: the image at 2 MiB into RAM, the DTB in
    /// the last 2 MiB, the initrd below it.
    fn new(name: &'static str, cpus: &'static [u32]) -> Self {
        Vm {
            name,
            cpus,
            memory: 64 * MIB,
            host_base: None,
            kernel: &[0x14, 0, 0, 0x14, 0x1f, 0x20, 0x03, 0xd5],
            initrd: None,
            bootargs: None,
            devices: Vec::new(),
        }
    }
}

fn write_bundle(log_level: &str, trace: bool, vms: &[Vm]) -> FdtWriterResult<Vec<u8>> {
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("compatible", b::COMPATIBLE)?;
    w.property_string(b::LOG_LEVEL, log_level)?;
    w.property_string(b::TRACE, if trace { b::TRACE_ON } else { b::TRACE_OFF })?;
    for (index, vm) in vms.iter().enumerate() {
        let node = w.begin_node(&format!("{}@{index}", b::VM_NODE))?;
        w.property_string(b::VM_NAME, vm.name)?;
        w.property_array_u32(b::VM_CPUS, vm.cpus)?;
        w.property_u64(b::VM_MEMORY_SIZE, vm.memory)?;
        if let Some(base) = vm.host_base {
            w.property_u64(b::VM_HOST_BASE, base)?;
        }
        let kernel_addr = RAM_BASE + 2 * MIB;
        let dtb_addr = RAM_BASE + vm.memory - 2 * MIB;
        w.property(b::VM_KERNEL, vm.kernel)?;
        w.property_u64(b::VM_KERNEL_ADDR, kernel_addr)?;
        w.property_u64(b::VM_ENTRY, kernel_addr)?;
        w.property_u64(b::VM_DTB_ADDR, dtb_addr)?;
        if let Some(initrd) = vm.initrd {
            w.property(b::VM_INITRD, initrd)?;
            w.property_u64(b::VM_INITRD_ADDR, (dtb_addr - initrd.len() as u64) & !0xfff)?;
        }
        if let Some(bootargs) = vm.bootargs {
            w.property_string(b::VM_BOOTARGS, bootargs)?;
        }
        for (slot, d) in vm.devices.iter().enumerate() {
            let dev = w.begin_node(&format!("{}@{slot}", b::DEVICE_NODE))?;
            if d.legacy {
                w.property_null(b::DEVICE_LEGACY)?;
            }
            w.property_string(b::DEVICE_KIND, d.kind)?;
            if d.kind == b::KIND_BLK {
                w.property_u64(b::DISK_SIZE, d.disk_size)?;
                if !d.image.is_empty() {
                    w.property(b::DISK, d.image)?;
                }
                if d.read_only {
                    w.property_null(b::DISK_READ_ONLY)?;
                }
                if let Some(serial) = d.serial {
                    w.property_string(b::DISK_SERIAL, serial)?;
                }
            }
            w.end_node(dev)?;
        }
        w.end_node(node)?;
    }
    w.end_node(root)?;
    w.finish()
}

/// The `bundle` target's seeds: (file name, contents).
pub fn bundles() -> Vec<(&'static str, Vec<u8>)> {
    let blk = |legacy, read_only| Device {
        kind: b::KIND_BLK,
        legacy,
        disk_size: 4096,
        image: &[9; 32],
        read_only,
        serial: Some("disk0"),
    };
    let mut linux = Vm::new("linux", &[0]);
    linux.initrd = Some(&[7; 48]);
    linux.bootargs = Some("console=hvc0 earlycon=pl011,0x9000000");
    linux.devices = vec![blk(false, false), CONSOLE];
    let mut bare = Vm::new("bare", &[1, 2]);
    bare.devices = vec![CONSOLE];

    let mut pinned = Vm::new("pinned", &[0]);
    pinned.memory = 32 * MIB;
    pinned.host_base = Some(0x5000_0000);
    pinned.devices = vec![blk(true, true), Device { legacy: true, ..CONSOLE }];

    let names = ["a", "b", "c", "d", "e", "f", "g"];
    const CPUS: [&[u32]; 7] = [&[0], &[1], &[2], &[3], &[4], &[5], &[6]];
    let seven: Vec<Vm> = names.iter().zip(CPUS).map(|(name, cpus)| Vm::new(name, cpus)).collect();

    [
        ("two-vms.dtb", write_bundle("debug", true, &[linux, bare])),
        ("hello.dtb", write_bundle("info", false, &[Vm::new("hello", &[0])])),
        ("legacy-pinned.dtb", write_bundle("trace", true, &[pinned])),
        ("seven-vms.dtb", write_bundle("warn", true, &seven)),
    ]
    .into_iter()
    .map(|(name, blob)| (name, blob.expect("a seed bundle")))
    .collect()
}

/// The `host_dtb` target's generated seed: QEMU virt's shape, 2 CPUs, 1 GiB, a
/// GICv3, two PL011s (the second named by `stdout-path` through an alias), PSCI,
/// the boot bundle in `/chosen`.
pub fn host_dtbs() -> Vec<(&'static str, Vec<u8>)> {
    fn write() -> FdtWriterResult<Vec<u8>> {
        let mut w = FdtWriter::new()?;
        let root = w.begin_node("")?;
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_string("compatible", "linux,dummy-virt")?;
        let aliases = w.begin_node("aliases")?;
        w.property_string("serial1", "/pl011@9040000")?;
        w.end_node(aliases)?;
        let chosen = w.begin_node("chosen")?;
        w.property_string("stdout-path", "serial1:115200n8")?;
        w.property_string("bootargs", "sluice.log=debug sluice.trace=off")?;
        w.property_u64("linux,initrd-start", 0x4800_0000)?;
        w.property_u64("linux,initrd-end", 0x4810_0000)?;
        w.end_node(chosen)?;
        let mem = w.begin_node("memory@40000000")?;
        w.property_string("device_type", "memory")?;
        w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])?;
        w.end_node(mem)?;
        let cpus = w.begin_node("cpus")?;
        w.property_u32("#address-cells", 1)?;
        w.property_u32("#size-cells", 0)?;
        for i in 0..2u32 {
            let cpu = w.begin_node(&format!("cpu@{i}"))?;
            w.property_string("device_type", "cpu")?;
            w.property_string("compatible", "arm,cortex-a57")?;
            w.property_u32("reg", i)?;
            w.property_string("enable-method", "psci")?;
            w.end_node(cpu)?;
        }
        w.end_node(cpus)?;
        let gic = w.begin_node("intc@8000000")?;
        w.property_string("compatible", "arm,gic-v3")?;
        w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000])?;
        w.property_u32("#interrupt-cells", 3)?;
        w.property_null("interrupt-controller")?;
        w.end_node(gic)?;
        for base in [0x0900_0000u64, 0x0904_0000] {
            let uart = w.begin_node(&format!("pl011@{base:x}"))?;
            w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()])?;
            w.property_array_u64("reg", &[base, 0x1000])?;
            w.property_array_u32("interrupts", &[0, 1, 4])?;
            w.end_node(uart)?;
        }
        let psci = w.begin_node("psci")?;
        w.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
        w.property_string("method", "smc")?;
        w.end_node(psci)?;
        w.end_node(root)?;
        w.finish()
    }
    vec![("qemu-like.dtb", write().expect("the seed host DTB"))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
    }

    /// Compares (or, with `SLUICE_WRITE_SEEDS` set, writes) the checked-in seeds.
    fn check(target: &str, seeds: &[(&str, Vec<u8>)]) {
        let write = std::env::var_os("SLUICE_WRITE_SEEDS").is_some();
        for (name, bytes) in seeds {
            let path = corpus(target).join(name);
            if write {
                std::fs::create_dir_all(corpus(target)).unwrap();
                std::fs::write(&path, bytes).unwrap();
            } else {
                let on_disk = std::fs::read(&path).unwrap_or_default();
                assert!(&on_disk == bytes, "{} is stale; rewrite it (see the module docs)", path.display());
            }
        }
    }

    #[test]
    fn bundle_seeds_are_good_and_checked_in() {
        let seeds = bundles();
        for (name, blob) in &seeds {
            let bundle = hypervisor::vm::config::parse_bundle(blob, 8).unwrap();
            assert!(bundle.vms.iter().all(Result::is_ok), "{name}: {:?}", bundle.vms);
        }
        check("bundle", &seeds);
    }

    #[test]
    fn host_dtb_seeds_are_good_and_checked_in() {
        let seeds = host_dtbs();
        for (name, blob) in &seeds {
            let blob: &'static [u8] = Box::leak(blob.clone().into_boxed_slice());
            let host = hypervisor::host::read_host_dtb(blob).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(host.uart.base, 0x0904_0000, "{name}: the UART the alias names");
        }
        check("host_dtb", &seeds);
        let qemu: &'static [u8] =
            Box::leak(std::fs::read(corpus("host_dtb").join("qemu-virt-2cpu.dtb")).unwrap().into());
        let host = hypervisor::host::read_host_dtb(qemu).unwrap();
        assert_eq!((host.cpus.len(), host.bootargs), (2, Some("sluice.log=debug")));
    }
}
