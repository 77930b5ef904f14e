//! `sik link`, `sik unlink`, `sik status` against real loop mounts, on
//! merged-/usr and classic roots built in the test.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::util::*;

/// Everything the issue compares: path, type, mode, owner, link target.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        // /run is a tmpfs on a running system and holds the linker's state.
        if rel == "run" {
            continue;
        }
        let ft = m.file_type();
        let (kind, extra) = if ft.is_symlink() {
            ("l", std::fs::read_link(&p).unwrap().display().to_string())
        } else if ft.is_dir() {
            ("d", String::new())
        } else {
            (
                "f",
                std::fs::read(&p)
                    .map(|b| {
                        format!(
                            "{} bytes {:x}",
                            b.len(),
                            b.iter().map(|&x| x as u64).sum::<u64>()
                        )
                    })
                    .unwrap_or_default(),
            )
        };
        out.insert(
            rel,
            format!(
                "{kind} {:o} {}:{} {extra}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        );
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => s.push_str(&format!("- {k} {v}\n")),
            Some(w) if w != v => s.push_str(&format!("~ {k} {v} -> {w}\n")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            s.push_str(&format!("+ {k} {v}\n"));
        }
    }
    s
}

fn assert_same(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, what: &str) {
    let d = diff(a, b);
    assert!(d.is_empty(), "{what}: listings differ:\n{d}");
}

/// A Debian-like root: merged /usr (bin, sbin, lib, lib64 -> usr/...),
/// os-release as a relative symlink, a static busybox as /bin/sh.
fn merged_root(t: &TestDir, name: &str) -> PathBuf {
    let r = t.mkdir(name);
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib64",
        "usr/share",
        "etc",
        "var/lib",
        "run",
        "tmp",
        "home",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(t, r.join(l)).unwrap();
    }
    std::fs::write(
        r.join("usr/lib/os-release"),
        "ID=debian\nVERSION_ID=12\nSIK_TEST_ROOT=merged\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
    std::fs::write(r.join("etc/hostname"), "test\n").unwrap();
    add_shell(&r);
    r
}

/// A classic root: real /bin, /lib directories.
fn classic_root(t: &TestDir, name: &str) -> PathBuf {
    let r = t.mkdir(name);
    for d in [
        "bin", "sbin", "lib", "usr/bin", "usr/lib", "etc", "run", "tmp",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(
        r.join("etc/os-release"),
        "ID=debian\nVERSION_ID=12\nSIK_TEST_ROOT=classic\n",
    )
    .unwrap();
    add_shell(&r);
    r
}

fn add_shell(r: &Path) {
    let bb = which("busybox").expect("busybox");
    std::fs::copy(bb, r.join("usr/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", r.join("usr/bin/sh")).unwrap();
    if !r.join("bin").is_symlink() {
        std::os::unix::fs::symlink("../usr/bin/busybox", r.join("bin/sh")).unwrap();
    }
}

/// Build an ExtensionImage from `files` (path, content; a content starting
/// with `->` makes a symlink) with an extension-release of `release`.
fn image(t: &TestDir, name: &str, release: Option<&str>, files: &[(&str, &str)]) -> PathBuf {
    let tree = t.join(format!("tree-{name}"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).unwrap();
    if let Some(rel) = release {
        let p = tree.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        ));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }
    for (p, c) in files {
        let full = tree.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        if let Some(target) = c.strip_prefix("->") {
            std::os::unix::fs::symlink(target, &full).unwrap();
        } else {
            std::fs::write(&full, c).unwrap();
            if p.contains("bin/") || *p == "ExtensionRun" {
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
    let img = t.join(format!("{name}.ExtensionImage"));
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&img)
            .args(["-quiet", "-noappend", "-no-progress"]),
    );
    img
}

const RUN_SCRIPT: &str = "#!/bin/sh\nwhile read l; do echo \"$l\"; done < /etc/os-release > /run/acme-ran\necho \"$SIK_EXTENSION\" >> /run/acme-ran\n";

fn acme(t: &TestDir) -> PathBuf {
    image(
        t,
        "acme",
        Some("ID=_any\nSYSEXT_VERSION_ID=1.2\n"),
        &[
            ("lib/firmware/acme/fw.bin", "firmware"),
            ("usr/bin/acme-tool", "#!/bin/sh\necho acme\n"),
            ("usr/share/acme/data/a.txt", "a"),
            ("etc/acme/acme.conf", "conf"),
            ("etc/hostname", "other"),
            ("ExtensionRun", RUN_SCRIPT),
        ],
    )
}

fn link(root: &Path, extra: &[&str], sources: &[&Path]) -> std::process::Output {
    let mut c = sik();
    c.arg("link").arg("--root").arg(root).args(extra);
    for s in sources {
        c.arg(s);
    }
    run(&mut c)
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unlink(root: &Path, names: &[&str]) -> String {
    ok(&run(sik()
        .arg("unlink")
        .arg("--root")
        .arg(root)
        .args(names)))
}

fn status(root: &Path) -> serde_json::Value {
    let out = ok(&run(sik().args(["status", "--json", "--root"]).arg(root)));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../formats/schema/status.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "status --json does not match its schema: {errors:?}\n{doc:#}"
    );
    doc
}

fn ext<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {doc:#}"))
}

/// No loop device is left attached to `img` (auto-clear after unmount may
/// finish a moment later, so wait for it).
fn assert_detached(img: &Path) {
    for _ in 0..200 {
        let out = run_ok(cmd("losetup").arg("-j").arg(img));
        if out.trim().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("loop device still attached to {}", img.display());
}

fn ready() -> bool {
    require_root()
        && require_tool("mksquashfs")
        && require_tool("busybox")
        && require_tool("losetup")
}

fn read_link_in_root(root: &Path, p: &str) -> String {
    std::fs::read_link(root.join(p))
        .unwrap()
        .display()
        .to_string()
}

/// Read a file of ROOT as a process chrooted into ROOT would: absolute
/// symlink targets are taken inside ROOT.
fn read_in_root(root: &Path, rel: &str) -> String {
    let mut p = root.join(rel);
    for _ in 0..20 {
        match std::fs::read_link(&p) {
            Ok(t) if t.is_absolute() => p = root.join(t.strip_prefix("/").unwrap()),
            Ok(t) => p = p.parent().unwrap().join(t),
            Err(_) => {
                return std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
    panic!("symlink loop at {}", p.display());
}

fn state_of_link_dir(root: &Path) -> PathBuf {
    root.join("run/sik/extensions")
}

#[test]
fn merged_usr_link_twice_unlink_leaves_root_as_before() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let img = acme(&t);
    let before = listing(&root);

    let out = ok(&link(&root, &["--allow-unsigned"], &[&img]));
    assert!(out.contains("linked acme 1.2"), "{out}");
    // lib/ lands in usr/lib through ROOT's lib -> usr/lib.
    assert!(root.join("usr/lib/firmware/acme/fw.bin").is_symlink());
    assert!(
        std::fs::symlink_metadata(root.join("usr/lib/firmware"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        read_link_in_root(&root, "usr/lib/firmware/acme/fw.bin"),
        "/run/sik/extensions/acme/mnt/lib/firmware/acme/fw.bin"
    );
    assert_eq!(
        read_in_root(
            &root,
            "run/sik/extensions/acme/mnt/lib/firmware/acme/fw.bin"
        ),
        "firmware"
    );
    assert_eq!(
        read_link_in_root(&root, "usr/bin/acme-tool"),
        "/run/sik/extensions/acme/mnt/usr/bin/acme-tool"
    );
    assert!(root.join("etc/acme/acme.conf").is_symlink());
    // The existing /etc/hostname is kept and reported.
    assert_eq!(read_in_root(&root, "etc/hostname"), "test\n");
    // ExtensionRun ran inside ROOT (chroot): it saw ROOT's os-release.
    let ran = read_in_root(&root, "run/acme-ran");
    assert!(
        ran.contains("SIK_TEST_ROOT=merged") && ran.contains("acme"),
        "{ran}"
    );
    assert!(!root.join("ExtensionRun").exists());
    // Directories created get the image's modes.
    assert_eq!(
        std::fs::metadata(root.join("usr/share/acme/data"))
            .unwrap()
            .mode()
            & 0o7777,
        0o755
    );

    let doc = status(&root);
    let e = ext(&doc, "acme");
    assert_eq!(e["version"], "1.2");
    assert_eq!(e["mode"], "mount");
    assert_eq!(e["files"], 5);
    assert_eq!(e["complete"], true);
    assert_eq!(e["run"]["exit_code"], 0);
    let conflicts = e["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["path"], "/etc/hostname");
    assert_eq!(conflicts[0]["kind"], "kept");
    let text = ok(&run(sik().args(["status", "--root"]).arg(&root)));
    assert!(text.contains("acme 1.2: 5 files"), "{text}");

    // Linking again changes nothing (not even the journal).
    let after1 = listing(&root);
    let journal = std::fs::read(state_of_link_dir(&root).join("acme/journal")).unwrap();
    let out = ok(&link(&root, &["--allow-unsigned"], &[&img]));
    assert!(out.contains("(0 new)"), "{out}");
    assert_same(&after1, &listing(&root), "second link");
    assert_eq!(
        journal,
        std::fs::read(state_of_link_dir(&root).join("acme/journal")).unwrap()
    );

    let out = unlink(&root, &["acme"]);
    assert!(out.contains("5 links"), "{out}");
    assert_same(&before, &listing(&root), "after unlink");
    assert!(
        !root.join("run/sik").exists(),
        "state directory left behind"
    );
    assert_detached(&img);
    // Unlinking what is not linked is an error (exit 1), with one error line.
    assert_fails(
        &run(sik().args(["unlink", "acme", "--root"]).arg(&root)),
        1,
        &["not everything was unlinked"],
    );
}

#[test]
fn classic_root_links_into_real_directories() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = classic_root(&t, "root");
    let img = acme(&t);
    let before = listing(&root);
    ok(&link(&root, &["--allow-unsigned"], &[&img]));
    assert!(root.join("lib/firmware/acme/fw.bin").is_symlink());
    assert!(!root.join("usr/lib/firmware").exists());
    assert_eq!(
        read_in_root(&root, "usr/bin/acme-tool"),
        "#!/bin/sh\necho acme\n"
    );
    let ran = read_in_root(&root, "run/acme-ran");
    assert!(ran.contains("SIK_TEST_ROOT=classic"), "{ran}");
    unlink(&root, &["acme"]);
    assert_same(&before, &listing(&root), "after unlink");
    assert_detached(&img);
}

#[test]
fn conflicts_kept_or_replaced_and_restored() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    std::fs::create_dir_all(root.join("etc/acme")).unwrap();
    std::fs::write(root.join("etc/acme/acme.conf"), "mine").unwrap();
    std::fs::set_permissions(
        root.join("etc/acme/acme.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("usr/bin/acme-tool")).unwrap(); // a directory where the image has a file
    let img = acme(&t);
    let before = listing(&root);

    // Without --replace: kept and reported.
    let out = link(&root, &["--allow-unsigned"], &[&img]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("sik: conflict: acme: /etc/acme/acme.conf: an existing file of ROOT is kept"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/usr/bin/acme-tool: ROOT has a directory"),
        "{stderr}"
    );
    assert_eq!(read_in_root(&root, "etc/acme/acme.conf"), "mine");
    unlink(&root, &["acme"]);
    assert_same(&before, &listing(&root), "after unlink (kept)");

    // With --replace: moved aside into the state directory, put back on unlink.
    ok(&link(&root, &["--allow-unsigned", "--replace"], &[&img]));
    assert!(root.join("etc/acme/acme.conf").is_symlink());
    assert_eq!(read_in_root(&root, "etc/acme/acme.conf"), "conf");
    assert!(root.join("etc/hostname").is_symlink());
    let doc = status(&root);
    let mut replaced: Vec<_> = ext(&doc, "acme")["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "replaced")
        .map(|c| c["path"].as_str().unwrap().to_string())
        .collect();
    replaced.sort();
    assert_eq!(replaced, ["/etc/acme/acme.conf", "/etc/hostname"]);
    // A replaced link that is no longer ours is left alone by unlink.
    std::fs::remove_file(root.join("usr/share/acme/data/a.txt")).unwrap();
    std::fs::write(root.join("usr/share/acme/data/a.txt"), "user").unwrap();
    let out = run(sik().args(["unlink", "acme", "--root"]).arg(&root));
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/usr/share/acme/data/a.txt: no longer ours")
    );
    assert_eq!(read_in_root(&root, "usr/share/acme/data/a.txt"), "user");
    std::fs::remove_dir_all(root.join("usr/share/acme")).unwrap();
    assert_same(&before, &listing(&root), "after unlink (replace)");
    assert_detached(&img);
}

#[test]
fn overlapping_extensions_first_name_wins() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let a = image(
        &t,
        "aaa",
        Some("ID=_any\n"),
        &[("usr/bin/shared", "from a"), ("usr/share/x/a", "a")],
    );
    let b = image(
        &t,
        "bbb",
        Some("ID=_any\n"),
        &[("usr/bin/shared", "from b"), ("usr/share/x/b", "b")],
    );
    let before = listing(&root);
    let out = link(&root, &["--allow-unsigned"], &[&b, &a]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("sik: conflict: bbb: /usr/bin/shared: already provided by extension aaa")
    );
    assert_eq!(read_in_root(&root, "usr/bin/shared"), "from a");
    assert_eq!(read_in_root(&root, "usr/share/x/b"), "b");
    let doc = status(&root);
    assert_eq!(ext(&doc, "bbb")["conflicts"][0]["kind"], "other-extension");
    assert_eq!(ext(&doc, "bbb")["conflicts"][0]["detail"], "aaa");
    // Unlinking the one that created the shared directory keeps it while bbb uses it.
    unlink(&root, &["aaa"]);
    assert!(!root.join("usr/bin/shared").exists());
    assert_eq!(read_in_root(&root, "usr/share/x/b"), "b");
    unlink(&root, &["bbb"]);
    assert_same(&before, &listing(&root), "after unlink");
}

#[test]
fn refused_images_skip_while_the_rest_link() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let good = image(
        &t,
        "good",
        Some("ID=debian\nVERSION_ID=12\n"),
        &[("usr/bin/good", "g")],
    );
    let fedora = image(
        &t,
        "fedora",
        Some("ID=fedora\nVERSION_ID=40\n"),
        &[("usr/bin/fedora", "f")],
    );
    let old = image(
        &t,
        "old",
        Some("ID=debian\nVERSION_ID=11\n"),
        &[("usr/bin/old", "o")],
    );
    let arm = image(
        &t,
        "arm",
        Some("ID=_any\nARCHITECTURE=arm64\n"),
        &[("usr/bin/arm", "a")],
    );
    let norelease = image(&t, "norel", None, &[("usr/bin/norel", "n")]);
    let junk = t.write("junk.ExtensionImage", "not a squashfs at all");
    let before = listing(&root);

    // Unsigned images are refused without --allow-unsigned.
    let out = link(&root, &[], &[&good]);
    assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("sik: refused: good:"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsigned"));
    assert!(!root.join("usr/bin/good").exists());
    let doc = status(&root);
    assert_eq!(doc["refused"][0]["name"], "good");

    let out = link(
        &root,
        &["--allow-unsigned"],
        &[&fedora, &good, &old, &junk, &arm, &norelease],
    );
    let stderr = assert_fails(&out, 1, &["5 of 6 sources refused"]);
    for needle in [
        "refused: fedora:",
        "built for ID=fedora, ROOT is ID=debian",
        "built for debian VERSION_ID=11",
        "refused: junk:",
        "not an ExtensionImage",
        "architecture arm64",
        "no usr/lib/extension-release.d/extension-release.norel",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert_eq!(read_in_root(&root, "usr/bin/good"), "g");
    for n in ["fedora", "old", "arm", "norel"] {
        assert!(!root.join("usr/bin").join(n).exists());
        assert!(
            !state_of_link_dir(&root).join(n).exists(),
            "state of refused {n} left behind"
        );
    }
    let doc = status(&root);
    assert_eq!(doc["extensions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["refused"].as_array().unwrap().len(), 5);

    // --ignore-compat links the incompatible ones.
    ok(&link(
        &root,
        &["--allow-unsigned", "--ignore-compat"],
        &[&fedora, &norelease],
    ));
    assert!(root.join("usr/bin/fedora").is_symlink());
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert_same(&before, &listing(&root), "after unlink");
    for i in [&good, &fedora, &old, &arm, &norelease] {
        assert_detached(i);
    }
}

#[test]
fn symlinks_leading_out_of_root_never_write_outside() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let outside = t.mkdir("outside");
    std::fs::write(outside.join("keep"), "k").unwrap();
    // ROOT symlinks that lead out of ROOT (relative) or to an absolute host path.
    std::os::unix::fs::symlink("../../../outside", root.join("usr/share/escape")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("opt")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("srv")).unwrap();
    let evil = image(
        &t,
        "evil",
        Some("ID=_any\n"),
        &[
            ("usr/share/escape/pwned", "x"),
            ("opt/pwned", "x"),
            ("srv/pwned", "x"),
            ("usr/bin/up", "->../../../../../../../../outside/keep"),
            ("usr/bin/abs", &format!("->{}", outside.display())),
            ("usr/share/dirlink", "->/"),
            ("run/sik/extensions/follow/journal", "sik-link-journal 1\n"),
            ("run/sik/extensions/x/pwned", "x"),
        ],
    );
    // A second extension that has a directory where the first has a symlink to /.
    let follow = image(
        &t,
        "follow",
        Some("ID=_any\n"),
        &[
            ("usr/share/dirlink/pwned", "x"),
            ("usr/share/dirlink/etc/pwned", "x"),
        ],
    );
    let outside_before = listing(&outside);
    let before = listing(&root);
    let out = link(&root, &["--allow-unsigned"], &[&evil, &follow]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/usr/share/escape: a symlink of ROOT leads outside ROOT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/opt: a symlink of ROOT leads outside ROOT"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "sik: conflict: follow: /usr/share/dirlink: already provided by extension evil"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("/run/sik/extensions: the linker's own state directory"),
        "{stderr}"
    );
    assert!(!root.join("run/sik/extensions/x").exists());
    assert_same(&outside_before, &listing(&outside), "outside ROOT");
    // The absolute /srv symlink is resolved inside ROOT, never on the host.
    assert!(root.join("tmp").exists());
    assert!(!root.join("pwned").exists() && !root.join("etc/pwned").exists());
    // The image's own symlinks are linked as entries, not followed.
    assert_eq!(
        read_link_in_root(&root, "usr/bin/up"),
        "/run/sik/extensions/evil/mnt/usr/bin/up"
    );
    unlink(&root, &["evil", "follow"]);
    assert_same(&outside_before, &listing(&outside), "outside ROOT");
    let after = listing(&root);
    // srv -> /abs/outside was resolved inside ROOT: the directories made there are removed again.
    assert_same(&before, &after, "after unlink");
}

#[test]
fn killed_linker_is_completed_by_the_next_link_or_unlink() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let img = acme(&t);
    let other = image(
        &t,
        "zeta",
        Some("ID=_any\n"),
        &[("usr/bin/zeta", "z"), ("etc/zeta/z.conf", "z")],
    );
    std::fs::create_dir_all(root.join("etc/acme")).unwrap();
    std::fs::write(root.join("etc/acme/acme.conf"), "mine").unwrap();
    let before = listing(&root);
    for n in 1..=12 {
        for then_link in [true, false] {
            let out = run(sik()
                .arg("link")
                .arg("--test-abort-after")
                .arg(n.to_string())
                .arg("--root")
                .arg(&root)
                .args(["--allow-unsigned", "--replace"])
                .arg(&img)
                .arg(&other));
            assert!(!out.status.success(), "n={n}: the linker was not aborted");
            let doc = status(&root);
            assert_eq!(ext(&doc, "acme")["complete"], false, "n={n}");
            if then_link {
                ok(&link(
                    &root,
                    &["--allow-unsigned", "--replace"],
                    &[&img, &other],
                ));
                let doc = status(&root);
                assert_eq!(ext(&doc, "acme")["files"], 6, "n={n}");
                assert_eq!(read_in_root(&root, "etc/acme/acme.conf"), "conf");
            }
            ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
            assert_same(
                &before,
                &listing(&root),
                &format!("n={n}, link again: {then_link}"),
            );
            assert_eq!(read_in_root(&root, "etc/acme/acme.conf"), "mine");
        }
    }
    assert_detached(&img);
    assert_detached(&other);
}

#[test]
fn fifty_extensions_at_once() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let imgs: Vec<PathBuf> = (0..50)
        .map(|i| {
            let bin = format!("usr/bin/tool{i:02}");
            let fw = format!("lib/firmware/vendor{}/fw{i:02}.bin", i % 5);
            let share = format!("usr/share/ext{i:02}/README");
            image(
                &t,
                &format!("ext{i:02}"),
                Some("ID=_any\n"),
                &[
                    (&bin, "t"),
                    (&fw, "f"),
                    (&share, "r"),
                    ("usr/share/common/shared", "s"),
                ],
            )
        })
        .collect();
    let before = listing(&root);
    let refs: Vec<&Path> = imgs.iter().map(PathBuf::as_path).collect();
    let out = link(&root, &["--allow-unsigned", "--quiet"], &refs);
    ok(&out);
    let doc = status(&root);
    assert_eq!(doc["extensions"].as_array().unwrap().len(), 50);
    for i in 0..50 {
        assert!(root.join(format!("usr/bin/tool{i:02}")).is_symlink());
        assert!(
            root.join(format!("usr/lib/firmware/vendor{}/fw{i:02}.bin", i % 5))
                .is_symlink()
        );
    }
    assert_eq!(
        read_link_in_root(&root, "usr/share/common/shared"),
        "/run/sik/extensions/ext00/mnt/usr/share/common/shared"
    );
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert_same(&before, &listing(&root), "after unlink");
    for i in &imgs {
        assert_detached(i);
    }
}

#[test]
fn extract_when_mounting_is_impossible_and_directory_sources() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let img = acme(&t);
    let overlay = t.mkdir("overlay");
    std::fs::create_dir_all(overlay.join("etc/skel")).unwrap();
    std::fs::write(overlay.join("etc/skel/.profile-extra"), "x").unwrap();
    std::fs::write(overlay.join("etc/motd"), "hello").unwrap();
    let before = listing(&root);

    let out = run(sik()
        .arg("link")
        .arg("--test-no-mount")
        .arg("--root")
        .arg(&root)
        .arg("--allow-unsigned")
        .arg(&img));
    assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot mount"));

    let out = run(sik()
        .arg("link")
        .arg("--test-no-mount")
        .arg("--root")
        .arg(&root)
        .args(["--allow-unsigned", "--extract"])
        .arg(&img));
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("extracted into the state directory"));
    assert!(
        !crate::util::run_ok(cmd("findmnt").arg("-rn").arg("-o").arg("TARGET"))
            .contains(&root.display().to_string())
    );
    assert_eq!(
        read_in_root(&root, "usr/lib/firmware/acme/fw.bin"),
        "firmware"
    );
    assert_eq!(ext(&status(&root), "acme")["mode"], "extract");
    // Linking again reuses the staged content.
    let after1 = listing(&root);
    ok(&run(sik()
        .arg("link")
        .arg("--test-no-mount")
        .arg("--root")
        .arg(&root)
        .args(["--allow-unsigned", "--extract"])
        .arg(&img)));
    assert_same(&after1, &listing(&root), "second link");

    // A directory: bind-mounted read-only, no extension-release needed.
    ok(&link(&root, &[], &[&overlay]));
    assert_eq!(read_in_root(&root, "etc/motd"), "hello");
    assert_eq!(
        read_link_in_root(&root, "etc/skel/.profile-extra"),
        "/run/sik/extensions/overlay/mnt/etc/skel/.profile-extra"
    );
    assert_eq!(ext(&status(&root), "overlay")["mode"], "bind");
    unlink(&root, &["acme", "overlay"]);
    assert_same(&before, &listing(&root), "after unlink");
    assert!(overlay.join("etc/motd").exists());

    // A directory that cannot be bind-mounted is copied with --extract.
    ok(&run(sik()
        .arg("link")
        .arg("--test-no-mount")
        .arg("--root")
        .arg(&root)
        .arg("--extract")
        .arg(&overlay)));
    assert_eq!(ext(&status(&root), "overlay")["mode"], "extract");
    assert_eq!(read_in_root(&root, "etc/motd"), "hello");
    std::fs::write(overlay.join("etc/motd"), "changed").unwrap();
    assert_eq!(
        read_in_root(&root, "etc/motd"),
        "hello",
        "the staged copy is independent"
    );
    unlink(&root, &["overlay"]);
    assert_same(&before, &listing(&root), "after unlink");
    assert_eq!(
        std::fs::read_to_string(overlay.join("etc/motd")).unwrap(),
        "changed"
    );
}

/// `--extract` stages an image's regular files (read through the verified
/// descriptor) but none of its device nodes or FIFOs: the loop mount the
/// copy stands in for is `nodev`, and a staged copy must not make them
/// usable.
#[test]
fn extract_stages_no_device_nodes_or_fifos() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let tree = t.mkdir("tree-spec");
    let rel = tree.join("usr/lib/extension-release.d/extension-release.spec");
    std::fs::create_dir_all(rel.parent().unwrap()).unwrap();
    std::fs::write(&rel, "ID=_any\n").unwrap();
    std::fs::create_dir_all(tree.join("usr/share/spec")).unwrap();
    std::fs::write(tree.join("usr/share/spec/a.txt"), "a").unwrap();
    let img = t.join("spec.ExtensionImage");
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&img)
            .args(["-quiet", "-noappend", "-no-progress"])
            .args(["-p", "usr/share/spec/null c 666 0 0 1 3"])
            .args(["-p", "usr/share/spec/fifo i 644 0 0 f"]),
    );
    let before = listing(&root);
    ok(&run(sik()
        .arg("link")
        .arg("--test-no-mount")
        .arg("--root")
        .arg(&root)
        .args(["--allow-unsigned", "--extract"])
        .arg(&img)));
    assert_eq!(ext(&status(&root), "spec")["mode"], "extract");
    assert_eq!(read_in_root(&root, "usr/share/spec/a.txt"), "a");
    let staged = root.join("run/sik/extensions/spec/mnt/usr/share/spec");
    assert!(staged.join("a.txt").is_file());
    for n in ["null", "fifo"] {
        assert!(
            std::fs::symlink_metadata(staged.join(n)).is_err(),
            "{n} was staged"
        );
        assert!(
            std::fs::symlink_metadata(root.join("usr/share/spec").join(n)).is_err(),
            "{n} was linked"
        );
    }
    unlink(&root, &["spec"]);
    assert_same(&before, &listing(&root), "after unlink");
}

fn key(t: &TestDir, name: &str) -> PathBuf {
    sik_key(t, name).0
}

fn sign(img: &Path, key: &Path) {
    ok(&run(sik().arg("sign").arg(img).arg("--key").arg(key)));
}

#[test]
fn signature_policy_trusted_untrusted_unsigned_modified() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let trusted = key(&t, "trusted");
    let stranger = key(&t, "stranger");
    let keys = t.mkdir("keys");
    std::fs::copy(t.join("trusted.pub"), keys.join("trusted.pub")).unwrap();

    let good = image(&t, "good", Some("ID=_any\n"), &[("usr/bin/good", "g")]);
    sign(&good, &trusted);
    let foreign = image(
        &t,
        "foreign",
        Some("ID=_any\n"),
        &[("usr/bin/foreign", "f")],
    );
    sign(&foreign, &stranger);
    let unsigned = image(
        &t,
        "unsigned",
        Some("ID=_any\n"),
        &[("usr/bin/unsigned", "u")],
    );
    let modified = image(
        &t,
        "modified",
        Some("ID=_any\n"),
        &[("usr/bin/modified", "m")],
    );
    sign(&modified, &trusted);
    // Flip one byte of the payload (the superblock's mkfs time) after signing.
    let mut bytes = std::fs::read(&modified).unwrap();
    bytes[8] ^= 0x55;
    std::fs::write(&modified, bytes).unwrap();
    let before = listing(&root);

    let out = link(
        &root,
        &["--trust", keys.to_str().unwrap()],
        &[&good, &foreign, &unsigned, &modified],
    );
    let stderr = assert_fails(&out, 1, &["3 of 4 sources refused"]);
    assert!(
        stderr.contains("refused: foreign:") && stderr.contains("not trusted: SHA256:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused: unsigned:") && stderr.contains("unsigned"),
        "{stderr}"
    );
    assert!(
        stderr.contains("refused: modified:") && stderr.contains("signature check failed"),
        "{stderr}"
    );
    assert_eq!(read_in_root(&root, "usr/bin/good"), "g");
    let doc = status(&root);
    let signer = ext(&doc, "good")["signer"].as_str().unwrap().to_string();
    assert!(
        signer.contains("trusted@test") && signer.contains("SHA256:"),
        "{signer}"
    );
    for n in ["foreign", "unsigned", "modified"] {
        assert!(!root.join("usr/bin").join(n).exists(), "{n} linked");
    }
    // --allow-unsigned admits the unsigned and the untrusted, never the modified one.
    let out = link(
        &root,
        &["--trust", keys.to_str().unwrap(), "--allow-unsigned"],
        &[&foreign, &unsigned, &modified],
    );
    assert_fails(&out, 1, &["1 of 3 sources refused"]);
    assert!(
        root.join("usr/bin/foreign").is_symlink() && root.join("usr/bin/unsigned").is_symlink()
    );
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert_same(&before, &listing(&root), "after unlink");

    // Without --trust, ROOT's /etc/sik/trusted.d is a trust store.
    std::fs::create_dir_all(root.join("etc/sik/trusted.d")).unwrap();
    std::fs::copy(
        t.join("trusted.pub"),
        root.join("etc/sik/trusted.d/trusted.pub"),
    )
    .unwrap();
    let before = listing(&root);
    ok(&link(&root, &[], &[&good]));
    assert!(root.join("usr/bin/good").is_symlink());
    unlink(&root, &["good"]);
    assert_same(&before, &listing(&root), "after unlink");
}

#[test]
fn extension_run_exit_status_and_timeout_reported() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let fails = image(
        &t,
        "fails",
        Some("ID=_any\n"),
        &[
            ("usr/bin/f", "f"),
            ("ExtensionRun", "#!/bin/sh\necho oops\nexit 3\n"),
        ],
    );
    let hangs = image(
        &t,
        "hangs",
        Some("ID=_any\n"),
        &[
            ("usr/bin/h", "h"),
            ("ExtensionRun", "#!/bin/sh\nwhile :; do :; done\n"),
        ],
    );
    let before = listing(&root);
    let out = link(
        &root,
        &["--allow-unsigned", "--run-timeout", "1"],
        &[&fails, &hangs],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fails: ExtensionRun failed with exit status 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hangs: ExtensionRun killed after 1 s"),
        "{stderr}"
    );
    let doc = status(&root);
    assert_eq!(ext(&doc, "fails")["run"]["exit_code"], 3);
    assert_eq!(ext(&doc, "hangs")["run"]["timed_out"], true);
    let log = ext(&doc, "fails")["run"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::read_to_string(log).unwrap(), "oops\n");
    // Linking again does not run it again.
    let out = link(
        &root,
        &["--allow-unsigned", "--run-timeout", "1"],
        &[&fails],
    );
    ok(&out);
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert_same(&before, &listing(&root), "after unlink");
}

#[test]
fn state_directory_outside_root() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let state = t.join("initramfs-run/sik");
    let img = acme(&t);
    let before = listing(&root);
    let out = run(sik()
        .arg("link")
        .arg("--root")
        .arg(&root)
        .arg("--state")
        .arg(&state)
        .arg("--allow-unsigned")
        .arg(&img));
    ok(&out);
    // Links name the state directory by its own path (as an initramfs's /run
    // is seen after it is moved into the new root).
    let target = read_link_in_root(&root, "usr/bin/acme-tool");
    assert_eq!(
        target,
        format!(
            "{}/acme/mnt/usr/bin/acme-tool",
            std::fs::canonicalize(&state).unwrap().display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "#!/bin/sh\necho acme\n"
    );
    // ExtensionRun ran inside ROOT, seeing the content at the same path.
    let ran = read_in_root(&root, "run/acme-ran");
    assert!(
        ran.contains("SIK_TEST_ROOT=merged") && ran.contains("acme"),
        "{ran}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ExtensionRun"));
    let st = ok(&run(sik()
        .args(["status", "--json", "--root"])
        .arg(&root)
        .arg("--state")
        .arg(&state)));
    assert!(st.contains("\"name\": \"acme\""), "{st}");
    // Without --state, nothing is linked there.
    let doc = status(&root);
    assert!(doc["extensions"].as_array().unwrap().is_empty());
    ok(&run(sik()
        .args(["unlink", "acme", "--root"])
        .arg(&root)
        .arg("--state")
        .arg(&state)));
    assert_same(&before, &listing(&root), "after unlink");
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "state left behind"
    );
    assert_detached(&img);
}

/// `find ROOT -printf '%p %y %m %u:%g %l\n'`, sorted: the listing compared
/// byte for byte.
fn find_listing(root: &Path) -> String {
    let out = run_ok(
        cmd("find")
            .arg(root)
            .args(["-printf", "%p %y %m %u:%g %l\\n"]),
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// An ExtensionImage whose tables are stored uncompressed (so entry names
/// can be patched in place), from `files` (path, content).
fn raw_image(t: &TestDir, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = t.join(format!("tree-{name}"));
    let _ = std::fs::remove_dir_all(&tree);
    for (p, c) in files {
        let full = tree.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, c).unwrap();
    }
    let img = t.join(format!("{name}.ExtensionImage"));
    let _ = std::fs::remove_file(&img);
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&img)
            .args(["-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet"])
            .args(["-all-root", "-noappend"]),
    );
    img
}

/// Replace the entry name `old` in the (uncompressed) directory table of
/// `img` by `new` (same length).
fn patch_name(img: &Path, old: &[u8], new: &[u8]) {
    assert_eq!(old.len(), new.len());
    let mut b = std::fs::read(img).unwrap();
    let dir = u64::from_le_bytes(b[72..80].try_into().unwrap()) as usize;
    let i = dir
        + b[dir..]
            .windows(old.len())
            .position(|w| w == old)
            .unwrap_or_else(|| panic!("{old:?} not in the directory table"));
    b[i..i + old.len()].copy_from_slice(new);
    std::fs::write(img, b).unwrap();
}

/// Mount points below `dir` in /proc/self/mountinfo.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| Path::new(mp).starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// An image that mounts but holds an entry that cannot be used (a name
/// with a NUL byte, `/`, a second `.` or `..`) is refused and everything
/// its link made is undone by the linker itself (moved-aside files put
/// back, symlinks and directories removed, the image unmounted), while the
/// other image of the same run is linked; a kill during the undoing is
/// completed by the next run.
#[test]
fn hostile_entry_names_refuse_and_undo_the_partial_link() {
    if !ready() || !require_tool("find") {
        return;
    }
    let t = TestDir::new();
    let good = raw_image(&t, "good", &[("usr/bin/good", "g")]);
    // (label, bytes of a name in the image, replacement, what the refusal line must say)
    let cases: [(&str, &[u8], &[u8], &str); 5] = [
        (
            "nul-file",
            b"aXXXb",
            b"a\0\0\0b",
            "image entry /usr/share/evil/a\\0\\0\\0b: the name contains a NUL byte",
        ),
        (
            "nul-dir",
            b"dXXXe",
            b"d\0\0\0e",
            "image entry /usr/share/evil/d\\0\\0\\0e: the name contains a NUL byte",
        ),
        (
            "dotdot",
            b"zz",
            b"..",
            "image entry /usr/share/evil/..: an entry named like the directory's own link",
        ),
        (
            "dot",
            b"q",
            b".",
            "image entry /usr/share/evil/.: an entry named like the directory's own link",
        ),
        (
            "slash",
            b"sXs",
            b"s/s",
            "image entry /usr/share/evil: cannot read the directory",
        ),
    ];
    for (label, old, new, needle) in cases {
        let root = merged_root(&t, &format!("root-{label}"));
        let state = t.join(format!("state-{label}"));
        let evil = raw_image(
            &t,
            "evil",
            &[
                ("etc/hostname", "evil"),
                ("lib/firmware/evil/fw.bin", "fw"),
                ("usr/bin/evil-tool", "e"),
                ("usr/share/evil/aXXXb", "1"),
                ("usr/share/evil/dXXXe/inner", "2"),
                ("usr/share/evil/tXXX", "3"),
                ("usr/share/evil/zz", "4"),
                ("usr/share/evil/q", "5"),
                ("usr/share/evil/sXs", "6"),
                ("usr/share/evil/sub/deep", "7"),
            ],
        );
        patch_name(&evil, old, new);
        let before = find_listing(&root);
        let args = |c: &mut std::process::Command| {
            c.arg("link")
                .arg("--root")
                .arg(&root)
                .arg("--state")
                .arg(&state)
                .args(["--allow-unsigned", "--ignore-compat", "--replace"])
                .arg(&evil)
                .arg(&good);
        };
        let mut c = sik();
        args(&mut c);
        let out = run(&mut c);
        let stderr = assert_fails(&out, 1, &["1 of 2 sources refused", needle]);
        let refusals: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("sik: refused:"))
            .collect();
        assert_eq!(refusals.len(), 1, "{label}: {stderr}");
        assert!(refusals[0].starts_with("sik: refused: evil: "), "{stderr}");
        assert!(
            !stderr.bytes().any(|b| b < 0x20 && b != b'\n' || b == 0x7f),
            "{label}: raw control bytes on stderr: {stderr:?}"
        );
        // The good image is linked; of the evil one nothing is left.
        let doc = status_in(&root, &state);
        let exts = doc["extensions"].as_array().unwrap();
        assert_eq!(exts.len(), 1, "{label}: {doc:#}");
        assert_eq!(exts[0]["name"], "good");
        assert_eq!(exts[0]["complete"], true);
        assert_eq!(doc["refused"][0]["name"], "evil");
        assert!(!state.join("evil").exists(), "{label}: evil's state left");
        let after = find_listing(&root);
        let good_link = format!(
            "{} l 777 root:root {}/good/mnt/usr/bin/good",
            root.join("usr/bin/good").display(),
            state.display()
        );
        let mut want: Vec<&str> = before.lines().chain([good_link.as_str()]).collect();
        want.sort();
        assert_eq!(after, want.join("\n"), "{label}: ROOT differs");
        let mounts = mounts_below(&state);
        assert_eq!(mounts.len(), 1, "{label}: {mounts:?}");
        assert!(mounts[0].ends_with("/good/mnt"), "{mounts:?}");
        ok(&run(sik()
            .args(["unlink", "good", "--root"])
            .arg(&root)
            .arg("--state")
            .arg(&state)));
        assert_eq!(find_listing(&root), before, "{label}: after unlink");
        assert!(mounts_below(&state).is_empty());

        if label == "nul-file" {
            // Killed after 1..3 removals of the undoing: the next run (of
            // another image) completes it.
            for n in 1..=3 {
                let mut c = sik();
                args(&mut c);
                c.arg("--test-abort-undo-after").arg(n.to_string());
                let out = run(&mut c);
                assert!(
                    !out.status.success() && out.status.code().is_none(),
                    "n={n}: not killed: {out:?}"
                );
                let doc = status_in(&root, &state);
                let evil_st = doc["extensions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == "evil")
                    .unwrap_or_else(|| panic!("n={n}: {doc:#}"));
                assert_eq!(evil_st["complete"], false);
                let out = run(sik()
                    .arg("link")
                    .arg("--root")
                    .arg(&root)
                    .arg("--state")
                    .arg(&state)
                    .args(["--allow-unsigned", "--ignore-compat"])
                    .arg(&good));
                let stderr = String::from_utf8_lossy(&out.stderr);
                ok(&out);
                assert!(
                    stderr.contains("evil: the undoing of its refused link"),
                    "{stderr}"
                );
                let doc = status_in(&root, &state);
                assert_eq!(doc["extensions"].as_array().unwrap().len(), 1, "{doc:#}");
                assert_eq!(find_listing(&root), want.join("\n"), "n={n}");
                ok(&run(sik()
                    .args(["unlink", "good", "--root"])
                    .arg(&root)
                    .arg("--state")
                    .arg(&state)));
                assert_eq!(find_listing(&root), before, "n={n}: after unlink");
                assert!(mounts_below(&state).is_empty(), "n={n}");
            }
        }
    }
    assert_detached(&good);
    assert_detached(&t.join("evil.ExtensionImage"));
}

fn status_in(root: &Path, state: &Path) -> serde_json::Value {
    let out = ok(&run(sik()
        .args(["status", "--json", "--root"])
        .arg(root)
        .arg("--state")
        .arg(state)));
    serde_json::from_str(&out).unwrap()
}

/// Large images are linked and unlinked on several threads (forced here by
/// the hidden option `--test-parallel`): the outcome is the same as linking on one thread —
/// same ROOT, same counts and conflicts, in the same order — including
/// subtrees that meet in one directory of ROOT (`lib` and `usr/lib` of a
/// merged-/usr root), and an unusable entry met by one thread undoes the
/// whole link.
#[test]
fn threaded_link_and_unlink_match_the_single_threaded_ones() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let mut files: Vec<(String, String)> = Vec::new();
    for top in ["aa", "bb", "cc", "dd", "etc", "lib", "opt", "srv", "usr"] {
        for d in 0..4 {
            for f in 0..6 {
                files.push((format!("{top}/d{d}/f{f}"), format!("{top}{d}{f}")));
            }
        }
    }
    files.push(("usr/lib/firmware/u.bin".into(), "u".into()));
    files.push(("lib/firmware/l.bin".into(), "l".into()));
    files.push(("etc/hostname".into(), "other".into()));
    files.push(("usr/bin/tool".into(), "t".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let img = raw_image(&t, "wide", &refs);
    let linked = |root: &Path, threads: bool| {
        let mut c = sik();
        c.arg("link");
        if threads {
            c.arg("--test-parallel");
        }
        c.arg("--root")
            .arg(root)
            .args(["--allow-unsigned", "--ignore-compat"])
            .arg(&img);
        let out = ok(&run(&mut c));
        let doc = status(root);
        (out, ext(&doc, "wide").clone())
    };
    let one = merged_root(&t, "one");
    let many = merged_root(&t, "many");
    let before = listing(&many);
    let (out1, st1) = linked(&one, false);
    let (outn, stn) = linked(&many, true);
    assert_eq!(out1, outn);
    assert_eq!(st1["files"], stn["files"]);
    assert_eq!(st1["dirs"], stn["dirs"]);
    assert_eq!(st1["conflicts"], stn["conflicts"]);
    assert_eq!(stn["files"], files.len() - 1, "{stn:#}");
    assert_same(&listing(&one), &listing(&many), "one thread vs several");
    assert!(many.join("usr/lib/firmware/l.bin").is_symlink());
    assert!(many.join("usr/lib/firmware/u.bin").is_symlink());
    // Again: nothing changes.
    let (again, _) = linked(&many, true);
    assert!(again.contains("(0 new)"), "{again}");
    let out = ok(&run(sik()
        .args(["unlink", "--test-parallel", "wide", "--root"])
        .arg(&many)));
    assert!(out.contains(&format!("{} links", files.len() - 1)), "{out}");
    assert_same(&before, &listing(&many), "after a threaded unlink");
    unlink(&one, &["wide"]);

    // An unusable name in one subtree: refused, and the other threads'
    // work is undone too.
    let bad = raw_image(&t, "bad", &refs);
    patch_name(&bad, b"f5", b"/x");
    let before = find_listing(&many);
    let out = run(sik()
        .arg("link")
        .arg("--test-parallel")
        .arg("--root")
        .arg(&many)
        .args(["--allow-unsigned", "--ignore-compat"])
        .arg(&bad));
    assert_fails(&out, 1, &["1 of 1 sources refused", "unusable image entry"]);
    // The state directory (below /run/sik) is left aside.
    let outside_state = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| !l.contains("/run/sik"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        outside_state(&find_listing(&many)),
        outside_state(&before),
        "the refused threaded link was not undone"
    );
    assert!(mounts_below(&many).is_empty());
    assert_detached(&img);
    assert_detached(&bad);
}

/// Flip one byte of a file in place (the same inode, as `cp` over it or
/// a writer holding it open would change it).
fn rewrite_in_place(p: &Path, offset: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
}

#[test]
fn sources_others_can_write_are_refused_and_a_failed_recheck_unlinks() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let signer = key(&t, "trusted");
    let keys = t.mkdir("keys");
    std::fs::copy(t.join("trusted.pub"), keys.join("trusted.pub")).unwrap();
    let img = image(&t, "good", Some("ID=_any\n"), &[("usr/bin/good", "g")]);
    sign(&img, &signer);
    let trust = ["--trust", keys.to_str().unwrap()];
    let before = listing(&root);

    // Owned by another user: that user could rewrite the bytes under the
    // loop device after the check.
    std::os::unix::fs::chown(&img, Some(1000), Some(1000)).unwrap();
    let out = link(&root, &trust, &[&img]);
    let stderr = assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(stderr.contains("owned by uid 1000"), "{stderr}");
    // Root's, but group or world writable.
    std::os::unix::fs::chown(&img, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = link(&root, &trust, &[&img]);
    let stderr = assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(
        stderr.contains("writable by its group or by everyone"),
        "{stderr}"
    );
    assert!(!root.join("usr/bin/good").exists());
    assert_same(&before, &listing(&root), "after the refusals");

    // Root's and 0644: linked, signed.
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(ok(&link(&root, &trust, &[&img])).contains("signed by"));
    assert!(ext(&status(&root), "good")["signer"].is_string());
    // Rewritten in place after the link: status no longer names a signer.
    rewrite_in_place(&img, 8);
    let doc = status(&root);
    assert!(ext(&doc, "good")["signer"].is_null(), "{doc:#}");
    assert_eq!(ext(&doc, "good")["changed_since_link"], true);
    let text = ok(&run(sik().arg("status").arg("--root").arg(&root)));
    assert!(text.contains("changed since link"), "{text}");
    // Linking it again fails the check and takes the earlier link down.
    let out = link(&root, &trust, &[&img]);
    let stderr = assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(
        stderr.contains("signature check failed") && stderr.contains("earlier link was removed"),
        "{stderr}"
    );
    assert!(!root.join("usr/bin/good").exists());
    assert!(status(&root)["extensions"].as_array().unwrap().is_empty());
    assert_detached(&img);
}

#[test]
fn rename_race_never_links_unchecked_bytes_as_signed() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let signer = key(&t, "trusted");
    let keys = t.mkdir("keys");
    std::fs::copy(t.join("trusted.pub"), keys.join("trusted.pub")).unwrap();
    let signed = image(
        &t,
        "signed",
        Some("ID=_any\n"),
        &[("usr/bin/tool", "signed")],
    );
    sign(&signed, &signer);
    let unsigned = image(
        &t,
        "unsigned",
        Some("ID=_any\n"),
        &[("usr/bin/tool", "evil")],
    );
    let src = t.join("media/tool.ExtensionImage");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let trust = ["--trust", keys.to_str().unwrap()];
    let (mut linked, mut refused) = (0, 0);
    for i in 0..40 {
        std::fs::copy(&signed, &src).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A thread renames the unsigned image over the path while `sik
        // link` runs, at a different moment of each run (0 to 16 ms in).
        let swapper = {
            let (stop, src) = (stop.clone(), src.clone());
            let evil = unsigned.clone();
            std::thread::spawn(move || {
                let tmp = src.with_extension("tmp");
                let start = std::time::Instant::now();
                let at = std::time::Duration::from_micros(400 * i);
                while start.elapsed() < at {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::hint::spin_loop();
                }
                std::fs::copy(&evil, &tmp).unwrap();
                std::fs::rename(&tmp, &src).unwrap();
            })
        };
        let out = link(&root, &trust, &[&src]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        if out.status.success() {
            linked += 1;
            assert_eq!(
                read_in_root(&root, "usr/bin/tool"),
                "signed",
                "run {i}: unchecked bytes linked"
            );
            assert!(ok(&out).contains("signed by"));
        } else {
            refused += 1;
            assert!(!root.join("usr/bin/tool").exists(), "run {i}");
        }
        let doc = status(&root);
        if let Some(e) = doc["extensions"].as_array().unwrap().first()
            && e["signer"].is_string()
        {
            assert_eq!(read_in_root(&root, "usr/bin/tool"), "signed", "run {i}");
        }
        ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    }
    eprintln!("rename race: {linked} linked (signed bytes), {refused} refused");
}

/// An overlay directory holding `files` (path, content; `ExtensionRun` executable).
fn overlay_dir(t: &TestDir, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = t.mkdir(name);
    for (p, c) in files {
        let full = d.join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, c).unwrap();
        if *p == "ExtensionRun" {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    d
}

#[test]
fn directories_and_unsigned_extension_runs_need_their_flags_under_a_trust_store() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let signer = key(&t, "trusted");
    let keys = t.mkdir("keys");
    std::fs::copy(t.join("trusted.pub"), keys.join("trusted.pub")).unwrap();
    let trust = ["--trust", keys.to_str().unwrap()];
    let run_script = |marker: &str| format!("#!/bin/sh\necho \"$SIK_EXTENSION\" > /run/{marker}\n");
    let overlay_run = run_script("overlay-ran");
    let overlay = overlay_dir(
        &t,
        "overlay",
        &[("etc/motd", "hello"), ("ExtensionRun", &overlay_run)],
    );
    let before = listing(&root);

    // A directory carries no signature: refused while keys are trusted.
    let out = link(&root, &trust, &[&overlay]);
    let stderr = assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(stderr.contains("--allow-directories"), "{stderr}");
    assert!(!root.join("etc/motd").exists());
    // Allowed by the flag; its ExtensionRun is skipped without the other one.
    let out = link(
        &root,
        &[&trust[..], &["--allow-directories"]].concat(),
        &[&overlay],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("overlay: ExtensionRun not run: skipped")
            && stderr.contains("--allow-unsigned-run"),
        "{stderr}"
    );
    assert_eq!(read_in_root(&root, "etc/motd"), "hello");
    assert!(!root.join("run/overlay-ran").exists(), "ExtensionRun ran");
    let doc = status(&root);
    assert!(
        ext(&doc, "overlay")["run"]["error"]
            .as_str()
            .unwrap()
            .contains("skipped"),
        "{doc:#}"
    );
    unlink(&root, &["overlay"]);

    // An image linked with --allow-unsigned: linked, its ExtensionRun skipped ...
    let unsigned_run = run_script("unsigned-ran");
    let unsigned = image(
        &t,
        "unsigned",
        Some("ID=_any\n"),
        &[("usr/bin/u", "u"), ("ExtensionRun", &unsigned_run)],
    );
    let out = link(
        &root,
        &[&trust[..], &["--allow-unsigned"]].concat(),
        &[&unsigned],
    );
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsigned: ExtensionRun not run: skipped")
    );
    assert!(!root.join("run/unsigned-ran").exists(), "ExtensionRun ran");
    // ... and run with --allow-unsigned-run (linking the same source again
    // runs the skipped one).
    ok(&link(
        &root,
        &[&trust[..], &["--allow-unsigned", "--allow-unsigned-run"]].concat(),
        &[&unsigned],
    ));
    assert_eq!(read_in_root(&root, "run/unsigned-ran"), "unsigned\n");
    assert_eq!(ext(&status(&root), "unsigned")["run"]["exit_code"], 0);
    unlink(&root, &["unsigned"]);
    std::fs::remove_file(root.join("run/unsigned-ran")).unwrap();

    // A signed image's ExtensionRun runs without any flag.
    let signed_run = run_script("signed-ran");
    let signed = image(
        &t,
        "signed",
        Some("ID=_any\n"),
        &[("usr/bin/s", "s"), ("ExtensionRun", &signed_run)],
    );
    sign(&signed, &signer);
    ok(&link(&root, &trust, &[&signed]));
    assert_eq!(read_in_root(&root, "run/signed-ran"), "signed\n");
    unlink(&root, &["signed"]);
    std::fs::remove_file(root.join("run/signed-ran")).unwrap();
    assert_same(&before, &listing(&root), "after unlink");
}

#[test]
fn a_linked_overlay_cannot_add_a_trusted_key() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let good_key = key(&t, "trusted");
    let evil_key = key(&t, "evil");
    let evil_pub = std::fs::read_to_string(t.join("evil.pub")).unwrap();
    let overlay = overlay_dir(&t, "drop", &[("etc/sik/trusted.d/evil.pub", &evil_pub)]);
    let evil = image(&t, "evil", Some("ID=_any\n"), &[("usr/bin/evil", "e")]);
    sign(&evil, &evil_key);
    let good = image(&t, "good", Some("ID=_any\n"), &[("usr/bin/good", "g")]);
    sign(&good, &good_key);
    let before = listing(&root);

    // No trust store yet: the overlay links, creating etc/sik/trusted.d
    // with a symlink to the attacker's key.
    ok(&link(&root, &[], &[&overlay]));
    assert!(root.join("etc/sik/trusted.d/evil.pub").is_symlink());
    // That directory is the linker's own: not a trust store.
    let out = link(&root, &[], &[&evil]);
    let stderr = assert_fails(&out, 1, &["1 of 1 sources refused"]);
    assert!(stderr.contains("created by sik link"), "{stderr}");
    assert!(!root.join("usr/bin/evil").exists());
    unlink(&root, &["drop"]);
    assert_same(&before, &listing(&root), "after unlink");

    // ROOT's own trust store: a key symlinked into it by an overlay is not read.
    std::fs::create_dir_all(root.join("etc/sik/trusted.d")).unwrap();
    std::fs::copy(
        t.join("trusted.pub"),
        root.join("etc/sik/trusted.d/trusted.pub"),
    )
    .unwrap();
    ok(&link(&root, &["--allow-directories"], &[&overlay]));
    assert!(root.join("etc/sik/trusted.d/evil.pub").is_symlink());
    let out = link(&root, &[], &[&evil, &good]);
    let stderr = assert_fails(&out, 1, &["1 of 2 sources refused"]);
    assert!(
        stderr.contains("refused: evil:") && stderr.contains("not trusted"),
        "{stderr}"
    );
    assert_eq!(read_in_root(&root, "usr/bin/good"), "g");
    assert!(!root.join("usr/bin/evil").exists());
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
}

#[test]
fn directories_made_in_root_are_roots_and_user_symlinks_are_not_followed() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    // An image whose new directory belongs to uid 1000, mode 0777.
    let tree = t.mkdir("tree-owned");
    std::fs::create_dir_all(tree.join("usr/share/owned")).unwrap();
    std::fs::write(tree.join("usr/share/owned/data"), "d").unwrap();
    std::fs::create_dir_all(tree.join("usr/share/swapped")).unwrap();
    std::fs::write(tree.join("usr/share/swapped/planted"), "p").unwrap();
    for d in ["usr/share/owned", "usr/share/swapped"] {
        std::os::unix::fs::chown(tree.join(d), Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(tree.join(d), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::create_dir_all(tree.join("usr/lib/extension-release.d")).unwrap();
    std::fs::write(
        tree.join("usr/lib/extension-release.d/extension-release.owned"),
        "ID=_any\n",
    )
    .unwrap();
    let img = t.join("owned.ExtensionImage");
    run_ok(
        cmd("mksquashfs")
            .arg(&tree)
            .arg(&img)
            .args(["-quiet", "-noappend", "-no-progress"]),
    );
    // uid 1000 owns a symlink in ROOT where the image has a directory
    // (as if it had swapped a directory it owned for one).
    std::os::unix::fs::symlink("/etc", root.join("usr/share/swapped")).unwrap();
    std::os::unix::fs::lchown(root.join("usr/share/swapped"), Some(1000), Some(1000)).unwrap();

    let out = link(&root, &["--allow-unsigned"], &[&img]);
    ok(&out);
    let m = std::fs::symlink_metadata(root.join("usr/share/owned")).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o755));
    assert_eq!(read_in_root(&root, "usr/share/owned/data"), "d");
    // Not followed: nothing was written into ROOT's /etc.
    assert!(
        !root.join("etc/planted").exists(),
        "followed uid 1000's symlink"
    );
    let doc = status(&root);
    let c = ext(&doc, "owned")["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/usr/share/swapped")
        .unwrap_or_else(|| panic!("{doc:#}"))
        .clone();
    assert_eq!(c["kind"], "escapes");
    assert!(c["detail"].as_str().unwrap().contains("uid 1000"), "{c}");
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert!(!root.join("usr/share/owned").exists());

    // Signed by a trusted key: the image's owner and mode are kept.
    let signer = key(&t, "trusted");
    sign(&img, &signer);
    ok(&link(
        &root,
        &["--trust", t.join("trusted.pub").to_str().unwrap()],
        &[&img],
    ));
    let m = std::fs::symlink_metadata(root.join("usr/share/owned")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (1000, 0o777));
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
}

/// Unmounts (lazily, everything below) a mount point when dropped, so a
/// failing test leaves no mount behind.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = run(cmd("umount").arg("-R").arg("-l").arg(&self.0));
    }
}

/// A fresh tmpfs on ROOT/run, as a running system has.
fn mount_tmpfs_run(root: &Path) {
    run_ok(
        cmd("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(root.join("run")),
    );
}

/// A reboot as far as the linker can tell: its mounts below ROOT are gone
/// and ROOT/run is a new, empty tmpfs.
fn reboot(root: &Path) {
    let mut mounts = mounts_below(root);
    mounts.sort();
    for m in mounts.iter().rev() {
        run_ok(cmd("umount").arg(m));
    }
    mount_tmpfs_run(root);
}

#[test]
fn replace_needs_persistent_state_and_unlink_after_a_reboot_restores() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    let _guard = Unmount(root.clone());
    mount_tmpfs_run(&root);
    let img = image(
        &t,
        "acme",
        Some("ID=_any\n"),
        &[("usr/bin/acme-tool", "tool"), ("etc/hostname", "other")],
    );
    let before = listing(&root);
    let volatile = root.join("run/sik/extensions");
    let vstate = ["--allow-unsigned", "--state", volatile.to_str().unwrap()];

    // State on the tmpfs: linked; after a reboot the state is gone but the
    // symlinks are not. Linking again adopts them with journal records, so
    // unlink removes them.
    ok(&link(&root, &vstate, &[&img]));
    assert!(root.join("usr/bin/acme-tool").is_symlink());
    reboot(&root);
    ok(&link(&root, &vstate, &[&img]));
    ok(&run(sik()
        .args(["unlink", "acme", "--root"])
        .arg(&root)
        .arg("--state")
        .arg(&volatile)));
    assert!(
        !root.join("usr/bin/acme-tool").is_symlink(),
        "adopted symlink left"
    );
    // The directory the lost state had made is not known to be the
    // linker's (ROOT may hold empty directories of its own): it stays.
    std::fs::remove_dir(root.join("usr/lib/extension-release.d")).unwrap();
    assert_same(&before, &listing(&root), "after unlink of the adopted link");

    // --replace with that state: refused, naming --state.
    let out = link(&root, &[&vstate[..], &["--replace"]].concat(), &[&img]);
    let stderr = assert_fails(&out, 2, &["--state"]);
    assert!(stderr.contains("volatile"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "test\n"
    );

    // The default state of a persistent ROOT whose /run is a tmpfs is
    // persistent: after a reboot, unlink puts the replaced file back.
    ok(&link(&root, &["--allow-unsigned", "--replace"], &[&img]));
    assert_eq!(
        read_link_in_root(&root, "etc/hostname"),
        "/var/lib/sik/extensions/acme/mnt/etc/hostname"
    );
    reboot(&root);
    let out = unlink(&root, &["acme"]);
    assert!(out.contains("1 files put back"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "test\n"
    );
    assert_same(&before, &listing(&root), "after unlink following a reboot");
    assert!(!root.join("var/lib/sik").exists());
}

#[test]
fn unlink_all_removes_the_state_directories_link_made() {
    if !ready() {
        return;
    }
    let t = TestDir::new();
    let root = merged_root(&t, "root");
    std::fs::remove_dir(root.join("run")).unwrap();
    let img = image(&t, "plain", Some("ID=_any\n"), &[("usr/bin/plain", "p")]);
    ok(&link(&root, &["--allow-unsigned"], &[&img]));
    assert!(root.join("run/sik/extensions/plain").is_dir());
    ok(&run(sik().args(["unlink", "--all", "--root"]).arg(&root)));
    assert!(!root.join("run").exists(), "ROOT/run left behind");
    assert_detached(&img);
}
