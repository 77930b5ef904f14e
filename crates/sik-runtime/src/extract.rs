//! Safe extraction of the embedded SquashFS into a directory.
//!
//! Every path is rebuilt from checked components below the target; an
//! existing component that is not a real directory (a symlink, a file) is
//! refused, files are created with `O_NOFOLLOW`, so extraction never writes
//! outside the target, whatever the image or the target already holds.
//! Set-user-ID and set-group-ID bits are dropped; devices, FIFOs and sockets
//! are skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use backhand::{FilesystemReader, InnerNode};

/// Open the SquashFS at `offset` in the open AppImage `file` (named
/// `image` in errors). Every block decompresses within its size bound
/// ([`crate::bounded`]).
pub fn open(file: &File, image: &Path, offset: u64) -> Result<FilesystemReader<'static>, String> {
    let f = file
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", image.display()))?;
    FilesystemReader::from_reader_with_offset_and_kind(
        BufReader::new(f),
        offset,
        crate::bounded::kind(),
    )
    .map_err(|e| {
        format!(
            "cannot read the SquashFS of {}: {}",
            image.display(),
            sik_image::squashfs::describe_error(&e)
        )
    })
}

/// The checked relative path of an image entry (`None` for the root).
fn relative(full: &Path) -> Result<Option<PathBuf>, String> {
    let mut rel = PathBuf::new();
    for c in full.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) if !n.as_bytes().contains(&b'/') && !n.is_empty() => rel.push(n),
            _ => return Err(format!("refusing unsafe path in image: {}", full.display())),
        }
    }
    Ok(if rel.as_os_str().is_empty() {
        None
    } else {
        Some(rel)
    })
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
pub fn extract(
    fs: &FilesystemReader,
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
    for node in fs.files() {
        let Some(rel) = relative(&node.fullpath)? else {
            continue;
        };
        if !wanted(&rel) {
            continue;
        }
        if let Some(parent) = rel.parent() {
            ensure_dir(dest, parent)?;
        }
        let target = dest.join(&rel);
        let mode = u32::from(node.header.permissions) & 0o1777;
        let mtime = UNIX_EPOCH + Duration::from_secs(u64::from(node.header.mtime));
        match &node.inner {
            InnerNode::Dir(_) => {
                ensure_dir(dest, &rel)?;
                dir_modes.push((target, mode, node.header.mtime));
            }
            InnerNode::File(f) => {
                clear(&target)?;
                let out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
                let mut w = BufWriter::with_capacity(1 << 17, out);
                let mut r = fs.file(f).reader();
                std::io::copy(&mut r, &mut w)
                    .map_err(|e| format!("cannot extract {}: {e}", rel.display()))?;
                let out = w
                    .into_inner()
                    .map_err(|e| format!("cannot write {}: {}", target.display(), e.error()))?;
                out.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("cannot set mode of {}: {e}", target.display()))?;
                let _ = out.set_modified(mtime);
            }
            InnerNode::Symlink(s) => {
                clear(&target)?;
                std::os::unix::fs::symlink(&s.link, &target)
                    .map_err(|e| format!("cannot create symlink {}: {e}", target.display()))?;
            }
            _ => continue,
        }
        on_entry(&rel);
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
