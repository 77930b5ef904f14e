//! Classifying a live ISO: which family it belongs to, its kernel,
//! initrd(s) and the kernel arguments that boot it from the ISO file.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bootcfg;
use crate::family::{Family, IsoAccess, RunMethod};
use crate::iso9660::Iso;
use crate::quote;

/// Largest boot config read from an ISO.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The family of ISOs no other family file knows (`formats/live/generic.toml`).
pub const GENERIC: &str = "generic";

/// The kernel argument that asks the secondary initrd to make the ISO file a
/// block device: the medium's filesystem UUID and the ISO's path on it (both
/// GRUB variables set by the menu entry).
pub const ISO_DEVICE_ARG: &str = "sik.iso=${uuid}:${iso_path}";

/// What detection found in one ISO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected {
    /// Family name.
    pub family: String,
    /// GRUB menu entry class.
    pub class: Option<String>,
    /// Volume label of the ISO.
    pub label: String,
    /// Kernel path inside the ISO.
    pub kernel: Option<String>,
    /// Initrd paths inside the ISO, in boot order.
    pub initrds: Vec<String>,
    /// Kernel arguments for GRUB; may hold the GRUB variables `${iso_path}` and `${uuid}`.
    pub args: Vec<String>,
    /// The distribution's arguments that were dropped (optical-only, replaced, unsafe for GRUB).
    pub dropped_args: Vec<String>,
    /// The config file the kernel and arguments were read from.
    pub config: Option<String>,
    /// Boot through the ISO's own `/boot/grub/loopback.cfg`.
    pub use_loopback_cfg: bool,
    /// How our code runs in this family's initramfs.
    pub hook: RunMethod,
    /// How the booted initramfs reaches the ISO file: `block-device` when
    /// the arguments hold [`ISO_DEVICE_ARG`].
    pub iso_access: IsoAccess,
}

impl Detected {
    /// The family as a user reads it: `generic (from boot/grub/grub.cfg)`
    /// for an ISO booted by its own config, else the family name.
    pub fn describe(&self) -> String {
        match (&self.family[..], &self.config) {
            (GENERIC, Some(c)) => format!("{GENERIC} (from {})", c.trim_start_matches('/')),
            _ => self.family.clone(),
        }
    }
}

/// Result of looking at one ISO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// A family matched.
    Detected(Detected),
    /// Nothing matched; the ISO is skipped.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// Detect the family of an ISO file.
pub fn detect_path(path: &Path, families: &[Family]) -> Outcome {
    match File::open(path) {
        Ok(f) => detect_reader(f, families),
        Err(e) => Outcome::Skipped {
            reason: format!("cannot open: {e}"),
        },
    }
}

/// Detect the family of an ISO image read from `r` (fuzzable entry point).
pub fn detect_reader<R: Read + Seek>(r: R, families: &[Family]) -> Outcome {
    let mut iso = match Iso::new(r) {
        Ok(iso) => iso,
        Err(e) => {
            return Outcome::Skipped {
                reason: e.to_string(),
            };
        }
    };
    let mut near_misses = Vec::new();
    for fam in families {
        if !matches(&mut iso, fam) {
            continue;
        }
        match classify(&mut iso, fam) {
            Ok(d) => return Outcome::Detected(d),
            Err(why) => near_misses.push(format!("{}: {why}", fam.name)),
        }
    }
    let reason = if near_misses.is_empty() {
        format!(
            "unknown layout: no family matches and the ISO has no boot config of its own (volume label {:?})",
            iso.label()
        )
    } else {
        near_misses.join("; ")
    };
    Outcome::Skipped { reason }
}

fn matches<R: Read + Seek>(iso: &mut Iso<R>, fam: &Family) -> bool {
    fam.detect.all.iter().all(|p| iso.exists(p))
        && (fam.detect.any.is_empty() || fam.detect.any.iter().any(|p| iso.exists(p)))
        && !fam.detect.none.iter().any(|p| iso.exists(p))
}

/// Expand a candidate whose last component may hold `*` into existing
/// files, sorted by name.
fn existing<R: Read + Seek>(iso: &mut Iso<R>, pattern: &str) -> Vec<String> {
    let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if !last.contains('*') {
        return if iso.is_file(pattern) {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        };
    }
    let Ok(entries) = iso.list_dir(if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .into_iter()
        .filter(|e| !e.is_dir && glob_match(last, &e.name))
        .map(|e| format!("{dir}/{}", e.name))
        .collect();
    names.sort();
    names
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_match(pat: &str, name: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn first_existing<R: Read + Seek>(iso: &mut Iso<R>, cands: &[String]) -> Option<String> {
    cands
        .iter()
        .find_map(|c| existing(iso, c).into_iter().last())
}

fn arg_key(a: &str) -> &str {
    a.split_once('=').map_or(a, |(k, _)| k)
}

/// Whether a value read from the ISO may go into grub.cfg as a path.
fn path_checked(what: &str, p: &str) -> Result<(), String> {
    if quote::grub_path_ok(p) {
        Ok(())
    } else {
        Err(format!(
            "{what} path {p:?} has characters grub.cfg cannot carry safely (allowed: letters, digits, ._,+:=@%~- and /)"
        ))
    }
}

fn classify<R: Read + Seek>(iso: &mut Iso<R>, fam: &Family) -> Result<Detected, String> {
    // The first config entry whose kernel exists on the ISO.
    let mut from_cfg: Option<(String, bootcfg::CfgEntry)> = None;
    for cfg in &fam.boot.configs {
        let Ok(bytes) = iso.read_file(cfg, MAX_CONFIG_BYTES) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let dir = cfg
            .rsplit_once('/')
            .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        let entries = bootcfg::parse(&text, dir);
        let wanted: Vec<bootcfg::CfgEntry> = entries
            .into_iter()
            .filter(|e| e.kernel.as_deref().is_some_and(|k| iso.is_file(k)))
            .collect();
        if let Some(e) = wanted.into_iter().next() {
            from_cfg = Some((cfg.clone(), e));
            break;
        }
    }
    let label = iso.label().to_string();
    // A family that takes everything from the ISO's configs (generic) and
    // could read no kernel from them still boots an ISO that has a
    // loopback.cfg: through that file (`configfile`).
    let loopback_fallback = if fam.boot.kernel.is_empty() && from_cfg.is_none() {
        fam.boot
            .configs
            .iter()
            .find(|c| c.ends_with("/loopback.cfg") && iso.is_file(c))
            .cloned()
    } else {
        None
    };
    if fam.boot.use_loopback_cfg || loopback_fallback.is_some() {
        let from_cfg =
            from_cfg.or_else(|| loopback_fallback.map(|c| (c, bootcfg::CfgEntry::default())));
        let (config, entry) = match from_cfg {
            Some((c, e)) => (Some(c), e),
            None => (
                fam.boot.configs.first().cloned(),
                bootcfg::CfgEntry::default(),
            ),
        };
        if let Some(c) = &config {
            path_checked("config", c)?;
        }
        return Ok(Detected {
            family: fam.name.clone(),
            class: fam.class.clone(),
            label,
            kernel: entry.kernel,
            initrds: entry.initrds,
            args: entry.args,
            dropped_args: Vec::new(),
            config,
            use_loopback_cfg: true,
            hook: fam.hook.method,
            iso_access: IsoAccess::Argument,
        });
    }
    let kernel = match &from_cfg {
        Some((_, e)) => e.kernel.clone(),
        None => first_existing(iso, &fam.boot.kernel),
    };
    let Some(kernel) = kernel else {
        if fam.boot.kernel.is_empty() {
            return Err(format!(
                "no entry of its boot configs names a kernel on the ISO (read: {})",
                fam.boot
                    .configs
                    .iter()
                    .filter(|c| iso.is_file(c))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return Err(format!(
            "no kernel found (looked for {})",
            fam.boot.kernel.join(", ")
        ));
    };
    let mut initrds: Vec<String> = match &from_cfg {
        Some((_, e)) => e
            .initrds
            .iter()
            .filter(|p| iso.is_file(p))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    if initrds.is_empty() {
        for early in &fam.boot.early_initrd {
            if iso.is_file(early) {
                initrds.push(early.clone());
            }
        }
        match first_existing(iso, &fam.boot.initrd) {
            Some(i) => initrds.push(i),
            None => {
                return Err(format!(
                    "no initrd found (looked for {})",
                    fam.boot.initrd.join(", ")
                ));
            }
        }
    }
    path_checked("kernel", &kernel)?;
    for i in &initrds {
        path_checked("initrd", i)?;
    }
    let mut args = Vec::new();
    for a in fam.boot.args.split_whitespace() {
        let a = a.replace("${label}", &label);
        if !quote::kernel_arg_ok(&a) {
            return Err(format!(
                "volume label {label:?} cannot be passed safely in the kernel argument {a:?} (allowed: letters, digits, ._,+:=@%/~-)"
            ));
        }
        args.push(a);
    }
    if let Some(init) = fam
        .hook
        .init
        .as_deref()
        .filter(|i| fam.hook.method == RunMethod::Init && quote::grub_path_ok(i))
    {
        args.push(format!("init={init}"));
    }
    let mut dropped = Vec::new();
    let mut own = Vec::new();
    if let Some((_, e)) = &from_cfg {
        for a in &e.args {
            let ours = fam.hook.method == RunMethod::Init && arg_key(a) == "init";
            let drop = ours
                || fam.boot.drop_args.iter().any(|k| k == arg_key(a) || k == a)
                || ["sik.iso", crate::grub::ISO_ARG, crate::grub::FACTORY_ARG]
                    .contains(&arg_key(a))
                || !quote::kernel_arg_ok(a)
                || args.contains(a)
                || own.contains(a);
            if drop {
                dropped.push(a.clone());
            } else {
                own.push(a.clone());
            }
        }
    }
    // The ISO as a block device, unless some argument already names the
    // ISO file for the initramfs. Before the distribution's arguments: those
    // may end with `--`, after which the kernel passes words to init.
    let names_iso = args.iter().chain(&own).any(|a| a.contains("${iso_path}"));
    let iso_access = if fam.boot.iso_access == IsoAccess::BlockDevice && !names_iso {
        args.push(ISO_DEVICE_ARG.to_string());
        IsoAccess::BlockDevice
    } else {
        IsoAccess::Argument
    };
    args.extend(own);
    Ok(Detected {
        family: fam.name.clone(),
        class: fam.class.clone(),
        label,
        kernel: Some(kernel),
        initrds,
        args,
        dropped_args: dropped,
        config: from_cfg.map(|(c, _)| c),
        use_loopback_cfg: false,
        hook: fam.hook.method,
        iso_access,
    })
}

/// A detection result with the file it is about.
#[derive(Debug, Clone, Serialize)]
pub struct IsoReport {
    /// The ISO file.
    pub path: PathBuf,
    /// What was found.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Who signed the kernel and whether the installed shim trusts it
    /// (detected ISOs whose kernel is a PE file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<crate::secure_boot::IsoReport>,
}

impl IsoReport {
    /// Detect `path` and, for a detected ISO, read its kernel's signers
    /// against `anchor` (the installed shim's vendor certificate).
    pub fn of(path: &Path, families: &[Family], anchor: Option<&sik_image::pe::CertInfo>) -> Self {
        let outcome = detect_path(path, families);
        let secure_boot = match &outcome {
            Outcome::Detected(d) => d.kernel.as_deref().and_then(|k| {
                let mut iso = Iso::new(File::open(path).ok()?).ok()?;
                crate::secure_boot::iso_report(&mut iso, k, anchor).ok()
            }),
            Outcome::Skipped { .. } => None,
        };
        IsoReport {
            path: path.to_path_buf(),
            outcome,
            secure_boot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("vmlinuz-*", "vmlinuz-6.1.0-26-amd64"));
        assert!(!glob_match("vmlinuz-*", "vmlinuz"));
        assert!(glob_match("initrd*img", "initrd.img"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXc"));
    }
}
