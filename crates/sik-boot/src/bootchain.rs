//! The boot chain of a medium: every bootloader file, written by one
//! function, [`write_boot_chain`], that `install` and `install --update`
//! both call: GRUB's `boot.img` in the MBR and `core.img` in the gap before
//! the first partition (BIOS; images and devices only) and the ESP's
//! `EFI/BOOT/BOOTX64.EFI` (UEFI). Both GRUB images carry a small embedded
//! configuration that finds DATA by its filesystem UUID and reads
//! `boot/grub/grub.cfg` there, so GRUB reads exFAT or FAT DATA whichever
//! partition the firmware started it from. The Secure Boot chain (shim,
//! MokManager, a signed GRUB; [`crate::secure_boot`]) is a field of
//! [`ChainOptions`] and replaces the unsigned UEFI image here.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::install::{GRUB_LIB, grub_mkimage};
use crate::medium::Medium;

/// GRUB modules built into both images.
pub const GRUB_MODULES: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "fat",
    "exfat",
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
/// Where the UEFI image goes on the ESP (the removable-media path).
pub const EFI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The sector core.img starts at.
const CORE_LBA: u64 = 1;

/// What [`write_boot_chain`] writes.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Directory holding `i386-pc/` and `x86_64-efi/` (default [`GRUB_LIB`]).
    pub grub_lib: PathBuf,
    /// The Secure Boot chain (shim, MokManager, a signed GRUB) on the ESP
    /// instead of the unsigned GRUB image (`crate::secure_boot`).
    pub secure_boot: Option<crate::secure_boot::Options>,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions {
            grub_lib: PathBuf::from(GRUB_LIB),
            secure_boot: None,
        }
    }
}

/// What [`write_boot_chain`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Size of GRUB's core.img (`None`: a directory medium has no MBR).
    pub bios_core_bytes: Option<u64>,
    /// Size of `EFI/BOOT/BOOTX64.EFI`.
    pub efi_bytes: u64,
    /// The filesystem UUID the embedded configuration searches, if any.
    pub data_uuid: Option<String>,
    /// Files written on the ESP (paths relative to it).
    pub esp_files: Vec<String>,
    /// Secure Boot GRUB choice, `None` for the unsigned GRUB image.
    pub secure_boot: Option<crate::secure_boot::Mode>,
    /// Every UEFI file placed on the ESP with its checked size and source.
    pub uefi: Vec<crate::secure_boot::Placed>,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The configuration embedded in both GRUB images: find DATA by UUID and
/// take `boot/grub` there as the prefix (`normal` then reads grub.cfg).
/// Plain commands only: it runs before the normal mode's script parser.
pub fn embedded_config(uuid: Option<&str>) -> String {
    match uuid.filter(|u| crate::grub::uuid_ok(u)) {
        Some(u) => {
            format!("search --no-floppy --fs-uuid --set=root {u}\nset prefix=($root)/boot/grub\n")
        }
        None => String::new(),
    }
}

/// Write every bootloader file of a medium: BIOS boot code and core.img
/// (images and devices), the ESP's UEFI files. GRUB images are built first:
/// nothing is touched when GRUB is missing or core.img does not fit.
pub fn write_boot_chain(m: &Medium, opts: &ChainOptions) -> Result<ChainReport> {
    let tmp = tempfile::tempdir().map_err(|e| io(Path::new("/tmp"), e))?;
    let uuid = m.fs_uuid()?.filter(|u| crate::grub::uuid_ok(u));
    let cfg_path = tmp.path().join("embedded.cfg");
    std::fs::write(&cfg_path, embedded_config(uuid.as_deref())).map_err(|e| io(&cfg_path, e))?;
    let mut efi_mods: Vec<&str> = GRUB_MODULES.to_vec();
    efi_mods.extend_from_slice(GRUB_MODULES_EFI);
    let efi = grub_mkimage(
        "x86_64-efi",
        "/boot/grub",
        &efi_mods,
        Some(&cfg_path),
        &opts.grub_lib,
        &tmp.path().join("BOOTX64.EFI"),
    )?;
    // The Secure Boot chain is checked (and the own-key GRUB built) before
    // anything is written.
    let efi_path = tmp.path().join("BOOTX64.EFI");
    let uefi_chain = match &opts.secure_boot {
        Some(sb) => {
            if sb.mode == crate::secure_boot::Mode::Distro
                && m.data_fs() == Some(crate::medium::DataFs::Exfat)
            {
                return Err(Error::Refused(crate::secure_boot::DISTRO_EXFAT.into()));
            }
            crate::secure_boot::prepare(sb, &opts.grub_lib, tmp.path(), &cfg_path)?
        }
        None => crate::secure_boot::plain(&efi_path),
    };
    let bios = match m {
        Medium::Image { path, .. } => {
            let mut bios_mods: Vec<&str> = GRUB_MODULES.to_vec();
            bios_mods.extend_from_slice(GRUB_MODULES_BIOS);
            let core = grub_mkimage(
                "i386-pc",
                "(hd0,msdos1)/boot/grub",
                &bios_mods,
                Some(&cfg_path),
                &opts.grub_lib,
                &tmp.path().join("core.img"),
            )?;
            Some((path.clone(), core))
        }
        Medium::Dir(_) => None,
    };
    let bios_core_bytes = match &bios {
        Some((path, core)) => {
            write_bios(path, core, &opts.grub_lib)?;
            Some(core.len() as u64)
        }
        None => None,
    };
    let esp = m.esp();
    let uefi = crate::secure_boot::write_uefi_chain(&esp, &uefi_chain, uuid.as_deref())?;
    Ok(ChainReport {
        bios_core_bytes,
        efi_bytes: uefi
            .iter()
            .find(|p| p.path == EFI_PATH)
            .map_or(efi.len() as u64, |p| p.bytes),
        data_uuid: uuid,
        esp_files: uefi.iter().map(|p| p.path.clone()).collect(),
        secure_boot: uefi_chain.mode,
        uefi,
    })
}

/// GRUB's `boot.img` into the MBR (the partition table kept) and core.img
/// from sector 1, when it ends before every partition.
fn write_bios(target: &Path, core: &[u8], grub_lib: &Path) -> Result<()> {
    let boot_img_path = grub_lib.join("i386-pc/boot.img");
    let boot_img = std::fs::read(&boot_img_path).map_err(|e| io(&boot_img_path, e))?;
    if boot_img.len() != 512 {
        return Err(Error::Tool {
            tool: "boot.img".into(),
            why: format!("{} is not 512 bytes", boot_img_path.display()),
        });
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(|e| io(target, e))?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr).map_err(|e| io(target, e))?;
    if mbr[510..] != [0x55, 0xAA] {
        return Err(Error::Medium {
            path: target.to_path_buf(),
            why: "no MBR partition table (0x55AA missing)".into(),
        });
    }
    let first_lba = (0..4)
        .filter_map(|i| {
            let e = &mbr[446 + 16 * i..462 + 16 * i];
            let lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            (e[4] != 0 && lba != 0).then_some(u64::from(lba))
        })
        .min()
        .unwrap_or(0);
    let gap = first_lba.saturating_sub(CORE_LBA) * 512;
    if core.len() as u64 > gap {
        return Err(Error::Refused(format!(
            "GRUB core.img is {} bytes, more than the {gap} bytes before the first partition",
            core.len()
        )));
    }
    mbr[..440].copy_from_slice(&boot_img[..440]);
    // Kernel sector (LBA of core.img) at 0x5C, little-endian u64.
    mbr[0x5C..0x64].copy_from_slice(&CORE_LBA.to_le_bytes());
    // Skip the floppy drive check.
    mbr[0x66] = 0x90;
    mbr[0x67] = 0x90;
    // core.img first, then the boot code that points at it.
    let mut gap_bytes = vec![0u8; gap as usize];
    gap_bytes[..core.len()].copy_from_slice(core);
    f.seek(SeekFrom::Start(CORE_LBA * 512))
        .map_err(|e| io(target, e))?;
    f.write_all(&gap_bytes).map_err(|e| io(target, e))?;
    f.sync_all().map_err(|e| io(target, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| io(target, e))?;
    f.write_all(&mbr).map_err(|e| io(target, e))?;
    f.sync_all().map_err(|e| io(target, e))
}
