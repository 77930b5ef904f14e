//! Creation of ExtensionImages: one SquashFS file per OS extension.
//!
//! Sources (directories, tar archives, `.deb`, `.rpm` and Arch packages,
//! merged in order) are streamed through
//! [`squashfs::SquashfsWriter`], this project's own SquashFS 4.0 writer
//! (hard links, extended attributes, parallel compression, bounded memory),
//! together with the systemd-sysext metadata file
//! `usr/lib/extension-release.d/extension-release.NAME`. The image is
//! written to a temporary file beside the output and renamed into place only
//! when complete, so a failure never leaves a half-written image.
//!
//! ```no_run
//! use sik_create::{create_extension, ExtensionOptions, NoProgress};
//! let opts = ExtensionOptions::new("tree".into(), "firmware.ExtensionImage".into());
//! let report = create_extension(&opts, &NoProgress).unwrap();
//! println!("{} files, {} bytes", report.stats.files, report.image_len);
//! ```

pub mod base;
mod ingest;
pub mod package;
pub mod source;
pub mod squashfs;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sik_image::release::{ReleaseFields, release_path};

use crate::ingest::{Ingest, Merge};
use crate::package::PackageFacts;
use crate::source::{SourceKind, SourceOptions, SourceStats};
use crate::squashfs::{Compressor, Meta, SquashfsWriter, WriteError, WriterOptions};

/// Why an image could not be created.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source could not be read.
    #[error("cannot read source {path}: {source}")]
    Source {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The source is not usable (bad archive, unsafe paths …).
    #[error("bad source {path}: {why}")]
    BadSource {
        /// The source.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The SquashFS writer refused an entry or failed.
    #[error("{0}")]
    Write(#[from] WriteError),
    /// Writing failed while reading a given source file.
    #[error("{path}: {source}")]
    WriteFrom {
        /// The source file being read.
        path: PathBuf,
        /// The writer's error.
        source: WriteError,
    },
    /// Two sources give different entries at one path.
    #[error(
        "{path} differs between {first} and {second} ({why}); pass --later-wins to keep the later source's entry"
    )]
    Conflict {
        /// The image path.
        path: String,
        /// The earlier source.
        first: PathBuf,
        /// The later source.
        second: PathBuf,
        /// What differs.
        why: String,
    },
    /// An option is invalid.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn source(path: &Path, source: std::io::Error) -> Self {
        Error::Source {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn in_source(path: &Path, source: WriteError) -> Self {
        Error::WriteFrom {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Receives progress of long runs (bytes of file data read). The library
/// never prints; the CLI decides whether this becomes a progress bar.
pub trait Progress {
    /// `bytes` more bytes were read.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}

/// Everything `sik create extension` can be told.
#[derive(Debug, Clone)]
pub struct ExtensionOptions {
    /// Directories, tar archives and packages (`.deb`, `.rpm`, Arch), merged
    /// in this order.
    pub sources: Vec<PathBuf>,
    /// When two sources give different entries at one path, keep the later
    /// one instead of failing.
    pub later_wins: bool,
    /// Output image.
    pub output: PathBuf,
    /// Extension name; default: the output's file name up to its first dot.
    pub name: Option<String>,
    /// Extension version (`SYSEXT_VERSION_ID`).
    pub version: Option<String>,
    /// Data compressor.
    pub compressor: Compressor,
    /// Compression level (`None`: compressor default).
    pub level: Option<i32>,
    /// Data block size.
    pub block_size: u32,
    /// Globs of paths to leave out.
    pub exclude: Vec<String>,
    /// `ID=` (default `_any`).
    pub os_id: Option<String>,
    /// `VERSION_ID=`.
    pub os_version: Option<String>,
    /// `SYSEXT_LEVEL=`.
    pub sysext_level: Option<String>,
    /// `ARCHITECTURE=`.
    pub arch: Option<String>,
    /// Keep uid/gid of the source.
    pub keep_owner: bool,
    /// `SOURCE_DATE_EPOCH`: the image's own timestamp. Default: the
    /// modification time of the first source itself.
    pub source_date_epoch: Option<u32>,
    /// Compression threads (0: all cores).
    pub threads: usize,
    /// Run between the walk of a directory source and the opening of each
    /// regular file (tests swap files with it).
    pub before_open: Option<source::BeforeOpen>,
    /// Append the dm-verity hash tree and its descriptor after the
    /// filesystem (`spec/extension-image.md`); default true.
    pub verity: bool,
    /// `--for`: the live ISO the image is made for, and the paths inside
    /// ISOs where a root file system image may be (the live-ISO families'
    /// `boot.rootfs`). Files that root file system holds with the same mode
    /// and content are left out; a package it has installed in the same
    /// version is refused unless `keep_duplicates`.
    pub for_iso: Option<(PathBuf, Vec<String>)>,
    /// Add packages the `for_iso` root file system already has installed.
    pub keep_duplicates: bool,
}

impl ExtensionOptions {
    /// Defaults: zstd, 128 KiB blocks, root owners; one source.
    pub fn new(source: PathBuf, output: PathBuf) -> Self {
        ExtensionOptions {
            sources: vec![source],
            later_wins: false,
            output,
            name: None,
            version: None,
            compressor: Compressor::Zstd,
            level: None,
            block_size: 128 * 1024,
            exclude: Vec::new(),
            os_id: None,
            os_version: None,
            sysext_level: None,
            arch: None,
            keep_owner: false,
            source_date_epoch: None,
            threads: 0,
            before_open: None,
            verity: true,
            for_iso: None,
            keep_duplicates: false,
        }
    }

    fn has_release_options(&self) -> bool {
        self.version.is_some()
            || self.os_id.is_some()
            || self.os_version.is_some()
            || self.sysext_level.is_some()
            || self.arch.is_some()
    }
}

/// The ISO an image was made for (`--for`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForIso {
    /// The ISO.
    pub iso: PathBuf,
    /// Its root file system image (a path inside the ISO).
    pub rootfs: String,
    /// Where its installed packages were read from, if anywhere.
    pub packages_from: Option<String>,
    /// Packages it has installed that were added anyway (`--keep-duplicates`).
    pub duplicates_kept: Vec<String>,
}

/// What was created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtensionReport {
    /// Extension name.
    pub name: String,
    /// Output path.
    pub output: PathBuf,
    /// The first source's kind: `directory`, `tar`, `tar+gzip` …, `deb`,
    /// `rpm`, `arch+zstd` … (see [`SourceKind::label`]).
    pub source_kind: String,
    /// Every source and its kind, in merge order.
    pub sources: Vec<SourceReport>,
    /// The packages among the sources (recorded in `SIK_PACKAGES` when the
    /// extension-release file is generated).
    pub packages: Vec<PackageFacts>,
    /// What the source held.
    pub stats: SourceStats,
    /// Length of the image file in bytes.
    pub image_len: u64,
    /// The extension-release fields in the image.
    pub release: ReleaseFields,
    /// Whether the extension-release file came from the source (not generated).
    pub release_from_source: bool,
    /// The dm-verity parameters, when the tree was written.
    pub verity: Option<VerityFacts>,
    /// The ISO it was made for (`--for`): left-out files are counted in
    /// `stats.omitted`.
    pub for_iso: Option<ForIso>,
}

/// One source of an image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceReport {
    /// As given.
    pub path: PathBuf,
    /// Its kind ([`SourceKind::label`]).
    pub kind: String,
}

/// Add a directory tree to `writer` with the walk `create_extension` uses
/// (names sorted bytewise, symlinks not followed, hard links, devices,
/// modes, mtimes and xattrs kept, `--exclude` globs applied). The root
/// directory's metadata becomes the image root's.
pub fn add_directory(
    writer: &mut SquashfsWriter,
    root: &Path,
    opts: &SourceOptions,
    progress: &dyn Progress,
) -> Result<SourceStats, Error> {
    let mut ingest = Ingest::new(writer, opts, progress, Vec::new())?;
    ingest.dir(root)?;
    Ok(ingest.stats)
}

/// Check an extension name the way systemd-sysext needs it in file names.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid extension name {name:?}: use letters, digits and . _ - + @, not starting with a dot"
        )))
    }
}

/// The default extension name for an output path: the file name up to its
/// first dot (`firmware.ExtensionImage` → `firmware`).
pub fn default_name(output: &Path) -> Option<String> {
    let file = output.file_name()?.to_str()?;
    let stem = file.split('.').next().unwrap_or(file);
    if stem.is_empty() {
        None
    } else {
        Some(stem.to_string())
    }
}

/// Create an ExtensionImage.
pub fn create_extension(
    opts: &ExtensionOptions,
    progress: &dyn Progress,
) -> Result<ExtensionReport, Error> {
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_name(&opts.output).ok_or_else(|| {
            Error::Usage(format!(
                "cannot derive a name from {}; pass --name",
                opts.output.display()
            ))
        })?,
    };
    validate_name(&name)?;
    let first = opts
        .sources
        .first()
        .ok_or_else(|| Error::Usage("no source given".into()))?;
    let kinds = opts
        .sources
        .iter()
        .map(|p| source::detect(p))
        .collect::<Result<Vec<_>, _>>()?;
    let source_meta = std::fs::metadata(first).map_err(|e| Error::source(first, e))?;

    let out_dir = match opts.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        return Err(Error::Output {
            path: opts.output.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the output directory does not exist",
            ),
        });
    }
    for (src, kind) in opts.sources.iter().zip(&kinds) {
        if *kind != SourceKind::Dir {
            continue;
        }
        let src_abs = std::fs::canonicalize(src).map_err(|e| Error::source(src, e))?;
        let dst = std::fs::canonicalize(&out_dir).map_err(|e| Error::Output {
            path: opts.output.clone(),
            source: e,
        })?;
        if dst.starts_with(&src_abs) {
            return Err(Error::Usage(format!(
                "the output {} lies inside the source directory {}",
                opts.output.display(),
                src.display()
            )));
        }
    }

    let mod_time = opts.source_date_epoch.unwrap_or_else(|| {
        source_meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0)
    });

    let out_err = |e: std::io::Error| Error::Output {
        path: opts.output.clone(),
        source: e,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".sik-create-")
        .tempfile_in(&out_dir)
        .map_err(out_err)?;
    let file = tmp.as_file().try_clone().map_err(out_err)?;
    let mut writer = SquashfsWriter::new(
        file,
        WriterOptions {
            compressor: opts.compressor,
            level: opts.level,
            block_size: opts.block_size,
            mod_time,
            threads: opts.threads,
        },
    )?;

    let base = match &opts.for_iso {
        Some((iso, rootfs)) => Some(base::Base::open(iso, rootfs)?),
        None => None,
    };
    let release_rel = release_path(&name);
    let source_opts = SourceOptions {
        keep_owner: opts.keep_owner,
        exclude: opts.exclude.clone(),
        before_open: opts.before_open.clone(),
    };
    let mut ingest = Ingest::new(
        &mut writer,
        &source_opts,
        progress,
        vec![release_rel.as_bytes().to_vec()],
    )?;
    if opts.sources.len() > 1 {
        ingest.merge = Some(Merge::new(opts.sources.clone(), opts.later_wins));
    }
    ingest.base = base.as_ref();
    let mut duplicates = Vec::new();
    // A package the base has installed in this very version is refused
    // (before its content is read, where the facts come first).
    let mut check = |src: &Path, p: &package::PackageFacts| -> Result<(), Error> {
        let Some(b) = &base else { return Ok(()) };
        if !b.installed(&p.fact.name, &p.fact.version) {
            return Ok(());
        }
        if opts.keep_duplicates {
            duplicates.push(format!("{} {}", p.fact.name, p.fact.version));
            return Ok(());
        }
        Err(Error::BadSource {
            path: src.to_path_buf(),
            why: format!(
                "{} {} is already installed in the root file system of {} (per {}); --keep-duplicates adds it anyway",
                p.fact.name,
                p.fact.version,
                b.iso().display(),
                b.packages_from.as_deref().unwrap_or("its package list")
            ),
        })
    };
    let mut packages = Vec::new();
    for (i, (src, kind)) in opts.sources.iter().zip(&kinds).enumerate() {
        ingest.origin = i;
        let mut ignore = |_: &str, _: Vec<u8>| {};
        match *kind {
            SourceKind::Dir => ingest.dir(src)?,
            SourceKind::Tar(c) => ingest.tar(source::open_tar(src, c)?, src, &[], &mut ignore)?,
            SourceKind::Deb => {
                let facts = package::deb_facts(src)?;
                check(src, &facts)?;
                packages.push(facts);
                ingest.tar(source::open_deb(src)?, src, &[], &mut ignore)?;
            }
            SourceKind::Rpm => {
                let facts = package::ingest_rpm(&mut ingest, src)?;
                check(src, &facts)?;
                packages.push(facts);
            }
            SourceKind::Arch(c) => {
                let mut pkginfo = None;
                let mut install = false;
                ingest.tar(
                    source::open_tar(src, c)?,
                    src,
                    package::ARCH_METADATA,
                    &mut |name, data| match name {
                        ".PKGINFO" => pkginfo = Some(data),
                        ".INSTALL" => install = true,
                        _ => {}
                    },
                )?;
                let pkginfo = pkginfo.unwrap_or_default();
                let facts = package::arch_facts(src, &pkginfo, install)?;
                check(src, &facts)?;
                packages.push(facts);
            }
        }
    }
    let stats = ingest.stats;
    let release_from_source = !stats.seen.is_empty();

    let mut release = ReleaseFields::default();
    if release_from_source {
        if opts.has_release_options() {
            return Err(Error::BadSource {
                path: first.clone(),
                why: format!(
                    "it already contains {release_rel}; remove it or leave out the metadata options"
                ),
            });
        }
    } else {
        let mut set = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                release.0.insert(k.to_string(), v.clone());
            }
        };
        set(
            "ID",
            &Some(opts.os_id.clone().unwrap_or_else(|| "_any".into())),
        );
        set("VERSION_ID", &opts.os_version);
        set("SYSEXT_LEVEL", &opts.sysext_level);
        set("ARCHITECTURE", &opts.arch);
        set("SYSEXT_ID", &Some(name.clone()));
        set("SYSEXT_VERSION_ID", &opts.version);
        let facts: Vec<_> = packages.iter().map(|p| p.fact.clone()).collect();
        release.set_packages(&facts);
        let text = release.to_text();
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: mod_time,
            xattrs: Vec::new(),
        };
        writer.add_file(release_rel.as_bytes(), meta, &mut text.as_bytes())?;
    }

    let summary = writer.finish()?;
    let verity = if opts.verity {
        Some(append_verity(tmp.as_file(), summary.file_len, opts.threads).map_err(out_err)?)
    } else {
        None
    };
    tmp.as_file().sync_all().map_err(out_err)?;
    let image_len = tmp.as_file().metadata().map_err(out_err)?.len();
    let file = tmp.persist(&opts.output).map_err(|e| out_err(e.error))?;
    set_mode(&file, 0o644).map_err(out_err)?;
    drop(file);
    if let Ok(dir) = std::fs::File::open(&out_dir) {
        let _ = dir.sync_all();
    }
    Ok(ExtensionReport {
        name,
        output: opts.output.clone(),
        source_kind: kinds[0].label(),
        sources: opts
            .sources
            .iter()
            .zip(&kinds)
            .map(|(p, k)| SourceReport {
                path: p.clone(),
                kind: k.label(),
            })
            .collect(),
        packages,
        for_iso: base.as_ref().map(|b| ForIso {
            iso: b.iso().to_path_buf(),
            rootfs: b.rootfs.clone(),
            packages_from: b.packages_from.clone(),
            duplicates_kept: duplicates,
        }),
        stats,
        image_len,
        release,
        release_from_source,
        verity,
    })
}

/// Append the dm-verity hash tree of the first `data_len` bytes of `file`
/// (the padded filesystem) and the verity block's end with no signature.
fn append_verity(
    file: &std::fs::File,
    data_len: u64,
    threads: usize,
) -> std::io::Result<VerityFacts> {
    use std::os::unix::fs::FileExt;
    let (desc, tree) = sik_image::verity::compute_tree(file, data_len, threads)?;
    file.write_all_at(&tree.bytes, data_len)?;
    let tail = sik_image::signature::encode_verity_tail(&desc, &[]);
    file.write_all_at(&tail, data_len + desc.hash_size)?;
    file.set_len(data_len + desc.hash_size + tail.len() as u64)?;
    Ok(VerityFacts {
        root_hash: desc.root_hex(),
        salt: desc.salt_hex(),
        data_blocks: desc.data_blocks,
        hash_offset: desc.hash_offset,
        hash_size: desc.hash_size,
    })
}

/// The verity parameters of a created image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerityFacts {
    /// Root hash, hex.
    pub root_hash: String,
    /// Salt, hex.
    pub salt: String,
    /// 4096-byte data blocks.
    pub data_blocks: u64,
    /// Byte offset of the hash tree.
    pub hash_offset: u64,
    /// Length of the hash tree in bytes.
    pub hash_size: u64,
}

fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}
