//! Desktop integration of AppImages (`sik integrate`, spec/appimage.md
//! section 6): a desktop entry whose `Exec` runs the AppImage where it lies,
//! its icons in the hicolor theme and its shared-mime-info packages, written
//! into an XDG data directory (`~/.local/share`, `/usr/local/share`, or any
//! other). Nothing is copied out of the AppImage but these files.
//!
//! Every file written for an AppImage is named `sik-ID-…`, where ID is
//! [`appimage_id`] of its path, so integrating again replaces exactly them
//! and removing finds exactly them. The signature is checked through
//! `sik-verify` on the descriptor the files are then read from; the entry
//! records the verdict and the signer.
//!
//! ```no_run
//! use sik_appimage::integrate::{self, Options};
//! let trust = sik_verify::TrustStore::load(&[]).unwrap();
//! let data = integrate::user_data_dir().unwrap();
//! let done = integrate::integrate("App.AppImage".as_ref(), &Options::new(&data, &trust)).unwrap();
//! println!("{}", done.desktop_file.display());
//! ```

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use sik_image::desktop::{self, DesktopEntry};
use sik_image::elf;
use sik_image::kind::{self, ImageKind};
use sik_image::signature::sshsig;
use sik_verify::{TrustStore, Verdict};

use crate::contents::{self, plain_name};
use crate::{Error, Result};

/// Prefix of every file integration writes.
pub const PREFIX: &str = "sik-";

/// Keys of the entry that name the AppImage, its signature and its signer.
pub const KEY_APPIMAGE: &str = "X-SIK-AppImage";
/// The verdict of the signature check (`trusted`, `untrusted`, `unsigned`, …).
pub const KEY_SIGNATURE: &str = "X-SIK-Signature";
/// `SHA256:…` fingerprint of the signer's key.
pub const KEY_SIGNER: &str = "X-SIK-Signer";
/// The signer's key comment (or `allowed_signers` principal).
pub const KEY_SIGNER_COMMENT: &str = "X-SIK-Signer-Comment";
/// The AppImage's version (its desktop file's, kept).
pub const KEY_VERSION: &str = "X-AppImage-Version";

/// Keys of the AppImage's own entry not carried over: the ones integration
/// sets, and those that would start something else than `Exec`.
const DROPPED: [&str; 5] = ["Exec", "TryExec", "Icon", "Actions", "DBusActivatable"];

/// The user's data directory: `$XDG_DATA_HOME` when absolute, else
/// `$HOME/.local/share`.
pub fn user_data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from)
        && d.is_absolute()
    {
        return Ok(d);
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h.join(".local/share")),
        _ => Err(Error::Usage(
            "neither XDG_DATA_HOME nor HOME is an absolute path".into(),
        )),
    }
}

/// The system-wide data directory for software not from the distribution.
pub const SYSTEM_DATA_DIR: &str = "/usr/local/share";

/// What [`integrate`] does.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// The XDG data directory written into.
    pub data_dir: &'a Path,
    /// Keys the signature is checked against.
    pub trust: &'a TrustStore,
    /// Refuse an AppImage no key of `trust` signed.
    pub require_trusted: bool,
}

impl<'a> Options<'a> {
    /// Integrate into `data_dir`, checking signatures against `trust`
    /// without requiring one.
    pub fn new(data_dir: &'a Path, trust: &'a TrustStore) -> Self {
        Options {
            data_dir,
            trust,
            require_trusted: false,
        }
    }
}

/// The signature of an AppImage as integration records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// The verdict's name (`trusted`, `untrusted`, `unsigned`, `modified`,
    /// `wrong-namespace`, `malformed`).
    pub status: String,
    /// Whether a trusted key made a valid signature.
    pub trusted: bool,
    /// `SHA256:…` of the key that made a valid signature.
    pub fingerprint: Option<String>,
    /// That key's comment: the trusted key's (principal first), else the
    /// one in the AppImage's `.sig_key` when it is the same key.
    pub comment: Option<String>,
}

/// What [`integrate`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Integrated {
    /// The AppImage (absolute, symbolic links resolved): what `Exec` runs.
    pub appimage: PathBuf,
    /// [`appimage_id`] of that path.
    pub id: String,
    /// `Name=`.
    pub name: String,
    /// `X-AppImage-Version=`, if the AppImage has one.
    pub version: Option<String>,
    /// The signature.
    pub signer: Signer,
    /// The desktop entry written.
    pub desktop_file: PathBuf,
    /// Its `Exec=` value.
    pub exec: String,
    /// Icons written.
    pub icons: Vec<PathBuf>,
    /// MIME packages written.
    pub mime_packages: Vec<PathBuf>,
    /// Files of an earlier integration of the same path that are gone now.
    pub removed: Vec<PathBuf>,
    /// Whether any file was written or removed (false: all was in place).
    pub changed: bool,
    /// Whether a MIME package was written or removed (the MIME database
    /// needs [`refresh_mime`]).
    pub mime_changed: bool,
}

/// What [`remove`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    /// The AppImage's path as integration names it.
    pub appimage: PathBuf,
    /// Its [`appimage_id`].
    pub id: String,
    /// Files removed (none: it was not integrated).
    pub files: Vec<PathBuf>,
    /// Whether a MIME package was removed.
    pub mime_changed: bool,
}

/// One integrated AppImage found by [`list`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// [`appimage_id`] of its path.
    pub id: String,
    /// The desktop entry.
    pub desktop_file: PathBuf,
    /// The AppImage it runs.
    pub appimage: Option<PathBuf>,
    /// Whether that file exists.
    pub present: bool,
    /// `Name=`.
    pub name: Option<String>,
    /// `X-AppImage-Version=`.
    pub version: Option<String>,
    /// The recorded signature verdict.
    pub signature: Option<String>,
    /// The recorded signer fingerprint.
    pub fingerprint: Option<String>,
    /// The recorded signer comment.
    pub comment: Option<String>,
}

/// The path integration names an AppImage by: absolute with symbolic links
/// resolved when it exists, else absolute as given.
pub fn appimage_path(path: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(path).map_err(|e| Error::io(path, e)),
    }
}

/// The ID in the names of an AppImage's files: the first 32 hex digits of
/// the SHA-256 of its path's bytes ([`appimage_path`]).
pub fn appimage_id(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let d = Sha256::digest(path.as_os_str().as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Integrate one AppImage into `opts.data_dir`.
pub fn integrate(appimage: &Path, opts: &Options) -> Result<Integrated> {
    let path = std::fs::canonicalize(appimage).map_err(|e| Error::io(appimage, e))?;
    let path_str = path.to_str().ok_or_else(|| Error::Integrate {
        path: path.clone(),
        why: "the path is not UTF-8 (a desktop entry cannot name it)".into(),
    })?;
    let bad = |why: String| Error::Integrate {
        path: path.clone(),
        why,
    };
    let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    if !file.metadata().map_err(|e| Error::io(&path, e))?.is_file() {
        return Err(bad("not a regular file".into()));
    }
    match kind::detect(&mut file).map_err(|e| bad(e.to_string()))? {
        ImageKind::AppImage { image_type: 2 } => {}
        k => {
            return Err(bad(format!("not a type 2 AppImage ({})", k.describe())));
        }
    }
    let layout = elf::read_layout(&mut file).map_err(|e| bad(e.to_string()))?;
    let report = sik_verify::verify_open(&file, &path, opts.trust).map_err(|e| match e {
        sik_verify::Error::Io { path, source } => Error::Io { path, source },
        other => bad(other.to_string()),
    })?;
    let signer = signer_of(&report.verdict, &mut file, &layout);
    if opts.require_trusted && !signer.trusted {
        return Err(Error::Refused {
            path: path.clone(),
            why: format!("not signed by a trusted key: {}", report.verdict.reason()),
        });
    }
    let contents = contents::read(
        file.try_clone().map_err(|e| Error::io(&path, e))?,
        layout.end,
    )
    .map_err(bad)?;
    let id = appimage_id(&path);
    let base = format!("{PREFIX}{id}-");
    let (entry, problems) = DesktopEntry::parse(&contents.desktop);
    let args = entry
        .get("Exec")
        .and_then(desktop::exec_args)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "{}: no usable Exec= ({})",
                contents.desktop_name,
                problems.join("; ")
            ))
        })?;
    let name = entry
        .name()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad(format!("{}: no Name=", contents.desktop_name)))?
        .to_string();
    if entry.get("Type").is_some_and(|t| t != "Application") {
        return Err(bad(format!(
            "{}: Type= is not Application",
            contents.desktop_name
        )));
    }
    let version = entry.version().map(str::to_string);

    // The new entry: the AppImage's keys, Exec running the file itself.
    let mut out = DesktopEntry::default();
    for (k, v) in &entry.keys {
        let base_key = k.split('[').next().unwrap_or("");
        if desktop::valid_key(k) && !DROPPED.contains(&base_key) && !k.starts_with("X-SIK-") {
            out.keys.insert(k.clone(), v.clone());
        }
    }
    out.keys.insert("Type".into(), "Application".into());
    let exec = desktop::exec_value(path_str, &args[1..]);
    out.keys.insert("Exec".into(), exec.clone());
    out.keys
        .insert("TryExec".into(), desktop::escape_value(path_str));
    let icon_name = entry.icon().filter(|i| plain_name(i));
    match icon_name {
        Some(i) if !contents.icons.is_empty() => {
            out.keys.insert("Icon".into(), format!("{base}{i}"));
        }
        Some(i) => {
            out.keys.insert("Icon".into(), i.to_string());
        }
        None => {}
    }
    out.keys
        .insert(KEY_APPIMAGE.into(), desktop::escape_value(path_str));
    out.keys.insert(KEY_SIGNATURE.into(), signer.status.clone());
    if let Some(f) = &signer.fingerprint {
        out.keys.insert(KEY_SIGNER.into(), f.clone());
    }
    if let Some(c) = &signer.comment {
        out.keys
            .insert(KEY_SIGNER_COMMENT.into(), desktop::escape_value(c));
    }

    // The files, each written only when its content differs.
    let data = opts.data_dir;
    let stem = contents
        .desktop_name
        .strip_suffix(".desktop")
        .map(sanitize)
        .unwrap_or_else(|| "app".into());
    let desktop_file = data
        .join("applications")
        .join(format!("{base}{stem}.desktop"));
    let mut changed = write_if_changed(&desktop_file, out.to_text().as_bytes())?;
    let mut icons = Vec::new();
    if let Some(i) = icon_name {
        for (size, ext, bytes) in &contents.icons {
            let p = data
                .join("icons/hicolor")
                .join(size)
                .join("apps")
                .join(format!("{base}{i}.{ext}"));
            changed |= write_if_changed(&p, bytes)?;
            icons.push(p);
        }
    }
    let mut mime_packages = Vec::new();
    let mut mime_changed = false;
    for (n, bytes) in &contents.mimes {
        let p = data.join("mime/packages").join(format!("{base}{n}"));
        mime_changed |= write_if_changed(&p, bytes)?;
        mime_packages.push(p);
    }
    // What an earlier integration of this path wrote and this one did not.
    let mut removed = Vec::new();
    for f in files_of(data, &id)? {
        if f != desktop_file && !icons.contains(&f) && !mime_packages.contains(&f) {
            if is_mime_package(data, &f) {
                mime_changed = true;
            }
            remove_file(data, &f)?;
            removed.push(f);
        }
    }
    changed |= mime_changed || !removed.is_empty();
    Ok(Integrated {
        appimage: path.clone(),
        id,
        name,
        version,
        signer,
        desktop_file,
        exec,
        icons,
        mime_packages,
        removed,
        changed,
        mime_changed,
    })
}

/// Remove the files integration wrote for `appimage` (which need not exist
/// any more) from `data_dir`; directories left empty go too.
pub fn remove(appimage: &Path, data_dir: &Path) -> Result<Removed> {
    let path = appimage_path(appimage)?;
    let id = appimage_id(&path);
    let mut r = remove_id(&id, data_dir)?;
    r.appimage = path;
    Ok(r)
}

/// [`remove`] by [`appimage_id`] (as [`list`] reports it).
pub fn remove_id(id: &str, data_dir: &Path) -> Result<Removed> {
    let mut files = Vec::new();
    let mut mime_changed = false;
    for f in files_of(data_dir, id)? {
        mime_changed |= is_mime_package(data_dir, &f);
        remove_file(data_dir, &f)?;
        files.push(f);
    }
    Ok(Removed {
        appimage: PathBuf::new(),
        id: id.to_string(),
        files,
        mime_changed,
    })
}

/// Every AppImage integrated into `data_dir`, by desktop entry name.
pub fn list(data_dir: &Path) -> Result<Vec<Listed>> {
    let apps = data_dir.join("applications");
    let mut out = Vec::new();
    for (name, id) in ours(&apps)? {
        let p = apps.join(&name);
        if !name.ends_with(".desktop") {
            continue;
        }
        let text = match std::fs::read(&p) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) => return Err(Error::io(&p, e)),
        };
        let (e, _) = DesktopEntry::parse(&text);
        let appimage = e
            .get(KEY_APPIMAGE)
            .map(|v| PathBuf::from(desktop::unescape_value(v)));
        out.push(Listed {
            id,
            desktop_file: p,
            present: appimage.as_deref().is_some_and(Path::exists),
            appimage,
            name: e.name().map(str::to_string),
            version: e.version().map(str::to_string),
            signature: e.get(KEY_SIGNATURE).map(str::to_string),
            fingerprint: e.get(KEY_SIGNER).map(str::to_string),
            comment: e.get(KEY_SIGNER_COMMENT).map(desktop::unescape_value),
        });
    }
    Ok(out)
}

/// How [`refresh_mime`] brought the MIME database up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MimeRefresh {
    /// `update-mime-database` ran.
    Updated,
    /// No package is left: the database files `update-mime-database`
    /// generated from `packages/` were removed with it.
    Cleared,
    /// `update-mime-database` is not installed (in ROOT); the packages are
    /// in place for its next run.
    NoTool,
}

/// Bring `DATA_DIR/mime` up to date after packages were written or removed:
/// run `update-mime-database` (the one in `root` through `chroot` when a
/// root other than `/` is given; `data_dir` then lies inside it). When
/// `packages/` is left empty, everything else in `mime/` is output of that
/// tool for no packages and is removed.
pub fn refresh_mime(data_dir: &Path, root: Option<&Path>) -> Result<MimeRefresh> {
    let mime = data_dir.join("mime");
    let packages = mime.join("packages");
    let empty = match std::fs::read_dir(&packages) {
        Ok(mut d) => d.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(&packages, e)),
    };
    if empty {
        if mime.exists() {
            std::fs::remove_dir_all(&mime).map_err(|e| Error::io(&mime, e))?;
            prune_dirs(data_dir, data_dir.join("mime").as_path())?;
        }
        return Ok(MimeRefresh::Cleared);
    }
    let root = root.filter(|r| *r != Path::new("/"));
    let mut cmd = match root {
        Some(r) => {
            let inside = mime.strip_prefix(r).map_err(|_| {
                Error::Usage(format!(
                    "{} is not inside the root {}",
                    mime.display(),
                    r.display()
                ))
            })?;
            let tool = ["usr/bin/update-mime-database", "bin/update-mime-database"]
                .into_iter()
                .find(|t| r.join(t).is_file());
            let Some(tool) = tool else {
                return Ok(MimeRefresh::NoTool);
            };
            let mut c = Command::new("chroot");
            c.arg(r)
                .arg(format!("/{tool}"))
                .arg(Path::new("/").join(inside));
            c
        }
        None => {
            let found = std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("update-mime-database"))
                    .find(|t| t.is_file())
            });
            let Some(tool) = found else {
                return Ok(MimeRefresh::NoTool);
            };
            let mut c = Command::new(tool);
            c.arg(&mime);
            c
        }
    };
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Tool(format!("update-mime-database: {e}")))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "update-mime-database {}: {}",
            mime.display(),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " ")
        )));
    }
    Ok(MimeRefresh::Updated)
}

fn signer_of(v: &Verdict, file: &mut File, layout: &elf::ElfLayout) -> Signer {
    let (fingerprint, comment) = match v {
        Verdict::Trusted {
            fingerprint,
            principal,
            comment,
        } => (
            Some(fingerprint.clone()),
            principal
                .clone()
                .filter(|p| !p.is_empty())
                .or_else(|| (!comment.is_empty()).then(|| comment.clone())),
        ),
        Verdict::Untrusted { fingerprint } => {
            // The key line in .sig_key is informational: its comment is
            // used only when it is the key that made the valid signature.
            let comment = layout
                .section(elf::SIG_KEY.name)
                .filter(|s| s.size <= 64 * 1024)
                .and_then(|s| elf::read_section(file, s).ok())
                .and_then(|b| elf::nul_padded_text(&b))
                .and_then(|line| sshsig::parse_public_key_line(&line))
                .filter(|(blob, _)| sshsig::fingerprint(blob) == *fingerprint)
                .map(|(_, c)| c)
                .filter(|c| !c.is_empty());
            (Some(fingerprint.clone()), comment)
        }
        _ => (None, None),
    };
    Signer {
        status: v.name().to_string(),
        trusted: v.is_trusted(),
        fingerprint,
        comment: comment.map(|c| c.chars().filter(|c| !c.is_control()).collect()),
    }
}

/// A name part from any text: characters other than [`plain_name`]'s
/// become `_`, at most 64 of them.
fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let t = t.trim_start_matches('.').to_string();
    if t.is_empty() { "app".into() } else { t }
}

/// Names in `dir` that integration wrote (`sik-` + 32 hex digits + `-`),
/// with their ID.
fn ours(dir: &Path) -> Result<Vec<(String, String)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if let Some(id) = name.strip_prefix(PREFIX).and_then(|r| r.get(..32))
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            && name.as_bytes().get(PREFIX.len() + 32) == Some(&b'-')
        {
            out.push((name.clone(), id.to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every file integration wrote for `id` under `data`.
fn files_of(data: &Path, id: &str) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![data.join("applications"), data.join("mime/packages")];
    let hicolor = data.join("icons/hicolor");
    match std::fs::read_dir(&hicolor) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(|e| Error::io(&hicolor, e))?;
                dirs.push(e.path().join("apps"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&hicolor, e)),
    }
    let mut out = Vec::new();
    for d in dirs {
        for (name, i) in ours(&d)? {
            if i == id {
                out.push(d.join(name));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_mime_package(data: &Path, f: &Path) -> bool {
    f.parent() == Some(data.join("mime/packages").as_path())
}

/// Remove `f` (not a directory) and then its parent directories up to
/// `data` while they are empty.
fn remove_file(data: &Path, f: &Path) -> Result<()> {
    match std::fs::remove_file(f) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(f, e)),
    }
    if let Some(p) = f.parent() {
        prune_dirs(data, p)?;
    }
    Ok(())
}

/// Remove `dir` and its parents below `data` while they are empty.
fn prune_dirs(data: &Path, dir: &Path) -> Result<()> {
    let mut d = dir;
    while d != data && d.starts_with(data) {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                ) => {}
            Err(_) => break,
        }
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    Ok(())
}

/// Write `bytes` to `path` (mode 0644, through a temporary file renamed
/// into place) unless it already holds exactly them; true when written.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".sik-integrate-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = appimage_id(Path::new("/m/Applications/App.AppImage"));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, appimage_id(Path::new("/m/Applications/Other.AppImage")));
        assert_eq!(sanitize("org.example.My App"), "org.example.My_App");
        assert_eq!(sanitize(".."), "app");
    }

    #[test]
    fn only_our_names_are_found() {
        let t = tempfile::tempdir().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        for n in [
            format!("sik-{id}-a.desktop"),
            "sik-short-a.desktop".into(),
            format!("sik-{}-a.desktop", id.to_uppercase()),
            "other.desktop".into(),
        ] {
            std::fs::write(t.path().join(n), "").unwrap();
        }
        let found = ours(t.path()).unwrap();
        assert_eq!(found, [(format!("sik-{id}-a.desktop"), id.to_string())]);
    }
}
