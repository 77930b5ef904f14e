//! `sik completions SHELL`: a completion script (also written by `cargo xtask dist`).

use std::process::ExitCode;

use clap::CommandFactory;

use crate::fail::CmdResult;

#[derive(clap::Args)]
#[command(after_help = "Example:\n  sik completions bash > /etc/bash_completion.d/sik")]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> CmdResult {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "sik", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
