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

// ---- device-mapper -----------------------------------------------------

// The ioctls and structures of <linux/dm-ioctl.h>, interface version 4.

/// `struct dm_ioctl` (312 bytes).
#[repr(C)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

/// `struct dm_target_spec` (40 bytes), followed by the NUL-terminated
/// parameter string.
#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const DM_IOCTL_LEN: usize = std::mem::size_of::<DmIoctl>();
const DM_SPEC_LEN: usize = std::mem::size_of::<DmTargetSpec>();
/// `_IOWR(0xfd, nr, struct dm_ioctl)`.
const fn dm_ioctl_nr(nr: libc::c_ulong) -> libc::c_ulong {
    (3 << 30) | ((DM_IOCTL_LEN as libc::c_ulong) << 16) | (0xfd << 8) | nr
}
const DM_DEV_CREATE: libc::c_ulong = dm_ioctl_nr(3);
const DM_DEV_REMOVE: libc::c_ulong = dm_ioctl_nr(4);
const DM_DEV_SUSPEND: libc::c_ulong = dm_ioctl_nr(6);
const DM_TABLE_LOAD: libc::c_ulong = dm_ioctl_nr(9);
const DM_READONLY_FLAG: u32 = 1 << 0;
const DM_DEFERRED_REMOVE: u32 = 1 << 17;
/// The device-mapper control node, a misc device.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// Whether device-mapper can be used: its control node exists, or the
/// kernel lists it among its misc devices (the node is then made).
pub fn dm_available() -> bool {
    Path::new(DM_CONTROL).exists() || dm_misc_minor().is_some()
}

fn dm_misc_minor() -> Option<u32> {
    let misc = std::fs::read_to_string("/proc/misc").ok()?;
    misc.lines().find_map(|l| {
        let (minor, name) = l.trim().split_once(' ')?;
        (name.trim() == "device-mapper").then(|| minor.parse().ok())?
    })
}

fn dm_control() -> io::Result<OwnedFd> {
    match open(Path::new(DM_CONTROL), OFlags::RDWR) {
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
            // No devtmpfs node (a minimal initramfs): make it; misc devices
            // have major 10.
            let minor = dm_misc_minor().ok_or(e)?;
            let _ = std::fs::create_dir("/dev/mapper");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                DM_CONTROL,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(10, minor),
            )?;
            open(Path::new(DM_CONTROL), OFlags::RDWR)
        }
        r => r,
    }
}

/// A dm_ioctl buffer (8-byte aligned) with room for `extra` bytes of data.
fn dm_buffer(name: &str, flags: u32, extra: usize) -> io::Result<Vec<u64>> {
    if name.is_empty() || name.len() >= 128 || name.contains('/') {
        return Err(io::Error::from(Errno::INVAL));
    }
    let len = (DM_IOCTL_LEN + extra).next_multiple_of(8);
    let mut buf = vec![0u64; len / 8];
    // SAFETY: buf is len >= DM_IOCTL_LEN bytes, 8-byte aligned (a Vec of
    // u64), and DmIoctl holds only integers and byte arrays, for which any
    // bytes (here zeros) are valid; the borrow ends with this block.
    let io = unsafe { &mut *(buf.as_mut_ptr() as *mut DmIoctl) };
    io.version = [4, 0, 0];
    io.data_size = len as u32;
    io.data_start = DM_IOCTL_LEN as u32;
    io.flags = flags;
    io.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

fn dm_call(ctl: &OwnedFd, cmd: libc::c_ulong, buf: &mut [u64]) -> io::Result<()> {
    // SAFETY: buf is a dm_ioctl buffer whose data_size is its own length;
    // the kernel reads and writes at most data_size bytes through the
    // pointer during the call and keeps no reference to it.
    check(unsafe { libc::ioctl(ctl.as_raw_fd(), cmd as _, buf.as_mut_ptr()) })?;
    Ok(())
}

/// Create the read-only device-mapper device `name` with one `verity`
/// target of `sectors` 512-byte sectors and the table parameters `params`
/// (`1 DEV DEV 4096 4096 …`), and activate it. Returns its (major, minor).
/// A device made here is removed again when a later step fails.
pub fn dm_verity_create(name: &str, sectors: u64, params: &str) -> io::Result<(u32, u32)> {
    let ctl = dm_control()?;
    let mut buf = dm_buffer(name, 0, 0)?;
    dm_call(&ctl, DM_DEV_CREATE, &mut buf)?;
    // SAFETY: as in dm_buffer: an aligned buffer of at least DM_IOCTL_LEN bytes.
    let dev = unsafe { (*(buf.as_ptr() as *const DmIoctl)).dev };
    let result = (|| {
        let p = params.as_bytes();
        let mut buf = dm_buffer(name, DM_READONLY_FLAG, DM_SPEC_LEN + p.len() + 1)?;
        let spec = DmTargetSpec {
            sector_start: 0,
            length: sectors,
            status: 0,
            next: (DM_SPEC_LEN + p.len() + 1).next_multiple_of(8) as u32,
            target_type: *b"verity\0\0\0\0\0\0\0\0\0\0",
        };
        {
            // SAFETY: the buffer holds DM_IOCTL_LEN + DM_SPEC_LEN + params
            // + 1 bytes (dm_buffer's extra); we view it as bytes, which any
            // value is, for the length of this block.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, buf.len() * 8)
            };
            // SAFETY: DmTargetSpec is #[repr(C)] plain integers and bytes;
            // viewing it as its bytes for the copy is sound.
            let spec_bytes = unsafe {
                std::slice::from_raw_parts(&spec as *const DmTargetSpec as *const u8, DM_SPEC_LEN)
            };
            bytes[DM_IOCTL_LEN..DM_IOCTL_LEN + DM_SPEC_LEN].copy_from_slice(spec_bytes);
            let at = DM_IOCTL_LEN + DM_SPEC_LEN;
            bytes[at..at + p.len()].copy_from_slice(p);
            bytes[at + p.len()] = 0;
            // SAFETY: as in dm_buffer.
            unsafe { (*(buf.as_mut_ptr() as *mut DmIoctl)).target_count = 1 };
        }
        dm_call(&ctl, DM_TABLE_LOAD, &mut buf)?;
        // DM_DEV_SUSPEND without DM_SUSPEND_FLAG: resume, which makes the
        // loaded table live.
        let mut buf = dm_buffer(name, 0, 0)?;
        dm_call(&ctl, DM_DEV_SUSPEND, &mut buf)
    })();
    if let Err(e) = result {
        let _ = dm_remove(name);
        return Err(e);
    }
    // huge_encode_dev: minor's low 8 bits, major, minor's high bits.
    let major = ((dev >> 8) & 0xfff) as u32;
    let minor = ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32;
    Ok((major, minor))
}

/// Remove the device-mapper device `name` (deferred: when it is still
/// open, e.g. behind a lazy unmount, it goes when the last user closes
/// it). `Ok(false)` when there is no such device or no device-mapper.
pub fn dm_remove(name: &str) -> io::Result<bool> {
    if !Path::new(DM_CONTROL).exists() {
        return Ok(false);
    }
    let ctl = dm_control()?;
    let mut buf = dm_buffer(name, DM_DEFERRED_REMOVE, 0)?;
    match dm_call(&ctl, DM_DEV_REMOVE, &mut buf) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Open the block device (major, minor): `/dev/dm-MINOR` when devtmpfs
/// made it and it is that device, else a node made in `dir`.
pub fn dm_node(major: u32, minor: u32, dir: &Path) -> io::Result<std::path::PathBuf> {
    let dev = rustix::fs::makedev(major, minor);
    let std_path = std::path::PathBuf::from(format!("/dev/dm-{minor}"));
    if let Ok(st) = rustix::fs::stat(&std_path)
        && st.st_rdev == dev
        && FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice
    {
        return Ok(std_path);
    }
    let node = dir.join("verity-dev");
    let _ = std::fs::remove_file(&node);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &node,
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        dev,
    )?;
    Ok(node)
}

#[cfg(test)]
mod dm_tests {
    use super::*;

    #[test]
    fn dm_structures_match_the_kernel_abi() {
        assert_eq!(DM_IOCTL_LEN, 312);
        assert_eq!(DM_SPEC_LEN, 40);
        assert_eq!(DM_DEV_CREATE, 0xC138_FD03);
        assert_eq!(DM_TABLE_LOAD, 0xC138_FD09);
    }
}
