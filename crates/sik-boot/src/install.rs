//! `install`: make a disk image or a whole device into a boot medium without
//! mounting anything: an MBR with one bootable FAT32 partition at 1 MiB,
//! the FAT32 filesystem written in user space (mtools), GRUB for BIOS
//! (`boot.img` in the MBR, `core.img` from sector 1) and for UEFI (the
//! removable path `EFI/BOOT/BOOTX64.EFI`), the medium's directories and a
//! first grub.cfg and initrd.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::medium::Medium;
use sik_image::kind::ImageKind;

/// Start of the FAT32 partition in 512-byte sectors (1 MiB).
pub const PART_START_LBA: u64 = 2048;
/// Smallest medium accepted (FAT32 wants about 65525 clusters).
pub const MIN_SIZE: u64 = 64 << 20;
/// Directories every medium has (see spec/medium.md).
pub const LAYOUT: &[&str] = &[
    "boot/grub",
    "boot/iso",
    "boot/extensions/x86_64",
    "boot/customize/overlay",
    "boot/customize/initrd",
    "boot/keys",
    "boot/formats",
    "boot/sik",
    "Applications",
];
/// GRUB modules built into both images.
pub const GRUB_MODULES: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "fat",
    "iso9660",
    "loopback",
    "linux",
    "normal",
    "configfile",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "search_label",
    "echo",
    "serial",
    "terminal",
    "test",
    "probe",
    "regexp",
    "ls",
    "cat",
    "halt",
    "reboot",
];
/// Extra modules of the BIOS image.
pub const GRUB_MODULES_BIOS: &[&str] = &["biosdisk"];
/// Extra modules of the UEFI image.
pub const GRUB_MODULES_EFI: &[&str] = &["all_video", "efi_gop"];
/// Where Debian's grub-pc-bin and grub-efi-amd64-bin keep their files.
pub const GRUB_LIB: &str = "/usr/lib/grub";

/// Options of [`install`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of a new image (`None` for an existing image or device: keep its size).
    pub size: Option<u64>,
    /// Volume label of the FAT32 filesystem.
    pub label: String,
    /// The sik binary for the first initrd.
    pub sik_binary: PathBuf,
    /// Directory holding `i386-pc/` and `x86_64-efi/` (default [`GRUB_LIB`]).
    pub grub_lib: PathBuf,
}

impl Options {
    /// Defaults: label `SIKBOOT`, GRUB from [`GRUB_LIB`]; `size` for a new image.
    pub fn new(sik_binary: impl Into<PathBuf>, size: Option<u64>) -> Self {
        Options {
            size,
            label: "SIKBOOT".into(),
            sik_binary: sik_binary.into(),
            grub_lib: PathBuf::from(GRUB_LIB),
        }
    }
}

/// Result of [`install`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The image or device.
    pub target: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Partition offset in bytes.
    pub partition_offset: u64,
    /// Size of GRUB's core.img in bytes.
    pub bios_core_bytes: u64,
    /// Size of BOOTX64.EFI in bytes.
    pub efi_bytes: u64,
}

/// Parse sizes such as `2G`, `512M`, `1048576`, `1.5GiB`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let v = n * mult as f64;
    (0.0..1e18).contains(&v).then_some(v as u64)
}

/// Refuse a device that is mounted or used as swap (it or one of its partitions).
pub fn check_not_mounted(device: &Path) -> Result<()> {
    let canon = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let dev = canon.to_string_lossy().into_owned();
    for table in ["/proc/mounts", "/proc/swaps"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines() {
            let Some(src) = line.split_whitespace().next() else {
                continue;
            };
            let src_canon = std::fs::canonicalize(src)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| src.to_string());
            if src_canon == dev
                || (src_canon.starts_with(&dev)
                    && src_canon[dev.len()..]
                        .trim_start_matches('p')
                        .chars()
                        .all(|c| c.is_ascii_digit()))
            {
                return Err(Error::Refused(format!(
                    "{dev} is in use: {src_canon} appears in {table}"
                )));
            }
        }
    }
    Ok(())
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn run(cmd: &mut Command, tool: &str) -> Result<()> {
    crate::medium::run_tool(cmd, tool).map(drop)
}

/// Build a GRUB image with grub-mkimage.
pub fn grub_mkimage(
    format: &str,
    prefix: &str,
    modules: &[&str],
    grub_lib: &Path,
    out: &Path,
) -> Result<Vec<u8>> {
    let dir = grub_lib.join(format);
    if !dir.join("moddep.lst").is_file() {
        let pkg = if format == "i386-pc" {
            "grub-pc-bin"
        } else {
            "grub-efi-amd64-bin"
        };
        return Err(Error::Tool {
            tool: "grub-mkimage".into(),
            why: format!(
                "no GRUB modules for {format} in {} (install {pkg})",
                dir.display()
            ),
        });
    }
    run(
        Command::new("grub-mkimage")
            .arg("-O")
            .arg(format)
            .arg("-d")
            .arg(&dir)
            .arg("-p")
            .arg(prefix)
            .arg("-o")
            .arg(out)
            .args(modules),
        "grub-mkimage",
    )?;
    std::fs::read(out).map_err(|e| io(out, e))
}

/// Install onto an image file (created or resized to `opts.size`) or a device.
/// An image file this call created is removed again when it fails.
pub fn install(target: &Path, opts: &Options) -> Result<Report> {
    if let Some(size) = opts.size.filter(|s| *s < MIN_SIZE) {
        return Err(Error::Refused(format!(
            "{size} bytes is too small for a FAT32 medium (at least {MIN_SIZE})"
        )));
    }
    let existed = target.exists();
    let r = install_inner(target, opts);
    if r.is_err() && !existed {
        let _ = std::fs::remove_file(target);
    }
    r
}

fn install_inner(target: &Path, opts: &Options) -> Result<Report> {
    let tmp = tempfile::tempdir().map_err(|e| io(Path::new("/tmp"), e))?;
    // GRUB images first: nothing is touched when GRUB is missing.
    let mut bios_mods: Vec<&str> = GRUB_MODULES.to_vec();
    bios_mods.extend_from_slice(GRUB_MODULES_BIOS);
    let core = grub_mkimage(
        "i386-pc",
        "(hd0,msdos1)/boot/grub",
        &bios_mods,
        &opts.grub_lib,
        &tmp.path().join("core.img"),
    )?;
    let mut efi_mods: Vec<&str> = GRUB_MODULES.to_vec();
    efi_mods.extend_from_slice(GRUB_MODULES_EFI);
    let efi_path = tmp.path().join("BOOTX64.EFI");
    let efi = grub_mkimage(
        "x86_64-efi",
        "/boot/grub",
        &efi_mods,
        &opts.grub_lib,
        &efi_path,
    )?;
    let boot_img_path = opts.grub_lib.join("i386-pc/boot.img");
    let boot_img = std::fs::read(&boot_img_path).map_err(|e| io(&boot_img_path, e))?;
    if boot_img.len() != 512 {
        return Err(Error::Tool {
            tool: "boot.img".into(),
            why: format!("{} is not 512 bytes", boot_img_path.display()),
        });
    }
    let gap = (PART_START_LBA - 1) * 512;
    if core.len() as u64 > gap {
        return Err(Error::Refused(format!(
            "GRUB core.img is {} bytes, more than the {gap} bytes before the partition",
            core.len()
        )));
    }

    let is_device = std::fs::metadata(target).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device()
    });
    if is_device {
        check_not_mounted(target)?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(!is_device)
        .truncate(false)
        .open(target)
        .map_err(|e| io(target, e))?;
    if let Some(size) = opts.size.filter(|_| !is_device) {
        f.set_len(size).map_err(|e| io(target, e))?;
    }
    let size = f.seek(SeekFrom::End(0)).map_err(|e| io(target, e))?;
    if size < MIN_SIZE {
        return Err(Error::Refused(format!(
            "{size} bytes is too small for a FAT32 medium (at least {MIN_SIZE})"
        )));
    }
    let sectors = size / 512;
    let part_sectors = u32::try_from(sectors - PART_START_LBA)
        .map_err(|_| Error::Refused("larger than 2 TiB: MBR cannot describe it".into()))?;

    // MBR: GRUB's boot code, one bootable FAT32 (LBA) partition.
    let mut mbr = [0u8; 512];
    f.seek(SeekFrom::Start(0)).map_err(|e| io(target, e))?;
    let _ = f.read(&mut mbr).map_err(|e| io(target, e))?;
    mbr[..440].copy_from_slice(&boot_img[..440]);
    // Kernel sector (LBA of core.img) at 0x5C, little-endian u64.
    mbr[0x5C..0x64].copy_from_slice(&1u64.to_le_bytes());
    // Skip the floppy drive check.
    mbr[0x66] = 0x90;
    mbr[0x67] = 0x90;
    // Disk signature (fixed: reproducible) and the partition table.
    mbr[440..444].copy_from_slice(&0x5349_4B31u32.to_le_bytes());
    mbr[444] = 0;
    mbr[445] = 0;
    for b in &mut mbr[446..510] {
        *b = 0;
    }
    let e = &mut mbr[446..462];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[4] = 0x0C;
    e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&(PART_START_LBA as u32).to_le_bytes());
    e[12..16].copy_from_slice(&part_sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    f.seek(SeekFrom::Start(0)).map_err(|e| io(target, e))?;
    f.write_all(&mbr).map_err(|e| io(target, e))?;
    // core.img from sector 1; the rest of the gap zeroed.
    let mut gap_bytes = vec![0u8; gap as usize];
    gap_bytes[..core.len()].copy_from_slice(&core);
    f.write_all(&gap_bytes).map_err(|e| io(target, e))?;
    f.sync_all().map_err(|e| io(target, e))?;
    drop(f);

    // FAT32 in user space.
    let offset = PART_START_LBA * 512;
    let img = format!("{}@@{offset}", target.display());
    let label: String = opts
        .label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(11)
        .collect::<String>()
        .to_ascii_uppercase();
    run(
        Command::new("mformat").args([
            "-i",
            &img,
            "-F",
            "-T",
            &part_sectors.to_string(),
            "-h",
            "255",
            "-s",
            "63",
            "-H",
            &PART_START_LBA.to_string(),
            "-v",
            &label,
            "::",
        ]),
        "mformat",
    )?;
    let m = Medium::Image {
        path: target.to_path_buf(),
        offset,
    };
    m.mkdir_all("EFI/BOOT")?;
    m.copy_in(&efi_path, "EFI/BOOT/BOOTX64.EFI")?;
    for d in LAYOUT {
        m.mkdir_all(d)?;
    }
    let gen_opts = crate::generate::Options {
        sik_binary: opts.sik_binary.clone(),
        dry_run: false,
        timeout: 10,
    };
    crate::generate::generate(target, &gen_opts)?;
    Ok(Report {
        target: target.to_path_buf(),
        size,
        partition_offset: offset,
        bios_core_bytes: core.len() as u64,
        efi_bytes: efi.len() as u64,
    })
}

/// Where `add` puts a file: ISOs into `boot/iso/`, ExtensionImages
/// (SquashFS) into `boot/extensions/<arch>/`, AppImages into
/// `Applications/`. The kind comes from the file's contents (sik-image).
pub fn add_destination(kind: ImageKind, file_name: &str, arch: &str) -> Option<String> {
    match kind {
        ImageKind::Iso9660 => Some(format!("boot/iso/{file_name}")),
        ImageKind::SquashFs => Some(format!("boot/extensions/{arch}/{file_name}")),
        ImageKind::AppImage { .. } => Some(format!("Applications/{file_name}")),
        ImageKind::Elf | ImageKind::Unknown => None,
    }
}

/// Copy a file into a medium (directory or image) at its place; returns
/// the path relative to the medium.
pub fn add(file: &Path, medium: &Path, arch: &str) -> Result<String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !file.is_file() {
        return Err(Error::Refused(format!(
            "{}: not a regular file",
            file.display()
        )));
    }
    let kind = sik_image::kind::detect_path(file).map_err(|e| Error::Refused(e.to_string()))?;
    let Some(rel) = add_destination(kind, &name, arch) else {
        return Err(Error::Refused(format!(
            "{name}: {}, not an ISO, ExtensionImage or AppImage",
            kind.describe()
        )));
    };
    let m = Medium::open(medium)?;
    m.copy_in(file, &rel)?;
    Ok(rel)
}

/// Copy a file or a directory tree to `dest` (a path relative to the
/// medium) on a directory medium or an image. A file goes to `dest`, or
/// into it when `dest` ends with `/`; a directory's contents go below
/// `dest`. Returns the medium paths written.
pub fn add_to(src: &Path, medium: &Path, dest: &str) -> Result<Vec<String>> {
    let clean = dest.trim_start_matches('/');
    if clean.is_empty() && !src.is_dir() {
        return Err(Error::Refused("the destination needs a file name".into()));
    }
    if clean.split('/').any(|c| c == ".." || c == ".") {
        return Err(Error::Refused(format!(
            "{dest}: '.' and '..' are not allowed in a medium path"
        )));
    }
    let m = Medium::open(medium)?;
    let mut written = Vec::new();
    if src.is_dir() {
        let base = clean.trim_end_matches('/');
        if !base.is_empty() {
            m.mkdir_all(base)?;
        }
        for e in walkdir::WalkDir::new(src)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1)
        {
            let e = e.map_err(|e| Error::Io {
                path: src.to_path_buf(),
                source: e.into(),
            })?;
            let rel = e
                .path()
                .strip_prefix(src)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            let target = if base.is_empty() {
                rel
            } else {
                format!("{base}/{rel}")
            };
            if e.file_type().is_dir() {
                m.mkdir_all(&target)?;
            } else if e.file_type().is_file() {
                m.copy_in(e.path(), &target)?;
                written.push(target);
            } else {
                return Err(Error::Refused(format!(
                    "{}: only regular files and directories can be copied onto a FAT medium",
                    e.path().display()
                )));
            }
        }
    } else if src.is_file() {
        let target = if clean.ends_with('/') {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{clean}{name}")
        } else {
            clean.to_string()
        };
        m.copy_in(src, &target)?;
        written.push(target);
    } else {
        return Err(Error::Refused(format!(
            "{}: not a regular file or directory",
            src.display()
        )));
    }
    Ok(written)
}
