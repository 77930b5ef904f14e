//! A build from a target directory that was made by hand (restored from a
//! CI cache, a mounted volume, `mkdir target`): it has no `CACHEDIR.TAG`,
//! and sik-appimage's build script must still put the nested runtime build
//! somewhere other than the path of the runtime file it writes.
//!
//! A full build takes minutes, so the test copies the artifacts of the
//! current target directory (libraries, build script outputs, fingerprints,
//! the nested runtime build; not executables or incremental state) into a
//! fresh directory outside any cargo target directory, without
//! `CACHEDIR.TAG`, makes cargo run sik-appimage's build script again, and
//! builds `sik-appimage` there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The target directory this test binary was built in
/// (`<target>/debug/deps/xtask-HASH`).
fn current_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("the test runs from <target>/<profile>/deps")
        .to_path_buf()
}

fn cp(args: &[&Path], dest: &Path) {
    let status = Command::new("cp")
        .args(["-a", "--reflink=auto", "-t"])
        .arg(dest)
        .args(args)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp into {} failed", dest.display());
}

/// Removes the copy when the test ends, also when it fails.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn appimage_builds_in_a_hand_made_target_dir() {
    let started = Instant::now();
    let target = current_target_dir();
    // The profile directory this test was built into (`debug` for `dev`).
    let exe = std::env::current_exe().unwrap();
    let debug = exe.ancestors().nth(2).unwrap().to_path_buf();
    let profile_dir_name = debug.file_name().unwrap().to_string_lossy().into_owned();
    let profile = match profile_dir_name.as_str() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    assert!(
        debug.join("deps").is_dir(),
        "{} has no deps",
        debug.display()
    );
    let copy = std::env::temp_dir().join(format!("sik-handmade-target-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let _guard = RemoveOnDrop(copy.clone());
    let copy_debug = copy.join(&profile_dir_name);
    std::fs::create_dir_all(copy_debug.join("deps")).unwrap();
    // Libraries and their metadata; executables (test binaries) are not needed.
    let libs: Vec<PathBuf> = std::fs::read_dir(debug.join("deps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| ["rlib", "rmeta", "so", "d"].iter().any(|e| x == *e))
        })
        .collect();
    for chunk in libs.chunks(500) {
        let refs: Vec<&Path> = chunk.iter().map(PathBuf::as_path).collect();
        cp(&refs, &copy_debug.join("deps"));
    }
    cp(
        &[&debug.join("build"), &debug.join(".fingerprint")],
        &copy_debug,
    );
    if target.join("sik-runtime").is_dir() {
        cp(&[&target.join("sik-runtime")], &copy);
    }
    assert!(!copy.join("CACHEDIR.TAG").exists());
    // Make cargo run sik-appimage's build script again in the copy.
    for e in std::fs::read_dir(copy_debug.join(".fingerprint")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("sik-appimage-")
            && p.join("run-build-script-build-script-build").exists()
        {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    let copied = started.elapsed();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--offline",
            "-p",
            "sik-appimage",
            "--profile",
            &profile,
        ])
        .env("CARGO_TARGET_DIR", &copy)
        .env_remove("SIK_RUNTIME")
        .current_dir(crate::root())
        .output()
        .expect("run cargo build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo build -p sik-appimage in a hand-made target dir failed:\n{stderr}"
    );
    // The runtime file is a file, and the nested build went beside the
    // profile directories, not into OUT_DIR.
    let mut runtimes = 0;
    for e in std::fs::read_dir(copy_debug.join("build")).unwrap() {
        let p = e.unwrap().path().join("out/sik-runtime");
        if p.exists() {
            assert!(p.is_file(), "{} is not a file", p.display());
            runtimes += 1;
        }
    }
    assert!(runtimes > 0, "no OUT_DIR/sik-runtime was written");
    assert!(copy.join("sik-runtime").is_dir());
    eprintln!(
        "hand-made target dir: copy {:.1} s, build {:.1} s",
        copied.as_secs_f64(),
        (started.elapsed() - copied).as_secs_f64()
    );
}
