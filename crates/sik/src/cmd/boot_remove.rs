//! `sik boot remove ITEM MEDIUM`: take an ISO, an ExtensionImage or an
//! AppImage off a medium, with the ISO's checksum sidecars.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use sik_boot::medium::Medium;

use crate::cmd::boot_list::{extension_files, files_in};
use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "ITEM is a file name as `sik boot list` shows it (with or without .iso, .ExtensionImage,\n.AppImage) or a path on the medium. An ISO's checksum sidecars (NAME.iso.sha256, .sha512, .sha1,\n.md5) go with it. A name that matches more than one file is refused; give the path then.\nRun `sik boot generate` afterwards so the menu forgets a removed ISO.\n\nExample:\n  sik boot remove debian-live.iso stick.img\n  sik boot remove firmware /media/stick\n  sik boot remove boot/extensions/x86_64/old.ExtensionImage stick.img"
)]
pub struct RemoveArgs {
    /// What to remove: a file name or a path on the medium.
    pub item: String,
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Print a JSON document (formats/schema/boot-remove.json).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RemoveDoc {
    medium: PathBuf,
    removed: Vec<String>,
}

/// The medium files ITEM names.
fn candidates(m: &Medium, item: &str) -> Vec<String> {
    let mut all = files_in(m, &["boot/iso"], ".iso", false);
    all.extend(extension_files(m));
    all.extend(files_in(m, &["Applications"], ".AppImage", false));
    all.into_iter()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            let stem = [".iso", ".ExtensionImage", ".AppImage"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            name == item || stem == item
        })
        .collect()
}

pub fn run(a: RemoveArgs) -> CmdResult {
    let what = "boot remove";
    let fail = |e: &dyn std::fmt::Display| Failure::input(what, Some(&a.medium), e);
    let m = Medium::open(&a.medium).map_err(|e| fail(&e))?;
    let target = if a.item.contains('/') {
        let rel = a.item.trim_matches('/').to_string();
        if rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(fail(&format!("{}: not a plain path on the medium", a.item)));
        }
        match m.file_size(&rel) {
            Ok(Some(_)) => rel,
            Ok(None) => return Err(fail(&format!("{rel}: no such file on the medium"))),
            Err(e) => return Err(fail(&e)),
        }
    } else {
        let mut c = candidates(&m, &a.item);
        match c.len() {
            0 => {
                return Err(fail(&format!(
                    "{}: no ISO, ExtensionImage or AppImage of that name on the medium",
                    a.item
                ))
                .hint("sik boot list MEDIUM shows what is there"));
            }
            1 => c.remove(0),
            _ => {
                return Err(fail(&format!(
                    "{}: more than one file has that name: {}",
                    a.item,
                    c.join(" ")
                ))
                .hint("give the path on the medium"));
            }
        }
    };
    let mut removed = Vec::new();
    m.remove(&target).map_err(|e| fail(&e))?;
    removed.push(target.clone());
    if target.starts_with("boot/iso/") {
        for s in [".sha256", ".sha512", ".sha1", ".md5"] {
            let side = format!("{target}{s}");
            if m.file_size(&side).ok().flatten().is_some() {
                m.remove(&side).map_err(|e| fail(&e))?;
                removed.push(side);
            }
        }
    }
    if a.json {
        crate::output::print_json(&RemoveDoc {
            medium: a.medium.clone(),
            removed,
        });
    } else {
        for r in &removed {
            println!("removed {r}");
        }
        if target.starts_with("boot/iso/") {
            println!(
                "run `sik boot generate {}` to update the menu",
                a.medium.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
