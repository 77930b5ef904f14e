//! Helpers for the integration tests: they drive the built `sik` binary and
//! real external tools on temporary directories, so each test reads like the
//! shell session it replaces.
//!
//! Tests that need root, loop devices, FUSE or QEMU call [`require_root`] or
//! [`require_tool`]. Outside CI a missing capability prints `SKIPPED: …` and
//! the test returns; with `CI=true` it is a failure, so CI never counts a
//! skipped check as passed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of the `sik` binary under test.
pub fn sik_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sik"))
}

/// A `sik` command ready to get arguments.
pub fn sik() -> Command {
    let mut c = Command::new(sik_bin());
    c.env_remove("XDG_CONFIG_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Whether this run is CI (where skips are failures).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skip (outside CI) or fail (in CI) with a reason. Returns `false` so tests
/// can write `if !skip("…") { return; }`.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("required capability missing in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// True when running as root; otherwise skip (or fail in CI).
pub fn require_root() -> bool {
    if unsafe_geteuid() == 0 {
        true
    } else {
        skip("needs root")
    }
}

/// True when `tool` is on PATH; otherwise skip (or fail in CI).
pub fn require_tool(tool: &str) -> bool {
    if have_tool(tool) {
        true
    } else {
        skip(&format!("needs `{tool}` on PATH"))
    }
}

/// Whether `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    which(tool).is_some()
}

/// Full path of `tool` on PATH (also /sbin and /usr/sbin).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn unsafe_geteuid() -> u32 {
    // Read from /proc to avoid a libc dependency in tests.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// `cmd.output()`, retried while the program is "text file busy": a file
/// a test has just written and made executable can still be open for
/// writing in a child that another test thread forked in that moment (the
/// descriptor lives until that child's exec closes it), and exec then fails
/// with ETXTBSY for a few milliseconds.
fn output(cmd: &mut Command) -> Output {
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot run {cmd:?}: {e}"),
            Ok(out) => return out,
        }
    }
}

/// Run a command, panic with its output when it fails, return its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command and return its whole output, whatever the status.
pub fn run(cmd: &mut Command) -> Output {
    output(cmd)
}

/// Shell out: `sh -c SCRIPT` in `dir`, must succeed.
pub fn sh(dir: &Path, script: &str) -> String {
    run_ok(Command::new("sh").arg("-c").arg(script).current_dir(dir))
}

/// Command builder shortcut.
pub fn cmd<S: AsRef<OsStr>>(prog: S) -> Command {
    let mut c = Command::new(prog);
    c.stdin(Stdio::null());
    c
}

/// A temporary directory removed when dropped (after unmounting anything
/// the test left mounted below it).
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let base = std::env::var_os("SIK_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let _ = std::fs::create_dir_all(&base);
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("sik-test-")
                .tempdir_in(base)
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Write a file (creating parents).
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Create a directory (and parents).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Unmount anything still mounted below the directory, deepest first.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|p| p.replace("\\040", " "))
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}

/// Assert a `sik` failure: exit code `code`, exactly one `sik: error:` line
/// on stderr (a `hint:` line may follow), containing every needle; never a
/// panic message. Returns stderr.
pub fn assert_fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors = stderr
        .lines()
        .filter(|l| l.starts_with("sik: error:"))
        .count();
    assert_eq!(errors, 1, "exactly one error line expected:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
    stderr
}

/// Parse `json` and check it against `formats/schema/NAME.json`; returns the value.
pub fn assert_schema(name: &str, json: &str) -> serde_json::Value {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../formats/schema")
        .join(format!("{name}.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("schema file"))
            .expect("schema is JSON");
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}.json rejects the output:\n{}\n{json}",
        errors.join("\n")
    );
    value
}

/// `sik key generate -o DIR/NAME --comment NAME@test`; returns (private,
/// public) key paths.
pub fn sik_key(t: &TestDir, name: &str) -> (PathBuf, PathBuf) {
    let k = t.join(name);
    run_ok(
        sik()
            .args([
                "key",
                "generate",
                "--comment",
                &format!("{name}@test"),
                "-o",
            ])
            .arg(&k),
    );
    (k.clone(), PathBuf::from(format!("{}.pub", k.display())))
}

/// A minimal valid AppDir `NAME` holding `AppRun` (the given script,
/// executable), `hello.desktop` (with the given extra lines) and
/// `hello.svg`; returns its path.
pub fn hello_appdir(t: &TestDir, name: &str, apprun: &str, desktop_extra: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let root = t.mkdir(name);
    std::fs::write(root.join("AppRun"), apprun).unwrap();
    std::fs::set_permissions(root.join("AppRun"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        root.join("hello.desktop"),
        format!(
            "[Desktop Entry]\nType=Application\nName=Hello World\nExec=AppRun\nIcon=hello\nCategories=Utility;\n{desktop_extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("hello.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
    )
    .unwrap();
    root
}

/// `xorriso -as mkisofs` making an ISO 9660 image with Rock Ridge and Joliet
/// names (as live ISOs have) of `tree` at `iso`, volume label `label`.
pub fn mkisofs(tree: &Path, iso: &Path, label: &str) -> Command {
    let mut c = cmd("xorriso");
    c.args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", label, "-o"])
        .arg(iso)
        .arg(tree);
    c
}
