//! The boot linker: links ExtensionImages and overlay trees into a root
//! file system, and removes them again without leftovers.
//!
//! [`link`] checks each source (signature policy, compatibility with ROOT's
//! os-release), mounts it read-only under the state directory (default
//! `ROOT/run/sik/extensions/NAME/mnt`, or `ROOT/var/lib/…` for a persistent
//! ROOT whose `/run` is a tmpfs; a loop mount made with ioctls and
//! mount(2), so it also works in a bare initramfs), and creates in ROOT one
//! symlink per non-directory entry, pointing into that mount, plus the
//! missing directories. Every change is announced in the state directory's
//! journal before it is made, so [`unlink`] removes exactly what was made,
//! and a kill at any point is completed by the next `link` or `unlink`.
//! Paths of ROOT are resolved inside ROOT only (merged /usr symlinks are
//! followed, anything leading outside ROOT is refused). The on-disk state
//! is specified in `spec/link-state.md`.
//!
//! ```no_run
//! use sik_link::{link, unlink, LinkOptions};
//! let opts = LinkOptions::new("/sysroot");
//! let report = link(&["/run/media/firmware.ExtensionImage".into()], &opts).unwrap();
//! for r in &report.refused {
//!     eprintln!("{}: {}", r.name, r.reason);
//! }
//! let _ = unlink(&["firmware".to_string()], "/sysroot".as_ref(), None);
//! ```

pub mod compat;
mod journal;
mod kernel;
mod link;
mod mount;
mod policy;
mod report;
mod resolve;
mod run;
mod stage;
mod state;
mod status;
mod sys;
mod trigger;
mod unlink;
mod walk;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

pub use link::link;
pub use report::{
    Conflict, ConflictKind, ExtensionState, LinkOptions, LinkReport, Linked, Mode, Refusal,
    RunStatus, Status, TestSwitches, UnlinkReport,
};
pub use state::show_bytes;
pub use status::status;
pub use trigger::{TRIGGERS_KEY, Trigger, TriggerKind, TriggerOutcome, TriggerRun};
pub use unlink::{UnlinkResult, unlink, unlink_with};

/// Name of the state directory below ROOT when none is given.
pub const DEFAULT_STATE: &str = "run/sik/extensions";
/// The state directory below ROOT when none is given and ROOT/run is on a
/// volatile file system while ROOT is not (a running system's persistent root).
pub const PERSISTENT_STATE: &str = "var/lib/sik/extensions";
/// File of the directories of ROOT made for the default state directory
/// (removed again when the state directory is left empty).
pub const MADE_DIRS_FILE: &str = ".made-dirs";
/// File of the refusals of the last `link` run, in the state directory.
pub const REFUSED_FILE: &str = ".refused.json";
/// Lock file of the state directory.
pub const LOCK_FILE: &str = ".lock";
/// File of directories still to remove once empty, in the state directory.
pub const ORPHANS_FILE: &str = ".orphan-dirs";

/// Errors of the linker that stop a whole command (a single source's
/// problems become a [`Refusal`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// What was operated on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Invalid input (a bad name, a bad ROOT, an unreadable trust store).
    #[error("{path}: {why}")]
    Invalid {
        /// What was wrong.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The named extension is not linked.
    #[error("not linked")]
    NotLinked(String),
    /// There is no state directory: nothing was ever linked there.
    #[error("{0}: nothing is linked (no state directory)")]
    NoState(PathBuf),
}

pub(crate) fn ioe(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// The name of an extension from its source path: the file name without
/// `.ExtensionImage`, `.raw`, `.squashfs`, `.sqfs` or `.img`.
pub fn extension_name(source: &Path) -> String {
    let n = source
        .file_name()
        .unwrap_or_else(|| OsStr::new(""))
        .to_string_lossy()
        .into_owned();
    for suffix in [".ExtensionImage", ".raw", ".squashfs", ".sqfs", ".img"] {
        if let Some(s) = n.strip_suffix(suffix)
            && !s.is_empty()
        {
            return s.to_string();
        }
    }
    n
}

/// Whether `name` can name a state directory.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            extension_name(Path::new("/m/firmware.ExtensionImage")),
            "firmware"
        );
        assert_eq!(extension_name(Path::new("tools.raw")), "tools");
        assert_eq!(extension_name(Path::new("/m/overlay")), "overlay");
        assert_eq!(extension_name(Path::new(".raw")), ".raw");
        assert!(!valid_name(".raw"));
        assert!(!valid_name(""));
        assert!(valid_name("firmware-1.2"));
    }
}
