//! Output helpers shared by the commands: `--json` documents and progress bars.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// Print one JSON document (pretty, newline-terminated) on stdout.
pub fn print_json<T: Serialize>(doc: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, doc);
    let _ = writeln!(out);
}

/// Whether colour may be used on stderr (NO_COLOR respected).
#[allow(dead_code)]
pub fn color_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// A progress bar on stderr when it is a terminal and `quiet` is off;
/// a hidden one otherwise.
pub fn progress(len: u64, quiet: bool, what: &str) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let style =
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let bar = indicatif::ProgressBar::new(len).with_style(style);
    bar.set_message(what.to_string());
    bar
}
