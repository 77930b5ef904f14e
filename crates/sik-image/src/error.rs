//! Errors of format parsing.

use std::io;
use std::path::PathBuf;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a file could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading failed where no path is known (a stream).
    #[error("{0}")]
    Stream(#[from] io::Error),
    /// The bytes are not a valid instance of the format.
    #[error("{what}: {why}")]
    Malformed {
        /// The format or structure that is broken.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

impl Error {
    /// A malformed-structure error.
    pub fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            why: why.into(),
        }
    }

    /// Attach a path to an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
