//! The e2e's main medium: `sik boot install --image`, both live ISOs, a
//! signed and an unsigned ExtensionImage, a signed codec extension made
//! from Debian packages (`apt-get download`), a signed and an unsigned
//! AppImage (in `Applications/`), the signer's key, the overlay and
//! `boot/customize/init` of `tests/e2e/medium`, a `home.img`, then
//! `sik boot generate`. Written without mounting, only through `sik boot
//! install/add/generate`, as users do. DATA is FAT32 (`--data-fs fat32`):
//! see E2E.md for which initramfs can read an exFAT DATA partition.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Result, root, run};

/// The name of the ExtensionImage only the Debian ISO's boots link
/// (`tests/e2e/per-iso`, in `boot/extensions/debian-live/x86_64/`).
pub(super) const PER_ISO: &str = "e2e-debian-only";

/// The Debian packages of the codec extension (`libFLAC.so.12` needs `libogg.so.0`).
pub(super) const CODEC_PACKAGES: &[&str] = &["libflac12", "libogg0"];

/// Assemble the medium: a 2 GiB sparse disk image with everything on it.
/// `install_args` go to `sik boot install` (the main medium: `--data-fs
/// fat32`; the Secure Boot scenario adds its chain).
pub(super) fn build_medium(
    sik: &Path,
    isos: &(PathBuf, bool),
    out: &Path,
    install_args: &[&str],
) -> Result<PathBuf> {
    build(
        sik,
        isos,
        out,
        install_args,
        "2G",
        &[("debian-live.iso", None), ("fedora-live.iso", None)],
    )
}

/// Assemble a medium of `size` (sparse) in `out/disk.img` holding the ISOs
/// `iso_list` names from the cache, each padded with zeros to the given
/// number of bytes first when one is given (a sparse copy, removed after
/// `sik boot add`; still a valid ISO: its volume ends where its descriptor
/// says), and the common contents.
pub(super) fn build(
    sik: &Path,
    isos: &(PathBuf, bool),
    out: &Path,
    install_args: &[&str],
    size: &str,
    iso_list: &[(&str, Option<u64>)],
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
        .args(["--size", size, "--sik-binary"])
        .arg(sik))?;
    let add_to = |src: &Path, dest: &str| {
        run(Command::new(sik)
            .args(["boot", "add"])
            .arg(src)
            .arg(&disk)
            .args(["--to", dest]))
    };
    for (iso, pad) in iso_list {
        let mut src = isos.0.join(iso);
        if let Some(len) = pad {
            let big = work.join(iso);
            std::fs::copy(&src, &big).map_err(|e| format!("{}: {e}", big.display()))?;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&big)
                .and_then(|f| f.set_len(*len))
                .map_err(|e| format!("{}: {e}", big.display()))?;
            src = big;
        }
        let added = run(Command::new(sik).args(["boot", "add"]).arg(&src).arg(&disk));
        if pad.is_some() {
            let _ = std::fs::remove_file(&src);
        }
        added?;
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
    // A codec set as it comes: Debian's FLAC and Ogg libraries, fetched
    // with apt-get download, in one signed extension; at boot the linker's
    // ldconfig trigger makes the dynamic linker know them.
    let debs = work.join("codec-debs");
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    // (`run` starts commands in the repository: the download changes
    // into its directory itself.)
    run(Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && shift && apt-get download -q \"$@\"")
        .arg("sh")
        .arg(&debs)
        .args(CODEC_PACKAGES))?;
    let mut codec_sources: Vec<PathBuf> = std::fs::read_dir(&debs)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .collect();
    codec_sources.sort();
    let codecs = work.join("e2e-codecs.ExtensionImage");
    run(Command::new(sik)
        .args(["create", "extension", "-q"])
        .args(&codec_sources)
        .arg("-o")
        .arg(&codecs))?;
    run(Command::new(sik)
        .arg("sign")
        .arg(&codecs)
        .arg("--key")
        .arg(&key))?;
    for img in [&signed, &unsigned, &codecs] {
        run(Command::new(sik).args(["boot", "add"]).arg(img).arg(&disk))?;
    }
    // The Debian ISO's own extension (signed): linked in its boots only.
    if iso_list.iter().any(|(i, _)| *i == "debian-live.iso") {
        let own = work.join(format!("{PER_ISO}.ExtensionImage"));
        run(Command::new(sik)
            .args(["create", "extension", "-q"])
            .arg(recipes.join("per-iso"))
            .arg("-o")
            .arg(&own)
            .args(["--os-id", "_any", "--version", "1.0"]))?;
        run(Command::new(sik)
            .arg("sign")
            .arg(&own)
            .arg("--key")
            .arg(&key))?;
        add_to(&own, "boot/extensions/debian-live/x86_64/")?;
    }
    add_to(&work.join("e2e-key.pub"), "boot/keys/e2e-key.pub")?;
    // Two AppImages in Applications/: the boot hook integrates the signed
    // one into the menu (its entry runs it on the medium), not the other.
    for (label, signed) in [("Signed", true), ("Unsigned", false)] {
        let image = app_image(sik, &work, label, signed.then_some(key.as_path()))?;
        run(Command::new(sik)
            .args(["boot", "add"])
            .arg(&image)
            .arg(&disk))?;
    }
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

/// An AppImage `e2e-LABEL.AppImage` (made from an AppDir written here)
/// whose AppRun prints `hello from the LABEL AppImage` and its arguments;
/// signed with `key` when given.
fn app_image(sik: &Path, work: &Path, label: &str, key: Option<&Path>) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join(format!("e2e-{label}.AppDir"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let lower = label.to_lowercase();
    write(
        "AppRun",
        format!("#!/bin/sh\necho \"hello from the {lower} AppImage $*\"\n"),
    )?;
    std::fs::set_permissions(dir.join("AppRun"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    write(
        &format!("sik-e2e-{lower}.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=SIK E2E {label} App\nExec=AppRun %F\nIcon=sik-e2e\nCategories=Utility;\nX-AppImage-Version=1.0\n"
        ),
    )?;
    write(
        "sik-e2e.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n".into(),
    )?;
    let image = work.join(format!("e2e-{label}.AppImage"));
    let mut c = Command::new(sik);
    c.args(["create", "appimage", "-q"])
        .arg(&dir)
        .arg("-o")
        .arg(&image);
    if let Some(k) = key {
        c.arg("--sign").arg(k);
    }
    run(&mut c)?;
    Ok(image)
}
