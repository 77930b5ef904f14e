//! Signature policy: which images may be linked.
//!
//! The one place where the linker asks about signatures. Verification
//! itself lives in `sik-verify`; this module maps its verdict to the
//! linker's decision.

use std::path::{Path, PathBuf};

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
    inner: Backend,
}

type Backend = ();

impl Trust {
    /// Load the trust store from files and directories of public keys.
    pub fn load(_paths: &[PathBuf]) -> Result<Trust, String> {
        Ok(Trust { inner: () })
    }

    /// The default locations of trusted keys (outside ROOT).
    pub fn default_paths() -> Vec<PathBuf> {
        vec![PathBuf::from("/etc/sik/trusted.d")]
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        let () = self.inner;
        true
    }

    /// Check the signature of an image.
    pub fn check(&self, _image: &Path) -> Result<SigCheck, String> {
        Ok(SigCheck::Unsigned)
    }
}
