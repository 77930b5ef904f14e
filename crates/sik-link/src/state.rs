//! The state directory (`spec/link-state.md`, Location): the environment of
//! one run (ROOT, state directory, base directory), the lock, directories
//! left over by an interrupted unlink, atomic writes, and the os-release
//! files compatibility is checked against.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use sik_image::release::{RELEASE_DIR, ReleaseFields, release_path};

use crate::journal;
use crate::report::TestSwitches;
use crate::resolve::{self, DirMeta, ResolveError, Root};
use crate::sys;
use crate::walk::split_parent;
use crate::{
    DEFAULT_STATE, Error, LOCK_FILE, MADE_DIRS_FILE, ORPHANS_FILE, PERSISTENT_STATE, REFUSED_FILE,
    ioe,
};

/// ROOT and the state directory, opened.
pub(crate) struct Env {
    pub(crate) root_path: PathBuf,
    pub(crate) root: Root,
    /// Host path of the state directory.
    pub(crate) state: PathBuf,
    /// The state directory as seen from inside ROOT.
    pub(crate) seen_state: Vec<u8>,
    /// Whether the state directory is inside ROOT (or ROOT is /).
    pub(crate) state_in_root: bool,
    /// The default layout (so unlink may remove the directories it made).
    pub(crate) default_state: bool,
    /// Whether ROOT is on a volatile file system (tmpfs, ramfs).
    pub(crate) root_volatile: bool,
    /// Whether the state directory outlives a reboot (not tmpfs or ramfs):
    /// then journal records are synced before the changes they announce.
    pub(crate) durable: bool,
    /// The test switches of this run.
    pub(crate) test: TestSwitches,
}

impl Env {
    /// CONTENT of the extension `name` as seen from inside ROOT (what its
    /// symlinks point into).
    pub(crate) fn content(&self, name: &str) -> Vec<u8> {
        let mut c = self.seen_state.clone();
        c.extend_from_slice(format!("/{name}/mnt").as_bytes());
        c
    }
}

pub(crate) fn open_env(root: &Path, state: Option<&Path>, create: bool) -> Result<Env, Error> {
    let root_path = std::fs::canonicalize(root).map_err(ioe(root))?;
    if !root_path.is_dir() {
        return Err(Error::Invalid {
            path: root_path,
            why: "not a directory".into(),
        });
    }
    let root_fd = sys::open(&root_path, sys::DIR_FLAGS).map_err(ioe(&root_path))?;
    let mut r = Root {
        fd: root_fd,
        ours_prefix: Vec::new(),
    };
    let root_volatile = sys::is_volatile(r.fd.as_fd());
    let (state, seen, in_root, default) = match state {
        None => {
            let meta = DirMeta {
                mode: 0o755,
                uid: 0,
                gid: 0,
            };
            // ROOT/run on tmpfs under a persistent ROOT forgets the state at
            // the next boot, while the links stay: the state goes to
            // ROOT/var/lib instead. Reading (status, unlink) also looks in
            // the other place, where an older run may have put it.
            let run_volatile = r
                .resolve_dir(b"", b"run", None, &mut |_| Ok(()))
                .is_ok_and(|d| sys::is_volatile(d.fd.as_fd()));
            let mut places = if run_volatile && !root_volatile {
                [PERSISTENT_STATE, DEFAULT_STATE]
            } else {
                [DEFAULT_STATE, PERSISTENT_STATE]
            }
            .to_vec();
            if create {
                places.truncate(1);
            }
            let mut made: Vec<Vec<u8>> = Vec::new();
            let mut found = Err(Error::NoState(root_path.join(places[0])));
            for place in places {
                match r.resolve_dir(b"", place.as_bytes(), create.then_some(meta), &mut |p| {
                    made.push(p.to_vec());
                    Ok(())
                }) {
                    Ok(d) => {
                        found = Ok(d);
                        break;
                    }
                    Err(ResolveError::Missing(_)) => {}
                    Err(e) => return Err(resolve_error(&root_path, e)),
                }
            }
            let dir = found?;
            let host = root_path.join(OsStr::from_bytes(&dir.rel));
            if !made.is_empty() {
                // Removed again by the unlink that leaves STATE empty.
                let mut text =
                    std::fs::read_to_string(host.join(MADE_DIRS_FILE)).unwrap_or_default();
                for m in &made {
                    text.push_str(&journal::escape(m));
                    text.push('\n');
                }
                atomic_write(&host.join(MADE_DIRS_FILE), text.as_bytes())
                    .map_err(ioe(host.join(MADE_DIRS_FILE)))?;
            }
            let mut seen = b"/".to_vec();
            seen.extend_from_slice(&dir.rel);
            (host, seen, true, true)
        }
        Some(s) => {
            if create {
                std::fs::create_dir_all(s).map_err(ioe(s))?;
            } else if !s.is_dir() {
                return Err(Error::NoState(s.to_path_buf()));
            }
            let s = std::fs::canonicalize(s).map_err(ioe(s))?;
            if root_path == Path::new("/") {
                let seen = s.as_os_str().as_bytes().to_vec();
                (s, seen, true, false)
            } else if let Ok(rest) = s.strip_prefix(&root_path) {
                let mut seen = b"/".to_vec();
                seen.extend_from_slice(rest.as_os_str().as_bytes());
                (s, seen, true, false)
            } else {
                let seen = s.as_os_str().as_bytes().to_vec();
                (s, seen, false, false)
            }
        }
    };
    let mut prefix = seen.clone();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    r.ours_prefix = prefix;
    let durable = sys::open(&state, sys::DIR_FLAGS)
        .map(|fd| !sys::is_volatile(fd.as_fd()))
        .unwrap_or(true);
    Ok(Env {
        root_path,
        root: r,
        state,
        seen_state: seen,
        state_in_root: in_root,
        default_state: default,
        root_volatile,
        durable,
        test: TestSwitches::default(),
    })
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn slash(rel: &[u8]) -> String {
    format!("/{}", lossy(rel))
}

/// A name or path of an image for a message: valid UTF-8 text as it is,
/// a backslash as `\\`, NUL as `\0`, other control characters and bytes
/// that are not UTF-8 as `\xNN`; never a raw control byte.
pub fn show_bytes(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\0' => s.push_str("\\0"),
                c if c.is_control() => {
                    let mut u = [0u8; 4];
                    for x in c.encode_utf8(&mut u).bytes() {
                        let _ = write!(s, "\\x{x:02x}");
                    }
                }
                c => s.push(c),
            }
        }
        for x in chunk.invalid() {
            let _ = write!(s, "\\x{x:02x}");
        }
    }
    s
}

pub(crate) fn resolve_error(root: &Path, e: ResolveError) -> Error {
    let (why, p) = match e {
        ResolveError::Escapes(p) => ("a symlink leads outside ROOT".to_string(), p),
        ResolveError::NotDir(p) => ("not a directory".to_string(), p),
        ResolveError::Ours(p) => ("a symlink made by an extension".to_string(), p),
        ResolveError::Loop(p) => ("too many symlinks".to_string(), p),
        ResolveError::NotRootOwned(p, uid) => (
            format!("a symlink owned by uid {uid}, not root; not followed"),
            p,
        ),
        ResolveError::Missing(p) => ("does not exist".to_string(), p),
        ResolveError::Io(p, e) => (e.to_string(), p),
    };
    Error::Invalid {
        path: root.join(OsStr::from_bytes(&p)),
        why,
    }
}

/// The identity of a source as checked: `dir:DEV:INO`, or for a file
/// `file:DEV:INO:SIZE:MTIME.NSEC:CTIME.NSEC` (any write or rename over it
/// changes it).
pub(crate) fn identity(meta: &std::fs::Metadata) -> String {
    if meta.is_dir() {
        format!("dir:{}:{}", meta.dev(), meta.ino())
    } else {
        format!(
            "file:{}:{}:{}:{}.{}:{}.{}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    }
}

pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_else(|| OsStr::new("state"));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    let res = f
        .write_all(data)
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Read the os-release of ROOT (`etc/os-release`, else `usr/lib/os-release`).
pub(crate) fn root_os_release(root: &Root) -> ReleaseFields {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(b) = root.read_file(p.as_bytes(), 1 << 16) {
            return ReleaseFields::parse(&String::from_utf8_lossy(&b));
        }
    }
    ReleaseFields::default()
}

/// Read the extension-release of the content at `content` (a directory):
/// `extension-release.NAME`, else the only `extension-release.*` there.
pub(crate) fn content_release(content: &Path, name: &str) -> Option<ReleaseFields> {
    let fd = sys::open(content, sys::DIR_FLAGS).ok()?;
    let tree = Root {
        fd,
        ours_prefix: b"\0".to_vec(),
    };
    if let Ok(b) = tree.read_file(release_path(name).as_bytes(), 1 << 16) {
        return Some(ReleaseFields::parse(&String::from_utf8_lossy(&b)));
    }
    let dir = tree
        .resolve_dir(b"", RELEASE_DIR.as_bytes(), None, &mut |_| Ok(()))
        .ok()?;
    let listing = std::fs::read_dir(content.join(OsStr::from_bytes(&dir.rel))).ok()?;
    let names: Vec<_> = listing
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| {
            n.as_bytes().starts_with(b"extension-release.") && sys::is_component(n.as_bytes())
        })
        .collect();
    if names.len() != 1 {
        return None;
    }
    let p = resolve::join(&dir.rel, names[0].as_bytes());
    let b = tree.read_file(&p, 1 << 16).ok()?;
    Some(ReleaseFields::parse(&String::from_utf8_lossy(&b)))
}

/// Hold the state directory's lock (`STATE/.lock`, flock) so that two
/// linkers never work on one ROOT at once.
pub(crate) fn lock(env: &Env) -> Result<std::fs::File, Error> {
    let p = env.state.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(ioe(&p))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| ioe(&p)(e.into()))?;
    Ok(f)
}

/// Directories made by extensions that were unlinked while another
/// extension still had entries in them: removed once empty.
pub(crate) fn remove_orphans(env: &Env) {
    let op = env.state.join(ORPHANS_FILE);
    let Ok(text) = std::fs::read_to_string(&op) else {
        return;
    };
    let mut dirs: Vec<Vec<u8>> = text.lines().filter_map(journal::unescape).collect();
    dirs.sort();
    dirs.dedup();
    // Deepest first, so a parent is tried after its children.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.iter().filter(|&&c| c == b'/').count()));
    let mut left = Vec::new();
    for p in dirs {
        let (parent, leaf) = split_parent(&p);
        let Ok(d) = env.root.open_canonical(parent) else {
            continue;
        };
        let Ok(c) = sys::cstr(leaf) else {
            continue;
        };
        match sys::unlinkat(d.fd.as_fd(), &c, true) {
            Ok(()) => {}
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {}
            Err(_) => left.push(p),
        }
    }
    if left.is_empty() {
        let _ = std::fs::remove_file(&op);
    } else {
        let mut text = String::new();
        for o in &left {
            text.push_str(&journal::escape(o));
            text.push('\n');
        }
        let _ = atomic_write(&op, text.as_bytes());
    }
}

/// When no extension is left, remove the refusal record and the default
/// state directories this program made.
pub(crate) fn cleanup_base(env: &Env) {
    let Ok(rd) = std::fs::read_dir(&env.state) else {
        return;
    };
    let left = rd
        .flatten()
        .any(|e| !e.file_name().as_bytes().starts_with(b"."));
    if left {
        return;
    }
    let _ = std::fs::remove_file(env.state.join(REFUSED_FILE));
    if env.state.join(ORPHANS_FILE).exists() {
        return;
    }
    let _ = std::fs::remove_file(env.state.join(LOCK_FILE));
    if env.default_state {
        let made = std::fs::read_to_string(env.state.join(MADE_DIRS_FILE)).unwrap_or_default();
        let _ = std::fs::remove_file(env.state.join(MADE_DIRS_FILE));
        let _ = std::fs::remove_dir(&env.state);
        if let Some(p) = env.state.parent() {
            let _ = std::fs::remove_dir(p);
        }
        // The directories made for it (ROOT/run when link created it), deepest first, if empty.
        let mut dirs: Vec<Vec<u8>> = made.lines().filter_map(journal::unescape).collect();
        dirs.sort();
        dirs.dedup();
        for p in dirs.iter().rev() {
            let (parent, leaf) = split_parent(p);
            if let (Ok(d), Ok(c)) = (env.root.open_canonical(parent), sys::cstr(leaf)) {
                let _ = sys::unlinkat(d.fd.as_fd(), &c, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_messages_never_hold_control_bytes() {
        assert_eq!(show_bytes(b"a\0\0b"), "a\\0\\0b");
        assert_eq!(
            show_bytes(b"x\n\x1b\x7f\xff\\y"),
            "x\\x0a\\x1b\\x7f\\xff\\\\y"
        );
        assert_eq!(show_bytes("grüße".as_bytes()), "grüße");
        assert!(sys::is_component(b"a b"));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(!sys::is_component(bad), "{bad:?}");
        }
    }
}
