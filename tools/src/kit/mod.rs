//! `cargo xtask kit`: the Linux guest kit, built from Debian's packages.
//!
//! Debian's newest arm64 cloud kernel and busybox-static are downloaded once into
//! `target/sluice/kit/` and pinned by `manifest.toml`; from them, and from
//! `tests/linux/init`, the kit makes `Image` (the kernel, as the arm64 boot protocol
//! wants it), `initramfs.cpio.gz` and `disk.img` (ext4 with known files). Every run
//! rebuilds those three, the same bytes from the same packages.

mod cpio;
mod debver;
mod disk;
mod fetch;
mod initramfs;
mod manifest;
mod modules;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::deps::{self, Tool};
use crate::workspace::Workspace;

/// The virtio modules the initramfs loads (those the kernel has built in are skipped).
pub const MODULES: [&str; 5] = ["virtio", "virtio_ring", "virtio_mmio", "virtio_blk", "virtio_console"];

/// Host programs the kit is made with.
const TOOLS: [Tool; 3] = [
    Tool { program: "dpkg-deb", package: "dpkg" },
    Tool { program: "mkfs.ext4", package: "e2fsprogs" },
    Tool { program: "debugfs", package: "e2fsprogs" },
];

/// Where the init script lives, from the workspace root.
pub const INIT_SCRIPT: &str = "tests/linux/init";

/// `data`'s SHA-256 in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// What the kit made.
#[derive(Debug, Clone)]
pub struct Kit {
    /// The kernel `Image`.
    pub image: PathBuf,
    /// The gzipped initramfs.
    pub initramfs: PathBuf,
    /// The ext4 disk image.
    pub disk: PathBuf,
    /// The manifest naming the packages.
    pub manifest: PathBuf,
}

/// The kit directory, `target/sluice/kit`.
pub fn kit_dir(ws: &Workspace) -> PathBuf {
    ws.out_dir().join("kit")
}

/// The kernel's release (`6.12.117+deb12-cloud-arm64`): the one directory in
/// `lib/modules` of the unpacked kernel package.
fn release(kernel_root: &Path) -> Result<String> {
    let modules = kernel_root.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&modules)
        .with_context(|| format!("cannot read {}", modules.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        n => bail!("{} holds {n} kernel releases, expected one", modules.display()),
    }
}

/// The arm64 `Image` in a `vmlinuz` file: as it is, or gunzipped when gzipped.
///
/// # Errors
///
/// The file is neither an arm64 Image nor a gzipped one (an EFI zboot image, say).
pub fn kernel_image(vmlinuz: &[u8]) -> Result<Vec<u8>> {
    let image = if vmlinuz.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(vmlinuz).read_to_end(&mut out).context("cannot gunzip the kernel")?;
        out
    } else {
        vmlinuz.to_vec()
    };
    if platform::image::ImageHeader::parse(&image).is_none() {
        bail!("the kernel is not an arm64 Image (no ARM\\x64 magic at offset 0x38)");
    }
    Ok(image)
}

/// Writes `data` to `path` through a temporary file, so a reader never sees half.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut partial = path.to_path_buf().into_os_string();
    partial.push(".partial");
    std::fs::write(&partial, data).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the kit: fetches (or reuses) the packages, then writes the Image, the
/// initramfs and the disk.
///
/// # Errors
///
/// A host tool is missing and cannot be installed, the archive cannot be reached,
/// or a package does not hold what the kit needs.
pub fn build(ws: &Workspace, refresh: bool) -> Result<Kit> {
    deps::ensure(&TOOLS)?;
    let dir = kit_dir(ws);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cache = fetch::Cache { dir: dir.clone() };
    let manifest = fetch::packages(&cache, refresh)?;
    let kernel_root = fetch::unpacked(&cache, &manifest.kernel)?;
    let busybox_root = fetch::unpacked(&cache, &manifest.busybox)?;

    let release = release(&kernel_root)?;
    let vmlinuz_path = kernel_root.join("boot").join(format!("vmlinuz-{release}"));
    let vmlinuz =
        std::fs::read(&vmlinuz_path).with_context(|| format!("cannot read {}", vmlinuz_path.display()))?;
    let kit = Kit {
        image: dir.join("Image"),
        initramfs: dir.join("initramfs.cpio.gz"),
        disk: dir.join("disk.img"),
        manifest: cache.manifest_path(),
    };
    write_atomic(&kit.image, &kernel_image(&vmlinuz).with_context(|| vmlinuz_path.display().to_string())?)?;

    let resolved = modules::resolve(&kernel_root.join("lib/modules").join(&release), &MODULES)?;
    if !resolved.builtin.is_empty() {
        eprintln!("xtask: kit: built into {release}: {}", resolved.builtin.join(", "));
    }
    let names: Vec<&str> = resolved.modules.iter().map(|m| m.name.as_str()).collect();
    eprintln!("xtask: kit: modules, in load order: {}", names.join(", "));
    let busybox_path = busybox_root.join("bin/busybox");
    let busybox =
        std::fs::read(&busybox_path).with_context(|| format!("cannot read {}", busybox_path.display()))?;
    let init_path = ws.root().join(INIT_SCRIPT);
    let init = std::fs::read(&init_path).with_context(|| format!("cannot read {}", init_path.display()))?;
    let disk_sums = disk::sha256sums(&disk::files());
    let contents = initramfs::Contents {
        busybox: &busybox,
        init: &init,
        release: &release,
        modules: &resolved.modules,
        disk_sums: disk_sums.as_bytes(),
    };
    write_atomic(&kit.initramfs, &initramfs::gzip(&initramfs::archive(&contents)?)?)?;

    let mkfs = deps::find_tool("mkfs.ext4").context("mkfs.ext4 is missing")?;
    let debugfs = deps::find_tool("debugfs").context("debugfs is missing")?;
    disk::build(&disk::Tools { mkfs: &mkfs, debugfs: &debugfs }, &dir.join("disk"), &kit.disk)?;
    Ok(kit)
}

/// A `[[vm]]` for a scenario file, with the kit's files at `paths` (as the scenario
/// should name them).
pub fn snippet(image: &Path, initramfs: &Path, disk: &Path) -> String {
    format!(
        "[[vm]]\n\
         name = \"linux\"\n\
         cpus = [0]\n\
         memory = \"256M\"\n\
         kernel = \"{}\"\n\
         initrd = \"{}\"\n\
         bootargs = \"console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init\"\n\
         \n\
         [[vm.virtio]]\n\
         kind = \"blk\"\n\
         image = \"{}\"\n\
         \n\
         [[vm.virtio]]\n\
         kind = \"console\"\n",
        image.display(),
        initramfs.display(),
        disk.display()
    )
}

/// `cargo xtask kit`: builds the kit and says where it is and how to use it.
///
/// # Errors
///
/// As [`build`].
pub fn command(ws: &Workspace, refresh: bool) -> Result<()> {
    let kit = build(ws, refresh)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("kit: packages   {}", ws.relative(&kit.manifest).display());
    for (what, path) in [("kernel", &kit.image), ("initramfs", &kit.initramfs), ("disk", &kit.disk)] {
        println!("kit: {what:<10} {} ({} bytes)", ws.relative(path).display(), size(path));
    }
    println!("\nA VM for a scenario file (paths as seen from tests/linux/):\n");
    let from_tests = |p: &Path| Path::new("../..").join(ws.relative(p));
    print!("{}", snippet(&from_tests(&kit.image), &from_tests(&kit.initramfs), &from_tests(&kit.disk)));
    println!(
        "\ntests/scenarios/linux.toml boots it beside a bare-metal guest: cargo xtask run tests/scenarios/linux.toml"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn kernel_image_wants_the_arm64_magic() {
        use std::io::Write;
        let mut image = vec![0u8; 64];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(kernel_image(&image).unwrap(), image);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&image).unwrap();
        assert_eq!(kernel_image(&gz.finish().unwrap()).unwrap(), image);
        assert!(kernel_image(&[0u8; 64]).unwrap_err().to_string().contains("not an arm64 Image"));
    }

    #[test]
    fn release_is_the_one_modules_directory() {
        let dir = crate::testutil::TempDir::new("kit-release");
        dir.write("lib/modules/6.12.117+deb12-cloud-arm64/modules.builtin", b"");
        assert_eq!(release(dir.path()).unwrap(), "6.12.117+deb12-cloud-arm64");
        dir.write("lib/modules/6.1.0-56-cloud-arm64/modules.builtin", b"");
        assert!(release(dir.path()).unwrap_err().to_string().contains("2 kernel releases"));
    }

    #[test]
    fn snippet_is_a_valid_vm() {
        let text = snippet(Path::new("k/Image"), Path::new("k/initramfs.cpio.gz"), Path::new("k/disk.img"));
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        let vm = &parsed["vm"][0];
        assert_eq!(vm["kernel"].as_str(), Some("k/Image"));
        assert_eq!(vm["virtio"][0]["image"].as_str(), Some("k/disk.img"));
        assert_eq!(vm["virtio"][1]["kind"].as_str(), Some("console"));
    }
}
