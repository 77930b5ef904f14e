//! `--extract`: staging the content into the state directory when it
//! cannot be mounted (no loop device, no squashfs driver, no privilege).

use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use backhand::{FilesystemReader, InnerNode};

fn lchown(p: &Path, uid: u32, gid: u32) {
    // Ownership is best effort: staging also works without privilege.
    let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
}

/// A relative path made only of normal components, or `None`.
fn safe_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

/// Extract the SquashFS tree of the image open as `image` (the checked
/// descriptor, not its path again) into the existing empty directory `dest`.
pub fn extract_image(image: &File, dest: &Path) -> Result<(), String> {
    let mut f = image.try_clone().map_err(|e| e.to_string())?;
    io::Seek::seek(&mut f, io::SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let fs = FilesystemReader::from_reader(BufReader::new(f))
        .map_err(|e| sik_image::squashfs::describe_error(&e))?;
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    for node in fs.files() {
        let Some(rel) = safe_rel(&node.fullpath) else {
            return Err(format!("unsafe path in image: {}", node.fullpath.display()));
        };
        let p = dest.join(&rel);
        let h = node.header;
        let mode = u32::from(h.permissions) & 0o7777;
        match &node.inner {
            InnerNode::Dir(_) => {
                if !rel.as_os_str().is_empty() {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&p)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                }
                lchown(&p, h.uid, h.gid);
                dirs.push((p, mode));
            }
            InnerNode::File(file) => {
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                let mut r = fs.file(file).reader();
                io::copy(&mut r, &mut out).map_err(|e| format!("{}: {e}", p.display()))?;
                lchown(&p, h.uid, h.gid);
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| e.to_string())?;
            }
            InnerNode::Symlink(l) => {
                std::os::unix::fs::symlink(&l.link, &p)
                    .map_err(|e| format!("{}: {e}", p.display()))?;
                lchown(&p, h.uid, h.gid);
            }
            // Device nodes, FIFOs and sockets are not staged.
            _ => {}
        }
    }
    for (p, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Copy the tree `src` into the existing empty directory `dest`.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let err = |p: &Path, e: io::Error| format!("{}: {e}", p.display());
    let mut dirs = Vec::new();
    let mut stack = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((s, d)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&s).map_err(|e| err(&s, e))?;
        dirs.push((d.clone(), meta.mode() & 0o7777));
        lchown(&d, meta.uid(), meta.gid());
        for e in std::fs::read_dir(&s).map_err(|e| err(&s, e))? {
            let e = e.map_err(|e| err(&s, e))?;
            let (sp, dp) = (e.path(), d.join(e.file_name()));
            let m = std::fs::symlink_metadata(&sp).map_err(|e| err(&sp, e))?;
            let ft = m.file_type();
            if ft.is_dir() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dp)
                    .map_err(|e| err(&dp, e))?;
                stack.push((sp, dp));
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&sp).map_err(|e| err(&sp, e))?;
                std::os::unix::fs::symlink(t, &dp).map_err(|e| err(&dp, e))?;
                lchown(&dp, m.uid(), m.gid());
            } else if ft.is_file() {
                std::fs::copy(&sp, &dp).map_err(|e| err(&dp, e))?;
                lchown(&dp, m.uid(), m.gid());
                std::fs::set_permissions(&dp, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                    .map_err(|e| err(&dp, e))?;
            }
        }
    }
    for (p, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(&p, e))?;
    }
    Ok(())
}
