//! The UEFI boot chain of a medium: either the GRUB image `install` builds
//! (no Secure Boot), or, for PCs with Secure Boot on, a Microsoft-signed
//! shim, MokManager and a GRUB that shim accepts:
//!
//! * [`Mode::Distro`]: the distribution-signed GRUB (Debian's
//!   `grubx64.efi.signed`, monolithic, prefix `/EFI/debian`): nothing to
//!   enroll; it reads FAT only (no `exfat` module);
//! * [`Mode::OwnKey`]: a GRUB built with `grub-mkimage --sbat` and every
//!   module the medium needs, signed (sbsign) with a Machine Owner Key that
//!   sik generates and keeps outside the medium; its DER certificate goes
//!   onto the medium for one-time enrolment with MokManager.
//!
//! Debian's GRUB reads a stub config on the ESP (`EFI/debian/grub.cfg`), the
//! own-key GRUB carries the same commands as its embedded configuration
//! (as the unsigned image does): find DATA by filesystem UUID and run its
//! `boot/grub/grub.cfg`. Every file is checked before it is placed (a PE
//! EFI application; shim with a vendor certificate and SBAT; GRUB signed
//! and with SBAT) and its size on the medium after.
//! [`write_uefi_chain`] writes all of it, called by
//! [`crate::bootchain::write_boot_chain`] for `install` and `install --update`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sik_image::pe::{self, PeInfo, PeKind};

use crate::error::{Error, Result};
use crate::medium::{Medium, run_tool};

/// Debian's signed shim (package `shim-signed`).
pub const HOST_SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
/// Debian's signed MokManager (package `shim-helpers-amd64-signed`).
pub const HOST_MOKMANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
/// Debian's signed GRUB (package `grub-efi-amd64-signed`).
pub const HOST_SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
/// The removable-media path UEFI firmware starts.
pub const BOOTX64: &str = "EFI/BOOT/BOOTX64.EFI";
/// Where shim looks for the next stage and for MokManager.
pub const GRUBX64: &str = "EFI/BOOT/grubx64.efi";
/// MokManager, next to shim.
pub const MMX64: &str = "EFI/BOOT/mmx64.efi";
/// The stub config Debian's signed GRUB reads (its fixed prefix).
pub const DEBIAN_STUB: &str = "EFI/debian/grub.cfg";
/// The same stub next to GRUB: its embedded config sources
/// `$cmdpath/grub.cfg` when `[ -e $prefix ]` fails (seen under OVMF with
/// the ESP as second MBR partition: the prefix became `($root)/boot/grub`).
pub const CMDPATH_STUB: &str = "EFI/BOOT/grub.cfg";
/// Why distro mode refuses exFAT DATA.
pub const DISTRO_EXFAT: &str = "the distribution-signed GRUB cannot read exFAT (it has no exfat module and loads none under Secure Boot): use --data-fs fat32 (files up to 4 GiB - 1) or --secure-boot=own-key";
/// The MOK certificate on the medium (DER), for MokManager's "Enroll key
/// from disk".
pub const MOK_DER: &str = "EFI/sik/MOK.der";
/// Extra GRUB modules of the own-key image (beyond install's list).
pub const OWN_KEY_EXTRA_MODULES: &[&str] = &["exfat", "ext2", "ntfs", "chain", "squash4"];

/// Which GRUB sits behind shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The distribution-signed GRUB.
    Distro,
    /// A GRUB sik builds and signs with its own MOK.
    OwnKey,
}

/// Where the signed pieces come from and where the MOK is kept.
#[derive(Debug, Clone)]
pub struct Options {
    /// Distro or own-key GRUB.
    pub mode: Mode,
    /// The Microsoft-signed shim.
    pub shim: PathBuf,
    /// The signed MokManager.
    pub mokmanager: PathBuf,
    /// The distribution-signed GRUB (distro mode; own-key reads its SBAT
    /// generation).
    pub signed_grub: PathBuf,
    /// Directory holding the MOK (`MOK.key`, `MOK.crt`, `MOK.der`),
    /// created with a new key when it has none. Never on the medium.
    pub mok_dir: PathBuf,
}

impl Options {
    /// The host's package files and the default MOK directory.
    pub fn host(mode: Mode) -> Self {
        Options {
            mode,
            shim: HOST_SHIM.into(),
            mokmanager: HOST_MOKMANAGER.into(),
            signed_grub: HOST_SIGNED_GRUB.into(),
            mok_dir: default_mok_dir(),
        }
    }
}

/// `$XDG_DATA_HOME/sik/mok`, else `~/.local/share/sik/mok`, else
/// `/var/lib/sik/mok`.
pub fn default_mok_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("sik/mok");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/sik/mok"),
        None => PathBuf::from("/var/lib/sik/mok"),
    }
}

/// One file of the chain, ready to be placed.
#[derive(Debug, Clone)]
pub struct ChainFile {
    /// Path on the medium.
    pub path: String,
    /// The local file.
    pub local: PathBuf,
    /// Where it came from (a package path, "grub-mkimage + sbsign", …).
    pub source: String,
}

/// The complete UEFI chain to write.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The files, in the order they are written.
    pub files: Vec<ChainFile>,
    /// Secure Boot mode, `None` for the unsigned GRUB image.
    pub mode: Option<Mode>,
    /// Where the stub config goes (distro mode).
    pub stub: Option<&'static str>,
}

/// What [`write_uefi_chain`] placed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Placed {
    /// Path on the medium.
    pub path: String,
    /// Size on the medium (checked equal to the source).
    pub bytes: u64,
    /// Where it came from.
    pub source: String,
}

/// The plain (no Secure Boot) chain: one GRUB image as `BOOTX64.EFI`.
pub fn plain(grub_image: &Path) -> Chain {
    Chain {
        files: vec![ChainFile {
            path: BOOTX64.into(),
            local: grub_image.to_path_buf(),
            source: "grub-mkimage".into(),
        }],
        mode: None,
        stub: None,
    }
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Refused(format!("{}: {why}", path.display()))
}

/// Read and describe a PE file given as a chain source.
fn read_pe(path: &Path) -> Result<PeInfo> {
    let md = std::fs::metadata(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if md.len() > pe::MAX_PE_BYTES {
        return Err(refuse(path, pe::PeError::TooLarge(md.len())));
    }
    let data = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let info = pe::parse(&data).map_err(|e| refuse(path, e))?;
    if info.kind != PeKind::EfiApplication || info.machine != "x86_64" {
        return Err(refuse(path, "not an x86_64 EFI application"));
    }
    Ok(info)
}

/// Check that a file is a signed x86_64 EFI application with SBAT.
fn check_signed(path: &Path, what: &str) -> Result<PeInfo> {
    let info = read_pe(path)?;
    if info.signatures.is_empty() {
        return Err(refuse(path, format!("the {what} is not signed")));
    }
    if info.sbat.as_ref().is_none_or(|s| s.is_empty()) {
        return Err(refuse(
            path,
            format!("the {what} has no .sbat section (shim 15.3 and later refuse it)"),
        ));
    }
    Ok(info)
}

/// Check shim, MokManager and (distro) the signed GRUB as [`prepare`]
/// does, without building anything.
pub fn check_sources(opts: &Options) -> Result<()> {
    let shim = check_signed(&opts.shim, "shim")?;
    if shim
        .vendor_cert
        .as_ref()
        .is_none_or(|v| v.certificates.is_empty())
    {
        return Err(refuse(
            &opts.shim,
            "no .vendor_cert: not a shim (it would trust no GRUB)",
        ));
    }
    check_signed(&opts.mokmanager, "MokManager")?;
    if opts.mode == Mode::Distro {
        check_signed(&opts.signed_grub, "GRUB")?;
    }
    Ok(())
}

/// The Secure Boot chain an existing medium's ESP holds, with the host's
/// sources (what `install --update` refreshes it from): `None` without
/// MokManager next to `BOOTX64.EFI`; own-key when `EFI/sik/MOK.der` is
/// there, else distro.
pub fn detect(esp: &Medium) -> Result<Option<Options>> {
    if !esp.exists(MMX64)? {
        return Ok(None);
    }
    let mode = if esp.exists(MOK_DER)? {
        Mode::OwnKey
    } else {
        Mode::Distro
    };
    Ok(Some(Options::host(mode)))
}

/// Check the sources and build the Secure Boot chain in `work` (own-key:
/// the GRUB image is built and signed there; the MOK is created in
/// `opts.mok_dir` when it has none).
/// `embedded_cfg` is the configuration built into the own-key GRUB (the
/// one [`crate::bootchain::embedded_config`] writes).
pub fn prepare(opts: &Options, grub_lib: &Path, work: &Path, embedded_cfg: &Path) -> Result<Chain> {
    check_sources(opts)?;
    let mut files = vec![
        ChainFile {
            path: BOOTX64.into(),
            local: opts.shim.clone(),
            source: opts.shim.display().to_string(),
        },
        ChainFile {
            path: MMX64.into(),
            local: opts.mokmanager.clone(),
            source: opts.mokmanager.display().to_string(),
        },
    ];
    match opts.mode {
        Mode::Distro => {
            files.push(ChainFile {
                path: GRUBX64.into(),
                local: opts.signed_grub.clone(),
                source: opts.signed_grub.display().to_string(),
            });
            Ok(Chain {
                files,
                mode: Some(Mode::Distro),
                stub: Some(DEBIAN_STUB),
            })
        }
        Mode::OwnKey => {
            let mok = crate::mok::ensure(&opts.mok_dir)?;
            let grub = own_key_grub(opts, grub_lib, work, embedded_cfg, &mok)?;
            files.push(ChainFile {
                path: GRUBX64.into(),
                local: grub,
                source: "grub-mkimage --sbat, sbsign with the MOK".into(),
            });
            files.push(ChainFile {
                path: MOK_DER.into(),
                local: mok.der.clone(),
                source: mok.der.display().to_string(),
            });
            Ok(Chain {
                files,
                mode: Some(Mode::OwnKey),
                stub: None,
            })
        }
    }
}

/// The SBAT CSV of the own-key GRUB: the `sbat` and `grub` lines of the
/// distribution's signed GRUB when readable (the same upstream GRUB, so the
/// same generation shim's revocation level is compared with), plus a
/// `grub.sik` line naming this build.
pub fn own_sbat(signed_grub: &Path) -> String {
    let upstream = std::fs::read(signed_grub)
        .ok()
        .and_then(|d| pe::parse(&d).ok())
        .and_then(|i| i.sbat)
        .and_then(|s| s.into_iter().find(|e| e.component == "grub"));
    let grub = match upstream {
        Some(e) => format!(
            "grub,{},{},{},{},{}",
            e.generation, e.vendor, e.package, e.version, e.url
        ),
        None => {
            "grub,5,Free Software Foundation,grub,2.06,https://www.gnu.org/software/grub/".into()
        }
    };
    format!(
        "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n{grub}\ngrub.sik,1,SystemImageKit,grub,{},https://github.com/systemimagekit/sik\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn own_key_grub(
    opts: &Options,
    grub_lib: &Path,
    work: &Path,
    embedded_cfg: &Path,
    mok: &crate::mok::Mok,
) -> Result<PathBuf> {
    let sbat = work.join("sbat.csv");
    std::fs::write(&sbat, own_sbat(&opts.signed_grub)).map_err(|e| Error::Io {
        path: sbat.clone(),
        source: e,
    })?;
    let dir = grub_lib.join("x86_64-efi");
    let mut modules: Vec<&str> = crate::bootchain::GRUB_MODULES.to_vec();
    modules.extend_from_slice(crate::bootchain::GRUB_MODULES_EFI);
    modules.extend(
        OWN_KEY_EXTRA_MODULES
            .iter()
            .filter(|m| dir.join(format!("{m}.mod")).is_file()),
    );
    let unsigned = work.join("grubx64.unsigned.efi");
    run_tool(
        Command::new("grub-mkimage")
            .arg("-O")
            .arg("x86_64-efi")
            .arg("-d")
            .arg(&dir)
            .arg("-p")
            .arg("/boot/grub")
            .arg("-c")
            .arg(embedded_cfg)
            .arg("--sbat")
            .arg(&sbat)
            .arg("-o")
            .arg(&unsigned)
            .args(&modules),
        "grub-mkimage",
    )?;
    let signed = work.join("grubx64.efi");
    run_tool(
        Command::new("sbsign")
            .arg("--key")
            .arg(&mok.key)
            .arg("--cert")
            .arg(&mok.crt)
            .arg("--output")
            .arg(&signed)
            .arg(&unsigned),
        "sbsign",
    )?;
    check_signed(&signed, "own-key GRUB")?;
    Ok(signed)
}

/// The stub config Debian's signed GRUB reads from the ESP: find the data
/// filesystem by UUID and run its `boot/grub/grub.cfg`.
pub fn stub_config(data_uuid: &str) -> String {
    format!(
        "# Written by `sik boot install --secure-boot`: the GRUB behind shim reads this,\n\
         # finds the medium's data filesystem by UUID and runs its menu.\n\
         search --no-floppy --fs-uuid --set=root {data_uuid}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n"
    )
}

/// Write a UEFI chain onto the medium's ESP (`esp`): every file copied and
/// its size checked, then the stub config.
pub fn write_uefi_chain(m: &Medium, chain: &Chain, data_uuid: Option<&str>) -> Result<Vec<Placed>> {
    let mut placed = Vec::new();
    for f in &chain.files {
        m.copy_in(&f.local, &f.path)?;
        let bytes = m.file_size(&f.path)?.unwrap_or(0);
        placed.push(Placed {
            path: f.path.clone(),
            bytes,
            source: f.source.clone(),
        });
    }
    for stub in chain.stub.iter().flat_map(|s| [*s, CMDPATH_STUB]) {
        let uuid = data_uuid
            .filter(|u| crate::grub::uuid_ok(u))
            .ok_or_else(|| {
                Error::Refused(
                    "the medium has no filesystem UUID for the Secure Boot stub config".into(),
                )
            })?;
        let text = stub_config(uuid);
        m.write(stub, text.as_bytes(), 0o644)?;
        placed.push(Placed {
            path: stub.into(),
            bytes: text.len() as u64,
            source: "written by sik".into(),
        });
    }
    Ok(placed)
}

/// Who signed an ISO's kernel, and whether a shim would start it: the
/// per-ISO Secure Boot report of `sik boot detect`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IsoReport {
    /// Subject of each Authenticode signer of the kernel (its issuer when
    /// the signature does not carry the certificate); empty: unsigned.
    pub kernel_signers: Vec<String>,
    /// The vendor certificate of the ISO's own shim
    /// (`/EFI/BOOT/BOOTX64.EFI`), when it has one.
    pub iso_shim_vendor: Option<pe::CertInfo>,
    /// Whether the shim `install --secure-boot` places (its vendor
    /// certificate) vouches for the kernel's signer, by name.
    pub trusted_by_shim: bool,
    /// What to enroll once (MokManager) when the shim does not vouch for
    /// it: the ISO's shim vendor certificate, written to the medium as
    /// `EFI/sik/vendor-<sha256 prefix>.der`.
    pub enroll: Option<String>,
}

/// The vendor certificate of the shim `install --secure-boot` would place
/// (`shim`, normally [`HOST_SHIM`]), `None` when it cannot be read.
pub fn shim_vendor(shim: &Path) -> Option<pe::CertInfo> {
    let data = std::fs::read(shim).ok()?;
    pe::parse(&data)
        .ok()?
        .vendor_cert?
        .certificates
        .into_iter()
        .next()
}

/// Read the kernel at `kernel` and the ISO's `/EFI/BOOT/BOOTX64.EFI` from
/// an ISO (user space, bounded) and say who signed the kernel and whether
/// `anchor` (the installed shim's vendor certificate) vouches for it.
pub fn iso_report<R: std::io::Read + std::io::Seek>(
    iso: &mut sik_image::iso9660::Iso<R>,
    kernel: &str,
    anchor: Option<&pe::CertInfo>,
) -> std::result::Result<IsoReport, String> {
    let data = iso
        .read_file(kernel, pe::MAX_PE_BYTES)
        .map_err(|e| format!("{kernel}: {e}"))?;
    let info = pe::parse(&data).map_err(|e| format!("{kernel}: {e}"))?;
    let kernel_signers = info
        .signatures
        .iter()
        .map(|s| match &s.signer {
            Some(c) => c.subject.clone(),
            None => format!("(certificate not included; issued by {})", s.signer_issuer),
        })
        .collect();
    let trusted_by_shim =
        anchor.is_some_and(|a| info.signatures.iter().any(|s| pe::anchored_by(s, a)));
    let iso_shim_vendor = ["/EFI/BOOT/BOOTX64.EFI", "/efi/boot/bootx64.efi"]
        .iter()
        .find_map(|p| iso.read_file(p, pe::MAX_PE_BYTES).ok())
        .and_then(|d| pe::parse(&d).ok())
        .and_then(|i| i.vendor_cert)
        .and_then(|v| v.certificates.into_iter().next());
    let enroll = match (&iso_shim_vendor, trusted_by_shim) {
        (_, true) => None,
        (Some(v), false) if info.signatures.iter().any(|s| pe::anchored_by(s, v)) => Some(format!(
            "the ISO's shim vendor certificate {} (EFI/sik/vendor-{}.der)",
            v.subject,
            &v.sha256[..16]
        )),
        (_, false) if info.signatures.is_empty() => {
            Some("nothing can be enrolled for an unsigned kernel under shim; boot it with Secure Boot off".into())
        }
        (_, false) => Some("the certificate of the kernel's signer (none found on the ISO)".into()),
    };
    Ok(IsoReport {
        kernel_signers,
        iso_shim_vendor,
        trusted_by_shim,
        enroll,
    })
}

/// On a Secure Boot medium (MokManager on the ESP): read each detected
/// ISO's kernel signers against the medium's shim; for an ISO whose kernel
/// that shim does not vouch for but whose own shim's vendor certificate
/// does, write that certificate to the ESP as `EFI/sik/vendor-<sha256
/// prefix>.der` for one-time enrolment (not with `dry_run`). Returns one
/// line per ISO that needs something enrolled (for `generate`'s warnings).
pub fn medium_enrolment(
    m: &Medium,
    isos: &[crate::generate::IsoResult],
    dry_run: bool,
) -> Result<Vec<String>> {
    let esp = m.esp();
    if !esp.exists(MMX64)? {
        return Ok(Vec::new());
    }
    let anchor = esp
        .read(BOOTX64)?
        .and_then(|d| pe::parse(&d).ok())
        .and_then(|i| i.vendor_cert)
        .and_then(|v| v.certificates.into_iter().next());
    let mut lines = Vec::new();
    for iso in isos {
        let crate::detect::Outcome::Detected(d) = &iso.outcome else {
            continue;
        };
        let Some(kernel) = d.kernel.as_deref() else {
            continue;
        };
        let report = m.with_reader(&iso.path, |r| {
            sik_image::iso9660::Iso::new(r)
                .map_err(|e| e.to_string())
                .and_then(|mut i| iso_report(&mut i, kernel, anchor.as_ref()))
        })?;
        let Ok(report) = report else {
            continue;
        };
        let Some(enroll) = &report.enroll else {
            continue;
        };
        if let Some(v) = report.iso_shim_vendor.as_ref().filter(|_| !dry_run) {
            esp.write(
                &format!("EFI/sik/vendor-{}.der", &v.sha256[..16]),
                &v.der,
                0o644,
            )?;
        }
        lines.push(format!(
            "{}: Secure Boot: kernel signed by {}; the medium's shim does not vouch for it: enroll {enroll} with MokManager (menu entry \"Enroll a Secure Boot key\")",
            iso.path,
            if report.kernel_signers.is_empty() {
                "nobody (unsigned)".to_string()
            } else {
                report.kernel_signers.join(", ")
            }
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_finds_the_data_filesystem_by_uuid() {
        let s = stub_config("1234-ABCD");
        assert!(s.contains("search --no-floppy --fs-uuid --set=root 1234-ABCD\n"));
        assert!(s.contains("configfile ($root)/boot/grub/grub.cfg\n"));
    }

    #[test]
    fn own_sbat_has_the_sbat_and_grub_lines() {
        let s = own_sbat(Path::new("/nonexistent"));
        let v = pe::parse_sbat(s.as_bytes()).unwrap();
        assert_eq!(v[0].component, "sbat");
        assert_eq!(v[1].component, "grub");
        assert_eq!(v[2].component, "grub.sik");
    }
}
