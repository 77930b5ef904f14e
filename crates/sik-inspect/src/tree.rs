//! The tree of a SquashFS image as a flat, sorted list of entries, and its
//! `unsquashfs -lln`-style rendering.

use std::path::Path;

use sik_image::squashfs::InodeKind;

use crate::{Error, each_entry, open_squashfs_file, squashfs_offset_of};

/// Type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// One entry of an image's tree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Path relative to the image root; empty for the root.
    pub path: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryType,
    /// Permission bits (incl. setuid/setgid/sticky), without type bits.
    pub mode: u16,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes (file length, symlink target length; 0 for others).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Device numbers (major, minor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<(u32, u32)>,
}

/// Decode a SquashFS device number (the kernel's old 32-bit encoding).
pub fn decode_dev(dev: u32) -> (u32, u32) {
    ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// List the tree of an ExtensionImage or of the SquashFS of a type 2 AppImage.
/// Holds every entry: [`list_each`] streams them instead.
pub fn list(path: &Path) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    list_each(path, &mut |e| out.push(e.clone()))?;
    Ok(out)
}

/// Call `f` with each entry of the tree, in the byte order of the paths,
/// holding only the directories on the way (memory does not grow with the
/// image).
pub fn list_each(path: &Path, f: &mut dyn FnMut(&Entry)) -> Result<(), Error> {
    let mut file = std::fs::File::open(path)?;
    let offset = squashfs_offset_of(&mut file)?;
    let img = open_squashfs_file(file, offset)?;
    each_entry(&img, &mut |path, inode| {
        let (kind, size, target, device) = match &inode.kind {
            InodeKind::File(f) => (EntryType::File, f.size, None, None),
            InodeKind::Dir(_) => (EntryType::Dir, 0, None, None),
            InodeKind::Symlink(s) => {
                let t = String::from_utf8_lossy(s).into_owned();
                (EntryType::Symlink, t.len() as u64, Some(t), None)
            }
            InodeKind::Char(d) => (EntryType::Char, 0, None, Some(decode_dev(*d))),
            InodeKind::Block(d) => (EntryType::Block, 0, None, Some(decode_dev(*d))),
            InodeKind::Fifo => (EntryType::Fifo, 0, None, None),
            InodeKind::Socket => (EntryType::Socket, 0, None, None),
        };
        f(&Entry {
            path: path.to_string(),
            kind,
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            size,
            mtime: inode.mtime,
            target,
            device,
        });
        Ok(())
    })
}

/// `drwxr-xr-x`-style mode string.
pub fn mode_string(kind: EntryType, mode: u16) -> String {
    let t = match kind {
        EntryType::File => '-',
        EntryType::Dir => 'd',
        EntryType::Symlink => 'l',
        EntryType::Char => 'c',
        EntryType::Block => 'b',
        EntryType::Fifo => 'p',
        EntryType::Socket => 's',
    };
    let bit = |m: u16, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: u16, s: u16, lower: char, upper: char| match (mode & x != 0, mode & s != 0) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        t,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// One line in the layout of `unsquashfs -lln` (numeric owners, UTC times,
/// `root` as the name of the image root). Directories show size 0.
pub fn format_line(e: &Entry, root: &str) -> String {
    let owner = format!("{}/{}", e.uid, e.gid);
    let size = match e.device {
        Some((ma, mi)) => format!("{ma},{mi:>3}"),
        None => e.size.to_string(),
    };
    let width = 27usize.saturating_sub(owner.len()).max(size.len());
    let path = if e.path.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{}", escape_controls(&e.path))
    };
    let mut line = format!(
        "{} {owner}{size:>width$} {} {path}",
        mode_string(e.kind, e.mode),
        format_time(i64::from(e.mtime), false)
    );
    if let Some(t) = &e.target {
        line.push_str(" -> ");
        line.push_str(&escape_controls(t));
    }
    line
}

/// Control characters (NUL, newline, escape …) as `\ooo` octal escapes of
/// their bytes, the way `ls -b` shows them, so a hostile name cannot forge
/// listing lines or terminal output. Other characters are kept, so
/// ordinary names list exactly as `unsquashfs -lln` shows them.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:03o}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `YYYY-MM-DD HH:MM` (or with `:SS`) in UTC.
pub fn format_time(secs: i64, with_seconds: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
    if with_seconds {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0, true), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000, false), "2023-11-14 22:13");
        assert_eq!(format_time(951_782_400, false), "2000-02-29 00:00");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain name ä"), "plain name ä");
        assert_eq!(escape_controls("b\0bin"), "b\\000bin");
        assert_eq!(escape_controls("a\nfake line"), "a\\012fake line");
        assert_eq!(escape_controls("\u{1b}[31m"), "\\033[31m");
        assert_eq!(escape_controls("\u{85}"), "\\302\\205");
    }

    #[test]
    fn modes() {
        assert_eq!(mode_string(EntryType::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(EntryType::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(EntryType::File, 0o2644), "-rw-r-Sr--");
    }

    #[test]
    fn line_layout_matches_unsquashfs() {
        let e = Entry {
            path: "c".into(),
            kind: EntryType::Char,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            target: None,
            device: Some((1, 3)),
        };
        assert_eq!(
            format_line(&e, "squashfs-root"),
            "crw-r--r-- 0/0                   1,  3 1970-01-01 00:00 squashfs-root/c"
        );
        let e = Entry {
            path: "d/f".into(),
            kind: EntryType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: 0,
            target: None,
            device: None,
        };
        assert_eq!(
            format_line(&e, "squashfs-root"),
            "-rw-r--r-- 0/0                       3 1970-01-01 00:00 squashfs-root/d/f"
        );
    }

    #[test]
    fn devices() {
        // mksquashfs encodes makedev(1, 3) as 0x103.
        assert_eq!(decode_dev(0x103), (1, 3));
    }
}
