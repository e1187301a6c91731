//! The guest DTB writer, `write_guest_dtb`, on any spec, its output read back.
//!
//! Invariants: nothing panics; a spec is refused only for the reasons documented
//! (CPU count, an initrd outside RAM, a blob over the size limit, a string the
//! writer cannot hold); a written DTB passes `fdt_check`, is at most
//! GUEST_DTB_MAX_SIZE, and says what the spec said: the memory node's base and
//! size, one `cpu@N` per vCPU with reg N, the redistributor region sized for the
//! vCPUs, `/chosen`'s bootargs, boot count and initrd start and end, and one
//! `virtio,mmio` node per device in its slot with its SPI.
#![no_main]

use fdt::node::FdtNode;
use fdt::Fdt;
use hypervisor::fdt_check;
use hypervisor::guest_dtb::{write_guest_dtb, GuestDtbError, GuestDtbSpec, MAX_CPUS};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use platform::{bundle, qemu_virt, Region};

#[derive(Debug, Arbitrary)]
struct Input {
    /// RAM: QEMU virt's base and a multiple of 2 MiB most of the time, anything
    /// otherwise.
    realistic_memory: bool,
    memory_base: u64,
    memory_size: u64,
    cpus: u8,
    bootargs: Option<String>,
    /// The initrd: an offset into RAM and a size, or any region.
    initrd: Option<(bool, u64, u64)>,
    boot_count: u32,
    virtio_devices: u8,
    pmu: bool,
}

fuzz_target!(|input: Input| {
    sluice_fuzz::init_logging();
    let memory = if input.realistic_memory {
        let size = (input.memory_size % (qemu_virt::RAM_MAX_SIZE / bundle::MEMORY_GRANULE) + 1)
            * bundle::MEMORY_GRANULE;
        Region::new(qemu_virt::RAM_BASE, size)
    } else {
        Region::new(input.memory_base, input.memory_size)
    };
    let initrd = input.initrd.map(|(inside, at, size)| {
        if inside && memory.size > 0 {
            let offset = at % memory.size;
            Region::new(memory.base.wrapping_add(offset), size % (memory.size - offset).saturating_add(1))
        } else {
            Region::new(at, size)
        }
    });
    let spec = GuestDtbSpec {
        memory,
        cpus: u32::from(input.cpus % (MAX_CPUS as u8 + 2)),
        bootargs: input.bootargs.as_deref(),
        initrd,
        boot_count: input.boot_count,
        virtio_devices: u32::from(input.virtio_devices) % (qemu_virt::VIRTIO_MMIO_SLOTS + 1),
        pmu: input.pmu,
    };
    let blob = match write_guest_dtb(&spec) {
        Ok(blob) => blob,
        Err(e) => {
            let expected = match e {
                GuestDtbError::CpuCount(n) => n == spec.cpus && (n == 0 || n > MAX_CPUS),
                GuestDtbError::InitrdOutsideMemory { initrd, memory } => {
                    Some(initrd) == spec.initrd && !memory.contains_range(initrd.base, initrd.size)
                }
                GuestDtbError::TooLarge { size } => size as u64 > bundle::GUEST_DTB_MAX_SIZE,
                GuestDtbError::Fdt(_) => spec.bootargs.is_some_and(|b| b.contains('\0')),
            };
            assert!(expected, "{spec:?} refused: {e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(blob.len() as u64 <= bundle::GUEST_DTB_MAX_SIZE);
    assert_eq!(fdt_check::check(&blob), Ok(()), "{spec:?}");
    let fdt = Fdt::new(&blob).expect("the written DTB reads");
    let root = fdt.find_node("/").expect("a root");
    // One walk over the root's children (each walk re-parses the blob).
    let children: Vec<FdtNode<'_, '_>> = root.children().collect();
    let child = |name: &str| children.iter().copied().find(|c| c.name == name);

    let memory_node = child(&format!("memory@{:x}", memory.base)).expect("the memory node");
    assert_eq!(memory_node.property("reg").map(|p| p.value), Some(&be64(&[memory.base, memory.size])[..]));

    let cpus: Vec<FdtNode<'_, '_>> = child("cpus").expect("/cpus").children().collect();
    assert_eq!(cpus.len(), spec.cpus as usize);
    for (n, cpu) in cpus.iter().enumerate() {
        assert_eq!(cpu.name, format!("cpu@{n:x}"));
        assert_eq!(cpu.property("reg").map(|p| p.value), Some(&(n as u32).to_be_bytes()[..]));
    }
    let gic = child("intc@8000000").expect("the GIC");
    let gicr_size = u64::from(spec.cpus) * qemu_virt::GICR_FRAME_SIZE;
    let gic_reg = be64(&[qemu_virt::GICD.base, qemu_virt::GICD.size, qemu_virt::GICR_BASE, gicr_size]);
    assert_eq!(gic.property("reg").map(|p| p.value), Some(&gic_reg[..]));

    let chosen = child("chosen").expect("/chosen");
    let value = |name: &str| chosen.property(name).map(|p| p.value);
    let bootargs = spec.bootargs.map(|b| [b.as_bytes(), &[0]].concat());
    assert_eq!(value("bootargs"), bootargs.as_deref());
    assert_eq!(value("stdout-path"), Some(&b"/pl011@9000000\0"[..]));
    assert_eq!(value("sluice,boot-count"), Some(&spec.boot_count.to_be_bytes()[..]));
    let start = spec.initrd.map(|r| r.base.to_be_bytes());
    let end = spec.initrd.map(|r| (r.base + r.size).to_be_bytes());
    assert_eq!(value("linux,initrd-start"), start.as_ref().map(|b| &b[..]));
    assert_eq!(value("linux,initrd-end"), end.as_ref().map(|b| &b[..]));

    let pmu = children.iter().find(|n| n.name == "pmu");
    assert_eq!(pmu.is_some(), spec.pmu, "a /pmu node exactly when the guest has the PMU");
    assert!(children.iter().any(|n| n.name == "pl031@9010000"), "every guest has its clock");

    let virtio: Vec<&FdtNode<'_, '_>> = children
        .iter()
        .filter(|n| n.property("compatible").map(|p| p.value) == Some(&b"virtio,mmio\0"[..]))
        .collect();
    assert_eq!(virtio.len(), spec.virtio_devices as usize);
    for (slot, node) in virtio.iter().enumerate() {
        let region = qemu_virt::virtio_mmio_slot(slot as u32);
        assert_eq!(node.name, format!("virtio_mmio@{:x}", region.base));
        assert_eq!(node.property("reg").map(|p| p.value), Some(&be64(&[region.base, region.size])[..]));
        let spi = qemu_virt::VIRTIO_MMIO_FIRST_SPI + slot as u32;
        let interrupts: Vec<u8> = [0, spi, 4].iter().flat_map(|c: &u32| c.to_be_bytes()).collect();
        assert_eq!(node.property("interrupts").map(|p| p.value), Some(&interrupts[..]));
        assert!(node.property("dma-coherent").is_some());
    }
});

fn be64(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}
