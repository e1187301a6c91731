//! The device tree each guest boots with, written by the hypervisor.
//!
//! Nodes have the shapes of QEMU virt's own DTB, so Linux and bare-metal code built
//! for that board find their way: the structure follows the Devicetree Specification
//! v0.4 (section 3: root, `/memory`, `/chosen`, `/cpus` and `cpu` nodes), the PSCI
//! node follows Linux's `arm/psci.yaml` binding, the UART `arm,pl011` and
//! `arm,primecell` bindings with a `fixed-clock` as its clock.
//!
//! The GICv3 (`arm,gic-v3`, redistributor region sized for the vCPUs) is the root's
//! `interrupt-parent`; the architected timer lists its four PPIs like QEMU virt's
//! (secure, non-secure physical, virtual, hypervisor), the PMU (when the guest has
//! it) its PPI, and the PL011 and the PL031 their SPIs. Each
//! virtio-mmio device gets a `virtio,mmio` node in its QEMU virt slot, with its SPI
//! and `dma-coherent`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use platform::{bundle, qemu_virt, Region};
use vm_fdt::FdtWriter;

/// Most vCPUs a guest DTB describes: MPIDR Aff0 numbers the CPUs, and a GICv3 SGI
/// target list reaches Aff0 values 0 to 15 only.
pub const MAX_CPUS: u32 = 16;

/// Root `model` of every guest DTB.
pub const MODEL: &str = "Sluice guest (QEMU virt layout)";

/// Path of the guest's PL011 node, which `/chosen/stdout-path` names.
const UART_PATH: &str = "/pl011@9000000";

/// Phandles this writer hands out.
mod phandle {
    /// The `/apb-pclk` fixed clock.
    pub const APB_PCLK: u32 = 1;
    /// The interrupt controller.
    pub const GIC: u32 = 2;
}

/// Interrupt specifier cells for the GICv3 binding: type, number, flags.
mod irq {
    /// An SPI.
    pub const SPI: u32 = 0;
    /// A PPI.
    pub const PPI: u32 = 1;
    /// Level-sensitive, active high.
    pub const LEVEL_HIGH: u32 = 4;
}

/// PSCI 0.2 function IDs (Arm DEN 0022, "PSCI Function IDs"), given for clients
/// that only know the PSCI 0.1 `arm,psci` binding.
mod psci_fn {
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON, SMC64 calling convention.
    pub const CPU_ON_64: u32 = 0xc400_0003;
}

/// What goes into one guest's device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestDtbSpec<'a> {
    /// The guest's RAM (guest-physical).
    pub memory: Region,
    /// Number of vCPUs; their MPIDR Aff0 values are `0..cpus`.
    pub cpus: u32,
    /// The kernel command line, if any.
    pub bootargs: Option<&'a str>,
    /// The initrd (guest-physical), if any.
    pub initrd: Option<Region>,
    /// How many times the VM was started before this boot (`SYSTEM_RESET`s), for
    /// `/chosen/sluice,boot-count`.
    pub boot_count: u32,
    /// Number of virtio-mmio devices, in slots `0..virtio_devices`.
    pub virtio_devices: u32,
    /// Whether the guest has its CPUs' PMU (a `/pmu` node).
    pub pmu: bool,
}

/// Why no guest DTB was written.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestDtbError {
    /// The CPU count is zero or above [`MAX_CPUS`].
    CpuCount(u32),
    /// The initrd does not lie inside the guest's RAM.
    InitrdOutsideMemory {
        /// The initrd's region.
        initrd: Region,
        /// The guest's RAM.
        memory: Region,
    },
    /// The blob is larger than [`bundle::GUEST_DTB_MAX_SIZE`].
    TooLarge {
        /// Size of the blob in bytes.
        size: usize,
    },
    /// The device-tree writer refused a node or property (such as a NUL byte in the
    /// command line).
    Fdt(vm_fdt::Error),
}

impl fmt::Display for GuestDtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CpuCount(n) => write!(f, "a guest needs 1 to {MAX_CPUS} CPUs, not {n}"),
            Self::InitrdOutsideMemory { initrd, memory } => write!(
                f,
                "initrd at {:#x} size {:#x} is outside guest RAM at {:#x} size {:#x}",
                initrd.base, initrd.size, memory.base, memory.size
            ),
            Self::TooLarge { size } => write!(
                f,
                "guest DTB of {size} bytes exceeds the {} bytes reserved for it",
                bundle::GUEST_DTB_MAX_SIZE
            ),
            Self::Fdt(e) => write!(f, "writing the guest DTB: {e}"),
        }
    }
}

impl From<vm_fdt::Error> for GuestDtbError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Fdt(e)
    }
}

/// Writes the flattened device tree for one guest.
///
/// # Errors
///
/// - [`GuestDtbError::CpuCount`] if `spec.cpus` is 0 or above [`MAX_CPUS`];
/// - [`GuestDtbError::InitrdOutsideMemory`] if the initrd is not inside `spec.memory`;
/// - [`GuestDtbError::TooLarge`] if the blob exceeds [`bundle::GUEST_DTB_MAX_SIZE`];
/// - [`GuestDtbError::Fdt`] if `vm-fdt` refuses a property (a NUL in the bootargs).
pub fn write_guest_dtb(spec: &GuestDtbSpec) -> Result<Vec<u8>, GuestDtbError> {
    if spec.cpus == 0 || spec.cpus > MAX_CPUS {
        return Err(GuestDtbError::CpuCount(spec.cpus));
    }
    if let Some(initrd) = spec.initrd {
        if !spec.memory.contains_range(initrd.base, initrd.size) {
            return Err(GuestDtbError::InitrdOutsideMemory { initrd, memory: spec.memory });
        }
    }

    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    // Devicetree spec 3.2: root node.
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", MODEL)?;
    fdt.property_u32("interrupt-parent", phandle::GIC)?;

    write_psci(&mut fdt)?;
    write_cpus(&mut fdt, spec.cpus)?;
    write_memory(&mut fdt, spec.memory)?;
    write_gic(&mut fdt, spec.cpus)?;
    write_timer(&mut fdt)?;
    if spec.pmu {
        write_pmu(&mut fdt)?;
    }
    write_uart(&mut fdt)?;
    write_rtc(&mut fdt)?;
    for slot in 0..spec.virtio_devices {
        write_virtio_mmio(&mut fdt, slot)?;
    }
    write_chosen(&mut fdt, spec)?;

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > bundle::GUEST_DTB_MAX_SIZE {
        return Err(GuestDtbError::TooLarge { size: blob.len() });
    }
    Ok(blob)
}

/// A string-list property value.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `/psci`: PSCI 1.0 through the `hvc` conduit (a guest's `smc` is served the same).
fn write_psci(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", strings(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]))?;
    fdt.property_string("method", "hvc")?;
    fdt.property_u32("cpu_on", psci_fn::CPU_ON_64)?;
    fdt.property_u32("cpu_off", psci_fn::CPU_OFF)?;
    fdt.end_node(node)
}

/// `/cpus` with one `cpu@N` per vCPU (devicetree spec 3.7, 3.8), `reg` = MPIDR Aff0.
fn write_cpus(fdt: &mut FdtWriter, cpus: u32) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for cpu in 0..cpus {
        let cpu_node = fdt.begin_node(&format!("cpu@{cpu:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_u32("reg", cpu)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu_node)?;
    }
    fdt.end_node(node)
}

/// `/memory@BASE` (devicetree spec 3.4).
fn write_memory(fdt: &mut FdtWriter, memory: Region) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node(&format!("memory@{:x}", memory.base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[memory.base, memory.size])?;
    fdt.end_node(node)
}

/// `/intc@8000000`: the GICv3 (Linux `arm,gic-v3.yaml`): distributor, then one
/// redistributor region holding a frame per vCPU.
fn write_gic(fdt: &mut FdtWriter, cpus: u32) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node(&format!("intc@{:x}", qemu_virt::GICD.base))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_u32("#redistributor-regions", 1)?;
    let gicd = qemu_virt::GICD;
    let gicr_size = u64::from(cpus) * qemu_virt::GICR_FRAME_SIZE;
    fdt.property_array_u64("reg", &[gicd.base, gicd.size, qemu_virt::GICR_BASE, gicr_size])?;
    fdt.property_phandle(phandle::GIC)?;
    fdt.end_node(node)
}

/// `/timer`: the architected timer's PPIs (Linux `arm,arch_timer.yaml`).
fn write_timer(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let mut cells = Vec::new();
    for ppi in [
        qemu_virt::SECURE_TIMER_PPI,
        qemu_virt::PHYSICAL_TIMER_PPI,
        qemu_virt::VIRTUAL_TIMER_PPI,
        qemu_virt::HYP_TIMER_PPI,
    ] {
        cells.extend_from_slice(&[irq::PPI, ppi, irq::LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupts", &cells)?;
    fdt.end_node(node)
}

/// `/pmu`: the PMUv3 and its overflow PPI (Linux `arm/pmu.yaml`), as QEMU virt
/// describes it.
fn write_pmu(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("pmu")?;
    fdt.property_string("compatible", "arm,armv8-pmuv3")?;
    fdt.property_array_u32("interrupts", &[irq::PPI, qemu_virt::PMU_PPI, irq::LEVEL_HIGH])?;
    fdt.end_node(node)
}

/// `/pl031@9010000`: the real-time clock (Linux `rtc/arm,pl031.yaml`), clocked
/// like the PL011, with its SPI.
fn write_rtc(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let rtc = qemu_virt::RTC;
    let node = fdt.begin_node(&format!("pl031@{:x}", rtc.base))?;
    fdt.property_string_list("compatible", strings(&["arm,pl031", "arm,primecell"]))?;
    fdt.property_array_u64("reg", &[rtc.base, rtc.size])?;
    fdt.property_string("clock-names", "apb_pclk")?;
    fdt.property_u32("clocks", phandle::APB_PCLK)?;
    fdt.property_array_u32("interrupts", &[irq::SPI, qemu_virt::RTC_SPI, irq::LEVEL_HIGH])?;
    fdt.end_node(node)
}

/// The PL011's clock and the PL011 itself, as QEMU virt describes them.
fn write_uart(fdt: &mut FdtWriter) -> Result<(), vm_fdt::Error> {
    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", 24_000_000)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(phandle::APB_PCLK)?;
    fdt.end_node(clock)?;

    let uart = qemu_virt::UART;
    let node = fdt.begin_node(&UART_PATH[1..])?;
    fdt.property_string_list("compatible", strings(&["arm,pl011", "arm,primecell"]))?;
    fdt.property_array_u64("reg", &[uart.base, uart.size])?;
    fdt.property_string_list("clock-names", strings(&["uartclk", "apb_pclk"]))?;
    fdt.property_array_u32("clocks", &[phandle::APB_PCLK, phandle::APB_PCLK])?;
    fdt.property_array_u32("interrupts", &[irq::SPI, qemu_virt::UART_SPI, irq::LEVEL_HIGH])?;
    fdt.end_node(node)
}

/// `/virtio_mmio@ADDR` for slot `slot` (Linux `virtio/mmio.yaml`): its registers, its
/// SPI (level: the line is high while InterruptStatus is not zero), and
/// `dma-coherent`, since the device reads guest memory through the caches.
fn write_virtio_mmio(fdt: &mut FdtWriter, slot: u32) -> Result<(), vm_fdt::Error> {
    let region = qemu_virt::virtio_mmio_slot(slot);
    let node = fdt.begin_node(&format!("virtio_mmio@{:x}", region.base))?;
    fdt.property_string("compatible", "virtio,mmio")?;
    fdt.property_array_u64("reg", &[region.base, region.size])?;
    fdt.property_array_u32(
        "interrupts",
        &[irq::SPI, qemu_virt::VIRTIO_MMIO_FIRST_SPI + slot, irq::LEVEL_HIGH],
    )?;
    fdt.property_null("dma-coherent")?;
    fdt.end_node(node)
}

/// `/chosen` (devicetree spec 3.6; the initrd properties per Linux's
/// `chosen.yaml`), 64-bit values as the root's `#address-cells` says.
fn write_chosen(fdt: &mut FdtWriter, spec: &GuestDtbSpec) -> Result<(), vm_fdt::Error> {
    let node = fdt.begin_node("chosen")?;
    if let Some(bootargs) = spec.bootargs {
        fdt.property_string("bootargs", bootargs)?;
    }
    fdt.property_string("stdout-path", UART_PATH)?;
    fdt.property_u32("sluice,boot-count", spec.boot_count)?;
    if let Some(initrd) = spec.initrd {
        fdt.property_u64("linux,initrd-start", initrd.base)?;
        // Checked against RAM above, so the end does not wrap.
        fdt.property_u64("linux,initrd-end", initrd.base + initrd.size)?;
    }
    fdt.end_node(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::Fdt;

    const RAM: Region = Region::new(0x4000_0000, 0x800_0000);

    fn spec(cpus: u32) -> GuestDtbSpec<'static> {
        GuestDtbSpec {
            memory: RAM,
            cpus,
            bootargs: Some("console=ttyAMA0 earlycon"),
            initrd: Some(Region::new(0x4400_0000, 0x12_3000)),
            boot_count: 0,
            virtio_devices: 0,
            pmu: false,
        }
    }

    /// The raw value of `name` in the node at `path`.
    fn prop<'a>(fdt: &Fdt<'a>, path: &str, name: &str) -> Option<&'a [u8]> {
        let node = fdt.find_node(path).unwrap_or_else(|| panic!("no node {path}"));
        node.property(name).map(|p| p.value)
    }

    fn u32s(cells: &[u32]) -> Vec<u8> {
        cells.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    fn u64s(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// A string (list) as the DTB stores it: each string NUL-terminated.
    fn strs(items: &[&str]) -> Vec<u8> {
        items.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    #[test]
    fn root_psci_and_cpus() {
        let blob = write_guest_dtb(&spec(4)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(prop(&fdt, "/", "#address-cells"), Some(&u32s(&[2])[..]));
        assert_eq!(prop(&fdt, "/", "#size-cells"), Some(&u32s(&[2])[..]));
        assert_eq!(prop(&fdt, "/", "compatible"), Some(&strs(&["linux,dummy-virt"])[..]));
        assert_eq!(fdt.root().model(), MODEL);

        let psci = strs(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
        assert_eq!(prop(&fdt, "/psci", "compatible"), Some(&psci[..]));
        assert_eq!(prop(&fdt, "/psci", "method"), Some(&strs(&["hvc"])[..]));
        assert_eq!(prop(&fdt, "/psci", "cpu_on"), Some(&u32s(&[0xc400_0003])[..]));
        assert_eq!(prop(&fdt, "/psci", "cpu_off"), Some(&u32s(&[0x8400_0002])[..]));

        assert_eq!(prop(&fdt, "/cpus", "#address-cells"), Some(&u32s(&[1])[..]));
        assert_eq!(prop(&fdt, "/cpus", "#size-cells"), Some(&u32s(&[0])[..]));
        let cpus: Vec<_> = fdt.find_node("/cpus").unwrap().children().collect();
        assert_eq!(cpus.len(), 4);
        for (n, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.name, format!("cpu@{n}"));
            let p = |name| cpu.property(name).map(|p| p.value);
            assert_eq!(p("device_type"), Some(&strs(&["cpu"])[..]));
            assert_eq!(p("compatible"), Some(&strs(&["arm,arm-v8"])[..]));
            assert_eq!(p("reg"), Some(&u32s(&[n as u32])[..]));
            assert_eq!(p("enable-method"), Some(&strs(&["psci"])[..]));
        }
        // The fdt crate's own view agrees.
        let ids: Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
    }

    #[test]
    fn memory_clock_and_uart() {
        let blob = write_guest_dtb(&spec(1)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(prop(&fdt, "/memory@40000000", "device_type"), Some(&strs(&["memory"])[..]));
        assert_eq!(prop(&fdt, "/memory@40000000", "reg"), Some(&u64s(&[0x4000_0000, 0x800_0000])[..]));
        let regions: Vec<_> = fdt.memory().regions().map(|r| (r.starting_address as u64, r.size)).collect();
        assert_eq!(regions, [(0x4000_0000, Some(0x800_0000))]);

        let clk = "/apb-pclk";
        assert_eq!(prop(&fdt, clk, "compatible"), Some(&strs(&["fixed-clock"])[..]));
        assert_eq!(prop(&fdt, clk, "#clock-cells"), Some(&u32s(&[0])[..]));
        assert_eq!(prop(&fdt, clk, "clock-frequency"), Some(&u32s(&[24_000_000])[..]));
        assert_eq!(prop(&fdt, clk, "clock-output-names"), Some(&strs(&["clk24mhz"])[..]));
        let phandle = prop(&fdt, clk, "phandle").unwrap();

        let uart = "/pl011@9000000";
        let compatible = strs(&["arm,pl011", "arm,primecell"]);
        assert_eq!(prop(&fdt, uart, "compatible"), Some(&compatible[..]));
        assert_eq!(prop(&fdt, uart, "reg"), Some(&u64s(&[0x0900_0000, 0x1000])[..]));
        let names = strs(&["uartclk", "apb_pclk"]);
        assert_eq!(prop(&fdt, uart, "clock-names"), Some(&names[..]));
        assert_eq!(prop(&fdt, uart, "clocks"), Some(&[phandle, phandle].concat()[..]));
        // The phandle leads back to the clock.
        let ph = u32::from_be_bytes(phandle.try_into().unwrap());
        assert_eq!(fdt.find_phandle(ph).unwrap().name, "apb-pclk");
    }

    #[test]
    fn chosen_with_bootargs_and_initrd() {
        let blob = write_guest_dtb(&spec(2)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");
        assert_eq!(prop(&fdt, "/chosen", "stdout-path"), Some(&strs(&["/pl011@9000000"])[..]));
        assert_eq!(prop(&fdt, "/chosen", "linux,initrd-start"), Some(&u64s(&[0x4400_0000])[..]));
        assert_eq!(prop(&fdt, "/chosen", "linux,initrd-end"), Some(&u64s(&[0x4412_3000])[..]));
    }

    #[test]
    fn chosen_without_bootargs_or_initrd() {
        let spec = GuestDtbSpec { bootargs: None, initrd: None, boot_count: 2, ..spec(1) };
        let blob = write_guest_dtb(&spec).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        let names: Vec<_> = chosen.properties().map(|p| p.name).collect();
        assert_eq!(names, ["stdout-path", "sluice,boot-count"]);
        assert_eq!(chosen.property("sluice,boot-count").unwrap().as_usize(), Some(2));
        assert_eq!(fdt.chosen().bootargs(), None);
        assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");
    }

    #[test]
    fn memory_node_is_named_after_its_base() {
        let spec = GuestDtbSpec { memory: Region::new(0x8000_0000, 0x20_0000), initrd: None, ..spec(1) };
        let blob = write_guest_dtb(&spec).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(prop(&fdt, "/memory@80000000", "reg"), Some(&u64s(&[0x8000_0000, 0x20_0000])[..]));
    }

    #[test]
    fn refuses_bad_specs() {
        for cpus in [0, MAX_CPUS + 1] {
            assert_eq!(write_guest_dtb(&spec(cpus)), Err(GuestDtbError::CpuCount(cpus)));
        }
        assert!(write_guest_dtb(&spec(MAX_CPUS)).is_ok());
        let initrd = Region::new(0x47ff_f000, 0x2000);
        let err = write_guest_dtb(&GuestDtbSpec { initrd: Some(initrd), ..spec(1) });
        assert_eq!(err, Err(GuestDtbError::InitrdOutsideMemory { initrd, memory: RAM }));
        let err = write_guest_dtb(&GuestDtbSpec { bootargs: Some("a\0b"), ..spec(1) });
        assert_eq!(err, Err(GuestDtbError::Fdt(vm_fdt::Error::InvalidString)));
    }

    #[test]
    fn refuses_blobs_over_the_size_limit() {
        let limit = bundle::GUEST_DTB_MAX_SIZE as usize;
        let long = "x".repeat(limit);
        let err = write_guest_dtb(&GuestDtbSpec { bootargs: Some(&long), ..spec(1) });
        assert!(matches!(err, Err(GuestDtbError::TooLarge { size }) if size > limit), "{err:?}");
        // A long but fitting command line is fine.
        let fits = "y".repeat(limit / 2);
        let blob = write_guest_dtb(&GuestDtbSpec { bootargs: Some(&fits), ..spec(1) }).unwrap();
        assert_eq!(Fdt::new(&blob).unwrap().chosen().bootargs(), Some(&fits[..]));
    }

    #[test]
    fn describes_the_gic_and_the_timer() {
        let blob = write_guest_dtb(&spec(2)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let gic = fdt.find_node("/intc@8000000").unwrap();
        assert_eq!(gic.compatible().unwrap().first(), "arm,gic-v3");
        assert!(gic.property("interrupt-controller").is_some());
        let regs: Vec<_> =
            gic.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)).collect();
        assert_eq!(regs, [(0x0800_0000, 0x1_0000), (0x080a_0000, 0x4_0000)]);
        let root = fdt.find_node("/").unwrap();
        assert_eq!(root.property("interrupt-parent").unwrap().as_usize(), Some(phandle::GIC as usize));
        assert_eq!(gic.property("phandle").unwrap().as_usize(), Some(phandle::GIC as usize));
        let timer = fdt.find_node("/timer").unwrap();
        let cells: Vec<u32> = timer
            .property("interrupts")
            .unwrap()
            .value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(cells, [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
        let uart = fdt.find_node("/pl011@9000000").unwrap();
        assert_eq!(uart.property("interrupts").unwrap().value, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4]);
    }

    #[test]
    fn describes_each_virtio_slot() {
        let blob = write_guest_dtb(&GuestDtbSpec { virtio_devices: 2, ..spec(1) }).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let virtio = fdt.all_nodes().filter(|n| n.compatible().is_some_and(|c| c.first() == "virtio,mmio"));
        assert_eq!(virtio.count(), 2);
        let slot1 = fdt.find_node("/virtio_mmio@a000200").unwrap();
        assert_eq!(slot1.compatible().unwrap().first(), "virtio,mmio");
        let reg = slot1.reg().unwrap().next().unwrap();
        assert_eq!((reg.starting_address as u64, reg.size), (0x0a00_0200, Some(0x200)));
        assert_eq!(slot1.property("interrupts").unwrap().value, [0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 4]);
        assert!(slot1.property("dma-coherent").is_some());
        assert!(fdt.find_node("/virtio_mmio@a000000").is_some());
        assert!(fdt.find_node("/virtio_mmio@a000400").is_none());
    }

    #[test]
    fn describes_the_rtc_always_and_the_pmu_when_the_guest_has_it() {
        let blob = write_guest_dtb(&spec(1)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt.find_node("/pmu").is_none());
        let rtc = fdt.find_node("/pl031@9010000").unwrap();
        assert_eq!(
            prop(&fdt, "/pl031@9010000", "compatible"),
            Some(&strs(&["arm,pl031", "arm,primecell"])[..])
        );
        let reg = rtc.reg().unwrap().next().unwrap();
        assert_eq!((reg.starting_address as u64, reg.size), (0x0901_0000, Some(0x1000)));
        assert_eq!(rtc.property("interrupts").unwrap().value, u32s(&[0, 2, 4]));
        assert_eq!(prop(&fdt, "/pl031@9010000", "clocks"), Some(&u32s(&[phandle::APB_PCLK])[..]));
        assert_eq!(prop(&fdt, "/pl031@9010000", "clock-names"), Some(&strs(&["apb_pclk"])[..]));

        let blob = write_guest_dtb(&GuestDtbSpec { pmu: true, ..spec(2) }).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(prop(&fdt, "/pmu", "compatible"), Some(&strs(&["arm,armv8-pmuv3"])[..]));
        assert_eq!(prop(&fdt, "/pmu", "interrupts"), Some(&u32s(&[1, 7, 4])[..]));
    }
}
