//! `cargo xtask`: everything that is not a plain cargo call.
//!
//! * `ci`: exactly what CI runs — fmt check, the tidy check, clippy
//!   `-D warnings` on all targets, every test, docs.
//! * `tidy`: the project's conventions (`tidy.rs`): `//!` file docs,
//!   `// SAFETY:` comments, workspace dependencies, no measurements in
//!   ARCHITECTURE.md, a schema for every `--json`, no file over 800 lines.
//! * `example`: the main job on the bundled example (build an ExtensionImage
//!   from `examples/` and inspect it).
//! * `dist`: a static release `sik` (crt-static, runs in any x86_64 Linux
//!   and inside a foreign initramfs), man pages and shell completions under
//!   `target/dist/`.
//! * `generate [--medium DIR]`: build the static binaries and run
//!   `sik boot generate` on DIR, or on the example medium it assembles under
//!   `target/example-medium/` from `examples/`.
//! * `e2e`: boots a generated medium in QEMU (see E2E.md).
//! * `compat [--check]`: writes COMPATIBILITY.md from the family files and
//!   the e2e scenarios' record of what they boot (`compat.rs`).
//! * `bench [create|extract|verify|link|appimage|detect|fuse|scale|verity]… [--quick]`: side-by-side benchmarks against the peer
//!   tools, written to BENCHMARKS.md.

#![forbid(unsafe_code)]

mod bench;
mod compat;
mod e2e;
mod fuzz;
#[cfg(test)]
mod handmade_target;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("tidy") => tidy::main(),
        Some("example") => example(),
        Some("dist") => dist().map(|_| ()),
        Some("generate") => generate(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("e2e") => e2e::main(&args[1..]),
        Some("compat") => compat::main(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|tidy|test|example|generate [--medium DIR]|dist|bench [create|extract|verify|link|appimage|detect|fuse|scale|verity]… [--quick]|e2e|compat [--check]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lies in the workspace")
        .to_path_buf()
}

/// `xorriso -as mkisofs` making an ISO 9660 image with Rock Ridge and Joliet
/// names (as live ISOs have) of `tree` at `iso`, volume label `label`.
pub fn mkisofs(tree: &Path, iso: &Path, label: &str) -> Command {
    let mut c = Command::new("xorriso");
    c.args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", label, "-o"])
        .arg(iso)
        .arg(tree);
    c
}

/// Run a command in the workspace root; fail when it fails.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed with {status}", show(cmd)))
    }
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> Result {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    tidy::main()?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    test()?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

fn test() -> Result {
    // Integration tests run one binary at a time but several tests in each;
    // loop devices and mounts are per test, so that is safe.
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))
}

fn example() -> Result {
    run(cargo().args(["build", "-p", "sik"]))?;
    let sik = root().join("target/debug/sik");
    let out_dir = root().join("target/example");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let img = out_dir.join("hello.ExtensionImage");
    run(Command::new(&sik)
        .args(["create", "extension"])
        .arg(root().join("examples/extension"))
        .arg("-o")
        .arg(&img)
        .args(["--os-id", "_any", "--version", "1.0"]))?;
    run(Command::new(&sik).arg("inspect").arg(&img))?;
    run(Command::new(&sik).args(["inspect", "--list"]).arg(&img))
}

/// Build the static release binary, man pages and completions.
pub fn dist() -> Result<PathBuf> {
    let target = "x86_64-unknown-linux-gnu";
    run(cargo()
        .args(["build", "--release", "-p", "sik", "--target", target])
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let bin = root().join("target").join(target).join("release/sik");
    let dist = root().join("target/dist");
    std::fs::create_dir_all(dist.join("man")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dist.join("completions")).map_err(|e| e.to_string())?;
    std::fs::copy(&bin, dist.join("sik")).map_err(|e| format!("{}: {e}", bin.display()))?;
    // Symbols are not needed on a boot medium: the initrd carries this binary.
    let _ = Command::new("strip").arg(dist.join("sik")).status();
    run(Command::new(&bin).args(["manpages"]).arg(dist.join("man")))?;
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("sik completions {shell} failed"));
        }
        let name = match shell {
            "bash" => "sik.bash",
            "zsh" => "_sik",
            _ => "sik.fish",
        };
        std::fs::write(dist.join("completions").join(name), out.stdout)
            .map_err(|e| e.to_string())?;
    }
    eprintln!("dist: {}", dist.display());
    Ok(dist.join("sik"))
}

/// `cargo xtask generate [--medium DIR]`.
fn generate(args: &[String]) -> Result {
    let medium = match args {
        [] => None,
        [flag, dir] if flag == "--medium" => Some(PathBuf::from(dir)),
        _ => return Err("usage: cargo xtask generate [--medium DIR]".into()),
    };
    let sik = dist()?;
    let medium = match medium {
        Some(m) => m,
        None => example_medium(&sik)?,
    };
    let isos: Vec<PathBuf> = std::fs::read_dir(medium.join("boot/iso"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "iso"))
                .collect()
        })
        .unwrap_or_default();
    if !isos.is_empty() {
        // Exit 1 means some ISO matched no family; generate skips those and says so.
        let _ = Command::new(&sik)
            .args(["boot", "detect"])
            .args(&isos)
            .status();
    }
    run(Command::new(&sik)
        .args(["boot", "generate"])
        .arg(&medium)
        .arg("--sik-binary")
        .arg(&sik))?;
    eprintln!(
        "medium ready: {} (grub.cfg: {})",
        medium.display(),
        medium.join("boot/grub/grub.cfg").display()
    );
    Ok(())
}

/// Assemble the example medium under target/ from examples/.
fn example_medium(sik: &Path) -> Result<PathBuf> {
    let ex = root().join("examples");
    let work = root().join("target/example-work");
    let medium = root().join("target/example-medium");
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&medium);
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    for d in [
        "boot/iso",
        "boot/extensions/x86_64",
        "boot/keys",
        "Applications",
    ] {
        mkdir(&medium.join(d))?;
    }
    mkdir(&work)?;
    // The customization, copied as it is.
    run(Command::new("cp")
        .arg("-a")
        .arg(ex.join("medium/boot/customize"))
        .arg(medium.join("boot/")))?;
    // The live ISO: live-boot layout, filesystem.squashfs built by sik.
    let iso_tree = work.join("iso");
    run(Command::new("cp")
        .arg("-a")
        .arg(ex.join("live-iso"))
        .arg(&iso_tree))?;
    run(Command::new(sik)
        .args(["create", "extension", "-q"])
        .arg(ex.join("live-root"))
        .arg("-o")
        .arg(iso_tree.join("live/filesystem.squashfs"))
        .args(["--name", "filesystem"])
        .env("SOURCE_DATE_EPOCH", "1767225600"))?;
    run(&mut mkisofs(
        &iso_tree,
        &medium.join("boot/iso/example-live.iso"),
        "EXAMPLE_LIVE",
    ))?;
    // The extension, signed with a key made for the example; its public key is trusted by the medium.
    let key = work.join("example-key");
    run(Command::new(sik)
        .args(["key", "generate", "-o"])
        .arg(&key)
        .args(["--comment", "sik-example"]))?;
    let img = medium.join("boot/extensions/x86_64/hello.ExtensionImage");
    run(Command::new(sik)
        .args(["create", "extension", "-q"])
        .arg(ex.join("extension"))
        .arg("-o")
        .arg(&img)
        .args(["--os-id", "_any", "--version", "1.0"]))?;
    run(Command::new(sik)
        .arg("sign")
        .arg(&img)
        .arg("--key")
        .arg(&key))?;
    std::fs::copy(
        work.join("example-key.pub"),
        medium.join("boot/keys/example-key.pub"),
    )
    .map_err(|e| e.to_string())?;
    run(Command::new(sik)
        .arg("verify")
        .arg(&img)
        .arg("--trust")
        .arg(medium.join("boot/keys")))?;
    Ok(medium)
}
