//! Update information of an AppImage (`.upd_info`): one transport string.
//!
//! * `zsync|https://host/path/App-latest-x86_64.AppImage.zsync`
//! * `gh-releases-zsync|USER|REPO|TAG|App-*x86_64.AppImage.zsync`
//!   (TAG: `latest`, `latest-pre`, `latest-all` or a tag name)
//! * `pling-v1-zsync|PRODUCT_ID|FILE_PATTERN`

use crate::{Error, Result};

/// Room in the runtime's `.upd_info` section (the text must leave a NUL).
pub const MAX_LEN: usize = 1023;

/// A validated update information string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "transport", rename_all = "kebab-case")]
pub enum UpdateInfo {
    /// A fixed URL of the `.zsync` file.
    Zsync {
        /// URL of the `.zsync` file.
        url: String,
    },
    /// The newest matching asset of a GitHub release.
    GhReleasesZsync {
        /// GitHub user or organisation.
        user: String,
        /// Repository.
        repo: String,
        /// `latest`, `latest-pre`, `latest-all` or a tag.
        tag: String,
        /// Asset name pattern of the `.zsync` file.
        pattern: String,
    },
    /// A file of a product on Pling (openDesktop).
    PlingV1Zsync {
        /// Product id.
        product: String,
        /// File name pattern.
        pattern: String,
    },
}

fn bad(s: &str, why: impl Into<String>) -> Error {
    Error::UpdateInfo(s.to_string(), why.into())
}

fn gh_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl UpdateInfo {
    /// Parse and validate `s`.
    pub fn parse(s: &str) -> Result<UpdateInfo> {
        if s.len() > MAX_LEN {
            return Err(bad(s, format!("longer than {MAX_LEN} bytes")));
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad(s, "contains whitespace or control characters"));
        }
        let fields: Vec<&str> = s.split('|').collect();
        match fields.as_slice() {
            ["zsync", url] => {
                if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 12 {
                    return Err(bad(s, "zsync| needs an http:// or https:// URL"));
                }
                if !url.ends_with(".zsync") {
                    return Err(bad(s, "the URL must name a .zsync file"));
                }
                Ok(UpdateInfo::Zsync {
                    url: url.to_string(),
                })
            }
            ["gh-releases-zsync", user, repo, tag, pattern] => {
                if !gh_name(user) || !gh_name(repo) {
                    return Err(bad(s, "USER and REPO must be GitHub names"));
                }
                if tag.is_empty() {
                    return Err(bad(
                        s,
                        "TAG is empty (latest, latest-pre, latest-all or a tag name)",
                    ));
                }
                if !pattern.ends_with(".zsync") {
                    return Err(bad(s, "the file pattern must end in .zsync"));
                }
                Ok(UpdateInfo::GhReleasesZsync {
                    user: user.to_string(),
                    repo: repo.to_string(),
                    tag: tag.to_string(),
                    pattern: pattern.to_string(),
                })
            }
            ["pling-v1-zsync", product, pattern] => {
                if product.is_empty() || !product.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad(s, "PRODUCT_ID must be a number"));
                }
                if pattern.is_empty() {
                    return Err(bad(s, "FILE_PATTERN is empty"));
                }
                Ok(UpdateInfo::PlingV1Zsync {
                    product: product.to_string(),
                    pattern: pattern.to_string(),
                })
            }
            [t, ..] if ["zsync", "gh-releases-zsync", "pling-v1-zsync"].contains(t) => Err(bad(
                s,
                format!("wrong number of |-separated fields for {t}"),
            )),
            [t, ..] => Err(bad(
                s,
                format!("unknown transport {t:?} (zsync, gh-releases-zsync or pling-v1-zsync)"),
            )),
            [] => Err(bad(s, "empty")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        assert!(
            UpdateInfo::parse("zsync|https://example.org/App-latest-x86_64.AppImage.zsync").is_ok()
        );
        assert!(
            UpdateInfo::parse("gh-releases-zsync|me|app|latest|App-*x86_64.AppImage.zsync").is_ok()
        );
        assert!(UpdateInfo::parse("pling-v1-zsync|1234567|App-*-x86_64.AppImage").is_ok());
        for bad in [
            "",
            "zsync|ftp://x/y.zsync",
            "zsync|https://example.org/app",
            "gh-releases-zsync|me|app|latest",
            "gh-releases-zsync|m e|app|latest|x.zsync",
            "pling-v1-zsync|abc|x",
            "bintray-zsync|a|b|c|d",
        ] {
            assert!(UpdateInfo::parse(bad).is_err(), "{bad}");
        }
    }
}
