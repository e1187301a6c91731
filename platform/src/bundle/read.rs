//! Reading a bundle into specs, over any device-tree reader (the hypervisor's is
//! the `fdt` crate behind its own structure check). Every spec read is checked
//! with the rules in `spec`, so what this returns is what the tools could write.

use super::spec::{check_device_count, CpuList, DeviceKind, DeviceSpec, DiskSpec, Fault, Medium, VmSpec};
use super::{
    COMPATIBLE, CONSOLE_CHANNEL, DEVICE_KIND, DEVICE_LEGACY, DEVICE_NODE, DISK, DISK_HOST_DEVICE,
    DISK_READ_ONLY, DISK_SERIAL, DISK_SIZE, KIND_BLK, KIND_CONSOLE, LOG_LEVEL, MAX_HOST_CPUS, TRACE,
    TRACE_OFF, VM_BOOTARGS, VM_CPUS, VM_DTB_ADDR, VM_ENTRY, VM_HOST_BASE, VM_INITRD, VM_INITRD_ADDR,
    VM_KERNEL, VM_KERNEL_ADDR, VM_MEMORY_SIZE, VM_NAME, VM_NODE,
};

/// A node of a device tree whose properties live `'a` long.
pub trait Node<'a>: Sized {
    /// The node's name with its unit address (`vm@0`).
    fn name(&self) -> &str;
    /// The raw value of property `name`.
    fn property(&self, name: &str) -> Option<&'a [u8]>;
    /// The node's children, in order.
    fn children(&self) -> impl Iterator<Item = Self>;
}

/// The `fdt` crate's reader. It trusts the tree's structure: check a tree from
/// outside before reading it with this (the hypervisor's `fdt_check`).
#[cfg(feature = "fdt")]
impl<'a> Node<'a> for fdt::node::FdtNode<'_, 'a> {
    fn name(&self) -> &str {
        self.name
    }

    fn property(&self, name: &str) -> Option<&'a [u8]> {
        fdt::node::FdtNode::property(*self, name).map(|p| p.value)
    }

    fn children(&self) -> impl Iterator<Item = Self> {
        fdt::node::FdtNode::children(*self)
    }
}

/// The bundle's root properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Log level asked for, if any ("info", "debug", ...).
    pub log_level: Option<&'a str>,
    /// Whether every tracepoint is stamped (absent: on).
    pub trace: bool,
}

/// Reads the root's properties.
///
/// # Errors
///
/// Why the tree is not a bundle.
pub fn header<'a>(root: &impl Node<'a>) -> Result<Header<'a>, &'static str> {
    let compatible = root.property("compatible").and_then(|v| string(v).ok());
    if compatible != Some(COMPATIBLE) {
        return Err("compatible is not \"sluice,bundle-v1\"");
    }
    let log_level = root.property(LOG_LEVEL).and_then(|v| string(v).ok());
    let trace = root.property(TRACE).and_then(|v| string(v).ok()) != Some(TRACE_OFF);
    Ok(Header { log_level, trace })
}

/// The root's VM nodes, in order.
pub fn vm_nodes<'p, 'a, N: Node<'a>>(root: &'p N) -> impl Iterator<Item = N> + use<'p, 'a, N> {
    children_named(root, VM_NODE)
}

/// Reads and checks one VM node (not its devices: see [`devices`]).
///
/// # Errors
///
/// The first property missing, malformed or breaking a rule.
pub fn vm<'a>(node: &impl Node<'a>) -> Result<VmSpec<'a>, Fault> {
    let props = Properties(node);
    let cells = props.required(VM_CPUS)?;
    if cells.is_empty() || cells.len() % 4 != 0 {
        return Err(fault(VM_CPUS, "must be a non-empty list of 32-bit CPU indices"));
    }
    let mut cpus = [0u32; MAX_HOST_CPUS];
    for (cpu, cell) in cpus.iter_mut().zip(cells.chunks_exact(4)) {
        *cpu = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
    }
    let cpus = cpus
        .get(..cells.len() / 4)
        .and_then(CpuList::new)
        .ok_or(fault(VM_CPUS, "lists more CPUs than Sluice drives (8)"))?;
    let initrd = match props.bytes(VM_INITRD) {
        None => None,
        Some(data) => Some((data, props.required_u64(VM_INITRD_ADDR)?)),
    };
    let spec = VmSpec {
        name: props.required_string(VM_NAME)?,
        cpus,
        memory_size: props.required_u64(VM_MEMORY_SIZE)?,
        host_base: props.u64(VM_HOST_BASE)?,
        kernel: props.required(VM_KERNEL)?,
        kernel_addr: props.required_u64(VM_KERNEL_ADDR)?,
        entry: props.required_u64(VM_ENTRY)?,
        dtb_addr: props.required_u64(VM_DTB_ADDR)?,
        initrd,
        bootargs: props.string(VM_BOOTARGS)?,
    };
    spec.check()?;
    Ok(spec)
}

/// A VM node's device nodes, in slot order, each read and checked.
///
/// # Errors
///
/// An `Err((index, fault))` for a device that breaks a rule, or `(count, fault)`
/// for one device too many (after the last slot).
pub fn devices<'p, 'a, N: Node<'a>>(
    vm: &'p N,
) -> impl Iterator<Item = Result<DeviceSpec<'a>, (usize, Fault)>> + use<'p, 'a, N> {
    children_named(vm, DEVICE_NODE).enumerate().map(|(index, node)| {
        check_device_count(index + 1).and_then(|()| device(&node)).map_err(|f| (index, f))
    })
}

/// Reads and checks one device node.
///
/// # Errors
///
/// The first property missing, malformed or breaking a rule.
pub fn device<'a>(node: &impl Node<'a>) -> Result<DeviceSpec<'a>, Fault> {
    let props = Properties(node);
    let kind = match props.string(DEVICE_KIND)? {
        Some(KIND_CONSOLE) => match props.string(CONSOLE_CHANNEL)? {
            Some(name) => DeviceKind::Channel(name),
            None => DeviceKind::Console,
        },
        Some(KIND_BLK) => {
            let medium = match props.string(DISK_HOST_DEVICE)? {
                Some(id) => Medium::HostDevice { id },
                None => Medium::Ram { size: props.required_u64(DISK_SIZE)?, image: props.bytes(DISK) },
            };
            DeviceKind::Blk(DiskSpec {
                medium,
                read_only: props.bytes(DISK_READ_ONLY).is_some(),
                serial: props.string(DISK_SERIAL)?,
            })
        }
        _ => return Err(fault(DEVICE_KIND, "must be \"blk\" or \"console\"")),
    };
    let spec = DeviceSpec { kind, legacy: props.bytes(DEVICE_LEGACY).is_some() };
    spec.check()?;
    Ok(spec)
}

fn children_named<'p, 'a, N: Node<'a>>(
    parent: &'p N,
    prefix: &'static str,
) -> impl Iterator<Item = N> + use<'p, 'a, N> {
    parent.children().filter(move |child| child.name().split('@').next() == Some(prefix))
}

fn fault(property: &'static str, reason: &'static str) -> Fault {
    Fault { property, reason }
}

/// A NUL-terminated UTF-8 property value.
fn string(value: &[u8]) -> Result<&str, &'static str> {
    let value = value.strip_suffix(&[0]).ok_or("not a NUL-terminated string")?;
    core::str::from_utf8(value).map_err(|_| "not UTF-8")
}

/// A node's properties, each decoded as its type, with the property named in every fault.
struct Properties<'n, N>(&'n N);

impl<'a, N: Node<'a>> Properties<'_, N> {
    fn bytes(&self, name: &'static str) -> Option<&'a [u8]> {
        self.0.property(name)
    }

    fn required(&self, name: &'static str) -> Result<&'a [u8], Fault> {
        self.bytes(name).ok_or(fault(name, "missing"))
    }

    fn u64(&self, name: &'static str) -> Result<Option<u64>, Fault> {
        self.bytes(name)
            .map(|v| {
                <[u8; 8]>::try_from(v)
                    .map(u64::from_be_bytes)
                    .map_err(|_| fault(name, "must be a 64-bit value"))
            })
            .transpose()
    }

    fn required_u64(&self, name: &'static str) -> Result<u64, Fault> {
        self.u64(name)?.ok_or(fault(name, "missing"))
    }

    fn string(&self, name: &'static str) -> Result<Option<&'a str>, Fault> {
        self.bytes(name).map(|v| string(v).map_err(|reason| fault(name, reason))).transpose()
    }

    fn required_string(&self, name: &'static str) -> Result<&'a str, Fault> {
        self.string(name)?.ok_or(fault(name, "missing"))
    }
}
