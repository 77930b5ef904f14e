//! Triggers (`spec/link-state.md`, Triggers): the system caches that must
//! learn about linked content — the dynamic linker's cache, the kernel
//! modules' dependency lists, font, icon, MIME and GSettings caches, the
//! service manager's unit list — found from the paths an extension linked
//! (its journal) and refreshed by running the root's own tool inside ROOT,
//! once per link or unlink run for all extensions that need it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use sik_image::release::ReleaseFields;

use crate::journal::Record;
use crate::run::{enter_root, state_bind, wait_timeout};
use crate::state::{Env, lossy};

/// The extension-release key with which an extension chooses its triggers:
/// `none`, or the names of those allowed (space- or comma-separated).
pub const TRIGGERS_KEY: &str = "SIK_TRIGGERS";

/// Time allowed to one trigger command.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the tools are looked for inside ROOT (and the `PATH` they run with).
const TOOL_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A kind of trigger, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// `ldconfig`: shared libraries in library directories, `ld.so.conf` changes.
    Ldconfig,
    /// `depmod -a KVER`: kernel modules under `lib/modules/KVER`.
    Depmod,
    /// `fc-cache`: fonts.
    FcCache,
    /// `gtk-update-icon-cache`: an icon theme.
    GtkUpdateIconCache,
    /// `update-mime-database`: shared MIME-info packages.
    UpdateMimeDatabase,
    /// `glib-compile-schemas`: GSettings schemas.
    GlibCompileSchemas,
    /// `systemctl daemon-reload`: systemd units, when systemd runs ROOT.
    SystemdDaemonReload,
}

impl TriggerKind {
    /// Every kind, in running order.
    pub const ALL: [TriggerKind; 7] = [
        TriggerKind::Ldconfig,
        TriggerKind::Depmod,
        TriggerKind::FcCache,
        TriggerKind::GtkUpdateIconCache,
        TriggerKind::UpdateMimeDatabase,
        TriggerKind::GlibCompileSchemas,
        TriggerKind::SystemdDaemonReload,
    ];

    /// The name used in `SIK_TRIGGERS` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Ldconfig => "ldconfig",
            TriggerKind::Depmod => "depmod",
            TriggerKind::FcCache => "fc-cache",
            TriggerKind::GtkUpdateIconCache => "gtk-update-icon-cache",
            TriggerKind::UpdateMimeDatabase => "update-mime-database",
            TriggerKind::GlibCompileSchemas => "glib-compile-schemas",
            TriggerKind::SystemdDaemonReload => "systemd-daemon-reload",
        }
    }

    fn from_name(s: &str) -> Option<TriggerKind> {
        TriggerKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One trigger linked content needs: its kind and its argument (the kernel
/// version for `depmod`, the directory, as seen inside ROOT, for the icon,
/// MIME and schema caches; empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Trigger {
    /// Which tool.
    pub kind: TriggerKind,
    /// Its argument.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arg: String,
}

/// How a trigger went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerOutcome {
    /// It ran and exited 0.
    Ran,
    /// It ran and failed (exit status, signal, timeout), or could not start.
    Failed,
    /// The tool is not installed in ROOT.
    Missing,
    /// Not run, for the reason in `detail` (the extension opted out, the
    /// directory it would write into is one the linker made, systemd does
    /// not run ROOT).
    Skipped,
}

/// One trigger of a link or unlink run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRun {
    /// What was needed.
    pub trigger: Trigger,
    /// The command as run inside ROOT (empty when not run).
    pub command: Vec<String>,
    /// How it went.
    pub outcome: TriggerOutcome,
    /// One line: why it failed, was skipped or is missing (empty when it ran).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The extensions whose content needed it.
    pub extensions: Vec<String>,
}

/// Which trigger kinds an extension-release allows (`SIK_TRIGGERS`): all
/// when the key is absent or `auto`.
pub(crate) fn allowed(release: Option<&ReleaseFields>) -> BTreeSet<TriggerKind> {
    let Some(v) = release.and_then(|r| r.get(TRIGGERS_KEY)) else {
        return TriggerKind::ALL.into_iter().collect();
    };
    let v = v.trim();
    if v.is_empty() || v == "auto" {
        return TriggerKind::ALL.into_iter().collect();
    }
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(TriggerKind::from_name)
        .collect()
}

/// Whether `dir` (a path in ROOT, no leading `/`) is a directory ldconfig
/// scans without any configuration: `lib`, `lib32`, `lib64`, `libx32`
/// below `/`, `/usr` and `/usr/local`, and their multiarch directories
/// (`lib/x86_64-linux-gnu`).
fn library_dir(dir: &[u8]) -> bool {
    let rest = dir
        .strip_prefix(b"usr/local/")
        .or_else(|| dir.strip_prefix(b"usr/"))
        .unwrap_or(dir);
    let mut parts = rest.split(|&b| b == b'/');
    let first = parts.next().unwrap_or_default();
    if !matches!(first, b"lib" | b"lib32" | b"lib64" | b"libx32") {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(triplet), None) => first == b"lib" && triplet.windows(7).any(|w| w == b"-linux-"),
        _ => false,
    }
}

/// Whether a file name is a shared library's (`*.so`, `*.so.*`).
fn shared_library(name: &[u8]) -> bool {
    name.ends_with(b".so") || name.windows(4).any(|w| w == b".so.")
}

/// The triggers the linked paths of one extension need (from its journal's
/// symlink records; paths as resolved in ROOT), each with why it is not to
/// be run, if so. `made`: the directories of ROOT the linker created (a
/// cache is never written into one, so that unlink can remove it);
/// `allowed`: the kinds the extension allows; `systemd`: whether systemd
/// runs ROOT.
pub(crate) fn needs(
    recs: &[Record],
    made: &HashSet<Vec<u8>>,
    allowed: &BTreeSet<TriggerKind>,
    systemd: bool,
) -> BTreeMap<Trigger, Option<String>> {
    let mut out = BTreeMap::new();
    let mut add = |kind: TriggerKind, arg: &[u8], dir: Option<&[u8]>| {
        let t = Trigger {
            kind,
            arg: lossy(arg),
        };
        let why = if !allowed.contains(&kind) {
            Some(format!("the extension's {TRIGGERS_KEY} leaves it out"))
        } else if let Some(d) = dir.filter(|d| made.contains(*d)) {
            Some(format!(
                "/{} was made by sik link, so nothing is written into it",
                lossy(d)
            ))
        } else if kind == TriggerKind::SystemdDaemonReload && !systemd {
            Some("systemd does not run ROOT".into())
        } else {
            None
        };
        // A reason to run it wins over a reason not to.
        let e = out.entry(t).or_insert_with(|| why.clone());
        if why.is_none() {
            *e = None;
        }
    };
    for r in recs {
        let Record::Link(p, _) = r else { continue };
        let (dir, name) = match p.iter().rposition(|&b| b == b'/') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (&b""[..], &p[..]),
        };
        if (library_dir(dir) && shared_library(name))
            || dir == b"etc/ld.so.conf.d"
            || p == b"etc/ld.so.conf"
        {
            add(TriggerKind::Ldconfig, b"", None);
        }
        let modules = p
            .strip_prefix(b"usr/lib/modules/")
            .map(|r| (r, 16))
            .or_else(|| p.strip_prefix(b"lib/modules/").map(|r| (r, 12)));
        if let Some((rest, at)) = modules
            && let Some(i) = rest.iter().position(|&b| b == b'/')
            && [&b".ko"[..], b".ko.xz", b".ko.zst", b".ko.gz"]
                .iter()
                .any(|s| name.ends_with(s))
        {
            add(TriggerKind::Depmod, &rest[..i], Some(&p[..at + i]));
        }
        for fonts in [
            &b"usr/share/fonts/"[..],
            b"usr/local/share/fonts/",
            b"etc/fonts/",
        ] {
            if p.starts_with(fonts) {
                add(TriggerKind::FcCache, b"", None);
            }
        }
        if let Some(rest) = p.strip_prefix(b"usr/share/icons/")
            && let Some(i) = rest.iter().position(|&b| b == b'/')
        {
            let theme = &p[..16 + i];
            let mut arg = b"/".to_vec();
            arg.extend_from_slice(theme);
            add(TriggerKind::GtkUpdateIconCache, &arg, Some(theme));
        }
        if dir == b"usr/share/mime/packages" && name.ends_with(b".xml") {
            add(
                TriggerKind::UpdateMimeDatabase,
                b"/usr/share/mime",
                Some(b"usr/share/mime"),
            );
        }
        if dir == b"usr/share/glib-2.0/schemas"
            && (name.ends_with(b".xml") || name.ends_with(b".override"))
        {
            add(
                TriggerKind::GlibCompileSchemas,
                b"/usr/share/glib-2.0/schemas",
                Some(dir),
            );
        }
        for units in [
            &b"usr/lib/systemd/system/"[..],
            b"lib/systemd/system/",
            b"etc/systemd/system/",
            b"usr/lib/systemd/user/",
            b"etc/systemd/user/",
        ] {
            if p.starts_with(units) {
                add(TriggerKind::SystemdDaemonReload, b"", None);
            }
        }
    }
    out
}

/// The needs of several extensions, one entry per trigger: it runs when
/// any of them needs it run (and then names those), else it is skipped
/// for the first one's reason (naming them all).
pub(crate) fn merge(
    wanted: Vec<(String, BTreeMap<Trigger, Option<String>>)>,
) -> BTreeMap<Trigger, (Vec<String>, Option<String>)> {
    let mut by: BTreeMap<Trigger, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (name, needs) in wanted {
        for (t, why) in needs {
            by.entry(t).or_default().push((name.clone(), why));
        }
    }
    by.into_iter()
        .map(|(t, v)| {
            let run: Vec<String> = v
                .iter()
                .filter(|(_, w)| w.is_none())
                .map(|(n, _)| n.clone())
                .collect();
            if run.is_empty() {
                let why = v[0].1.clone();
                (t, (v.into_iter().map(|(n, _)| n).collect(), why))
            } else {
                (t, (run, None))
            }
        })
        .collect()
}

/// The triggers of a link run: what the content of every extension this
/// run linked (or completed) needs, each run once, recorded in the
/// report and in each of those extensions' `state.json`.
pub(crate) fn run_for_link(env: &Env, report: &mut crate::report::LinkReport) {
    let due: Vec<usize> = (0..report.linked.len())
        .filter(|&i| report.linked[i].triggers_due)
        .collect();
    if due.is_empty() {
        return;
    }
    let made = crate::link::linker_dirs(env);
    let systemd = systemd_runs(env);
    let mut wanted: Vec<(String, BTreeMap<Trigger, Option<String>>)> = Vec::new();
    for &i in &due {
        let name = report.linked[i].state.name.clone();
        let sdir = env.state.join(&name);
        let recs =
            crate::journal::read(&sdir.join("journal"), &env.content(&name)).unwrap_or_default();
        let release = crate::state::content_release(&sdir.join("mnt"), &name);
        let allowed = allowed(release.as_ref());
        wanted.push((name, needs(&recs, &made, &allowed, systemd)));
    }
    report.triggers = run_all(env, merge(wanted));
    for &i in &due {
        let l = &mut report.linked[i];
        l.state.triggers = report
            .triggers
            .iter()
            .filter(|r| r.extensions.contains(&l.state.name))
            .cloned()
            .collect();
        if let Ok(doc) = serde_json::to_vec_pretty(&l.state) {
            let _ =
                crate::state::atomic_write(&env.state.join(&l.state.name).join("state.json"), &doc);
        }
    }
}

/// Whether systemd runs ROOT: only ROOT `/` can be, when
/// `/run/systemd/system` exists (`sd_booted`).
pub(crate) fn systemd_runs(env: &Env) -> bool {
    env.root_path == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

/// The command line of a trigger.
fn command(t: &Trigger) -> Vec<String> {
    let v: Vec<&str> = match t.kind {
        TriggerKind::Ldconfig => vec!["ldconfig"],
        TriggerKind::Depmod => vec!["depmod", "-a", &t.arg],
        TriggerKind::FcCache => vec!["fc-cache"],
        TriggerKind::GtkUpdateIconCache => vec!["gtk-update-icon-cache", "-q", "-t", "-f", &t.arg],
        TriggerKind::UpdateMimeDatabase => vec!["update-mime-database", &t.arg],
        TriggerKind::GlibCompileSchemas => vec!["glib-compile-schemas", &t.arg],
        TriggerKind::SystemdDaemonReload => vec!["systemctl", "daemon-reload"],
    };
    v.into_iter().map(str::to_string).collect()
}

/// The tool `name` inside ROOT: its path as seen there.
fn find_tool(env: &Env, name: &str) -> Option<String> {
    TOOL_PATH.iter().find_map(|d| {
        let inside = format!("{d}/{name}");
        let host = env.root_path.join(inside.trim_start_matches('/'));
        std::fs::symlink_metadata(&host).is_ok().then_some(inside)
    })
}

/// Run every needed trigger once, in kind order: `needed` maps each
/// trigger to the extensions that need it and to why it is not to be run,
/// if so.
pub(crate) fn run_all(
    env: &Env,
    needed: BTreeMap<Trigger, (Vec<String>, Option<String>)>,
) -> Vec<TriggerRun> {
    needed
        .into_iter()
        .map(|(trigger, (extensions, skip))| {
            let mut run = TriggerRun {
                command: Vec::new(),
                outcome: TriggerOutcome::Skipped,
                detail: String::new(),
                extensions,
                trigger,
            };
            if let Some(why) = skip {
                run.detail = why;
                return run;
            }
            let argv = command(&run.trigger);
            let Some(tool) = find_tool(env, &argv[0]) else {
                run.outcome = TriggerOutcome::Missing;
                run.detail = format!("{} is not installed in ROOT", argv[0]);
                return run;
            };
            run.command = argv.clone();
            match run_one(env, &tool, &argv[1..]) {
                Ok(()) => run.outcome = TriggerOutcome::Ran,
                Err(why) => {
                    run.outcome = TriggerOutcome::Failed;
                    run.detail = why;
                }
            }
            run
        })
        .collect()
}

/// Run `tool` with `args` inside ROOT; `Err` says in one line how it failed.
fn run_one(env: &Env, tool: &str, args: &[String]) -> Result<(), String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let bind = state_bind(env)?;
    let mut cmd = std::process::Command::new(tool);
    cmd.args(args)
        .env_clear()
        .env("PATH", TOOL_PATH.join(":"))
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .current_dir("/")
        .process_group(0);
    enter_root(env, &mut cmd, bind)?;
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    // The error output is read on the side, so a talkative tool never
    // blocks on a full pipe; its first line explains a failure.
    let reader = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(64 * 1024).read_to_end(&mut buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            buf
        })
    });
    let (status, timed_out, error) = wait_timeout(&mut child, TRIGGER_TIMEOUT);
    let stderr = reader
        .and_then(|r| r.join().ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        })
        .unwrap_or_default();
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    if let Some(e) = error {
        return Err(e);
    }
    if timed_out {
        return Err(format!(
            "killed after {} s{said}",
            TRIGGER_TIMEOUT.as_secs()
        ));
    }
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit status {c}{said}"),
            (None, Some(sig)) => format!("killed by signal {sig}{said}"),
            _ => format!("failed{said}"),
        }),
        None => Err("lost track of the process".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(p: &str) -> Record {
        Record::Link(p.as_bytes().to_vec(), b"/x".to_vec())
    }

    fn kinds(recs: &[Record], made: &[&str]) -> Vec<(TriggerKind, String, bool)> {
        let made = made.iter().map(|m| m.as_bytes().to_vec()).collect();
        let all = TriggerKind::ALL.into_iter().collect();
        needs(recs, &made, &all, false)
            .into_iter()
            .map(|(t, why)| (t.kind, t.arg, why.is_none()))
            .collect()
    }

    #[test]
    fn what_content_needs() {
        let recs = [
            link("usr/lib/x86_64-linux-gnu/libogg.so.0.8.5"),
            link("usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstogg.so"),
            link("usr/share/doc/libogg0/copyright"),
        ];
        assert_eq!(
            kinds(&recs, &[]),
            [(TriggerKind::Ldconfig, String::new(), true)]
        );
        // A plugin directory is not one ldconfig scans.
        assert!(kinds(&recs[1..], &[]).is_empty());
        assert_eq!(
            kinds(&[link("usr/local/lib/libx.so.1")], &[]).len(),
            1,
            "usr/local/lib"
        );
        let m = [link(
            "usr/lib/modules/6.1.0-50-cloud-amd64/extra/acme.ko.xz",
        )];
        assert_eq!(
            kinds(&m, &[]),
            [(TriggerKind::Depmod, "6.1.0-50-cloud-amd64".into(), true)]
        );
        // A kernel directory the linker made is no installed kernel.
        assert_eq!(
            kinds(&m, &["usr/lib/modules/6.1.0-50-cloud-amd64"]),
            [(TriggerKind::Depmod, "6.1.0-50-cloud-amd64".into(), false)]
        );
        let other = [
            link("usr/share/fonts/truetype/x/x.ttf"),
            link("usr/share/icons/hicolor/48x48/apps/x.png"),
            link("usr/share/mime/packages/x.xml"),
            link("usr/share/glib-2.0/schemas/org.x.gschema.xml"),
            link("usr/lib/systemd/system/x.service"),
        ];
        let got = kinds(&other, &[]);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[1].1, "/usr/share/icons/hicolor");
        assert!(!got[4].2, "no systemd running: daemon-reload skipped");
    }

    #[test]
    fn opt_out() {
        let r = ReleaseFields::parse("ID=_any\nSIK_TRIGGERS=none\n");
        assert!(allowed(Some(&r)).is_empty());
        let r = ReleaseFields::parse("ID=_any\nSIK_TRIGGERS=ldconfig, depmod\n");
        assert_eq!(allowed(Some(&r)).len(), 2);
        assert_eq!(allowed(None).len(), 7);
    }
}
