//! The kernel calls rustix has no wrapper for, each behind a safe
//! function: the loop-device ioctls (attach an open image read-only to a
//! free loop device) and getdents64(2) read raw, because the check for
//! names holding a NUL byte needs each record's length, which rustix's
//! `RawDir` does not show. Every `unsafe` block states why it is sound.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::sys::{cstr, fstatat, is_dir, open};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
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
pub fn read_dir_fd(dir: impl AsFd) -> Result<Vec<(Vec<u8>, bool)>, ReadDirError> {
    read_dir(dir.as_fd())
}

fn read_dir(dir: BorrowedFd<'_>) -> Result<Vec<(Vec<u8>, bool)>, ReadDirError> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = Vec::new();
    let (mut dot, mut dotdot) = (false, false);
    loop {
        buf.fill(0);
        // SAFETY: getdents64 writes at most buf.len() bytes into buf, which
        // is valid and exclusively borrowed for the call; dir is a live fd.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
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
                return Err(io::Error::from(Errno::IO).into());
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

// ---- loop devices ------------------------------------------------------

// The ioctl numbers and structures of <linux/loop.h>.

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
    // SAFETY: LoopInfo64 holds only integers and integer arrays, for which
    // all-zero bytes are a valid value.
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
    let ctl = open(Path::new("/dev/loop-control"), OFlags::RDWR)?;
    let mut last = io::Error::from(Errno::BUSY);
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and touches no
        // memory of ours; ctl is a live fd of /dev/loop-control.
        let n = check(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) })?;
        let dev = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let devfd = match open(&dev, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                // No devtmpfs node (a minimal initramfs): make one; major 7
                // is the loop driver.
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dev,
                    FileType::BlockDevice,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(7, n as u32),
                )?;
                open(&dev, OFlags::RDONLY)?
            }
            Err(e) => return Err(e),
        };
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info: loop_info(image, sizelimit),
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one struct loop_config through the
        // pointer; cfg is a #[repr(C)] mirror of it, initialised and alive
        // for the whole call, and the kernel does not keep the pointer.
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
                // SAFETY: LOOP_SET_FD takes the backing fd as an integer
                // argument, no pointer; both fds are live.
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
                // SAFETY: LOOP_SET_STATUS64 reads one struct loop_info64
                // through the pointer; info is a #[repr(C)] mirror of it,
                // initialised and alive for the whole call.
                check(unsafe { libc::ioctl(devfd.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) })?;
                return Ok((dev, devfd));
            }
            _ => return Err(e),
        }
    }
    Err(last)
}
