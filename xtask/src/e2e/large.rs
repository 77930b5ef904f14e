//! Scenario `large`: an ISO over 4 GiB on a medium made by `sik boot
//! install` with its default layout (exFAT DATA, FAT ESP). The Debian e2e
//! ISO padded with zeros to 4.5 GiB (a sparse copy; still a valid ISO: the
//! volume ends where its descriptor says) goes onto a 6 GiB sparse image
//! with the main medium's extensions, key, overlay, init and home (sik's
//! exFAT writer punches holes for the zeros, so the image stays small); it
//! boots once with SeaBIOS and once with OVMF, and each boot must show
//! everything the main medium's Debian boots show (extension linked,
//! unsigned one refused, overlay, init, home). Proves GRUB's exfat module
//! finds DATA by UUID and reads a file over 4 GiB, and that live-boot's
//! initramfs (carrying the exfat module, tests/e2e/build-isos.sh) mounts
//! exFAT DATA for findiso. The image is removed afterwards.

use super::check::{self, FAMILIES};
use super::qemu::{self, Firmware};
use super::{Ctx, Outcome, menu_titles};
use crate::Result;

/// 4.5 GiB: over FAT32's 4 GiB - 1 file size limit.
const PADDED: u64 = 4608 << 20;

pub(super) fn run(ctx: &Ctx) -> Result<Vec<Outcome>> {
    let out = ctx.out.join("large");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let fam = &FAMILIES[0];
    let disk = super::medium::build(
        &ctx.sik,
        &ctx.isos,
        &out,
        &[],
        "6G",
        &[(fam.iso, Some(PADDED))],
    )?;
    let result = boots(ctx, &disk, &out);
    let _ = std::fs::remove_file(&disk);
    result
}

fn boots(ctx: &Ctx, disk: &std::path::Path, out: &std::path::Path) -> Result<Vec<Outcome>> {
    let fam = &FAMILIES[0];
    let titles = menu_titles(disk, out)?;
    let entry = titles
        .iter()
        .position(|t| t.contains(fam.iso.trim_end_matches(".iso")))
        .ok_or_else(|| {
            format!(
                "no menu entry for {} in the large medium's grub.cfg",
                fam.iso
            )
        })?;
    let mut outcomes = Vec::new();
    for fw in [Firmware::Bios, Firmware::Uefi] {
        let log = out.join(format!("debian-4.5G-{}.log", fw.name()));
        eprintln!("e2e: large: booting {} with {}", titles[entry], fw.name());
        let (text, seconds, status) = qemu::boot(disk, &fw, entry, &titles, &log, ctx.timeout)?;
        let mut failures = check::check(fam, &text, &[]);
        if let Some(s) = status {
            failures.insert(0, s);
        }
        eprintln!(
            "e2e: large / {}: {} in {seconds:.0} s",
            fw.name(),
            if failures.is_empty() {
                "passed"
            } else {
                "FAILED"
            }
        );
        for f in &failures {
            eprintln!("e2e:   - {f}");
        }
        outcomes.push(Outcome {
            scenario: "large",
            what: "debian live-boot, 4.5 GiB ISO on exFAT".into(),
            firmware: fw.title(),
            passed: failures.is_empty(),
            seconds,
            failures,
            log,
        });
    }
    Ok(outcomes)
}
