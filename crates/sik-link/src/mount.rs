//! Providing an image's or directory's content at the mount point of its
//! state directory: a read-only bind mount of a directory, a loop mount of
//! an image, or — for a signed image with a dm-verity tree whose data was
//! not read by the signature check — a mount of a device-mapper `verity`
//! device over the loop device, so the kernel checks every block read
//! (`spec/link-state.md`, "dm-verity").

use std::io;
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::MountFlags;
use sik_image::verity::Descriptor;

use crate::kernel;
use crate::report::Mode;
use crate::sys;

/// The name of the dm-verity device of extension `name`.
pub(crate) fn verity_device_name(name: &str) -> String {
    format!("sik-verity-{name}")
}

/// Provide the content at `mnt`: the image open as `file` on a loop
/// device, or (`file` is `None`) the directory `src` bind-mounted.
/// `no_mount`: the test switch failing it as without privilege.
pub(crate) fn mount_content(
    src: &Path,
    file: Option<&std::fs::File>,
    mnt: &Path,
    no_mount: bool,
    verity: Option<(&Descriptor, &str)>,
) -> io::Result<Mode> {
    if no_mount {
        return Err(io::Error::from(Errno::PERM));
    }
    let Some(file) = file else {
        sys::bind_readonly(src, mnt)?;
        return Ok(Mode::Bind);
    };
    let (dev, _devfd) = sys::loop_attach(file, src, 0)?;
    if let Some((d, name)) = verity {
        // The data and the tree through one loop device, checked by the
        // kernel block by block against the signed root hash.
        let st = rustix::fs::fstat(&_devfd)?;
        let loopdev = format!(
            "{}:{}",
            rustix::fs::major(st.st_rdev),
            rustix::fs::minor(st.st_rdev)
        );
        let (major, minor) =
            kernel::dm_verity_create(name, d.data_len() / 512, &d.dm_table_params(&loopdev))?;
        let dir = mnt.parent().unwrap_or(Path::new("/"));
        let mounted = kernel::dm_node(major, minor, dir).and_then(|node| {
            let r = sys::mount(
                &node,
                mnt,
                "squashfs",
                MountFlags::RDONLY | MountFlags::NODEV,
            );
            if node.starts_with(dir) {
                let _ = std::fs::remove_file(&node);
            }
            r
        });
        if let Err(e) = mounted {
            let _ = kernel::dm_remove(name);
            return Err(e);
        }
        return Ok(Mode::Mount);
    }
    // The loop device auto-clears when the mount goes away (or, if the
    // mount fails, when _devfd is closed).
    sys::mount(
        &dev,
        mnt,
        "squashfs",
        MountFlags::RDONLY | MountFlags::NODEV,
    )?;
    Ok(Mode::Mount)
}
