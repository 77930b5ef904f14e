//! `sik create appimage APPDIR`: check an AppDir and pack it behind the
//! embedded static runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use sik_appimage::{Error, PackOptions, pack};
use sik_create::squashfs::Compressor;

use sik_image::signature::HashAlg;

use crate::cmd::key::load_signing_key;
use crate::fail::{CmdResult, Failure, warn};
use crate::output::print_json;

#[derive(clap::Args)]
#[command(
    after_help = "Checked: the AppDir (every problem named at once). At run time the runtime checks nothing about\nwho made the file; `sik verify` checks a --sign signature.\n\nExamples:\n  sik create appimage Hello.AppDir\n  sik create appimage Hello.AppDir --sign release-key\n  sik create appimage Hello.AppDir -o Hello-x86_64.AppImage --compression xz \\\n      --update-info 'gh-releases-zsync|me|hello|latest|Hello-*x86_64.AppImage.zsync' --zsync"
)]
pub struct Args {
    /// The AppDir: AppRun, one NAME.desktop and its icon at the root.
    pub appdir: PathBuf,
    /// Output file (default: Name-VERSION-ARCH.AppImage from the desktop file).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Use this runtime instead of the one built into sik (e.g. the reference runtime).
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// Update information written to .upd_info: zsync|URL,
    /// gh-releases-zsync|USER|REPO|TAG|PATTERN or pling-v1-zsync|ID|PATTERN.
    #[arg(long, short = 'u')]
    pub update_info: Option<String>,
    /// Also write OUTPUT.zsync (zsync control file, made by sik itself).
    #[arg(long)]
    pub zsync: bool,
    /// Sign the AppImage with this Ed25519 OpenSSH private key (as `sik sign`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Passphrase of an encrypted --sign key, first line of this file.
    #[arg(long, value_name = "FILE", requires = "sign")]
    pub passphrase_file: Option<PathBuf>,
    /// SquashFS compressor: zstd, xz, gzip or lz4.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
    /// Leave out paths matching this glob (repeatable), relative to the AppDir.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Print a JSON report on stdout (schema: formats/schema/create-appimage.json).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

fn compressor(name: &str) -> Option<Compressor> {
    match name {
        "zstd" => Some(Compressor::Zstd),
        "xz" => Some(Compressor::Xz),
        "gzip" | "gz" | "zlib" => Some(Compressor::Gzip),
        "lz4" => Some(Compressor::Lz4),
        _ => None,
    }
}

pub fn run(a: Args) -> CmdResult {
    let Some(comp) = compressor(&a.compression) else {
        return Err(Failure::input(
            "--compression",
            None,
            format!(
                "unknown compressor {:?} (zstd, xz, gzip, lz4)",
                a.compression
            ),
        ));
    };
    // Load the key first: a bad key must not leave an unsigned AppImage.
    let key = a
        .sign
        .as_deref()
        .map(|k| load_signing_key(k, a.passphrase_file.as_deref()))
        .transpose()?;
    let opts = PackOptions {
        appdir: a.appdir.clone(),
        output: a.output.clone(),
        runtime: a.runtime.clone(),
        update_info: a.update_info.clone(),
        // With --sign, the zsync file is made after signing (below).
        zsync: a.zsync && key.is_none(),
        compressor: comp,
        exclude: a.exclude.clone(),
    };
    let mut report = match pack(&opts) {
        Ok(r) => r,
        Err(Error::AppDir(problems)) => {
            let n = problems.len();
            return Err(Failure::input(
                "AppDir not usable",
                Some(&a.appdir),
                format!(
                    "{n} problem{}: {}",
                    if n == 1 { "" } else { "s" },
                    problems.join("; ")
                ),
            ));
        }
        Err(e @ Error::UpdateInfo(..)) => return Err(Failure::input("--update-info", None, e)),
        Err(e @ Error::Usage(_)) => return Err(Failure::input("create appimage", None, e)),
        Err(e @ Error::Runtime(_)) => {
            return Err(Failure::input("create appimage", a.runtime.as_deref(), e));
        }
        Err(e) => return Err(Failure::input("create appimage", Some(&a.appdir), e)),
    };
    if let Some(key) = &key {
        if let Err(e) = sik_sign::sign_file(&report.output, key, HashAlg::Sha256) {
            let _ = std::fs::remove_file(&report.output);
            return Err(Failure::input("cannot sign", Some(&report.output), e));
        }
        report.size = std::fs::metadata(&report.output)
            .map(|m| m.len())
            .unwrap_or(report.size);
        if a.zsync {
            report.zsync =
                Some(sik_appimage::write_zsync(&report.output).map_err(|e| {
                    Failure::input("cannot write zsync file", Some(&report.output), e)
                })?);
        }
    }
    if let Some(icon) = &report.dir_icon_created
        && !a.quiet
    {
        eprintln!(
            "sik: created .DirIcon -> {} (it was missing)",
            icon.display()
        );
    }
    for w in &report.warnings {
        warn(w);
    }
    if a.json {
        print_json(&report);
    } else if !a.quiet {
        println!(
            "{} ({} bytes, SquashFS at offset {})",
            report.output.display(),
            report.size,
            report.offset
        );
        if let Some(z) = &report.zsync {
            println!("{}", z.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
