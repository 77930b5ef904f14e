//! Sources of an image: a directory, a tar archive (plain, gzip, xz, zstd,
//! recognised by content), a Debian package (its `data.tar.*` member), an
//! RPM package or an Arch Linux package (a tar whose first entry is
//! `.PKGINFO`); see [`crate::package`] for the packages' facts.
//!
//! Every source is fed into a [`crate::squashfs::SquashfsWriter`] entry by entry, streaming
//! file data, so memory does not grow with the size of the source.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{Error, Progress};

/// What kind of source a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory tree.
    Dir,
    /// A tar archive with the given outer compression.
    Tar(TarCompression),
    /// A Debian package.
    Deb,
    /// An RPM package (lead magic `ed ab ee db`).
    Rpm,
    /// An Arch Linux package: a tar (with this compression) whose first
    /// entry is `.PKGINFO`.
    Arch(TarCompression),
}

impl SourceKind {
    /// How reports name the kind: `directory`, `tar`, `tar+gzip` …, `deb`,
    /// `rpm`, `arch+zstd` ….
    pub fn label(self) -> String {
        let comp = |c: TarCompression| match c {
            TarCompression::None => String::new(),
            other => format!("+{}", format!("{other:?}").to_lowercase()),
        };
        match self {
            SourceKind::Dir => "directory".into(),
            SourceKind::Tar(c) => format!("tar{}", comp(c)),
            SourceKind::Deb => "deb".into(),
            SourceKind::Rpm => "rpm".into(),
            SourceKind::Arch(c) => format!("arch{}", comp(c)),
        }
    }
}

/// Compression around a tar stream, recognised by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarCompression {
    /// Plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// bzip2 (`BZh`): recognised to name it, not supported.
    Bzip2,
}

impl TarCompression {
    fn from_magic(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(TarCompression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(TarCompression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(TarCompression::Zstd)
        } else if head.starts_with(b"BZh") {
            Some(TarCompression::Bzip2)
        } else if is_tar_header(head) {
            Some(TarCompression::None)
        } else {
            None
        }
    }
}

/// A 512-byte block is a tar header when its checksum field matches.
fn is_tar_header(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let field = &head[148..156];
    let digits: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(expected) = u32::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == expected
}

/// Recognise the kind of `path` from its content.
pub fn detect(path: &Path) -> Result<SourceKind, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::source(path, e))?;
    if meta.is_dir() {
        return Ok(SourceKind::Dir);
    }
    let mut f = File::open(path).map_err(|e| Error::source(path, e))?;
    let mut head = vec![0u8; 512];
    let n = sik_image::read_full(&mut f, &mut head).map_err(|e| Error::source(path, e))?;
    head.truncate(n);
    if head.starts_with(b"!<arch>\n") {
        return Ok(SourceKind::Deb);
    }
    if head.starts_with(&[0xed, 0xab, 0xee, 0xdb]) {
        return Ok(SourceKind::Rpm);
    }
    match TarCompression::from_magic(&head) {
        Some(TarCompression::Bzip2) => Ok(SourceKind::Tar(TarCompression::Bzip2)),
        Some(c) => {
            // An Arch package is a tar whose first entry is .PKGINFO.
            let mut archive = tar::Archive::new(open_tar(path, c)?);
            let first = archive
                .entries()
                .ok()
                .and_then(|mut e| e.next())
                .and_then(|e| e.ok())
                .map(|e| e.path_bytes().into_owned());
            if first.as_deref() == Some(b".PKGINFO") {
                Ok(SourceKind::Arch(c))
            } else {
                Ok(SourceKind::Tar(c))
            }
        }
        None => Err(Error::BadSource {
            path: path.to_path_buf(),
            why: "not a directory, a tar archive (plain, gzip, xz, zstd), a Debian, RPM or Arch package"
                .into(),
        }),
    }
}

/// How entries are turned into image metadata.
pub struct SourceOptions {
    /// Keep uid/gid instead of 0/0.
    pub keep_owner: bool,
    /// Globs of paths (relative to the source root) to leave out.
    pub exclude: Vec<String>,
    /// Called with each regular file's path after the walk saw it and
    /// before it is opened (a test uses it to swap the file).
    pub before_open: Option<BeforeOpen>,
}

/// A callback run between the walk and the opening of a regular file.
#[derive(Clone)]
pub struct BeforeOpen(pub std::sync::Arc<dyn Fn(&Path) + Send + Sync>);

impl std::fmt::Debug for BeforeOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeOpen(..)")
    }
}

/// Open the regular file the walk saw at `path` (`md`: its `lstat`), without
/// following a symlink, and check it is still that file: a name swapped for
/// a symlink, or a parent directory swapped for one, after the walk would
/// otherwise pull a file from outside the source into the image.
pub(crate) fn open_walked(path: &Path, md: &std::fs::Metadata) -> Result<File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO swapped in must not hang the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::source(
                    path,
                    io::Error::other("replaced by a symlink while reading the source"),
                )
            } else {
                Error::source(path, e)
            }
        })?;
    let now = f.metadata().map_err(|e| Error::source(path, e))?;
    if !now.is_file() || now.dev() != md.dev() || now.ino() != md.ino() {
        return Err(Error::source(
            path,
            io::Error::other("replaced by another file while reading the source"),
        ));
    }
    Ok(f)
}

/// Counts of what a source held.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SourceStats {
    /// Regular files (each hard-link group counted once).
    pub files: u64,
    /// Directories, root excluded.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Extra names of hard-linked files.
    pub hardlinks: u64,
    /// Character and block devices, fifos and sockets.
    pub specials: u64,
    /// Bytes of file data read.
    pub bytes: u64,
    /// Paths excluded by `--exclude`.
    pub excluded: u64,
    /// Entries that more than one source gave, equal (added once).
    pub merged: u64,
    /// Entries of an earlier source replaced by a later one (`later_wins`).
    pub replaced: u64,
    /// Regular files left out because the root file system the image is
    /// made for (`--for`) holds them with the same mode and content.
    pub omitted: u64,
    /// Their bytes.
    pub omitted_bytes: u64,
    /// Paths whose mode has setuid, setgid or sticky bits.
    pub special_modes: Vec<String>,
    /// Whether an `ExtensionRun` executable is at the root.
    pub extension_run: bool,
    /// Image paths that were added, kept only for the few the caller asks about.
    #[serde(skip)]
    pub seen: Vec<Vec<u8>>,
}

/// Open a tar source with its compression layer removed.
pub fn open_tar(path: &Path, compression: TarCompression) -> Result<Box<dyn Read>, Error> {
    let f = File::open(path).map_err(|e| Error::source(path, e))?;
    decompress(
        Box::new(BufReader::with_capacity(1 << 20, f)),
        compression,
        path,
    )
}

fn decompress<'r>(
    r: Box<dyn Read + 'r>,
    compression: TarCompression,
    path: &Path,
) -> Result<Box<dyn Read + 'r>, Error> {
    Ok(match compression {
        TarCompression::None => r,
        TarCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        TarCompression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
        TarCompression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| Error::source(path, e))?)
        }
        TarCompression::Bzip2 => {
            return Err(Error::BadSource {
                path: path.to_path_buf(),
                why: "bzip2-compressed archives are not supported; use gzip, xz or zstd".into(),
            });
        }
    })
}

/// Open the `data.tar.*` member of a Debian package (an `ar` archive) as a
/// decompressed tar stream.
pub fn open_deb(path: &Path) -> Result<Box<dyn Read>, Error> {
    open_deb_member(path, "data.tar")
}

/// Open the member of a Debian package whose name starts with `prefix`
/// (`data.tar`, `control.tar`) as a decompressed tar stream.
pub fn open_deb_member(path: &Path, prefix: &str) -> Result<Box<dyn Read>, Error> {
    let bad = |why: String| Error::BadSource {
        path: path.to_path_buf(),
        why,
    };
    let mut f = File::open(path).map_err(|e| Error::source(path, e))?;
    let len = f.metadata().map_err(|e| Error::source(path, e))?.len();
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|e| Error::source(path, e))?;
    let mut pos = 8u64;
    loop {
        let mut hdr = [0u8; 60];
        if pos + 60 > len {
            return Err(bad(format!("Debian package has no {prefix} member")));
        }
        f.seek(SeekFrom::Start(pos))
            .map_err(|e| Error::source(path, e))?;
        f.read_exact(&mut hdr).map_err(|e| Error::source(path, e))?;
        if &hdr[58..60] != b"`\n" {
            return Err(bad(format!("malformed ar member header at offset {pos}")));
        }
        let name = String::from_utf8_lossy(&hdr[0..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&hdr[48..58])
            .trim()
            .parse()
            .map_err(|_| bad(format!("malformed ar member size at offset {pos}")))?;
        let data = pos + 60;
        if data.checked_add(size).is_none_or(|end| end > len) {
            return Err(bad(format!(
                "ar member {name:?} extends beyond the end of the file"
            )));
        }
        if let Some(ext) = name.strip_prefix(prefix) {
            f.seek(SeekFrom::Start(data))
                .map_err(|e| Error::source(path, e))?;
            let mut head = [0u8; 6];
            let member = BufReader::with_capacity(1 << 20, f).take(size);
            let mut member = member;
            // Peek the member's magic through a small buffer, then chain it back.
            let n =
                sik_image::read_full(&mut member, &mut head).map_err(|e| Error::source(path, e))?;
            let head = head[..n].to_vec();
            let compression = match ext {
                "" => TarCompression::None,
                _ => TarCompression::from_magic(&head)
                    .ok_or_else(|| bad(format!("unknown compression of member {prefix}{ext}")))?,
            };
            let stream: Box<dyn Read> = Box::new(io::Cursor::new(head).chain(member));
            return decompress(stream, compression, path);
        }
        pos = data + size + (size & 1);
    }
}

/// Why an archive path cannot be an image path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchivePathError {
    /// The path starts with `/`.
    #[error("absolute path {0:?} in archive")]
    Absolute(String),
    /// The path holds a NUL byte.
    #[error("path with a NUL byte in archive")]
    Nul,
    /// A `..` component would leave the tree.
    #[error("path {0:?} in archive leaves the tree (`..`)")]
    LeavesTree(String),
}

/// Turn an archive path into an image path: strip `./` and trailing `/`;
/// `None` for the root itself; an error for absolute paths, NUL bytes and
/// `..`.
pub fn normalize_archive_path(raw: &[u8]) -> Result<Option<Vec<u8>>, ArchivePathError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(ArchivePathError::Absolute(shown()));
    }
    if raw.contains(&0) {
        return Err(ArchivePathError::Nul);
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(ArchivePathError::LeavesTree(shown())),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        Ok(None)
    } else {
        Ok(Some(out.join(&b'/')))
    }
}

pub(crate) fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    out.sort();
    out
}

pub(crate) fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(names) = xattr::list(path) {
        for name in names {
            let n = name.as_bytes();
            if !(n.starts_with(b"user.")
                || n.starts_with(b"trusted.")
                || n.starts_with(b"security."))
            {
                continue;
            }
            if let Ok(Some(v)) = xattr::get(path, &name) {
                out.push((n.to_vec(), v));
            }
        }
    }
    out.sort();
    out
}

/// [`read_xattrs`] of an open file.
pub(crate) fn read_fd_xattrs(f: &File) -> Vec<(Vec<u8>, Vec<u8>)> {
    use xattr::FileExt;
    let mut out = Vec::new();
    if let Ok(names) = f.list_xattr() {
        for name in names {
            let n = name.as_bytes();
            if !(n.starts_with(b"user.")
                || n.starts_with(b"trusted.")
                || n.starts_with(b"security."))
            {
                continue;
            }
            if let Ok(Some(v)) = f.get_xattr(&name) {
                out.push((n.to_vec(), v));
            }
        }
    }
    out.sort();
    out
}

pub(crate) struct CountingReader<'p, R> {
    pub(crate) inner: R,
    pub(crate) progress: &'p dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

pub(crate) fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// SquashFS stores unsigned 32-bit mtimes.
pub(crate) fn clamp_mtime(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

pub(crate) fn dev_major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as u32
}

pub(crate) fn dev_minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as u32
}

/// Total bytes of regular files below `root` (for a progress bar).
pub fn dir_size(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(normalize_archive_path(b"./").unwrap(), None);
        assert_eq!(normalize_archive_path(b".").unwrap(), None);
        assert_eq!(
            normalize_archive_path(b"./usr/bin/").unwrap().unwrap(),
            b"usr/bin"
        );
        assert_eq!(
            normalize_archive_path(b"a//b/./c").unwrap().unwrap(),
            b"a/b/c"
        );
        assert!(normalize_archive_path(b"/etc/passwd").is_err());
        assert!(normalize_archive_path(b"a/../../x").is_err());
        assert!(normalize_archive_path(b"a/b\0c").is_err());
    }

    #[test]
    fn device_numbers() {
        // makedev(8, 1) and makedev(259, 65536) as glibc encodes them.
        let mk = |ma: u64, mi: u64| {
            ((ma & 0xfffff000) << 32)
                | ((ma & 0xfff) << 8)
                | ((mi & 0xffffff00) << 12)
                | (mi & 0xff)
        };
        assert_eq!((dev_major(mk(8, 1)), dev_minor(mk(8, 1))), (8, 1));
        assert_eq!(
            (dev_major(mk(259, 65536)), dev_minor(mk(259, 65536))),
            (259, 65536)
        );
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(
            TarCompression::from_magic(&[0x1f, 0x8b, 8]),
            Some(TarCompression::Gzip)
        );
        assert_eq!(
            TarCompression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd]),
            Some(TarCompression::Zstd)
        );
        assert_eq!(TarCompression::from_magic(b"hello"), None);
    }
}
