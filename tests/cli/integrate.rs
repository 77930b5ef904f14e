//! `sik integrate`: desktop entries, icons and MIME packages of AppImages in
//! a temporary XDG_DATA_HOME, checked with desktop-file-validate; removal
//! leaves the directory exactly as it was; the signature policy of --trust.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

const MIME: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="application/x-sik-hello">
    <comment>Hello document</comment>
    <glob pattern="*.sikhello"/>
  </mime-type>
</mime-info>
"#;

/// An AppImage `NAME` whose AppRun prints `hello from LABEL` and its
/// arguments, with a hicolor icon and a MIME package; signed with `key`.
fn hello_appimage(t: &TestDir, name: &str, label: &str, key: Option<&Path>) -> PathBuf {
    let dir = hello_appdir(
        t,
        &format!("{label}.AppDir"),
        &format!("#!/bin/sh\necho \"hello from {label} $*\"\n"),
        "X-AppImage-Version=1.0\nMimeType=application/x-sik-hello;\nActions=Other;\n\n[Desktop Action Other]\nName=Other\nExec=AppRun --other\n",
    );
    // Exec=AppRun %F: the arguments after the program are kept.
    let desktop = std::fs::read_to_string(dir.join("hello.desktop"))
        .unwrap()
        .replace("Exec=AppRun\n", "Exec=AppRun %F\n");
    std::fs::write(dir.join("hello.desktop"), desktop).unwrap();
    t.write(
        &format!("{label}.AppDir/usr/share/icons/hicolor/48x48/apps/hello.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
    );
    t.write(
        &format!("{label}.AppDir/usr/share/mime/packages/hello.xml"),
        MIME,
    );
    let out = t.join(name);
    let mut c = sik();
    c.args(["create", "appimage", "-q"])
        .arg(&dir)
        .arg("-o")
        .arg(&out);
    if let Some(k) = key {
        c.arg("--sign").arg(k);
    }
    run_ok(&mut c);
    out
}

/// Path → SHA-256 of content (or the link target, or `dir`) of everything
/// below `dir`, with modes.
fn listing(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .map(|e| {
            let md = e.path().symlink_metadata().unwrap();
            let what = if md.is_file() {
                format!(
                    "{:x}",
                    sha2::Sha256::digest(std::fs::read(e.path()).unwrap())
                )
            } else if md.is_symlink() {
                std::fs::read_link(e.path()).unwrap().display().to_string()
            } else {
                "dir".into()
            };
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                format!("{what} {:o}", md.permissions().mode()),
            )
        })
        .collect()
}

fn integrate(data: &Path) -> std::process::Command {
    let mut c = sik();
    c.arg("integrate").env("XDG_DATA_HOME", data);
    c
}

#[test]
fn entries_validate_run_the_appimage_and_removal_leaves_no_trace() {
    if !require_tool("desktop-file-validate") {
        return;
    }
    let t = TestDir::new();
    let (key, _) = sik_key(&t, "signer");
    let signed = hello_appimage(&t, "My App.AppImage", "Signed", Some(&key));
    let unsigned = hello_appimage(&t, "plain.AppImage", "Plain", None);
    // A data directory already in use: another program's entry and icon.
    let data = t.mkdir("data");
    t.write(
        "data/applications/other.desktop",
        "[Desktop Entry]\nType=Application\nName=Other\nExec=other\n",
    );
    t.write("data/icons/hicolor/48x48/apps/other.png", "png");
    let before = listing(&data);

    let out = run_ok(integrate(&data).arg(&signed).arg(&unsigned));
    assert!(
        out.contains("untrusted, signed by SHA256:") && out.contains("(signer@test)"),
        "{out}"
    );
    let after = listing(&data);
    let entries: Vec<PathBuf> = std::fs::read_dir(data.join("applications"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("sik-"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        let o = run(cmd("desktop-file-validate").arg(e));
        assert!(
            o.status.success() && o.stdout.is_empty(),
            "{}: {}{}",
            e.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let text = |p: &Path| std::fs::read_to_string(p).unwrap();
    let signed_entry = entries
        .iter()
        .find(|e| text(e).contains("My App"))
        .expect("entry of the signed AppImage");
    let st = text(signed_entry);
    // Exec runs the AppImage where it lies, quoted for the space, with the
    // AppImage's own arguments; no Desktop Action of the AppDir survives.
    assert!(
        st.contains(&format!("\nExec=\"{}\" %F\n", signed.display())),
        "{st}"
    );
    assert!(st.contains("\nX-AppImage-Version=1.0\n"), "{st}");
    assert!(st.contains("\nX-SIK-Signature=untrusted\n"), "{st}");
    assert!(st.contains("\nX-SIK-Signer=SHA256:"), "{st}");
    assert!(st.contains("\nX-SIK-Signer-Comment=signer@test\n"), "{st}");
    assert!(
        !st.contains("Desktop Action") && !st.contains("Actions="),
        "{st}"
    );
    let icon = st
        .lines()
        .find_map(|l| l.strip_prefix("Icon="))
        .unwrap()
        .to_string();
    assert!(icon.starts_with("sik-"), "{icon}");
    assert!(
        data.join(format!("icons/hicolor/48x48/apps/{icon}.svg"))
            .is_file()
    );
    let mimes = std::fs::read_dir(data.join("mime/packages"))
        .unwrap()
        .count();
    assert_eq!(mimes, 2);
    if have_tool("update-mime-database") {
        assert!(data.join("mime/mime.cache").is_file());
    }
    let o = run(cmd(&signed)
        .arg("file.sikhello")
        .env("APPIMAGE_EXTRACT_AND_RUN", "1")
        .env("XDG_CACHE_HOME", t.join("cache"))
        .env("TMPDIR", t.path()));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from Signed file.sikhello"),
        "{o:?}"
    );

    // Again: nothing changes.
    let out = run_ok(integrate(&data).arg(&signed).arg(&unsigned));
    assert_eq!(out.matches("unchanged:").count(), 2, "{out}");
    assert_eq!(listing(&data), after);

    // --list, as JSON too.
    let out = run_ok(integrate(&data).arg("--list"));
    assert!(
        out.contains("Hello World 1.0") && out.contains(&signed.display().to_string()),
        "{out}"
    );
    let doc = assert_schema(
        "integrate",
        &run_ok(integrate(&data).args(["--list", "--json"])),
    );
    let listed = doc["entries"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|e| e["signature"] == "unsigned" && e["fingerprint"].is_null())
    );
    assert!(listed.iter().all(|e| e["present"] == true));

    // --remove of both: the directory is as before, byte for byte.
    let doc = assert_schema(
        "integrate",
        &run_ok(
            integrate(&data)
                .args(["--remove", "--json"])
                .arg(&signed)
                .arg(&unsigned),
        ),
    );
    assert_eq!(doc["removed"][0]["files"].as_array().unwrap().len(), 3);
    assert_eq!(listing(&data), before);
    // Removing again finds nothing and is no error.
    let out = run_ok(integrate(&data).arg("--remove").arg(&signed));
    assert!(out.contains("not integrated"), "{out}");
}

#[test]
fn trust_in_force_integrates_only_signed_and_sync_drops_the_rest() {
    let t = TestDir::new();
    let (key, public) = sik_key(&t, "signer");
    let (other, _) = sik_key(&t, "other");
    let signed = hello_appimage(&t, "Signed.AppImage", "Signed", Some(&key));
    let foreign = hello_appimage(&t, "Foreign.AppImage", "Foreign", Some(&other));
    let unsigned = hello_appimage(&t, "Plain.AppImage", "Plain", None);
    let data = t.join("share");
    // Without keys in force everything is integrated (and recorded).
    run_ok(integrate(&data).arg(&unsigned));

    let o = run(integrate(&data)
        .arg("--trust")
        .arg(&public)
        .args(["--sync", "--json"])
        .arg(&signed)
        .arg(&foreign)
        .arg(&unsigned));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let doc = assert_schema("integrate", &String::from_utf8_lossy(&o.stdout));
    assert_eq!(doc["integrated"].as_array().unwrap().len(), 1);
    let s = &doc["integrated"][0]["signer"];
    assert_eq!(s["status"], "trusted");
    assert_eq!(s["comment"], "signer@test");
    let refused: Vec<String> = doc["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("not signed by a trusted key") && r.contains("unsigned"))
    );
    // --sync removed the earlier entry of the now refused unsigned one.
    assert_eq!(doc["removed"].as_array().unwrap().len(), 1);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("Foreign.AppImage") && stderr.contains("Plain.AppImage"),
        "{stderr}"
    );
    let names: Vec<String> = std::fs::read_dir(data.join("applications"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let e = std::fs::read_to_string(data.join("applications").join(&names[0])).unwrap();
    assert!(
        e.contains("X-SIK-Signature=trusted") && e.contains(&signed.display().to_string()),
        "{e}"
    );
}

#[test]
fn bad_input_is_one_error_and_writes_nothing() {
    let t = TestDir::new();
    let data = t.join("share");
    let notimg = t.write("x.AppImage", "not an AppImage at all");
    let o = run(integrate(&data).arg(&notimg));
    assert_fails(
        &o,
        2,
        &["not integrated", "x.AppImage", "not a type 2 AppImage"],
    );
    let o = run(integrate(&data).arg(t.join("missing.AppImage")));
    assert_fails(&o, 2, &["missing.AppImage"]);
    assert!(!data.exists());
    // An AppImage without a desktop file.
    let dir = t.mkdir("Bare");
    std::fs::write(dir.join("AppRun"), "#!/bin/sh\n").unwrap();
    let img = t.join("bare.AppImage");
    let mut bytes = sik_appimage_runtime_of(&t);
    let sq = t.join("bare.sqfs");
    run_ok(
        sik()
            .args(["create", "extension", "-q", "--no-verity"])
            .arg(&dir)
            .arg("-o")
            .arg(&sq),
    );
    bytes.extend(std::fs::read(&sq).unwrap());
    std::fs::write(&img, bytes).unwrap();
    let o = run(integrate(&data).arg(&img));
    assert_fails(&o, 2, &["bare.AppImage", "no desktop file"]);
    assert!(!data.exists());
}

/// The runtime bytes of an AppImage made by sik (up to its payload offset).
fn sik_appimage_runtime_of(t: &TestDir) -> Vec<u8> {
    let img = hello_appimage(t, "rt.AppImage", "Rt", None);
    let off: usize = run_ok(cmd(&img).arg("--appimage-offset"))
        .trim()
        .parse()
        .unwrap();
    std::fs::read(&img).unwrap()[..off].to_vec()
}
