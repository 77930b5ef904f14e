//! Linking (`spec/link-state.md`, Sources and Linking): `link` itself, the
//! checks of each source (signature policy, owner, compatibility), the
//! read-only mount of its content, `link_one`, and the undo of a partial
//! link.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use sik_image::release::{ReleaseFields, release_path};

use crate::journal::{self, Journal, Record};
use crate::kernel;
use crate::mount::{mount_content, verity_device_name};
use crate::policy::{SigCheck, Trust};
use crate::report::{
    Conflict, ConflictKind, ExtensionState, LinkOptions, LinkReport, Linked, Mode, Refusal,
};
use crate::resolve;
use crate::run::{PARALLEL_MIN_INODES, RUN_SKIPPED, clear_dir, run_extension, statfs_files};
use crate::state::{
    Env, atomic_write, content_release, identity, lock, lossy, open_env, root_os_release,
    show_bytes, slash,
};
use crate::trigger;
use crate::unlink::unlink_state;
use crate::walk::Walker;
use crate::{Error, ORPHANS_FILE, REFUSED_FILE, extension_name, ioe, valid_name};
use crate::{compat, stage, sys};
use sik_image::verity::Descriptor;
use sik_verify::DataCheck;

/// Link `sources` (ExtensionImages or directories) into `opts.root`.
///
/// Each source is checked and linked on its own: one that is refused or
/// fails is reported in [`LinkReport::refused`] and the others are still
/// linked. Sources are processed sorted by name, so when two provide the
/// same path the first name wins. `Err` only when ROOT, the state
/// directory or the trust store cannot be used at all.
pub fn link(sources: &[PathBuf], opts: &LinkOptions) -> Result<LinkReport, Error> {
    let env = Env {
        test: opts.test.clone(),
        ..open_env(&opts.root, opts.state.as_deref(), true)?
    };
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
    let mut counter = Counter::new(opts.test.abort_after);
    report.undone = crate::unlink::complete_undos(&env);
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
    trigger::run_for_link(&env, &mut report);
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
pub(crate) fn root_trust_files(
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
    let mut fd = sys::dup_dir(env.root.fd.as_fd()).map_err(|e| format!("{}: {e}", shown()))?;
    let mut here: Vec<u8> = Vec::new();
    for c in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        here = resolve::join(&here, c);
        let cc = sys::cstr(c).map_err(|e| format!("{}: {e}", shown()))?;
        fd = match sys::openat(fd.as_fd(), &cc, sys::DIR_FLAGS) {
            Ok(fd) => fd,
            Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::LOOP | Errno::NOTDIR)) => {
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
        fd.as_fd(),
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
    )
    .map_err(|e| format!("{}: {e}", shown()))?;
    let entries = sys::read_dir_fd(dir.as_fd()).map_err(|e| match e {
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
        if sys::fstatat(dir.as_fd(), &c).is_ok_and(|st| sys::is_reg(&st)) {
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
pub(crate) fn linker_dirs(env: &Env) -> std::collections::HashSet<Vec<u8>> {
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

/// Counts changes made in ROOT; a test switch aborts after N of them.
pub(crate) struct Counter {
    pub(crate) changes: std::sync::atomic::AtomicU64,
    pub(crate) abort_after: Option<u64>,
}

impl Counter {
    /// A counter killing the process after `abort_after` changes, if set.
    pub(crate) fn new(abort_after: Option<u64>) -> Counter {
        Counter {
            changes: std::sync::atomic::AtomicU64::new(0),
            abort_after,
        }
    }

    pub(crate) fn tick(&self) {
        let done = self
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Some(n) = self.abort_after
            && done >= n
        {
            // A kill, as a crash or power loss would end the process.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

/// A source opened once, before anything is checked: an image's
/// descriptor (the signature is verified from it, the loop device is
/// attached to it, `--extract` reads it) or a directory's metadata.
pub(crate) struct Source {
    /// The image, open read-only; `None` for a directory.
    pub(crate) file: Option<std::fs::File>,
    /// Its metadata, from the descriptor.
    pub(crate) meta: std::fs::Metadata,
}

/// Open `src` without following a symlink in its last component.
pub(crate) fn open_source(src: &Path) -> Result<Source, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
        .open(src)
        .map_err(|e| match Errno::from_io_error(&e) {
            Some(Errno::LOOP) => "a symlink; sources are never followed through one".to_string(),
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
pub(crate) fn writable_by_others(meta: &std::fs::Metadata) -> Option<String> {
    let euid = rustix::process::geteuid().as_raw();
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
pub(crate) fn check_image(
    file: &std::fs::File,
    meta: &std::fs::Metadata,
    src: &Path,
    opts: &LinkOptions,
    trust: &Trust,
) -> Result<Option<String>, String> {
    check_image_with(file, meta, src, opts, trust, DataCheck::Full).map(|(s, _)| s)
}

/// [`check_image`] choosing how a dm-verity image's data is checked: with
/// [`DataCheck::Kernel`] a trusted image comes back with its descriptor
/// (its data unread), which must then be used through dm-verity.
pub(crate) fn check_image_with(
    file: &std::fs::File,
    meta: &std::fs::Metadata,
    src: &Path,
    opts: &LinkOptions,
    trust: &Trust,
    data: DataCheck,
) -> Result<(Option<String>, Option<Descriptor>), String> {
    let mut r = file;
    match sik_image::kind::detect(&mut r) {
        Ok(sik_image::kind::ImageKind::SquashFs) => {}
        Ok(k) => return Err(format!("not an ExtensionImage ({})", k.describe())),
        Err(e) => return Err(format!("cannot read: {e}")),
    }
    if let Some(why) = writable_by_others(meta) {
        return Err(why);
    }
    let (check, pending) = trust.check_with(file, src, data)?;
    Ok((
        match check {
            SigCheck::Trusted(s) => return Ok((Some(s), pending)),
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
        },
        None,
    ))
}

/// The whole-data check of an image first checked for use through
/// dm-verity, when dm-verity then could not be set up: a failure takes down
/// what this name had linked, as any failed check does.
fn full_check(
    env: &Env,
    name: &str,
    src: &Path,
    opened: &Source,
    opts: &LinkOptions,
    trust: &Trust,
) -> Result<(), String> {
    let Some(f) = &opened.file else {
        return Ok(());
    };
    if let Err(why) = check_image(f, &opened.meta, src, opts, trust) {
        let _ = unlink_state(env, name, false);
        return Err(why);
    }
    Ok(())
}

pub(crate) fn link_one(
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

    // A signed dm-verity image is checked block by block by the kernel
    // as it is read, where device-mapper can be had; else here, whole.
    let data_check = if opened.file.is_some() && !opts.test.no_mount && kernel::dm_available() {
        DataCheck::Kernel
    } else {
        DataCheck::Full
    };
    // 1. Signature policy, on the open file. A source that fails its
    // check while an earlier link of this name exists takes that link
    // down too: what is linked must be what passes the check now.
    let checked = match &opened.file {
        None if !trust.is_empty() && !opts.allow_directories => Err(
            "a directory, which carries no signature, while a trust store is in force (--allow-directories links it anyway)"
                .to_string(),
        ),
        None => Ok((None, None)),
        Some(f) => check_image_with(f, meta, src, opts, trust, data_check),
    };
    let (signer, pending) = match checked {
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
    let mut verified = match (&opened.file, &signer, &pending) {
        (None, _, _) => None,
        (Some(_), None, _) => Some("unsigned-allowed".to_string()),
        (Some(_), Some(_), Some(_)) => Some("dm-verity".to_string()),
        (Some(f), Some(_), None) => {
            let has_tree = f
                .try_clone()
                .ok()
                .and_then(|mut f| sik_image::signature::payload_of(&mut f).ok())
                .is_some_and(|p| p.verity.is_some());
            Some(if !has_tree {
                "whole-file".to_string()
            } else if opts.test.no_mount {
                "whole-file (dm-verity not used: not mounting)".to_string()
            } else {
                "whole-file (dm-verity not available: no device-mapper)".to_string()
            })
        }
    };
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
        let dm_name = verity_device_name(name);
        let mut mounted = match &pending {
            Some(d) => {
                let _ = kernel::dm_remove(&dm_name);
                mount_content(
                    src,
                    opened.file.as_ref(),
                    &mnt,
                    opts.test.no_mount,
                    Some((d, &dm_name)),
                )
            }
            None => mount_content(src, opened.file.as_ref(), &mnt, opts.test.no_mount, None),
        };
        if let (Err(e), Some(_)) = (&mounted, &pending) {
            // No dm-verity after all: the whole data is checked here
            // before the image is used any other way.
            let why = e.to_string();
            full_check(env, name, src, &opened, opts, trust)?;
            verified = Some(format!("whole-file (dm-verity failed: {why})"));
            clear_dir(&mnt).map_err(|e| format!("{}: {e}", mnt.display()))?;
            mounted = mount_content(src, opened.file.as_ref(), &mnt, opts.test.no_mount, None);
        }
        match mounted {
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
            sys::open(&mnt, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| e.to_string())?;
        // Large images: the top directory's subtrees on a few threads.
        let parallel = env.test.parallel || statfs_files(&content_fd) >= PARALLEL_MIN_INODES;
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
        // The triggers run once this run has linked every source; a link
        // that changed nothing keeps those of the link that made it.
        let triggers_due =
            created > 0 || dirs_created > 0 || previous.as_ref().is_none_or(|p| !p.complete);
        let triggers = if triggers_due {
            Vec::new()
        } else {
            previous
                .as_ref()
                .map(|p| p.triggers.clone())
                .unwrap_or_default()
        };
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
            verified: verified.clone(),
            triggers,
        };
        let doc = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
        atomic_write(&sdir.join("state.json"), &doc).map_err(|e| e.to_string())?;
        Ok(Linked {
            state,
            created,
            dirs_created,
            staged_because,
            replaced_previous,
            triggers_due,
        })
    })();
    result.map_err(|why| undo(env, name, journal, why))
}

/// Undo a refused or failed link of `name`: record why (`X`), so that a
/// kill from here on is completed by the next run, then remove what the
/// journal lists and unmount, as unlink does. Returns the reason to report.
pub(crate) fn undo(env: &Env, name: &str, journal: Journal, why: String) -> String {
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
