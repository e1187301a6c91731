//! The initramfs: busybox, the virtio modules, their load order and our init, as a
//! gzipped newc cpio archive.
//!
//! ```text
//! /init                       tests/linux/init
//! /modules.order              the modules to insmod, one absolute path a line, in order
//! /bin/busybox, /bin/sh       busybox (the init makes the other applet links)
//! /dev/console                so the init has a console before devtmpfs is mounted
//! /etc/disk.sha256sums        the kit disk's SHA256SUMS, to compare with the disk's own
//! /lib/modules/<release>/kernel/...ko   the modules, decompressed
//! /proc /sys /tmp /mnt ...    empty mount points
//! ```

use std::collections::BTreeSet;
use std::io::{self, Write};

use super::cpio::Writer;
use super::modules::Module;

/// The file listing the modules to load, in order.
pub const MODULES_ORDER: &str = "modules.order";
/// A copy of the disk's checksum list.
pub const DISK_SUMS: &str = "etc/disk.sha256sums";
/// Empty directories the init and its successors mount on or write to.
const DIRS: [&str; 12] =
    ["bin", "dev", "etc", "lib", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr"];
/// More of the same, under `usr`.
const USR_DIRS: [&str; 2] = ["usr/bin", "usr/sbin"];
/// `/dev/console`: character device 5:1 (Documentation/admin-guide/devices.txt).
const CONSOLE: (u32, u32) = (5, 1);

/// What goes in.
pub struct Contents<'a> {
    /// The static busybox binary.
    pub busybox: &'a [u8],
    /// The init script.
    pub init: &'a [u8],
    /// The kernel release (`6.12.117+deb12-cloud-arm64`), naming the modules directory.
    pub release: &'a str,
    /// The modules, in load order.
    pub modules: &'a [Module],
    /// The kit disk's `SHA256SUMS`.
    pub disk_sums: &'a [u8],
}

/// Where a module lives in the initramfs (without the leading `/`).
pub fn module_path(release: &str, module: &Module) -> String {
    format!("lib/modules/{release}/{}", module.path)
}

/// `/modules.order`: one absolute path a line, in load order.
pub fn modules_order(release: &str, modules: &[Module]) -> String {
    modules.iter().map(|m| format!("/{}\n", module_path(release, m))).collect()
}

/// Every directory that holds one of `files`, parents before children.
fn parents<'a>(files: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let mut at = file;
        while let Some((parent, _)) = at.rsplit_once('/') {
            dirs.insert(parent.to_owned());
            at = parent;
        }
    }
    dirs
}

/// The uncompressed cpio archive.
///
/// # Errors
///
/// A file is too big for cpio.
pub fn archive(contents: &Contents<'_>) -> io::Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    let module_paths: Vec<String> =
        contents.modules.iter().map(|m| module_path(contents.release, m)).collect();
    let mut dirs: BTreeSet<String> = DIRS.iter().chain(&USR_DIRS).map(|d| (*d).to_owned()).collect();
    dirs.extend(parents(module_paths.iter().map(String::as_str)));
    // BTreeSet order puts "a" before "a/b", so a directory comes before what it holds.
    for dir in &dirs {
        w.dir(dir, 0o755)?;
    }
    w.char_device("dev/console", 0o600, CONSOLE.0, CONSOLE.1)?;
    w.file("bin/busybox", 0o755, contents.busybox)?;
    w.symlink("bin/sh", "busybox")?;
    for (path, module) in module_paths.iter().zip(contents.modules) {
        w.file(path, 0o644, &module.data)?;
    }
    w.file(MODULES_ORDER, 0o644, modules_order(contents.release, contents.modules).as_bytes())?;
    w.file(DISK_SUMS, 0o644, contents.disk_sums)?;
    w.file("init", 0o755, contents.init)?;
    w.finish()
}

/// `data` gzipped, with no name and time 0 in the header, so it is reproducible.
///
/// # Errors
///
/// Compression fails (it does not, in memory).
pub fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(data)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::super::cpio::read::entries;
    use super::*;

    fn modules() -> Vec<Module> {
        let module = |name: &str, path: &str| Module {
            name: name.into(),
            path: path.into(),
            data: name.as_bytes().to_vec(),
        };
        vec![
            module("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
            module("virtio_blk", "kernel/drivers/block/virtio_blk.ko"),
        ]
    }

    #[test]
    fn order_file_lists_absolute_paths_in_order() {
        assert_eq!(
            modules_order("6.12-cloud", &modules()),
            "/lib/modules/6.12-cloud/kernel/drivers/virtio/virtio_mmio.ko\n\
             /lib/modules/6.12-cloud/kernel/drivers/block/virtio_blk.ko\n"
        );
    }

    #[test]
    fn archive_holds_everything_with_parents_first() {
        let modules = modules();
        let contents = Contents {
            busybox: b"BUSYBOX",
            init: b"#!/bin/sh\n",
            release: "6.12-cloud",
            modules: &modules,
            disk_sums: b"0123  a\n",
        };
        let archive = archive(&contents).unwrap();
        let got = entries(&archive);
        let mut seen = BTreeSet::new();
        for entry in &got {
            if let Some((parent, _)) = entry.name.rsplit_once('/') {
                assert!(seen.contains(parent), "{} comes before its directory", entry.name);
            }
            seen.insert(entry.name.clone());
        }
        let find = |name: &str| got.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!((find("init").mode, find("init").data.as_slice()), (0o100_755, &b"#!/bin/sh\n"[..]));
        assert_eq!(find("bin/busybox").data, b"BUSYBOX");
        assert_eq!(find("bin/sh").data, b"busybox");
        assert_eq!((find("dev/console").mode, find("dev/console").rdev), (0o020_600, (5, 1)));
        assert_eq!(find("lib/modules/6.12-cloud/kernel/drivers/block/virtio_blk.ko").data, b"virtio_blk");
        assert_eq!(find("etc/disk.sha256sums").data, b"0123  a\n");
        assert_eq!(find("modules.order").data, modules_order("6.12-cloud", &modules).as_bytes());
        for dir in ["proc", "sys", "tmp", "mnt", "usr/sbin", "lib/modules/6.12-cloud/kernel/drivers/virtio"] {
            assert_eq!(find(dir).mode, 0o040_755, "{dir}");
        }
    }

    #[test]
    fn gzip_is_reproducible_and_round_trips() {
        let data = b"some cpio bytes".repeat(100);
        let (a, b) = (gzip(&data).unwrap(), gzip(&data).unwrap());
        assert_eq!(a, b);
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "mtime 0");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
