//! Desktop entries (freedesktop.org Desktop Entry Specification), as far as
//! an AppDir needs them (`sik create appimage` checks them, `sik inspect`
//! shows them): the `[Desktop Entry]` group and its keys.

use std::collections::BTreeMap;

/// The `[Desktop Entry]` group of a `.desktop` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DesktopEntry {
    /// Keys of the group in file order is not kept; localized keys
    /// (`Name[de]`) are kept under their full name.
    pub keys: BTreeMap<String, String>,
}

impl DesktopEntry {
    /// Parse the text of a desktop file. Problems of the syntax are returned
    /// alongside what could be read.
    pub fn parse(text: &str) -> (DesktopEntry, Vec<String>) {
        let mut entry = DesktopEntry::default();
        let mut problems = Vec::new();
        let mut group: Option<String> = None;
        let mut seen_main = false;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(g) = line.strip_prefix('[') {
                match g.strip_suffix(']') {
                    Some(name) => {
                        if group.is_none() && name != "Desktop Entry" {
                            problems.push(format!(
                                "line {}: the first group must be [Desktop Entry]",
                                n + 1
                            ));
                        }
                        if name == "Desktop Entry" {
                            if seen_main {
                                problems
                                    .push(format!("line {}: second [Desktop Entry] group", n + 1));
                            }
                            seen_main = true;
                        }
                        group = Some(name.to_string());
                    }
                    None => problems.push(format!("line {}: unterminated group header", n + 1)),
                }
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                problems.push(format!("line {}: not a key=value line", n + 1));
                continue;
            };
            match group.as_deref() {
                None => problems.push(format!("line {}: key outside of any group", n + 1)),
                Some("Desktop Entry") => {
                    let k = k.trim().to_string();
                    if entry.keys.insert(k.clone(), v.trim().to_string()).is_some() {
                        problems.push(format!("line {}: key {k} appears twice", n + 1));
                    }
                }
                Some(_) => {}
            }
        }
        if !seen_main {
            problems.push("no [Desktop Entry] group".into());
        }
        (entry, problems)
    }

    /// Value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// `Name=`.
    pub fn name(&self) -> Option<&str> {
        self.get("Name")
    }

    /// `Icon=`.
    pub fn icon(&self) -> Option<&str> {
        self.get("Icon")
    }

    /// `X-AppImage-Version=`.
    pub fn version(&self) -> Option<&str> {
        self.get("X-AppImage-Version")
    }

    /// The program `Exec=` starts: its first word, without quotes.
    pub fn exec_program(&self) -> Option<String> {
        let exec = self.get("Exec")?.trim();
        let first = if let Some(rest) = exec.strip_prefix('"') {
            rest.split('"').next().unwrap_or("")
        } else {
            exec.split_whitespace().next().unwrap_or("")
        };
        if first.is_empty() {
            None
        } else {
            Some(first.to_string())
        }
    }

    /// Problems of the keys an AppImage needs: `Type=Application`, `Name`,
    /// `Exec`, `Icon` (a name, not a path with extension) and `Categories`
    /// (`;`-separated, registered or `X-` names).
    pub fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.get("Type") {
            None => p.push("Type= is missing".to_string()),
            Some("Application") => {}
            Some(t) => p.push(format!("Type={t}: an AppImage needs Type=Application")),
        }
        for key in ["Name", "Exec", "Icon", "Categories"] {
            if self.get(key).is_none_or(|v| v.is_empty()) {
                p.push(format!("{key}= is missing or empty"));
            }
        }
        if let Some(icon) = self.icon()
            && (icon.contains('/')
                || [".png", ".svg", ".svgz", ".xpm"]
                    .iter()
                    .any(|e| icon.ends_with(e)))
        {
            p.push(format!(
                "Icon={icon}: must be an icon name without path or extension"
            ));
        }
        if let Some(c) = self.get("Categories").filter(|c| !c.is_empty()) {
            for cat in c.split(';').filter(|s| !s.is_empty()) {
                if !cat.starts_with("X-")
                    && !MAIN_CATEGORIES.contains(&cat)
                    && !cat
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                {
                    p.push(format!("Categories: {cat:?} is not a valid category name"));
                }
            }
            if !c.split(';').any(|cat| MAIN_CATEGORIES.contains(&cat)) {
                p.push(format!(
                    "Categories={c}: names no main category (one of {})",
                    MAIN_CATEGORIES.join(", ")
                ));
            }
        }
        p
    }
}

/// The main categories of the Desktop Menu Specification.
pub const MAIN_CATEGORIES: [&str; 13] = [
    "AudioVideo",
    "Audio",
    "Video",
    "Development",
    "Education",
    "Game",
    "Graphics",
    "Network",
    "Office",
    "Science",
    "Settings",
    "System",
    "Utility",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_entry() {
        let (e, p) = DesktopEntry::parse(
            "[Desktop Entry]\nType=Application\nName=Hello\nExec=hello %F\nIcon=hello\nCategories=Utility;\nX-AppImage-Version=1.2\n[Desktop Action x]\nName=Other\n",
        );
        assert!(p.is_empty(), "{p:?}");
        assert!(e.check().is_empty(), "{:?}", e.check());
        assert_eq!(e.name(), Some("Hello"));
        assert_eq!(e.version(), Some("1.2"));
        assert_eq!(e.exec_program().as_deref(), Some("hello"));
    }

    #[test]
    fn every_problem_named() {
        let (e, _) =
            DesktopEntry::parse("[Desktop Entry]\nType=Link\nIcon=x.png\nCategories=Foo;\n");
        let p = e.check().join("\n");
        for needle in ["Type=Link", "Name=", "Exec=", "Icon=x.png", "main category"] {
            assert!(p.contains(needle), "{needle}: {p}");
        }
    }

    #[test]
    fn syntax_problems() {
        let (_, p) = DesktopEntry::parse("junk\n[Desktop Entry\n");
        assert!(p.len() >= 2, "{p:?}");
    }
}
