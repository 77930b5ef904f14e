//! `--extract`: staging the content into the state directory when it
//! cannot be mounted (no loop device, no squashfs driver, no privilege).

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

fn lchown(p: &Path, uid: u32, gid: u32) {
    // Ownership is best effort: staging also works without privilege.
    let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
}

/// Extract the SquashFS tree of the image open as `image` (the checked
/// descriptor, not its path again) into the existing empty directory
/// `dest`, with the host's extractor. Device nodes, FIFOs and sockets are
/// not staged (the mount it stands in for is `nodev`).
pub fn extract_image(image: &File, dest: &Path) -> Result<(), String> {
    let opts = sik_inspect::ExtractOptions {
        no_specials: true,
        ..Default::default()
    };
    sik_inspect::extract_open_in_place(image, dest, &opts)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
