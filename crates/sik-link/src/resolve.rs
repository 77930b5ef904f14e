//! Path resolution confined to ROOT.
//!
//! Every directory of ROOT is reached component by component from a
//! directory fd of ROOT, each opened with `O_NOFOLLOW`. A symlink met on the
//! way (merged /usr: `lib -> usr/lib`) is read and its target resolved again
//! inside ROOT: an absolute target starts over at ROOT, `..` climbs the
//! components walked so far, and climbing above ROOT is refused, never
//! followed. A symlink into the linker's own state (a link an extension
//! made) is never followed either.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::sys;

/// Why a path could not be resolved inside ROOT.
#[derive(Debug)]
pub enum ResolveError {
    /// A symlink leads above ROOT.
    Escapes(Vec<u8>),
    /// A component is neither a directory nor a symlink to one.
    NotDir(Vec<u8>),
    /// A component is a symlink made by an extension.
    Ours(Vec<u8>),
    /// Too many symlinks.
    Loop(Vec<u8>),
    /// A symlink owned by someone other than root (or the running user):
    /// its owner could point it anywhere, so it is not followed. The path
    /// and the owner's uid.
    NotRootOwned(Vec<u8>, u32),
    /// A component is missing and creating was not asked for.
    Missing(Vec<u8>),
    /// A system call failed.
    Io(Vec<u8>, io::Error),
}

/// Mode and owner of a directory to create.
#[derive(Debug, Clone, Copy)]
pub struct DirMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A directory of ROOT: an `O_PATH` fd and its canonical path relative to
/// ROOT (no leading slash, empty for ROOT itself, no symlink in it).
pub struct Dir {
    pub fd: OwnedFd,
    pub rel: Vec<u8>,
}

impl Dir {
    /// The canonical path of a child.
    pub fn child_rel(&self, name: &[u8]) -> Vec<u8> {
        join(&self.rel, name)
    }
}

/// `a/b` joined; `a` may be empty.
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + 1 + b.len());
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

fn split(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// ROOT, opened once.
pub struct Root {
    pub fd: OwnedFd,
    /// Symlink targets starting with this belong to the linker (the state
    /// directory as seen from inside ROOT, with a trailing slash).
    pub ours_prefix: Vec<u8>,
}

impl Root {
    /// ROOT itself as a [`Dir`].
    pub fn top(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: sys::dup_dir(self.fd.as_fd())?,
            rel: Vec::new(),
        })
    }

    /// Open the canonical path `rel` (symlink-free) without following anything.
    pub fn open_canonical(&self, rel: &[u8]) -> io::Result<Dir> {
        let mut fd = sys::dup_dir(self.fd.as_fd())?;
        for c in split(rel) {
            fd = sys::openat(fd.as_fd(), &sys::cstr(c)?, sys::DIR_FLAGS)?;
        }
        Ok(Dir {
            fd,
            rel: rel.to_vec(),
        })
    }

    /// Whether a symlink target points into the linker's state.
    pub fn is_ours(&self, target: &[u8]) -> bool {
        target.starts_with(&self.ours_prefix)
    }

    /// Resolve `path` to a directory: absolute paths from ROOT, relative
    /// ones from the canonical directory `base`. With `create`, missing
    /// components are made (`before_mkdir` is told each canonical path
    /// first, so the journal records it before it exists).
    pub fn resolve_dir(
        &self,
        base: &[u8],
        path: &[u8],
        create: Option<DirMeta>,
        before_mkdir: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<Dir, ResolveError> {
        let mut queue: VecDeque<Vec<u8>> = split(path).map(<[u8]>::to_vec).collect();
        let mut stack: Vec<(Vec<u8>, OwnedFd)> = Vec::new();
        let here = |stack: &Vec<(Vec<u8>, OwnedFd)>| -> Vec<u8> {
            let mut v = Vec::new();
            for (n, _) in stack {
                v = join(&v, n);
            }
            v
        };
        if !path.starts_with(b"/") {
            for c in split(base) {
                let cur = stack.last().map_or(self.fd.as_fd(), |s| s.1.as_fd());
                let fd = sys::cstr(c)
                    .and_then(|cc| sys::openat(cur, &cc, sys::DIR_FLAGS))
                    .map_err(|e| ResolveError::Io(base.to_vec(), e))?;
                stack.push((c.to_vec(), fd));
            }
        }
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == b".." {
                if stack.pop().is_none() {
                    return Err(ResolveError::Escapes(path.to_vec()));
                }
                continue;
            }
            let cur: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |s| s.1.as_fd());
            let rel = join(&here(&stack), &c);
            let cc = sys::cstr(&c).map_err(|e| ResolveError::Io(rel.clone(), e))?;
            match sys::openat(cur, &cc, sys::DIR_FLAGS) {
                Ok(fd) => stack.push((c, fd)),
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {
                    let Some(meta) = create else {
                        return Err(ResolveError::Missing(rel));
                    };
                    let fd = mkdir_open(cur, &cc, &rel, meta, before_mkdir)
                        .map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    stack.push((c, fd));
                }
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::NOTDIR | Errno::LOOP)) => {
                    let st =
                        sys::fstatat(cur, &cc).map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    if !sys::is_lnk(&st) {
                        return Err(ResolveError::NotDir(rel));
                    }
                    if !trusted_owner(st.st_uid) {
                        return Err(ResolveError::NotRootOwned(rel, st.st_uid));
                    }
                    hops += 1;
                    if hops > 40 {
                        return Err(ResolveError::Loop(rel));
                    }
                    let target =
                        sys::readlinkat(cur, &cc).map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    if self.is_ours(&target) {
                        return Err(ResolveError::Ours(rel));
                    }
                    if target.starts_with(b"/") {
                        stack.clear();
                    }
                    let parts: Vec<Vec<u8>> = split(&target).map(<[u8]>::to_vec).collect();
                    for p in parts.into_iter().rev() {
                        queue.push_front(p);
                    }
                }
                Err(e) => return Err(ResolveError::Io(rel, e)),
            }
        }
        let rel = here(&stack);
        let fd = match stack.pop() {
            Some((_, fd)) => fd,
            None => sys::dup_dir(self.fd.as_fd()).map_err(|e| ResolveError::Io(Vec::new(), e))?,
        };
        Ok(Dir { fd, rel })
    }

    /// Open the child directory `name` of `dir`, following a symlink only
    /// inside ROOT and creating it (with `create`'s mode and owner) when missing.
    ///
    /// `fresh`: `dir` was just created (empty), so the child is created
    /// without looking first.
    pub fn child_dir(
        &self,
        dir: &Dir,
        name: &[u8],
        create: Option<DirMeta>,
        fresh: bool,
        before_mkdir: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<Dir, ResolveError> {
        let rel = dir.child_rel(name);
        // One component only: a name from an image is never a path.
        if !sys::is_component(name) {
            return Err(ResolveError::Io(rel, io::Error::from(Errno::INVAL)));
        }
        let cc = sys::cstr(name).map_err(|e| ResolveError::Io(rel.clone(), e))?;
        let looked = if fresh && create.is_some() {
            Err(io::Error::from(Errno::NOENT))
        } else {
            sys::openat(dir.fd.as_fd(), &cc, sys::DIR_FLAGS)
        };
        match looked {
            Ok(fd) => Ok(Dir { fd, rel }),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {
                let Some(meta) = create else {
                    return Err(ResolveError::Missing(rel));
                };
                let fd = mkdir_open(dir.fd.as_fd(), &cc, &rel, meta, before_mkdir)
                    .map_err(|e| ResolveError::Io(rel.clone(), e))?;
                Ok(Dir { fd, rel })
            }
            Err(_) => self.resolve_dir(&dir.rel, name, create, before_mkdir),
        }
    }

    /// Read a small file of ROOT (following symlinks inside ROOT only).
    pub fn read_file(&self, path: &[u8], limit: u64) -> Result<Vec<u8>, ResolveError> {
        use std::io::Read;
        let mut path = path.to_vec();
        for _ in 0..40 {
            let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
                Some(i) => (path[..i].to_vec(), path[i + 1..].to_vec()),
                None => (Vec::new(), path.clone()),
            };
            let dir = self.resolve_dir(b"", &parent, None, &mut |_| Ok(()))?;
            let rel = dir.child_rel(&name);
            let cc = sys::cstr(&name).map_err(|e| ResolveError::Io(rel.clone(), e))?;
            match sys::openat(
                dir.fd.as_fd(),
                &cc,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            ) {
                Ok(fd) => {
                    let st =
                        sys::fstat(fd.as_fd()).map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    if !sys::is_reg(&st) {
                        return Err(ResolveError::NotDir(rel));
                    }
                    let mut buf = Vec::new();
                    std::fs::File::from(fd)
                        .take(limit)
                        .read_to_end(&mut buf)
                        .map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    return Ok(buf);
                }
                Err(e) if Errno::from_io_error(&e) == Some(Errno::LOOP) => {
                    let st = sys::fstatat(dir.fd.as_fd(), &cc)
                        .map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    if !trusted_owner(st.st_uid) {
                        return Err(ResolveError::NotRootOwned(rel, st.st_uid));
                    }
                    let t = sys::readlinkat(dir.fd.as_fd(), &cc)
                        .map_err(|e| ResolveError::Io(rel.clone(), e))?;
                    path = if t.starts_with(b"/") {
                        t
                    } else {
                        join(&dir.rel, &t)
                    };
                }
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {
                    return Err(ResolveError::Missing(rel));
                }
                Err(e) => return Err(ResolveError::Io(rel, e)),
            }
        }
        Err(ResolveError::Loop(path))
    }
}

/// Whether a symlink owned by `uid` may be followed: root's, or the
/// running user's (who could change ROOT anyway).
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == ids().0
}

/// Create the directory `name` in `dir` and open it. Owner and mode are
/// set through the opened descriptor (`fchown`, `fchmod`), never by name,
/// so a swap of the new name for something else between the calls cannot
/// redirect them.
fn mkdir_open(
    dir: BorrowedFd<'_>,
    name: &CString,
    rel: &[u8],
    meta: DirMeta,
    before_mkdir: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    before_mkdir(rel)?;
    let mode = meta.mode & 0o7777;
    // Plain permission bits the umask leaves alone need no chmod; others
    // (set-id, sticky, or bits the umask clears) are set after the chown.
    let simple = mode & !0o777 == 0 && mode & umask() == 0;
    sys::mkdirat(dir, name, if simple { mode } else { 0o700 })?;
    let (euid, egid) = ids();
    if meta.uid == euid && meta.gid == egid && simple {
        return sys::openat(dir, name, sys::DIR_FLAGS);
    }
    let fd = sys::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
    )?;
    let st = sys::fstat(fd.as_fd())?;
    if st.st_uid != euid {
        // Not the directory just made.
        return Err(io::Error::from(Errno::EXIST));
    }
    sys::fchown(fd.as_fd(), meta.uid, meta.gid)?;
    sys::fchmod(fd.as_fd(), mode)?;
    Ok(fd)
}

/// Effective uid and gid, read once.
fn ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    })
}

/// The process's umask, read once from /proc (without changing it); 0o777
/// (always chmod) when unknown.
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root(dir: &std::path::Path) -> Root {
        Root {
            fd: sys::open(dir, sys::DIR_FLAGS).unwrap(),
            ours_prefix: b"/run/sik/extensions/".to_vec(),
        }
    }

    fn rel(r: Result<Dir, ResolveError>) -> String {
        String::from_utf8(r.map_err(|e| format!("{e:?}")).unwrap().rel).unwrap()
    }

    #[test]
    fn merged_usr_and_escapes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr/lib", r.join("lib2")).unwrap();
        symlink("../outside", r.join("up")).unwrap();
        symlink("../../../../outside", r.join("usr/deep")).unwrap();
        symlink("/run/sik/extensions/a/mnt/x", r.join("ours")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        std::fs::write(r.join("file"), "").unwrap();
        let root = root(&r);
        let none = &mut |_: &[u8]| Ok(());
        assert_eq!(rel(root.resolve_dir(b"", b"lib", None, none)), "usr/lib");
        assert_eq!(rel(root.resolve_dir(b"", b"lib2", None, none)), "usr/lib");
        assert_eq!(
            rel(root.resolve_dir(b"usr", b"../lib", None, none)),
            "usr/lib"
        );
        assert!(matches!(
            root.resolve_dir(b"", b"up", None, none),
            Err(ResolveError::Escapes(_))
        ));
        assert!(matches!(
            root.resolve_dir(b"", b"usr/deep", None, none),
            Err(ResolveError::Escapes(_))
        ));
        assert!(matches!(
            root.resolve_dir(b"", b"ours/x", None, none),
            Err(ResolveError::Ours(_))
        ));
        assert!(matches!(
            root.resolve_dir(b"", b"loop1", None, none),
            Err(ResolveError::Loop(_))
        ));
        assert!(matches!(
            root.resolve_dir(b"", b"file", None, none),
            Err(ResolveError::NotDir(_))
        ));
        assert!(matches!(
            root.resolve_dir(b"", b"lib/nope", None, none),
            Err(ResolveError::Missing(_))
        ));
        // Creating through the merged-/usr symlink records canonical paths first.
        let mut made = Vec::new();
        let meta = DirMeta {
            mode: 0o750,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        };
        let d = root
            .resolve_dir(b"", b"lib/firmware/acme", Some(meta), &mut |p| {
                made.push(String::from_utf8(p.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(d.rel, b"usr/lib/firmware/acme");
        assert_eq!(made, ["usr/lib/firmware", "usr/lib/firmware/acme"]);
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(r.join("usr/lib/firmware/acme")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        // Reading a file through an absolute symlink stays inside ROOT.
        std::fs::write(r.join("usr/lib/os-release"), "ID=test\n").unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        symlink("/usr/lib/os-release", r.join("etc/os-release")).unwrap();
        assert_eq!(
            root.read_file(b"etc/os-release", 100).unwrap(),
            b"ID=test\n"
        );
        symlink("../../outside/secret", r.join("etc/leak")).unwrap();
        std::fs::write(t.path().join("outside/secret"), "s").unwrap();
        assert!(root.read_file(b"etc/leak", 100).is_err());
        // Nothing was created outside ROOT.
        assert_eq!(
            std::fs::read_dir(t.path().join("outside")).unwrap().count(),
            1
        );
    }
}
