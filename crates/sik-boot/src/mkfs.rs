//! Making the filesystems of a medium's partitions, in user space: FAT with
//! mtools' `mformat` at the partition's offset, exFAT with exfatprogs'
//! `mkfs.exfat` on a sparse scratch file of the partition's size whose
//! written extents are then copied into the partition (mkfs.exfat has no
//! offset option, and a partition node would need a loop device and root).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::medium::run_tool;

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// `mformat` a FAT filesystem (FAT32 with `fat32`) of `sectors` 512-byte
/// sectors at byte `offset` of `f` (the image or device `target`), with
/// volume serial `serial` when given (mformat otherwise derives it from the
/// clock, so two filesystems made in the same second get the same one and
/// GRUB's search by UUID could find the wrong one). mtools
/// format a scratch file of the partition's size (mformat cannot reach an
/// offset beyond what it takes for a block device's size); its written
/// extents are copied into place.
pub fn fat(
    f: &File,
    target: &Path,
    offset: u64,
    sectors: u64,
    fat32: bool,
    label: &str,
    serial: Option<u32>,
) -> Result<()> {
    let scratch = tempfile::NamedTempFile::new().map_err(|e| io(Path::new("/tmp"), e))?;
    scratch
        .as_file()
        .set_len(sectors * 512)
        .map_err(|e| io(scratch.path(), e))?;
    let img = scratch.path().to_string_lossy().into_owned();
    let mut cmd = Command::new("mformat");
    cmd.args(["-i", &img]);
    if fat32 {
        cmd.arg("-F");
    }
    if let Some(n) = serial {
        cmd.args(["-N", &format!("{n:08x}")]);
    }
    cmd.args([
        "-T",
        &sectors.to_string(),
        "-h",
        "255",
        "-s",
        "63",
        "-H",
        &(offset / 512).to_string(),
        "-v",
        label,
        "::",
    ]);
    run_tool(&mut cmd, "mformat")?;
    copy_extents(scratch.as_file(), scratch.path(), f, target, offset)?;
    f.sync_all().map_err(|e| io(target, e))
}

/// Make an exFAT filesystem of `len` bytes at byte `offset` of `f` (the
/// image or device `target`), labelled `label`.
pub fn exfat(f: &File, target: &Path, offset: u64, len: u64, label: &str) -> Result<()> {
    let scratch = tempfile::NamedTempFile::new().map_err(|e| io(Path::new("/tmp"), e))?;
    scratch
        .as_file()
        .set_len(len)
        .map_err(|e| io(scratch.path(), e))?;
    let tool = mkfs_exfat();
    let out = Command::new(&tool)
        .args(["-L", label])
        .arg(scratch.path())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Tool {
            tool: "mkfs.exfat".into(),
            why: format!("cannot run: {e} (install exfatprogs)"),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "mkfs.exfat".into(),
            why: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " "),
        });
    }
    copy_extents(scratch.as_file(), scratch.path(), f, target, offset)?;
    f.sync_all().map_err(|e| io(target, e))
}

fn mkfs_exfat() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            std::path::PathBuf::from("/usr/sbin"),
            std::path::PathBuf::from("/sbin"),
        ])
        .map(|d| d.join("mkfs.exfat"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "mkfs.exfat".into())
}

/// Copy the data extents of a sparse file to `offset` of `out` (holes are
/// skipped: the formatter wrote everything the filesystem reads).
fn copy_extents(
    src: &File,
    src_path: &Path,
    out: &File,
    out_path: &Path,
    offset: u64,
) -> Result<()> {
    use rustix::fs::SeekFrom;
    let len = src.metadata().map_err(|e| io(src_path, e))?.len();
    let mut pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while pos < len {
        let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(io(src_path, e.into())),
        };
        let hole = rustix::fs::seek(src, SeekFrom::Hole(data))
            .map_err(|e| io(src_path, e.into()))?
            .min(len);
        let mut at = data;
        while at < hole {
            let n = ((hole - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)
                .map_err(|e| io(src_path, e))?;
            out.write_all_at(&buf[..n], offset + at)
                .map_err(|e| io(out_path, e))?;
            at += n as u64;
        }
        pos = hole;
    }
    Ok(())
}
