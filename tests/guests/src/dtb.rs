//! What a guest learns from its device tree: RAM, CPUs (and their MPIDRs), bootargs,
//! PSCI conduit, and where the DTB and the initrd lie (so that a memory test keeps off
//! them).
//!
//! Read with the `fdt` crate. Node and property names follow the Devicetree
//! Specification v0.4 (3.4 `/memory`, 3.6 `/chosen`, 3.7 `/cpus`) and Linux's
//! `Documentation/devicetree/bindings/arm/psci.yaml`.

use core::fmt;

use fdt::Fdt;
use platform::Region;

use crate::psci::Conduit;

/// Most `/memory` ranges kept (more are counted, not kept).
pub const MAX_MEMORY_REGIONS: usize = 4;
/// Most CPU `reg` values (MPIDR affinities) kept (more CPUs are counted, not kept).
pub const MAX_CPU_IDS: usize = 8;

/// Why a DTB could not be read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DtbError {
    /// Not a flattened device tree (bad magic, null pointer, too short).
    Invalid(fdt::FdtError),
    /// No `/memory` node with a usable `reg`.
    NoMemory,
    /// No `/cpus/cpu@*` node.
    NoCpus,
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "not a device tree: {e}"),
            Self::NoMemory => f.write_str("no /memory range"),
            Self::NoCpus => f.write_str("no /cpus/cpu node"),
        }
    }
}

/// The facts a test guest uses from its DTB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootInfo<'a> {
    memory: [Region; MAX_MEMORY_REGIONS],
    memory_count: usize,
    /// Number of `/cpus/cpu@*` nodes.
    pub cpus: usize,
    /// Each CPU node's `reg` (its MPIDR affinity fields), in DTB order.
    cpu_ids: [Option<u64>; MAX_CPU_IDS],
    /// `/chosen/bootargs`, if present.
    pub bootargs: Option<&'a str>,
    /// The conduit `/psci` `method` names, if there is one that we know.
    pub psci: Option<Conduit>,
    /// Where the DTB itself lies (its address and `totalsize`).
    pub dtb: Region,
    /// `/chosen/linux,initrd-start` .. `linux,initrd-end`, if present.
    pub initrd: Option<Region>,
    /// `/chosen/sluice,boot-count`: how many times Sluice started this VM before
    /// (0 on the first boot; absent on plain QEMU).
    pub boot_count: Option<u32>,
}

impl<'a> BootInfo<'a> {
    /// Reads the facts from `fdt`, which lies at `address`.
    ///
    /// # Errors
    ///
    /// [`DtbError::NoMemory`] or [`DtbError::NoCpus`] when a required node is missing.
    pub fn from_fdt(fdt: &Fdt<'a>, address: u64) -> Result<Self, DtbError> {
        let mut memory = [Region::new(0, 0); MAX_MEMORY_REGIONS];
        let mut memory_count = 0;
        let ranges = fdt
            .find_all_nodes("/memory")
            .filter_map(|node| node.reg())
            .flatten()
            .filter_map(|r| Some(Region::new(r.starting_address as u64, r.size? as u64)))
            .filter(|r| r.size != 0);
        for (slot, range) in memory.iter_mut().zip(ranges) {
            *slot = range;
            memory_count += 1;
        }
        if memory_count == 0 {
            return Err(DtbError::NoMemory);
        }

        let mut cpus = 0;
        let mut cpu_ids = [None; MAX_CPU_IDS];
        if let Some(node) = fdt.find_node("/cpus") {
            let cpu_nodes = node.children().filter(|c| c.name.split('@').next() == Some("cpu"));
            for cpu in cpu_nodes {
                if let Some(slot) = cpu_ids.get_mut(cpus) {
                    // One or two cells (`/cpus` `#address-cells`), as Linux's
                    // `Documentation/devicetree/bindings/arm/cpus.yaml` allows.
                    *slot = cpu.property("reg").and_then(|p| p.as_usize()).map(|r| r as u64);
                }
                cpus += 1;
            }
        }
        if cpus == 0 {
            return Err(DtbError::NoCpus);
        }

        let chosen = fdt.find_node("/chosen");
        let chosen_prop = |name: &str| chosen.and_then(|c| c.property(name));
        let bootargs = chosen_prop("bootargs").and_then(|p| p.as_str());
        let boot_count = chosen_prop("sluice,boot-count").and_then(|p| p.as_usize()).map(|n| n as u32);
        let initrd = match (
            chosen_prop("linux,initrd-start").and_then(|p| p.as_usize()),
            chosen_prop("linux,initrd-end").and_then(|p| p.as_usize()),
        ) {
            (Some(start), Some(end)) if end > start => Some(Region::new(start as u64, (end - start) as u64)),
            _ => None,
        };

        let psci = fdt
            .find_node("/psci")
            .and_then(|psci| psci.property("method"))
            .and_then(|method| method.as_str())
            .and_then(Conduit::from_method);

        Ok(Self {
            memory,
            memory_count,
            cpus,
            cpu_ids,
            bootargs,
            psci,
            dtb: Region::new(address, fdt.total_size() as u64),
            initrd,
            boot_count,
        })
    }

    /// The `/memory` ranges, in DTB order (at most [`MAX_MEMORY_REGIONS`]).
    pub fn memory(&self) -> &[Region] {
        &self.memory[..self.memory_count]
    }

    /// The memory range that holds `addr` (e.g. the guest's own image).
    pub fn ram_holding(&self, addr: u64) -> Option<Region> {
        self.memory().iter().copied().find(|r| r.contains(addr))
    }

    /// The `reg` of CPU node `index` (DTB order): the MPIDR affinity fields of that
    /// CPU, as PSCI `CPU_ON` and `AFFINITY_INFO` take them. `None` past the nodes
    /// kept, or for a node without a `reg`.
    pub fn cpu_id(&self, index: usize) -> Option<u64> {
        self.cpu_ids.get(index).copied().flatten()
    }

    /// Whether `addr` lies in some `/memory` range.
    pub fn is_ram(&self, addr: u64) -> bool {
        self.ram_holding(addr).is_some()
    }
}

#[cfg(bare_metal)]
impl BootInfo<'static> {
    /// Reads the DTB the loader passed at `address` (the boot `x0`).
    ///
    /// # Errors
    ///
    /// [`DtbError::Invalid`] if there is no DTB there, else as [`Self::from_fdt`].
    pub fn read(address: usize) -> Result<Self, DtbError> {
        #[allow(unsafe_code)]
        // SAFETY: the boot protocol puts a DTB at `address` in this guest's RAM, which
        // stays mapped and which the guest never writes (the memory test keeps off it);
        // a null address is refused by `from_ptr` before any access.
        let fdt = unsafe { Fdt::from_ptr(address as *const u8) }.map_err(DtbError::Invalid)?;
        Self::from_fdt(&fdt, address as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    /// A DTB shaped like the guest DTBs of Sluice and QEMU virt.
    fn dtb(memory: &[(u64, u64)], cpus: u32, bootargs: Option<&str>, method: Option<&str>) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for &(base, size) in memory {
            let node = w.begin_node(&format!("memory@{base:x}")).unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property_array_u64("reg", &[base, size]).unwrap();
            w.end_node(node).unwrap();
        }
        let cpus_node = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..cpus {
            let cpu = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_string("compatible", "arm,armv8").unwrap();
            w.property_u32("reg", i).unwrap();
            w.end_node(cpu).unwrap();
        }
        w.end_node(cpus_node).unwrap();
        if let Some(method) = method {
            let psci = w.begin_node("psci").unwrap();
            w.property_string("compatible", "arm,psci-1.0").unwrap();
            w.property_string("method", method).unwrap();
            w.end_node(psci).unwrap();
        }
        let chosen = w.begin_node("chosen").unwrap();
        if let Some(args) = bootargs {
            w.property_string("bootargs", args).unwrap();
        }
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn reads_a_sluice_guest_dtb() {
        let blob = dtb(&[(0x4000_0000, 64 << 20)], 1, Some("hello from the config"), Some("hvc"));
        let fdt = Fdt::new(&blob).unwrap();
        let info = BootInfo::from_fdt(&fdt, 0x43e0_0000).unwrap();
        assert_eq!(info.memory(), &[Region::new(0x4000_0000, 0x400_0000)]);
        assert_eq!(info.cpus, 1);
        assert_eq!((info.cpu_id(0), info.cpu_id(1)), (Some(0), None));
        assert_eq!(info.bootargs, Some("hello from the config"));
        assert_eq!(info.psci, Some(Conduit::Hvc));
        assert_eq!(info.dtb, Region::new(0x43e0_0000, blob.len() as u64));
        assert_eq!(info.initrd, None);
        assert_eq!(info.ram_holding(0x4020_0000), Some(Region::new(0x4000_0000, 0x400_0000)));
        assert!(!info.is_ram(0x4400_0000));
    }

    #[test]
    fn keeps_several_memory_ranges_and_counts_cpus() {
        let blob = dtb(&[(0x4000_0000, 0x1000_0000), (0x1_0000_0000, 0x2000_0000)], 4, None, Some("smc"));
        let fdt = Fdt::new(&blob).unwrap();
        let info = BootInfo::from_fdt(&fdt, 0x4800_0000).unwrap();
        assert_eq!(info.memory().len(), 2);
        assert_eq!(info.memory()[1], Region::new(0x1_0000_0000, 0x2000_0000));
        assert_eq!(info.ram_holding(0x1_1000_0000), Some(info.memory()[1]));
        assert_eq!(info.cpus, 4);
        assert_eq!(info.cpu_id(3), Some(3));
        assert_eq!(info.cpu_id(4), None);
        assert_eq!(info.bootargs, None);
        assert_eq!(info.psci, Some(Conduit::Smc));
    }

    #[test]
    fn reads_two_cell_cpu_ids_and_counts_cpus_past_the_kept_ones() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x800_0000]).unwrap();
        w.end_node(mem).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..10u64 {
            let cpu = w.begin_node(&format!("cpu@{i:x}")).unwrap();
            w.property_u64("reg", (1 << 32) | (i << 8)).unwrap();
            w.end_node(cpu).unwrap();
        }
        let map = w.begin_node("cpu-map").unwrap();
        w.end_node(map).unwrap();
        w.end_node(cpus).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let info = BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0).unwrap();
        assert_eq!(info.cpus, 10);
        assert_eq!(info.cpu_id(1), Some(0x1_0000_0100));
        assert_eq!(info.cpu_id(MAX_CPU_IDS - 1), Some(0x1_0000_0700));
        assert_eq!(info.cpu_id(MAX_CPU_IDS), None);
    }

    #[test]
    fn unknown_or_missing_psci_method_is_none() {
        let blob = dtb(&[(0x4000_0000, 0x100_0000)], 1, Some(""), Some("magic"));
        let info = BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0).unwrap();
        assert_eq!(info.psci, None);
        assert_eq!(info.bootargs, Some(""));
        let blob = dtb(&[(0x4000_0000, 0x100_0000)], 1, None, None);
        let info = BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0).unwrap();
        assert_eq!(info.psci, None);
    }

    #[test]
    fn refuses_a_dtb_without_memory_or_cpus() {
        let blob = dtb(&[], 1, None, Some("hvc"));
        assert_eq!(BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0), Err(DtbError::NoMemory));
        let blob = dtb(&[(0x4000_0000, 0x100_0000)], 0, None, Some("hvc"));
        assert_eq!(BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0), Err(DtbError::NoCpus));
    }

    #[test]
    fn reads_the_initrd_range() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x800_0000]).unwrap();
        w.end_node(mem).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        let cpu = w.begin_node("cpu@0").unwrap();
        w.end_node(cpu).unwrap();
        w.end_node(cpus).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        // QEMU writes 64-bit cells; 32-bit ones are legal too.
        w.property_u64("linux,initrd-start", 0x4400_0000).unwrap();
        w.property_u32("linux,initrd-end", 0x4410_0000).unwrap();
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let info = BootInfo::from_fdt(&Fdt::new(&blob).unwrap(), 0).unwrap();
        assert_eq!(info.initrd, Some(Region::new(0x4400_0000, 0x10_0000)));
        assert_eq!(info.cpus, 1);
        assert_eq!(info.cpu_id(0), None); // no `reg`
    }
}
