//! Scenario `any-iso`: ISOs whose initramfs is not told where the ISO file
//! is. One medium (the main medium's content, FAT32 DATA) holds
//!
//! 1. `fedora-live.iso` with the medium's own family file
//!    `boot/formats/dracut-fedora.toml` replacing the built-in one: the
//!    same layout, but `iso_access = "block-device"` and without
//!    `iso-scan/filename=`, so the kernel line has only the ISO's
//!    `root=live:CDLABEL=Fedora-SIK-E2E-Live`;
//! 2. `sysimg-live.iso`, derived from it with xorriso in a layout no family
//!    file knows: `/sysimg/boot/kernel`, `/sysimg/boot/initramfs`,
//!    `/sysimg/squashfs.img`, label `SIK-ANY-LIVE`, its own
//!    `/boot/grub/grub.cfg` pointing at them with `rd.live.dir=sysimg`.
//!    Detection must call it `generic`.
//!
//! Both boot (SeaBIOS) only because the secondary initrd's dracut
//! initqueue hook makes the ISO file a loop device carrying its label
//! (`sik.iso=` on the kernel line, "is the block device" in the log), and
//! then pass the main medium's checks (extension linked, unsigned refused,
//! overlay, customize/init, home).

use std::path::Path;
use std::process::Command;

use super::check::{self, Family};
use super::{Ctx, Outcome, menu_titles, qemu};
use crate::Result;
use crate::run as run_ok;

/// The built-in dracut-fedora family with the ISO as a block device and
/// no ISO-file argument (a medium's family file replaces the built-in one
/// of the same name).
const FEDORA_BLOCK_DEVICE: &str = r#"# e2e any-iso: the Fedora layout booted through the ISO as a block device.
name = "dracut-fedora"
description = "dracut dmsquash-live, images/pxeboot layout, ISO as a block device"
priority = 30
class = "fedora"

[detect]
all = ["/LiveOS", "/images/pxeboot"]

[boot]
kernel = ["/images/pxeboot/vmlinuz"]
initrd = ["/images/pxeboot/initrd.img"]
configs = ["/EFI/BOOT/grub.cfg", "/boot/grub2/grub.cfg", "/isolinux/isolinux.cfg"]
args = "root=live:CDLABEL=${label} rd.live.image"
drop_args = ["root", "rd.live.image", "iso-scan/filename", "rd.live.check", "check", "initrd", "BOOT_IMAGE", "inst.stage2", "inst.repo"]
iso_access = "block-device"
rootfs = ["/LiveOS/squashfs.img"]

[initramfs]
framework = "dracut"
medium = "/run/initramfs/isoscan"
newroot = "/sysroot"

[hook]
method = "dracut-hook"
paths = ["usr/lib/dracut/hooks/pre-pivot/90-sik.sh", "lib/dracut/hooks/pre-pivot/90-sik.sh"]
"#;

/// The derived ISO's own GRUB config.
const SYSIMG_GRUB_CFG: &str = "# The ISO's own config: a layout no family file knows.
set default=0
menuentry 'Start SIK-ANY-LIVE' {
\tlinux /sysimg/boot/kernel root=live:CDLABEL=SIK-ANY-LIVE rd.live.image rd.live.dir=sysimg rd.live.overlay.overlayfs=1 console=ttyS0,115200
\tinitrd /sysimg/boot/initramfs
}
";

/// The two boots: (what, ISO file, the family `sik boot generate` must report).
const BOOTS: &[(&str, &str, &str)] = &[
    (
        "fedora layout, only root=live:CDLABEL= (ISO as block device)",
        "fedora-live.iso",
        "dracut-fedora",
    ),
    (
        "unknown layout, own grub.cfg (generic, ISO as block device)",
        "sysimg-live.iso",
        "generic",
    ),
];

/// `sysimg-live.iso` from `fedora-live.iso`: files moved, its own grub.cfg.
fn derive_iso(fedora: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let cfg = dir.join("sysimg-grub.cfg");
    std::fs::write(&cfg, SYSIMG_GRUB_CFG).map_err(|e| e.to_string())?;
    let out = dir.join("sysimg-live.iso");
    let _ = std::fs::remove_file(&out);
    run_ok(
        Command::new("xorriso")
            .args(["-report_about", "WARNING", "-indev"])
            .arg(fedora)
            .arg("-outdev")
            .arg(&out)
            .args(["-volid", "SIK-ANY-LIVE", "-mkdir", "/sysimg/boot", "--"])
            .args(["-mv", "/LiveOS/squashfs.img", "/sysimg/squashfs.img", "--"])
            .args([
                "-mv",
                "/images/pxeboot/vmlinuz",
                "/sysimg/boot/kernel",
                "--",
            ])
            .args([
                "-mv",
                "/images/pxeboot/initrd.img",
                "/sysimg/boot/initramfs",
                "--",
            ])
            .args(["-rm_r", "/LiveOS", "/images", "/EFI", "/isolinux", "--"])
            .arg("-map")
            .arg(&cfg)
            .args(["/boot/grub/grub.cfg", "-commit"]),
    )?;
    Ok(out)
}

pub(super) fn run(ctx: &Ctx) -> Result<Vec<Outcome>> {
    let dir = ctx.out.join("any-iso");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sysimg = derive_iso(&ctx.isos.0.join("fedora-live.iso"), &dir)?;
    let disk = super::medium::build_medium(&ctx.sik, &ctx.isos, &dir, &["--data-fs", "fat32"])?;
    let family = dir.join("dracut-fedora.toml");
    std::fs::write(&family, FEDORA_BLOCK_DEVICE).map_err(|e| e.to_string())?;
    run_ok(
        Command::new(&ctx.sik)
            .args(["boot", "add"])
            .arg(&sysimg)
            .arg(&disk),
    )?;
    run_ok(
        Command::new(&ctx.sik)
            .args(["boot", "add"])
            .arg(&family)
            .arg(&disk)
            .args(["--to", "boot/formats/dracut-fedora.toml"]),
    )?;
    let generated = super::capture(
        Command::new(&ctx.sik)
            .args(["boot", "generate"])
            .arg(&disk)
            .arg("--sik-binary")
            .arg(&ctx.sik)
            .args(["--timeout", "30"]),
    )?;
    eprintln!("{generated}");
    let titles = menu_titles(&disk, &dir)?;
    let mut outcomes = Vec::new();
    let mut home_ids: Vec<String> = Vec::new();
    for (what, iso, family) in BOOTS {
        let stem = iso.trim_end_matches(".iso");
        let mut failures = Vec::new();
        if !generated
            .lines()
            .any(|l| l.starts_with(&format!("boot/iso/{iso}: {family}")))
        {
            failures.push(format!(
                "sik boot generate did not report boot/iso/{iso} as {family}"
            ));
        }
        let entry = titles
            .iter()
            .position(|t| t.starts_with(&format!("{stem} (")))
            .ok_or_else(|| format!("no menu entry for {iso} in grub.cfg"))?;
        let log = ctx.out.join(format!("any-iso-{stem}-bios.log"));
        let fw = qemu::Firmware::Bios;
        eprintln!("e2e: any-iso: booting entry {entry} ({})", titles[entry]);
        let (text, seconds, status) = qemu::boot(&disk, &fw, entry, &titles, &log, ctx.timeout)?;
        failures.extend(status);
        let fam = Family {
            name: "any-iso",
            iso,
            arg: "sik.iso=",
            medium_mount: "/run/sik/medium",
        };
        failures.extend(check::check(&fam, &text, &home_ids));
        let cmdline = check::find_value(&text, "cmdline ").unwrap_or_default();
        if !cmdline.contains(&format!(":/boot/iso/{iso}")) {
            failures.push(format!(
                "the kernel line does not name /boot/iso/{iso} in sik.iso="
            ));
        }
        if cmdline.contains("iso-scan/filename") || cmdline.contains("findiso") {
            failures.push("the kernel line names the ISO file for the initramfs".into());
        }
        if !text.contains(&format!("sik: /boot/iso/{iso} (on "))
            || !text.contains("is the block device /dev/loop")
        {
            failures.push("the secondary initrd did not say it made the ISO a block device".into());
        }
        if let Some(id) = check::find_value(&text, "home-written ")
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
        {
            home_ids.push(id);
        }
        let passed = failures.is_empty();
        eprintln!(
            "e2e: any-iso / {iso}: {} in {seconds:.0} s",
            if passed { "passed" } else { "FAILED" }
        );
        for f in &failures {
            eprintln!("e2e:   - {f}");
        }
        outcomes.push(Outcome {
            scenario: "any-iso",
            what: (*what).to_string(),
            firmware: fw.title(),
            passed,
            seconds,
            failures,
            log,
        });
    }
    Ok(outcomes)
}
