//! ExtensionImages end to end: `sik create extension` from directories,
//! tar archives and .deb packages, checked with the Linux kernel (loop
//! mount), unsquashfs and systemd-sysext; `sik inspect` and `sik extract`
//! on images made by mksquashfs; bad input.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::util::*;

/// Everything the tests compare about one entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    /// File content digest, symlink target, or device numbers.
    content: String,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Snapshot of a tree: path → node, plus the hard-link groups (paths that
/// share an inode, sorted).
fn snapshot(root: &Path, with_xattrs: bool) -> (BTreeMap<String, Node>, Vec<Vec<String>>) {
    let mut map = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = e.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let (kind, content) = if ft.is_dir() {
            ('d', String::new())
        } else if ft.is_symlink() {
            (
                'l',
                fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if ft.is_file() {
            if md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(rel.clone());
            }
            let data = fs::read(e.path()).unwrap();
            (
                '-',
                format!("{}:{:x}", data.len(), xxhash_rust::xxh3::xxh3_64(&data)),
            )
        } else if ft.is_char_device() {
            ('c', format!("{}", md.rdev()))
        } else if ft.is_block_device() {
            ('b', format!("{}", md.rdev()))
        } else if ft.is_fifo() {
            ('p', String::new())
        } else {
            ('s', String::new())
        };
        let mut xattrs = Vec::new();
        if with_xattrs && !ft.is_symlink() {
            for name in xattr::list(e.path()).unwrap() {
                let n = name.to_string_lossy().into_owned();
                if n.starts_with("user.") {
                    xattrs.push((n, xattr::get(e.path(), &name).unwrap().unwrap_or_default()));
                }
            }
            xattrs.sort();
        }
        let mtime = if rel.is_empty() { 0 } else { md.mtime() };
        map.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime,
                content,
                xattrs,
            },
        );
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    (map, groups)
}

/// A source tree with every kind of entry an ExtensionImage holds. Device
/// nodes only when running as root.
fn make_source(t: &TestDir, as_root: bool) -> std::path::PathBuf {
    let src = t.mkdir("src");
    t.write("src/usr/lib/firmware/acme/fw.bin", vec![0xA5u8; 300_000]);
    t.write("src/usr/lib/firmware/acme/small.bin", b"tiny firmware");
    t.write("src/usr/bin/acme-tool", b"#!/bin/sh\necho acme\n");
    fs::set_permissions(
        src.join("usr/bin/acme-tool"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    t.write("src/usr/share/doc/acme/empty", b"");
    // Identical content in two files: deduplicated, still two inodes.
    t.write(
        "src/usr/share/doc/acme/copy1",
        b"same content in two files\n",
    );
    t.write(
        "src/usr/share/doc/acme/copy2",
        b"same content in two files\n",
    );
    // 2 MiB with a hole in the middle: sparse blocks.
    let mut sparse = vec![0u8; 2 << 20];
    sparse[..4096].fill(1);
    sparse[(2 << 20) - 10..].fill(2);
    t.write("src/usr/share/acme/sparse.img", &sparse);
    t.mkdir("src/usr/share/acme/empty-dir");
    t.write("src/etc/acme.conf", b"key=value\n");
    t.write("src/ExtensionRun", b"#!/bin/sh\ntouch /run/acme-ran\n");
    fs::set_permissions(src.join("ExtensionRun"), fs::Permissions::from_mode(0o755)).unwrap();
    // Symlinks: relative, absolute, dangling.
    std::os::unix::fs::symlink("../lib/firmware/acme/fw.bin", src.join("usr/bin/fw-link")).unwrap();
    std::os::unix::fs::symlink("/etc/acme.conf", src.join("usr/share/acme/abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", src.join("usr/share/acme/dangling")).unwrap();
    // Hard links.
    fs::hard_link(
        src.join("usr/bin/acme-tool"),
        src.join("usr/bin/acme-tool-alias"),
    )
    .unwrap();
    fs::hard_link(
        src.join("usr/bin/acme-tool"),
        src.join("usr/share/acme/third-name"),
    )
    .unwrap();
    // Special modes.
    t.write("src/usr/bin/acme-suid", b"suid");
    fs::set_permissions(
        src.join("usr/bin/acme-suid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    t.mkdir("src/usr/share/acme/sticky");
    fs::set_permissions(
        src.join("usr/share/acme/sticky"),
        fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    t.mkdir("src/usr/share/acme/setgid");
    fs::set_permissions(
        src.join("usr/share/acme/setgid"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    // A fifo; devices need root.
    run_ok(cmd("mkfifo").arg(src.join("usr/share/acme/fifo")));
    if as_root {
        run_ok(
            cmd("mknod")
                .arg(src.join("usr/share/acme/null"))
                .args(["c", "1", "3"]),
        );
        run_ok(
            cmd("mknod")
                .arg(src.join("usr/share/acme/loopdev"))
                .args(["b", "7", "200"]),
        );
    }
    // Extended attributes (user namespace works on ext4/xfs/tmpfs).
    let _ = xattr::set(
        src.join("usr/lib/firmware/acme/small.bin"),
        "user.origin",
        b"vendor",
    );
    // A directory with many entries (several metadata blocks).
    for i in 0..300 {
        t.write(
            &format!("src/usr/share/acme/many/entry-{i:03}"),
            format!("{i}"),
        );
    }
    // Fixed mtimes everywhere (symlinks included), different per entry.
    let mut n = 0;
    for e in walkdir::WalkDir::new(&src).contents_first(true) {
        let e = e.unwrap();
        n += 1;
        run_ok(
            cmd("touch")
                .arg("-h")
                .arg("-d")
                .arg(format!("@{}", 1_600_000_000 + n * 61))
                .arg(e.path()),
        );
    }
    src
}

fn create(src: &Path, out: &Path, extra: &[&str]) -> String {
    let o = run(sik()
        .args(["create", "extension"])
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(extra));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "sik create failed: {stderr}");
    stderr
}

fn unsquashfs_listing(image: &Path) -> String {
    let out = run_ok(cmd("unsquashfs").arg("-lln").arg(image));
    // Directory sizes depend on the directory table layout; compare the rest.
    out.lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Parallel unsquashfs")
                && !l.contains("inodes (")
                && !l.starts_with("created ")
        })
        .map(|l| {
            if l.starts_with('d') {
                mask_size(l)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn mask_size(line: &str) -> String {
    let mut parts: Vec<&str> = line.splitn(4, ' ').collect();
    // mode, owner, (spaces…) size date time path: collapse the size column.
    let rest = line[parts[0].len() + 1..].to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    parts.truncate(1);
    format!("{} {} SIZE {}", parts[0], fields[0], fields[2..].join(" "))
}

#[test]
fn kernel_mounts_what_was_written() {
    if !require_root() || !require_tool("mount") {
        return;
    }
    let t = TestDir::new();
    let src = make_source(&t, true);
    let img = t.join("acme.ExtensionImage");
    let stderr = create(&src, &img, &["--keep-owner", "--os-id", "_any"]);
    assert!(
        stderr.contains("setuid, setgid or sticky"),
        "special modes are reported: {stderr}"
    );

    let mnt = t.mkdir("mnt");
    run_ok(
        cmd("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(&img)
            .arg(&mnt),
    );
    let (mut want, want_links) = snapshot(&src, true);
    let (mut got, got_links) = snapshot(&mnt, true);
    run_ok(cmd("umount").arg(&mnt));
    // The generated metadata is the only addition.
    let release = "usr/lib/extension-release.d/extension-release.acme";
    let rel = got.remove(release).expect("extension-release file");
    assert_eq!(rel.kind, '-');
    got.remove("usr/lib/extension-release.d");
    want.remove("");
    got.remove("");
    for (path, node) in &want {
        assert_eq!(got.get(path), Some(node), "entry {path}");
    }
    assert_eq!(want.len(), got.len(), "same number of entries");
    assert_eq!(want_links, got_links, "hard-link groups");
}

#[test]
fn unsquashfs_lists_the_same_tree_as_mksquashfs_makes() {
    if !require_tool("unsquashfs") || !require_tool("mksquashfs") {
        return;
    }
    let t = TestDir::new();
    let src = make_source(&t, false);
    // The source carries its own extension-release file, so both images
    // hold exactly the source tree.
    t.write(
        "src/usr/lib/extension-release.d/extension-release.acme",
        "ID=_any\n",
    );
    run_ok(
        cmd("touch")
            .args(["-h", "-d", "@1600000000"])
            .arg(src.join("usr/lib/extension-release.d/extension-release.acme"))
            .arg(src.join("usr/lib/extension-release.d"))
            .arg(src.join("usr/lib"))
            .arg(src.join("usr")),
    );
    let ours = t.join("acme.ExtensionImage");
    create(&src, &ours, &[]);
    let theirs = t.join("ref.sqfs");
    run_ok(cmd("mksquashfs").arg(&src).arg(&theirs).args([
        "-all-root",
        "-no-progress",
        "-quiet",
        "-comp",
        "zstd",
    ]));
    let a = unsquashfs_listing(&ours);
    let b = unsquashfs_listing(&theirs);
    assert_same_lines(
        &a.lines().map(str::to_string).collect::<Vec<_>>(),
        &b.lines().map(str::to_string).collect::<Vec<_>>(),
        "ours vs mksquashfs",
    );

    // `sik inspect --list` prints the same lines.
    let list = run_ok(sik().args(["inspect", "--list"]).arg(&ours));
    let list: Vec<String> = list
        .lines()
        .map(|l| {
            if l.starts_with('d') {
                mask_size(l)
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_same_lines(
        &list,
        &a.lines().map(str::to_string).collect::<Vec<_>>(),
        "sik inspect --list vs unsquashfs -lln",
    );
}

#[test]
fn same_input_gives_identical_bytes() {
    let t = TestDir::new();
    let src = make_source(&t, false);
    let a = t.join("a.ExtensionImage");
    let b = t.join("b.ExtensionImage");
    create(&src, &a, &["--name", "acme"]);
    create(&src, &b, &["--name", "acme", "--threads", "1"]);
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "two runs (2 threads and 1) give identical bytes"
    );
    let c = t.join("c.ExtensionImage");
    let o = run(sik()
        .args(["create", "extension"])
        .arg(&src)
        .arg("-o")
        .arg(&c)
        .args(["--name", "acme"])
        .env("SOURCE_DATE_EPOCH", "1234567890"));
    assert!(o.status.success());
    let json = run_ok(sik().args(["inspect", "--json"]).arg(&c));
    let v = assert_schema("inspect", &json);
    assert_eq!(
        v["extension"]["squashfs"]["created"], 1234567890,
        "SOURCE_DATE_EPOCH sets the image time"
    );
}

#[test]
fn every_compressor_round_trips_through_extract() {
    let t = TestDir::new();
    let src = make_source(&t, false);
    for comp in ["zstd", "xz", "gzip", "lz4"] {
        let img = t.join(format!("{comp}.ExtensionImage"));
        create(&src, &img, &["--compression", comp, "--name", "acme"]);
        let json = run_ok(sik().args(["inspect", "--json"]).arg(&img));
        let v = assert_schema("inspect", &json);
        assert_eq!(v["extension"]["squashfs"]["compression"], comp);
        let out = t.join(format!("out-{comp}"));
        run_ok(sik().args(["extract", "-q"]).arg(&img).arg("-o").arg(&out));
        let (mut want, wl) = snapshot(&src, false);
        let (mut got, gl) = snapshot(&out, false);
        got.remove("usr/lib/extension-release.d/extension-release.acme");
        got.remove("usr/lib/extension-release.d");
        want.remove("");
        got.remove("");
        for node in want.values_mut().chain(got.values_mut()) {
            node.uid = 0;
            node.gid = 0;
        }
        assert_eq!(want, got, "{comp}");
        assert_eq!(wl, gl, "{comp} hard links");
        if have_tool("unsquashfs") {
            let dir = t.join(format!("unsq-{comp}"));
            run_ok(
                cmd("unsquashfs")
                    .arg("-q")
                    .arg("-n")
                    .arg("-d")
                    .arg(&dir)
                    .arg(&img),
            );
            let (mut u, _) = snapshot(&dir, false);
            u.remove("usr/lib/extension-release.d/extension-release.acme");
            u.remove("usr/lib/extension-release.d");
            u.remove("");
            for node in u.values_mut() {
                node.uid = 0;
                node.gid = 0;
            }
            assert_eq!(
                want.keys().collect::<Vec<_>>(),
                u.keys().collect::<Vec<_>>(),
                "{comp} unsquashfs paths"
            );
            for (k, n) in &want {
                assert_eq!(u[k].content, n.content, "{comp} unsquashfs content of {k}");
            }
        }
    }
}

#[test]
fn images_made_by_mksquashfs_inspect_and_extract() {
    if !require_tool("mksquashfs") {
        return;
    }
    let t = TestDir::new();
    let src = make_source(&t, false);
    let (mut want, want_links) = snapshot(&src, false);
    want.remove("");
    for comp in ["gzip", "lzo", "lz4", "xz", "zstd"] {
        let img = t.join(format!("mk-{comp}.sqfs"));
        run_ok(cmd("mksquashfs").arg(&src).arg(&img).args([
            "-no-progress",
            "-quiet",
            "-comp",
            comp,
        ]));
        let json = run_ok(sik().args(["inspect", "--json"]).arg(&img));
        let v = assert_schema("inspect", &json);
        assert_eq!(v["extension"]["squashfs"]["compression"], comp);
        assert_eq!(v["extension"]["extension_run"], true);
        let out = t.join(format!("x-{comp}"));
        run_ok(sik().args(["extract", "-q"]).arg(&img).arg("-o").arg(&out));
        let (mut got, got_links) = snapshot(&out, false);
        got.remove("");
        assert_eq!(want, got, "{comp}");
        assert_eq!(want_links, got_links, "{comp} hard links");
    }
}

/// Compare two listings and show the first difference only.
fn assert_same_lines(a: &[String], b: &[String], what: &str) {
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(x, y, "{what}: first difference at line {i}");
    }
    assert_eq!(a.len(), b.len(), "{what}: number of lines");
}

fn tar_listing_equals_dir_listing(t: &TestDir, src: &Path, archive: &Path) {
    let from_dir = t.join("from-dir.ExtensionImage");
    if !from_dir.exists() {
        run_ok(
            sik()
                .args(["create", "extension", "-q"])
                .arg(src)
                .arg("-o")
                .arg(&from_dir)
                .args(["--name", "acme", "--keep-owner"])
                .env("SOURCE_DATE_EPOCH", "1600000000"),
        );
    }
    let from_tar = t.join("from-tar.ExtensionImage");
    let _ = fs::remove_file(&from_tar);
    // Generated entries take the image time, which defaults to SOURCE's own mtime.
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(archive)
            .arg("-o")
            .arg(&from_tar)
            .args(["--name", "acme", "--keep-owner"])
            .env("SOURCE_DATE_EPOCH", "1600000000"),
    );
    let a = run_ok(sik().args(["inspect", "--list"]).arg(&from_dir));
    let b = run_ok(sik().args(["inspect", "--list"]).arg(&from_tar));
    // The root's metadata comes from the archive's "./" entry; compare the rest.
    let strip = |s: &str| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
    assert_same_lines(&strip(&a), &strip(&b), &archive.display().to_string());
}

#[test]
fn tar_archives_in_every_compression() {
    let t = TestDir::new();
    let src = make_source(&t, false);
    let plain = t.join("src.tar");
    run_ok(
        cmd("tar")
            .arg("--xattrs")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&plain)
            .arg("."),
    );
    tar_listing_equals_dir_listing(&t, &src, &plain);
    for (tool, name) in [
        ("gzip", "src.tar.gz"),
        ("xz", "src.tar.xz"),
        ("zstd", "src.tar.zst"),
    ] {
        if !require_tool(tool) {
            return;
        }
        let out = t.join(name);
        run_ok(cmd("sh").arg("-c").arg(format!(
            "{tool} -c < '{}' > '{}'",
            plain.display(),
            out.display()
        )));
        // Recognised by content, not by name.
        let renamed = t.join(format!("{name}.bin"));
        fs::rename(&out, &renamed).unwrap();
        tar_listing_equals_dir_listing(&t, &src, &renamed);
    }
}

#[test]
fn debian_package_data_becomes_the_image() {
    if !require_tool("dpkg-deb") {
        return;
    }
    let t = TestDir::new();
    let pkg = t.mkdir("pkg");
    t.write("pkg/DEBIAN/control", "Package: acme-firmware\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <t@example.org>\nDescription: test firmware\n");
    t.write("pkg/usr/lib/firmware/acme/fw.bin", vec![7u8; 5000]);
    t.write("pkg/usr/share/doc/acme-firmware/copyright", "free\n");
    std::os::unix::fs::symlink("acme/fw.bin", pkg.join("usr/lib/firmware/fw.bin")).unwrap();
    for comp in ["xz", "gzip", "zstd", "none"] {
        let deb = t.join(format!("acme-{comp}.deb"));
        run_ok(
            cmd("dpkg-deb")
                .args(["--root-owner-group", "-Z", comp, "--build"])
                .arg(&pkg)
                .arg(&deb),
        );
        let img = t.join(format!("acme-{comp}.ExtensionImage"));
        create(&deb, &img, &["--name", "acme", "--version", "1.0"]);
        let list = run_ok(sik().args(["inspect", "--list"]).arg(&img));
        assert!(
            list.contains("squashfs-root/usr/lib/firmware/acme/fw.bin"),
            "{comp}: {list}"
        );
        assert!(
            list.contains("squashfs-root/usr/lib/firmware/fw.bin -> acme/fw.bin"),
            "{comp}"
        );
        assert!(!list.contains("DEBIAN"), "{comp}: control files stay out");
        let json = run_ok(sik().args(["inspect", "--json"]).arg(&img));
        let v = assert_schema("inspect", &json);
        assert_eq!(v["extension"]["release"]["SYSEXT_VERSION_ID"], "1.0");
    }
}

#[test]
fn systemd_sysext_lists_the_image() {
    if !require_tool("systemd-sysext") {
        return;
    }
    let t = TestDir::new();
    t.write("src/usr/share/acme/hello", "hello\n");
    let root = t.mkdir("root");
    t.mkdir("root/var/lib/extensions");
    t.write("root/etc/os-release", "ID=debian\nVERSION_ID=12\n");
    let img = root.join("var/lib/extensions/acme.raw");
    create(&t.join("src"), &img, &["--os-id", "_any"]);
    let list = run_ok(
        cmd("systemd-sysext")
            .arg(format!("--root={}", root.display()))
            .arg("list"),
    );
    assert!(list.contains("acme"), "systemd-sysext list: {list}");
    let json = run_ok(sik().args(["inspect", "--json"]).arg(&img));
    let v = assert_schema("inspect", &json);
    assert_eq!(v["extension"]["sysext"]["compatible"], true, "{v}");
    assert_eq!(v["extension"]["name"], "acme");
}

#[test]
fn exclude_and_metadata_options() {
    let t = TestDir::new();
    let src = make_source(&t, false);
    let img = t.join("x.ExtensionImage");
    create(
        &src,
        &img,
        &[
            "--exclude",
            "usr/share/acme/many",
            "--exclude",
            "*.conf",
            "--os-id",
            "debian",
            "--os-version",
            "12",
            "--arch",
            "x86-64",
            "--sysext-level",
            "1.0",
            "--compression",
            "xz",
            "--level",
            "3",
            "--block-size",
            "64K",
        ],
    );
    let list = run_ok(sik().args(["inspect", "--list"]).arg(&img));
    assert!(!list.contains("many"));
    assert!(!list.contains("squashfs-root/etc/acme.conf"));
    assert!(list.contains("usr/bin/acme-tool"));
    let v: serde_json::Value =
        serde_json::from_str(&run_ok(sik().args(["inspect", "--json"]).arg(&img))).unwrap();
    let r = &v["extension"]["release"];
    assert_eq!(r["ID"], "debian");
    assert_eq!(r["VERSION_ID"], "12");
    assert_eq!(r["ARCHITECTURE"], "x86-64");
    assert_eq!(r["SYSEXT_LEVEL"], "1.0");
    assert_eq!(v["extension"]["squashfs"]["block_size"], 65536);
    assert_eq!(v["extension"]["squashfs"]["compression"], "xz");
    assert_eq!(
        v["extension"]["sysext"]["compatible"], false,
        "content outside /usr: {v}"
    );
    let text = run_ok(sik().arg("inspect").arg(&img));
    assert!(text.contains("ExtensionRun:       yes"), "{text}");
    let list = assert_schema(
        "list",
        &run_ok(sik().args(["inspect", "--list", "--json"]).arg(&img)),
    );
    assert!(list["entries"].as_array().unwrap().iter().any(|e| e["path"] == "usr/bin/fw-link" && e["target"] == "../lib/firmware/acme/fw.bin"));
    let out = t.join("y.ExtensionImage");
    let report = assert_schema(
        "create",
        &run_ok(
            sik()
                .args(["create", "extension", "--json"])
                .arg(&src)
                .arg("-o")
                .arg(&out),
        ),
    );
    assert_eq!(report["name"], "y");
    assert!(report["stats"]["hardlinks"].as_u64().unwrap() >= 2);
}

fn no_leftovers(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !n.starts_with(".sik-create-"),
            "temporary file left behind: {n}"
        );
    }
}

#[test]
fn bad_input_fails_cleanly() {
    let t = TestDir::new();
    t.write("src/a", "a");
    let out = t.join("out.ExtensionImage");

    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("missing"))
        .arg("-o")
        .arg(&out));
    assert_fails(&o, 2, &["missing"]);
    std::os::unix::fs::symlink("nowhere", t.join("dangling")).unwrap();
    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("dangling"))
        .arg("-o")
        .arg(&out));
    assert_fails(&o, 2, &["dangling"]);
    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("src"))
        .arg("-o")
        .arg(t.join("no/such/dir/out.img")));
    assert_fails(&o, 2, &["out.img", "does not exist"]);
    let junk = t.write("junk.bin", vec![0x42u8; 4000]);
    let o = run(sik()
        .args(["create", "extension"])
        .arg(&junk)
        .arg("-o")
        .arg(&out));
    assert_fails(&o, 2, &["junk.bin", "not a directory, a tar archive"]);
    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("src"))
        .arg("-o")
        .arg(&out)
        .args(["--compression", "brotli"]));
    assert_fails(&o, 2, &["brotli"]);
    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("src"))
        .arg("-o")
        .arg(&out)
        .args(["--block-size", "3000"]));
    assert_fails(&o, 2, &["block-size"]);
    assert!(!out.exists());
    no_leftovers(t.path());

    // Archives with entries that leave the tree.
    for (name, entry) in [
        ("dotdot.tar", &b"../../etc/evil"[..]),
        ("abs.tar", &b"/etc/evil"[..]),
        ("inner.tar", &b"a/../../evil"[..]),
    ] {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..entry.len()].copy_from_slice(entry);
        }
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut data = Vec::new();
        data.extend_from_slice(h.as_bytes());
        data.extend_from_slice(b"evil");
        data.resize(512 * 2, 0);
        data.resize(data.len() + 1024, 0);
        let p = t.write(name, &data);
        let o = run(sik()
            .args(["create", "extension"])
            .arg(&p)
            .arg("-o")
            .arg(&out));
        assert_fails(&o, 2, &[name]);
        assert!(!out.exists(), "{name}: no output");
    }
    no_leftovers(t.path());

    // A truncated image and random bytes given to inspect and extract.
    let img = t.join("good.ExtensionImage");
    let noise: Vec<u8> = (0..500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    t.write("src/noise", &noise);
    // Without the hash tree, so that half the file ends inside the filesystem.
    create(&t.join("src"), &img, &["--no-verity"]);
    let data = fs::read(&img).unwrap();
    let trunc = t.write("trunc.ExtensionImage", &data[..data.len() / 2]);
    let random: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let rnd = t.write("random.bin", &random);
    for f in [&trunc, &rnd] {
        let o = run(sik().arg("inspect").arg(f));
        assert_fails(&o, 2, &[&f.file_name().unwrap().to_string_lossy()]);
        let dest = t.join("dest");
        let o = run(sik().arg("extract").arg(f).arg("-o").arg(&dest));
        assert_fails(&o, 2, &[&f.file_name().unwrap().to_string_lossy()]);
    }
    let o = run(sik().arg("inspect").arg(t.join("nope")));
    assert_fails(&o, 2, &["nope"]);

    // Extract refuses a non-empty target without --force.
    let dest = t.mkdir("full");
    t.write("full/keep", "x");
    let o = run(sik().arg("extract").arg(&img).arg("-o").arg(&dest));
    assert_fails(&o, 2, &["not empty", "--force"]);
    run_ok(
        sik()
            .args(["extract", "-q", "--force"])
            .arg(&img)
            .arg("-o")
            .arg(&dest),
    );
    assert!(dest.join("a").exists() && dest.join("keep").exists());
}

#[test]
fn extract_never_writes_outside_the_target() {
    let t = TestDir::new();
    t.write("src/usr/share/x/file", "data");
    std::os::unix::fs::symlink("../../../../../../../../tmp", t.join("src/usr/share/x/up"))
        .unwrap();
    std::os::unix::fs::symlink("/etc", t.join("src/usr/share/x/abs")).unwrap();
    let img = t.join("x.ExtensionImage");
    create(&t.join("src"), &img, &[]);
    // A target whose `usr` is a symlink to a directory outside it.
    let outside = t.mkdir("outside");
    let dest = t.mkdir("dest");
    std::os::unix::fs::symlink(&outside, dest.join("usr")).unwrap();
    run_ok(
        sik()
            .args(["extract", "-q", "--force"])
            .arg(&img)
            .arg("-o")
            .arg(&dest),
    );
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written through the planted symlink"
    );
    assert!(
        dest.join("usr").symlink_metadata().unwrap().is_dir(),
        "the symlink was replaced by the image's directory"
    );
    assert_eq!(
        fs::read_link(dest.join("usr/share/x/up")).unwrap(),
        Path::new("../../../../../../../../tmp")
    );
    assert_eq!(
        fs::read_link(dest.join("usr/share/x/abs")).unwrap(),
        Path::new("/etc")
    );
    assert_eq!(
        fs::read_to_string(dest.join("usr/share/x/file")).unwrap(),
        "data"
    );
}

/// The extension-release test vector of spec/extension-image.md.
#[test]
fn extension_release_matches_the_spec_vector() {
    let t = TestDir::new();
    t.write("src/usr/share/acme/x", "x");
    let img = t.join("acme.ExtensionImage");
    create(
        &t.join("src"),
        &img,
        &[
            "--os-id",
            "debian",
            "--os-version",
            "12",
            "--arch",
            "x86-64",
            "--version",
            "1.0 beta",
        ],
    );
    let out = t.join("out");
    run_ok(sik().args(["extract", "-q"]).arg(&img).arg("-o").arg(&out));
    let text =
        fs::read_to_string(out.join("usr/lib/extension-release.d/extension-release.acme")).unwrap();
    let spec = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/extension-image.md"),
    )
    .unwrap();
    let vector = spec
        .split("### Test vector: extension-release")
        .nth(1)
        .unwrap();
    let block = vector.split("```").nth(1).unwrap().trim_start_matches('\n');
    assert_eq!(text, block);
    let md = fs::metadata(out.join("usr/lib/extension-release.d/extension-release.acme")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o644);
}

#[test]
fn inspect_names_the_iso_volume_label() {
    if !require_tool("xorriso") {
        return;
    }
    let t = TestDir::new();
    t.write("tree/casper/vmlinuz", "k");
    let iso = t.join("live.iso");
    run_ok(&mut mkisofs(&t.join("tree"), &iso, "Ubuntu 24.04 amd64"));
    let v = assert_schema(
        "inspect",
        &run_ok(sik().args(["inspect", "--json"]).arg(&iso)),
    );
    assert_eq!(v["kind"], "ISO 9660 image");
    assert_eq!(v["iso"]["label"], "Ubuntu 24.04 amd64");
    let text = run_ok(sik().arg("inspect").arg(&iso));
    assert!(
        text.contains("volume label:       Ubuntu 24.04 amd64"),
        "{text}"
    );
}

#[test]
fn create_signs_with_sign_key() {
    let t = TestDir::new();
    t.write("src/usr/share/acme/x", "x");
    sik_key(&t, "key");
    let img = t.join("acme.ExtensionImage");
    create(
        &t.join("src"),
        &img,
        &["--sign", t.join("key").to_str().unwrap()],
    );
    let out = run(sik()
        .arg("verify")
        .arg(&img)
        .arg("--trust")
        .arg(t.join("key.pub")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad key leaves no image behind.
    t.write("bad-key", "not a key");
    let img2 = t.join("other.ExtensionImage");
    let o = run(sik()
        .args(["create", "extension"])
        .arg(t.join("src"))
        .arg("-o")
        .arg(&img2)
        .arg("--sign")
        .arg(t.join("bad-key")));
    assert_fails(&o, 2, &["bad-key"]);
    assert!(!img2.exists());
}

#[test]
fn inspect_shows_embedded_signatures() {
    let t = TestDir::new();
    t.write("src/usr/share/acme/x", "x");
    sik_key(&t, "key");
    let img = t.join("acme.ExtensionImage");
    create(&t.join("src"), &img, &[]);
    let v = assert_schema(
        "inspect",
        &run_ok(sik().args(["inspect", "--json"]).arg(&img)),
    );
    assert_eq!(v["extension"]["signature"]["state"], "unsigned");
    run_ok(sik().arg("sign").arg(&img).arg("--key").arg(t.join("key")));
    let v = assert_schema(
        "inspect",
        &run_ok(sik().args(["inspect", "--json"]).arg(&img)),
    );
    assert_eq!(v["extension"]["signature"]["state"], "signed");
    let fp = run_ok(sik().args(["key", "fingerprint"]).arg(t.join("key.pub")));
    assert!(
        fp.contains(v["extension"]["signature"]["signers"][0].as_str().unwrap()),
        "{fp} {v}"
    );
    assert!(
        run_ok(sik().arg("inspect").arg(&img))
            .contains("present, not checked: 1 signature(s) naming")
    );
}

/// A file of the source replaced by a symlink to a secret between the walk
/// and the read (the hidden `--debug-before-open` program does the swap at
/// exactly that moment) is refused: nothing outside SOURCE reaches the image.
#[test]
fn create_dir_refuses_a_file_swapped_for_a_symlink_after_the_walk() {
    let t = TestDir::new();
    let secret = t.write("secret", "TOP-SECRET-SHADOW\n");
    let src = t.mkdir("src");
    t.write("src/usr/share/a.txt", "harmless\n");
    t.write("src/usr/share/b.txt", "harmless too\n");
    let swap = t.write(
        "swap.sh",
        format!(
            "#!/bin/sh\ncase \"$1\" in */b.txt) rm -f \"$1\" && ln -s {} \"$1\";; esac\n",
            secret.display()
        ),
    );
    fs::set_permissions(&swap, fs::Permissions::from_mode(0o755)).unwrap();
    let out = t.join("x.ExtensionImage");
    let o = run(sik()
        .args(["create", "extension", "-q"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .arg("--debug-before-open")
        .arg(&swap));
    assert_fails(&o, 2, &["b.txt", "symlink"]);
    assert!(!out.exists(), "no image may be left behind");
    assert!(
        fs::read_dir(t.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".sik")),
        "no temporary image may be left behind"
    );

    // A parent directory swapped for a symlink to another directory holding
    // a file of the same name is refused as well (another inode).
    fs::remove_file(src.join("usr/share/b.txt")).unwrap();
    t.write("src/usr/share/b.txt", "harmless too\n");
    let other = t.mkdir("elsewhere/share");
    t.write("elsewhere/share/b.txt", "TOP-SECRET-SHADOW\n");
    let swap_dir = t.write(
        "swapdir.sh",
        format!(
            "#!/bin/sh\ncase \"$1\" in */b.txt) mv {share} {share}.old && ln -s {other} {share};; esac\n",
            share = src.join("usr/share").display(),
            other = other.display()
        ),
    );
    fs::set_permissions(&swap_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(sik()
        .args(["create", "extension", "-q"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .arg("--debug-before-open")
        .arg(&swap_dir));
    assert_fails(&o, 2, &["b.txt", "replaced"]);
    assert!(!out.exists());
}
