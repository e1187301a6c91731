//! Checks a parsed scenario and turns it into a [`Scenario`] the tools can pack and run.
//!
//! Every refusal is one line, `field: reason` (`vm[1].memory: 3 MiB is not a multiple
//! of 2 MiB`), and all refusals of a file are reported together.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use platform::admission::HYPERVISOR_RESERVED;
use platform::bundle::spec::{self as rules, CpuList, VmSpec, MAX_NAME_LEN};
use platform::bundle::{MAX_VMS, MEMORY_GRANULE};
use platform::qemu_virt;
use platform::Region;

use crate::attribution::{Said, Speaker};
use crate::clock::Clock;
use crate::config::{Config, ExpectConfig, LogLevel, Number, VmConfig};
use crate::damage::Damage;
use crate::devices::{self, Device, DeviceFiles, DeviceKind, MachineDisk, Mode, MAX_DEVICES};
use crate::disk_check::{self, DiskCheck};
use crate::layout::{self, Layout, DTB_AREA_SIZE};
use crate::regular_file::DiskFile;
use crate::send::Step;
use crate::units::{fmt_region, fmt_size};

/// Where the host's RAM starts on QEMU virt (the same address guests see theirs at).
pub const HOST_RAM_BASE: u64 = qemu_virt::RAM_BASE;
/// Most host CPUs a scenario's machine may have (what Sluice drives).
pub const MAX_CPUS: u32 = platform::bundle::MAX_HOST_CPUS as u32;
/// Prefix of a `kernel` that names a test guest the tools build.
pub const GUEST_PREFIX: &str = "guest:";

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The QEMU machine.
    pub machine: Machine,
    /// The hypervisor's log level.
    pub log_level: LogLevel,
    /// Whether every tracepoint is on (`[hypervisor] trace`).
    pub trace: bool,
    /// The VMs, in config order.
    pub vms: Vec<Vm>,
    /// What a test run must show, if this scenario is a test.
    pub expect: Option<Expect>,
}

impl Scenario {
    /// The VMs' names, in config order.
    pub fn vm_names(&self) -> Vec<String> {
        self.vms.iter().map(|vm| vm.name.clone()).collect()
    }

    /// The VMs' file-backed disks, which the machine gets as devices of its own.
    pub fn machine_disks(&self) -> Vec<MachineDisk> {
        self.vms.iter().flat_map(|vm| &vm.devices).filter_map(Device::machine_disk).collect()
    }
}

/// The QEMU machine: `-smp` and `-m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Host CPUs.
    pub cpus: u32,
    /// Host RAM in bytes.
    pub memory: u64,
    /// Memory tagging with tag storage (`mte=on`).
    pub mte: bool,
}

/// A checked VM, with its images read and placed.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Its name.
    pub name: String,
    /// Host CPU indices.
    pub cpus: CpuList,
    /// RAM size in bytes.
    pub memory: u64,
    /// Host-physical base its RAM is pinned at, if any.
    pub host_base: Option<u64>,
    /// The kernel image's bytes.
    pub kernel: Vec<u8>,
    /// The initrd's bytes, if any.
    pub initrd: Option<Vec<u8>>,
    /// The kernel command line, if any.
    pub bootargs: Option<String>,
    /// Where everything goes in guest RAM.
    pub layout: Layout,
    /// Its virtio devices; device n sits in virtio-mmio slot n.
    pub devices: Vec<Device>,
}

impl Vm {
    /// The VM as the bundle describes it.
    pub fn spec(&self) -> VmSpec<'_> {
        VmSpec {
            name: &self.name,
            cpus: self.cpus,
            memory_size: self.memory,
            host_base: self.host_base,
            kernel: &self.kernel,
            kernel_addr: self.layout.kernel.base,
            entry: self.layout.entry,
            dtb_addr: self.layout.dtb.base,
            initrd: self.initrd.as_deref().zip(self.layout.initrd.map(|region| region.base)),
            bootargs: self.bootargs.as_deref(),
        }
    }
}

/// A checked `[expect]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// When to give up on QEMU.
    pub timeout: Duration,
    /// The machine's expected exit status.
    pub exit_status: u8,
    /// Lines that must appear in order, each said by a VM or by Sluice.
    pub lines: Vec<Said>,
    /// Lines that must appear in any order, each said by a VM or by Sluice.
    pub anywhere: Vec<Said>,
    /// What must not appear (on anyone's line, or on one speaker's).
    pub absent: Vec<Said>,
    /// The clocks the scenario runs under, each a run of its own.
    pub clocks: Vec<Clock>,
    /// Files, relative to the workspace, that must not exist after a run.
    pub absent_files: Vec<PathBuf>,
    /// Damage to the boot bundle, a run each (none: one run of the bundle as it is).
    pub bundle_damage: Vec<Damage>,
    /// Input to type on the serial console, in order.
    pub sends: Vec<Step>,
    /// QEMU exits at most this long after the last typed input.
    pub quit_within: Option<Duration>,
    /// Plain-QEMU reference runs of the same guest.
    pub reference: Vec<Mode>,
    /// The lines of each run after the first, on the same disk files.
    pub reruns: Vec<Vec<Said>>,
    /// What file-backed disks hold after the runs.
    pub disks: Vec<DiskCheck>,
}

impl Expect {
    /// What a reference run of VM `vm` alone on plain QEMU must show: the lines,
    /// in any order or absent, that it or anyone may say (not Sluice's or another
    /// VM's).
    pub fn for_plain_qemu(&self, vm: &str) -> Expect {
        let keep =
            |said: &Vec<Said>| said.iter().filter(|s| s.said_alone_by(vm)).cloned().collect::<Vec<_>>();
        Expect {
            lines: keep(&self.lines),
            anywhere: keep(&self.anywhere),
            absent: keep(&self.absent),
            ..self.clone()
        }
    }
}

/// Where the images named in a scenario come from.
pub struct Sources<'a> {
    /// Relative paths are relative to this (the config file's directory).
    pub config_dir: &'a Path,
    /// `guest:NAME` is `<guests_dir>/NAME.bin`.
    pub guests_dir: &'a Path,
    /// Reads a file (`regular_file::read`, or a fake in tests).
    pub read: &'a dyn Fn(&Path) -> io::Result<Vec<u8>>,
    /// Opens a disk image file, writable unless read-only (`regular_file::open_disk`,
    /// or a fake in tests).
    pub open_disk: &'a dyn Fn(&Path, bool) -> io::Result<DiskFile>,
}

/// All the reasons a scenario is refused, one `field: reason` line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub Vec<String>);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Refusal {}

/// Checks `config` and reads the images it names.
///
/// # Errors
///
/// A [`Refusal`] listing every problem found.
pub fn validate(config: &Config, sources: &Sources<'_>) -> Result<Scenario, Refusal> {
    let mut errors = Vec::new();
    let machine_cpus = check_machine_cpus(config.machine.cpus, &mut errors);
    let machine_memory = check_machine_memory(&config.machine.memory, &mut errors);

    if config.vm.is_empty() {
        errors.push("vm: a scenario needs at least one [[vm]] table".to_owned());
    } else if config.vm.len() > MAX_VMS {
        errors.push(format!("vm: {} VMs given, but a bundle holds at most {MAX_VMS}", config.vm.len()));
    }

    let mut checker = VmChecker {
        machine_cpus,
        machine_memory,
        sources,
        errors: &mut errors,
        names: Vec::new(),
        cpu_owner: BTreeMap::new(),
        pinned: Vec::new(),
        disk_files: BTreeMap::new(),
        channel_ends: BTreeMap::new(),
    };
    let vms: Vec<Option<Vm>> = config.vm.iter().enumerate().map(|(i, vm)| checker.check(i, vm)).collect();
    checker.check_channels();

    let vm_names: Vec<&str> = config.vm.iter().map(|vm| vm.name.as_str()).collect();
    let mut expect = config.expect.as_ref().and_then(|e| check_expect(e, &vm_names, &mut errors));
    if let (Some(expect), Some(config)) = (&mut expect, &config.expect) {
        let checked: Vec<(&str, &[Device])> =
            vms.iter().flatten().map(|vm| (vm.name.as_str(), vm.devices.as_slice())).collect();
        match disk_check::check(&config.disk, &checked) {
            Ok(disks) => expect.disks = disks,
            Err(refusals) => errors.extend(refusals),
        }
    }

    if !errors.is_empty() {
        return Err(Refusal(errors));
    }
    Ok(Scenario {
        machine: Machine {
            cpus: machine_cpus.expect("checked"),
            memory: machine_memory.expect("checked"),
            mte: config.machine.mte,
        },
        log_level: config.hypervisor.log_level,
        trace: config.hypervisor.trace,
        vms: vms.into_iter().map(|vm| vm.expect("checked")).collect(),
        expect,
    })
}

fn check_machine_cpus(cpus: i64, errors: &mut Vec<String>) -> Option<u32> {
    match u32::try_from(cpus) {
        Ok(n) if (1..=MAX_CPUS).contains(&n) => Some(n),
        _ => {
            errors.push(format!("machine.cpus: {cpus} is not in 1..={MAX_CPUS}"));
            None
        }
    }
}

fn check_machine_memory(memory: &Number, errors: &mut Vec<String>) -> Option<u64> {
    let result = memory.bytes().and_then(|bytes| {
        if !bytes.is_multiple_of(MEMORY_GRANULE) {
            Err(format!("{} is not a multiple of {}", fmt_size(bytes), fmt_size(MEMORY_GRANULE)))
        } else if bytes <= HYPERVISOR_RESERVED {
            Err(format!(
                "{} leaves nothing for VMs once the hypervisor has its {}",
                fmt_size(bytes),
                fmt_size(HYPERVISOR_RESERVED)
            ))
        } else {
            Ok(bytes)
        }
    });
    result.map_err(|e| errors.push(format!("machine.memory: {e}"))).ok()
}

/// `io::Error`'s message without the ` (os error N)` tail.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Longest `[expect].timeout_secs`: one day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

fn check_expect(expect: &ExpectConfig, vm_names: &[&str], errors: &mut Vec<String>) -> Option<Expect> {
    let errors_before = errors.len();
    let timeout =
        u64::try_from(expect.timeout_secs).ok().filter(|secs| (1..=MAX_TIMEOUT_SECS).contains(secs));
    if timeout.is_none() {
        errors.push(format!("expect.timeout_secs: {} is not in 1..={MAX_TIMEOUT_SECS}", expect.timeout_secs));
    }
    let exit_status = u8::try_from(expect.exit_status).ok();
    if exit_status.is_none() {
        errors.push(format!("expect.exit_status: {} is not an exit status (0..=255)", expect.exit_status));
    }
    let lines = check_said("lines", &expect.lines, vm_names, true, errors);
    let reruns: Vec<Vec<Said>> = expect
        .rerun
        .iter()
        .enumerate()
        .map(|(k, rerun)| check_said(&format!("rerun[{k}].lines"), &rerun.lines, vm_names, true, errors))
        .collect();
    let anywhere = check_said("anywhere", &expect.anywhere, vm_names, true, errors);
    let absent = check_said("absent", &expect.absent, vm_names, false, errors);
    let mut clocks = Vec::new();
    for (k, name) in expect.clocks.iter().enumerate() {
        match Clock::parse(name) {
            Some(clock) if clocks.contains(&clock) => {
                errors.push(format!("expect.clocks[{k}]: {name:?} is listed twice"));
            }
            Some(clock) => clocks.push(clock),
            None => errors.push(format!("expect.clocks[{k}]: {name:?} is not \"wall\" or \"icount\"")),
        }
    }
    let mut absent_files = Vec::new();
    for (k, file) in expect.absent_files.iter().enumerate() {
        let path = PathBuf::from(file);
        let inside = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || !inside {
            errors.push(format!(
                "expect.absent_files[{k}]: {file:?} is not a path inside the workspace (relative, without \"..\")"
            ));
        } else {
            absent_files.push(path);
        }
    }
    let mut bundle_damage = Vec::new();
    for (k, entry) in expect.bundle_damage.iter().enumerate() {
        match Damage::parse(entry) {
            Ok(damage) => bundle_damage.push(damage),
            Err(why) => errors.push(format!("expect.bundle_damage[{k}]: {entry:?}: {why}")),
        }
    }
    if expect.clocks.is_empty() {
        errors.push("expect.clocks: empty; the scenario would never run (say [\"wall\"])".to_owned());
    }
    for (k, send) in expect.send.iter().enumerate() {
        if send.after.is_empty() {
            errors.push(format!("expect.send[{k}].after: empty; say what output the input waits for"));
        } else if send.after.contains(['\n', '\r']) {
            errors.push(format!(
                "expect.send[{k}].after: {:?} contains a line break; wait for text within one line",
                send.after
            ));
        }
        if send.text.is_empty() {
            errors.push(format!("expect.send[{k}].text: empty; there is nothing to send"));
        }
    }
    let quit_within = match expect.quit_within_ms {
        None => None,
        Some(_) if expect.send.is_empty() => {
            errors.push(
                "expect.quit_within_ms: there is no typed input ([[expect.send]]) to measure from".to_owned(),
            );
            None
        }
        Some(ms) => match u64::try_from(ms) {
            Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => {
                errors.push(format!("expect.quit_within_ms: {ms} is not a positive number of milliseconds"));
                None
            }
        },
    };
    let mut modes = Vec::new();
    for (k, name) in expect.reference.iter().enumerate() {
        match Mode::parse(name) {
            Some(mode) => modes.push(mode),
            None => errors.push(format!("expect.reference[{k}]: {name:?} is not \"modern\" or \"legacy\"")),
        }
    }
    if errors.len() != errors_before {
        return None;
    }
    Some(Expect {
        timeout: Duration::from_secs(timeout?),
        exit_status: exit_status?,
        lines,
        anywhere,
        absent,
        clocks,
        absent_files,
        bundle_damage,
        sends: expect
            .send
            .iter()
            .map(|send| Step { after: send.after.clone(), text: send.text.as_bytes().to_vec() })
            .collect(),
        quit_within,
        reference: modes,
        reruns,
        disks: Vec::new(),
    })
}

/// Checks `expect.lines`, `expect.anywhere` or `expect.absent` (`field`): single non-empty lines, each
/// naming a VM of the scenario or Sluice as its speaker when it has one, and, with
/// `attributed`, each having one (under Sluice every line says whose it is, so an
/// expected line must too).
fn check_said(
    field: &str,
    entries: &[String],
    vm_names: &[&str],
    attributed: bool,
    errors: &mut Vec<String>,
) -> Vec<Said> {
    let mut said = Vec::new();
    for (k, text) in entries.iter().enumerate() {
        let entry = Said::parse(text);
        if entry.text.is_empty() {
            errors.push(format!("expect.{field}[{k}]: {text:?} matches every line of its speaker"));
        } else if text.contains(['\n', '\r']) {
            errors.push(format!(
                "expect.{field}[{k}]: {text:?} contains a line break; lines are matched one at a time"
            ));
        } else {
            match &entry.speaker {
                Some(Speaker::Vm(name)) if !vm_names.contains(&name.as_str()) => errors.push(format!(
                    "expect.{field}[{k}]: {text:?} is said by VM {name:?}, which the scenario doesn't have"
                )),
                None if attributed => {
                    let example = vm_names.first().copied().unwrap_or("name");
                    errors.push(format!(
                        "expect.{field}[{k}]: {text:?} doesn't say whose line it is; start it with a VM's tag \
                         (\"[{example}] {text}\") or with \"sluice: \" for the hypervisor's own"
                    ));
                }
                _ => said.push(entry),
            }
        }
    }
    said
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("the name is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Err(format!("{name:?} is {} characters long; at most {MAX_NAME_LEN} are allowed", name.len()))
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        Err(format!("{name:?} contains {c:?}; use only letters, digits, '_' and '-'"))
    } else {
        Ok(())
    }
}

/// Checks VMs one after the other, remembering what earlier VMs took.
struct VmChecker<'a, 'e> {
    machine_cpus: Option<u32>,
    machine_memory: Option<u64>,
    sources: &'a Sources<'a>,
    errors: &'e mut Vec<String>,
    /// Names of the VMs checked so far, by index.
    names: Vec<String>,
    /// Host CPU -> index of the VM that has it.
    cpu_owner: BTreeMap<u32, usize>,
    /// Pinned host RAM so far, with its VM's index.
    pinned: Vec<(Region, usize)>,
    /// Disk files so far, with their VM's index and slot.
    disk_files: BTreeMap<PathBuf, (usize, usize)>,
    /// The consoles (VM, slot) that give each channel name.
    channel_ends: BTreeMap<String, Vec<(usize, usize)>>,
}

impl VmChecker<'_, '_> {
    fn refuse(&mut self, index: usize, field: &str, reason: impl fmt::Display) {
        self.errors.push(format!("vm[{index}].{field}: {reason}"));
    }

    /// Checks VM `i`; the VMs before it have been checked already.
    fn check(&mut self, i: usize, vm: &VmConfig) -> Option<Vm> {
        let errors_before = self.errors.len();

        if let Err(reason) = check_name(&vm.name) {
            self.refuse(i, "name", reason);
        } else if let Some(j) = self.names.iter().position(|other| *other == vm.name) {
            self.refuse(i, "name", format!("{:?} is already the name of vm[{j}]", vm.name));
        }
        self.names.push(vm.name.clone());

        let cpus = self.check_cpus(i, vm);
        let memory = self.check_memory(i, vm);
        let host_base = self.check_host_base(i, vm, memory);

        let kernel = self.read_image(i, "kernel", &vm.kernel, true);
        let initrd = match &vm.initrd {
            Some(path) => self.read_image(i, "initrd", path, false).map(Some),
            None => Some(None),
        };
        let load_address = match vm.load_address.as_ref().map(Number::address).transpose() {
            Ok(addr) => Some(addr),
            Err(reason) => {
                self.refuse(i, "load_address", reason);
                None
            }
        };

        if let Some(Err(reason)) = vm.bootargs.as_deref().map(rules::check_bootargs) {
            self.refuse(i, "bootargs", reason);
        }

        let devices = self.check_devices(i, vm);

        let layout = match (memory, &kernel, load_address, &initrd) {
            (Some(memory), Some(kernel), Some(load_address), Some(initrd)) => {
                let initrd_size = initrd.as_ref().map(|bytes| bytes.len() as u64);
                match layout::place(memory, kernel, load_address, initrd_size) {
                    Ok(layout) => Some(layout),
                    Err(e) => {
                        self.refuse(i, e.field(), &e);
                        None
                    }
                }
            }
            _ => None,
        };

        if self.errors.len() != errors_before {
            return None;
        }
        Some(Vm {
            name: vm.name.clone(),
            cpus: CpuList::new(&cpus)?,
            memory: memory?,
            host_base,
            kernel: kernel?,
            initrd: initrd?,
            bootargs: vm.bootargs.clone(),
            layout: layout?,
            devices,
        })
    }

    /// Checks VM `i`'s virtio devices; their disks count towards the RAM in use.
    fn check_devices(&mut self, i: usize, vm: &VmConfig) -> Vec<Device> {
        if vm.virtio.len() > MAX_DEVICES {
            let n = vm.virtio.len();
            self.refuse(i, "virtio", format!("{n} devices, but there are {MAX_DEVICES} virtio-mmio slots"));
            return Vec::new();
        }
        let mut checked = Vec::new();
        for (j, config) in vm.virtio.iter().enumerate() {
            let config_dir = self.sources.config_dir;
            let read = self.sources.read;
            let mut read_image = |path: &str| {
                let path = config_dir.join(path);
                match read(&path) {
                    Ok(bytes) if bytes.is_empty() => Err(format!("{} is empty", path.display())),
                    Ok(bytes) => Ok(bytes),
                    Err(e) => Err(format!("cannot read {}: {}", path.display(), io_reason(&e))),
                }
            };
            let open = self.sources.open_disk;
            let mut open_disk = |path: &str, read_only: bool| {
                let path = config_dir.join(path);
                let access = if read_only { "reading" } else { "reading and writing" };
                open(&path, read_only)
                    .map_err(|e| format!("cannot open {} for {access}: {}", path.display(), io_reason(&e)))
            };
            let mut files = DeviceFiles { read: &mut read_image, open_disk: &mut open_disk };
            match devices::check(config, (i, j), &mut files) {
                Ok(device) => {
                    self.check_disk_unshared(i, j, &device);
                    if let DeviceKind::Channel(name) = &device.kind {
                        self.channel_ends.entry(name.clone()).or_default().push((i, j));
                    }
                    checked.push(device);
                }
                Err(refusals) => {
                    for (field, reason) in refusals {
                        self.refuse(i, &format!("virtio[{j}].{field}"), reason);
                    }
                }
            }
        }
        checked
    }

    /// Refuses a disk file that an earlier disk of the scenario uses already: two
    /// writers of one file would each wreck what the other wrote.
    fn check_disk_unshared(&mut self, i: usize, j: usize, device: &Device) {
        let Some(disk) = device.machine_disk() else { return };
        if let Some(&(vm, slot)) = self.disk_files.get(&disk.path) {
            let name = self.owner_name(vm);
            let what = format!("{} is already the disk of vm {name:?} (virtio[{slot}])", disk.path.display());
            self.refuse(i, &format!("virtio[{j}].image"), what);
        } else {
            self.disk_files.insert(disk.path, (i, j));
        }
    }

    /// Refuses a channel name that does not join exactly two consoles in two VMs.
    fn check_channels(&mut self) {
        let ends = std::mem::take(&mut self.channel_ends);
        for (name, at) in ends {
            let reason = match at[..] {
                [(a, _), (b, _)] if a != b => continue,
                [(_, _), (_, _)] => "both of its consoles are in this VM; it joins two VMs".to_owned(),
                [_] => "no other VM's console gives this name; a channel joins two".to_owned(),
                _ => format!("{} consoles give this name; a channel joins exactly two", at.len()),
            };
            for (vm, slot) in at {
                self.refuse(vm, &format!("virtio[{slot}].channel"), format!("{name:?}: {reason}"));
            }
        }
    }

    fn check_cpus(&mut self, i: usize, vm: &VmConfig) -> Vec<u32> {
        if vm.cpus.is_empty() {
            self.refuse(i, "cpus", "the list is empty; a VM needs at least one CPU");
        }
        let mut cpus = Vec::new();
        for &cpu in &vm.cpus {
            let limit = self.machine_cpus.unwrap_or(MAX_CPUS);
            let Some(cpu) = u32::try_from(cpu).ok().filter(|&c| c < limit) else {
                let reason = match self.machine_cpus {
                    Some(n) => format!("CPU {cpu} does not exist: machine.cpus is {n}"),
                    None => format!("CPU {cpu} does not exist"),
                };
                self.refuse(i, "cpus", reason);
                continue;
            };
            if cpus.contains(&cpu) {
                self.refuse(i, "cpus", format!("CPU {cpu} is listed twice"));
                continue;
            }
            match self.cpu_owner.get(&cpu) {
                Some(&owner) => {
                    let name = self.owner_name(owner);
                    self.refuse(i, "cpus", format!("CPU {cpu} is already given to vm {name:?}"));
                }
                None => {
                    self.cpu_owner.insert(cpu, i);
                }
            }
            cpus.push(cpu);
        }
        cpus
    }

    /// The name of the VM at `index`, as recorded while checking it.
    fn owner_name(&self, index: usize) -> String {
        self.names.get(index).cloned().unwrap_or_default()
    }

    fn check_memory(&mut self, i: usize, vm: &VmConfig) -> Option<u64> {
        let result = vm.memory.bytes().and_then(|bytes| {
            if let Err(reason) = rules::check_memory_size(bytes) {
                Err(format!("{} {reason}", fmt_size(bytes)))
            } else if bytes <= DTB_AREA_SIZE {
                Err(format!(
                    "{} leaves no room for images: the top {} of guest RAM hold its DTB",
                    fmt_size(bytes),
                    fmt_size(DTB_AREA_SIZE)
                ))
            } else {
                Ok(bytes)
            }
        });
        match result {
            Ok(bytes) => Some(bytes),
            Err(reason) => {
                self.refuse(i, "memory", reason);
                None
            }
        }
    }

    fn check_host_base(&mut self, i: usize, vm: &VmConfig, memory: Option<u64>) -> Option<u64> {
        let base = match vm.host_base.as_ref()?.address() {
            Ok(base) => base,
            Err(reason) => {
                self.refuse(i, "host_base", reason);
                return None;
            }
        };
        if let Err(reason) = rules::check_host_base(base) {
            self.refuse(i, "host_base", format!("{base:#x} {reason}"));
            return None;
        }
        let (Some(memory), Some(machine_memory)) = (memory, self.machine_memory) else {
            return Some(base);
        };
        let ram = Region::new(base, memory);
        let usable_base = HOST_RAM_BASE + HYPERVISOR_RESERVED;
        let usable = Region::new(usable_base, machine_memory - HYPERVISOR_RESERVED);
        if !usable.contains_range(ram.base, ram.size) {
            self.refuse(
                i,
                "host_base",
                format!(
                    "{} is not inside the host RAM VMs may use, {} (machine.memory is {}, \
                     and the first {} are the hypervisor's)",
                    fmt_region(&ram),
                    fmt_region(&usable),
                    fmt_size(machine_memory),
                    fmt_size(HYPERVISOR_RESERVED)
                ),
            );
            return None;
        }
        if let Some(&(other, j)) = self.pinned.iter().find(|(other, _)| other.overlaps(&ram)) {
            let name = self.owner_name(j);
            self.refuse(
                i,
                "host_base",
                format!("{} overlaps vm {name:?}'s RAM {}", fmt_region(&ram), fmt_region(&other)),
            );
            return None;
        }
        self.pinned.push((ram, i));
        Some(base)
    }

    /// Resolves and reads an image; `guest:NAME` is allowed for kernels only.
    fn read_image(&mut self, i: usize, field: &str, spec: &str, allow_guest: bool) -> Option<Vec<u8>> {
        let (path, hint) = match spec.strip_prefix(GUEST_PREFIX) {
            Some(guest) if allow_guest => {
                if let Err(reason) = check_name(guest) {
                    self.refuse(i, field, format!("bad test guest name: {reason}"));
                    return None;
                }
                let path = self.sources.guests_dir.join(format!("{guest}.bin"));
                (path, " (test guests are built by `cargo xtask build`)")
            }
            _ if spec.is_empty() => {
                self.refuse(i, field, "the path is empty");
                return None;
            }
            _ => (self.resolve(spec), ""),
        };
        match (self.sources.read)(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                let reason = io_reason(&e);
                self.refuse(i, field, format!("cannot read {}: {reason}{hint}", path.display()));
                None
            }
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.sources.config_dir.join(path)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layout::tests::arm64_image;
    use crate::units::{GIB, KIB, MIB};

    const CONFIG_DIR: &str = "/scenarios";
    const GUESTS_DIR: &str = "/guests";

    /// The files the fake file system holds.
    fn fake_read(path: &Path) -> io::Result<Vec<u8>> {
        let bytes = match path.to_str().unwrap_or_default() {
            "/scenarios/raw.bin" | "/guests/hello.bin" => vec![0xaa; 4096],
            "/scenarios/linux.img" => arm64_image(0, 8 * MIB, 0, 64 * KIB as usize),
            "/scenarios/be.img" => arm64_image(0, MIB, 1, 4096),
            "/scenarios/big.bin" => vec![0xbb; 3 * MIB as usize],
            "/scenarios/initrd.img" => vec![0xcc; 5000],
            "/scenarios/big-initrd.img" => vec![0xcc; 3 * MIB as usize],
            "/scenarios/empty.bin" => Vec::new(),
            _ => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(bytes)
    }

    /// The disk image files the fake file system holds (`ro.img` only read-only).
    pub(crate) fn fake_open_disk(path: &Path, read_only: bool) -> io::Result<DiskFile> {
        // `./disk.img` and `disk.img` are one file.
        let canonical = PathBuf::from(path.to_str().unwrap_or_default().replace("/./", "/"));
        let size = match canonical.to_str().unwrap_or_default() {
            "/scenarios/disk.img" | "/scenarios/other.img" => 8 * MIB,
            "/scenarios/ro.img" if read_only => MIB,
            "/scenarios/ro.img" => return Err(io::ErrorKind::PermissionDenied.into()),
            _ => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(DiskFile { path: canonical, size })
    }

    fn check_with(text: &str, read: &dyn Fn(&Path) -> io::Result<Vec<u8>>) -> Result<Scenario, Refusal> {
        let config = crate::config::parse(text).expect("test config parses");
        let sources = Sources {
            config_dir: Path::new(CONFIG_DIR),
            guests_dir: Path::new(GUESTS_DIR),
            read,
            open_disk: &fake_open_disk,
        };
        validate(&config, &sources)
    }

    pub(crate) fn check(text: &str) -> Result<Scenario, Refusal> {
        check_with(text, &fake_read)
    }

    /// One valid VM table with `extra` lines replacing or adding fields.
    pub(crate) fn vm(name: &str, cpus: &str, extra: &str) -> String {
        let mut fields = vec![
            format!("name = \"{name}\""),
            format!("cpus = {cpus}"),
            "memory = \"64M\"".to_owned(),
            "kernel = \"raw.bin\"".to_owned(),
        ];
        for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let key = line.split('=').next().unwrap().trim();
            fields.retain(|f| !f.starts_with(&format!("{key} ")));
            fields.push(line.to_owned());
        }
        format!("[[vm]]\n{}\n", fields.join("\n"))
    }

    pub(crate) fn machine(cpus: u32, memory: &str) -> String {
        format!("[machine]\ncpus = {cpus}\nmemory = \"{memory}\"\n")
    }

    /// Asserts the scenario is refused with exactly `expected` (one refusal).
    fn assert_refused(text: &str, expected: &str) {
        match check(text) {
            Ok(_) => panic!("accepted, expected refusal {expected:?}:\n{text}"),
            Err(Refusal(errors)) => assert_eq!(errors, [expected], "for:\n{text}"),
        }
    }

    /// Asserts the scenario is refused with one refusal that starts with `prefix`.
    fn assert_refused_starting(text: &str, prefix: &str) {
        match check(text) {
            Ok(_) => panic!("accepted, expected refusal {prefix:?}:\n{text}"),
            Err(Refusal(errors)) => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert!(errors[0].starts_with(prefix), "{errors:?}");
            }
        }
    }

    #[test]
    fn a_valid_scenario_is_accepted() {
        let text = format!(
            "{}[hypervisor]\nlog_level = \"debug\"\n{}{}[expect]\ntimeout_secs = 5\nlines = [\"[hello] hi\", \"sluice: bye\"]\n",
            machine(2, "1G"),
            vm("hello", "[0]", "kernel = \"guest:hello\"\nbootargs = \"x=1\""),
            vm(
                "linux",
                "[1]",
                "kernel = \"linux.img\"\ninitrd = \"initrd.img\"\nhost_base = \"0x5000_0000\"\nmemory = 128M"
            )
            .replace("128M", "\"128M\""),
        );
        let scenario = check(&text).unwrap();
        assert_eq!(scenario.machine, Machine { cpus: 2, memory: GIB, mte: false });
        assert_eq!(scenario.log_level, LogLevel::Debug);
        assert_eq!(scenario.vm_names(), ["hello", "linux"]);
        let hello = &scenario.vms[0];
        assert_eq!(*hello.cpus, [0]);
        assert_eq!(hello.kernel.len(), 4096);
        assert_eq!(hello.bootargs.as_deref(), Some("x=1"));
        assert_eq!(hello.layout.entry, qemu_virt::RAM_BASE);
        let linux = &scenario.vms[1];
        assert_eq!(linux.host_base, Some(0x5000_0000));
        assert_eq!(linux.memory, 128 * MIB);
        assert_eq!(linux.layout.kernel.size, 8 * MIB);
        assert_eq!(linux.initrd.as_ref().map(Vec::len), Some(5000));
        let expect = scenario.expect.unwrap();
        assert_eq!(expect.timeout, Duration::from_secs(5));
        assert_eq!(expect.exit_status, 0);
        assert_eq!(expect.lines, [Said::parse("[hello] hi"), Said::parse("sluice: bye")]);
        assert_eq!(expect.clocks, [Clock::Wall]);
        assert!(expect.sends.is_empty());
    }

    #[test]
    fn virtio_devices_are_checked_and_their_disks_count_as_ram() {
        let text = format!(
            "{}{}[[vm.virtio]]\nkind = \"blk\"\nsize = \"16M\"\n[[vm.virtio]]\nkind = \"console\"\nlegacy = true\n",
            machine(1, "256M"),
            vm("a", "[0]", "")
        );
        let scenario = check(&text).unwrap();
        assert_eq!(scenario.vms[0].devices.len(), 2);
        assert_refused_starting(
            &format!("{}[[vm.virtio]]\nkind = \"net\"\n", vm("a", "[0]", "")),
            "vm[0].virtio[0].kind: \"net\" is not a device kind",
        );
        assert_refused_starting(
            &format!("{}[[vm.virtio]]\nkind = \"blk\"\nimage = \"missing.img\"\n", vm("a", "[0]", "")),
            "vm[0].virtio[0].image: cannot open /scenarios/missing.img for reading and writing",
        );
    }

    #[test]
    fn a_channel_joins_two_consoles_in_two_vms() {
        let channel = |name: &str| format!("[[vm.virtio]]\nkind = \"console\"\nchannel = \"{name}\"\n");
        let three = format!("{}{}{}", machine(3, "256M"), vm("a", "[0]", ""), channel("log"));
        let text = format!("{three}{}{}", vm("b", "[1]", ""), channel("log"));
        let scenario = check(&text).unwrap();
        assert_eq!(scenario.vms[1].devices[0].kind, DeviceKind::Channel("log".into()));
        assert_refused(
            &format!("{}{}", vm("a", "[0]", ""), channel("log")),
            "vm[0].virtio[0].channel: \"log\": no other VM's console gives this name; a channel joins two",
        );
        let refusals = |text: &str| match check(text) {
            Err(Refusal(errors)) => errors,
            Ok(_) => panic!("accepted:\n{text}"),
        };
        let same = refusals(&format!("{}{}{}", vm("a", "[0]", ""), channel("x"), channel("x")));
        let reason = "\"x\": both of its consoles are in this VM; it joins two VMs";
        assert_eq!(
            same,
            [format!("vm[0].virtio[0].channel: {reason}"), format!("vm[0].virtio[1].channel: {reason}")]
        );
        let crowd = refusals(&format!("{text}{}{}", vm("c", "[2]", ""), channel("log")));
        assert_eq!(crowd.len(), 3, "each end is told: {crowd:?}");
        assert!(
            crowd[2].starts_with("vm[2].virtio[0].channel: \"log\": 3 consoles give this name"),
            "{crowd:?}"
        );
        assert_refused_starting(
            &format!("{}{}", vm("a", "[0]", ""), channel("no spaces")),
            "vm[0].virtio[0].channel: \"no spaces\" may hold only letters",
        );
        assert_refused_starting(
            &format!("{}[[vm.virtio]]\nkind = \"blk\"\nsize = \"1M\"\nchannel = \"x\"\n", vm("a", "[0]", "")),
            "vm[0].virtio[0].channel: only a console joins a channel",
        );
    }

    #[test]
    fn file_backed_disks_are_the_machines_own_and_not_shared() {
        let disk = |image: &str| format!("[[vm.virtio]]\nkind = \"blk\"\nimage = \"{image}\"\n");
        let read_only = disk("ro.img").replace("blk\"\n", "blk\"\nread_only = true\n");
        let text = format!(
            "{}{}{}{}{}{read_only}",
            machine(2, "256M"),
            vm("a", "[0]", ""),
            disk("disk.img"),
            vm("b", "[1]", ""),
            disk("other.img"),
        );
        let scenario = check(&text).unwrap();
        let disks = scenario.machine_disks();
        let ids: Vec<_> =
            disks.iter().map(|d| (d.id.as_str(), d.path.to_str().unwrap(), d.read_only)).collect();
        assert_eq!(
            ids,
            [
                ("sluice-0-0", "/scenarios/disk.img", false),
                ("sluice-1-0", "/scenarios/other.img", false),
                ("sluice-1-1", "/scenarios/ro.img", true)
            ]
        );
        let shared =
            format!("{}{}{}{}", vm("a", "[0]", ""), disk("disk.img"), vm("b", "[1]", ""), disk("./disk.img"));
        assert_refused(
            &format!("{}{shared}", machine(2, "256M")),
            "vm[1].virtio[0].image: /scenarios/disk.img is already the disk of vm \"a\" (virtio[0])",
        );
        assert_refused(
            &format!("{}{}", vm("a", "[0]", ""), disk("ro.img")),
            "vm[0].virtio[0].image: cannot open /scenarios/ro.img for reading and writing: permission denied",
        );
    }

    #[test]
    fn machine_defaults_are_one_cpu_and_1_gib() {
        let scenario = check(&vm("a", "[0]", "")).unwrap();
        assert_eq!(scenario.machine, Machine { cpus: 1, memory: GIB, mte: false });
        assert!(scenario.expect.is_none());
    }

    #[test]
    fn all_refusals_are_reported_together() {
        let text = format!("{}{}", machine(0, "3M"), vm("a b", "[]", ""));
        let Refusal(errors) = check(&text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("machine.cpus:"));
        assert!(errors[1].starts_with("machine.memory:"));
        assert!(errors[2].starts_with("vm[0].name:"));
        assert!(errors[3].starts_with("vm[0].cpus:"));
    }

    #[test]
    fn machine_cpus_out_of_range() {
        assert_refused(
            &format!("[machine]\ncpus = 0\n{}", vm("a", "[0]", "")),
            "machine.cpus: 0 is not in 1..=8",
        );
        assert_refused(
            &format!("[machine]\ncpus = 9\n{}", vm("a", "[0]", "")),
            "machine.cpus: 9 is not in 1..=8",
        );
    }

    #[test]
    fn machine_memory_not_a_size() {
        assert_refused(
            &format!("[machine]\nmemory = \"lots\"\n{}", vm("a", "[0]", "")),
            "machine.memory: \"lots\" is not a size (write bytes, or a number with a K, M or G suffix)",
        );
    }

    #[test]
    fn machine_memory_not_a_multiple_of_the_granule() {
        assert_refused(
            &format!("{}{}", machine(1, "1025M"), vm("a", "[0]", "")),
            "machine.memory: 1025 MiB is not a multiple of 2 MiB",
        );
    }

    #[test]
    fn machine_memory_too_small_for_the_hypervisor() {
        assert_refused(
            &format!("{}{}", machine(1, "64M"), vm("a", "[0]", "")),
            "machine.memory: 64 MiB leaves nothing for VMs once the hypervisor has its 64 MiB",
        );
    }

    #[test]
    fn no_vm_is_refused() {
        assert_refused("[machine]\ncpus = 1", "vm: a scenario needs at least one [[vm]] table");
    }

    #[test]
    fn too_many_vms_are_refused() {
        let vms: String =
            (0..8).map(|i| vm(&format!("v{i}"), &format!("[{i}]"), "memory = \"4M\"")).collect();
        assert_refused(
            &format!("{}{vms}", machine(8, "1G")),
            "vm: 8 VMs given, but a bundle holds at most 7",
        );
    }

    #[test]
    fn empty_name_is_refused() {
        assert_refused(&vm("", "[0]", ""), "vm[0].name: the name is empty");
    }

    #[test]
    fn long_name_is_refused() {
        let name = "x".repeat(32);
        assert_refused_starting(&vm(&name, "[0]", ""), "vm[0].name: \"xxxxxxxx");
        assert!(check(&vm(&"x".repeat(31), "[0]", "")).is_ok());
    }

    #[test]
    fn name_with_bad_characters_is_refused() {
        assert_refused(
            &vm("a.b", "[0]", ""),
            "vm[0].name: \"a.b\" contains '.'; use only letters, digits, '_' and '-'",
        );
        assert!(check(&vm("A-z_09", "[0]", "")).is_ok());
    }

    #[test]
    fn duplicate_name_is_refused() {
        let text = format!("{}{}{}", machine(2, "1G"), vm("a", "[0]", ""), vm("a", "[1]", ""));
        assert_refused(&text, "vm[1].name: \"a\" is already the name of vm[0]");
    }

    #[test]
    fn empty_cpu_list_is_refused() {
        assert_refused(&vm("a", "[]", ""), "vm[0].cpus: the list is empty; a VM needs at least one CPU");
    }

    #[test]
    fn cpu_beyond_the_machine_is_refused() {
        assert_refused(
            &format!("{}{}", machine(2, "1G"), vm("a", "[2]", "")),
            "vm[0].cpus: CPU 2 does not exist: machine.cpus is 2",
        );
        assert_refused(&vm("a", "[-1]", ""), "vm[0].cpus: CPU -1 does not exist: machine.cpus is 1");
    }

    #[test]
    fn cpu_listed_twice_is_refused() {
        assert_refused(
            &format!("{}{}", machine(2, "1G"), vm("a", "[1, 1]", "")),
            "vm[0].cpus: CPU 1 is listed twice",
        );
    }

    #[test]
    fn cpu_in_two_vms_is_refused() {
        let text = format!("{}{}{}", machine(2, "1G"), vm("hello", "[0, 1]", ""), vm("b", "[0]", ""));
        assert_refused(&text, "vm[1].cpus: CPU 0 is already given to vm \"hello\"");
    }

    #[test]
    fn zero_memory_is_refused() {
        assert_refused(
            &vm("a", "[0]", "memory = 0"),
            "vm[0].memory: 0 bytes must be a non-zero multiple of 2 MiB",
        );
    }

    #[test]
    fn memory_not_a_multiple_of_2_mib_is_refused() {
        assert_refused(
            &vm("a", "[0]", "memory = \"3M\""),
            "vm[0].memory: 3 MiB must be a non-zero multiple of 2 MiB",
        );
    }

    #[test]
    fn memory_of_only_the_dtb_area_is_refused() {
        assert_refused(
            &vm("a", "[0]", "memory = \"2M\""),
            "vm[0].memory: 2 MiB leaves no room for images: the top 2 MiB of guest RAM hold its DTB",
        );
    }

    #[test]
    fn memory_beyond_the_ipa_space_is_refused() {
        assert_refused_starting(
            &format!("{}{}", machine(1, "1024G"), vm("a", "[0]", "memory = \"256G\"")),
            "vm[0].memory: 256 GiB is more than the guest address space holds (255 GiB)",
        );
    }

    #[test]
    fn memory_that_is_no_size_is_refused() {
        assert_refused(&vm("a", "[0]", "memory = -2"), "vm[0].memory: -2 is negative");
        assert_refused_starting(&vm("a", "[0]", "memory = \"64X\""), "vm[0].memory: \"64X\" is not a size");
    }

    #[test]
    fn misaligned_host_base_is_refused() {
        assert_refused(
            &vm("a", "[0]", "host_base = \"0x50100000\""),
            "vm[0].host_base: 0x50100000 must be 2 MiB aligned",
        );
    }

    #[test]
    fn host_base_that_is_no_address_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "host_base = \"high\""),
            "vm[0].host_base: \"high\" is not a number",
        );
    }

    #[test]
    fn host_base_in_the_hypervisor_area_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "host_base = \"0x40000000\""),
            "vm[0].host_base: [0x40000000, 0x44000000) is not inside the host RAM VMs may use, [0x44000000, 0x80000000)",
        );
    }

    #[test]
    fn host_base_beyond_machine_ram_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "host_base = \"0x7e000000\""),
            "vm[0].host_base: [0x7e000000, 0x82000000) is not inside",
        );
        // Exactly at the end is fine.
        assert!(check(&vm("a", "[0]", "host_base = \"0x7c000000\"")).is_ok());
    }

    #[test]
    fn overlapping_pinned_ram_is_refused() {
        let text = format!(
            "{}{}{}",
            machine(2, "1G"),
            vm("a", "[0]", "host_base = \"0x50000000\""),
            vm("b", "[1]", "host_base = \"0x53e00000\"")
        );
        assert_refused(
            &text,
            "vm[1].host_base: [0x53e00000, 0x57e00000) overlaps vm \"a\"'s RAM [0x50000000, 0x54000000)",
        );
    }

    #[test]
    fn missing_kernel_is_refused_with_the_os_reason() {
        let text = vm("a", "[0]", "kernel = \"/nonexistent/sluice/y.bin\"");
        let Refusal(errors) = check_with(&text, &|p| std::fs::read(p)).unwrap_err();
        assert_eq!(
            errors,
            ["vm[0].kernel: cannot read /nonexistent/sluice/y.bin: No such file or directory"]
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_config() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"sub/k.bin\""),
            "vm[0].kernel: cannot read /scenarios/sub/k.bin:",
        );
    }

    #[test]
    fn missing_test_guest_says_how_to_build_it() {
        assert_refused(
            &vm("a", "[0]", "kernel = \"guest:nope\""),
            "vm[0].kernel: cannot read /guests/nope.bin: entity not found \
             (test guests are built by `cargo xtask build`)",
        );
    }

    #[test]
    fn bad_test_guest_name_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"guest:../etc/passwd\""),
            "vm[0].kernel: bad test guest name:",
        );
    }

    #[test]
    fn empty_kernel_path_is_refused() {
        assert_refused(&vm("a", "[0]", "kernel = \"\""), "vm[0].kernel: the path is empty");
    }

    #[test]
    fn empty_kernel_is_refused() {
        assert_refused(&vm("a", "[0]", "kernel = \"empty.bin\""), "vm[0].kernel: the image is empty");
    }

    #[test]
    fn kernel_too_big_for_ram_is_refused() {
        assert_refused(
            &vm("a", "[0]", "kernel = \"big.bin\"\nmemory = \"4M\""),
            "vm[0].kernel: the image needs [0x40000000, 0x40300000) (3 MiB), which does not end \
             below the DTB area: the room for images is [0x40000000, 0x40200000)",
        );
    }

    #[test]
    fn kernel_bss_counts_against_ram() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"linux.img\"\nmemory = \"8M\""),
            "vm[0].kernel: the image needs [0x40000000, 0x40800000) (8 MiB)",
        );
    }

    #[test]
    fn big_endian_kernel_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"be.img\""),
            "vm[0].kernel: the arm64 Image header says big-endian",
        );
    }

    #[test]
    fn load_address_outside_ram_is_refused() {
        assert_refused(
            &vm("a", "[0]", "load_address = \"0x80000000\""),
            "vm[0].load_address: 0x80000000 is outside the VM's RAM [0x40000000, 0x44000000)",
        );
    }

    #[test]
    fn load_address_for_an_arm64_image_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"linux.img\"\nload_address = 0x40080000"),
            "vm[0].load_address: the image has an arm64 Image header",
        );
    }

    #[test]
    fn raw_image_at_load_address_is_accepted() {
        let scenario = check(&vm("a", "[0]", "load_address = \"0x40080000\"")).unwrap();
        assert_eq!(scenario.vms[0].layout.entry, 0x4008_0000);
    }

    #[test]
    fn missing_initrd_is_refused() {
        assert_refused(
            &vm("a", "[0]", "initrd = \"gone.img\""),
            "vm[0].initrd: cannot read /scenarios/gone.img: entity not found",
        );
    }

    #[test]
    fn guest_prefix_is_a_plain_path_for_initrds() {
        assert_refused_starting(
            &vm("a", "[0]", "initrd = \"guest:hello\""),
            "vm[0].initrd: cannot read /scenarios/guest:hello",
        );
    }

    #[test]
    fn initrd_too_big_for_ram_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "initrd = \"big-initrd.img\"\nmemory = \"4M\""),
            "vm[0].initrd: 3 MiB does not fit below the DTB area",
        );
    }

    #[test]
    fn initrd_overlapping_the_kernel_is_refused() {
        assert_refused_starting(
            &vm("a", "[0]", "kernel = \"big.bin\"\ninitrd = \"big-initrd.img\"\nmemory = \"6M\""),
            "vm[0].initrd: the initrd at [0x40100000, 0x40400000) overlaps the kernel at [0x40000000, 0x40300000)",
        );
    }

    #[test]
    fn long_bootargs_are_refused() {
        let long = "x".repeat(1025);
        assert_refused(
            &vm("a", "[0]", &format!("bootargs = \"{long}\"")),
            "vm[0].bootargs: is longer than 1024 bytes",
        );
        assert!(check(&vm("a", "[0]", &format!("bootargs = \"{}\"", &long[1..]))).is_ok());
    }

    #[test]
    fn bootargs_with_nul_are_refused() {
        assert_refused(
            &vm("a", "[0]", "bootargs = \"a\\u0000b\""),
            "vm[0].bootargs: contains a NUL character",
        );
    }

    #[test]
    fn expect_timeout_must_be_positive() {
        assert_refused(
            &format!("{}[expect]\ntimeout_secs = 0\n", vm("a", "[0]", "")),
            "expect.timeout_secs: 0 is not in 1..=86400",
        );
    }

    #[test]
    fn expect_exit_status_must_be_a_byte() {
        assert_refused(
            &format!("{}[expect]\nexit_status = 256\n", vm("a", "[0]", "")),
            "expect.exit_status: 256 is not an exit status (0..=255)",
        );
    }

    #[test]
    fn expect_entries_must_be_single_nonempty_lines() {
        assert_refused(
            &format!("{}[expect]\nlines = [\"[a] ok\", \"[a] \"]\n", vm("a", "[0]", "")),
            "expect.lines[1]: \"[a] \" matches every line of its speaker",
        );
        assert_refused(
            &format!("{}[expect]\nabsent = [\"\"]\n", vm("a", "[0]", "")),
            "expect.absent[0]: \"\" matches every line of its speaker",
        );
        assert_refused_starting(
            &format!("{}[expect]\nabsent = [\"a\\nb\"]\n", vm("a", "[0]", "")),
            "expect.absent[0]: \"a\\nb\" contains a line break",
        );
    }

    #[test]
    fn expected_lines_say_whose_they_are() {
        assert_refused(
            &format!("{}[expect]\nlines = [\"hello: done\"]\n", vm("a", "[0]", "")),
            "expect.lines[0]: \"hello: done\" doesn't say whose line it is; start it with a VM's tag \
             (\"[a] hello: done\") or with \"sluice: \" for the hypervisor's own",
        );
        assert_refused(
            &format!("{}[expect]\nlines = [\"[b] x\"]\n", vm("a", "[0]", "")),
            "expect.lines[0]: \"[b] x\" is said by VM \"b\", which the scenario doesn't have",
        );
        // Absent entries may leave the speaker out: then nobody may say them.
        let text = format!(
            "{}[expect]\nlines = [\"sluice: x\"]\nabsent = [\"FAIL\", \"[a] y\"]\n",
            vm("a", "[0]", "")
        );
        let expect = check(&text).unwrap().expect.unwrap();
        assert_eq!(expect.absent, [Said::parse("FAIL"), Said::parse("[a] y")]);
    }

    #[test]
    fn bundle_damage_is_checked() {
        let with = |damage: &str| format!("{}[expect]\nbundle_damage = {damage}\n", vm("a", "[0]", ""));
        let expect = check(&with("[\"truncate 64\", \"xor 0x40 1\"]")).unwrap().expect.unwrap();
        assert_eq!(
            expect.bundle_damage,
            [Damage::Truncate { len: 64 }, Damage::Xor { offset: 0x40, mask: 1 }]
        );
        assert_refused_starting(
            &with("[\"melt\"]"),
            "expect.bundle_damage[0]: \"melt\": write \"truncate N\"",
        );
    }

    #[test]
    fn quit_within_needs_typed_input_and_a_positive_bound() {
        let send = "[[expect.send]]\nafter = \"ready\"\ntext = \"\\u0001x\"\n";
        let with =
            |ms: &str, send: &str| format!("{}[expect]\nquit_within_ms = {ms}\n{send}", vm("a", "[0]", ""));
        let expect = check(&with("1000", send)).unwrap().expect.unwrap();
        assert_eq!(expect.quit_within, Some(Duration::from_millis(1000)));
        assert_refused_starting(&with("1000", ""), "expect.quit_within_ms: there is no typed input");
        assert_refused_starting(&with("0", send), "expect.quit_within_ms: 0 is not a positive number");
    }

    #[test]
    fn absent_files_stay_inside_the_workspace() {
        let with = |files: &str| format!("{}[expect]\nabsent_files = {files}\n", vm("a", "[0]", ""));
        let expect = check(&with("[\"target/sluice/x.txt\"]")).unwrap().expect.unwrap();
        assert_eq!(expect.absent_files, [PathBuf::from("target/sluice/x.txt")]);
        for bad in ["/etc/passwd", "../x", "a/../../b", ""] {
            assert_refused(
                &with(&format!("[{bad:?}]")),
                &format!(
                    "expect.absent_files[0]: {bad:?} is not a path inside the workspace (relative, without \"..\")"
                ),
            );
        }
    }

    #[test]
    fn clocks_are_wall_or_icount_once_each() {
        let with = |clocks: &str| format!("{}[expect]\nclocks = {clocks}\n", vm("a", "[0]", ""));
        let expect = check(&with("[\"icount\", \"wall\"]")).unwrap().expect.unwrap();
        assert_eq!(expect.clocks, [Clock::Icount, Clock::Wall]);
        assert_refused(&with("[\"real\"]"), "expect.clocks[0]: \"real\" is not \"wall\" or \"icount\"");
        assert_refused(&with("[\"wall\", \"wall\"]"), "expect.clocks[1]: \"wall\" is listed twice");
        assert_refused(&with("[]"), "expect.clocks: empty; the scenario would never run (say [\"wall\"])");
    }

    #[test]
    fn sends_are_checked_and_kept_in_order() {
        let text = format!(
            "{}[expect]\n[[expect.send]]\nafter = \"echo: ready\"\ntext = \"hello\\r\"\n\
             [[expect.send]]\nafter = \"hello\"\ntext = \"\\u0001x\"\n",
            vm("a", "[0]", "")
        );
        let expect = check(&text).unwrap().expect.unwrap();
        assert_eq!(
            expect.sends,
            [
                Step { after: "echo: ready".to_owned(), text: b"hello\r".to_vec() },
                Step { after: "hello".to_owned(), text: b"\x01x".to_vec() },
            ]
        );
    }

    #[test]
    fn a_send_needs_something_to_wait_for_and_to_send() {
        let send = |after: &str, text: &str| {
            format!(
                "{}[expect]\n[[expect.send]]\nafter = \"ok\"\ntext = \"x\"\n\
                 [[expect.send]]\nafter = \"{after}\"\ntext = \"{text}\"\n",
                vm("a", "[0]", "")
            )
        };
        assert_refused(&send("", "x"), "expect.send[1].after: empty; say what output the input waits for");
        assert_refused(
            &send("a\\r\\nb", "x"),
            "expect.send[1].after: \"a\\r\\nb\" contains a line break; wait for text within one line",
        );
        assert_refused(&send("ok", ""), "expect.send[1].text: empty; there is nothing to send");
    }
}
