//! `sik_image::pe` on the real signed boot files of Debian's packages:
//! shim (Microsoft-signed, with Debian's vendor certificate), MokManager,
//! the signed GRUB and a signed kernel. The packages are fetched with
//! `apt-get download` into the target directory (not committed); without
//! apt-get or the archive the tests skip, and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sik_image::pe::{self, PeKind};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn skip(reason: &str) -> Option<Vec<u8>> {
    assert!(!in_ci(), "required capability missing in CI: {reason}");
    eprintln!("SKIPPED: {reason}");
    None
}

/// The package a kernel test downloads: the signed image the
/// `linux-image-cloud-amd64` meta package depends on.
fn kernel_package() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-cloud-amd64"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|s| s.trim().to_string())
        .filter(|p| p.starts_with("linux-image-"))
}

/// One file of a Debian package (downloaded once into the target
/// directory's scratch space, unpacked with dpkg-deb).
fn debian_file(package: &str, path_in_pkg: &str) -> Option<Vec<u8>> {
    // Tests run in parallel; one download at a time.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-efi");
    let root = cache.join(package);
    let want = root.join(path_in_pkg.trim_start_matches('/'));
    if !want.is_file() {
        std::fs::create_dir_all(&cache).ok()?;
        let dl = cache.join(format!("dl-{package}"));
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl).ok()?;
        let ok = Command::new("apt-get")
            .args(["download", package])
            .current_dir(&dl)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return skip(&format!("apt-get download {package} failed"));
        }
        let deb: PathBuf = std::fs::read_dir(&dl).ok()?.flatten().next()?.path();
        let ok = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        let _ = std::fs::remove_dir_all(&dl);
        if !ok {
            return skip(&format!("dpkg-deb -x of {package} failed"));
        }
    }
    match std::fs::read(&want) {
        Ok(b) => Some(b),
        Err(e) => skip(&format!("{}: {e}", want.display())),
    }
}

#[test]
fn shim_sbat_vendor_cert_and_microsoft_signature() {
    let Some(shim) = debian_file("shim-signed", "/usr/lib/shim/shimx64.efi.signed") else {
        return;
    };
    let info = pe::parse(&shim).unwrap();
    assert_eq!(info.kind, PeKind::EfiApplication);
    assert_eq!(info.machine, "x86_64");
    assert!(info.problems.is_empty(), "{:?}", info.problems);
    let sbat = info.sbat.as_ref().expect(".sbat");
    assert_eq!(sbat[0].component, "sbat");
    assert!(sbat.iter().any(|e| e.component == "shim"), "{sbat:?}");
    let vc = info.vendor_cert.as_ref().expect(".vendor_cert");
    assert_eq!(vc.certificates.len(), 1);
    assert!(
        vc.certificates[0].subject.contains("Debian Secure Boot CA"),
        "{vc:?}"
    );
    assert!(vc.deauthorized_bytes > 0);
    assert!(!info.signatures.is_empty());
    let signer = info.signatures[0]
        .signer
        .as_ref()
        .expect("signer certificate");
    assert!(signer.issuer.contains("Microsoft"), "{signer:?}");
    assert!(signer.subject.contains("Microsoft"), "{signer:?}");
}

#[test]
fn mokmanager_and_grub_are_signed_by_debian() {
    let Some(mm) = debian_file(
        "shim-helpers-amd64-signed",
        "/usr/lib/shim/mmx64.efi.signed",
    ) else {
        return;
    };
    let Some(shim) = debian_file("shim-signed", "/usr/lib/shim/shimx64.efi.signed") else {
        return;
    };
    let vendor = pe::parse(&shim).unwrap().vendor_cert.unwrap().certificates[0].clone();
    let mm_bytes = mm;
    let mm = pe::parse(&mm_bytes).unwrap();
    assert_eq!(mm.kind, PeKind::EfiApplication);
    assert!(mm.sbat.is_some());
    assert!(mm.vendor_cert.is_none());
    let Some(grub) = debian_file(
        "grub-efi-amd64-signed",
        "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    ) else {
        return;
    };
    let mods = pe::grub_modules(&grub).unwrap();
    for m in [
        "fat",
        "iso9660",
        "loopback",
        "linux",
        "regexp",
        "search_fs_uuid",
        "chain",
    ] {
        assert!(mods.iter().any(|x| x == m), "{m} not in {mods:?}");
    }
    for m in ["exfat", "ntfs", "hashsum"] {
        assert!(!mods.iter().any(|x| x == m), "{m} in the signed GRUB");
    }
    assert!(pe::grub_modules(&mm_bytes).is_err());
    let grub = pe::parse(&grub).unwrap();
    let sbat = grub.sbat.as_ref().expect("GRUB .sbat");
    assert!(sbat.iter().any(|e| e.component == "grub"), "{sbat:?}");
    for info in [&mm, &grub] {
        assert_eq!(info.signatures.len(), 1, "{:?}", info.signatures);
        let s = &info.signatures[0];
        let signer = s.signer.as_ref().unwrap();
        assert!(
            signer.subject.contains("Debian Secure Boot Signer"),
            "{s:?}"
        );
        assert!(pe::anchored_by(s, &vendor), "{s:?} vs {vendor:?}");
    }
}

#[test]
fn kernel_is_a_pe_signed_by_debian() {
    let Some(pkg) = kernel_package() else {
        skip("apt-cache cannot name the cloud kernel package");
        return;
    };
    let version = pkg.trim_start_matches("linux-image-");
    let Some(kernel) = debian_file(&pkg, &format!("/boot/vmlinuz-{version}")) else {
        return;
    };
    let info = pe::parse(&kernel).unwrap();
    assert_eq!(info.kind, PeKind::LinuxKernel);
    assert!(info.sbat.is_none() || info.sbat.as_ref().is_some_and(|s| !s.is_empty()));
    let s = info.signatures.first().expect("a signature");
    assert!(s.signer_issuer.contains("Debian Secure Boot CA"), "{s:?}");
    let signer = s.signer.as_ref().unwrap();
    assert!(
        signer.subject.contains("Debian Secure Boot Signer"),
        "{s:?}"
    );
    // Truncated and bit-flipped copies never panic.
    for cut in [64, 0x400, kernel.len() / 2, kernel.len() - 100] {
        let _ = pe::parse(&kernel[..cut]);
    }
    let mut broken = kernel.clone();
    let n = broken.len();
    for i in (n - 4000..n).step_by(97) {
        broken[i] ^= 0x5a;
    }
    let _ = pe::parse(&broken);
}
