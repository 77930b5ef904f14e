//! The e2e's main medium: `sik boot install --image`, both live ISOs, a
//! signed and an unsigned ExtensionImage, the signer's key, the overlay and
//! `boot/customize/init` of `tests/e2e/medium`, a `home.img`, then
//! `sik boot generate`. Written without mounting (mtools), as users do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, root, run};

/// Assemble the medium: a 2 GiB sparse disk image with everything on it.
pub(super) fn build_medium(sik: &Path, isos: &(PathBuf, bool), out: &Path) -> Result<PathBuf> {
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
