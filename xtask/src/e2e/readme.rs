//! Scenario `readme`: the README's "Using sik" commands as written, with an
//! ordinary `cargo build --release` (a dynamically linked `sik`, no
//! `--sik-binary`): `sik create extension`, `sik key generate`, `sik sign`,
//! `sik boot install --image stick.img --size 8G` (with `--data-fs fat32`:
//! the e2e ISOs' initramfs reads no exFAT), `sik boot add` of an
//! ISO, the extension and the key, `sik boot generate stick.img`. The initrd's `sik` must be the static copy
//! the release build carries: it runs in an empty root (no loader, no
//! libraries), and one BIOS boot of the Debian ISO links the extension.

use std::path::Path;
use std::process::Command;

use super::{Ctx, Outcome, capture, check, menu_titles, qemu};
use crate::Result;

/// Run `sik ARGS` in `dir` (relative paths as a user types them).
fn sik(sik: &Path, dir: &Path, args: &[&str]) -> Result {
    eprintln!("$ sik {}", args.join(" "));
    let status = Command::new(sik)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", sik.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("sik {} failed with {status}", args.join(" ")))
    }
}

pub(super) fn run(ctx: &Ctx) -> Result<Vec<Outcome>> {
    // The ordinary release build, without the static flags of `xtask dist`.
    crate::run(
        crate::cargo()
            .args(["build", "--release", "-p", "sik"])
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    )?;
    let release = crate::root().join("target/release/sik");
    let headers = capture(Command::new("readelf").arg("-lW").arg(&release))?;
    if !headers.contains("program interpreter") {
        return Err(format!(
            "{} is statically linked: this scenario is about the ordinary (dynamic) build",
            release.display()
        ));
    }
    let dir = ctx.out.join("readme");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tree = crate::root().join("tests/e2e/extension");
    std::fs::copy(
        ctx.isos.0.join("debian-live.iso"),
        dir.join("debian-live.iso"),
    )
    .map_err(|e| format!("debian-live.iso: {e}"))?;
    let tree = tree.to_string_lossy().into_owned();
    sik(
        &release,
        &dir,
        &[
            "create",
            "extension",
            &tree,
            "-o",
            "firmware.ExtensionImage",
            "--os-id",
            "_any",
        ],
    )?;
    sik(&release, &dir, &["key", "generate", "-o", "mykey"])?;
    sik(
        &release,
        &dir,
        &["sign", "firmware.ExtensionImage", "--key", "mykey"],
    )?;
    sik(
        &release,
        &dir,
        // DATA FAT32 as on the main medium: the e2e ISOs' initramfs has no
        // exFAT driver (E2E.md); everything else exactly as the README says.
        &[
            "boot",
            "install",
            "--image",
            "stick.img",
            "--size",
            "8G",
            "--data-fs",
            "fat32",
        ],
    )?;
    sik(
        &release,
        &dir,
        &["boot", "add", "debian-live.iso", "stick.img"],
    )?;
    sik(
        &release,
        &dir,
        &["boot", "add", "firmware.ExtensionImage", "stick.img"],
    )?;
    sik(
        &release,
        &dir,
        &[
            "boot",
            "add",
            "mykey.pub",
            "stick.img",
            "--to",
            "boot/keys/",
        ],
    )?;
    sik(&release, &dir, &["boot", "generate", "stick.img"])?;
    let disk = dir.join("stick.img");

    // The initrd's sik runs where nothing else is: an empty root.
    let empty = dir.join("empty-root");
    std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
    // Read through sik-boot's medium access: DATA may be exFAT or FAT.
    let initrd = sik_boot::medium::Medium::open(&disk)
        .and_then(|m| m.read(sik_boot::grub::SIK_INITRD))
        .map_err(|e| e.to_string())?
        .ok_or("stick.img has no boot/sik/initrd.img")?;
    let sik_bytes = sik_boot::generate::initrd_member(&initrd, "sik/sik")
        .ok_or("the initrd holds no sik/sik")?;
    std::fs::create_dir_all(empty.join("sik")).map_err(|e| e.to_string())?;
    std::fs::write(empty.join("sik/sik"), sik_bytes).map_err(|e| e.to_string())?;
    crate::run(Command::new("chmod").arg("755").arg(empty.join("sik/sik")))?;
    let help = capture(
        Command::new("chroot")
            .arg(&empty)
            .args(["/sik/sik", "link", "--help"]),
    )?;
    if !help.contains("--root") {
        return Err(format!(
            "the initrd's sik in an empty root printed no link help: {help}"
        ));
    }

    let titles = menu_titles(&disk, &dir)?;
    let entry = titles
        .iter()
        .position(|t| t.contains("debian-live"))
        .ok_or("no menu entry for debian-live.iso")?;
    let fw = qemu::Firmware::Bios;
    let log = ctx.out.join("readme-debian-bios.log");
    let (text, seconds, status) = qemu::boot(&disk, &fw, entry, &titles, &log, ctx.timeout)?;
    let lines: Vec<&str> = check::guest_lines(&text).collect();
    let mut failures: Vec<String> = status.into_iter().collect();
    if !lines.iter().any(|l| l.starts_with("end")) {
        failures.push("the guest's report did not complete (no `SIK-E2E: end`)".into());
    }
    if !lines
        .iter()
        .any(|l| l.starts_with("exists /usr/bin/sik-e2e-hello"))
    {
        failures.push("firmware.ExtensionImage was not linked (no /usr/bin/sik-e2e-hello)".into());
    }
    if text.contains("error while loading shared libraries") {
        failures.push("the initrd's sik is dynamically linked".into());
    }
    Ok(vec![Outcome {
        scenario: "readme",
        what: "README commands, cargo build --release, debian".into(),
        firmware: fw.title(),
        passed: failures.is_empty(),
        seconds,
        failures,
        log,
    }])
}
