//! Gets Debian's arm64 kernel and busybox packages: from the cache when the manifest
//! says it holds them, otherwise from the archive with `apt-get download`; then
//! unpacks them with `dpkg-deb -x`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::debver;
use super::manifest::{decide, Decision, Manifest, Pinned};
use super::sha256_hex;
use crate::{cmd, deps};

/// The architecture of the guest's packages.
pub const ARCH: &str = "arm64";
/// Kernel packages are `linux-image-<abi>-cloud-arm64-unsigned`.
pub const KERNEL_PREFIX: &str = "linux-image-";
/// See [`KERNEL_PREFIX`].
pub const KERNEL_SUFFIX: &str = "-cloud-arm64-unsigned";
/// The statically linked busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Where the cache keeps its files, under the kit directory.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The kit directory (`target/sluice/kit`).
    pub dir: PathBuf,
}

impl Cache {
    /// The manifest.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.toml")
    }

    /// The downloaded `.deb` files.
    pub fn debs_dir(&self) -> PathBuf {
        self.dir.join("debs")
    }

    /// The unpacked packages, one directory per `.deb` (named after it, so per version).
    pub fn unpacked_dir(&self) -> PathBuf {
        self.dir.join("unpacked")
    }

    /// Where `pinned` is unpacked.
    pub fn unpacked(&self, pinned: &Pinned) -> PathBuf {
        self.unpacked_dir().join(pinned.deb.strip_suffix(".deb").unwrap_or(&pinned.deb))
    }

    fn intact(&self, pinned: &Pinned) -> bool {
        std::fs::read(self.debs_dir().join(&pinned.deb)).is_ok_and(|data| sha256_hex(&data) == pinned.sha256)
    }
}

/// The packages the kit is built from: the manifest's when the cache holds them
/// (nothing is downloaded), else the newest in the archive, downloaded and recorded.
///
/// # Errors
///
/// The archive cannot be asked or the download fails; the message says what to run.
pub fn packages(cache: &Cache, refresh: bool) -> Result<Manifest> {
    let manifest = Manifest::load(&cache.manifest_path())?;
    match decide(manifest.as_ref(), refresh, |p| cache.intact(p)) {
        Decision::UseCache => {
            let manifest = manifest.expect("decide uses the cache only with a manifest");
            for p in manifest.packages() {
                eprintln!("xtask: kit: {} {} (cached)", p.package, p.version);
            }
            Ok(manifest)
        }
        Decision::Fetch(reason) => {
            eprintln!("xtask: kit: fetching packages from the archive ({reason})");
            let manifest = download(cache)?;
            std::fs::write(cache.manifest_path(), manifest.to_text()?)
                .with_context(|| format!("cannot write {}", cache.manifest_path().display()))?;
            prune(cache, &manifest)?;
            Ok(manifest)
        }
    }
}

/// What to do to apt before downloading foreign packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AptPlan {
    /// Run these steps (as root): add the architecture, refresh the package lists.
    Prepare {
        /// `dpkg --add-architecture arm64` first.
        add_arch: bool,
    },
    /// Not root, and the lists are usable as they are: go ahead.
    AsIs,
    /// Not root and `arm64` is not configured: the person must run this.
    AskUser(String),
}

/// Decides how to prepare apt, from `dpkg --print-architecture`,
/// `dpkg --print-foreign-architectures` and whether we are root.
pub fn apt_plan(native: &str, foreign: &str, is_root: bool) -> AptPlan {
    let has_arch = native.trim() == ARCH || foreign.lines().any(|a| a.trim() == ARCH);
    match (is_root, has_arch) {
        (true, has_arch) => AptPlan::Prepare { add_arch: !has_arch },
        (false, true) => AptPlan::AsIs,
        (false, false) => AptPlan::AskUser(format!(
            "the guest kit needs Debian's {ARCH} packages; enable them with:\n  \
             sudo dpkg --add-architecture {ARCH} && sudo apt-get update"
        )),
    }
}

/// The package names in `apt-cache search` output (`name - description` a line).
pub fn search_names(output: &str) -> impl Iterator<Item = &str> {
    output.lines().filter_map(|line| line.split(" - ").next()).map(str::trim).filter(|n| !n.is_empty())
}

fn prepare_apt() -> Result<()> {
    let native = cmd::output(Command::new("dpkg").arg("--print-architecture"))?;
    let foreign = cmd::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    match apt_plan(&native, &foreign, deps::is_root()) {
        AptPlan::Prepare { add_arch } => {
            if add_arch {
                cmd::run(Command::new("dpkg").args(["--add-architecture", ARCH]))?;
            }
            cmd::run(Command::new("apt-get").arg("update"))
        }
        AptPlan::AsIs => {
            eprintln!("xtask: kit: not root, so apt's package lists are used as they are");
            Ok(())
        }
        AptPlan::AskUser(message) => bail!("{message}"),
    }
}

fn download(cache: &Cache) -> Result<Manifest> {
    if deps::find("apt-get").is_none() || deps::find("apt-cache").is_none() {
        bail!(
            "the guest kit comes from Debian's archive through apt-get, which this host lacks; \
             boot your own arm64 Image and initramfs instead (see README)"
        );
    }
    prepare_apt()?;
    let pattern = format!("^{KERNEL_PREFIX}.*{KERNEL_SUFFIX}$");
    let found = cmd::output(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    let kernel = debver::newest(search_names(&found), KERNEL_PREFIX, KERNEL_SUFFIX).with_context(|| {
        format!("apt knows no package {KERNEL_PREFIX}*{KERNEL_SUFFIX}: the kit takes Debian's {ARCH} cloud kernel")
    })?;
    let staging = cache.debs_dir().join(".download");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    // As root apt drops to the `_apt` user to download, which can't write here.
    cmd::run(
        Command::new("apt-get")
            .args(["-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{kernel}:{ARCH}"))
            .arg(format!("{BUSYBOX_PACKAGE}:{ARCH}"))
            .current_dir(&staging),
    )?;
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir(&staging)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            let p = describe(&path)?;
            std::fs::rename(&path, cache.debs_dir().join(&p.deb))?;
            pinned.push(p);
        }
    }
    std::fs::remove_dir_all(&staging)?;
    let mut take = |name: &str| -> Result<Pinned> {
        let at = pinned.iter().position(|p| p.package == name);
        at.map(|i| pinned.swap_remove(i)).with_context(|| format!("apt-get download gave no {name}"))
    };
    Ok(Manifest { kernel: take(kernel)?, busybox: take(BUSYBOX_PACKAGE)? })
}

/// Package, version, file name and checksum of a `.deb`.
fn describe(deb: &Path) -> Result<Pinned> {
    let fields = cmd::output(Command::new("dpkg-deb").arg("--field").arg(deb).args(["Package", "Version"]))?;
    let field = |name: &str| {
        fields
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("{} has no {name} field", deb.display()))
    };
    let data = std::fs::read(deb).with_context(|| format!("cannot read {}", deb.display()))?;
    Ok(Pinned {
        package: field("Package")?,
        version: field("Version")?,
        deb: deb.file_name().context("a .deb has a file name")?.to_string_lossy().into_owned(),
        sha256: sha256_hex(&data),
    })
}

/// The names in a cache directory that the manifest no longer refers to.
pub fn stale<'a>(names: impl IntoIterator<Item = &'a str>, keep: &[&str]) -> Vec<&'a str> {
    names.into_iter().filter(|n| !keep.contains(n)).collect()
}

/// Removes the `.deb` files and unpacked trees of versions the manifest left behind.
fn prune(cache: &Cache, manifest: &Manifest) -> Result<()> {
    let debs: Vec<&str> = manifest.packages().iter().map(|p| p.deb.as_str()).collect();
    let trees: Vec<&str> = debs.iter().map(|d| d.strip_suffix(".deb").unwrap_or(d)).collect();
    for (dir, keep) in [(cache.debs_dir(), &debs), (cache.unpacked_dir(), &trees)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        for name in stale(names.iter().map(String::as_str), keep) {
            let path = dir.join(name);
            eprintln!("xtask: kit: removing {}", path.display());
            let removed =
                if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// The package's files, unpacked once with `dpkg-deb -x` into a directory of its own.
///
/// # Errors
///
/// `dpkg-deb` fails or the directory cannot be written.
pub fn unpacked(cache: &Cache, pinned: &Pinned) -> Result<PathBuf> {
    let dir = cache.unpacked(pinned);
    if dir.is_dir() {
        return Ok(dir);
    }
    let mut partial = dir.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(cache.debs_dir().join(&pinned.deb)).arg(&partial))?;
    // Renamed only when complete, so an interrupted run unpacks again.
    std::fs::rename(&partial, &dir).with_context(|| format!("cannot rename to {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_is_prepared_as_root_and_explained_otherwise() {
        assert_eq!(apt_plan("amd64\n", "", true), AptPlan::Prepare { add_arch: true });
        assert_eq!(apt_plan("amd64\n", "i386\narm64\n", true), AptPlan::Prepare { add_arch: false });
        assert_eq!(apt_plan("arm64\n", "", true), AptPlan::Prepare { add_arch: false });
        assert_eq!(apt_plan("amd64\n", "arm64\n", false), AptPlan::AsIs);
        assert_eq!(apt_plan("arm64\n", "", false), AptPlan::AsIs);
        let AptPlan::AskUser(message) = apt_plan("amd64\n", "armhf\n", false) else {
            panic!("a non-root user without arm64 must be told");
        };
        assert!(message.contains("sudo dpkg --add-architecture arm64 && sudo apt-get update"), "{message}");
    }

    #[test]
    fn search_output_gives_names() {
        let output = "linux-image-6.1.0-56-cloud-arm64-unsigned - Linux 6.1 for arm64 cloud\n\
                      linux-image-6.12.117+deb12-cloud-arm64-unsigned - Linux 6.12 for arm64 cloud\n\n";
        let names: Vec<&str> = search_names(output).collect();
        assert_eq!(
            names,
            ["linux-image-6.1.0-56-cloud-arm64-unsigned", "linux-image-6.12.117+deb12-cloud-arm64-unsigned"]
        );
        assert_eq!(
            debver::newest(names, KERNEL_PREFIX, KERNEL_SUFFIX),
            Some("linux-image-6.12.117+deb12-cloud-arm64-unsigned")
        );
    }

    #[test]
    fn stale_keeps_what_the_manifest_names() {
        let names = ["a_1_arm64.deb", "a_2_arm64.deb", "b_1_arm64.deb", ".download"];
        assert_eq!(stale(names, &["a_2_arm64.deb", "b_1_arm64.deb"]), ["a_1_arm64.deb", ".download"]);
    }

    #[test]
    fn unpacked_trees_are_named_per_version() {
        let cache = Cache { dir: PathBuf::from("/k") };
        let pinned = Pinned {
            package: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            deb: "busybox-static_1%3a1.35.0-4_arm64.deb".into(),
            sha256: String::new(),
        };
        assert_eq!(cache.unpacked(&pinned), Path::new("/k/unpacked/busybox-static_1%3a1.35.0-4_arm64"));
        assert_eq!(cache.manifest_path(), Path::new("/k/manifest.toml"));
    }
}
