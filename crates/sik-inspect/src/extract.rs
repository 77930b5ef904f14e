//! Extraction of an image's tree into a directory.
//!
//! Safety rules: every path component must be a plain name (no `..`, no `.`,
//! no empty component); every parent on the way is checked to be a real
//! directory inside the target (never a symlink), files are created with
//! `O_NOFOLLOW` and never overwrite unless `force` is set. Symlinks are
//! created verbatim and never followed. Owners are restored when running as
//! root; modes and mtimes always (directories last, deepest first, so
//! read-only directories do not block their own contents).

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use backhand::{InnerNode, SquashfsFileReader};
use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use sik_image::squashfs;

use crate::tree::decode_dev;
use crate::{Error, open_squashfs, open_squashfs_file, squashfs_offset, squashfs_offset_of};

/// How to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Write into a non-empty directory, replacing entries.
    pub force: bool,
    /// Create no device nodes, FIFOs or sockets (they are listed in
    /// [`ExtractReport::skipped_specials`]): for a tree that stands in for
    /// a `nodev` mount.
    pub no_specials: bool,
}

/// What was extracted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExtractReport {
    /// Entries written (root excluded).
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Hard links recreated.
    pub hardlinks: u64,
    /// Device nodes, fifos and sockets that could not be created (not root).
    pub skipped_specials: Vec<String>,
    /// Whether owners were restored.
    pub owners_restored: bool,
}

/// Extract the tree of an ExtensionImage (or of a type 2 AppImage's SquashFS)
/// into `dir`.
pub fn extract(image: &Path, dir: &Path, opts: &ExtractOptions) -> Result<ExtractReport, Error> {
    let offset = squashfs_offset(image)?;
    let fs = open_squashfs(image, offset)?;
    extract_filtered(&fs, dir, opts, &|_| true)
}

/// Extract the tree of the image open as `image` (read through a duplicate
/// of that descriptor, from its start; the path is never opened again, so
/// what was checked through the descriptor is what is extracted) into the
/// existing empty directory `dir`, in place: no staging sibling is made
/// next to `dir`, and a failure leaves a partial tree the caller removes.
pub fn extract_open_in_place(
    image: &std::fs::File,
    dir: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    let mut f = image.try_clone()?;
    let offset = squashfs_offset_of(&mut f)?;
    let fs = open_squashfs_file(f, offset)?;
    if fs::read_dir(dir)?.next().is_some() {
        return Err(Error::Unsafe(format!("{} is not empty", dir.display())));
    }
    extract_into(&fs, dir, opts, &|_| true)
}

/// Extract the entries of an already opened image for which `want` (given
/// the image-relative path) is true, plus their parent directories.
pub fn extract_filtered(
    fs: &backhand::FilesystemReader<'_>,
    dir: &Path,
    opts: &ExtractOptions,
    want: &dyn Fn(&str) -> bool,
) -> Result<ExtractReport, Error> {
    let fresh = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(dir)?.next().is_none();
            if !empty && !opts.force {
                return Err(Error::Unsafe(format!(
                    "{} is not empty; pass --force to write into it",
                    dir.display()
                )));
            }
            empty
        }
        Ok(_) => {
            return Err(Error::Unsafe(format!(
                "{} exists and is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(e.into()),
    };
    let staging = if fresh { staging_dir(dir) } else { None };
    let Some(staging) = staging else {
        // Writing into a populated directory (--force): entries are replaced
        // in place, as `unsquashfs -f` does; a failure leaves what was done.
        if !dir.exists() {
            fs::create_dir_all(dir)?;
        }
        return extract_into(fs, dir, opts, want);
    };
    // A new tree is built in a hidden sibling and renamed into place when
    // complete, so a failed extraction leaves nothing behind.
    let result = extract_into(fs, &staging, opts, want).and_then(|report| {
        fs::rename(&staging, dir)?;
        Ok(report)
    });
    if result.is_err() {
        remove_tree(&staging);
    }
    result
}

/// A fresh hidden directory next to `dir` (same filesystem, so the final
/// rename is atomic), or `None` when `dir` has no usable name.
/// An existing empty directory that is a mount point is filled in place.
fn staging_dir(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let name = dir.file_name()?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).ok()?;
    if let Ok(m) = fs::metadata(dir)
        && m.dev() != fs::metadata(parent).ok()?.dev()
    {
        return None;
    }
    for n in 0..100u32 {
        let mut leaf = std::ffi::OsString::from(".");
        leaf.push(name);
        leaf.push(format!(".sik-extract-{}-{n}", std::process::id()));
        let candidate = parent.join(leaf);
        match fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => return Some(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Remove a partly extracted tree, making its directories writable first
/// (a failure can come after read-only modes were applied).
fn remove_tree(path: &Path) {
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
        }
    }
    let _ = fs::remove_dir_all(path);
}

/// Extract into `dir`, which exists and is a directory.
fn extract_into(
    fs: &backhand::FilesystemReader<'_>,
    dir: &Path,
    opts: &ExtractOptions,
    want: &dyn Fn(&str) -> bool,
) -> Result<ExtractReport, Error> {
    let root = dir.to_path_buf();
    let as_root = rustix::process::geteuid().is_root();
    let mut report = ExtractReport {
        owners_restored: as_root,
        ..Default::default()
    };
    let mut checked_dirs: HashSet<PathBuf> = HashSet::new();
    checked_dirs.insert(root.clone());
    let mut dirs: Vec<(PathBuf, backhand::NodeHeader)> = Vec::new();
    let mut links: HashMap<(u64, u32, usize, usize), PathBuf> = HashMap::new();
    // Regular files are written after the walk, several at a time (reading,
    // decompressing and writing a file is independent of the others); hard
    // links to them after that.
    let mut files: Vec<FileJob<'_>> = Vec::new();
    let mut hardlinks: Vec<(PathBuf, PathBuf)> = Vec::new();

    for node in fs.files() {
        let rel = relative(&node.fullpath)?;
        let Some(rel) = rel else {
            dirs.push((root.clone(), node.header));
            continue;
        };
        let rel_str = rel.to_string_lossy().into_owned();
        if !want(&rel_str) {
            continue;
        }
        let target = root.join(&rel);
        let parent = target.parent().unwrap_or(&root).to_path_buf();
        ensure_parent(&root, &parent, &mut checked_dirs)?;
        let exists = fs::symlink_metadata(&target).ok();
        if let Some(m) = &exists {
            let both_dirs = m.is_dir() && matches!(node.inner, InnerNode::Dir(_));
            if !both_dirs {
                if !opts.force {
                    return Err(Error::Unsafe(format!(
                        "{} exists; pass --force to replace it",
                        target.display()
                    )));
                }
                if m.is_dir() {
                    fs::remove_dir_all(&target)?
                } else {
                    fs::remove_file(&target)?
                }
            }
        }
        let h = node.header;
        match &node.inner {
            InnerNode::Dir(_) => {
                if exists.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&target)?;
                }
                checked_dirs.insert(target.clone());
                dirs.push((target, h));
            }
            InnerNode::File(file) => {
                if let Some(key) = link_key(file) {
                    if let Some(first) = links.get(&key) {
                        hardlinks.push((first.clone(), target));
                        report.hardlinks += 1;
                        report.entries += 1;
                        continue;
                    }
                    links.insert(key, target.clone());
                }
                files.push(FileJob {
                    target,
                    rel: rel_str,
                    file,
                    header: h,
                });
            }
            InnerNode::Symlink(s) => {
                std::os::unix::fs::symlink(&s.link, &target)?;
                if as_root {
                    std::os::unix::fs::lchown(&target, Some(h.uid), Some(h.gid))?;
                }
                set_times(&target, h.mtime)?;
            }
            _ if opts.no_specials => {
                report.skipped_specials.push(rel_str);
                continue;
            }
            other => {
                let (ft, dev) = match other {
                    InnerNode::CharacterDevice(d) => {
                        (FileType::CharacterDevice, Some(d.device_number))
                    }
                    InnerNode::BlockDevice(d) => (FileType::BlockDevice, Some(d.device_number)),
                    InnerNode::NamedPipe => (FileType::Fifo, None),
                    _ => (FileType::Socket, None),
                };
                let rdev = dev.map(|d| {
                    let (ma, mi) = decode_dev(d);
                    rustix::fs::makedev(ma, mi)
                });
                let mode = Mode::from_raw_mode(u32::from(h.permissions & 0o777));
                match rustix::fs::mknodat(CWD, &target, ft, mode, rdev.unwrap_or(0)) {
                    Ok(()) => {
                        if as_root {
                            std::os::unix::fs::lchown(&target, Some(h.uid), Some(h.gid))?;
                        }
                        fs::set_permissions(
                            &target,
                            fs::Permissions::from_mode(u32::from(h.permissions & 0o7777)),
                        )?;
                        set_times(&target, h.mtime)?;
                    }
                    Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::ACCESS) => {
                        report.skipped_specials.push(rel_str);
                        continue;
                    }
                    Err(e) => return Err(io::Error::from(e).into()),
                }
            }
        }
        report.entries += 1;
    }
    report.bytes = files
        .par_iter()
        .map_init(
            || vec![0u8; 1 << 20],
            |buf, job| write_file(fs, job, buf, as_root),
        )
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    for (first, target) in &hardlinks {
        fs::hard_link(first, target)?;
    }
    // Directory metadata last, deepest first.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, h) in dirs {
        if as_root {
            std::os::unix::fs::lchown(&path, Some(h.uid), Some(h.gid))?;
        }
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(u32::from(h.permissions & 0o7777)),
        )?;
        set_times(&path, h.mtime)?;
    }
    Ok(report)
}

/// A regular file to write: where, its image path (for messages), its data
/// and its metadata.
struct FileJob<'a> {
    target: PathBuf,
    rel: String,
    file: &'a SquashfsFileReader,
    header: backhand::NodeHeader,
}

/// Create `job.target` (never through a symlink, never over an existing
/// entry), fill it with the file's data and apply owner, mode and mtime.
/// Returns the bytes written.
fn write_file(
    fs: &backhand::FilesystemReader<'_>,
    job: &FileJob<'_>,
    buf: &mut [u8],
    as_root: bool,
) -> Result<u64, Error> {
    let h = job.header;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&job.target)?;
    let mut reader = fs
        .file(job.file)
        .reader_checked()
        .map_err(|e| Error::Malformed(format!("{}: {}", job.rel, squashfs::describe_error(&e))))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut written = 0u64;
    loop {
        let n = match io::Read::read(&mut reader, buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Malformed(format!("{}: {e}", job.rel))),
        };
        w.write_all(&buf[..n])?;
        written += n as u64;
    }
    let out = w.into_inner().map_err(|e| e.into_error())?;
    if as_root {
        rustix::fs::fchown(&out, Some(uid(h.uid)), Some(gid(h.gid))).map_err(io::Error::from)?;
    }
    out.set_permissions(fs::Permissions::from_mode(u32::from(
        h.permissions & 0o7777,
    )))?;
    set_times(&job.target, h.mtime)?;
    Ok(written)
}

/// The image path made relative, with every component checked.
fn relative(full: &Path) -> Result<Option<PathBuf>, Error> {
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                if n.as_encoded_bytes().contains(&0) {
                    return Err(Error::Unsafe(format!(
                        "entry name with a NUL byte: {}",
                        full.display()
                    )));
                }
                out.push(n)
            }
            Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                return Err(Error::Unsafe(format!(
                    "entry {} has a `..` or `.` component; refusing to extract it",
                    full.display()
                )));
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Every directory from `root` down to `parent` must be a real directory
/// (not a symlink), so nothing is ever written through a link.
fn ensure_parent(root: &Path, parent: &Path, checked: &mut HashSet<PathBuf>) -> Result<(), Error> {
    if checked.contains(parent) {
        return Ok(());
    }
    let rel = parent
        .strip_prefix(root)
        .map_err(|_| Error::Unsafe(format!("{} lies outside the target", parent.display())))?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if checked.contains(&cur) {
            continue;
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {
                checked.insert(cur.clone());
            }
            Ok(_) => {
                return Err(Error::Unsafe(format!(
                    "{} is not a directory (a symlink?); refusing to write through it",
                    cur.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The image lacks the parent directory entry; create it.
                fs::create_dir(&cur)?;
                checked.insert(cur.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Hard-linked files share one inode: an extended file inode with a link
/// count above 1 and identical data references.
fn link_key(file: &SquashfsFileReader) -> Option<(u64, u32, usize, usize)> {
    match file {
        SquashfsFileReader::Extended(x) if x.link_count > 1 => Some((
            file.blocks_start(),
            file.block_offset(),
            file.frag_index(),
            file.file_len(),
        )),
        _ => None,
    }
}

fn set_times(path: &Path, mtime: u32) -> io::Result<()> {
    let t = Timespec {
        tv_sec: i64::from(mtime),
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}
