//! The extract-and-run cache: where it lives, which directories are safe to
//! use, how entries are keyed, made and found again.
//!
//! The base is the first usable of `$XDG_CACHE_HOME`, `$HOME/.cache` and
//! `$XDG_RUNTIME_DIR` (absolute paths only; the first two are created
//! 0700 when missing, `HOME` and `XDG_RUNTIME_DIR` themselves never are);
//! when none is usable, a fresh private directory made under `TMPDIR`
//! (`/tmp`) for this run only and removed when the application has ended.
//! A base is usable when every directory from `/` down to it, as `lstat`
//! sees the resolved path, is owned by the user or root and writable by
//! nobody else (a root-owned sticky directory such as `/tmp` is accepted
//! above it); the `sik-appimage` directory in it and every entry must be
//! real directories owned by the user and are kept 0700, so no other user
//! can plant or change an entry, whatever the extracted tree's own modes.
//!
//! An entry is named by the SHA-256 of the whole AppImage file and made in
//! a temporary directory renamed into place when complete. Hashing the
//! whole file on every start would cost more than the start itself, so the
//! cache also keeps an index: a symlink named by the file's identity
//! (device, inode, size, mtime and ctime in nanoseconds) whose target is the
//! digest. Any write to the file changes its ctime, which a user cannot set,
//! so a hit names the digest of the bytes in the file now; the index lives
//! in the same checked directory as the entries and is as trusted as they
//! are.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory holding the entries and the index, checked and 0700.
pub struct Place {
    /// `BASE/sik-appimage`, or the fresh private directory.
    pub dir: PathBuf,
    /// A fresh directory for this run only (removed after it).
    pub temporary: bool,
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Check one directory as `lstat` saw it. `above`: it lies above the base
/// (a root-owned sticky directory is accepted there); `mine`: it must be
/// the user's own.
fn check(p: &Path, md: &Metadata, above: bool, mine: bool) -> Result<(), String> {
    let uid = euid();
    if md.file_type().is_symlink() {
        return Err(format!("{} is a symlink", p.display()));
    }
    if !md.is_dir() {
        return Err(format!("{} is not a directory", p.display()));
    }
    if md.uid() != uid && (mine || md.uid() != 0) {
        return Err(format!("{} is owned by uid {}", p.display(), md.uid()));
    }
    let sticky_root = above && md.uid() == 0 && md.mode() & 0o1000 != 0;
    if md.mode() & 0o022 != 0 && !sticky_root {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            p.display(),
            md.mode() & 0o7777
        ));
    }
    Ok(())
}

fn lstat(p: &Path) -> Result<Metadata, String> {
    std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Resolve `p` and check every directory from `/` down to it; `last_above`:
/// `p` itself is a parent others may share (the `TMPDIR` case).
fn check_path(p: &Path, last_above: bool) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let all: Vec<&Path> = real.ancestors().collect();
    for (i, a) in all.iter().rev().enumerate() {
        let last = i + 1 == all.len();
        check(a, &lstat(a)?, !last || last_above, false)?;
    }
    Ok(real)
}

/// Make (0700) or find the directory `parent/name` and check it is the
/// user's own; tighten its mode to 0700.
fn own_dir(parent: &Path, name: &std::ffi::OsStr) -> Result<PathBuf, String> {
    let p = parent.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", p.display())),
    }
    let md = lstat(&p)?;
    check(&p, &md, false, true)?;
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", p.display()))?;
    }
    Ok(p)
}

/// `base` (created below its nearest existing ancestor when `create`),
/// checked, and `base/sik-appimage` in it.
fn under(base: &Path, create: bool) -> Result<PathBuf, String> {
    let real = match std::fs::symlink_metadata(base) {
        Ok(_) => check_path(base, false)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut missing = Vec::new();
            let mut at = base;
            while std::fs::symlink_metadata(at).is_err() {
                missing.push(at.file_name().ok_or("no existing ancestor")?);
                at = at.parent().ok_or("no existing ancestor")?;
            }
            let mut p = check_path(at, true)?;
            for name in missing.into_iter().rev() {
                p = own_dir(&p, name)?;
            }
            p
        }
        Err(e) => return Err(format!("{}: {e}", base.display())),
    };
    own_dir(&real, "sik-appimage".as_ref())
}

/// Choose the cache directory (see the module documentation). The error
/// names why each candidate was refused.
pub fn place() -> Result<Place, String> {
    let mut why = Vec::new();
    for name in ["XDG_CACHE_HOME", "HOME", "XDG_RUNTIME_DIR"] {
        let Some(dir) = env_dir(name) else {
            continue;
        };
        let got = match name {
            "XDG_CACHE_HOME" => under(&dir, true),
            // HOME itself is never created, only .cache in it.
            "HOME" => check_path(&dir, false).and_then(|h| under(&h.join(".cache"), true)),
            _ => under(&dir, false),
        };
        match got {
            Ok(dir) => {
                return Ok(Place {
                    dir,
                    temporary: false,
                });
            }
            Err(e) => why.push(format!("{name}: {e}")),
        }
    }
    let tmp = std::env::var_os("TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    match private_temp(&tmp) {
        Ok(dir) => Ok(Place {
            dir,
            temporary: true,
        }),
        Err(e) => {
            why.push(format!("TMPDIR: {e}"));
            Err(format!("no safe cache directory ({})", why.join("; ")))
        }
    }
}

/// A fresh 0700 directory under `tmp` (mkdtemp).
fn private_temp(tmp: &Path) -> Result<PathBuf, String> {
    let real = check_path(tmp, true)?;
    let mut buf = real.join("sik-appimage-XXXXXX").into_os_string().into_vec();
    buf.push(0);
    // SAFETY: buf is a writable NUL-terminated template.
    if unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) }.is_null() {
        return Err(format!(
            "cannot create a directory in {}: {}",
            real.display(),
            std::io::Error::last_os_error()
        ));
    }
    buf.pop();
    let dir = PathBuf::from(OsString::from_vec(buf));
    check(&dir, &lstat(&dir)?, false, true)?;
    Ok(dir)
}

/// What identifies the bytes of an open file without reading them.
pub fn identity(md: &Metadata) -> String {
    format!(
        "id-{:x}-{:x}-{:x}-{}.{:09}-{}.{:09}",
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec()
    )
}

fn is_digest(b: &[u8]) -> bool {
    b.len() == 64 && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The complete entry `dir/name`, if there is one and it is the user's own.
fn entry(dir: &Path, name: &[u8]) -> Result<Option<PathBuf>, String> {
    let p = dir.join(std::ffi::OsStr::from_bytes(name));
    match std::fs::symlink_metadata(&p) {
        Ok(md) => {
            check(&p, &md, false, true).map_err(|e| format!("unsafe cache entry: {e}"))?;
            Ok(Some(p))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// The entry the index names for the file with metadata `md`, if complete.
pub fn lookup(place: &Place, md: &Metadata) -> Result<Option<PathBuf>, String> {
    let Ok(target) = std::fs::read_link(place.dir.join(identity(md))) else {
        return Ok(None);
    };
    let name = target.as_os_str().as_bytes();
    if !is_digest(name) {
        return Ok(None);
    }
    entry(&place.dir, name)
}

/// SHA-256 of everything `f` holds, read from its start, as hex.
pub fn digest(f: &File) -> Result<String, String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 17];
    let mut at = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, at).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Record in the index that the file with metadata `md` has `digest`.
pub fn remember(place: &Place, md: &Metadata, digest: &str) {
    let id = identity(md);
    let tmp = place.dir.join(format!(".{id}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::os::unix::fs::symlink(digest, &tmp).is_ok()
        && std::fs::rename(&tmp, place.dir.join(&id)).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The entry for `digest`, made with `fill` (which extracts into the
/// directory it is given) when missing.
pub fn get_or_make(
    place: &Place,
    digest: &str,
    fill: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    if let Some(p) = entry(&place.dir, digest.as_bytes())? {
        return Ok(p);
    }
    let tmp = place
        .dir
        .join(format!(".{digest}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = place.dir.join(digest);
    // Rename into place only when complete; another start may have won the race.
    if std::fs::rename(&tmp, &dest).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    entry(&place.dir, digest.as_bytes())?
        .ok_or_else(|| format!("cannot move the extracted copy to {}", dest.display()))
}

/// Remove `dir` once every holder of a pipe's write end has exited: this
/// process after it became AppRun, and AppRun's children, inherit it; a
/// detached process waits for its end and then removes the directory.
pub fn remove_when_done(dir: &Path) -> Result<(), String> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here, so fork is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(w);
        // SAFETY: still single-threaded; the intermediate child exits at
        // once so the waiter is not AppRun's child.
        if unsafe { libc::fork() } != 0 {
            // SAFETY: _exit skips destructors shared with the parent.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: setsid has no preconditions.
        unsafe { libc::setsid() };
        if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors, so whoever
                // reads the application's output does not wait for this.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
        let mut r = File::from(r);
        let mut b = [0u8; 16];
        loop {
            match r.read(&mut b) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        // SAFETY: ends the waiter.
        unsafe { libc::_exit(0) };
    }
    drop(r);
    let mut status = 0;
    // SAFETY: pid is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: fcntl on a valid descriptor: AppRun inherits the write end.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFD, 0) };
    std::mem::forget(w);
    Ok(())
}
