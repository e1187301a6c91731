//! The machine's RAM against a bundle's VMs, by the rule the tools apply too
//! (`platform::admission`): a VM whose RAM and disks don't fit in what the VMs
//! before it left is refused, alone, before anything is allocated.

use super::config::{Bundle, ConfigError, VmConfig};
use platform::admission::{vm_footprint, Ledger};
use platform::bundle::spec::DeviceKind;

/// Host RAM a VM takes: its RAM and its RAM disks.
pub fn footprint(config: &VmConfig<'_>) -> u64 {
    let disks = config.devices.iter().filter_map(|device| match device.kind {
        DeviceKind::Blk(ref disk) => disk.ram_size(),
        DeviceKind::Console | DeviceKind::Channel(_) => None,
    });
    vm_footprint(config.spec.memory_size, disks)
}

/// Refuses the VMs of `bundle` (a blob of `bundle_len` bytes) that don't fit in a
/// machine with `host_ram` bytes of RAM, in bundle order.
///
/// # Errors
///
/// [`ConfigError::MachineTooSmall`] when not even the hypervisor and the bundle fit.
pub fn admit(bundle: &mut Bundle<'_>, host_ram: u64, bundle_len: u64) -> Result<(), ConfigError> {
    let mut ledger = Ledger::new(host_ram, bundle_len).map_err(ConfigError::MachineTooSmall)?;
    for (vm, slot) in bundle.vms.iter_mut().enumerate() {
        let Ok(config) = slot else { continue };
        if let Err(shortfall) = ledger.admit(footprint(config)) {
            *slot = Err(ConfigError::NoRoom { vm, shortfall });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::config::parse_bundle;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// A bundle of VMs with these RAM sizes and disk sizes.
    fn bundle(vms: &[(u64, &[u64])]) -> Vec<u8> {
        crate::vm::config::tests::bundle_with(vms)
    }

    #[test]
    fn vms_that_do_not_fit_are_refused_alone_in_order() {
        let blob = bundle(&[(64 * MIB, &[]), (64 * MIB, &[512; 8]), (32 * MIB, &[])]);
        let mut parsed = parse_bundle(&blob, 4).unwrap();
        // 256 MiB - 64 reserved - 2 for the bundle = 190: 64, then 64 + 16 (8 tiny disks
        // of 2 MiB each) = 80, then 32 all fit. With 200 MiB (134 for VMs) the second
        // does not, and the third still does.
        admit(&mut parsed, 256 * MIB, blob.len() as u64).unwrap();
        assert!(parsed.vms[0].is_ok() && parsed.vms[1].is_ok());
        let mut parsed = parse_bundle(&blob, 4).unwrap();
        admit(&mut parsed, 200 * MIB, blob.len() as u64).unwrap();
        assert!(parsed.vms[0].is_ok());
        let refused = parsed.vms[1].as_ref().unwrap_err().to_string();
        assert_eq!(
            refused,
            "vm[1].memory-size: needs 80 MiB of host RAM (its RAM and disks, in 2 MiB blocks), but only 70 MiB are left"
        );
        assert!(parsed.vms[2].is_ok(), "a later VM that fits still boots");
    }

    #[test]
    fn a_machine_too_small_for_the_bundle_is_refused() {
        let blob = bundle(&[(64 * MIB, &[])]);
        let mut parsed = parse_bundle(&blob, 4).unwrap();
        let error = admit(&mut parsed, 64 * MIB, blob.len() as u64).unwrap_err();
        assert!(error.to_string().starts_with("boot bundle: the machine's 64 MiB of RAM cannot hold"));
    }
}
