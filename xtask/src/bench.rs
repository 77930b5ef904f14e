//! `cargo xtask bench`: side-by-side timing against the peer tools in one
//! run, alternating A and B, medians with min–max; merged into BENCHMARKS.md.
//!
//! Absolute times on a shared machine are noise; the ratios are the figure.
//! Every benchmark goes through [`ab`] (two commands) or [`alternate`] (two
//! closures): a per-run reset outside the timed part, A and B alternating
//! order run to run, then one [`Row`] built from the medians.

mod data;
mod fuse;
mod reads;
mod report;
mod scale;
mod verity;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, root, run};
use report::Row;

/// Benchmarks in the order they run; `cargo xtask bench NAME…` picks some.
const BENCHES: &[&str] = &[
    "create", "extract", "verify", "link", "appimage", "detect", "fuse", "scale", "verity",
];

/// One timed run: wall seconds and peak resident memory in KiB.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    rss_kib: u64,
}

/// Run `cmd` under `/usr/bin/time -f %M` to get its peak RSS, timing the wall
/// clock here. The command's stdout goes to /dev/null.
fn measure(cmd: &[String]) -> Result<Sample> {
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time (install `time`): {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{} failed: {stderr}", cmd.join(" ")));
    }
    let rss_kib = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Ok(Sample { wall, rss_kib })
}

/// (median, min, max).
fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

/// The samples of both sides of one benchmark.
struct Ab {
    ours: Vec<Sample>,
    peer: Vec<Sample>,
}

impl Ab {
    fn wall(&self) -> (f64, f64, f64) {
        walls(&self.ours)
    }
    fn peer_wall(&self) -> (f64, f64, f64) {
        walls(&self.peer)
    }
    /// Median peak RSS in KiB, ours and the peer's.
    fn rss(&self) -> (f64, f64) {
        let m = |v: &[Sample]| median(v.iter().map(|x| x.rss_kib as f64).collect()).0;
        (m(&self.ours), m(&self.peer))
    }
    /// The `peak memory` cell.
    fn rss_extra(&self) -> (String, String) {
        let (a, b) = self.rss();
        (
            "peak memory".into(),
            format!("{a:.0} vs {b:.0} KiB, ratio {:.2}", a / b),
        )
    }
    /// A wall-time row with the given extra cells.
    fn row(
        &self,
        key: &str,
        quick: bool,
        name: String,
        labels: (&str, &str),
        extra: Vec<(String, String)>,
    ) -> Row {
        Row::timed(
            key,
            quick,
            name,
            labels.0,
            labels.1,
            self.wall(),
            self.peer_wall(),
            extra,
        )
    }
}

/// Alternate `a` and `b` for `runs` rounds (A first in even rounds, B first
/// in odd ones); return both sample lists.
fn alternate(
    runs: usize,
    label: &str,
    mut a: impl FnMut() -> Result<Sample>,
    mut b: impl FnMut() -> Result<Sample>,
) -> Result<Ab> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprintln!("bench {label}: run {}/{runs}", i + 1);
        if i % 2 == 0 {
            xs.push(a()?);
            ys.push(b()?);
        } else {
            ys.push(b()?);
            xs.push(a()?);
        }
    }
    Ok(Ab { ours: xs, peer: ys })
}

/// Which side a per-run reset prepares.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Peer,
}

/// [`alternate`] two commands, calling `reset` (untimed) before each one
/// with the side about to run.
fn ab(
    label: &str,
    runs: usize,
    ours: &[String],
    peer: &[String],
    reset: impl Fn(Side) -> Result,
) -> Result<Ab> {
    alternate(
        runs,
        label,
        || {
            reset(Side::Ours)?;
            measure(ours)
        },
        || {
            reset(Side::Peer)?;
            measure(peer)
        },
    )
}

/// No reset between runs.
fn no_reset(_: Side) -> Result {
    Ok(())
}

/// A reset removing the output file of the side about to run (so the other
/// side's last output stays for its size), then `sync`, so the write-back of
/// the previous run's output is not charged to the next run.
fn remove_output<'a>(ours: &'a Path, peer: &'a Path) -> impl Fn(Side) -> Result + 'a {
    move |side| {
        let _ = std::fs::remove_file(if side == Side::Ours { ours } else { peer });
        sh("sync")
    }
}

fn walls(v: &[Sample]) -> (f64, f64, f64) {
    median(v.iter().map(|x| x.wall).collect())
}

/// Owned argv from string slices.
fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// `sh -c SCRIPT` as an argv.
fn sh_argv(script: String) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script]
}

fn sh(script: &str) -> Result {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{script}` failed"))
    }
}

fn fresh_dir(name: &str) -> Result<PathBuf> {
    let tmp = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(tmp)
}

fn usage() -> String {
    format!(
        "usage: cargo xtask bench [{}]… [--quick]",
        BENCHES.join("|")
    )
}

pub fn main(args: &[String]) -> Result {
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && a.as_str() != "--quick")
    {
        return Err(format!("unknown option {bad}; {}", usage()));
    }
    let mut which: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let Some(bad) = which.iter().find(|w| !BENCHES.contains(w)) {
        return Err(format!("unknown benchmark {bad}; {}", usage()));
    }
    if which.is_empty() {
        which = BENCHES.to_vec();
    }
    // `verity` runs the static sik its QEMU guest needs (see verity.rs).
    if which.iter().any(|w| *w != "verity") {
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
                "build",
                "--release",
                "-p",
                "sik",
            ]),
        )?;
    }
    let sik = root().join("target/release/sik");
    let mut rows = Vec::new();
    let mut ran = Vec::new();
    for name in BENCHES.iter().filter(|b| which.contains(b)) {
        let got = match *name {
            "create" => vec![bench_create(&sik, quick)?],
            "extract" => vec![bench_extract(&sik, quick)?],
            "verify" => vec![bench_verify(&sik, quick)?],
            "link" => vec![bench_link(&sik, quick)?],
            "appimage" => bench_appimage(&sik, quick)?,
            "detect" => vec![bench_detect(&sik, quick)?],
            "fuse" => fuse::bench(&sik, quick)?,
            "scale" => scale::bench(&sik, quick)?,
            "verity" => verity::bench(quick)?,
            _ => unreachable!("names are checked above"),
        };
        rows.extend(got);
        ran.push(*name);
    }
    report::write(&rows, &ran)
}

fn corpus(quick: bool) -> PathBuf {
    if quick {
        PathBuf::from("/usr/share/doc")
    } else {
        PathBuf::from("/usr/share")
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `sik create extension` and `mksquashfs` of `src` with zstd at `level`
/// and 128 KiB blocks, as argv vectors.
fn create_cmds(
    sik: &Path,
    src: &Path,
    ours_out: &Path,
    peer_out: &Path,
    level: u32,
) -> (Vec<String>, Vec<String>) {
    let level = level.to_string();
    let ours = argv(&[
        &s(sik),
        "create",
        "extension",
        &s(src),
        "-o",
        &s(ours_out),
        "-q",
        "--compression",
        "zstd",
        "--level",
        &level,
        "--block-size",
        "128K",
    ]);
    let peer = argv(&[
        "mksquashfs",
        &s(src),
        &s(peer_out),
        "-noappend",
        "-no-progress",
        "-quiet",
        "-comp",
        "zstd",
        "-Xcompression-level",
        &level,
        "-b",
        "128K",
        "-all-root",
    ]);
    (ours, peer)
}

fn bench_create(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = fresh_dir("sik-bench-create")?;
    let ours_out = tmp.join("ours.ExtensionImage");
    let peer_out = tmp.join("peer.sqfs");
    let runs = if quick { 3 } else { 5 };
    let (ours_cmd, peer_cmd) = create_cmds(sik, &src, &ours_out, &peer_out, 15);
    let r = ab(
        "create",
        runs,
        &ours_cmd,
        &peer_cmd,
        remove_output(&ours_out, &peer_out),
    )?;
    let len = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| e.to_string())
    };
    let (size_a, size_b) = (len(&ours_out)?, len(&peer_out)?);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(r.row(
        "create",
        quick,
        format!(
            "create ({}, zstd level 15, 128 KiB blocks, {runs} runs each)",
            src.display()
        ),
        ("sik create extension", "mksquashfs -comp zstd"),
        vec![
            (
                "output size".into(),
                format!(
                    "{size_a} vs {size_b} bytes, ratio {:.3}",
                    size_a as f64 / size_b as f64
                ),
            ),
            r.rss_extra(),
        ],
    ))
}

/// `sik extract` vs `unsquashfs -d` of the same image (made by sik from the corpus).
fn bench_extract(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = fresh_dir("sik-bench-extract")?;
    let t = s(&tmp);
    let sik = s(sik);
    sh(&format!(
        "'{sik}' create extension -q '{}' -o '{t}/x.ExtensionImage' && cat '{t}/x.ExtensionImage' > /dev/null",
        src.display()
    ))?;
    // The trees go to a tmpfs: on disk, ext4's inode allocator (slowed by
    // the inodes the previous run freed) and writeback make run-to-run noise
    // far larger than the tools' difference; on tmpfs the figure is the
    // tools' own work (reading, decompressing, creating files).
    let mnt = format!("{t}/mnt");
    sh(&format!(
        "mkdir -p '{mnt}' && mount -t tmpfs -o size=4G sik-bench '{mnt}'"
    ))?;
    let ours = argv(&[
        &sik,
        "extract",
        "-q",
        &format!("{t}/x.ExtensionImage"),
        "-o",
        &format!("{mnt}/a"),
    ]);
    let peer = sh_argv(format!(
        "unsquashfs -q -n -d '{mnt}/b' '{t}/x.ExtensionImage' >/dev/null"
    ));
    let runs = if quick { 3 } else { 5 };
    // Removing the previous tree is the reset, outside the timed part.
    let result = ab("extract", runs, &ours, &peer, |_| {
        sh(&format!("rm -rf '{mnt}/a' '{mnt}/b'"))
    });
    let _ = sh(&format!("umount '{mnt}'"));
    let _ = std::fs::remove_dir_all(&tmp);
    let r = result?;
    Ok(r.row(
        "extract",
        quick,
        format!(
            "extract (an ExtensionImage of {}, zstd, image in page cache, into a tmpfs, {runs} runs each; the previous tree is removed before each run, untimed)",
            src.display()
        ),
        ("sik extract", "unsquashfs -d"),
        vec![r.rss_extra()],
    ))
}

/// `sik verify` of a 1 GiB signed image vs `openssl dgst -sha256` of the same file, page cache warm.
fn bench_verify(sik: &Path, quick: bool) -> Result<Row> {
    let size_mib = if quick { 256 } else { 1024 };
    let tmp = fresh_dir("sik-bench-verify")?;
    std::fs::create_dir_all(tmp.join("src")).map_err(|e| e.to_string())?;
    let t = s(&tmp);
    let sik = s(sik);
    // Incompressible data, so the image is as large as the data.
    sh(&format!(
        "head -c {size_mib}M /dev/urandom > '{t}/src/data' && '{sik}' create extension -q '{t}/src' -o '{t}/big.ExtensionImage' --compression lz4 && '{sik}' key generate -o '{t}/key' --comment bench >/dev/null && '{sik}' sign '{t}/big.ExtensionImage' --key '{t}/key' && cat '{t}/big.ExtensionImage' > /dev/null"
    ))?;
    let _ = std::fs::remove_file(tmp.join("src/data"));
    let image = format!("{t}/big.ExtensionImage");
    let ours = argv(&[&sik, "verify", &image, "--trust", &format!("{t}/key.pub")]);
    let peer = argv(&["openssl", "dgst", "-sha256", &image]);
    let runs = if quick { 3 } else { 7 };
    let r = ab("verify", runs, &ours, &peer, no_reset)?;
    let len = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(r.row(
        "verify",
        quick,
        format!(
            "verify ({} MiB signed ExtensionImage, page cache warm, {runs} runs each)",
            len >> 20
        ),
        ("sik verify", "openssl dgst -sha256"),
        vec![r.rss_extra()],
    ))
}

/// `sik link` + `sik unlink` of an extension holding /usr/share vs `cp -rs` of the same mounted tree + `rm -rf`.
fn bench_link(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = std::env::temp_dir().join("sik-bench-link");
    let _ = sh(&format!(
        "umount -q '{}/mnt' 2>/dev/null; true",
        tmp.display()
    ));
    let tmp = fresh_dir("sik-bench-link")?;
    std::fs::create_dir_all(tmp.join("mnt")).map_err(|e| e.to_string())?;
    let t = s(&tmp);
    let sik = s(sik);
    sh(&format!(
        "'{sik}' create extension -q '{}' -o '{t}/share.ExtensionImage' --compression lz4 && mount -o loop,ro '{t}/share.ExtensionImage' '{t}/mnt'",
        src.display()
    ))?;
    let ours = sh_argv(format!(
        "rm -rf '{t}/root' && mkdir -p '{t}/root' && '{sik}' link -q '{t}/share.ExtensionImage' --root '{t}/root' --allow-unsigned --ignore-compat && '{sik}' unlink -q share --root '{t}/root'"
    ));
    let peer = sh_argv(format!(
        "rm -rf '{t}/root2' && mkdir -p '{t}/root2' && cp -rs '{t}/mnt/.' '{t}/root2/' && rm -rf '{t}/root2'"
    ));
    let runs = if quick { 3 } else { 5 };
    let result = ab("link", runs, &ours, &peer, no_reset);
    let _ = sh(&format!("umount '{t}/mnt'; rm -rf '{t}'"));
    let r = result?;
    Ok(r.row(
        "link",
        quick,
        format!(
            "link + unlink (an extension holding {}, {runs} runs each)",
            src.display()
        ),
        ("sik link + sik unlink", "cp -rs (mounted image) + rm -rf"),
        vec![],
    ))
}

/// An AppDir at `dir` around busybox with a shell AppRun printing `started`,
/// a desktop file and an icon.
fn make_appdir(dir: &Path) -> Result {
    let d = s(dir);
    sh(&format!(
        "mkdir -p '{d}/usr/bin' && cp /bin/busybox '{d}/usr/bin/busybox' && printf '#!/bin/sh\\necho started\\n' > '{d}/AppRun' && chmod 755 '{d}/AppRun' && printf '[Desktop Entry]\\nType=Application\\nName=Bench\\nExec=busybox\\nIcon=bench\\nCategories=Utility;\\n' > '{d}/bench.desktop' && cp \"$(find /usr/share -name '*.png' -size -64k | head -n1)\" '{d}/bench.png'"
    ))
}

/// Start-up latency of an AppImage (exec → AppRun's output) through FUSE and through a warm
/// extract-and-run cache, against running the extracted AppDir directly (the floor).
fn bench_appimage(sik: &Path, quick: bool) -> Result<Vec<Row>> {
    let tmp = fresh_dir("sik-bench-appimage")?;
    let t = s(&tmp);
    make_appdir(&tmp.join("AppDir"))?;
    sh(&format!(
        "'{}' create appimage -q '{t}/AppDir' -o '{t}/Bench.AppImage'",
        s(sik)
    ))?;
    let runs = if quick { 20 } else { 100 };
    let time_loop = |script: &str| -> Result<Sample> {
        let cmd = sh_argv(format!(
            "i=0; while [ $i -lt {runs} ]; do {script} >/dev/null || exit 1; i=$((i+1)); done"
        ));
        let s = measure(&cmd)?;
        Ok(Sample {
            wall: s.wall / runs as f64,
            rss_kib: s.rss_kib,
        })
    };
    let floor = format!("'{t}/AppDir/AppRun'");
    let fuse = format!("'{t}/Bench.AppImage'");
    let cache =
        format!("XDG_CACHE_HOME='{t}/cache' APPIMAGE_EXTRACT_AND_RUN=1 '{t}/Bench.AppImage'");
    sh(&format!("{cache} >/dev/null"))?;
    let rounds = 3;
    let f = alternate(
        rounds,
        "appimage fuse",
        || time_loop(&fuse),
        || time_loop(&floor),
    )?;
    let c = alternate(
        rounds,
        "appimage cache",
        || time_loop(&cache),
        || time_loop(&floor),
    )?;
    let runtime_len = sik_runtime_len(&tmp.join("Bench.AppImage"));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(vec![
        f.row(
            "appimage-fuse",
            quick,
            format!("AppImage start-up through FUSE (per start, {rounds}×{runs} starts)"),
            ("X.AppImage (FUSE mount)", "AppDir/AppRun directly (floor)"),
            vec![(
                "runtime size".into(),
                format!("{runtime_len} bytes (reference runtime ≈ 900 000)"),
            )],
        ),
        c.row(
            "appimage-cache",
            quick,
            format!(
                "AppImage start-up from the warm extract-and-run cache (per start, {rounds}×{runs} starts)"
            ),
            (
                "APPIMAGE_EXTRACT_AND_RUN=1 X.AppImage",
                "AppDir/AppRun directly (floor)",
            ),
            vec![],
        ),
    ])
}

/// The runtime's size: where the SquashFS payload of an AppImage starts.
fn sik_runtime_len(appimage: &Path) -> u64 {
    Command::new(appimage)
        .arg("--appimage-offset")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}

/// Live-ISO layouts used by the detect benchmark: (volume label, files).
fn iso_layouts() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        (
            "Ubuntu 24.04 LTS amd64",
            vec![
                ("casper/vmlinuz", "kernel"),
                ("casper/initrd", "initrd"),
                (
                    ".disk/info",
                    "Ubuntu 24.04 LTS \"Noble Numbat\" - Release amd64",
                ),
                (
                    "boot/grub/loopback.cfg",
                    "menuentry \"Try or Install Ubuntu\" {\n\tset gfxpayload=keep\n\tlinux\t/casper/vmlinuz iso-scan/filename=${iso_path} --- quiet splash\n\tinitrd\t/casper/initrd\n}\n",
                ),
                (
                    "boot/grub/grub.cfg",
                    "menuentry \"Try or Install Ubuntu\" {\n\tlinux\t/casper/vmlinuz --- quiet splash\n\tinitrd\t/casper/initrd\n}\n",
                ),
            ],
        ),
        (
            "d-live 12.5.0 gn amd64",
            vec![
                ("live/vmlinuz-6.1.0-18-amd64", "kernel"),
                ("live/initrd.img-6.1.0-18-amd64", "initrd"),
                (
                    ".disk/info",
                    "Debian GNU/Linux 12.5.0 \"Bookworm\" - Official Live amd64",
                ),
                (
                    "isolinux/live.cfg",
                    "label live-amd64\n\tmenu label ^Live system (amd64)\n\tlinux /live/vmlinuz-6.1.0-18-amd64\n\tinitrd /live/initrd.img-6.1.0-18-amd64\n\tappend boot=live components quiet splash findiso=${iso_path}\n",
                ),
                (
                    "boot/grub/grub.cfg",
                    "menuentry \"Live system (amd64)\" {\n\tlinux /live/vmlinuz-6.1.0-18-amd64 boot=live components quiet splash\n\tinitrd /live/initrd.img-6.1.0-18-amd64\n}\n",
                ),
            ],
        ),
        (
            "Fedora-WS-Live-40-1-14",
            vec![
                ("images/pxeboot/vmlinuz", "kernel"),
                ("images/pxeboot/initrd.img", "initrd"),
                ("LiveOS/squashfs.img", "root"),
                (
                    "boot/grub2/grub.cfg",
                    "menuentry 'Start Fedora-Workstation-Live 40' --class fedora --class gnu-linux --class gnu --class os {\n\tlinux /images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-40-1-14  rd.live.image quiet rhgb\n\tinitrd /images/pxeboot/initrd.img\n}\n",
                ),
                (
                    "EFI/BOOT/grub.cfg",
                    "menuentry 'Start Fedora-Workstation-Live 40' {\n\tlinux /images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-40-1-14  rd.live.image quiet rhgb\n\tinitrd /images/pxeboot/initrd.img\n}\n",
                ),
            ],
        ),
    ]
}

fn bench_detect(sik: &Path, quick: bool) -> Result<Row> {
    let count = if quick { 10 } else { 50 };
    let tmp = fresh_dir("sik-bench-detect")?;
    let layouts = iso_layouts();
    let mut isos = Vec::new();
    for (i, (label, files)) in layouts.iter().enumerate() {
        let tree = tmp.join(format!("tree{i}"));
        for (path, content) in files {
            let p = tree.join(path);
            std::fs::create_dir_all(p.parent().expect("has parent")).map_err(|e| e.to_string())?;
            std::fs::write(&p, content).map_err(|e| e.to_string())?;
        }
        let iso = tmp.join(format!("base{i}.iso"));
        let out = crate::mkisofs(&tree, &iso, label)
            .output()
            .map_err(|e| format!("xorriso: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "xorriso failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        isos.push(iso);
    }
    // Realistic sizes without using the disk: each copy is extended to 1.5–5.7 GB as a sparse file.
    let mut all = Vec::new();
    for n in 0..count {
        let base = &isos[n % isos.len()];
        let p = tmp.join(format!("live-{n:02}.iso"));
        std::fs::copy(base, &p).map_err(|e| e.to_string())?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .map_err(|e| e.to_string())?;
        f.set_len(1_500_000_000 + (n as u64 % 8) * 600_000_000)
            .map_err(|e| e.to_string())?;
        all.push(p);
    }
    let mut ours_cmd = argv(&[&s(sik), "boot", "detect", "--json"]);
    ours_cmd.extend(all.iter().map(|p| s(p)));
    // The peer reads the same boot configs with xorriso, one process per ISO (as a script would).
    let script = all
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let out = tmp.join(format!("x{n}"));
            let cfgs = [
                "/boot/grub/loopback.cfg",
                "/boot/grub/grub.cfg",
                "/isolinux/live.cfg",
                "/boot/grub2/grub.cfg",
                "/EFI/BOOT/grub.cfg",
            ];
            let mut c = format!(
                "mkdir -p '{}' && xorriso -osirrox on -indev '{}'",
                out.display(),
                p.display()
            );
            for cfg in cfgs {
                c.push_str(&format!(
                    " -extract {cfg} '{}{}'",
                    out.display(),
                    cfg.replace('/', "_")
                ));
            }
            c.push_str(" >/dev/null 2>&1; true");
            c
        })
        .collect::<Vec<_>>()
        .join("\n");
    let peer_cmd = sh_argv(script);
    let runs = if quick { 3 } else { 5 };
    let r = ab("detect", runs, &ours_cmd, &peer_cmd, no_reset)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let (wall, peer_wall) = (r.wall(), r.peer_wall());
    Ok(r.row(
        "detect",
        quick,
        format!(
            "detect ({count} live ISOs of 1.5–5.7 GB, sparse; casper, live-boot, dracut layouts; {runs} runs each)"
        ),
        (
            "sik boot detect",
            "xorriso -osirrox on -extract (the boot configs)",
        ),
        vec![(
            "per ISO".into(),
            format!(
                "{:.2} ms vs {:.2} ms",
                wall.0 * 1000.0 / count as f64,
                peer_wall.0 * 1000.0 / count as f64
            ),
        )],
    ))
}
