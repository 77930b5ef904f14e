//! The public types of the linker: link options, the reports of `link` and
//! `unlink`, conflicts, `ExtensionRun` results and the status of linked
//! extensions.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::trigger::TriggerRun;

/// What `link` should do.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The root file system to link into.
    pub root: PathBuf,
    /// The state directory (default `ROOT/run/sik/extensions`, or
    /// `ROOT/var/lib/sik/extensions` when ROOT/run is a tmpfs and ROOT is not); each
    /// extension gets `STATE/NAME`.
    pub state: Option<PathBuf>,
    /// Trusted keys (files or directories); empty: the defaults plus
    /// `ROOT/etc/sik/trusted.d`.
    pub trust: Vec<PathBuf>,
    /// Link unsigned images and images signed by untrusted keys.
    pub allow_unsigned: bool,
    /// Link directory sources although a trust store is in force.
    pub allow_directories: bool,
    /// Run the `ExtensionRun` of content no trusted key signed (a
    /// directory, an image linked with `allow_unsigned`) although a trust
    /// store is in force.
    pub allow_unsigned_run: bool,
    /// Link images whatever their extension-release says.
    pub ignore_compat: bool,
    /// Stage (copy) the content into the state directory when mounting fails.
    pub extract: bool,
    /// Move conflicting files of ROOT aside (restored by unlink).
    pub replace: bool,
    /// Time allowed to an image's `ExtensionRun`.
    pub run_timeout: Duration,
    /// Switches for the integration tests (hidden options of `sik link`).
    #[doc(hidden)]
    pub test: TestSwitches,
}

/// Switches for the integration tests, set from hidden options of `sik
/// link` and `sik unlink`; all off by default.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct TestSwitches {
    /// Kill the process (SIGKILL, as a crash would end it) after this many
    /// changes in ROOT while linking.
    pub abort_after: Option<u64>,
    /// Kill the process after this many removals while undoing a refused
    /// link.
    pub abort_undo_after: Option<u64>,
    /// Link and unlink on several threads whatever the image's size.
    pub parallel: bool,
    /// Fail every mount with EPERM, as without the privilege to mount.
    pub no_mount: bool,
}

impl LinkOptions {
    /// Defaults for ROOT.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LinkOptions {
            root: root.into(),
            state: None,
            trust: Vec::new(),
            allow_unsigned: false,
            allow_directories: false,
            allow_unsigned_run: false,
            ignore_compat: false,
            extract: false,
            replace: false,
            run_timeout: Duration::from_secs(120),
            test: TestSwitches::default(),
        }
    }
}

/// Kind of a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// A file of ROOT was there; it was kept, the image's entry not linked.
    Kept,
    /// A file of ROOT was moved aside into the state directory (`--replace`).
    Replaced,
    /// Another extension already provides the path.
    OtherExtension,
    /// ROOT has a directory where the image has a file.
    Directory,
    /// ROOT has a non-directory where the image has a directory (subtree skipped).
    NotADirectory,
    /// A symlink of ROOT leads outside ROOT or loops (subtree skipped, not followed).
    Escapes,
    /// A system call failed for this path.
    Error,
}

/// One path the linker did not link as the image has it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conflict {
    /// The path in ROOT (absolute, as seen from inside ROOT).
    pub path: String,
    /// What happened.
    pub kind: ConflictKind,
    /// Details (the other extension's name, the error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How an `ExtensionRun` went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    /// Whether it was killed after the timeout.
    pub timed_out: bool,
    /// Why it could not be started.
    pub error: Option<String>,
    /// File holding its output.
    pub log: String,
}

impl RunStatus {
    /// Whether it ran and exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// How the content of a linked source is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Loop-mounted image.
    Mount,
    /// Read-only bind mount of a directory.
    Bind,
    /// Content copied into the state directory.
    Extract,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Mount => "mount",
            Mode::Bind => "bind",
            Mode::Extract => "extract",
        }
    }
}

/// The recorded state of a linked extension (`STATE/NAME/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtensionState {
    /// Name (file name without `.ExtensionImage`/`.raw`).
    pub name: String,
    /// The source as given (absolute).
    pub source: String,
    /// `SYSEXT_VERSION_ID` (else `VERSION_ID`) of its extension-release.
    pub version: Option<String>,
    /// Who signed it (a trusted key), if signed and trusted.
    pub signer: Option<String>,
    /// How the content is provided.
    pub mode: Mode,
    /// The mount (or staging) directory, as seen from inside ROOT.
    pub content: String,
    /// Symlinks of this extension in ROOT.
    pub files: u64,
    /// Directories this extension created in ROOT.
    pub dirs: u64,
    /// Paths not linked as the image has them, and files moved aside.
    pub conflicts: Vec<Conflict>,
    /// The `ExtensionRun`, if the image has one.
    pub run: Option<RunStatus>,
    /// False while a link is in progress (or was killed).
    pub complete: bool,
    /// The source's identity when it was checked (see `spec/link-state.md`).
    #[serde(default)]
    pub identity: String,
    /// Set by [`status`](crate::status()): the source is no longer the file that was checked
    /// (rewritten, replaced or gone), so no signer is reported.
    #[serde(default)]
    pub changed_since_link: bool,
    /// How the image's content was verified when linked: `dm-verity` (the
    /// kernel checks each block as it is read), `whole-file` (hashed
    /// before use; for a verity image followed by why dm-verity was not
    /// used, in parentheses), `unsigned-allowed`; `None` for a directory.
    #[serde(default)]
    pub verified: Option<String>,
    /// The triggers its content needed when it was linked
    /// (`spec/link-state.md`, Triggers) and how they went.
    #[serde(default)]
    pub triggers: Vec<TriggerRun>,
}

/// One linked source.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The recorded state.
    pub state: ExtensionState,
    /// Symlinks created by this run.
    pub created: u64,
    /// Directories created by this run.
    pub dirs_created: u64,
    /// Why the content was staged instead of mounted.
    pub staged_because: Option<String>,
    /// An earlier link of a different source of the same name was removed first.
    pub replaced_previous: bool,
    /// This run changed what the extension has linked (a new or completed
    /// link), so the triggers its content needs were run.
    pub triggers_due: bool,
}

/// A source that was not linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// Name.
    pub name: String,
    /// The source as given.
    pub source: String,
    /// Why (one line).
    pub reason: String,
}

/// Result of [`link`](crate::link()).
#[derive(Debug, Clone, Default)]
pub struct LinkReport {
    /// Linked sources, in link order (sorted by name).
    pub linked: Vec<Linked>,
    /// Refused sources.
    pub refused: Vec<Refusal>,
    /// Refused links of an earlier run whose undoing was interrupted (a
    /// kill), completed by this run before linking.
    pub undone: Vec<Refusal>,
    /// Files of trust directories left out because they hold no readable
    /// key (path, why); the other keys were used.
    pub trust_skipped: Vec<(PathBuf, String)>,
    /// Trust directories inside ROOT that were not used, and why (a
    /// symlink, or a directory the linker created).
    pub ignored_trust: Vec<String>,
    /// The triggers of this run, each run once for all the extensions
    /// that needed it.
    pub triggers: Vec<TriggerRun>,
}

/// Result of unlinking one extension.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnlinkReport {
    /// Name.
    pub name: String,
    /// Symlinks removed.
    pub links_removed: u64,
    /// Directories removed.
    pub dirs_removed: u64,
    /// Files put back.
    pub restored: u64,
    /// Recorded paths left alone because they are no longer ours.
    pub kept: Vec<String>,
    /// The mount was busy and only detached lazily.
    pub lazy_unmount: bool,
    /// The triggers this extension's content needed, run once after all
    /// names of the unlink (a run needed by several names is in each).
    pub triggers: Vec<TriggerRun>,
}

/// Result of [`status`](crate::status()).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// ROOT.
    pub root: String,
    /// The state directory.
    pub state: String,
    /// Linked extensions, sorted by name.
    pub extensions: Vec<ExtensionState>,
    /// Refusals of the last `link` run.
    pub refused: Vec<Refusal>,
}
