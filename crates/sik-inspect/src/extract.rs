//! Extraction of an image's tree into a directory.
//!
//! Safety rules: every path component must be a plain name (no `..`, no `.`,
//! no empty component); every parent on the way is checked to be a real
//! directory inside the target (never a symlink), files are created with
//! `O_NOFOLLOW` and never overwrite unless `force` is set. Symlinks are
//! created verbatim and never followed. Owners are restored when running as
//! root; modes and mtimes always (directories last, deepest first, so
//! read-only directories do not block their own contents).
//!
//! Memory is bounded by the work in flight, not by the image: the tree is
//! walked in path order by `sik-image`'s streaming reader (one directory
//! listing per level), directories, symlinks and special files are made as
//! the walk meets them, and regular files go through a bounded queue to a
//! few writer threads, each with its own block buffers; a small cache of
//! fragment blocks is shared. What is kept to the end is one record per
//! directory (its metadata is applied last) and one per hard-linked file.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use sik_image::squashfs::{self, DataBuffers, FileData, FragmentCache, Image, Inode, InodeKind};

use crate::tree::decode_dev;
use crate::{Error, open_squashfs_file, squashfs_offset_of};

/// Regular files queued for the writer threads at most.
const QUEUE: usize = 1024;

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
    let mut f = File::open(image)?;
    let offset = squashfs_offset_of(&mut f)?;
    let img = open_squashfs_file(f, offset)?;
    extract_image(&img, dir, opts)
}

/// Extract the tree of the image open as `image` (read through a duplicate
/// of that descriptor, from its start; the path is never opened again, so
/// what was checked through the descriptor is what is extracted) into the
/// existing empty directory `dir`, in place: no staging sibling is made
/// next to `dir`, and a failure leaves a partial tree the caller removes.
pub fn extract_open_in_place(
    image: &File,
    dir: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    let mut f = image.try_clone()?;
    let offset = squashfs_offset_of(&mut f)?;
    let img = open_squashfs_file(f, offset)?;
    if fs::read_dir(dir)?.next().is_some() {
        return Err(Error::Unsafe(format!("{} is not empty", dir.display())));
    }
    extract_into(&img, dir, opts)
}

/// Extract an opened image into `dir`: a new tree is staged beside it, a
/// populated directory is written in place with `force`.
fn extract_image(
    img: &Image<File>,
    dir: &Path,
    opts: &ExtractOptions,
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
        return extract_into(img, dir, opts);
    };
    // A new tree is built in a hidden sibling and renamed into place when
    // complete, so a failed extraction leaves nothing behind.
    let result = extract_into(img, &staging, opts).and_then(|report| {
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

/// Owner, mode and time of an entry.
#[derive(Clone, Copy)]
struct Meta {
    uid: u32,
    gid: u32,
    mode: u16,
    mtime: u32,
}

impl From<&Inode> for Meta {
    fn from(i: &Inode) -> Meta {
        Meta {
            uid: i.uid,
            gid: i.gid,
            mode: i.mode,
            mtime: i.mtime,
        }
    }
}

/// A regular file to write: where, its image path (for messages), its data
/// and its metadata.
struct FileJob {
    target: PathBuf,
    rel: String,
    data: FileData,
    meta: Meta,
}

/// What the writer threads share: the first error and the bytes written.
struct Shared {
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    bytes: AtomicU64,
    frags: FragmentCache,
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// Extract into `dir`, which exists and is a directory: the walk on this
/// thread, regular files on writer threads fed through a bounded queue.
fn extract_into(
    img: &Image<File>,
    dir: &Path,
    opts: &ExtractOptions,
) -> Result<ExtractReport, Error> {
    let as_root = rustix::process::geteuid().is_root();
    let shared = Shared {
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        bytes: AtomicU64::new(0),
        frags: FragmentCache::default(),
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let (tx, rx) = mpsc::sync_channel::<FileJob>(QUEUE);
    let rx = Mutex::new(rx);
    let walked = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| writer(img, &rx, &shared, as_root));
        }
        let walked = walk_tree(img, dir, opts, as_root, &tx, &shared);
        drop(tx);
        walked
    });
    if let Some(e) = shared.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let (mut report, hardlinks, mut dirs) = walked?;
    report.bytes = shared.bytes.into_inner();
    for (first, target) in &hardlinks {
        fs::hard_link(first, target)?;
    }
    // Directory metadata last, deepest first.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, m) in dirs {
        if as_root {
            std::os::unix::fs::lchown(&path, Some(m.uid), Some(m.gid))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(u32::from(m.mode)))?;
        set_times(&path, m.mtime)?;
    }
    Ok(report)
}

/// Hard links to make after the files: (first path, new path).
type Links = Vec<(PathBuf, PathBuf)>;

/// Directories whose metadata is applied last.
type Dirs = Vec<(PathBuf, Meta)>;

/// The walk: creates directories, symlinks and special files, queues
/// regular files, and returns the report, the hard links and the
/// directories whose metadata is applied last.
fn walk_tree(
    img: &Image<File>,
    root: &Path,
    opts: &ExtractOptions,
    as_root: bool,
    tx: &mpsc::SyncSender<FileJob>,
    shared: &Shared,
) -> Result<(ExtractReport, Links, Dirs), Error> {
    let mut report = ExtractReport {
        owners_restored: as_root,
        ..Default::default()
    };
    let mut dirs: Dirs = Vec::new();
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    let mut hardlinks: Links = Vec::new();
    let mut cache = img.meta_cache();
    let result = squashfs::walk(img, &mut cache, &mut |path, inode, reference| {
        if shared.failed.load(Ordering::Relaxed) {
            // A writer failed: stop; its error is the one reported.
            return Err(Error::Unsafe("stopped".into()));
        }
        if path.is_empty() {
            dirs.push((root.to_path_buf(), inode.into()));
            return Ok(());
        }
        // Names are plain (checked by the reader) and every parent was made
        // or checked to be a real directory before its contents are walked.
        let mut target = root.to_path_buf();
        for c in path {
            target.push(OsStr::from_bytes(c));
        }
        let rel = || {
            path.iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
                .join("/")
        };
        let exists = fs::symlink_metadata(&target).ok();
        let is_dir = matches!(inode.kind, InodeKind::Dir(_));
        if let Some(m) = &exists
            && !(m.is_dir() && is_dir)
        {
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
        let meta = Meta::from(inode);
        match &inode.kind {
            InodeKind::Dir(_) => {
                if exists.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&target)?;
                }
                dirs.push((target, meta));
            }
            InodeKind::File(data) => {
                if inode.extended && inode.nlink > 1 {
                    if let Some(first) = links.get(&reference) {
                        hardlinks.push((first.clone(), target));
                        report.hardlinks += 1;
                        report.entries += 1;
                        return Ok(());
                    }
                    links.insert(reference, target.clone());
                }
                let job = FileJob {
                    target,
                    rel: rel(),
                    data: data.clone(),
                    meta,
                };
                if tx.send(job).is_err() {
                    return Err(Error::Unsafe("the writer threads stopped".into()));
                }
            }
            InodeKind::Symlink(link) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(link), &target)?;
                if as_root {
                    std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid))?;
                }
                set_times(&target, meta.mtime)?;
            }
            _ if opts.no_specials => {
                report.skipped_specials.push(rel());
                return Ok(());
            }
            other => {
                let (ft, dev) = match other {
                    InodeKind::Char(d) => (FileType::CharacterDevice, Some(*d)),
                    InodeKind::Block(d) => (FileType::BlockDevice, Some(*d)),
                    InodeKind::Fifo => (FileType::Fifo, None),
                    _ => (FileType::Socket, None),
                };
                let rdev = dev.map(|d| {
                    let (ma, mi) = decode_dev(d);
                    rustix::fs::makedev(ma, mi)
                });
                let mode = Mode::from_raw_mode(u32::from(meta.mode & 0o777));
                match rustix::fs::mknodat(CWD, &target, ft, mode, rdev.unwrap_or(0)) {
                    Ok(()) => {
                        if as_root {
                            std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid))?;
                        }
                        fs::set_permissions(
                            &target,
                            fs::Permissions::from_mode(u32::from(meta.mode)),
                        )?;
                        set_times(&target, meta.mtime)?;
                    }
                    Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::ACCESS) => {
                        report.skipped_specials.push(rel());
                        return Ok(());
                    }
                    Err(e) => return Err(io::Error::from(e).into()),
                }
            }
        }
        report.entries += 1;
        Ok(())
    });
    if let Err(e) = result {
        shared.fail(e);
        return Err(Error::Unsafe("extraction failed".into()));
    }
    Ok((report, hardlinks, dirs))
}

/// A writer thread: takes files from the queue until it closes; after a
/// failure it only drains the queue.
fn writer(img: &Image<File>, rx: &Mutex<mpsc::Receiver<FileJob>>, shared: &Shared, as_root: bool) {
    let mut bufs = DataBuffers::new(img);
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        if shared.failed.load(Ordering::Relaxed) {
            continue;
        }
        match write_file(img, &job, &mut bufs, &shared.frags, as_root) {
            Ok(n) => {
                shared.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => shared.fail(e),
        }
    }
}

/// Create `job.target` (never through a symlink, never over an existing
/// entry), fill it with the file's data and apply owner, mode and mtime.
/// Returns the bytes written.
fn write_file(
    img: &Image<File>,
    job: &FileJob,
    bufs: &mut DataBuffers,
    frags: &FragmentCache,
    as_root: bool,
) -> Result<u64, Error> {
    let m = job.meta;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&job.target)?;
    let written = img
        .read_file(&job.data, bufs, frags, &mut |b| out.write_all(b))
        .map_err(|e| match e {
            sik_image::Error::Stream(io) => Error::Io(io),
            sik_image::Error::Malformed { why, .. } => {
                Error::Malformed(format!("{}: SquashFS: {why}", job.rel))
            }
            other => Error::Malformed(format!("{}: {other}", job.rel)),
        })?;
    if as_root {
        rustix::fs::fchown(&out, Some(uid(m.uid)), Some(gid(m.gid))).map_err(io::Error::from)?;
    }
    out.set_permissions(fs::Permissions::from_mode(u32::from(m.mode)))?;
    set_times(&job.target, m.mtime)?;
    Ok(written)
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
