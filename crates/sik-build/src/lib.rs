//! Build-script support shared by the crates that carry a static executable
//! built from this workspace: `sik-appimage` (the AppImage runtime) and
//! `sik` (the static copy of itself that `sik boot generate` puts into a
//! medium's initrd).
//!
//! Both run a nested `cargo build -p PACKAGE --profile PROFILE --target
//! TARGET` with `-C target-feature=+crt-static`, in a target directory of
//! its own (`<target-dir>/NAME`), so the nested cargo never waits for the
//! lock the outer one holds. The outer target directory is read from
//! OUT_DIR's place in it (`<target-dir>[/<TARGET>]/<profile>/build/<pkg>-<hash>/out`),
//! so a target directory made by hand (no `CACHEDIR.TAG`) works too; when
//! OUT_DIR is laid out otherwise, the nested build goes to
//! `OUT_DIR/NAME-build/NAME`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables of a build script that must not reach a nested
/// cargo: features, cfgs, wrappers such as clippy-driver, flags.
fn leaks(k: &str) -> bool {
    k.starts_with("CARGO_CFG_")
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
        .contains(&k)
}

/// A nested static build of one binary of the workspace.
pub struct StaticBuild<'a> {
    /// The workspace root (holding `Cargo.toml`).
    pub workspace: &'a Path,
    /// The package (`-p`).
    pub package: &'a str,
    /// The binary's name (the file under `<target>/<profile>/`).
    pub bin: &'a str,
    /// The cargo profile (`--profile`).
    pub profile: &'a str,
    /// The name of the nested target directory beside the outer build's
    /// profile directories.
    pub dir_name: &'a str,
    /// Extra environment for the nested cargo (set after the cleaning).
    pub env: &'a [(&'a str, &'a str)],
}

impl StaticBuild<'_> {
    /// Run the nested build for the outer build's target; the path of the
    /// static executable. Panics (the build script's way to fail) with the
    /// reason.
    pub fn run(&self) -> PathBuf {
        self.run_for(&std::env::var("TARGET").expect("TARGET"))
    }

    /// Run the nested build for `target` (a Rust target triple); the path
    /// of the static executable.
    pub fn run_for(&self, target: &str) -> PathBuf {
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        let outer_target = std::env::var("TARGET").expect("TARGET");
        let target_dir = nested_target_dir(&out_dir, &outer_target, self.dir_name);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(self.workspace.join("Cargo.toml"))
            .args([
                "-p",
                self.package,
                "--bin",
                self.bin,
                "--profile",
                self.profile,
                "--target",
                target,
                "--target-dir",
            ])
            .arg(&target_dir);
        // Start from a clean environment for the nested cargo.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if leaks(&k) {
                cmd.env_remove(&k);
            }
        }
        cmd.env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-C\x1ftarget-feature=+crt-static",
        );
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", self.bin));
        if !status.success() {
            panic!(
                "building the static {} (cargo build -p {} --profile {} --target {target}) failed: {status}",
                self.bin, self.package, self.profile
            );
        }
        let built = target_dir.join(target).join(self.profile).join(self.bin);
        assert!(
            !out_dir.starts_with(&target_dir),
            "the nested build directory {} holds OUT_DIR {}",
            target_dir.display(),
            out_dir.display()
        );
        built
    }
}

/// Where a nested build puts its files: `<target-dir>/NAME` beside the
/// outer build's profile directories, or `OUT_DIR/NAME-build/NAME` when
/// OUT_DIR does not lie in a cargo target directory as cargo lays it out.
pub fn nested_target_dir(out_dir: &Path, target: &str, name: &str) -> PathBuf {
    outer_target_dir(out_dir, target)
        .unwrap_or_else(|| out_dir.join(format!("{name}-build")))
        .join(name)
}

/// The outer cargo target directory, from OUT_DIR's place in it:
/// `<target-dir>/<profile>/build/<pkg>-<hash>/out`, or
/// `<target-dir>/<TARGET>/<profile>/build/<pkg>-<hash>/out` with `--target`.
/// Nothing inside it is looked at (a directory made by hand has no
/// `CACHEDIR.TAG`).
pub fn outer_target_dir(out_dir: &Path, target: &str) -> Option<PathBuf> {
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

/// Whether the package being built is itself linked statically (the
/// target features of the outer build hold `crt-static`, as with
/// `RUSTFLAGS=-Ctarget-feature=+crt-static`).
pub fn building_static() -> bool {
    std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|x| x == "crt-static"))
}
