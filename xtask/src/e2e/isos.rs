//! The e2e's live ISOs: built once from Debian packages by
//! `tests/e2e/build-isos.sh` and cached under `target/e2e-cache/`, keyed by
//! a hash of the recipes and the candidate versions of the packages that make
//! the kernel and the initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{capture, sha256};
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

/// The ISOs from the cache, built when missing. Returns the directory holding
/// `debian-live.iso` and `fedora-live.iso`, and whether it came from the cache.
pub(crate) fn cached_isos() -> Result<(PathBuf, bool)> {
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
