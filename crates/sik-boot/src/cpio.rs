//! A reproducible newc (`070701`) cpio writer, the format the Linux kernel
//! unpacks as an initramfs.
//!
//! Entries carry fixed owners (0:0), a fixed mtime and sequential inode
//! numbers, and are written sorted by path, so the same input always gives
//! the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// Modification time written for every entry (1 January 2000, UTC).
pub const FIXED_MTIME: u32 = 946_684_800;

/// What a cpio entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with this permission mode.
    Dir(u32),
    /// A regular file with this permission mode and contents.
    File(u32, Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
}

/// An archive being put together; paths are relative (`sik/boot.sh`).
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Node>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace an entry. Leading `/` and `./` are removed.
    pub fn add(&mut self, path: &str, node: Node) {
        let p = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        if !p.is_empty() {
            self.entries.insert(p, node);
        }
    }

    /// Add a directory and every parent directory of it.
    pub fn add_dir_all(&mut self, path: &str) {
        let mut acc = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            self.entries.entry(acc.clone()).or_insert(Node::Dir(0o755));
        }
    }

    /// Paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the archive (uncompressed) to `w`.
    pub fn write<W: Write>(&self, mut w: W) -> io::Result<()> {
        let mut written = 0u64;
        for (ino, (path, node)) in (1u32..).zip(self.entries.iter()) {
            let (mode, data): (u32, &[u8]) = match node {
                Node::Dir(m) => (0o040000 | (m & 0o7777), &[]),
                Node::File(m, d) => (0o100000 | (m & 0o7777), d),
                Node::Symlink(t) => (0o120000 | 0o777, t.as_bytes()),
            };
            let nlink = if matches!(node, Node::Dir(_)) { 2 } else { 1 };
            written += header(&mut w, ino, mode, nlink, data.len(), path)?;
            w.write_all(data)?;
            written += data.len() as u64;
            written += pad(&mut w, written)?;
        }
        written += header(&mut w, 0, 0, 1, 0, "TRAILER!!!")?;
        pad(&mut w, written)?;
        Ok(())
    }
}

fn header<W: Write>(
    w: &mut W,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    name: &str,
) -> io::Result<u64> {
    let size = u32::try_from(size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: larger than 4 GiB"),
        )
    })?;
    let namesize = name.len() + 1;
    let h = format!(
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}{z:08X}{z:08X}{z:08X}{z:08X}{namesize:08X}{z:08X}",
        uid = 0,
        gid = 0,
        mtime = FIXED_MTIME,
        z = 0
    );
    w.write_all(h.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    let n = (h.len() + namesize) as u64;
    let p = (4 - n % 4) % 4;
    w.write_all(&[0u8; 3][..p as usize])?;
    Ok(n + p)
}

fn pad<W: Write>(w: &mut W, written: u64) -> io::Result<u64> {
    let p = (4 - written % 4) % 4;
    w.write_all(&[0u8; 3][..p as usize])?;
    Ok(p)
}

/// The data of the regular file `want` in an uncompressed newc archive
/// (the format [`Archive::write`] writes); `None` when it is not there or
/// the archive is malformed. Every length is bounded by the input.
pub fn find(archive: &[u8], want: &str) -> Option<Vec<u8>> {
    let hex = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
    };
    let mut at = 0usize;
    loop {
        let h = archive.get(at..at.checked_add(110)?)?;
        if &h[..6] != b"070701" {
            return None;
        }
        let mode = hex(&h[14..22])?;
        let size = hex(&h[54..62])?;
        let namesize = hex(&h[94..102])?;
        let name_end = at.checked_add(110)?.checked_add(namesize)?;
        let name = archive.get(at + 110..name_end.checked_sub(1)?)?;
        let data_at = name_end.checked_add(3)? & !3;
        let data_end = data_at.checked_add(size)?;
        if name == b"TRAILER!!!" {
            return None;
        }
        if name == want.as_bytes() && mode & 0o170000 == 0o100000 {
            return archive.get(data_at..data_end).map(<[u8]>::to_vec);
        }
        at = data_end.checked_add(3)? & !3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_sorted() {
        let mut a = Archive::new();
        a.add("b/file", Node::File(0o644, b"hello".to_vec()));
        a.add_dir_all("b");
        a.add("a", Node::Symlink("b/file".into()));
        let mut out = Vec::new();
        a.write(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let names: Vec<&str> = a.paths().collect();
        assert_eq!(names, ["a", "b", "b/file"]);
        let mut again = Vec::new();
        a.write(&mut again).unwrap();
        assert_eq!(out, again);
        assert_eq!(find(&out, "b/file").as_deref(), Some(&b"hello"[..]));
        assert_eq!(find(&out, "a"), None, "a symlink is not a file");
        assert_eq!(find(&out, "c"), None);
        assert_eq!(find(&out[..out.len() / 2], "c"), None);
    }
}
