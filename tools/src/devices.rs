//! Checking a VM's `[[vm.virtio]]` devices.

use platform::bundle::spec::{self as rules, DeviceSpec, DiskSpec};
use platform::bundle::{KIND_BLK, KIND_CONSOLE, SECTOR_SIZE};
use platform::qemu_virt::VIRTIO_MMIO_SLOTS;

use crate::config::VirtioConfig;
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
    /// virtio-blk over a RAM disk.
    Blk(Disk),
    /// virtio-console on the shared UART.
    Console,
}

/// A RAM disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Size in bytes (a multiple of the sector size).
    pub size: u64,
    /// Its first bytes, from the image file.
    pub image: Option<Vec<u8>>,
    /// Writes are refused.
    pub read_only: bool,
    /// `GET_ID`'s answer.
    pub serial: Option<String>,
}

impl Device {
    /// The device as the bundle describes it.
    pub fn spec(&self) -> DeviceSpec<'_> {
        let kind = match &self.kind {
            DeviceKind::Blk(disk) => rules::DeviceKind::Blk(DiskSpec {
                size: disk.size,
                image: disk.image.as_deref(),
                read_only: disk.read_only,
                serial: disk.serial.as_deref(),
            }),
            DeviceKind::Console => rules::DeviceKind::Console,
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

/// Checks one device; `read` reads an image path as the config names it.
///
/// # Errors
///
/// Every `(field, reason)` that refuses the device.
pub fn check(
    config: &VirtioConfig,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Device, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let kind = match config.kind.as_str() {
        KIND_BLK => check_blk(config, read, &mut errors),
        KIND_CONSOLE => {
            for (field, given) in [
                ("image", config.image.is_some()),
                ("size", config.size.is_some()),
                ("read_only", config.read_only),
                ("serial", config.serial.is_some()),
            ] {
                if given {
                    errors.push((field, "only a blk device has a disk".to_owned()));
                }
            }
            Some(DeviceKind::Console)
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

fn check_blk(
    config: &VirtioConfig,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    errors: &mut Vec<(&'static str, String)>,
) -> Option<DeviceKind> {
    let image = match config.image.as_deref() {
        None => None,
        Some(path) => match read(path) {
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
            errors.push(("size", "a blk device needs an image or a size".to_owned()));
            return None;
        }
    };
    if let Err(reason) = rules::check_disk_size(size) {
        errors.push(("size", format!("{size} bytes {reason}")));
    }
    if let Some(image) = &image {
        if image.len() as u64 > size {
            errors.push((
                "image",
                format!("{} does not fit in a {} disk", fmt_size(image.len() as u64), fmt_size(size)),
            ));
        }
    }
    if let Some(serial) = &config.serial {
        if let Err(reason) = rules::check_serial(serial) {
            errors.push(("serial", format!("{serial:?} {reason}")));
        }
    }
    Some(DeviceKind::Blk(Disk { size, image, read_only: config.read_only, serial: config.serial.clone() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Number;

    fn blk() -> VirtioConfig {
        VirtioConfig {
            kind: "blk".into(),
            image: None,
            size: Some(Number::Text("1M".into())),
            read_only: false,
            serial: Some("disk0".into()),
            legacy: false,
        }
    }

    fn read(path: &str) -> Result<Vec<u8>, String> {
        match path {
            "disk.img" => Ok(vec![7; 1000]),
            _ => Err(format!("cannot read {path}: No such file or directory")),
        }
    }

    fn fields(result: Result<Device, Vec<(&'static str, String)>>) -> Vec<&'static str> {
        result.unwrap_err().into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_blk_device_with_an_image_rounds_up_to_a_sector() {
        let config = VirtioConfig { image: Some("disk.img".into()), size: None, ..blk() };
        let device = check(&config, &mut read).unwrap();
        let DeviceKind::Blk(disk) = &device.kind else { panic!() };
        assert_eq!(disk.size, 1024);
        assert_eq!(disk.image.as_ref().map(Vec::len), Some(1000));
    }

    #[test]
    fn refusals_name_their_field() {
        assert_eq!(fields(check(&VirtioConfig { kind: "net".into(), ..blk() }, &mut read)), ["kind"]);
        assert_eq!(fields(check(&VirtioConfig { size: None, ..blk() }, &mut read)), ["size"]);
        assert_eq!(
            fields(check(&VirtioConfig { size: Some(Number::Int(1000)), ..blk() }, &mut read)),
            ["size"]
        );
        let missing = VirtioConfig { image: Some("nope.img".into()), ..blk() };
        assert_eq!(fields(check(&missing, &mut read)), ["image"]);
        let too_big = VirtioConfig { image: Some("disk.img".into()), size: Some(Number::Int(512)), ..blk() };
        assert_eq!(fields(check(&too_big, &mut read)), ["image"]);
        let serial = VirtioConfig { serial: Some("x".repeat(21)), ..blk() };
        assert_eq!(fields(check(&serial, &mut read)), ["serial"]);
        let nul = VirtioConfig { serial: Some("disk\0x".into()), ..blk() };
        assert_eq!(fields(check(&nul, &mut read)), ["serial"]);
        let console = VirtioConfig { kind: "console".into(), ..blk() };
        assert_eq!(fields(check(&console, &mut read)), ["size", "serial"]);
    }

    #[test]
    fn a_console_is_just_a_kind() {
        let config = VirtioConfig { kind: "console".into(), size: None, serial: None, legacy: true, ..blk() };
        assert_eq!(check(&config, &mut read).unwrap(), Device { kind: DeviceKind::Console, legacy: true });
    }
}
