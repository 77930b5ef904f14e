//! The medium's link policy, `boot/customize/policy.toml`: what `sik link`
//! may do at boot while the medium's `boot/keys` are in force. Read in this
//! one place by `sik boot generate`, which bakes the resulting flags into
//! the hook script of the secondary initrd (nothing on the medium is parsed
//! by shell at boot). The medium's writer chooses this file and the keys;
//! both are exactly as trusted as the keys (see spec/medium.md).
//!
//! ```toml
//! # Link boot/customize/overlay (a directory: never signed).
//! allow_directories = true
//! # Run ExtensionRun of sources no key in boot/keys signed.
//! allow_unsigned_run = false
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::medium::Medium;

/// Path of the policy file, relative to the medium.
pub const POLICY_FILE: &str = "boot/customize/policy.toml";

/// Largest policy file read.
const MAX_BYTES: usize = 64 << 10;

/// The medium's link policy; a missing file means everything `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Pass `--allow-directories`: directory sources (the overlay) are linked.
    #[serde(default)]
    pub allow_directories: bool,
    /// Pass `--allow-unsigned-run`: ExtensionRun of unverified content runs.
    #[serde(default)]
    pub allow_unsigned_run: bool,
}

impl Policy {
    /// Parse the text of a policy file (`file` names it in errors).
    pub fn parse(file: &str, text: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::Refused(format!("{file}: {why}"));
        if text.len() > MAX_BYTES {
            return Err(bad(format!("larger than {MAX_BYTES} bytes")));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
        toml::from_str(text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))
    }

    /// The medium's policy (defaults when the file does not exist).
    pub fn read(m: &Medium) -> Result<Self> {
        match m.read(POLICY_FILE)? {
            Some(bytes) => Self::parse(POLICY_FILE, &bytes),
            None => Ok(Policy::default()),
        }
    }

    /// The `sik link` flags this policy adds, fixed words only.
    pub fn link_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.allow_directories {
            v.push("--allow-directories");
        }
        if self.allow_unsigned_run {
            v.push("--allow-unsigned-run");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::Policy;

    #[test]
    fn parses_strictly() {
        let p = Policy::parse("p", b"allow_directories = true\n").unwrap();
        assert_eq!(p.link_flags(), ["--allow-directories"]);
        assert_eq!(Policy::parse("p", b"").unwrap(), Policy::default());
        let e = Policy::parse("p", b"allow_everything = true\n").unwrap_err();
        assert!(e.to_string().contains("allow_everything"), "{e}");
        assert!(Policy::parse("p", b"allow_directories = \"yes\"\n").is_err());
    }
}
