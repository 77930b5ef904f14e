//! `verity`: what the dm-verity hash tree costs and what it saves.
//!
//! * `verity-create`: `sik create extension` with the tree (the default)
//!   against `--no-verity`, same generated tree, zstd level 3 (goal ≤ 1.05×).
//! * `verity-verify`: `sik verify` of a signed 1 GiB image with its tree
//!   against `openssl dgst -sha256` of the file (goal ≤ 1.10×).
//! * `verity-link-64MiB`, `verity-link-1GiB`: linking a signed image from a
//!   disk throttled to USB 2 speed (QEMU `throttling.bps-total=31457280`,
//!   30 MiB/s) in a guest running the e2e Debian live ISO's kernel (direct
//!   `-kernel` boot, a busybox initramfs with the static sik and the ISO
//!   initrd's virtio, loop, squashfs and dm-verity modules). Each image holds
//!   incompressible data of that size plus a small command and lies on an
//!   ext4 disk, read-only. Ours: the image with its tree, linked through
//!   dm-verity (only the signature over the descriptor is checked before
//!   mounting). Peer: the same content made with `--no-verity`, whose
//!   signature covers the whole file, so `sik link` hashes all of it first.
//!   The guest drops its page cache before every link and prints
//!   `/proc/uptime` before `sik link` starts and after it returns; those
//!   guest times are the figures (goal with verity ≤ 2 s at both sizes).
//!
//! Needs root (the e2e ISOs: `cargo xtask e2e` builds and caches them),
//! qemu-system-x86_64, mkfs.ext4 and the static sik (`SIK_E2E_SIK=FILE`, or
//! built here with `cargo xtask dist`), which both parts run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::report::Row;
use super::{Sample, ab, alternate, argv, fresh_dir, median, remove_output, s, sh};
use crate::Result;

/// USB 2 mass storage in practice: 30 MiB/s for reads and writes together.
pub const USB2_BPS: u64 = 31_457_280;

/// Modules the guest loads, each after its dependencies from `modules.dep`.
const GUEST_MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/block/loop.ko",
    "kernel/fs/squashfs/squashfs.ko",
    "kernel/drivers/md/dm-verity.ko",
];

/// The guest's init: link and unlink each image ROUNDS times with a cold
/// page cache, one `BENCH:` line per link.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null || echo "BENCH: insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
mkdir -p /disk; mount -t ext4 -o ro /dev/vda /disk || echo "BENCH: cannot mount the disk"
mkdir -p /root/usr/lib /root/etc /root/run
echo ID=debian > /root/usr/lib/os-release; ln -s ../usr/lib/os-release /root/etc/os-release
mount -t tmpfs t /root/run
up() { cut -d' ' -f1 /proc/uptime; }
r=1
while [ $r -le $(cat /rounds) ]; do
	for img in $(cat /images); do
		sync; echo 3 > /proc/sys/vm/drop_caches
		t0=$(up)
		/sik link --root /root --trust /k.pub /disk/$img.ExtensionImage > /tmp/out 2>&1; rc=$?
		t1=$(up)
		how=$(grep -o 'verified by [a-z-]*' /tmp/out | head -n1)
		echo "BENCH: $img round $r rc=$rc start $t0 linked $t1 $how"
		[ $rc = 0 ] || sed 's/^/BENCH: out: /' /tmp/out
		/sik unlink -q --root /root $img
	done
	r=$((r + 1))
done
echo "BENCH: done"
poweroff -f
"#;

/// One image size of the throttled-disk measurement.
struct Size {
    label: &'static str,
    mib: u64,
}

const SIZES: &[Size] = &[
    Size {
        label: "64MiB",
        mib: 64,
    },
    Size {
        label: "1GiB",
        mib: 1024,
    },
];

/// Both parts run the static sik (`SIK_E2E_SIK`, else `cargo xtask dist`):
/// the guest needs it, and create's two sides differ only in the option.
pub fn bench(quick: bool) -> Result<Vec<Row>> {
    let sik = match std::env::var_os("SIK_E2E_SIK") {
        Some(p) => std::path::PathBuf::from(p),
        None => crate::dist()?,
    };
    let mut rows = bench_link(&sik, quick)?;
    rows.insert(0, bench_create(&sik, quick)?);
    rows.insert(1, bench_verify(&sik, quick)?);
    Ok(rows)
}

/// `sik verify` of a signed image with its tree (data checked against the
/// tree, the tree against the signed root hash) vs `openssl dgst -sha256`
/// of the same file, page cache warm (goal ≤ 1.10×).
fn bench_verify(sik: &Path, quick: bool) -> Result<Row> {
    let size_mib = if quick { 256 } else { 1024 };
    let runs = if quick { 3 } else { 7 };
    let tmp = fresh_dir("sik-bench-verity-verify")?;
    let result = (|| -> Result<Row> {
        let t = s(&tmp);
        let sik = s(sik);
        sh(&format!(
            "mkdir -p '{t}/src' && head -c {size_mib}M /dev/urandom > '{t}/src/data' && '{sik}' key generate -o '{t}/key' --comment bench >/dev/null && '{sik}' create extension -q '{t}/src' -o '{t}/big.ExtensionImage' --compression lz4 --sign '{t}/key' && rm -rf '{t}/src' && cat '{t}/big.ExtensionImage' > /dev/null"
        ))?;
        let image = format!("{t}/big.ExtensionImage");
        let ours = argv(&[&sik, "verify", &image, "--trust", &format!("{t}/key.pub")]);
        let peer = argv(&["openssl", "dgst", "-sha256", &image]);
        let r = ab("verity verify", runs, &ours, &peer, super::no_reset)?;
        let len = std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0);
        Ok(r.row(
            "verity-verify",
            quick,
            format!(
                "verify ({} MiB signed ExtensionImage with its dm-verity tree: every data block hashed into the tree, the tree checked against the signed root hash; page cache warm, {runs} runs each; goal ≤ 1.10×)",
                len >> 20
            ),
            ("sik verify", "openssl dgst -sha256"),
            vec![r.rss_extra()],
        ))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// `sik create extension` with and without the hash tree.
fn bench_create(sik: &Path, quick: bool) -> Result<Row> {
    let size: u64 = if quick { 100_000_000 } else { 1_000_000_000 };
    let runs = if quick { 3 } else { 5 };
    let tmp = fresh_dir("sik-bench-verity-create")?;
    let result = (|| -> Result<Row> {
        let data = tmp.join("data");
        eprintln!("bench verity: generating {size} bytes");
        let tree = super::scale::generate(&data, size, 0x7e417 ^ size)?;
        sh("sync")?;
        let ours_out = tmp.join("tree.ExtensionImage");
        let peer_out = tmp.join("plain.ExtensionImage");
        let cmd = |out: &Path, extra: &[&str]| {
            let mut v = argv(&[
                &s(sik),
                "create",
                "extension",
                &s(&data),
                "-o",
                &s(out),
                "-q",
                "--compression",
                "zstd",
                "--level",
                "3",
                "--block-size",
                "128K",
            ]);
            v.extend(extra.iter().map(|x| x.to_string()));
            v
        };
        let r = ab(
            "verity create",
            runs,
            &cmd(&ours_out, &[]),
            &cmd(&peer_out, &["--no-verity"]),
            remove_output(&ours_out, &peer_out),
        )?;
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let (a, b) = (len(&ours_out), len(&peer_out));
        Ok(r.row(
            "verity-create",
            quick,
            format!(
                "create with the dm-verity tree vs without ({} bytes of generated data in {} files; 50 % text-like, 30 % random, 20 % tables), zstd level 3, 128 KiB blocks, input in page cache, `sync` (untimed) before each run, {runs} runs each; goal ≤ 1.05×",
                tree.bytes, tree.files
            ),
            (
                "sik create extension (tree)",
                "sik create extension --no-verity",
            ),
            vec![
                (
                    "output size".into(),
                    format!("{a} vs {b} bytes (tree {:.2} %)", (a - b.min(a)) as f64 * 100.0 / b as f64),
                ),
                r.rss_extra(),
            ],
        ))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Build the guest and its throttled disk, boot once, read the guest's times.
fn bench_link(sik: &Path, quick: bool) -> Result<Vec<Row>> {
    let rounds = if quick { 1 } else { 3 };
    let (isos, _) = crate::e2e::isos::cached_isos()?;
    let tmp = fresh_dir("sik-bench-verity-link")?;
    let result = (|| -> Result<Vec<Row>> {
        let all: Vec<String> = SIZES
            .iter()
            .flat_map(|z| [format!("v{}", z.label), format!("w{}", z.label)])
            .collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let text = boot_guest(sik, &isos.join("debian-live.iso"), &tmp, rounds, &all)?;
        let log = crate::root().join("target/bench-verity-guest.log");
        let _ = std::fs::write(&log, &text);
        let mut rows = Vec::new();
        for size in SIZES {
            let times = |img: &str, want: &str| -> Result<Vec<Sample>> {
                let v: Vec<Sample> = guest_times(&text, img, want)
                    .into_iter()
                    .map(|wall| Sample { wall, rss_kib: 0 })
                    .collect();
                if v.len() != rounds {
                    return Err(format!(
                        "bench verity: {img}: {} of {rounds} links went through {want:?} (guest log {})",
                        v.len(),
                        log.display()
                    ));
                }
                Ok(v)
            };
            let ours = times(&format!("v{}", size.label), "verified by dm-verity")?;
            let peer = times(&format!("w{}", size.label), "verified by hashing")?;
            // Already measured in the guest: alternate just pairs them up.
            let (mut o, mut p) = (ours.into_iter(), peer.into_iter());
            let r = alternate(
                rounds,
                "verity link",
                || o.next().ok_or_else(|| "no sample".to_string()),
                || p.next().ok_or_else(|| "no sample".to_string()),
            )?;
            let verity_max = median(r.ours.iter().map(|x| x.wall).collect()).2;
            rows.push(r.row(
                &format!("verity-link-{}", size.label),
                quick,
                format!(
                    "sik link of a signed {} MiB ExtensionImage (incompressible data + a small command) from a virtio disk throttled to USB 2 speed (QEMU throttling.bps-total={USB2_BPS}), guest: the e2e Debian ISO's 6.1 kernel under TCG, 1 GiB RAM, page cache dropped before each link; time from sik link's start to its return (\"linked\"), read from the guest's /proc/uptime; {rounds} run(s) each; goal with verity ≤ 2 s and independent of the size",
                    size.mib
                ),
                (
                    "sik link (dm-verity: signature over the root hash, kernel checks blocks on read)",
                    "sik link of the --no-verity image (whole file hashed before mounting)",
                ),
                vec![(
                    "slowest dm-verity link".into(),
                    format!("{verity_max:.2} s"),
                )],
            ));
        }
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The guest's link times (seconds) of image `img` whose output held `how`.
fn guest_times(text: &str, img: &str, how: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| {
            // The console may put escape sequences before the first line.
            let l = l.trim_end_matches('\r');
            let rest = &l[l.find(&format!("BENCH: {img} round "))?..];
            let rest = rest.strip_prefix(&format!("BENCH: {img} round "))?;
            if !rest.contains(" rc=0 ") || !rest.contains(how) {
                return None;
            }
            let num = |key: &str| -> Option<f64> {
                rest.split(key)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            };
            Some(num(" linked ")? - num(" start ")?)
        })
        .collect()
}

/// Make the images, the ext4 disk and the initramfs under `tmp`, boot the
/// ISO's kernel with the disk throttled, link each of `link` (`v64MiB`,
/// `w64MiB`, `v1GiB`, `w1GiB`: `v` with the tree, `w` without) `rounds`
/// times and return the serial console text.
fn boot_guest(sik: &Path, iso: &Path, tmp: &Path, rounds: usize, link: &[&str]) -> Result<String> {
    let t = s(tmp);
    let q = |p: &Path| format!("'{}'", s(p).replace('\'', "'\\''"));
    let (sikq, isoq) = (q(sik), q(iso));
    sh(&format!(
        "cd '{t}' && xorriso -osirrox on -indev {isoq} -extract /live/vmlinuz vmlinuz -extract /live/initrd.img initrd.img >/dev/null 2>&1 && mkdir ird && cd ird && (zstd -dc ../initrd.img 2>/dev/null || gzip -dc ../initrd.img) | cpio -idm 2>/dev/null; cd '{t}' && ls -d ird/usr/lib/modules/* ird/lib/modules/* >/dev/null 2>&1"
    ))?;
    let kdir = ["ird/usr/lib/modules", "ird/lib/modules"]
        .iter()
        .filter_map(|d| std::fs::read_dir(tmp.join(d)).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .find(|p| p.join("modules.dep").is_file())
        .ok_or("the ISO's initrd has no lib/modules/KVER/modules.dep")?;
    let dep = std::fs::read_to_string(kdir.join("modules.dep")).map_err(|e| e.to_string())?;
    let order = load_order(&dep, GUEST_MODULES);
    let gi = tmp.join("gi");
    std::fs::create_dir_all(gi.join("mods")).map_err(|e| e.to_string())?;
    for m in &order {
        let to = gi.join("mods").join(m);
        std::fs::create_dir_all(to.parent().expect("module path has a parent"))
            .map_err(|e| e.to_string())?;
        std::fs::copy(kdir.join(m), &to).map_err(|e| format!("{m}: {e}"))?;
    }
    std::fs::write(gi.join("mods/order"), order.join("\n")).map_err(|e| e.to_string())?;
    std::fs::write(gi.join("init"), INIT).map_err(|e| e.to_string())?;
    std::fs::write(gi.join("rounds"), rounds.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(gi.join("images"), link.join(" ")).map_err(|e| e.to_string())?;
    let mut images = String::new();
    for z in SIZES {
        if !link.iter().any(|l| l[1..] == *z.label) {
            continue;
        }
        images.push_str(&format!(
            "rm -rf src && mkdir -p src/usr/bin src/usr/share/sik-bench && printf '#!/bin/sh\\necho hello\\n' > src/usr/bin/sik-bench-hello && chmod 755 src/usr/bin/sik-bench-hello && head -c {}M /dev/urandom > src/usr/share/sik-bench/data && ",
            z.mib
        ));
        for (v, extra) in [("v", ""), ("w", " --no-verity")] {
            if link.contains(&format!("{v}{}", z.label).as_str()) {
                images.push_str(&format!(
                    "{sikq} create extension src -q -o disk/{v}{l}.ExtensionImage --sign key{extra} && ",
                    l = z.label
                ));
            }
        }
    }
    sh(&format!(
        "cd '{t}' && mkdir -p disk gi/bin gi/proc gi/sys gi/dev gi/tmp gi/root && cp /bin/busybox gi/bin/busybox && cp {sikq} gi/sik && chmod 755 gi/init && {sikq} key generate -o key --comment bench@verity >/dev/null && cp key.pub gi/k.pub && {images} rm -rf src && mkfs.ext4 -q -F -d disk disk.img $(( $(du -sm disk | cut -f1) * 11 / 10 + 128 ))M && rm -rf disk && (cd gi && find . | cpio -o -H newc 2>/dev/null | gzip -1 > ../guest.cpio.gz)"
    ))?;
    eprintln!(
        "bench verity: booting the guest ({rounds} round(s), disk throttled to {USB2_BPS} B/s)"
    );
    let timeout = Duration::from_secs(1800);
    let out = Command::new("timeout")
        .arg(timeout.as_secs().to_string())
        .args([
            "qemu-system-x86_64",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(tmp.join("vmlinuz"))
        .arg("-initrd")
        .arg(tmp.join("guest.cpio.gz"))
        .args(["-append", "console=ttyS0 rdinit=/init panic=-1 quiet"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on,throttling.bps-total={USB2_BPS}",
            s(&tmp.join("disk.img"))
        ))
        .output()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !text.contains("BENCH: done") {
        return Err(format!(
            "bench verity: the guest did not finish; its console:\n{}",
            text.lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(text)
}

/// `wanted` modules (paths as in `modules.dep`) each after its dependencies
/// (a dependency list names the deepest last), every module once.
fn load_order(dep: &str, wanted: &[&str]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for w in wanted {
        let Some(line) = dep.lines().find(|l| l.starts_with(&format!("{w}:"))) else {
            continue;
        };
        let (name, deps) = line.split_once(':').unwrap_or((line, ""));
        for m in deps.split_whitespace().rev().chain([name]) {
            if !order.iter().any(|o| o == m) {
                order.push(m.to_string());
            }
        }
    }
    order
}
