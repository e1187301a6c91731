//! What the host machine is, read from the DTB the loader passed in x0.
//!
//! Nothing about the host that its DTB says is hard-coded: RAM, CPUs, the GIC, the
//! UART, PSCI and where the loader put the boot bundle all come from here.

use alloc::vec::Vec;
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
}

/// Why the host DTB is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// Not a device tree.
    BadDtb,
    /// No `/memory` node with a `reg`.
    NoMemory,
    /// No `arm,pl011` UART.
    NoUart,
    /// No CPUs under `/cpus`.
    NoCpus,
}

/// Reads the host DTB in `blob`.
///
/// # Errors
///
/// [`HostError`] when something Sluice can't run without is missing.
pub fn read_host_dtb(blob: &'static [u8]) -> Result<HostInfo, HostError> {
    let fdt = Fdt::new(blob).map_err(|_| HostError::BadDtb)?;
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
    let cpus: Vec<u64> = fdt
        .cpus()
        .filter(|c| c.property("device_type").and_then(|p| p.as_str()) == Some("cpu"))
        .map(|c| c.ids().first() as u64)
        .collect();
    if cpus.is_empty() {
        return Err(HostError::NoCpus);
    }
    let region_of = |node: fdt::node::FdtNode<'_, '_>, i: usize| {
        node.reg()
            .and_then(|mut r| r.nth(i))
            .and_then(|r| Some(Region::new(r.starting_address as u64, r.size? as u64)))
    };
    let stdout =
        fdt.chosen().stdout().filter(|n| n.compatible().is_some_and(|c| c.all().any(|c| c == "arm,pl011")));
    let uart_node = stdout.or_else(|| fdt.find_compatible(&["arm,pl011"])).ok_or(HostError::NoUart)?;
    let uart = region_of(uart_node, 0).ok_or(HostError::NoUart)?;
    // GICv3 binding: <type number flags>, type 0 = SPI, INTID = 32 + number.
    let uart_intid = uart_node.property("interrupts").and_then(|p| {
        let cell =
            |i: usize| p.value.get(i * 4..i * 4 + 4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        (cell(0)? == 0).then_some(32 + cell(1)?)
    });
    let gic = fdt.find_compatible(&["arm,gic-v3"]);
    let chosen = fdt.find_node("/chosen");
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
        psci_method: fdt.find_node("/psci").and_then(|p| p.property("method")).and_then(|p| p.as_str()),
        bundle,
        bootargs: fdt.chosen().bootargs(),
    })
}

/// The value of `key=` in a command line, if present.
pub fn bootarg<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs.split_whitespace().find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    /// A DTB shaped like QEMU virt's: 2 CPUs, 1 GiB, GICv3, PL011, PSCI over SMC.
    fn qemu_like_dtb() -> &'static [u8] {
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
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(read_host_dtb(&[0; 64]), Err(HostError::BadDtb));
    }

    #[test]
    fn bootarg_lookup() {
        assert_eq!(bootarg("a=1 sluice.log=warn b", "sluice.log"), Some("warn"));
        assert_eq!(bootarg("sluice.logx=1", "sluice.log"), None);
        assert_eq!(bootarg("", "x"), None);
    }
}
