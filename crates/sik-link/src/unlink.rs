//! Unlinking (`spec/link-state.md`, Unlinking): removes what the journal says
//! was made, puts moved files back, unmounts and removes the state.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::journal::{self, Record};
use crate::link::{Counter, linker_dirs};
use crate::report::{TestSwitches, UnlinkReport};
use crate::resolve::Root;
use crate::run::{PARALLEL_MIN_INODES, clear_dir, make_writable};
use crate::state::{Env, cleanup_base, lock, open_env, remove_orphans, slash};
use crate::sys;
use crate::trigger;
use crate::walk::{ParentCache, aside_name, sibling_aside_name, split_parent};
use crate::{Error, ORPHANS_FILE, ioe, valid_name};

/// The outcome of unlinking one name.
pub type UnlinkResult = (String, Result<UnlinkReport, Error>);

/// Unlink the named extensions from ROOT. One result per name, in order.
pub fn unlink(
    names: &[String],
    root: &Path,
    state: Option<&Path>,
) -> Result<Vec<UnlinkResult>, Error> {
    unlink_with(names, root, state, &TestSwitches::default())
}

/// [`unlink`] with the integration tests' switches (hidden options of `sik
/// unlink`).
#[doc(hidden)]
pub fn unlink_with(
    names: &[String],
    root: &Path,
    state: Option<&Path>,
    test: &TestSwitches,
) -> Result<Vec<UnlinkResult>, Error> {
    let env = match open_env(root, state, false) {
        Ok(e) => Env {
            test: test.clone(),
            ..e
        },
        Err(Error::NoState(_)) => {
            return Ok(names
                .iter()
                .map(|n| (n.clone(), Err(Error::NotLinked(n.clone()))))
                .collect());
        }
        Err(e) => return Err(e),
    };
    let lock = lock(&env)?;
    let made = linker_dirs(&env);
    let mut wanted = Vec::new();
    let mut out: Vec<UnlinkResult> = names
        .iter()
        .map(|n| {
            let needs = unlink_needs(&env, n, &made);
            let r = unlink_state(&env, n, false);
            if r.is_ok() {
                wanted.push((n.clone(), needs));
            }
            (n.clone(), r)
        })
        .collect();
    // The caches are rebuilt without the content just removed.
    let runs = trigger::run_all(&env, trigger::merge(wanted));
    for (n, r) in &mut out {
        if let Ok(rep) = r {
            rep.triggers = runs
                .iter()
                .filter(|t| t.extensions.contains(n))
                .cloned()
                .collect();
        }
    }
    remove_orphans(&env);
    cleanup_base(&env);
    drop(lock);
    Ok(out)
}

/// The triggers unlinking `name` needs: those its link recorded (skipped
/// again for the same reason), else, for a link that never completed,
/// what its journal's symlinks need.
fn unlink_needs(
    env: &Env,
    name: &str,
    made: &std::collections::HashSet<Vec<u8>>,
) -> std::collections::BTreeMap<trigger::Trigger, Option<String>> {
    if !valid_name(name) {
        return Default::default();
    }
    let sdir = env.state.join(name);
    if let Some(st) = std::fs::read(sdir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::report::ExtensionState>(&b).ok())
    {
        return st
            .triggers
            .into_iter()
            .map(|r| {
                let skip = (r.outcome == trigger::TriggerOutcome::Skipped).then_some(r.detail);
                (r.trigger, skip)
            })
            .collect();
    }
    let recs = journal::read(&sdir.join("journal"), &env.content(name)).unwrap_or_default();
    let all = trigger::TriggerKind::ALL.into_iter().collect();
    trigger::needs(&recs, made, &all, trigger::systemd_runs(env))
}

/// Finish the undoing of refused links that an earlier run began (its
/// journal holds `X`) and did not complete. Only incomplete links (no
/// `state.json`) are looked at, so a state directory of complete links
/// costs one stat per name.
pub(crate) fn complete_undos(env: &Env) -> Vec<crate::report::Refusal> {
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
                Record::Source { path, .. } => Some(crate::state::lossy(path)),
                _ => None,
            })
            .unwrap_or_default();
        let reason = match unlink_state(env, &n, true) {
            Ok(_) => reason,
            Err(e) => format!("{reason} (undoing failed again: {e})"),
        };
        out.push(crate::report::Refusal {
            name: n,
            source,
            reason,
        });
    }
    out
}

/// Unlink one name, acting on its journal backwards. `undoing`: the
/// rollback of a refused link (the test switch
/// [`TestSwitches::abort_undo_after`] may kill it after N removals).
pub(crate) fn unlink_state(env: &Env, name: &str, undoing: bool) -> Result<UnlinkReport, Error> {
    let counter = Counter::new(if undoing {
        env.test.abort_undo_after
    } else {
        None
    });
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
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
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
    let (removed, kept) = remove_links(&env.root, &links, &counter, env.test.parallel);
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
                let dfd = d.fd.as_fd();
                let from = if let Some(rfd) = rfd
                    .as_ref()
                    .filter(|f| sys::fstatat(f.as_fd(), &aside).is_ok())
                {
                    Some((rfd.as_fd(), &aside))
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
                match sys::unlinkat(d.fd.as_fd(), &c, true) {
                    Ok(()) => {
                        rep.dirs_removed += 1;
                        cache.forget(p);
                        counter.tick();
                    }
                    // Still used (by another extension): removed later, once empty.
                    Err(e) if Errno::from_io_error(&e) == Some(Errno::NOTEMPTY) => {
                        orphans.push(p.clone())
                    }
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
    // The dm-verity device a verity image was mounted through (deferred
    // removal: it goes when the last user closes it; its loop device then
    // clears itself).
    let _ = crate::kernel::dm_remove(&crate::mount::verity_device_name(name));
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
/// together) removed on up to four threads; `parallel` (a test switch)
/// splits any set of two or more.
pub(crate) fn remove_links(
    root: &Root,
    links: &[(&[u8], &[u8])],
    counter: &Counter,
    parallel: bool,
) -> (u64, Vec<String>) {
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
            match sys::readlink_is(d.fd.as_fd(), &c, t) {
                Ok(true) => {
                    if sys::unlinkat(d.fd.as_fd(), &c, false).is_ok() {
                        removed += 1;
                        counter.tick();
                    }
                }
                Ok(false) => kept.push(slash(p)),
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {}
                Err(_) => {
                    // Present but not a symlink: not ours.
                    if sys::fstatat(d.fd.as_fd(), &c).is_ok() {
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
    if threads < 2 || links.len() < 2 || (links.len() < PARALLEL_MIN_INODES as usize && !parallel) {
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
