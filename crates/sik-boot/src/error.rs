//! Errors of the boot medium library.

use std::path::PathBuf;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a boot medium operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A family file is broken.
    #[error(transparent)]
    Family(#[from] crate::family::FamilyError),
    /// The medium is not usable.
    #[error("{path}: {why}")]
    Medium {
        /// The medium.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An external tool failed or is missing.
    #[error("{tool}: {why}")]
    Tool {
        /// The tool.
        tool: String,
        /// What it said.
        why: String,
    },
    /// `grub-script-check` refused the generated grub.cfg.
    #[error("generated grub.cfg fails grub-script-check: {0}")]
    ScriptCheck(String),
    /// A request that cannot be met (bad size, refused device …).
    #[error("{0}")]
    Refused(String),
}
