//! Extension-release metadata, the systemd-sysext format.
//!
//! An ExtensionImage named NAME carries
//! `usr/lib/extension-release.d/extension-release.NAME`, an os-release style
//! file of `KEY=VALUE` lines. The fields this project reads and writes:
//! `ID` (or `_any`), `VERSION_ID`, `SYSEXT_LEVEL`, `ARCHITECTURE`,
//! `SYSEXT_VERSION_ID` (the extension's own version) and `SYSEXT_ID`.

use std::collections::BTreeMap;

/// Directory of the extension-release file inside an image.
pub const RELEASE_DIR: &str = "usr/lib/extension-release.d";

/// Path of the extension-release file of extension `name`, relative to the image root.
pub fn release_path(name: &str) -> String {
    format!("{RELEASE_DIR}/extension-release.{name}")
}

/// Parsed os-release / extension-release fields, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseFields(pub BTreeMap<String, String>);

impl ReleaseFields {
    /// Parse `KEY=VALUE` lines; quotes (`"…"`, `'…'`) are removed, comments
    /// and lines that are not assignments are ignored.
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let v = v.trim();
            let v = if v.len() >= 2
                && ((v.starts_with('"') && v.ends_with('"'))
                    || (v.starts_with('\'') && v.ends_with('\'')))
            {
                unescape(&v[1..v.len() - 1])
            } else {
                v.to_string()
            };
            map.insert(k.to_string(), v);
        }
        ReleaseFields(map)
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Serialise as `KEY=VALUE` lines (sorted by key, values quoted when
    /// they contain anything but safe characters).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.0 {
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-+:/@".contains(c))
            {
                out.push_str(&format!("{k}={v}\n"));
            } else {
                let esc = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('$', "\\$")
                    .replace('`', "\\`");
                out.push_str(&format!("{k}=\"{esc}\"\n"));
            }
        }
        out
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = ReleaseFields::parse(
            "ID=_any\n# c\nNAME=\"My \\\"ext\\\"\"\nBAD LINE\nARCHITECTURE='x86-64'\n",
        );
        assert_eq!(f.get("ID"), Some("_any"));
        assert_eq!(f.get("NAME"), Some("My \"ext\""));
        assert_eq!(f.get("ARCHITECTURE"), Some("x86-64"));
        assert_eq!(ReleaseFields::parse(&f.to_text()), f);
    }
}
