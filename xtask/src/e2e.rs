//! `cargo xtask e2e`: the end-to-end proof. Builds a boot medium with
//! `sik boot install --image`, puts two live ISOs on it that boot through
//! real initramfs frameworks built from Debian's packages (initramfs-tools +
//! live-boot, dracut + dmsquash-live), a signed and an unsigned
//! ExtensionImage, the signer's key, an overlay, `boot/customize/init` and a
//! `home.img`, runs `sik boot generate`, then boots every menu entry in QEMU
//! (TCG) with SeaBIOS and with OVMF and checks what the guest printed on its
//! serial console.
//!
//! Usage: `cargo xtask e2e [--firmware bios|uefi] [--family debian|fedora]
//! [--timeout SECS]` (as root: debootstrap, chroot and loop mounts build
//! the ISOs). Built ISOs and the debootstrap tarball are cached under
//! `target/e2e-cache/` by a hash of their inputs (`SIK_E2E_ISOS=DIR` uses
//! the ISOs in DIR instead, `SIK_E2E_SIK=FILE` a static sik built before); logs and the medium are written to `target/e2e/`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Result, root, run};

const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages whose versions go into the ISO cache key.
const PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "systemd",
    "live-boot",
    "live-boot-initramfs-tools",
    "initramfs-tools",
    "dracut",
    "dracut-live",
    "dracut-core",
];
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Serial console lines after which a guest will not reach its report.
const FATAL: &[&str] = &[
    "reboot: System halted",
    "Kernel panic - not syncing",
    "dracut: Refusing to continue",
    "(initramfs) ",
];

/// One live ISO family under test.
struct Family {
    /// Short name (table row).
    name: &'static str,
    /// File name on the medium.
    iso: &'static str,
    /// What the generated kernel arguments must hold.
    arg: &'static str,
    /// Where that initramfs mounts the partition holding the ISO.
    medium_mount: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "debian live-boot (initramfs-tools)",
        iso: "debian-live.iso",
        arg: "findiso=/boot/iso/debian-live.iso",
        medium_mount: "/run/live/findiso",
    },
    Family {
        name: "fedora dmsquash-live (dracut)",
        iso: "fedora-live.iso",
        arg: "iso-scan/filename=/boot/iso/fedora-live.iso",
        medium_mount: "/run/initramfs/isoscan",
    },
];

/// Result of one boot.
struct Outcome {
    family: &'static str,
    firmware: &'static str,
    passed: bool,
    seconds: f64,
    failures: Vec<String>,
    log: PathBuf,
}

pub fn main(args: &[String]) -> Result {
    let mut firmwares = vec!["bios", "uefi"];
    let mut families: Vec<&Family> = FAMILIES.iter().collect();
    let mut timeout = 900u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--firmware" => {
                let v = it.next().ok_or("--firmware needs bios or uefi")?;
                firmwares = match v.as_str() {
                    "bios" => vec!["bios"],
                    "uefi" => vec!["uefi"],
                    _ => return Err(format!("--firmware: {v}: want bios or uefi")),
                };
            }
            "--family" => {
                let v = it.next().ok_or("--family needs debian or fedora")?;
                families.retain(|f| f.iso.starts_with(v.as_str()));
                if families.is_empty() {
                    return Err(format!("--family: {v}: want debian or fedora"));
                }
            }
            "--timeout" => {
                let v = it.next().ok_or("--timeout needs seconds")?;
                timeout = v
                    .parse()
                    .map_err(|_| format!("--timeout: {v}: not a number"))?;
            }
            _ => {
                return Err(format!(
                    "usage: cargo xtask e2e [--firmware bios|uefi] [--family debian|fedora] [--timeout SECS]; unknown argument {a}"
                ));
            }
        }
    }
    let started = Instant::now();
    preflight()?;
    let sik = match std::env::var_os("SIK_E2E_SIK") {
        // A static sik built earlier (the tree may be mid-edit).
        Some(p) => PathBuf::from(p),
        None => crate::dist()?,
    };
    let t_dist = started.elapsed().as_secs_f64();
    let isos = cached_isos()?;
    let t_isos = started.elapsed().as_secs_f64() - t_dist;
    let out = root().join("target/e2e");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let disk = build_medium(&sik, &isos, &out)?;
    let t_medium = started.elapsed().as_secs_f64() - t_dist - t_isos;
    let cfg = capture(
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@1M", disk.display()))
            .arg("::/boot/grub/grub.cfg"),
    )?;
    std::fs::write(out.join("grub.cfg"), &cfg).map_err(|e| e.to_string())?;
    let titles: Vec<String> = cfg
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("menuentry "))
        // Titles are in GRUB single quotes (sik_boot::quote::grub_quote).
        .map(|l| l.split(['\'', '"']).nth(1).unwrap_or(l).to_string())
        .collect();
    eprintln!("e2e: menu entries: {titles:?}");

    let mut outcomes = Vec::new();
    let mut home_ids: Vec<String> = Vec::new();
    for fw in &firmwares {
        for fam in &families {
            let entry = titles
                .iter()
                .position(|t| t.contains(fam.iso.trim_end_matches(".iso")))
                .ok_or_else(|| format!("no menu entry for {} in grub.cfg", fam.iso))?;
            let log = out.join(format!("{}-{fw}.log", fam.iso.trim_end_matches(".iso")));
            eprintln!(
                "e2e: booting entry {entry} ({}) with {fw}, log {}",
                titles[entry],
                log.display()
            );
            let (text, seconds, status) = boot(
                &disk,
                fw,
                entry,
                &titles,
                &log,
                Duration::from_secs(timeout),
            )?;
            let mut failures = check(fam, &text, &home_ids);
            if let Some(s) = status {
                failures.insert(0, s);
            }
            if let Some(id) = find_value(&text, "home-written ")
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
            {
                home_ids.push(id);
            }
            let passed = failures.is_empty();
            eprintln!(
                "e2e: {} / {fw}: {} in {seconds:.0} s",
                fam.name,
                if passed { "passed" } else { "FAILED" }
            );
            for f in &failures {
                eprintln!("e2e:   - {f}");
            }
            outcomes.push(Outcome {
                family: fam.name,
                firmware: fw,
                passed,
                seconds,
                failures,
                log,
            });
        }
    }
    let total = started.elapsed().as_secs_f64();
    let mut table = String::new();
    table.push_str(
        "| family | firmware | result | boot time (QEMU start to report) |\n|---|---|---|---|\n",
    );
    for o in &outcomes {
        table.push_str(&format!(
            "| {} | {} | {} | {:.0} s |\n",
            o.family,
            if o.firmware == "bios" {
                "SeaBIOS"
            } else {
                "OVMF (UEFI)"
            },
            if o.passed { "passed" } else { "failed" },
            o.seconds
        ));
    }
    let summary = format!(
        "{table}\nTotal {total:.0} s: static sik {t_dist:.0} s, ISOs {t_isos:.0} s ({}), medium {t_medium:.0} s, boots {:.0} s.\n",
        if isos.1 { "from the cache" } else { "built" },
        outcomes.iter().map(|o| o.seconds).sum::<f64>()
    );
    let mut details = String::new();
    for o in &outcomes {
        for f in &o.failures {
            details.push_str(&format!(
                "- {} / {}: {f} (log {})\n",
                o.family,
                o.firmware,
                o.log.display()
            ));
        }
    }
    std::fs::write(out.join("results.md"), format!("{summary}\n{details}"))
        .map_err(|e| e.to_string())?;
    println!("{summary}");
    if !details.is_empty() {
        println!("{details}");
    }
    if outcomes.iter().all(|o| o.passed) {
        Ok(())
    } else {
        Err("some boots failed (see target/e2e/*.log)".into())
    }
}

fn preflight() -> Result {
    let uid = capture(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        return Err(
            "cargo xtask e2e builds the live ISOs with debootstrap and chroot: run it as root"
                .into(),
        );
    }
    for tool in [
        "qemu-system-x86_64",
        "debootstrap",
        "mksquashfs",
        "xorriso",
        "mcopy",
        "mtype",
        "mmd",
        "mkfs.ext4",
        "sha256sum",
        "apt-cache",
    ] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!(
                "{tool} not found (apt-get install qemu-system-x86 ovmf debootstrap squashfs-tools xorriso mtools e2fsprogs)"
            ));
        }
    }
    if !Path::new(OVMF).exists() {
        return Err(format!("{OVMF} not found (apt-get install ovmf)"));
    }
    Ok(())
}

/// Run a command, return its stdout.
fn capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed with {}",
            cmd.get_program(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256(data: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sha256sum: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("sha256sum: no stdin")?
        .write_all(data)
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .chars()
        .take(16)
        .collect())
}

/// The ISOs from the cache, built when missing. Returns the directory holding
/// `debian-live.iso` and `fedora-live.iso`, and whether it came from the cache.
fn cached_isos() -> Result<(PathBuf, bool)> {
    if let Some(dir) = std::env::var_os("SIK_E2E_ISOS") {
        // ISOs built elsewhere (debugging a boot without rebuilding them).
        eprintln!("e2e: ISOs from SIK_E2E_ISOS={}", Path::new(&dir).display());
        return Ok((PathBuf::from(dir), true));
    }
    let cache = root().join("target/e2e-cache");
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
    let debootstrap_version =
        capture(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "debootstrap"]))
            .unwrap_or_default();
    let boot_key = sha256(
        format!("debootstrap --variant=minbase bookworm {MIRROR} {debootstrap_version}\n")
            .as_bytes(),
    )?;
    let tarball = cache.join(format!("debootstrap-{boot_key}.tar"));

    // The ISO key: the recipe files, the debootstrap key and the candidate
    // versions of the packages that make the kernel and the initramfs.
    let recipes = root().join("tests/e2e");
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["build-isos.sh", "debian", "fedora", "root"] {
        let p = recipes.join(sub);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p);
        }
    }
    let mut input = Vec::new();
    for f in &files {
        input.extend_from_slice(
            f.strip_prefix(&recipes)
                .unwrap_or(f)
                .to_string_lossy()
                .as_bytes(),
        );
        input.push(0);
        input.extend(std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    input.extend_from_slice(boot_key.as_bytes());
    let policy =
        capture(Command::new("apt-cache").arg("policy").args(PACKAGES)).unwrap_or_default();
    for l in policy.lines() {
        if !l.starts_with(' ') || l.trim_start().starts_with("Candidate:") {
            input.extend_from_slice(l.trim().as_bytes());
            input.push(b'\n');
        }
    }
    let key = sha256(&input)?;
    let dir = cache.join(format!("isos-{key}"));
    if dir.join("debian-live.iso").exists() && dir.join("fedora-live.iso").exists() {
        eprintln!("e2e: ISOs from the cache: {}", dir.display());
        return Ok((dir, true));
    }
    let tmp = cache.join(format!("isos-{key}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let work = cache.join("work");
    run(Command::new("sh")
        .arg(recipes.join("build-isos.sh"))
        .arg(&work)
        .arg(&tmp)
        .arg(&tarball))?;
    std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    // Keep only this key's ISOs (they are large).
    for e in std::fs::read_dir(&cache)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("isos-") && e.path() != dir {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok((dir, false))
}

/// Assemble the medium: a 2 GiB sparse disk image with everything on it.
fn build_medium(sik: &Path, isos: &(PathBuf, bool), out: &Path) -> Result<PathBuf> {
    let recipes = root().join("tests/e2e");
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let disk = out.join("disk.img");
    let img_at = format!("{}@@1M", disk.display());
    run(Command::new(sik)
        .args(["boot", "install", "--image"])
        .arg(&disk)
        .args(["--size", "2G", "--sik-binary"])
        .arg(sik))?;
    for iso in ["debian-live.iso", "fedora-live.iso"] {
        run(Command::new(sik)
            .args(["boot", "add"])
            .arg(isos.0.join(iso))
            .arg(&disk))?;
    }
    // The signer's key and the two extensions.
    let key = work.join("e2e-key");
    run(Command::new(sik)
        .args(["key", "generate", "-o"])
        .arg(&key)
        .args(["--comment", "sik-e2e"]))?;
    let signed = work.join("e2e-signed.ExtensionImage");
    let unsigned = work.join("e2e-unsigned.ExtensionImage");
    run(Command::new(sik)
        .args(["create", "extension", "-q"])
        .arg(recipes.join("extension"))
        .arg("-o")
        .arg(&signed)
        .args(["--os-id", "_any", "--version", "1.0"]))?;
    run(Command::new(sik)
        .arg("sign")
        .arg(&signed)
        .arg("--key")
        .arg(&key))?;
    run(Command::new(sik)
        .args(["create", "extension", "-q"])
        .arg(recipes.join("unsigned"))
        .arg("-o")
        .arg(&unsigned)
        .args(["--os-id", "_any", "--version", "1.0"]))?;
    for img in [&signed, &unsigned] {
        run(Command::new(sik).args(["boot", "add"]).arg(img).arg(&disk))?;
    }
    let _ = Command::new("mmd")
        .arg("-D")
        .arg("s")
        .arg("-i")
        .arg(&img_at)
        .arg("::/boot/keys")
        .status();
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(&img_at)
        .arg(work.join("e2e-key.pub"))
        .arg("::/boot/keys/e2e-key.pub"))?;
    // Overlay and customize/init.
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-s")
        .arg("-i")
        .arg(&img_at)
        .arg(recipes.join("medium/boot/customize"))
        .arg("::/boot/"))?;
    // The persistent home: an ext4 image with the e2e user's directory.
    let home = work.join("home");
    std::fs::create_dir_all(home.join("e2e")).map_err(|e| e.to_string())?;
    run(Command::new("chown").arg("1000:1000").arg(home.join("e2e")))?;
    let home_img = work.join("home.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "SIK-E2E-HOME", "-d"])
        .arg(&home)
        .arg(&home_img)
        .arg("64M"))?;
    run(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(&img_at)
        .arg(&home_img)
        .arg("::/home.img"))?;
    run(Command::new(sik)
        .args(["boot", "generate"])
        .arg(&disk)
        .arg("--sik-binary")
        .arg(sik)
        .args(["--timeout", "30"]))?;
    let _ = Command::new("mdir")
        .arg("-/")
        .arg("-i")
        .arg(&img_at)
        .arg("::/")
        .status();
    Ok(disk)
}

/// Boot the disk in QEMU, pick menu entry `entry` through the serial
/// console, wait for the guest's report and its power-off. Returns the
/// serial log, the seconds from start to the report's end, and a failure
/// when QEMU had to be killed.
fn boot(
    disk: &Path,
    firmware: &str,
    entry: usize,
    titles: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(String, f64, Option<String>)> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-m",
        "1024",
        "-display",
        "none",
        "-vga",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ]);
    cmd.arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()));
    if firmware == "uefi" {
        cmd.arg("-bios").arg(OVMF);
    }
    if Path::new("/dev/kvm").exists()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
        && std::env::var_os("SIK_E2E_KVM").is_some()
    {
        cmd.args(["-accel", "kvm"]);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().ok_or("qemu: no stdout")?;
    let reader = {
        let buf = Arc::clone(&buf);
        let mut file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&chunk[..n]);
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        })
    };
    let mut stdin = child.stdin.take();
    // Menu navigation: keys can get lost (GRUB may not read the serial line
    // yet, OVMF draws the menu twice), so each key is sent again until the
    // highlight (`*TITLE` in GRUB's redraw) shows it arrived.
    let mut menu_at: Option<usize> = None;
    let mut last_key = Instant::now();
    let mut enter_at: Option<(Instant, usize)> = None;
    let mut booting = false;
    let mut reported: Option<f64> = None;
    let mut failure = None;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let text = String::from_utf8_lossy(&buf.lock().map(|b| b.clone()).unwrap_or_default())
            .into_owned();
        if menu_at.is_none() && text.contains("highlighted entry will be") {
            menu_at = Some(text.len());
            last_key = Instant::now() - Duration::from_secs(10);
        }
        if let (Some(at), false) = (menu_at, booting)
            && let Some(w) = stdin.as_mut()
        {
            let tail = text.get(at..).unwrap_or("");
            if let Some((sent, len)) = enter_at {
                // Enter was sent: GRUB clears the screen and loads the kernel.
                if text.get(len..).unwrap_or("").contains("Loading ") {
                    booting = true;
                } else if sent.elapsed() > Duration::from_secs(5) {
                    let _ = w.write_all(b"\r");
                    let _ = w.flush();
                    enter_at = Some((Instant::now(), text.len()));
                }
            } else if last_key.elapsed() > Duration::from_secs(2) {
                let current = highlighted(tail, titles).unwrap_or(0);
                let key: &[u8] = match current.cmp(&entry) {
                    std::cmp::Ordering::Equal => b"\r",
                    std::cmp::Ordering::Less => b"\x1b[B",
                    std::cmp::Ordering::Greater => b"\x1b[A",
                };
                let _ = w.write_all(key);
                let _ = w.flush();
                last_key = Instant::now();
                if key == b"\r" {
                    enter_at = Some((Instant::now(), text.len()));
                }
            }
        }
        if reported.is_none() && text.contains("SIK-E2E: end") {
            reported = Some(start.elapsed().as_secs_f64());
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        // The guest gave up (it halts instead of powering off): stop now.
        if let Some(m) = FATAL.iter().find(|m| text.contains(*m)) {
            std::thread::sleep(Duration::from_secs(2));
            failure = Some(format!("the guest stopped: `{m}` (QEMU killed)"));
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        let waited = start.elapsed();
        let late = match reported {
            Some(t) => waited.as_secs_f64() > t + 120.0,
            None => waited > timeout,
        };
        if late {
            failure = Some(match reported {
                Some(_) => "the guest reported but did not power off within 120 s (QEMU killed)"
                    .to_string(),
                None => format!(
                    "no report from the guest within {} s (QEMU killed)",
                    timeout.as_secs()
                ),
            });
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
    }
    drop(stdin);
    let _ = reader.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !err.trim().is_empty() {
        eprintln!("qemu stderr: {}", err.trim());
    }
    let text =
        String::from_utf8_lossy(&buf.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    let seconds = reported.unwrap_or_else(|| start.elapsed().as_secs_f64());
    Ok((text, seconds, failure))
}

/// The index of the menu entry GRUB drew last as highlighted (`*TITLE`).
fn highlighted(text: &str, titles: &[String]) -> Option<usize> {
    titles
        .iter()
        .enumerate()
        .filter_map(|(i, t)| text.rfind(&format!("*{t}")).map(|pos| (pos, i)))
        .max()
        .map(|(_, i)| i)
}

/// The value after `key` on the guest's first `SIK-E2E: key...` line.
fn find_value(text: &str, key: &str) -> Option<String> {
    guest_lines(text).find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The guest's report lines, without the `SIK-E2E: ` prefix.
fn guest_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|l| {
        l.find("SIK-E2E: ")
            .map(|i| l[i + 9..].trim_end_matches('\r'))
    })
}

/// Every check of one boot; returns what failed.
fn check(fam: &Family, text: &str, earlier_homes: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    let lines: Vec<&str> = guest_lines(text).collect();
    let has = |p: &str| lines.iter().any(|l| l.starts_with(p));
    let has_with = |p: &str, s: &str| lines.iter().any(|l| l.starts_with(p) && l.contains(s));
    if !text.contains(&format!("from /boot/iso/{}", fam.iso)) {
        bad.push(format!(
            "GRUB did not say it loads the kernel from /boot/iso/{}",
            fam.iso
        ));
    }
    if !has("end") {
        bad.push("the guest's report did not complete (no `SIK-E2E: end`)".into());
        return bad;
    }
    if !has_with("cmdline ", fam.arg) {
        bad.push(format!("kernel command line lacks {}", fam.arg));
    }
    if !has_with("mount ", fam.medium_mount) {
        bad.push(format!(
            "the initramfs did not mount the medium at {}",
            fam.medium_mount
        ));
    }
    if !has_with("loop ", fam.iso) {
        bad.push(format!("no loop device backed by {}", fam.iso));
    }
    if !has_with(
        "symlink /usr/bin/sik-e2e-hello -> ",
        "/sik/extensions/e2e-signed/mnt/",
    ) || !has("exists /usr/bin/sik-e2e-hello")
    {
        bad.push("the signed extension's command is not a working symlink into its mount".into());
    }
    if !has_with(
        "symlink /usr/lib/firmware/sik-e2e/e2e-fw.bin -> ",
        "/sik/extensions/e2e-signed/mnt/",
    ) || !has("firmware sik-e2e-firmware-blob-v1")
    {
        bad.push(
            "the signed extension's firmware file is not a working symlink into its mount".into(),
        );
    }
    if !has("command-ok hello from the signed extension") {
        bad.push("the signed extension's command did not run".into());
    }
    if !has_with("extension-run ran for ", "e2e-signed") {
        bad.push("the signed extension's ExtensionRun left no mark".into());
    }
    if !has("unsigned-absent") {
        bad.push("the unsigned extension was linked".into());
    }
    let refusal = text.lines().any(|l| {
        l.contains("e2e-unsigned")
            && (l.contains("refus") || l.contains("unsigned") && l.contains("sign"))
    });
    if !refusal {
        bad.push("no refusal of e2e-unsigned.ExtensionImage with its reason in the log".into());
    }
    if !has("overlay overlay file from boot/customize/overlay") {
        bad.push("the overlay file is missing".into());
    }
    if !has("customized by boot/customize/init") {
        bad.push("boot/customize/init did not run".into());
    }
    if !has("home-written ") {
        bad.push("could not write to $HOME".into());
    }
    if !has_with("home ", "loop") {
        bad.push("/home is not the home.img loop mount".into());
    }
    if let Some(first) = earlier_homes.first()
        && !has_with("home-before ", first)
    {
        bad.push(format!(
            "the file written to $HOME in the first boot ({first}) is not there"
        ));
    }
    bad
}
