//! Sparse disk image files: making blank ones, and copying them without filling
//! their holes (a 4 GiB test disk that holds a few MiB stays a few MiB).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Bytes copied (or skipped, when all zero) at a time.
const BLOCK: usize = 64 * 1024;

/// Makes `path` a blank file of `size` bytes, a hole throughout, with its
/// directory; a file already there is left as it is.
///
/// # Errors
///
/// The directory or the file cannot be made.
pub fn make_blank(path: &Path, size: u64) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.set_len(size).with_context(|| format!("cannot size {}", path.display()))
}

/// Copies `from` to `to`, leaving a hole wherever a block of `from` is all zeros.
///
/// # Errors
///
/// Either file cannot be read or written.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    let context = || format!("cannot copy {} to {}", from.display(), to.display());
    let mut source = File::open(from).with_context(context)?;
    let mut copy = File::create(to).with_context(context)?;
    let mut block = vec![0u8; BLOCK];
    let mut at = 0u64;
    loop {
        let n = read_block(&mut source, &mut block).with_context(context)?;
        if n == 0 {
            break;
        }
        if block[..n].iter().any(|&b| b != 0) {
            copy.seek(SeekFrom::Start(at)).with_context(context)?;
            copy.write_all(&block[..n]).with_context(context)?;
        }
        at += n as u64;
    }
    copy.set_len(at).with_context(context)
}

/// Fills `block` from `file` as far as it goes; returns how many bytes it read.
fn read_block(file: &mut File, block: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < block.len() {
        match file.read(&mut block[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_sparse_copy_keeps_the_data_and_the_holes() {
        let dir = crate::testutil::TempDir::new("sparse");
        let (big, copied) = (dir.path().join("big.img"), dir.path().join("copy.img"));
        make_blank(&big, 64 << 20).unwrap();
        let mut file = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        file.seek(SeekFrom::Start(32 << 20)).unwrap();
        file.write_all(b"middle").unwrap();
        drop(file);
        make_blank(&big, 4096).unwrap();
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 64 << 20, "an existing file is left as it is");
        copy(&big, &copied).unwrap();
        let meta = std::fs::metadata(&copied).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 1 << 20, "the copy is sparse: {} blocks", meta.blocks());
        let mut back = [0u8; 6];
        let mut file = File::open(&copied).unwrap();
        file.seek(SeekFrom::Start(32 << 20)).unwrap();
        file.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"middle");
    }
}
