//! Peak memory of the read paths does not grow with the image: `sik
//! extract` and `sik inspect --list` of a generated image with ten times
//! more files stay within a fixed margin of the small one.
//!
//! Peak memory is the child's `ru_maxrss` as `wait4` reports it, read
//! through GNU time (`/usr/bin/time -f %M`, in KiB): only that one process,
//! not the other tests' children. The margin is generous, a regression
//! check and not a measurement; no time is asserted.

use std::path::Path;

use crate::util::*;

/// Files of the small image; the large one has ten times more.
const SMALL: usize = 10_000;
/// How much more (KiB) the large image may cost than the small one: the
/// large one holds about 200 MB of small-file data and 100 000 entries.
const MARGIN_KIB: u64 = 16 * 1024;

/// A tar archive of `n` small files (1.5–2.5 KiB of distinct text each, so
/// their tails fill many fragment blocks), 100 files per directory. An
/// archive, not a directory: a hundred thousand files are written once, as
/// one stream.
fn archive(path: &Path, n: usize) {
    let mut b = tar::Builder::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    };
    for i in 0..n {
        if i % 100 == 0 {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, format!("d{:04}/", i / 100), std::io::empty())
                .unwrap();
        }
        let len = 1536 + (i * 7919) % 1024;
        let mut body = format!("file {i}\n").into_bytes();
        let mut x = i as u64 ^ 0x9e37_79b9;
        while body.len() < len {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            body.extend_from_slice(format!("{:x} ", x >> 40).as_bytes());
        }
        body.truncate(len);
        let mut h = header(tar::EntryType::Regular, 0o644, len as u64);
        b.append_data(
            &mut h,
            format!("d{:04}/f{i:06}.txt", i / 100),
            body.as_slice(),
        )
        .unwrap();
    }
    b.into_inner().unwrap();
}

/// Peak RSS in KiB of `sik ARGS`, which must succeed.
fn peak_kib(args: &[&std::ffi::OsStr]) -> u64 {
    let out = cmd("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(sik_bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sik {args:?} failed: {err}");
    err.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {err}"))
}

/// (extract, list) peak RSS for an image of `n` files, extracted under `out_base`.
fn measure(t: &TestDir, out_base: &Path, n: usize) -> (u64, u64) {
    let src = t.join(format!("src-{n}.tar"));
    archive(&src, n);
    let image = t.join(format!("x-{n}.ExtensionImage"));
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(&src)
            .arg("-o")
            .arg(&image),
    );
    std::fs::remove_file(&src).unwrap();
    let out = out_base.join(format!("out-{n}"));
    let extract = peak_kib(&[
        "extract".as_ref(),
        "-q".as_ref(),
        image.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(
        std::fs::read_dir(out.join("d0000")).unwrap().count(),
        100,
        "the extracted tree is incomplete"
    );
    std::fs::remove_dir_all(&out).unwrap();
    let list = peak_kib(&["inspect".as_ref(), "--list".as_ref(), image.as_os_str()]);
    (extract, list)
}

#[test]
fn extract_and_list_memory_does_not_grow_with_the_image() {
    if !require_tool("time") {
        return;
    }
    let t = TestDir::new();
    // The trees go to a tmpfs when there is one (/dev/shm): creating a
    // hundred thousand files on a shared disk is slow and says nothing here.
    let shm = tempfile::Builder::new()
        .prefix("sik-test-memory-")
        .tempdir_in("/dev/shm")
        .ok();
    let out_base = shm.as_ref().map_or(t.path(), |d| d.path());
    let (extract_small, list_small) = measure(&t, out_base, SMALL);
    let (extract_large, list_large) = measure(&t, out_base, SMALL * 10);
    eprintln!(
        "peak KiB: extract {extract_small} -> {extract_large}, list {list_small} -> {list_large}"
    );
    assert!(
        extract_large <= extract_small + MARGIN_KIB,
        "sik extract: {extract_small} KiB for {SMALL} files, {extract_large} KiB for ten times more"
    );
    assert!(
        list_large <= list_small + MARGIN_KIB,
        "sik inspect --list: {list_small} KiB for {SMALL} files, {list_large} KiB for ten times more"
    );
}
