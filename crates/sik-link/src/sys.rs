//! Checked wrappers over the `*at` system calls and mount(2), on rustix.
//! Everything that touches ROOT goes through directory file descriptors
//! opened with `O_NOFOLLOW`, so no path string is ever resolved by the
//! kernel across a symlink of ROOT. The few calls rustix has no wrapper
//! for (the loop-device ioctls, getdents64 with its record lengths) are in
//! [`crate::kernel`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Stat};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

pub use crate::kernel::{ReadDirError, loop_attach, read_dir_fd};

/// Flags to open a directory as a handle, never following a final symlink.
pub const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

pub fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| Errno::INVAL.into())
}

pub fn cpath(p: &Path) -> io::Result<CString> {
    cstr(p.as_os_str().as_bytes())
}

/// open(2), close-on-exec; a created file gets mode 0600.
pub fn open(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?)
}

/// openat(2), close-on-exec; a created file gets mode 0600.
pub fn openat(dir: impl AsFd, name: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?)
}

/// fstatat(2) without following a final symlink.
pub fn fstatat(dir: impl AsFd, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

pub fn is_lnk(st: &Stat) -> bool {
    file_type(st) == FileType::Symlink
}

pub fn is_dir(st: &Stat) -> bool {
    file_type(st) == FileType::Directory
}

pub fn is_reg(st: &Stat) -> bool {
    file_type(st) == FileType::RegularFile
}

pub fn readlinkat(dir: impl AsFd, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(dir, name, Vec::new())?.into_bytes())
}

/// Whether `name` in `dir` is a symlink whose target is exactly `want`
/// (no allocation: one readlinkat into a buffer one byte longer than `want`).
pub fn readlink_is(dir: impl AsFd, name: &CStr, want: &[u8]) -> io::Result<bool> {
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if want.len() < stack.len() {
        &mut stack[..want.len() + 1]
    } else {
        heap.resize(want.len() + 1, 0);
        &mut heap
    };
    let n = rustix::fs::readlinkat_raw(dir, name, &mut *buf)?;
    Ok(n == want.len() && &buf[..want.len()] == want)
}

pub fn symlinkat(target: &CStr, dir: impl AsFd, name: &CStr) -> io::Result<()> {
    Ok(rustix::fs::symlinkat(target, dir, name)?)
}

pub fn mkdirat(dir: impl AsFd, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(
        dir,
        name,
        Mode::from_raw_mode(mode as _),
    )?)
}

pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode as _))?)
}

pub fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?)
}

pub fn unlinkat(dir: impl AsFd, name: &CStr, rmdir: bool) -> io::Result<()> {
    let flags = if rmdir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    Ok(rustix::fs::unlinkat(dir, name, flags)?)
}

/// Like `renameat`, but fails with EEXIST instead of replacing the target.
pub fn renameat_noreplace(
    odir: impl AsFd,
    oname: &CStr,
    ndir: impl AsFd,
    nname: &CStr,
) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(
        odir,
        oname,
        ndir,
        nname,
        RenameFlags::NOREPLACE,
    )?)
}

/// Whether `name` is one usable path component: not empty, not `.` or
/// `..`, no `/` and no NUL.
pub fn is_component(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// Whether the file system of `fd` is volatile (tmpfs or ramfs: gone at
/// the next boot). Unknown: not volatile.
pub fn is_volatile(fd: impl AsFd) -> bool {
    // TMPFS_MAGIC, RAMFS_MAGIC (the literals take f_type's own type).
    rustix::fs::fstatfs(fd).is_ok_and(|st| matches!(st.f_type, 0x0102_1994 | 0x8584_58f6))
}

pub fn dup_dir(fd: impl AsFd) -> io::Result<OwnedFd> {
    openat(fd, c".", DIR_FLAGS)
}

/// mount(2) of the block device `src` with the file system `fstype`.
pub fn mount(src: &Path, target: &Path, fstype: &str, flags: MountFlags) -> io::Result<()> {
    Ok(rustix::mount::mount(src, target, fstype, flags, None)?)
}

/// A read-only recursive bind mount of `src` at `target`.
pub fn bind_readonly(src: &Path, target: &Path) -> io::Result<()> {
    rustix::mount::mount_bind_recursive(src, target)?;
    if let Err(e) = rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, c"")
    {
        let _ = umount(target);
        return Err(e.into());
    }
    Ok(())
}

/// umount2(2); EBUSY falls back to a lazy detach. Returns whether it was lazy.
pub fn umount(target: &Path) -> io::Result<bool> {
    match rustix::mount::unmount(target, UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(false),
        Err(Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `dir` is a mount point: listed in /proc/self/mountinfo (bind
/// mounts of the same file system included); without /proc, its device
/// differs from its parent's.
pub fn is_mountpoint(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return false;
    };
    if let Ok(info) = std::fs::read("/proc/self/mountinfo") {
        let want = canon.as_os_str().as_bytes();
        return info.split(|&c| c == b'\n').any(|line| {
            line.split(|&c| c == b' ')
                .nth(4)
                .is_some_and(|mp| unescape_octal(mp) == want)
        });
    }
    let (Ok(a), Ok(b)) = (
        std::fs::symlink_metadata(&canon),
        std::fs::symlink_metadata(canon.join("..")),
    ) else {
        return false;
    };
    a.is_dir() && (a.dev() != b.dev() || a.ino() == b.ino())
}

/// Undo the `\ooo` escapes of /proc/self/mountinfo.
fn unescape_octal(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}
