//! Distribution packages as sources: Debian `.deb`, RPM `.rpm` and Arch
//! Linux `.pkg.tar.*`. Each gives its files (as the package lists them:
//! modes, symlinks, hard links) and its facts (name, version, architecture,
//! format), which go into the extension-release file. Package metadata is
//! not content: the `.deb` control archive, the RPM header, the Arch
//! `.PKGINFO`, `.MTREE`, `.BUILDINFO`, `.INSTALL` and `.CHANGELOG` files.
//! Maintainer scripts are never run; their presence is reported so the
//! user knows what the package expected to happen at install time.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use sik_image::release::PackageFact;

use crate::Error;
use crate::ingest::{Body, Ingest};
use crate::source::{clamp_mtime, normalize_archive_path, open_deb_member};
use crate::squashfs::Meta;

/// Files at the root of an Arch package that describe it and are not content.
pub const ARCH_METADATA: &[&str] = &[".PKGINFO", ".MTREE", ".BUILDINFO", ".INSTALL", ".CHANGELOG"];

/// Debian maintainer scripts (in the control archive).
const DEB_SCRIPTS: &[&str] = &["preinst", "postinst", "prerm", "postrm", "config"];

/// What a package source is, besides its files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageFacts {
    /// Name, version, architecture and format.
    #[serde(flatten)]
    pub fact: PackageFact,
    /// Maintainer scripts the package has (not run), e.g. `postinst`,
    /// `.INSTALL`, `%post`.
    pub scripts: Vec<String>,
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::BadSource {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// The facts of a `.deb`: its control file's `Package`, `Version` and
/// `Architecture`, and which maintainer scripts it has.
pub fn deb_facts(path: &Path) -> Result<PackageFacts, Error> {
    let stream = open_deb_member(path, "control.tar")?;
    let mut archive = tar::Archive::new(stream);
    let mut control = None;
    let mut scripts = Vec::new();
    for entry in archive.entries().map_err(|e| Error::source(path, e))? {
        let mut entry = entry.map_err(|e| Error::source(path, e))?;
        let raw = entry.path_bytes().into_owned();
        let Ok(Some(rel)) = normalize_archive_path(&raw) else {
            continue;
        };
        let name = String::from_utf8_lossy(&rel).into_owned();
        if name == "control" {
            let mut text = Vec::new();
            (&mut entry)
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(|e| Error::source(path, e))?;
            control = Some(String::from_utf8_lossy(&text).into_owned());
        } else if DEB_SCRIPTS.contains(&name.as_str()) {
            scripts.push(name);
        }
    }
    let control = control.ok_or_else(|| bad(path, "Debian package has no control file"))?;
    let field = |key: &str| {
        control.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().to_string())
        })
    };
    let fact = PackageFact {
        format: "deb".into(),
        name: field("Package").ok_or_else(|| bad(path, "control file has no Package field"))?,
        version: field("Version").ok_or_else(|| bad(path, "control file has no Version field"))?,
        arch: field("Architecture").unwrap_or_else(|| "all".into()),
    };
    checked(path, PackageFacts { fact, scripts })
}

/// The facts of an Arch package from its `.PKGINFO` (`pkgname`, `pkgver`,
/// `arch` lines of `key = value`); `install` says whether it has an
/// `.INSTALL` script.
pub fn arch_facts(path: &Path, pkginfo: &[u8], install: bool) -> Result<PackageFacts, Error> {
    let text = String::from_utf8_lossy(pkginfo);
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let fact = PackageFact {
        format: "arch".into(),
        name: field("pkgname").ok_or_else(|| bad(path, ".PKGINFO has no pkgname"))?,
        version: field("pkgver").ok_or_else(|| bad(path, ".PKGINFO has no pkgver"))?,
        arch: field("arch").unwrap_or_else(|| "any".into()),
    };
    let scripts = if install {
        vec![".INSTALL".to_string()]
    } else {
        Vec::new()
    };
    checked(path, PackageFacts { fact, scripts })
}

/// Facts whose fields cannot be recorded are an error naming the field.
fn checked(path: &Path, facts: PackageFacts) -> Result<PackageFacts, Error> {
    let f = &facts.fact;
    for (what, v) in [
        ("name", &f.name),
        ("version", &f.version),
        ("architecture", &f.arch),
    ] {
        if !sik_image::release::package_field_ok(v) {
            return Err(bad(
                path,
                format!(
                    "package {what} {v:?} has characters other than letters, digits and ._+~^:@-"
                ),
            ));
        }
    }
    Ok(facts)
}

/// Size of an RPM lead, the fixed block before the signature header.
const RPM_LEAD: u64 = 96;
/// Header structure magic (`8E AD E8`, version 1) and 4 reserved bytes.
const RPM_HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// Limits rpm itself applies to a header (`hdrchkTags`, `hdrchkData`):
/// at most 0xffff index entries and 256 MiB of data.
const RPM_MAX_ENTRIES: u32 = 0xffff;
const RPM_MAX_DATA: u32 = 0x0fff_ffff;

/// Check the structure of an RPM's signature and main headers before the
/// `rpm` crate parses them: magic, entry count and data size within rpm's
/// own limits and inside the file, and every index entry's offset inside
/// its header's data. A hostile header would otherwise make that parser
/// allocate gigabytes or index past its data (a panic).
fn check_rpm_headers(file: &File) -> Result<(), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut at = RPM_LEAD;
    for (n, what) in ["signature header", "header"].iter().enumerate() {
        let mut intro = [0u8; 16];
        file.read_exact_at(&mut intro, at)
            .map_err(|_| format!("{what} at byte {at}: truncated"))?;
        if intro[..4] != RPM_HEADER_MAGIC {
            return Err(format!("{what} at byte {at}: no header magic"));
        }
        let entries = u32::from_be_bytes([intro[8], intro[9], intro[10], intro[11]]);
        let data = u32::from_be_bytes([intro[12], intro[13], intro[14], intro[15]]);
        if entries > RPM_MAX_ENTRIES || data > RPM_MAX_DATA {
            return Err(format!(
                "{what} at byte {at}: {entries} entries and {data} bytes of data exceed rpm's limits"
            ));
        }
        let index_at = at + 16;
        let data_at = index_at + u64::from(entries) * 16;
        let end = data_at + u64::from(data);
        if end > len {
            return Err(format!(
                "{what} at byte {at}: {entries} entries and {data} bytes of data end past the file ({len} bytes)"
            ));
        }
        let mut index = vec![0u8; entries as usize * 16];
        file.read_exact_at(&mut index, index_at)
            .map_err(|e| format!("{what}: {e}"))?;
        for (i, e) in index.chunks_exact(16).enumerate() {
            let kind = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            let offset = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            let count = u32::from_be_bytes([e[12], e[13], e[14], e[15]]);
            if offset > data {
                return Err(format!(
                    "{what} at byte {at}: entry {i} points at {offset}, past its {data} bytes of data"
                ));
            }
            // The fewest bytes one item of each type takes (NULL: none;
            // CHAR, INT8, BIN: 1; INT16: 2; INT32: 4; INT64: 8; the string
            // types at least their terminating NUL).
            let item: u64 = match kind {
                0 => 0,
                1 | 2 | 6..=9 => 1,
                3 => 2,
                4 => 4,
                5 => 8,
                _ => {
                    return Err(format!(
                        "{what} at byte {at}: entry {i} has unknown type {kind}"
                    ));
                }
            };
            if u64::from(offset) + u64::from(count) * item > u64::from(data) {
                return Err(format!(
                    "{what} at byte {at}: entry {i} claims {count} items at {offset}, past its {data} bytes of data"
                ));
            }
        }
        // The signature header's data is padded to 8 bytes.
        at = if n == 0 { end.div_ceil(8) * 8 } else { end };
    }
    Ok(())
}

/// Feed an RPM package's payload (streamed; cpio in gzip, xz or zstd) into
/// `ingest` and return its facts. Owners are root unless `--keep-owner`,
/// which only knows `root` (RPM records owner names, not numbers). Ghost
/// files (`%ghost`: not in the payload) are left out; files without payload
/// content that share their digest with a file that has it are its hard
/// links, as rpm installs them.
///
/// The header digests are checked before anything is read, and the
/// payload's SHA-256 (`PAYLOADSHA256`, in every package rpm ≥ 4.14 builds)
/// over exactly the bytes that were decompressed, before the image is
/// finished: a damaged or truncated package is an error, not a partial
/// extension.
pub(crate) fn ingest_rpm(ingest: &mut Ingest<'_>, path: &Path) -> Result<PackageFacts, Error> {
    let rpm_err = |e: rpm::Error| bad(path, format!("RPM package: {e}"));
    let io_err = |e: std::io::Error| Error::source(path, e);
    let file = File::open(path).map_err(io_err)?;
    check_rpm_headers(&file).map_err(|why| bad(path, format!("RPM package: {why}")))?;
    let (payload_at, expected) = {
        let mut probe = BufReader::new(file.try_clone().map_err(io_err)?);
        let md = rpm::PackageMetadata::parse(&mut probe).map_err(rpm_err)?;
        match md.verify_digests() {
            Ok(()) | Err(rpm::Error::NoHeaderDigestError) => {}
            Err(e) => return Err(rpm_err(e)),
        }
        let expected = md
            .header
            .get_entry_data_as_string_array(rpm::IndexTag::RPMTAG_PAYLOADSHA256)
            .ok()
            .and_then(|v| v.first().map(|s| s.to_ascii_lowercase()));
        (probe.stream_position().map_err(io_err)?, expected)
    };
    let state = Arc::new(Mutex::new(PayloadHash {
        pos: 0,
        start: payload_at,
        hasher: Sha256::new(),
    }));
    let input = HashingFile {
        file: file.try_clone().map_err(io_err)?,
        state: Arc::clone(&state),
    };
    let mut reader =
        rpm::PackageReader::parse(BufReader::with_capacity(1 << 16, input)).map_err(rpm_err)?;
    let md = &reader.metadata;
    let epoch = md.get_epoch().ok().filter(|&e| e != 0);
    let version = format!(
        "{}{}-{}",
        epoch.map(|e| format!("{e}:")).unwrap_or_default(),
        md.get_version().map_err(rpm_err)?,
        md.get_release().map_err(rpm_err)?
    );
    let mut scripts = Vec::new();
    for (name, present) in [
        ("%pre", md.get_pre_install_script().is_ok()),
        ("%post", md.get_post_install_script().is_ok()),
        ("%preun", md.get_pre_uninstall_script().is_ok()),
        ("%postun", md.get_post_uninstall_script().is_ok()),
        ("%pretrans", md.get_pre_trans_script().is_ok()),
        ("%posttrans", md.get_post_trans_script().is_ok()),
    ] {
        if present {
            scripts.push(name.to_string());
        }
    }
    let facts = checked(
        path,
        PackageFacts {
            fact: PackageFact {
                format: "rpm".into(),
                name: md.get_name().map_err(rpm_err)?.to_string(),
                version,
                arch: md.get_arch().unwrap_or("noarch").to_string(),
            },
            scripts,
        },
    )?;
    // Content of regular files by RPM digest, for the hard links that
    // carry none.
    let mut by_digest: HashMap<String, Vec<u8>> = HashMap::new();
    let mut deferred: Vec<(Vec<u8>, Meta, u32, String)> = Vec::new();
    while let Some(mut file) = reader.next_file().map_err(rpm_err)? {
        let e = file.metadata.clone();
        if e.flags().contains(rpm::FileFlags::GHOST) {
            continue;
        }
        let p = e.path();
        let raw = p.as_os_str().as_encoded_bytes();
        let Some(rel) = normalize_archive_path(raw.strip_prefix(b"/").unwrap_or(raw))
            .map_err(|why| bad(path, why.to_string()))?
        else {
            continue;
        };
        if ingest.excluded(&rel) {
            continue;
        }
        let (uid, gid) = if ingest.opts.keep_owner {
            let id = |n: &str| {
                (n == "root").then_some(0u32).ok_or_else(|| {
                    bad(
                        path,
                        format!(
                            "{} is owned by {n:?}; RPM records names, not numbers: leave out --keep-owner",
                            p.display()
                        ),
                    )
                })
            };
            (id(e.user())?, id(e.group())?)
        } else {
            (0, 0)
        };
        let perms = e.permissions();
        let meta = Meta {
            mode: perms & 0o7777,
            uid,
            gid,
            mtime: clamp_mtime(i64::from(e.modified_at().0)),
            xattrs: Vec::new(),
        };
        let mode = u32::from(e.mode());
        let digest = e.digest().map(|d| format!("{d:?}"));
        let body = match e.file_type() {
            rpm::FileType::Dir => Body::Dir,
            rpm::FileType::Regular if !file.has_payload() && e.size() > 0 => {
                deferred.push((rel, meta, mode, digest.unwrap_or_default()));
                continue;
            }
            rpm::FileType::Regular => {
                if let Some(d) = digest
                    && e.size() > 0
                {
                    by_digest.entry(d).or_insert_with(|| rel.clone());
                }
                Body::File(&mut file)
            }
            rpm::FileType::SymbolicLink => {
                Body::Symlink(e.linkto().unwrap_or_default().as_bytes().to_vec())
            }
            rpm::FileType::CharacterDevice => {
                Body::CharDev(u32::from(e.rdev_major()), u32::from(e.rdev_minor()))
            }
            rpm::FileType::BlockDevice => {
                Body::BlockDev(u32::from(e.rdev_major()), u32::from(e.rdev_minor()))
            }
            rpm::FileType::Fifo => Body::Fifo,
            rpm::FileType::Socket => Body::Socket,
            _ => {
                return Err(bad(
                    path,
                    format!("{}: file type the image cannot hold", p.display()),
                ));
            }
        };
        ingest.put(&rel, meta, mode, body, path)?;
        file.finish().map_err(|e| Error::source(path, e))?;
    }
    for (rel, meta, mode, digest) in deferred {
        let target = by_digest.get(&digest).cloned().ok_or_else(|| {
            bad(
                path,
                format!(
                    "{} has no content in the payload",
                    String::from_utf8_lossy(&rel)
                ),
            )
        })?;
        ingest.put(&rel, meta, mode, Body::HardLink(target), path)?;
    }
    drop(reader);
    if let Some(expected) = expected {
        // The rest of the file after what the decompressor pulled, read
        // through the same descriptor.
        let mut st = state
            .lock()
            .map_err(|_| bad(path, "payload digest state"))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read_at(&mut buf, st.pos).map_err(io_err)?;
            if n == 0 {
                break;
            }
            st.feed(&buf[..n]);
        }
        let got: String = std::mem::take(&mut st.hasher)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != expected {
            return Err(bad(
                path,
                "RPM package: the payload does not match its SHA-256 in the header (damaged or truncated)",
            ));
        }
    }
    Ok(facts)
}

/// How far the RPM file has been read and the digest of its payload so far.
struct PayloadHash {
    pos: u64,
    start: u64,
    hasher: Sha256,
}

impl PayloadHash {
    /// Account for `data` read at `self.pos`: the part from the payload's
    /// start on goes into the digest.
    fn feed(&mut self, data: &[u8]) {
        let end = self.pos + data.len() as u64;
        if end > self.start {
            let skip = self.start.saturating_sub(self.pos) as usize;
            self.hasher.update(&data[skip..]);
        }
        self.pos = end;
    }
}

/// The RPM file, read in order, every byte accounted in [`PayloadHash`].
struct HashingFile {
    file: File,
    state: Arc<Mutex<PayloadHash>>,
}

impl Read for HashingFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("payload digest state"))?;
        let n = self.file.read_at(buf, st.pos)?;
        st.feed(&buf[..n]);
        Ok(n)
    }
}
