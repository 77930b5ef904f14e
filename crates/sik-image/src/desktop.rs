//! Desktop entries (`NAME.desktop`, freedesktop Desktop Entry Specification):
//! the `[Desktop Entry]` group's keys, as AppImages carry them at their root.

use std::collections::BTreeMap;

/// The keys of the `[Desktop Entry]` group (unlocalised keys only; later
/// duplicates are ignored as the specification requires the first).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DesktopEntry(pub BTreeMap<String, String>);

impl DesktopEntry {
    /// Parse the text of a `.desktop` file. Returns the entry and a list of
    /// syntax problems (line number and what is wrong).
    pub fn parse(text: &str) -> (Self, Vec<String>) {
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        let mut group: Option<&str> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                if !line.ends_with(']') {
                    problems.push(format!("line {}: malformed group header", i + 1));
                }
                group = Some(line.trim_start_matches('[').trim_end_matches(']'));
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                problems.push(format!("line {}: not a KEY=VALUE line", i + 1));
                continue;
            };
            if group.is_none() {
                problems.push(format!("line {}: key outside of a group", i + 1));
                continue;
            }
            if group == Some("Desktop Entry") {
                let k = k.trim();
                if !k.contains('[') {
                    map.entry(k.to_string())
                        .or_insert_with(|| v.trim().to_string());
                }
            }
        }
        (DesktopEntry(map), problems)
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_group_keys() {
        let (e, p) = DesktopEntry::parse(
            "[Desktop Entry]\nType=Application\nName=Foo\nName[de]=Fu\nExec=foo %F\nIcon=foo\n[Desktop Action x]\nName=Other\n",
        );
        assert!(p.is_empty());
        assert_eq!(e.get("Name"), Some("Foo"));
        assert_eq!(e.get("Exec"), Some("foo %F"));
        assert_eq!(e.get("Type"), Some("Application"));
        let (_, p) = DesktopEntry::parse("Name=x\n[Desktop Entry\nbad\n");
        assert_eq!(p.len(), 3);
    }
}
