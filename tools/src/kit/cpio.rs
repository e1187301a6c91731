//! A writer for the cpio "newc" format, the one Linux unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields),
//! the NUL-terminated name padded to a multiple of 4 bytes, then the data padded the
//! same way; the archive ends with the entry `TRAILER!!!`. See the kernel's
//! Documentation/driver-api/early-userspace/buffer-format.rst. Entries carry owner
//! 0:0 and time 0, so the same inputs always give the same bytes, and device nodes
//! need no privileges to make.

use std::io::{self, Write};

/// The magic of a newc header.
pub const MAGIC: &str = "070701";
/// The name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode` (as in `st_mode`).
pub const S_IFDIR: u32 = 0o040_000;
/// A regular file.
pub const S_IFREG: u32 = 0o100_000;
/// A symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// A character device.
pub const S_IFCHR: u32 = 0o020_000;

/// Writes a newc archive to `W`.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

/// One entry's header fields that vary.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Self { out, written: 0, next_ino: 1 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0; 4][..4 - rem])?;
        }
        Ok(())
    }

    fn entry(&mut self, header: &Header<'_>, data: &[u8]) -> io::Result<()> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if header.name.is_empty() || header.name.contains('\0') {
            return Err(invalid(format!("bad cpio entry name {:?}", header.name)));
        }
        let name_size = u32::try_from(header.name.len() + 1).map_err(|_| invalid("name too long".into()))?;
        let ino = if header.name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [
            ino,
            header.mode,
            0, // uid
            0, // gid
            header.nlink,
            0, // mtime
            header.size,
            0, // devmajor
            0, // devminor
            header.rdev.0,
            header.rdev.1,
            name_size,
            0, // check (only the "070702" format has one)
        ];
        let mut text = String::with_capacity(110);
        text.push_str(MAGIC);
        for field in fields {
            text.push_str(&format!("{field:08X}"));
        }
        self.put(text.as_bytes())?;
        self.put(header.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// Adds a directory (`path` without a leading `/`, e.g. `lib/modules`).
    ///
    /// # Errors
    ///
    /// The name is empty or holds a NUL, or writing fails.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(&Header { name: path, mode: S_IFDIR | perm, nlink: 2, size: 0, rdev: (0, 0) }, &[])
    }

    /// Adds a regular file.
    ///
    /// # Errors
    ///
    /// The name is bad, the file is 4 GiB or more, or writing fails.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is too big for cpio"))
        })?;
        self.entry(&Header { name: path, mode: S_IFREG | perm, nlink: 1, size, rdev: (0, 0) }, data)
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    ///
    /// # Errors
    ///
    /// The name is bad, or writing fails.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let size = u32::try_from(target.len()).unwrap_or(u32::MAX);
        self.entry(
            &Header { name: path, mode: S_IFLNK | 0o777, nlink: 1, size, rdev: (0, 0) },
            target.as_bytes(),
        )
    }

    /// Adds a character device node.
    ///
    /// # Errors
    ///
    /// The name is bad, or writing fails.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(&Header { name: path, mode: S_IFCHR | perm, nlink: 1, size: 0, rdev: (major, minor) }, &[])
    }

    /// Writes the trailer and gives the output back.
    ///
    /// # Errors
    ///
    /// Writing fails.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(&Header { name: TRAILER, mode: 0, nlink: 1, size: 0, rdev: (0, 0) }, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
pub mod read {
    //! A newc reader for the tests: the archive's entries, checked field by field.

    use super::*;

    /// One entry read back.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// Its name.
        pub name: String,
        /// `st_mode`.
        pub mode: u32,
        /// Link count.
        pub nlink: u32,
        /// Device numbers of a device node.
        pub rdev: (u32, u32),
        /// Its data (a symlink's target).
        pub data: Vec<u8>,
    }

    fn align(n: usize) -> usize {
        n.next_multiple_of(4)
    }

    /// Parses a whole archive; panics on anything malformed.
    pub fn entries(archive: &[u8]) -> Vec<Entry> {
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            let header = std::str::from_utf8(&archive[at..at + 110]).expect("ASCII header");
            assert_eq!(&header[..6], MAGIC, "magic at {at}");
            let field = |i: usize| u32::from_str_radix(&header[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (mode, nlink, size, name_size) = (field(1), field(4), field(6) as usize, field(11) as usize);
            assert_eq!((field(2), field(3), field(5)), (0, 0, 0), "owner and time are zero");
            let name = &archive[at + 110..at + 110 + name_size];
            assert_eq!(name.last(), Some(&0), "name is NUL-terminated");
            let name = String::from_utf8(name[..name_size - 1].to_vec()).unwrap();
            let data_at = align(at + 110 + name_size);
            assert!(archive[at + 110 + name_size..data_at].iter().all(|&b| b == 0), "name padding");
            let data = archive[data_at..data_at + size].to_vec();
            at = align(data_at + size);
            if name == TRAILER {
                assert_eq!(at, archive.len(), "nothing after the trailer");
                return out;
            }
            out.push(Entry { name, mode, nlink, rdev: (field(9), field(10)), data });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read::{entries, Entry};
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, b"\x7fELF pretend").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.file("abc", 0o644, b"abc").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn entries_read_back() {
        let archive = sample();
        assert_eq!(archive.len() % 4, 0);
        let got = entries(&archive);
        let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "empty", "abc"]);
        assert_eq!(
            got[1],
            Entry {
                name: "bin/busybox".into(),
                mode: 0o100_755,
                nlink: 1,
                rdev: (0, 0),
                data: b"\x7fELF pretend".to_vec()
            }
        );
        assert_eq!((got[0].mode, got[0].nlink), (0o040_755, 2));
        assert_eq!((got[2].mode, got[2].data.as_slice()), (0o120_777, &b"busybox"[..]));
        assert_eq!((got[4].mode, got[4].rdev), (0o020_600, (5, 1)));
        assert_eq!(got[6].data, b"abc");
    }

    #[test]
    fn header_layout_is_exact() {
        let mut w = Writer::new(Vec::new());
        w.file("a", 0o644, b"xyz").unwrap();
        let archive = w.finish().unwrap();
        let header = std::str::from_utf8(&archive[..110]).unwrap();
        assert_eq!(
            header,
            "070701\
             00000001000081A4000000000000000000000001000000000000000300000000\
             00000000000000000000000000000002\
             00000000"
        );
        // Name "a\0" ends at 112 (a multiple of 4), the data at 115, padded to 116.
        assert_eq!(&archive[110..116], b"a\0xyz\0");
        assert_eq!(archive[116..122], *b"070701");
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn bad_names_are_refused() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file("", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
    }

    /// The system's cpio, where there is one, lists what we wrote.
    #[test]
    fn system_cpio_agrees_where_present() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let Some(cpio) = crate::deps::find("cpio") else {
            return;
        };
        let mut child = Command::new(cpio)
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "empty", "abc"]
        );
    }
}
