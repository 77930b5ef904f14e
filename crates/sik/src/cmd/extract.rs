//! `sik extract IMAGE -o DIR`.

use std::path::PathBuf;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(after_help = "Example:\n  sik extract firmware.ExtensionImage -o ./firmware-tree")]
pub struct Args {
    /// ExtensionImage or AppImage.
    pub image: PathBuf,
    /// Target directory (created when missing).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write into a non-empty directory, replacing existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> CmdResult {
    Err(Failure::input("extract", Some(&a.image), "not available in this build"))
}
