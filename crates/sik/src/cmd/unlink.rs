//! `sik unlink NAME... --root ROOT`: remove linked extensions without leftovers.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::fail::{CmdResult, Failure, warn};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  sik unlink firmware tools --root /\n  sik unlink --all --root /sysroot"
)]
pub struct Args {
    /// Names of linked extensions (as `sik status` shows them).
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Unlink every linked extension.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// The root file system.
    #[arg(long)]
    pub root: PathBuf,
    /// State directory given to `sik link` (default: as `sik link` chooses it).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Print nothing but warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Tests only: unlink on several threads whatever the number of links.
    #[arg(long, hide = true)]
    pub test_parallel: bool,
}

pub fn run(a: Args) -> CmdResult {
    let names = if a.all {
        let st = sik_link::status(&a.root, a.state.as_deref())
            .map_err(|e| Failure::input("cannot unlink", Some(&a.root), e))?;
        st.extensions.into_iter().map(|e| e.name).collect()
    } else {
        a.names.clone()
    };
    let test = sik_link::TestSwitches {
        parallel: a.test_parallel,
        ..Default::default()
    };
    let results = sik_link::unlink_with(&names, &a.root, a.state.as_deref(), &test)
        .map_err(|e| Failure::input("cannot unlink", Some(&a.root), e))?;
    let mut failed = 0;
    // A trigger run for several names is in each of their reports: shown once.
    let mut runs: Vec<sik_link::TriggerRun> = Vec::new();
    for (_, r) in &results {
        if let Ok(rep) = r {
            for t in &rep.triggers {
                if !runs.iter().any(|x| x.trigger == t.trigger) {
                    runs.push(t.clone());
                }
            }
        }
    }
    for (name, r) in results {
        match r {
            Ok(rep) => {
                for k in &rep.kept {
                    warn(format!("{name}: {k}: no longer ours, left in place"));
                }
                if rep.lazy_unmount {
                    warn(format!(
                        "{name}: the mount was busy; it is detached and goes away when no longer used"
                    ));
                }
                if !a.quiet {
                    println!(
                        "unlinked {name}: {} links and {} directories removed, {} files put back",
                        rep.links_removed, rep.dirs_removed, rep.restored
                    );
                }
            }
            Err(e) => {
                failed += 1;
                warn(format!("{name}: {e}"));
            }
        }
    }
    super::link::print_triggers(&runs, a.quiet);
    if failed > 0 {
        return Err(Failure::check(
            "not everything was unlinked",
            None,
            format!("{failed} of {} names", names.len()),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
