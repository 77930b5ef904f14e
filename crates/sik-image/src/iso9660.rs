//! A small, careful ISO 9660 reader (used by `sik boot detect` and `sik inspect`): volume label, directory listings and
//! file contents, with Rock Ridge (`NM`, `SL`) names first and Joliet names
//! as the fallback.
//!
//! Every length and offset read from the image is checked against the image
//! size and against fixed limits before it is used; recursion is bounded
//! (symbolic links are followed at most [`MAX_LINK_HOPS`] times, continuation
//! areas at most [`MAX_CONTINUATIONS`] times), so hostile images give an
//! [`IsoError`], never a panic or a huge allocation. [`Iso::new`] takes any
//! `Read + Seek`, which makes it a fuzzable entry point.
//!
//! ```no_run
//! let f = std::fs::File::open("ubuntu.iso").unwrap();
//! let mut iso = sik_image::iso9660::Iso::new(f).unwrap();
//! println!("{}", iso.label());
//! let cfg = iso.read_file("/boot/grub/loopback.cfg", 1 << 20).unwrap();
//! ```

use std::io::{Read, Seek, SeekFrom};

/// Logical sector size of ISO 9660 images.
pub const SECTOR: u64 = 2048;
/// Largest directory extent read (bytes).
pub const MAX_DIR_BYTES: u32 = 8 << 20;
/// Most volume descriptors looked at.
pub const MAX_DESCRIPTORS: u64 = 64;
/// Most symbolic links followed while resolving one path.
pub const MAX_LINK_HOPS: usize = 16;
/// Most SUSP continuation areas followed for one directory record.
pub const MAX_CONTINUATIONS: usize = 8;
/// Most path components (after symbolic link expansion).
pub const MAX_COMPONENTS: usize = 256;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// Reading the underlying file failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// Not an ISO 9660 image (no primary volume descriptor).
    #[error("not an ISO 9660 image: {0}")]
    NotIso(String),
    /// A structure points outside the image or breaks a limit.
    #[error("malformed ISO 9660 image: {0}")]
    Malformed(String),
    /// The path does not exist.
    #[error("no such file in the ISO: {0}")]
    NotFound(String),
    /// The path names a directory where a file was wanted, or the reverse.
    #[error("wrong type in the ISO: {0}")]
    WrongType(String),
    /// The file is larger than the caller allowed.
    #[error("file too large in the ISO: {path} ({size} bytes, limit {limit})")]
    TooLarge {
        /// Path inside the image.
        path: String,
        /// Its size.
        size: u64,
        /// The caller's limit.
        limit: u64,
    },
}

/// Result of the reader.
pub type Result<T> = std::result::Result<T, IsoError>;

/// Which name set the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Names {
    /// Rock Ridge (POSIX names and symbolic links).
    RockRidge,
    /// Joliet (UCS-2 names in the supplementary volume descriptor).
    Joliet,
    /// Plain ISO 9660 level 1-3 names (`;1` version suffix removed).
    Iso9660,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name (Rock Ridge, Joliet or plain, see [`Iso::names`]).
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// First sector of its data.
    pub lba: u32,
    /// Size of its data in bytes.
    pub size: u32,
    /// Target of a Rock Ridge symbolic link.
    pub symlink: Option<String>,
}

/// An open ISO 9660 image.
#[derive(Debug)]
pub struct Iso<R> {
    r: R,
    len: u64,
    label: String,
    root: Entry,
    names: Names,
    susp_skip: usize,
    /// Directory listings already read, by (extent, size); bounded by
    /// [`MAX_CACHED_DIRS`] so a hostile image cannot grow it without end.
    cache: std::collections::HashMap<(u32, u32), Vec<Entry>>,
}

/// Most directory listings kept in memory.
pub const MAX_CACHED_DIRS: usize = 64;

fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn trim_label(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

fn ucs2(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// A directory record's fields: extent LBA, size, is-directory, raw name,
/// system use area.
type Record<'a> = (u32, u32, bool, &'a [u8], &'a [u8]);

/// Parse a directory record's fixed part; `None` when it is malformed.
fn parse_record(rec: &[u8]) -> Option<Record<'_>> {
    if rec.len() < 34 {
        return None;
    }
    let lba = le32(rec, 2);
    let size = le32(rec, 10);
    let is_dir = rec[25] & 0x02 != 0;
    let name_len = rec[32] as usize;
    let name_end = 33 + name_len;
    if name_end > rec.len() {
        return None;
    }
    let name = &rec[33..name_end];
    let su_start = name_end + name_len.is_multiple_of(2) as usize;
    let su = rec.get(su_start..).unwrap_or(&[]);
    Some((lba, size, is_dir, name, su))
}

impl<R: Read + Seek> Iso<R> {
    /// Open an image: read the volume descriptors and decide the name set.
    pub fn new(mut r: R) -> Result<Self> {
        let len = r.seek(SeekFrom::End(0))?;
        let mut primary: Option<(String, Entry)> = None;
        let mut joliet: Option<Entry> = None;
        let mut sector = vec![0u8; SECTOR as usize];
        for i in 16..16 + MAX_DESCRIPTORS {
            if (i + 1) * SECTOR > len {
                break;
            }
            r.seek(SeekFrom::Start(i * SECTOR))?;
            r.read_exact(&mut sector)?;
            if &sector[1..6] != b"CD001" {
                break;
            }
            let root = || -> Option<Entry> {
                let (lba, size, is_dir, _, _) = parse_record(&sector[156..190])?;
                is_dir.then(|| Entry {
                    name: String::new(),
                    is_dir: true,
                    lba,
                    size,
                    symlink: None,
                })
            };
            match sector[0] {
                1 if primary.is_none() => {
                    let label = trim_label(&sector[40..72]);
                    match root() {
                        Some(e) => primary = Some((label, e)),
                        None => {
                            return Err(IsoError::Malformed("bad root directory record".into()));
                        }
                    }
                }
                2 if joliet.is_none() => {
                    let esc = &sector[88..91];
                    if esc == b"%/@" || esc == b"%/C" || esc == b"%/E" {
                        joliet = root();
                    }
                }
                255 => break,
                _ => {}
            }
        }
        let Some((label, root)) = primary else {
            return Err(IsoError::NotIso(if len < 17 * SECTOR {
                format!("{len} bytes, too small")
            } else {
                "no primary volume descriptor".into()
            }));
        };
        let mut iso = Iso {
            r,
            len,
            label,
            root: root.clone(),
            names: Names::Iso9660,
            susp_skip: 0,
            cache: std::collections::HashMap::new(),
        };
        // Rock Ridge: the root's "." record carries a SUSP "SP" entry.
        if let Some(skip) = iso.rock_ridge_skip(&root)? {
            iso.names = Names::RockRidge;
            iso.susp_skip = skip;
        } else if let Some(j) = joliet {
            iso.names = Names::Joliet;
            iso.root = j;
        }
        Ok(iso)
    }

    /// The primary volume descriptor's volume identifier (trailing blanks removed).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Which name set is used.
    pub fn names(&self) -> Names {
        self.names
    }

    /// Size of the image in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image is empty (never true for an opened image).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn read_at(&mut self, off: u64, n: usize) -> Result<Vec<u8>> {
        if off.checked_add(n as u64).is_none_or(|end| end > self.len) {
            return Err(IsoError::Malformed(format!(
                "extent at byte {off} (+{n}) lies beyond the image end ({})",
                self.len
            )));
        }
        let mut buf = vec![0u8; n];
        self.r.seek(SeekFrom::Start(off))?;
        self.r.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn rock_ridge_skip(&mut self, root: &Entry) -> Result<Option<usize>> {
        let first = self.read_at(u64::from(root.lba) * SECTOR, SECTOR as usize)?;
        let n = first[0] as usize;
        if n < 34 || n > first.len() {
            return Ok(None);
        }
        let Some((_, _, _, _, su)) = parse_record(&first[..n]) else {
            return Ok(None);
        };
        if su.len() >= 7 && &su[0..2] == b"SP" && su[4] == 0xBE && su[5] == 0xEF {
            return Ok(Some(su[6] as usize));
        }
        Ok(None)
    }

    /// Rock Ridge name and symbolic link target from a record's system use area.
    fn rock_ridge(&mut self, su: &[u8]) -> Result<(Option<String>, Option<String>)> {
        let mut name: Option<Vec<u8>> = None;
        let mut link: Option<String> = None;
        let mut link_continues = false;
        let mut area = su.get(self.susp_skip..).unwrap_or(&[]).to_vec();
        let mut hops = 0;
        loop {
            let mut next: Option<(u32, u32, u32)> = None;
            let mut i = 0;
            while i + 4 <= area.len() {
                let sig = [area[i], area[i + 1]];
                let l = area[i + 2] as usize;
                if l < 4 || i + l > area.len() {
                    break;
                }
                let e = &area[i + 4..i + l];
                match &sig {
                    b"NM" if !e.is_empty() => {
                        let flags = e[0];
                        if flags & 0x06 == 0 {
                            name.get_or_insert_with(Vec::new).extend_from_slice(&e[1..]);
                        }
                    }
                    b"SL" if !e.is_empty() => {
                        let target = link.get_or_insert_with(String::new);
                        let mut j = 1;
                        while j + 2 <= e.len() {
                            let cflags = e[j];
                            let clen = e[j + 1] as usize;
                            let Some(content) = e.get(j + 2..j + 2 + clen) else {
                                break;
                            };
                            let part = if cflags & 0x08 != 0 {
                                String::new()
                            } else if cflags & 0x02 != 0 {
                                ".".into()
                            } else if cflags & 0x04 != 0 {
                                "..".into()
                            } else {
                                String::from_utf8_lossy(content).into_owned()
                            };
                            if cflags & 0x08 != 0 {
                                target.clear();
                                target.push('/');
                            } else {
                                if !target.is_empty() && !target.ends_with('/') && !link_continues {
                                    target.push('/');
                                }
                                target.push_str(&part);
                            }
                            link_continues = cflags & 0x01 != 0;
                            j += 2 + clen;
                        }
                    }
                    b"CE" if e.len() >= 24 => {
                        next = Some((le32(e, 0), le32(e, 8), le32(e, 16)));
                    }
                    b"ST" => break,
                    _ => {}
                }
                i += l;
            }
            match next {
                Some((block, off, len)) if hops < MAX_CONTINUATIONS && len <= SECTOR as u32 => {
                    hops += 1;
                    area =
                        self.read_at(u64::from(block) * SECTOR + u64::from(off), len as usize)?;
                }
                _ => break,
            }
        }
        Ok((name.map(|n| String::from_utf8_lossy(&n).into_owned()), link))
    }

    /// All entries of a directory (without `.` and `..`).
    pub fn read_dir_entry(&mut self, dir: &Entry) -> Result<Vec<Entry>> {
        if !dir.is_dir {
            return Err(IsoError::WrongType(format!(
                "{} is not a directory",
                dir.name
            )));
        }
        if dir.size > MAX_DIR_BYTES {
            return Err(IsoError::Malformed(format!(
                "directory extent of {} bytes exceeds {MAX_DIR_BYTES}",
                dir.size
            )));
        }
        if let Some(hit) = self.cache.get(&(dir.lba, dir.size)) {
            return Ok(hit.clone());
        }
        let data = self.read_at(u64::from(dir.lba) * SECTOR, dir.size as usize)?;
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let n = data[pos] as usize;
            if n == 0 {
                // Records do not cross sectors: go on at the next sector.
                pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(rec) = data.get(pos..pos + n) else {
                return Err(IsoError::Malformed(
                    "directory record crosses the extent end".into(),
                ));
            };
            pos += n;
            let Some((lba, size, is_dir, raw, su)) = parse_record(rec) else {
                return Err(IsoError::Malformed("short directory record".into()));
            };
            if raw == [0] || raw == [1] {
                continue;
            }
            let mut name = match self.names {
                Names::Joliet => ucs2(raw),
                _ => String::from_utf8_lossy(raw).into_owned(),
            };
            if self.names != Names::RockRidge || !name.is_empty() {
                if let Some(i) = name.rfind(';') {
                    name.truncate(i);
                }
                if self.names == Names::Iso9660 && name.ends_with('.') {
                    name.pop();
                }
            }
            let mut symlink = None;
            if self.names == Names::RockRidge {
                let (nm, sl) = self.rock_ridge(su)?;
                if let Some(nm) = nm {
                    name = nm;
                }
                symlink = sl;
            }
            // Names that could not be a path component (or would change the
            // path they are part of) are not entries.
            if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
                continue;
            }
            // Multi-extent files repeat the name; the first extent is kept.
            if out.last().is_some_and(|e: &Entry| e.name == name) {
                continue;
            }
            out.push(Entry {
                name,
                is_dir,
                lba,
                size,
                symlink,
            });
        }
        if self.cache.len() < MAX_CACHED_DIRS {
            self.cache.insert((dir.lba, dir.size), out.clone());
        }
        Ok(out)
    }

    /// Resolve a path (`/`-separated, leading `/` optional) to its entry,
    /// following Rock Ridge symbolic links. Plain ISO 9660 names match
    /// without regard to case; others match exactly first, then without case.
    pub fn lookup(&mut self, path: &str) -> Result<Entry> {
        let mut todo: Vec<String> = components(path).into_iter().rev().collect();
        let mut stack: Vec<Entry> = vec![self.root.clone()];
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            if todo.len() + stack.len() > MAX_COMPONENTS {
                return Err(IsoError::Malformed(format!("path too deep: {path}")));
            }
            if comp == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().cloned().unwrap_or_else(|| self.root.clone());
            if !dir.is_dir {
                return Err(IsoError::NotFound(path.to_string()));
            }
            let entries = self.read_dir_entry(&dir)?;
            let found = entries
                .iter()
                .find(|e| e.name == comp)
                .or_else(|| entries.iter().find(|e| e.name.eq_ignore_ascii_case(&comp)))
                .cloned();
            let Some(e) = found else {
                return Err(IsoError::NotFound(path.to_string()));
            };
            if let Some(target) = &e.symlink {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(IsoError::Malformed(format!(
                        "too many symbolic links resolving {path}"
                    )));
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                for c in components(target).into_iter().rev() {
                    todo.push(c);
                }
                continue;
            }
            stack.push(e);
        }
        Ok(stack.pop().unwrap_or_else(|| self.root.clone()))
    }

    /// Whether a path exists (file or directory).
    pub fn exists(&mut self, path: &str) -> bool {
        self.lookup(path).is_ok()
    }

    /// Whether a path exists and is a regular file.
    pub fn is_file(&mut self, path: &str) -> bool {
        self.lookup(path).is_ok_and(|e| !e.is_dir)
    }

    /// Entries of the directory at `path`.
    pub fn list_dir(&mut self, path: &str) -> Result<Vec<Entry>> {
        let e = self.lookup(path)?;
        if !e.is_dir {
            return Err(IsoError::WrongType(format!("{path} is not a directory")));
        }
        self.read_dir_entry(&e)
    }

    /// Contents of the file at `path`, at most `limit` bytes large.
    pub fn read_file(&mut self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let e = self.lookup(path)?;
        if e.is_dir {
            return Err(IsoError::WrongType(format!("{path} is a directory")));
        }
        if u64::from(e.size) > limit {
            return Err(IsoError::TooLarge {
                path: path.to_string(),
                size: e.size.into(),
                limit,
            });
        }
        self.read_at(u64::from(e.lba) * SECTOR, e.size as usize)
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in [0usize, 100, 2048 * 16, 2048 * 17, 2048 * 40] {
            let data = vec![0xA5u8; len];
            assert!(Iso::new(Cursor::new(data)).is_err());
        }
    }

    #[test]
    fn hostile_root_record_is_an_error() {
        let mut img = vec![0u8; 2048 * 20];
        let pvd = &mut img[16 * 2048..17 * 2048];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[40..44].copy_from_slice(b"TEST");
        pvd[156] = 34;
        pvd[156 + 2..156 + 6].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        pvd[156 + 10..156 + 14].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        pvd[156 + 25] = 2;
        let r = Iso::new(Cursor::new(img.clone()));
        assert!(r.is_err());
        // A root that is in range but huge is refused by the listing limit.
        let pvd = &mut img[16 * 2048..17 * 2048];
        pvd[156 + 2..156 + 6].copy_from_slice(&18u32.to_le_bytes());
        let mut iso = Iso::new(Cursor::new(img)).unwrap();
        assert_eq!(iso.label(), "TEST");
        assert!(iso.list_dir("/").is_err());
        assert!(iso.read_file("/x", 10).is_err());
    }
}
