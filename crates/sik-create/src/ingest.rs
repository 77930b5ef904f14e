//! Feeding sources into the SquashFS writer: every kind of source (directory
//! walk, tar stream, RPM payload) turns each entry into one [`Body`] and
//! hands it to [`Ingest::put`], the one place that applies `--exclude`,
//! counts, and — when several sources are merged into one image — decides
//! what happens when a later source brings a path an earlier one already
//! added.
//!
//! Merging (more than one source): the same path from two sources is
//! accepted once when both entries are equal (same type, permission bits,
//! owner, and for regular files the same SHA-256 of the content, for
//! symlinks the same target; directories compare type, mode and owner
//! only); any other difference is [`Error::Conflict`], naming both sources,
//! unless `later_wins`, when the later entry replaces the earlier one (a
//! directory and a non-directory never replace each other).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::source::{
    CountingReader, SourceOptions, SourceStats, clamp_mtime, clamp_u32, dev_major, dev_minor,
    normalize_archive_path, open_walked, pax_xattrs, read_fd_xattrs, read_xattrs,
};
use crate::squashfs::{Meta, SquashfsWriter};
use crate::{Error, Progress};

/// What one source entry is, beyond its path and metadata.
pub(crate) enum Body<'r> {
    Dir,
    File(&'r mut dyn Read),
    Symlink(Vec<u8>),
    /// Another name of the inode at this image path (added earlier).
    HardLink(Vec<u8>),
    CharDev(u32, u32),
    BlockDev(u32, u32),
    Fifo,
    Socket,
}

/// What an entry was, for comparing entries of two sources.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Dir,
    File([u8; 32]),
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    CharDev(u32, u32),
    BlockDev(u32, u32),
    Fifo,
    Socket,
}

#[derive(Debug, Clone)]
struct Seen {
    origin: usize,
    mode: u16,
    uid: u32,
    gid: u32,
    shape: Shape,
}

/// State of a merge of several sources.
pub(crate) struct Merge {
    /// The sources, in order (for error messages).
    pub sources: Vec<PathBuf>,
    pub later_wins: bool,
    seen: HashMap<Vec<u8>, Seen>,
}

impl Merge {
    pub fn new(sources: Vec<PathBuf>, later_wins: bool) -> Self {
        Merge {
            sources,
            later_wins,
            seen: HashMap::new(),
        }
    }
}

/// What to do with an entry a source brings.
enum Decision {
    /// Nothing there yet (or the same source again: the writer decides).
    Add,
    /// An equal entry from an earlier source is there.
    Same,
    /// A different entry from an earlier source is there and the later wins.
    Replace,
}

pub(crate) struct Ingest<'a> {
    pub writer: &'a mut SquashfsWriter,
    pub opts: &'a SourceOptions,
    pub progress: &'a dyn Progress,
    pub stats: SourceStats,
    pub exclude: GlobSet,
    /// Paths whose presence the caller wants to know.
    pub watch: Vec<Vec<u8>>,
    /// Set when several sources go into one image.
    pub merge: Option<Merge>,
    /// Index of the source being read (into `merge.sources`).
    pub origin: usize,
    /// The root file system the image is made for (`--for`): its regular
    /// files with the same mode and content are left out.
    pub base: Option<&'a crate::base::Base>,
}

impl<'a> Ingest<'a> {
    pub fn new(
        writer: &'a mut SquashfsWriter,
        opts: &'a SourceOptions,
        progress: &'a dyn Progress,
        watch: Vec<Vec<u8>>,
    ) -> Result<Self, Error> {
        let mut b = GlobSetBuilder::new();
        for g in &opts.exclude {
            let g = g.trim_start_matches('/');
            let glob = Glob::new(g).map_err(|e| Error::Usage(format!("--exclude {g:?}: {e}")))?;
            b.add(glob);
        }
        let exclude = b
            .build()
            .map_err(|e| Error::Usage(format!("--exclude: {e}")))?;
        Ok(Ingest {
            writer,
            opts,
            progress,
            stats: SourceStats::default(),
            exclude,
            watch,
            merge: None,
            origin: 0,
            base: None,
        })
    }

    /// Whether `rel` is left out by `--exclude` (counted).
    pub fn excluded(&mut self, rel: &[u8]) -> bool {
        let hit = self
            .exclude
            .is_match(Path::new(std::ffi::OsStr::from_bytes(rel)));
        if hit {
            self.stats.excluded += 1;
        }
        hit
    }

    fn note(&mut self, rel: &[u8], mode: u32, is_file: bool) {
        if mode & 0o7000 != 0 {
            self.stats
                .special_modes
                .push(String::from_utf8_lossy(rel).into_owned());
        }
        if rel == b"ExtensionRun" && is_file && mode & 0o111 != 0 {
            self.stats.extension_run = true;
        }
        if self.watch.iter().any(|w| w == rel) {
            self.stats.seen.push(rel.to_vec());
        }
    }

    pub fn owner(&self, uid: u64, gid: u64) -> (u32, u32) {
        if self.opts.keep_owner {
            (clamp_u32(uid), clamp_u32(gid))
        } else {
            (0, 0)
        }
    }

    /// The image root's metadata: the first source's root.
    pub fn set_root(&mut self, meta: Meta) {
        if self.origin == 0 {
            self.writer.set_root(meta);
        }
    }

    fn decide(&self, rel: &[u8], new: &Seen) -> Result<Decision, Error> {
        let Some(m) = &self.merge else {
            return Ok(Decision::Add);
        };
        let Some(old) = m.seen.get(rel) else {
            return Ok(Decision::Add);
        };
        if old.origin == new.origin {
            return Ok(Decision::Add);
        }
        let why = match (&old.shape, &new.shape) {
            (a, b) if a == b && (old.mode, old.uid, old.gid) == (new.mode, new.uid, new.gid) => {
                return Ok(Decision::Same);
            }
            (Shape::Dir, Shape::Dir) => "directory mode or owner",
            (Shape::Dir, _) | (_, Shape::Dir) => {
                return Err(self.conflict(rel, old.origin, "a directory in one, not in the other"));
            }
            (Shape::File(_), Shape::File(_)) if old.shape != new.shape => "content",
            (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => "file type",
            (a, b) if a != b => "target or device",
            _ => "mode or owner",
        };
        if m.later_wins {
            Ok(Decision::Replace)
        } else {
            Err(self.conflict(rel, old.origin, why))
        }
    }

    fn conflict(&self, rel: &[u8], earlier: usize, why: &str) -> Error {
        let names = self.merge.as_ref().map(|m| &m.sources[..]).unwrap_or(&[]);
        let name = |i: usize| names.get(i).cloned().unwrap_or_default();
        Error::Conflict {
            path: String::from_utf8_lossy(rel).into_owned(),
            first: name(earlier),
            second: name(self.origin),
            why: why.to_string(),
        }
    }

    fn record(&mut self, rel: &[u8], seen: Seen) {
        if let Some(m) = &mut self.merge {
            m.seen.insert(rel.to_vec(), seen);
        }
    }

    /// Add one entry at image path `rel`. `mode` is the full mode (type
    /// bits included) for the notes; `origin` names the source in errors.
    pub fn put(
        &mut self,
        rel: &[u8],
        meta: Meta,
        mode: u32,
        body: Body<'_>,
        origin: &Path,
    ) -> Result<(), Error> {
        let is_file = matches!(body, Body::File(_));
        self.note(rel, mode, is_file);
        let mut seen = Seen {
            origin: self.origin,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            shape: Shape::Dir,
        };
        let merging = self.merge.is_some();
        let w_err = |e| Error::in_source(origin, e);
        match body {
            Body::File(r) => {
                let mut chained;
                let based = self
                    .base
                    .and_then(|b| b.file_size(rel, meta.mode).map(|s| (b, s)));
                let r: &mut dyn Read = match based {
                    Some((base, size)) => {
                        // Read as much as the base's file holds (and one
                        // byte more): the same content and mode is left
                        // out; anything else goes on with the bytes read
                        // in front of the rest.
                        let mut buf = Vec::new();
                        (&mut *r)
                            .take(size + 1)
                            .read_to_end(&mut buf)
                            .map_err(|e| w_err(e.into()))?;
                        if buf.len() as u64 == size && base.same_content(rel, &buf) {
                            self.stats.omitted += 1;
                            self.stats.omitted_bytes += size;
                            return Ok(());
                        }
                        chained = std::io::Cursor::new(buf).chain(r);
                        &mut chained
                    }
                    None => r,
                };
                let mut hashing = Hashing {
                    inner: CountingReader {
                        inner: r,
                        progress: self.progress,
                    },
                    hasher: merging.then(Sha256::new),
                };
                let (data, n) = self.writer.add_file_data(&mut hashing).map_err(w_err)?;
                self.stats.bytes += n;
                seen.shape = Shape::File(
                    hashing
                        .hasher
                        .map(|h| h.finalize().into())
                        .unwrap_or_default(),
                );
                match self.decide(rel, &seen)? {
                    Decision::Same => self.stats.merged += 1,
                    d => {
                        if matches!(d, Decision::Replace) {
                            self.writer.remove(rel).map_err(w_err)?;
                            self.stats.replaced += 1;
                        } else {
                            self.stats.files += 1;
                        }
                        self.writer.add_file_ref(rel, meta, data).map_err(w_err)?;
                        self.record(rel, seen);
                    }
                }
                return Ok(());
            }
            Body::Dir => {}
            Body::Symlink(ref t) => seen.shape = Shape::Symlink(t.clone()),
            Body::HardLink(ref t) => seen.shape = Shape::HardLink(t.clone()),
            Body::CharDev(a, b) => seen.shape = Shape::CharDev(a, b),
            Body::BlockDev(a, b) => seen.shape = Shape::BlockDev(a, b),
            Body::Fifo => seen.shape = Shape::Fifo,
            Body::Socket => seen.shape = Shape::Socket,
        }
        let decision = self.decide(rel, &seen)?;
        if let Decision::Same = decision {
            self.stats.merged += 1;
            return Ok(());
        }
        let replace = matches!(decision, Decision::Replace);
        let w = &mut *self.writer;
        if replace {
            self.stats.replaced += 1;
            if let Body::Dir = body {
                w.set_dir_meta(rel, meta).map_err(w_err)?;
                self.record(rel, seen);
                return Ok(());
            }
            w.remove(rel).map_err(w_err)?;
        }
        let counter = match body {
            Body::Dir => {
                w.add_dir(rel, meta).map_err(w_err)?;
                &mut self.stats.dirs
            }
            Body::Symlink(target) => {
                w.add_symlink(rel, &target, meta).map_err(w_err)?;
                &mut self.stats.symlinks
            }
            Body::HardLink(target) => {
                w.add_hardlink(rel, &target).map_err(w_err)?;
                &mut self.stats.hardlinks
            }
            Body::CharDev(major, minor) => {
                w.add_char_device(rel, meta, major, minor).map_err(w_err)?;
                &mut self.stats.specials
            }
            Body::BlockDev(major, minor) => {
                w.add_block_device(rel, meta, major, minor).map_err(w_err)?;
                &mut self.stats.specials
            }
            Body::Fifo => {
                w.add_fifo(rel, meta).map_err(w_err)?;
                &mut self.stats.specials
            }
            Body::Socket => {
                w.add_socket(rel, meta).map_err(w_err)?;
                &mut self.stats.specials
            }
            // Handled above.
            Body::File(_) => return Ok(()),
        };
        if !replace {
            *counter += 1;
        }
        self.record(rel, seen);
        Ok(())
    }

    /// Feed a directory tree.
    pub fn dir(&mut self, root: &Path) -> Result<(), Error> {
        let root_meta = std::fs::symlink_metadata(root).map_err(|e| Error::source(root, e))?;
        let (uid, gid) = self.owner(u64::from(root_meta.uid()), u64::from(root_meta.gid()));
        let xattrs = read_xattrs(root);
        self.set_root(Meta {
            mode: (root_meta.mode() & 0o7777) as u16,
            uid,
            gid,
            mtime: clamp_mtime(root_meta.mtime()),
            xattrs,
        });
        let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut walk = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
            .min_depth(1)
            .into_iter();
        while let Some(entry) = walk.next() {
            let entry = entry.map_err(|e| {
                let p = e.path().unwrap_or(root).to_path_buf();
                Error::source(
                    &p,
                    e.into_io_error()
                        .unwrap_or_else(|| io::Error::other("filesystem loop")),
                )
            })?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(path)
                .as_os_str()
                .as_bytes()
                .to_vec();
            let md = entry.metadata().map_err(|e| {
                Error::source(
                    path,
                    e.into_io_error()
                        .unwrap_or_else(|| io::Error::other("metadata")),
                )
            })?;
            if self.excluded(&rel) {
                if md.is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
            let (uid, gid) = self.owner(u64::from(md.uid()), u64::from(md.gid()));
            let mode = md.mode();
            let ft = md.file_type();
            let mut meta = Meta {
                mode: (mode & 0o7777) as u16,
                uid,
                gid,
                mtime: clamp_mtime(md.mtime()),
                xattrs: Vec::new(),
            };
            if !ft.is_file() {
                meta.xattrs = read_xattrs(path);
            }
            if ft.is_dir() {
                self.put(&rel, meta, mode, Body::Dir, path)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(path).map_err(|e| Error::source(path, e))?;
                let target = target.as_os_str().as_bytes().to_vec();
                self.put(&rel, meta, mode, Body::Symlink(target), path)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = links.get(&key) {
                        let first = first.clone();
                        self.put(&rel, meta, mode, Body::HardLink(first), path)?;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                if let Some(hook) = &self.opts.before_open {
                    (hook.0)(path);
                }
                let mut f = open_walked(path, &md)?;
                meta.xattrs = read_fd_xattrs(&f);
                self.put(&rel, meta, mode, Body::File(&mut f), path)?;
            } else if ft.is_char_device() || ft.is_block_device() {
                let rdev = md.rdev();
                let (major, minor) = (dev_major(rdev), dev_minor(rdev));
                let body = if ft.is_char_device() {
                    Body::CharDev(major, minor)
                } else {
                    Body::BlockDev(major, minor)
                };
                self.put(&rel, meta, mode, body, path)?;
            } else if ft.is_fifo() {
                self.put(&rel, meta, mode, Body::Fifo, path)?;
            } else if ft.is_socket() {
                self.put(&rel, meta, mode, Body::Socket, path)?;
            }
        }
        Ok(())
    }

    /// Feed a tar stream. `origin` names the source file in errors.
    /// Entries at the archive's root named in `skip` (package metadata
    /// such as `.PKGINFO`) are not content: they are handed to `meta_file`
    /// (at most 1 MiB each) instead.
    pub fn tar<R: Read>(
        &mut self,
        stream: R,
        origin: &Path,
        skip: &[&str],
        meta_file: &mut dyn FnMut(&str, Vec<u8>),
    ) -> Result<(), Error> {
        let mut archive = tar::Archive::new(stream);
        let entries = archive.entries().map_err(|e| Error::source(origin, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::source(origin, e))?;
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = normalize_archive_path(&raw).map_err(|why| Error::BadSource {
                path: origin.to_path_buf(),
                why: why.to_string(),
            })?
            else {
                // The archive's root entry ("./"): its metadata becomes the image root's.
                let h = entry.header();
                let (uid, gid) = self.owner(h.uid().unwrap_or(0), h.gid().unwrap_or(0));
                let meta = Meta {
                    mode: (h.mode().unwrap_or(0o755) & 0o7777) as u16,
                    uid,
                    gid,
                    mtime: clamp_mtime(h.mtime().unwrap_or(0) as i64),
                    xattrs: pax_xattrs(&mut entry),
                };
                self.set_root(meta);
                continue;
            };
            if let Some(name) = skip.iter().find(|n| n.as_bytes() == rel.as_slice()) {
                let mut data = Vec::new();
                (&mut entry)
                    .take(1 << 20)
                    .read_to_end(&mut data)
                    .map_err(|e| Error::source(origin, e))?;
                meta_file(name, data);
                continue;
            }
            if self.excluded(&rel) {
                continue;
            }
            let xattrs = pax_xattrs(&mut entry);
            let h = entry.header();
            let mode = h.mode().map_err(|e| Error::source(origin, e))?;
            let (uid, gid) = self.owner(h.uid().unwrap_or(0), h.gid().unwrap_or(0));
            let meta = Meta {
                mode: (mode & 0o7777) as u16,
                uid,
                gid,
                mtime: clamp_mtime(h.mtime().unwrap_or(0) as i64),
                xattrs,
            };
            let ty = h.entry_type();
            let is_file = ty.is_file() || ty.is_contiguous() || ty.is_gnu_sparse();
            let dev = (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            );
            let link = if ty.is_symlink() || ty.is_hard_link() {
                entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let body = if ty.is_dir() {
                Body::Dir
            } else if is_file {
                Body::File(&mut entry)
            } else if ty.is_symlink() {
                Body::Symlink(link)
            } else if ty.is_hard_link() {
                let target = normalize_archive_path(&link)
                    .map_err(|why| Error::BadSource {
                        path: origin.to_path_buf(),
                        why: format!("hard link {}: {why}", String::from_utf8_lossy(&rel)),
                    })?
                    .ok_or_else(|| Error::BadSource {
                        path: origin.to_path_buf(),
                        why: format!(
                            "hard link {} points at the root",
                            String::from_utf8_lossy(&rel)
                        ),
                    })?;
                Body::HardLink(target)
            } else if ty.is_character_special() {
                Body::CharDev(dev.0, dev.1)
            } else if ty.is_block_special() {
                Body::BlockDev(dev.0, dev.1)
            } else if ty.is_fifo() {
                Body::Fifo
            } else {
                // PAX/GNU long-name headers are consumed by the tar crate;
                // other entry types (e.g. volume labels) carry nothing.
                continue;
            };
            self.put(&rel, meta, mode, body, origin)?;
        }
        Ok(())
    }
}

/// Hashes what is read through it when merging (to compare contents).
struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}
