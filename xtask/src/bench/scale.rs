//! `scale`: `sik create extension` against mksquashfs on generated trees of
//! growing size, to show that time grows linearly and memory stays flat;
//! then the read paths (extract, list, verify, link) of the image sik made
//! at each size and of an image of this machine's `/usr` (a real
//! distribution root), through [`super::reads`].
//!
//! Sizes: 100 MB, 1 GB and 4 GB (`--quick`: 100 MB and 1 GB, no `/usr`).
//! Both tools use zstd level 3 and 128 KiB blocks (a moderate level keeps
//! 4 GB affordable). Each tree is generated once (deterministic, see
//! [`super::data`]) under the temp directory, benchmarked, and removed
//! before the next size.

use std::path::Path;

use super::data::{Mix, Pools, Rng};
use super::report::Row;
use super::{Ab, ab, fresh_dir, reads, remove_output, sh};
use crate::Result;

/// What a generated tree holds.
pub(super) struct Tree {
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) duplicates: u64,
    pub(super) bytes: u64,
}

/// Write about `total` bytes of files into `dir`: half of the bytes in
/// small files (64 B–16 KiB, so many files: about 60 000 per GB), the other
/// half in medium files (32 KiB–4 MiB) and one in fifteen of those big
/// (16–128 MiB); one file in twenty a byte-for-byte copy of an earlier small
/// or medium file, 50 files per directory, two levels deep.
pub(super) fn generate(dir: &Path, total: u64, seed: u64) -> Result<Tree> {
    let pools = Pools::new();
    let mut rng = Rng::new(seed);
    let mut t = Tree {
        files: 0,
        dirs: 0,
        duplicates: 0,
        bytes: 0,
    };
    let mut copyable: Vec<std::path::PathBuf> = Vec::new();
    let big_max = (128u64 << 20).min(total / 4).max(16 << 20);
    let mut small_bytes = 0u64;
    while t.bytes < total {
        let n = t.files;
        let sub = dir.join(format!("d{:03}/s{:02}", n / 1000, (n / 50) % 20));
        if n.is_multiple_of(50) {
            std::fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
            t.dirs += 1;
        }
        let path = sub.join(format!("f{n:06}.dat"));
        if !copyable.is_empty() && rng.below(20) == 0 {
            let from = &copyable[rng.below(copyable.len() as u64) as usize];
            t.bytes +=
                std::fs::copy(from, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            t.duplicates += 1;
        } else {
            let small = small_bytes <= t.bytes / 2;
            let len = if small {
                rng.range(64, 16 << 10)
            } else if rng.below(15) > 0 {
                rng.range(32 << 10, 4 << 20)
            } else {
                rng.range(16 << 20, big_max)
            }
            .min(total - t.bytes + 64);
            if small {
                small_bytes += len;
            }
            pools.write_file(&path, len, &mut rng, Mix::TREE)?;
            t.bytes += len;
            if len < (4 << 20) {
                copyable.push(path);
            }
        }
        t.files += 1;
    }
    Ok(t)
}

fn label(size: u64) -> String {
    if size >= 1_000_000_000 {
        format!("{}GB", size / 1_000_000_000)
    } else {
        format!("{}MB", size / 1_000_000)
    }
}

/// One measured size.
struct Point {
    size: u64,
    r: Ab,
}

pub fn bench(sik: &Path, quick: bool) -> Result<Vec<Row>> {
    let sizes: &[(u64, usize)] = if quick {
        &[(100_000_000, 3), (1_000_000_000, 1)]
    } else {
        &[(100_000_000, 5), (1_000_000_000, 3), (4_000_000_000, 3)]
    };
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for &(size, runs) in sizes {
        let tmp = fresh_dir("sik-bench-scale")?;
        let result = (|| -> Result<Vec<Row>> {
            let data = tmp.join("data");
            eprintln!("bench scale: generating {}", label(size));
            let tree = generate(&data, size, 0x5ca1e ^ size)?;
            // The generated tree is written back before timing starts.
            sh("sync")?;
            let ours_out = tmp.join("ours.ExtensionImage");
            let peer_out = tmp.join("peer.sqfs");
            let (ours, peer) = super::create_cmds(sik, &data, &ours_out, &peer_out, 3);
            let r = ab(
                &format!("scale {}", label(size)),
                runs,
                &ours,
                &peer,
                remove_output(&ours_out, &peer_out),
            )?;
            let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let (out_a, out_b) = (len(&ours_out), len(&peer_out));
            let (wa, wb) = (r.wall().0, r.peer_wall().0);
            let mb = tree.bytes as f64 / 1e6;
            let gb = tree.bytes as f64 / 1e9;
            let (ma, mb_) = r.rss();
            let row = r.row(
                &format!("scale-{}", label(size)),
                quick,
                format!(
                    "create scaling, {} of generated data ({} bytes in {} files, {} directories, {} duplicate files; 50 % text-like, 30 % random, 20 % tables), zstd level 3, 128 KiB blocks, input in page cache, `sync` (untimed) before each run, {runs} run(s) each",
                    label(size),
                    tree.bytes,
                    tree.files,
                    tree.dirs,
                    tree.duplicates
                ),
                ("sik create extension", "mksquashfs -comp zstd"),
                vec![
                    (
                        "throughput".into(),
                        format!("{:.0} vs {:.0} MB/s", mb / wa, mb / wb),
                    ),
                    (
                        "s per GB".into(),
                        format!("{:.2} vs {:.2}", wa / gb, wb / gb),
                    ),
                    (
                        "peak memory".into(),
                        format!(
                            "{:.0} vs {:.0} MiB, ratio {:.2}",
                            ma / 1024.0,
                            mb_ / 1024.0,
                            ma / mb_
                        ),
                    ),
                    (
                        "output size".into(),
                        format!(
                            "{out_a} vs {out_b} bytes, ratio {:.3}",
                            out_a as f64 / out_b as f64
                        ),
                    ),
                ],
            );
            points.push(Point {
                size: tree.bytes,
                r,
            });
            // The read paths of the image sik made; the tree and the
            // peer's image are removed first (disk space).
            let _ = std::fs::remove_dir_all(&data);
            let _ = std::fs::remove_file(&peer_out);
            let what = format!(
                "the image sik made of {} of generated data ({} files, {} directories)",
                label(size),
                tree.files,
                tree.dirs
            );
            let mut all = vec![row];
            let subject = reads::Subject {
                image: &ours_out,
                what: &what,
                label: &label(size),
                bytes: tree.bytes,
            };
            all.extend(reads::rows(sik, &subject, &tmp, runs.max(3), quick)?);
            Ok(all)
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        rows.extend(result?);
    }
    rows.push(trend(&points, quick));
    if !quick {
        rows.extend(usr_rows(sik)?);
    }
    Ok(rows)
}

/// The read paths on an image of this machine's `/usr` (made by sik, zstd
/// level 3), a real distribution root.
fn usr_rows(sik: &Path) -> Result<Vec<Row>> {
    let tmp = fresh_dir("sik-bench-scale")?;
    let result = (|| -> Result<Vec<Row>> {
        let image = tmp.join("usr.ExtensionImage");
        eprintln!("bench scale: making an image of /usr");
        sh(&format!(
            "'{}' create extension -q /usr -o '{}' --compression zstd --level 3",
            sik.display(),
            image.display()
        ))?;
        let bytes = du_bytes(Path::new("/usr"));
        let what = format!(
            "the image sik made of this machine's /usr ({:.1} GB, zstd level 3)",
            bytes as f64 / 1e9
        );
        let subject = reads::Subject {
            image: &image,
            what: &what,
            label: "usr",
            bytes,
        };
        reads::rows(sik, &subject, &tmp, 3, false)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Apparent bytes of the files under `dir` (`du -sb`).
fn du_bytes(dir: &Path) -> u64 {
    std::process::Command::new("du")
        .args(["-sbx"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The summary row: seconds per GB and peak RSS at each size, and the
/// largest-to-smallest factor of each (1.0 = linear time, flat memory).
fn trend(points: &[Point], quick: bool) -> Row {
    let sizes = points
        .iter()
        .map(|p| label_approx(p.size))
        .collect::<Vec<_>>()
        .join(" → ");
    let side = |wall: &dyn Fn(&Ab) -> f64, rss: &dyn Fn(&Ab) -> f64| {
        let spg: Vec<f64> = points
            .iter()
            .map(|p| wall(&p.r) / (p.size as f64 / 1e9))
            .collect();
        let mem: Vec<f64> = points.iter().map(|p| rss(&p.r) / 1024.0).collect();
        let join = |v: &[f64], d: usize| {
            v.iter()
                .map(|x| format!("{x:.d$}"))
                .collect::<Vec<_>>()
                .join(" → ")
        };
        let f = |v: &[f64]| v.last().copied().unwrap_or(0.0) / v.first().copied().unwrap_or(1.0);
        (
            format!("s/GB {}; RSS {} MiB", join(&spg, 2), join(&mem, 0)),
            f(&spg),
            f(&mem),
        )
    };
    let (a, ta, ma) = side(&|r| r.wall().0, &|r| r.rss().0);
    let (b, tb, mb) = side(&|r| r.peer_wall().0, &|r| r.rss().1);
    Row {
        key: "scale-trend".into(),
        quick,
        name: format!(
            "create scaling summary over {sizes}: seconds per GB and peak RSS per size (time linear ⇔ s/GB constant; memory flat ⇔ RSS constant)"
        ),
        ours: "sik create extension".into(),
        peer: "mksquashfs -comp zstd".into(),
        ours_fig: a,
        peer_fig: b,
        ratio: "n/a (trend row: see other)".into(),
        extra: vec![
            (
                "s/GB largest ÷ smallest size".into(),
                format!("sik {ta:.2}×, mksquashfs {tb:.2}×"),
            ),
            (
                "peak RSS largest ÷ smallest size".into(),
                format!("sik {ma:.2}×, mksquashfs {mb:.2}×"),
            ),
        ],
    }
}

fn label_approx(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.1} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.0} MB", bytes as f64 / 1e6)
    }
}
