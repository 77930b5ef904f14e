//! Builds the AppImage runtime (`crates/sik-runtime`) as a static
//! executable and leaves it in `OUT_DIR/sik-runtime`, from where the library
//! embeds it with `include_bytes!`, so `sik create appimage` needs no
//! network and no extra file.
//!
//! The runtime is built by a nested `cargo build -p sik-runtime --profile
//! runtime --target <ARCH>-unknown-linux-musl` with `-C
//! target-feature=+crt-static`, in its own target directory
//! (`<target-dir>/sik-runtime`; see the `sik-build` crate, which `sik`'s
//! build script shares). musl, not glibc: a static glibc alone is over
//! 1 MiB of code (its static dlopen, stdio and locale machinery), a static
//! musl program of the same Rust code a third of that. The musl target comes
//! from `rustup target add`, the C parts (libzstd, liblzma) are compiled with
//! `musl-gcc` (Debian `musl-tools`); `.ci/deps` installs both. Cargo reruns this script
//! only when the runtime's sources, sik-image's sources or the lock file
//! change, and the nested build is incremental.
//!
//! `SIK_RUNTIME=/path/to/runtime` skips the nested build and embeds that file.

use std::path::{Path, PathBuf};

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
    let host = std::env::var("TARGET").expect("TARGET");
    let target = musl_target(&host);
    // cc-rs looks for `<arch>-linux-musl-gcc`; Debian calls it musl-gcc.
    let cc_var = format!("CC_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cc_var}");
    let cc = std::env::var(&cc_var).unwrap_or_else(|_| "musl-gcc".into());
    let built = sik_build::StaticBuild {
        workspace: &ws,
        package: "sik-runtime",
        bin: "sik-runtime",
        profile: "runtime",
        dir_name: "sik-runtime",
        env: &[(&cc_var, &cc)],
    }
    .run_for(&target);
    install(&built, &dest);
}

/// The musl target of the same architecture as `host`
/// (`x86_64-unknown-linux-gnu` -> `x86_64-unknown-linux-musl`).
fn musl_target(host: &str) -> String {
    let arch = host.split('-').next().unwrap_or(host);
    format!("{arch}-unknown-linux-musl")
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
