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
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .args(cmd)
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

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
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
    let which: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = which.is_empty();
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--release",
            "-p",
            "sik",
        ]),
    )?;
    let sik = root().join("target/release/sik");
    let mut rows = Vec::new();
    if all || which.contains(&"create") {
        rows.push(bench_create(&sik, quick)?);
    }
    if all || which.contains(&"extract") {
        rows.push(bench_extract(&sik, quick)?);
    }
    if all || which.contains(&"verify") {
        rows.push(bench_verify(&sik, quick)?);
    }
    if all || which.contains(&"link") {
        rows.push(bench_link(&sik, quick)?);
    }
    if all || which.contains(&"appimage") {
        rows.extend(bench_appimage(&sik, quick)?);
    }
    if all || which.contains(&"detect") {
        rows.push(bench_detect(&sik, quick)?);
    }
    write_report(&rows, quick)
}

fn corpus(quick: bool) -> PathBuf {
    if quick {
        PathBuf::from("/usr/share/doc")
    } else {
        PathBuf::from("/usr/share")
    }
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
    let ours_cmd = vec![
        s(sik),
        "create".into(),
        "extension".into(),
        s(&src),
        "-o".into(),
        s(&ours_out),
        "-q".into(),
        "--compression".into(),
        "zstd".into(),
        "--level".into(),
        "15".into(),
        "--block-size".into(),
        "128K".into(),
    ];
    let peer_cmd = vec![
        "mksquashfs".into(),
        s(&src),
        s(&peer_out),
        "-noappend".into(),
        "-no-progress".into(),
        "-quiet".into(),
        "-comp".into(),
        "zstd".into(),
        "-Xcompression-level".into(),
        "15".into(),
        "-b".into(),
        "128K".into(),
        "-all-root".into(),
    ];
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
    let size_a = std::fs::metadata(&ours_out)
        .map_err(|e| e.to_string())?
        .len();
    let size_b = std::fs::metadata(&peer_out)
        .map_err(|e| e.to_string())?
        .len();
    let rss_a = median(a.iter().map(|x| x.rss_kib as f64).collect()).0;
    let rss_b = median(b.iter().map(|x| x.rss_kib as f64).collect()).0;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Row {
        name: format!(
            "create ({}, zstd level 15, 128 KiB blocks, {runs} runs each)",
            src.display()
        ),
        ours: "sik create extension".into(),
        peer: "mksquashfs -comp zstd".into(),
        wall: median(a.iter().map(|x| x.wall).collect()),
        peer_wall: median(b.iter().map(|x| x.wall).collect()),
        extra: vec![
            (
                "output size".into(),
                format!(
                    "{size_a} vs {size_b} bytes, ratio {:.3}",
                    size_a as f64 / size_b as f64
                ),
            ),
            (
                "peak memory".into(),
                format!(
                    "{:.0} vs {:.0} KiB, ratio {:.2}",
                    rss_a,
                    rss_b,
                    rss_a / rss_b
                ),
            ),
        ],
    })
}

/// Alternate `a` and `b` for `runs` rounds; return both sample lists.
fn alternate(
    runs: usize,
    label: &str,
    mut a: impl FnMut() -> Result<Sample>,
    mut b: impl FnMut() -> Result<Sample>,
) -> Result<(Vec<Sample>, Vec<Sample>)> {
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
    Ok((xs, ys))
}

fn walls(v: &[Sample]) -> (f64, f64, f64) {
    median(v.iter().map(|x| x.wall).collect())
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

/// `sik extract` vs `unsquashfs -d` of the same image (made by sik from the corpus).
fn bench_extract(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = std::env::temp_dir().join("sik-bench-extract");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let t = tmp.to_string_lossy().into_owned();
    let sik = sik.to_string_lossy().into_owned();
    sh(&format!(
        "'{sik}' create extension -q '{}' -o '{t}/x.ExtensionImage' && cat '{t}/x.ExtensionImage' > /dev/null",
        src.display()
    ))?;
    let ours = vec![
        "sh".to_string(),
        "-c".into(),
        format!("rm -rf '{t}/a' && '{sik}' extract -q '{t}/x.ExtensionImage' -o '{t}/a'"),
    ];
    let peer = vec![
        "sh".to_string(),
        "-c".into(),
        format!("rm -rf '{t}/b' && unsquashfs -q -n -d '{t}/b' '{t}/x.ExtensionImage' >/dev/null"),
    ];
    let runs = if quick { 3 } else { 5 };
    let result = alternate(runs, "extract", || measure(&ours), || measure(&peer));
    let _ = std::fs::remove_dir_all(&tmp);
    let (a, b) = result?;
    Ok(Row {
        name: format!(
            "extract (an ExtensionImage of {}, zstd, {runs} runs each; includes removing the previous tree)",
            src.display()
        ),
        ours: "sik extract".into(),
        peer: "unsquashfs -d".into(),
        wall: walls(&a),
        peer_wall: walls(&b),
        extra: vec![(
            "peak memory".into(),
            format!(
                "{:.0} vs {:.0} KiB",
                median(a.iter().map(|x| x.rss_kib as f64).collect()).0,
                median(b.iter().map(|x| x.rss_kib as f64).collect()).0
            ),
        )],
    })
}

/// `sik verify` of a 1 GiB signed image vs `openssl dgst -sha256` of the same file, page cache warm.
fn bench_verify(sik: &Path, quick: bool) -> Result<Row> {
    let size_mib = if quick { 256 } else { 1024 };
    let tmp = std::env::temp_dir().join("sik-bench-verify");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("src")).map_err(|e| e.to_string())?;
    let t = tmp.to_string_lossy();
    let sik = sik.to_string_lossy();
    // Incompressible data, so the image is as large as the data.
    sh(&format!(
        "head -c {size_mib}M /dev/urandom > '{t}/src/data' && '{sik}' create extension -q '{t}/src' -o '{t}/big.ExtensionImage' --compression lz4 && '{sik}' key generate -o '{t}/key' --comment bench >/dev/null && '{sik}' sign '{t}/big.ExtensionImage' --key '{t}/key' && cat '{t}/big.ExtensionImage' > /dev/null"
    ))?;
    let _ = std::fs::remove_file(tmp.join("src/data"));
    let ours = vec![
        sik.to_string(),
        "verify".into(),
        format!("{t}/big.ExtensionImage"),
        "--trust".into(),
        format!("{t}/key.pub"),
    ];
    let peer = vec![
        "openssl".to_string(),
        "dgst".into(),
        "-sha256".into(),
        format!("{t}/big.ExtensionImage"),
    ];
    let runs = if quick { 3 } else { 7 };
    let (a, b) = alternate(
        runs,
        "verify",
        || measure_quiet(&ours),
        || measure_quiet(&peer),
    )?;
    let len = std::fs::metadata(tmp.join("big.ExtensionImage"))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Row {
        name: format!(
            "verify ({} MiB signed ExtensionImage, page cache warm, {runs} runs each)",
            len >> 20
        ),
        ours: "sik verify".into(),
        peer: "openssl dgst -sha256".into(),
        wall: walls(&a),
        peer_wall: walls(&b),
        extra: vec![(
            "peak memory".into(),
            format!(
                "{:.0} vs {:.0} KiB",
                median(a.iter().map(|x| x.rss_kib as f64).collect()).0,
                median(b.iter().map(|x| x.rss_kib as f64).collect()).0
            ),
        )],
    })
}

/// `sik link` + `sik unlink` of an extension holding /usr/share vs `cp -rs` of the same mounted tree + `rm -rf`.
fn bench_link(sik: &Path, quick: bool) -> Result<Row> {
    let src = corpus(quick);
    let tmp = std::env::temp_dir().join("sik-bench-link");
    let _ = sh(&format!(
        "umount -q '{}/mnt' 2>/dev/null; true",
        tmp.display()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("mnt")).map_err(|e| e.to_string())?;
    let t = tmp.to_string_lossy().into_owned();
    let sik = sik.to_string_lossy().into_owned();
    sh(&format!(
        "'{sik}' create extension -q '{}' -o '{t}/share.ExtensionImage' --compression lz4 && mount -o loop,ro '{t}/share.ExtensionImage' '{t}/mnt'",
        src.display()
    ))?;
    let ours = vec![
        "sh".to_string(),
        "-c".into(),
        format!(
            "rm -rf '{t}/root' && mkdir -p '{t}/root' && '{sik}' link -q '{t}/share.ExtensionImage' --root '{t}/root' --allow-unsigned --ignore-compat && '{sik}' unlink -q share --root '{t}/root'"
        ),
    ];
    let peer = vec![
        "sh".to_string(),
        "-c".into(),
        format!(
            "rm -rf '{t}/root2' && mkdir -p '{t}/root2' && cp -rs '{t}/mnt/.' '{t}/root2/' && rm -rf '{t}/root2'"
        ),
    ];
    let runs = if quick { 3 } else { 5 };
    let result = alternate(runs, "link", || measure(&ours), || measure(&peer));
    let _ = sh(&format!("umount '{t}/mnt'; rm -rf '{t}'"));
    let (a, b) = result?;
    Ok(Row {
        name: format!(
            "link + unlink (an extension holding {}, {runs} runs each)",
            src.display()
        ),
        ours: "sik link + sik unlink".into(),
        peer: "cp -rs (mounted image) + rm -rf".into(),
        wall: walls(&a),
        peer_wall: walls(&b),
        extra: vec![],
    })
}

/// Start-up latency of an AppImage (exec → AppRun's output) through FUSE and through a warm
/// extract-and-run cache, against running the extracted AppDir directly (the floor).
fn bench_appimage(sik: &Path, quick: bool) -> Result<Vec<Row>> {
    let tmp = std::env::temp_dir().join("sik-bench-appimage");
    let _ = std::fs::remove_dir_all(&tmp);
    let t = tmp.to_string_lossy().into_owned();
    let sik = sik.to_string_lossy().into_owned();
    sh(&format!(
        "mkdir -p '{t}/AppDir/usr/bin' && cp /bin/busybox '{t}/AppDir/usr/bin/busybox' && printf '#!/bin/sh\\necho started\\n' > '{t}/AppDir/AppRun' && chmod 755 '{t}/AppDir/AppRun' && printf '[Desktop Entry]\\nType=Application\\nName=Bench\\nExec=busybox\\nIcon=bench\\nCategories=Utility;\\n' > '{t}/AppDir/bench.desktop' && cp \"$(find /usr/share -name '*.png' -size -64k | head -n1)\" '{t}/AppDir/bench.png' && '{sik}' create appimage -q '{t}/AppDir' -o '{t}/Bench.AppImage'"
    ))?;
    let runs = if quick { 20 } else { 100 };
    let time_loop = |script: String| -> Result<Sample> {
        let cmd = vec![
            "sh".to_string(),
            "-c".into(),
            format!(
                "i=0; while [ $i -lt {runs} ]; do {script} >/dev/null || exit 1; i=$((i+1)); done"
            ),
        ];
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
    let (f, d) = alternate(
        rounds,
        "appimage fuse",
        || time_loop(fuse.clone()),
        || time_loop(floor.clone()),
    )?;
    let (c, d2) = alternate(
        rounds,
        "appimage cache",
        || time_loop(cache.clone()),
        || time_loop(floor.clone()),
    )?;
    let size = std::fs::metadata(tmp.join("Bench.AppImage")).ok();
    let runtime_len = sik_runtime_len(&tmp.join("Bench.AppImage"));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = size;
    Ok(vec![
        Row {
            name: format!("AppImage start-up through FUSE (per start, {rounds}×{runs} starts)"),
            ours: "X.AppImage (FUSE mount)".into(),
            peer: "AppDir/AppRun directly (floor)".into(),
            wall: walls(&f),
            peer_wall: walls(&d),
            extra: vec![(
                "runtime size".into(),
                format!("{runtime_len} bytes (reference runtime ≈ 900 000)"),
            )],
        },
        Row {
            name: format!(
                "AppImage start-up from the warm extract-and-run cache (per start, {rounds}×{runs} starts)"
            ),
            ours: "APPIMAGE_EXTRACT_AND_RUN=1 X.AppImage".into(),
            peer: "AppDir/AppRun directly (floor)".into(),
            wall: walls(&c),
            peer_wall: walls(&d2),
            extra: vec![],
        },
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
    let tmp = std::env::temp_dir().join("sik-bench-detect");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
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
        let out = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", label, "-o"])
            .arg(&iso)
            .arg(&tree)
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
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut ours_cmd = vec![s(sik), "boot".into(), "detect".into(), "--json".into()];
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
    let peer_cmd = vec!["sh".into(), "-c".into(), script];
    let runs = if quick { 3 } else { 5 };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprintln!("bench detect: run {}/{runs}", i + 1);
        if i % 2 == 0 {
            a.push(measure_quiet(&ours_cmd)?);
            b.push(measure(&peer_cmd)?);
        } else {
            b.push(measure(&peer_cmd)?);
            a.push(measure_quiet(&ours_cmd)?);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let wall = median(a.iter().map(|x| x.wall).collect());
    let peer_wall = median(b.iter().map(|x| x.wall).collect());
    Ok(Row {
        name: format!(
            "detect ({count} live ISOs of 1.5–5.7 GB, sparse; casper, live-boot, dracut layouts; {runs} runs each)"
        ),
        ours: "sik boot detect".into(),
        peer: "xorriso -osirrox on -extract (the boot configs)".into(),
        wall,
        peer_wall,
        extra: vec![(
            "per ISO".into(),
            format!(
                "{:.2} ms vs {:.2} ms",
                wall.0 * 1000.0 / count as f64,
                peer_wall.0 * 1000.0 / count as f64
            ),
        )],
    })
}

/// [`measure`] for a command whose stdout is not wanted.
fn measure_quiet(cmd: &[String]) -> Result<Sample> {
    let mut wrapped = vec![
        "sh".to_string(),
        "-c".to_string(),
        "\"$@\" >/dev/null".to_string(),
        "sh".to_string(),
    ];
    wrapped.extend(cmd.iter().cloned());
    measure(&wrapped)
}

/// `median (min–max)` in seconds, or milliseconds below one second.
fn span((m, lo, hi): (f64, f64, f64)) -> String {
    if hi < 1.0 {
        format!("{:.2} ms ({:.2}–{:.2})", m * 1e3, lo * 1e3, hi * 1e3)
    } else {
        format!("{m:.2} s ({lo:.2}–{hi:.2})")
    }
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
    format!("{cores} cores, {cpu}")
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let t = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&t)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|| "not installed".into())
}

fn write_report(rows: &[Row], quick: bool) -> Result {
    let mut md = String::from("# Benchmarks\n\nWritten by `cargo xtask bench`");
    if quick {
        md.push_str(" --quick");
    }
    md.push_str(". Runs alternate between sik and the peer in one invocation; figures are medians (min–max). Absolute times on a shared machine are noise: the ratio (sik ÷ peer, lower is better for time and memory) is the figure.\n\n");
    md.push_str(&format!(
        "- Machine: {}\n- mksquashfs: {}\n- xorriso: {}\n- sik: {}\n\n",
        machine(),
        version("mksquashfs", "-version"),
        version("xorriso", "-version"),
        version(
            &root().join("target/release/sik").to_string_lossy(),
            "--version"
        )
    ));
    md.push_str("| benchmark | sik | peer | sik wall | peer wall | wall ratio | other |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        let extra = r
            .extra
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        md.push_str(&format!(
            "| {} | `{}` | `{}` | {} | {} | **{:.2}×** | {} |\n",
            r.name,
            r.ours,
            r.peer,
            span(r.wall),
            span(r.peer_wall),
            r.wall.0 / r.peer_wall.0,
            extra
        ));
    }
    let path = root().join("BENCHMARKS.md");
    std::fs::write(&path, md).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
