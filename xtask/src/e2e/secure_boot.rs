//! Scenario `secure-boot`: a medium made with `sik boot install
//! --secure-boot` booted under OVMF with Secure Boot enforcing (q35 + SMM,
//! `OVMF_CODE_4M.secboot.fd`, a copy of `OVMF_VARS_4M.ms.fd` with
//! Microsoft's keys). The medium holds the main medium's content (both ISOs,
//! the signed and unsigned extensions, key, overlay, home) with the Secure
//! Boot chain on its ESP. Every boot must pass every check of the main
//! medium for its family (the home written by the earlier boots included),
//! and the guest's kernel log must say Secure Boot is enabled.
//!
//! 1. `distro`: shim → Debian's signed GRUB → the Debian-signed kernel,
//!    nothing enrolled: the Debian live ISO and the Fedora-layout ISO.
//! 2. `sik boot install --update --secure-boot=own-key` replaces the chain
//!    in place (shim → a GRUB sik built and signed with its MOK); the MOK's
//!    certificate is added to the firmware's `db` with `virt-fw-vars`
//!    (shim trusts `db`; this stands in for the MokManager enrolment). The
//!    Debian ISO boots, with the home of the distro boots still there.
//! 3. `debian-resigned.iso`, the Debian ISO whose kernel's signature was
//!    replaced (sbattach, sbsign) by a throwaway key's, is booted twice:
//!    refused while only the MOK is in `db` (GRUB shows shim's reason on
//!    the console), and passing every check once the throwaway key's
//!    certificate is in `db` too.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::check::{self, FAMILIES};
use super::qemu::{self, Firmware};
use super::{Ctx, Outcome, menu_titles};
use crate::Result;

/// Secure Boot capable OVMF code (needs SMM).
const CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Variables with Microsoft's keys enrolled and Secure Boot enforcing.
const VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
/// The owner GUID of the `db` entry the test adds (any GUID will do).
const OWNER: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";
/// What the guest kernel prints when the firmware booted it with Secure
/// Boot on.
const ENABLED: &str = "Secure boot enabled";

/// Build the medium with the distro chain and boot both ISOs; switch it to
/// the own-key chain with `install --update` (in place: the later boots
/// must still see the first boots' `$HOME`) and boot the Debian ISO, the
/// refused re-signed copy and that copy once its signer is enrolled.
pub(super) fn run(ctx: &Ctx) -> Result<Vec<Outcome>> {
    for f in [CODE, VARS_MS] {
        if !Path::new(f).is_file() {
            return Err(format!("{f} not found (apt-get install ovmf)"));
        }
    }
    let mut outcomes = Vec::new();
    let mut homes = Vec::new();
    // distro: nothing to enroll.
    let out = ctx.out.join("secure-boot");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let disk = super::medium::build_medium(&ctx.sik, &ctx.isos, &out, &["--secure-boot"])?;
    for fam in FAMILIES {
        outcomes.push(boot_iso(
            ctx,
            &disk,
            &out,
            (fam, fam.iso),
            "distro GRUB",
            PathBuf::from(VARS_MS),
            &mut homes,
        )?);
    }

    // own-key: the same medium, its chain replaced in place; the MOK's
    // certificate in db stands in for MokManager.
    let mok = out.join("mok");
    let mut update = Command::new(&ctx.sik);
    update
        .args([
            "boot",
            "install",
            "--json",
            "--secure-boot=own-key",
            "--mok-dir",
        ])
        .arg(&mok)
        .arg("--sik-binary")
        .arg(&ctx.sik)
        .arg("--update")
        .arg(&disk);
    eprintln!(
        "$ sik boot install --json --secure-boot=own-key … --update {}",
        disk.display()
    );
    let o = update
        .output()
        .map_err(|e| format!("sik boot install --update: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "sik boot install --update: {e}: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    if !o.status.success() || report["action"] != "update" || report["secure_boot"] != "own-key" {
        return Err(format!(
            "sik boot install --update --secure-boot=own-key said: {report}"
        ));
    }
    let resigned = resigned_iso(ctx, &out)?;
    crate::run(
        Command::new(&ctx.sik)
            .args(["boot", "add"])
            .arg(&resigned.0)
            .arg(&disk),
    )?;
    crate::run(
        Command::new(&ctx.sik)
            .args(["boot", "generate"])
            .arg(&disk)
            .arg("--sik-binary")
            .arg(&ctx.sik)
            .args(["--timeout", "30"]),
    )?;
    let vars_mok = out.join("vars-mok.fd");
    crate::run(
        Command::new("virt-fw-vars")
            .args(["--input", VARS_MS, "--output"])
            .arg(&vars_mok)
            .args(["--add-db", OWNER])
            .arg(mok.join("MOK.der")),
    )?;
    let vars_both = out.join("vars-mok-throwaway.fd");
    crate::run(
        Command::new("virt-fw-vars")
            .arg("--input")
            .arg(&vars_mok)
            .arg("--output")
            .arg(&vars_both)
            .args(["--add-db", OWNER])
            .arg(&resigned.1),
    )?;
    let debian = &FAMILIES[0];
    outcomes.push(boot_iso(
        ctx,
        &disk,
        &out,
        (debian, "debian-live.iso"),
        "own-key GRUB after install --update (MOK in db)",
        vars_mok.clone(),
        &mut homes,
    )?);
    outcomes.push(refused(ctx, &disk, &out, vars_mok)?);
    outcomes.push(boot_iso(
        ctx,
        &disk,
        &out,
        (debian, "debian-resigned.iso"),
        "own-key GRUB, throwaway signer enrolled in db",
        vars_both,
        &mut homes,
    )?);
    Ok(outcomes)
}

/// The Debian live ISO with its kernel signed by a throwaway key instead of
/// Debian's (`debian-resigned.iso` in `out`), and that key's DER certificate.
fn resigned_iso(ctx: &Ctx, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let work = out.join("resign");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let key = work.join("key.pem");
    let crt = work.join("cert.pem");
    let der = work.join("cert.der");
    crate::run(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args([
                "-days",
                "30",
                "-subj",
                "/CN=sik e2e throwaway kernel signer/",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt),
    )?;
    crate::run(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&crt)
            .arg("-out")
            .arg(&der),
    )?;
    let iso = ctx.isos.0.join("debian-live.iso");
    let kernel = work.join("vmlinuz");
    let _ = std::fs::remove_file(&kernel);
    crate::run(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&iso)
            .args(["-extract", "/live/vmlinuz"])
            .arg(&kernel),
    )?;
    crate::run(Command::new("sbattach").arg("--remove").arg(&kernel))?;
    let signed = work.join("vmlinuz.signed");
    crate::run(
        Command::new("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&crt)
            .arg("--output")
            .arg(&signed)
            .arg(&kernel),
    )?;
    let out_iso = out.join("debian-resigned.iso");
    let _ = std::fs::remove_file(&out_iso);
    crate::run(
        Command::new("xorriso")
            .arg("-indev")
            .arg(&iso)
            .arg("-outdev")
            .arg(&out_iso)
            .args(["-boot_image", "any", "keep", "-update"])
            .arg(&signed)
            .arg("/live/vmlinuz"),
    )?;
    Ok((out_iso, der))
}

/// Boot `debian-resigned.iso` while its signer is not enrolled: GRUB must
/// refuse the kernel with shim's reason on the console.
fn refused(ctx: &Ctx, disk: &Path, out: &Path, vars: PathBuf) -> Result<Outcome> {
    let titles = menu_titles(disk, out)?;
    let entry = titles
        .iter()
        .position(|t| t.starts_with("debian-resigned ("))
        .ok_or("no menu entry for debian-resigned.iso")?;
    let fw = Firmware::SecureBoot {
        code: PathBuf::from(CODE),
        vars,
    };
    let log = out.join("debian-resigned-refused.log");
    eprintln!(
        "e2e: secure-boot / refusal: booting entry {entry}, log {}",
        log.display()
    );
    let (text, seconds, _status) = qemu::boot(disk, &fw, entry, &titles, &log, ctx.timeout)?;
    let mut failures = Vec::new();
    if !text.contains("bad shim signature") {
        failures.push(
            "GRUB did not show `bad shim signature` for the throwaway-signed kernel".to_string(),
        );
    }
    if text.contains("Linux version") || text.contains("SIK-E2E: ") {
        failures.push("the kernel signed by an unenrolled key started".into());
    }
    let passed = failures.is_empty();
    eprintln!(
        "e2e: secure-boot / refusal: {} in {seconds:.0} s",
        if passed { "passed" } else { "FAILED" }
    );
    Ok(Outcome {
        scenario: "secure-boot",
        what: "debian-resigned.iso (throwaway signer, not enrolled): refused".into(),
        firmware: fw.title(),
        passed,
        seconds,
        failures,
        log,
    })
}

/// Boot the entry of `iso` (a live ISO of family `base`, or a copy of it
/// under another name) with Secure Boot enforcing and check it as the main
/// medium's boot of that family (the home written by each earlier boot of
/// this medium, in `homes`, must still be there), plus the kernel's word
/// that Secure Boot is on.
fn boot_iso(
    ctx: &Ctx,
    disk: &Path,
    out: &Path,
    (base, iso): (&check::Family, &'static str),
    what: &str,
    vars: PathBuf,
    homes: &mut Vec<String>,
) -> Result<Outcome> {
    let arg: &'static str = Box::leak(base.arg.replace(base.iso, iso).into_boxed_str());
    let fam = check::Family {
        name: base.name,
        iso,
        arg,
        medium_mount: base.medium_mount,
    };
    let stem = iso.trim_end_matches(".iso");
    let titles = menu_titles(disk, out)?;
    let entry = titles
        .iter()
        .position(|t| t.starts_with(&format!("{stem} (")))
        .ok_or_else(|| format!("no menu entry for {iso}"))?;
    let fw = Firmware::SecureBoot {
        code: PathBuf::from(CODE),
        vars,
    };
    let log = out.join(format!("{stem}-secureboot.log"));
    eprintln!(
        "e2e: secure-boot / {what}: booting entry {entry}, log {}",
        log.display()
    );
    let (text, seconds, status) = qemu::boot(disk, &fw, entry, &titles, &log, ctx.timeout)?;
    let mut failures = check::check(&fam, &text, homes);
    if let Some(id) = check::find_value(&text, "home-written ")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
    {
        homes.push(id);
    }
    if let Some(s) = status {
        failures.insert(0, s);
    }
    if !text.contains(ENABLED) {
        failures.push(format!("the guest kernel did not log `{ENABLED}`"));
    }
    let passed = failures.is_empty();
    eprintln!(
        "e2e: secure-boot / {what}: {} in {seconds:.0} s",
        if passed { "passed" } else { "FAILED" }
    );
    for f in &failures {
        eprintln!("e2e:   - {f}");
    }
    Ok(Outcome {
        scenario: "secure-boot",
        what: format!("{} ({iso}) via {what}", fam.name),
        firmware: fw.title(),
        passed,
        seconds,
        failures,
        log,
    })
}
