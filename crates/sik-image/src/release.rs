//! Extension-release metadata, the systemd-sysext format.
//!
//! An ExtensionImage named NAME carries
//! `usr/lib/extension-release.d/extension-release.NAME`, an os-release style
//! file of `KEY=VALUE` lines. The fields this project reads and writes:
//! `ID` (or `_any`), `VERSION_ID`, `SYSEXT_LEVEL`, `ARCHITECTURE`,
//! `SYSEXT_VERSION_ID` (the extension's own version) and `SYSEXT_ID`; and
//! `SIK_PACKAGES`, the distribution packages an image was made from
//! (`spec/extension-image.md`, "Package facts").

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

/// The extension-release key listing the packages an image was made from.
pub const PACKAGES_KEY: &str = "SIK_PACKAGES";

/// One distribution package an image was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageFact {
    /// `deb`, `rpm` or `arch`.
    pub format: String,
    /// The package's name.
    pub name: String,
    /// Its full version (epoch and release included where the format has them).
    pub version: String,
    /// Its architecture as the package names it (`amd64`, `x86_64`, `all`, `noarch`, `any` …).
    pub arch: String,
}

/// Whether `s` can be one field of a `SIK_PACKAGES` entry: ASCII letters,
/// digits and `._+~^:@-`, 1 to 128 bytes (every Debian, RPM and Arch
/// package name, version and architecture fits).
pub fn package_field_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~^:@-".contains(c))
}

impl PackageFact {
    /// `FORMAT/NAME/VERSION/ARCH`, or `None` when a field is not
    /// [`package_field_ok`].
    pub fn token(&self) -> Option<String> {
        let fields = [&self.format, &self.name, &self.version, &self.arch];
        fields.iter().all(|f| package_field_ok(f)).then(|| {
            format!(
                "{}/{}/{}/{}",
                self.format, self.name, self.version, self.arch
            )
        })
    }
}

impl ReleaseFields {
    /// The packages listed in `SIK_PACKAGES` (space-separated
    /// `FORMAT/NAME/VERSION/ARCH`); malformed entries are left out.
    pub fn packages(&self) -> Vec<PackageFact> {
        let Some(v) = self.get(PACKAGES_KEY) else {
            return Vec::new();
        };
        v.split_ascii_whitespace()
            .filter_map(|t| {
                let mut it = t.split('/');
                let f = PackageFact {
                    format: it.next()?.to_string(),
                    name: it.next()?.to_string(),
                    version: it.next()?.to_string(),
                    arch: it.next()?.to_string(),
                };
                (it.next().is_none() && f.token().is_some()).then_some(f)
            })
            .collect()
    }

    /// Set `SIK_PACKAGES` to `packages` (those whose fields are valid; the
    /// key is left out when none are).
    pub fn set_packages(&mut self, packages: &[PackageFact]) {
        let tokens: Vec<String> = packages.iter().filter_map(PackageFact::token).collect();
        if tokens.is_empty() {
            self.0.remove(PACKAGES_KEY);
        } else {
            self.0.insert(PACKAGES_KEY.to_string(), tokens.join(" "));
        }
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
    fn package_facts_round_trip() {
        let facts = vec![
            PackageFact {
                format: "deb".into(),
                name: "libogg0".into(),
                version: "1:1.3.5-3".into(),
                arch: "amd64".into(),
            },
            PackageFact {
                format: "rpm".into(),
                name: "hello".into(),
                version: "2.12-1.fc40".into(),
                arch: "x86_64".into(),
            },
        ];
        let mut r = ReleaseFields::default();
        r.set_packages(&facts);
        let text = r.to_text();
        assert_eq!(
            text,
            "SIK_PACKAGES=\"deb/libogg0/1:1.3.5-3/amd64 rpm/hello/2.12-1.fc40/x86_64\"\n"
        );
        assert_eq!(ReleaseFields::parse(&text).packages(), facts);
        let bad =
            ReleaseFields::parse("SIK_PACKAGES=\"deb/a b/1 deb/x/1/all/extra deb/ok/1/all\"\n");
        assert_eq!(bad.packages().len(), 1);
    }

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
