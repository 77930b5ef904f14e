//! Tests of the SquashFS writer: every image is read back with backhand's
//! reader, listed and extracted with `unsquashfs`, compared with what
//! `mksquashfs` makes of the same tree, and mounted by the kernel.
//!
//! Checks that need root (loop mount, device nodes, `trusted.` xattrs) or
//! squashfs-tools skip outside CI and fail under `CI=true`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sik_create::squashfs::{Compressor, Meta, SquashfsWriter, Summary, WriteError, WriterOptions};

// ---------------------------------------------------------------- helpers

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("required capability missing in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .is_some_and(|v| v == "0")
}

fn have_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
}

/// Root plus the squashfs tools; skip (or fail in CI) otherwise.
fn require_root_and_tools() -> bool {
    if !is_root() {
        return skip("needs root");
    }
    for t in [
        "mksquashfs",
        "unsquashfs",
        "mount",
        "getfattr",
        "setfattr",
        "mknod",
    ] {
        if !have_tool(t) {
            return skip(&format!("needs `{t}`"));
        }
    }
    true
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn meta(mode: u16, uid: u32, gid: u32, mtime: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs: Vec::new(),
    }
}

fn opts(compressor: Compressor, threads: usize) -> WriterOptions {
    WriterOptions {
        compressor,
        level: None,
        block_size: 128 * 1024,
        mod_time: 1_700_000_000,
        threads,
    }
}

/// Pseudo-random bytes (xorshift), reproducible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Half-compressible text-like bytes.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "alpha ", "beta ", "gamma\n", "delta ", "epsilon ", "zeta\n", "eta ",
    ];
    let n = noise(seed, len);
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0;
    while v.len() < len {
        v.extend_from_slice(words[n[i % n.len()] as usize % words.len()].as_bytes());
        if n[(i * 7) % n.len()] < 20 {
            v.extend_from_slice(format!("{i} ").as_bytes());
        }
        i += 1;
    }
    v.truncate(len);
    v
}

struct Mount {
    dir: PathBuf,
}

impl Mount {
    fn new(image: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(image)
            .arg(dir));
        Mount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Asserts two listings are equal, showing only the lines that differ.
fn assert_same<A: AsRef<str>, B: AsRef<str>>(got: &[A], want: &[B], what: &str) {
    let g: std::collections::BTreeSet<&str> = got.iter().map(|s| s.as_ref()).collect();
    let w: std::collections::BTreeSet<&str> = want.iter().map(|s| s.as_ref()).collect();
    let extra: Vec<&&str> = g.difference(&w).take(15).collect();
    let missing: Vec<&&str> = w.difference(&g).take(15).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && got.len() == want.len(),
        "{what}: unexpected {extra:#?}\nmissing {missing:#?}"
    );
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

// ---------------------------------------------------------------- fixture

#[derive(Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Hardlink(&'static str),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    Socket,
}

#[derive(Clone)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn e(path: &str, kind: Kind, mode: u16, uid: u32, gid: u32, mtime: u32) -> Entry {
    Entry {
        path: path.into(),
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs: Vec::new(),
    }
}

/// A tree with every kind of entry the writer supports.
fn full_tree() -> Vec<Entry> {
    let t = 1_600_000_000;
    let big = text(1, 300_000);
    let mut sparse = vec![0u8; 1 << 20];
    sparse[3 * 131072 + 17] = 1;
    sparse[(1 << 20) - 1] = 2;
    let mut v = vec![
        e("etc", Kind::Dir, 0o755, 0, 0, t),
        e("etc/empty-dir", Kind::Dir, 0o700, 1000, 100, t + 1),
        e(
            "etc/hello.txt",
            Kind::File(b"hello\n".to_vec()),
            0o644,
            0,
            0,
            1_234_567_890,
        ),
        e(
            "etc/hello-copy.txt",
            Kind::File(b"hello\n".to_vec()),
            0o600,
            0,
            0,
            t + 2,
        ),
        e("etc/empty.txt", Kind::File(Vec::new()), 0o644, 0, 0, t + 3),
        e("usr", Kind::Dir, 0o755, 0, 0, t),
        e("usr/lib", Kind::Dir, 0o755, 0, 0, t),
        e(
            "usr/lib/big.bin",
            Kind::File(big.clone()),
            0o644,
            0,
            0,
            t + 4,
        ),
        e("usr/lib/big-copy.bin", Kind::File(big), 0o644, 0, 0, t + 5),
        e(
            "usr/lib/noise.bin",
            Kind::File(noise(7, 200_000)),
            0o644,
            0,
            0,
            t + 6,
        ),
        e(
            "usr/lib/exact.bin",
            Kind::File(text(2, 262_144)),
            0o644,
            0,
            0,
            t + 7,
        ),
        e("usr/lib/sparse.bin", Kind::File(sparse), 0o644, 0, 0, t + 8),
        e(
            "usr/lib/zeros-small.bin",
            Kind::File(vec![0u8; 5000]),
            0o644,
            0,
            0,
            t + 8,
        ),
        e("usr/bin", Kind::Dir, 0o755, 0, 0, t),
        e(
            "usr/bin/tool",
            Kind::File(text(3, 40_000)),
            0o4755,
            0,
            0,
            t + 9,
        ),
        e(
            "usr/bin/tool-link",
            Kind::Hardlink("usr/bin/tool"),
            0,
            0,
            0,
            0,
        ),
        e(
            "usr/sbin/tool-link2",
            Kind::Hardlink("usr/bin/tool"),
            0,
            0,
            0,
            0,
        ),
        e(
            "usr/bin/abs",
            Kind::Symlink(b"/etc/hello.txt".to_vec()),
            0o777,
            0,
            0,
            t + 10,
        ),
        e(
            "usr/bin/rel",
            Kind::Symlink(b"../../etc/hello.txt".to_vec()),
            0o777,
            0,
            0,
            t + 11,
        ),
        e(
            "usr/bin/dangling",
            Kind::Symlink(b"nowhere/at/all".to_vec()),
            0o777,
            0,
            0,
            t + 12,
        ),
        e(
            "usr/bin/long",
            Kind::Symlink(vec![b'x'; 255]),
            0o777,
            0,
            0,
            t + 13,
        ),
        e(
            "usr/bin/sym-link",
            Kind::Symlink(b"tool".to_vec()),
            0o777,
            0,
            0,
            t + 13,
        ),
        e(
            "usr/bin/sym-hard",
            Kind::Hardlink("usr/bin/sym-link"),
            0,
            0,
            0,
            0,
        ),
        e("srv", Kind::Dir, 0o2775, 1001, 1002, t + 14),
        e("tmp", Kind::Dir, 0o1777, 0, 0, t + 15),
        e(
            "srv/owned",
            Kind::File(b"owned by someone\n".to_vec()),
            0o640,
            4242,
            77,
            t + 16,
        ),
        e(
            "srv/setgid",
            Kind::File(b"#!/bin/sh\n".to_vec()),
            0o2755,
            0,
            0,
            t + 16,
        ),
        e("dev", Kind::Dir, 0o755, 0, 0, t),
        e("dev/null", Kind::Char(1, 3), 0o666, 0, 0, t + 17),
        e(
            "dev/big-char",
            Kind::Char(259, 300_000),
            0o600,
            0,
            6,
            t + 17,
        ),
        e("dev/loop0", Kind::Block(7, 0), 0o660, 0, 6, t + 18),
        e("dev/loop0-again", Kind::Hardlink("dev/loop0"), 0, 0, 0, 0),
        e("run/fifo", Kind::Fifo, 0o644, 0, 0, t + 19),
        e("run/sock", Kind::Socket, 0o755, 0, 0, t + 20),
        e(
            "x/implicit/parents/file",
            Kind::File(b"deep\n".to_vec()),
            0o644,
            0,
            0,
            t + 21,
        ),
    ];
    let mut x = e(
        "etc/xattr.txt",
        Kind::File(b"x\n".to_vec()),
        0o644,
        0,
        0,
        t + 22,
    );
    x.xattrs = vec![
        (b"user.comment".to_vec(), b"some words".to_vec()),
        (
            b"security.capability".to_vec(),
            vec![
                1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        (b"trusted.big".to_vec(), text(9, 3000)),
    ];
    v.push(x);
    let mut xd = e("xdir", Kind::Dir, 0o755, 0, 0, t + 23);
    xd.xattrs = vec![(b"user.dir".to_vec(), b"on a directory".to_vec())];
    v.push(xd);
    let mut xs = e(
        "xdir/link",
        Kind::Symlink(b"../etc".to_vec()),
        0o777,
        0,
        0,
        t + 24,
    );
    xs.xattrs = vec![(b"trusted.sym".to_vec(), b"on a symlink".to_vec())];
    v.push(xs);
    let mut xf = e(
        "xdir/same-set",
        Kind::File(b"y\n".to_vec()),
        0o644,
        0,
        0,
        t + 25,
    );
    xf.xattrs = vec![(b"user.dir".to_vec(), b"on a directory".to_vec())];
    v.push(xf);
    // A directory with > 256 entries and a listing over 8 KiB.
    v.push(e("many", Kind::Dir, 0o755, 0, 0, t + 26));
    for i in 0..700 {
        let name = format!("many/entry-with-a-long-name-{i:05}");
        v.push(e(
            &name,
            Kind::File(format!("{i}\n").into_bytes()),
            0o644,
            0,
            0,
            t + 27,
        ));
    }
    // A directory whose listing exceeds 64 KiB (extended directory inode).
    v.push(e("huge", Kind::Dir, 0o755, 0, 0, t + 28));
    for i in 0..2200 {
        let name = format!("huge/{:0>24}", i);
        v.push(e(&name, Kind::File(Vec::new()), 0o644, 0, 0, t + 29));
    }
    v
}

/// Builds the entries on disk under `root` (needs root for devices,
/// owners and trusted xattrs).
fn materialize(root: &Path, entries: &[Entry]) {
    std::fs::create_dir_all(root).unwrap();
    for en in entries {
        let p = root.join(&en.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match &en.kind {
            Kind::Dir => std::fs::create_dir_all(&p).unwrap(),
            Kind::File(data) => std::fs::write(&p, data).unwrap(),
            Kind::Symlink(t) => {
                use std::os::unix::ffi::OsStrExt;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p).unwrap()
            }
            Kind::Hardlink(target) => std::fs::hard_link(root.join(target), &p).unwrap(),
            Kind::Char(a, b) => {
                run(Command::new("mknod")
                    .arg(&p)
                    .arg("c")
                    .arg(a.to_string())
                    .arg(b.to_string()));
            }
            Kind::Block(a, b) => {
                run(Command::new("mknod")
                    .arg(&p)
                    .arg("b")
                    .arg(a.to_string())
                    .arg(b.to_string()));
            }
            Kind::Fifo => {
                run(Command::new("mkfifo").arg(&p));
            }
            Kind::Socket => {
                let l = std::os::unix::net::UnixListener::bind(&p).unwrap();
                drop(l);
            }
        }
        if matches!(en.kind, Kind::Hardlink(_)) {
            continue;
        }
        std::os::unix::fs::lchown(&p, Some(en.uid), Some(en.gid)).unwrap();
        if !matches!(en.kind, Kind::Symlink(_)) {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(u32::from(en.mode)))
                .unwrap();
        }
        for (n, v) in &en.xattrs {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            run(Command::new("setfattr")
                .arg("-h")
                .arg("-n")
                .arg(String::from_utf8_lossy(n).as_ref())
                .arg("-v")
                .arg(format!("0x{hex}"))
                .arg(&p));
        }
    }
    // Times last, deepest first, so creating children does not touch them.
    let mut sorted: Vec<&Entry> = entries
        .iter()
        .filter(|e| !matches!(e.kind, Kind::Hardlink(_)))
        .collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
    for en in sorted {
        run(Command::new("touch")
            .arg("-h")
            .arg("-d")
            .arg(format!("@{}", en.mtime))
            .arg(root.join(&en.path)));
    }
    // Implicit parents get the writer's defaults.
    for en in entries {
        let mut p = Path::new(&en.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            if !entries.iter().any(|x| Path::new(&x.path) == d) {
                let full = root.join(d);
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
                run(Command::new("touch")
                    .arg("-h")
                    .arg("-d")
                    .arg("@1700000000")
                    .arg(&full));
            }
            p = d.parent();
        }
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    run(Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg("@1500000000")
        .arg(root));
}

/// Adds the entries to a writer in an unfriendly order: all non-directories
/// first (so parents are created implicitly), then directories deepest last.
fn add_all(w: &mut SquashfsWriter, entries: &[Entry]) {
    w.set_root(meta(0o755, 0, 0, 1_500_000_000));
    for en in entries.iter().filter(|e| !matches!(e.kind, Kind::Dir)) {
        let p = en.path.as_bytes();
        let m = Meta {
            mode: en.mode,
            uid: en.uid,
            gid: en.gid,
            mtime: en.mtime,
            xattrs: en.xattrs.clone(),
        };
        match &en.kind {
            Kind::Dir => unreachable!(),
            Kind::File(d) => {
                let n = w.add_file(p, m, &mut &d[..]).unwrap();
                assert_eq!(n, d.len() as u64);
            }
            Kind::Symlink(t) => w.add_symlink(p, t, m).unwrap(),
            Kind::Hardlink(t) => w.add_hardlink(p, t.as_bytes()).unwrap(),
            Kind::Char(a, b) => w.add_char_device(p, m, *a, *b).unwrap(),
            Kind::Block(a, b) => w.add_block_device(p, m, *a, *b).unwrap(),
            Kind::Fifo => w.add_fifo(p, m).unwrap(),
            Kind::Socket => w.add_socket(p, m).unwrap(),
        }
    }
    for en in entries.iter().rev().filter(|e| matches!(e.kind, Kind::Dir)) {
        let m = Meta {
            mode: en.mode,
            uid: en.uid,
            gid: en.gid,
            mtime: en.mtime,
            xattrs: en.xattrs.clone(),
        };
        w.add_dir(en.path.as_bytes(), m).unwrap();
    }
}

fn build(path: &Path, o: WriterOptions, entries: &[Entry]) -> Summary {
    let f = File::create(path).unwrap();
    let mut w = SquashfsWriter::new(f, o).unwrap();
    add_all(&mut w, entries);
    w.finish().unwrap()
}

// ---------------------------------------------------------------- listings

fn dev_split(rdev: u64) -> (u64, u64) {
    (
        (rdev >> 8) & 0xfff | ((rdev >> 32) & !0xfff),
        (rdev & 0xff) | ((rdev >> 12) & !0xff),
    )
}

/// A canonical listing of a tree on disk: type, mode, owner, mtime, link
/// count, size, device, link target, content hash; hard-link groups.
fn walk_listing(root: &Path, skip_sockets: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inos: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = md.file_type();
        if skip_sockets && ft.is_socket() {
            continue;
        }
        let mut line = format!(
            "/{rel} mode={:o} owner={}:{} mtime={} nlink={}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime(),
            md.nlink()
        );
        if ft.is_dir() {
            for c in std::fs::read_dir(&p).unwrap() {
                stack.push(c.unwrap().path());
            }
        } else if ft.is_file() {
            let data = std::fs::read(&p).unwrap();
            line += &format!(
                " size={} xxh3={:x}",
                data.len(),
                xxhash_rust::xxh3::xxh3_128(&data)
            );
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            line += &format!(" target={}", t.display());
        } else if ft.is_char_device() || ft.is_block_device() {
            line += &format!(" dev={:?}", dev_split(md.rdev()));
        }
        if !ft.is_dir() && md.nlink() > 1 {
            inos.entry(md.ino()).or_default().push(format!("/{rel}"));
        }
        lines.push(line);
    }
    for (_, mut group) in inos {
        group.sort();
        lines.push(format!("hardlinks {}", group.join(" ")));
    }
    lines.sort();
    lines
}

/// All xattrs under `root`, by relative path.
fn xattr_listing(root: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = run(Command::new("getfattr")
        .args([
            "-R",
            "-h",
            "-P",
            "-d",
            "-m",
            "-",
            "-e",
            "hex",
            "--absolute-names",
        ])
        .arg(root));
    let mut map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut cur = String::new();
    let prefix = root.to_string_lossy().into_owned();
    for line in out.lines() {
        if let Some(f) = line.strip_prefix("# file: ") {
            cur = f.strip_prefix(&prefix).unwrap_or(f).to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            map.entry(cur.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    map
}

fn expected_xattrs(entries: &[Entry]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for en in entries {
        for (n, v) in &en.xattrs {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            map.entry(format!("/{}", en.path))
                .or_default()
                .insert(String::from_utf8_lossy(n).into_owned(), format!("0x{hex}"));
        }
    }
    map
}

/// The same facts as [`walk_listing`] (without link counts), read with
/// backhand's reader.
fn backhand_listing(image: &Path) -> Vec<String> {
    use backhand::{FilesystemReader, InnerNode};
    let fs = FilesystemReader::from_reader(BufReader::new(File::open(image).unwrap()))
        .unwrap_or_else(|e| panic!("backhand cannot read {}: {e:?}", image.display()));
    let mut lines = Vec::new();
    for node in fs.files() {
        let h = &node.header;
        let path = node.fullpath.to_string_lossy().into_owned();
        let path = if path == "/" { "/".to_string() } else { path };
        let mut line = format!(
            "{path} perm={:o} owner={}:{} mtime={}",
            h.permissions, h.uid, h.gid, h.mtime
        );
        match &node.inner {
            InnerNode::File(f) => {
                let mut data = Vec::new();
                fs.file(f).reader().read_to_end(&mut data).unwrap();
                line += &format!(
                    " file size={} xxh3={:x}",
                    data.len(),
                    xxhash_rust::xxh3::xxh3_128(&data)
                );
            }
            InnerNode::Symlink(s) => line += &format!(" symlink target={}", s.link.display()),
            InnerNode::Dir(_) => line += " dir",
            InnerNode::CharacterDevice(d) => {
                line += &format!(" char dev={:?}", dev_split(u64::from(d.device_number)))
            }
            InnerNode::BlockDevice(d) => {
                line += &format!(" block dev={:?}", dev_split(u64::from(d.device_number)))
            }
            InnerNode::NamedPipe => line += " fifo",
            InnerNode::Socket => line += " socket",
        }
        lines.push(line);
    }
    lines.sort();
    lines
}

/// Expected backhand listing from the fixture.
fn expected_backhand(entries: &[Entry], mod_time: u32) -> Vec<String> {
    let mut by_path: BTreeMap<String, &Entry> = BTreeMap::new();
    for en in entries {
        by_path.insert(en.path.clone(), en);
    }
    let mut lines = vec!["/ perm=755 owner=0:0 mtime=1500000000 dir".to_string()];
    let mut implicit = std::collections::BTreeSet::new();
    for en in entries {
        let mut p = Path::new(&en.path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            let ds = d.to_string_lossy().into_owned();
            if !by_path.contains_key(&ds) {
                implicit.insert(ds);
            }
            p = d.parent();
        }
    }
    for d in implicit {
        lines.push(format!("/{d} perm=755 owner=0:0 mtime={mod_time} dir"));
    }
    for en in entries {
        let src = match &en.kind {
            Kind::Hardlink(t) => by_path[*t],
            _ => en,
        };
        let mut line = format!(
            "/{} perm={:o} owner={}:{} mtime={}",
            en.path, src.mode, src.uid, src.gid, src.mtime
        );
        match &src.kind {
            Kind::Dir => line += " dir",
            Kind::File(d) => {
                line += &format!(
                    " file size={} xxh3={:x}",
                    d.len(),
                    xxhash_rust::xxh3::xxh3_128(d)
                )
            }
            Kind::Symlink(t) => line += &format!(" symlink target={}", String::from_utf8_lossy(t)),
            Kind::Char(a, b) => line += &format!(" char dev={:?}", (u64::from(*a), u64::from(*b))),
            Kind::Block(a, b) => {
                line += &format!(" block dev={:?}", (u64::from(*a), u64::from(*b)))
            }
            Kind::Fifo => line += " fifo",
            Kind::Socket => line += " socket",
            Kind::Hardlink(_) => unreachable!(),
        }
        lines.push(line);
    }
    lines.sort();
    lines
}

fn unsquashfs_list(image: &Path, flag: &str) -> String {
    run(Command::new("unsquashfs")
        .env("TZ", "UTC")
        .arg(flag)
        .arg(image))
}

// ---------------------------------------------------------------- tests

#[test]
fn backhand_reads_every_kind_of_entry() {
    let dir = tempfile::tempdir().unwrap();
    let entries = full_tree();
    let img = dir.path().join("img.sqfs");
    let s = build(&img, opts(Compressor::Zstd, 3), &entries);
    assert_eq!(s.file_len % 4096, 0);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), s.file_len);
    assert!(s.duplicate_files >= 2, "{s:?}");
    let got = backhand_listing(&img);
    let want = expected_backhand(&entries, 1_700_000_000);
    assert_same(&got, &want, "backhand");
}

#[test]
fn kernel_unsquashfs_and_mksquashfs_agree_on_every_kind_of_entry() {
    if !require_root_and_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let entries = full_tree();
    let src = dir.path().join("src");
    materialize(&src, &entries);
    let img = dir.path().join("ours.sqfs");
    build(&img, opts(Compressor::Zstd, 2), &entries);

    // unsquashfs listing equals that of mksquashfs's image of the same tree.
    let theirs = dir.path().join("theirs.sqfs");
    run(Command::new("mksquashfs").arg(&src).arg(&theirs).args([
        "-comp",
        "zstd",
        "-quiet",
        "-no-progress",
    ]));
    for flag in ["-lln", "-lls"] {
        let a = unsquashfs_list(&img, flag).replace(&img.display().to_string(), "IMG");
        let b = unsquashfs_list(&theirs, flag).replace(&theirs.display().to_string(), "IMG");
        assert_same(
            &lines(&a),
            &lines(&b),
            &format!("unsquashfs {flag} vs mksquashfs"),
        );
    }

    let want = walk_listing(&src, false);
    let want_x = expected_xattrs(&entries);
    assert_eq!(xattr_listing(&src), want_x, "fixture xattrs");

    // The kernel.
    {
        let m = Mount::new(&img, &dir.path().join("mnt"));
        assert_same(
            &walk_listing(&m.dir, false),
            &want,
            "kernel mount vs source",
        );
        assert_eq!(xattr_listing(&m.dir), want_x, "kernel xattrs");
    }

    // unsquashfs extraction (it does not create sockets).
    let out = dir.path().join("extract");
    run(Command::new("unsquashfs")
        .arg("-q")
        .arg("-n")
        .arg("-d")
        .arg(&out)
        .arg(&img));
    let want_nosock = walk_listing(&src, true);
    assert_same(
        &walk_listing(&out, true),
        &want_nosock,
        "unsquashfs extraction vs source",
    );
    assert_eq!(xattr_listing(&out), want_x, "unsquashfs xattrs");
}

#[test]
fn output_is_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let entries = full_tree();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    build(&a, opts(Compressor::Zstd, 1), &entries);
    build(&b, opts(Compressor::Zstd, 4), &entries);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "images differ"
    );
}

fn small_tree() -> Vec<Entry> {
    let t = 1_650_000_000;
    let mut v = vec![
        e("a.txt", Kind::File(text(4, 1000)), 0o644, 0, 0, t),
        e(
            "b/big.bin",
            Kind::File(text(5, 500_000)),
            0o755,
            1,
            2,
            t + 1,
        ),
        e(
            "b/noise.bin",
            Kind::File(noise(6, 140_000)),
            0o644,
            0,
            0,
            t + 2,
        ),
        e(
            "b/link",
            Kind::Symlink(b"../a.txt".to_vec()),
            0o777,
            0,
            0,
            t + 3,
        ),
        e("c", Kind::Dir, 0o750, 0, 0, t + 4),
    ];
    for i in 0..50 {
        v.push(e(
            &format!("c/f{i}"),
            Kind::File(text(100 + i, 3000)),
            0o644,
            0,
            0,
            t + 5,
        ));
    }
    v
}

#[test]
fn every_compressor_and_level_reads_back() {
    let check_kernel = is_root() && have_tool("unsquashfs");
    if !check_kernel {
        skip("needs root and unsquashfs");
    }
    let dir = tempfile::tempdir().unwrap();
    let entries = small_tree();
    let cases: Vec<(Compressor, Option<i32>, u32)> = vec![
        (Compressor::Gzip, None, 128 * 1024),
        (Compressor::Gzip, Some(1), 4096),
        (Compressor::Xz, None, 128 * 1024),
        (Compressor::Xz, Some(2), 1 << 20),
        (Compressor::Lz4, None, 64 * 1024),
        (Compressor::Zstd, None, 128 * 1024),
        (Compressor::Zstd, Some(3), 8192),
        (Compressor::Zstd, Some(19), 1 << 20),
    ];
    let src = dir.path().join("src");
    if check_kernel {
        materialize(&src, &entries);
    }
    for (i, (c, level, bs)) in cases.into_iter().enumerate() {
        let img = dir.path().join(format!("img{i}"));
        let o = WriterOptions {
            compressor: c,
            level,
            block_size: bs,
            mod_time: 1_700_000_000,
            threads: 2,
        };
        build(&img, o, &entries);
        assert_same(
            &backhand_listing(&img),
            &expected_backhand(&entries, 1_700_000_000),
            &format!("{c:?} {level:?} {bs}"),
        );
        if check_kernel {
            let m = Mount::new(&img, &dir.path().join(format!("mnt{i}")));
            assert_same(
                &walk_listing(&m.dir, false),
                &walk_listing(&src, false),
                &format!("mount {c:?} {level:?}"),
            );
            drop(m);
            let stat = run(Command::new("unsquashfs").arg("-s").arg(&img));
            let name = match c {
                Compressor::Gzip => "gzip",
                Compressor::Xz => "xz",
                Compressor::Lz4 => "lz4",
                Compressor::Zstd => "zstd",
            };
            assert!(stat.contains(&format!("Compression {name}")), "{stat}");
            assert!(stat.contains(&format!("Block size {bs}")), "{stat}");
            if let (Compressor::Zstd | Compressor::Gzip, Some(l)) = (c, level) {
                assert!(stat.contains(&format!("compression-level {l}")), "{stat}");
            }
        }
    }
}

#[test]
fn identical_files_share_their_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(11, 1_000_000);
    let mk = |n: usize| {
        let img = dir.path().join(format!("dup{n}"));
        let mut w =
            SquashfsWriter::new(File::create(&img).unwrap(), opts(Compressor::Zstd, 2)).unwrap();
        for i in 0..n {
            w.add_file(
                format!("f{i}").as_bytes(),
                meta(0o644, 0, 0, 0),
                &mut &data[..],
            )
            .unwrap();
            w.add_file(
                format!("small{i}").as_bytes(),
                meta(0o644, 0, 0, 0),
                &mut &b"tiny"[..],
            )
            .unwrap();
        }
        (img.clone(), w.finish().unwrap())
    };
    let (_, one) = mk(1);
    let (img, five) = mk(5);
    assert_eq!(five.duplicate_files, 8);
    assert!(five.bytes_used < one.bytes_used + 4096, "{one:?} {five:?}");
    let fs =
        backhand::FilesystemReader::from_reader(BufReader::new(File::open(&img).unwrap())).unwrap();
    let mut n = 0;
    for node in fs.files() {
        if let backhand::InnerNode::File(f) = &node.inner {
            let mut v = Vec::new();
            fs.file(f).reader().read_to_end(&mut v).unwrap();
            if node.fullpath.to_string_lossy().contains("small") {
                assert_eq!(v, b"tiny");
            } else {
                assert!(v == data);
            }
            n += 1;
        }
    }
    assert_eq!(n, 10);
}

/// A reader that yields `zeros` zero bytes then `tail`.
struct Sparse {
    zeros: u64,
    tail: Vec<u8>,
    pos: u64,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.zeros {
            let n = (buf.len() as u64).min(self.zeros - self.pos) as usize;
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        let off = (self.pos - self.zeros) as usize;
        let n = buf.len().min(self.tail.len() - off);
        buf[..n].copy_from_slice(&self.tail[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Byte `p` of the stream is `buf[p % buf.len()]`, whatever the read sizes.
struct Cycle {
    buf: Vec<u8>,
    left: u64,
    pos: u64,
}

impl Read for Cycle {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let at = (self.pos % self.buf.len() as u64) as usize;
        let n = (out.len() as u64)
            .min(self.left)
            .min((self.buf.len() - at) as u64) as usize;
        out[..n].copy_from_slice(&self.buf[at..at + n]);
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn huge_sparse_and_large_files() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.sqfs");
    let o = WriterOptions {
        compressor: Compressor::Lz4,
        level: None,
        block_size: 1 << 20,
        mod_time: 0,
        threads: 2,
    };
    let mut w = SquashfsWriter::new(File::create(&img).unwrap(), o).unwrap();
    let zeros = 5u64 << 30;
    let n = w
        .add_file(
            b"sparse",
            meta(0o644, 0, 0, 0),
            &mut Sparse {
                zeros,
                tail: b"end".to_vec(),
                pos: 0,
            },
        )
        .unwrap();
    assert_eq!(n, zeros + 3);
    let big = 300u64 << 20;
    let mut cyc = Cycle {
        buf: text(12, (3 << 20) + 7),
        left: big,
        pos: 0,
    };
    assert_eq!(
        w.add_file(b"large", meta(0o644, 0, 0, 0), &mut cyc)
            .unwrap(),
        big
    );
    let s = w.finish().unwrap();
    assert!(s.bytes_used < big, "{s:?}");

    let fs =
        backhand::FilesystemReader::from_reader(BufReader::new(File::open(&img).unwrap())).unwrap();
    for node in fs.files() {
        if let backhand::InnerNode::File(f) = &node.inner {
            let mut r = fs.file(f).reader();
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            let mut hash = xxhash_rust::xxh3::Xxh3::new();
            loop {
                let k = r.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                hash.update(&buf[..k]);
                total += k as u64;
            }
            let mut expect = xxhash_rust::xxh3::Xxh3::new();
            if node.fullpath.ends_with("sparse") {
                assert_eq!(total, zeros + 3);
                let mut src = Sparse {
                    zeros,
                    tail: b"end".to_vec(),
                    pos: 0,
                };
                std::io::copy(&mut src, &mut HashW(&mut expect)).unwrap();
            } else {
                assert_eq!(total, big);
                let mut src = Cycle {
                    buf: text(12, (3 << 20) + 7),
                    left: big,
                    pos: 0,
                };
                std::io::copy(&mut src, &mut HashW(&mut expect)).unwrap();
            }
            assert_eq!(
                hash.digest128(),
                expect.digest128(),
                "{}",
                node.fullpath.display()
            );
        }
    }
    if is_root() && have_tool("unsquashfs") {
        let l = unsquashfs_list(&img, "-lln");
        assert!(l.contains(&format!(" {} ", zeros + 3)), "{l}");
        let m = Mount::new(&img, &dir.path().join("mnt"));
        let md = std::fs::metadata(m.dir.join("sparse")).unwrap();
        assert_eq!(md.len(), zeros + 3);
        let mut f = File::open(m.dir.join("sparse")).unwrap();
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(zeros - 2)).unwrap();
        let mut t = Vec::new();
        f.read_to_end(&mut t).unwrap();
        assert_eq!(t, b"\0\0end");
    } else {
        skip("needs root and unsquashfs");
    }
}

struct HashW<'a>(&'a mut xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashW<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn bad_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SquashfsWriter::new(
        File::create(dir.path().join("x")).unwrap(),
        opts(Compressor::Zstd, 1),
    )
    .unwrap();
    let m = || meta(0o644, 0, 0, 0);
    for bad in [
        &b""[..],
        b"/abs",
        b"a//b",
        b"a/./b",
        b"a/../b",
        b"trailing/",
        b"nul\0byte",
    ] {
        assert!(
            matches!(
                w.add_file(bad, m(), &mut &b""[..]),
                Err(WriteError::InvalidPath(_))
            ),
            "{bad:?}"
        );
    }
    let long = vec![b'n'; 257];
    assert!(matches!(
        w.add_dir(&long, m()),
        Err(WriteError::InvalidPath(_))
    ));
    w.add_file(b"a/file", m(), &mut &b"x"[..]).unwrap();
    assert!(matches!(
        w.add_file(b"a/file", m(), &mut &b"y"[..]),
        Err(WriteError::Duplicate(_))
    ));
    assert!(matches!(
        w.add_symlink(b"a/file", b"t", m()),
        Err(WriteError::Duplicate(_))
    ));
    assert!(matches!(
        w.add_file(b"a/file/under", m(), &mut &b""[..]),
        Err(WriteError::NotADirectory(_))
    ));
    w.add_dir(b"a", m()).unwrap(); // implicit until now
    assert!(matches!(
        w.add_dir(b"a", m()),
        Err(WriteError::Duplicate(_))
    ));
    assert!(matches!(
        w.add_file(b"a", m(), &mut &b""[..]),
        Err(WriteError::Duplicate(_))
    ));
    assert!(matches!(
        w.add_hardlink(b"h", b"missing"),
        Err(WriteError::NotFound(_))
    ));
    assert!(matches!(
        w.add_hardlink(b"h", b"a"),
        Err(WriteError::HardlinkToDirectory(_))
    ));
    assert!(matches!(
        w.add_symlink(b"s", b"", m()),
        Err(WriteError::InvalidSymlink(_))
    ));
    assert!(matches!(
        w.add_symlink(b"s", &vec![b'x'; 4096], m()),
        Err(WriteError::InvalidSymlink(_))
    ));
    assert!(matches!(
        w.add_char_device(b"d", m(), 4096, 0),
        Err(WriteError::InvalidDevice(_))
    ));
    assert!(matches!(
        w.add_block_device(b"d", m(), 1, 1 << 20),
        Err(WriteError::InvalidDevice(_))
    ));
    let mut x = m();
    x.xattrs = vec![(b"system.posix_acl_access".to_vec(), vec![1])];
    assert!(matches!(
        w.add_fifo(b"f", x),
        Err(WriteError::InvalidXattr(_))
    ));
    let mut x = m();
    x.xattrs = vec![(b"user.a".to_vec(), vec![1]), (b"user.a".to_vec(), vec![2])];
    assert!(matches!(
        w.add_socket(b"f", x),
        Err(WriteError::InvalidXattr(_))
    ));
    // A read error leaves the writer usable.
    struct Fail(usize);
    impl Read for Fail {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("boom"));
            }
            self.0 -= 1;
            b.fill(7);
            Ok(b.len())
        }
    }
    assert!(matches!(
        w.add_file(b"broken", m(), &mut Fail(3)),
        Err(WriteError::Io(_))
    ));
    w.add_file(b"after", m(), &mut &b"fine"[..]).unwrap();
    w.finish().unwrap();
    let l = backhand_listing(&dir.path().join("x"));
    assert_eq!(l.len(), 4, "{l:?}"); // /, /a, /a/file, /after

    let mut w = SquashfsWriter::new(
        File::create(dir.path().join("r")).unwrap(),
        opts(Compressor::Zstd, 1),
    )
    .unwrap();
    let mut r = m();
    r.xattrs = vec![(b"system.bad".to_vec(), vec![1])];
    w.set_root(r);
    assert!(matches!(w.finish(), Err(WriteError::InvalidXattr(_))));

    for (c, level, bs) in [
        (Compressor::Zstd, Some(23), 131072),
        (Compressor::Gzip, Some(0), 131072),
        (Compressor::Lz4, Some(1), 131072),
        (Compressor::Zstd, None, 3000),
        (Compressor::Zstd, None, 2048),
        (Compressor::Zstd, None, 2 << 20),
    ] {
        let o = WriterOptions {
            compressor: c,
            level,
            block_size: bs,
            mod_time: 0,
            threads: 1,
        };
        let f = File::create(dir.path().join("y")).unwrap();
        assert!(matches!(
            SquashfsWriter::new(f, o),
            Err(WriteError::InvalidOptions(_))
        ));
    }
}

/// Symlink targets up to 4095 bytes: the kernel and unsquashfs read them
/// (backhand's reader refuses targets of 256 bytes or more).
#[test]
fn long_symlink_targets_for_kernel_and_unsquashfs() {
    if !require_root_and_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut w =
        SquashfsWriter::new(File::create(&img).unwrap(), opts(Compressor::Gzip, 2)).unwrap();
    let target: Vec<u8> = (0..4095)
        .map(|i| {
            if i % 100 == 99 {
                b'/'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    w.add_symlink(b"long", &target, meta(0o777, 0, 0, 5))
        .unwrap();
    w.finish().unwrap();
    let m = Mount::new(&img, &dir.path().join("mnt"));
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        std::fs::read_link(m.dir.join("long"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        &target[..]
    );
    drop(m);
    let l = unsquashfs_list(&img, "-lln");
    assert!(
        l.contains(&format!("long -> {}", String::from_utf8_lossy(&target))),
        "{l}"
    );
}

// ---------------------------------------------------------------- spec vector

/// The tree of the test vector in spec/extension-image.md ("SquashFS layout").
fn vector_image(path: &Path, threads: usize) -> Summary {
    let o = WriterOptions {
        compressor: Compressor::Zstd,
        level: None,
        block_size: 4096,
        mod_time: 1_700_000_000,
        threads,
    };
    let mut w = SquashfsWriter::new(File::create(path).unwrap(), o).unwrap();
    w.set_root(meta(0o755, 0, 0, 1_700_000_000));
    w.add_file(
        b"etc/hello",
        meta(0o644, 0, 0, 1_700_000_001),
        &mut &b"hello\n"[..],
    )
    .unwrap();
    w.add_hardlink(b"etc/hello-again", b"etc/hello").unwrap();
    w.add_symlink(b"link", b"etc/hello", meta(0o777, 0, 0, 1_700_000_002))
        .unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    w.add_file(
        b"data",
        meta(0o640, 1000, 1000, 1_700_000_003),
        &mut &data[..],
    )
    .unwrap();
    let mut m = meta(0o700, 0, 0, 1_700_000_004);
    m.xattrs = vec![(b"user.comment".to_vec(), b"vector".to_vec())];
    w.add_dir(b"empty", m).unwrap();
    w.add_char_device(b"null", meta(0o666, 0, 0, 1_700_000_005), 1, 3)
        .unwrap();
    w.finish().unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads one metadata block at `pos`; returns its uncompressed content.
fn meta_block(img: &[u8], pos: usize) -> Vec<u8> {
    let h = u16::from_le_bytes([img[pos], img[pos + 1]]);
    let len = usize::from(h & 0x7fff);
    let raw = &img[pos + 2..pos + 2 + len];
    if h & 0x8000 != 0 {
        raw.to_vec()
    } else {
        zstd::bulk::decompress(raw, 8192).unwrap()
    }
}

#[test]
fn spec_test_vector() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let s = vector_image(&a, 1);
    vector_image(&b, 3);
    let img = std::fs::read(&a).unwrap();
    assert!(img == std::fs::read(&b).unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(img[o..o + 8].try_into().unwrap()) as usize;
    let inode_table = u64_at(64);
    let dir_table = u64_at(72);
    let inodes = meta_block(&img, inode_table);
    let dirs = meta_block(&img, dir_table);
    // Values published in spec/extension-image.md, "Test vector".
    assert_eq!(s.bytes_used, 1257);
    assert_eq!(s.file_len, 4096);
    assert_eq!(
        (s.inode_count, s.id_count, s.fragment_count, s.xattr_sets),
        (7, 2, 1, 1)
    );
    assert_eq!(hex(&img[..96]), SPEC_SUPERBLOCK);
    assert_eq!(hex(&inodes), SPEC_INODES);
    assert_eq!(hex(&dirs), SPEC_DIRS);
    assert_eq!(sha256_hex(&a), SPEC_SHA256);
    // The published values are the ones in the spec file itself.
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/extension-image.md"
    ))
    .unwrap();
    let flat: String = spec.split_whitespace().collect();
    for v in [SPEC_SUPERBLOCK, SPEC_INODES, SPEC_DIRS, SPEC_SHA256] {
        assert!(
            flat.contains(v),
            "spec/extension-image.md does not show {v}"
        );
    }
}

const SPEC_SUPERBLOCK: &str = "687371730700000000f15365001000000100000006000c004000020004000000e500000000000000e904000000000000a004000000000000d10400000000000093030000000000001f040000000000008e04000000000000ffffffffffffffff";
const SPEC_INODES: &str = "0200a0010000000003f153650100000060000000ffffffff00000000102700000f0100000f0100000f0100000800c0010100010004f15365020000000200000003000000000000000700000000000000000000000900a4010100010001f1536503000000000000000000000006000000000000000000000000000000020000000000000000000000ffffffff0100ed010100010000f153650400000000000000020000002f000000070000000300ff010100010002f153650500000001000000090000006574632f68656c6c6f0500b6010100010005f153650600000001000000030100000100ed010100010000f153650700000000000000040000004b002c0008000000";
const SPEC_DIRS: &str = "010000000000000003000000540000000200040068656c6c6f5400000002000a0068656c6c6f2d616761696e0400000000000000010000000000000002000300646174612c00010001000400656d7074798c00030001000200657463ac000400030003006c696e6bcd000500050003006e756c6c";
const SPEC_SHA256: &str = "d983df5b3335d70636bcf80acbeaead03b3263dfb496c72f0445fed421c1c5d6";

/// SHA-256 of a file via coreutils' `sha256sum`.
fn sha256_hex(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Xattr values larger than a metadata block and incompressible (stored
/// metadata blocks), read by the kernel; backhand reads the rest.
#[test]
fn large_incompressible_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    let mut w = SquashfsWriter::new(File::create(&img).unwrap(), opts(Compressor::Xz, 2)).unwrap();
    let mut m = meta(0o644, 0, 0, 0);
    m.xattrs = vec![
        (b"user.a".to_vec(), noise(20, 9000)),
        (b"user.b".to_vec(), noise(21, 20000)),
        (b"security.c".to_vec(), Vec::new()),
    ];
    w.add_file(b"f", m.clone(), &mut &b"content"[..]).unwrap();
    let mut d = meta(0o755, 0, 0, 0);
    d.xattrs = m.xattrs.clone();
    w.add_dir(b"d", d).unwrap();
    w.finish().unwrap();
    let l = backhand_listing(&img);
    assert_eq!(l.len(), 3, "{l:?}");
    if !require_root_and_tools() {
        return;
    }
    let mnt = Mount::new(&img, &dir.path().join("mnt"));
    let got = xattr_listing(&mnt.dir);
    let mut want: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for p in ["/f", "/d"] {
        for (n, v) in &m.xattrs {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            let v = format!("0x{hex}");
            want.entry(p.to_string())
                .or_default()
                .insert(String::from_utf8_lossy(n).into(), v);
        }
    }
    assert!(got == want, "kernel xattrs differ");
}

/// Id and fragment tables spanning several metadata blocks, and a directory
/// whose entries' inode numbers are more than 32767 apart (a subtree of
/// 40000 inodes sits between two siblings), which needs a new header.
/// backhand 0.25 reads only the first block of the id table (it takes the
/// id count for a byte count), so the image with more than 2048 ids is
/// checked with the kernel and unsquashfs only; mksquashfs's images with
/// that many ids fail the same way in backhand.
#[test]
fn tables_spanning_several_metadata_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_690_000_000;
    let tree = |ids: u32| {
        let mut entries = vec![e("a", Kind::File(b"first\n".to_vec()), 0o644, 0, 0, t)];
        for i in 0..40_000u32 {
            let name = format!("b/{i:05}");
            entries.push(e(
                &name,
                Kind::File(Vec::new()),
                0o600,
                i % ids,
                i % 7,
                t + i,
            ));
        }
        for i in 0..600u64 {
            let name = format!("frag/{i:03}");
            entries.push(e(&name, Kind::File(text(1000 + i, 3000)), 0o644, 7, 7, t));
        }
        entries.push(e("c", Kind::File(b"last\n".to_vec()), 0o644, 0, 0, t));
        entries
    };
    let o = WriterOptions {
        compressor: Compressor::Zstd,
        level: Some(3),
        block_size: 4096,
        mod_time: 1_700_000_000,
        threads: 2,
    };
    let small_ids = tree(2000);
    let a = dir.path().join("a");
    let s = build(&a, o.clone(), &small_ids);
    assert!(s.fragment_count > 512, "{s:?}");
    assert_same(
        &backhand_listing(&a),
        &expected_backhand(&small_ids, 1_700_000_000),
        "backhand",
    );
    let many_ids = tree(3000);
    let b = dir.path().join("b");
    let s = build(&b, o, &many_ids);
    assert!(s.id_count > 2048 && s.fragment_count > 512, "{s:?}");
    if !require_root_and_tools() {
        return;
    }
    for (img, entries) in [(&a, &small_ids), (&b, &many_ids)] {
        let listed = unsquashfs_list(img, "-lln");
        assert_eq!(
            listed.lines().count(),
            entries.len() + 3,
            "root, b, frag + entries"
        );
        let m = Mount::new(img, &dir.path().join("mnt"));
        for en in entries {
            let p = m.dir.join(&en.path);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let got = (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime());
            let want = (u32::from(en.mode), en.uid, en.gid, i64::from(en.mtime));
            assert_eq!(got, want, "{}", en.path);
            if let Kind::File(d) = &en.kind
                && !d.is_empty()
            {
                assert!(std::fs::read(&p).unwrap() == *d, "{}", en.path);
            }
        }
        assert_eq!(std::fs::read_dir(m.dir.join("b")).unwrap().count(), 40_000);
    }
}
