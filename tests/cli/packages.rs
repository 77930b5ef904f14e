//! `sik create extension` from several sources and from distribution
//! packages as they really come: `.deb` files fetched with `apt-get
//! download`, an `.rpm` built with `rpmbuild`, an Arch package made with
//! `tar --zstd` and a `.PKGINFO`. The image's listing is checked against
//! the packages' own listings (`dpkg-deb -c`, `rpm -qlvp`, `tar -tv`), the
//! package facts against the packages' metadata, and conflicts between
//! sources against their rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::*;

/// `unsquashfs -lln` of an image as (permissions, path) pairs, the root and
/// the extension-release file and its directories left out.
fn image_entries(image: &Path) -> Vec<(String, String)> {
    let out = run_ok(cmd("unsquashfs").arg("-lln").arg(image));
    out.lines()
        .filter_map(|l| {
            let perms = l.split_whitespace().next()?.to_string();
            let path = l.split("squashfs-root").nth(1)?;
            let path = path
                .split(" -> ")
                .next()?
                .trim_start_matches('/')
                .to_string();
            (!path.is_empty()).then_some((perms, path))
        })
        .filter(|(_, p)| !p.contains("extension-release"))
        .collect()
}

fn image_paths(image: &Path) -> BTreeSet<String> {
    image_entries(image).into_iter().map(|(_, p)| p).collect()
}

/// Paths (no trailing slash, no `./`) of a listing whose last field is the path.
fn normalise(path: &str) -> Option<String> {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    (!p.is_empty()).then(|| p.to_string())
}

/// `apt-get download` of `names` into `dir` (after `apt-get update` when
/// the package lists are missing); the downloaded files.
pub(crate) fn apt_download(dir: &Path, names: &[&str]) -> Option<Vec<PathBuf>> {
    if !require_tool("apt-get") || !require_tool("dpkg-deb") {
        return None;
    }
    let get = || run(cmd("apt-get").arg("download").args(names).current_dir(dir));
    let mut out = get();
    if !out.status.success() {
        let _ = run(cmd("apt-get").args(["update", "-qq"]));
        out = get();
    }
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!in_ci(), "apt-get download {names:?} failed: {why}");
        eprintln!("skipped: apt-get download failed: {why}");
        return None;
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert_eq!(debs.len(), names.len(), "downloaded {debs:?}");
    Some(debs)
}

#[test]
fn real_debs_merge_into_one_extension_with_their_facts() {
    if !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    let dl = t.mkdir("debs");
    // A codec set as it comes: a GStreamer plugin package and the
    // libraries of Ogg Vorbis, packages that share their directories.
    let Some(debs) = apt_download(
        &dl,
        &[
            "gstreamer1.0-plugins-base",
            "libogg0",
            "libvorbis0a",
            "libvorbisenc2",
        ],
    ) else {
        return;
    };
    let image = t.join("codecs.ExtensionImage");
    let json = run_ok(
        sik()
            .args(["create", "extension", "--json"])
            .args(&debs)
            .arg("-o")
            .arg(&image),
    );
    let v = assert_schema("create", &json);
    assert_eq!(v["sources"].as_array().unwrap().len(), 4);
    assert_eq!(v["source_kind"], "deb");

    // The listing is the union of the packages' data.
    let mut union = BTreeSet::new();
    for deb in &debs {
        let listing = run_ok(cmd("dpkg-deb").arg("-c").arg(deb));
        for l in listing.lines() {
            let path = l.split_whitespace().nth(5).unwrap_or("");
            if let Some(p) = normalise(path) {
                union.insert(p);
            }
        }
    }
    let ours = image_paths(&image);
    let ours: BTreeSet<String> = ours
        .into_iter()
        .filter(|p| p != "usr/lib/extension-release.d")
        .collect();
    assert_eq!(
        ours, union,
        "image listing vs dpkg-deb -c of the four packages"
    );
    assert!(
        v["stats"]["merged"].as_u64().unwrap() > 0,
        "shared directories: {json}"
    );

    // The facts: name, version and architecture as dpkg-deb reads them.
    let facts = run_ok(sik().args(["inspect", "--json"]).arg(&image));
    let facts = assert_schema("inspect", &facts);
    let packages = facts["extension"]["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 4, "{facts}");
    for (deb, p) in debs.iter().zip(packages) {
        let field = |f: &str| {
            run_ok(cmd("dpkg-deb").arg("-f").arg(deb).arg(f))
                .trim()
                .to_string()
        };
        assert_eq!(p["format"], "deb");
        assert_eq!(p["name"], field("Package").as_str());
        assert_eq!(p["version"], field("Version").as_str());
        assert_eq!(p["arch"], field("Architecture").as_str());
    }
    let text = run_ok(sik().arg("inspect").arg(&image));
    assert!(text.contains("package:            libogg0 "), "{text}");

    // A deliberate conflict: a local tree whose copyright file of libogg0
    // differs from the package's is reported, naming both sources.
    t.write(
        "local/usr/share/doc/libogg0/copyright",
        "not the package's\n",
    );
    let out = run(sik()
        .args(["create", "extension"])
        .args(&debs)
        .arg(t.join("local"))
        .arg("-o")
        .arg(t.join("conflict.ExtensionImage")));
    let err = assert_fails(
        &out,
        2,
        &["usr/share/doc/libogg0/copyright", "--later-wins"],
    );
    let ogg = debs
        .iter()
        .find(|d| d.to_string_lossy().contains("libogg0"))
        .unwrap();
    assert!(
        err.contains(&*ogg.to_string_lossy()) && err.contains("local"),
        "the error names both sources: {err}"
    );
}

#[test]
fn sources_that_differ_at_one_path_conflict_unless_the_later_wins() {
    if !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    t.write("a/usr/share/x/same", "same in both\n");
    t.write("b/usr/share/x/same", "same in both\n");
    t.write("a/usr/share/x/differs", "from a\n");
    t.write("b/usr/share/x/differs", "from b\n");
    t.write("b/usr/share/x/only-b", "b\n");
    let (a, b) = (t.join("a"), t.join("b"));
    let image = t.join("m.ExtensionImage");

    let out = run(sik()
        .args(["create", "extension"])
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&image));
    let err = assert_fails(&out, 2, &["usr/share/x/differs", "--later-wins", "content"]);
    assert!(
        err.contains(&*a.to_string_lossy()) && err.contains(&*b.to_string_lossy()),
        "the error names both sources: {err}"
    );
    assert!(!image.exists(), "nothing written on a conflict");

    let json = run_ok(
        sik()
            .args(["create", "extension", "--json", "--later-wins"])
            .arg(&a)
            .arg(&b)
            .arg("-o")
            .arg(&image),
    );
    let v = assert_schema("create", &json);
    assert_eq!(v["stats"]["replaced"], 1, "{json}");
    let content = run_ok(
        cmd("unsquashfs")
            .arg("-cat")
            .arg(&image)
            .arg("usr/share/x/differs"),
    );
    assert_eq!(content, "from b\n");
    let paths = image_paths(&image);
    for p in ["usr/share/x/same", "usr/share/x/only-b"] {
        assert!(paths.contains(p), "{p} in {paths:?}");
    }

    // A directory in one source and a file in the other never replace
    // each other.
    t.write("c/usr/share/x", "a file where a has a directory\n");
    let out = run(sik()
        .args(["create", "extension", "--later-wins"])
        .arg(&a)
        .arg(t.join("c"))
        .arg("-o")
        .arg(t.join("n.ExtensionImage")));
    assert_fails(&out, 2, &["usr/share/x", "directory"]);
}

#[test]
fn an_rpm_built_by_rpmbuild_goes_in_as_rpm_lists_it() {
    if !require_tool("rpmbuild") || !require_tool("rpm") || !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    let spec = t.write(
        "hello.spec",
        r#"Name: sik-hello
Version: 2.12
Release: 3
Summary: test package
License: MIT
BuildArch: noarch

%description
A package for sik's tests.

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/share/sik-hello
printf '#!/bin/sh\necho hello\n' > %{buildroot}/usr/bin/sik-hello
chmod 0755 %{buildroot}/usr/bin/sik-hello
printf 'data\n' > %{buildroot}/usr/share/sik-hello/data
chmod 0640 %{buildroot}/usr/share/sik-hello/data
ln %{buildroot}/usr/share/sik-hello/data %{buildroot}/usr/share/sik-hello/data-link
ln -s sik-hello %{buildroot}/usr/bin/hi

%post
echo installed

%files
%dir /usr/share/sik-hello
/usr/bin/sik-hello
/usr/bin/hi
/usr/share/sik-hello/data
/usr/share/sik-hello/data-link
"#,
    );
    for (name, payload) in [("default", None), ("gzip", Some("w9.gzdio"))] {
        let top = t.mkdir(&format!("rpmbuild-{name}"));
        let mut c = cmd("rpmbuild");
        c.arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--nodeps", "--quiet", "-bb"]);
        if let Some(p) = payload {
            c.arg("--define").arg(format!("_binary_payload {p}"));
        }
        run_ok(c.arg(&spec));
        let rpm = top.join("RPMS/noarch/sik-hello-2.12-3.noarch.rpm");
        assert!(rpm.exists(), "rpmbuild made {}", rpm.display());

        let image = t.join(format!("hello-{name}.ExtensionImage"));
        let out = run(sik()
            .args(["create", "extension", "--json"])
            .arg(&rpm)
            .arg("-o")
            .arg(&image));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("maintainer scripts that were not run: %post"),
            "{stderr}"
        );
        let v = assert_schema("create", &String::from_utf8_lossy(&out.stdout));
        assert_eq!(v["source_kind"], "rpm");
        assert_eq!(v["packages"][0]["name"], "sik-hello");
        assert_eq!(v["packages"][0]["version"], "2.12-3");
        assert_eq!(v["packages"][0]["arch"], "noarch");
        assert_eq!(v["stats"]["hardlinks"], 1, "data-link is a hard link");

        // Every file rpm lists is in the image with the same permissions.
        let ours: std::collections::BTreeMap<String, String> = image_entries(&image)
            .into_iter()
            .map(|(perm, p)| (p, perm))
            .collect();
        let listing = run_ok(cmd("rpm").arg("-qlvp").arg(&rpm));
        let mut n = 0;
        for l in listing.lines() {
            let perm = l.split_whitespace().next().unwrap();
            let path = l.split_whitespace().nth(8).unwrap();
            let path = normalise(path).unwrap();
            assert_eq!(
                ours.get(&path).map(String::as_str),
                Some(perm),
                "{path}: {l}"
            );
            n += 1;
        }
        assert_eq!(n, 5, "{listing}");
        let content = run_ok(
            cmd("unsquashfs")
                .arg("-cat")
                .arg(&image)
                .arg("usr/share/sik-hello/data-link"),
        );
        assert_eq!(content, "data\n");

        // The same package cut short anywhere, or with its payload
        // damaged: one error line naming the file, exit 2, no image.
        let bytes = std::fs::read(&rpm).unwrap();
        for cut in [10, 96, 200, bytes.len() / 2, bytes.len() - 1] {
            let bad = t.write(&format!("cut-{name}-{cut}.rpm"), &bytes[..cut]);
            let out_img = t.join(format!("cut-{name}-{cut}.ExtensionImage"));
            let out = run(sik()
                .args(["create", "extension"])
                .arg(&bad)
                .arg("-o")
                .arg(&out_img));
            assert_fails(&out, 2, &[&*bad.to_string_lossy()]);
            assert!(!out_img.exists());
        }
        let mut damaged = bytes.clone();
        let n = damaged.len();
        for b in &mut damaged[n - 64..] {
            *b ^= 0x5a;
        }
        let bad = t.write(&format!("damaged-{name}.rpm"), &damaged);
        let out = run(sik()
            .args(["create", "extension"])
            .arg(&bad)
            .arg("-o")
            .arg(t.join("damaged.ExtensionImage")));
        assert_fails(&out, 2, &[&*bad.to_string_lossy()]);
    }
}

#[test]
fn an_arch_package_goes_in_without_its_metadata() {
    if !require_tool("unsquashfs") || !require_tool("zstd") {
        return;
    }
    let t = TestDir::new();
    let root = t.mkdir("pkg");
    t.write(
        "pkg/.PKGINFO",
        "# Generated by makepkg\npkgname = sik-tool\npkgbase = sik-tool\npkgver = 1:1.4-2\narch = x86_64\nsize = 10\n",
    );
    t.write("pkg/.MTREE", "not content\n");
    t.write("pkg/.BUILDINFO", "not content\n");
    t.write("pkg/.INSTALL", "post_install() { echo hi; }\n");
    t.write("pkg/usr/bin/sik-tool", "#!/bin/sh\n");
    t.write("pkg/usr/share/sik-tool/readme", "readme\n");
    sh(
        &root,
        "chmod 0755 usr/bin/sik-tool && chmod 0600 usr/share/sik-tool/readme && \
         ln -s sik-tool usr/bin/st && \
         tar --zstd -cf ../sik-tool-1.4-2-x86_64.pkg.tar.zst .PKGINFO .BUILDINFO .MTREE .INSTALL usr",
    );
    let pkg = t.join("sik-tool-1.4-2-x86_64.pkg.tar.zst");
    let image = t.join("tool.ExtensionImage");
    let out = run(sik()
        .args(["create", "extension", "--json"])
        .arg(&pkg)
        .arg("-o")
        .arg(&image));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not run: .INSTALL"), "{stderr}");
    let v = assert_schema("create", &String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["source_kind"], "arch+zstd");
    assert_eq!(v["packages"][0]["name"], "sik-tool");
    assert_eq!(v["packages"][0]["version"], "1:1.4-2");
    assert_eq!(v["packages"][0]["arch"], "x86_64");

    // The tar listing minus the metadata, with the same permissions.
    let ours: std::collections::BTreeMap<String, String> = image_entries(&image)
        .into_iter()
        .map(|(perm, p)| (p, perm))
        .collect();
    let listing = run_ok(cmd("tar").arg("-tvf").arg(&pkg));
    let mut theirs = std::collections::BTreeMap::new();
    for l in listing.lines() {
        let perm = l.split_whitespace().next().unwrap().to_string();
        let path = l.split_whitespace().nth(5).unwrap();
        let p = normalise(path).unwrap();
        if !p.starts_with('.') {
            theirs.insert(p, perm);
        }
    }
    let ours: std::collections::BTreeMap<String, String> = ours
        .into_iter()
        .filter(|(p, _)| p != "usr/lib/extension-release.d" && p != "usr/lib")
        .collect();
    assert_eq!(ours, theirs);
    let release = run_ok(
        cmd("unsquashfs")
            .arg("-cat")
            .arg(&image)
            .arg("usr/lib/extension-release.d/extension-release.tool"),
    );
    assert!(
        release.contains("SIK_PACKAGES=arch/sik-tool/1:1.4-2/x86_64\n"),
        "{release}"
    );
}

#[test]
fn for_an_iso_what_its_root_holds_is_left_out_and_its_packages_refused() {
    if !require_tool("mksquashfs") || !require_tool("xorriso") || !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    let dl = t.mkdir("debs");
    let Some(debs) = apt_download(&dl, &["libogg0", "libvorbis0a"]) else {
        return;
    };
    let ogg = debs
        .iter()
        .find(|d| d.to_string_lossy().contains("libogg0"))
        .unwrap();
    let field = |deb: &Path, f: &str| {
        run_ok(cmd("dpkg-deb").arg("-f").arg(deb).arg(f))
            .trim()
            .to_string()
    };
    // A live ISO whose root file system holds libogg0's files as the
    // package installs them (same content and mode), read by sik through
    // its ISO 9660 and SquashFS readers.
    let make_iso = |status: &str| {
        let rootfs = t.join("rootfs");
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::create_dir_all(&rootfs).unwrap();
        run_ok(cmd("dpkg-deb").arg("-x").arg(ogg).arg(&rootfs));
        t.write("rootfs/var/lib/dpkg/status", status);
        let tree = t.join("isotree");
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(tree.join("live")).unwrap();
        run_ok(
            cmd("mksquashfs")
                .arg(&rootfs)
                .arg(tree.join("live/filesystem.squashfs"))
                .args(["-all-root", "-noappend", "-quiet", "-no-progress"]),
        );
        let iso = t.join("live.iso");
        let _ = std::fs::remove_file(&iso);
        run_ok(&mut mkisofs(&tree, &iso, "LIVE"));
        iso
    };
    let iso = make_iso("Package: base-files\nStatus: install ok installed\nVersion: 12.4\n");
    let image = t.join("codecs.ExtensionImage");
    let json = run_ok(
        sik()
            .args(["create", "extension", "--json", "--for"])
            .arg(&iso)
            .args(&debs)
            .arg("-o")
            .arg(&image),
    );
    let v = assert_schema("create", &json);
    // Every regular file of libogg0 is left out, with its bytes.
    let listing = run_ok(cmd("dpkg-deb").arg("-c").arg(ogg));
    let regular: Vec<(&str, u64)> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[5], f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(v["stats"]["omitted"], regular.len(), "{json}");
    let bytes: u64 = regular.iter().map(|r| r.1).sum();
    assert_eq!(v["stats"]["omitted_bytes"], bytes, "{json}");
    assert_eq!(
        v["for_iso"]["rootfs"], "/live/filesystem.squashfs",
        "{json}"
    );
    let paths = image_paths(&image);
    for (p, _) in &regular {
        let p = normalise(p).unwrap();
        assert!(!paths.contains(&p), "{p} is left out: {paths:?}");
    }
    assert!(
        paths.iter().any(|p| p.contains("libvorbis.so.0")),
        "libvorbis0a stays: {paths:?}"
    );
    let out = run(sik()
        .args(["create", "extension", "--for"])
        .arg(&iso)
        .args(&debs)
        .arg("-o")
        .arg(&image));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("left out {} files ({bytes} bytes)", regular.len())),
        "{said}"
    );

    // The ISO has libogg0 installed in this very version: refused, unless
    // --keep-duplicates.
    let version = field(ogg, "Version");
    let iso = make_iso(&format!(
        "Package: libogg0\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n"
    ));
    let out = run(sik()
        .args(["create", "extension", "--for"])
        .arg(&iso)
        .args(&debs)
        .arg("-o")
        .arg(t.join("dup.ExtensionImage")));
    assert_fails(&out, 2, &["libogg0", &version, "--keep-duplicates"]);
    assert!(!t.join("dup.ExtensionImage").exists());
    let json = run_ok(
        sik()
            .args([
                "create",
                "extension",
                "--json",
                "--keep-duplicates",
                "--for",
            ])
            .arg(&iso)
            .args(&debs)
            .arg("-o")
            .arg(t.join("dup.ExtensionImage")),
    );
    let v = assert_schema("create", &json);
    assert_eq!(
        v["for_iso"]["duplicates_kept"][0],
        format!("libogg0 {version}").as_str()
    );
}

/// An RPM whose headers lie (an index entry pointing past the header's
/// data, an absurd entry count or data size, a truncated header) is one
/// error naming the file, exit 2, never a panic of the RPM parser and never
/// an allocation of what the header claims. The first case is the input
/// `cargo xtask fuzz tar_source` found crashing the `rpm` crate.
#[test]
fn rpms_with_lying_headers_are_refused_without_a_panic() {
    if !require_tool("rpmbuild") {
        return;
    }
    let t = TestDir::new();
    let spec = t.write(
        "lie.spec",
        "Name: lie\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n%description\nd\n%install\nmkdir -p %{buildroot}/usr/share/lie\necho x > %{buildroot}/usr/share/lie/x\n%files\n/usr/share/lie\n",
    );
    let top = t.mkdir("rpmbuild");
    run_ok(
        cmd("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--nodeps", "--quiet", "-bb"])
            .arg(&spec),
    );
    let good = std::fs::read(top.join("RPMS/noarch/lie-1-1.noarch.rpm")).unwrap();
    let be = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    // The main header starts after the lead (96), the signature header's
    // intro (16), its index and its data padded to 8.
    let sig_end = 96 + 16 + be(&good, 96 + 8) as usize * 16 + be(&good, 96 + 12) as usize;
    let main = sig_end.div_ceil(8) * 8;
    let set = |at: usize, v: u32| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Entry 1's offset (index at +16, offset field at +8 of 16 bytes).
        ("offset", set(main + 16 + 16 + 8, 1_180_093), "past its"),
        ("sig-offset", set(96 + 16 + 8, 0x7fff_ffff), "past its"),
        ("entries", set(main + 8, 0xffff_ff00), "exceed rpm's limits"),
        ("data", set(96 + 12, 0xffff_fff0), "exceed rpm's limits"),
        ("truncated", good[..main + 40].to_vec(), "end past the file"),
        // Entry 0's item count (at +12): the parser reserved room for it.
        ("count", set(main + 16 + 12, 0x7fff_fff0), "items at"),
    ];
    for (name, bytes, needle) in cases {
        let rpm = t.write(&format!("{name}.rpm"), &bytes);
        let out = run(sik()
            .args(["create", "extension"])
            .arg(&rpm)
            .arg("-o")
            .arg(t.join(format!("{name}.ExtensionImage"))));
        assert_fails(&out, 2, &[&format!("{name}.rpm"), "RPM package", needle]);
        assert!(!t.join(format!("{name}.ExtensionImage")).exists());
    }
}
