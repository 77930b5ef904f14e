//! One extension's pass over its content: grouping the top-level subtrees,
//! walking them on one or several threads, merging the results, and the
//! `ExtensionRun` executables it may carry.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::journal::Record;
use crate::report::{Conflict, RunStatus};
use crate::resolve::{Dir, Root};
use crate::state::Env;
use crate::sys;
use crate::walk::{ParentCache, WalkError, split_parent};

/// How the `error` of a [`RunStatus`] starts when the policy skipped the run.
pub(crate) const RUN_SKIPPED: &str = "skipped";

/// Images with at least this many inodes are linked on several threads.
pub(crate) const PARALLEL_MIN_INODES: u64 = 4096;

/// The number of inodes of the file system of `fd` (for SquashFS: the
/// image's entries); 0 when unknown.
pub(crate) fn statfs_files(fd: &OwnedFd) -> u64 {
    rustix::fs::fstatfs(fd).map_or(0, |st| st.f_files)
}

/// Remove everything inside `dir` (not crossing into mounts).
pub(crate) fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            if sys::is_mountpoint(&p) {
                return Err(io::Error::other(format!(
                    "{} is a mount point",
                    p.display()
                )));
            }
            make_writable(&p);
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Staged trees may hold read-only directories; removal needs them writable
/// when not running as root.
pub(crate) fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

/// Count the recorded symlinks still ours and the recorded directories
/// still present.
pub(crate) fn count_present(root: &Root, recs: &[Record]) -> (u64, u64) {
    let mut links = std::collections::BTreeSet::new();
    let mut dirs = std::collections::BTreeSet::new();
    for r in recs {
        match r {
            Record::Link(p, t) => {
                links.insert((p.as_slice(), t.as_slice()));
            }
            Record::Dir(p) => {
                dirs.insert(p.as_slice());
            }
            _ => {}
        }
    }
    let mut cache = ParentCache::default();
    let mut files = 0;
    for (p, t) in links {
        let (parent, leaf) = split_parent(p);
        if let Some(d) = cache.get(root, parent)
            && let Ok(c) = sys::cstr(leaf)
            && sys::readlinkat(d.fd.as_fd(), &c).is_ok_and(|got| got == t)
        {
            files += 1;
        }
    }
    let mut ndirs = 0;
    for p in dirs {
        let (parent, leaf) = split_parent(p);
        if let Some(d) = cache.get(root, parent)
            && let Ok(c) = sys::cstr(leaf)
            && sys::fstatat(d.fd.as_fd(), &c).is_ok_and(|st| sys::is_dir(&st))
        {
            ndirs += 1;
        }
    }
    (files, ndirs)
}

/// An opened sub-directory: content fd, image path, ROOT's directory,
/// whether it was just created, whether its subtree is already journalled.
pub(crate) type Opened = (OwnedFd, Vec<u8>, Dir, bool, bool);

/// What one thread's walk of a group made.
pub(crate) struct Walked {
    pub(crate) conflicts: Vec<Conflict>,
    pub(crate) created: u64,
    pub(crate) dirs_created: u64,
    pub(crate) already: u64,
    pub(crate) result: Result<(), WalkError>,
}

pub(crate) fn run_extension(
    env: &Env,
    name: &str,
    mnt: &Path,
    seen_mnt: &[u8],
    sdir: &Path,
    timeout: Duration,
    skip: Option<String>,
) -> Option<RunStatus> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let host = mnt.join("ExtensionRun");
    let m = std::fs::symlink_metadata(&host).ok()?;
    let log = sdir.join("run.log");
    let mut st = RunStatus {
        exit_code: None,
        signal: None,
        timed_out: false,
        error: None,
        log: log.display().to_string(),
    };
    if let Some(why) = skip {
        st.error = Some(why);
        return Some(st);
    }
    if !m.is_file() {
        st.error = Some("ExtensionRun is not a regular file".into());
        return Some(st);
    }
    let bind = match state_bind(env) {
        Ok(b) => b,
        Err(why) => {
            st.error = Some(why);
            return Some(st);
        }
    };
    let mut prog = seen_mnt.to_vec();
    prog.extend_from_slice(b"/ExtensionRun");
    let out = match std::fs::File::create(&log) {
        Ok(f) => f,
        Err(e) => {
            st.error = Some(format!("{}: {e}", log.display()));
            return Some(st);
        }
    };
    let err = out.try_clone().ok();
    let mut cmd = std::process::Command::new(OsStr::from_bytes(&prog));
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .current_dir("/")
        .env("SIK_EXTENSION", name)
        .env("SIK_EXTENSION_DIR", OsStr::from_bytes(seen_mnt))
        .process_group(0);
    if let Some(e) = err {
        cmd.stderr(e);
    }
    if let Err(why) = enter_root(env, &mut cmd, bind) {
        st.error = Some(why);
        return Some(st);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(format!("cannot start: {e}"));
            return Some(st);
        }
    };
    let (status, timed_out, error) = wait_timeout(&mut child, timeout);
    st.timed_out = timed_out;
    st.error = error;
    if let Some(s) = status {
        st.exit_code = s.code();
        st.signal = s.signal();
    }
    Some(st)
}

/// The bind mount that makes a state directory outside ROOT (an
/// initramfs's /run, moved into the new root at switch-root) visible
/// inside ROOT for a child run there: its top-level directory over ROOT's.
/// `None` when ROOT is `/` or the state directory is inside ROOT.
pub(crate) fn state_bind(
    env: &Env,
) -> Result<Option<(std::ffi::CString, std::ffi::CString)>, String> {
    if env.root_path == Path::new("/") || env.state_in_root {
        return Ok(None);
    }
    let top = env
        .state
        .components()
        .nth(1)
        .map(|c| Path::new("/").join(c));
    let inside = top
        .as_ref()
        .map(|t| env.root_path.join(t.strip_prefix("/").unwrap_or(t)));
    match (top, inside) {
        (Some(t), Some(i)) if std::fs::symlink_metadata(&i).is_ok_and(|m| m.is_dir()) => {
            match (sys::cpath(&t), sys::cpath(&i)) {
                (Ok(a), Ok(b)) => Ok(Some((a, b))),
                _ => Err("path contains NUL".into()),
            }
        }
        (_, inside) => Err(format!(
            "the state directory is outside ROOT and {} is not a directory, so nothing can run inside ROOT",
            inside.map(|i| i.display().to_string()).unwrap_or_default()
        )),
    }
}

/// Make `cmd` run inside ROOT: chrooted into it when ROOT is not `/`, in a
/// private mount namespace with `bind` (from [`state_bind`]) mounted first
/// when given, so ROOT itself is not changed.
pub(crate) fn enter_root(
    env: &Env,
    cmd: &mut std::process::Command,
    bind: Option<(std::ffi::CString, std::ffi::CString)>,
) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    if env.root_path == Path::new("/") {
        return Ok(());
    }
    let Ok(root_c) = sys::cpath(&env.root_path) else {
        return Err("ROOT path contains NUL".into());
    };
    // SAFETY: the closure runs between fork and exec, so it makes only
    // direct system calls (unshare, mount, chroot, chdir) on C strings
    // prepared before the fork: no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            use rustix::mount::{MountPropagationFlags, mount_bind_recursive, mount_change};
            if let Some((src, dst)) = &bind {
                // SAFETY: the child is single-threaded here, so a new
                // mount namespace cannot surprise another thread.
                rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
                mount_change(
                    c"/",
                    MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                )?;
                mount_bind_recursive(src.as_c_str(), dst.as_c_str())?;
            }
            rustix::process::chroot(root_c.as_c_str())?;
            rustix::process::chdir(c"/")?;
            Ok(())
        });
    }
    Ok(())
}

/// Wait for `child`, killing it and its process group after `timeout`: its
/// exit status, whether it was killed, and an error of waiting.
pub(crate) fn wait_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> (Option<std::process::ExitStatus>, bool, Option<String>) {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return (Some(s), false, None),
            Ok(None) if start.elapsed() >= timeout => {
                // The whole process group: what it started goes too.
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                return (child.wait().ok(), true, None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return (None, false, Some(e.to_string())),
        }
    }
}
