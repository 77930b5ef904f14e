//! Secure Boot: `sik inspect` of the signed boot files Debian ships (shim,
//! MokManager, GRUB) and of hostile PE files; `sik boot install
//! --secure-boot` (see the boot chain tests below).

use std::path::Path;

use crate::util::*;

/// Debian's signed shim (package shim-signed).
pub const SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
/// Debian's signed MokManager (package shim-helpers-amd64-signed).
pub const MOKMANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
/// Debian's signed GRUB (package grub-efi-amd64-signed).
pub const SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";

/// True when the three signed boot files are installed; otherwise skip
/// (or fail in CI, where .ci/deps installs them).
pub fn require_signed_chain() -> bool {
    for f in [SHIM, MOKMANAGER, SIGNED_GRUB] {
        if !Path::new(f).is_file() {
            return skip(&format!(
                "needs {f} (packages shim-signed, shim-helpers-amd64-signed, grub-efi-amd64-signed)"
            ));
        }
    }
    true
}

#[test]
fn inspect_shows_sbat_vendor_certificate_and_signers() {
    if !require_signed_chain() {
        return;
    }
    let text = run_ok(sik().args(["inspect", SHIM]));
    assert!(text.contains("EFI application, x86_64"), "{text}");
    assert!(
        text.contains("shim,4,UEFI shim") || text.contains("\n    shim,"),
        "{text}"
    );
    assert!(
        text.contains("vendor certificate: CN=Debian Secure Boot CA"),
        "{text}"
    );
    assert!(text.contains("signature 1:        CN=Microsoft"), "{text}");
    let json = run_ok(sik().args(["inspect", "--json", SIGNED_GRUB]));
    let v = assert_schema("inspect", &json);
    let pe = &v["pe"];
    assert_eq!(pe["kind"], "efi-application");
    assert!(
        pe["sbat"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["component"] == "grub"),
        "{json}"
    );
    assert_eq!(pe["vendor_cert"], serde_json::Value::Null);
    assert_eq!(
        pe["signatures"][0]["signer_issuer"], "CN=Debian Secure Boot CA",
        "{json}"
    );
    let json = run_ok(sik().args(["inspect", "--json", SHIM]));
    let v = assert_schema("inspect", &json);
    assert_eq!(
        v["pe"]["vendor_cert"]["certificates"][0]["subject"],
        "CN=Debian Secure Boot CA"
    );
}

#[test]
fn inspect_of_hostile_pe_files_is_one_line_or_a_problem() {
    let t = TestDir::new();
    // MZ pointing at a PE signature with nothing after it.
    let mut pe = vec![0u8; 0x200];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    let f = t.join("broken.efi");
    std::fs::write(&f, &pe).unwrap();
    let out = run(sik().arg("inspect").arg(&f));
    assert_fails(&out, 2, &["broken.efi", "not a PE/COFF file"]);
    if !require_signed_chain() {
        return;
    }
    // A real GRUB whose certificate table is cut short: the file is still
    // described, the broken signature named as a problem.
    let mut grub = std::fs::read(SIGNED_GRUB).unwrap();
    let n = grub.len();
    grub.truncate(n - 600);
    let f = t.join("cut.efi");
    std::fs::write(&f, &grub).unwrap();
    let json = run_ok(sik().args(["inspect", "--json"]).arg(&f));
    let v = assert_schema("inspect", &json);
    assert_eq!(v["pe"]["signatures"].as_array().unwrap().len(), 0, "{json}");
    assert!(
        v["pe"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("outside the file"),
        "{json}"
    );
}

/// `sik boot install --image DISK --size 160M ARGS… --sik-binary STAND-IN`
/// (the initrd's sik does not matter here).
fn install(t: &TestDir, disk: &Path, args: &[&str]) -> std::process::Command {
    // A static executable (busybox-static), as install demands.
    let stand_in = t.join("sik-static");
    if !stand_in.exists() {
        crate::boot::fake_sik(t);
    }
    let mut c = sik();
    c.args(["boot", "install", "--image"])
        .arg(disk)
        .args(["--size", "160M"])
        .args(args)
        .arg("--sik-binary")
        .arg(stand_in);
    c
}

/// The byte offset of a medium's ESP, from `install --json`.
fn esp_at(v: &serde_json::Value) -> u64 {
    v["esp_offset"].as_u64().expect("an ESP")
}

/// A file of a FAT partition at byte `at` of a medium image, through mtools.
fn medium_file(disk: &Path, at: u64, rel: &str) -> Vec<u8> {
    let out = run(cmd("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{at}", disk.display()))
        .arg(format!("::/{rel}"))
        .arg("-"));
    assert!(
        out.status.success(),
        "{rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn install_secure_boot_distro_places_shim_mokmanager_signed_grub_and_stub() {
    if !require_tool("mformat") || !require_tool("grub-mkimage") || !require_signed_chain() {
        return;
    }
    let t = TestDir::new();
    let disk = t.join("sb.img");
    let json = run_ok(&mut install(&t, &disk, &["--secure-boot", "--json"]));
    let v = assert_schema("install", &json);
    assert_eq!(v["secure_boot"], "distro");
    assert_eq!(v["data_fs"], "fat32", "the signed GRUB reads FAT only");
    let esp = esp_at(&v);
    let placed: Vec<&str> = v["uefi"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        placed,
        [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/BOOT/mmx64.efi",
            "EFI/BOOT/grubx64.efi",
            "EFI/debian/grub.cfg",
            "EFI/BOOT/grub.cfg"
        ]
    );
    // Exactly the package files, byte for byte.
    for (rel, src) in [
        ("EFI/BOOT/BOOTX64.EFI", SHIM),
        ("EFI/BOOT/mmx64.efi", MOKMANAGER),
        ("EFI/BOOT/grubx64.efi", SIGNED_GRUB),
    ] {
        assert!(
            medium_file(&disk, esp, rel) == std::fs::read(src).unwrap(),
            "{rel}"
        );
    }
    let stub = String::from_utf8(medium_file(&disk, esp, "EFI/debian/grub.cfg")).unwrap();
    let uuid = stub
        .lines()
        .find_map(|l| l.strip_prefix("search --no-floppy --fs-uuid --set=root "))
        .expect("stub searches by UUID");
    assert!(
        stub.contains("configfile ($root)/boot/grub/grub.cfg"),
        "{stub}"
    );
    let cfg = String::from_utf8(medium_file(&disk, 1 << 20, "boot/grub/grub.cfg")).unwrap();
    // The MokManager entry finds the ESP by its own UUID, never DATA's
    // (install gives the two FAT filesystems distinct serials).
    let esp_uuid = cfg
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("search --no-floppy --fs-uuid --set=root ")
        })
        .expect("the MokManager entry searches the ESP by UUID");
    assert_ne!(esp_uuid, uuid, "{cfg}");
    assert!(cfg.contains("chainloader /EFI/BOOT/mmx64.efi"), "{cfg}");
    // Everything grub.cfg loads is built into the signed GRUB (it loads no
    // module from disk under Secure Boot).
    let mods = sik_image::pe::grub_modules(&std::fs::read(SIGNED_GRUB).unwrap()).unwrap();
    for line in cfg.lines() {
        if let Some(m) = line.trim().strip_prefix("insmod ") {
            assert!(
                mods.iter().any(|x| x == m),
                "insmod {m}: not in the signed GRUB"
            );
        }
    }
    assert!(mods.iter().any(|x| x == "chain"));
    // --update refreshes the chain in place and keeps it a Secure Boot one.
    std::fs::write(t.join("marker.txt"), b"user file\n").unwrap();
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(t.join("marker.txt"))
            .arg(&disk)
            .args(["--to", "notes/marker.txt"]),
    );
    let json = run_ok(
        sik()
            .args(["boot", "install", "--json", "--sik-binary"])
            .arg(t.join("sik-static"))
            .arg("--update")
            .arg(&disk),
    );
    let v = assert_schema("install", &json);
    assert_eq!(v["action"], "update");
    assert_eq!(v["secure_boot"], "distro", "{json}");
    assert!(medium_file(&disk, esp, "EFI/BOOT/BOOTX64.EFI") == std::fs::read(SHIM).unwrap());
    assert_eq!(
        medium_file(&disk, 1 << 20, "notes/marker.txt"),
        b"user file\n"
    );
}

#[test]
fn install_secure_boot_refuses_what_shim_would_refuse() {
    if !require_tool("mformat") || !require_tool("grub-mkimage") || !require_signed_chain() {
        return;
    }
    let t = TestDir::new();
    // An unsigned GRUB image in place of the signed one.
    let unsigned = t.join("grubx64.efi");
    run_ok(
        cmd("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-o"])
            .arg(&unsigned)
            .arg("normal"),
    );
    let disk = t.join("sb.img");
    let out = run(&mut install(
        &t,
        &disk,
        &["--secure-boot", "--signed-grub", unsigned.to_str().unwrap()],
    ));
    assert_fails(&out, 2, &["grubx64.efi", "the GRUB is not signed"]);
    assert!(!disk.exists(), "nothing is written when a piece is refused");
    // MokManager in place of shim: signed, but without a vendor certificate.
    let out = run(&mut install(
        &t,
        &disk,
        &["--secure-boot", "--shim", MOKMANAGER],
    ));
    assert_fails(&out, 2, &["no .vendor_cert"]);
    assert!(!disk.exists());
    // Debian's signed GRUB cannot read exFAT.
    let out = run(&mut install(
        &t,
        &disk,
        &["--secure-boot", "--data-fs", "exfat"],
    ));
    assert_fails(&out, 2, &["cannot read exFAT", "--secure-boot=own-key"]);
    assert!(!disk.exists());
}

#[test]
fn install_secure_boot_own_key_signs_grub_with_a_kept_mok() {
    if !require_tool("mformat")
        || !require_tool("grub-mkimage")
        || !require_tool("sbsign")
        || !require_tool("openssl")
        || !require_signed_chain()
    {
        return;
    }
    let t = TestDir::new();
    let mok = t.join("mok");
    let disk = t.join("own.img");
    let mok_s = mok.to_str().unwrap();
    let json = run_ok(&mut install(
        &t,
        &disk,
        &["--secure-boot=own-key", "--json", "--mok-dir", mok_s],
    ));
    let v = assert_schema("install", &json);
    assert_eq!(v["secure_boot"], "own-key");
    let esp = esp_at(&v);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(mok.join("MOK.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the key is its owner's only");
    let der = std::fs::read(mok.join("MOK.der")).unwrap();
    assert!(medium_file(&disk, esp, "EFI/sik/MOK.der") == der);
    // The key never reaches the medium.
    let listing = run_ok(
        cmd("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-/", "-b", "-i"])
            .arg(format!("{}@@{esp}", disk.display()))
            .arg("::"),
    );
    assert!(
        !listing.contains("MOK.key") && !listing.contains("MOK.crt"),
        "{listing}"
    );
    // GRUB: SBAT, signed by the MOK, exFAT built in.
    let grub = medium_file(&disk, esp, "EFI/BOOT/grubx64.efi");
    let info = sik_image::pe::parse(&grub).unwrap();
    let sbat = info.sbat.unwrap();
    assert!(sbat.iter().any(|e| e.component == "grub"));
    assert!(sbat.iter().any(|e| e.component == "grub.sik"));
    let mok_cert = sik_image::pe::cert_info(&der).unwrap();
    assert_eq!(
        info.signatures[0].signer.as_ref().unwrap().sha256,
        mok_cert.sha256
    );
    let mods = sik_image::pe::grub_modules(&grub).unwrap();
    assert!(mods.iter().any(|m| m == "exfat"), "{mods:?}");
    // Its embedded configuration finds DATA (exFAT) by UUID.
    let uuid = v["data_uuid"].as_str().unwrap();
    let text = String::from_utf8_lossy(&grub);
    assert!(
        text.contains(&format!("search --no-floppy --fs-uuid --set=root {uuid}")),
        "no embedded search for {uuid}"
    );
    assert_eq!(v["data_fs"], "exfat");
    // A second medium reuses the same key.
    let disk2 = t.join("own2.img");
    let json = run_ok(&mut install(
        &t,
        &disk2,
        &["--secure-boot=own-key", "--json", "--mok-dir", mok_s],
    ));
    let esp2 = esp_at(&assert_schema("install", &json));
    assert!(medium_file(&disk2, esp2, "EFI/sik/MOK.der") == der);
}

#[test]
fn detect_says_who_signed_the_kernel_and_whether_shim_trusts_it() {
    if !require_tool("xorriso") || !require_signed_chain() {
        return;
    }
    let t = TestDir::new();
    // A live-boot ISO whose "kernel" is a Debian-signed PE file (the signed
    // GRUB: same signer CA as Debian's kernels) and whose EFI/BOOT holds a
    // shim; and one with an unsigned PE kernel.
    for (name, kernel) in [("signed", SIGNED_GRUB), ("unsigned", "")] {
        let tree = t.join(format!("tree-{name}"));
        std::fs::create_dir_all(tree.join("live")).unwrap();
        std::fs::create_dir_all(tree.join("EFI/BOOT")).unwrap();
        let bytes = if kernel.is_empty() {
            let out = t.join("plain.efi");
            run_ok(
                cmd("grub-mkimage")
                    .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-o"])
                    .arg(&out)
                    .arg("normal"),
            );
            std::fs::read(&out).unwrap()
        } else {
            std::fs::read(kernel).unwrap()
        };
        std::fs::write(tree.join("live/vmlinuz"), bytes).unwrap();
        std::fs::write(tree.join("live/initrd.img"), b"initrd").unwrap();
        std::fs::write(tree.join("live/filesystem.squashfs"), b"sq").unwrap();
        std::fs::copy(SHIM, tree.join("EFI/BOOT/BOOTX64.EFI")).unwrap();
        run_ok(&mut mkisofs(
            &tree,
            &t.join(format!("{name}.iso")),
            "SB_TEST",
        ));
    }
    let json = run_ok(
        sik()
            .args(["boot", "detect", "--json"])
            .arg(t.join("signed.iso"))
            .arg(t.join("unsigned.iso")),
    );
    let v = assert_schema("detect", &json);
    let sb = &v["isos"][0]["secure_boot"];
    assert_eq!(
        sb["kernel_signers"][0], "CN=Debian Secure Boot Signer 2022 - grub2",
        "{json}"
    );
    assert_eq!(sb["trusted_by_shim"], true);
    assert_eq!(sb["enroll"], serde_json::Value::Null);
    assert_eq!(
        sb["iso_shim_vendor"]["subject"], "CN=Debian Secure Boot CA",
        "{json}"
    );
    let sb = &v["isos"][1]["secure_boot"];
    assert_eq!(sb["kernel_signers"].as_array().unwrap().len(), 0);
    assert_eq!(sb["trusted_by_shim"], false);
    assert!(
        sb["enroll"].as_str().unwrap().contains("unsigned kernel"),
        "{json}"
    );
    let text = run_ok(sik().args(["boot", "detect"]).arg(t.join("signed.iso")));
    assert!(
        text.contains("Secure Boot: kernel signed by CN=Debian Secure Boot Signer 2022 - grub2; the installed shim trusts it"),
        "{text}"
    );
}

#[test]
fn generate_names_what_to_enroll_for_a_kernel_the_shim_does_not_trust() {
    if !require_tool("mformat")
        || !require_tool("grub-mkimage")
        || !require_tool("xorriso")
        || !require_tool("sbsign")
        || !require_tool("openssl")
        || !require_signed_chain()
    {
        return;
    }
    let t = TestDir::new();
    // A kernel (a PE file) signed by a throwaway key.
    let (key, crt) = (t.join("k.pem"), t.join("c.pem"));
    run_ok(
        cmd("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=throwaway kernel signer/", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt),
    );
    let plain = t.join("plain.efi");
    run_ok(
        cmd("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", "/boot/grub", "-o"])
            .arg(&plain)
            .arg("normal"),
    );
    let tree = t.join("tree");
    std::fs::create_dir_all(tree.join("live")).unwrap();
    run_ok(
        cmd("sbsign")
            .arg("--key")
            .arg(&key)
            .arg("--cert")
            .arg(&crt)
            .arg("--output")
            .arg(tree.join("live/vmlinuz"))
            .arg(&plain),
    );
    std::fs::write(tree.join("live/initrd.img"), b"initrd").unwrap();
    std::fs::write(tree.join("live/filesystem.squashfs"), b"sq").unwrap();
    // The ISO's own "shim": a PE file whose `.vendor_cert` section (shim's
    // layout: authorized size, deauthorized size, their offsets, then the
    // DER certificate) holds the throwaway signer's certificate.
    let der = t.join("c.der");
    run_ok(
        cmd("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&crt)
            .arg("-out")
            .arg(&der),
    );
    let der = std::fs::read(&der).unwrap();
    let mut section = Vec::new();
    for v in [der.len() as u32, 0, 16, 16 + der.len() as u32] {
        section.extend_from_slice(&v.to_le_bytes());
    }
    section.extend_from_slice(&der);
    std::fs::write(t.join("vendor_cert.bin"), &section).unwrap();
    std::fs::create_dir_all(tree.join("EFI/BOOT")).unwrap();
    run_ok(
        cmd("objcopy")
            .args(["--long-section-names", "enable", "--add-section"])
            .arg(format!(
                ".vendor_cert={}",
                t.join("vendor_cert.bin").display()
            ))
            .args(["--set-section-flags", ".vendor_cert=data,readonly"])
            .arg(&plain)
            .arg(tree.join("EFI/BOOT/BOOTX64.EFI")),
    );
    let iso = t.join("other.iso");
    run_ok(&mut mkisofs(&tree, &iso, "OTHER"));
    let disk = t.join("sb.img");
    let esp = esp_at(&assert_schema(
        "install",
        &run_ok(&mut install(&t, &disk, &["--secure-boot", "--json"])),
    ));
    run_ok(sik().args(["boot", "add"]).arg(&iso).arg(&disk));
    let json = run_ok(
        sik()
            .args(["boot", "generate", "--json", "--sik-binary"])
            .arg(t.join("sik-static"))
            .arg(&disk),
    );
    let v = assert_schema("generate", &json);
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("boot/iso/other.iso")
            && w.contains("kernel signed by CN=throwaway kernel signer")
            && w.contains("does not vouch for it")
            && w.contains("enroll the ISO's shim vendor certificate CN=throwaway kernel signer")),
        "{warnings:?}"
    );
    // That certificate is on the ESP for MokManager's "Enroll key from disk".
    let vendor = sik_image::pe::cert_info(&der).unwrap();
    assert!(
        medium_file(
            &disk,
            esp,
            &format!("EFI/sik/vendor-{}.der", &vendor.sha256[..16])
        ) == der,
        "the vendor certificate on the ESP differs from the ISO shim's"
    );
}
