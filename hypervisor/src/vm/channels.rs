//! Which VMs' consoles are joined: a channel name given to exactly two consoles,
//! in two VMs, makes a [`Link`] between them. A name with one end, or with more
//! than two, or with both ends in one VM, joins nothing: the VMs that use it are
//! refused (`Refusal::Channel`), each alone, like any VM the bundle describes
//! wrongly. (The tools refuse such a scenario before; this is the hypervisor's own
//! check of what it relies on.)

use super::config::VmConfig;
use crate::devices::virtio::channel::Link;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use platform::bundle::spec::DeviceKind;

/// A channel that can't be made, as the VM with an end of it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unjoined<'a> {
    /// The VM.
    pub vm: usize,
    /// Its virtio slot with the end.
    pub slot: usize,
    /// The channel's name.
    pub name: &'a str,
    /// Ends the bundle gives the name, in which VMs.
    pub ends_in: Vec<usize>,
}

/// The links between the VMs of `configs` (`None` for a VM already refused, whose
/// ends count as missing), by name, and the ends that join nothing.
pub fn join<'a>(configs: &[Option<&VmConfig<'a>>]) -> (BTreeMap<&'a str, Arc<Link>>, Vec<Unjoined<'a>>) {
    let mut ends: BTreeMap<&'a str, Vec<(usize, usize)>> = BTreeMap::new();
    for (vm, config) in configs.iter().enumerate() {
        let Some(config) = config else { continue };
        for (slot, device) in config.devices.iter().enumerate() {
            if let DeviceKind::Channel(name) = device.kind {
                ends.entry(name).or_default().push((vm, slot));
            }
        }
    }
    let mut links = BTreeMap::new();
    let mut unjoined = Vec::new();
    for (name, at) in ends {
        match at[..] {
            [a, b] if a.0 != b.0 => {
                links.insert(name, Arc::new(Link::new(name, a, b)));
            }
            _ => unjoined.extend(at.iter().map(|&(vm, slot)| Unjoined {
                vm,
                slot,
                name,
                ends_in: at.iter().map(|&(vm, _)| vm).collect(),
            })),
        }
    }
    (links, unjoined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use platform::bundle::spec::{CpuList, DeviceSpec, VmSpec};

    /// A VM config with `devices` (the rest is never looked at here).
    fn config_with(devices: Vec<DeviceSpec<'static>>) -> VmConfig<'static> {
        let spec = VmSpec {
            name: "v",
            cpus: CpuList::new(&[0]).unwrap(),
            memory_size: 2 << 20,
            host_base: None,
            kernel: &[],
            kernel_addr: 0x4000_0000,
            entry: 0x4000_0000,
            dtb_addr: 0x4010_0000,
            initrd: None,
            bootargs: None,
        };
        VmConfig { spec, devices }
    }

    fn console(name: &'static str) -> DeviceSpec<'static> {
        DeviceSpec { kind: DeviceKind::Channel(name), legacy: false }
    }

    #[test]
    fn two_ends_in_two_vms_make_a_link() {
        let a = config_with(vec![console("log"), console("ctl")]);
        let b = config_with(vec![DeviceSpec { kind: DeviceKind::Console, legacy: false }, console("log")]);
        let c = config_with(vec![console("ctl")]);
        let (links, unjoined) = join(&[Some(&a), Some(&b), Some(&c)]);
        assert!(unjoined.is_empty(), "{unjoined:?}");
        assert_eq!(links["log"].ends(), [(0, 0), (1, 1)]);
        assert_eq!(links["ctl"].ends(), [(0, 1), (2, 0)]);
    }

    #[test]
    fn one_end_three_ends_or_both_in_one_vm_join_nothing() {
        let a = config_with(vec![console("alone"), console("self"), console("self"), console("crowd")]);
        let b = config_with(vec![console("crowd"), console("crowd"), console("gone")]);
        let (links, unjoined) = join(&[Some(&a), Some(&b), None]);
        assert!(links.is_empty());
        let said: Vec<_> = unjoined.iter().map(|u| (u.name, u.vm, u.slot, u.ends_in.clone())).collect();
        assert_eq!(
            said,
            [
                ("alone", 0, 0, vec![0]),
                ("crowd", 0, 3, vec![0, 1, 1]),
                ("crowd", 1, 0, vec![0, 1, 1]),
                ("crowd", 1, 1, vec![0, 1, 1]),
                ("gone", 1, 2, vec![1]),
                ("self", 0, 1, vec![0, 0]),
                ("self", 0, 2, vec![0, 0]),
            ]
        );
    }
}
