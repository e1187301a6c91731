//! Checking a VM's `[[vm.virtio]]` devices.

use platform::bundle::spec::{self as rules, DeviceSpec, DiskSpec};
use platform::bundle::{KIND_BLK, KIND_CONSOLE, SECTOR_SIZE};
use platform::qemu_virt::VIRTIO_MMIO_SLOTS;

use crate::config::VirtioConfig;
use std::path::PathBuf;

use crate::regular_file::DiskFile;
use crate::units::fmt_size;

/// A checked virtio device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// What it is.
    pub kind: DeviceKind,
    /// The legacy virtio-mmio interface (version 1).
    pub legacy: bool,
}

/// The kinds of virtio device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk.
    Blk(Disk),
    /// virtio-console on the shared UART.
    Console,
    /// virtio-console joined to the console of another VM with this channel name.
    Channel(String),
}

/// A disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Where its sectors live.
    pub medium: Medium,
    /// Writes are refused.
    pub read_only: bool,
    /// `GET_ID`'s answer.
    pub serial: Option<String>,
}

/// Where a disk's sectors live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// Host RAM, filled from an image; gone when the machine stops.
    Ram {
        /// Size in bytes (a multiple of the sector size).
        size: u64,
        /// Its first bytes, from the image file.
        image: Option<Vec<u8>>,
    },
    /// A disk image file, used in place: QEMU gives the machine a virtio-blk device
    /// on it, which Sluice drives.
    File {
        /// The file and its size.
        file: DiskFile,
        /// The machine's device's ID, by which Sluice finds it (`sluice-VM-SLOT`).
        id: String,
    },
}

impl Disk {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        match &self.medium {
            Medium::Ram { size, .. } => *size,
            Medium::File { file, .. } => file.size,
        }
    }

    /// Host RAM it takes: a RAM disk's size.
    pub fn ram_size(&self) -> Option<u64> {
        match &self.medium {
            Medium::Ram { size, .. } => Some(*size),
            Medium::File { .. } => None,
        }
    }
}

/// A disk image file the machine gets as a virtio-blk device of its own, which
/// Sluice finds by `id` and serves a VM's disk on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDisk {
    /// The file.
    pub path: PathBuf,
    /// The device's ID (`GET_ID`).
    pub id: String,
    /// QEMU opens the file read-only.
    pub read_only: bool,
}

/// The ID the tools give the machine's device for VM `vm`'s virtio slot `slot`.
pub fn host_disk_id(vm: usize, slot: usize) -> String {
    format!("sluice-{vm}-{slot}")
}

impl Device {
    /// The machine's own disk this device is, if it is a file-backed disk.
    pub fn machine_disk(&self) -> Option<MachineDisk> {
        match &self.kind {
            DeviceKind::Blk(Disk { medium: Medium::File { file, id }, read_only, .. }) => {
                Some(MachineDisk { path: file.path.clone(), id: id.clone(), read_only: *read_only })
            }
            _ => None,
        }
    }

    /// The device as the bundle describes it.
    pub fn spec(&self) -> DeviceSpec<'_> {
        let kind = match &self.kind {
            DeviceKind::Blk(disk) => rules::DeviceKind::Blk(DiskSpec {
                medium: match &disk.medium {
                    Medium::Ram { size, image } => {
                        rules::Medium::Ram { size: *size, image: image.as_deref() }
                    }
                    Medium::File { id, .. } => rules::Medium::HostDevice { id },
                },
                read_only: disk.read_only,
                serial: disk.serial.as_deref(),
            }),
            DeviceKind::Console => rules::DeviceKind::Console,
            DeviceKind::Channel(name) => rules::DeviceKind::Channel(name),
        };
        DeviceSpec { kind, legacy: self.legacy }
    }
}

/// Which virtio-mmio interface QEMU's devices show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Version 2 (virtio 1.x).
    Modern,
    /// Version 1 (legacy).
    Legacy,
}

impl Mode {
    /// Parses `"modern"` or `"legacy"`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "modern" => Some(Self::Modern),
            "legacy" => Some(Self::Legacy),
            _ => None,
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::Legacy => "legacy",
        }
    }
}

/// Most devices a VM can have: one per virtio-mmio slot.
pub const MAX_DEVICES: usize = VIRTIO_MMIO_SLOTS as usize;

/// How [`check`] reaches the files a device names, as the config names them.
pub struct DeviceFiles<'a> {
    /// Reads an image's bytes (a RAM disk's).
    pub read: &'a mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    /// Opens a disk image file (writable unless the flag says read-only).
    pub open_disk: &'a mut dyn FnMut(&str, bool) -> Result<DiskFile, String>,
}

/// Checks one device, the one in virtio slot `slot` of VM `vm`.
///
/// # Errors
///
/// Every `(field, reason)` that refuses the device.
pub fn check(
    config: &VirtioConfig,
    (vm, slot): (usize, usize),
    files: &mut DeviceFiles<'_>,
) -> Result<Device, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let kind = match config.kind.as_str() {
        KIND_BLK => check_blk(config, (vm, slot), files, &mut errors),
        KIND_CONSOLE => {
            for (field, given) in [
                ("backend", config.backend.is_some()),
                ("image", config.image.is_some()),
                ("size", config.size.is_some()),
                ("read_only", config.read_only),
                ("serial", config.serial.is_some()),
            ] {
                if given {
                    errors.push((field, "only a blk device has a disk".to_owned()));
                }
            }
            match &config.channel {
                None => Some(DeviceKind::Console),
                Some(name) => match check_channel_name(name) {
                    Ok(()) => Some(DeviceKind::Channel(name.clone())),
                    Err(reason) => {
                        errors.push(("channel", format!("{name:?} {reason}")));
                        None
                    }
                },
            }
        }
        other => {
            errors.push(("kind", format!("{other:?} is not a device kind: use \"blk\" or \"console\"")));
            None
        }
    };
    match kind {
        Some(kind) if errors.is_empty() => Ok(Device { kind, legacy: config.legacy }),
        _ => Err(errors),
    }
}

/// A channel's name: as a VM's (`[A-Za-z0-9_-]`, 1 to 31 characters).
fn check_channel_name(name: &str) -> Result<(), &'static str> {
    rules::check_name(name)?;
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err("may hold only letters, digits, '_' and '-'")
    }
}

fn check_blk(
    config: &VirtioConfig,
    (vm, slot): (usize, usize),
    files: &mut DeviceFiles<'_>,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<DeviceKind> {
    if config.channel.is_some() {
        errors.push(("channel", "only a console joins a channel".to_owned()));
    }
    if let Some(serial) = &config.serial {
        if let Err(reason) = rules::check_serial(serial) {
            errors.push(("serial", format!("{serial:?} {reason}")));
        }
    }
    // A disk with an image and no size is the file itself, unless it says "ram".
    let file_backed = match config.backend.as_deref() {
        Some(BACKEND_FILE) => true,
        Some(BACKEND_RAM) => false,
        None => config.image.is_some() && config.size.is_none(),
        Some(other) => {
            errors.push(("backend", format!("{other:?} is not a disk backend: use \"file\" or \"ram\"")));
            return None;
        }
    };
    let medium = if file_backed {
        check_file(config, (vm, slot), files, errors)?
    } else {
        check_ram(config, files, errors)?
    };
    let disk = Disk { medium, read_only: config.read_only, serial: config.serial.clone() };
    if let Err(reason) = rules::check_disk_size(disk.size()) {
        errors.push(("size", format!("{} bytes {reason}", disk.size())));
    }
    Some(DeviceKind::Blk(disk))
}

/// A file-backed disk: the file, which must be there, readable and (unless the disk
/// is read-only) writable, a whole number of sectors.
fn check_file(
    config: &VirtioConfig,
    (vm, slot): (usize, usize),
    files: &mut DeviceFiles<'_>,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<Medium> {
    if config.size.is_some() {
        errors.push((
            "size",
            "a file-backed disk is as large as its file: leave size out, or say backend = \"ram\"".to_owned(),
        ));
    }
    let Some(path) = config.image.as_deref() else {
        errors.push(("image", "a file-backed disk needs its file: image = \"disk.img\"".to_owned()));
        return None;
    };
    match (files.open_disk)(path, config.read_only) {
        Ok(file) => Some(Medium::File { file, id: host_disk_id(vm, slot) }),
        Err(reason) => {
            errors.push(("image", reason));
            None
        }
    }
}

/// A RAM disk: its size, and the image that fills its start.
fn check_ram(
    config: &VirtioConfig,
    files: &mut DeviceFiles<'_>,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<Medium> {
    let image = match config.image.as_deref() {
        None => None,
        Some(path) => match (files.read)(path) {
            Ok(bytes) => Some(bytes),
            Err(reason) => {
                errors.push(("image", reason));
                return None;
            }
        },
    };
    let size = match (&config.size, &image) {
        (Some(size), _) => match size.bytes() {
            Ok(size) => size,
            Err(reason) => {
                errors.push(("size", reason));
                return None;
            }
        },
        (None, Some(image)) => (image.len() as u64).next_multiple_of(SECTOR_SIZE),
        (None, None) => {
            errors.push(("size", "a RAM disk needs an image or a size".to_owned()));
            return None;
        }
    };
    if let Some(image) = &image {
        if image.len() as u64 > size {
            errors.push((
                "image",
                format!("{} does not fit in a {} disk", fmt_size(image.len() as u64), fmt_size(size)),
            ));
        }
    }
    Some(Medium::Ram { size, image })
}

/// `backend` of a disk on a file.
pub const BACKEND_FILE: &str = "file";
/// `backend` of a disk in RAM.
pub const BACKEND_RAM: &str = "ram";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Number;
    use std::path::PathBuf;

    fn blk() -> VirtioConfig {
        VirtioConfig {
            kind: "blk".into(),
            backend: None,
            image: None,
            size: Some(Number::Text("1M".into())),
            read_only: false,
            serial: Some("disk0".into()),
            channel: None,
            legacy: false,
        }
    }

    fn read(path: &str) -> Result<Vec<u8>, String> {
        match path {
            "disk.img" => Ok(vec![7; 1000]),
            _ => Err(format!("cannot read {path}: No such file or directory")),
        }
    }

    /// `root.img` (4 KiB) opens only read-only; `odd.img` is 1000 bytes.
    fn open_disk(path: &str, read_only: bool) -> Result<DiskFile, String> {
        let size = match path {
            "disk.img" => 1 << 20,
            "root.img" if read_only => 4096,
            "root.img" => return Err("cannot open root.img for writing: Permission denied".into()),
            "odd.img" => 1000,
            _ => return Err(format!("cannot open {path}: No such file or directory")),
        };
        Ok(DiskFile { path: PathBuf::from("/scenarios").join(path), size })
    }

    fn checked(config: &VirtioConfig) -> Result<Device, Vec<(&'static str, String)>> {
        let (mut read, mut open_disk) = (read, open_disk);
        check(config, (1, 2), &mut DeviceFiles { read: &mut read, open_disk: &mut open_disk })
    }

    fn fields(result: Result<Device, Vec<(&'static str, String)>>) -> Vec<&'static str> {
        result.unwrap_err().into_iter().map(|(f, _)| f).collect()
    }

    fn disk(device: &Device) -> &Disk {
        let DeviceKind::Blk(disk) = &device.kind else { panic!("{device:?}") };
        disk
    }

    #[test]
    fn a_disk_with_an_image_and_no_size_is_the_file_itself() {
        let config = VirtioConfig { image: Some("disk.img".into()), size: None, ..blk() };
        let device = checked(&config).unwrap();
        let file = DiskFile { path: "/scenarios/disk.img".into(), size: 1 << 20 };
        assert_eq!(disk(&device).medium, Medium::File { file, id: "sluice-1-2".into() });
        assert_eq!((disk(&device).size(), disk(&device).ram_size()), (1 << 20, None));
        let read_only = VirtioConfig { image: Some("root.img".into()), size: None, read_only: true, ..blk() };
        assert_eq!(disk(&checked(&read_only).unwrap()).size(), 4096);
    }

    #[test]
    fn a_ram_disk_with_an_image_rounds_up_to_a_sector() {
        let config =
            VirtioConfig { backend: Some("ram".into()), image: Some("disk.img".into()), size: None, ..blk() };
        let device = checked(&config).unwrap();
        let Medium::Ram { size, image } = &disk(&device).medium else { panic!() };
        assert_eq!((*size, image.as_ref().map(Vec::len)), (1024, Some(1000)));
        assert_eq!(disk(&checked(&blk()).unwrap()).ram_size(), Some(1 << 20), "a size alone is a RAM disk");
    }

    #[test]
    fn refusals_name_their_field() {
        assert_eq!(fields(checked(&VirtioConfig { kind: "net".into(), ..blk() })), ["kind"]);
        assert_eq!(fields(checked(&VirtioConfig { size: None, ..blk() })), ["size"]);
        assert_eq!(fields(checked(&VirtioConfig { size: Some(Number::Int(1000)), ..blk() })), ["size"]);
        let missing = VirtioConfig { backend: Some("ram".into()), image: Some("nope.img".into()), ..blk() };
        assert_eq!(fields(checked(&missing)), ["image"]);
        let too_big = VirtioConfig { image: Some("disk.img".into()), size: Some(Number::Int(512)), ..blk() };
        assert_eq!(fields(checked(&too_big)), ["image"]);
        let serial = VirtioConfig { serial: Some("x".repeat(21)), ..blk() };
        assert_eq!(fields(checked(&serial)), ["serial"]);
        let nul = VirtioConfig { serial: Some("disk\0x".into()), ..blk() };
        assert_eq!(fields(checked(&nul)), ["serial"]);
        let console = VirtioConfig { kind: "console".into(), ..blk() };
        assert_eq!(fields(checked(&console)), ["size", "serial"]);
    }

    #[test]
    fn file_backed_disks_are_refused_with_the_field() {
        let file = |image: &str| VirtioConfig {
            backend: Some("file".into()),
            image: Some(image.into()),
            size: None,
            ..blk()
        };
        assert_eq!(fields(checked(&VirtioConfig { image: None, ..file("") })), ["image"]);
        assert_eq!(fields(checked(&file("nope.img"))), ["image"]);
        assert_eq!(fields(checked(&file("root.img"))), ["image"], "not writable, and not read_only");
        assert_eq!(fields(checked(&file("odd.img"))), ["size"], "not a whole number of sectors");
        assert_eq!(
            fields(checked(&VirtioConfig { size: Some(Number::Int(512)), ..file("disk.img") })),
            ["size"]
        );
        assert_eq!(fields(checked(&VirtioConfig { backend: Some("nvme".into()), ..blk() })), ["backend"]);
    }

    #[test]
    fn a_console_is_just_a_kind() {
        let config = VirtioConfig { kind: "console".into(), size: None, serial: None, legacy: true, ..blk() };
        assert_eq!(checked(&config).unwrap(), Device { kind: DeviceKind::Console, legacy: true });
    }
}
