//! Files of a directory medium, reached beneath the medium's root without
//! following any symlink: every path is opened with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a symlink anywhere on the
//! way (`boot/customize/initrd -> /root/.ssh`, `grub.cfg -> /etc/shadow`)
//! is an error, never a way out of the medium. Writes go to a temporary
//! file created in the opened parent directory and renamed over the name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Depth limit of [`copy_tree`].
const MAX_DEPTH: usize = 64;

fn root_fd(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Reword the errors of a refused resolution.
fn explain(e: rustix::io::Errno, rel: &str) -> io::Error {
    match e {
        rustix::io::Errno::LOOP => io::Error::other(format!(
            "{rel}: a symlink on the medium's path; symlinks on a directory medium are not followed"
        )),
        rustix::io::Errno::XDEV => io::Error::other(format!(
            "{rel}: the path leaves the medium (symlink or mount crossing); refused"
        )),
        e => io::Error::from(e),
    }
}

/// Open `rel` beneath `dir` (a directory descriptor) without symlinks.
fn open_beneath(dir: impl AsFd, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let rel = rel.trim_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir.as_fd(), rel, flags | OFlags::CLOEXEC, mode, how) {
            // The kernel asks for a retry when a rename raced the lookup.
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(|e| explain(e, rel)),
        }
    }
}

/// Open `rel` beneath the medium root `root`.
pub fn open(root: &Path, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    open_beneath(root_fd(root)?, rel, flags, Mode::empty())
}

/// A regular file of the medium opened for reading.
pub fn open_file(root: &Path, rel: &str) -> io::Result<File> {
    let fd = open(root, rel, OFlags::RDONLY)?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(io::Error::other(format!("{rel}: not a regular file")));
    }
    Ok(File::from(fd))
}

/// A file's contents, `None` when it does not exist.
pub fn read(root: &Path, rel: &str) -> io::Result<Option<Vec<u8>>> {
    match open_file(root, rel) {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `rel` exists (a symlink on the way is an error).
pub fn exists(root: &Path, rel: &str) -> io::Result<bool> {
    match open(root, rel, OFlags::PATH) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The entries of a directory as (name, is a real directory), sorted; a
/// missing directory has none.
pub fn list(root: &Path, rel: &str) -> io::Result<Vec<(String, bool)>> {
    let fd = match open(root, rel, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut v = Vec::new();
    for e in rustix::fs::Dir::read_from(&fd)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let st = rustix::fs::statat(&fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)?;
        v.push((
            name,
            FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        ));
    }
    v.sort();
    Ok(v)
}

/// Create `rel` and its parents beneath the root (no symlink followed);
/// returns the opened directory.
pub fn mkdir_all(root: &Path, rel: &str) -> io::Result<OwnedFd> {
    let mut dir = root_fd(root)?;
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(io::Error::other(format!("{rel}: '.' and '..' are refused")));
        }
        match rustix::fs::mkdirat(&dir, c, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = open_beneath(&dir, c, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    }
    Ok(dir)
}

/// Write `rel` atomically: a new temporary file in its (opened) parent
/// directory filled by `fill`, mode set, fsynced, renamed over the name.
/// Nothing is left behind on error.
pub fn write_with(
    root: &Path,
    rel: &str,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let rel = rel.trim_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::other(format!("{rel}: not a file name")));
    }
    let dir = mkdir_all(root, parent)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut created = None;
    for i in 0..64u32 {
        let tmp = format!(".sik-{}-{stamp:x}-{i}", std::process::id());
        match rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                created = Some((tmp, File::from(fd)));
                break;
            }
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let Some((tmp, mut f)) = created else {
        return Err(io::Error::other("no free temporary file name"));
    };
    let r = (|| {
        fill(&mut f)?;
        f.flush()?;
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777))?;
        f.sync_all()?;
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?;
        Ok(())
    })();
    if r.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
    }
    r
}

/// Copy the tree `rel` of the medium to the new local directory `dest`:
/// directories and regular files are copied, symlinks are recreated as
/// symlinks (never followed), other file types are left out. A missing
/// `rel` leaves `dest` absent.
pub fn copy_tree(root: &Path, rel: &str, dest: &Path) -> io::Result<()> {
    let fd = match open(root, rel, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    copy_dir(&fd, dest, 0)
}

fn copy_dir(dir: &OwnedFd, dest: &Path, depth: usize) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{}: deeper than {MAX_DEPTH} directories",
            dest.display()
        )));
    }
    std::fs::create_dir_all(dest)?;
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name();
        let lossy = name.to_string_lossy().into_owned();
        if lossy == "." || lossy == ".." {
            continue;
        }
        let to = dest.join(&lossy);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_dir(&sub, &to, depth + 1)?;
            }
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut src = File::from(fd);
                let mut out = File::create(&to)?;
                io::copy(&mut src, &mut out)?;
                let exec = st.st_mode & 0o111 != 0;
                out.set_permissions(std::fs::Permissions::from_mode(if exec {
                    0o755
                } else {
                    0o644
                }))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                use std::os::unix::ffi::OsStrExt;
                let target = std::ffi::OsStr::from_bytes(target.as_bytes());
                std::os::unix::fs::symlink(target, &to)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Free bytes for an unprivileged writer and the filesystem type (`f_type`)
/// of the filesystem holding the medium's root.
pub fn space(root: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstatfs(root_fd(root)?)?;
    let frsize = u64::try_from(st.f_frsize).unwrap_or(0);
    let bsize = u64::try_from(st.f_bsize).unwrap_or(0);
    let unit = if frsize > 0 { frsize } else { bsize };
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail.saturating_mul(unit), st.f_type as u64))
}

/// The size of a regular file of the medium, `None` when it does not exist.
pub fn file_size(root: &Path, rel: &str) -> io::Result<Option<u64>> {
    match open_file(root, rel) {
        Ok(f) => Ok(Some(f.metadata()?.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove the regular file `rel` beneath the root (its parent opened
/// without following a symlink; a symlink named `rel` is itself removed,
/// never followed).
pub fn remove_file(root: &Path, rel: &str) -> io::Result<()> {
    let rel = rel.trim_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::other(format!("{rel}: not a file name")));
    }
    let dir = open(root, parent, OFlags::RDONLY | OFlags::DIRECTORY)?;
    rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(io::Error::from)
}
