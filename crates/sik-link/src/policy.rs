//! Signature policy: which images may be linked.
//!
//! The one place where the linker asks about signatures. Verification
//! itself lives in `sik-verify`; this module maps its verdict to the
//! linker's decision.

use std::fs::File;
use std::path::{Path, PathBuf};

use sik_image::verity::Descriptor;
use sik_verify::{DataCheck, TrustStore, Verdict};

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
    /// How much of a dm-verity image's data is checked here is chosen by
    /// `check`: [`DataCheck::Full`] reads it all. With [`DataCheck::Kernel`] the data is not read: a
    /// trusted verdict then comes with the signed descriptor, and the image
    /// may only be used through dm-verity with exactly its parameters.
    pub fn check_with(
        &self,
        file: &File,
        image: &Path,
        check: DataCheck,
    ) -> Result<(SigCheck, Option<Descriptor>), String> {
        let r = sik_verify::verify_open_with(file, image, &self.store, check)
            .map_err(|e| e.to_string())?;
        let pending = r
            .verity
            .as_ref()
            .filter(|v| v.tree.is_none())
            .map(|v| v.descriptor);
        let v = r.verdict;
        let c = match v {
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
        };
        Ok((c, pending))
    }
}
