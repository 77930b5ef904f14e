//! Hostile input: real images, archives and ISOs made by real tools, then
//! truncated at their structure boundaries, bit-flipped at fixed offsets and
//! given absurd counts, sizes and paths. Every `sik` run over them must end
//! in bounded time and memory (a timeout and an address-space limit), never
//! panic, print exactly one `sik: error:` line when it fails, and never
//! write outside its target directory.
//!
//! The mutations are deterministic (fixed offsets, no randomness), so a
//! failure here reproduces on every run.

mod mutate;

use crate::util::*;
use mutate::*;

/// Squashfs made by mksquashfs with uncompressed metadata (so flips hit the
/// structures themselves) and one made by `sik create extension` (zstd).
#[test]
fn squashfs_truncated_flipped_and_absurd() {
    if !require_tool("mksquashfs") || !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    let tree = sample_tree(&t);
    let plain = t.join("plain.ExtensionImage");
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&plain)
            .args(["-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet"])
            .args(["-all-root", "-mkfs-time", "0", "-all-time", "0"]),
    );
    let packed = t.join("packed.ExtensionImage");
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(&tree)
            .arg("-o")
            .arg(&packed),
    );
    let ws = Workspace::new(&t);
    for (label, image) in [("plain", &plain), ("packed", &packed)] {
        let bytes = std::fs::read(image).unwrap();
        // Sanity: the unmutated image passes every command under the limits.
        ws.squashfs_all(&format!("{label}/original"), &bytes, true);
        for (name, m) in squashfs_mutants(&bytes) {
            ws.squashfs_all(&format!("{label}/{name}"), &m, false);
        }
    }
    let bytes = std::fs::read(&plain).unwrap();
    // Directory loops: refused by backhand's reader (inspect --list,
    // extract), never an endless walk.
    for (name, m) in dir_loop_mutants(&bytes) {
        let code = ws.squashfs_all(&format!("plain/{name}"), &m, false);
        assert_eq!(code, 2, "plain/{name}: extract accepted a directory loop");
    }
    // Entry names that climb out, hold `/` or NUL: extraction refuses them.
    for (name, m) in name_mutants(&bytes) {
        let code = ws.squashfs_all(&format!("plain/{name}"), &m, false);
        assert_eq!(
            code, 2,
            "plain/{name}: extract accepted a hostile entry name"
        );
    }
}

/// `sik link` (loop mount as root) of truncated, flipped and badly named
/// SquashFS images: refused or linked, never a panic or a write outside the
/// root and the state directory.
#[test]
fn link_hostile_squashfs() {
    if !require_root() || !require_tool("mksquashfs") || !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    let tree = sample_tree(&t);
    let plain = t.join("plain.ExtensionImage");
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&plain)
            .args(["-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet"])
            .args(["-all-root", "-mkfs-time", "0", "-all-time", "0"]),
    );
    let ws = Workspace::new(&t);
    let bytes = std::fs::read(&plain).unwrap();
    assert_eq!(ws.link("link/original", &bytes, true), 0);
    let mutants = squashfs_mutants(&bytes)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("flip-") || n.ends_with("0"))
        .chain(name_mutants(&bytes))
        .chain(dir_loop_mutants(&bytes));
    for (name, m) in mutants {
        ws.link(&format!("link/{name}"), &m, false);
    }
}

/// Tar archives with paths that climb out, absolute paths, hard links to
/// outside the tree and a file written through a symlink; .debs with broken
/// ar member sizes.
#[test]
fn archives_with_escaping_paths() {
    if !require_tool("prlimit") || !require_tool("dpkg-deb") {
        return;
    }
    let t = TestDir::new();
    let ws = Workspace::new(&t);
    let outside = ws.sentinel.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<TarEntry>)> = vec![
        ("dotdot", vec![TarEntry::file("../../etc/evil", b"x")]),
        (
            "dotdot-inner",
            vec![TarEntry::file("usr/../../../evil", b"x")],
        ),
        ("absolute", vec![TarEntry::file("/etc/evil", b"x")]),
        (
            "absolute-sentinel",
            vec![TarEntry::file(&format!("{outside}/evil"), b"x")],
        ),
        (
            "dotdot-dir",
            vec![TarEntry::dir("../up"), TarEntry::file("../up/f", b"x")],
        ),
        (
            "hardlink-out",
            vec![TarEntry::hardlink("usr/passwd", "../../../../etc/passwd")],
        ),
        (
            "hardlink-abs",
            vec![TarEntry::hardlink("usr/passwd", "/etc/passwd")],
        ),
        (
            "symlink-then-file",
            vec![
                TarEntry::symlink("a", &outside),
                TarEntry::file("a/evil", b"x"),
            ],
        ),
        (
            "symlink-dotdot-then-file",
            vec![
                TarEntry::symlink("b", "../../.."),
                TarEntry::file("b/evil", b"x"),
            ],
        ),
        (
            "symlink-out-only",
            vec![TarEntry::symlink("usr/l", "../../etc/shadow")],
        ),
        ("dot-name", vec![TarEntry::file("usr/..", b"x")]),
        ("empty-name", vec![TarEntry::file("", b"x")]),
        (
            "huge-size",
            vec![TarEntry::raw_size("usr/f", "77777777777")],
        ),
        (
            "size-past-end",
            vec![TarEntry::raw_size("usr/f", "00000100000")],
        ),
    ];
    for (name, entries) in cases {
        let tar = t.join(format!("{name}.tar"));
        std::fs::write(&tar, build_tar(&entries)).unwrap();
        let code = ws.create_from(&format!("tar/{name}"), &tar);
        // Paths that climb out or are absolute, hard links out of the tree,
        // files written through a symlink and broken sizes are refused; a
        // symlink pointing out is kept as a symlink (it is never followed),
        // an empty name is skipped.
        if !matches!(name, "symlink-out-only" | "empty-name") {
            assert_eq!(code, 2, "tar/{name}: create accepted a hostile archive");
        }
    }
    // A truncated tar (half a header).
    let tar = t.join("truncated.tar");
    let full = build_tar(&[TarEntry::file("usr/f", b"hello")]);
    std::fs::write(&tar, &full[..300]).unwrap();
    ws.create_from("tar/truncated", &tar);

    // .deb: a real one, then absurd / truncated ar member sizes.
    let deb_tree = t.mkdir("deb/DEBIAN");
    std::fs::write(
        deb_tree.join("control"),
        "Package: hostile\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: t\n",
    )
    .unwrap();
    t.write("deb/usr/share/hostile/f", "hello\n");
    let deb = t.join("good.deb");
    run_ok(
        cmd("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(t.join("deb"))
            .arg(&deb),
    );
    let bytes = std::fs::read(&deb).unwrap();
    ws.create_from("deb/original", &deb);
    for (name, m) in deb_mutants(&bytes) {
        let p = t.join(format!("{name}.deb"));
        std::fs::write(&p, m).unwrap();
        let code = ws.create_from(&format!("deb/{name}"), &p);
        assert_eq!(code, 2, "deb/{name}: create accepted a broken .deb");
    }
}

/// AppImages whose ELF header or section headers lie: truncated, sections
/// out of the file, overlapping, absurd counts; and broken signatures in
/// `.sha256_sig`.
#[test]
fn appimage_elf_sections() {
    if !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    let dir = hello_appdir(&t, "Hello.AppDir", "#!/bin/sh\necho hello\n", "");
    let image = t.join("Hello.AppImage");
    run_ok(
        sik()
            .args(["create", "appimage", "-q"])
            .arg(&dir)
            .arg("-o")
            .arg(&image),
    );
    let ws = Workspace::new(&t);
    let bytes = std::fs::read(&image).unwrap();
    ws.image_all("appimage/original", &bytes, true);
    for (name, m) in elf_mutants(&bytes) {
        ws.image_all(&format!("appimage/{name}"), &m, false);
    }
}

/// ISOs from xorriso: truncated around the PVD and inside the root
/// directory, absurd extents and sizes, and directory cycles.
#[test]
fn iso_truncated_cycles_and_absurd() {
    if !require_tool("xorriso") || !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    t.write("iso/casper/vmlinuz", "kernel");
    t.write("iso/casper/initrd", "initrd");
    t.write("iso/casper/filesystem.squashfs", "fs");
    t.write(
        "iso/boot/grub/grub.cfg",
        "menuentry \"Try\" {\n linux /casper/vmlinuz boot=casper quiet\n initrd /casper/initrd\n}\n",
    );
    t.write("iso/.disk/info", "Ubuntu 24.04 LTS");
    t.write("iso/a/b/c/d/e", "deep");
    // A name too long for the directory record: Rock Ridge continues it in
    // a continuation area (CE).
    t.write(&format!("iso/casper/{}", "long-name-".repeat(20)), "x");
    let iso = t.join("live.iso");
    run_ok(&mut mkisofs(&t.join("iso"), &iso, "HOSTILE"));
    let ws = Workspace::new(&t);
    let bytes = std::fs::read(&iso).unwrap();
    ws.iso_all("iso/original", &bytes, true);
    for (name, m) in iso_mutants(&bytes) {
        ws.iso_all(&format!("iso/{name}"), &m, false);
    }
    // Hostile Rock Ridge and Joliet names: an entry named `../../x`,
    // `vm/linu` or with a NUL is no entry, so the kernel is not found
    // under any of them and detect does not offer the ISO.
    for (name, m) in iso_name_mutants(&bytes) {
        let code = ws.detect(&format!("iso/{name}"), &m);
        if name.starts_with("rr-name-") {
            assert_eq!(code, 1, "iso/{name}: detect accepted a hostile kernel name");
        }
        ws.iso_all(&format!("iso/{name}"), &m, false);
    }
}

/// Signed ExtensionImages whose signature block is truncated, garbage or
/// has absurd lengths in its footer.
#[test]
fn signature_blocks() {
    if !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    let tree = sample_tree(&t);
    let (key, _) = sik_key(&t, "key");
    let image = t.join("signed.ExtensionImage");
    run_ok(
        sik()
            .args(["create", "extension", "-q", "--no-verity"])
            .arg(&tree)
            .arg("-o")
            .arg(&image)
            .arg("--sign")
            .arg(&key),
    );
    let ws = Workspace::with_key(&t, &t.join("key.pub"));
    let bytes = std::fs::read(&image).unwrap();
    ws.squashfs_all("sig/original", &bytes, true);
    let v = ws.verify("sig/original-verify", &bytes);
    assert_eq!(v, Some(0), "the signed original verifies");
    for (name, m) in signature_mutants(&bytes) {
        ws.squashfs_all(&format!("sig/{name}"), &m, false);
        let code = ws.verify(&format!("sig/{name}"), &m);
        // A broken block is never trusted.
        assert_ne!(
            code,
            Some(0),
            "sig/{name}: a broken signature block verified"
        );
    }
}

/// Signed ExtensionImages with a dm-verity block (tree, descriptor,
/// footer version 2) changed anywhere after the filesystem: never trusted,
/// never a crash.
#[test]
fn verity_blocks() {
    if !require_tool("prlimit") {
        return;
    }
    let t = TestDir::new();
    let tree = sample_tree(&t);
    let (key, _) = sik_key(&t, "key");
    let image = t.join("signed.ExtensionImage");
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(&tree)
            .arg("-o")
            .arg(&image)
            .arg("--sign")
            .arg(&key),
    );
    let ws = Workspace::with_key(&t, &t.join("key.pub"));
    let b = std::fs::read(&image).unwrap();
    assert_eq!(ws.verify("verity/original", &b), Some(0));
    let len = b.len();
    assert_eq!(&b[len - 32..len - 24], b"SIK-SIG\0");
    assert_eq!(&b[len - 160..len - 152], b"SIK-VRTY");
    let p = u64::from_be_bytes(b[len - 8..].try_into().unwrap()) as usize;
    let mut mutants: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [p + 1, p + 4096, len - 160, len - 33, len - 1] {
        if cut >= len {
            continue;
        }
        mutants.push((format!("cut-{cut}"), b[..cut].to_vec()));
    }
    // Every byte of the descriptor and the footer, and the tree's blocks.
    for o in (len - 160..len).chain((p..len - 160).step_by(509)) {
        let mut v = b.clone();
        v[o] ^= 0x01;
        mutants.push((format!("flip-{}", o - p), v));
    }
    for (name, m) in mutants {
        ws.squashfs_all(&format!("verity/{name}"), &m, false);
        let code = ws.verify(&format!("verity/{name}"), &m);
        assert_ne!(
            code,
            Some(0),
            "verity/{name}: a broken verity block verified"
        );
    }
}

fn sample_tree(t: &TestDir) -> std::path::PathBuf {
    t.write("tree/usr/share/hostile/a.txt", "alpha\n".repeat(100));
    t.write(
        "tree/usr/share/hostile/b.bin",
        (0..=255u8).cycle().take(70000).collect::<Vec<u8>>(),
    );
    t.write(
        "tree/usr/lib/extension-release.d/extension-release.tree",
        "ID=_any\n",
    );
    t.write("tree/etc/hostile.conf", "x=1\n");
    t.mkdir("tree/usr/share/empty");
    std::os::unix::fs::symlink("a.txt", t.join("tree/usr/share/hostile/link")).unwrap();
    t.join("tree")
}
