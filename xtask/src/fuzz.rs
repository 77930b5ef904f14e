//! `cargo xtask fuzz [--time SECONDS] [TARGET...]`: make seed corpora from
//! real files (mksquashfs images, xorriso ISOs, tar/deb archives, signed
//! images, boot configs), then run each cargo-fuzz target for SECONDS and
//! print the executions per target.
//!
//! cargo-fuzz is run as an external command (`cargo fuzz run`), so xtask
//! builds without it; `RUSTC_BOOTSTRAP=1` lets the stable toolchain take
//! the sanitizer flags cargo-fuzz passes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Result, root};

/// Every target under `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &[
    "inspect",
    "squashfs_extract",
    "elf_sections",
    "signature_block",
    "iso9660",
    "boot_config",
    "tar_source",
    "pe",
    "erofs",
];

const USAGE: &str = "usage: cargo xtask fuzz [--time SECONDS] [TARGET...]";

/// Entry point of `cargo xtask fuzz`.
pub fn main(args: &[String]) -> Result {
    let mut time: u64 = 60;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                let v = it.next().ok_or(USAGE)?;
                time = v
                    .parse()
                    .map_err(|_| format!("--time wants whole seconds, not {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            t => {
                return Err(format!(
                    "unknown fuzz target {t:?} (targets: {})",
                    TARGETS.join(" ")
                ));
            }
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let fuzz_dir = root().join("fuzz");
    seed_corpora(&fuzz_dir.join("corpus"))?;

    let mut results = Vec::new();
    for t in &targets {
        results.push((t.clone(), run_target(&fuzz_dir, t, time)?));
    }
    eprintln!();
    eprintln!(
        "{:<18} {:>12} {:>8}  result",
        "target", "executions", "seconds"
    );
    let mut failed = Vec::new();
    for (t, r) in &results {
        let runs = r.runs.map_or("?".to_string(), |n| n.to_string());
        let verdict = if r.ok {
            "no crash".to_string()
        } else {
            failed.push(t.clone());
            format!("CRASH {}", r.artifact.as_deref().unwrap_or("(see output)"))
        };
        eprintln!("{t:<18} {runs:>12} {time:>8}  {verdict}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("crashes in: {}", failed.join(", ")))
    }
}

struct RunResult {
    ok: bool,
    runs: Option<u64>,
    artifact: Option<String>,
}

/// `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET -- -max_total_time=SECONDS`
/// from `fuzz/`, echoing libFuzzer's output and reading its counts.
fn run_target(fuzz_dir: &Path, target: &str, time: u64) -> Result<RunResult> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={time}"),
            "-rss_limit_mb=2048",
        ])
        .stderr(Stdio::piped());
    eprintln!(
        "$ (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} corpus/{target} -- -max_total_time={time} -rss_limit_mb=2048)"
    );
    let mut child = cmd.spawn().map_err(|e| {
        format!("cannot run cargo fuzz ({e}); install it with `cargo install cargo-fuzz`")
    })?;
    let mut runs = None;
    let mut last_status = None;
    let mut artifact = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            eprintln!("{line}");
            // libFuzzer's last words: "Done 123456 runs in 60 second(s)".
            if let Some(rest) = line.strip_prefix("Done ") {
                runs = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
            // Status lines ("#4096\tpulse ...") count too when a crash stops the run early.
            if let Some(n) = status_count(&line) {
                last_status = Some(n);
            }
            if let Some(p) = line.split("Test unit written to ").nth(1) {
                artifact = Some(p.trim().to_string());
            }
            if line.contains("no such command: `fuzz`") {
                return Err("cargo-fuzz is not installed: cargo install cargo-fuzz".into());
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok(RunResult {
        ok: status.success(),
        runs: runs.or(last_status),
        artifact,
    })
}

/// The execution count of a libFuzzer status line (`#4096\tpulse ...`).
fn status_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix('#')?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Make the seed corpora under `corpus/` from real files. A tool that is
/// missing or fails costs only its seeds.
fn seed_corpora(corpus: &Path) -> Result {
    let work = root().join("target/fuzz-seeds");
    let _ = std::fs::remove_dir_all(&work);
    mkdir(&work)?;
    for t in TARGETS {
        mkdir(&corpus.join(t))?;
    }
    let seed = |target: &str, name: &str, from: &Path| {
        if from.is_file() {
            let _ = std::fs::copy(from, corpus.join(target).join(name));
        }
    };

    // Signed PE files of the host's Secure Boot packages (shim, MokManager,
    // GRUB), when installed.
    for (name, from) in [
        ("shim.efi", "/usr/lib/shim/shimx64.efi.signed"),
        ("mm.efi", "/usr/lib/shim/mmx64.efi.signed"),
        (
            "grub.efi",
            "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        ),
    ] {
        seed("pe", name, Path::new(from));
    }

    // A small tree with the things extraction must handle.
    let tree = work.join("tree");
    mkdir(&tree.join("usr/lib/extension-release.d"))?;
    mkdir(&tree.join("usr/share/doc/x"))?;
    write(
        &tree.join("usr/lib/extension-release.d/extension-release.fuzz"),
        "ID=_any\nSYSEXT_LEVEL=1.0\n",
    )?;
    write(&tree.join("usr/share/doc/x/README"), &"hello\n".repeat(200))?;
    write(&tree.join("usr/share/doc/x/empty"), "")?;
    let _ = std::os::unix::fs::symlink("README", tree.join("usr/share/doc/x/link"));
    let _ = std::fs::hard_link(
        tree.join("usr/share/doc/x/README"),
        tree.join("usr/share/doc/x/hard"),
    );

    // SquashFS images, several compressors.
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        let img = work.join(format!("{comp}.squashfs"));
        if quiet(Command::new("mksquashfs").arg(&tree).arg(&img).args([
            "-noappend",
            "-no-progress",
            "-quiet",
            "-all-root",
            "-comp",
            comp,
        ])) {
            for t in ["squashfs_extract", "inspect", "signature_block"] {
                seed(t, &format!("{comp}.squashfs"), &img);
            }
        }
    }

    // A signed ExtensionImage and an armored SSHSIG, when the sik binary is built.
    let sik = root().join("target/debug/sik");
    if sik.is_file() {
        let img = work.join("signed.ExtensionImage");
        let key = work.join("key");
        let ok = quiet(
            Command::new(&sik)
                .args(["create", "extension", "-q"])
                .arg(&tree)
                .arg("-o")
                .arg(&img),
        ) && quiet(Command::new(&sik).args(["key", "generate", "-o"]).arg(&key))
            && quiet(
                Command::new(&sik)
                    .arg("sign")
                    .arg(&img)
                    .arg("--key")
                    .arg(&key),
            );
        if ok {
            for t in [
                "signature_block",
                "inspect",
                "squashfs_extract",
                "elf_sections",
            ] {
                seed(t, "signed.ExtensionImage", &img);
            }
        }
    }
    let sshkey = work.join("sshkey");
    let msg = work.join("message");
    write(&msg, "payload\n")?;
    if quiet(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&sshkey),
    ) && quiet(
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(&sshkey)
            .arg(&msg),
    ) {
        seed("signature_block", "message.sig", &work.join("message.sig"));
        seed("signature_block", "sshkey.pub", &work.join("sshkey.pub"));
    }

    // ELF files: small executables of the host, and one with a SquashFS appended.
    for bin in [
        "/usr/bin/true",
        "/bin/busybox",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ] {
        let p = Path::new(bin);
        if p.is_file() && std::fs::metadata(p).is_ok_and(|m| m.len() < 4 << 20) {
            let name = p
                .file_name()
                .map_or("elf".into(), |n| n.to_string_lossy().into_owned());
            seed("elf_sections", &name, p);
            seed("inspect", &name, p);
        }
    }
    let true_bin = Path::new("/usr/bin/true");
    let sqfs = work.join("zstd.squashfs");
    if true_bin.is_file() && sqfs.is_file() {
        let mut joined = std::fs::read(true_bin).map_err(|e| e.to_string())?;
        joined.extend(std::fs::read(&sqfs).map_err(|e| e.to_string())?);
        let p = work.join("elf+squashfs");
        write_bytes(&p, &joined)?;
        for t in ["elf_sections", "inspect", "squashfs_extract"] {
            seed(t, "elf+squashfs", &p);
        }
    }

    // Boot configs as live ISOs carry them, and the built-in family definitions.
    let cfgs = boot_configs();
    for (name, text) in &cfgs {
        write(&corpus.join("boot_config").join(name), text)?;
    }
    if let Ok(dir) = std::fs::read_dir(root().join("formats/live")) {
        for e in dir.flatten() {
            seed("boot_config", &e.file_name().to_string_lossy(), &e.path());
        }
    }

    // ISOs: a live-boot layout and a casper layout, with Rock Ridge and Joliet.
    for (layout, cfg_dir, sq) in [
        ("live-boot", "isolinux", "live/filesystem.squashfs"),
        ("casper", "boot/grub", "casper/filesystem.squashfs"),
    ] {
        let t = work.join(format!("iso-{layout}"));
        mkdir(&t.join(cfg_dir))?;
        mkdir(&t.join("boot/grub"))?;
        for (name, text) in &cfgs {
            write(&t.join(cfg_dir).join(name), text)?;
        }
        if let Some(parent) = t.join(sq).parent() {
            mkdir(parent)?;
        }
        if sqfs.is_file() {
            let _ = std::fs::copy(&sqfs, t.join(sq));
        }
        let kdir = if layout == "casper" { "casper" } else { "live" };
        mkdir(&t.join(kdir))?;
        write(&t.join(kdir).join("vmlinuz"), "kernel")?;
        write(&t.join(kdir).join("initrd.img"), "initrd")?;
        let iso = work.join(format!("{layout}.iso"));
        if quiet(&mut crate::mkisofs(&t, &iso, "FUZZ_LIVE")) {
            seed("iso9660", &format!("{layout}.iso"), &iso);
            seed("inspect", &format!("{layout}.iso"), &iso);
        }
    }

    // EROFS images of a small root (os-release as a file and as a relative
    // link, a directory of several blocks), plain and lz4hc-compressed.
    let eroot = work.join("erofs-root");
    mkdir(&eroot.join("usr/lib"))?;
    mkdir(&eroot.join("etc"))?;
    write(&eroot.join("usr/lib/os-release"), "ID=fuzz\nVERSION_ID=1\n")?;
    let _ = std::os::unix::fs::symlink("../usr/lib/os-release", eroot.join("etc/os-release"));
    for i in 0..300 {
        write(&eroot.join(format!("usr/lib/f{i:03}")), "x")?;
    }
    for (name, opts) in [("plain.erofs", &[][..]), ("lz4.erofs", &["-zlz4hc"][..])] {
        let out = work.join(name);
        if quiet(
            Command::new("mkfs.erofs")
                .arg("--quiet")
                .args(opts)
                .arg(&out)
                .arg(&eroot),
        ) {
            seed("erofs", name, &out);
        }
    }

    // Tar archives (plain and compressed) and a Debian package of the tree.
    for (name, flag) in [("tree.tar", ""), ("tree.tar.gz", "z"), ("tree.tar.xz", "J")] {
        let out = work.join(name);
        if quiet(
            Command::new("tar")
                .arg(format!("c{flag}f"))
                .arg(&out)
                .arg("-C")
                .arg(&tree)
                .arg("."),
        ) {
            seed("tar_source", name, &out);
        }
    }
    let deb_tree = work.join("deb");
    mkdir(&deb_tree.join("DEBIAN"))?;
    write(
        &deb_tree.join("DEBIAN/control"),
        "Package: fuzz\nVersion: 1.0\nArchitecture: all\nMaintainer: sik <sik@example.org>\nDescription: fuzz seed\n",
    )?;
    let _ = Command::new("cp")
        .arg("-a")
        .arg(tree.join("usr"))
        .arg(&deb_tree)
        .status();
    let deb = work.join("fuzz.deb");
    for comp in ["xz", "gzip"] {
        if quiet(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Z", comp, "--build"])
                .arg(&deb_tree)
                .arg(&deb),
        ) {
            seed("tar_source", &format!("fuzz-{comp}.deb"), &deb);
        }
    }
    // An Arch package (tar whose first entry is .PKGINFO) and an RPM.
    let arch_tree = work.join("arch");
    mkdir(&arch_tree)?;
    write(
        &arch_tree.join(".PKGINFO"),
        "pkgname = fuzz\npkgver = 1.0-1\narch = any\n",
    )?;
    write(&arch_tree.join(".INSTALL"), "post_install() { :; }\n")?;
    let _ = Command::new("cp")
        .arg("-a")
        .arg(tree.join("usr"))
        .arg(&arch_tree)
        .status();
    let arch = work.join("fuzz-1.0-1-any.pkg.tar.zst");
    if quiet(
        Command::new("tar")
            .arg("--zstd")
            .arg("-cf")
            .arg(&arch)
            .arg("-C")
            .arg(&arch_tree)
            .args([".PKGINFO", ".INSTALL", "usr"]),
    ) {
        seed("tar_source", "fuzz.pkg.tar.zst", &arch);
    }
    let rpm_top = work.join("rpmbuild");
    let spec = work.join("fuzz.spec");
    write(
        &spec,
        "Name: fuzz\nVersion: 1.0\nRelease: 1\nSummary: fuzz seed\nLicense: MIT\nBuildArch: noarch\n%description\nseed\n%install\nmkdir -p %{buildroot}/usr/share/fuzz\necho x > %{buildroot}/usr/share/fuzz/x\nln -s x %{buildroot}/usr/share/fuzz/y\n%files\n/usr/share/fuzz\n",
    )?;
    if quiet(
        Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", rpm_top.display()))
            .args(["--nodeps", "--quiet", "-bb"])
            .arg(&spec),
    ) {
        seed(
            "tar_source",
            "fuzz.noarch.rpm",
            &rpm_top.join("RPMS/noarch/fuzz-1.0-1.noarch.rpm"),
        );
    }

    for t in TARGETS {
        let n = std::fs::read_dir(corpus.join(t)).map_or(0, |d| d.count());
        eprintln!("corpus/{t}: {n} files");
    }
    Ok(())
}

/// loopback.cfg, grub.cfg, isolinux.cfg and live.cfg the way live ISOs write them.
fn boot_configs() -> Vec<(&'static str, String)> {
    vec![
        (
            "loopback.cfg",
            "menuentry \"Try it\" {\n  linux /casper/vmlinuz boot=casper iso-scan/filename=${iso_path} quiet splash ---\n  initrd /casper/initrd\n}\n".into(),
        ),
        (
            "grub.cfg",
            "set timeout=5\nsource /boot/grub/theme.cfg\nmenuentry 'Live (amd64)' --hotkey=l {\n\tlinux\t/live/vmlinuz boot=live components quiet splash findiso=${iso_path}\n\tinitrd\t/live/initrd.img\n}\nsubmenu 'Advanced' {\n  menuentry 'Safe' {\n    linux /live/vmlinuz boot=live nomodeset\n    initrd /live/initrd.img\n  }\n}\n".into(),
        ),
        (
            "isolinux.cfg",
            "UI vesamenu.c32\nINCLUDE live.cfg\nDEFAULT live\nLABEL live\n  MENU LABEL Live\n  KERNEL /live/vmlinuz\n  APPEND initrd=/live/initrd.img boot=live components\n".into(),
        ),
        (
            "live.cfg",
            "label live-amd64\n\tmenu label ^Live (amd64)\n\tmenu default\n\tlinux ../live/vmlinuz\n\tinitrd ../live/initrd.img\n\tappend boot=live components quiet splash\n".into(),
        ),
    ]
}

/// Run a seed tool with its output discarded; whether it succeeded.
fn quiet(cmd: &mut Command) -> bool {
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("fuzz: seed step failed (skipped): {}", crate::show(cmd));
    }
    ok
}

fn mkdir(p: &Path) -> Result {
    std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &Path, text: &str) -> Result {
    write_bytes(p, text.as_bytes())
}

fn write_bytes(p: &Path, bytes: &[u8]) -> Result {
    std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))
}
