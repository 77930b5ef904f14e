//! Checks of an AppDir before it is packed: every problem is collected so
//! the user sees all of them at once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::desktop::DesktopEntry;

/// What a check of an AppDir found.
#[derive(Debug, Clone, Default)]
pub struct AppDirReport {
    /// Problems that prevent packing, in a stable order.
    pub problems: Vec<String>,
    /// The desktop file at the root, when there is exactly one.
    pub desktop_file: Option<PathBuf>,
    /// Its `[Desktop Entry]` group.
    pub desktop: Option<DesktopEntry>,
    /// The icon file `Icon=` names, relative to the AppDir.
    pub icon: Option<PathBuf>,
    /// `.DirIcon` is missing (it can be created as a symlink to `icon`).
    pub dir_icon_missing: bool,
    /// AppStream metainfo files found (relative), checked.
    pub metainfo: Vec<PathBuf>,
}

/// Icon file extensions an AppDir may use, in order of preference.
const ICON_EXTS: [&str; 4] = ["png", "svg", "svgz", "xpm"];

/// Check `appdir`.
pub fn check(appdir: &Path) -> AppDirReport {
    let mut r = AppDirReport::default();
    match std::fs::metadata(appdir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            r.problems
                .push(format!("{} is not a directory", appdir.display()));
            return r;
        }
        Err(e) => {
            r.problems
                .push(format!("cannot read {}: {e}", appdir.display()));
            return r;
        }
    }
    // AppRun: present (a file or a symlink to one inside) and executable.
    let apprun = appdir.join("AppRun");
    match std::fs::metadata(&apprun) {
        Err(_) if std::fs::symlink_metadata(&apprun).is_ok() => {
            r.problems.push("AppRun is a dangling symlink".into())
        }
        Err(_) => r.problems.push("AppRun is missing".into()),
        Ok(m) if !m.is_file() => r.problems.push("AppRun is not a regular file".into()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => r
            .problems
            .push("AppRun is not executable (chmod +x AppRun)".into()),
        Ok(_) => {}
    }
    // Exactly one .desktop file at the root.
    let mut desktops: Vec<PathBuf> = match std::fs::read_dir(appdir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "desktop") && p.is_file())
            .collect(),
        Err(e) => {
            r.problems
                .push(format!("cannot list {}: {e}", appdir.display()));
            Vec::new()
        }
    };
    desktops.sort();
    match desktops.len() {
        0 => r.problems.push("no .desktop file at the root".into()),
        1 => {}
        n => r.problems.push(format!(
            "{n} .desktop files at the root ({}); exactly one is allowed",
            desktops
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    if desktops.len() == 1 {
        let path = desktops.remove(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read(&path) {
            Err(e) => r.problems.push(format!("cannot read {name}: {e}")),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(_) => r.problems.push(format!("{name}: not UTF-8")),
                Ok(text) => {
                    let (entry, syntax) = DesktopEntry::parse(&text);
                    r.problems
                        .extend(syntax.into_iter().map(|p| format!("{name}: {p}")));
                    r.problems
                        .extend(entry.check().into_iter().map(|p| format!("{name}: {p}")));
                    if let Some(icon) = entry.icon().filter(|i| !i.is_empty() && !i.contains('/')) {
                        match find_icon(appdir, icon) {
                            Some(found) => r.icon = Some(found),
                            None => r.problems.push(format!(
                                "icon {icon:?} of {name} is missing: expected {icon}.png, {icon}.svg or {icon}.svgz at the root or under usr/share/icons/hicolor/"
                            )),
                        }
                    }
                    r.desktop = Some(entry);
                }
            },
        }
        r.desktop_file = Some(path);
    }
    // .DirIcon
    let dir_icon = appdir.join(".DirIcon");
    match std::fs::symlink_metadata(&dir_icon) {
        Err(_) => r.dir_icon_missing = true,
        Ok(_) if std::fs::metadata(&dir_icon).is_err() => {
            r.problems.push(".DirIcon is a dangling symlink".into())
        }
        Ok(_) => {}
    }
    // AppStream metainfo
    let meta_dir = appdir.join("usr/share/metainfo");
    if let Ok(rd) = std::fs::read_dir(&meta_dir) {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.ends_with(".appdata.xml") || n.ends_with(".metainfo.xml")
            })
            .collect();
        files.sort();
        for f in files {
            let rel = f.strip_prefix(appdir).unwrap_or(&f).to_path_buf();
            match std::fs::read_to_string(&f) {
                Err(e) => r
                    .problems
                    .push(format!("cannot read {}: {e}", rel.display())),
                Ok(text) => r.problems.extend(
                    check_metainfo(&text)
                        .into_iter()
                        .map(|p| format!("{}: {p}", rel.display())),
                ),
            }
            r.metainfo.push(rel);
        }
    }
    r
}

/// Find the icon file for an `Icon=` name (relative to the AppDir).
fn find_icon(appdir: &Path, icon: &str) -> Option<PathBuf> {
    for ext in ICON_EXTS {
        let rel = PathBuf::from(format!("{icon}.{ext}"));
        if appdir.join(&rel).is_file() {
            return Some(rel);
        }
    }
    let hicolor = appdir.join("usr/share/icons/hicolor");
    let mut sizes: Vec<PathBuf> = std::fs::read_dir(&hicolor)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    // Prefer scalable, then the largest size.
    sizes.sort_by_key(|p| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let px: i64 = n
            .split('x')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if n == "scalable" { i64::MIN } else { -px }
    });
    for s in sizes {
        for ext in ICON_EXTS {
            let p = s.join("apps").join(format!("{icon}.{ext}"));
            if p.is_file() {
                return p.strip_prefix(appdir).ok().map(Path::to_path_buf);
            }
        }
    }
    None
}

/// Light checks of an AppStream metainfo file: a `<component>` root with
/// `<id>`, `<name>`, `<summary>` and `<metadata_license>`.
pub fn check_metainfo(text: &str) -> Vec<String> {
    let mut p = Vec::new();
    if !text.contains("<component") || !text.contains("</component>") {
        p.push("no <component> element".to_string());
        return p;
    }
    for tag in ["id", "name", "summary", "metadata_license"] {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        let ok = text.find(&open).and_then(|s| {
            let after = &text[s..];
            let gt = after.find('>')?;
            let end = after.find(&close)?;
            Some(end > gt + 1)
        });
        if ok != Some(true) {
            p.push(format!("<{tag}> is missing or empty"));
        }
    }
    p
}

/// Create `.DirIcon` as a relative symlink to the icon.
pub fn create_dir_icon(appdir: &Path, icon: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(icon, appdir.join(".DirIcon"))
}

/// The path (relative to the AppDir) of the main executable: `AppRun` when
/// it is an ELF, else the program of `Exec=` under `usr/bin/` or the root.
pub fn main_executable(appdir: &Path, desktop: Option<&DesktopEntry>) -> Option<PathBuf> {
    let is_elf = |p: &Path| {
        let mut head = [0u8; 4];
        std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && head == *b"\x7fELF"
    };
    if is_elf(&appdir.join("AppRun")) {
        return Some(PathBuf::from("AppRun"));
    }
    let prog = desktop?.exec_program()?;
    let name = Path::new(&prog).file_name()?.to_owned();
    [Path::new("usr/bin").join(&name), PathBuf::from(&name)]
        .into_iter()
        .find(|rel| is_elf(&appdir.join(rel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metainfo() {
        let good = "<component type=\"desktop-application\"><id>org.x.App</id><name>App</name><summary>Does</summary><metadata_license>CC0-1.0</metadata_license></component>";
        assert!(check_metainfo(good).is_empty());
        let bad = "<component><id></id></component>";
        assert_eq!(check_metainfo(bad).len(), 4);
    }

    #[test]
    fn broken_appdir_lists_everything() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("a.desktop"),
            "[Desktop Entry]\nType=Application\n",
        )
        .unwrap();
        std::fs::write(d.path().join("b.desktop"), "[Desktop Entry]\n").unwrap();
        let r = check(d.path());
        let all = r.problems.join("\n");
        assert!(all.contains("AppRun is missing"), "{all}");
        assert!(all.contains("2 .desktop files"), "{all}");
    }
}
