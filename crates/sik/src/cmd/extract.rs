//! `sik extract IMAGE -o DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use sik_inspect::ExtractOptions;

use crate::cmd::inspect::input_error;
use crate::fail::{CmdResult, warn};

#[derive(clap::Args)]
#[command(
    after_help = "Checked: every path stays inside the output directory (no `..`, no writes through symlinks).\nNot checked: the signature (`sik verify` first).\n\nExample:\n  sik extract firmware.ExtensionImage -o ./firmware-tree"
)]
pub struct Args {
    /// ExtensionImage or AppImage.
    pub image: PathBuf,
    /// Target directory (created when missing; must be empty unless --force).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write into a non-empty directory, replacing existing entries.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors and warnings.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(a: Args) -> CmdResult {
    let report = sik_inspect::extract(
        &a.image,
        &a.output,
        &ExtractOptions {
            force: a.force,
            ..Default::default()
        },
    )
    .map_err(|e| input_error("cannot extract", &a.image, e))?;
    if !report.skipped_specials.is_empty() {
        warn(format!(
            "{} device nodes, fifos or sockets not created (needs root): {}",
            report.skipped_specials.len(),
            report.skipped_specials.join(", ")
        ));
    }
    if !a.quiet {
        eprintln!(
            "extracted {} entries ({} bytes) into {}",
            report.entries,
            report.bytes,
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
