use std::io;
use std::path::Path;

use hypervisor::vm::config::{parse_bundle, ConfigError};
use platform::admission::HYPERVISOR_RESERVED;

use super::*;
use crate::units::MIB;
use crate::validate::tests::{machine, vm};

/// A file system where `kernel-N.bin` holds N bytes.
fn sized_files(path: &Path) -> io::Result<Vec<u8>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let size = name.strip_prefix("kernel-").and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse().ok());
    size.map(|n: usize| vec![0x14; n]).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

fn scenario(text: &str) -> Scenario {
    let config = config::parse(text).expect("test config parses");
    let sources = Sources {
        config_dir: Path::new("/s"),
        guests_dir: Path::new("/g"),
        read: &sized_files,
        open_disk: &crate::validate::tests::fake_open_disk,
    };
    validate::validate(&config, &sources).expect("the test scenario is valid")
}

/// The tools' refusals for `text`, which validates.
fn refusals(text: &str) -> Vec<String> {
    match check(&scenario(text)).unwrap() {
        Ok(()) => Vec::new(),
        Err(Refusal(lines)) => lines,
    }
}

fn disks(sizes: &[u64]) -> String {
    sizes.iter().map(|size| format!("[[vm.virtio]]\nkind = \"blk\"\nsize = {size}\n")).collect()
}

#[test]
fn tiny_disks_take_whole_blocks() {
    // 32 disks of one sector: 64 MiB of host RAM, not 16 KiB.
    let text = format!(
        "{}{}{}",
        machine(1, "160M"),
        vm("a", "[0]", "kernel = \"kernel-4096.bin\""),
        disks(&[512; 32])
    );
    assert_eq!(
        refusals(&text),
        [
            r#"vm[0] ("a").memory: needs 128 MiB of host RAM (its RAM and disks, in 2 MiB blocks), but only 94 MiB are left of machine.memory's 160 MiB"#
        ]
    );
    let text = format!(
        "{}{}{}",
        machine(1, "194M"),
        vm("a", "[0]", "kernel = \"kernel-4096.bin\""),
        disks(&[512; 32])
    );
    assert_eq!(refusals(&text), Vec::<String>::new());
}

#[test]
fn the_bundle_counts_against_the_machine() {
    // A 40 MiB kernel travels in the bundle: 64 + 40 + 96 > 192.
    let big = "memory = \"96M\"\nkernel = \"kernel-41943040.bin\"";
    let text = format!("{}{}", machine(1, "192M"), vm("a", "[0]", big));
    assert_eq!(refusals(&text).len(), 1);
    assert!(refusals(&text)[0].starts_with(r#"vm[0] ("a").memory: needs 96 MiB"#));
    let text = format!(
        "{}{}",
        machine(1, "160M"),
        vm("a", "[0]", "memory = \"128M\"\nkernel = \"kernel-104857600.bin\"")
    );
    assert_eq!(
        refusals(&text),
        ["machine.memory: the machine's 160 MiB of RAM cannot hold the hypervisor's 64 MiB and the 102 MiB boot bundle"]
    );
}

/// What the hypervisor decides for each VM of `scenario`'s bundle on its machine:
/// `None` for a VM it admits, or the whole bundle refused.
fn hypervisor_decisions(scenario: &Scenario) -> Result<Vec<bool>, String> {
    let blob = bundle::build(scenario).unwrap();
    let mut parsed = parse_bundle(&blob, scenario.machine.cpus as usize).map_err(|e| e.to_string())?;
    hypervisor::vm::admission::admit(&mut parsed, scenario.machine.memory, blob.len() as u64)
        .map_err(|e| e.to_string())?;
    Ok(parsed
        .vms
        .iter()
        .map(|vm| match vm {
            Ok(_) => true,
            Err(ConfigError::NoRoom { .. }) => false,
            Err(other) => panic!("the hypervisor refused a VM the tools checked: {other}"),
        })
        .collect())
}

/// What the tools decide, in the same terms.
fn tools_decisions(scenario: &Scenario) -> Result<Vec<bool>, String> {
    match check(scenario).unwrap() {
        Ok(()) => Ok(vec![true; scenario.vms.len()]),
        Err(Refusal(lines)) if lines[0].starts_with("machine.memory") => Err(lines[0].clone()),
        Err(Refusal(lines)) => Ok((0..scenario.vms.len())
            .map(|i| !lines.iter().any(|l| l.starts_with(&format!("vm[{i}] "))))
            .collect()),
    }
}

#[test]
fn the_tools_and_the_hypervisor_agree_on_every_config() {
    // Machines from just too small to roomy; one to three VMs with RAM of 4 to 96
    // MiB, kernels of a page to 24 MiB, and up to four disks from one sector to 9
    // MiB: many near the limit, where rounding decides.
    let mut seed = 0x5eed_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let (mut admitted, mut refused, mut too_small) = (0, 0, 0);
    for _ in 0..300 {
        let vms = 1 + next(3) as usize;
        let memory = HYPERVISOR_RESERVED / MIB + 2 + 2 * next(100);
        let mut text = machine(vms as u32, &format!("{memory}M"));
        for i in 0..vms {
            let ram = [4, 8, 16, 32, 64, 96][next(6) as usize];
            let kernel = [4096, 512 * 1024 + 1, 3 << 20, 24 << 20][next(4) as usize].min((ram - 2) << 20);
            let extra = format!("memory = \"{ram}M\"\nkernel = \"kernel-{kernel}.bin\"");
            text += &vm(&format!("v{i}"), &format!("[{i}]"), &extra);
            let sizes: Vec<u64> = (0..next(5))
                .map(|_| [512, 1 << 20, 2 << 20, (3 << 20) + 512, 9 << 20][next(5) as usize])
                .collect();
            text += &disks(&sizes);
        }
        let scenario = scenario(&text);
        let (tools, hypervisor) = (tools_decisions(&scenario), hypervisor_decisions(&scenario));
        assert_eq!(tools.is_ok(), hypervisor.is_ok(), "{text}\ntools: {tools:?}\nhypervisor: {hypervisor:?}");
        match (tools, hypervisor) {
            (Ok(tools), Ok(hypervisor)) => {
                assert_eq!(tools, hypervisor, "{text}");
                if tools.iter().all(|&fits| fits) {
                    admitted += 1;
                } else {
                    refused += 1;
                }
            }
            _ => too_small += 1,
        }
    }
    // The corpus reaches every outcome, many times.
    assert!(admitted > 30 && refused > 30 && too_small > 10, "{admitted} {refused} {too_small}");
}

#[test]
fn load_reports_the_file_and_every_refusal() {
    let dir = crate::testutil::TempDir::new("admission-load");
    let path = dir.write("s.toml", vm("a", "[0]", "memory = \"3M\"").as_bytes());
    dir.write("raw.bin", &[1; 64]);
    let message = load(&path, dir.path()).unwrap_err().to_string();
    assert_eq!(
        message,
        format!("{}: refused:\n  vm[0].memory: 3 MiB must be a non-zero multiple of 2 MiB", path.display())
    );
    let ok = dir.write("ok.toml", vm("a", "[0]", "").as_bytes());
    assert_eq!(load(&ok, dir.path()).unwrap().vms[0].kernel, [1; 64]);
}
