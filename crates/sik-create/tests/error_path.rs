//! Regression test of the fuzzing finding in FUZZING.md: a create that fails
//! after the SquashFS writer started its compression threads (here a gzip
//! magic followed by garbage, the `tar_source` input) must join those
//! threads before returning, and leave no output behind.
//!
//! This file holds one test only, so the thread count of the process is not
//! disturbed by other tests running in parallel.

use std::path::Path;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn failed_create_joins_its_compression_threads() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::write(
        &source,
        [0x1f, 0x8b, 0x75, 0x4b, 0x1c, 0x75, 0x4b, 0x1c, 0x00],
    )
    .unwrap();
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let before = threads();
    for n in [1, 2, 4] {
        let mut opts =
            sik_create::ExtensionOptions::new(source.clone(), out_dir.join("x.ExtensionImage"));
        opts.threads = n;
        opts.source_date_epoch = Some(0);
        let r = sik_create::create_extension(&opts, &sik_create::NoProgress);
        assert!(r.is_err(), "a corrupt gzip stream is refused");
        assert_eq!(
            threads(),
            before,
            "create with {n} threads returned with compression threads still running"
        );
        assert!(empty(&out_dir), "a failed create left output");
    }
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}
