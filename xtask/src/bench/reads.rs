//! The read paths at scale: `sik extract`, `sik inspect --list`, `sik
//! verify` and `sik link` + `unlink` of one image, each alternating with its
//! peer (`unsquashfs -d`, `unsquashfs -lln`, `openssl dgst -sha256`, `cp -rs`
//! of the mounted image + `rm -rf`), wall time and peak memory.
//!
//! [`rows`] is called by the `scale` benchmark for every generated size and
//! for an image of a real distribution root (`/usr` of this machine).

use std::path::Path;

use super::report::Row;
use super::{Ab, ab, argv, no_reset, s, sh, sh_argv};
use crate::Result;

/// The `peak memory` cell in MiB.
fn memory(r: &Ab) -> (String, String) {
    let (a, b) = r.rss();
    (
        "peak memory".into(),
        format!(
            "{:.0} vs {:.0} MiB, ratio {:.2}",
            a / 1024.0,
            b / 1024.0,
            a / b
        ),
    )
}

/// The image the read paths are measured on.
pub struct Subject<'a> {
    /// The image (made by `sik create extension`).
    pub image: &'a Path,
    /// What it holds, for the row names.
    pub what: &'a str,
    /// The id suffix (`100MB`, `usr` …).
    pub label: &'a str,
    /// Bytes of the tree in it.
    pub bytes: u64,
}

/// Rows for the subject, measured under the work directory `tmp`.
pub fn rows(
    sik: &Path,
    subject: &Subject<'_>,
    tmp: &Path,
    runs: usize,
    quick: bool,
) -> Result<Vec<Row>> {
    let Subject {
        image,
        what,
        label,
        bytes,
    } = *subject;
    let sik = s(sik);
    let img = s(image);
    let t = s(tmp);
    let mut rows = Vec::new();
    sh(&format!("cat '{img}' > /dev/null"))?;

    // extract, into a tmpfs (see bench_extract for why).
    let mnt = format!("{t}/extract-mnt");
    let tmpfs = (bytes * 5 / 4 + (1 << 30)) >> 20;
    sh(&format!(
        "mkdir -p '{mnt}' && mount -t tmpfs -o size={tmpfs}M sik-bench '{mnt}'"
    ))?;
    let ours = argv(&[&sik, "extract", "-q", &img, "-o", &format!("{mnt}/a")]);
    let peer = sh_argv(format!("unsquashfs -q -n -d '{mnt}/b' '{img}' >/dev/null"));
    let result = ab(
        &format!("scale extract {label}"),
        runs,
        &ours,
        &peer,
        |_| sh(&format!("rm -rf '{mnt}/a' '{mnt}/b'")),
    );
    let _ = sh(&format!("umount '{mnt}'"));
    let r = result?;
    rows.push(r.row(
        &format!("scale-extract-{label}"),
        quick,
        format!("extract at scale: {what}; into a tmpfs, image in page cache, the previous tree removed before each run (untimed), {runs} runs each"),
        ("sik extract", "unsquashfs -d"),
        vec![memory(&r)],
    ));

    // list
    let ours = argv(&[&sik, "inspect", "--list", &img]);
    let peer = argv(&["unsquashfs", "-lln", &img]);
    let r = ab(&format!("scale list {label}"), runs, &ours, &peer, no_reset)?;
    rows.push(r.row(
        &format!("scale-list-{label}"),
        quick,
        format!("list at scale: {what}; output to /dev/null, {runs} runs each"),
        ("sik inspect --list", "unsquashfs -lln"),
        vec![memory(&r)],
    ));

    // verify, of a signed copy
    let signed = format!("{t}/signed.ExtensionImage");
    sh(&format!(
        "cp '{img}' '{signed}' && rm -f '{t}/key' '{t}/key.pub' && '{sik}' key generate -o '{t}/key' --comment bench >/dev/null && '{sik}' sign '{signed}' --key '{t}/key' && cat '{signed}' > /dev/null"
    ))?;
    let ours = argv(&[&sik, "verify", &signed, "--trust", &format!("{t}/key.pub")]);
    let peer = argv(&["openssl", "dgst", "-sha256", &signed]);
    let r = ab(
        &format!("scale verify {label}"),
        runs,
        &ours,
        &peer,
        no_reset,
    );
    let _ = std::fs::remove_file(&signed);
    let r = r?;
    let len = std::fs::metadata(image).map(|m| m.len()).unwrap_or(0);
    rows.push(r.row(
        &format!("scale-verify-{label}"),
        quick,
        format!(
            "verify at scale: the signed image of {what} ({} MiB), page cache warm, {runs} runs each",
            len >> 20
        ),
        ("sik verify", "openssl dgst -sha256"),
        vec![memory(&r)],
    ));

    // link + unlink against cp -rs of the mounted image + rm -rf
    let lmnt = format!("{t}/link-mnt");
    sh(&format!(
        "mkdir -p '{lmnt}' && mount -o loop,ro '{img}' '{lmnt}'"
    ))?;
    let name = image
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ours = sh_argv(format!(
        "rm -rf '{t}/root' && mkdir -p '{t}/root' && '{sik}' link -q '{img}' --root '{t}/root' --allow-unsigned --ignore-compat && '{sik}' unlink -q '{name}' --root '{t}/root'"
    ));
    let peer = sh_argv(format!(
        "rm -rf '{t}/root2' && mkdir -p '{t}/root2' && cp -rs '{lmnt}/.' '{t}/root2/' && rm -rf '{t}/root2'"
    ));
    let result = ab(&format!("scale link {label}"), runs, &ours, &peer, no_reset);
    let _ = sh(&format!("umount '{lmnt}'; rm -rf '{t}/root' '{t}/root2'"));
    let r = result?;
    rows.push(r.row(
        &format!("scale-link-{label}"),
        quick,
        format!("link + unlink at scale: {what}; {runs} runs each"),
        ("sik link + sik unlink", "cp -rs (mounted image) + rm -rf"),
        vec![memory(&r)],
    ));
    Ok(rows)
}
