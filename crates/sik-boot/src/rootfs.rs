//! The distribution inside a live ISO: its `os-release`, read from the root
//! filesystem image the ISO carries (the family's `boot.rootfs`
//! candidates: SquashFS through backhand's reader, EROFS through
//! sik-image's reader, in user space, never mounted). ISOs without a known
//! root image, and EROFS files stored compressed, are reported as unknown
//! with the reason.
//!
//! The ISO is read through [`Medium::with_reader`] only, so it works on
//! every kind of medium the same way: [`MediumFile`] reopens the file for
//! each read, which gives backhand the owned, `Send` reader it needs.

use std::io::{BufReader, Read, Seek, SeekFrom};

use backhand::{FilesystemReader, InnerNode};
use serde::Serialize;
use sik_image::iso9660::Iso;
use sik_image::release::ReleaseFields;

use crate::family::Family;
use crate::medium::Medium;

/// Largest os-release file read.
const MAX_OS_RELEASE: usize = 64 << 10;

/// What `list` says of an ISO's distribution.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OsRelease {
    /// The root filesystem image inside the ISO it was read from.
    pub rootfs: Option<String>,
    /// Its filesystem: `squashfs`, `erofs` or `unknown`.
    pub filesystem: String,
    /// The os-release fields; empty when they could not be read.
    pub fields: ReleaseFields,
    /// Why the fields are missing, when they are.
    pub unknown: Option<String>,
}

impl OsRelease {
    fn unknown(rootfs: Option<String>, filesystem: &str, why: String) -> Self {
        OsRelease {
            rootfs,
            filesystem: filesystem.into(),
            fields: ReleaseFields::default(),
            unknown: Some(why),
        }
    }
}

/// A file of a medium as an owned reader; every read goes through
/// [`Medium::with_reader`].
pub struct MediumFile {
    medium: Medium,
    rel: String,
    pos: u64,
    len: u64,
}

impl MediumFile {
    /// Open `rel` of `medium` (its size is read once).
    pub fn open(medium: &Medium, rel: &str) -> std::io::Result<Self> {
        let len = medium
            .with_reader(rel, |r| r.seek(SeekFrom::End(0)))
            .map_err(std::io::Error::other)??;
        Ok(MediumFile {
            medium: medium.clone(),
            rel: rel.to_string(),
            pos: 0,
            len,
        })
    }
}

impl Read for MediumFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let pos = self.pos;
        let n = self
            .medium
            .with_reader(&self.rel, |r| {
                r.seek(SeekFrom::Start(pos))?;
                // Fill as much as the file gives: fewer, larger reads.
                let mut got = 0;
                while got < buf.len() {
                    match r.read(&mut buf[got..])? {
                        0 => break,
                        k => got += k,
                    }
                }
                Ok::<usize, std::io::Error>(got)
            })
            .map_err(std::io::Error::other)??;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MediumFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let p = new.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        self.pos = p;
        Ok(p)
    }
}

/// The os-release of the distribution in the ISO `rel` of `medium`, which
/// `family` detected. Never an error: what cannot be read is `unknown`
/// with the reason.
pub fn os_release(medium: &Medium, rel: &str, family: &Family) -> OsRelease {
    // Where the first root image candidate lies in the ISO.
    let found = medium.with_reader(rel, |r| {
        let mut iso = Iso::new(r).map_err(|e| e.to_string())?;
        for p in &family.boot.rootfs {
            if let Ok(e) = iso.lookup(p)
                && !e.is_dir
            {
                return Ok(Some((
                    p.clone(),
                    u64::from(e.lba) * 2048,
                    u64::from(e.size),
                )));
            }
        }
        Ok::<_, String>(None)
    });
    let (path, offset, size) = match found {
        Err(e) => return OsRelease::unknown(None, "unknown", e.to_string()),
        Ok(Err(e)) => return OsRelease::unknown(None, "unknown", e),
        Ok(Ok(None)) => {
            let why = if family.boot.rootfs.is_empty() {
                format!("family {} names no root filesystem image", family.name)
            } else {
                format!("none of {} is in the ISO", family.boot.rootfs.join(" "))
            };
            return OsRelease::unknown(None, "unknown", why);
        }
        Ok(Ok(Some(f))) => f,
    };
    let mut file = match MediumFile::open(medium, rel) {
        Ok(f) => f,
        Err(e) => return OsRelease::unknown(Some(path), "unknown", e.to_string()),
    };
    let mut head = [0u8; 1028];
    let head_ok = size >= 1028
        && file.seek(SeekFrom::Start(offset)).is_ok()
        && file.read_exact(&mut head).is_ok();
    if !head_ok {
        return OsRelease::unknown(Some(path), "unknown", "cannot read its first bytes".into());
    }
    if u32::from_le_bytes([head[1024], head[1025], head[1026], head[1027]])
        == sik_image::erofs::MAGIC
    {
        return match erofs_os_release(file, offset) {
            Ok(fields) => OsRelease {
                rootfs: Some(path),
                filesystem: "erofs".into(),
                fields,
                unknown: None,
            },
            Err(why) => OsRelease::unknown(Some(path), "erofs", why),
        };
    }
    if &head[..4] != b"hsqs" {
        return OsRelease::unknown(Some(path), "unknown", "neither SquashFS nor EROFS".into());
    }
    match squashfs_os_release(file, offset) {
        Ok(fields) => OsRelease {
            rootfs: Some(path),
            filesystem: "squashfs".into(),
            fields,
            unknown: None,
        },
        Err(why) => OsRelease::unknown(Some(path), "squashfs", why),
    }
}

/// `usr/lib/os-release`, else `etc/os-release`, of the EROFS image at
/// `offset` of `file` (sik-image's EROFS reader, links followed inside
/// the image).
fn erofs_os_release(file: MediumFile, offset: u64) -> Result<ReleaseFields, String> {
    let mut fs = sik_image::erofs::Erofs::new(BufReader::with_capacity(64 << 10, file), offset)
        .map_err(|e| e.to_string())?;
    for want in ["/usr/lib/os-release", "/etc/os-release"] {
        if let Some(text) = fs
            .read_file(want, MAX_OS_RELEASE as u64)
            .map_err(|e| format!("{want}: {e}"))?
        {
            return Ok(ReleaseFields::parse(&String::from_utf8_lossy(&text)));
        }
    }
    Err("no usr/lib/os-release or etc/os-release in the root filesystem".into())
}

/// `usr/lib/os-release`, else `etc/os-release`, of the SquashFS at
/// `offset` of `file`.
fn squashfs_os_release(mut file: MediumFile, offset: u64) -> Result<ReleaseFields, String> {
    sik_image::squashfs::read_superblock(&mut file, offset).map_err(|e| e.to_string())?;
    let fs =
        FilesystemReader::from_reader_with_offset(BufReader::with_capacity(1 << 20, file), offset)
            .map_err(|e| format!("SquashFS: {}", sik_image::squashfs::describe_error(&e)))?;
    for want in ["/usr/lib/os-release", "/etc/os-release"] {
        let node = fs
            .files()
            .find(|n| n.fullpath == std::path::Path::new(want));
        if let Some(n) = node
            && let InnerNode::File(f) = &n.inner
        {
            if f.file_len() > MAX_OS_RELEASE {
                return Err(format!("{want} is larger than {MAX_OS_RELEASE} bytes"));
            }
            let mut text = Vec::new();
            fs.file(f)
                .reader_checked()
                .map_err(|e| format!("SquashFS: {}", sik_image::squashfs::describe_error(&e)))?
                .take(MAX_OS_RELEASE as u64)
                .read_to_end(&mut text)
                .map_err(|e| format!("{want}: {e}"))?;
            return Ok(ReleaseFields::parse(&String::from_utf8_lossy(&text)));
        }
    }
    Err("no usr/lib/os-release or etc/os-release in the root filesystem".into())
}
