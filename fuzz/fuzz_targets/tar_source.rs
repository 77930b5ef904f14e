//! Tar archives (plain or compressed), Debian, RPM and Arch packages (all
//! recognised by content) as the source of
//! `create_extension`: Ok or Err, never a panic, never a write outside the
//! output directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(work) = tempfile::tempdir() else {
        return;
    };
    let source = work.path().join("source");
    if std::fs::write(&source, data).is_err() {
        return;
    }
    let out_dir = work.path().join("out");
    if std::fs::create_dir(&out_dir).is_err() {
        return;
    }
    let mut opts = sik_create::ExtensionOptions::new(source, out_dir.join("fuzz.ExtensionImage"));
    opts.threads = 1;
    opts.source_date_epoch = Some(0);
    let _ = sik_create::create_extension(&opts, &sik_create::NoProgress);
    let mut names: Vec<_> = std::fs::read_dir(work.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    let allowed = ["out", "source"];
    assert!(
        names.iter().all(|n| allowed.iter().any(|a| n == *a)),
        "create wrote outside its output directory: {names:?}"
    );
});
