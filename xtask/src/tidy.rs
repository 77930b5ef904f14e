//! `cargo xtask tidy`: the project's conventions, checked (also a step of
//! `cargo xtask ci`). Each rule is a function over file contents, unit-tested
//! below; `main` applies them to the workspace and lists every finding as
//! `PATH[:LINE]: what is wrong`.
//!
//! * every `.rs` file under `crates/`, `xtask/`, `tests/` and `fuzz/` opens
//!   with a `//!` comment saying what it is;
//! * every `unsafe {`, `unsafe fn` and `unsafe impl` has a `// SAFETY:`
//!   comment just before it (an `unsafe fn` may have `# Safety` docs instead);
//! * every dependency of a workspace crate comes from
//!   `[workspace.dependencies]` (`name.workspace = true`);
//! * ARCHITECTURE.md holds no measurements (times, throughputs, ratios,
//!   percentages, sizes with decimals or SI units): they go stale there and
//!   belong in BENCHMARKS.md;
//! * every CLI command that has `--json` (read from the clap definition,
//!   through `sik … --help`) has a schema in `formats/schema/` whose `title`
//!   is `sik COMMAND --json`;
//! * no source file outside tests is over [`MAX_LINES`] lines, except those
//!   in [`LONG_FILES`].

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::{Result, cargo, root};

/// Longest source file (outside tests) the tidy check accepts.
pub const MAX_LINES: usize = 800;

/// Source files allowed over [`MAX_LINES`] for now, each with the reason.
pub const LONG_FILES: &[(&str, &str)] = &[];

/// Directories whose `.rs` files are checked.
const SOURCE_DIRS: &[&str] = &["crates", "xtask", "tests", "fuzz"];

/// Run every check; fail listing all findings.
pub fn main() -> Result {
    let root = root();
    let mut problems = Vec::new();
    let files = rust_files(&root);
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(f).map_err(|e| format!("{rel}: {e}"))?;
        if !opens_with_module_doc(&text) {
            problems.push(format!("{rel}: does not open with a `//!` comment"));
        }
        for line in unsafe_without_safety(&text) {
            problems.push(format!(
                "{rel}:{line}: `unsafe` without a `// SAFETY:` comment just before it"
            ));
        }
        if !is_test_path(&rel) && text.lines().count() > MAX_LINES {
            if !LONG_FILES.iter().any(|(p, _)| *p == rel) {
                problems.push(format!(
                    "{rel}: {} lines, more than {MAX_LINES}; split it along its concepts",
                    text.lines().count()
                ));
            }
        } else if LONG_FILES.iter().any(|(p, _)| *p == rel) {
            problems.push(format!(
                "{rel}: no longer over {MAX_LINES} lines; remove it from LONG_FILES in xtask/src/tidy.rs"
            ));
        }
    }
    for manifest in member_manifests(&root)? {
        let rel = manifest
            .strip_prefix(&root)
            .unwrap_or(&manifest)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&manifest).map_err(|e| format!("{rel}: {e}"))?;
        for dep in deps_outside_workspace(&text) {
            problems.push(format!(
                "{rel}: dependency {dep} does not come from [workspace.dependencies] (`{dep}.workspace = true`)"
            ));
        }
    }
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .map_err(|e| format!("ARCHITECTURE.md: {e}"))?;
    for (line, figure) in figures(&arch) {
        problems.push(format!(
            "ARCHITECTURE.md:{line}: measurement {figure:?}; measurements belong in BENCHMARKS.md"
        ));
    }
    let titles = schema_titles(&root.join("formats/schema"))?;
    let json = json_commands(&sik_help)?;
    for cmd in &json {
        if !titles.contains(&format!("sik {cmd} --json")) {
            problems.push(format!(
                "formats/schema: no schema titled \"sik {cmd} --json\" for `sik {cmd} --json`"
            ));
        }
    }
    if problems.is_empty() {
        eprintln!(
            "tidy: {} source files and {} `--json` commands checked, all conventions hold",
            files.len(),
            json.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("tidy: {} problem(s)", problems.len()))
    }
}

/// Every `.rs` file under [`SOURCE_DIRS`], build output excluded.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&e.path(), out);
                }
            } else if ft.is_file() && name.ends_with(".rs") {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    for d in SOURCE_DIRS {
        walk(&root.join(d), &mut out);
    }
    out
}

/// Whether a workspace-relative path is test code (integration tests).
fn is_test_path(rel: &str) -> bool {
    rel.starts_with("tests/") || rel.contains("/tests/")
}

/// `Cargo.toml` of every workspace member (crates/*, xtask).
fn member_manifests(root: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .map_err(|e| format!("crates: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("Cargo.toml"))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v.push(root.join("xtask/Cargo.toml"));
    Ok(v)
}

/// Whether the first line that is not blank is a `//!` comment.
pub fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// The line with string literals blanked (so text about `unsafe` in a
/// message is not code) and without a trailing `//` comment.
fn code_part(line: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
            out.push('"');
        } else if c == '/' && chars.peek() == Some(&'/') {
            break;
        } else {
            out.push(c);
        }
    }
    out
}

/// 1-based lines with `unsafe {`, `unsafe fn` or `unsafe impl` that have no
/// `// SAFETY:` comment just before them: on the same line, or in the run
/// of `//` comment lines directly above (attributes may come between). An
/// `unsafe fn` may instead have a `# Safety` section in its `///` docs.
pub fn unsafe_without_safety(text: &str) -> Vec<usize> {
    let unsafe_re = Regex::new(r"\bunsafe\s*(\{|fn\b|impl\b)").expect("valid regex");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = code_part(line);
        let Some(m) = unsafe_re.find(&code) else {
            continue;
        };
        let is_fn = m.as_str().ends_with("fn");
        if line.contains("// SAFETY:") {
            continue;
        }
        let mut ok = false;
        let mut j = i;
        while j > 0 {
            j -= 1;
            let t = lines[j].trim_start();
            if t.starts_with("#[") || t.starts_with("#![") {
                continue;
            }
            if t.starts_with("///") {
                if is_fn && t.contains("# Safety") {
                    ok = true;
                    break;
                }
                continue;
            }
            if t.starts_with("//") {
                if t.contains("SAFETY:") {
                    ok = true;
                    break;
                }
                continue;
            }
            break;
        }
        if !ok {
            out.push(i + 1);
        }
    }
    out
}

/// Names of dependencies in a member's `Cargo.toml` that do not come from
/// `[workspace.dependencies]`, in every dependency table (normal, dev,
/// build, per target; inline `name = …` or `[dependencies.name]`).
pub fn deps_outside_workspace(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The dependency table being read, and a `[dependencies.NAME]` table's
    // name with whether it said `workspace = true`.
    let mut in_deps = false;
    let mut table: Option<(String, bool)> = None;
    let finish = |table: &mut Option<(String, bool)>, out: &mut Vec<String>| {
        if let Some((name, ws)) = table.take()
            && !ws
        {
            out.push(name);
        }
    };
    for raw in manifest.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            finish(&mut table, &mut out);
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            let parts: Vec<&str> = header.split('.').collect();
            let pos = parts.iter().position(|p| {
                matches!(
                    *p,
                    "dependencies" | "dev-dependencies" | "build-dependencies"
                )
            });
            in_deps = false;
            match pos {
                Some(p) if p + 1 == parts.len() => in_deps = true,
                Some(p) if p + 2 == parts.len() => {
                    table = Some((parts[p + 1].trim_matches('"').to_string(), false));
                }
                _ => {}
            }
            continue;
        }
        if let Some((_, ws)) = table.as_mut() {
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if compact == "workspace=true" {
                *ws = true;
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some(name) = key.strip_suffix(".workspace") {
            if value != "true" {
                out.push(name.to_string());
            }
        } else if !value.contains("workspace=true") {
            out.push(key.to_string());
        }
    }
    finish(&mut table, &mut out);
    out
}

/// Measurements in a text, with their 1-based line: times, throughputs,
/// ratios (`0.9x`), percentages, sizes with a decimal point or in SI units
/// (`2.3 MB`). Whole sizes in binary units (`4 MiB`, `128 KiB`) are limits
/// and parameters of the design, not measurements, and pass.
pub fn figures(text: &str) -> Vec<(usize, String)> {
    let re = Regex::new(concat!(
        r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|sec|seconds|min|minutes)\b",
        r"|\b\d+(?:\.\d+)?\s?(?:[KMGT]i?B|kB)/s\b",
        r"|\b\d+\.\d+\s?(?:[KMGT]i?B|kB|B)\b",
        r"|\b\d+\s?(?:[KMGT]B|kB)\b",
        r"|\b\d+(?:\.\d+)?\s?(?:x|×)(?:\W|$)",
        r"|\b\d+(?:\.\d+)?\s?%",
    ))
    .expect("valid regex");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for m in re.find_iter(line) {
            out.push((
                i + 1,
                m.as_str()
                    .trim_end_matches([' ', ',', '.', ')'])
                    .to_string(),
            ));
        }
    }
    out
}

/// The `title` of every JSON schema in `dir`.
fn schema_titles(dir: &Path) -> Result<Vec<String>> {
    let mut titles = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            if let Some(t) = schema_title(&text) {
                titles.push(t);
            }
        }
    }
    Ok(titles)
}

/// The value of the first `"title": "…"` of a schema.
pub fn schema_title(schema: &str) -> Option<String> {
    let re = Regex::new(r#""title"\s*:\s*"([^"]*)""#).expect("valid regex");
    re.captures(schema).map(|c| c[1].to_string())
}

/// `sik ARGS… --help`, through cargo so the binary is current.
fn sik_help(args: &[String]) -> Result<String> {
    let out = cargo()
        .args(["run", "--quiet", "-p", "sik", "--"])
        .args(args)
        .arg("--help")
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run cargo run -p sik: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "sik {} --help failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The subcommands a clap help text lists under `Commands:` (without `help`).
pub fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_cmds = false;
    for line in help.lines() {
        if line.trim_end() == "Commands:" {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !line.starts_with("  ") {
                break;
            }
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
                && !line.starts_with("   ")
            {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// Whether a clap help text lists a `--json` option.
pub fn has_json_option(help: &str) -> bool {
    let re = Regex::new(r"^\s+(?:-\w, )?--json(?:\s|=|$)").expect("valid regex");
    help.lines().any(|l| re.is_match(l))
}

/// Every command path (`"boot detect"`) whose help lists `--json`, found by
/// walking the help texts from the top; `help` gives the help of a path.
pub fn json_commands(help: &dyn Fn(&[String]) -> Result<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let text = help(&path)?;
        if !path.is_empty() && has_json_option(&text) {
            out.push(path.join(" "));
        }
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_doc_must_come_first() {
        assert!(opens_with_module_doc("//! What this is.\n\nuse x;\n"));
        assert!(opens_with_module_doc("\n//! After a blank line.\n"));
        assert!(!opens_with_module_doc("use x;\n//! Too late.\n"));
        assert!(!opens_with_module_doc("// A plain comment.\n"));
        assert!(!opens_with_module_doc("/// An item doc.\nfn f() {}\n"));
        assert!(!opens_with_module_doc(""));
    }

    #[test]
    fn unsafe_needs_a_safety_comment() {
        let ok = "// SAFETY: the fd is open.\nlet r = unsafe { f(fd) };\n";
        assert!(unsafe_without_safety(ok).is_empty());
        let ok_multi =
            "// SAFETY: the fd is open\n// and owned here.\n#[allow(x)]\nunsafe { f() }\n";
        assert!(unsafe_without_safety(ok_multi).is_empty());
        let same_line = "let r = unsafe { f() }; // SAFETY: no preconditions.\n";
        assert!(unsafe_without_safety(same_line).is_empty());
        let missing = "fn g() {\n    let r = unsafe { f() };\n}\n";
        assert_eq!(unsafe_without_safety(missing), vec![2]);
        let far = "// SAFETY: about something else.\nlet a = 1;\nunsafe { f() }\n";
        assert_eq!(unsafe_without_safety(far), vec![3]);
        let fn_docs = "/// Does it.\n///\n/// # Safety\n/// `p` is valid.\npub unsafe fn g(p: *const u8) {}\n";
        assert!(unsafe_without_safety(fn_docs).is_empty());
        let impl_missing = "unsafe impl Send for X {}\n";
        assert_eq!(unsafe_without_safety(impl_missing), vec![1]);
        let in_string = "let s = \"unsafe { is text here }\";\n";
        assert!(unsafe_without_safety(in_string).is_empty());
        let in_comment = "// an unsafe { block } in prose\n";
        assert!(unsafe_without_safety(in_comment).is_empty());
        let attr = "#[unsafe(no_mangle)]\nstatic X: u8 = 0;\n";
        assert!(unsafe_without_safety(attr).is_empty());
    }

    #[test]
    fn dependencies_must_come_from_the_workspace() {
        let m = "[package]\nname = \"x\"\nversion.workspace = true\n\n\
                 [lints]\nworkspace = true\n\n\
                 [dependencies]\nserde.workspace = true\nclap = { workspace = true, features = [\"env\"] }\n\
                 regex = \"1\"\nlocal = { path = \"../local\" }\n\n\
                 [dev-dependencies]\ntempfile = { version = \"3\" } # comment\n\n\
                 [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n\
                 [dependencies.fine]\nworkspace = true\nfeatures = [\"a\"]\n\n\
                 [build-dependencies.cc]\nversion = \"1\"\n";
        assert_eq!(
            deps_outside_workspace(m),
            vec!["regex", "local", "tempfile", "libc", "cc"]
        );
        assert!(deps_outside_workspace("[package]\nname = \"x\"\n").is_empty());
    }

    #[test]
    fn measurements_are_found_and_parameters_pass() {
        let t = "It took 185 ms of a 1.3 s create.\nThe journal is 2.3 MB; sik is 0.9x of the peer, 12 % less,\n\
                 at 450 MB/s.\nBlocks of 128 KiB, windows of 4 MiB, 16 entries, x86_64, section 3.\n";
        let f: Vec<String> = figures(t).into_iter().map(|(_, s)| s).collect();
        assert_eq!(f, ["185 ms", "1.3 s", "2.3 MB", "0.9x", "12 %", "450 MB/s"]);
        assert_eq!(figures(t)[2].0, 2);
    }

    #[test]
    fn json_commands_come_from_the_help_tree() {
        let help = |path: &[String]| -> Result<String> {
            Ok(match path.join(" ").as_str() {
                "" => "Usage: sik <COMMAND>\n\nCommands:\n  create   Create\n  status   Show\n  \
                       key      Keys\n          (continued)\n  help     Print help\n\nOptions:\n  -h, --help  Help\n"
                    .to_string(),
                "create" => "Commands:\n  extension  Ext\n  appimage   App\n  help  Help\n".to_string(),
                "create extension" => "Options:\n      --json   Print a JSON report\n".to_string(),
                "create appimage" => "Options:\n  -j, --json   Print JSON\n".to_string(),
                "status" => "Options:\n      --json-ish  no\n  -q  quiet, not --json\n".to_string(),
                "key" => "Options:\n  -h, --help\n".to_string(),
                other => return Err(format!("unexpected {other}")),
            })
        };
        assert_eq!(
            json_commands(&help).unwrap(),
            vec!["create appimage", "create extension"]
        );
        assert_eq!(
            schema_title("{\n  \"$id\": \"x\",\n  \"title\": \"sik status --json\",\n}"),
            Some("sik status --json".to_string())
        );
    }

    #[test]
    fn the_long_file_allowlist_is_explained() {
        for (path, why) in LONG_FILES {
            assert!(path.ends_with(".rs") && !why.is_empty());
        }
    }
}
