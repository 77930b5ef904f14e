//! `fuse`: read throughput of the AppImage runtime's FUSE mount against
//! squashfuse serving the same image.
//!
//! One AppImage (made by `sik create appimage`) holds a large generated file
//! and a copy of /usr/share/doc. Both file systems stay mounted for the whole
//! benchmark (mount and unmount are not timed): ours through
//! `X.AppImage --appimage-mount`, the peer through
//! `squashfuse -f -o offset=N X.AppImage DIR`. Before every timed run the
//! page cache is dropped and the image file is read back into it, so each
//! run reads through FUSE and decompression and never from the disk.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::data::{Mix, Pools, Rng};
use super::report::{Row, span};
use super::{Sample, alternate, fresh_dir, make_appdir, s, sh, sik_runtime_len};
use crate::Result;

/// The two mounts; dropping it unmounts both and ends their servers.
#[derive(Default)]
struct Mounts {
    ours: Option<(Child, PathBuf)>,
    peer: Option<(Child, PathBuf)>,
    image: PathBuf,
}

fn mounted(mp: &Path) -> bool {
    let want = s(mp);
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Result {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Mounts {
    /// `IMAGE --appimage-mount`: it prints the mount point and stays until killed.
    fn mount_ours(&mut self, image: &Path, tmpdir: &Path) -> Result<PathBuf> {
        self.image = image.to_path_buf();
        let mut child = Command::new(image)
            .arg("--appimage-mount")
            .env("TMPDIR", tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", image.display()))?;
        let mut line = String::new();
        let out = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let mp = PathBuf::from(line.trim());
        self.ours = Some((child, mp.clone()));
        if line.trim().is_empty() || !mounted(&mp) {
            return Err(format!(
                "{} --appimage-mount did not mount",
                image.display()
            ));
        }
        Ok(mp)
    }

    /// `squashfuse -f -o offset=N IMAGE MP`, in the foreground as our child.
    fn mount_peer(&mut self, image: &Path, offset: u64, mp: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(mp).map_err(|e| e.to_string())?;
        let child = Command::new("squashfuse")
            .arg("-f")
            .arg("-o")
            .arg(format!("offset={offset}"))
            .arg(image)
            .arg(mp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("squashfuse: {e}"))?;
        self.peer = Some((child, mp.to_path_buf()));
        wait_until("the squashfuse mount", || mounted(mp))?;
        Ok(mp.to_path_buf())
    }

    /// Peak RSS (VmHWM, KiB) of our FUSE server and of squashfuse.
    fn server_rss(&self) -> (u64, u64) {
        let hwm = |pid: u32| -> u64 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        };
        // Our server is a detached grandchild running the AppImage itself.
        let ours_front = self.ours.as_ref().map(|(c, _)| c.id()).unwrap_or(0);
        let server = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .find(|&pid| {
                pid != ours_front
                    && std::fs::read_link(format!("/proc/{pid}/exe"))
                        .ok()
                        .as_deref()
                        == Some(self.image.as_path())
            });
        let peer = self.peer.as_ref().map(|(c, _)| c.id());
        (server.map(hwm).unwrap_or(0), peer.map(hwm).unwrap_or(0))
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        if let Some((mut c, mp)) = self.ours.take() {
            // The server unmounts when the front process (its keep-alive) ends.
            let _ = c.kill();
            let _ = c.wait();
            let _ = wait_until("our unmount", || !mounted(&mp));
        }
        if let Some((mut c, mp)) = self.peer.take() {
            let _ = Command::new("umount").arg(&mp).status();
            let _ = wait_until("squashfuse to end", || matches!(c.try_wait(), Ok(Some(_))));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Drop the page cache, then read the image file back into it.
fn cold_fuse_warm_image(image: &Path) -> Result {
    sh("sync")?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("cannot drop the page cache (run as root): {e}"))?;
    read_all(image, &mut vec![0u8; 1 << 20]).map(|_| ())
}

fn read_all(path: &Path, buf: &mut [u8]) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut n = 0u64;
    loop {
        match f.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Stat every entry under `dir` and read every regular file: (entries, bytes).
fn walk(dir: &Path, buf: &mut [u8]) -> Result<(u64, u64)> {
    let (mut entries, mut bytes) = (0, 0);
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd {
        let p = e.map_err(|e| e.to_string())?.path();
        let m = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        entries += 1;
        if m.is_dir() {
            let (e2, b2) = walk(&p, buf)?;
            entries += e2;
            bytes += b2;
        } else if m.is_file() {
            bytes += read_all(&p, buf)?;
        }
    }
    Ok((entries, bytes))
}

/// Time `f` after the cache reset; the figure it returns must equal `expect`.
fn timed<T: PartialEq + std::fmt::Debug>(
    image: &Path,
    expect: &T,
    f: impl FnOnce() -> Result<T>,
) -> Result<Sample> {
    cold_fuse_warm_image(image)?;
    let start = Instant::now();
    let got = f()?;
    let wall = start.elapsed().as_secs_f64();
    if &got != expect {
        return Err(format!("read {got:?}, expected {expect:?}"));
    }
    Ok(Sample { wall, rss_kib: 0 })
}

pub fn bench(sik: &Path, quick: bool) -> Result<Vec<Row>> {
    let tmp = fresh_dir("sik-bench-fuse")?;
    let appdir = tmp.join("AppDir");
    make_appdir(&appdir)?;
    let big_mib: u64 = if quick { 64 } else { 512 };
    let big_len = big_mib << 20;
    eprintln!("bench fuse: generating {big_mib} MiB and the AppImage");
    Pools::new().write_file(
        &appdir.join("big.bin"),
        big_len,
        &mut Rng::new(0xf05e),
        Mix::HALF,
    )?;
    let tree_src = "/usr/share/doc";
    sh(&format!("cp -a {tree_src} '{}/tree'", s(&appdir)))?;
    let image = tmp.join("Bench.AppImage");
    sh(&format!(
        "'{}' create appimage -q '{}' -o '{}'",
        s(sik),
        s(&appdir),
        s(&image)
    ))?;
    let _ = std::fs::remove_dir_all(&appdir);
    let image = std::fs::canonicalize(&image).map_err(|e| e.to_string())?;
    let image_len = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
    let offset = sik_runtime_len(&image);
    if offset == 0 {
        return Err("the AppImage did not report its payload offset".into());
    }
    let result = (|| -> Result<Vec<Row>> {
        let mut m = Mounts::default();
        let ours = m.mount_ours(&image, &tmp)?;
        let peer = m.mount_peer(&image, offset, &tmp.join("squashfuse"))?;
        let mut buf = vec![0u8; 1 << 20];
        let tree_a = walk(&ours.join("tree"), &mut buf)?;
        let tree_b = walk(&peer.join("tree"), &mut buf)?;
        if tree_a != tree_b {
            return Err(format!(
                "the mounts differ: ours {tree_a:?}, squashfuse {tree_b:?} (entries, bytes)"
            ));
        }
        let runs = if quick { 3 } else { 5 };
        let buf = std::cell::RefCell::new(buf);
        let read = |mp: &Path| {
            timed(&image, &big_len, || {
                read_all(&mp.join("big.bin"), &mut buf.borrow_mut())
            })
        };
        let r = alternate(runs, "fuse read", || read(&ours), || read(&peer))?;
        let tree = |mp: &Path| {
            timed(&image, &tree_a, || {
                walk(&mp.join("tree"), &mut buf.borrow_mut())
            })
        };
        let w = alternate(runs, "fuse walk", || tree(&ours), || tree(&peer))?;
        let (rss_a, rss_b) = m.server_rss();
        drop(m);
        let mbs = |wall: (f64, f64, f64)| {
            let mb = big_len as f64 / 1e6;
            (mb / wall.0, mb / wall.2, mb / wall.1)
        };
        let (ra, rb) = (mbs(r.wall()), mbs(r.peer_wall()));
        let fig = |(m, lo, hi): (f64, f64, f64)| format!("{m:.0} MB/s ({lo:.0}–{hi:.0})");
        let rss = (
            "FUSE server peak RSS (VmHWM)".to_string(),
            format!("{rss_a} vs {rss_b} KiB"),
        );
        let setup = format!(
            "AppImage of {} bytes by `sik create appimage` (zstd, 128 KiB blocks), both mounted for the whole benchmark (mount/unmount not timed); before each run the page cache is dropped and the image file read back into it, so every run goes through FUSE + decompression, not the disk; {runs} runs each",
            image_len
        );
        let read_row = Row {
            key: "fuse-read".into(),
            quick,
            name: format!(
                "FUSE sequential read of one {big_mib} MiB file (generated, half text-like, half random 16 KiB chunks), 1 MiB read() calls; {setup}"
            ),
            ours: "X.AppImage --appimage-mount".into(),
            peer: "squashfuse -o offset=N X.AppImage".into(),
            ours_fig: fig(ra),
            peer_fig: fig(rb),
            ratio: format!("**{:.2}×** throughput, higher is better", ra.0 / rb.0),
            extra: vec![
                (
                    "wall".into(),
                    format!("{} vs {}", span(r.wall()), span(r.peer_wall())),
                ),
                rss.clone(),
            ],
        };
        let walk_row = w.row(
            "fuse-walk",
            quick,
            format!(
                "FUSE tree walk: stat every entry and read every file of a copy of {tree_src} ({} entries, {} bytes); {setup}",
                tree_a.0, tree_a.1
            ),
            (
                "X.AppImage --appimage-mount",
                "squashfuse -o offset=N X.AppImage",
            ),
            vec![
                (
                    "throughput".into(),
                    format!(
                        "{:.0} vs {:.0} MB/s",
                        tree_a.1 as f64 / 1e6 / w.wall().0,
                        tree_a.1 as f64 / 1e6 / w.peer_wall().0
                    ),
                ),
                rss,
            ],
        );
        Ok(vec![read_row, walk_row])
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
