//! Errors of the AppImage toolchain.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The AppDir has problems; every one is listed.
    #[error("{}", .0.join("; "))]
    AppDir(Vec<String>),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The update information string is not valid.
    #[error("invalid update information {0:?}: {1}")]
    UpdateInfo(String, String),
    /// The runtime is not usable.
    #[error("runtime: {0}")]
    Runtime(String),
    /// A usage error (bad option value).
    #[error("{0}")]
    Usage(String),
    /// Writing the SquashFS failed.
    #[error("{0}")]
    Create(String),
    /// The file cannot be integrated (not an AppImage, no usable desktop
    /// entry, unreadable SquashFS).
    #[error("{path}: {why}")]
    Integrate {
        /// The AppImage.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The signature policy refuses the AppImage.
    #[error("{path}: {why}")]
    Refused {
        /// The AppImage.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// An external tool failed.
    #[error("{0}")]
    Tool(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
