//! The e2e's main medium: `sik boot install --image`, both live ISOs, a
//! signed and an unsigned ExtensionImage, the signer's key, the overlay and
//! `boot/customize/init` of `tests/e2e/medium`, a `home.img`, then
//! `sik boot generate`. Written without mounting, only through `sik boot
//! install/add/generate`, as users do. DATA is FAT32 (`--data-fs fat32`):
//! see E2E.md for which initramfs can read an exFAT DATA partition.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, root, run};

/// Assemble the medium: a 2 GiB sparse disk image with everything on it.
/// `install_args` go to `sik boot install` (the main medium: `--data-fs
/// fat32`; the Secure Boot scenario adds its chain).
pub(super) fn build_medium(
    sik: &Path,
    isos: &(PathBuf, bool),
    out: &Path,
    install_args: &[&str],
) -> Result<PathBuf> {
    let recipes = root().join("tests/e2e");
    let work = out.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let disk = out.join("disk.img");
    run(Command::new(sik)
        .args(["boot", "install"])
        .args(install_args)
        .arg("--image")
        .arg(&disk)
        .args(["--size", "2G", "--sik-binary"])
        .arg(sik))?;
    let add_to = |src: &Path, dest: &str| {
        run(Command::new(sik)
            .args(["boot", "add"])
            .arg(src)
            .arg(&disk)
            .args(["--to", dest]))
    };
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
    add_to(&work.join("e2e-key.pub"), "boot/keys/e2e-key.pub")?;
    // Overlay and customize/init.
    add_to(&recipes.join("medium/boot/customize"), "boot/customize")?;
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
    add_to(&home_img, "home.img")?;
    run(Command::new(sik)
        .args(["boot", "generate"])
        .arg(&disk)
        .arg("--sik-binary")
        .arg(sik)
        .args(["--timeout", "30"]))?;
    Ok(disk)
}
