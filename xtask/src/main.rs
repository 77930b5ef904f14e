//! `cargo xtask`: everything that is not a plain cargo call.
//!
//! * `ci`: exactly what CI runs — fmt check, clippy `-D warnings` on all
//!   targets, every test, docs.
//! * `example`: the main job on the bundled example (build an ExtensionImage
//!   from `examples/` and inspect it).
//! * `dist`: a static release `sik` (crt-static, runs in any x86_64 Linux
//!   and inside a foreign initramfs), man pages and shell completions under
//!   `target/dist/`.
//! * `bench [create] [--quick]`: side-by-side benchmarks against the peer
//!   tools, written to BENCHMARKS.md.

mod bench;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(),
        Some("example") => example(),
        Some("dist") => dist().map(|_| ()),
        Some("bench") => bench::main(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci|test|example|dist|bench [create] [--quick]>");
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
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lies in the workspace").to_path_buf()
}

/// Run a command in the workspace root; fail when it fails.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("$ {}", show(cmd));
    let status = cmd.current_dir(root()).status().map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    if status.success() { Ok(()) } else { Err(format!("{} failed with {status}", show(cmd))) }
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned()).chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned())).collect::<Vec<_>>().join(" ")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ci() -> Result {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    test()?;
    run(cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"))
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
    run(Command::new(&sik).args(["create", "extension"]).arg(root().join("examples/extension")).arg("-o").arg(&img).args(["--os-id", "_any", "--version", "1.0"]))?;
    run(Command::new(&sik).arg("inspect").arg(&img))?;
    run(Command::new(&sik).args(["inspect", "--list"]).arg(&img))
}

/// Build the static release binary, man pages and completions.
pub fn dist() -> Result<PathBuf> {
    let target = "x86_64-unknown-linux-gnu";
    run(cargo().args(["build", "--release", "-p", "sik", "--target", target]).env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let bin = root().join("target").join(target).join("release/sik");
    let dist = root().join("target/dist");
    std::fs::create_dir_all(dist.join("man")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dist.join("completions")).map_err(|e| e.to_string())?;
    std::fs::copy(&bin, dist.join("sik")).map_err(|e| format!("{}: {e}", bin.display()))?;
    run(Command::new(&bin).args(["manpages"]).arg(dist.join("man")))?;
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(&bin).args(["completions", shell]).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("sik completions {shell} failed"));
        }
        let name = match shell {
            "bash" => "sik.bash",
            "zsh" => "_sik",
            _ => "sik.fish",
        };
        std::fs::write(dist.join("completions").join(name), out.stdout).map_err(|e| e.to_string())?;
    }
    eprintln!("dist: {}", dist.display());
    Ok(dist.join("sik"))
}
