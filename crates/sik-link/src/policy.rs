//! Signature policy: which images may be linked.
//!
//! The one place where the linker asks about signatures. Verification
//! itself lives in `sik-verify`; this module maps its verdict to the
//! linker's decision.

use std::fs::File;
use std::path::{Path, PathBuf};

use sik_verify::{TrustStore, Verdict};

/// What the signature check said about an image.
#[derive(Debug, Clone)]
pub enum SigCheck {
    /// A valid signature by a trusted key; the signer's description.
    Trusted(String),
    /// No signature.
    Unsigned,
    /// A valid signature by a key that is not trusted (its fingerprint).
    Untrusted(String),
    /// Anything else: modified payload, malformed block, wrong namespace.
    Bad(String),
}

/// The trusted keys.
pub struct Trust {
    store: TrustStore,
}

impl Trust {
    /// Load the trust store from files and directories of public keys.
    pub fn load(paths: &[PathBuf]) -> Result<Trust, String> {
        TrustStore::load(paths)
            .map(|store| Trust { store })
            .map_err(|e| e.to_string())
    }

    /// The default locations of trusted keys (outside ROOT).
    pub fn default_paths() -> Vec<PathBuf> {
        TrustStore::default_paths()
    }

    /// Files of trust directories left out (path, why).
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.store
            .skipped()
            .iter()
            .map(|s| (s.path.clone(), s.why.clone()))
            .collect()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Check the signature of the image open as `file` (named `image` in
    /// messages): the bytes checked are the bytes `file` reads.
    pub fn check(&self, file: &File, image: &Path) -> Result<SigCheck, String> {
        let v = sik_verify::verify_open(file, image, &self.store)
            .map_err(|e| e.to_string())?
            .verdict;
        Ok(match v {
            Verdict::Trusted {
                fingerprint,
                principal,
                comment,
            } => {
                let who = principal
                    .filter(|p| !p.is_empty())
                    .or_else(|| (!comment.is_empty()).then_some(comment));
                SigCheck::Trusted(match who {
                    Some(w) => format!("{w} ({fingerprint})"),
                    None => fingerprint,
                })
            }
            Verdict::Unsigned => SigCheck::Unsigned,
            Verdict::Untrusted { fingerprint } => SigCheck::Untrusted(fingerprint),
            other => SigCheck::Bad(other.reason()),
        })
    }
}
