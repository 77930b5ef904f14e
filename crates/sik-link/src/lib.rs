//! The boot linker: links ExtensionImages and overlay trees into a root
//! file system, and removes them again without leftovers.
//!
//! [`link`] checks each source (signature policy, compatibility with ROOT's
//! os-release), mounts it read-only under the state directory (default
//! `ROOT/run/sik/extensions/NAME/mnt`, or `ROOT/var/lib/…` for a persistent
//! ROOT whose `/run` is a tmpfs; a loop mount made with ioctls and
//! mount(2), so it also works in a bare initramfs), and creates in ROOT one
//! symlink per non-directory entry, pointing into that mount, plus the
//! missing directories. Every change is announced in the state directory's
//! journal before it is made, so [`unlink`] removes exactly what was made,
//! and a kill at any point is completed by the next `link` or `unlink`.
//! Paths of ROOT are resolved inside ROOT only (merged /usr symlinks are
//! followed, anything leading outside ROOT is refused). The on-disk state
//! is specified in `spec/link-state.md`.
//!
//! ```no_run
//! use sik_link::{link, unlink, LinkOptions};
//! let opts = LinkOptions::new("/sysroot");
//! let report = link(&["/run/media/firmware.ExtensionImage".into()], &opts).unwrap();
//! for r in &report.refused {
//!     eprintln!("{}: {}", r.name, r.reason);
//! }
//! let _ = unlink(&["firmware".to_string()], "/sysroot".as_ref(), None);
//! ```

pub mod compat;
pub mod journal;
pub mod policy;
pub mod resolve;
mod stage;
mod sys;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sik_image::release::{RELEASE_DIR, ReleaseFields, release_path};

use journal::{Journal, Record};
use policy::{SigCheck, Trust};
use resolve::{Dir, DirMeta, ResolveError, Root};

/// Name of the state directory below ROOT when none is given.
pub const DEFAULT_STATE: &str = "run/sik/extensions";
/// The state directory below ROOT when none is given and ROOT/run is on a
/// volatile file system while ROOT is not (a running system's persistent root).
pub const PERSISTENT_STATE: &str = "var/lib/sik/extensions";
/// File of the directories of ROOT made for the default state directory
/// (removed again when the state directory is left empty).
pub const MADE_DIRS_FILE: &str = ".made-dirs";
/// File of the refusals of the last `link` run, in the state directory.
pub const REFUSED_FILE: &str = ".refused.json";
/// Lock file of the state directory.
pub const LOCK_FILE: &str = ".lock";
/// File of directories still to remove once empty, in the state directory.
pub const ORPHANS_FILE: &str = ".orphan-dirs";
/// Environment variable (tests only): abort the process after this many changes in ROOT.
pub const TEST_ABORT_ENV: &str = "SIK_LINK_TEST_ABORT_AFTER";
/// Environment variable (tests only): abort the undoing of a refused link after this many removals.
pub const TEST_ABORT_UNDO_ENV: &str = "SIK_LINK_TEST_ABORT_UNDO_AFTER";
/// Environment variable (tests only): `1` links and unlinks every image on
/// several threads, as large ones are.
pub const TEST_PARALLEL_ENV: &str = "SIK_LINK_TEST_PARALLEL";
/// Environment variable (tests only): behave as if mounting were impossible.
pub const TEST_NO_MOUNT_ENV: &str = "SIK_LINK_TEST_NO_MOUNT";

/// Errors of the linker that stop a whole command (a single source's
/// problems become a [`Refusal`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// What was operated on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Invalid input (a bad name, a bad ROOT, an unreadable trust store).
    #[error("{path}: {why}")]
    Invalid {
        /// What was wrong.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The named extension is not linked.
    #[error("not linked")]
    NotLinked(String),
    /// There is no state directory: nothing was ever linked there.
    #[error("{0}: nothing is linked (no state directory)")]
    NoState(PathBuf),
}

fn ioe(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// What `link` should do.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The root file system to link into.
    pub root: PathBuf,
    /// The state directory (default `ROOT/run/sik/extensions`, or
    /// `ROOT/var/lib/sik/extensions` when ROOT/run is a tmpfs and ROOT is not); each
    /// extension gets `STATE/NAME`.
    pub state: Option<PathBuf>,
    /// Trusted keys (files or directories); empty: the defaults plus
    /// `ROOT/etc/sik/trusted.d`.
    pub trust: Vec<PathBuf>,
    /// Link unsigned images and images signed by untrusted keys.
    pub allow_unsigned: bool,
    /// Link directory sources although a trust store is in force.
    pub allow_directories: bool,
    /// Run the `ExtensionRun` of content no trusted key signed (a
    /// directory, an image linked with `allow_unsigned`) although a trust
    /// store is in force.
    pub allow_unsigned_run: bool,
    /// Link images whatever their extension-release says.
    pub ignore_compat: bool,
    /// Stage (copy) the content into the state directory when mounting fails.
    pub extract: bool,
    /// Move conflicting files of ROOT aside (restored by unlink).
    pub replace: bool,
    /// Time allowed to an image's `ExtensionRun`.
    pub run_timeout: Duration,
}

impl LinkOptions {
    /// Defaults for ROOT.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LinkOptions {
            root: root.into(),
            state: None,
            trust: Vec::new(),
            allow_unsigned: false,
            allow_directories: false,
            allow_unsigned_run: false,
            ignore_compat: false,
            extract: false,
            replace: false,
            run_timeout: Duration::from_secs(120),
        }
    }
}

/// Kind of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// A file of ROOT was there; it was kept, the image's entry not linked.
    Kept,
    /// A file of ROOT was moved aside into the state directory (`--replace`).
    Replaced,
    /// Another extension already provides the path.
    OtherExtension,
    /// ROOT has a directory where the image has a file.
    Directory,
    /// ROOT has a non-directory where the image has a directory (subtree skipped).
    NotADirectory,
    /// A symlink of ROOT leads outside ROOT or loops (subtree skipped, not followed).
    Escapes,
    /// A system call failed for this path.
    Error,
}

/// One path the linker did not link as the image has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conflict {
    /// The path in ROOT (absolute, as seen from inside ROOT).
    pub path: String,
    /// What happened.
    pub kind: ConflictKind,
    /// Details (the other extension's name, the error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How an `ExtensionRun` went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    /// Whether it was killed after the timeout.
    pub timed_out: bool,
    /// Why it could not be started.
    pub error: Option<String>,
    /// File holding its output.
    pub log: String,
}

impl RunStatus {
    /// Whether it ran and exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// How the content of a linked source is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Loop-mounted image.
    Mount,
    /// Read-only bind mount of a directory.
    Bind,
    /// Content copied into the state directory.
    Extract,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Mount => "mount",
            Mode::Bind => "bind",
            Mode::Extract => "extract",
        }
    }
}

/// The recorded state of a linked extension (`STATE/NAME/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtensionState {
    /// Name (file name without `.ExtensionImage`/`.raw`).
    pub name: String,
    /// The source as given (absolute).
    pub source: String,
    /// `SYSEXT_VERSION_ID` (else `VERSION_ID`) of its extension-release.
    pub version: Option<String>,
    /// Who signed it (a trusted key), if signed and trusted.
    pub signer: Option<String>,
    /// How the content is provided.
    pub mode: Mode,
    /// The mount (or staging) directory, as seen from inside ROOT.
    pub content: String,
    /// Symlinks of this extension in ROOT.
    pub files: u64,
    /// Directories this extension created in ROOT.
    pub dirs: u64,
    /// Paths not linked as the image has them, and files moved aside.
    pub conflicts: Vec<Conflict>,
    /// The `ExtensionRun`, if the image has one.
    pub run: Option<RunStatus>,
    /// False while a link is in progress (or was killed).
    pub complete: bool,
    /// The source's identity when it was checked (see `spec/link-state.md`).
    #[serde(default)]
    pub identity: String,
    /// Set by [`status`]: the source is no longer the file that was checked
    /// (rewritten, replaced or gone), so no signer is reported.
    #[serde(default)]
    pub changed_since_link: bool,
}

/// One linked source.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The recorded state.
    pub state: ExtensionState,
    /// Symlinks created by this run.
    pub created: u64,
    /// Directories created by this run.
    pub dirs_created: u64,
    /// Why the content was staged instead of mounted.
    pub staged_because: Option<String>,
    /// An earlier link of a different source of the same name was removed first.
    pub replaced_previous: bool,
}

/// A source that was not linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// Name.
    pub name: String,
    /// The source as given.
    pub source: String,
    /// Why (one line).
    pub reason: String,
}

/// Result of [`link`].
#[derive(Debug, Clone, Default)]
pub struct LinkReport {
    /// Linked sources, in link order (sorted by name).
    pub linked: Vec<Linked>,
    /// Refused sources.
    pub refused: Vec<Refusal>,
    /// Refused links of an earlier run whose undoing was interrupted (a
    /// kill), completed by this run before linking.
    pub undone: Vec<Refusal>,
    /// Files of trust directories left out because they hold no readable
    /// key (path, why); the other keys were used.
    pub trust_skipped: Vec<(PathBuf, String)>,
    /// Trust directories inside ROOT that were not used, and why (a
    /// symlink, or a directory the linker created).
    pub ignored_trust: Vec<String>,
}

/// Result of unlinking one extension.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnlinkReport {
    /// Name.
    pub name: String,
    /// Symlinks removed.
    pub links_removed: u64,
    /// Directories removed.
    pub dirs_removed: u64,
    /// Files put back.
    pub restored: u64,
    /// Recorded paths left alone because they are no longer ours.
    pub kept: Vec<String>,
    /// The mount was busy and only detached lazily.
    pub lazy_unmount: bool,
}

/// Result of [`status`].
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// ROOT.
    pub root: String,
    /// The state directory.
    pub state: String,
    /// Linked extensions, sorted by name.
    pub extensions: Vec<ExtensionState>,
    /// Refusals of the last `link` run.
    pub refused: Vec<Refusal>,
}

/// The name of an extension from its source path: the file name without
/// `.ExtensionImage`, `.raw`, `.squashfs`, `.sqfs` or `.img`.
pub fn extension_name(source: &Path) -> String {
    let n = source
        .file_name()
        .unwrap_or_else(|| OsStr::new(""))
        .to_string_lossy()
        .into_owned();
    for suffix in [".ExtensionImage", ".raw", ".squashfs", ".sqfs", ".img"] {
        if let Some(s) = n.strip_suffix(suffix)
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    n
}

/// Whether `name` can name a state directory.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 200
}

/// ROOT and the state directory, opened.
struct Env {
    root_path: PathBuf,
    root: Root,
    /// Host path of the state directory.
    state: PathBuf,
    /// The state directory as seen from inside ROOT.
    seen_state: Vec<u8>,
    /// Whether the state directory is inside ROOT (or ROOT is /).
    state_in_root: bool,
    /// The default layout (so unlink may remove the directories it made).
    default_state: bool,
    /// Whether ROOT is on a volatile file system (tmpfs, ramfs).
    root_volatile: bool,
    /// Whether the state directory outlives a reboot (not tmpfs or ramfs):
    /// then journal records are synced before the changes they announce.
    durable: bool,
}

impl Env {
    /// CONTENT of the extension `name` as seen from inside ROOT (what its
    /// symlinks point into).
    fn content(&self, name: &str) -> Vec<u8> {
        let mut c = self.seen_state.clone();
        c.extend_from_slice(format!("/{name}/mnt").as_bytes());
        c
    }
}

fn open_env(root: &Path, state: Option<&Path>, create: bool) -> Result<Env, Error> {
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
    let root_volatile = sys::is_volatile(r.fd.as_raw_fd());
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
                .is_ok_and(|d| sys::is_volatile(d.fd.as_raw_fd()));
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
        .map(|fd| !sys::is_volatile(fd.as_raw_fd()))
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
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn slash(rel: &[u8]) -> String {
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

/// Why walking an image's tree stopped (the link is then undone).
#[derive(Debug)]
enum WalkError {
    /// An entry of the image cannot be used: its path in the image, and why.
    Entry(Vec<u8>, String),
    /// Writing the journal failed.
    Journal(io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Entry(p, why) => write!(f, "unusable image entry /{}: {why}", show_bytes(p)),
            WalkError::Journal(e) => write!(f, "linking failed: cannot write the journal: {e}"),
        }
    }
}

fn resolve_error(root: &Path, e: ResolveError) -> Error {
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
fn identity(meta: &std::fs::Metadata) -> String {
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

fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
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
fn root_os_release(root: &Root) -> ReleaseFields {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(b) = root.read_file(p.as_bytes(), 1 << 16) {
            return ReleaseFields::parse(&String::from_utf8_lossy(&b));
        }
    }
    ReleaseFields::default()
}

/// Read the extension-release of the content at `content` (a directory):
/// `extension-release.NAME`, else the only `extension-release.*` there.
fn content_release(content: &Path, name: &str) -> Option<ReleaseFields> {
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

/// Link `sources` (ExtensionImages or directories) into `opts.root`.
///
/// Each source is checked and linked on its own: one that is refused or
/// fails is reported in [`LinkReport::refused`] and the others are still
/// linked. Sources are processed sorted by name, so when two provide the
/// same path the first name wins. `Err` only when ROOT, the state
/// directory or the trust store cannot be used at all.
pub fn link(sources: &[PathBuf], opts: &LinkOptions) -> Result<LinkReport, Error> {
    let env = open_env(&opts.root, opts.state.as_deref(), true)?;
    if opts.replace && !env.durable && !env.root_volatile {
        return Err(Error::Invalid {
            path: env.state.clone(),
            why: "--replace needs a state directory that outlives a reboot: this one is on a volatile file system (tmpfs) while ROOT is not, so the files moved aside would be lost track of at the next boot; give --state on ROOT's file system (e.g. ROOT/var/lib/sik/extensions)".into(),
        });
    }
    let _lock = lock(&env)?;
    let os = root_os_release(&env.root);
    let mut ignored_trust = Vec::new();
    let trust_paths = if opts.trust.is_empty() {
        // Trust directories inside ROOT (its etc/sik/trusted.d, and with
        // ROOT `/` the defaults too) are read only where nothing the linker
        // links can have put a key: see `root_trust_files`.
        let mut inside = vec![b"etc/sik/trusted.d".to_vec()];
        let mut v = Vec::new();
        for p in Trust::default_paths() {
            match p.strip_prefix(&env.root_path) {
                Ok(rel) if p.is_absolute() => {
                    let rel = rel.as_os_str().as_bytes().to_vec();
                    if !inside.contains(&rel) {
                        inside.push(rel);
                    }
                }
                _ => v.push(p),
            }
        }
        v.retain(|p| p.exists());
        let mut created = None;
        for rel in inside {
            match root_trust_files(&env, &rel, &mut created) {
                Ok(files) => v.extend(files),
                Err(why) => ignored_trust.push(why),
            }
        }
        v
    } else {
        opts.trust.clone()
    };
    let trust = Trust::load(&trust_paths).map_err(|why| Error::Invalid {
        path: trust_paths.first().cloned().unwrap_or_default(),
        why,
    })?;

    let mut items: Vec<(String, PathBuf)> = sources
        .iter()
        .map(|s| {
            (
                extension_name(s),
                std::path::absolute(s).unwrap_or_else(|_| s.clone()),
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = LinkReport {
        trust_skipped: trust.skipped(),
        ignored_trust,
        ..LinkReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut counter = Counter::from_env(TEST_ABORT_ENV);
    report.undone = complete_undos(&env);
    for (name, src) in items {
        let refuse = |reason: String| Refusal {
            name: name.clone(),
            source: src.display().to_string(),
            reason,
        };
        if !valid_name(&name) {
            report
                .refused
                .push(refuse("not a usable extension name".into()));
            continue;
        }
        if !seen.insert(name.clone()) {
            report.refused.push(refuse(
                "another source of this run has the same name".into(),
            ));
            continue;
        }
        match link_one(&env, &name, &src, opts, &os, &trust, &mut counter) {
            Ok(l) => report.linked.push(l),
            Err(reason) => report.refused.push(refuse(reason)),
        }
    }
    let doc = serde_json::to_vec_pretty(&report.refused).unwrap_or_default();
    atomic_write(&env.state.join(REFUSED_FILE), &doc).map_err(ioe(env.state.join(REFUSED_FILE)))?;
    Ok(report)
}

/// The key files of the trust directory `rel` of ROOT (canonical, no
/// leading `/`), read only where nothing linked can have put a key: no
/// component of `rel` may be a symlink (extensions link symlinks) or a
/// directory the linker created (a `D` record of any journal, or a
/// directory waiting in `.orphan-dirs`), and only regular files, not
/// symlinks, are taken. `Ok(empty)` when it does not exist; `Err` names why
/// an existing one is not used. `created`: the linker's directories, read
/// on first need.
fn root_trust_files(
    env: &Env,
    rel: &[u8],
    created: &mut Option<std::collections::HashSet<Vec<u8>>>,
) -> Result<Vec<PathBuf>, String> {
    let shown = || {
        env.root_path
            .join(OsStr::from_bytes(rel))
            .display()
            .to_string()
    };
    let mut fd = sys::dup_dir(env.root.fd.as_raw_fd()).map_err(|e| format!("{}: {e}", shown()))?;
    let mut here: Vec<u8> = Vec::new();
    for c in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        here = resolve::join(&here, c);
        let cc = sys::cstr(c).map_err(|e| format!("{}: {e}", shown()))?;
        fd = match sys::openat(fd.as_raw_fd(), &cc, sys::DIR_FLAGS) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(format!(
                    "{}: not used as a trust store: /{} is not a real directory (trust files are never read through a symlink)",
                    shown(),
                    lossy(&here)
                ));
            }
            Err(e) => return Err(format!("{}: {e}", shown())),
        };
        let made = created.get_or_insert_with(|| linker_dirs(env));
        if made.contains(&here) {
            return Err(format!(
                "{}: not used as a trust store: /{} was created by sik link (a linked extension may not add keys)",
                shown(),
                lossy(&here)
            ));
        }
    }
    let dir = sys::openat(
        fd.as_raw_fd(),
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )
    .map_err(|e| format!("{}: {e}", shown()))?;
    let entries = sys::read_dir_fd(dir.as_raw_fd()).map_err(|e| match e {
        sys::ReadDirError::Io(e) => format!("{}: {e}", shown()),
        sys::ReadDirError::BadName(n, why) => format!("{}/{}: {why}", shown(), show_bytes(&n)),
    })?;
    let mut files = Vec::new();
    for (n, is_dir) in entries {
        if is_dir || n.starts_with(b".") {
            continue;
        }
        let Ok(c) = sys::cstr(&n) else { continue };
        // Symlinks (what the linker makes) and anything not a regular file are skipped.
        if sys::fstatat(dir.as_raw_fd(), &c)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        {
            files.push(
                env.root_path
                    .join(OsStr::from_bytes(rel))
                    .join(OsStr::from_bytes(&n)),
            );
        }
    }
    files.sort();
    Ok(files)
}

/// Every directory of ROOT the linker created and has not removed: the `D`
/// records of all journals of the state directory and `.orphan-dirs`.
fn linker_dirs(env: &Env) -> std::collections::HashSet<Vec<u8>> {
    let mut out = std::collections::HashSet::new();
    if let Ok(text) = std::fs::read(env.state.join(ORPHANS_FILE)) {
        for l in text.split(|&c| c == b'\n') {
            if let Some(p) = journal::unescape_bytes(l).filter(|p| !p.is_empty()) {
                out.insert(p);
            }
        }
    }
    let Ok(rd) = std::fs::read_dir(&env.state) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(data) = std::fs::read(e.path().join("journal")) else {
            continue;
        };
        for l in data.split(|&c| c == b'\n') {
            if let Some(p) = l.strip_prefix(b"D ").and_then(journal::unescape_bytes) {
                out.insert(p);
            }
        }
    }
    out
}

/// Finish the undoing of refused links that an earlier run began (its
/// journal holds `X`) and did not complete. Only incomplete links (no
/// `state.json`) are looked at, so a state directory of complete links
/// costs one stat per name.
fn complete_undos(env: &Env) -> Vec<Refusal> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&env.state) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    for n in names {
        let sdir = env.state.join(&n);
        if sdir.join("state.json").exists() {
            continue;
        }
        let Ok(recs) = journal::read(&sdir.join("journal"), &env.content(&n)) else {
            continue;
        };
        let Some(reason) = recs.iter().rev().find_map(|r| match r {
            Record::Undo(w) => Some(w.clone()),
            _ => None,
        }) else {
            continue;
        };
        let source = recs
            .iter()
            .find_map(|r| match r {
                Record::Source { path, .. } => Some(lossy(path)),
                _ => None,
            })
            .unwrap_or_default();
        let reason = match unlink_state(env, &n, true) {
            Ok(_) => reason,
            Err(e) => format!("{reason} (undoing failed again: {e})"),
        };
        out.push(Refusal {
            name: n,
            source,
            reason,
        });
    }
    out
}

/// Counts changes made in ROOT; the test hook aborts after N of them.
struct Counter {
    changes: std::sync::atomic::AtomicU64,
    abort_after: Option<u64>,
}

impl Counter {
    /// A counter aborting after the number in the environment variable `var`, if set.
    fn from_env(var: &str) -> Counter {
        let abort_after = if var.is_empty() {
            None
        } else {
            std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok())
        };
        Counter {
            changes: std::sync::atomic::AtomicU64::new(0),
            abort_after,
        }
    }

    fn tick(&self) {
        let done = self
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Some(n) = self.abort_after
            && done >= n
        {
            // A kill, as a crash or power loss would end the process.
            // SAFETY: kill(2) on our own pid.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Provide the content at `mnt`: the image open as `file` on a loop
/// device, or (`file` is `None`) the directory `src` bind-mounted.
fn mount_content(src: &Path, file: Option<&std::fs::File>, mnt: &Path) -> io::Result<Mode> {
    if std::env::var_os(TEST_NO_MOUNT_ENV).is_some_and(|v| v == "1") {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    let Some(file) = file else {
        sys::mount(Some(src), mnt, None, libc::MS_BIND | libc::MS_REC)?;
        if let Err(e) = sys::mount(
            None,
            mnt,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
        ) {
            let _ = sys::umount(mnt);
            return Err(e);
        }
        return Ok(Mode::Bind);
    };
    let (dev, _devfd) = sys::loop_attach(file, src, 0)?;
    // The loop device auto-clears when the mount goes away (or, if the
    // mount fails, when _devfd is closed).
    sys::mount(
        Some(&dev),
        mnt,
        Some("squashfs"),
        libc::MS_RDONLY | libc::MS_NODEV,
    )?;
    Ok(Mode::Mount)
}

/// A source opened once, before anything is checked: an image's
/// descriptor (the signature is verified from it, the loop device is
/// attached to it, `--extract` reads it) or a directory's metadata.
struct Source {
    /// The image, open read-only; `None` for a directory.
    file: Option<std::fs::File>,
    /// Its metadata, from the descriptor.
    meta: std::fs::Metadata,
}

/// Open `src` without following a symlink in its last component.
fn open_source(src: &Path) -> Result<Source, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(src)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symlink; sources are never followed through one".to_string(),
            _ => format!("cannot read: {e}"),
        })?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        return Ok(Source { file: None, meta });
    }
    if !meta.is_file() {
        return Err("not a regular file or directory".into());
    }
    Ok(Source {
        file: Some(f),
        meta,
    })
}

/// Why an image file may not be linked because someone other than root
/// (or, when not running as root, the running user) could change its
/// bytes after they were checked: its owner, or its group/world write bit.
fn writable_by_others(meta: &std::fs::Metadata) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Some(format!(
            "owned by uid {}, who could rewrite it after it was checked (a source must be owned by root)",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by its group or by everyone (mode {:04o}), who could rewrite it after it was checked",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// The checks of an opened image (kind, who may write it, signature
/// policy): its signer when signed by a trusted key.
fn check_image(
    file: &std::fs::File,
    meta: &std::fs::Metadata,
    src: &Path,
    opts: &LinkOptions,
    trust: &Trust,
) -> Result<Option<String>, String> {
    let mut r = file;
    match sik_image::kind::detect(&mut r) {
        Ok(sik_image::kind::ImageKind::SquashFs) => {}
        Ok(k) => return Err(format!("not an ExtensionImage ({})", k.describe())),
        Err(e) => return Err(format!("cannot read: {e}")),
    }
    if let Some(why) = writable_by_others(meta) {
        return Err(why);
    }
    Ok(match trust.check(file, src)? {
        SigCheck::Trusted(s) => Some(s),
        SigCheck::Unsigned if opts.allow_unsigned => None,
        SigCheck::Unsigned => {
            return Err(if trust.is_empty() {
                "unsigned, and no trusted keys (--allow-unsigned links it anyway)".into()
            } else {
                "unsigned (--allow-unsigned links it anyway)".into()
            });
        }
        SigCheck::Untrusted(_) if opts.allow_unsigned => None,
        SigCheck::Untrusted(fp) => {
            return Err(format!("signed by a key that is not trusted: {fp}"));
        }
        SigCheck::Bad(why) => return Err(format!("signature check failed: {why}")),
    })
}

fn link_one(
    env: &Env,
    name: &str,
    src: &Path,
    opts: &LinkOptions,
    os: &ReleaseFields,
    trust: &Trust,
    counter: &mut Counter,
) -> Result<Linked, String> {
    let opened = open_source(src)?;
    let meta = &opened.meta;
    let is_dir = meta.is_dir();
    let ident = identity(meta);
    let sdir = env.state.join(name);
    let mnt = sdir.join("mnt");
    let jpath = sdir.join("journal");

    // 1. Signature policy, on the open file. A source that fails its
    // check while an earlier link of this name exists takes that link
    // down too: what is linked must be what passes the check now.
    let checked = match &opened.file {
        None if !trust.is_empty() && !opts.allow_directories => Err(
            "a directory, which carries no signature, while a trust store is in force (--allow-directories links it anyway)"
                .to_string(),
        ),
        None => Ok(None),
        Some(f) => check_image(f, meta, src, opts, trust),
    };
    let signer = match checked {
        Ok(s) => s,
        Err(why) if sdir.exists() => {
            return Err(match unlink_state(env, name, false) {
                Ok(_) => format!("{why} (its earlier link was removed)"),
                Err(e) => format!(
                    "{why} (and its earlier link could not be removed: {e}; `sik unlink {name}` removes it)"
                ),
            });
        }
        Err(why) => return Err(why),
    };

    // An earlier link of the same name: the same source continues (or
    // re-checks) it, another source replaces it.
    let mut replaced_previous = false;
    let mut previous: Option<ExtensionState> = None;
    if sdir.exists() {
        let same = journal::read(&jpath, &env.content(name))
            .ok()
            .and_then(|recs| {
                recs.into_iter().find_map(|r| match r {
                    Record::Source { identity, path } => {
                        Some(identity == ident && path == src.as_os_str().as_bytes())
                    }
                    _ => None,
                })
            })
            .unwrap_or(false);
        if same {
            previous = std::fs::read(sdir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
        } else {
            unlink_state(env, name, false)
                .map_err(|e| format!("cannot remove the earlier link of this name: {e}"))?;
            replaced_previous = true;
        }
    }

    // 2. Content: mount (or stage) under the state directory.
    let fresh = !sdir.exists();
    for d in [&sdir, &mnt] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", d.display())),
        }
    }
    let _ = std::fs::set_permissions(&sdir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let journal =
        Journal::open(&jpath, env.durable).map_err(|e| format!("{}: {e}", jpath.display()))?;
    if fresh
        || journal::read(&jpath, &env.content(name))
            .map(|r| r.is_empty())
            .unwrap_or(true)
    {
        journal
            .append(&[Record::Source {
                path: src.as_os_str().as_bytes().to_vec(),
                identity: ident.clone(),
            }])
            .map_err(|e| e.to_string())?;
    }
    let mut staged_because = None;
    let mut provided = false;
    let mode = if sys::is_mountpoint(&mnt) {
        if is_dir { Mode::Bind } else { Mode::Mount }
    } else if previous
        .as_ref()
        .is_some_and(|p| p.mode == Mode::Extract && p.complete)
    {
        Mode::Extract
    } else {
        provided = true;
        // Nothing usable there (fresh, or a killed staging): provide it anew.
        clear_dir(&mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
        match mount_content(src, opened.file.as_ref(), &mnt) {
            Ok(m) => m,
            Err(e) if opts.extract => {
                staged_because = Some(format!("cannot mount: {e}"));
                let r = match &opened.file {
                    None => stage::copy_tree(src, &mnt),
                    Some(f) => stage::extract_image(f, &mnt),
                };
                if let Err(why) = r {
                    let _ = unlink_state(env, name, false);
                    return Err(format!("cannot stage the content: {why}"));
                }
                Mode::Extract
            }
            Err(e) => {
                let _ = unlink_state(env, name, false);
                return Err(format!(
                    "cannot mount: {e} (--extract stages the content instead)"
                ));
            }
        }
    };
    // From here on, a refusal or an error undoes everything this link
    // made (journal-driven, as unlink does) before it is reported.
    let counter_ref = &mut *counter;
    let result = (|| -> Result<Linked, String> {
        if provided {
            journal
                .append(&[Record::Mode(mode.as_str().into())])
                .map_err(|e| e.to_string())?;
        }

        // 3. Compatibility.
        let release = content_release(&mnt, name);
        if !opts.ignore_compat {
            let verdict = match &release {
                Some(r) => compat::check(r, os, compat::host_architecture()),
                None if is_dir => Ok(()),
                None => Err(format!("no {}", release_path(name))),
            };
            if let Err(why) = verdict {
                return Err(format!(
                    "incompatible with ROOT: {why} (--ignore-compat links it anyway)"
                ));
            }
        }
        let version = release.as_ref().and_then(|r| {
            r.get("SYSEXT_VERSION_ID")
                .or_else(|| r.get("VERSION_ID"))
                .map(str::to_string)
        });

        // 4. Symlinks and directories.
        let seen_mnt = env.content(name);
        let top = env.root.top().map_err(|e| e.to_string())?;
        let mut w = Walker {
            root: &env.root,
            journal: &journal,
            ext: name,
            seen_mnt: seen_mnt.clone(),
            state_rel: env.state_in_root.then(|| {
                env.seen_state
                    .strip_prefix(b"/")
                    .unwrap_or(&env.seen_state)
                    .to_vec()
            }),
            replace: opts.replace,
            state_dir: sdir.clone(),
            replaced_fd: None,
            conflicts: Vec::new(),
            created: 0,
            dirs_created: 0,
            already: 0,
            counter: &*counter_ref,
            trusted: signer.is_some(),
            record_adopted: fresh,
            stop: None,
        };
        let content_fd =
            sys::open(&mnt, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| e.to_string())?;
        // Large images: the top directory's subtrees on a few threads.
        let parallel = force_parallel() || statfs_files(&content_fd) >= PARALLEL_MIN_INODES;
        w.walk_dir(&content_fd, b"", &top, false, parallel, false)
            .map_err(|e| format!("{e}"))?;
        let (created, dirs_created, already, mut conflicts) =
            (w.created, w.dirs_created, w.already, w.conflicts);
        let _ = journal.sync();

        // 5. ExtensionRun, once per link.
        // Content no trusted key vouches for runs nothing as root while a
        // trust store is in force, unless asked to.
        let skip = (signer.is_none() && !trust.is_empty() && !opts.allow_unsigned_run).then(|| {
            format!("{RUN_SKIPPED}: the content is not signed by a trusted key (--allow-unsigned-run runs it)")
        });
        // Once per link; a run skipped earlier runs when it is now allowed.
        let run_needed = previous.as_ref().is_none_or(|p| {
            !p.complete
                || (skip.is_none()
                    && p.run
                        .as_ref()
                        .and_then(|r| r.error.as_deref())
                        .is_some_and(|e| e.starts_with(RUN_SKIPPED)))
        });
        let run = if run_needed {
            run_extension(env, name, &mnt, &seen_mnt, &sdir, opts.run_timeout, skip)
        } else {
            previous.as_ref().and_then(|p| p.run.clone())
        };

        // 6. The state, written atomically.
        // Our symlinks now in ROOT: the ones made and the ones found. The
        // directories: those recorded (a fresh journal holds this run's only).
        let files = created + already;
        let recs = if fresh {
            Vec::new()
        } else {
            journal::read(&jpath, &env.content(name)).map_err(|e| e.to_string())?
        };
        let dirs = if fresh {
            dirs_created
        } else {
            let set: std::collections::HashSet<&[u8]> = recs
                .iter()
                .filter_map(|r| match r {
                    Record::Dir(p) => Some(p.as_slice()),
                    _ => None,
                })
                .collect();
            set.len() as u64
        };
        for r in &recs {
            if let Record::Replaced(p) = r {
                let path = slash(p);
                if !conflicts
                    .iter()
                    .any(|c| c.path == path && c.kind == ConflictKind::Replaced)
                {
                    conflicts.push(Conflict {
                        path,
                        kind: ConflictKind::Replaced,
                        detail: String::new(),
                    });
                }
            }
        }
        let state = ExtensionState {
            name: name.to_string(),
            source: src.display().to_string(),
            version,
            signer,
            mode,
            content: lossy(&seen_mnt),
            files,
            dirs,
            conflicts,
            run,
            complete: true,
            identity: ident.clone(),
            changed_since_link: false,
        };
        let doc = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
        atomic_write(&sdir.join("state.json"), &doc).map_err(|e| e.to_string())?;
        Ok(Linked {
            state,
            created,
            dirs_created,
            staged_because,
            replaced_previous,
        })
    })();
    result.map_err(|why| undo(env, name, journal, why))
}

/// Undo a refused or failed link of `name`: record why (`X`), so that a
/// kill from here on is completed by the next run, then remove what the
/// journal lists and unmount, as unlink does. Returns the reason to report.
fn undo(env: &Env, name: &str, journal: Journal, why: String) -> String {
    // Without the X record (a full disk) the undoing is still done now;
    // only a kill during it would then not be completed by the next run.
    let _ = journal
        .append(&[Record::Undo(why.clone())])
        .and_then(|()| journal.sync());
    drop(journal);
    match unlink_state(env, name, true) {
        Ok(rep) if rep.kept.is_empty() => why,
        Ok(rep) => format!(
            "{why} (undone, except {} path(s) no longer ours, e.g. {})",
            rep.kept.len(),
            rep.kept[0]
        ),
        Err(e) => format!(
            "{why} (and the partial link could not be undone: {e}; `sik unlink {name}` removes it)"
        ),
    }
}

/// How the `error` of a [`RunStatus`] starts when the policy skipped the run.
const RUN_SKIPPED: &str = "skipped";

/// Images with at least this many inodes are linked on several threads.
const PARALLEL_MIN_INODES: u64 = 4096;

/// Whether the test hook [`TEST_PARALLEL_ENV`] asks for threads whatever the size.
fn force_parallel() -> bool {
    std::env::var_os(TEST_PARALLEL_ENV).is_some_and(|v| v == "1")
}

/// The number of inodes of the file system of `fd` (for SquashFS: the
/// image's entries); 0 when unknown.
fn statfs_files(fd: &OwnedFd) -> u64 {
    // SAFETY: zeroed statfs is a valid out-buffer for fstatfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return 0;
    }
    st.f_files
}

/// Remove everything inside `dir` (not crossing into mounts).
fn clear_dir(dir: &Path) -> io::Result<()> {
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
fn make_writable(p: &Path) {
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
fn count_present(root: &Root, recs: &[Record]) -> (u64, u64) {
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
            && sys::readlinkat(d.fd.as_raw_fd(), &c).is_ok_and(|got| got == t)
        {
            files += 1;
        }
    }
    let mut ndirs = 0;
    for p in dirs {
        let (parent, leaf) = split_parent(p);
        if let Some(d) = cache.get(root, parent)
            && let Ok(c) = sys::cstr(leaf)
            && sys::fstatat(d.fd.as_raw_fd(), &c).is_ok_and(|st| sys::is_dir(&st))
        {
            ndirs += 1;
        }
    }
    (files, ndirs)
}

fn split_parent(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

/// Directories of ROOT by canonical path, opened once.
#[derive(Default)]
struct ParentCache {
    map: std::collections::HashMap<Vec<u8>, Option<Dir>>,
    /// The key asked for last (entries of one directory come in a row).
    last: Option<Vec<u8>>,
}

impl ParentCache {
    fn get(&mut self, root: &Root, rel: &[u8]) -> Option<&Dir> {
        if self.last.as_deref() == Some(rel) {
            return self.map.get(rel).and_then(Option::as_ref);
        }
        if !self.map.contains_key(rel) {
            if self.map.len() > 256 {
                self.map.clear();
            }
            let d = if rel.is_empty() {
                root.top().ok()
            } else {
                // One openat from the (cached) parent, never following a symlink.
                let (parent, leaf) = split_parent(rel);
                let leaf = sys::cstr(leaf).ok();
                match (self.get(root, parent), leaf) {
                    (Some(p), Some(leaf)) => sys::openat(p.fd.as_raw_fd(), &leaf, sys::DIR_FLAGS)
                        .ok()
                        .map(|fd| Dir {
                            fd,
                            rel: rel.to_vec(),
                        }),
                    _ => None,
                }
            };
            self.map.insert(rel.to_vec(), d);
        }
        self.last = Some(rel.to_vec());
        self.map.get(rel).and_then(Option::as_ref)
    }

    fn forget(&mut self, rel: &[u8]) {
        self.last = None;
        self.map.remove(rel);
    }
}

struct Walker<'a> {
    root: &'a Root,
    journal: &'a Journal,
    ext: &'a str,
    seen_mnt: Vec<u8>,
    /// The state directory's canonical path in ROOT, when it is inside ROOT.
    state_rel: Option<Vec<u8>>,
    replace: bool,
    state_dir: PathBuf,
    replaced_fd: Option<OwnedFd>,
    conflicts: Vec<Conflict>,
    created: u64,
    dirs_created: u64,
    already: u64,
    counter: &'a Counter,
    /// Whether a trusted key signed the image (its directories keep their owner and mode).
    trusted: bool,
    /// Record symlinks found already ours (the journal is new).
    record_adopted: bool,
    /// Set when another thread's walk failed: stop early.
    stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Name of a file moved aside, in `STATE/NAME/replaced/`.
fn aside_name(rel: &[u8]) -> Vec<u8> {
    journal::escape(rel).replace('/', "%2F").into_bytes()
}

/// Name of a file moved aside next to itself (when the state directory is
/// on another file system).
fn sibling_aside_name(leaf: &[u8], ext: &str) -> Vec<u8> {
    let mut v = b".".to_vec();
    v.extend_from_slice(leaf);
    v.extend_from_slice(format!(".sik-aside.{ext}").as_bytes());
    v
}

impl Walker<'_> {
    /// Append the record of the symlink `dst/leaf` -> `target` to `batch`
    /// (the short `l` form when ROOT's path is the image's path `img/leaf`).
    fn link_record(batch: &mut String, dst: &[u8], img: &[u8], leaf: &[u8], target: &[u8]) {
        if dst == img {
            batch.push_str("l ");
            journal::escape_path_into(batch, dst, leaf);
        } else {
            batch.push_str("L ");
            journal::escape_path_into(batch, dst, leaf);
            batch.push(' ');
            journal::escape_into(batch, target);
        }
        batch.push('\n');
    }

    /// Append to `batch` the records of everything a walk makes for the
    /// image's directory `img/n` (content fd `src` = `img`) in the missing
    /// ROOT directory `dst/n`: its `D`, then for each level its
    /// non-directories' `l`/`L` records and its sub-directories, in the
    /// order the walk makes them. Names are checked as the walk checks them.
    fn record_subtree(
        &self,
        batch: &mut String,
        src: &OwnedFd,
        img: &[u8],
        dst: &[u8],
        n: &[u8],
    ) -> Result<(), WalkError> {
        let img_rel = resolve::join(img, n);
        let rel = resolve::join(dst, n);
        batch.push_str("D ");
        journal::escape_into(batch, &rel);
        batch.push('\n');
        let fd = sys::cstr(n)
            .and_then(|c| {
                sys::openat(
                    src.as_raw_fd(),
                    &c,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })
            .map_err(|e| WalkError::Entry(img_rel.clone(), format!("cannot open it: {e}")))?;
        let mut entries = sys::read_dir_fd(fd.as_raw_fd()).map_err(|e| match e {
            sys::ReadDirError::Io(e) => {
                WalkError::Entry(img_rel.clone(), format!("cannot read the directory: {e}"))
            }
            sys::ReadDirError::BadName(b, why) => {
                WalkError::Entry(resolve::join(&img_rel, &b), why.to_string())
            }
        })?;
        entries.sort();
        let mut prefix = self.seen_mnt.clone();
        prefix.push(b'/');
        prefix.extend_from_slice(&img_rel);
        prefix.push(b'/');
        for (e, is_dir) in &entries {
            if !sys::is_component(e) {
                return Err(WalkError::Entry(
                    resolve::join(&img_rel, e),
                    "not a usable file name".into(),
                ));
            }
            if !is_dir {
                let mut target = prefix.clone();
                target.extend_from_slice(e);
                Self::link_record(batch, &rel, &img_rel, e, &target);
            }
        }
        for (e, is_dir) in &entries {
            if *is_dir {
                self.record_subtree(batch, &fd, &img_rel, &rel, e)?;
            }
        }
        Ok(())
    }

    fn conflict(&mut self, rel: &[u8], kind: ConflictKind, detail: impl Into<String>) {
        self.conflicts.push(Conflict {
            path: slash(rel),
            kind,
            detail: detail.into(),
        });
    }

    /// Whether the canonical `rel` is the state directory or below it.
    fn is_state(&self, rel: &[u8]) -> bool {
        self.state_rel.as_ref().is_some_and(|s| {
            rel.starts_with(s) && (rel.len() == s.len() || rel.get(s.len()) == Some(&b'/'))
        })
    }

    fn other_name(&self, target: &[u8]) -> String {
        let rest = &target[self.root.ours_prefix.len().min(target.len())..];
        lossy(rest.split(|&c| c == b'/').next().unwrap_or_default())
    }

    fn replaced_dir(&mut self) -> io::Result<i32> {
        if self.replaced_fd.is_none() {
            let p = self.state_dir.join("replaced");
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            self.replaced_fd = Some(sys::open(
                &p,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?);
        }
        Ok(self.replaced_fd.as_ref().map_or(-1, |f| f.as_raw_fd()))
    }

    fn move_aside(&mut self, dst: &Dir, leaf: &[u8], rel: &[u8]) -> io::Result<()> {
        let c = sys::cstr(leaf)?;
        let rd = self.replaced_dir()?;
        let aside = sys::cstr(&aside_name(rel))?;
        match sys::renameat_noreplace(dst.fd.as_raw_fd(), &c, rd, &aside) {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let sib = sys::cstr(&sibling_aside_name(leaf, self.ext))?;
                sys::renameat_noreplace(dst.fd.as_raw_fd(), &c, dst.fd.as_raw_fd(), &sib)
            }
            r => r,
        }
    }

    /// Link the content directory `src` (image path `img`) into `dst`.
    ///
    /// `fresh`: `dst` was just created by this walk, so it is empty and
    /// nothing needs to be looked up in it.
    ///
    /// Every name read from the image is used as one path component only
    /// (an `*at` call on a directory fd); a name that cannot be one, or an
    /// entry that cannot be read, stops the walk with [`WalkError::Entry`].
    ///
    /// `recorded`: everything this walk makes below `dst` is already in
    /// the journal (see [`Walker::record_subtree`]).
    fn walk(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        recorded: bool,
    ) -> Result<(), WalkError> {
        self.walk_dir(src, img, dst, fresh, false, recorded)
    }

    /// [`Walker::walk`]; `parallel`: spread the sub-directories over threads.
    fn walk_dir(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        parallel: bool,
        recorded: bool,
    ) -> Result<(), WalkError> {
        if let Some(stop) = self.stop
            && stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let mut files: Vec<Vec<u8>> = Vec::new();
        let mut dirs: Vec<Vec<u8>> = Vec::new();
        let entries = sys::read_dir_fd(src.as_raw_fd()).map_err(|e| match e {
            sys::ReadDirError::Io(e) => {
                WalkError::Entry(img.to_vec(), format!("cannot read the directory: {e}"))
            }
            sys::ReadDirError::BadName(n, why) => {
                WalkError::Entry(resolve::join(img, &n), why.to_string())
            }
        })?;
        for (n, is_dir) in entries {
            if !sys::is_component(&n) {
                return Err(WalkError::Entry(
                    resolve::join(img, &n),
                    "not a usable file name".into(),
                ));
            }
            if img.is_empty() && n == b"ExtensionRun" {
                continue;
            }
            if is_dir {
                dirs.push(n);
            } else {
                files.push(n);
            }
        }
        files.sort();
        dirs.sort();

        // Non-directories: decide, announce in the journal, then act.
        let mut prefix = self.seen_mnt.clone();
        prefix.push(b'/');
        if !img.is_empty() {
            prefix.extend_from_slice(img);
            prefix.push(b'/');
        }
        let mut plan: Vec<(std::ffi::CString, std::ffi::CString, bool)> = Vec::new(); // (leaf, target, replace first)
        let mut batch = String::new();
        for n in files {
            let mut target = Vec::with_capacity(prefix.len() + n.len());
            target.extend_from_slice(&prefix);
            target.extend_from_slice(&n);
            let c = std::ffi::CString::new(n).map_err(|e| {
                WalkError::Entry(
                    resolve::join(img, &e.into_vec()),
                    "the name contains a NUL byte".into(),
                )
            })?;
            let st = if fresh {
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            } else {
                sys::fstatat(dst.fd.as_raw_fd(), &c)
            };
            let rel = || dst.child_rel(c.as_bytes());
            let create = match st {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Some(false),
                Err(e) => {
                    self.conflict(&rel(), ConflictKind::Error, e.to_string());
                    None
                }
                Ok(st) if sys::is_lnk(&st) => {
                    let t = sys::readlinkat(dst.fd.as_raw_fd(), &c).unwrap_or_default();
                    if t == target {
                        self.already += 1;
                        if self.record_adopted {
                            // Ours already (a state lost with a volatile
                            // STATE): recorded, so unlink removes it.
                            Self::link_record(&mut batch, &dst.rel, img, c.as_bytes(), &target);
                        }
                        None
                    } else if self.root.is_ours(&t) {
                        let other = self.other_name(&t);
                        self.conflict(&rel(), ConflictKind::OtherExtension, other);
                        None
                    } else if self.replace {
                        Some(true)
                    } else {
                        self.conflict(&rel(), ConflictKind::Kept, "");
                        None
                    }
                }
                Ok(st) if sys::is_dir(&st) => {
                    self.conflict(&rel(), ConflictKind::Directory, "");
                    None
                }
                Ok(_) if self.replace => Some(true),
                Ok(_) => {
                    self.conflict(&rel(), ConflictKind::Kept, "");
                    None
                }
            };
            if let Some(replace_first) = create {
                if replace_first {
                    batch.push_str("R ");
                    journal::escape_path_into(&mut batch, &dst.rel, c.as_bytes());
                    batch.push('\n');
                }
                Self::link_record(&mut batch, &dst.rel, img, c.as_bytes(), &target);
                let t = std::ffi::CString::new(target).map_err(|_| {
                    WalkError::Entry(
                        resolve::join(img, c.as_bytes()),
                        "the link target would contain a NUL byte".into(),
                    )
                })?;
                plan.push((c, t, replace_first));
            }
        }
        // A sub-directory missing in ROOT is made with everything below
        // it: the whole subtree is announced in this batch, so the journal
        // is synced once per directory that ROOT already has (plus once
        // per missing subtree's parent), not once per directory made.
        let mut pre: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        if !recorded {
            for n in &dirs {
                let missing = fresh
                    || sys::cstr(n).is_ok_and(|c| {
                        sys::fstatat(dst.fd.as_raw_fd(), &c)
                            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
                    });
                if missing {
                    self.record_subtree(&mut batch, src, img, &dst.rel, n)?;
                    pre.insert(n);
                }
            }
            self.journal
                .append_text(&batch)
                .map_err(WalkError::Journal)?;
        } else {
            pre.extend(dirs.iter().map(Vec::as_slice));
        }
        for (c, t, replace_first) in plan {
            if replace_first {
                let rel = dst.child_rel(c.as_bytes());
                if let Err(e) = self.move_aside(dst, c.as_bytes(), &rel) {
                    self.conflict(&rel, ConflictKind::Error, format!("cannot move aside: {e}"));
                    continue;
                }
                self.conflicts.push(Conflict {
                    path: slash(&rel),
                    kind: ConflictKind::Replaced,
                    detail: String::new(),
                });
                self.counter.tick();
            }
            match sys::symlinkat(&t, dst.fd.as_raw_fd(), &c) {
                Ok(()) => {
                    self.created += 1;
                    self.counter.tick();
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.conflict(&dst.child_rel(c.as_bytes()), ConflictKind::Kept, "")
                }
                Err(e) => self.conflict(
                    &dst.child_rel(c.as_bytes()),
                    ConflictKind::Error,
                    e.to_string(),
                ),
            }
        }

        // Directories: open (following ROOT's symlinks inside ROOT) or create, then descend.
        if parallel && (2..=256).contains(&dirs.len()) {
            return self.walk_parallel(src, img, dst, fresh, &dirs, &pre);
        }
        for n in &dirs {
            let sub = pre.contains(n.as_slice());
            if let Some((sp, img_rel, child, made, sub)) =
                self.open_child(src, img, dst, fresh, n, sub)?
            {
                self.walk(&sp, &img_rel, &child, made, sub)?;
            }
        }
        Ok(())
    }

    /// Open the image's sub-directory `n` of `src` and the matching
    /// directory of ROOT below `dst` (created when missing): the content
    /// fd, its image path, ROOT's directory and whether it was just made.
    /// `None` when it is not linked (a conflict is recorded).
    ///
    /// `recorded`: the `D` record of `dst/n` (and of its subtree) is
    /// already in the journal.
    fn open_child(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        n: &[u8],
        recorded: bool,
    ) -> Result<Option<Opened>, WalkError> {
        let img_rel = resolve::join(img, n);
        let unusable = |what: &str, e: io::Error| {
            WalkError::Entry(img_rel.clone(), format!("cannot {what}: {e}"))
        };
        let sp = sys::cstr(n)
            .and_then(|c| {
                sys::openat(
                    src.as_raw_fd(),
                    &c,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                )
            })
            .map_err(|e| unusable("open it", e))?;
        let m = sys::fstat(sp.as_raw_fd()).map_err(|e| unusable("read its inode", e))?;
        // A directory made in ROOT is the running user's (root's) with at
        // most 0755, so no owner from an image can later swap it for a
        // symlink or add entries; only a trusted signer's image keeps the
        // owner and mode it asks for.
        let meta = if self.trusted {
            DirMeta {
                mode: m.st_mode & 0o7777,
                uid: m.st_uid,
                gid: m.st_gid,
            }
        } else {
            // SAFETY: geteuid/getegid cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            DirMeta {
                mode: m.st_mode & 0o755,
                uid,
                gid,
            }
        };
        let mut made = 0u64;
        let journal = self.journal;
        let announced = dst.child_rel(n);
        let res = self.root.child_dir(dst, n, Some(meta), fresh, &mut |rel| {
            made += 1;
            if recorded && rel == announced.as_slice() {
                return Ok(());
            }
            journal.append(&[Record::Dir(rel.to_vec())])
        });
        for _ in 0..made {
            self.dirs_created += 1;
            self.counter.tick();
        }
        let rel = dst.child_rel(n);
        match res {
            Ok(child) if self.is_state(&child.rel) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                "the linker's own state directory; not linked",
            ),
            Ok(child) => return Ok(Some((sp, img_rel, child, made > 0, recorded))),
            Err(ResolveError::Escapes(_)) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                "a symlink of ROOT leads outside ROOT; not followed",
            ),
            Err(ResolveError::NotRootOwned(p, uid)) => self.conflict(
                &rel,
                ConflictKind::Escapes,
                format!(
                    "{} is a symlink owned by uid {uid}, not root; not followed",
                    slash(&p)
                ),
            ),
            Err(ResolveError::Loop(_)) => {
                self.conflict(&rel, ConflictKind::Escapes, "symlink loop")
            }
            Err(ResolveError::NotDir(p)) => {
                self.conflict(&rel, ConflictKind::NotADirectory, slash(&p))
            }
            Err(ResolveError::Ours(p)) => {
                let t = sys::cstr(n)
                    .and_then(|c| sys::readlinkat(dst.fd.as_raw_fd(), &c))
                    .unwrap_or_default();
                let other = if self.root.is_ours(&t) {
                    self.other_name(&t)
                } else {
                    slash(&p)
                };
                self.conflict(&rel, ConflictKind::OtherExtension, other)
            }
            Err(ResolveError::Missing(p)) => self.conflict(
                &rel,
                ConflictKind::Error,
                format!("{} is missing", slash(&p)),
            ),
            Err(ResolveError::Io(_, e)) => self.conflict(&rel, ConflictKind::Error, e.to_string()),
        }
        Ok(None)
    }

    /// The sub-directories `dirs` of the image's top directory, linked on
    /// a few threads (`pre`: those whose subtree is already journalled).
    /// They are opened (and created in ROOT) here, in
    /// order; those that land on the same directory of ROOT, or one below
    /// another's (merged /usr: `lib` and `usr/lib`), form one group, walked
    /// in order by one thread. Idle threads take the next group; conflicts
    /// and counts are merged in group order, so the outcome does not depend
    /// on timing. The first error (in group order) is returned; the other
    /// threads stop at their next directory.
    fn walk_parallel(
        &mut self,
        src: &OwnedFd,
        img: &[u8],
        dst: &Dir,
        fresh: bool,
        dirs: &[Vec<u8>],
        pre: &std::collections::HashSet<&[u8]>,
    ) -> Result<(), WalkError> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let mut opened: Vec<Opened> = Vec::new();
        for n in dirs {
            let sub = pre.contains(n.as_slice());
            if let Some(c) = self.open_child(src, img, dst, fresh, n, sub)? {
                opened.push(c);
            }
        }
        let related = |a: &[u8], b: &[u8]| {
            let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            s.is_empty() || (l.starts_with(s) && (l.len() == s.len() || l[s.len()] == b'/'))
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, o) in opened.iter().enumerate() {
            let hits: Vec<usize> = (0..groups.len())
                .filter(|&g| {
                    groups[g]
                        .iter()
                        .any(|&j| related(&opened[j].2.rel, &o.2.rel))
                })
                .collect();
            match hits.first() {
                None => groups.push(vec![i]),
                Some(&first) => {
                    // Merge every group it relates to into the first one.
                    for &g in hits.iter().skip(1).rev() {
                        let moved = groups.remove(g);
                        groups[first].extend(moved);
                    }
                    groups[first].push(i);
                    groups[first].sort_unstable();
                }
            }
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
            .min(groups.len());
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let shared = &*self;
        let mut results: Vec<(usize, Walked)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let g = next.fetch_add(1, Ordering::Relaxed);
                            if g >= groups.len() || stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let mut w = shared.fork(&stop);
                            let mut res = Ok(());
                            for &i in &groups[g] {
                                let (sp, img_rel, child, made, sub) = &opened[i];
                                res = w.walk(sp, img_rel, child, *made, *sub);
                                if res.is_err() {
                                    stop.store(true, Ordering::Relaxed);
                                    break;
                                }
                            }
                            out.push((g, w.finish(res)));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        results.sort_by_key(|r| r.0);
        let complete = results.len() == groups.len();
        let mut first_err = None;
        for (_, r) in results {
            self.conflicts.extend(r.conflicts);
            self.created += r.created;
            self.dirs_created += r.dirs_created;
            self.already += r.already;
            if let Err(e) = r.result
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            // A group without a result (its thread panicked).
            None if !complete => Err(WalkError::Entry(
                img.to_vec(),
                "linking stopped early".into(),
            )),
            None => Ok(()),
        }
    }

    /// A walker for another thread: the same settings, its own results.
    fn fork<'b>(&'b self, stop: &'b std::sync::atomic::AtomicBool) -> Walker<'b> {
        Walker {
            root: self.root,
            journal: self.journal,
            ext: self.ext,
            seen_mnt: self.seen_mnt.clone(),
            state_rel: self.state_rel.clone(),
            replace: self.replace,
            state_dir: self.state_dir.clone(),
            replaced_fd: None,
            conflicts: Vec::new(),
            created: 0,
            dirs_created: 0,
            already: 0,
            counter: self.counter,
            trusted: self.trusted,
            record_adopted: self.record_adopted,
            stop: Some(stop),
        }
    }

    fn finish(self, result: Result<(), WalkError>) -> Walked {
        Walked {
            conflicts: self.conflicts,
            created: self.created,
            dirs_created: self.dirs_created,
            already: self.already,
            result,
        }
    }
}

/// An opened sub-directory: content fd, image path, ROOT's directory,
/// whether it was just created, whether its subtree is already journalled.
type Opened = (OwnedFd, Vec<u8>, Dir, bool, bool);

/// What one thread's walk of a group made.
struct Walked {
    conflicts: Vec<Conflict>,
    created: u64,
    dirs_created: u64,
    already: u64,
    result: Result<(), WalkError>,
}

fn run_extension(
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
    let chroot = env.root_path != Path::new("/");
    // A state directory outside ROOT (an initramfs's /run, moved into the
    // new root at switch-root) is made visible inside ROOT for the run only:
    // its top-level directory is bind-mounted over ROOT's, in a private
    // mount namespace of the child, so ROOT itself is not changed.
    let mut bind: Option<(std::ffi::CString, std::ffi::CString)> = None;
    if chroot && !env.state_in_root {
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
                    (Ok(a), Ok(b)) => bind = Some((a, b)),
                    _ => {
                        st.error = Some("path contains NUL".into());
                        return Some(st);
                    }
                }
            }
            (_, inside) => {
                st.error = Some(format!(
                    "the state directory is outside ROOT and {} is not a directory, so ExtensionRun cannot run inside ROOT",
                    inside.map(|i| i.display().to_string()).unwrap_or_default()
                ));
                return Some(st);
            }
        }
    }
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
    if chroot {
        let Ok(root_c) = sys::cpath(&env.root_path) else {
            st.error = Some("ROOT path contains NUL".into());
            return Some(st);
        };
        // SAFETY: only async-signal-safe system calls (unshare, mount,
        // chroot, chdir) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some((src, dst)) = &bind
                    && (libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                        || libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ) != 0)
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            st.error = Some(format!("cannot start: {e}"));
            return Some(st);
        }
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= timeout => {
                // The whole process group: what it started goes too.
                // SAFETY: kill(2) on the child's own process group.
                unsafe {
                    libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                }
                let _ = child.kill();
                st.timed_out = true;
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                st.error = Some(e.to_string());
                break None;
            }
        }
    };
    if let Some(s) = status {
        st.exit_code = s.code();
        st.signal = s.signal();
    }
    Some(st)
}

/// The outcome of unlinking one name.
pub type UnlinkResult = (String, Result<UnlinkReport, Error>);

/// Unlink the named extensions from ROOT. One result per name, in order.
pub fn unlink(
    names: &[String],
    root: &Path,
    state: Option<&Path>,
) -> Result<Vec<UnlinkResult>, Error> {
    let env = match open_env(root, state, false) {
        Ok(e) => e,
        Err(Error::NoState(_)) => {
            return Ok(names
                .iter()
                .map(|n| (n.clone(), Err(Error::NotLinked(n.clone()))))
                .collect());
        }
        Err(e) => return Err(e),
    };
    let lock = lock(&env)?;
    let out = names
        .iter()
        .map(|n| (n.clone(), unlink_state(&env, n, false)))
        .collect();
    remove_orphans(&env);
    cleanup_base(&env);
    drop(lock);
    Ok(out)
}

/// Hold the state directory's lock (`STATE/.lock`, flock) so that two
/// linkers never work on one ROOT at once.
fn lock(env: &Env) -> Result<std::fs::File, Error> {
    let p = env.state.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(ioe(&p))?;
    // SAFETY: flock on an open fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(ioe(&p)(io::Error::last_os_error()));
    }
    Ok(f)
}

/// Directories made by extensions that were unlinked while another
/// extension still had entries in them: removed once empty.
fn remove_orphans(env: &Env) {
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
        match sys::unlinkat(d.fd.as_raw_fd(), &c, true) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
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
fn cleanup_base(env: &Env) {
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
                let _ = sys::unlinkat(d.fd.as_raw_fd(), &c, true);
            }
        }
    }
}

/// Unlink one name, acting on its journal backwards. `undoing`: the
/// rollback of a refused link (the test hook [`TEST_ABORT_UNDO_ENV`] may
/// kill it after N removals).
fn unlink_state(env: &Env, name: &str, undoing: bool) -> Result<UnlinkReport, Error> {
    let counter = Counter::from_env(if undoing { TEST_ABORT_UNDO_ENV } else { "" });
    if !valid_name(name) {
        return Err(Error::Invalid {
            path: PathBuf::from(name),
            why: "not a valid extension name".into(),
        });
    }
    let sdir = env.state.join(name);
    if !sdir.is_dir() {
        return Err(Error::NotLinked(name.to_string()));
    }
    let mut rep = UnlinkReport {
        name: name.to_string(),
        ..Default::default()
    };
    let state_file = sdir.join("state.json");
    match std::fs::remove_file(&state_file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ioe(state_file)(e)),
    }
    let jpath = sdir.join("journal");
    let recs = match journal::read(&jpath, &env.content(name)) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ioe(&jpath)(e)),
    };
    let replaced_dir = sdir.join("replaced");
    let rfd = sys::open(
        &replaced_dir,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .ok();
    // 1. The symlinks, newest first (a symlink's directory is removed
    // only in step 2, a file moved aside is put back only then).
    let links: Vec<(&[u8], &[u8])> = recs
        .iter()
        .rev()
        .filter_map(|r| match r {
            Record::Link(p, t) => Some((p.as_slice(), t.as_slice())),
            _ => None,
        })
        .collect();
    let (removed, kept) = remove_links(&env.root, &links, &counter);
    rep.links_removed += removed;
    rep.kept.extend(kept);
    // 2. Files moved aside and directories, newest first.
    let mut cache = ParentCache::default();
    let mut unrestored = false;
    let mut orphans: Vec<Vec<u8>> = Vec::new();
    for r in recs.iter().rev() {
        match r {
            Record::Link(..) => {}
            Record::Replaced(p) => {
                let (parent, leaf) = split_parent(p);
                let Some(d) = cache.get(&env.root, parent) else {
                    continue;
                };
                let (Ok(c), Ok(aside), Ok(sib)) = (
                    sys::cstr(leaf),
                    sys::cstr(&aside_name(p)),
                    sys::cstr(&sibling_aside_name(leaf, name)),
                ) else {
                    continue;
                };
                let dfd = d.fd.as_raw_fd();
                let from = if let Some(rfd) = rfd
                    .as_ref()
                    .filter(|f| sys::fstatat(f.as_raw_fd(), &aside).is_ok())
                {
                    Some((rfd.as_raw_fd(), &aside))
                } else if sys::fstatat(dfd, &sib).is_ok() {
                    Some((dfd, &sib))
                } else {
                    None
                };
                if let Some((fd, n)) = from {
                    match sys::renameat_noreplace(fd, n, dfd, &c) {
                        Ok(()) => {
                            rep.restored += 1;
                            counter.tick();
                        }
                        Err(_) => {
                            unrestored = true;
                            rep.kept.push(slash(p));
                        }
                    }
                }
            }
            Record::Dir(p) => {
                let (parent, leaf) = split_parent(p);
                let Some(d) = cache.get(&env.root, parent) else {
                    continue;
                };
                let Ok(c) = sys::cstr(leaf) else { continue };
                // Only an empty, real directory goes (O_NOFOLLOW semantics:
                // unlinkat(AT_REMOVEDIR) never follows a symlink).
                match sys::unlinkat(d.fd.as_raw_fd(), &c, true) {
                    Ok(()) => {
                        rep.dirs_removed += 1;
                        cache.forget(p);
                        counter.tick();
                    }
                    // Still used (by another extension): removed later, once empty.
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => orphans.push(p.clone()),
                    Err(_) => {}
                }
            }
            Record::Source { .. } | Record::Mode(_) | Record::Undo(_) => {}
        }
    }
    drop(cache);
    drop(rfd);
    if !orphans.is_empty() {
        let mut text = String::new();
        for o in &orphans {
            text.push_str(&journal::escape(o));
            text.push('\n');
        }
        use std::io::Write;
        let op = env.state.join(ORPHANS_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&op)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(ioe(&op))?;
    }
    let mnt = sdir.join("mnt");
    if sys::is_mountpoint(&mnt) {
        rep.lazy_unmount = sys::umount(&mnt).map_err(ioe(&mnt))?;
    }
    if mnt.exists() {
        if sys::is_mountpoint(&mnt) {
            return Err(Error::Invalid {
                path: mnt,
                why: "still mounted".into(),
            });
        }
        let staged = recs.iter().rev().find_map(|r| match r {
            Record::Mode(m) => Some(m == "extract"),
            _ => None,
        });
        if staged == Some(true) {
            make_writable(&mnt);
            std::fs::remove_dir_all(&mnt).map_err(ioe(&mnt))?;
        } else {
            // A mount point: only ever an empty directory once unmounted
            // (or a staging killed before it was recorded).
            if std::fs::remove_dir(&mnt).is_err() {
                clear_dir(&mnt).map_err(ioe(&mnt))?;
                std::fs::remove_dir(&mnt).map_err(ioe(&mnt))?;
            }
        }
    }
    let _ = std::fs::remove_file(sdir.join("run.log"));
    if unrestored {
        // Keep the journal and the files that could not be put back.
        return Ok(rep);
    }
    let _ = std::fs::remove_dir(&replaced_dir);
    std::fs::remove_file(&jpath)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(ioe(&jpath))?;
    std::fs::remove_dir(&sdir).map_err(ioe(&sdir))?;
    Ok(rep)
}

/// Remove the symlinks `links` (path, target) that are still ours: the
/// number removed, and the paths kept because they are no longer ours.
/// Large sets are split into contiguous shares (a directory's entries stay
/// together) removed on up to four threads.
fn remove_links(root: &Root, links: &[(&[u8], &[u8])], counter: &Counter) -> (u64, Vec<String>) {
    let one = |share: &[(&[u8], &[u8])]| {
        let mut cache = ParentCache::default();
        let mut removed = 0u64;
        let mut kept = Vec::new();
        for &(p, t) in share {
            let (parent, leaf) = split_parent(p);
            let Some(d) = cache.get(root, parent) else {
                continue;
            };
            let Ok(c) = sys::cstr(leaf) else { continue };
            match sys::readlink_is(d.fd.as_raw_fd(), &c, t) {
                Ok(true) => {
                    if sys::unlinkat(d.fd.as_raw_fd(), &c, false).is_ok() {
                        removed += 1;
                        counter.tick();
                    }
                }
                Ok(false) => kept.push(slash(p)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(_) => {
                    // Present but not a symlink: not ours.
                    if sys::fstatat(d.fd.as_raw_fd(), &c).is_ok() {
                        kept.push(slash(p));
                    }
                }
            }
        }
        (removed, kept)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if threads < 2
        || links.len() < 2
        || (links.len() < PARALLEL_MIN_INODES as usize && !force_parallel())
    {
        return one(links);
    }
    let share = links.len().div_ceil(threads);
    let parts: Vec<(u64, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = links
            .chunks(share)
            .map(|c| s.spawn(move || one(c)))
            .collect();
        handles
            .into_iter()
            // A share whose thread panicked: its links stay (unlink again removes them).
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = (0, Vec::new());
    for (removed, kept) in parts {
        out.0 += removed;
        out.1.extend(kept);
    }
    out
}

/// What is linked into ROOT.
pub fn status(root: &Path, state: Option<&Path>) -> Result<Status, Error> {
    let env = match open_env(root, state, false) {
        Ok(e) => e,
        Err(Error::NoState(st)) => {
            let rp = std::fs::canonicalize(root).map_err(ioe(root))?;
            return Ok(Status {
                root: rp.display().to_string(),
                state: st.display().to_string(),
                extensions: Vec::new(),
                refused: Vec::new(),
            });
        }
        Err(e) => return Err(e),
    };
    let mut extensions = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&env.state)
        .map_err(ioe(&env.state))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    for n in names {
        let sdir = env.state.join(&n);
        if let Some(mut s) = std::fs::read(sdir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<ExtensionState>(&b).ok())
        {
            // A signer is only reported for the bytes that were checked.
            let now = std::fs::symlink_metadata(&s.source)
                .map(|m| identity(&m))
                .unwrap_or_default();
            if now != s.identity {
                s.changed_since_link = true;
                s.signer = None;
            }
            extensions.push(s);
            continue;
        }
        let recs = journal::read(&sdir.join("journal"), &env.content(&n)).unwrap_or_default();
        let (files, dirs) = count_present(&env.root, &recs);
        let source = recs
            .iter()
            .find_map(|r| {
                if let Record::Source { path, .. } = r {
                    Some(lossy(path))
                } else {
                    None
                }
            })
            .unwrap_or_default();
        let mode = recs
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Mode(m) if m == "bind" => Some(Mode::Bind),
                Record::Mode(m) if m == "extract" => Some(Mode::Extract),
                Record::Mode(_) => Some(Mode::Mount),
                _ => None,
            })
            .unwrap_or(Mode::Mount);
        let content = env.content(&n);
        extensions.push(ExtensionState {
            name: n,
            source,
            version: None,
            signer: None,
            mode,
            content: lossy(&content),
            files,
            dirs,
            conflicts: Vec::new(),
            run: None,
            complete: false,
            identity: String::new(),
            changed_since_link: false,
        });
    }
    let refused = std::fs::read(env.state.join(REFUSED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok(Status {
        root: env.root_path.display().to_string(),
        state: env.state.display().to_string(),
        extensions,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            extension_name(Path::new("/m/firmware.ExtensionImage")),
            "firmware"
        );
        assert_eq!(extension_name(Path::new("tools.raw")), "tools");
        assert_eq!(extension_name(Path::new("/m/overlay")), "overlay");
        assert_eq!(extension_name(Path::new(".raw")), ".raw");
        assert!(!valid_name(".raw"));
        assert!(!valid_name(""));
        assert!(valid_name("firmware-1.2"));
    }

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

    #[test]
    fn aside_names_are_flat() {
        assert_eq!(aside_name(b"etc/a b/c"), b"etc%2Fa%20b%2Fc".to_vec());
        assert_eq!(sibling_aside_name(b"x", "e"), b".x.sik-aside.e".to_vec());
    }

    /// The block after `<!-- vectors:NAME -->` in spec/link-state.md.
    fn vector_block(name: &str) -> String {
        let spec = include_str!("../../../spec/link-state.md");
        let start = spec
            .find(&format!("<!-- vectors:{name} -->"))
            .expect("marker");
        let rest = &spec[start..];
        let open = rest.find("```text\n").expect("block") + 8;
        let close = rest[open..].find("```").expect("end");
        rest[open..open + close].to_string()
    }

    /// A Rust byte-string literal `b"…"` with `\t`, `\n`, `\xNN`, `\\`, `\"`.
    fn byte_literal(s: &str) -> Vec<u8> {
        let inner = s
            .strip_prefix("b\"")
            .and_then(|s| s.strip_suffix('"'))
            .expect("literal");
        let b = inner.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                match b[i + 1] {
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'x' => {
                        out.push(u8::from_str_radix(&inner[i + 2..i + 4], 16).unwrap());
                        i += 2;
                    }
                    c => out.push(c),
                }
                i += 2;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn spec_vectors() {
        let block = vector_block("escape");
        let mut n = 0;
        for line in block.lines() {
            let (lit, want) = line.rsplit_once(char::is_whitespace).unwrap();
            let input = byte_literal(lit.trim());
            assert_eq!(journal::escape(&input), want, "{line}");
            assert_eq!(journal::unescape(want).unwrap(), input, "{line}");
            n += 1;
        }
        assert_eq!(n, 6);

        let text = vector_block("journal");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        std::fs::write(&p, text.strip_suffix('\n').unwrap()).unwrap();
        let recs = journal::read(&p, b"/run/sik/extensions/acme/mnt").unwrap();
        assert_eq!(recs.len(), 9);
        assert_eq!(
            recs[7],
            Record::Link(
                b"usr/share/acme/a b.txt".to_vec(),
                b"/run/sik/extensions/acme/mnt/usr/share/acme/a b.txt".to_vec()
            )
        );
        assert_eq!(
            recs[8],
            Record::Undo(
                "unusable image entry /usr/share/a\\0b: the name contains a NUL byte".into()
            )
        );
        let count = |f: fn(&Record) -> bool| recs.iter().filter(|r| f(r)).count();
        assert_eq!(count(|r| matches!(r, Record::Dir(_))), 2);
        assert_eq!(count(|r| matches!(r, Record::Link(..))), 3);
        assert_eq!(count(|r| matches!(r, Record::Replaced(_))), 1);
        assert_eq!(
            recs[4],
            Record::Link(
                b"usr/lib/firmware/acme/fw v2.bin".to_vec(),
                b"/run/sik/extensions/acme/mnt/lib/firmware/acme/fw v2.bin".to_vec()
            )
        );
        // Every record is written back exactly as in the spec.
        let mut again = format!("{}\n", journal::MAGIC);
        for r in &recs {
            again.push_str(&r.line_in(b"/run/sik/extensions/acme/mnt"));
        }
        assert!(text.starts_with(&again), "{again}");
        assert_eq!(aside_name(b"etc/hostname"), b"etc%2Fhostname".to_vec());
    }
}
