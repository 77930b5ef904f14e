//! `sik create extension|appimage`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Subcommand)]
pub enum CreateCommand {
    /// Create an ExtensionImage (SquashFS) from a directory, a tar archive or a .deb.
    Extension(ExtensionArgs),
    /// Create an AppImage from an AppDir (runtime built into sik, no network).
    Appimage(super::create_appimage::Args),
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sik create extension ./tree -o firmware.ExtensionImage --os-id _any\n  sik create extension codecs.deb -o codecs.ExtensionImage --compression xz")]
pub struct ExtensionArgs {
    /// Directory, tar archive (plain, gzip, xz, zstd) or Debian package.
    pub source: PathBuf,
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
    /// Print nothing but errors; no progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(cmd: CreateCommand) -> CmdResult {
    match cmd {
        CreateCommand::Extension(a) => extension(a),
        CreateCommand::Appimage(a) => super::create_appimage::run(a),
    }
}

fn extension(a: ExtensionArgs) -> CmdResult {
    let _ = a;
    Err(Failure::input("create extension", None, "not available in this build"))
}

#[allow(dead_code)]
fn ok() -> ExitCode {
    ExitCode::SUCCESS
}
