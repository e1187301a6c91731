//! What the host machine is, read from the DTB the loader passed in x0.
//!
//! Nothing about the host that its DTB says is hard-coded: RAM, CPUs, the GIC, the
//! UART, PSCI and where the loader put the boot bundle all come from here.
//!
//! The blob's structure is checked first ([`fdt_check`]); the `fdt` readers that
//! can still panic on a well-formed tree (`chosen`, `cpus`, `Cpu::ids`,
//! `Chosen::bootargs`/`stdout`, and `Fdt::find_node`'s alias fallback) are not
//! used: the helpers below read those nodes and properties themselves.

use crate::fdt_check::{self, FdtError};
use alloc::vec::Vec;
use core::fmt;
use fdt::node::FdtNode;
use fdt::Fdt;
use platform::Region;

/// The host machine as its DTB describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// RAM regions.
    pub ram: Vec<Region>,
    /// MPIDR of each CPU, in `/cpus` order (CPU index = position).
    pub cpus: Vec<u64>,
    /// The UART Sluice owns (from `/chosen/stdout-path`, else the first PL011).
    pub uart: Region,
    /// The UART's interrupt (INTID), if its node names an SPI.
    pub uart_intid: Option<u32>,
    /// GICv3 distributor.
    pub gicd: Option<Region>,
    /// GICv3 redistributor region.
    pub gicr: Option<Region>,
    /// PSCI conduit: "smc" or "hvc".
    pub psci_method: Option<&'static str>,
    /// The boot bundle (the loader's initrd).
    pub bundle: Option<Region>,
    /// Host command line.
    pub bootargs: Option<&'static str>,
    /// The machine's virtio-mmio transports (`virtio,mmio`), in DTB order; most are
    /// empty (device ID 0), the rest are devices QEMU was given (`-device`).
    pub virtio_mmio: Vec<HostVirtio>,
    /// The PPI of the PMU's overflow interrupt, if the DTB has an
    /// `arm,armv8-pmuv3` node that names one.
    pub pmu_ppi: Option<u32>,
    /// The board's real-time clock (`arm,pl031`), if it has one.
    pub rtc: Option<Region>,
}

/// A virtio-mmio transport of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostVirtio {
    /// Its registers.
    pub region: Region,
    /// Its interrupt (INTID), if its node names an SPI.
    pub intid: Option<u32>,
}

/// Why the host DTB is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// Not a device tree.
    BadDtb,
    /// A device tree, but a damaged one.
    Malformed(FdtError),
    /// No `/memory` node with a `reg`.
    NoMemory,
    /// No `arm,pl011` UART.
    NoUart,
    /// No CPUs under `/cpus`.
    NoCpus,
    /// A CPU's `reg` is missing, or is not an MPIDR of `#address-cells` (1 or 2)
    /// cells.
    CpuReg {
        /// The CPU's index (its position among the CPUs under `/cpus`).
        cpu: usize,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDtb => write!(f, "host DTB: not a flattened device tree"),
            Self::Malformed(e) => write!(f, "host DTB: {e}"),
            Self::NoMemory => write!(f, "host DTB: no memory node with a reg"),
            Self::NoUart => write!(f, "host DTB: no arm,pl011 UART with a reg"),
            Self::NoCpus => write!(f, "host DTB: no CPUs under /cpus"),
            Self::CpuReg { cpu } => write!(
                f,
                "host DTB: CPU {cpu} under /cpus: reg is missing or is not an MPIDR of #address-cells (1 or 2) cells"
            ),
        }
    }
}

/// Reads the host DTB in `blob`.
///
/// # Errors
///
/// [`HostError`] when the blob is not a well-formed device tree, or when
/// something Sluice can't run without is missing.
pub fn read_host_dtb(blob: &'static [u8]) -> Result<HostInfo, HostError> {
    fdt_check::check(blob).map_err(|e| {
        if e.is_not_a_device_tree() {
            HostError::BadDtb
        } else {
            HostError::Malformed(e)
        }
    })?;
    let fdt = Fdt::new(blob).map_err(|_| HostError::BadDtb)?;
    // The check leaves the root first and unnamed, so this is found without the
    // alias fallback.
    let root = fdt.find_node("/").ok_or(HostError::BadDtb)?;
    let ram: Vec<Region> = fdt
        .all_nodes()
        .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("memory"))
        .flat_map(|n| n.reg().into_iter().flatten())
        .filter_map(|r| Some(Region::new(r.starting_address as u64, r.size? as u64)))
        .filter(|r| r.size > 0)
        .collect();
    if ram.is_empty() {
        return Err(HostError::NoMemory);
    }
    let cpus = read_cpus(root)?;
    if cpus.is_empty() {
        return Err(HostError::NoCpus);
    }
    let region_of = |node: fdt::node::FdtNode<'_, '_>, i: usize| {
        node.reg()
            .and_then(|mut r| r.nth(i))
            .and_then(|r| Some(Region::new(r.starting_address as u64, r.size? as u64)))
    };
    let chosen = child(root, "chosen");
    let stdout = chosen
        .and_then(|c| string(c, "stdout-path"))
        .and_then(|path| stdout_node(root, path))
        .filter(|n| n.compatible().is_some_and(|c| c.all().any(|c| c == "arm,pl011")));
    let uart_node = stdout.or_else(|| fdt.find_compatible(&["arm,pl011"])).ok_or(HostError::NoUart)?;
    let uart = region_of(uart_node, 0).ok_or(HostError::NoUart)?;
    let uart_intid = spi_intid(uart_node);
    let virtio_mmio = fdt
        .all_nodes()
        .filter(|n| n.compatible().is_some_and(|c| c.all().any(|c| c == "virtio,mmio")))
        .filter_map(|n| Some(HostVirtio { region: region_of(n, 0)?, intid: spi_intid(n) }))
        .collect();
    let gic = fdt.find_compatible(&["arm,gic-v3"]);
    let cell =
        |name: &str| chosen.and_then(|c| c.property(name)).and_then(|p| p.as_usize()).map(|v| v as u64);
    let bundle = match (cell("linux,initrd-start"), cell("linux,initrd-end")) {
        (Some(start), Some(end)) if end > start => Some(Region::new(start, end - start)),
        _ => None,
    };
    Ok(HostInfo {
        ram,
        cpus,
        uart,
        uart_intid,
        gicd: gic.and_then(|g| region_of(g, 0)),
        gicr: gic.and_then(|g| region_of(g, 1)),
        psci_method: child(root, "psci").and_then(|p| p.property("method")).and_then(|p| p.as_str()),
        bundle,
        bootargs: chosen.and_then(|c| string(c, "bootargs")),
        virtio_mmio,
        pmu_ppi: fdt.find_compatible(&["arm,armv8-pmuv3"]).and_then(ppi),
        rtc: fdt.find_compatible(&["arm,pl031"]).and_then(|n| region_of(n, 0)),
    })
}

/// The cells of `node`'s first interrupt (GICv3 binding: `<type number flags>`).
fn interrupt_cells(node: FdtNode<'_, '_>) -> Option<(u32, u32)> {
    let value = node.property("interrupts")?.value;
    let cell = |i: usize| value.get(i * 4..i * 4 + 4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    Some((cell(0)?, cell(1)?))
}

/// The number of `node`'s first interrupt, if it is a PPI (type 1, numbers 0 to 15).
fn ppi(node: FdtNode<'_, '_>) -> Option<u32> {
    interrupt_cells(node).filter(|&(kind, number)| kind == 1 && number < 16).map(|(_, number)| number)
}

/// The INTID of `node`'s first interrupt, if it is an SPI. GICv3 binding:
/// `<type number flags>`, type 0 = SPI, INTID = 32 + number; SPIs are INTIDs 32 to
/// 1019 (GICv3 architecture specification, 2.2.1).
fn spi_intid(node: FdtNode<'_, '_>) -> Option<u32> {
    interrupt_cells(node).filter(|&(kind, spi)| kind == 0 && spi < 988).map(|(_, spi)| 32 + spi)
}

/// The MPIDR of each CPU under `/cpus`, in order: the nodes named `cpu` or
/// `cpu@...` whose `device_type` is `"cpu"`, their `reg` read as
/// `#address-cells` of `/cpus` cells (DTSpec §3.8).
fn read_cpus(root: FdtNode<'_, '_>) -> Result<Vec<u64>, HostError> {
    let cpus = child(root, "cpus").ok_or(HostError::NoCpus)?;
    // The check leaves `#address-cells` either absent or one cell.
    let address_cells = cpus.cell_sizes().address_cells;
    cpus.children()
        .filter(|c| c.name.split('@').next() == Some("cpu"))
        .filter(|c| c.property("device_type").and_then(|p| p.as_str()) == Some("cpu"))
        .enumerate()
        .map(|(cpu, node)| {
            let reg = node.property("reg").map(|p| p.value).unwrap_or_default();
            let mpidr = match address_cells {
                1 => reg.get(..4).and_then(|c| c.try_into().ok()).map(|c| u64::from(u32::from_be_bytes(c))),
                2 => reg.get(..8).and_then(|c| c.try_into().ok()).map(u64::from_be_bytes),
                _ => None,
            };
            mpidr.ok_or(HostError::CpuReg { cpu })
        })
        .collect()
}

/// The first child of `node` that `name` names: the whole name when `name` has a
/// unit address, the part before `@` otherwise (as `Fdt::find_node` matches).
fn child<'b, 'a>(node: FdtNode<'b, 'a>, name: &str) -> Option<FdtNode<'b, 'a>> {
    let with_address = name.contains('@');
    node.children()
        .find(|c| if with_address { c.name == name } else { c.name.split('@').next() == Some(name) })
}

/// The node at the absolute `path`.
fn node_at<'b, 'a>(root: FdtNode<'b, 'a>, path: &str) -> Option<FdtNode<'b, 'a>> {
    let path = path.strip_prefix('/')?;
    path.split('/').filter(|part| !part.is_empty()).try_fold(root, child)
}

/// The node `stdout-path` names: a path or an alias, optionally followed by `:`
/// and options (DTSpec §3.6). An alias is resolved once, to an absolute path, so
/// aliases that name each other cannot send the lookup round in circles.
fn stdout_node<'b, 'a>(root: FdtNode<'b, 'a>, stdout_path: &str) -> Option<FdtNode<'b, 'a>> {
    let path = stdout_path.split(':').next()?;
    if path.starts_with('/') {
        return node_at(root, path);
    }
    let target = child(root, "aliases").and_then(|aliases| string(aliases, path))?;
    node_at(root, target)
}

/// A string property of `node`: its value without the terminating NUL, if it
/// has one and is UTF-8.
fn string<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let value = node.property(name)?.value.strip_suffix(&[0])?;
    core::str::from_utf8(value).ok()
}

/// The value of `key=` in a command line, if present.
pub fn bootarg<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs.split_whitespace().find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fdt_check::tests::Corruptor;
    use alloc::string::ToString;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use vm_fdt::FdtWriter;

    /// A DTB shaped like QEMU virt's: 2 CPUs, 1 GiB, GICv3, PL011, PSCI over SMC.
    pub(crate) fn qemu_like_dtb() -> &'static [u8] {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.property_string("bootargs", "sluice.log=debug quiet").unwrap();
        w.property_u64("linux,initrd-start", 0x4800_0000).unwrap();
        w.property_u64("linux,initrd-end", 0x4810_0000).unwrap();
        w.end_node(chosen).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000]).unwrap();
        w.end_node(mem).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..2u32 {
            let cpu = w.begin_node(&alloc::format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", i).unwrap();
            w.end_node(cpu).unwrap();
        }
        w.end_node(cpus).unwrap();
        let gic = w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_array_u64("reg", &[0x0800_0000, 0x1_0000, 0x080a_0000, 0xf6_0000]).unwrap();
        w.end_node(gic).unwrap();
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property_string_list("compatible", vec!["arm,pl011".into(), "arm,primecell".into()]).unwrap();
        w.property_array_u64("reg", &[0x0900_0000, 0x1000]).unwrap();
        w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        w.end_node(uart).unwrap();
        let psci = w.begin_node("psci").unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(psci).unwrap();
        // Two of QEMU's 32 transports, as it lists them: the highest slot first.
        for slot in [31u64, 30] {
            let base = 0x0a00_0000 + slot * 0x200;
            let node = w.begin_node(&alloc::format!("virtio_mmio@{base:x}")).unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.property_array_u64("reg", &[base, 0x200]).unwrap();
            w.property_array_u32("interrupts", &[0, 16 + slot as u32, 1]).unwrap();
            w.end_node(node).unwrap();
        }
        w.end_node(root).unwrap();
        Box::leak(w.finish().unwrap().into_boxed_slice())
    }

    #[test]
    fn reads_a_qemu_virt_dtb() {
        let host = read_host_dtb(qemu_like_dtb()).unwrap();
        assert_eq!(host.ram, [Region::new(0x4000_0000, 0x4000_0000)]);
        assert_eq!(host.cpus, [0, 1]);
        assert_eq!(host.uart, Region::new(0x0900_0000, 0x1000));
        assert_eq!(host.uart_intid, Some(33));
        assert_eq!(host.gicd, Some(Region::new(0x0800_0000, 0x1_0000)));
        assert_eq!(host.gicr, Some(Region::new(0x080a_0000, 0xf6_0000)));
        assert_eq!(host.psci_method, Some("smc"));
        assert_eq!(host.bundle, Some(Region::new(0x4800_0000, 0x10_0000)));
        assert_eq!(bootarg(host.bootargs.unwrap(), "sluice.log"), Some("debug"));
        assert_eq!(
            host.virtio_mmio,
            [
                HostVirtio { region: Region::new(0x0a00_3e00, 0x200), intid: Some(79) },
                HostVirtio { region: Region::new(0x0a00_3c00, 0x200), intid: Some(78) },
            ]
        );
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(read_host_dtb(&[0; 64]), Err(HostError::BadDtb));
    }

    /// A node for `dtb`: name, properties (raw values), children.
    struct Node {
        name: &'static str,
        props: Vec<(&'static str, Vec<u8>)>,
        children: Vec<Node>,
    }

    fn node(name: &'static str, props: Vec<(&'static str, Vec<u8>)>, children: Vec<Node>) -> Node {
        Node { name, props, children }
    }

    impl Node {
        fn child(&mut self, name: &str) -> &mut Node {
            self.children.iter_mut().find(|c| c.name == name).unwrap()
        }

        /// Sets (or adds) a property.
        fn set(&mut self, name: &'static str, value: Vec<u8>) -> &mut Self {
            self.props.retain(|(n, _)| *n != name);
            self.props.push((name, value));
            self
        }

        fn unset(&mut self, name: &str) -> &mut Self {
            self.props.retain(|(n, _)| *n != name);
            self
        }

        fn remove(&mut self, name: &str) -> &mut Self {
            self.children.retain(|c| c.name != name);
            self
        }
    }

    fn text(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn cells(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// QEMU virt's shape again, as data the tests below edit, with a second PL011.
    fn qemu_like() -> Node {
        let cpu = |reg: u32| {
            let name = if reg == 0 { "cpu@0" } else { "cpu@1" };
            node(name, vec![("device_type", text("cpu")), ("reg", cells(&[reg]))], vec![])
        };
        let uart = |name, base| {
            node(
                name,
                vec![
                    ("compatible", text("arm,pl011")),
                    ("reg", cells(&[0, base, 0, 0x1000])),
                    ("interrupts", cells(&[0, 1, 4])),
                ],
                vec![],
            )
        };
        node(
            "",
            vec![("#address-cells", cells(&[2])), ("#size-cells", cells(&[2]))],
            vec![
                node(
                    "chosen",
                    vec![
                        ("stdout-path", text("/pl011@9000000")),
                        ("bootargs", text("sluice.log=debug")),
                        ("linux,initrd-start", cells(&[0, 0x4800_0000])),
                        ("linux,initrd-end", cells(&[0, 0x4810_0000])),
                    ],
                    vec![],
                ),
                node(
                    "memory@40000000",
                    vec![("device_type", text("memory")), ("reg", cells(&[0, 0x4000_0000, 0, 0x4000_0000]))],
                    vec![],
                ),
                node(
                    "cpus",
                    vec![("#address-cells", cells(&[1])), ("#size-cells", cells(&[0]))],
                    vec![cpu(0), cpu(1)],
                ),
                uart("pl011@9000000", 0x0900_0000),
                uart("pl011@9040000", 0x0904_0000),
                node("psci", vec![("method", text("hvc"))], vec![]),
            ],
        )
    }

    fn dtb(root: &Node) -> &'static [u8] {
        fn write(w: &mut FdtWriter, n: &Node) {
            let handle = w.begin_node(n.name).unwrap();
            for (name, value) in &n.props {
                w.property(name, value).unwrap();
            }
            for child in &n.children {
                write(w, child);
            }
            w.end_node(handle).unwrap();
        }
        let mut w = FdtWriter::new().unwrap();
        write(&mut w, root);
        Box::leak(w.finish().unwrap().into_boxed_slice())
    }

    const SECOND_UART: Region = Region::new(0x0904_0000, 0x1000);

    #[test]
    fn a_dtb_without_chosen_is_read_without_it() {
        let mut tree = qemu_like();
        tree.remove("chosen");
        let host = read_host_dtb(dtb(&tree)).unwrap();
        assert_eq!((host.bundle, host.bootargs), (None, None));
        assert_eq!(host.uart, Region::new(0x0900_0000, 0x1000), "the first PL011");
    }

    #[test]
    fn empty_bootargs_and_stdout_path_read_as_absent() {
        let mut tree = qemu_like();
        tree.child("chosen").set("bootargs", vec![]).set("stdout-path", vec![]);
        let host = read_host_dtb(dtb(&tree)).unwrap();
        assert_eq!(host.bootargs, None);
        assert_eq!(host.uart, Region::new(0x0900_0000, 0x1000));
        tree.child("chosen").set("bootargs", text(""));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().bootargs, Some(""));
    }

    #[test]
    fn stdout_path_names_a_uart_by_path_or_alias_with_options() {
        let mut tree = qemu_like();
        tree.child("chosen").set("stdout-path", text("/pl011@9040000"));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart, SECOND_UART);
        tree.child("chosen").set("stdout-path", text("/pl011@9040000:115200n8"));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart, SECOND_UART);
        tree.children.push(node("aliases", vec![("serial1", text("/pl011@9040000"))], vec![]));
        tree.child("chosen").set("stdout-path", text("serial1:115200n8"));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart, SECOND_UART);
        tree.child("chosen").set("stdout-path", text("serial1"));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart, SECOND_UART);
    }

    /// `Fdt::find_node` would resolve these aliases through each other until the
    /// stack overflowed.
    #[test]
    fn aliases_that_name_each_other_do_not_send_the_lookup_round() {
        let mut tree = qemu_like();
        tree.children.push(node(
            "aliases",
            vec![("serial0", text("serial0")), ("a", text("b")), ("b", text("a"))],
            vec![],
        ));
        for stdout in ["serial0", "a"] {
            tree.child("chosen").set("stdout-path", text(stdout));
            assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart, Region::new(0x0900_0000, 0x1000), "{stdout}");
        }
        // A missing /psci is not looked for among the aliases either.
        tree.remove("psci");
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().psci_method, None);
    }

    /// `32 + number` overflowed on a number near `u32::MAX`.
    #[test]
    fn a_uart_interrupt_beyond_the_spis_is_no_interrupt() {
        let mut tree = qemu_like();
        tree.child("pl011@9000000").set("interrupts", cells(&[0, 0xffff_ffff, 4]));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart_intid, None);
        tree.child("pl011@9000000").set("interrupts", cells(&[0, 988, 4]));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart_intid, None);
        tree.child("pl011@9000000").set("interrupts", cells(&[0, 987, 4]));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().uart_intid, Some(1019));
    }

    #[test]
    fn a_dtb_without_cpus_is_refused() {
        let mut tree = qemu_like();
        tree.remove("cpus");
        assert_eq!(read_host_dtb(dtb(&tree)), Err(HostError::NoCpus));
    }

    #[test]
    fn cpu_regs_that_cannot_be_read_are_refused() {
        let mut tree = qemu_like();
        tree.child("cpus").child("cpu@1").unset("reg");
        assert_eq!(read_host_dtb(dtb(&tree)), Err(HostError::CpuReg { cpu: 1 }));
        let mut tree = qemu_like();
        tree.child("cpus").set("#address-cells", cells(&[3]));
        assert_eq!(read_host_dtb(dtb(&tree)), Err(HostError::CpuReg { cpu: 0 }));
        let mut tree = qemu_like();
        tree.child("cpus").set("#address-cells", cells(&[2]));
        assert_eq!(
            read_host_dtb(dtb(&tree)),
            Err(HostError::CpuReg { cpu: 0 }),
            "one cell where two are due"
        );
        tree.child("cpus").child("cpu@0").set("reg", cells(&[0x1, 0x0000_0100]));
        tree.child("cpus").child("cpu@1").set("reg", cells(&[0, 0x0000_0101]));
        assert_eq!(read_host_dtb(dtb(&tree)).unwrap().cpus, [0x1_0000_0100, 0x101]);
    }

    #[test]
    fn a_cell_count_of_the_wrong_length_is_refused() {
        let mut tree = qemu_like();
        tree.child("cpus").set("#address-cells", vec![0, 1]);
        let err = read_host_dtb(dtb(&tree)).unwrap_err();
        assert!(
            matches!(
                err,
                HostError::Malformed(FdtError::BadCellCount { name: "#address-cells", len: 2, .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        // Four bytes off totalsize: the strings block now runs past it.
        let mut truncated = qemu_like_dtb().to_vec();
        let total = u32::from_be_bytes([truncated[4], truncated[5], truncated[6], truncated[7]]);
        truncated[4..8].copy_from_slice(&(total - 4).to_be_bytes());
        let malformed = read_host_dtb(Box::leak(truncated.into_boxed_slice())).unwrap_err();
        assert!(matches!(malformed, HostError::Malformed(_)), "{malformed:?}");
        for err in [
            HostError::BadDtb,
            malformed,
            HostError::NoMemory,
            HostError::NoUart,
            HostError::NoCpus,
            HostError::CpuReg { cpu: 1 },
        ] {
            let message = err.to_string();
            assert!(message.starts_with("host DTB: ") && message.len() > 20, "{message}");
            if let HostError::Malformed(e) = err {
                assert!(message.ends_with(&e.to_string()), "{message}");
            }
        }
    }

    /// Corrupted host DTBs (seeded, so a failure can be replayed) are refused or
    /// read, never panicked on. With the bundle's 60,000 this makes 100,000.
    #[test]
    fn corrupted_host_dtbs_never_panic() {
        const SEED: u64 = 0x4057_0db0;
        let good = qemu_like_dtb();
        let mut corruptor = Corruptor::new(SEED);
        let mut blob = Vec::new();
        let (mut read, mut malformed) = (0, 0);
        for i in 0..40_000 {
            corruptor.corrupt(good, &mut blob);
            // read_host_dtb wants the DTB for the life of the hypervisor.
            let leaked: &'static [u8] = Box::leak(blob.clone().into_boxed_slice());
            let result = catch_unwind(AssertUnwindSafe(|| read_host_dtb(leaked)))
                .unwrap_or_else(|_| panic!("variant {i} (seed {SEED:#x}) panicked read_host_dtb"));
            match result {
                Ok(_) => read += 1,
                Err(e) => {
                    malformed += usize::from(matches!(e, HostError::Malformed(_)));
                    assert!(e.to_string().len() > "host DTB: ".len(), "variant {i}: {e:?}");
                }
            }
        }
        assert!(read > 100 && malformed > 20_000, "{read} read, {malformed} malformed");
    }

    #[test]
    fn bootarg_lookup() {
        assert_eq!(bootarg("a=1 sluice.log=warn b", "sluice.log"), Some("warn"));
        assert_eq!(bootarg("sluice.logx=1", "sluice.log"), None);
        assert_eq!(bootarg("", "x"), None);
    }
}
