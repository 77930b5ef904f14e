//! Helpers of `tests/cli/hostile.rs`: running `sik` under a time and memory
//! limit in a workspace with a sentinel directory, and the deterministic
//! mutations of SquashFS images, AppImages, ISOs, signature blocks, tar
//! archives and .debs.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Address-space limit for every `sik` run: ample for the small inputs here
/// (a normal run stays far below), fatal for a parser that believes a size
/// field and allocates gigabytes.
const MEMORY_LIMIT: u64 = 768 << 20;
/// Seconds a single `sik` run may take before it counts as a hang.
const TIME_LIMIT: &str = "20";

/// A directory holding the input, the target directory `out` and an empty
/// `sentinel` directory next to it that must stay empty.
pub struct Workspace {
    pub dir: PathBuf,
    pub sentinel: PathBuf,
    key: Option<PathBuf>,
    /// Private key (outside the workspace) that `sik sign` uses on inputs.
    signer: PathBuf,
}

impl Workspace {
    pub fn new(t: &TestDir) -> Self {
        let dir = t.mkdir("ws");
        let sentinel = t.mkdir("ws/sentinel");
        let signer = t.join("signer");
        if !signer.exists() {
            sik_key(t, "signer");
        }
        Workspace {
            dir,
            sentinel,
            key: None,
            signer,
        }
    }

    pub fn with_key(t: &TestDir, key: &Path) -> Self {
        let mut w = Self::new(t);
        w.key = Some(key.to_path_buf());
        w
    }

    /// Run `sik ARGS` under the limits; returns its output and exit code.
    fn run(&self, label: &str, args: &[&std::ffi::OsStr]) -> (Output, i32) {
        let out = run(cmd("timeout")
            .args(["-s", "KILL", TIME_LIMIT, "prlimit"])
            .arg(format!("--as={MEMORY_LIMIT}"))
            .arg("--")
            .arg(sik_bin())
            .args(args)
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", &self.dir)
            .env("NO_COLOR", "1")
            .current_dir(&self.dir));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            !stderr.contains("panicked"),
            "{label}: sik {args:?} panicked:\n{stderr}"
        );
        assert!(
            code != 124 && code != 137 && code != 134 && code >= 0,
            "{label}: sik {args:?} was killed or aborted (time or memory limit?), status {:?}:\n{stderr}",
            out.status
        );
        if code == 2 {
            let errors = stderr
                .lines()
                .filter(|l| l.starts_with("sik: error:"))
                .count();
            assert_eq!(
                errors, 1,
                "{label}: sik {args:?}: exactly one error line expected:\n{stderr}"
            );
            // The line says why (a dependency's error with an empty
            // message would leave it ending in ": ").
            let line = stderr
                .lines()
                .find(|l| l.starts_with("sik: error:"))
                .unwrap();
            assert!(
                !line.trim_end().ends_with(':'),
                "{label}: sik {args:?}: the error line gives no reason:\n{stderr}"
            );
        }
        self.assert_contained(label, args);
        // Shown with --nocapture: which mutant each command refused.
        eprintln!(
            "{label}: {:?} -> {code} {}",
            args.iter().take(2).collect::<Vec<_>>(),
            stderr
                .lines()
                .find(|l| l.starts_with("sik: error:"))
                .unwrap_or("")
        );
        (out, code)
    }

    /// The sentinel stays empty and the workspace holds nothing but the
    /// input, the sentinel and `out`.
    fn assert_contained(&self, label: &str, args: &[&std::ffi::OsStr]) {
        let in_sentinel: Vec<_> = std::fs::read_dir(&self.sentinel)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            in_sentinel.is_empty(),
            "{label}: sik {args:?} wrote outside its target: {in_sentinel:?}"
        );
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "sentinel" || name == "out" || name.starts_with("input."),
                "{label}: sik {args:?} left {name} next to its target"
            );
        }
    }

    fn expect(&self, label: &str, args: &[&std::ffi::OsStr], allowed: &[i32], ok: bool) -> i32 {
        self.expect_out(label, args, allowed, ok).1
    }

    fn expect_out(
        &self,
        label: &str,
        args: &[&std::ffi::OsStr],
        allowed: &[i32],
        ok: bool,
    ) -> (Output, i32) {
        let (out, code) = self.run(label, args);
        if ok {
            assert_eq!(
                code,
                0,
                "{label}: sik {args:?} fails on the unmutated input:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            allowed.contains(&code),
            "{label}: sik {args:?} exit {code}, expected one of {allowed:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out, code)
    }

    fn input(&self, ext: &str, bytes: &[u8]) -> PathBuf {
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("input.")
            {
                std::fs::remove_file(p).unwrap();
            }
        }
        let p = self.dir.join(format!("input.{ext}"));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn clear_out(&self) -> PathBuf {
        let out = self.dir.join("out");
        if out.exists() {
            // Extraction may leave read-only directories.
            let _ = cmd("chmod").args(["-R", "u+rwx"]).arg(&out).status();
            std::fs::remove_dir_all(&out).unwrap();
        }
        out
    }

    /// inspect, inspect --json, inspect --list, extract, verify of an
    /// ExtensionImage; `ok`: the input is valid and everything but verify
    /// must succeed.
    pub fn squashfs_all(&self, label: &str, bytes: &[u8], ok: bool) -> i32 {
        self.image_cmds(label, "ExtensionImage", bytes, ok)
    }

    /// The same for an AppImage.
    pub fn image_all(&self, label: &str, bytes: &[u8], ok: bool) {
        self.image_cmds(label, "AppImage", bytes, ok);
    }

    /// Returns the exit code of extract.
    fn image_cmds(&self, label: &str, ext: &str, bytes: &[u8], ok: bool) -> i32 {
        let input = self.input(ext, bytes);
        let i = input.as_os_str();
        self.expect(label, &[os("inspect"), i], &[0, 2], ok);
        self.expect(label, &[os("inspect"), os("--json"), i], &[0, 2], ok);
        // Hostile names never reach the terminal raw: no control byte but
        // the line ends.
        let (listing, _) = self.expect_out(label, &[os("inspect"), os("--list"), i], &[0, 2], ok);
        assert!(
            !listing
                .stdout
                .iter()
                .any(|&c| (c < 0x20 && c != b'\n') || c == 0x7f),
            "{label}: inspect --list printed a control character:\n{}",
            String::from_utf8_lossy(&listing.stdout)
        );
        let out = self.clear_out();
        let code = self.expect(
            label,
            &[os("extract"), os("-q"), i, os("-o"), out.as_os_str()],
            &[0, 2],
            ok,
        );
        if code == 0 {
            assert_inside(label, &out);
        } else {
            // A failed extraction leaves no partial tree.
            assert!(
                !out.exists(),
                "{label}: a failed extract left {}",
                out.display()
            );
        }
        self.clear_out();
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| self.dir.join("sentinel"));
        self.expect(
            label,
            &[os("verify"), i, os("--trust"), key.as_os_str()],
            &[0, 1, 2],
            false,
        );
        self.sign(label, &input, ok);
        code
    }

    /// `sik sign` in place: refused with the file untouched, or signed so
    /// that `sik verify` accepts it.
    fn sign(&self, label: &str, input: &Path, ok: bool) {
        let before = std::fs::read(input).unwrap();
        let code = self.expect(
            label,
            &[
                os("sign"),
                input.as_os_str(),
                os("--key"),
                self.signer.as_os_str(),
            ],
            &[0, 2],
            ok,
        );
        if code == 0 {
            let public = self.signer.with_extension("pub");
            self.expect(
                label,
                &[
                    os("verify"),
                    input.as_os_str(),
                    os("--trust"),
                    public.as_os_str(),
                ],
                &[0],
                true,
            );
        } else {
            assert!(
                std::fs::read(input).unwrap() == before,
                "{label}: a refused sign changed the image"
            );
        }
    }

    /// `sik link --root out/root --state out/state --allow-unsigned
    /// --ignore-compat IMAGE`: exit 0, 1 (refused) or 2, and whatever it
    /// links stays in the root and the state directory. Returns the exit
    /// code.
    pub fn link(&self, label: &str, bytes: &[u8], ok: bool) -> i32 {
        let input = self.input("ExtensionImage", bytes);
        let out = self.clear_out();
        let root = out.join("root");
        let state = out.join("state");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
        let code = self.expect(
            label,
            &[
                os("link"),
                os("-q"),
                os("--root"),
                root.as_os_str(),
                os("--state"),
                state.as_os_str(),
                os("--allow-unsigned"),
                os("--ignore-compat"),
                input.as_os_str(),
            ],
            &[0, 1, 2],
            ok,
        );
        assert_inside(label, &root);
        // Whatever link left (a complete link, or an incomplete one after a
        // refusal), unlink --all takes it away: the root is as before and
        // nothing stays mounted.
        self.expect(
            label,
            &[
                os("unlink"),
                os("-q"),
                os("--all"),
                os("--root"),
                root.as_os_str(),
                os("--state"),
                state.as_os_str(),
            ],
            &[0],
            true,
        );
        let left: Vec<_> = walkdir::WalkDir::new(&root)
            .min_depth(1)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            left,
            [Path::new("etc"), Path::new("etc/os-release")],
            "{label}: unlink --all left files in the root"
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(&*out.to_string_lossy()),
            "{label}: unlink --all left a mount:\n{mounts}"
        );
        unmount_below(&out);
        self.clear_out();
        code
    }

    /// verify --trust KEY; returns the exit code.
    pub fn verify(&self, label: &str, bytes: &[u8]) -> Option<i32> {
        let input = self.input("ExtensionImage", bytes);
        let key = self.key.clone().expect("a key");
        Some(self.expect(
            label,
            &[
                os("verify"),
                input.as_os_str(),
                os("--trust"),
                key.as_os_str(),
            ],
            &[0, 1, 2],
            false,
        ))
    }

    /// `sik boot detect ISO`; returns the exit code.
    pub fn detect(&self, label: &str, bytes: &[u8]) -> i32 {
        let input = self.input("iso", bytes);
        self.expect(
            label,
            &[os("boot"), os("detect"), input.as_os_str()],
            &[0, 1, 2],
            false,
        )
    }

    /// boot detect, inspect and inspect --list of an ISO.
    pub fn iso_all(&self, label: &str, bytes: &[u8], ok: bool) {
        let input = self.input("iso", bytes);
        let i = input.as_os_str();
        self.expect(label, &[os("boot"), os("detect"), i], &[0, 1, 2], false);
        self.expect(
            label,
            &[os("boot"), os("detect"), os("--json"), i],
            &[0, 1, 2],
            false,
        );
        self.expect(label, &[os("inspect"), i], &[0, 2], ok);
        self.expect(label, &[os("inspect"), os("--json"), i], &[0, 2], ok);
    }

    /// `sik create extension SRC -o out/x.ExtensionImage`: an error (exit 2)
    /// or an image whose tree stays inside (checked by listing and
    /// extracting it). Returns the exit code of create.
    pub fn create_from(&self, label: &str, src: &Path) -> i32 {
        let etc_evil = Path::new("/etc/evil").exists();
        let out = self.clear_out();
        std::fs::create_dir(&out).unwrap();
        let image = out.join("x.ExtensionImage");
        let code = self.expect(
            label,
            &[
                os("create"),
                os("extension"),
                os("-q"),
                src.as_os_str(),
                os("-o"),
                image.as_os_str(),
            ],
            &[0, 2],
            false,
        );
        assert_eq!(
            Path::new("/etc/evil").exists(),
            etc_evil,
            "{label}: wrote /etc/evil"
        );
        if code == 0 {
            let list = run_ok(sik().args(["inspect", "--list"]).arg(&image));
            for line in list.lines() {
                // Symlink targets may point anywhere (extraction never
                // follows them); the entry's own path must not climb.
                let line = line.split(" -> ").next().unwrap_or(line);
                assert!(
                    !line.contains("/../") && !line.contains(" ../") && !line.ends_with("/.."),
                    "{label}: image keeps a climbing path: {line}"
                );
            }
            let tree = out.join("tree");
            self.expect(
                label,
                &[
                    os("extract"),
                    os("-q"),
                    image.as_os_str(),
                    os("-o"),
                    tree.as_os_str(),
                ],
                &[0, 2],
                false,
            );
            assert_inside(label, &tree);
        } else {
            let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
            assert!(
                left.is_empty(),
                "{label}: a failed create left files: {left:?}"
            );
        }
        self.clear_out();
        code
    }
}

/// Unmount everything mounted below `dir` (deepest first).
fn unmount_below(dir: &Path) {
    let root = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = cmd("umount").arg("-l").arg(p).status();
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// Every symlink extracted below `root` is a symlink (never followed: the
/// walk does not follow links) and every entry's real path is inside.
fn assert_inside(label: &str, root: &Path) {
    if !root.exists() {
        return;
    }
    let real_root = std::fs::canonicalize(root).unwrap();
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.unwrap();
        let parent = e.path().parent().map(|p| std::fs::canonicalize(p).unwrap());
        if let Some(p) = parent {
            assert!(
                p.starts_with(&real_root) || e.path() == root,
                "{label}: extracted {} lies outside {}",
                e.path().display(),
                root.display()
            );
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
/// An ISO 9660 "both-endian" field: little-endian then big-endian.
fn both32(v: u32) -> Vec<u8> {
    let mut x = v.to_le_bytes().to_vec();
    x.extend(v.to_be_bytes());
    x
}
fn both16(v: u16) -> Vec<u8> {
    let mut x = v.to_le_bytes().to_vec();
    x.extend(v.to_be_bytes());
    x
}
fn with(b: &[u8], o: usize, v: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    m[o..o + v.len()].copy_from_slice(v);
    m
}
fn truncs(b: &[u8], at: &[u64], prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut seen = std::collections::BTreeSet::new();
    at.iter()
        .filter(|&&a| (a as usize) < b.len() && seen.insert(a))
        .map(|&a| (format!("{prefix}truncate-{a}"), b[..a as usize].to_vec()))
        .collect()
}

/// SquashFS: truncated at every table start, flipped superblock and
/// metadata bytes, absurd superblock fields.
pub fn squashfs_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let bytes_used = u64_at(b, 40);
    let tables = [
        ("id", u64_at(b, 48)),
        ("xattr", u64_at(b, 56)),
        ("inode", u64_at(b, 64)),
        ("dir", u64_at(b, 72)),
        ("frag", u64_at(b, 80)),
        ("export", u64_at(b, 88)),
    ];
    let mut at = vec![0, 4, 95, 96, bytes_used - 1, bytes_used];
    for (_, t) in tables {
        if t < bytes_used {
            at.extend([t, t + 1, t + 9]);
        }
    }
    let mut m = truncs(b, &at, "");
    // Superblock bit flips: every byte, its top bit.
    for o in 0..96 {
        let mut v = b.to_vec();
        v[o] ^= 0x80;
        m.push((format!("flip-sb-{o}"), v));
    }
    // Flips through the inode, directory, fragment and id tables.
    let start = u64_at(b, 64) as usize;
    let end = bytes_used as usize;
    let step = ((end - start) / 48).max(1);
    for o in (start..end).step_by(step) {
        let mut v = b.to_vec();
        v[o] ^= 0xff;
        m.push((format!("flip-meta-{o}"), v));
    }
    let big = (b.len() as u64 * 100).to_le_bytes();
    for (name, off, val) in [
        ("inode-count-max", 4, u32::MAX.to_le_bytes().to_vec()),
        ("inode-count-0", 4, 0u32.to_le_bytes().to_vec()),
        ("block-size-3", 12, 3u32.to_le_bytes().to_vec()),
        ("block-size-0", 12, 0u32.to_le_bytes().to_vec()),
        ("block-size-2g", 12, (1u32 << 31).to_le_bytes().to_vec()),
        ("block-size-1m", 12, (1u32 << 20).to_le_bytes().to_vec()),
        ("frag-count-max", 16, u32::MAX.to_le_bytes().to_vec()),
        ("compressor-99", 20, 99u16.to_le_bytes().to_vec()),
        ("block-log-255", 22, 255u16.to_le_bytes().to_vec()),
        ("id-count-max", 26, u16::MAX.to_le_bytes().to_vec()),
        ("id-count-0", 26, 0u16.to_le_bytes().to_vec()),
        ("version-5", 28, 5u16.to_le_bytes().to_vec()),
        ("root-inode-max", 32, u64::MAX.to_le_bytes().to_vec()),
        ("bytes-used-x100", 40, big.to_vec()),
        ("bytes-used-max", 40, u64::MAX.to_le_bytes().to_vec()),
        ("bytes-used-0", 40, 0u64.to_le_bytes().to_vec()),
        ("id-table-max", 48, (u64::MAX - 10).to_le_bytes().to_vec()),
        ("id-table-past", 48, big.to_vec()),
        (
            "inode-table-max",
            64,
            (u64::MAX - 10).to_le_bytes().to_vec(),
        ),
        ("inode-table-past", 64, big.to_vec()),
        ("dir-table-max", 72, (u64::MAX - 10).to_le_bytes().to_vec()),
        ("dir-table-0", 72, 0u64.to_le_bytes().to_vec()),
        ("frag-table-max", 80, (u64::MAX - 10).to_le_bytes().to_vec()),
        ("frag-table-0", 80, 0u64.to_le_bytes().to_vec()),
    ] {
        m.push((name.to_string(), with(b, off, &val)));
    }
    m
}

/// SquashFS with uncompressed directory table: entry names rewritten (same
/// length) to climb out, contain `/` or a NUL byte.
pub fn name_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let dir = u64_at(b, 72) as usize;
    let mut m = Vec::new();
    for (name, old, new) in [
        ("dotdot", &b"a.txt"[..], &b"../.."[..]),
        ("dotdot-etc", b"hostile.conf", b"../../../etc"),
        ("dot", b"a.txt", b".\0\0\0\0"),
        ("slash", b"b.bin", b"b/bin"),
        ("absolute", b"b.bin", b"/etc/"),
        ("nul", b"b.bin", b"b\0bin"),
    ] {
        let i = dir
            + b[dir..]
                .windows(old.len())
                .position(|w| w == old)
                .unwrap_or_else(|| panic!("{name}: no entry {old:?} in the directory table"));
        m.push((format!("name-{name}"), with(b, i, new)));
    }
    m
}

/// One entry of an uncompressed directory table: where it is, its name,
/// the start block and inode number base of its header, its inode offset
/// within that block and its inode number delta.
struct DirEntry {
    at: usize,
    name: Vec<u8>,
    start: u32,
    base: u32,
    offset: u16,
}

/// The entries of an image whose directory table is one uncompressed
/// metadata block (`mksquashfs -noI -noD` of a small tree).
fn dir_entries(b: &[u8]) -> Vec<DirEntry> {
    let dir = u64_at(b, 72) as usize;
    let len = (u16_at(b, dir) & 0x7fff) as usize;
    let end = dir + 2 + len;
    let mut pos = dir + 2;
    let mut out = Vec::new();
    while pos + 12 <= end {
        let count = u32_at(b, pos) as usize + 1;
        let start = u32_at(b, pos + 4);
        let base = u32_at(b, pos + 8);
        pos += 12;
        for _ in 0..count {
            let offset = u16_at(b, pos);
            let size = u16_at(b, pos + 6) as usize + 1;
            out.push(DirEntry {
                at: pos,
                name: b[pos + 8..pos + 8 + size].to_vec(),
                start,
                base,
                offset,
            });
            pos += 8 + size;
        }
    }
    out
}

/// SquashFS (uncompressed metadata) with directory loops: the directory
/// `empty` made an alias of the root, `hostile` an alias of its parent
/// `share` (both the inode reference the kernel follows and the inode
/// number backhand follows are rewritten).
pub fn dir_loop_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let entries = dir_entries(b);
    let find = |n: &[u8]| {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("no directory entry {n:?}"))
    };
    let inode_number = |start: u32, offset: u16| {
        let table = u64_at(b, 64) as usize;
        assert_eq!(start, 0, "small images keep their inodes in one block");
        u32_at(b, table + 2 + offset as usize + 12)
    };
    let root = u64_at(b, 32);
    let (root_start, root_offset) = ((root >> 16) as u32, (root & 0xffff) as u16);
    let root_number = inode_number(root_start, root_offset);
    let share = find(b"share");
    let share_number = inode_number(share.start, share.offset);
    let mut m = Vec::new();
    for (name, entry, offset, number) in [
        ("dir-loop-to-root", find(b"empty"), root_offset, root_number),
        (
            "dir-loop-to-parent",
            find(b"hostile"),
            share.offset,
            share_number,
        ),
    ] {
        let mut v = b.to_vec();
        v[entry.at..entry.at + 2].copy_from_slice(&offset.to_le_bytes());
        let delta = i16::try_from(i64::from(number) - i64::from(entry.base)).unwrap();
        v[entry.at + 2..entry.at + 4].copy_from_slice(&delta.to_le_bytes());
        m.push((name.to_string(), v));
    }
    m
}

/// ELF / AppImage: truncated headers, sections out of the file, overlapping
/// sections, absurd counts; garbage signatures.
pub fn elf_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let len = b.len() as u64;
    let shoff = u64_at(b, 0x28) as usize;
    let shnum = u16_at(b, 0x3c) as usize;
    let shstrndx = u16_at(b, 0x3e) as usize;
    let sh = |i: usize| shoff + i * 64;
    let str_off = u64_at(b, sh(shstrndx) + 0x18) as usize;
    let name_of = |i: usize| {
        let n = str_off + u32_at(b, sh(i)) as usize;
        let end = b[n..].iter().position(|&c| c == 0).unwrap_or(0);
        String::from_utf8_lossy(&b[n..n + end]).into_owned()
    };
    let mut at = vec![
        0,
        4,
        32,
        63,
        64,
        0x40 + 56,
        shoff as u64,
        (sh(shnum / 2)) as u64,
    ];
    at.extend([
        sh(shnum) as u64 - 1,
        sh(shnum) as u64,
        sh(shnum) as u64 + 100,
    ]);
    at.push(len / 2);
    at.push(len - 1);
    let mut m = truncs(b, &at, "");
    for (name, off, val) in [
        ("shoff-past", 0x28, (len + 10).to_le_bytes().to_vec()),
        ("shoff-max", 0x28, (u64::MAX - 5).to_le_bytes().to_vec()),
        ("shoff-0", 0x28, 0u64.to_le_bytes().to_vec()),
        ("phoff-max", 0x20, (u64::MAX - 5).to_le_bytes().to_vec()),
        ("phnum-max", 0x38, u16::MAX.to_le_bytes().to_vec()),
        ("shentsize-1", 0x3a, 1u16.to_le_bytes().to_vec()),
        ("shentsize-max", 0x3a, u16::MAX.to_le_bytes().to_vec()),
        ("shnum-max", 0x3c, u16::MAX.to_le_bytes().to_vec()),
        ("shnum-0", 0x3c, 0u16.to_le_bytes().to_vec()),
        ("shstrndx-max", 0x3e, 0xfffeu16.to_le_bytes().to_vec()),
        ("class-32", 4, vec![1]),
        ("big-endian", 5, vec![2]),
    ] {
        m.push((name.to_string(), with(b, off, &val)));
    }
    for i in 1..shnum {
        let name = name_of(i).replace('.', "");
        let o = sh(i);
        m.push((
            format!("sec{i}-{name}-offset-past"),
            with(b, o + 0x18, &(len + 100).to_le_bytes()),
        ));
        m.push((
            format!("sec{i}-{name}-size-max"),
            with(b, o + 0x20, &u64::MAX.to_le_bytes()),
        ));
        m.push((
            format!("sec{i}-{name}-name-max"),
            with(b, o, &u32::MAX.to_le_bytes()),
        ));
        if matches!(
            name_of(i).as_str(),
            ".sha256_sig" | ".sig_key" | ".upd_info" | ".shstrtab"
        ) {
            // Overlap the previous section, cover the whole file, end just
            // past the file.
            let prev = b[sh(i - 1) + 0x18..sh(i - 1) + 0x20].to_vec();
            m.push((
                format!("sec{i}-{name}-overlap-prev"),
                with(b, o + 0x18, &prev),
            ));
            let mut v = with(b, o + 0x18, &0u64.to_le_bytes());
            v[o + 0x20..o + 0x28].copy_from_slice(&len.to_le_bytes());
            m.push((format!("sec{i}-{name}-whole-file"), v));
            let mut v = with(b, o + 0x18, &(len - 8).to_le_bytes());
            v[o + 0x20..o + 0x28].copy_from_slice(&64u64.to_le_bytes());
            m.push((format!("sec{i}-{name}-straddles-end"), v));
            m.push((
                format!("sec{i}-{name}-size-1g"),
                with(b, o + 0x20, &(1u64 << 30).to_le_bytes()),
            ));
            // Garbage contents.
            let off = u64_at(b, o + 0x18) as usize;
            let size = (u64_at(b, o + 0x20) as usize).min(4096);
            if off + size <= b.len() && size > 0 {
                let mut v = b.to_vec();
                v[off..off + size].fill(b'A');
                m.push((format!("sec{i}-{name}-garbage"), v.clone()));
                let armor = b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAf////8=\n-----END SSH SIGNATURE-----\n";
                let n = armor.len().min(size);
                v[off..off + size].fill(0);
                v[off..off + n].copy_from_slice(&armor[..n]);
                m.push((format!("sec{i}-{name}-armored-absurd"), v));
            }
        }
    }
    m
}

/// ISO 9660: truncated around the PVD and the root directory, absurd sizes,
/// directory cycles.
pub fn iso_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    const PVD: usize = 16 * 2048;
    const ROOT: usize = PVD + 156;
    let root_lba = u32_at(b, ROOT + 2) as usize;
    let root_len = u32_at(b, ROOT + 10) as usize;
    let rd = root_lba * 2048;
    let at = [
        PVD as u64 - 1,
        PVD as u64,
        PVD as u64 + 1,
        PVD as u64 + 190,
        PVD as u64 + 2048,
        rd as u64,
        rd as u64 + 40,
        rd as u64 + 100,
        (rd + root_len) as u64 - 1,
        b.len() as u64 / 2,
    ];
    let mut m = truncs(b, &at, "");
    for (name, off, val) in [
        ("space-size-max", PVD + 80, both32(u32::MAX)),
        ("block-size-0", PVD + 128, both16(0)),
        ("block-size-1", PVD + 128, both16(1)),
        ("path-table-size-max", PVD + 132, both32(u32::MAX)),
        (
            "path-table-lba-max",
            PVD + 140,
            u32::MAX.to_le_bytes().to_vec(),
        ),
        ("root-extent-max", ROOT + 2, both32(0xffff_fff0)),
        ("root-extent-pvd", ROOT + 2, both32(16)),
        ("root-extent-0", ROOT + 2, both32(0)),
        ("root-len-max", ROOT + 10, both32(u32::MAX)),
        ("root-len-0", ROOT + 10, both32(0)),
        ("root-reclen-0", ROOT, vec![0]),
        ("root-reclen-255", ROOT, vec![255]),
        ("root-namelen-255", ROOT + 32, vec![255]),
    ] {
        m.push((name.to_string(), with(b, off, &val)));
    }
    // Directory records of the root directory and of its subdirectories.
    let records = |dir_lba: usize, dir_len: usize| {
        let mut r = Vec::new();
        let mut o = dir_lba * 2048;
        let end = (o + dir_len).min(b.len());
        while o < end {
            let l = b[o] as usize;
            if l == 0 {
                // Records do not cross sector boundaries.
                o = (o / 2048 + 1) * 2048;
                continue;
            }
            let nlen = b[o + 32] as usize;
            let name = b[o + 33..o + 33 + nlen].to_vec();
            r.push((o, name, b[o + 25] & 2 != 0));
            o += l;
        }
        r
    };
    let mut k = 0;
    for (o, name, is_dir) in records(root_lba, root_len) {
        let pretty: String = name
            .iter()
            .map(|&c| {
                if c.is_ascii_alphanumeric() {
                    c as char
                } else {
                    '_'
                }
            })
            .collect();
        m.push((format!("rec-{pretty}-reclen-1"), with(b, o, &[1])));
        m.push((
            format!("rec-{pretty}-len-max"),
            with(b, o + 10, &both32(u32::MAX)),
        ));
        if !is_dir || name == [0] || name == [1] {
            m.push((
                format!("rec-{pretty}-extent-max"),
                with(b, o + 2, &both32(0xffff_fff0)),
            ));
            continue;
        }
        // Cycle: the subdirectory is its parent (the root).
        m.push((
            format!("cycle-{pretty}-to-root"),
            with(b, o + 2, &both32(root_lba as u32)),
        ));
        let sub_lba = u32_at(b, o + 2) as usize;
        let sub_len = u32_at(b, o + 10) as usize;
        for (so, sname, sdir) in records(sub_lba, sub_len) {
            if sdir && sname != [0] && sname != [1] {
                k += 1;
                // Cycle: the grandchild points back at its parent and at
                // the root.
                m.push((
                    format!("cycle-{pretty}-{k}-to-parent"),
                    with(b, so + 2, &both32(sub_lba as u32)),
                ));
                m.push((
                    format!("cycle-{pretty}-{k}-to-root"),
                    with(b, so + 2, &both32(root_lba as u32)),
                ));
            }
        }
    }
    m
}

/// ISO 9660 with Rock Ridge and Joliet: the names of `vmlinuz` rewritten
/// (same length) to climb out, hold `/` or NUL, in the Rock Ridge `NM`
/// entries and the Joliet records; `NM` and `CE` entries with absurd
/// lengths, continuation areas outside the file; the Joliet root moved.
pub fn iso_name_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let ucs2 = |s: &[u8]| s.iter().flat_map(|&c| [0u8, c]).collect::<Vec<u8>>();
    let replace_all = |from: &[u8], to: &[u8], ctx: &dyn Fn(usize) -> bool| {
        let mut v = b.to_vec();
        let mut n = 0;
        let mut i = 0;
        while let Some(p) = v[i..].windows(from.len()).position(|w| w == from) {
            let at = i + p;
            if ctx(at) {
                v[at..at + from.len()].copy_from_slice(to);
                n += 1;
            }
            i = at + 1;
        }
        (v, n)
    };
    // An `NM` entry: "NM", length, version 1, flags, then the name.
    let after_nm = |at: usize| at >= 5 && &b[at - 5..at - 3] == b"NM" && b[at - 2] == 1;
    let anywhere = |_: usize| true;
    let mut m = Vec::new();
    for (name, to) in [
        ("dotdot", &b"../../x"[..]),
        ("slash", b"vm/linu"),
        ("nul", b"vm\0linu"),
        ("all-nul", b"\0\0\0\0\0\0\0"),
        ("dot", b".\0\0\0\0\0\0"),
    ] {
        let (v, n) = replace_all(b"vmlinuz", to, &after_nm);
        assert!(n > 0, "no Rock Ridge NM entry for vmlinuz");
        m.push((format!("rr-name-{name}"), v));
        let (v, n) = replace_all(&ucs2(b"vmlinuz"), &ucs2(to), &anywhere);
        assert!(n > 0, "no Joliet name vmlinuz");
        m.push((format!("joliet-name-{name}"), v));
    }
    let mut k = 0;
    for at in 0..b.len().saturating_sub(4) {
        // NM and CE entries of version 1 in directory records.
        if &b[at..at + 2] == b"NM" && b[at + 3] == 1 && b[at + 2] as usize >= 5 {
            k += 1;
            if k % 3 == 1 {
                for (what, len) in [("0", 0u8), ("3", 3), ("255", 255)] {
                    m.push((format!("rr-nm{k}-len-{what}"), with(b, at + 2, &[len])));
                }
            }
        }
        if &b[at..at + 2] == b"CE" && b[at + 2] == 28 && b[at + 3] == 1 {
            m.push((
                format!("rr-ce{at}-lba-max"),
                with(b, at + 4, &both32(0xffff_fff0)),
            ));
            m.push((
                format!("rr-ce{at}-offset-past"),
                with(b, at + 12, &both32(4000)),
            ));
            m.push((
                format!("rr-ce{at}-len-max"),
                with(b, at + 20, &both32(u32::MAX)),
            ));
            m.push((format!("rr-ce{at}-len-0"), with(b, at + 2, &[0])));
        }
    }
    assert!(
        m.iter().any(|(n, _)| n.starts_with("rr-ce")),
        "the ISO has no Rock Ridge continuation area"
    );
    // Joliet's supplementary volume descriptor (sector 17 with xorriso):
    // its root directory moved out of the file and onto the PVD's root.
    const SVD: usize = 17 * 2048;
    if b.len() > SVD + 200 && b[SVD] == 2 && &b[SVD + 1..SVD + 6] == b"CD001" {
        let pvd_root = u32_at(b, 16 * 2048 + 156 + 2);
        m.push((
            "joliet-root-extent-max".into(),
            with(b, SVD + 156 + 2, &both32(0xffff_fff0)),
        ));
        m.push((
            "joliet-root-on-pvd-root".into(),
            with(b, SVD + 156 + 2, &both32(pvd_root)),
        ));
        m.push((
            "joliet-root-len-max".into(),
            with(b, SVD + 156 + 10, &both32(u32::MAX)),
        ));
    }
    m
}

/// Signature block of a signed ExtensionImage: truncated, garbage, absurd
/// footer fields and entry lengths.
pub fn signature_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let len = b.len();
    let f = len - 32;
    assert_eq!(&b[f..f + 8], b"SIK-SIG\0", "signed image ends in a footer");
    let p = u64_at_be(b, len - 8) as usize;
    let mut m = truncs(
        b,
        &[
            p as u64 + 1,
            p as u64 + 4,
            (p + 100) as u64,
            f as u64,
            f as u64 + 8,
            len as u64 - 1,
        ],
        "",
    );
    let be32 = |v: u32| v.to_be_bytes().to_vec();
    let be64 = |v: u64| v.to_be_bytes().to_vec();
    for (name, off, val) in [
        ("version-2", f + 8, be32(2)),
        ("count-0", f + 12, be32(0)),
        ("count-17", f + 12, be32(17)),
        ("count-max", f + 12, be32(u32::MAX)),
        ("block-len-0", f + 16, be64(0)),
        ("block-len-32", f + 16, be64(32)),
        ("block-len-max", f + 16, be64(u64::MAX)),
        ("block-len-file", f + 16, be64(len as u64 + 1)),
        ("payload-len-0", f + 24, be64(0)),
        ("payload-len-max", f + 24, be64(u64::MAX)),
        ("payload-len-next", f + 24, be64(p as u64 + 4096)),
        ("entry-len-max", p, be32(u32::MAX)),
        ("entry-len-0", p, be32(0)),
        ("entry-len-past-footer", p, be32((f - p) as u32)),
        ("blob-len-field-max", p + 4 + 6 + 4, be32(u32::MAX)),
    ] {
        m.push((name.to_string(), with(b, off, &val)));
    }
    let mut v = b.to_vec();
    v[p..f].fill(0x41);
    m.push(("garbage-entries".into(), v));
    let mut v = b.to_vec();
    v[p..].fill(0xff);
    m.push(("garbage-block".into(), v));
    for o in (p..f).step_by(23) {
        let mut v = b.to_vec();
        v[o] ^= 0x01;
        m.push((format!("flip-blob-{}", o - p), v));
    }
    // A footer alone claiming the whole file as its block, and one claiming
    // a payload of 0 bytes.
    let mut v = b[..p].to_vec();
    v.extend_from_slice(&b[f..]);
    let l = v.len();
    v[l - 16..l - 8].copy_from_slice(&32u64.to_be_bytes());
    m.push(("footer-only".into(), v));
    m
}

fn u64_at_be(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}

/// One entry of a hand-written ustar archive (GNU tar refuses to write most
/// of these).
pub struct TarEntry {
    name: String,
    kind: u8,
    link: String,
    data: Vec<u8>,
    size: Option<String>,
}

impl TarEntry {
    pub fn file(name: &str, data: &[u8]) -> Self {
        TarEntry {
            name: name.into(),
            kind: b'0',
            link: String::new(),
            data: data.to_vec(),
            size: None,
        }
    }
    pub fn dir(name: &str) -> Self {
        TarEntry {
            kind: b'5',
            ..Self::file(name, b"")
        }
    }
    pub fn symlink(name: &str, target: &str) -> Self {
        TarEntry {
            kind: b'2',
            link: target.into(),
            ..Self::file(name, b"")
        }
    }
    pub fn hardlink(name: &str, target: &str) -> Self {
        TarEntry {
            kind: b'1',
            link: target.into(),
            ..Self::file(name, b"")
        }
    }
    /// A regular file whose size field says `octal` but which has no data.
    pub fn raw_size(name: &str, octal: &str) -> Self {
        TarEntry {
            size: Some(octal.into()),
            ..Self::file(name, b"")
        }
    }
}

/// A ustar archive of `entries`, ended by two zero blocks.
pub fn build_tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        let name = e.name.as_bytes();
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        let mode: &[u8] = if e.kind == b'5' {
            b"0000755\0"
        } else {
            b"0000644\0"
        };
        h[100..108].copy_from_slice(mode);
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let size = e
            .size
            .clone()
            .unwrap_or_else(|| format!("{:011o}", e.data.len()));
        h[124..124 + size.len()].copy_from_slice(size.as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = e.kind;
        let link = e.link.as_bytes();
        h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&c| c as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// .deb (ar archive): member sizes absurd, past the end, not numbers; the
/// archive truncated inside each member.
pub fn deb_mutants(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert_eq!(&b[..8], b"!<arch>\n");
    let mut m = Vec::new();
    let mut o = 8;
    let mut i = 0;
    while o + 60 <= b.len() {
        let size: usize = String::from_utf8_lossy(&b[o + 48..o + 58])
            .trim()
            .parse()
            .unwrap();
        for (name, val) in [
            ("size-max", b"9999999999"),
            ("size-0", b"0         "),
            ("size-nan", b"abc       "),
            ("size-neg", b"-1        "),
        ] {
            m.push((format!("member{i}-{name}"), with(b, o + 48, val)));
        }
        let past = format!("{:<10}", b.len() - o);
        m.push((
            format!("member{i}-size-past-end"),
            with(b, o + 48, past.as_bytes()),
        ));
        m.push((format!("member{i}-truncated-header"), b[..o + 30].to_vec()));
        m.push((
            format!("member{i}-truncated-data"),
            b[..o + 60 + size / 2].to_vec(),
        ));
        o += 60 + size + (size & 1);
        i += 1;
    }
    m.push(("no-magic".into(), with(b, 0, b"!<arcx>\n")));
    m
}
