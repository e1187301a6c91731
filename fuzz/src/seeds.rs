//! The seed inputs of the `bundle` and `host_dtb` targets, and the test that keeps
//! the checked-in copies under `corpus/` in step with them.
//!
//! The fuzzer mutates what it is given: seeds that are valid, realistic inputs let
//! it start from the deep end (every property of every node read and checked)
//! instead of rediscovering the FDT format. The bundles follow
//! `platform::bundle`'s format, written by the same writer `cargo xtask bundle` uses, with small
//! images so that mutations land on the structure; the host DTB has QEMU virt's
//! shape. `corpus/host_dtb/qemu-virt-2cpu.dtb` is not generated here: it is the DTB
//! of QEMU 7.2's `-M virt,gic-version=3,virtualization=on -smp 2 -m 1G` with
//! `-initrd` and `-append`, dumped with `dumpdtb` and packed with
//! `dtc -I dtb -O dtb`.
//!
//! To rewrite the generated seeds after a format change:
//! `SLUICE_WRITE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml --lib`.

use platform::bundle::read::Header;
use platform::bundle::spec::{CpuList, DeviceKind, DeviceSpec, DiskSpec, Medium, VmSpec};
use platform::bundle::write::{write, VmEntry};
use vm_fdt::{FdtWriter, FdtWriterResult};

const MIB: u64 = 1 << 20;
const RAM_BASE: u64 = platform::qemu_virt::RAM_BASE;

const CONSOLE: DeviceSpec<'static> = DeviceSpec { kind: DeviceKind::Console, legacy: false };

/// A VM the way the tools lay one out: the image at 2 MiB into RAM, the DTB in the
/// last 2 MiB of `memory`, the initrd (if any) below it.
fn vm(name: &'static str, cpus: &[u32], memory: u64, initrd: Option<&'static [u8]>) -> VmSpec<'static> {
    let kernel_addr = RAM_BASE + 2 * MIB;
    let dtb_addr = RAM_BASE + memory - 2 * MIB;
    VmSpec {
        name,
        cpus: CpuList::new(cpus).expect("a seed VM has few CPUs"),
        memory_size: memory,
        host_base: None,
        kernel: &[0x14, 0, 0, 0x14, 0x1f, 0x20, 0x03, 0xd5],
        kernel_addr,
        entry: kernel_addr,
        dtb_addr,
        initrd: initrd.map(|data| (data, (dtb_addr - data.len() as u64) & !0xfff)),
        bootargs: None,
    }
}

/// The `bundle` target's seeds: (file name, contents).
pub fn bundles() -> Vec<(&'static str, Vec<u8>)> {
    let blk = |legacy, read_only| DeviceSpec {
        kind: DeviceKind::Blk(DiskSpec {
            medium: Medium::Ram { size: 4096, image: Some(&[9; 32]) },
            read_only,
            serial: Some("disk0"),
        }),
        legacy,
    };
    let mut linux = vm("linux", &[0], 64 * MIB, Some(&[7; 48]));
    linux.bootargs = Some("console=hvc0 earlycon=pl011,0x9000000");
    let linux: VmEntry<'_> = (linux, vec![blk(false, false), CONSOLE]);
    // A disk image file: the machine's own device, found by its ID.
    let file = DeviceSpec {
        kind: DeviceKind::Blk(DiskSpec {
            medium: Medium::HostDevice { id: "sluice-1-1" },
            read_only: false,
            serial: None,
        }),
        legacy: false,
    };
    let bare = (vm("bare", &[1, 2], 64 * MIB, None), vec![CONSOLE, file]);
    let mut pinned = vm("pinned", &[0], 32 * MIB, None);
    pinned.host_base = Some(0x5000_0000);
    let pinned = (pinned, vec![blk(true, true), DeviceSpec { legacy: true, ..CONSOLE }]);
    let seven: Vec<VmEntry<'_>> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .zip(0..)
        .map(|(name, cpu)| (vm(name, &[cpu], 64 * MIB, None), vec![]))
        .collect();
    let header = |level, trace| Header { log_level: Some(level), trace };

    [
        ("two-vms.dtb", write(&header("debug", true), &[linux, bare])),
        ("hello.dtb", write(&header("info", false), &[(vm("hello", &[0], 64 * MIB, None), vec![])])),
        ("legacy-pinned.dtb", write(&header("trace", true), &[pinned])),
        ("seven-vms.dtb", write(&header("warn", true), &seven)),
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
