//! The kit's disk: an ext4 image made with `mkfs.ext4 -d` from a directory of files
//! whose content and checksums are known, built the same byte for byte every time.
//!
//! The files are pseudo-random (SplitMix64 from fixed seeds) with a `SHA256SUMS` in
//! `sha256sum -c` format at the root. For reproducible bytes: our own
//! `mke2fs.conf` (the host's may differ), a fixed UUID and hash seed, root owned by
//! 0:0, `E2FSPROGS_FAKE_TIME` for the times mke2fs takes, the staged files' times set
//! to the same instant, and debugfs then sets each inode's ctime (which `-d` copies
//! from the staging directory and no one can set there) to it as well.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{File, FileTimes};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::sha256_hex;
use crate::cmd;
use crate::units::MIB;

/// The image's size.
pub const SIZE: u64 = 32 * MIB;
/// The file system's UUID, and its directory hash seed.
pub const UUID: &str = "5c1ce000-0000-4000-8000-000000000001";
/// The volume label.
pub const LABEL: &str = "sluice-kit";
/// Every time stamp on the disk: 2024-01-01 00:00:00 UTC.
pub const EPOCH: u64 = 1_704_067_200;
/// The checksum list's name, at the disk's root.
pub const SUMS: &str = "SHA256SUMS";

/// The mke2fs configuration used instead of the host's `/etc/mke2fs.conf`: Debian
/// bookworm's ext4 defaults, written down.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tsluice = {
\t\tinode_ratio = 16384
\t}
";

/// One file on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    /// Its path from the disk's root.
    pub path: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number generators").
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `len` pseudo-random bytes from `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The files with known content (without the checksum list).
pub fn files() -> Vec<DiskFile> {
    let random =
        |path: &str, seed: u64, len: usize| DiskFile { path: path.into(), data: pseudo_random(seed, len) };
    vec![
        DiskFile {
            path: "README.txt".into(),
            data: b"The Sluice guest kit's test disk, made by `cargo xtask kit`.\n\
                    Every file is listed in SHA256SUMS; check them with `sha256sum -c SHA256SUMS`.\n"
                .to_vec(),
        },
        random("data/random-4k.bin", 1, 4096),
        random("data/random-odd.bin", 2, 100_003),
        random("data/random-1m.bin", 3, MIB as usize),
        random("data/random-8m.bin", 4, 8 * MIB as usize),
    ]
}

/// `SHA256SUMS` for `files`, in `sha256sum` format (`<hex>  <path>`).
pub fn sha256sums(files: &[DiskFile]) -> String {
    files.iter().fold(String::new(), |mut out, f| {
        let _ = writeln!(out, "{}  {}", sha256_hex(&f.data), f.path);
        out
    })
}

/// The files as they go on the disk: [`files`] and the checksum list.
pub fn contents() -> Vec<DiskFile> {
    let mut all = files();
    let sums = sha256sums(&all);
    all.push(DiskFile { path: SUMS.into(), data: sums.into_bytes() });
    all
}

/// The directories the files need, parents first.
fn dirs(files: &[DiskFile]) -> Vec<String> {
    let mut dirs: Vec<String> =
        files.iter().filter_map(|f| f.path.rsplit_once('/').map(|(d, _)| d.to_owned())).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// `mkfs.ext4`'s arguments to make `image` from `staging`.
pub fn mkfs_args(staging: &Path, image: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["-q", "-F", "-t", "ext4", "-T", "sluice", "-L", LABEL, "-U", UUID, "-m", "0", "-E"]
            .map(OsString::from)
            .into();
    args.push(
        format!("root_owner=0:0,hash_seed={UUID},lazy_itable_init=0,lazy_journal_init=0,nodiscard").into(),
    );
    args.extend(["-d".into(), staging.into(), image.into()]);
    args
}

/// debugfs commands that set every time stamp of the inodes at `paths` to [`EPOCH`].
pub fn debugfs_script(paths: &[String]) -> String {
    let mut script = String::new();
    for path in paths {
        for field in ["atime", "ctime", "mtime", "crtime"] {
            let _ = writeln!(script, "set_inode_field {path} {field} @{EPOCH}");
        }
    }
    script
}

/// Writes the files under `staging` (created afresh) with their times set to [`EPOCH`].
fn stage(staging: &Path, files: &[DiskFile]) -> Result<()> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).with_context(|| format!("cannot clear {}", staging.display()))?;
    }
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH);
    let times = FileTimes::new().set_accessed(time).set_modified(time);
    for dir in dirs(files) {
        std::fs::create_dir_all(staging.join(dir))?;
    }
    for file in files {
        let path = staging.join(&file.path);
        std::fs::write(&path, &file.data).with_context(|| format!("cannot write {}", path.display()))?;
        File::options().write(true).open(&path)?.set_times(times)?;
    }
    // Directories last, since writing into them changes their times.
    for dir in dirs(files).iter().rev().map(|d| staging.join(d)).chain([staging.to_path_buf()]) {
        File::open(&dir)?.set_times(times)?;
    }
    Ok(())
}

/// Programs the disk is made with.
pub struct Tools<'a> {
    /// `mkfs.ext4`.
    pub mkfs: &'a Path,
    /// `debugfs`.
    pub debugfs: &'a Path,
}

/// Builds `image` from [`contents`], staging the files in `work` (a directory of
/// its own, replaced).
///
/// # Errors
///
/// A file cannot be written, or mkfs.ext4 or debugfs fails.
pub fn build(tools: &Tools<'_>, work: &Path, image: &Path) -> Result<()> {
    let files = contents();
    let staging = work.join("files");
    stage(&staging, &files)?;
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF)?;
    let partial = work.join("disk.img.partial");
    let _ = std::fs::remove_file(&partial);
    File::create(&partial)?.set_len(SIZE)?;
    let fake_time = EPOCH.to_string();
    cmd::run(
        Command::new(tools.mkfs)
            .env("MKE2FS_CONFIG", &conf)
            .env("E2FSPROGS_FAKE_TIME", &fake_time)
            .args(mkfs_args(&staging, &partial)),
    )?;
    let mut paths: Vec<String> = vec!["/".into()];
    paths.extend(dirs(&files).iter().chain(files.iter().map(|f| &f.path)).map(|p| format!("/{p}")));
    let script = work.join("debugfs.cmds");
    std::fs::write(&script, debugfs_script(&paths))?;
    cmd::output(
        Command::new(tools.debugfs)
            .env("E2FSPROGS_FAKE_TIME", &fake_time)
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(&partial),
    )?;
    std::fs::rename(&partial, image).with_context(|| format!("cannot write {}", image.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_fixed() {
        // SplitMix64's first output from state 0 (the reference implementation's).
        assert_eq!(splitmix64(&mut 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(pseudo_random(7, 13), pseudo_random(7, 13));
        assert_eq!(pseudo_random(7, 13)[..], pseudo_random(7, 21)[..13]);
        assert_ne!(pseudo_random(1, 64), pseudo_random(2, 64));
        let files = contents();
        assert_eq!(files, contents());
        let sizes: Vec<(&str, usize)> = files.iter().map(|f| (f.path.as_str(), f.data.len())).collect();
        assert_eq!(
            &sizes[1..5],
            [
                ("data/random-4k.bin", 4096),
                ("data/random-odd.bin", 100_003),
                ("data/random-1m.bin", 1 << 20),
                ("data/random-8m.bin", 8 << 20),
            ]
        );
        let total: usize = sizes.iter().map(|(_, n)| n).sum();
        assert!((total as u64) < SIZE / 2, "room to write more");
    }

    #[test]
    fn sums_are_in_sha256sum_format() {
        let files = vec![DiskFile { path: "a/b".into(), data: b"abc".to_vec() }];
        assert_eq!(
            sha256sums(&files),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a/b\n"
        );
        let all = contents();
        let sums = String::from_utf8(all.last().unwrap().data.clone()).unwrap();
        assert_eq!(all.last().unwrap().path, SUMS);
        assert_eq!(sums.lines().count(), all.len() - 1);
        assert!(sums.lines().all(|l| l.len() > 66 && &l[64..66] == "  "));
    }

    #[test]
    fn mkfs_is_pinned() {
        let args: Vec<String> = mkfs_args(Path::new("/s"), Path::new("/d.img"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(line.contains(&format!("-U {UUID}")), "{line}");
        assert!(line.contains(&format!("root_owner=0:0,hash_seed={UUID}")), "{line}");
        assert!(line.ends_with("-d /s /d.img"), "{line}");
        assert!(MKE2FS_CONF.contains("\tsluice = {"), "-T sluice is defined");
        let script = debugfs_script(&["/".into(), "/data".into()]);
        assert_eq!(script.lines().count(), 8);
        assert!(script.starts_with("set_inode_field / atime @1704067200\n"));
    }

    #[test]
    fn staging_sets_times() {
        let dir = crate::testutil::TempDir::new("disk-stage");
        let staging = dir.path().join("files");
        stage(&staging, &contents()).unwrap();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH);
        for path in ["README.txt", "data/random-8m.bin", "data", ""] {
            let meta = std::fs::metadata(staging.join(path)).unwrap();
            assert_eq!(meta.modified().unwrap(), epoch, "{path}");
        }
        assert_eq!(std::fs::read(staging.join(SUMS)).unwrap(), contents().last().unwrap().data);
    }
}
