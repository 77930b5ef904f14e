//! BENCHMARKS.md: rows keyed by a stable id, merged into the existing file.
//!
//! Every row starts with its id (`create`, `extract`, `verify`, `link`,
//! `appimage-fuse`, `appimage-cache`, `detect`, `fuse-read`, `fuse-walk`,
//! `scale-100MB` …) and its run (`full` or `quick`, with the date). The part
//! of the id before the first `-` is the benchmark that wrote it: running a
//! benchmark replaces all of its rows and keeps every other row as it was.
//! Rows are sorted by [`ORDER`]; ids not listed there follow, in file order.
//! The header (machine, tool versions) is rewritten on every run; sections
//! after the table (from its first `## ` heading on) are kept as they are.

use std::path::Path;
use std::process::Command;

use crate::{Result, root};

/// Table order of the row ids (ids not listed here go last).
const ORDER: &[&str] = &[
    "create",
    "extract",
    "verify",
    "link",
    "appimage-fuse",
    "appimage-cache",
    "detect",
    "fuse-read",
    "fuse-walk",
    "scale-100MB",
    "scale-1GB",
    "scale-4GB",
    "scale-trend",
    "scale-extract-100MB",
    "scale-extract-1GB",
    "scale-extract-4GB",
    "scale-extract-usr",
    "scale-list-100MB",
    "scale-list-1GB",
    "scale-list-4GB",
    "scale-list-usr",
    "scale-verify-100MB",
    "scale-verify-1GB",
    "scale-verify-4GB",
    "scale-verify-usr",
    "scale-link-100MB",
    "scale-link-1GB",
    "scale-link-4GB",
    "scale-link-usr",
    "verity-create",
    "verity-verify",
    "verity-link-64MiB",
    "verity-link-1GiB",
];

const TABLE_HEAD: &str = "| id | run | benchmark | sik | peer | sik median (min–max) | peer median (min–max) | ratio sik ÷ peer | other |\n|---|---|---|---|---|---|---|---|---|\n";

/// Result row of one benchmark.
pub struct Row {
    /// Stable id, `BENCH` or `BENCH-PART`.
    pub key: String,
    /// Made by a `--quick` run.
    pub quick: bool,
    /// What was measured, on which data, how many runs.
    pub name: String,
    /// Our command.
    pub ours: String,
    /// The peer's command.
    pub peer: String,
    /// Our figure: median (min–max).
    pub ours_fig: String,
    /// The peer's figure: median (min–max).
    pub peer_fig: String,
    /// The ratio cell, with its direction where it is not "time, lower is better".
    pub ratio: String,
    /// Further figures (label, text).
    pub extra: Vec<(String, String)>,
}

impl Row {
    /// A row whose figure is wall time (lower is better).
    #[allow(clippy::too_many_arguments)]
    pub fn timed(
        key: &str,
        quick: bool,
        name: String,
        ours: &str,
        peer: &str,
        wall: (f64, f64, f64),
        peer_wall: (f64, f64, f64),
        extra: Vec<(String, String)>,
    ) -> Row {
        Row {
            key: key.into(),
            quick,
            name,
            ours: ours.into(),
            peer: peer.into(),
            ours_fig: span(wall),
            peer_fig: span(peer_wall),
            ratio: format!("**{:.2}×**", wall.0 / peer_wall.0),
            extra,
        }
    }

    fn line(&self, date: &str) -> String {
        let extra = self
            .extra
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let run = if self.quick { "quick" } else { "full" };
        let cell = |s: &str| s.replace('|', "\\|");
        format!(
            "| {} | {run}, {date} | {} | `{}` | `{}` | {} | {} | {} | {} |",
            self.key,
            cell(&self.name),
            cell(&self.ours),
            cell(&self.peer),
            self.ours_fig,
            self.peer_fig,
            self.ratio,
            cell(&extra)
        )
    }
}

/// `median (min–max)` in seconds, or milliseconds below one second.
pub fn span((m, lo, hi): (f64, f64, f64)) -> String {
    if hi < 1.0 {
        format!("{:.2} ms ({:.2}–{:.2})", m * 1e3, lo * 1e3, hi * 1e3)
    } else {
        format!("{m:.2} s ({lo:.2}–{hi:.2})")
    }
}

/// The benchmark a row id belongs to.
fn group(key: &str) -> &str {
    key.split('-').next().unwrap_or(key)
}

/// Id of a row written before rows carried one (the old seven-column table).
fn legacy_key(name: &str) -> Option<&'static str> {
    [
        ("create (", "create"),
        ("extract (", "extract"),
        ("verify (", "verify"),
        ("link + unlink", "link"),
        ("AppImage start-up through FUSE", "appimage-fuse"),
        ("AppImage start-up from the warm", "appimage-cache"),
        ("detect (", "detect"),
    ]
    .iter()
    .find(|(p, _)| name.starts_with(p))
    .map(|(_, k)| *k)
}

/// The rows of an existing BENCHMARKS.md as (id, line), old layout converted.
fn existing_rows(md: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut legacy = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            // The hand-written sections after the table.
            break;
        }
        if line.starts_with("| benchmark | sik | peer |") {
            legacy = true;
            continue;
        }
        if !line.starts_with("| ") || line.starts_with("| id |") {
            continue;
        }
        let first = line[2..].split(" | ").next().unwrap_or("").trim();
        if legacy {
            // Old rows were all from one full run without a date.
            if let Some(k) = legacy_key(first) {
                rows.push((
                    k.to_string(),
                    format!("| {k} | full, before ids |{}", &line[1..]),
                ));
            }
        } else if !first.is_empty() {
            rows.push((first.to_string(), line.to_string()));
        }
    }
    rows
}

fn rank(key: &str) -> usize {
    ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len())
}

/// Merge `rows` (from the benchmarks `ran`) into BENCHMARKS.md.
pub fn write(rows: &[Row], ran: &[&str]) -> Result {
    let path = root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let date = today();
    let mut merged: Vec<(String, String)> = existing_rows(&old)
        .into_iter()
        .filter(|(k, _)| !ran.contains(&group(k)))
        .collect();
    merged.extend(rows.iter().map(|r| (r.key.clone(), r.line(&date))));
    // Stable sort: known ids in ORDER, the rest in the order met.
    merged.sort_by_key(|(k, _)| rank(k));
    let mut md = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench [NAME…] [--quick]`, which replaces the rows of the benchmarks it ran and keeps the others. Runs alternate between sik and the peer in one invocation; figures are medians (min–max). Absolute times on a shared machine are noise: the ratio sik ÷ peer is the figure — lower is better for time and memory; where a row measures throughput its ratio cell says so, and there higher is better. The `run` column says whether a row comes from a full run or a `--quick` run (smaller data) and when.\n\n",
    );
    md.push_str(&format!(
        "- Machine: {}\n- mksquashfs: {}\n- unsquashfs: {}\n- squashfuse: {}\n- openssl: {}\n- xorriso: {}\n- sik: {}\n\n",
        machine(),
        version("mksquashfs", "-version"),
        version("unsquashfs", "-version"),
        version("squashfuse", "--version"),
        version("openssl", "version"),
        version("xorriso", "-version"),
        version(
            &root().join("target/release/sik").to_string_lossy(),
            "--version"
        )
    ));
    md.push_str(TABLE_HEAD);
    for (_, line) in &merged {
        md.push_str(line);
        md.push('\n');
    }
    md.push_str(sections_after_table(&old));
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, md).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The hand-written sections after the table: from the first line that
/// starts with `## ` to the end (empty when there are none).
fn sections_after_table(old: &str) -> &str {
    if old.starts_with("## ") {
        return old;
    }
    match old.find("\n## ") {
        Some(i) => &old[i..],
        None => "",
    }
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| format!(", {} GiB RAM", (k + (1 << 19)) >> 20))
        .unwrap_or_default();
    format!("{cores} cores, {cpu}{mem}")
}

/// First non-empty line a tool prints for its version option.
fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let mut t = o.stdout;
            t.extend_from_slice(b"\n");
            t.extend_from_slice(&o.stderr);
            let text = String::from_utf8_lossy(&t);
            let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
            // Prefer the line naming the tool (squashfuse prints its usage first).
            let name = Path::new(cmd)
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            lines()
                .find(|l| l.to_lowercase().starts_with(&name))
                .or_else(|| lines().next())
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|| "not installed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_after_the_table_are_kept_and_not_rows() {
        let md = "# B\n\n| id | run |\n|---|---|\n| create | full |\n\n## Sizes\n\n| part | bytes |\n|---|---|\n| libc | 1 |\n";
        let rows = existing_rows(md);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, "create");
        assert!(sections_after_table(md).starts_with("\n## Sizes\n"));
        assert!(sections_after_table(md).ends_with("| libc | 1 |\n"));
        assert_eq!(sections_after_table("# B\n| create |\n"), "");
    }

    #[test]
    fn legacy_rows_get_ids_and_groups_replace() {
        let md = "| benchmark | sik | peer | sik wall | peer wall | wall ratio | other |\n|---|---|---|---|---|---|---|\n| create (/usr/share, x) | `a` | `b` | 1 s | 1 s | **1.00×** |  |\n| AppImage start-up through FUSE (x) | `a` | `b` | 1 | 1 | **3×** | |\n";
        let rows = existing_rows(md);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "create");
        assert!(
            rows[0]
                .1
                .starts_with("| create | full, before ids | create (/usr/share")
        );
        assert_eq!(rows[1].0, "appimage-fuse");
        assert_eq!(group("appimage-fuse"), "appimage");
        assert_eq!(group("scale-4GB"), "scale");
        let new = format!("{TABLE_HEAD}{}\n", rows[0].1);
        assert_eq!(existing_rows(&new)[0].0, "create");
        assert!(rank("fuse-read") < rank("scale-1GB"));
        assert_eq!(rank("unknown"), ORDER.len());
    }
}
