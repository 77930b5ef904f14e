//! `--for ISO`: the root file system of a live ISO as the base an extension
//! is made for. The ISO is read with `sik-image`'s ISO 9660 reader and its
//! root SquashFS with the streaming SquashFS reader (nothing is mounted):
//! the regular files it holds (path, mode, data) and the packages
//! installed in it (dpkg's status file in the root file system, else the
//! ISO's package list, e.g. `live/filesystem.packages`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use sik_image::iso9660::Iso;
use sik_image::squashfs::{DataBuffers, FileData, FragmentCache, Image, InodeKind, walk};

use crate::Error;

/// Largest package database read (dpkg status, package list).
const MAX_PACKAGE_LIST: u64 = 256 << 20;

/// The ISO's package lists, besides dpkg's status file in the root file
/// system (`NAME[:ARCH]` whitespace `VERSION` a line).
const PACKAGE_LISTS: &[&str] = &["live/filesystem.packages", "casper/filesystem.manifest"];

/// One regular file of the base.
struct BaseFile {
    mode: u16,
    data: FileData,
}

/// The root file system of an ISO, read for `--for`.
pub struct Base {
    iso: PathBuf,
    /// The root file system image inside the ISO.
    pub rootfs: String,
    image: Image<File>,
    files: HashMap<Vec<u8>, BaseFile>,
    /// Installed packages: name → versions.
    installed: BTreeMap<String, Vec<String>>,
    /// Where the installed packages were read from.
    pub packages_from: Option<String>,
}

impl Base {
    /// Read the ISO `iso`: its root file system is the first of `rootfs`
    /// (paths inside the ISO, as the live-ISO families name them) that it
    /// holds, a SquashFS.
    pub fn open(iso: &Path, rootfs: &[String]) -> Result<Base, Error> {
        let bad = |why: String| Error::BadSource {
            path: iso.to_path_buf(),
            why,
        };
        let f = File::open(iso).map_err(|e| Error::source(iso, e))?;
        let mut reader = Iso::new(std::io::BufReader::new(&f))
            .map_err(|e| bad(format!("not a readable ISO 9660 image: {e}")))?;
        let Some((path, entry)) = rootfs.iter().find_map(|p| {
            reader
                .lookup(p)
                .ok()
                .filter(|e| !e.is_dir)
                .map(|e| (p.clone(), e))
        }) else {
            return Err(bad(format!(
                "holds no root file system image (looked for {})",
                rootfs.join(" ")
            )));
        };
        let mut lists = Vec::new();
        for l in PACKAGE_LISTS {
            if let Ok(b) = reader.read_file(l, MAX_PACKAGE_LIST) {
                lists.push((l.to_string(), b));
            }
        }
        drop(reader);
        let image =
            Image::open(f, u64::from(entry.lba) * 2048).map_err(|e| bad(format!("{path}: {e}")))?;
        let mut files = HashMap::new();
        let mut cache = image.meta_cache();
        walk::<File, sik_image::Error>(&image, &mut cache, &mut |parts, inode, _| {
            if let InodeKind::File(data) = &inode.kind {
                files.insert(
                    parts.join(&b'/'),
                    BaseFile {
                        mode: inode.mode & 0o7777,
                        data: data.clone(),
                    },
                );
            }
            Ok(())
        })
        .map_err(|e| bad(format!("{path}: {e}")))?;
        let mut base = Base {
            iso: iso.to_path_buf(),
            rootfs: path,
            image,
            files,
            installed: BTreeMap::new(),
            packages_from: None,
        };
        if let Some(status) = base.read(b"var/lib/dpkg/status", MAX_PACKAGE_LIST) {
            base.installed = dpkg_status(&String::from_utf8_lossy(&status));
            base.packages_from = Some(format!("{}:/var/lib/dpkg/status", base.rootfs));
        } else if let Some((l, b)) = lists.into_iter().next() {
            base.installed = package_list(&String::from_utf8_lossy(&b));
            base.packages_from = Some(l);
        }
        Ok(base)
    }

    /// The size of the base's regular file at `rel` when it has exactly
    /// the permission bits `mode`.
    pub fn file_size(&self, rel: &[u8], mode: u16) -> Option<u64> {
        self.files
            .get(rel)
            .filter(|f| f.mode == mode & 0o7777)
            .map(|f| f.data.size)
    }

    /// Whether the base's regular file at `rel` holds exactly `data`.
    pub fn same_content(&self, rel: &[u8], data: &[u8]) -> bool {
        let Some(f) = self.files.get(rel) else {
            return false;
        };
        if f.data.size != data.len() as u64 {
            return false;
        }
        let mut bufs = DataBuffers::new(&self.image);
        let frags = FragmentCache::default();
        let mut at = 0usize;
        self.image
            .read_file(&f.data, &mut bufs, &frags, &mut |chunk| {
                let end = at + chunk.len();
                if data.get(at..end) != Some(chunk) {
                    return Err(std::io::Error::other("differs"));
                }
                at = end;
                Ok(())
            })
            .is_ok()
            && at == data.len()
    }

    /// The version installed in the base of the package `name` equal to
    /// `version`, if any.
    pub fn installed(&self, name: &str, version: &str) -> bool {
        self.installed
            .get(name)
            .is_some_and(|v| v.iter().any(|x| x == version))
    }

    /// The ISO.
    pub fn iso(&self) -> &Path {
        &self.iso
    }

    /// A regular file of the base, whole, when at most `limit` bytes.
    fn read(&self, rel: &[u8], limit: u64) -> Option<Vec<u8>> {
        let f = self.files.get(rel)?;
        if f.data.size > limit {
            return None;
        }
        let mut out = Vec::with_capacity(f.data.size as usize);
        let mut bufs = DataBuffers::new(&self.image);
        let frags = FragmentCache::default();
        self.image
            .read_file(&f.data, &mut bufs, &frags, &mut |c| {
                out.extend_from_slice(c);
                Ok(())
            })
            .ok()?;
        Some(out)
    }
}

/// The installed packages of a dpkg status file: name → versions (of
/// stanzas whose `Status` ends in `installed`).
fn dpkg_status(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(str::trim)
        };
        if let (Some(name), Some(version), Some(status)) =
            (field("Package"), field("Version"), field("Status"))
            && status.ends_with(" installed")
        {
            out.entry(name.to_string())
                .or_default()
                .push(version.to_string());
        }
    }
    out
}

/// A package list of the ISO: `NAME[:ARCH] VERSION` a line.
fn package_list(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        if let (Some(n), Some(v)) = (it.next(), it.next()) {
            let n = n.split(':').next().unwrap_or(n);
            out.entry(n.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_databases() {
        let s = "Package: libogg0\nStatus: install ok installed\nVersion: 1.3.5-3\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let m = dpkg_status(s);
        assert_eq!(m.len(), 1);
        assert_eq!(m["libogg0"], ["1.3.5-3"]);
        let m = package_list("libogg0:amd64\t1.3.5-3\nbash 5.2.15-2+b2\n");
        assert_eq!(m["libogg0"], ["1.3.5-3"]);
        assert_eq!(m["bash"], ["5.2.15-2+b2"]);
    }
}
