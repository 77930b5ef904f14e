//! `sik integrate APPIMAGE…`, `sik integrate --remove APPIMAGE…`,
//! `sik integrate --list`: desktop entries, icons and MIME types of
//! AppImages in an XDG data directory (sik_appimage::integrate).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cmd::verify::load_trust;
use serde_json::json;
use sik_appimage::integrate::{self, Integrated, Listed, MimeRefresh, Options, Removed};

use crate::fail::{CmdResult, EXIT_CHECK, EXIT_INPUT, Failure, warn};
use crate::output::print_json;

#[derive(clap::Args)]
#[command(
    after_help = "Writes, into the data directory (default $XDG_DATA_HOME, else ~/.local/share;\n--system: /usr/local/share): applications/sik-ID-NAME.desktop whose Exec runs the\nAppImage where it lies, its icons as icons/hicolor/SIZE/apps/sik-ID-ICON.EXT and its\nMIME packages as mime/packages/sik-ID-NAME.xml (then update-mime-database runs when\ninstalled). ID names the AppImage's path, so running again replaces exactly these\nfiles and --remove removes exactly them. The entry records the version and the\nsignature check (X-SIK-Signature, X-SIK-Signer, X-SIK-Signer-Comment).\n\nExamples:\n  sik integrate ~/Applications/App-1.0-x86_64.AppImage\n  sik integrate --list\n  sik integrate --remove ~/Applications/App-1.0-x86_64.AppImage\n  sik integrate --system --trust /etc/sik/trusted.d /opt/apps/*.AppImage\n\nWith --trust holding at least one key, only AppImages signed by one of them are\nintegrated; the others are refused (exit status 1). Without --trust the default\ntrust paths only decide what the entry records. Exit status: 0 done, 1 some\nAppImage refused, 2 input error."
)]
pub struct Args {
    /// AppImages to integrate (or with --remove, whose files to remove; they need not exist any more).
    #[arg(value_name = "APPIMAGE")]
    pub appimages: Vec<PathBuf>,
    /// Remove the files written for the given AppImages.
    #[arg(long, conflicts_with_all = ["list", "sync"])]
    pub remove: bool,
    /// List the integrated AppImages.
    #[arg(long, conflicts_with = "sync")]
    pub list: bool,
    /// Use the system-wide data directory /usr/local/share.
    #[arg(long, conflicts_with = "data_dir")]
    pub system: bool,
    /// Use this XDG data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Write into the data directory inside this root (the system data directory unless --data-dir);
    /// AppImage paths are used as given (the boot hook passes the medium's mount point,
    /// which stays the same in the booted system).
    #[arg(long, value_name = "ROOT")]
    pub root: Option<PathBuf>,
    /// Trusted keys: a .pub file, an OpenSSH allowed_signers file, or a directory of them (repeatable).
    #[arg(long, value_name = "PATH")]
    pub trust: Vec<PathBuf>,
    /// Also remove the files of every integrated AppImage not integrated by this run.
    #[arg(long)]
    pub sync: bool,
    /// Print one JSON document (schema: formats/schema/integrate.json).
    #[arg(long)]
    pub json: bool,
}

fn lib_failure(what: &str, e: sik_appimage::Error) -> Failure {
    match e {
        sik_appimage::Error::Io { path, source } => Failure::input(what, Some(&path), source),
        sik_appimage::Error::Integrate { path, why } => Failure::input(what, Some(&path), why),
        sik_appimage::Error::Refused { path, why } => Failure::check(what, Some(&path), why),
        other => Failure::input(what, None, other),
    }
}

pub fn run(a: Args) -> CmdResult {
    let base = match (&a.data_dir, a.system || a.root.is_some()) {
        (Some(d), _) => d.clone(),
        (None, true) => PathBuf::from(integrate::SYSTEM_DATA_DIR),
        (None, false) => {
            integrate::user_data_dir().map_err(|e| Failure::input("no data directory", None, e))?
        }
    };
    let data_dir = match &a.root {
        Some(r) => {
            if !r.is_dir() {
                return Err(Failure::input("not a directory", Some(r), "--root"));
            }
            r.join(base.strip_prefix("/").unwrap_or(&base))
        }
        None => base,
    };
    if a.list {
        if !a.appimages.is_empty() {
            return Err(Failure::input(
                "--list takes no AppImage",
                Some(&a.appimages[0]),
                "give either --list or AppImages",
            ));
        }
        let entries = integrate::list(&data_dir).map_err(|e| lib_failure("cannot list", e))?;
        if a.json {
            print_json(&document(
                "list",
                &data_dir,
                &[],
                &[],
                &[],
                &[],
                &entries,
                None,
            ));
        } else {
            for e in &entries {
                print_listed(e);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.appimages.is_empty() && !a.sync {
        return Err(Failure::input(
            "nothing to do",
            None,
            "give AppImages (or --list)",
        ));
    }
    let mut failed: Vec<Failure> = Vec::new();
    let mut removed: Vec<Removed> = Vec::new();
    let mut integrated: Vec<Integrated> = Vec::new();
    let mut mime_changed = false;
    if a.remove {
        for p in &a.appimages {
            match integrate::remove(p, &data_dir) {
                Ok(r) => {
                    mime_changed |= r.mime_changed;
                    if !a.json {
                        if r.files.is_empty() {
                            println!("{}: not integrated", p.display());
                        } else {
                            println!("{}: removed {} files", p.display(), r.files.len());
                        }
                    }
                    removed.push(r);
                }
                Err(e) => failed.push(lib_failure("cannot remove", e)),
            }
        }
    } else {
        let (_, trust) = load_trust(&a.trust)?;
        let mut opts = Options::new(&data_dir, &trust);
        opts.require_trusted = !a.trust.is_empty() && !trust.is_empty();
        for p in &a.appimages {
            match integrate::integrate(p, &opts) {
                Ok(r) => {
                    mime_changed |= r.mime_changed;
                    if !a.json {
                        print_integrated(p, &r);
                    }
                    integrated.push(r);
                }
                Err(e) => failed.push(lib_failure("not integrated", e)),
            }
        }
        if a.sync {
            let keep: Vec<&str> = integrated.iter().map(|i| i.id.as_str()).collect();
            let listed = integrate::list(&data_dir).map_err(|e| lib_failure("cannot list", e))?;
            for l in listed.iter().filter(|l| !keep.contains(&l.id.as_str())) {
                match integrate::remove_id(&l.id, &data_dir) {
                    Ok(mut r) => {
                        r.appimage = l.appimage.clone().unwrap_or_default();
                        mime_changed |= r.mime_changed;
                        if !a.json {
                            println!(
                                "{}: no longer integrated, removed {} files",
                                r.appimage.display(),
                                r.files.len()
                            );
                        }
                        removed.push(r);
                    }
                    Err(e) => failed.push(lib_failure("cannot remove", e)),
                }
            }
        }
    }
    let mime = if mime_changed {
        match integrate::refresh_mime(&data_dir, a.root.as_deref()) {
            Ok(m) => Some(m),
            Err(e) => {
                warn(format!("MIME database not updated: {e}"));
                None
            }
        }
    } else {
        None
    };
    if mime == Some(MimeRefresh::NoTool) && !a.json {
        warn("update-mime-database is not installed: the MIME types are known after its next run");
    }
    let (refused, errors): (Vec<&Failure>, Vec<&Failure>) =
        failed.iter().partition(|f| f.code == EXIT_CHECK);
    if a.json {
        print_json(&document(
            if a.remove { "remove" } else { "integrate" },
            &data_dir,
            &integrated,
            &removed,
            &refused,
            &errors,
            &[],
            mime,
        ));
    }
    let code = failed.iter().map(|f| f.code).max().unwrap_or(0);
    for f in failed {
        let _ = f.report();
    }
    Ok(match code {
        0 => ExitCode::SUCCESS,
        EXIT_CHECK => ExitCode::from(EXIT_CHECK),
        _ => ExitCode::from(EXIT_INPUT),
    })
}

fn signer_words(status: &str, fingerprint: Option<&str>, comment: Option<&str>) -> String {
    match (fingerprint, comment) {
        (Some(f), Some(c)) => format!("{status}, signed by {f} ({c})"),
        (Some(f), None) => format!("{status}, signed by {f}"),
        _ => status.to_string(),
    }
}

fn print_integrated(given: &Path, r: &Integrated) {
    let s = &r.signer;
    println!(
        "{}: {}{} [{}] {} {}",
        given.display(),
        r.name,
        r.version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        signer_words(&s.status, s.fingerprint.as_deref(), s.comment.as_deref()),
        if r.changed { "->" } else { "unchanged:" },
        r.desktop_file.display()
    );
}

fn print_listed(e: &Listed) {
    println!(
        "{}{}\t[{}]\t{}{}",
        e.name.as_deref().unwrap_or("?"),
        e.version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        signer_words(
            e.signature.as_deref().unwrap_or("unknown"),
            e.fingerprint.as_deref(),
            e.comment.as_deref()
        ),
        e.appimage
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into()),
        if e.present { "" } else { " (missing)" }
    );
}

#[allow(clippy::too_many_arguments)]
fn document(
    action: &str,
    data_dir: &Path,
    integrated: &[Integrated],
    removed: &[Removed],
    refused: &[&Failure],
    errors: &[&Failure],
    entries: &[Listed],
    mime: Option<MimeRefresh>,
) -> serde_json::Value {
    let failure = |f: &&Failure| {
        json!({
            "appimage": f.path.as_ref().map(|p| p.display().to_string()),
            "reason": f.why,
        })
    };
    json!({
        "action": action,
        "data_dir": data_dir.display().to_string(),
        "integrated": integrated,
        "removed": removed,
        "refused": refused.iter().map(failure).collect::<Vec<_>>(),
        "failed": errors.iter().map(failure).collect::<Vec<_>>(),
        "entries": entries,
        "mime_database": mime,
    })
}
