//! Safe extraction of the embedded SquashFS into a directory.
//!
//! Every path is rebuilt from checked components below the target; an
//! existing component that is not a real directory (a symlink, a file) is
//! refused, files are created with `O_NOFOLLOW`, so extraction never writes
//! outside the target, whatever the image or the target already holds.
//! Set-user-ID and set-group-ID bits are dropped; devices, FIFOs and sockets
//! are skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use sik_image_lean::squashfs::{DataBuffers, FragmentCache, Image, InodeKind, walk};

pub use crate::fs::open_image as open;

/// Why extraction stopped: the image's fault (said with the image's
/// name by the caller), or a message already complete.
enum Fail {
    Image(sik_image_lean::Error),
    Other(String),
}

impl From<sik_image_lean::Error> for Fail {
    fn from(e: sik_image_lean::Error) -> Fail {
        Fail::Image(e)
    }
}

impl From<String> for Fail {
    fn from(e: String) -> Fail {
        Fail::Other(e)
    }
}

/// Make sure `dest/rel` is a real directory, creating missing components
/// without ever following a symlink.
fn ensure_dir(dest: &Path, rel: &Path) -> Result<(), String> {
    let mut p = dest.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "refusing to extract through {}: not a directory",
                    p.display()
                ));
            }
            Err(_) => std::fs::create_dir(&p)
                .map_err(|e| format!("cannot create {}: {e}", p.display()))?,
        }
    }
    Ok(())
}

/// Remove whatever non-directory sits at `p`.
fn clear(p: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(format!("cannot replace directory {}", p.display())),
        Ok(_) => {
            std::fs::remove_file(p).map_err(|e| format!("cannot replace {}: {e}", p.display()))
        }
        Err(_) => Ok(()),
    }
}

/// Extract the entries whose relative path `wanted` accepts into `dest`
/// (created when missing). `on_entry` sees each extracted relative path.
/// Entry names are plain names (sik-image refuses `.`, `..`, `/` and NUL
/// in them), so every path stays below `dest`.
pub fn extract(
    image: &Image<File>,
    dest: &Path,
    wanted: &dyn Fn(&Path) -> bool,
    on_entry: &mut dyn FnMut(&Path),
) -> Result<(), String> {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} exists and is not a directory", dest.display())),
        Err(_) => std::fs::create_dir_all(dest)
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?,
    }
    let mut dir_modes: Vec<(PathBuf, u32, u32)> = Vec::new();
    let mut meta = image.meta_cache();
    let mut bufs = DataBuffers::new(image);
    let frags = FragmentCache::default();
    let walked = walk(image, &mut meta, &mut |path: &[Vec<u8>], inode, _| {
        if path.is_empty() {
            return Ok(());
        }
        let rel: PathBuf = path
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect();
        if !wanted(&rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            ensure_dir(dest, parent)?;
        }
        let target = dest.join(&rel);
        let mode = u32::from(inode.mode) & 0o1777;
        let mtime = UNIX_EPOCH + Duration::from_secs(u64::from(inode.mtime));
        match &inode.kind {
            InodeKind::Dir(_) => {
                ensure_dir(dest, &rel)?;
                dir_modes.push((target, mode, inode.mtime));
            }
            InodeKind::File(f) => {
                clear(&target)?;
                let out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
                let mut w = BufWriter::with_capacity(1 << 17, out);
                image
                    .read_file(f, &mut bufs, &frags, &mut |b| w.write_all(b))
                    .map_err(|e| format!("cannot extract {}: {e}", rel.display()))?;
                let out = w
                    .into_inner()
                    .map_err(|e| format!("cannot write {}: {}", target.display(), e.error()))?;
                out.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("cannot set mode of {}: {e}", target.display()))?;
                let _ = out.set_modified(mtime);
            }
            InodeKind::Symlink(link) => {
                clear(&target)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(link), &target)
                    .map_err(|e| format!("cannot create symlink {}: {e}", target.display()))?;
            }
            _ => return Ok(()),
        }
        on_entry(&rel);
        Ok::<(), Fail>(())
    });
    match walked {
        Ok(()) => {}
        Err(Fail::Image(e)) => return Err(format!("cannot read the SquashFS: {e}")),
        Err(Fail::Other(e)) => return Err(e),
    }
    // Directory modes last (deepest first), so read-only directories were writable while filling.
    for (p, mode, mtime) in dir_modes.into_iter().rev() {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o700));
        if let Ok(d) = File::open(&p) {
            let _ = d.set_modified(UNIX_EPOCH + Duration::from_secs(u64::from(mtime)));
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
