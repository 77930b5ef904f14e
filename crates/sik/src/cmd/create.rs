//! `sik create extension|appimage`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sik_create::squashfs::Compressor;
use sik_create::{ExtensionOptions, Progress};

use sik_image::signature::HashAlg;

use crate::cmd::key::load_signing_key;
use crate::fail::{CmdResult, Failure, warn};
use crate::output::print_json;

#[derive(clap::Subcommand)]
pub enum CreateCommand {
    /// Create an ExtensionImage (SquashFS) from directories, tar archives and packages (.deb, .rpm, Arch).
    Extension(ExtensionArgs),
    /// Create an AppImage from an AppDir (runtime built into sik, no network).
    Appimage(super::create_appimage::Args),
}

#[derive(clap::Args)]
#[command(
    after_help = "Sources are merged in order; two sources with different entries at one path are an error naming\nboth (--later-wins keeps the later one). Package metadata (control files, the RPM header, .PKGINFO,\n.MTREE, .INSTALL …) is not content; the packages' name, version and architecture are recorded in the\nextension-release file (SIK_PACKAGES); maintainer scripts are never run, only named in a warning.\n\nChecked: archive paths (absolute or with `..` are refused); a directory source's files are read\nthrough the walk (a file swapped for a symlink is refused). Not checked: what the content does.\n\nExamples:\n  sik create extension ./tree -o firmware.ExtensionImage --os-id _any\n  sik create extension libogg0_*.deb libvorbis0a_*.deb -o codecs.ExtensionImage\n  sik create extension hello-2.12-1.x86_64.rpm ./extra -o hello.ExtensionImage --later-wins\n  sik create extension ./tree -o firmware.ExtensionImage --sign ~/.ssh/id_ed25519\n  sik create extension codecs.deb -o codecs.ExtensionImage --compression xz\n  sik create extension libogg0_*.deb libflac12_*.deb -o codecs.ExtensionImage --for debian-live.iso"
)]
pub struct ExtensionArgs {
    /// Directories, tar archives (plain, gzip, xz, zstd), Debian, RPM or Arch packages, merged in order.
    #[arg(required = true, num_args = 1..)]
    pub sources: Vec<PathBuf>,
    /// When two sources give different entries at one path, keep the later one.
    #[arg(long)]
    pub later_wins: bool,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Extension name (default: OUT's file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Extension version (SYSEXT_VERSION_ID).
    #[arg(long)]
    pub version: Option<String>,
    /// Compressor: zstd, xz, gzip or lz4.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
    /// Compression level (compressor's default when absent).
    #[arg(long)]
    pub level: Option<i32>,
    /// Data block size, e.g. 131072, 128K or 1M (4K to 1M, a power of two).
    #[arg(long, default_value = "128K")]
    pub block_size: String,
    /// Leave out paths matching this glob (repeatable), relative to the source root.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Operating system ID the extension is for (`_any` for every OS).
    #[arg(long)]
    pub os_id: Option<String>,
    /// Operating system VERSION_ID the extension is for.
    #[arg(long)]
    pub os_version: Option<String>,
    /// SYSEXT_LEVEL the extension is for.
    #[arg(long)]
    pub sysext_level: Option<String>,
    /// Architecture (systemd names: x86-64, arm64 …).
    #[arg(long)]
    pub arch: Option<String>,
    /// Keep owners (uid/gid) of the source instead of root.
    #[arg(long)]
    pub keep_owner: bool,
    /// Print nothing but errors and warnings; no progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// Sign the image with this Ed25519 OpenSSH private key (as `sik sign`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Passphrase of an encrypted --sign key, first line of this file.
    #[arg(long, value_name = "FILE", requires = "sign")]
    pub passphrase_file: Option<PathBuf>,
    /// Leave out the dm-verity hash tree (spec/extension-image.md): the image is
    /// then only checked by hashing the whole file.
    #[arg(long)]
    pub no_verity: bool,
    /// Compression threads (default: all cores). The output is the same for any number.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Make the image for this live ISO: leave out every file its root file
    /// system already holds with the same content and mode (read from the ISO,
    /// nothing mounted), and refuse a package it has installed in the same version.
    #[arg(long = "for", value_name = "ISO")]
    pub for_iso: Option<PathBuf>,
    /// With --for: add packages the ISO already has installed in the same version.
    #[arg(long, requires = "for_iso")]
    pub keep_duplicates: bool,
    /// Print a JSON report (schema: formats/schema/create.json).
    #[arg(long)]
    pub json: bool,
    /// Testing aid: run PROGRAM with each regular file's path after the walk
    /// saw the file and before it is opened.
    #[arg(long, hide = true, value_name = "PROGRAM")]
    pub debug_before_open: Option<PathBuf>,
}

pub fn run(cmd: CreateCommand) -> CmdResult {
    match cmd {
        CreateCommand::Extension(a) => extension(a),
        CreateCommand::Appimage(a) => super::create_appimage::run(a),
    }
}

fn extension(a: ExtensionArgs) -> CmdResult {
    let compressor = parse_compressor(&a.compression)?;
    let block_size = parse_block_size(&a.block_size)?;
    if let Some(level) = a.level {
        match compressor.level_range() {
            None => {
                return Err(Failure::input(
                    "invalid --level",
                    None,
                    format!("{} has no compression level", a.compression),
                ));
            }
            Some((lo, hi)) if level < lo || level > hi => {
                return Err(Failure::input(
                    "invalid --level",
                    None,
                    format!("{level} is outside {lo}..={hi} for {}", a.compression),
                ));
            }
            _ => {}
        }
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.trim().parse::<u32>().map_err(|_| {
            Failure::input(
                "invalid SOURCE_DATE_EPOCH",
                None,
                format!("{v:?} is not a number of seconds"),
            )
        })?),
        _ => None,
    };
    // Load the key first: a bad key must not leave an unsigned image behind.
    let key = a
        .sign
        .as_deref()
        .map(|k| load_signing_key(k, a.passphrase_file.as_deref()))
        .transpose()?;
    let mut opts = ExtensionOptions::new(a.sources[0].clone(), a.output.clone());
    opts.sources = a.sources.clone();
    opts.later_wins = a.later_wins;
    opts.name = a.name;
    opts.version = a.version;
    opts.compressor = compressor;
    opts.level = a.level;
    opts.block_size = block_size;
    opts.exclude = a.exclude;
    opts.os_id = a.os_id;
    opts.os_version = a.os_version;
    opts.sysext_level = a.sysext_level;
    opts.arch = a.arch;
    opts.keep_owner = a.keep_owner;
    opts.source_date_epoch = source_date_epoch;
    opts.threads = a.threads;
    opts.verity = !a.no_verity;
    opts.keep_duplicates = a.keep_duplicates;
    if let Some(iso) = &a.for_iso {
        // Where a root file system image may be: every known live-ISO
        // family's candidates.
        let mut rootfs: Vec<String> = Vec::new();
        for f in sik_boot::family::builtin() {
            for p in f.boot.rootfs {
                if !rootfs.contains(&p) {
                    rootfs.push(p);
                }
            }
        }
        opts.for_iso = Some((iso.clone(), rootfs));
    }
    if let Some(program) = a.debug_before_open {
        opts.before_open = Some(sik_create::source::BeforeOpen(std::sync::Arc::new(
            move |path: &Path| {
                let _ = std::process::Command::new(&program).arg(path).status();
            },
        )));
    }

    let total = a
        .sources
        .iter()
        .filter(|s| s.is_dir())
        .map(|s| sik_create::source::dir_size(s))
        .sum();
    let bar = crate::output::progress(total, a.quiet || total < 64 << 20, "creating");
    let progress = BarProgress(bar.clone());
    let result = sik_create::create_extension(&opts, &progress);
    bar.finish_and_clear();
    let mut report = result.map_err(|e| create_error(&a.sources[0], &a.output, e))?;
    if let Some(key) = &key {
        if let Err(e) =
            sik_sign::sign_file_with(&report.output, key, HashAlg::Sha256, sik_sign::Verity::Keep)
        {
            let _ = std::fs::remove_file(&report.output);
            return Err(Failure::input("cannot sign", Some(&report.output), e));
        }
        report.image_len = std::fs::metadata(&report.output)
            .map(|m| m.len())
            .unwrap_or(report.image_len);
    }

    if !report.stats.special_modes.is_empty() {
        let n = report.stats.special_modes.len();
        let shown: Vec<_> = report.stats.special_modes.iter().take(5).cloned().collect();
        let more = if n > 5 {
            format!(" and {} more", n - 5)
        } else {
            String::new()
        };
        warn(format!(
            "{n} entries carry setuid, setgid or sticky bits: {}{more}",
            shown.join(", ")
        ));
    }
    for p in &report.packages {
        if !p.scripts.is_empty() {
            warn(format!(
                "package {} {} has maintainer scripts that were not run: {}",
                p.fact.name,
                p.fact.version,
                p.scripts.join(", ")
            ));
        }
    }
    if let Some(f) = &report.for_iso {
        for d in &f.duplicates_kept {
            warn(format!(
                "package {d} is already installed in {} and was added anyway (--keep-duplicates)",
                f.iso.display()
            ));
        }
    }
    if a.json {
        print_json(&report);
    } else if !a.quiet {
        let s = &report.stats;
        if let Some(f) = &report.for_iso {
            eprintln!(
                "left out {} files ({} bytes) that the root file system of {} ({}) already holds with the same content and mode",
                s.omitted,
                s.omitted_bytes,
                f.iso.display(),
                f.rootfs
            );
        }
        eprintln!(
            "created {} ({}): {} files, {} dirs, {} symlinks, {} hard links, {} special files; {} bytes in, {} bytes out{}",
            report.output.display(),
            report.name,
            s.files,
            s.dirs,
            s.symlinks,
            s.hardlinks,
            s.specials,
            s.bytes,
            report.image_len,
            if report.stats.extension_run {
                "; ExtensionRun present"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Adapts the library's progress callback to a progress bar.
struct BarProgress(indicatif::ProgressBar);

impl Progress for BarProgress {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// Parse `--compression`.
pub fn parse_compressor(name: &str) -> Result<Compressor, Failure> {
    Ok(match name {
        "zstd" => Compressor::Zstd,
        "xz" => Compressor::Xz,
        "gzip" | "zlib" => Compressor::Gzip,
        "lz4" => Compressor::Lz4,
        other => {
            return Err(Failure::input(
                "invalid --compression",
                None,
                format!("{other:?} is not one of zstd, xz, gzip, lz4"),
            ));
        }
    })
}

/// Parse `--block-size` (bytes, or with a K/M suffix).
pub fn parse_block_size(text: &str) -> Result<u32, Failure> {
    let t = text.trim();
    let (num, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let bad = || {
        Failure::input(
            "invalid --block-size",
            None,
            format!("{text:?}: use a power of two from 4K to 1M"),
        )
    };
    let n: u32 = num
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(bad)?;
    if !(4096..=1 << 20).contains(&n) || !n.is_power_of_two() {
        return Err(bad());
    }
    Ok(n)
}

/// Word a library error for the user.
pub fn create_error(source: &Path, output: &Path, e: sik_create::Error) -> Failure {
    match e {
        sik_create::Error::Source { path, source } => {
            Failure::input("cannot read source", Some(&path), source)
        }
        sik_create::Error::BadSource { path, why } => {
            Failure::input("bad source", Some(&path), why)
        }
        sik_create::Error::Output { path, source } => {
            Failure::input("cannot write", Some(&path), source)
        }
        sik_create::Error::WriteFrom { path, source } => {
            Failure::input("cannot write image", Some(&path), source)
        }
        sik_create::Error::Write(w) => Failure::input("cannot write image", Some(output), w),
        e @ sik_create::Error::Conflict { .. } => Failure::input("sources conflict", None, e),
        sik_create::Error::Usage(why) => Failure::input("invalid options", Some(source), why),
    }
}
