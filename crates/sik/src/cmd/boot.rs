//! `sik boot detect|generate|install|add`: boot media that boot unchanged live ISOs.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use sik_boot::detect::{self, Outcome};
use sik_boot::family;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Subcommand)]
pub enum BootCommand {
    /// Say which live ISO family each ISO belongs to, with kernel, initrd(s) and arguments.
    Detect(DetectArgs),
    /// Write boot/grub/grub.cfg and the secondary initrd boot/sik/initrd.img of a medium.
    Generate(GenerateArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 when every ISO was detected, 1 when at least one was skipped\n(listed with the reason), 2 on a usage error.\n\nExample:\n  sik boot detect ubuntu-24.04.iso Fedora-Workstation-Live-41.iso --json"
)]
pub struct DetectArgs {
    /// ISO files.
    #[arg(required = true)]
    pub isos: Vec<PathBuf>,
    /// Extra family files (directory of *.toml, like a medium's boot/formats).
    #[arg(long)]
    pub formats: Option<PathBuf>,
    /// Print a JSON document (formats/schema/detect.json).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
#[command(
    after_help = "The medium is a directory (a mounted stick) or a disk image made by `sik boot install --image`.\nFiles whose contents would not change are not rewritten.\n\nExample:\n  sik boot generate /media/stick\n  sik boot generate disk.img --dry-run --json"
)]
pub struct GenerateArgs {
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Report what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON document (formats/schema/generate.json).
    #[arg(long)]
    pub json: bool,
    /// The (static) sik binary put into the initrd [default: this program].
    #[arg(long)]
    pub sik_binary: Option<PathBuf>,
    /// GRUB menu timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u32,
}

pub fn run(cmd: BootCommand) -> CmdResult {
    match cmd {
        BootCommand::Detect(a) => detect_cmd(a),
        BootCommand::Generate(a) => generate_cmd(a),
    }
}

#[derive(Serialize)]
struct DetectDoc {
    isos: Vec<detect::IsoReport>,
    detected: usize,
    skipped: usize,
}

fn print_outcome(path: &std::path::Path, o: &Outcome) {
    match o {
        Outcome::Detected(d) => {
            println!("{}: {} (label {:?})", path.display(), d.family, d.label);
            if d.use_loopback_cfg {
                println!("  boots through {}", d.config.as_deref().unwrap_or("/boot/grub/loopback.cfg"));
            }
            if let Some(k) = &d.kernel {
                println!("  kernel: {k}");
            }
            if !d.initrds.is_empty() {
                println!("  initrd: {}", d.initrds.join(" "));
            }
            if !d.use_loopback_cfg {
                println!("  args:   {}", d.args.join(" "));
            }
            if let Some(c) = &d.config {
                println!("  config: {c}");
            }
        }
        Outcome::Skipped { reason } => println!("{}: skipped: {reason}", path.display()),
    }
}

fn detect_cmd(a: DetectArgs) -> CmdResult {
    let families = match &a.formats {
        Some(dir) => family::with_dir(dir).map_err(|e| Failure::input("boot detect", Some(dir), e))?,
        None => family::builtin(),
    };
    let isos: Vec<detect::IsoReport> =
        a.isos.iter().map(|p| detect::IsoReport { path: p.clone(), outcome: detect::detect_path(p, &families) }).collect();
    let skipped = isos.iter().filter(|r| matches!(r.outcome, Outcome::Skipped { .. })).count();
    if a.json {
        crate::output::print_json(&DetectDoc { detected: isos.len() - skipped, skipped, isos });
    } else {
        for r in &isos {
            print_outcome(&r.path, &r.outcome);
        }
    }
    Ok(if skipped > 0 { ExitCode::from(crate::fail::EXIT_CHECK) } else { ExitCode::SUCCESS })
}

fn generate_cmd(a: GenerateArgs) -> CmdResult {
    let sik_binary = match a.sik_binary.clone() {
        Some(p) => p,
        None => std::env::current_exe().map_err(|e| Failure::input("boot generate", None, format!("cannot find this program: {e}")))?,
    };
    let opts = sik_boot::generate::Options { sik_binary, dry_run: a.dry_run, timeout: a.timeout };
    let report = sik_boot::generate::generate(&a.medium, &opts).map_err(|e| match e {
        sik_boot::BootError::ScriptCheck(_) => Failure::check("boot generate", Some(&a.medium), e),
        e => Failure::input("boot generate", Some(&a.medium), e),
    })?;
    if a.json {
        crate::output::print_json(&report);
    } else {
        for i in &report.isos {
            match &i.outcome {
                Outcome::Detected(d) => println!("{}: {}", i.path, d.family),
                Outcome::Skipped { reason } => crate::fail::warn(format!("{}: skipped: {reason}", i.path)),
            }
        }
        for f in &report.files {
            println!("{} {} ({} bytes)", f.action, f.path, f.size);
        }
    }
    Ok(ExitCode::SUCCESS)
}
