//! `sik`: the SystemImageKit command line.
//!
//! Thin glue over the library crates: it parses arguments (clap), calls a
//! library, and owns everything a user sees: wording of errors, `--json`
//! documents, progress bars and exit codes (0 success, 1 a check said no,
//! 2 usage or input error).

#![forbid(unsafe_code)]

mod cmd;
mod fail;
mod output;

use std::process::ExitCode;

/// The version, findable in the bytes of this binary (`sik boot list` reads
/// it from the `sik` inside a medium's initrd without running it).
#[used]
static VERSION_MARK: &str = concat!("\0sik-version:", env!("CARGO_PKG_VERSION"), "\0");

use clap::{Parser, Subcommand};

/// Create, sign, verify, inspect and link ExtensionImages and AppImages; build boot media.
#[derive(Parser)]
#[command(
    name = "sik",
    version,
    about,
    after_help = "Example:\n  sik create extension ./firmware-tree -o firmware.ExtensionImage\n  sik inspect firmware.ExtensionImage"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Create an ExtensionImage or an AppImage.
    #[command(subcommand)]
    Create(cmd::create::CreateCommand),
    /// Say what a file is and show its facts.
    Inspect(cmd::inspect::Args),
    /// Extract the tree of an ExtensionImage or AppImage into a directory.
    Extract(cmd::extract::Args),
    /// Link ExtensionImages and overlay trees into a root (verified, conflict-aware, removable).
    Link(cmd::link::Args),
    /// Remove linked extensions from a root without leftovers.
    Unlink(cmd::unlink::Args),
    /// Show what is linked into a root.
    Status(cmd::status::Args),
    /// Boot media: detect live ISOs, generate grub.cfg and the initrd, install, add files.
    #[command(subcommand, after_help = cmd::boot::EXAMPLE)]
    Boot(cmd::boot::BootCommand),
    /// Put AppImages into the desktop's menu (entries, icons, MIME types), list or remove them.
    Integrate(cmd::integrate::Args),
    /// Generate Ed25519 signing keys and print fingerprints.
    Key(cmd::key::Args),
    /// Sign an ExtensionImage or AppImage in place (SSHSIG, OpenSSH keys).
    Sign(cmd::sign::Args),
    /// Check an image's signature against trusted keys.
    Verify(cmd::verify::Args),
    /// Print a shell completion script.
    #[command(hide = true)]
    Completions(cmd::completions::Args),
    /// Write man pages.
    #[command(hide = true)]
    Manpages(cmd::manpages::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let result = match cli.command {
        Command::Create(c) => cmd::create::run(c),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Extract(a) => cmd::extract::run(a),
        Command::Link(a) => cmd::link::run(a),
        Command::Unlink(a) => cmd::unlink::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Boot(c) => cmd::boot::run(c),
        Command::Integrate(a) => cmd::integrate::run(a),
        Command::Key(a) => cmd::key::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Completions(a) => cmd::completions::run(a),
        Command::Manpages(a) => cmd::manpages::run(a),
    };
    match result {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_subcommands().next().is_some() {
                    walk(sub, &name);
                    continue;
                }
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(help.contains("Example"), "`{name} --help` shows no example");
            }
        }
        walk(&super::Cli::command(), "sik");
    }
}
