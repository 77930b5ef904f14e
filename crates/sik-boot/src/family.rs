//! Live ISO families as data: each `formats/live/*.toml` file says how to
//! recognise one family's ISOs, where its kernel and initrd are, which
//! arguments make it boot from an ISO file, where its initramfs exposes the
//! partition holding the ISO and how our code gets to run inside it.
//!
//! The files of the source tree are compiled in ([`builtin`]); a medium's
//! `boot/formats/*.toml` adds or replaces families ([`load_dir`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::quote;

/// The family files compiled into the binary, as (file name, text).
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "casper.toml",
        include_str!("../../../formats/live/casper.toml"),
    ),
    (
        "live-boot.toml",
        include_str!("../../../formats/live/live-boot.toml"),
    ),
    (
        "dracut-fedora.toml",
        include_str!("../../../formats/live/dracut-fedora.toml"),
    ),
    (
        "dracut-loader.toml",
        include_str!("../../../formats/live/dracut-loader.toml"),
    ),
    (
        "dracut-centos.toml",
        include_str!("../../../formats/live/dracut-centos.toml"),
    ),
    (
        "archiso.toml",
        include_str!("../../../formats/live/archiso.toml"),
    ),
    ("kiwi.toml", include_str!("../../../formats/live/kiwi.toml")),
    (
        "mageia.toml",
        include_str!("../../../formats/live/mageia.toml"),
    ),
    (
        "generic.toml",
        include_str!("../../../formats/live/generic.toml"),
    ),
];

/// How our code runs inside a family's initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMethod {
    /// A shell hook at paths the framework sources by globbing (dracut
    /// `hooks/pre-pivot/*.sh`); [`Hook::paths`] names them.
    DracutHook,
    /// An initramfs-tools `/conf/conf.d/*.conf` file (sourced by `/init`
    /// before any script) that appends our script to
    /// `/scripts/<phase>/ORDER`; [`Hook::phase`] names the phase.
    InitramfsToolsConf,
    /// `init=` pointing at `boot/sik/init` on the medium as the booted system
    /// sees it ([`Hook::init`]); that script links into `/` and then execs
    /// the system's init.
    Init,
    /// No mechanism of the family's own: the hooks the secondary initrd
    /// carries for the other families run when the ISO's initramfs is one
    /// of those frameworks (the generic family), and nothing of ours runs
    /// when GRUB boots through the ISO's `loopback.cfg`.
    None,
}

/// How the booted initramfs reaches the ISO file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsoAccess {
    /// The family's own kernel argument names the ISO file (`findiso=`,
    /// `iso-scan/filename=`, `img_loop=` … in [`Boot::args`]).
    #[default]
    Argument,
    /// The secondary initrd makes the ISO file a block device (a read-only
    /// loop device over the file on the mounted medium) before the
    /// initramfs looks for its root, so a by-label lookup such as
    /// `root=live:CDLABEL=X` finds it as if it were a CD. Detection adds
    /// the argument `sik.iso=${uuid}:${iso_path}` that tells the hook which
    /// file on which filesystem, unless the ISO's arguments already name
    /// `${iso_path}` (spec/medium.md).
    BlockDevice,
}

/// Detection rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// Paths that must all exist on the ISO.
    #[serde(default)]
    pub all: Vec<String>,
    /// Paths of which at least one must exist (empty: no such rule).
    #[serde(default)]
    pub any: Vec<String>,
    /// Paths none of which may exist.
    #[serde(default)]
    pub none: Vec<String>,
}

/// Where kernel, initrd and the distribution's arguments come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Kernel candidates, first existing wins (when no config names one).
    pub kernel: Vec<String>,
    /// Initrd candidates, first existing wins (when no config names one).
    pub initrd: Vec<String>,
    /// Images that go before the initrd when present (CPU microcode).
    #[serde(default)]
    pub early_initrd: Vec<String>,
    /// The distribution's boot configs, read in this order for kernel,
    /// initrd(s) and arguments.
    #[serde(default)]
    pub configs: Vec<String>,
    /// Arguments that make it boot from the ISO file, with the placeholders
    /// `${iso_path}` (GRUB variable: the ISO's path on the medium),
    /// `${uuid}` (GRUB variable: the medium's filesystem UUID) and
    /// `${label}` (the ISO's volume label, filled in at detection).
    pub args: String,
    /// Keys (`key` of `key=value`, or a bare word) of the distribution's
    /// arguments to drop (optical-media-only ones, ones we set ourselves).
    #[serde(default)]
    pub drop_args: Vec<String>,
    /// Boot through the ISO's own `/boot/grub/loopback.cfg` (`configfile`).
    #[serde(default)]
    pub use_loopback_cfg: bool,
    /// How the booted initramfs reaches the ISO file.
    #[serde(default)]
    pub iso_access: IsoAccess,
    /// The root filesystem images inside the ISO (SquashFS or EROFS), tried
    /// in order; `sik boot list` reads the distribution's os-release from
    /// the first that exists (never mounted, never booted from).
    #[serde(default)]
    pub rootfs: Vec<String>,
}

/// The family's initramfs, as our hook meets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Initramfs {
    /// Framework name (informational): initramfs-tools, dracut, mkinitcpio, kiwi.
    pub framework: String,
    /// Where it mounts the partition that holds the ISO.
    pub medium: String,
    /// The new root while the initramfs runs.
    pub newroot: String,
}

/// How our code runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The mechanism.
    pub method: RunMethod,
    /// Hook file paths inside the initrd (relative, for `dracut-hook`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// initramfs-tools phase whose `ORDER` gets our entry (`init-bottom`).
    #[serde(default)]
    pub phase: Option<String>,
    /// For `init`: the path of the medium's `boot/sik/init` as the booted system sees it.
    #[serde(default)]
    pub init: Option<String>,
}

/// One live ISO family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    /// Short name (file name without `.toml`).
    pub name: String,
    /// What it is, which distributions use it.
    pub description: String,
    /// Order of trying: lower first.
    #[serde(default = "default_priority")]
    pub priority: i32,
    /// GRUB `--class` of the menu entry.
    #[serde(default)]
    pub class: Option<String>,
    /// Detection rules.
    pub detect: Detect,
    /// Kernel, initrd, arguments.
    pub boot: Boot,
    /// The initramfs's view.
    pub initramfs: Initramfs,
    /// How our code runs.
    pub hook: Hook,
}

fn default_priority() -> i32 {
    50
}

/// A family file that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("family file {file}: {why}")]
pub struct FamilyError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub why: String,
}

/// Parse one family file.
pub fn parse(file: &Path, text: &str) -> Result<Family, FamilyError> {
    let fam: Family = toml::from_str(text).map_err(|e| FamilyError {
        file: file.to_path_buf(),
        why: e.to_string().replace('\n', " "),
    })?;
    let bad = |why: &str| FamilyError {
        file: file.to_path_buf(),
        why: why.to_string(),
    };
    if fam.name.is_empty()
        || !fam
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "name must be non-empty ASCII letters, digits, '-' or '_'",
        ));
    }
    if fam.detect.all.is_empty() && fam.detect.any.is_empty() {
        return Err(bad("detect needs at least one path in `all` or `any`"));
    }
    match fam.hook.method {
        RunMethod::DracutHook if fam.hook.paths.is_empty() => {
            return Err(bad("hook.paths is needed for dracut-hook"));
        }
        RunMethod::InitramfsToolsConf if fam.hook.phase.is_none() => {
            return Err(bad("hook.phase is needed for initramfs-tools-conf"));
        }
        RunMethod::Init if fam.hook.init.is_none() => {
            return Err(bad("hook.init is needed for init"));
        }
        _ => {}
    }
    for p in &fam.hook.paths {
        if !quote::sh_path_ok(&format!("/{p}")) || p.starts_with('/') {
            return Err(bad(
                "hook.paths must be relative paths of letters, digits and ._- without '..'",
            ));
        }
    }
    validate_fields(&fam).map_err(|why| bad(&why))?;
    Ok(fam)
}

/// The fields that reach grub.cfg or a hook script, each against its
/// character class (crate::quote); the error names the field.
fn validate_fields(fam: &Family) -> Result<(), String> {
    if let Some(c) = fam.class.as_deref().filter(|c| !quote::name_ok(c)) {
        return Err(format!(
            "class {c:?}: use 1-64 ASCII letters, digits, '-' or '_'"
        ));
    }
    if let Some(p) = fam.hook.phase.as_deref().filter(|p| !quote::name_ok(p)) {
        return Err(format!(
            "hook.phase {p:?}: use 1-64 ASCII letters, digits, '-' or '_'"
        ));
    }
    if let Some(i) = fam
        .hook
        .init
        .as_deref()
        .filter(|i| !(quote::grub_path_ok(i) && quote::sh_path_ok(i)))
    {
        return Err(format!(
            "hook.init {i:?}: must be an absolute path of letters, digits and ._-"
        ));
    }
    for (field, v) in [
        ("initramfs.newroot", &fam.initramfs.newroot),
        ("initramfs.medium", &fam.initramfs.medium),
    ] {
        if !v.is_empty() && !quote::sh_path_ok(v) {
            return Err(format!(
                "{field} {v:?}: must be an absolute path of letters, digits and ._-"
            ));
        }
    }
    let lists: [(&str, &Vec<String>, bool); 5] = [
        ("boot.kernel", &fam.boot.kernel, true),
        ("boot.initrd", &fam.boot.initrd, true),
        ("boot.early_initrd", &fam.boot.early_initrd, false),
        ("boot.configs", &fam.boot.configs, false),
        ("boot.rootfs", &fam.boot.rootfs, false),
    ];
    for (field, list, glob) in lists {
        for p in list {
            // A `*` is allowed in the last component of a candidate; what it
            // matches on an ISO is checked again at detection.
            let (dir, last) = p.rsplit_once('/').unwrap_or(("", p));
            let last_ok = if glob {
                last.replace('*', "x")
            } else {
                last.to_string()
            };
            if !quote::grub_path_ok(&format!("{dir}/{last_ok}")) {
                return Err(format!(
                    "{field} {p:?}: must be an absolute path of letters, digits and ._,+:=@%~-{}",
                    if glob {
                        " ('*' in the last component)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    for a in fam.boot.args.split_whitespace() {
        if !quote::kernel_arg_ok(&a.replace("${label}", "x")) {
            return Err(format!(
                "boot.args {a:?}: arguments are letters, digits, ._,+:=@%/~- and the variables ${{iso_path}}, ${{uuid}}, ${{label}}"
            ));
        }
    }
    Ok(())
}

/// The compiled-in families, sorted by priority then name.
pub fn builtin() -> Vec<Family> {
    let mut v: Vec<Family> = BUILTIN_FILES
        .iter()
        .map(|(name, text)| {
            parse(Path::new(name), text)
                .unwrap_or_else(|e| panic!("built-in family file is broken: {e}"))
        })
        .collect();
    sort(&mut v);
    v
}

fn sort(v: &mut [Family]) {
    v.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The built-in families plus `dir/*.toml` (a family of the same name
/// replaces the built-in one). A missing directory adds nothing.
pub fn with_dir(dir: &Path) -> Result<Vec<Family>, FamilyError> {
    let mut v = builtin();
    for fam in load_dir(dir)? {
        v.retain(|f| f.name != fam.name);
        v.push(fam);
    }
    sort(&mut v);
    Ok(v)
}

/// The families of `dir/*.toml`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Family>, FamilyError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(FamilyError {
                file: dir.to_path_buf(),
                why: e.to_string(),
            });
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        // A family file is a regular file: a symlink is not followed.
        if std::fs::symlink_metadata(&f).is_ok_and(|m| !m.file_type().is_file()) {
            return Err(FamilyError {
                file: f.clone(),
                why: "not a regular file (symlinks are not followed)".into(),
            });
        }
        let text = std::fs::read_to_string(&f).map_err(|e| FamilyError {
            file: f.clone(),
            why: e.to_string(),
        })?;
        out.push(parse(&f, &text)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_families_parse() {
        let v = super::builtin();
        assert!(v.len() >= 9);
        assert_eq!(v.last().map(|f| f.name.as_str()), Some("generic"));
    }
}
