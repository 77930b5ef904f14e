//! SquashFS reading through our code paths: listing the directory tree and
//! extracting it into a fresh temp directory. Never a panic, and nothing is
//! written outside the target directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(work) = tempfile::tempdir() else {
        return;
    };
    let image = work.path().join("image");
    if std::fs::write(&image, data).is_err() {
        return;
    }
    let _ = sik_inspect::list(&image);
    let out = work.path().join("out");
    let _ = sik_inspect::extract(&image, &out, &sik_inspect::ExtractOptions::default());
    // The work directory holds exactly the image and the target directory:
    // an escaping entry would show up next to them.
    let mut names: Vec<_> = std::fs::read_dir(work.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    let allowed = ["image", "out"];
    assert!(
        names.iter().all(|n| allowed.iter().any(|a| n == *a)),
        "extraction wrote outside its target directory: {names:?}"
    );
});
