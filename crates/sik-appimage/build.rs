//! Builds the AppImage runtime (`crates/sik-runtime`) as a static
//! executable and leaves it in `OUT_DIR/sik-runtime`, from where the library
//! embeds it with `include_bytes!`, so `sik create appimage` needs no
//! network and no extra file.
//!
//! The runtime is built by a nested `cargo build -p sik-runtime --profile
//! runtime --target <TARGET>` with `-C target-feature=+crt-static`, in its
//! own target directory (`<target-dir>/sik-runtime`) so the nested cargo
//! never waits for the lock the outer one holds. The outer target directory
//! is read from OUT_DIR's place in it
//! (`<target-dir>[/<TARGET>]/<profile>/build/<pkg>-<hash>/out`), so a
//! target directory made by hand (no `CACHEDIR.TAG`) works too; when OUT_DIR
//! is laid out otherwise, the nested build goes to `OUT_DIR/runtime-build`,
//! never to the path of the runtime file itself. Cargo reruns this script
//! only when the runtime's sources, sik-image's sources or the lock file
//! change, and the nested build is incremental.
//!
//! `SIK_RUNTIME=/path/to/runtime` skips the nested build and embeds that file.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ws = manifest_dir.join("../..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("sik-runtime");
    println!("cargo:rerun-if-env-changed=SIK_RUNTIME");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(p) = std::env::var_os("SIK_RUNTIME").filter(|v| !v.is_empty()) {
        println!("cargo:rerun-if-changed={}", Path::new(&p).display());
        install(Path::new(&p), &dest);
        return;
    }
    for p in [
        "crates/sik-runtime",
        "crates/sik-image/src",
        "crates/sik-image/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", ws.join(p).display());
    }
    let target = std::env::var("TARGET").expect("TARGET");
    let target_dir = nested_target_dir(&out_dir, &target);
    assert!(
        !dest.starts_with(&target_dir) && !target_dir.starts_with(&dest),
        "the runtime's build directory {} and its output {} overlap",
        target_dir.display(),
        dest.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(ws.join("Cargo.toml"))
        .args([
            "-p",
            "sik-runtime",
            "--profile",
            "runtime",
            "--target",
            &target,
            "--target-dir",
        ])
        .arg(&target_dir);
    // Start from a clean environment for the nested cargo: nothing of the
    // outer build script's environment (features, cfgs, wrappers such as
    // clippy-driver, flags) may leak into it.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let drop = k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_FEATURE_")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("DEP_")
            || [
                "CARGO_TARGET_DIR",
                "CARGO_BUILD_TARGET",
                "CARGO_BUILD_RUSTFLAGS",
                "CARGO_ENCODED_RUSTFLAGS",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_CRATE_NAME",
                "RUSTFLAGS",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
                "OUT_DIR",
                "TARGET",
                "HOST",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
                "RUSTC_LINKER",
                "CLIPPY_ARGS",
                "CLIPPY_CONF_DIR",
            ]
            .contains(&k.as_str());
        if drop {
            cmd.env_remove(&k);
        }
    }
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-C\x1ftarget-feature=+crt-static",
    );
    let status = cmd
        .status()
        .expect("cannot run cargo to build the AppImage runtime");
    if !status.success() {
        panic!(
            "building the AppImage runtime (cargo build -p sik-runtime --profile runtime) failed: {status}"
        );
    }
    let built = target_dir.join(&target).join("runtime").join("sik-runtime");
    install(&built, &dest);
}

/// Copy the runtime and mark it as an AppImage type 2 runtime: bytes 8..11
/// of the ELF identification padding are `AI\x02`.
fn install(from: &Path, to: &Path) {
    let mut bytes =
        std::fs::read(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display()));
    assert!(
        bytes.len() > 64 && bytes.starts_with(b"\x7fELF"),
        "{} is not an ELF file",
        from.display()
    );
    bytes[8..11].copy_from_slice(b"AI\x02");
    let same = std::fs::read(to).is_ok_and(|old| old == bytes);
    if !same {
        std::fs::write(to, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
    }
}

/// Where the nested runtime build puts its files: `<target-dir>/sik-runtime`
/// beside the outer build's profile directories, or
/// `OUT_DIR/runtime-build/sik-runtime` when OUT_DIR does not lie in a cargo
/// target directory as cargo lays it out.
fn nested_target_dir(out_dir: &Path, target: &str) -> PathBuf {
    outer_target_dir(out_dir, target)
        .unwrap_or_else(|| out_dir.join("runtime-build"))
        .join("sik-runtime")
}

/// The outer cargo target directory, from OUT_DIR's place in it:
/// `<target-dir>/<profile>/build/<pkg>-<hash>/out`, or
/// `<target-dir>/<TARGET>/<profile>/build/<pkg>-<hash>/out` with `--target`.
/// Nothing inside it is looked at (a directory made by hand has no
/// `CACHEDIR.TAG`).
fn outer_target_dir(out_dir: &Path, target: &str) -> Option<PathBuf> {
    if out_dir.file_name()? != "out" {
        return None;
    }
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    let mut dir = build.parent()?.parent()?;
    if dir.file_name().is_some_and(|n| n == target) {
        dir = dir.parent()?;
    }
    Some(dir.to_path_buf())
}
