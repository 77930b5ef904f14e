//! `cargo xtask bench`: side-by-side timing against the peer tools in one
//! run, alternating A and B, medians with min–max; written to BENCHMARKS.md.
//!
//! Absolute times on a shared machine are noise; the ratios are the figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Result, root, run};

/// One timed run: wall seconds and peak resident memory in KiB.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    rss_kib: u64,
}

/// Run `cmd` under `/usr/bin/time -f %M` to get its peak RSS, timing the wall clock here.
fn measure(cmd: &[String]) -> Result<Sample> {
    let start = Instant::now();
    let out = Command::new("/usr/bin/time").arg("-f").arg("%M").args(cmd).output().map_err(|e| format!("cannot run /usr/bin/time (install `time`): {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{} failed: {stderr}", cmd.join(" ")));
    }
    let rss_kib = stderr.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    Ok(Sample { wall, rss_kib })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (mid, v[0], v[v.len() - 1])
}

/// Result row of one benchmark.
struct Row {
    name: String,
    ours: String,
    peer: String,
    wall: (f64, f64, f64),
    peer_wall: (f64, f64, f64),
    extra: Vec<(String, String)>,
}

pub fn main(args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--quick");
    let which: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let all = which.is_empty();
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(["build", "--release", "-p", "sik"]))?;
    let sik = root().join("target/release/sik");
    let mut rows = Vec::new();
    if all || which.contains(&"create") {
        rows.push(bench_create(&sik, quick)?);
    }
    write_report(&rows, quick)
}

fn corpus(quick: bool) -> PathBuf {
    if quick { PathBuf::from("/usr/share/doc") } else { PathBuf::from("/usr/share") }
}

fn bench_create(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = std::env::temp_dir().join("sik-bench-create");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let ours_out = tmp.join("ours.ExtensionImage");
    let peer_out = tmp.join("peer.sqfs");
    let runs = if quick { 3 } else { 5 };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let ours_cmd = vec![s(sik), "create".into(), "extension".into(), s(&src), "-o".into(), s(&ours_out), "-q".into(), "--compression".into(), "zstd".into(), "--level".into(), "15".into(), "--block-size".into(), "128K".into()];
    let peer_cmd = vec!["mksquashfs".into(), s(&src), s(&peer_out), "-noappend".into(), "-no-progress".into(), "-quiet".into(), "-comp".into(), "zstd".into(), "-Xcompression-level".into(), "15".into(), "-b".into(), "128K".into(), "-all-root".into()];
    for i in 0..runs {
        let _ = std::fs::remove_file(&ours_out);
        let _ = std::fs::remove_file(&peer_out);
        eprintln!("bench create: run {}/{runs}", i + 1);
        if i % 2 == 0 {
            a.push(measure(&ours_cmd)?);
            b.push(measure(&peer_cmd)?);
        } else {
            b.push(measure(&peer_cmd)?);
            a.push(measure(&ours_cmd)?);
        }
    }
    let size_a = std::fs::metadata(&ours_out).map_err(|e| e.to_string())?.len();
    let size_b = std::fs::metadata(&peer_out).map_err(|e| e.to_string())?.len();
    let rss_a = median(a.iter().map(|x| x.rss_kib as f64).collect()).0;
    let rss_b = median(b.iter().map(|x| x.rss_kib as f64).collect()).0;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Row {
        name: format!("create ({}, zstd level 15, 128 KiB blocks, {runs} runs each)", src.display()),
        ours: "sik create extension".into(),
        peer: "mksquashfs -comp zstd".into(),
        wall: median(a.iter().map(|x| x.wall).collect()),
        peer_wall: median(b.iter().map(|x| x.wall).collect()),
        extra: vec![
            ("output size".into(), format!("{size_a} vs {size_b} bytes, ratio {:.3}", size_a as f64 / size_b as f64)),
            ("peak memory".into(), format!("{:.0} vs {:.0} KiB, ratio {:.2}", rss_a, rss_b, rss_a / rss_b)),
        ],
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd).arg(arg).output().ok().map(|o| {
        let t = if o.stdout.is_empty() { o.stderr } else { o.stdout };
        String::from_utf8_lossy(&t).lines().next().unwrap_or("").to_string()
    }).unwrap_or_else(|| "not installed".into())
}

fn write_report(rows: &[Row], quick: bool) -> Result {
    let mut md = String::from("# Benchmarks\n\nWritten by `cargo xtask bench`");
    if quick {
        md.push_str(" --quick");
    }
    md.push_str(". Runs alternate between sik and the peer in one invocation; figures are medians (min–max). Absolute times on a shared machine are noise: the ratio (sik ÷ peer, lower is better for time and memory) is the figure.\n\n");
    md.push_str(&format!("- Machine: {}\n- mksquashfs: {}\n- sik: {}\n\n", machine(), version("mksquashfs", "-version"), version(&root().join("target/release/sik").to_string_lossy(), "--version")));
    md.push_str("| benchmark | sik | peer | sik wall (s) | peer wall (s) | wall ratio | other |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let extra = r.extra.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ");
        md.push_str(&format!(
            "| {} | `{}` | `{}` | {:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | **{:.2}×** | {} |\n",
            r.name, r.ours, r.peer, r.wall.0, r.wall.1, r.wall.2, r.peer_wall.0, r.peer_wall.1, r.peer_wall.2, r.wall.0 / r.peer_wall.0, extra
        ));
    }
    let path = root().join("BENCHMARKS.md");
    std::fs::write(&path, md).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
