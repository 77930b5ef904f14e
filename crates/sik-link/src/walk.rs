//! The tree walker: walks a mounted image's content and creates in ROOT one
//! symlink per non-directory entry and the missing directories, journalling
//! each change before it is made.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::journal::{self, Journal, Record};
use crate::link::Counter;
use crate::report::{Conflict, ConflictKind};
use crate::resolve::{self, Dir, DirMeta, ResolveError, Root};
use crate::run::{Opened, Walked};
use crate::state::{lossy, show_bytes, slash};
use crate::sys;

/// Why walking an image's tree stopped (the link is then undone).
#[derive(Debug)]
pub(crate) enum WalkError {
    /// An entry of the image cannot be used: its path in the image, and why.
    Entry(Vec<u8>, String),
    /// Writing the journal failed.
    Journal(io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Entry(p, why) => write!(f, "unusable image entry /{}: {why}", show_bytes(p)),
            WalkError::Journal(e) => write!(f, "linking failed: cannot write the journal: {e}"),
        }
    }
}

pub(crate) fn split_parent(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

/// Directories of ROOT by canonical path, opened once.
#[derive(Default)]
pub(crate) struct ParentCache {
    pub(crate) map: std::collections::HashMap<Vec<u8>, Option<Dir>>,
    /// The key asked for last (entries of one directory come in a row).
    pub(crate) last: Option<Vec<u8>>,
}

impl ParentCache {
    pub(crate) fn get(&mut self, root: &Root, rel: &[u8]) -> Option<&Dir> {
        if self.last.as_deref() == Some(rel) {
            return self.map.get(rel).and_then(Option::as_ref);
        }
        if !self.map.contains_key(rel) {
            if self.map.len() > 256 {
                self.map.clear();
            }
            let d = if rel.is_empty() {
                root.top().ok()
            } else {
                // One openat from the (cached) parent, never following a symlink.
                let (parent, leaf) = split_parent(rel);
                let leaf = sys::cstr(leaf).ok();
                match (self.get(root, parent), leaf) {
                    (Some(p), Some(leaf)) => sys::openat(p.fd.as_fd(), &leaf, sys::DIR_FLAGS)
                        .ok()
                        .map(|fd| Dir {
                            fd,
                            rel: rel.to_vec(),
                        }),
                    _ => None,
                }
            };
            self.map.insert(rel.to_vec(), d);
        }
        self.last = Some(rel.to_vec());
        self.map.get(rel).and_then(Option::as_ref)
    }

    pub(crate) fn forget(&mut self, rel: &[u8]) {
        self.last = None;
        self.map.remove(rel);
    }
}

pub(crate) struct Walker<'a> {
    pub(crate) root: &'a Root,
    pub(crate) journal: &'a Journal,
    pub(crate) ext: &'a str,
    pub(crate) seen_mnt: Vec<u8>,
    /// The state directory's canonical path in ROOT, when it is inside ROOT.
    pub(crate) state_rel: Option<Vec<u8>>,
    pub(crate) replace: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) replaced_fd: Option<OwnedFd>,
    pub(crate) conflicts: Vec<Conflict>,
    pub(crate) created: u64,
    pub(crate) dirs_created: u64,
    pub(crate) already: u64,
    pub(crate) counter: &'a Counter,
    /// Whether a trusted key signed the image (its directories keep their owner and mode).
    pub(crate) trusted: bool,
    /// Record symlinks found already ours (the journal is new).
    pub(crate) record_adopted: bool,
    /// Set when another thread's walk failed: stop early.
    pub(crate) stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Name of a file moved aside, in `STATE/NAME/replaced/`.
pub(crate) fn aside_name(rel: &[u8]) -> Vec<u8> {
    journal::escape(rel).replace('/', "%2F").into_bytes()
}

/// Name of a file moved aside next to itself (when the state directory is
/// on another file system).
pub(crate) fn sibling_aside_name(leaf: &[u8], ext: &str) -> Vec<u8> {
    let mut v = b".".to_vec();
    v.extend_from_slice(leaf);
    v.extend_from_slice(format!(".sik-aside.{ext}").as_bytes());
    v
}

impl Walker<'_> {
    /// Append the record of the symlink `dst/leaf` -> `target` to `batch`
    /// (the short `l` form when ROOT's path is the image's path `img/leaf`).
    pub(crate) fn link_record(
        batch: &mut String,
        dst: &[u8],
        img: &[u8],
        leaf: &[u8],
        target: &[u8],
    ) {
        if dst == img {
            batch.push_str("l ");
            journal::escape_path_into(batch, dst, leaf);
        } else {
            batch.push_str("L ");
            journal::escape_path_into(batch, dst, leaf);
            batch.push(' ');
            journal::escape_into(batch, target);
        }
        batch.push('\n');
    }

    /// Append to `batch` the records of everything a walk makes for the
    /// image's directory `img/n` (content fd `src` = `img`) in the missing
    /// ROOT directory `dst/n`: its `D`, then for each level its
    /// non-directories' `l`/`L` records and its sub-directories, in the
    /// order the walk makes them. Names are checked as the walk checks them.
    pub(crate) fn record_subtree(
        &self,
        batch: &mut String,
        src: &OwnedFd,
        img: &[u8],
        dst: &[u8],
        n: &[u8],
    ) -> Result<(), WalkError> {
        let img_rel = resolve::join(img, n);
        let rel = resolve::join(dst, n);
        batch.push_str("D ");
        journal::escape_into(batch, &rel);
        batch.push('\n');
        let fd = sys::cstr(n)
            .and_then(|c| {
                sys::openat(
                    src.as_fd(),
                    &c,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                )
            })
            .map_err(|e| WalkError::Entry(img_rel.clone(), format!("cannot open it: {e}")))?;
        let mut entries = sys::read_dir_fd(fd.as_fd()).map_err(|e| match e {
            sys::ReadDirError::Io(e) => {
                WalkError::Entry(img_rel.clone(), format!("cannot read the directory: {e}"))
            }
            sys::ReadDirError::BadName(b, why) => {
                WalkError::Entry(resolve::join(&img_rel, &b), why.to_string())
            }
        })?;
        entries.sort();
        let mut prefix = self.seen_mnt.clone();
        prefix.push(b'/');
        prefix.extend_from_slice(&img_rel);
        prefix.push(b'/');
        for (e, is_dir) in &entries {
            if !sys::is_component(e) {
                return Err(WalkError::Entry(
                    resolve::join(&img_rel, e),
                    "not a usable file name".into(),
                ));
            }
            if !is_dir {
                let mut target = prefix.clone();
                target.extend_from_slice(e);
                Self::link_record(batch, &rel, &img_rel, e, &target);
            }
        }
        for (e, is_dir) in &entries {
            if *is_dir {
                self.record_subtree(batch, &fd, &img_rel, &rel, e)?;
            }
        }
        Ok(())
    }

    pub(crate) fn conflict(&mut self, rel: &[u8], kind: ConflictKind, detail: impl Into<String>) {
        self.conflicts.push(Conflict {
            path: slash(rel),
            kind,
            detail: detail.into(),
        });
    }

    /// Whether the canonical `rel` is the state directory or below it.
    pub(crate) fn is_state(&self, rel: &[u8]) -> bool {
        self.state_rel.as_ref().is_some_and(|s| {
            rel.starts_with(s) && (rel.len() == s.len() || rel.get(s.len()) == Some(&b'/'))
        })
    }

    pub(crate) fn other_name(&self, target: &[u8]) -> String {
        let rest = &target[self.root.ours_prefix.len().min(target.len())..];
        lossy(rest.split(|&c| c == b'/').next().unwrap_or_default())
    }

    pub(crate) fn replaced_dir(&mut self) -> io::Result<&OwnedFd> {
        if self.replaced_fd.is_none() {
            let p = self.state_dir.join("replaced");
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            self.replaced_fd = Some(sys::open(
                &p,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
            )?);
        }
        match &self.replaced_fd {
            Some(fd) => Ok(fd),
            None => Err(Errno::BADF.into()),
        }
    }

    pub(crate) fn move_aside(&mut self, dst: &Dir, leaf: &[u8], rel: &[u8]) -> io::Result<()> {
        let c = sys::cstr(leaf)?;
        let ext = self.ext;
        let rd = self.replaced_dir()?;
        let aside = sys::cstr(&aside_name(rel))?;
        match sys::renameat_noreplace(dst.fd.as_fd(), &c, rd, &aside) {
            Err(e) if Errno::from_io_error(&e) == Some(Errno::XDEV) => {
                let sib = sys::cstr(&sibling_aside_name(leaf, ext))?;
                sys::renameat_noreplace(dst.fd.as_fd(), &c, dst.fd.as_fd(), &sib)
            }
            r => r,
        }
    }

    /// Link the content directory `src` (image path `img`) into `dst`.
    ///
    /// `fresh`: `dst` was just created by this walk, so it is empty and
    /// nothing needs to be looked up in it.
    ///
    /// Every name read from the image is used as one path component only
    /// (an `*at` call on a directory fd); a name that cannot be one, or an
    /// entry that cannot be read, stops the walk with [`WalkError::Entry`].
    ///
    /// `recorded`: everything this walk makes below `dst` is already in
    /// the journal (see [`Walker::record_subtree`]).
    pub(crate) fn walk(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        recorded: bool,
    ) -> Result<(), WalkError> {
        self.walk_dir(src, img, dst, fresh, false, recorded)
    }

    /// [`Walker::walk`]; `parallel`: spread the sub-directories over threads.
    pub(crate) fn walk_dir(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        parallel: bool,
        recorded: bool,
    ) -> Result<(), WalkError> {
        if let Some(stop) = self.stop
            && stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let mut files: Vec<Vec<u8>> = Vec::new();
        let mut dirs: Vec<Vec<u8>> = Vec::new();
        let entries = sys::read_dir_fd(src.as_fd()).map_err(|e| match e {
            sys::ReadDirError::Io(e) => {
                WalkError::Entry(img.to_vec(), format!("cannot read the directory: {e}"))
            }
            sys::ReadDirError::BadName(n, why) => {
                WalkError::Entry(resolve::join(img, &n), why.to_string())
            }
        })?;
        for (n, is_dir) in entries {
            if !sys::is_component(&n) {
                return Err(WalkError::Entry(
                    resolve::join(img, &n),
                    "not a usable file name".into(),
                ));
            }
            if img.is_empty() && n == b"ExtensionRun" {
                continue;
            }
            if is_dir {
                dirs.push(n);
            } else {
                files.push(n);
            }
        }
        files.sort();
        dirs.sort();

        // Non-directories: decide, announce in the journal, then act.
        let mut prefix = self.seen_mnt.clone();
        prefix.push(b'/');
        if !img.is_empty() {
            prefix.extend_from_slice(img);
            prefix.push(b'/');
        }
        let mut plan: Vec<(std::ffi::CString, std::ffi::CString, bool)> = Vec::new(); // (leaf, target, replace first)
        let mut batch = String::new();
        for n in files {
            let mut target = Vec::with_capacity(prefix.len() + n.len());
            target.extend_from_slice(&prefix);
            target.extend_from_slice(&n);
            let c = std::ffi::CString::new(n).map_err(|e| {
                WalkError::Entry(
                    resolve::join(img, &e.into_vec()),
                    "the name contains a NUL byte".into(),
                )
            })?;
            let st = if fresh {
                Err(io::Error::from(Errno::NOENT))
            } else {
                sys::fstatat(dst.fd.as_fd(), &c)
            };
            let rel = || dst.child_rel(c.as_bytes());
            let create = match st {
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => Some(false),
                Err(e) => {
                    self.conflict(&rel(), ConflictKind::Error, e.to_string());
                    None
                }
                Ok(st) if sys::is_lnk(&st) => {
                    let t = sys::readlinkat(dst.fd.as_fd(), &c).unwrap_or_default();
                    if t == target {
                        self.already += 1;
                        if self.record_adopted {
                            // Ours already (a state lost with a volatile
                            // STATE): recorded, so unlink removes it.
                            Self::link_record(&mut batch, &dst.rel, img, c.as_bytes(), &target);
                        }
                        None
                    } else if self.root.is_ours(&t) {
                        let other = self.other_name(&t);
                        self.conflict(&rel(), ConflictKind::OtherExtension, other);
                        None
                    } else if self.replace {
                        Some(true)
                    } else {
                        self.conflict(&rel(), ConflictKind::Kept, "");
                        None
                    }
                }
                Ok(st) if sys::is_dir(&st) => {
                    self.conflict(&rel(), ConflictKind::Directory, "");
                    None
                }
                Ok(_) if self.replace => Some(true),
                Ok(_) => {
                    self.conflict(&rel(), ConflictKind::Kept, "");
                    None
                }
            };
            if let Some(replace_first) = create {
                if replace_first {
                    batch.push_str("R ");
                    journal::escape_path_into(&mut batch, &dst.rel, c.as_bytes());
                    batch.push('\n');
                }
                Self::link_record(&mut batch, &dst.rel, img, c.as_bytes(), &target);
                let t = std::ffi::CString::new(target).map_err(|_| {
                    WalkError::Entry(
                        resolve::join(img, c.as_bytes()),
                        "the link target would contain a NUL byte".into(),
                    )
                })?;
                plan.push((c, t, replace_first));
            }
        }
        // A sub-directory missing in ROOT is made with everything below
        // it: the whole subtree is announced in this batch, so the journal
        // is synced once per directory that ROOT already has (plus once
        // per missing subtree's parent), not once per directory made.
        let mut pre: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        if !recorded {
            for n in &dirs {
                let missing = fresh
                    || sys::cstr(n).is_ok_and(|c| {
                        sys::fstatat(dst.fd.as_fd(), &c)
                            .is_err_and(|e| Errno::from_io_error(&e) == Some(Errno::NOENT))
                    });
                if missing {
                    self.record_subtree(&mut batch, src, img, &dst.rel, n)?;
                    pre.insert(n);
                }
            }
            self.journal
                .append_text(&batch)
                .map_err(WalkError::Journal)?;
        } else {
            pre.extend(dirs.iter().map(Vec::as_slice));
        }
        for (c, t, replace_first) in plan {
            if replace_first {
                let rel = dst.child_rel(c.as_bytes());
                if let Err(e) = self.move_aside(dst, c.as_bytes(), &rel) {
                    self.conflict(&rel, ConflictKind::Error, format!("cannot move aside: {e}"));
                    continue;
                }
                self.conflicts.push(Conflict {
                    path: slash(&rel),
                    kind: ConflictKind::Replaced,
                    detail: String::new(),
                });
                self.counter.tick();
            }
            match sys::symlinkat(&t, dst.fd.as_fd(), &c) {
                Ok(()) => {
                    self.created += 1;
                    self.counter.tick();
                }
                Err(e) if Errno::from_io_error(&e) == Some(Errno::EXIST) => {
                    self.conflict(&dst.child_rel(c.as_bytes()), ConflictKind::Kept, "")
                }
                Err(e) => self.conflict(
                    &dst.child_rel(c.as_bytes()),
                    ConflictKind::Error,
                    e.to_string(),
                ),
            }
        }

        // Directories: open (following ROOT's symlinks inside ROOT) or create, then descend.
        if parallel && (2..=256).contains(&dirs.len()) {
            return self.walk_parallel(src, img, dst, fresh, &dirs, &pre);
        }
        for n in &dirs {
            let sub = pre.contains(n.as_slice());
            if let Some((sp, img_rel, child, made, sub)) =
                self.open_child(src, img, dst, fresh, n, sub)?
            {
                self.walk(&sp, &img_rel, &child, made, sub)?;
            }
        }
        Ok(())
    }

    /// Open the image's sub-directory `n` of `src` and the matching
    /// directory of ROOT below `dst` (created when missing): the content
    /// fd, its image path, ROOT's directory and whether it was just made.
    /// `None` when it is not linked (a conflict is recorded).
    ///
    /// `recorded`: the `D` record of `dst/n` (and of its subtree) is
    /// already in the journal.
    pub(crate) fn open_child(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        n: &[u8],
        recorded: bool,
    ) -> Result<Option<Opened>, WalkError> {
        let img_rel = resolve::join(img, n);
        let unusable = |what: &str, e: io::Error| {
            WalkError::Entry(img_rel.clone(), format!("cannot {what}: {e}"))
        };
        let sp = sys::cstr(n)
            .and_then(|c| {
                sys::openat(
                    src.as_fd(),
                    &c,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                )
            })
            .map_err(|e| unusable("open it", e))?;
        let m = sys::fstat(sp.as_fd()).map_err(|e| unusable("read its inode", e))?;
        // A directory made in ROOT is the running user's (root's) with at
        // most 0755, so no owner from an image can later swap it for a
        // symlink or add entries; only a trusted signer's image keeps the
        // owner and mode it asks for.
        let meta = if self.trusted {
            DirMeta {
                mode: m.st_mode & 0o7777,
                uid: m.st_uid,
                gid: m.st_gid,
            }
        } else {
            let (uid, gid) = (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            );
            DirMeta {
                mode: m.st_mode & 0o755,
                uid,
                gid,
            }
        };
        let mut made = 0u64;
        let journal = self.journal;
        let announced = dst.child_rel(n);
        let res = self.root.child_dir(dst, n, Some(meta), fresh, &mut |rel| {
            made += 1;
            if recorded && rel == announced.as_slice() {
                return Ok(());
            }
            journal.append(&[Record::Dir(rel.to_vec())])
        });
        for _ in 0..made {
            self.dirs_created += 1;
            self.counter.tick();
        }
        let rel = dst.child_rel(n);
        match res {
            Ok(child) if self.is_state(&child.rel) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                "the linker's own state directory; not linked",
            ),
            Ok(child) => return Ok(Some((sp, img_rel, child, made > 0, recorded))),
            Err(ResolveError::Escapes(_)) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                "a symlink of ROOT leads outside ROOT; not followed",
            ),
            Err(ResolveError::NotRootOwned(p, uid)) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                format!(
                    "{} is a symlink owned by uid {uid}, not root; not followed",
                    slash(&p)
                ),
            ),
            Err(ResolveError::Loop(_)) => {
                self.conflict(&rel, ConflictKind::Escapes, "symlink loop")
            }
            Err(ResolveError::NotDir(p)) => {
                self.conflict(&rel, ConflictKind::NotADirectory, slash(&p))
            }
            Err(ResolveError::Ours(p)) => {
                let t = sys::cstr(n)
                    .and_then(|c| sys::readlinkat(dst.fd.as_fd(), &c))
                    .unwrap_or_default();
                let other = if self.root.is_ours(&t) {
                    self.other_name(&t)
                } else {
                    slash(&p)
                };
                self.conflict(&rel, ConflictKind::OtherExtension, other)
            }
            Err(ResolveError::Missing(p)) => self.conflict(
                &rel,
                ConflictKind::Error,
                format!("{} is missing", slash(&p)),
            ),
            Err(ResolveError::Io(_, e)) => self.conflict(&rel, ConflictKind::Error, e.to_string()),
        }
        Ok(None)
    }

    /// The sub-directories `dirs` of the image's top directory, linked on
    /// a few threads (`pre`: those whose subtree is already journalled).
    /// They are opened (and created in ROOT) here, in
    /// order; those that land on the same directory of ROOT, or one below
    /// another's (merged /usr: `lib` and `usr/lib`), form one group, walked
    /// in order by one thread. Idle threads take the next group; conflicts
    /// and counts are merged in group order, so the outcome does not depend
    /// on timing. The first error (in group order) is returned; the other
    /// threads stop at their next directory.
    pub(crate) fn walk_parallel(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        dirs: &[Vec<u8>],
        pre: &std::collections::HashSet<&[u8]>,
    ) -> Result<(), WalkError> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let mut opened: Vec<Opened> = Vec::new();
        for n in dirs {
            let sub = pre.contains(n.as_slice());
            if let Some(c) = self.open_child(src, img, dst, fresh, n, sub)? {
                opened.push(c);
            }
        }
        let related = |a: &[u8], b: &[u8]| {
            let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            s.is_empty() || (l.starts_with(s) && (l.len() == s.len() || l[s.len()] == b'/'))
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, o) in opened.iter().enumerate() {
            let hits: Vec<usize> = (0..groups.len())
                .filter(|&g| {
                    groups[g]
                        .iter()
                        .any(|&j| related(&opened[j].2.rel, &o.2.rel))
                })
                .collect();
            match hits.first() {
                None => groups.push(vec![i]),
                Some(&first) => {
                    // Merge every group it relates to into the first one.
                    for &g in hits.iter().skip(1).rev() {
                        let moved = groups.remove(g);
                        groups[first].extend(moved);
                    }
                    groups[first].push(i);
                    groups[first].sort_unstable();
                }
            }
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
            .min(groups.len());
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let shared = &*self;
        let mut results: Vec<(usize, Walked)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let g = next.fetch_add(1, Ordering::Relaxed);
                            if g >= groups.len() || stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let mut w = shared.fork(&stop);
                            let mut res = Ok(());
                            for &i in &groups[g] {
                                let (sp, img_rel, child, made, sub) = &opened[i];
                                res = w.walk(sp, img_rel, child, *made, *sub);
                                if res.is_err() {
                                    stop.store(true, Ordering::Relaxed);
                                    break;
                                }
                            }
                            out.push((g, w.finish(res)));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        results.sort_by_key(|r| r.0);
        let complete = results.len() == groups.len();
        let mut first_err = None;
        for (_, r) in results {
            self.conflicts.extend(r.conflicts);
            self.created += r.created;
            self.dirs_created += r.dirs_created;
            self.already += r.already;
            if let Err(e) = r.result
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            // A group without a result (its thread panicked).
            None if !complete => Err(WalkError::Entry(
                img.to_vec(),
                "linking stopped early".into(),
            )),
            None => Ok(()),
        }
    }

    /// A walker for another thread: the same settings, its own results.
    pub(crate) fn fork<'b>(&'b self, stop: &'b std::sync::atomic::AtomicBool) -> Walker<'b> {
        Walker {
            root: self.root,
            journal: self.journal,
            ext: self.ext,
            seen_mnt: self.seen_mnt.clone(),
            state_rel: self.state_rel.clone(),
            replace: self.replace,
            state_dir: self.state_dir.clone(),
            replaced_fd: None,
            conflicts: Vec::new(),
            created: 0,
            dirs_created: 0,
            already: 0,
            counter: self.counter,
            trusted: self.trusted,
            record_adopted: self.record_adopted,
            stop: Some(stop),
        }
    }

    pub(crate) fn finish(self, result: Result<(), WalkError>) -> Walked {
        Walked {
            conflicts: self.conflicts,
            created: self.created,
            dirs_created: self.dirs_created,
            already: self.already,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aside_names_are_flat() {
        assert_eq!(aside_name(b"etc/a b/c"), b"etc%2Fa%20b%2Fc".to_vec());
        assert_eq!(sibling_aside_name(b"x", "e"), b".x.sik-aside.e".to_vec());
    }
}
