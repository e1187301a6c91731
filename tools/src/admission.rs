//! Whether a checked scenario fits its machine, by the rule the hypervisor applies
//! at boot (`platform::admission`, the same code): the hypervisor's reserve, the boot
//! bundle as written, and each VM's RAM and disks in whole 2 MiB blocks, in order.
//! [`load`] reads, checks and admits a scenario file: what it accepts boots.

use std::path::Path;

use anyhow::Result;
use platform::admission::{vm_footprint, Ledger, Shortfall};

use crate::devices::DeviceKind;
use crate::validate::{self, Refusal, Scenario, Sources, Vm};
use crate::{bundle, config};

/// Host RAM `vm` takes: its RAM and its RAM disks (a file-backed disk takes none).
fn footprint(vm: &Vm) -> u64 {
    let disks = vm.devices.iter().filter_map(|device| match &device.kind {
        DeviceKind::Blk(disk) => disk.ram_size(),
        DeviceKind::Console | DeviceKind::Channel(_) => None,
    });
    vm_footprint(vm.memory, disks)
}

/// Refuses `scenario` if its bundle, or any of its VMs, does not fit its machine.
///
/// # Errors
///
/// A [`Refusal`] naming `machine.memory` or each VM that doesn't fit, with why; or
/// the bundle cannot be built.
pub fn check(scenario: &Scenario) -> Result<Result<(), Refusal>> {
    let bundle_len = bundle::build(scenario)?.len() as u64;
    let memory = scenario.machine.memory;
    let mut ledger = match Ledger::new(memory, bundle_len) {
        Ok(ledger) => ledger,
        Err(shortfall) => return Ok(Err(Refusal(vec![format!("machine.memory: {shortfall}")]))),
    };
    let refusals: Vec<String> = scenario
        .vms
        .iter()
        .enumerate()
        .filter_map(|(i, vm)| {
            let shortfall: Shortfall = ledger.admit(footprint(vm)).err()?;
            Some(format!(
                "vm[{i}] ({:?}).memory: {shortfall} of machine.memory's {} MiB",
                vm.name,
                memory >> 20
            ))
        })
        .collect();
    Ok(if refusals.is_empty() { Ok(()) } else { Err(Refusal(refusals)) })
}

/// Reads, parses, checks and admits the scenario file at `path`.
///
/// # Errors
///
/// The file cannot be read or parsed, [`validate::validate`] refuses it, or it does
/// not fit its machine ([`check`]); the message names the file and every refused
/// field.
pub fn load(path: &Path, guests_dir: &Path) -> Result<Scenario> {
    let config = config::load(path)?;
    let config_dir = path.parent().unwrap_or(Path::new("."));
    let sources = Sources {
        config_dir,
        guests_dir,
        read: &crate::regular_file::read,
        open_disk: &crate::regular_file::open_disk,
    };
    let refused = |refusal: Refusal| {
        let lines: Vec<String> = refusal.0.iter().map(|l| format!("  {l}")).collect();
        anyhow::anyhow!("{}: refused:\n{}", path.display(), lines.join("\n"))
    };
    let scenario = validate::validate(&config, &sources).map_err(refused)?;
    check(&scenario)?.map_err(refused)?;
    Ok(scenario)
}

#[cfg(test)]
mod tests;
