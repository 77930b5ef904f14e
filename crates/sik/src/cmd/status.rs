//! `sik status --root ROOT [--json]`: what is linked into a root.

use std::path::PathBuf;
use std::process::ExitCode;

use sik_link::ConflictKind;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "A signer is shown only while the source is still the file that was checked when it was linked (same device, inode, size, mtime and ctime); otherwise status says it changed since link. Nothing is re-verified here: `sik link` again re-checks (and unlinks the name if the check fails).\n\nExample:\n  sik status --root /\n  sik status --root /sysroot --json"
)]
pub struct Args {
    /// The root file system.
    #[arg(long)]
    pub root: PathBuf,
    /// State directory given to `sik link` (default: as `sik link` chooses it).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Print a JSON document (formats/schema/status.json).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CmdResult {
    let st = sik_link::status(&a.root, a.state.as_deref())
        .map_err(|e| Failure::input("cannot read the link state", Some(&a.root), e))?;
    if a.json {
        crate::output::print_json(&st);
        return Ok(ExitCode::SUCCESS);
    }
    if st.extensions.is_empty() {
        println!("nothing linked into {}", st.root);
    }
    for e in &st.extensions {
        let conflicts = e
            .conflicts
            .iter()
            .filter(|c| c.kind != ConflictKind::Replaced)
            .count();
        let replaced = e.conflicts.len() - conflicts;
        println!(
            "{}{}: {} files, {} directories, {} conflicts, {} replaced, signer: {}, verified: {}{}",
            e.name,
            e.version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            e.files,
            e.dirs,
            conflicts,
            replaced,
            if e.changed_since_link {
                "none (the source changed since link)"
            } else {
                e.signer.as_deref().unwrap_or("none")
            },
            e.verified.as_deref().unwrap_or("-"),
            if e.complete {
                ""
            } else {
                " (incomplete: run link or unlink again)"
            }
        );
        for t in &e.triggers {
            let mut what = t.trigger.kind.as_str().to_string();
            if !t.trigger.arg.is_empty() {
                what.push(' ');
                what.push_str(&t.trigger.arg);
            }
            let outcome = match t.outcome {
                sik_link::TriggerOutcome::Ran => "ran".to_string(),
                sik_link::TriggerOutcome::Failed => format!("failed: {}", t.detail),
                sik_link::TriggerOutcome::Missing | sik_link::TriggerOutcome::Skipped => {
                    format!("not run: {}", t.detail)
                }
            };
            println!("  {} trigger {what}: {outcome}", e.name);
        }
    }
    for r in &st.refused {
        println!("refused {}: {}: {}", r.name, r.source, r.reason);
    }
    Ok(ExitCode::SUCCESS)
}
