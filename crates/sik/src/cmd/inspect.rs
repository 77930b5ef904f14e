//! `sik inspect FILE`.

use std::path::PathBuf;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  sik inspect firmware.ExtensionImage\n  sik inspect --list --json App-1.0-x86_64.AppImage")]
pub struct Args {
    /// The file to inspect.
    pub file: PathBuf,
    /// Print one JSON document (schema: formats/schema/inspect.json).
    #[arg(long)]
    pub json: bool,
    /// List the tree like `unsquashfs -lls`.
    #[arg(long)]
    pub list: bool,
}

pub fn run(a: Args) -> CmdResult {
    Err(Failure::input("inspect", Some(&a.file), "not available in this build"))
}
