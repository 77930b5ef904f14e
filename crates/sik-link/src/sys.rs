//! Thin, checked wrappers over the `*at` system calls, mount(2) and the
//! loop-device ioctls. Everything that touches ROOT goes through directory
//! file descriptors opened with `O_NOFOLLOW`, so no path string is ever
//! resolved by the kernel across a symlink of ROOT.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Flags to open a directory as a handle, never following a final symlink.
pub const DIR_FLAGS: libc::c_int =
    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

pub fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn cpath(p: &Path) -> io::Result<CString> {
    cstr(p.as_os_str().as_bytes())
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated string; the returned fd is owned.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) })?;
    // SAFETY: fd was just returned by open(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid C string, dir is a live fd or AT_FDCWD.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, 0o600) })?;
    // SAFETY: fd was just returned by openat(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstatat(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

pub fn is_lnk(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn readlinkat(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() >= 65536 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Whether `name` in `dir` is a symlink whose target is exactly `want`
/// (no allocation: one readlinkat into a buffer one byte longer than `want`).
pub fn readlink_is(dir: RawFd, name: &CStr, want: &[u8]) -> io::Result<bool> {
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if want.len() < stack.len() {
        &mut stack[..want.len() + 1]
    } else {
        heap.resize(want.len() + 1, 0);
        &mut heap
    };
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize == want.len() && &buf[..want.len()] == want)
}

pub fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

pub fn mkdirat(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod(2) on an fd.
    check(unsafe { libc::fchmod(fd, mode as libc::mode_t) }).map(drop)
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown(2) on an fd.
    check(unsafe { libc::fchown(fd, uid, gid) }).map(drop)
}

pub fn unlinkat(dir: RawFd, name: &CStr, rmdir: bool) -> io::Result<()> {
    let flags = if rmdir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) }).map(drop)
}

/// Like `renameat`, but fails with EEXIST instead of replacing the target.
pub fn renameat_noreplace(odir: RawFd, oname: &CStr, ndir: RawFd, nname: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings; renameat2 via syscall(2) so static musl builds need no wrapper.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            odir,
            oname.as_ptr(),
            ndir,
            nname.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Why a directory of the content could not be listed.
#[derive(Debug)]
pub enum ReadDirError {
    /// getdents64(2) (or an fstatat for an unknown type) failed.
    Io(io::Error),
    /// An entry whose name cannot be used as a single path component: the
    /// name's bytes as the kernel gave them, and why.
    BadName(Vec<u8>, &'static str),
}

impl From<io::Error> for ReadDirError {
    fn from(e: io::Error) -> Self {
        ReadDirError::Io(e)
    }
}

/// Whether `name` is one usable path component: not empty, not `.` or
/// `..`, no `/` and no NUL.
pub fn is_component(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// The entries of a directory opened `O_RDONLY` and not read from yet
/// (without the directory's own `.` and `..`): name and whether it is a
/// directory (d_type, else fstatat without following). getdents64(2)
/// directly: no second fd.
///
/// Every name is checked to be one usable path component. A name holding
/// a NUL byte reaches user space cut at the NUL, so it is recognised by
/// what follows: the buffer is zeroed before each call, the kernel writes
/// the name's bytes and one NUL, and the record length is
/// `align8(19 + length + 1)`; a non-zero byte after the first NUL, or a
/// record longer than the visible name needs, means the stored name is
/// longer than what a lookup can name. A second `.` or `..` is an entry of
/// the file system's own, not the directory's links.
pub fn read_dir_fd(dir: RawFd) -> Result<Vec<(Vec<u8>, bool)>, ReadDirError> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    let (mut dot, mut dotdot) = (false, false);
    loop {
        buf.fill(0);
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let n = n as usize;
        if n == 0 {
            return Ok(out);
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let mut off = 0;
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen < 19 || off + reclen > n {
                return Err(io::Error::from_raw_os_error(libc::EIO).into());
            }
            let dtype = buf[off + 18];
            let raw = &buf[off + 19..off + reclen];
            off += reclen;
            let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            let name = &raw[..len];
            if (19 + len + 1).next_multiple_of(8) != reclen || raw[len..].iter().any(|&c| c != 0) {
                let end = raw.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                let mut shown = raw[..end.max(len)].to_vec();
                if shown.len() == len {
                    shown.push(0);
                }
                return Err(ReadDirError::BadName(shown, "the name contains a NUL byte"));
            }
            if name.is_empty() {
                return Err(ReadDirError::BadName(Vec::new(), "an empty name"));
            }
            if name == b"." || name == b".." {
                let seen = if name == b"." { &mut dot } else { &mut dotdot };
                if *seen {
                    return Err(ReadDirError::BadName(
                        name.to_vec(),
                        "an entry named like the directory's own link",
                    ));
                }
                *seen = true;
                continue;
            }
            if name.contains(&b'/') {
                return Err(ReadDirError::BadName(
                    name.to_vec(),
                    "the name contains '/'",
                ));
            }
            let is_dir = match dtype {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => is_dir(&fstatat(dir, &cstr(name)?)?),
                _ => false,
            };
            out.push((name.to_vec(), is_dir));
        }
    }
}

/// Whether the file system of `fd` is volatile (tmpfs or ramfs: gone at
/// the next boot). Unknown: not volatile.
pub fn is_volatile(fd: RawFd) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    // SAFETY: zeroed statfs is a valid out-buffer for fstatfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return false;
    }
    matches!(st.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC)
}

pub fn dup_dir(fd: RawFd) -> io::Result<OwnedFd> {
    openat(fd, c".", DIR_FLAGS)
}

// ---- mounting ----------------------------------------------------------

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn loop_info(image: &Path, sizelimit: u64) -> LoopInfo64 {
    // SAFETY: all-zero is a valid LoopInfo64.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    info.lo_sizelimit = sizelimit;
    let name = image.as_os_str().as_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    info
}

/// Attach the open file `backing` (named `image` in the device's info)
/// read-only to a free loop device (auto-clearing: it is detached when the
/// last user, the mount, goes away) and return the device's path and an
/// open fd of it. The device reads through this very open file, never the
/// path again. `sizelimit` 0 means the whole file.
pub fn loop_attach(
    backing: &std::fs::File,
    image: &Path,
    sizelimit: u64,
) -> io::Result<(std::path::PathBuf, OwnedFd)> {
    let ctl = open(Path::new("/dev/loop-control"), libc::O_RDWR)?;
    let mut last = io::Error::from_raw_os_error(libc::EBUSY);
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = check(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) })?;
        let dev = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let devfd = match open(&dev, libc::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // No devtmpfs node (a minimal initramfs): make one.
                let c = cpath(&dev)?;
                // SAFETY: valid C string; major 7 is the loop driver.
                check(unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        libc::S_IFBLK | 0o600,
                        libc::makedev(7, n as u32),
                    )
                })?;
                open(&dev, libc::O_RDONLY)?
            }
            Err(e) => return Err(e),
        };
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: loop_info(image, sizelimit),
            reserved: [0; 8],
        };
        // SAFETY: cfg is a valid loop_config for the duration of the call.
        let r = unsafe { libc::ioctl(devfd.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
        if r == 0 {
            return Ok((dev, devfd));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EBUSY) => {
                last = e;
                continue;
            }
            Some(libc::EINVAL) | Some(libc::ENOTTY) => {
                // Kernels before 5.8: LOOP_SET_FD, then LOOP_SET_STATUS64.
                // SAFETY: the argument is the backing fd.
                let r = unsafe {
                    libc::ioctl(
                        devfd.as_raw_fd(),
                        LOOP_SET_FD as _,
                        backing.as_raw_fd() as libc::c_ulong,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        last = e;
                        continue;
                    }
                    return Err(e);
                }
                let info = loop_info(image, sizelimit);
                // SAFETY: info is a valid loop_info64.
                check(unsafe { libc::ioctl(devfd.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) })?;
                return Ok((dev, devfd));
            }
            _ => return Err(e),
        }
    }
    Err(last)
}

/// mount(2).
pub fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let s = src.map(cpath).transpose()?;
    let t = cpath(target)?;
    let f = fstype.map(|f| cstr(f.as_bytes())).transpose()?;
    // SAFETY: valid C strings or NULL.
    check(unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// umount2(2); EBUSY falls back to a lazy detach. Returns whether it was lazy.
pub fn umount(target: &Path) -> io::Result<bool> {
    let t = cpath(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::UMOUNT_NOFOLLOW) } == 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EBUSY) {
        return Err(e);
    }
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) })?;
    Ok(true)
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
