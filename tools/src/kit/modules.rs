//! Kernel modules for the initramfs: which files, in which order, decompressed.
//!
//! Debian's kernel package ships `lib/modules/<release>/` without `modules.dep`
//! (its postinst runs depmod on the installed system), so the order comes from each
//! module's own `.modinfo` section: modpost writes `depends=a,b` there, the list
//! depmod itself would derive. Modules the kernel has built in are named in
//! `modules.builtin` and need no loading.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The name a module goes by: its file name without `.ko[.xz|.gz|.zst]`, with `-`
/// written `_` (as the kernel and kmod treat them alike).
pub fn module_name(file_name: &str) -> Option<String> {
    let stem =
        ["", ".xz", ".gz", ".zst"].iter().find_map(|ext| file_name.strip_suffix(&format!(".ko{ext}")))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// The names in a `modules.builtin` file (one `kernel/.../name.ko` path a line).
pub fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|line| line.trim().rsplit('/').next().and_then(module_name)).collect()
}

/// Reads a little-endian integer of `N` bytes at `at`.
fn le<const N: usize>(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; N] = bytes.get(at..at.checked_add(N)?)?.try_into().ok()?;
    Some(raw.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
}

/// The contents of the section called `wanted` in a 64-bit little-endian ELF file
/// (ELF-64 Object File Format: the header's `e_shoff` at 0x28, `e_shentsize`,
/// `e_shnum` and `e_shstrndx` at 0x3a..0x40; each section header's `sh_name` at 0,
/// `sh_offset` at 0x18 and `sh_size` at 0x20).
///
/// # Errors
///
/// The file is not such an ELF, is truncated, or has no such section.
pub fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8]> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let bad = || anyhow::anyhow!("truncated or malformed ELF section table");
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad());
    let shoff = to_usize(le::<8>(elf, 0x28).ok_or_else(bad)?)?;
    let shentsize = to_usize(le::<2>(elf, 0x3a).ok_or_else(bad)?)?;
    let shnum = to_usize(le::<2>(elf, 0x3c).ok_or_else(bad)?)?;
    let shstrndx = to_usize(le::<2>(elf, 0x3e).ok_or_else(bad)?)?;
    if shentsize < 0x28 {
        return Err(bad());
    }
    let section = |i: usize| -> Result<(usize, &'a [u8])> {
        let header = shoff.checked_add(i.checked_mul(shentsize).ok_or_else(bad)?).ok_or_else(bad)?;
        let name = to_usize(le::<4>(elf, header).ok_or_else(bad)?)?;
        let offset = to_usize(le::<8>(elf, header + 0x18).ok_or_else(bad)?)?;
        let size = to_usize(le::<8>(elf, header + 0x20).ok_or_else(bad)?)?;
        let data = elf.get(offset..offset.checked_add(size).ok_or_else(bad)?).ok_or_else(bad)?;
        Ok((name, data))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name_at, data) = section(i)?;
        let name = names.get(name_at..).ok_or_else(bad)?;
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if name == wanted.as_bytes() {
            return Ok(data);
        }
    }
    bail!("no {wanted} section")
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated `key=value` strings).
///
/// # Errors
///
/// The module is not an ELF file with a `.modinfo` section.
pub fn modinfo_depends(elf: &[u8]) -> Result<Vec<String>> {
    let modinfo = elf_section(elf, ".modinfo")?;
    let depends = modinfo
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| String::from_utf8_lossy(list).into_owned())
        .unwrap_or_default();
    Ok(depends.split(',').filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")).collect())
}

/// `wanted` and everything they depend on, each after its dependencies (a
/// depth-first post-order, so the order follows `wanted` where dependencies allow).
/// `depends(name)` gives a module's direct dependencies.
///
/// # Errors
///
/// A dependency cycle, or an error from `depends`.
pub fn load_order(
    wanted: &[String],
    mut depends: impl FnMut(&str) -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    #[derive(PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        depends: &mut dyn FnMut(&str) -> Result<Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => bail!("module dependency cycle: {} -> {name}", path.join(" -> ")),
            None => {}
        }
        marks.insert(name.to_owned(), Mark::Visiting);
        path.push(name.to_owned());
        for dep in depends(name)? {
            visit(&dep, depends, marks, order, path)?;
        }
        path.pop();
        marks.insert(name.to_owned(), Mark::Done);
        order.push(name.to_owned());
        Ok(())
    }
    let (mut marks, mut order, mut path) = (BTreeMap::new(), Vec::new(), Vec::new());
    for name in wanted {
        visit(name, &mut depends, &mut marks, &mut order, &mut path)?;
    }
    Ok(order)
}

/// A module's bytes, decompressed according to its file name.
///
/// # Errors
///
/// The data does not decompress, or the compression is one the tools don't read.
pub fn decompress(file_name: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if file_name.ends_with(".ko.xz") {
        lzma_rs::xz_decompress(&mut &data[..], &mut out)
            .map_err(|e| anyhow::anyhow!("{file_name}: {e:?}"))?;
    } else if file_name.ends_with(".ko.gz") {
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).with_context(|| file_name.to_owned())?;
    } else if file_name.ends_with(".ko") {
        out = data.to_vec();
    } else {
        bail!("{file_name}: a compression the tools don't read (xz, gzip or none)");
    }
    Ok(out)
}

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name.
    pub name: String,
    /// Its path under `lib/modules/<release>/`, with the compression suffix dropped.
    pub path: String,
    /// The plain `.ko` bytes.
    pub data: Vec<u8>,
}

/// What [`resolve`] found.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Modules to load, dependencies first.
    pub modules: Vec<Module>,
    /// Wanted modules that the kernel has built in.
    pub builtin: Vec<String>,
}

/// Every module file under `dir`, by name, as paths relative to `dir`.
fn index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.join("kernel")];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                found.insert(name, path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
            }
        }
    }
    Ok(found)
}

/// Finds `wanted` and their dependencies in `modules_dir` (`lib/modules/<release>`),
/// skipping the built-in ones, and reads them decompressed, dependencies first.
///
/// # Errors
///
/// A module is neither a file nor built in, or cannot be read or decompressed.
pub fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Resolved> {
    let builtin_file = modules_dir.join("modules.builtin");
    let builtin = parse_builtin(
        &std::fs::read_to_string(&builtin_file)
            .with_context(|| format!("cannot read {}", builtin_file.display()))?,
    );
    let files = index(modules_dir)?;
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (loadable, built_in): (Vec<&str>, Vec<&str>) =
        wanted.iter().partition(|name| files.contains_key(**name) || !builtin.contains(**name));
    let loadable: Vec<String> = loadable.iter().map(|s| (*s).to_owned()).collect();
    let order = load_order(&loadable, |name| {
        let path = files.get(name).with_context(|| {
            format!("module {name} is neither in {} nor built in", modules_dir.join("kernel").display())
        })?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let raw = std::fs::read(modules_dir.join(path))
            .with_context(|| format!("cannot read {}", modules_dir.join(path).display()))?;
        let plain = decompress(file_name, &raw)?;
        let depends = modinfo_depends(&plain).with_context(|| format!("module {name}"))?;
        data.insert(name.to_owned(), plain);
        Ok(depends)
    })?;
    let modules = order
        .into_iter()
        .map(|name| {
            let path = files[&name].to_string_lossy();
            let path = ["xz", "gz", "zst"]
                .iter()
                .find_map(|ext| path.strip_suffix(&format!(".{ext}")))
                .unwrap_or(&path)
                .to_owned();
            let data = data.remove(&name).unwrap_or_default();
            Module { name, path, data }
        })
        .collect();
    Ok(Resolved { modules, builtin: built_in.iter().map(|s| (*s).to_owned()).collect() })
}

#[cfg(test)]
pub mod fake {
    //! A minimal 64-bit little-endian ELF with one `.modinfo` section.

    /// An ELF file whose `.modinfo` holds `entries` (NUL-separated).
    pub fn module_elf(entries: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for e in entries {
            modinfo.extend_from_slice(e.as_bytes());
            modinfo.push(0);
        }
        let shstrtab = b"\0.shstrtab\0.modinfo\0".to_vec();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_at = elf.len() as u64;
        elf.extend_from_slice(&modinfo);
        let shstrtab_at = elf.len() as u64;
        elf.extend_from_slice(&shstrtab);
        elf.resize(elf.len().next_multiple_of(8), 0);
        let shoff = elf.len() as u64;
        let header = |name: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, shstrtab_at, shstrtab.len() as u64));
        elf.extend(header(11, modinfo_at, modinfo.len() as u64));
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }
}

#[cfg(test)]
mod tests {
    use super::fake::module_elf;
    use super::*;
    use crate::testutil::TempDir;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("virtio_blk.ko.xz").as_deref(), Some("virtio_blk"));
        assert_eq!(module_name("virtio-rng.ko").as_deref(), Some("virtio_rng"));
        assert_eq!(module_name("crc32c.ko.zst").as_deref(), Some("crc32c"));
        assert_eq!(module_name("modules.dep"), None);
        assert_eq!(module_name(".ko"), None);
        let builtin =
            parse_builtin("kernel/drivers/virtio/virtio.ko\nkernel/drivers/char/virtio_console.ko\n\n");
        assert_eq!(builtin.into_iter().collect::<Vec<_>>(), ["virtio", "virtio_console"]);
    }

    #[test]
    fn modinfo_gives_depends() {
        let elf = module_elf(&["license=GPL", "depends=virtio_ring,virtio", "name=virtio_mmio"]);
        assert_eq!(modinfo_depends(&elf).unwrap(), ["virtio_ring", "virtio"]);
        assert_eq!(modinfo_depends(&module_elf(&["depends=", "name=virtio"])).unwrap(), Vec::<String>::new());
        assert_eq!(modinfo_depends(&module_elf(&["name=x"])).unwrap(), Vec::<String>::new());
        assert!(modinfo_depends(b"not an elf").is_err());
        let mut truncated = module_elf(&["depends=a"]);
        truncated.truncate(100);
        assert!(modinfo_depends(&truncated).is_err());
    }

    #[test]
    fn dependencies_come_first() {
        let graph: BTreeMap<&str, Vec<&str>> = [
            ("virtio", vec![]),
            ("virtio_ring", vec![]),
            ("virtio_mmio", vec!["virtio_ring", "virtio"]),
            ("virtio_blk", vec!["virtio", "virtio_ring"]),
            ("virtio_console", vec!["virtio_ring", "virtio"]),
        ]
        .into_iter()
        .collect();
        let deps = |name: &str| Ok(names(&graph[name]));
        let wanted = names(&["virtio_blk", "virtio_console", "virtio_mmio"]);
        assert_eq!(
            load_order(&wanted, deps).unwrap(),
            ["virtio", "virtio_ring", "virtio_blk", "virtio_console", "virtio_mmio"]
        );
        let wanted = names(&["virtio", "virtio_ring", "virtio_mmio", "virtio_blk", "virtio_console"]);
        assert_eq!(load_order(&wanted, deps).unwrap(), wanted);
    }

    #[test]
    fn cycles_and_unknown_modules_fail() {
        let cyclic = |name: &str| Ok(names(if name == "a" { &["b"] } else { &["a"] }));
        let message = load_order(&names(&["a"]), cyclic).unwrap_err().to_string();
        assert!(message.contains("cycle: a -> b -> a"), "{message}");
        let unknown = |name: &str| -> Result<Vec<String>> { bail!("no {name}") };
        assert!(load_order(&names(&["x"]), unknown).is_err());
    }

    #[test]
    fn decompresses_by_suffix() {
        use std::io::Write;
        let plain = b"module bytes".to_vec();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        assert_eq!(decompress("m.ko.xz", &xz).unwrap(), plain);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        assert_eq!(decompress("m.ko.gz", &gz.finish().unwrap()).unwrap(), plain);
        assert_eq!(decompress("m.ko", &plain).unwrap(), plain);
        assert!(decompress("m.ko.zst", &plain).is_err());
        assert!(decompress("m.ko.xz", &plain).is_err());
    }

    #[test]
    fn resolve_reads_a_module_tree() {
        let dir = TempDir::new("modules");
        let xz = |entries: &[&str]| {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut &module_elf(entries)[..], &mut out).unwrap();
            out
        };
        dir.write(
            "kernel/drivers/virtio/virtio_mmio.ko.xz",
            &xz(&["depends=virtio_dma_buf", "name=virtio_mmio"]),
        );
        dir.write("kernel/drivers/virtio/virtio_dma_buf.ko.xz", &xz(&["depends=", "name=virtio_dma_buf"]));
        dir.write("kernel/drivers/block/virtio_blk.ko.xz", &xz(&["depends=", "name=virtio_blk"]));
        dir.write(
            "modules.builtin",
            b"kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n",
        );
        let resolved = resolve(dir.path(), &["virtio", "virtio_ring", "virtio_mmio", "virtio_blk"]).unwrap();
        assert_eq!(resolved.builtin, ["virtio", "virtio_ring"]);
        let got: Vec<(&str, &str)> =
            resolved.modules.iter().map(|m| (m.name.as_str(), m.path.as_str())).collect();
        assert_eq!(
            got,
            [
                ("virtio_dma_buf", "kernel/drivers/virtio/virtio_dma_buf.ko"),
                ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
                ("virtio_blk", "kernel/drivers/block/virtio_blk.ko"),
            ]
        );
        assert_eq!(resolved.modules[2].data, module_elf(&["depends=", "name=virtio_blk"]));
        let message = resolve(dir.path(), &["virtio_console"]).unwrap_err().to_string();
        assert!(message.contains("virtio_console is neither"), "{message}");
    }
}
