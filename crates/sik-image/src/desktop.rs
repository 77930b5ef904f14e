//! Desktop entries (freedesktop.org Desktop Entry Specification), as far as
//! an AppDir needs them (`sik create appimage` checks them, `sik inspect`
//! shows them, `sik integrate` rewrites them): the `[Desktop Entry]` group
//! and its keys, the escapes of string values and the quoting of `Exec`
//! arguments (the one place that knows these rules).

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

/// Whether `key` is a valid key name: `[A-Za-z0-9-]+`, optionally followed
/// by a locale in brackets (`Name[de_DE@euro]`).
pub fn valid_key(key: &str) -> bool {
    let (base, locale) = match key.split_once('[') {
        Some((b, rest)) => match rest.strip_suffix(']') {
            Some(l) => (b, Some(l)),
            None => return false,
        },
        None => (key, None),
    };
    !base.is_empty()
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && locale.is_none_or(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '-'))
        })
}

/// A value of type string as written in a file: `\\`, newline, tab and
/// carriage return escaped (`\\\\`, `\\n`, `\\t`, `\\r`), a leading space as
/// `\\s`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' ' if i == 0 => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape_value`] (`\\s`, `\\n`, `\\t`, `\\r`, `\\\\`; any
/// other backslash is kept).
pub fn unescape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Characters that make an `Exec` argument need double quotes.
const EXEC_RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// One argument of an `Exec` command line, before the value is escaped
/// with [`escape_value`]: quoted in double quotes when it holds a reserved
/// character (inside them `"`, `` ` ``, `$` and `\\` get a backslash). A
/// literal argument (`literal`, such as a file path) has `%` doubled; an
/// argument taken from another `Exec` line keeps its field codes.
pub fn exec_arg(arg: &str, literal: bool) -> String {
    let arg = if literal {
        arg.replace('%', "%%")
    } else {
        arg.to_string()
    };
    if !arg.is_empty() && !arg.contains(EXEC_RESERVED) {
        return arg;
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The arguments of an `Exec` value as written in a file: string escapes
/// undone, then split at unquoted spaces, double quotes removed and their
/// backslash escapes undone. `%` sequences (field codes, `%%`) are kept as
/// written. `None` for an unterminated quote.
pub fn exec_args(value: &str) -> Option<Vec<String>> {
    let text = unescape_value(value);
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut it = text.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => {
                in_arg = true;
                loop {
                    match it.next()? {
                        '"' => break,
                        '\\' => cur.push(it.next()?),
                        o => cur.push(o),
                    }
                }
            }
            ' ' | '\t' => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            o => {
                in_arg = true;
                cur.push(o);
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    Some(args)
}

/// An `Exec` value (escaped for the file) that runs `program` (a path,
/// taken literally) with `args` (arguments of another `Exec` line, field
/// codes kept).
pub fn exec_value(program: &str, args: &[String]) -> String {
    let mut line = exec_arg(program, true);
    for a in args {
        line.push(' ');
        line.push_str(&exec_arg(a, false));
    }
    escape_value(&line)
}

impl DesktopEntry {
    /// The text of a desktop file holding this entry's group:
    /// `[Desktop Entry]`, `Type` and `Name` first, then the other keys in
    /// name order. Values are written as stored (already escaped).
    pub fn to_text(&self) -> String {
        let mut out = String::from("[Desktop Entry]\n");
        for first in ["Type", "Name"] {
            if let Some(v) = self.get(first) {
                out.push_str(&format!("{first}={v}\n"));
            }
        }
        for (k, v) in &self.keys {
            if k != "Type" && k != "Name" {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out
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
    fn exec_quoting_round_trips() {
        // Spec examples: reserved characters need quotes, and inside them
        // `"`, `$`, backtick and backslash get a backslash; the file value
        // then doubles every backslash.
        assert_eq!(exec_arg("/opt/a b/App", true), "\"/opt/a b/App\"");
        assert_eq!(exec_arg("/x/100%.AppImage", true), "/x/100%%.AppImage");
        assert_eq!(exec_arg("a\"$`\\", true), "\"a\\\"\\$\\`\\\\\"");
        assert_eq!(exec_arg("%F", false), "%F");
        let v = exec_value("/m/My App$1.AppImage", &["--x".into(), "%U".into()]);
        assert_eq!(v, "\"/m/My App\\\\$1.AppImage\" --x %U");
        assert_eq!(
            exec_args(&v).unwrap(),
            ["/m/My App$1.AppImage", "--x", "%U"]
        );
        assert_eq!(exec_args("\"a \\\\\"b\" c").unwrap(), ["a \"b", "c"]);
        assert!(exec_args("\"open").is_none());
        assert_eq!(escape_value(" a\\b\n"), "\\sa\\\\b\\n");
        assert_eq!(unescape_value("\\sa\\\\b\\n"), " a\\b\n");
        assert!(valid_key("Name[de_DE@euro]") && valid_key("X-AppImage-Version"));
        assert!(!valid_key("Na me") && !valid_key("Name[") && !valid_key(""));
    }

    #[test]
    fn syntax_problems() {
        let (_, p) = DesktopEntry::parse("junk\n[Desktop Entry\n");
        assert!(p.len() >= 2, "{p:?}");
    }
}
