//! The kit's manifest: which package versions it was built from, and whether the
//! cached `.deb` files can be used again without asking Debian's archive.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One downloaded package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// The package's name (`linux-image-6.12.117+deb12-cloud-arm64-unsigned`).
    pub package: String,
    /// Its Debian version (`6.12.117-1~deb12u1`).
    pub version: String,
    /// The `.deb` file's name in the cache.
    pub deb: String,
    /// The `.deb` file's SHA-256, in hex.
    pub sha256: String,
}

/// `manifest.toml` in the kit directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The kernel package.
    pub kernel: Pinned,
    /// The busybox package.
    pub busybox: Pinned,
}

impl Manifest {
    /// Both packages.
    pub fn packages(&self) -> [&Pinned; 2] {
        [&self.kernel, &self.busybox]
    }

    /// The file's text.
    ///
    /// # Errors
    ///
    /// Serialization fails (it does not for this shape).
    pub fn to_text(&self) -> Result<String> {
        let body = toml::to_string(self).context("cannot write the kit manifest")?;
        Ok(format!(
            "# Written by `cargo xtask kit`: the packages the guest kit was built from.\n\
             # Delete this file or run `cargo xtask kit --refresh` to fetch the newest.\n\n{body}"
        ))
    }

    /// Reads a manifest; `None` when there is no file.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map(Some).with_context(|| format!("{}: bad manifest", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// What to do about the packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The manifest's `.deb` files are there, intact: use them, download nothing.
    UseCache,
    /// Ask the archive for the newest packages and download them, for this reason.
    Fetch(String),
}

/// Decides between the cache and the archive. `intact(p)` says whether `p`'s `.deb`
/// is in the cache with the manifest's checksum.
pub fn decide(manifest: Option<&Manifest>, refresh: bool, intact: impl Fn(&Pinned) -> bool) -> Decision {
    let Some(manifest) = manifest else {
        return Decision::Fetch("no manifest yet".into());
    };
    if refresh {
        return Decision::Fetch("--refresh".into());
    }
    match manifest.packages().into_iter().find(|p| !intact(p)) {
        Some(p) => Decision::Fetch(format!("{} is missing or damaged", p.deb)),
        None => Decision::UseCache,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let pinned = |package: &str, version: &str, deb: &str| Pinned {
            package: package.into(),
            version: version.into(),
            deb: deb.into(),
            sha256: "ab".repeat(32),
        };
        Manifest {
            kernel: pinned(
                "linux-image-6.12.117+deb12-cloud-arm64-unsigned",
                "6.12.117-1~deb12u1",
                "linux-image-6.12.117+deb12-cloud-arm64-unsigned_6.12.117-1~deb12u1_arm64.deb",
            ),
            busybox: pinned(
                "busybox-static",
                "1:1.35.0-4+deb12u1+b1",
                "busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb",
            ),
        }
    }

    #[test]
    fn manifest_round_trips() {
        let dir = crate::testutil::TempDir::new("manifest");
        let path = dir.path().join("manifest.toml");
        assert_eq!(Manifest::load(&path).unwrap(), None);
        std::fs::write(&path, manifest().to_text().unwrap()).unwrap();
        assert_eq!(Manifest::load(&path).unwrap(), Some(manifest()));
        std::fs::write(&path, "[kernel]\npackage = 1\n").unwrap();
        assert!(Manifest::load(&path).unwrap_err().to_string().contains("bad manifest"));
    }

    #[test]
    fn cache_is_used_only_when_whole_and_not_refreshed() {
        let m = manifest();
        assert_eq!(decide(Some(&m), false, |_| true), Decision::UseCache);
        assert_eq!(decide(Some(&m), true, |_| true), Decision::Fetch("--refresh".into()));
        assert_eq!(decide(None, false, |_| true), Decision::Fetch("no manifest yet".into()));
        let Decision::Fetch(why) = decide(Some(&m), false, |p| p.package != "busybox-static") else {
            panic!("a damaged deb must be fetched again");
        };
        assert!(why.contains("busybox-static_1%3a1.35.0"), "{why}");
    }
}
