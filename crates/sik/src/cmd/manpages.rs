//! `sik manpages DIR`: one roff man page per command (used by `cargo xtask dist`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(after_help = "Example:\n  sik manpages /usr/local/share/man/man1")]
pub struct Args {
    /// Directory to write `sik.1`, `sik-create.1` … into.
    dir: PathBuf,
}

pub fn run(a: Args) -> CmdResult {
    let cmd = crate::Cli::command();
    write_pages(&cmd, "sik", &a.dir)
        .map_err(|e| Failure::input("cannot write man pages", Some(&a.dir), e))?;
    Ok(ExitCode::SUCCESS)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = cmd.clone().name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
