//! Inspection and extraction of images.
//!
//! [`inspect`] says what a file is (ExtensionImage, AppImage type 1/2,
//! ISO 9660) and the facts users ask about; [`list`] walks the tree of an
//! ExtensionImage or of the SquashFS inside an AppImage; [`extract`] writes
//! that tree into a directory without ever leaving it. All SquashFS reading
//! goes through `sik-image`'s streaming reader ([`sik_image::squashfs::Image`]),
//! so memory is bounded by the largest directory and the files in flight,
//! not by the image; all format facts come from `sik-image`.
//!
//! ```no_run
//! let report = sik_inspect::inspect("firmware.ExtensionImage".as_ref()).unwrap();
//! println!("{}", report.kind);
//! ```

#![forbid(unsafe_code)]

mod extract;
pub mod tree;

use std::fs::File;
use std::path::{Path, PathBuf};

use sik_image::desktop::DesktopEntry;
use sik_image::elf::{self, ElfLayout};
use sik_image::kind::{self, ImageKind};
use sik_image::release::{RELEASE_DIR, ReleaseFields};
use sik_image::squashfs::{
    self, DataBuffers, FileData, FragmentCache, Image, Inode, InodeKind, SuperblockFacts,
};

pub use extract::{ExtractOptions, ExtractReport, extract, extract_open_in_place};
pub use tree::{Entry, EntryType, list, list_each};

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a known image.
    #[error("not a known image (no SquashFS, AppImage, ISO 9660 or PE magic)")]
    Unknown,
    /// The file claims a format but is broken.
    #[error("{0}")]
    Malformed(String),
    /// The operation does not apply to this kind of file.
    #[error("{0}")]
    Unsupported(String),
    /// Extraction would leave the target directory or overwrite.
    #[error("{0}")]
    Unsafe(String),
}

impl From<sik_image::Error> for Error {
    fn from(e: sik_image::Error) -> Self {
        match e {
            sik_image::Error::Io { source, .. } | sik_image::Error::Stream(source) => {
                Error::Io(source)
            }
            other => Error::Malformed(other.to_string()),
        }
    }
}

/// Everything `sik inspect` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// Human name of the kind.
    pub kind: String,
    /// File length.
    pub file_len: u64,
    /// Facts of an ExtensionImage or SquashFS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<ExtensionFacts>,
    /// Facts of an AppImage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appimage: Option<AppImageFacts>,
    /// Facts of an ISO 9660 image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iso: Option<IsoFacts>,
    /// Facts of a PE/COFF boot file (shim, GRUB, kernel): sections, SBAT,
    /// vendor certificate, Authenticode signers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pe: Option<sik_image::pe::PeInfo>,
}

/// Facts of an ExtensionImage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtensionFacts {
    /// Superblock facts.
    pub squashfs: SquashfsSummary,
    /// Extension name from the extension-release file name.
    pub name: Option<String>,
    /// Extension-release fields.
    pub release: ReleaseFields,
    /// The distribution packages the image was made from (`SIK_PACKAGES`).
    pub packages: Vec<sik_image::release::PackageFact>,
    /// Whether an executable `ExtensionRun` is at the root.
    pub extension_run: bool,
    /// Whether systemd-sysext would accept the image, and why not.
    pub sysext: SysextVerdict,
    /// Bytes after the padded filesystem (where a signature block lives).
    pub trailing_bytes: u64,
    /// The embedded signatures (not checked against a trust store: that is `sik verify`).
    pub signature: SignatureFacts,
}

/// What an image carries in its signature place.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignatureFacts {
    /// `unsigned`, `signed` or `malformed`.
    pub state: String,
    /// Fingerprints (`SHA256:…`) of the signers' keys, in block order.
    pub signers: Vec<String>,
    /// Message hash of each signature.
    pub hashes: Vec<String>,
    /// Why the block is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Read the embedded signatures of an ExtensionImage or type 2 AppImage.
pub fn signature_facts(f: &mut File) -> Result<SignatureFacts, Error> {
    use sik_image::signature::{Embedded, payload_of, read_embedded};
    let payload = payload_of(f)?;
    Ok(match read_embedded(f, &payload)? {
        Embedded::Unsigned => SignatureFacts {
            state: "unsigned".into(),
            signers: vec![],
            hashes: vec![],
            why: None,
        },
        Embedded::Malformed(why) => SignatureFacts {
            state: "malformed".into(),
            signers: vec![],
            hashes: vec![],
            why: Some(why),
        },
        Embedded::Signatures(sigs) => SignatureFacts {
            state: "signed".into(),
            signers: sigs.iter().map(|s| s.fingerprint()).collect(),
            hashes: sigs.iter().map(|s| s.hash_alg.clone()).collect(),
            why: None,
        },
    })
}

/// Superblock facts in the form the report uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SquashfsSummary {
    /// Compressor name.
    pub compression: String,
    /// Data block size.
    pub block_size: u32,
    /// Number of inodes.
    pub inodes: u32,
    /// Bytes used by the filesystem.
    pub bytes_used: u64,
    /// Creation time, seconds since the epoch.
    pub created: u32,
    /// Creation time as `YYYY-MM-DD HH:MM:SS` UTC.
    pub created_utc: String,
    /// Fragment blocks.
    pub fragments: u32,
    /// Whether an xattr table is present.
    pub xattrs: bool,
}

impl From<&SuperblockFacts> for SquashfsSummary {
    fn from(f: &SuperblockFacts) -> Self {
        SquashfsSummary {
            compression: f
                .compression
                .map(|c| c.name().to_string())
                .unwrap_or_else(|| format!("unknown ({})", f.compression_id)),
            block_size: f.block_size,
            inodes: f.inode_count,
            bytes_used: f.bytes_used,
            created: f.mod_time,
            created_utc: tree::format_time(i64::from(f.mod_time), true),
            fragments: f.fragment_count,
            xattrs: f.has_xattrs,
        }
    }
}

/// systemd-sysext compatibility.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SysextVerdict {
    /// Whether the image is a valid systemd-sysext image.
    pub compatible: bool,
    /// Why (or why not).
    pub reason: String,
}

/// Facts of an AppImage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppImageFacts {
    /// 1 or 2.
    pub image_type: u8,
    /// Offset of the payload (end of the ELF runtime).
    pub payload_offset: u64,
    /// Runtime size in bytes (= payload offset).
    pub runtime_size: u64,
    /// Architecture of the runtime.
    pub arch: String,
    /// Update information from `.upd_info`.
    pub update_info: Option<String>,
    /// Whether `.sha256_sig` holds a signature.
    pub signature_present: bool,
    /// Whether the reserved sections exist.
    pub reserved_sections: Vec<String>,
    /// SquashFS facts of a type 2 payload.
    pub squashfs: Option<SquashfsSummary>,
    /// Desktop entry keys Name, Exec, Icon (and the file's name).
    pub desktop: Option<DesktopFacts>,
}

/// The facts of an AppImage's desktop entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DesktopFacts {
    /// The `.desktop` file at the AppImage root.
    pub file: String,
    /// `Name=`.
    pub name: Option<String>,
    /// `Exec=`.
    pub exec: Option<String>,
    /// `Icon=`.
    pub icon: Option<String>,
}

/// Facts of an ISO 9660 image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IsoFacts {
    /// Volume label.
    pub label: Option<String>,
}

/// Open the SquashFS of an image (at `offset`) for streaming reading.
pub fn open_squashfs(path: &Path, offset: u64) -> Result<Image<File>, Error> {
    open_squashfs_file(File::open(path)?, offset)
}

/// [`open_squashfs`] of the file open as `f`.
fn open_squashfs_file(f: File, offset: u64) -> Result<Image<File>, Error> {
    Image::open(f, offset).map_err(|e| match e {
        sik_image::Error::Malformed { why, .. } => Error::Malformed(format!("SquashFS: {why}")),
        other => other.into(),
    })
}

/// Every entry of the image in path order: its path relative to the root
/// (lossy UTF-8, empty for the root) and its inode.
fn each_entry(
    img: &Image<File>,
    f: &mut dyn FnMut(&str, &Inode) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut cache = img.meta_cache();
    squashfs::walk(img, &mut cache, &mut |path, inode, _| {
        let p = path
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/");
        f(&p, inode)
    })
}

/// Where the SquashFS of an image starts: 0 for an ExtensionImage, the end
/// of the ELF runtime for a type 2 AppImage.
pub fn squashfs_offset(path: &Path) -> Result<u64, Error> {
    squashfs_offset_of(&mut File::open(path)?)
}

/// [`squashfs_offset`] of the file open as `f`.
fn squashfs_offset_of(f: &mut File) -> Result<u64, Error> {
    match kind::detect(f)? {
        ImageKind::SquashFs => Ok(0),
        ImageKind::AppImage { image_type: 2 } => Ok(elf::read_layout(f)?.end),
        ImageKind::AppImage { .. } => Err(Error::Unsupported(
            "type 1 AppImages carry an ISO 9660 payload, not SquashFS".into(),
        )),
        ImageKind::Unknown | ImageKind::Elf => Err(Error::Unknown),
        ImageKind::Pe => Err(Error::Unsupported(
            "a PE/COFF file has no SquashFS tree".into(),
        )),
        ImageKind::Iso9660 => Err(Error::Unsupported(
            "an ISO 9660 image has no SquashFS tree".into(),
        )),
    }
}

/// Inspect a file.
pub fn inspect(path: &Path) -> Result<Report, Error> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let k = kind::detect(&mut f)?;
    let mut report = Report {
        path: path.to_path_buf(),
        kind: k.describe().to_string(),
        file_len,
        extension: None,
        appimage: None,
        iso: None,
        pe: None,
    };
    match k {
        ImageKind::SquashFs => report.extension = Some(extension_facts(path, &mut f, file_len)?),
        ImageKind::AppImage { image_type } => {
            report.appimage = Some(appimage_facts(path, &mut f, image_type)?)
        }
        ImageKind::Iso9660 => {
            let iso = sik_image::iso9660::Iso::new(&mut f)
                .map_err(|e| Error::Malformed(e.to_string()))?;
            report.iso = Some(IsoFacts {
                label: Some(iso.label().to_string()),
            });
        }
        ImageKind::Pe => {
            if file_len > sik_image::pe::MAX_PE_BYTES {
                return Err(Error::Malformed(
                    sik_image::pe::PeError::TooLarge(file_len).to_string(),
                ));
            }
            let mut data = Vec::new();
            std::io::Seek::rewind(&mut f)?;
            std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut f, sik_image::pe::MAX_PE_BYTES),
                &mut data,
            )?;
            report.pe =
                Some(sik_image::pe::parse(&data).map_err(|e| Error::Malformed(e.to_string()))?);
        }
        ImageKind::Elf | ImageKind::Unknown => return Err(Error::Unknown),
    }
    Ok(report)
}

fn extension_facts(path: &Path, f: &mut File, file_len: u64) -> Result<ExtensionFacts, Error> {
    let sb = squashfs::read_superblock(f, 0)?;
    if sb.bytes_used > file_len {
        return Err(Error::Malformed(format!(
            "SquashFS claims {} bytes but the file has {file_len} (truncated?)",
            sb.bytes_used
        )));
    }
    let img = open_squashfs(path, 0)?;
    let mut name = None;
    let mut release = ReleaseFields::default();
    let mut extension_run = false;
    let mut outside_usr_opt = Vec::new();
    let release_prefix = format!("{RELEASE_DIR}/extension-release.");
    each_entry(&img, &mut |p, inode| {
        if p.is_empty() {
            return Ok(());
        }
        if let (Some(n), InodeKind::File(file), None) =
            (p.strip_prefix(&release_prefix), &inode.kind, &name)
        {
            let text = read_small(&img, file, 64 * 1024)?;
            release = ReleaseFields::parse(&String::from_utf8_lossy(&text));
            name = Some(n.to_string());
        }
        if p == "ExtensionRun"
            && matches!(inode.kind, InodeKind::File(_))
            && inode.mode & 0o111 != 0
        {
            extension_run = true;
        }
        let top = p.split('/').next().unwrap_or("");
        if top != "usr" && top != "opt" && !outside_usr_opt.iter().any(|o| o == top) {
            outside_usr_opt.push(top.to_string());
        }
        Ok(())
    })?;
    let sysext = sysext_verdict(&name, &release, &outside_usr_opt);
    let signature = signature_facts(f)?;
    Ok(ExtensionFacts {
        squashfs: (&sb).into(),
        name,
        packages: release.packages(),
        release,
        extension_run,
        sysext,
        trailing_bytes: file_len.saturating_sub(sb.padded_len()),
        signature,
    })
}

fn sysext_verdict(
    name: &Option<String>,
    release: &ReleaseFields,
    outside: &[String],
) -> SysextVerdict {
    let no = |reason: String| SysextVerdict {
        compatible: false,
        reason,
    };
    if name.is_none() {
        return no(format!("no {RELEASE_DIR}/extension-release.NAME file"));
    }
    let Some(id) = release.get("ID") else {
        return no("extension-release has no ID= field".into());
    };
    if id != "_any" && release.get("VERSION_ID").is_none() && release.get("SYSEXT_LEVEL").is_none()
    {
        return no(format!("ID={id} without VERSION_ID= or SYSEXT_LEVEL="));
    }
    if !outside.is_empty() {
        return no(format!(
            "content outside /usr and /opt ({}) is ignored by systemd-sysext",
            outside.join(", ")
        ));
    }
    SysextVerdict {
        compatible: true,
        reason: format!("extension-release present, ID={id}, content only under /usr and /opt"),
    }
}

fn appimage_facts(path: &Path, f: &mut File, image_type: u8) -> Result<AppImageFacts, Error> {
    let layout: ElfLayout = elf::read_layout(f)?;
    let reserved_sections: Vec<String> = elf::RESERVED
        .iter()
        .filter(|r| layout.section(r.name).is_some())
        .map(|r| r.name.to_string())
        .collect();
    let section_text = |f: &mut File, name: &str| -> Result<Option<String>, Error> {
        match layout.section(name) {
            Some(s) if s.size <= 64 * 1024 => Ok(elf::nul_padded_text(&elf::read_section(f, s)?)),
            _ => Ok(None),
        }
    };
    let update_info = section_text(f, elf::UPD_INFO.name)?;
    let signature_present = section_text(f, elf::SHA256_SIG.name)?.is_some();
    let mut facts = AppImageFacts {
        image_type,
        payload_offset: layout.end,
        runtime_size: layout.end,
        arch: layout.appimage_arch().unwrap_or("unknown").to_string(),
        update_info,
        signature_present,
        reserved_sections,
        squashfs: None,
        desktop: None,
    };
    if image_type == 2 {
        let sb = squashfs::read_superblock(f, layout.end)?;
        facts.squashfs = Some((&sb).into());
        let img = open_squashfs(path, layout.end)?;
        // The desktop file is at the root: only the root listing is read.
        let mut cache = img.meta_cache();
        let root = img.inode(&mut cache, img.layout.root_inode)?;
        let InodeKind::Dir(dir) = &root.kind else {
            return Err(Error::Malformed(
                "SquashFS: the root inode is not a directory".into(),
            ));
        };
        for e in img.read_dir(&mut cache, dir)? {
            let p = String::from_utf8_lossy(&e.name);
            if !p.ends_with(".desktop") {
                continue;
            }
            if let InodeKind::File(file) = &img.inode(&mut cache, e.inode)?.kind {
                let text = read_small(&img, file, 256 * 1024)?;
                let (entry, _) = DesktopEntry::parse(&String::from_utf8_lossy(&text));
                facts.desktop = Some(DesktopFacts {
                    file: p.into_owned(),
                    name: entry.get("Name").map(str::to_string),
                    exec: entry.get("Exec").map(str::to_string),
                    icon: entry.get("Icon").map(str::to_string),
                });
                break;
            }
        }
    }
    Ok(facts)
}

/// Read a small file of the image, refusing more than `limit` bytes.
fn read_small(img: &Image<File>, file: &FileData, limit: usize) -> Result<Vec<u8>, Error> {
    if file.size > limit as u64 {
        return Err(Error::Malformed(format!(
            "metadata file larger than {limit} bytes"
        )));
    }
    let mut out = Vec::with_capacity(file.size as usize);
    img.read_file(
        file,
        &mut DataBuffers::new(img),
        &FragmentCache::default(),
        &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        },
    )?;
    Ok(out)
}
