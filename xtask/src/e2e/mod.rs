//! `cargo xtask e2e`: the end-to-end proof. Builds a boot medium with
//! `sik boot install --image`, puts two live ISOs on it that boot through
//! real initramfs frameworks built from Debian's packages (initramfs-tools +
//! live-boot, dracut + dmsquash-live), a signed and an unsigned
//! ExtensionImage, the signer's key, an overlay, `boot/customize/init` and a
//! `home.img`, runs `sik boot generate`, then boots every menu entry in QEMU
//! (TCG) with SeaBIOS and with OVMF and checks what the guest printed on its
//! serial console. Further scenarios (`SCENARIOS`, one module each) build
//! their own media from the same cached ISOs and boot them after the main
//! medium; `--scenario NAME` (repeatable; `main` is the medium above) runs
//! only those named.
//!
//! Usage: `cargo xtask e2e [--firmware bios|uefi] [--family debian|fedora] [--scenario NAME]…
//! [--timeout SECS]` (as root: debootstrap, chroot and loop mounts build
//! the ISOs). Built ISOs and the debootstrap tarball are cached under
//! `target/e2e-cache/` by a hash of their inputs (`SIK_E2E_ISOS=DIR` uses
//! the ISOs in DIR instead, `SIK_E2E_SIK=FILE` a static sik built before); logs and the media are written to
//! `target/e2e/`.

mod any_iso;
mod check;
pub(crate) mod isos;
mod large;
mod medium;
mod qemu;
mod readme;
mod secure_boot;
mod verity;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use check::{FAMILIES, Family};
use qemu::{Firmware, OVMF};

/// Result of one boot.
pub(super) struct Outcome {
    /// Which scenario booted (`main`, or one of [`SCENARIOS`]).
    pub(super) scenario: &'static str,
    /// What was booted (family or entry).
    pub(super) what: String,
    pub(super) firmware: &'static str,
    pub(super) passed: bool,
    pub(super) seconds: f64,
    pub(super) failures: Vec<String>,
    pub(super) log: PathBuf,
}

/// What every scenario shares: the static sik under test, the cached ISOs,
/// the output directory and the per-boot timeout.
pub(super) struct Ctx {
    pub(super) sik: PathBuf,
    /// The directory holding `debian-live.iso` and `fedora-live.iso`, and
    /// whether it came from the cache.
    pub(super) isos: (PathBuf, bool),
    pub(super) out: PathBuf,
    pub(super) timeout: Duration,
}

/// A scenario beyond the main medium: its name (for `--scenario`) and the
/// function that builds what it needs, boots and checks.
type Scenario = (&'static str, fn(&Ctx) -> Result<Vec<Outcome>>);

/// Scenarios run after the main medium's boots, in this order. Each builds
/// its own medium from the shared ISOs (or reuses the main one) and returns
/// one outcome per boot.
const SCENARIOS: &[Scenario] = &[
    ("verity", verity::run),
    ("secure-boot", secure_boot::run),
    ("readme", readme::run),
    ("any-iso", any_iso::run),
    ("large", large::run),
];

/// One family a scenario's boot proves, for COMPATIBILITY.md
/// (`cargo xtask compat`).
pub(crate) struct Proof {
    /// The scenario (`main` or one of [`SCENARIOS`]).
    pub(crate) scenario: &'static str,
    /// The family file name detection reports for the booted ISO.
    pub(crate) family: &'static str,
    /// The ISO booted.
    pub(crate) iso: &'static str,
    /// How its initramfs found the ISO file.
    pub(crate) access: sik_boot::family::IsoAccess,
    /// The firmware(s) it boots with.
    pub(crate) firmware: &'static str,
}

/// What each scenario's boots prove; keep in step with the scenarios.
pub(crate) const PROOFS: &[Proof] = {
    use sik_boot::family::IsoAccess::{Argument, BlockDevice};
    &[
        Proof {
            scenario: "main",
            family: "live-boot",
            iso: "Debian 12 live-boot + initramfs-tools",
            access: Argument,
            firmware: "SeaBIOS, OVMF",
        },
        Proof {
            scenario: "main",
            family: "dracut-fedora",
            iso: "Fedora layout, dracut 059 dmsquash-live",
            access: Argument,
            firmware: "SeaBIOS, OVMF",
        },
        Proof {
            scenario: "secure-boot",
            family: "live-boot",
            iso: "Debian 12 live-boot",
            access: Argument,
            firmware: "OVMF Secure Boot",
        },
        Proof {
            scenario: "readme",
            family: "live-boot",
            iso: "Debian 12 live-boot",
            access: Argument,
            firmware: "SeaBIOS",
        },
        Proof {
            scenario: "large",
            family: "live-boot",
            iso: "Debian 12 live-boot padded to 4.5 GiB, exFAT DATA",
            access: Argument,
            firmware: "SeaBIOS, OVMF",
        },
        Proof {
            scenario: "any-iso",
            family: "dracut-fedora",
            iso: "Fedora layout, only `root=live:CDLABEL=`",
            access: BlockDevice,
            firmware: "SeaBIOS",
        },
        Proof {
            scenario: "any-iso",
            family: "generic",
            iso: "Fedora ISO in an unknown layout, own grub.cfg",
            access: BlockDevice,
            firmware: "SeaBIOS",
        },
    ]
};

/// The names `--scenario` takes besides `main`.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn scenario_names() -> Vec<&'static str> {
    SCENARIOS.iter().map(|s| s.0).collect()
}

pub fn main(args: &[String]) -> Result {
    let mut firmwares = vec![Firmware::Bios, Firmware::Uefi];
    let mut families: Vec<&Family> = FAMILIES.iter().collect();
    let mut scenarios: Option<Vec<String>> = None;
    let mut timeout = 900u64;
    let mut it = args.iter();
    let names: Vec<&str> = std::iter::once("main")
        .chain(SCENARIOS.iter().map(|s| s.0))
        .collect();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--firmware" => {
                let v = it.next().ok_or("--firmware needs bios or uefi")?;
                firmwares = match v.as_str() {
                    "bios" => vec![Firmware::Bios],
                    "uefi" => vec![Firmware::Uefi],
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
            "--scenario" => {
                let v = it.next().ok_or("--scenario needs a name")?;
                if !names.contains(&v.as_str()) {
                    return Err(format!("--scenario: {v}: want one of {names:?}"));
                }
                scenarios.get_or_insert_with(Vec::new).push(v.clone());
            }
            "--timeout" => {
                let v = it.next().ok_or("--timeout needs seconds")?;
                timeout = v
                    .parse()
                    .map_err(|_| format!("--timeout: {v}: not a number"))?;
            }
            _ => {
                return Err(format!(
                    "usage: cargo xtask e2e [--firmware bios|uefi] [--family debian|fedora] [--scenario NAME]… [--timeout SECS] (scenarios: {names:?}); unknown argument {a}"
                ));
            }
        }
    }
    let wanted = |name: &str| {
        scenarios
            .as_ref()
            .is_none_or(|v| v.iter().any(|s| s == name))
    };
    let started = Instant::now();
    preflight()?;
    let sik = match std::env::var_os("SIK_E2E_SIK") {
        // A static sik built earlier (the tree may be mid-edit).
        Some(p) => PathBuf::from(p),
        None => crate::dist()?,
    };
    let t_dist = started.elapsed().as_secs_f64();
    let isos = isos::cached_isos()?;
    let t_isos = started.elapsed().as_secs_f64() - t_dist;
    let out = crate::root().join("target/e2e");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ctx = Ctx {
        sik,
        isos,
        out,
        timeout: Duration::from_secs(timeout),
    };
    let mut outcomes = Vec::new();
    let mut t_medium = 0.0;
    if wanted("main") {
        let t = Instant::now();
        let disk = medium::build_medium(&ctx.sik, &ctx.isos, &ctx.out, &["--data-fs", "fat32"])?;
        t_medium = t.elapsed().as_secs_f64();
        outcomes.extend(main_boots(&ctx, &disk, &firmwares, &families)?);
    }
    for (name, run) in SCENARIOS {
        if wanted(name) {
            eprintln!("e2e: scenario {name}");
            outcomes.extend(run(&ctx)?);
        }
    }
    let total = started.elapsed().as_secs_f64();
    let mut table = String::new();
    table.push_str(
        "| scenario | booted | firmware | result | boot time (QEMU start to report) |\n|---|---|---|---|---|\n",
    );
    for o in &outcomes {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} s |\n",
            o.scenario,
            o.what,
            o.firmware,
            if o.passed { "passed" } else { "failed" },
            o.seconds
        ));
    }
    let summary = format!(
        "{table}\nTotal {total:.0} s: static sik {t_dist:.0} s, ISOs {t_isos:.0} s ({}), main medium {t_medium:.0} s, boots {:.0} s.\n",
        if ctx.isos.1 {
            "from the cache"
        } else {
            "built"
        },
        outcomes.iter().map(|o| o.seconds).sum::<f64>()
    );
    let mut details = String::new();
    for o in &outcomes {
        for f in &o.failures {
            details.push_str(&format!(
                "- {} / {} / {}: {f} (log {})\n",
                o.scenario,
                o.what,
                o.firmware,
                o.log.display()
            ));
        }
    }
    std::fs::write(ctx.out.join("results.md"), format!("{summary}\n{details}"))
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

/// The menu entry titles of a medium's grub.cfg (saved beside the logs).
pub(super) fn menu_titles(disk: &Path, out: &Path) -> Result<Vec<String>> {
    // Read through sik-boot's medium access: DATA may be exFAT or FAT.
    let cfg = sik_boot::medium::Medium::open(disk)
        .and_then(|m| m.read(sik_boot::grub::GRUB_CFG))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no boot/grub/grub.cfg", disk.display()))?;
    let cfg = String::from_utf8_lossy(&cfg).into_owned();
    std::fs::write(out.join("grub.cfg"), &cfg).map_err(|e| e.to_string())?;
    let titles: Vec<String> = cfg
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("menuentry "))
        // Titles are in GRUB single quotes (sik_boot::quote::grub_quote).
        .map(|l| l.split(['\'', '"']).nth(1).unwrap_or(l).to_string())
        .collect();
    eprintln!("e2e: menu entries: {titles:?}");
    Ok(titles)
}

/// The main medium booted once per firmware and family; the home written in
/// the first boot must be seen by the later ones.
fn main_boots(
    ctx: &Ctx,
    disk: &Path,
    firmwares: &[Firmware],
    families: &[&Family],
) -> Result<Vec<Outcome>> {
    let titles = menu_titles(disk, &ctx.out)?;
    let mut outcomes = Vec::new();
    let mut home_ids: Vec<String> = Vec::new();
    for fw in firmwares {
        for fam in families {
            let entry = titles
                .iter()
                .position(|t| t.contains(fam.iso.trim_end_matches(".iso")))
                .ok_or_else(|| format!("no menu entry for {} in grub.cfg", fam.iso))?;
            let log = ctx.out.join(format!(
                "{}-{}.log",
                fam.iso.trim_end_matches(".iso"),
                fw.name()
            ));
            eprintln!(
                "e2e: booting entry {entry} ({}) with {}, log {}",
                titles[entry],
                fw.name(),
                log.display()
            );
            let (text, seconds, status) = qemu::boot(disk, fw, entry, &titles, &log, ctx.timeout)?;
            let mut failures = check::check(fam, &text, &home_ids);
            failures.extend(check::check_per_iso(fam, &text));
            if let Some(s) = status {
                failures.insert(0, s);
            }
            if let Some(id) = check::find_value(&text, "home-written ")
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
            {
                home_ids.push(id);
            }
            let passed = failures.is_empty();
            eprintln!(
                "e2e: {} / {}: {} in {seconds:.0} s",
                fam.name,
                fw.name(),
                if passed { "passed" } else { "FAILED" }
            );
            for f in &failures {
                eprintln!("e2e:   - {f}");
            }
            outcomes.push(Outcome {
                scenario: "main",
                what: fam.name.to_string(),
                firmware: fw.title(),
                passed,
                seconds,
                failures,
                log,
            });
        }
    }
    // One boot of a factory-state entry (the first family, first firmware):
    // nothing of ours may be applied.
    if let (Some(fam), Some(fw)) = (families.first(), firmwares.first()) {
        let stem = fam.iso.trim_end_matches(".iso");
        let entry = titles
            .iter()
            .position(|t| t.contains(stem) && t.ends_with(sik_boot::grub::FACTORY_SUFFIX))
            .ok_or_else(|| format!("no factory-state menu entry for {} in grub.cfg", fam.iso))?;
        let log = ctx.out.join(format!("{stem}-factory-{}.log", fw.name()));
        eprintln!(
            "e2e: booting entry {entry} ({}) with {}, log {}",
            titles[entry],
            fw.name(),
            log.display()
        );
        let (text, seconds, status) = qemu::boot(disk, fw, entry, &titles, &log, ctx.timeout)?;
        let mut failures = check::check_factory(fam, &text);
        if let Some(s) = status {
            failures.insert(0, s);
        }
        let passed = failures.is_empty();
        eprintln!(
            "e2e: {} factory state / {}: {} in {seconds:.0} s",
            fam.name,
            fw.name(),
            if passed { "passed" } else { "FAILED" }
        );
        for f in &failures {
            eprintln!("e2e:   - {f}");
        }
        outcomes.push(Outcome {
            scenario: "main",
            what: format!("{} (factory state)", fam.name),
            firmware: fw.title(),
            passed,
            seconds,
            failures,
            log,
        });
    }
    Ok(outcomes)
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
pub(super) fn capture(cmd: &mut Command) -> Result<String> {
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

pub(super) fn sha256(data: &[u8]) -> Result<String> {
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
