//! AppImages: `sik create appimage` around a static busybox and a shell
//! AppRun, run through FUSE and through the extract-and-run fallback, the
//! runtime's `--appimage-*` options, payload compressions, hand-assembled
//! images and broken AppDirs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

const APPRUN: &str = r#"#!/bin/sh
HERE="$(dirname "$(readlink -f "$0")")"
if [ "$1" = "--wait-for-signal" ]; then
  trap 'echo "got TERM"; exit 42' TERM
  echo "ready $APPDIR"
  while :; do sleep 0.1; done
fi
echo "first line"
echo "APPIMAGE=$APPIMAGE"
echo "APPDIR=$APPDIR"
echo "ARGV0=$ARGV0"
echo "OWD=$OWD"
for a in "$@"; do echo "arg:[$a]"; done
"$HERE/usr/bin/busybox" echo "busybox ran"
exit "${APP_EXIT:-0}"
"#;

const DESKTOP: &str = "[Desktop Entry]\nType=Application\nName=Hello World\nExec=busybox\nIcon=hello\nCategories=Utility;\nX-AppImage-Version=1.0\n";

/// An AppDir around /bin/busybox (busybox-static) with a shell AppRun.
fn appdir(t: &TestDir, name: &str) -> PathBuf {
    let root = hello_appdir(t, name, APPRUN, "X-AppImage-Version=1.0\n");
    let bin = t.mkdir(&format!("{name}/usr/bin"));
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static is needed (/bin/busybox)");
    root
}

/// Pack `dir` into `out` with extra arguments.
fn pack(dir: &Path, out: &Path, extra: &[&str]) -> String {
    run_ok(
        sik()
            .args(["create", "appimage"])
            .arg(dir)
            .arg("-o")
            .arg(out)
            .args(extra),
    )
}

fn require_fuse() -> bool {
    require_root() && (Path::new("/dev/fuse").exists() || skip("needs /dev/fuse"))
}

/// Run an AppImage with a private TMPDIR (mount points) and cache.
fn app(t: &TestDir, image: &Path) -> Command {
    let mut c = cmd(image);
    c.env("TMPDIR", t.path())
        .env("XDG_CACHE_HOME", t.join("cache"))
        .env_remove("APPIMAGE_EXTRACT_AND_RUN")
        .env_remove("FUSERMOUNT_PROG")
        .env_remove("TARGET_APPIMAGE");
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn value<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in output:\n{stdout}"))
}

fn offset(t: &TestDir, image: &Path) -> u64 {
    run_ok(app(t, image).arg("--appimage-offset"))
        .trim()
        .parse()
        .expect("offset")
}

/// The runtime (the ELF before the SquashFS, reserved sections included)
/// stays at most 1 MiB, with every feature: FUSE, the extract-and-run
/// cache, every `--appimage-*` option and every payload compression.
#[test]
fn runtime_is_at_most_one_mib() {
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    let size = offset(&t, &image);
    assert!(
        size <= 1_048_576,
        "the runtime is {size} bytes, more than 1 MiB"
    );
}

#[test]
fn runs_through_fuse_with_args_env_and_status() {
    if !require_fuse() {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let outdir = t.mkdir("dir with spaces");
    // Default name from the desktop file, written in the current directory.
    let out = run_ok(
        sik()
            .args(["create", "appimage"])
            .arg(&dir)
            .current_dir(&outdir),
    );
    assert!(out.contains("Hello_World-1.0-x86_64.AppImage"), "{out}");
    let image = outdir.join("Hello_World-1.0-x86_64.AppImage");
    let mode = std::fs::metadata(&image).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "AppImage is executable");
    assert!(
        std::fs::symlink_metadata(dir.join(".DirIcon"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(&bytes[8..11], b"AI\x02");

    let cwd = t.mkdir("work dir");
    let o = run(app(&t, &image)
        .args(["a b", "c"])
        .env("APP_EXIT", "3")
        .current_dir(&cwd));
    let (stdout, stderr) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit status passes through\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("first line\n"), "{stdout}");
    assert!(stdout.contains("arg:[a b]\narg:[c]\n"), "{stdout}");
    assert!(stdout.contains("busybox ran"), "{stdout}");
    assert_eq!(value(&stdout, "APPIMAGE"), image.to_str().unwrap());
    assert_eq!(value(&stdout, "ARGV0"), image.to_str().unwrap());
    assert_eq!(value(&stdout, "OWD"), cwd.to_str().unwrap());
    let appdir = value(&stdout, "APPDIR");
    assert!(
        appdir.starts_with(&format!("{}/.mount_", t.path().display())),
        "{appdir}"
    );
    assert!(!stderr.contains("FUSE not usable"), "{stderr}");
    assert!(
        !t.join("cache/sik-appimage").exists(),
        "no extraction when FUSE works"
    );
    // Unmounted and removed after the app ended (the server does it right after).
    for _ in 0..200 {
        if !Path::new(appdir).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!Path::new(appdir).exists(), "mount point removed");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(appdir), "unmounted:\n{mounts}");
}

#[test]
fn falls_back_to_cache_without_fuse_and_reuses_it() {
    if !require_root() || !require_tool("unshare") {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    // A mount namespace where /dev/fuse is /dev/null: mount(2) refuses.
    let no_fuse = |args: &[&str]| {
        let mut c = app(&t, Path::new("unshare"));
        c.args([
            "-m",
            "sh",
            "-c",
            "mount --bind /dev/null /dev/fuse && exec \"$0\" \"$@\"",
        ])
        .arg(&image)
        .args(args);
        run(&mut c)
    };
    let o = no_fuse(&["x y"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("arg:[x y]") && stdout.contains("busybox ran"),
        "{stdout}"
    );
    let appdir = value(&stdout, "APPDIR").to_string();
    assert!(
        appdir.starts_with(t.join("cache/sik-appimage/").to_str().unwrap()),
        "{appdir}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line says why:\n{stderr}");
    assert!(stderr.contains("FUSE not usable"), "{stderr}");
    // The second start reuses the extracted copy.
    std::fs::write(Path::new(&appdir).join("marker"), "kept").unwrap();
    let o = no_fuse(&["again"]);
    let (stdout, _) = text(&o);
    assert!(
        o.status.success() && stdout.contains("arg:[again]"),
        "{stdout}"
    );
    assert_eq!(value(&stdout, "APPDIR"), appdir);
    assert!(
        Path::new(&appdir).join("marker").exists(),
        "cache reused, not extracted again"
    );

    // A mount helper that refuses (FUSERMOUNT_PROG) also falls back.
    let o = run(app(&t, &image)
        .env("FUSERMOUNT_PROG", "/bin/false")
        .arg("h"));
    let (stdout, stderr) = text(&o);
    assert!(
        o.status.success() && stdout.contains("arg:[h]"),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("/bin/false refused to mount"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(value(&stdout, "APPDIR"), appdir);

    // Forced extract-and-run: no message.
    for forced in [true, false] {
        let mut c = app(&t, &image);
        if forced {
            c.env("APPIMAGE_EXTRACT_AND_RUN", "1").arg("z");
        } else {
            c.args(["--appimage-extract-and-run", "z"]);
        }
        let o = run(&mut c);
        let (stdout, stderr) = text(&o);
        assert!(
            o.status.success() && stdout.contains("arg:[z]"),
            "{stdout}\n{stderr}"
        );
        assert_eq!(value(&stdout, "APPDIR"), appdir);
        assert!(stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn offset_unsquashfs_updateinfo_and_extract_pattern() {
    if !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    let upd = "gh-releases-zsync|me|hello|latest|Hello-*x86_64.AppImage.zsync";
    pack(&dir, &image, &["--update-info", upd]);
    let off = offset(&t, &image);
    let bytes = std::fs::read(&image).unwrap();
    assert_eq!(&bytes[off as usize..off as usize + 4], b"hsqs");
    run_ok(
        cmd("unsquashfs")
            .arg("-o")
            .arg(off.to_string())
            .arg("-d")
            .arg(t.join("sr"))
            .arg(&image),
    );
    assert!(t.join("sr/AppRun").is_file() && t.join("sr/usr/bin/busybox").is_file());
    assert!(
        std::fs::symlink_metadata(t.join("sr/.DirIcon"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        run_ok(app(&t, &image).arg("--appimage-updateinfo")).trim(),
        upd
    );
    assert_eq!(
        run_ok(app(&t, &image).arg("--appimage-updateinformation")).trim(),
        upd
    );
    assert_eq!(
        run_ok(app(&t, &image).arg("--appimage-signature")).trim(),
        ""
    );
    assert!(run_ok(app(&t, &image).arg("--appimage-help")).contains("--appimage-extract"));
    assert!(run_ok(app(&t, &image).arg("--appimage-version")).starts_with("sik-runtime "));

    // Only the pattern's matches.
    let w1 = t.mkdir("w1");
    let listed = run_ok(
        app(&t, &image)
            .args(["--appimage-extract", "*.desktop"])
            .current_dir(&w1),
    );
    assert_eq!(listed.trim(), "squashfs-root/hello.desktop");
    assert!(w1.join("squashfs-root/hello.desktop").is_file());
    assert!(!w1.join("squashfs-root/AppRun").exists() && !w1.join("squashfs-root/usr").exists());
    // Everything, with modes and symlinks.
    let w2 = t.mkdir("w2");
    run_ok(app(&t, &image).arg("--appimage-extract").current_dir(&w2));
    let apprun = w2.join("squashfs-root/AppRun");
    assert_eq!(std::fs::read_to_string(&apprun).unwrap(), APPRUN);
    assert_eq!(
        std::fs::metadata(&apprun).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(w2.join("squashfs-root/.DirIcon")).unwrap(),
        Path::new("hello.svg")
    );

    // TARGET_APPIMAGE: the runtime of one file operates on another.
    let plain = t.join("plain.AppImage");
    pack(&dir, &plain, &[]);
    let o = run_ok(
        app(&t, &plain)
            .env("TARGET_APPIMAGE", &image)
            .arg("--appimage-updateinfo"),
    );
    assert_eq!(o.trim(), upd);
}

#[test]
fn extraction_never_follows_symlinks_out() {
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    let outside = t.mkdir("outside");
    let w = t.mkdir("w");
    std::fs::create_dir(w.join("squashfs-root")).unwrap();
    std::os::unix::fs::symlink(&outside, w.join("squashfs-root/usr")).unwrap();
    let o = run(app(&t, &image).arg("--appimage-extract").current_dir(&w));
    assert!(!o.status.success(), "refuses to extract through a symlink");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a directory"),
        "{:?}",
        o
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
}

#[test]
fn xz_gzip_zstd_lz4_payloads_run() {
    if !require_fuse() {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    for (comp, id) in [("xz", 4u16), ("gzip", 1), ("zstd", 6), ("lz4", 5)] {
        let image = t.join(format!("Hello-{comp}.AppImage"));
        pack(&dir, &image, &["--compression", comp]);
        let off = offset(&t, &image) as usize;
        let bytes = std::fs::read(&image).unwrap();
        assert_eq!(
            u16::from_le_bytes([bytes[off + 20], bytes[off + 21]]),
            id,
            "{comp}"
        );
        let o = run(app(&t, &image).arg(comp));
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{comp}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("arg:[{comp}]")) && stdout.contains("busybox ran"),
            "{comp}: {stdout}"
        );
    }
}

#[test]
fn hand_assembled_image_and_other_runtime() {
    if !require_fuse() || !require_tool("mksquashfs") {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let ours = t.join("ours.AppImage");
    pack(&dir, &ours, &[]);
    // The runtime is the part before the offset.
    let off = offset(&t, &ours) as usize;
    let runtime = t.write("runtime", &std::fs::read(&ours).unwrap()[..off]);
    // appimagetool's way: mksquashfs, then runtime + payload.
    let sqfs = t.join("payload.sqfs");
    run_ok(cmd("mksquashfs").arg(&dir).arg(&sqfs).args([
        "-comp",
        "xz",
        "-root-owned",
        "-noappend",
        "-quiet",
    ]));
    let mut bytes = std::fs::read(&runtime).unwrap();
    bytes.extend(std::fs::read(&sqfs).unwrap());
    let hand = t.write("hand.AppImage", &bytes);
    std::fs::set_permissions(&hand, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(offset(&t, &hand) as usize, off);
    let o = run(app(&t, &hand).arg("by hand"));
    let (stdout, stderr) = text(&o);
    assert!(
        o.status.success() && stdout.contains("arg:[by hand]"),
        "{stdout}\n{stderr}"
    );
    // --runtime FILE uses that runtime.
    let other = t.join("other.AppImage");
    pack(
        &dir,
        &other,
        &[
            "--runtime",
            runtime.to_str().unwrap(),
            "--update-info",
            "zsync|https://example.org/a.zsync",
        ],
    );
    assert_eq!(offset(&t, &other) as usize, off);
    // sik inspect sees the same offset, update info and desktop entry.
    for (img, upd) in [
        (&hand, None),
        (&other, Some("zsync|https://example.org/a.zsync")),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&run_ok(sik().args(["inspect", "--json"]).arg(img))).unwrap();
        let a = &v["appimage"];
        assert_eq!(a["payload_offset"].as_u64(), Some(off as u64), "{v}");
        assert_eq!(a["update_info"].as_str(), upd, "{v}");
        assert_eq!(a["desktop"]["name"].as_str(), Some("Hello World"), "{v}");
    }
    assert_eq!(
        run_ok(app(&t, &other).arg("--appimage-updateinfo")).trim(),
        "zsync|https://example.org/a.zsync"
    );
}

#[test]
fn zsync_control_file_and_bad_update_info() {
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(
        &dir,
        &image,
        &[
            "--update-info",
            "zsync|https://example.org/Hello.AppImage.zsync",
            "--zsync",
        ],
    );
    let ours = std::fs::read(t.join("Hello.AppImage.zsync")).unwrap();
    // The --json report matches its schema.
    let json = run_ok(
        sik()
            .args(["create", "appimage", "--json"])
            .arg(&dir)
            .arg("-o")
            .arg(t.join("J.AppImage"))
            .arg("--zsync"),
    );
    let v = assert_schema("create-appimage", &json);
    assert_eq!(v["arch"], "x86_64");
    assert_eq!(
        v["offset"].as_u64(),
        Some(offset(&t, &t.join("J.AppImage")))
    );
    assert!(ours.starts_with(b"zsync: 0.6.2\nFilename: Hello.AppImage\n"));
    if have_tool("zsyncmake") {
        // zsyncmake's output for the same file is byte-identical.
        run_ok(
            cmd("zsyncmake")
                .arg("-o")
                .arg(t.join("ref.zsync"))
                .arg("-u")
                .arg("Hello.AppImage")
                .arg(&image)
                .current_dir(t.path()),
        );
        let theirs = std::fs::read(t.join("ref.zsync")).unwrap();
        let head = |b: &[u8]| {
            String::from_utf8_lossy(&b[..b.windows(2).position(|w| w == b"\n\n").unwrap_or(0)])
                .into_owned()
        };
        assert_eq!(head(&ours), head(&theirs));
        assert!(ours == theirs, "block checksums differ from zsyncmake's");
    }
    for bad in [
        "zsync|ftp://x/y.zsync",
        "gh-releases-zsync|me|app",
        "bintray-zsync|a|b|c|d",
    ] {
        let out = t.join("bad.AppImage");
        let o = run(sik()
            .args(["create", "appimage"])
            .arg(&dir)
            .arg("-o")
            .arg(&out)
            .args(["--update-info", bad]));
        assert_fails(&o, 2, &["--update-info"]);
        assert!(!out.exists());
    }
}

/// Files left in `dir` whose name ends in `.AppImage` or starts with `.sik-appimage-`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".AppImage") || n.starts_with(".sik-appimage-"))
        .collect()
}

#[test]
fn broken_appdirs_name_every_problem() {
    let t = TestDir::new();
    let outdir = t.mkdir("out");
    // AppRun not executable, two desktop files.
    let a = appdir(&t, "A.AppDir");
    std::fs::set_permissions(a.join("AppRun"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(a.join("second.desktop"), DESKTOP).unwrap();
    let o = run(sik()
        .args(["create", "appimage"])
        .arg(&a)
        .current_dir(&outdir));
    assert_fails(
        &o,
        2,
        &[
            "AppRun is not executable",
            "2 .desktop files",
            "hello.desktop, second.desktop",
        ],
    );
    // No AppRun, icon missing, bad desktop keys.
    let b = appdir(&t, "B.AppDir");
    std::fs::remove_file(b.join("AppRun")).unwrap();
    std::fs::remove_file(b.join("hello.svg")).unwrap();
    std::fs::write(
        b.join("hello.desktop"),
        "[Desktop Entry]\nType=Application\nName=B\nIcon=hello\nCategories=Utility;\n",
    )
    .unwrap();
    let o = run(sik()
        .args(["create", "appimage"])
        .arg(&b)
        .arg("-o")
        .arg(outdir.join("B.AppImage")));
    assert_fails(
        &o,
        2,
        &["AppRun is missing", "icon \"hello\"", "Exec= is missing"],
    );
    assert!(
        leftovers(&outdir).is_empty(),
        "no output: {:?}",
        leftovers(&outdir)
    );
    assert!(!b.join(".DirIcon").exists());
    // Not a directory at all.
    let o = run(sik()
        .args(["create", "appimage"])
        .arg(t.join("nothing"))
        .arg("-o")
        .arg(outdir.join("C.AppImage")));
    assert_fails(&o, 2, &["nothing"]);
    // AppStream metainfo is checked when present.
    let c = appdir(&t, "C.AppDir");
    t.write(
        "C.AppDir/usr/share/metainfo/hello.appdata.xml",
        "<component><id>org.x.Hello</id></component>",
    );
    let o = run(sik()
        .args(["create", "appimage"])
        .arg(&c)
        .arg("-o")
        .arg(outdir.join("C.AppImage")));
    assert_fails(&o, 2, &["hello.appdata.xml", "<summary>"]);
    assert!(leftovers(&outdir).is_empty());
}

#[test]
fn runs_as_a_user_through_fusermount3() {
    if !require_root()
        || !require_tool("unshare")
        || !require_tool("setpriv")
        || !require_tool("fusermount3")
    {
        return;
    }
    let t = TestDir::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    // In a private mount namespace, a /dev/fuse node the user may open
    // (the host's may be root-only); fusermount3 (setuid) does the mount.
    let dev = t.mkdir("dev");
    let script = format!(
        "mount -t tmpfs none '{d}' && mknod -m 666 '{d}/fuse' c 10 229 && mount --bind '{d}/fuse' /dev/fuse && \
         exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" \"$@\"",
        d = dev.display()
    );
    let mut c = app(&t, Path::new("unshare"));
    c.args(["-m", "sh", "-c", &script])
        .arg(&image)
        .arg("as user")
        .env("HOME", t.path());
    let o = run(&mut c);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("arg:[as user]") && stdout.contains("busybox ran"),
        "{stdout}"
    );
    assert!(value(&stdout, "APPDIR").contains("/.mount_"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn signed_at_creation_verifies_and_still_runs() {
    if !require_tool("ssh-keygen") {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let key = t.join("key");
    run_ok(
        cmd("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "release"])
            .arg("-f")
            .arg(&key),
    );
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &["--sign", key.to_str().unwrap(), "--zsync"]);
    let out = run_ok(
        sik()
            .arg("verify")
            .arg("--trust")
            .arg(t.join("key.pub"))
            .arg(&image),
    );
    assert!(out.contains("trusted key"), "{out}");
    assert!(
        run_ok(app(&t, &image).arg("--appimage-signature"))
            .starts_with("-----BEGIN SSH SIGNATURE-----")
    );
    let o = run(app(&t, &image)
        .env("APPIMAGE_EXTRACT_AND_RUN", "1")
        .arg("signed"));
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("arg:[signed]"),
        "{o:?}"
    );
    if have_tool("zsyncmake") {
        // The control file describes the signed file.
        run_ok(
            cmd("zsyncmake")
                .arg("-o")
                .arg(t.join("ref.zsync"))
                .arg("-u")
                .arg("Hello.AppImage")
                .arg(&image)
                .current_dir(t.path()),
        );
        assert!(
            std::fs::read(t.join("ref.zsync")).unwrap()
                == std::fs::read(t.join("Hello.AppImage.zsync")).unwrap()
        );
    }
    // A key that cannot be used leaves no AppImage.
    let bad = t.join("bad.AppImage");
    let o = run(sik()
        .args(["create", "appimage"])
        .arg(&dir)
        .arg("-o")
        .arg(&bad)
        .args(["--sign", "/nonexistent/key"]));
    assert_fails(&o, 2, &["cannot use key"]);
    assert!(!bad.exists());
}

#[test]
fn signals_reach_the_app_and_the_mount_goes_away() {
    if !require_fuse() {
        return;
    }
    use std::io::{BufRead, BufReader};
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    let mut child = app(&t, &image)
        .arg("--wait-for-signal")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let appdir = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(Path::new(&appdir).join("AppRun").exists());
    // The AppImage's process is AppRun itself: the signal goes straight to it.
    run_ok(cmd("kill").arg("-TERM").arg(child.id().to_string()));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "{rest}");
    assert!(rest.contains("got TERM"), "{rest}");
    for _ in 0..200 {
        if !Path::new(&appdir).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !Path::new(&appdir).exists(),
        "mount point removed after the app ended"
    );
}

/// Run `image` as user `uid` with only PATH, TMPDIR and `env` set (no HOME,
/// no XDG variables) and APPIMAGE_EXTRACT_AND_RUN=1, so the extract-and-run
/// cache is used whether FUSE works or not.
fn run_as(uid: u32, image: &Path, tmpdir: &Path, env: &[(&str, &Path)]) -> Output {
    run_as_how(uid, image, tmpdir, env, true)
}

/// [`run_as`]; without `forced`, in a mount namespace whose /dev/fuse is
/// /dev/null, so FUSE is not usable and the runtime falls back by itself.
fn run_as_how(
    uid: u32,
    image: &Path,
    tmpdir: &Path,
    env: &[(&str, &Path)],
    forced: bool,
) -> Output {
    let mut c = if forced {
        cmd("setpriv")
    } else {
        let mut c = cmd("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "mount --bind /dev/null /dev/fuse && exec setpriv \"$@\"",
            "sh",
        ]);
        c
    };
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--"])
        .arg(image)
        .arg("arg")
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("TMPDIR", tmpdir);
    if forced {
        c.env("APPIMAGE_EXTRACT_AND_RUN", "1");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// As user `uid`, run a shell script.
fn sh_as(uid: u32, script: &str) {
    run_ok(
        cmd("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .args(["--clear-groups", "--", "sh", "-c", script]),
    );
}

/// Plant `dir/AppRun` printing PLANTED, as user `uid`, world-writable.
fn plant(uid: u32, dir: &Path) {
    sh_as(
        uid,
        &format!(
            "mkdir -p '{d}' && printf '#!/bin/sh\\necho PLANTED\\n' > '{d}/AppRun' && chmod 777 '{d}/AppRun' '{d}'",
            d = dir.display()
        ),
    );
}

fn assert_ran_ours(o: &Output) -> String {
    let (stdout, stderr) = text(o);
    assert!(
        o.status.success() && stdout.contains("busybox ran"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("PLANTED"),
        "a planted AppRun ran:\n{stdout}"
    );
    value(&stdout, "APPDIR").to_string()
}

/// Another local user cannot plant the extract-and-run cache: not in the
/// TMPDIR fallback (a fresh private directory each run), not through a
/// cache directory that user owns, not through a world-writable one, not
/// even with the right digest name and index entry.
#[test]
fn planted_cache_of_another_user_is_never_used() {
    if !require_root() || !require_tool("setpriv") || !require_tool("sha256sum") {
        return;
    }
    const VICTIM: u32 = 23456;
    const ATTACKER: u32 = 12345;
    let t = TestDir::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    let tmp = t.mkdir("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();

    // Where does the victim's run extract to when nothing but TMPDIR is set?
    let first = assert_ran_ours(&run_as(VICTIM, &image, &tmp, &[]));
    assert!(first.starts_with(tmp.to_str().unwrap()), "{first}");
    // The attacker got there first: the same path, planted.
    run_ok(
        cmd("sh")
            .arg("-c")
            .arg(format!("rm -rf '{}'/* || true", tmp.display())),
    );
    plant(ATTACKER, Path::new(&first));
    let again = assert_ran_ours(&run_as(VICTIM, &image, &tmp, &[]));
    assert_ne!(again, first, "a fresh private directory each run");
    // The same when FUSE is not usable and the runtime falls back itself.
    if have_tool("unshare") {
        let o = run_as_how(VICTIM, &image, &tmp, &[], false);
        let used = assert_ran_ours(&o);
        assert_ne!(used, first);
        assert!(text(&o).1.contains("FUSE not usable"), "{}", text(&o).1);
    }

    // A cache directory another user owns, holding an entry under the
    // image's real digest and an index entry for the file's identity.
    let digest = run_ok(cmd("sha256sum").arg(&image))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let evil = tmp.join("evil-cache");
    plant(ATTACKER, &evil.join("sik-appimage").join(&digest));
    let o = run_as(VICTIM, &image, &tmp, &[("XDG_CACHE_HOME", &evil)]);
    let used = assert_ran_ours(&o);
    assert!(!used.starts_with(evil.to_str().unwrap()), "{used}");

    // The victim's own cache directory, but writable by everyone.
    let ww = tmp.join("ww-cache");
    sh_as(VICTIM, &format!("mkdir -m 777 '{}'", ww.display()));
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o777)).unwrap();
    plant(ATTACKER, &ww.join("sik-appimage").join(&digest));
    let used = assert_ran_ours(&run_as(VICTIM, &image, &tmp, &[("XDG_CACHE_HOME", &ww)]));
    assert!(!used.starts_with(ww.to_str().unwrap()), "{used}");

    // A cache the victim owns is used, made 0700, and reused.
    let own = tmp.join("own-cache");
    let used = assert_ran_ours(&run_as(VICTIM, &image, &tmp, &[("XDG_CACHE_HOME", &own)]));
    assert_eq!(
        used,
        own.join("sik-appimage").join(&digest).to_str().unwrap(),
        "entries are named by the SHA-256 of the file"
    );
    use std::os::unix::fs::MetadataExt;
    for p in [own.join("sik-appimage"), PathBuf::from(&used)] {
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.mode() & 0o777),
            (VICTIM, 0o700),
            "{}",
            p.display()
        );
    }
    let again = assert_ran_ours(&run_as(VICTIM, &image, &tmp, &[("XDG_CACHE_HOME", &own)]));
    assert_eq!(again, used);
}

/// A service user's HOME=/nonexistent (and no XDG variables) falls back to
/// a private directory under TMPDIR, which is gone after the run.
#[test]
fn home_nonexistent_falls_back_to_a_private_temporary_cache() {
    if !require_root() || !require_tool("setpriv") {
        return;
    }
    let t = TestDir::new();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = appdir(&t, "Hello.AppDir");
    let image = t.join("Hello.AppImage");
    pack(&dir, &image, &[]);
    let tmp = t.mkdir("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = run_as(65534, &image, &tmp, &[("HOME", Path::new("/nonexistent"))]);
    let used = assert_ran_ours(&o);
    assert!(used.starts_with(tmp.to_str().unwrap()), "{used}");
    // Removed once the application has ended (by a detached process).
    let mut left = 1;
    for _ in 0..100 {
        left = std::fs::read_dir(&tmp).unwrap().count();
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        left, 0,
        "the private cache directory is removed after the run"
    );
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// In a SquashFS made with `-noI` (plain inode table), the data block of the
/// one-block file of `size` bytes: (offset of the block, offset of its size
/// entry in the inode, compressed size).
fn only_block(img: &[u8], size: u32) -> (usize, usize, usize) {
    let inodes = u64::from_le_bytes(img[64..72].try_into().unwrap()) as usize;
    let dirs = u64::from_le_bytes(img[72..80].try_into().unwrap()) as usize;
    for i in inodes + 4..dirs - 16 {
        if le32(img, i) == u32::MAX && le32(img, i + 4) == 0 && le32(img, i + 8) == size {
            let entry = i + 12;
            let raw = le32(img, entry);
            assert!(
                raw != 0 && raw & (1 << 24) == 0,
                "the block is stored compressed"
            );
            return (le32(img, i - 4) as usize, entry, raw as usize);
        }
    }
    panic!("no one-block file of {size} bytes in the inode table");
}

/// A data block that decompresses to far more than the block size (a
/// "bomb": 1 MiB of one byte value where 128 KiB may be) is refused by the runtime
/// for gzip and xz, whether extracting or running from the cache, instead
/// of being decompressed without a bound.
#[test]
fn decompression_bombs_in_blocks_are_refused() {
    if !require_tool("mksquashfs") {
        return;
    }
    let t = TestDir::new();
    let dir = appdir(&t, "Hello.AppDir");
    // Hex digits of a pseudo-random sequence: about half compressible.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let hexish: Vec<u8> = (0..131072)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789abcdef"[(x >> 60) as usize]
        })
        .collect();
    std::fs::write(dir.join("bomb.bin"), &hexish).unwrap();
    let ours = t.join("ours.AppImage");
    pack(&dir, &ours, &[]);
    let runtime = std::fs::read(&ours).unwrap()[..offset(&t, &ours) as usize].to_vec();
    let zeros = t.mkdir("zeros");
    // Not zeros: mksquashfs stores a block of zeros as a hole.
    std::fs::write(zeros.join("z"), vec![b'a'; 1 << 20]).unwrap();
    for comp in ["gzip", "xz"] {
        // The bomb: a 1 MiB block of one byte value as mksquashfs compresses it.
        let big = t.join(format!("big-{comp}.sqfs"));
        run_ok(cmd("mksquashfs").arg(&zeros).arg(&big).args([
            "-comp",
            comp,
            "-b",
            "1048576",
            "-noI",
            "-noappend",
            "-quiet",
        ]));
        let big = std::fs::read(&big).unwrap();
        let (at, _, len) = only_block(&big, 1 << 20);
        let bomb = &big[at..at + len];
        // The AppImage: bomb.bin's 128 KiB block replaced by the bomb.
        let sqfs = t.join(format!("payload-{comp}.sqfs"));
        run_ok(cmd("mksquashfs").arg(&dir).arg(&sqfs).args([
            "-comp",
            comp,
            "-noI",
            "-noappend",
            "-quiet",
            "-root-owned",
        ]));
        let mut payload = std::fs::read(&sqfs).unwrap();
        let (at, entry, len) = only_block(&payload, 131072);
        assert!(bomb.len() <= len, "{comp}: the bomb fits the block");
        payload[at..at + bomb.len()].copy_from_slice(bomb);
        payload[entry..entry + 4].copy_from_slice(&(bomb.len() as u32).to_le_bytes());
        let mut bytes = runtime.clone();
        bytes.extend(&payload);
        let image = t.write(&format!("bomb-{comp}.AppImage"), &bytes);
        std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o755)).unwrap();

        let work = t.mkdir(&format!("x-{comp}"));
        let o = run(app(&t, &image).arg("--appimage-extract").current_dir(&work));
        let (stdout, stderr) = text(&o);
        assert!(
            !o.status.success(),
            "{comp}: extracted a bomb:\n{stdout}\n{stderr}"
        );
        assert!(stderr.contains("bomb.bin"), "{comp}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let o = run(app(&t, &image).env("APPIMAGE_EXTRACT_AND_RUN", "1"));
        let (stdout, stderr) = text(&o);
        assert!(
            !o.status.success(),
            "{comp}: ran from a bomb:\n{stdout}\n{stderr}"
        );
        assert!(!stdout.contains("busybox ran"), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line says why: {stderr}");
    }
}
