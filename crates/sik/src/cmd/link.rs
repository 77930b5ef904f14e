//! `sik link SOURCE... --root ROOT`: link ExtensionImages and overlay trees into a root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sik_link::{ConflictKind, LinkOptions, TestSwitches};

use crate::fail::{CmdResult, Failure, warn};

/// How many conflicts per extension are listed on stderr (all are in `sik status --json`).
const SHOW_CONFLICTS: usize = 10;

#[derive(clap::Args)]
#[command(
    after_help = "Checked: each image's signature against the trusted keys, from the same open file the loop device then reads (an image someone other than root can write is refused); compatibility with ROOT's os-release. Not checked: what the content does. With trusted keys in force, directories need --allow-directories and the ExtensionRun of unsigned content --allow-unsigned-run.\n\nExample:\n  sik link boot/extensions/x86_64/*.ExtensionImage --root /sysroot --trust boot/keys\n  sik link ./overlay --root / --allow-unsigned --replace"
)]
pub struct Args {
    /// ExtensionImages or directories (overlay trees) to link.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// The root file system to link into.
    #[arg(long)]
    pub root: PathBuf,
    /// State directory (default ROOT/run/sik/extensions, or ROOT/var/lib/sik/extensions when
    /// ROOT/run is a tmpfs and ROOT is not); each extension uses STATE/NAME. --replace needs
    /// one that outlives a reboot when ROOT does.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Trusted public key, allowed_signers file or directory of them (repeatable).
    /// Default: /etc/sik/trusted.d, $XDG_CONFIG_HOME/sik/trusted.d (not for root) and ROOT/etc/sik/trusted.d.
    /// A file in a trust directory that holds no readable key is skipped with a warning.
    #[arg(long = "trust", value_name = "PATH")]
    pub trust: Vec<PathBuf>,
    /// Also link unsigned images and images signed by keys that are not trusted.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Link directory sources (overlay trees carry no signature) although trusted keys are in force.
    #[arg(long)]
    pub allow_directories: bool,
    /// Run the ExtensionRun of content no trusted key signed (a directory, an image
    /// linked with --allow-unsigned) although trusted keys are in force; without it,
    /// such a source is linked but its ExtensionRun is skipped.
    #[arg(long)]
    pub allow_unsigned_run: bool,
    /// Link images whose extension-release does not match ROOT's os-release.
    #[arg(long)]
    pub ignore_compat: bool,
    /// Where mounting is impossible, copy the content into the state directory instead.
    #[arg(long)]
    pub extract: bool,
    /// Move conflicting files of ROOT aside (into the state directory); unlink puts them back.
    #[arg(long)]
    pub replace: bool,
    /// Seconds an image's ExtensionRun may take before it is killed.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub run_timeout: u64,
    /// Print nothing but refusals, conflicts, warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Tests only: kill the process after this many changes in ROOT.
    #[arg(long, hide = true, value_name = "N")]
    pub test_abort_after: Option<u64>,
    /// Tests only: kill the process after this many removals while undoing
    /// a refused link.
    #[arg(long, hide = true, value_name = "N")]
    pub test_abort_undo_after: Option<u64>,
    /// Tests only: link on several threads whatever the image's size.
    #[arg(long, hide = true)]
    pub test_parallel: bool,
    /// Tests only: behave as if mounting were impossible.
    #[arg(long, hide = true)]
    pub test_no_mount: bool,
}

fn conflict_text(kind: ConflictKind, detail: &str) -> String {
    match kind {
        ConflictKind::Kept => "an existing file of ROOT is kept (--replace moves it aside)".into(),
        ConflictKind::Replaced => "the existing file was moved aside (unlink puts it back)".into(),
        ConflictKind::OtherExtension => format!("already provided by extension {detail}"),
        ConflictKind::Directory => "ROOT has a directory here; not replaced".into(),
        ConflictKind::NotADirectory => {
            format!("ROOT has a non-directory at {detail}; this subtree is not linked")
        }
        ConflictKind::Escapes => format!("{detail}; this subtree is not linked"),
        ConflictKind::Error => detail.to_string(),
    }
}

pub fn run(a: Args) -> CmdResult {
    let opts = LinkOptions {
        root: a.root.clone(),
        state: a.state.clone(),
        trust: a.trust.clone(),
        allow_unsigned: a.allow_unsigned,
        allow_directories: a.allow_directories,
        allow_unsigned_run: a.allow_unsigned_run,
        ignore_compat: a.ignore_compat,
        extract: a.extract,
        replace: a.replace,
        run_timeout: Duration::from_secs(a.run_timeout),
        test: TestSwitches {
            abort_after: a.test_abort_after,
            abort_undo_after: a.test_abort_undo_after,
            parallel: a.test_parallel,
            no_mount: a.test_no_mount,
        },
    };
    let report = sik_link::link(&a.sources, &opts)
        .map_err(|e| Failure::input("cannot link", Some(&a.root), e))?;
    for (path, why) in &report.trust_skipped {
        warn(format!(
            "trust file skipped: {}: {why} (its keys are not trusted)",
            path.display()
        ));
    }
    for w in &report.ignored_trust {
        warn(w);
    }
    for u in &report.undone {
        warn(format!(
            "{}: the undoing of its refused link (an earlier run was killed) is now complete: {}",
            u.name, u.reason
        ));
    }
    for l in &report.linked {
        let s = &l.state;
        if l.replaced_previous {
            warn(format!(
                "{}: an earlier link of another source of this name was removed first",
                s.name
            ));
        }
        if let Some(why) = &l.staged_because {
            warn(format!(
                "{}: {why}; the content was extracted into the state directory instead",
                s.name
            ));
        }
        let shown: Vec<_> = s
            .conflicts
            .iter()
            .filter(|c| c.kind != ConflictKind::Replaced || l.created > 0)
            .collect();
        for c in shown.iter().take(SHOW_CONFLICTS) {
            eprintln!(
                "sik: conflict: {}: {}: {}",
                s.name,
                c.path,
                conflict_text(c.kind, &c.detail)
            );
        }
        if shown.len() > SHOW_CONFLICTS {
            eprintln!(
                "sik: conflict: {}: … and {} more (sik status --json lists them)",
                s.name,
                shown.len() - SHOW_CONFLICTS
            );
        }
        if let Some(r) = &s.run {
            if let Some(e) = &r.error {
                warn(format!("{}: ExtensionRun not run: {e}", s.name));
            } else if r.timed_out {
                warn(format!(
                    "{}: ExtensionRun killed after {} s (output: {})",
                    s.name, a.run_timeout, r.log
                ));
            } else if !r.success() {
                let how = match (r.exit_code, r.signal) {
                    (Some(c), _) => format!("exit status {c}"),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "unknown status".into(),
                };
                warn(format!(
                    "{}: ExtensionRun failed with {how} (output: {})",
                    s.name, r.log
                ));
            }
        }
        if !a.quiet {
            let version = s
                .version
                .as_deref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            let signer = s
                .signer
                .as_deref()
                .map(|v| format!(", signed by {v}"))
                .unwrap_or_else(|| ", not signed by a trusted key".into());
            let run = match &s.run {
                Some(r) if r.error.is_none() && !r.timed_out => match r.exit_code {
                    Some(c) => format!(", ExtensionRun exit {c}"),
                    None => ", ExtensionRun killed".into(),
                },
                _ => String::new(),
            };
            match s.verified.as_deref() {
                Some("dm-verity") => println!(
                    "{}: verified by dm-verity (the kernel checks each block as it is read)",
                    s.name
                ),
                Some(v) if v.starts_with("whole-file") => println!(
                    "{}: verified by hashing the whole file{}",
                    s.name,
                    v.strip_prefix("whole-file").unwrap_or_default()
                ),
                Some(v) => println!("{}: not verified: {v}", s.name),
                None => {}
            }
            println!(
                "linked {}{version}: {} files ({} new), {} directories ({} new), {} conflicts{signer}{run}",
                s.name,
                s.files,
                l.created,
                s.dirs,
                l.dirs_created,
                s.conflicts
                    .iter()
                    .filter(|c| c.kind != ConflictKind::Replaced)
                    .count()
            );
        }
    }
    print_triggers(&report.triggers, a.quiet);
    for r in &report.refused {
        eprintln!("sik: refused: {}: {}: {}", r.name, r.source, r.reason);
    }
    if !report.refused.is_empty() {
        let n = report.refused.len();
        let total = n + report.linked.len();
        return Err(Failure::check(
            "not everything was linked",
            None,
            format!("{n} of {total} sources refused"),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per trigger of a link or unlink run: a failure is a warning,
/// what ran, was skipped or is missing a note (the link stands either way).
pub(crate) fn print_triggers(runs: &[sik_link::TriggerRun], quiet: bool) {
    use sik_link::TriggerOutcome;
    for r in runs {
        let what = if r.command.is_empty() {
            let mut w = r.trigger.kind.as_str().to_string();
            if !r.trigger.arg.is_empty() {
                w.push(' ');
                w.push_str(&r.trigger.arg);
            }
            w
        } else {
            r.command.join(" ")
        };
        let who = r.extensions.join(", ");
        match r.outcome {
            TriggerOutcome::Failed => {
                warn(format!("trigger {what} (for {who}) failed: {}", r.detail))
            }
            _ if quiet => {}
            TriggerOutcome::Ran => println!("trigger {what}: ran (for {who})"),
            TriggerOutcome::Missing | TriggerOutcome::Skipped => {
                println!("trigger {what}: not run (for {who}): {}", r.detail)
            }
        }
    }
}
