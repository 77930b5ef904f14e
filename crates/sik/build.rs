//! Carries a static copy of `sik` inside `sik`, for `sik boot generate`:
//! the `sik` put into a medium's initrd runs inside a foreign initramfs,
//! which has none of the host's shared libraries, so a dynamically linked
//! `cargo build --release` or `cargo install` binary could not be used
//! there. `OUT_DIR/sik-static` receives
//!
//! * the file `SIK_INITRD_SIK` names, when that variable is set (empty:
//!   no copy, which is how the nested build below stops the recursion);
//! * nothing, when this build is itself static (`-C
//!   target-feature=+crt-static`, as `cargo xtask dist` builds it): the
//!   program then puts itself into the initrd;
//! * nothing for a debug build (`PROFILE=debug`), so the edit-compile
//!   cycle does not build the workspace twice; `sik boot generate` of a
//!   debug build needs `--sik-binary`;
//! * otherwise the result of a nested static build of this package,
//!   `cargo build -p sik --profile initrd --target TARGET` with
//!   `+crt-static`, in `<target-dir>/sik-initrd` (see `sik-build`).

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ws = manifest_dir.join("../..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dest = out_dir.join("sik-static");
    println!("cargo:rerun-if-env-changed=SIK_INITRD_SIK");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(p) = std::env::var_os("SIK_INITRD_SIK") {
        if p.is_empty() {
            write(&dest, &[]);
        } else {
            println!("cargo:rerun-if-changed={}", Path::new(&p).display());
            let bytes = std::fs::read(&p)
                .unwrap_or_else(|e| panic!("SIK_INITRD_SIK: {}: {e}", Path::new(&p).display()));
            write(&dest, &bytes);
        }
        return;
    }
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if sik_build::building_static() || !release {
        write(&dest, &[]);
        return;
    }
    for p in ["crates", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", ws.join(p).display());
    }
    let built = sik_build::StaticBuild {
        workspace: &ws,
        package: "sik",
        bin: "sik",
        profile: "initrd",
        dir_name: "sik-initrd",
        env: &[("SIK_INITRD_SIK", "")],
    }
    .run();
    let bytes =
        std::fs::read(&built).unwrap_or_else(|e| panic!("cannot read {}: {e}", built.display()));
    write(&dest, &bytes);
}

/// Write `bytes` to `to` unless it already holds them.
fn write(to: &Path, bytes: &[u8]) {
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(to, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", to.display()));
}
