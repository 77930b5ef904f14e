//! How a command fails: one line on stderr, `sik: error: <what>: <path>: <why>`,
//! an optional hint line, and the exit code.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code of a usage or input error.
pub const EXIT_INPUT: u8 = 2;
/// Exit code of a check that said no (verify, link refusals).
pub const EXIT_CHECK: u8 = 1;

/// What every command returns.
pub type CmdResult = Result<ExitCode, Failure>;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub what: String,
    pub path: Option<PathBuf>,
    pub why: String,
    pub hint: Option<String>,
}

impl Failure {
    /// An input or usage error (exit 2) about `path`.
    pub fn input(what: impl Into<String>, path: Option<&Path>, why: impl Display) -> Self {
        Failure {
            code: EXIT_INPUT,
            what: what.into(),
            path: path.map(Path::to_path_buf),
            why: one_line(why),
            hint: None,
        }
    }

    /// A check that said no (exit 1).
    pub fn check(what: impl Into<String>, path: Option<&Path>, why: impl Display) -> Self {
        Failure {
            code: EXIT_CHECK,
            what: what.into(),
            path: path.map(Path::to_path_buf),
            why: one_line(why),
            hint: None,
        }
    }

    /// Add a hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Print and turn into the exit code.
    pub fn report(self) -> ExitCode {
        let mut line = format!("sik: error: {}", self.what);
        if let Some(p) = &self.path {
            line.push_str(&format!(": {}", p.display()));
        }
        if !self.why.is_empty() {
            line.push_str(&format!(": {}", self.why));
        }
        eprintln!("{line}");
        if let Some(h) = self.hint {
            eprintln!("hint: {h}");
        }
        ExitCode::from(self.code)
    }
}

/// Errors and their sources on one line, without repeating a source that the
/// message already contains.
pub fn one_line(e: impl Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Warnings go to stderr as `sik: warning: …`.
pub fn warn(msg: impl Display) {
    eprintln!("sik: warning: {msg}");
}
