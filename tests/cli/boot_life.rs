//! `sik boot list|check`: a medium's life after its first boot — what it
//! holds and whether it is intact — on directory and disk image media,
//! with ISOs built by xorriso around root filesystems made by mksquashfs,
//! extensions signed and not, checksum files written by sha256sum.

use std::path::{Path, PathBuf};

use crate::boot::check_schema;
use crate::util::*;
use serde_json::Value;

/// A live ISO of `family` layout whose root filesystem (SquashFS by
/// mksquashfs) holds `os_release` at `os_path`.
fn live_iso(t: &TestDir, name: &str, family: &str, os_path: &str, os_release: &str) -> PathBuf {
    let root = t.mkdir(&format!("root-{name}"));
    let f = root.join(os_path);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, os_release).unwrap();
    let tree = t.mkdir(&format!("tree-{name}"));
    let (kernel, initrd, rootfs) = match family {
        "live-boot" => (
            "live/vmlinuz",
            "live/initrd.img",
            "live/filesystem.squashfs",
        ),
        _ => (
            "images/pxeboot/vmlinuz",
            "images/pxeboot/initrd.img",
            "LiveOS/squashfs.img",
        ),
    };
    for (p, c) in [(kernel, "kernel\n"), (initrd, "initrd\n")] {
        std::fs::create_dir_all(tree.join(p).parent().unwrap()).unwrap();
        std::fs::write(tree.join(p), c).unwrap();
    }
    std::fs::create_dir_all(tree.join(rootfs).parent().unwrap()).unwrap();
    run_ok(cmd("mksquashfs").arg(&root).arg(tree.join(rootfs)).args([
        "-quiet",
        "-noappend",
        "-all-root",
    ]));
    let iso = t.join(format!("{name}.iso"));
    run_ok(&mut mkisofs(
        &tree,
        &iso,
        &name.to_uppercase().replace('-', "_"),
    ));
    iso
}

/// An ExtensionImage named `name` with the given extension-release.
fn extension(t: &TestDir, name: &str, release: &str) -> PathBuf {
    let tree = t.mkdir(&format!("ext-{name}"));
    let rel = tree.join(format!(
        "usr/lib/extension-release.d/extension-release.{name}"
    ));
    std::fs::create_dir_all(rel.parent().unwrap()).unwrap();
    std::fs::write(rel, release).unwrap();
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join(format!("usr/bin/{name}")), "#!/bin/sh\n").unwrap();
    let img = t.join(format!("{name}.ExtensionImage"));
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(&tree)
            .arg("-o")
            .arg(&img),
    );
    img
}

/// The files of the medium's life tests: two ISOs (Debian 12 with
/// etc/os-release, Fedora 41 with usr/lib/os-release), a key, extensions
/// signed for any system, signed for Debian 11, unsigned; a home.img.
struct Fixture {
    isos: Vec<PathBuf>,
    key_pub: PathBuf,
    extensions: Vec<PathBuf>,
    home: PathBuf,
}

fn fixture(t: &TestDir) -> Fixture {
    let debian = live_iso(
        t,
        "debian-live",
        "live-boot",
        "etc/os-release",
        "ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    );
    let fedora = live_iso(
        t,
        "fedora-live",
        "dracut-fedora",
        "usr/lib/os-release",
        "ID=fedora\nVERSION_ID=41\nPRETTY_NAME=\"Fedora Linux 41\"\n",
    );
    let key = t.join("signer");
    run_ok(sik().args(["key", "generate", "-o"]).arg(&key));
    let any = extension(t, "tools", "ID=_any\nSYSEXT_VERSION_ID=2.0\n");
    let old = extension(t, "legacy", "ID=debian\nVERSION_ID=11\n");
    let unsigned = extension(t, "unsigned", "ID=_any\n");
    for img in [&any, &old] {
        run_ok(sik().arg("sign").arg(img).arg("--key").arg(&key));
    }
    let home = t.join("home.img");
    run_ok(
        cmd("mkfs.ext4")
            .args(["-q", "-F", "-L", "home"])
            .arg(&home)
            .arg("4M"),
    );
    Fixture {
        isos: vec![debian, fedora],
        key_pub: t.join("signer.pub"),
        extensions: vec![any, old, unsigned],
        home,
    }
}

/// Put the fixture onto `medium` with `sik boot add`, as a user does.
fn fill(medium: &Path, f: &Fixture) {
    for file in f.isos.iter().chain(&f.extensions) {
        run_ok(sik().args(["boot", "add"]).arg(file).arg(medium));
    }
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(&f.key_pub)
            .arg(medium)
            .args(["--to", "boot/keys/"]),
    );
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(&f.home)
            .arg(medium)
            .args(["--to", "home.img"]),
    );
}

/// A 128 MiB disk image holding one FAT32 filesystem (mformat, no GRUB).
fn fat_image(t: &TestDir) -> PathBuf {
    let img = t.join("medium.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    run_ok(
        cmd("mformat")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .args(["-F", "::"]),
    );
    img
}

fn list_json(medium: &Path) -> Value {
    let out = run_ok(sik().args(["boot", "list", "--json"]).arg(medium));
    let doc: Value = serde_json::from_str(&out).unwrap();
    check_schema("boot-list.json", &doc);
    doc
}

fn links(doc: &Value, ext: &str, iso: &str) -> (Value, String) {
    let e = doc["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(ext))
        .unwrap_or_else(|| panic!("{ext} not listed: {doc}"));
    let v = e["isos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["iso"].as_str().unwrap().ends_with(iso))
        .unwrap_or_else(|| panic!("{iso} not in {e}"));
    (
        v["links"].clone(),
        v["why"].as_str().unwrap_or("").to_string(),
    )
}

fn check_listing(doc: &Value) {
    let isos = doc["isos"].as_array().unwrap();
    assert_eq!(isos.len(), 2, "{doc}");
    let deb = &isos[0];
    assert_eq!(deb["path"], "boot/iso/debian-live.iso");
    assert_eq!(deb["family"], "live-boot");
    assert_eq!(deb["os_release"]["rootfs"], "/live/filesystem.squashfs");
    assert_eq!(deb["os_release"]["fields"]["ID"], "debian");
    assert_eq!(deb["os_release"]["fields"]["VERSION_ID"], "12");
    let fed = &isos[1];
    assert_eq!(fed["family"], "dracut-fedora");
    assert_eq!(
        fed["os_release"]["fields"]["PRETTY_NAME"],
        "Fedora Linux 41"
    );

    assert_eq!(
        links(doc, "tools.ExtensionImage", "debian-live.iso").0,
        true
    );
    assert_eq!(
        links(doc, "tools.ExtensionImage", "fedora-live.iso").0,
        true
    );
    let (l, why) = links(doc, "legacy.ExtensionImage", "debian-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("VERSION_ID=11"), "{why}");
    let (l, why) = links(doc, "legacy.ExtensionImage", "fedora-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("ID=debian"), "{why}");
    let (l, why) = links(doc, "unsigned.ExtensionImage", "debian-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("unsigned"), "{why}");
    let ext = |n: &str| {
        doc["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}: {doc}"))
    };
    assert_eq!(ext("tools")["signature"], "trusted");
    assert_eq!(ext("tools")["version"], "2.0");
    assert_eq!(ext("unsigned")["signature"], "unsigned");
    assert_eq!(doc["keys"], serde_json::json!(["boot/keys/signer.pub"]));
    assert_eq!(doc["home"]["filesystem"], "ext2/3/4");
    assert!(doc["free_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn list_reports_isos_extensions_and_where_they_link() {
    if !require_tool("xorriso") || !require_tool("mksquashfs") || !require_tool("mkfs.ext4") {
        return;
    }
    let t = TestDir::new();
    let f = fixture(&t);

    // A directory medium.
    let dir = t.mkdir("medium");
    fill(&dir, &f);
    let doc = list_json(&dir);
    check_listing(&doc);
    let text = run_ok(sik().args(["boot", "list"]).arg(&dir));
    assert!(text.contains("Debian GNU/Linux 12 (bookworm)"), "{text}");
    assert!(
        text.contains("not linked: built for debian VERSION_ID=11"),
        "{text}"
    );

    // A disk image medium: the same, read in place.
    if require_tool("mformat") {
        let img = fat_image(&t);
        fill(&img, &f);
        check_listing(&list_json(&img));
    }
}

fn check_json(medium: &Path) -> (Option<i32>, Value) {
    let out = run(sik().args(["boot", "check", "--json"]).arg(medium));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    check_schema("boot-check.json", &doc);
    (out.status.code(), doc)
}

fn iso_status(doc: &Value, iso: &str) -> String {
    doc["isos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"].as_str().unwrap().ends_with(iso))
        .unwrap_or_else(|| panic!("{iso}: {doc}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn check_reports_checksums_signatures_staleness_and_unreachable_files() {
    if !require_tool("xorriso")
        || !require_tool("mksquashfs")
        || !require_tool("mkfs.ext4")
        || !require_tool("sha256sum")
        || !require_tool("sha512sum")
    {
        return;
    }
    let t = TestDir::new();
    let f = fixture(&t);
    let plain = live_iso(
        &t,
        "plain-live",
        "live-boot",
        "etc/os-release",
        "ID=debian\n",
    );
    let dir = t.mkdir("medium");
    fill(&dir, &f);
    run_ok(sik().args(["boot", "add"]).arg(&plain).arg(&dir));
    let iso_dir = dir.join("boot/iso");
    // debian: a sidecar NAME.iso.sha256 as sha256sum writes it; fedora: a
    // BSD-style CHECKSUM file (as Fedora publishes, inside PGP armor) and a
    // SHA512SUMS list, then one byte of the ISO changed; plain: no checksum.
    let sum = sh(&iso_dir, "sha256sum debian-live.iso");
    std::fs::write(iso_dir.join("debian-live.iso.sha256"), &sum).unwrap();
    let bsd = sh(&iso_dir, "sha256sum --tag fedora-live.iso");
    std::fs::write(
        iso_dir.join("Fedora-Live-x86_64-CHECKSUM"),
        format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# fedora-live.iso: 1 bytes\n{bsd}-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n"),
    )
    .unwrap();
    let sums = sh(&iso_dir, "sha512sum fedora-live.iso");
    std::fs::write(iso_dir.join("SHA512SUMS"), sums).unwrap();
    let fedora = iso_dir.join("fedora-live.iso");
    let mut bytes = std::fs::read(&fedora).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&fedora, bytes).unwrap();
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(crate::boot::fake_sik(&t))
            .arg(&dir),
    );
    // A stray extension outside an architecture directory.
    std::fs::copy(
        &f.extensions[0],
        dir.join("boot/extensions/stray.ExtensionImage"),
    )
    .unwrap();

    let (code, doc) = check_json(&dir);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(doc["ok"], false);
    assert_eq!(iso_status(&doc, "debian-live.iso"), "ok");
    assert_eq!(iso_status(&doc, "fedora-live.iso"), "mismatch");
    assert_eq!(iso_status(&doc, "plain-live.iso"), "unchecked");
    let fed = doc["isos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "boot/iso/fedora-live.iso")
        .unwrap();
    let algos: Vec<&str> = fed["checksums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["algorithm"].as_str().unwrap())
        .collect();
    assert!(
        algos.contains(&"sha256") && algos.contains(&"sha512"),
        "{fed}"
    );
    let sig = |name: &str| {
        doc["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name}: {doc}"))
            .clone()
    };
    assert_eq!(sig("x86_64/tools.ExtensionImage")["ok"], true);
    assert_eq!(sig("unsigned.ExtensionImage")["signature"], "unsigned");
    assert_eq!(doc["generated"]["current"], true, "{doc}");
    assert_eq!(
        doc["unreachable"][0]["path"],
        "boot/extensions/stray.ExtensionImage"
    );
    let text = run(sik().args(["boot", "check"]).arg(&dir));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("MISMATCH  boot/iso/fedora-live.iso: sha256"),
        "{stdout}"
    );

    // A changed customization makes the generated files stale.
    t.write(
        "medium/boot/customize/policy.toml",
        "allow_directories = true\n",
    );
    let (_, doc) = check_json(&dir);
    assert_eq!(doc["generated"]["current"], false);
    let changed = doc["generated"]["would_change"].as_array().unwrap();
    assert!(changed.contains(&"boot/sik/initrd.img".into()), "{doc}");
    assert!(!changed.contains(&"boot/grub/grub.cfg".into()), "{doc}");

    // Everything put right: exit 0.
    std::fs::remove_file(dir.join("boot/extensions/stray.ExtensionImage")).unwrap();
    std::fs::remove_file(dir.join("boot/extensions/x86_64/unsigned.ExtensionImage")).unwrap();
    std::fs::remove_file(&fedora).unwrap();
    std::fs::remove_file(iso_dir.join("SHA512SUMS")).unwrap();
    std::fs::remove_file(iso_dir.join("Fedora-Live-x86_64-CHECKSUM")).unwrap();
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(crate::boot::fake_sik(&t))
            .arg(&dir),
    );
    let (code, doc) = check_json(&dir);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["ok"], true);

    // A disk image medium: the checksums are read and the ISO hashed in place.
    if require_tool("mformat") {
        let img = fat_image(&t);
        run_ok(sik().args(["boot", "add"]).arg(&f.isos[0]).arg(&img));
        run_ok(sik().args(["boot", "add"]).arg(&plain).arg(&img));
        let side = t.write("debian-live.iso.sha256", sum);
        run_ok(
            sik()
                .args(["boot", "add"])
                .arg(&side)
                .arg(&img)
                .args(["--to", "boot/iso/"]),
        );
        let (code, doc) = check_json(&img);
        // Never generated: the check fails on that, the ISOs are judged.
        assert_eq!(code, Some(1), "{doc}");
        assert_eq!(iso_status(&doc, "debian-live.iso"), "ok");
        assert_eq!(iso_status(&doc, "plain-live.iso"), "unchecked");
        assert!(
            doc["generated"]["error"]
                .as_str()
                .unwrap()
                .contains("missing"),
            "{doc}"
        );
    }
}

#[test]
fn remove_takes_items_and_their_sidecars_off_the_medium() {
    if !require_tool("xorriso") || !require_tool("mksquashfs") || !require_tool("mkfs.ext4") {
        return;
    }
    let t = TestDir::new();
    let f = fixture(&t);
    let mut media = vec![t.mkdir("medium")];
    if require_tool("mformat") {
        media.push(fat_image(&t));
    }
    for medium in &media {
        fill(medium, &f);
        let side = t.write("debian-live.iso.sha256", "00  debian-live.iso\n");
        run_ok(
            sik()
                .args(["boot", "add"])
                .arg(&side)
                .arg(medium)
                .args(["--to", "boot/iso/"]),
        );
        let out = run_ok(
            sik()
                .args(["boot", "remove", "debian-live", "--json"])
                .arg(medium),
        );
        let doc: Value = serde_json::from_str(&out).unwrap();
        check_schema("boot-remove.json", &doc);
        assert_eq!(
            doc["removed"],
            serde_json::json!([
                "boot/iso/debian-live.iso",
                "boot/iso/debian-live.iso.sha256"
            ])
        );
        // An extension by its name; the same name twice is refused.
        run_ok(
            sik()
                .args(["boot", "add", "--arch", "aarch64"])
                .arg(&f.extensions[0])
                .arg(medium),
        );
        let out = run(sik().args(["boot", "remove", "tools"]).arg(medium));
        assert_fails(&out, 2, &["boot remove", "more than one file"]);
        let out = run_ok(
            sik()
                .args([
                    "boot",
                    "remove",
                    "boot/extensions/aarch64/tools.ExtensionImage",
                ])
                .arg(medium),
        );
        assert!(out.contains("removed boot/extensions/aarch64/tools.ExtensionImage"));
        run_ok(
            sik()
                .args(["boot", "remove", "tools.ExtensionImage"])
                .arg(medium),
        );
        let out = run(sik().args(["boot", "remove", "tools"]).arg(medium));
        assert_fails(
            &out,
            2,
            &["boot remove", "no ISO, ExtensionImage or AppImage"],
        );
        let out = run(sik()
            .args(["boot", "remove", "boot/../etc/passwd"])
            .arg(medium));
        assert_fails(&out, 2, &["boot remove", "not a plain path"]);
        let doc = list_json(medium);
        let isos: Vec<&str> = doc["isos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap())
            .collect();
        assert_eq!(isos, ["boot/iso/fedora-live.iso"]);
        assert_eq!(doc["extensions"].as_array().unwrap().len(), 2, "{doc}");
    }
}

/// `list` and `check` on a disk image made by `sik boot install` with its
/// default exFAT DATA, read in place through sik's own exFAT reader: a
/// correct, a corrupted and an unchecksummed ISO; signed, unsigned and
/// incompatible extensions; an ISO's own extension (linked for that ISO
/// only) and a directory of extensions for no ISO (unreachable). Both JSON
/// documents are validated against their schemas.
#[test]
fn list_and_check_read_an_exfat_image_medium() {
    if !require_tool("xorriso")
        || !require_tool("mksquashfs")
        || !require_tool("mkfs.ext4")
        || !require_tool("mkfs.exfat")
        || !require_tool("grub-mkimage")
        || !require_tool("sha256sum")
    {
        return;
    }
    let t = TestDir::new();
    let f = fixture(&t);
    let img = t.join("stick.img");
    let out = run_ok(
        sik()
            .args(["boot", "install", "--json", "--image"])
            .arg(&img)
            .args(["--size", "256M", "--sik-binary"])
            .arg(crate::boot::fake_sik(&t)),
    );
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["data_fs"], "exfat", "{doc}");
    // Zeros written to an image file become holes: 64 MiB of them (a
    // sparse file, as a padded ISO is) leave the image's allocation about
    // where it was.
    let used =
        |p: &Path| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).unwrap()) * 512;
    let before = used(&img);
    let zeros = t.join("zeros.bin");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run_ok(
        sik()
            .args(["boot", "add"])
            .arg(&zeros)
            .arg(&img)
            .args(["--to", "zeros.bin"]),
    );
    assert!(
        used(&img) < before + (1 << 20),
        "{} -> {}",
        before,
        used(&img)
    );
    fill(&img, &f);
    let plain = live_iso(
        &t,
        "plain-live",
        "live-boot",
        "etc/os-release",
        "ID=debian\n",
    );
    run_ok(sik().args(["boot", "add"]).arg(&plain).arg(&img));
    // Sidecars: debian's digest of the ISO itself; fedora's of the ISO
    // before one byte of the copy put on the medium was changed.
    let dir = f.isos[0].parent().unwrap();
    let side = t.write(
        "sums/debian-live.iso.sha256",
        sh(dir, "sha256sum debian-live.iso"),
    );
    let fed_side = t.write(
        "sums/fedora-live.iso.sha256",
        sh(dir, "sha256sum fedora-live.iso"),
    );
    for s in [&side, &fed_side] {
        run_ok(
            sik()
                .args(["boot", "add"])
                .arg(s)
                .arg(&img)
                .args(["--to", "boot/iso/"]),
        );
    }
    let bad = t.mkdir("bad").join("fedora-live.iso");
    let mut bytes = std::fs::read(&f.isos[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&bad, bytes).unwrap();
    run_ok(sik().args(["boot", "add"]).arg(&bad).arg(&img));
    // The Debian ISO's own extension, and one for an ISO the medium lacks.
    let own = extension(&t, "own", "ID=_any\n");
    run_ok(
        sik()
            .arg("sign")
            .arg(&own)
            .arg("--key")
            .arg(t.join("signer")),
    );
    for to in [
        "boot/extensions/debian-live/x86_64/",
        "boot/extensions/no-such-iso/x86_64/",
    ] {
        run_ok(
            sik()
                .args(["boot", "add"])
                .arg(&own)
                .arg(&img)
                .args(["--to", to]),
        );
    }
    run_ok(
        sik()
            .args(["boot", "generate", "--sik-binary"])
            .arg(crate::boot::fake_sik(&t))
            .arg(&img),
    );

    let doc = list_json(&img);
    let isos: Vec<&str> = doc["isos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        isos,
        [
            "boot/iso/debian-live.iso",
            "boot/iso/fedora-live.iso",
            "boot/iso/plain-live.iso"
        ],
        "{doc}"
    );
    assert_eq!(doc["isos"][0]["os_release"]["fields"]["ID"], "debian");
    assert_eq!(
        links(&doc, "x86_64/tools.ExtensionImage", "debian-live.iso").0,
        true
    );
    let (l, why) = links(&doc, "legacy.ExtensionImage", "debian-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("VERSION_ID=11"), "{why}");
    let (l, why) = links(&doc, "unsigned.ExtensionImage", "fedora-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("unsigned"), "{why}");
    let own_path = "debian-live/x86_64/own.ExtensionImage";
    assert_eq!(links(&doc, own_path, "debian-live.iso").0, true, "{doc}");
    let (l, why) = links(&doc, own_path, "fedora-live.iso");
    assert_eq!(l, false);
    assert!(why.contains("only when that ISO boots"), "{why}");
    assert_eq!(links(&doc, own_path, "plain-live.iso").0, false);
    assert_eq!(doc["home"]["filesystem"], "ext2/3/4");

    let (code, doc) = check_json(&img);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(iso_status(&doc, "debian-live.iso"), "ok");
    assert_eq!(iso_status(&doc, "fedora-live.iso"), "mismatch");
    assert_eq!(iso_status(&doc, "plain-live.iso"), "unchecked");
    let sig = |name: &str| {
        doc["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name}: {doc}"))
            .clone()
    };
    assert_eq!(sig("x86_64/tools.ExtensionImage")["ok"], true);
    assert_eq!(sig("x86_64/legacy.ExtensionImage")["ok"], true);
    assert_eq!(
        sig("x86_64/unsigned.ExtensionImage")["signature"],
        "unsigned"
    );
    assert_eq!(sig(own_path)["ok"], true);
    assert_eq!(doc["generated"]["current"], true, "{doc}");
    let unreachable: Vec<&str> = doc["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(unreachable, ["boot/extensions/no-such-iso"], "{doc}");
}

/// `list` reads the os-release of ISOs whose root filesystem is EROFS
/// (mkfs.erofs): `usr/lib/os-release` in a directory of several blocks
/// with `etc/os-release` a relative link to it, and only an absolute link
/// `etc/os-release` in another; an os-release that mkfs.erofs compressed
/// (lz4) is reported as unknown with that reason, not guessed.
#[test]
fn list_reads_os_release_from_erofs_root_filesystems() {
    if !require_tool("mkfs.erofs") || !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    let medium = t.mkdir("medium");
    let cases: [(&str, &[&str]); 3] = [
        ("erofs-plain", &[]),
        ("erofs-link", &[]),
        ("erofs-lz4", &["-zlz4hc"]),
    ];
    for (name, opts) in cases {
        let root = t.mkdir(&format!("root-{name}"));
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let text = match name {
            // Compressible, several blocks: mkfs.erofs stores it compressed.
            "erofs-lz4" => format!(
                "ID=lz4\nVERSION_ID=1\n{}",
                "# padding comment line that compresses well\n".repeat(600)
            ),
            _ => format!("ID={name}\nVERSION_ID=42\nPRETTY_NAME=\"EROFS Linux 42\"\n"),
        };
        if name == "erofs-link" {
            std::fs::create_dir_all(root.join("opt/os")).unwrap();
            std::fs::write(root.join("opt/os/release"), &text).unwrap();
            std::os::unix::fs::symlink("/opt/os/release", root.join("etc/os-release")).unwrap();
        } else {
            std::fs::write(root.join("usr/lib/os-release"), &text).unwrap();
            std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release"))
                .unwrap();
            // Names enough for usr/lib's directory to span several blocks.
            for i in 0..400 {
                std::fs::write(root.join(format!("usr/lib/libfiller-{i:04}.so")), "x").unwrap();
            }
        }
        let tree = t.mkdir(&format!("tree-{name}"));
        for p in ["images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"] {
            std::fs::create_dir_all(tree.join(p).parent().unwrap()).unwrap();
            std::fs::write(tree.join(p), "k\n").unwrap();
        }
        std::fs::create_dir_all(tree.join("LiveOS")).unwrap();
        run_ok(
            cmd("mkfs.erofs")
                .arg("--quiet")
                .args(opts)
                .arg(tree.join("LiveOS/squashfs.img"))
                .arg(&root),
        );
        let iso = t.join(format!("{name}.iso"));
        run_ok(&mut mkisofs(&tree, &iso, "EROFS_TEST"));
        run_ok(sik().args(["boot", "add"]).arg(&iso).arg(&medium));
    }
    let json = run_ok(sik().args(["boot", "list", "--json"]).arg(&medium));
    let doc: Value = serde_json::from_str(&json).unwrap();
    check_schema("boot-list.json", &doc);
    let by = |stem: &str| {
        doc["isos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["path"] == format!("boot/iso/{stem}.iso"))
            .unwrap_or_else(|| panic!("no {stem} in {json}"))
            .clone()
    };
    for stem in ["erofs-plain", "erofs-link"] {
        let iso = by(stem);
        assert_eq!(iso["os_release"]["filesystem"], "erofs", "{json}");
        assert_eq!(iso["os_release"]["rootfs"], "/LiveOS/squashfs.img");
        assert_eq!(iso["os_release"]["fields"]["ID"], stem, "{json}");
        assert_eq!(iso["os_release"]["fields"]["PRETTY_NAME"], "EROFS Linux 42");
    }
    let lz4 = by("erofs-lz4");
    assert_eq!(lz4["os_release"]["filesystem"], "erofs");
    let why = lz4["os_release"]["unknown"].as_str().unwrap_or_default();
    assert!(why.contains("compressed files are not read"), "{json}");
}
