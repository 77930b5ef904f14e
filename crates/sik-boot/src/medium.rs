//! Access to a boot medium: a directory (a mounted stick, or a tree being
//! prepared) or a disk image file (or device) whose first MBR partition,
//! DATA, holds an exFAT filesystem (read and written in user space by
//! [`crate::exfat`]) or a FAT filesystem (mtools and the fatfs reader), and
//! whose partition of type 0xEF, when there is one, is the ESP. No mounting.
//! This is the one place that knows where each partition is and how to
//! write to it: install, add, generate and `install --update` go through it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::dirfs;
use crate::error::{Error, Result};
use crate::exfat::{self, ExFat};

/// The largest file a FAT filesystem can hold: 4 GiB - 1 bytes.
pub const FAT_MAX_FILE: u64 = 0xFFFF_FFFF;
/// `statfs` type of the kernel's FAT filesystems (msdos, vfat).
const MSDOS_SUPER_MAGIC: u64 = 0x4d44;

/// The filesystem of an image's DATA partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFs {
    /// exFAT (the default of `sik boot install`): no file size limit that matters.
    Exfat,
    /// FAT32 (or FAT16/12 on a small image): files up to 4 GiB - 1 bytes.
    Fat32,
}

impl DataFs {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            DataFs::Exfat => "exfat",
            DataFs::Fat32 => "fat32",
        }
    }
}

/// A boot medium.
#[derive(Debug, Clone)]
pub enum Medium {
    /// A directory: the medium's root (holding both `EFI/` and `boot/`).
    Dir(PathBuf),
    /// A disk image or device.
    Image {
        /// The image file or device.
        path: PathBuf,
        /// Byte offset of the DATA partition (the first one).
        offset: u64,
        /// DATA's filesystem.
        fs: DataFs,
        /// Byte offset of the ESP (partition type 0xEF), `None` when the
        /// medium has none (a medium of the one-partition layout keeps
        /// `EFI/` on DATA).
        esp: Option<u64>,
    },
}

/// One directory entry of a medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MEntry {
    /// File name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Run an external tool (mtools, grub-mkimage) with no input; its stdout,
/// or its stderr folded into one line as the error. mtools are told to skip
/// their geometry checks, which partition images at an offset fail.
pub(crate) fn run_tool(cmd: &mut Command, tool: &str) -> Result<Vec<u8>> {
    let out = cmd
        .env("MTOOLS_SKIP_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| cannot_run(tool, &e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: tool.into(),
            why: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " "),
        });
    }
    Ok(out.stdout)
}

fn cannot_run(tool: &str, e: &std::io::Error) -> Error {
    let package = match tool {
        t if t.starts_with("grub") => "grub-common",
        "sbsign" => "sbsigntool",
        "openssl" => "openssl",
        _ => "mtools",
    };
    Error::Tool {
        tool: tool.into(),
        why: format!("cannot run: {e} (install {package})"),
    }
}

/// MBR partition type of the ESP.
pub const ESP_TYPE: u8 = 0xEF;

/// Byte offset of the first partition of an MBR disk image (0 for a FAT or
/// exFAT filesystem without a partition table).
pub fn first_partition_offset(image: &Path) -> Result<u64> {
    Ok(partitions(image)?.0)
}

/// Byte offsets of DATA (the first partition, or 0 without a partition
/// table) and of the ESP (the first partition of type 0xEF after it).
pub fn partitions(image: &Path) -> Result<(u64, Option<u64>)> {
    let mut mbr = [0u8; 512];
    let mut f = std::fs::File::open(image).map_err(|e| io_err(image, e))?;
    std::io::Read::read_exact(&mut f, &mut mbr).map_err(|e| io_err(image, e))?;
    // A filesystem without a partition table ("superfloppy").
    if &mbr[82..87] == b"FAT32"
        || &mbr[54..59] == b"FAT16"
        || &mbr[54..59] == b"FAT12"
        || exfat::is_exfat(&mbr)
    {
        return Ok((0, None));
    }
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(Error::Medium {
            path: image.to_path_buf(),
            why: "no MBR partition table (0x55AA missing)".into(),
        });
    }
    let e = &mbr[446..462];
    let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
    if e[4] == 0 || lba == 0 {
        return Err(Error::Medium {
            path: image.to_path_buf(),
            why: "the first partition entry is empty".into(),
        });
    }
    let esp = (1..4).find_map(|i| {
        let e = &mbr[446 + 16 * i..462 + 16 * i];
        let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        (e[4] == ESP_TYPE && lba != 0).then_some(u64::from(lba) * 512)
    });
    Ok((u64::from(lba) * 512, esp))
}

/// DATA's filesystem, from its boot sector.
fn data_fs(image: &Path, offset: u64) -> Result<DataFs> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(image).map_err(|e| io_err(image, e))?;
    let mut boot = [0u8; 512];
    f.read_exact_at(&mut boot, offset)
        .map_err(|e| io_err(image, e))?;
    Ok(if exfat::is_exfat(&boot) {
        DataFs::Exfat
    } else {
        DataFs::Fat32
    })
}

impl Medium {
    /// Open a directory or a disk image.
    pub fn open(path: &Path) -> Result<Self> {
        let md = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        if md.is_dir() {
            Ok(Medium::Dir(path.to_path_buf()))
        } else {
            let (offset, esp) = partitions(path)?;
            Ok(Medium::Image {
                path: path.to_path_buf(),
                offset,
                fs: data_fs(path, offset)?,
                esp,
            })
        }
    }

    /// DATA's filesystem (`None` for a directory).
    pub fn data_fs(&self) -> Option<DataFs> {
        match self {
            Medium::Image { fs, .. } => Some(*fs),
            Medium::Dir(_) => None,
        }
    }

    fn is_exfat(&self) -> bool {
        self.data_fs() == Some(DataFs::Exfat)
    }

    /// DATA's exFAT volume, opened for reading or for writing.
    fn exfat(&self, write: bool) -> Result<ExFat> {
        let (path, offset) = match self {
            Medium::Image { path, offset, .. } => (path, *offset),
            Medium::Dir(p) => {
                return Err(Error::Medium {
                    path: p.clone(),
                    why: "a directory medium has no exFAT volume of ours".into(),
                });
            }
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        ExFat::open(f, offset).map_err(|e| self.exfat_err("", e))
    }

    fn exfat_err(&self, rel: &str, e: std::io::Error) -> Error {
        let why = if rel.is_empty() {
            format!("exFAT: {e}")
        } else {
            format!("{rel}: {e}")
        };
        Error::Medium {
            path: self.path().to_path_buf(),
            why,
        }
    }

    /// The ESP as a medium of its own (FAT, written with mtools); the
    /// medium itself when it has no separate ESP (a directory, or an image
    /// of the one-partition layout whose DATA holds `EFI/`).
    pub fn esp(&self) -> Medium {
        match self {
            Medium::Image {
                path,
                esp: Some(off),
                ..
            } => Medium::Image {
                path: path.clone(),
                offset: *off,
                fs: DataFs::Fat32,
                esp: None,
            },
            m => m.clone(),
        }
    }

    /// The path given at opening.
    pub fn path(&self) -> &Path {
        match self {
            Medium::Dir(p) => p,
            Medium::Image { path, .. } => path,
        }
    }

    fn mtools_image(&self) -> Option<String> {
        match self {
            Medium::Image { path, offset, .. } => Some(format!("{}@@{offset}", path.display())),
            Medium::Dir(_) => None,
        }
    }

    fn mtool(&self, tool: &str, args: &[&str]) -> Result<Vec<u8>> {
        let img = self.mtools_image().unwrap_or_default();
        run_tool(Command::new(tool).arg("-i").arg(&img).args(args), tool)
    }

    /// Entries of a directory (relative path; missing directory: empty).
    pub fn list(&self, rel: &str) -> Result<Vec<MEntry>> {
        match self {
            Medium::Dir(root) => Ok(dirfs::list(root, rel)
                .map_err(|e| io_err(&root.join(rel), e))?
                .into_iter()
                .map(|(name, is_dir)| MEntry { name, is_dir })
                .collect()),
            Medium::Image { .. } if self.is_exfat() => {
                let fs = self.exfat(false)?;
                let mut v: Vec<MEntry> = fs
                    .list(rel)
                    .map_err(|e| self.exfat_err(rel, e))?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| MEntry {
                        name: e.name,
                        is_dir: e.is_dir,
                    })
                    .collect();
                v.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(v)
            }
            Medium::Image { .. } => {
                if !self.exists(rel)? {
                    return Ok(Vec::new());
                }
                let target = format!("::/{}", rel.trim_matches('/'));
                let out = self.mtool("mdir", &["-b", "-a", &target])?;
                let prefix = format!("{}/", target.trim_end_matches('/'));
                let mut v: Vec<MEntry> = String::from_utf8_lossy(&out)
                    .lines()
                    .filter_map(|l| l.strip_prefix(&prefix))
                    .filter(|n| !n.is_empty() && *n != "./" && *n != "../")
                    .map(|n| MEntry {
                        name: n.trim_end_matches('/').to_string(),
                        is_dir: n.ends_with('/'),
                    })
                    .collect();
                v.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(v)
            }
        }
    }

    /// Whether a path exists on the medium.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        match self {
            Medium::Dir(root) => dirfs::exists(root, rel).map_err(|e| io_err(&root.join(rel), e)),
            Medium::Image { .. } if self.is_exfat() => self
                .exfat(false)?
                .exists(rel)
                .map_err(|e| self.exfat_err(rel, e)),
            Medium::Image { .. } => {
                let target = format!("::/{}", rel.trim_matches('/'));
                let img = self.mtools_image().unwrap_or_default();
                let st = Command::new("mdir")
                    .args(["-b", "-i", &img, &target])
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_err(|e| cannot_run("mdir", &e))?;
                Ok(st.success())
            }
        }
    }

    /// A file's contents, `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Medium::Dir(root) => dirfs::read(root, rel).map_err(|e| io_err(&root.join(rel), e)),
            Medium::Image { .. } if self.is_exfat() => {
                let fs = self.exfat(false)?;
                match fs.stat(rel).map_err(|e| self.exfat_err(rel, e))? {
                    Some(e) if !e.is_dir => {
                        let mut v = Vec::new();
                        fs.open_file(rel)
                            .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut v))
                            .map_err(|e| self.exfat_err(rel, e))?;
                        Ok(Some(v))
                    }
                    _ => Ok(None),
                }
            }
            Medium::Image { .. } => {
                if !self.exists(rel)? {
                    return Ok(None);
                }
                let target = format!("::/{}", rel.trim_matches('/'));
                Ok(Some(self.mtool("mcopy", &["-n", &target, "-"])?))
            }
        }
    }

    /// Copy a whole directory of the medium to a temporary local directory
    /// (kept alive by the returned guard; absent when `rel` does not exist).
    /// On a directory medium no symlink on the way to `rel` is followed and
    /// symlinks inside it are copied as symlinks.
    pub fn local_tree(&self, rel: &str) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
        let tmp = tempfile::tempdir().map_err(|e| io_err(Path::new("/tmp"), e))?;
        let local = tmp.path().join("tree");
        match self {
            Medium::Dir(root) => {
                dirfs::copy_tree(root, rel, &local).map_err(|e| io_err(&root.join(rel), e))?;
                Ok((local, Some(tmp)))
            }
            Medium::Image { .. } if self.is_exfat() => {
                let fs = self.exfat(false)?;
                if fs.exists(rel).map_err(|e| self.exfat_err(rel, e))? {
                    self.exfat_copy_out(&fs, rel, &local, 0)?;
                }
                Ok((local, Some(tmp)))
            }
            Medium::Image { .. } => {
                if self.exists(rel)? {
                    let target = format!("::/{}", rel.trim_matches('/'));
                    let ls = local.to_string_lossy().into_owned();
                    self.mtool("mcopy", &["-s", "-n", "-o", "-Q", &target, &ls])?;
                }
                Ok((local, Some(tmp)))
            }
        }
    }

    /// Create a directory and its parents.
    pub fn mkdir_all(&self, rel: &str) -> Result<()> {
        match self {
            Medium::Dir(root) => dirfs::mkdir_all(root, rel)
                .map(drop)
                .map_err(|e| io_err(&root.join(rel), e)),
            Medium::Image { .. } if self.is_exfat() => self
                .exfat(true)?
                .mkdir_all(rel)
                .map_err(|e| self.exfat_err(rel, e)),
            Medium::Image { .. } => {
                let mut acc = String::new();
                for c in rel.split('/').filter(|c| !c.is_empty()) {
                    acc.push('/');
                    acc.push_str(c);
                    if !self.exists(&acc)? {
                        self.mtool("mmd", &[&format!("::{acc}")])?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Write a file atomically (directory medium: temporary file in the
    /// target directory, fsync, rename; image: mcopy of a complete local file).
    pub fn write(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        self.mkdir_all(parent)?;
        match self {
            Medium::Dir(root) => dirfs::write_with(root, rel, mode, |f| f.write_all(data))
                .map_err(|e| io_err(&root.join(rel), e)),
            Medium::Image { .. } if self.is_exfat() => {
                let mut fs = self.exfat(true)?;
                fs.write_file(rel, &mut &data[..], data.len() as u64)
                    .and_then(|()| fs.sync())
                    .map_err(|e| self.exfat_err(rel, e))
            }
            Medium::Image { .. } => {
                let mut tmp =
                    tempfile::NamedTempFile::new().map_err(|e| io_err(Path::new("/tmp"), e))?;
                tmp.write_all(data).map_err(|e| io_err(tmp.path(), e))?;
                tmp.flush().map_err(|e| io_err(tmp.path(), e))?;
                let ls = tmp.path().to_string_lossy().into_owned();
                self.mtool(
                    "mcopy",
                    &["-o", "-n", &ls, &format!("::/{}", rel.trim_matches('/'))],
                )?;
                Ok(())
            }
        }
    }

    /// Copy a local file onto the medium (atomically on a directory medium).
    /// A file that cannot be stored (over the filesystem's file size limit,
    /// more than the free space) is refused before anything is copied; after
    /// the copy the size on the medium is checked (a short copy is removed).
    pub fn copy_in(&self, src: &Path, rel: &str) -> Result<()> {
        let size = std::fs::metadata(src).map_err(|e| io_err(src, e))?.len();
        self.check_fits(src, size, rel)?;
        let parent = rel.rsplit_once('/').map_or("", |(d, _)| d);
        self.mkdir_all(parent)?;
        self.copy_in_unchecked(src, rel)?;
        let stored = self.file_size(rel)?.unwrap_or(0);
        if stored != size {
            if self.is_exfat() {
                let _ = self
                    .exfat(true)
                    .and_then(|mut fs| fs.remove_file(rel).map_err(|e| self.exfat_err(rel, e)));
            } else if let Medium::Image { .. } = self {
                let _ = self.mtool("mdel", &[&format!("::/{}", rel.trim_matches('/'))]);
            }
            return Err(Error::Medium {
                path: self.path().to_path_buf(),
                why: format!(
                    "{rel}: the copy of {} is incomplete: {stored} of {size} bytes on the medium; removed",
                    src.display()
                ),
            });
        }
        Ok(())
    }

    /// Free bytes of the medium's filesystem and its largest file size
    /// (`Some(FAT_MAX_FILE)` on FAT, `None`: no limit that matters).
    pub fn space(&self) -> Result<(u64, Option<u64>)> {
        match self {
            Medium::Image { .. } if self.is_exfat() => Ok((self.exfat(false)?.free_bytes(), None)),
            Medium::Image { path, offset, .. } => {
                let st = fat(path, *offset)?.stats().map_err(|e| io_err(path, e))?;
                let free = u64::from(st.free_clusters()) * u64::from(st.cluster_size());
                Ok((free, Some(FAT_MAX_FILE)))
            }
            Medium::Dir(root) => {
                let (free, fs_type) = dirfs::space(root).map_err(|e| io_err(root, e))?;
                Ok((free, (fs_type == MSDOS_SUPER_MAGIC).then_some(FAT_MAX_FILE)))
            }
        }
    }

    /// The size of a file on the medium, `None` when it does not exist.
    pub fn file_size(&self, rel: &str) -> Result<Option<u64>> {
        match self {
            Medium::Dir(root) => {
                dirfs::file_size(root, rel).map_err(|e| io_err(&root.join(rel), e))
            }
            Medium::Image { .. } if self.is_exfat() => Ok(self
                .exfat(false)?
                .stat(rel)
                .map_err(|e| self.exfat_err(rel, e))?
                .filter(|e| !e.is_dir)
                .map(|e| e.size)),
            Medium::Image { path, offset, .. } => {
                let fs = fat(path, *offset)?;
                let Ok(mut f) = fs.root_dir().open_file(rel.trim_matches('/')) else {
                    return Ok(None);
                };
                let n = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
                    .map_err(|e| io_err(path, e))?;
                Ok(Some(n))
            }
        }
    }

    /// Refuse a file of `size` bytes that the medium cannot store at `rel`
    /// (a file already there is replaced, so its size counts as free).
    fn check_fits(&self, src: &Path, size: u64, rel: &str) -> Result<()> {
        let (free, limit) = self.space()?;
        let refuse = |why: String| {
            Err(Error::Refused(format!(
                "{}: {size} bytes cannot be stored on {}: {why}; nothing was copied",
                src.display(),
                self.path().display()
            )))
        };
        if let (Medium::Image { .. }, Some(why)) = (
            self,
            rel.split('/')
                .filter(|c| !c.is_empty())
                .find_map(exfat::name_refused),
        ) {
            return refuse(format!("the medium's filesystem refuses the name: {why}"));
        }
        if let Some(limit) = limit.filter(|l| size > *l) {
            return refuse(format!(
                "larger than the FAT file size limit of 4 GiB - 1 ({limit} bytes)"
            ));
        }
        let replaced = self.file_size(rel).ok().flatten().unwrap_or(0);
        let available = free.saturating_add(replaced);
        if size > available {
            return refuse(format!("only {available} bytes are free"));
        }
        Ok(())
    }

    /// The copy itself, without the checks of [`Medium::copy_in`].
    fn copy_in_unchecked(&self, src: &Path, rel: &str) -> Result<()> {
        match self {
            Medium::Dir(root) => {
                let mut f = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
                dirfs::write_with(root, rel, 0o644, |out| std::io::copy(&mut f, out).map(drop))
                    .map_err(|e| io_err(&root.join(rel), e))
            }
            Medium::Image { .. } if self.is_exfat() => {
                let mut f = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
                let size = f.metadata().map_err(|e| io_err(src, e))?.len();
                let mut fs = self.exfat(true)?;
                fs.write_file(rel, &mut f, size)
                    .and_then(|()| fs.sync())
                    .map_err(|e| self.exfat_err(rel, e))
            }
            Medium::Image { .. } => {
                let ls = src.to_string_lossy().into_owned();
                self.mtool(
                    "mcopy",
                    &["-o", "-n", &ls, &format!("::/{}", rel.trim_matches('/'))],
                )?;
                Ok(())
            }
        }
    }
}

/// A read-only window onto the partition of a disk image, for the FAT
/// reader: reads and seeks are relative to the partition; writes are
/// discarded (nothing is changed through this view).
struct PartitionView {
    f: std::fs::File,
    start: u64,
    len: u64,
    pos: u64,
}

impl std::io::Read for PartitionView {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Seek;
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.f
            .seek(std::io::SeekFrom::Start(self.start + self.pos))?;
        let got = self.f.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl std::io::Write for PartitionView {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for PartitionView {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the partition start",
            )),
        }
    }
}

impl Medium {
    /// Run `f` on a reader of a file of the medium, without copying it:
    /// the file itself on a directory medium, the file inside the FAT
    /// filesystem of an image (read in place).
    pub fn with_reader<T>(&self, rel: &str, f: impl FnOnce(&mut dyn ReadSeek) -> T) -> Result<T> {
        match self {
            Medium::Dir(root) => {
                let mut file =
                    dirfs::open_file(root, rel).map_err(|e| io_err(&root.join(rel), e))?;
                Ok(f(&mut file))
            }
            Medium::Image { .. } if self.is_exfat() => {
                let fs = self.exfat(false)?;
                let mut r = fs.open_file(rel).map_err(|e| self.exfat_err(rel, e))?;
                Ok(f(&mut r))
            }
            Medium::Image { path, offset, .. } => {
                let fs = fat(path, *offset)?;
                let mut inner = fs
                    .root_dir()
                    .open_file(rel.trim_matches('/'))
                    .map_err(|e| Error::Medium {
                        path: path.clone(),
                        why: format!("{rel}: {e}"),
                    })?;
                Ok(f(&mut inner))
            }
        }
    }
}

/// The FAT filesystem of an image's partition, read in place.
fn fat(path: &Path, offset: u64) -> Result<fatfs::FileSystem<PartitionView>> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    // Seek, not metadata: a block device's metadata says 0 bytes.
    let total =
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| io_err(path, e))?;
    let view = PartitionView {
        f: file,
        start: offset,
        len: total.saturating_sub(offset),
        pos: 0,
    };
    fatfs::FileSystem::new(view, fatfs::FsOptions::new().update_accessed_date(false)).map_err(|e| {
        Error::Medium {
            path: path.to_path_buf(),
            why: format!("FAT filesystem: {e}"),
        }
    })
}

impl Medium {
    /// The filesystem UUID GRUB's `search --fs-uuid` knows the medium by:
    /// for an image the FAT volume serial (`XXXX-XXXX`); for a directory
    /// that is the root of a block device's filesystem, what `blkid` says
    /// of that device. `None` when there is none (a directory that is not
    /// a mount point, a filesystem without a block device, no blkid).
    pub fn fs_uuid(&self) -> Result<Option<String>> {
        match self {
            Medium::Image { .. } if self.is_exfat() => Ok(Some(self.exfat(false)?.uuid())),
            Medium::Image { path, offset, .. } => {
                let id = fat(path, *offset)?.volume_id();
                Ok(Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)))
            }
            Medium::Dir(root) => Ok(dir_fs_uuid(root)),
        }
    }
}

impl Medium {
    /// Copy a directory of the exFAT volume to a local directory.
    fn exfat_copy_out(&self, fs: &ExFat, rel: &str, local: &Path, depth: usize) -> Result<()> {
        if depth > 64 {
            return Err(self.exfat_err(rel, std::io::Error::other("directories nested too deep")));
        }
        std::fs::create_dir_all(local).map_err(|e| io_err(local, e))?;
        let entries = fs
            .list(rel)
            .map_err(|e| self.exfat_err(rel, e))?
            .unwrap_or_default();
        for e in entries {
            if e.name.contains('/') || e.name == "." || e.name == ".." || e.name.contains('\0') {
                continue;
            }
            let sub = format!("{}/{}", rel.trim_end_matches('/'), e.name);
            let dest = local.join(&e.name);
            if e.is_dir {
                self.exfat_copy_out(fs, &sub, &dest, depth + 1)?;
            } else {
                let mut r = fs.open_file(&sub).map_err(|e| self.exfat_err(&sub, e))?;
                let mut out = std::fs::File::create(&dest).map_err(|e| io_err(&dest, e))?;
                std::io::copy(&mut r, &mut out).map_err(|e| self.exfat_err(&sub, e))?;
            }
        }
        Ok(())
    }
}

/// The UUID of the filesystem whose root is `dir` (see [`Medium::fs_uuid`]).
fn dir_fs_uuid(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir).ok()?;
    let parent = std::fs::metadata(dir.join("..")).ok()?;
    // Only the root of a filesystem: GRUB's paths are from that root.
    if md.dev() == parent.dev() && md.ino() != parent.ino() {
        return None;
    }
    let dev = md.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    if name.contains('/') && name.contains("..") {
        return None;
    }
    let out = Command::new("blkid")
        .args(["-o", "value", "-s", "UUID"])
        .arg(format!("/dev/{name}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let uuid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !uuid.is_empty()).then_some(uuid)
}

/// `Read + Seek` as one object-safe trait.
pub trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

impl Medium {
    /// Remove a file of the medium: on a directory medium through
    /// [`dirfs::remove_file`] (no symlink followed), on an exFAT image with
    /// the exFAT writer, on a FAT image with `mdel`.
    pub fn remove(&self, rel: &str) -> Result<()> {
        match self {
            Medium::Dir(root) => {
                dirfs::remove_file(root, rel).map_err(|e| io_err(&root.join(rel), e))
            }
            Medium::Image { .. } if self.is_exfat() => {
                let mut fs = self.exfat(true)?;
                fs.remove_file(rel)
                    .and_then(|()| fs.sync())
                    .map_err(|e| self.exfat_err(rel, e))
            }
            Medium::Image { .. } => self
                .mtool("mdel", &[&format!("::/{}", rel.trim_matches('/'))])
                .map(drop),
        }
    }
}
