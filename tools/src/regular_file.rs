//! Reading the files a scenario names (kernels, initrds, disks, the scenario
//! itself) only when they are regular files: reading a FIFO or a terminal would
//! block the tools forever, and a device could be endless.

use std::fs::FileType;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Reads the whole of `path`, refusing anything but a regular file (after symlinks).
///
/// # Errors
///
/// The file cannot be read, or is a FIFO, socket, device or directory; the error
/// says which.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    // `metadata` does not open the file, so it cannot block on a FIFO.
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = describe(kind);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{what}, not a regular file")));
    }
    std::fs::read(path)
}

/// A disk image file, as a VM's file-backed disk uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    /// Its path, made absolute with every symlink resolved: two VMs naming one file
    /// two ways are found out.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Opens `path` as a disk image (readable, and writable unless `read_only`),
/// refusing anything but a regular file, and says where it is and how large.
///
/// # Errors
///
/// The file cannot be opened so, or is not a regular file.
pub fn open_disk(path: &Path, read_only: bool) -> io::Result<DiskFile> {
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        let what = describe(kind);
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{what}, not a regular file")));
    }
    let file = std::fs::OpenOptions::new().read(true).write(!read_only).open(path)?;
    Ok(DiskFile { path: std::fs::canonicalize(path)?, size: file.metadata()?.len() })
}

/// Reads `path` as UTF-8 text, refusing anything but a regular file.
///
/// # Errors
///
/// As [`read`], or the text is not UTF-8.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
}

fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("sluice-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("kernel");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let error = read(&fifo).unwrap_err();
        assert_eq!(error.to_string(), "a FIFO, not a regular file");
        let error = read(&dir).unwrap_err();
        assert_eq!(error.to_string(), "a directory, not a regular file");
        assert_eq!(
            read(Path::new("/dev/zero")).unwrap_err().to_string(),
            "a character device, not a regular file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_disk_is_opened_for_writing_unless_read_only() {
        let path = std::env::temp_dir().join(format!("sluice-disk-{}", std::process::id()));
        std::fs::write(&path, [0u8; 1024]).unwrap();
        let disk = open_disk(&path, false).unwrap();
        assert_eq!((disk.path.is_absolute(), disk.size), (true, 1024));
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&path, permissions).unwrap();
        // root may write anyway; everyone else is refused.
        let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        assert_eq!(open_disk(&path, false).is_ok(), root);
        assert_eq!(open_disk(&path, true).unwrap().size, 1024);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            open_disk(Path::new("/dev/zero"), true).unwrap_err().to_string(),
            "a character device, not a regular file"
        );
    }

    #[test]
    fn a_regular_file_is_read() {
        let path = std::env::temp_dir().join(format!("sluice-regular-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read(&path).unwrap(), b"abc");
        assert_eq!(read_to_string(&path).unwrap(), "abc");
        std::fs::remove_file(&path).unwrap();
    }
}
