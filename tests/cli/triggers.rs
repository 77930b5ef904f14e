//! Triggers of `sik link` and `sik unlink` in a real Debian root (the
//! e2e's debootstrap bookworm minbase tree): a library extension is found
//! by the dynamic linker of the root only after `ldconfig` ran there, a
//! kernel module by `modinfo -k KVER` only after `depmod`; unlink puts
//! `ld.so.cache` and `modules.dep` back byte for byte. The libraries, the
//! module and kmod are real Debian packages fetched with `apt-get download`.

use std::path::{Path, PathBuf};

use crate::packages::apt_download;
use crate::util::*;

/// The suite and mirror of the e2e's debootstrap root (`xtask/src/e2e/isos.rs`).
const MIRROR: &str = "http://deb.debian.org/debian";

/// A Debian bookworm minbase tree at `dest`: unpacked from the e2e's cached
/// debootstrap tarball (`target/e2e-cache/debootstrap-KEY.tar`), which is
/// made with `debootstrap` and cached under the same name as `cargo xtask
/// e2e` gives it (so the e2e reuses it) when missing.
fn debootstrap_root(dest: &Path) -> bool {
    if !require_root() || !require_tool("debootstrap") || !require_tool("chroot") {
        return false;
    }
    let version = run_ok(cmd("dpkg-query").args(["-W", "-f", "${Version}", "debootstrap"]));
    let recipe = format!("debootstrap --variant=minbase bookworm {MIRROR} {version}\n");
    let recipe_file = dest.with_extension("recipe");
    std::fs::write(&recipe_file, recipe).unwrap();
    let key = run_ok(cmd("sha256sum").arg(&recipe_file));
    let key = &key[..16];
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-cache");
    let tarball = cache.join(format!("debootstrap-{key}.tar"));
    if !tarball.exists() {
        std::fs::create_dir_all(&cache).unwrap();
        let work = dest.with_extension("bootstrap");
        let out = run(cmd("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&work)
            .arg(MIRROR));
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!in_ci(), "debootstrap failed: {why}");
            eprintln!("skipped: debootstrap failed: {why}");
            return false;
        }
        let tmp = tarball.with_extension("tar.tmp");
        run_ok(
            cmd("tar")
                .arg("-C")
                .arg(&work)
                .arg("-cf")
                .arg(&tmp)
                .arg("."),
        );
        std::fs::rename(&tmp, &tarball).unwrap();
        let _ = std::fs::remove_dir_all(&work);
    }
    std::fs::create_dir_all(dest).unwrap();
    run_ok(cmd("tar").arg("-C").arg(dest).arg("-xf").arg(&tarball));
    true
}

/// `chroot ROOT ARGS...`.
fn in_root(root: &Path, args: &[&str]) -> std::process::Output {
    run(cmd("chroot").arg(root).args(args))
}

/// Unpack the data of `debs` into `dir`.
fn unpack(debs: &[PathBuf], dir: &Path) {
    for d in debs {
        run_ok(cmd("dpkg-deb").arg("-x").arg(d).arg(dir));
    }
}

fn link(root: &Path, src: &Path) -> String {
    let out = run(sik().arg("link").arg("--root").arg(root).arg(src));
    assert!(
        out.status.success(),
        "link: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unlink(root: &Path, name: &str) -> String {
    run_ok(sik().arg("unlink").arg("--root").arg(root).arg(name))
}

fn status(root: &Path) -> serde_json::Value {
    let json = run_ok(sik().args(["status", "--json", "--root"]).arg(root));
    assert_schema("status", &json)
}

#[test]
fn a_linked_library_is_found_after_ldconfig_and_unlink_restores_the_cache() {
    let t = TestDir::new();
    let root = t.join("root");
    if !debootstrap_root(&root) {
        return;
    }
    let dl = t.mkdir("debs");
    let Some(debs) = apt_download(&dl, &["flac", "libflac12", "libogg0"]) else {
        return;
    };
    let unpacked = t.join("unpacked");
    unpack(&debs, &unpacked);
    // The codec as an extension of /usr/local: its libraries are in a
    // directory only ld.so.conf names (not one the dynamic linker searches
    // by itself), so the binary runs only once ldconfig knows them.
    let ext = t.mkdir("codecs");
    std::fs::create_dir_all(ext.join("usr/local/lib")).unwrap();
    std::fs::create_dir_all(ext.join("usr/local/bin")).unwrap();
    sh(
        &unpacked,
        &format!(
            "cp -a usr/lib/x86_64-linux-gnu/libFLAC.so.* usr/lib/x86_64-linux-gnu/libogg.so.* '{0}/usr/local/lib/' && cp -a usr/bin/flac '{0}/usr/local/bin/'",
            ext.display()
        ),
    );
    let cache = root.join("etc/ld.so.cache");
    let original = std::fs::read(&cache).unwrap();
    let flac = |root: &Path| in_root(root, &["/usr/local/bin/flac", "--version"]);

    // Opted out in its extension-release: linked, ldconfig not run, and the
    // binary does not find its library.
    let release = ext.join("usr/lib/extension-release.d/extension-release.codecs");
    std::fs::create_dir_all(release.parent().unwrap()).unwrap();
    std::fs::write(&release, "ID=_any\nSIK_TRIGGERS=none\n").unwrap();
    let said = link(&root, &ext);
    assert!(said.contains("trigger ldconfig: not run"), "{said}");
    let out = flac(&root);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("libFLAC.so.12"),
        "without ldconfig the library is not found: {out:?}"
    );
    let st = status(&root);
    assert_eq!(
        st["extensions"][0]["triggers"][0]["outcome"], "skipped",
        "{st}"
    );
    unlink(&root, "codecs");
    assert_eq!(std::fs::read(&cache).unwrap(), original);

    // By default ldconfig runs in the root, and the binary runs.
    std::fs::remove_file(&release).unwrap();
    let said = link(&root, &ext);
    assert!(
        said.contains("trigger ldconfig: ran (for codecs)"),
        "{said}"
    );
    let out = flac(&root);
    assert!(out.status.success(), "after ldconfig: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("flac "),
        "{out:?}"
    );
    let listed = String::from_utf8_lossy(&in_root(&root, &["ldconfig", "-p"]).stdout).into_owned();
    assert!(
        listed.contains("libFLAC.so.12 (libc6,x86-64) => /usr/local/lib/libFLAC.so.12"),
        "{listed}"
    );
    let st = status(&root);
    let trig = &st["extensions"][0]["triggers"][0];
    assert_eq!(trig["trigger"]["kind"], "ldconfig", "{st}");
    assert_eq!(trig["outcome"], "ran", "{st}");
    let text = run_ok(sik().args(["status", "--root"]).arg(&root));
    assert!(text.contains("codecs trigger ldconfig: ran"), "{text}");
    assert_ne!(std::fs::read(&cache).unwrap(), original);

    // Unlink runs ldconfig again: the cache is the root's own again.
    let said = unlink(&root, "codecs");
    assert!(
        said.contains("trigger ldconfig: ran (for codecs)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        original,
        "ld.so.cache after unlink"
    );
    assert!(!flac(&root).status.success());
}

#[test]
fn a_linked_kernel_module_is_found_after_depmod_and_unlink_restores_modules_dep() {
    let t = TestDir::new();
    let root = t.join("root");
    if !debootstrap_root(&root) {
        return;
    }
    // kmod (depmod, modinfo) installed in the root from its packages.
    let dl = t.mkdir("kmod");
    let Some(debs) = apt_download(&dl, &["kmod", "libkmod2", "libssl3"]) else {
        return;
    };
    std::fs::create_dir_all(root.join("tmp/debs")).unwrap();
    let mut inside = vec!["dpkg".to_string(), "-i".to_string()];
    for d in &debs {
        let n = d.file_name().unwrap();
        std::fs::copy(d, root.join("tmp/debs").join(n)).unwrap();
        inside.push(format!("/tmp/debs/{}", n.to_string_lossy()));
    }
    let args: Vec<&str> = inside.iter().map(String::as_str).collect();
    let out = in_root(&root, &args);
    assert!(out.status.success(), "dpkg -i kmod: {out:?}");

    // A real kernel's modules: Debian's cloud kernel package.
    let kdl = t.mkdir("kernel");
    let deps = run_ok(cmd("apt-cache").args(["depends", "linux-image-cloud-amd64"]));
    let pkg = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .expect("linux-image-cloud-amd64 depends on a kernel package")
        .trim()
        .to_string();
    let Some(kdebs) = apt_download(&kdl, &[&pkg]) else {
        return;
    };
    let kver = pkg.strip_prefix("linux-image-").unwrap().to_string();
    let kdir = t.join("kernel-tree");
    std::fs::create_dir_all(&kdir).unwrap();
    let wanted = [
        format!("./lib/modules/{kver}/modules.order"),
        format!("./lib/modules/{kver}/modules.builtin"),
        format!("./lib/modules/{kver}/modules.builtin.modinfo"),
        format!("./lib/modules/{kver}/kernel/drivers/net/veth.ko"),
        format!("./lib/modules/{kver}/kernel/drivers/net/dummy.ko"),
    ];
    sh(
        &kdir,
        &format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x {}",
            kdebs[0].display(),
            wanted.join(" ")
        ),
    );
    // The root has that kernel (with veth); the extension brings dummy.
    let mods = root.join("usr/lib/modules").join(&kver);
    std::fs::create_dir_all(mods.join("kernel/drivers/net")).unwrap();
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        std::fs::copy(kdir.join("lib/modules").join(&kver).join(f), mods.join(f)).unwrap();
    }
    let src = kdir
        .join("lib/modules")
        .join(&kver)
        .join("kernel/drivers/net");
    std::fs::copy(src.join("veth.ko"), mods.join("kernel/drivers/net/veth.ko")).unwrap();
    let out = in_root(&root, &["depmod", "-a", &kver]);
    assert!(out.status.success(), "depmod: {out:?}");
    let dep = mods.join("modules.dep");
    let original = std::fs::read(&dep).unwrap();
    let original_bin = std::fs::read(mods.join("modules.dep.bin")).unwrap();
    let modinfo = |root: &Path| in_root(root, &["modinfo", "-k", &kver, "-F", "filename", "dummy"]);
    assert!(!modinfo(&root).status.success(), "dummy is not there yet");

    let ext = t.join("dummy-net");
    let extra = ext.join("lib/modules").join(&kver).join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(src.join("dummy.ko"), extra.join("dummy.ko")).unwrap();
    let said = link(&root, &ext);
    assert!(
        said.contains(&format!("trigger depmod -a {kver}: ran (for dummy-net)")),
        "{said}"
    );
    let out = modinfo(&root);
    assert!(out.status.success(), "modinfo after depmod: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("/lib/modules/{kver}/extra/dummy.ko")
    );
    let st = status(&root);
    let trig = &st["extensions"][0]["triggers"][0];
    assert_eq!(trig["trigger"]["kind"], "depmod", "{st}");
    assert_eq!(trig["trigger"]["arg"], kver.as_str(), "{st}");
    assert_eq!(trig["outcome"], "ran", "{st}");

    let said = unlink(&root, "dummy-net");
    assert!(said.contains("trigger depmod"), "{said}");
    assert_eq!(
        std::fs::read(&dep).unwrap(),
        original,
        "modules.dep after unlink"
    );
    assert_eq!(
        std::fs::read(mods.join("modules.dep.bin")).unwrap(),
        original_bin,
        "modules.dep.bin after unlink"
    );
    assert!(!modinfo(&root).status.success());
    assert!(!mods.join("extra").exists(), "the linked directory is gone");
}

#[test]
fn a_missing_tool_is_a_note_and_the_link_stands() {
    if !require_root() {
        return;
    }
    // A root without ldconfig: the library is linked, the trigger noted.
    let t = TestDir::new();
    let root = t.mkdir("root");
    t.mkdir("root/usr/lib");
    t.write("ext/usr/lib/libacme.so.1", "not really a library\n");
    let said = link(&root, &t.join("ext"));
    assert!(
        said.contains("trigger ldconfig: not run (for ext): ldconfig is not installed in ROOT"),
        "{said}"
    );
    assert!(root.join("usr/lib/libacme.so.1").is_symlink());
    let st = status(&root);
    assert_eq!(
        st["extensions"][0]["triggers"][0]["outcome"], "missing",
        "{st}"
    );
    let said = unlink(&root, "ext");
    assert!(said.contains("trigger ldconfig: not run"), "{said}");
}
