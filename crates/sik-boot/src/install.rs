//! `install`: make a disk image or a whole device into a boot medium without
//! mounting anything (layout v2, spec/medium.md): an MBR with DATA (exFAT by
//! default, or FAT32) from 1 MiB and a small FAT ESP (type 0xEF) at the
//! end, both filesystems written in user space, GRUB for BIOS and UEFI
//! ([`crate::bootchain`]), the medium's directories and a first grub.cfg
//! and initrd. `install --update` ([`update`]) rewrites only the boot chain
//! and `boot/sik/` of an existing medium; `install` refuses to erase an
//! existing medium unless forced ([`Options::force`]).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::bootchain::{self, ChainOptions};
use crate::error::{Error, Result};
use crate::medium::{DataFs, ESP_TYPE, Medium};
use sik_image::kind::ImageKind;

pub use crate::bootchain::{GRUB_MODULES, GRUB_MODULES_BIOS, GRUB_MODULES_EFI};

/// Start of the DATA partition in 512-byte sectors (1 MiB).
pub const PART_START_LBA: u64 = 2048;
/// Size of the ESP: room for GRUB or a Secure Boot chain (shim, MokManager,
/// GRUB), and enough clusters for FAT32.
pub const ESP_SIZE: u64 = 64 << 20;
/// Smallest DATA partition (FAT32 wants about 65525 clusters).
pub const MIN_DATA: u64 = 64 << 20;
/// Smallest medium accepted: 1 MiB gap, DATA, ESP.
pub const MIN_SIZE: u64 = (1 << 20) + MIN_DATA + ESP_SIZE;
/// Volume label of the ESP.
pub const ESP_LABEL: &str = "SIK-ESP";
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
/// Where Debian's grub-pc-bin and grub-efi-amd64-bin keep their files.
pub const GRUB_LIB: &str = "/usr/lib/grub";

/// Options of [`install`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of a new image (`None` for an existing image or device: keep its size).
    pub size: Option<u64>,
    /// Volume label of DATA.
    pub label: String,
    /// The sik binary for the first initrd.
    pub sik_binary: PathBuf,
    /// Directory holding `i386-pc/` and `x86_64-efi/` (default [`GRUB_LIB`]).
    pub grub_lib: PathBuf,
    /// DATA's filesystem.
    pub data_fs: DataFs,
    /// Erase a target that already holds a medium.
    pub force: bool,
    /// The Secure Boot chain (shim, MokManager, signed GRUB) instead of the
    /// unsigned GRUB image on the ESP. `update` keeps a medium's chain when
    /// this is `None` ([`crate::secure_boot::detect`]).
    pub secure_boot: Option<crate::secure_boot::Options>,
}

impl Options {
    /// Defaults: label `SIKBOOT`, exFAT DATA, GRUB from [`GRUB_LIB`], not
    /// forced; `size` for a new image.
    pub fn new(sik_binary: impl Into<PathBuf>, size: Option<u64>) -> Self {
        Options {
            size,
            label: "SIKBOOT".into(),
            sik_binary: sik_binary.into(),
            grub_lib: PathBuf::from(GRUB_LIB),
            data_fs: DataFs::Exfat,
            force: false,
            secure_boot: None,
        }
    }

    fn chain(&self) -> ChainOptions {
        ChainOptions {
            grub_lib: self.grub_lib.clone(),
            secure_boot: self.secure_boot.clone(),
        }
    }
}

/// Result of [`install`] and [`update`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The image or device.
    pub target: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// DATA's byte offset.
    pub partition_offset: u64,
    /// DATA's filesystem.
    pub data_fs: DataFs,
    /// DATA's filesystem UUID (what GRUB searches).
    pub data_uuid: Option<String>,
    /// The ESP's byte offset (`null`: EFI/ is on DATA, one-partition layout).
    pub esp_offset: Option<u64>,
    /// Size of GRUB's core.img in bytes.
    pub bios_core_bytes: u64,
    /// Size of BOOTX64.EFI in bytes.
    pub efi_bytes: u64,
    /// `install` or `update`.
    pub action: String,
    /// Secure Boot GRUB choice (`distro`, `own-key`), `null` without.
    pub secure_boot: Option<crate::secure_boot::Mode>,
    /// Every UEFI file placed on the ESP, with its checked size and source.
    pub uefi: Vec<crate::secure_boot::Placed>,
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

/// Build a GRUB image with grub-mkimage (`config`: an embedded configuration).
pub fn grub_mkimage(
    format: &str,
    prefix: &str,
    modules: &[&str],
    config: Option<&Path>,
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
    let mut cmd = Command::new("grub-mkimage");
    cmd.arg("-O")
        .arg(format)
        .arg("-d")
        .arg(&dir)
        .arg("-p")
        .arg(prefix)
        .arg("-o")
        .arg(out);
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    run(cmd.args(modules), "grub-mkimage")?;
    std::fs::read(out).map_err(|e| io(out, e))
}

/// What an existing medium on `target` holds, for the refusal message:
/// `None` when there is no medium of ours (no `boot/grub/grub.cfg` and no
/// `boot/sik/` on a readable DATA).
pub fn existing_medium(target: &Path) -> Option<String> {
    let m = Medium::open(target).ok()?;
    let ours =
        m.exists("boot/grub/grub.cfg").unwrap_or(false) || m.exists("boot/sik").unwrap_or(false);
    if !ours {
        return None;
    }
    let mut files = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for e in m.list(&dir).unwrap_or_default() {
            let rel = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            if e.is_dir {
                if stack.len() < 256 {
                    stack.push(rel);
                }
            } else if !rel.starts_with("boot/sik/")
                && !rel.starts_with("boot/grub/")
                && !rel.starts_with("EFI/")
            {
                files.push(rel);
            }
        }
    }
    files.sort();
    let shown: Vec<&str> = files.iter().take(8).map(String::as_str).collect();
    Some(if files.is_empty() {
        "a sik boot medium (no user files)".to_string()
    } else {
        format!(
            "a sik boot medium with {} user file(s): {}{}",
            files.len(),
            shown.join(", "),
            if files.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        )
    })
}

/// Install onto an image file (created or resized to `opts.size`) or a device.
/// An image file this call created is removed again when it fails. A target
/// that already holds a medium is refused unless `opts.force`.
pub fn install(target: &Path, opts: &Options) -> Result<Report> {
    if let Some(size) = opts.size.filter(|s| *s < MIN_SIZE) {
        return Err(Error::Refused(format!(
            "{size} bytes is too small for a medium (at least {MIN_SIZE}: DATA and a {ESP_SIZE}-byte ESP)"
        )));
    }
    if let Some(sb) = &opts.secure_boot {
        if sb.mode == crate::secure_boot::Mode::Distro && opts.data_fs == DataFs::Exfat {
            return Err(Error::Refused(crate::secure_boot::DISTRO_EXFAT.into()));
        }
        // The signed pieces are checked before the target is touched.
        crate::secure_boot::check_sources(sb)?;
    }
    if let Some(what) = existing_medium(target).filter(|_| !opts.force) {
        return Err(Error::Refused(format!(
            "{} already holds {what}; installing would erase them: use --update to refresh GRUB and boot/sik/ keeping every file, or --force to erase",
            target.display()
        )));
    }
    let existed = target.exists();
    let r = install_inner(target, opts);
    if r.is_err() && !existed {
        let _ = std::fs::remove_file(target);
    }
    r
}

/// Rewrite the boot chain (BIOS core.img, the ESP's files) and `boot/sik/`
/// plus grub.cfg of an existing medium; no user file is touched.
pub fn update(target: &Path, opts: &Options) -> Result<Report> {
    let m = Medium::open(target)?;
    if !m.exists("boot/grub/grub.cfg")? && !m.exists("boot/sik")? {
        return Err(Error::Medium {
            path: target.to_path_buf(),
            why: "not a sik boot medium (no boot/grub/grub.cfg, no boot/sik/); use install".into(),
        });
    }
    let mut chain_opts = opts.chain();
    if chain_opts.secure_boot.is_none() {
        // Keep the medium's Secure Boot chain: refreshed, not removed.
        chain_opts.secure_boot = crate::secure_boot::detect(&m.esp())?;
    }
    let chain = bootchain::write_boot_chain(&m, &chain_opts)?;
    crate::generate::generate(target, &crate::generate::Options::new(&opts.sik_binary))?;
    let size = match &m {
        Medium::Image { path, .. } => std::fs::File::open(path)
            .and_then(|mut f| f.seek(SeekFrom::End(0)))
            .map_err(|e| io(path, e))?,
        Medium::Dir(_) => 0,
    };
    let (partition_offset, esp_offset) = match &m {
        Medium::Image { offset, esp, .. } => (*offset, *esp),
        Medium::Dir(_) => (0, None),
    };
    Ok(Report {
        target: target.to_path_buf(),
        size,
        partition_offset,
        data_fs: m.data_fs().unwrap_or(DataFs::Fat32),
        data_uuid: chain.data_uuid,
        esp_offset,
        bios_core_bytes: chain.bios_core_bytes.unwrap_or(0),
        efi_bytes: chain.efi_bytes,
        action: "update".into(),
        secure_boot: chain.secure_boot,
        uefi: chain.uefi,
    })
}

/// A volume serial other than `avoid`, from the kernel's random source
/// (the clock when that cannot be read).
fn fresh_serial(avoid: u32) -> u32 {
    let mut b = [0u8; 4];
    let n = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|()| u32::from_le_bytes(b))
        .unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos())
        });
    if n == avoid { !n } else { n }
}

fn label_of(raw: &str) -> String {
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(11)
        .collect::<String>()
        .to_ascii_uppercase()
}

fn install_inner(target: &Path, opts: &Options) -> Result<Report> {
    // GRUB must be there before anything is touched.
    for (format, pkg) in [
        ("i386-pc", "grub-pc-bin"),
        ("x86_64-efi", "grub-efi-amd64-bin"),
    ] {
        let dir = opts.grub_lib.join(format);
        if !dir.join("moddep.lst").is_file() {
            return Err(Error::Tool {
                tool: "grub-mkimage".into(),
                why: format!(
                    "no GRUB modules for {format} in {} (install {pkg})",
                    dir.display()
                ),
            });
        }
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
            "{size} bytes is too small for a medium (at least {MIN_SIZE})"
        )));
    }
    let sectors = size / 512;
    if sectors > u64::from(u32::MAX) {
        return Err(Error::Refused(
            "larger than 2 TiB: MBR cannot describe it".into(),
        ));
    }
    // ESP at the end, aligned to 1 MiB; DATA from 1 MiB up to it.
    let esp_lba = (sectors - ESP_SIZE / 512) / PART_START_LBA * PART_START_LBA;
    let esp_sectors = sectors - esp_lba;
    let data_sectors = esp_lba - PART_START_LBA;

    let mut mbr = [0u8; 512];
    f.seek(SeekFrom::Start(0)).map_err(|e| io(target, e))?;
    let _ = f.read(&mut mbr).map_err(|e| io(target, e))?;
    // Boot code stays zero until the boot chain is written.
    mbr[..440].fill(0);
    // Disk signature (fixed: reproducible) and the partition table.
    mbr[440..444].copy_from_slice(&0x5349_4B31u32.to_le_bytes());
    mbr[444] = 0;
    mbr[445] = 0;
    mbr[446..510].fill(0);
    let data_type = match opts.data_fs {
        DataFs::Exfat => 0x07,
        DataFs::Fat32 => 0x0C,
    };
    let entry = |e: &mut [u8], boot: u8, ty: u8, lba: u64, n: u64| {
        e[0] = boot;
        e[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        e[4] = ty;
        e[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        e[8..12].copy_from_slice(&(lba as u32).to_le_bytes());
        e[12..16].copy_from_slice(&(n as u32).to_le_bytes());
    };
    entry(
        &mut mbr[446..462],
        0x80,
        data_type,
        PART_START_LBA,
        data_sectors,
    );
    entry(&mut mbr[462..478], 0x00, ESP_TYPE, esp_lba, esp_sectors);
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    f.seek(SeekFrom::Start(0)).map_err(|e| io(target, e))?;
    f.write_all(&mbr).map_err(|e| io(target, e))?;
    // The gap zeroed (a previous medium's core.img is not left behind).
    f.write_all(&vec![0u8; ((PART_START_LBA - 1) * 512) as usize])
        .map_err(|e| io(target, e))?;
    f.sync_all().map_err(|e| io(target, e))?;

    let label = label_of(&opts.label);
    let offset = PART_START_LBA * 512;
    match opts.data_fs {
        DataFs::Exfat => crate::mkfs::exfat(&f, target, offset, data_sectors * 512, &label)?,
        DataFs::Fat32 => crate::mkfs::fat(&f, target, offset, data_sectors, true, &label, None)?,
    }
    // The ESP's serial must differ from DATA's: GRUB finds DATA by it.
    let data_serial = {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 4];
        let at = match opts.data_fs {
            DataFs::Exfat => 100,
            DataFs::Fat32 => 67,
        };
        f.read_exact_at(&mut b, offset + at)
            .map_err(|e| io(target, e))?;
        u32::from_le_bytes(b)
    };
    let esp_serial = fresh_serial(data_serial);
    crate::mkfs::fat(
        &f,
        target,
        esp_lba * 512,
        esp_sectors,
        true,
        ESP_LABEL,
        Some(esp_serial),
    )?;
    drop(f);

    let m = Medium::open(target)?;
    for d in LAYOUT {
        m.mkdir_all(d)?;
    }
    let chain = bootchain::write_boot_chain(&m, &opts.chain())?;
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
        data_fs: opts.data_fs,
        data_uuid: chain.data_uuid,
        esp_offset: Some(esp_lba * 512),
        bios_core_bytes: chain.bios_core_bytes.unwrap_or(0),
        efi_bytes: chain.efi_bytes,
        action: "install".into(),
        secure_boot: chain.secure_boot,
        uefi: chain.uefi,
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
        ImageKind::Elf | ImageKind::Pe | ImageKind::Unknown => None,
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
