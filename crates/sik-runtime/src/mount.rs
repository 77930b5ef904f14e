//! Mounting and unmounting the FUSE file system.
//!
//! As root (and without `FUSERMOUNT_PROG`) the runtime opens `/dev/fuse` and
//! calls mount(2) itself; otherwise it asks the setuid helper `fusermount3`
//! (or `fusermount`, or `$FUSERMOUNT_PROG`) to mount and hand back the
//! `/dev/fuse` descriptor over a socket, the protocol libfuse uses.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a mount was made, which decides how it is unmounted.
#[derive(Debug, Clone)]
pub enum Mounted {
    /// mount(2) by root.
    Direct,
    /// Through a fusermount helper.
    Helper(PathBuf),
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()))
}

/// Mount an (empty) FUSE file system at `mountpoint`; returns the session's
/// `/dev/fuse` descriptor. The error says why FUSE is not usable.
pub fn mount(mountpoint: &Path, fsname: &str) -> Result<(OwnedFd, Mounted), String> {
    if std::fs::metadata("/dev/fuse").is_err() {
        return Err("/dev/fuse does not exist".into());
    }
    let helper_env = std::env::var_os("FUSERMOUNT_PROG").filter(|v| !v.is_empty());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && helper_env.is_none() {
        return mount_direct(mountpoint, fsname);
    }
    let helper = match helper_env {
        Some(h) => PathBuf::from(h),
        None => find_helper().ok_or("neither fusermount3 nor fusermount is installed")?,
    };
    mount_helper(&helper, mountpoint, fsname)
}

fn find_helper() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .collect();
    for name in ["fusermount3", "fusermount"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn mount_direct(mountpoint: &Path, fsname: &str) -> Result<(OwnedFd, Mounted), String> {
    let dev = CString::new("/dev/fuse").map_err(|e| e.to_string())?;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "cannot open /dev/fuse: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let data = format!(
        "fd={},rootmode=40000,user_id=0,group_id=0,default_permissions",
        fd.as_raw_fd()
    );
    let source = CString::new(fsname.replace('\0', "")).map_err(|e| e.to_string())?;
    let target = cstr(mountpoint)?;
    let fstype = CString::new("fuse.sik-appimage").map_err(|e| e.to_string())?;
    let data = CString::new(data).map_err(|e| e.to_string())?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount(2) refused: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((fd, Mounted::Direct))
}

fn mount_helper(
    helper: &Path,
    mountpoint: &Path,
    fsname: &str,
) -> Result<(OwnedFd, Mounted), String> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a valid descriptor.
    unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    let name: String = fsname
        .chars()
        .map(|c| if c == ',' || c == '\\' { '_' } else { c })
        .collect();
    let status = Command::new(helper)
        .arg("-o")
        .arg(format!(
            "ro,nosuid,nodev,default_permissions,subtype=sik-appimage,fsname={name}"
        ))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    drop(theirs);
    if !status.status.success() {
        // The helper's own complaint, on the runtime's one line.
        let said = String::from_utf8_lossy(&status.stderr);
        let said = said.lines().next().unwrap_or("").trim();
        let why = if said.is_empty() {
            status.status.to_string()
        } else {
            said.to_string()
        };
        return Err(format!("{} refused to mount: {why}", helper.display()));
    }
    match receive_fd(&ours) {
        Some(fd) => Ok((fd, Mounted::Helper(helper.to_path_buf()))),
        None => Err(format!(
            "{} did not hand over a FUSE descriptor",
            helper.display()
        )),
    }
}

/// Receive one descriptor sent with SCM_RIGHTS.
fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; every pointer set below outlives recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1 as _;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // The field is a usize on glibc and a u32 on musl.
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    loop {
        // SAFETY: msg points at valid buffers.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return None;
        }
        break;
    }
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
        if fd < 0 {
            return None;
        }
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// Detach the mount (lazily, so busy files do not block it).
pub fn unmount(mountpoint: &Path, how: &Mounted) {
    match how {
        Mounted::Direct => {
            if let Ok(t) = cstr(mountpoint) {
                // SAFETY: valid NUL-terminated path.
                unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
            }
        }
        Mounted::Helper(h) => {
            let _ = Command::new(h)
                .args(["-u", "-q", "-z", "--"])
                .arg(mountpoint)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
