//! A small EROFS reader: one file of an EROFS image by its path, in user
//! space, never mounted. `sik boot list` reads a live ISO's `os-release`
//! with it when the ISO's root filesystem is EROFS instead of SquashFS.
//!
//! What it reads (the on-disk layout of the kernel's `fs/erofs/erofs_fs.h`):
//! the superblock at byte 1024 (magic `0xE0F5E1E2`, block size, root inode
//! number, metadata block address), compact (32-byte) and extended
//! (64-byte) inodes at `meta_blkaddr × block size + nid × 32`, their inline
//! extended-attribute area (skipped), directories (blocks of 12-byte
//! entries `nid u64, nameoff u16, type u8, reserved u8`, the names packed
//! after them) and the two uncompressed data layouts: `FLAT_PLAIN` (the
//! data in consecutive blocks) and `FLAT_INLINE` (whole blocks, then the
//! tail right after the inode). Symbolic links on the way are followed
//! inside the image (at most 16). Compressed and chunk-based files are an
//! error naming the layout. Every size is bounded: a file read is at most
//! the caller's limit, a directory at most [`MAX_DIR_BYTES`].

use std::io::{Read, Seek, SeekFrom};

/// Superblock magic (`EROFS_SUPER_MAGIC_V1`), at byte 1024.
pub const MAGIC: u32 = 0xE0F5_E1E2;
/// Where the superblock starts.
const SUPER_OFFSET: u64 = 1024;
/// Largest directory read while looking a path up.
pub const MAX_DIR_BYTES: u64 = 16 << 20;
/// Symbolic links followed in one lookup.
const MAX_LINKS: usize = 16;
/// Size of one directory entry.
const DIRENT: usize = 12;

const S_IFMT: u16 = 0o170_000;
const S_IFDIR: u16 = 0o040_000;
const S_IFREG: u16 = 0o100_000;
const S_IFLNK: u16 = 0o120_000;

/// Why a file could not be read from an EROFS image.
#[derive(Debug, thiserror::Error)]
pub enum ErofsError {
    /// Reading the underlying file failed.
    #[error("EROFS: {0}")]
    Io(#[from] std::io::Error),
    /// The image is not EROFS or is damaged.
    #[error("EROFS: {0}")]
    Bad(String),
    /// A layout this reader does not decode.
    #[error("EROFS: {path}: {what} files are not read")]
    Unsupported {
        /// The path in the image.
        path: String,
        /// The layout.
        what: &'static str,
    },
}

fn bad(why: impl Into<String>) -> ErofsError {
    ErofsError::Bad(why.into())
}

/// The superblock fields the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// log2 of the block size (9 to 16).
    pub blkszbits: u8,
    /// Inode number of `/`.
    pub root_nid: u64,
    /// Block address of the inode area.
    pub meta_blkaddr: u32,
}

impl Superblock {
    fn block(&self) -> u64 {
        1u64 << self.blkszbits
    }
}

/// One inode, as far as the reader needs it.
#[derive(Debug, Clone, Copy)]
struct Inode {
    /// Byte offset of the inode in the image.
    at: u64,
    /// Compact (32) or extended (64) inode size plus its xattr area.
    head: u64,
    layout: u16,
    mode: u16,
    size: u64,
    raw_blkaddr: u32,
}

/// An EROFS image at byte `base` of `r`.
pub struct Erofs<R> {
    r: R,
    base: u64,
    sb: Superblock,
}

impl<R: Read + Seek> Erofs<R> {
    /// Read and check the superblock of the image at `base` of `r`.
    pub fn new(mut r: R, base: u64) -> Result<Self, ErofsError> {
        let mut sb = [0u8; 48];
        r.seek(SeekFrom::Start(base + SUPER_OFFSET))?;
        r.read_exact(&mut sb)
            .map_err(|_| bad("truncated before the end of its superblock"))?;
        let magic = u32::from_le_bytes([sb[0], sb[1], sb[2], sb[3]]);
        if magic != MAGIC {
            return Err(bad(format!("no superblock magic (found {magic:#010x})")));
        }
        let blkszbits = sb[12];
        if !(9..=16).contains(&blkszbits) {
            return Err(bad(format!("block size 2^{blkszbits} is not 512 to 65536")));
        }
        let sb = Superblock {
            blkszbits,
            root_nid: u64::from(u16::from_le_bytes([sb[14], sb[15]])),
            meta_blkaddr: u32::from_le_bytes([sb[40], sb[41], sb[42], sb[43]]),
        };
        Ok(Erofs { r, base, sb })
    }

    /// The superblock.
    pub fn superblock(&self) -> Superblock {
        self.sb
    }

    /// The bytes of the regular file at `path` (absolute, `/` separated),
    /// following symbolic links inside the image; `Ok(None)` when no such
    /// file exists. At most `max` bytes: a larger file is an error.
    pub fn read_file(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, ErofsError> {
        let Some(ino) = self.lookup(path)? else {
            return Ok(None);
        };
        match ino.mode & S_IFMT {
            S_IFREG => {}
            S_IFDIR => return Err(bad(format!("{path} is a directory"))),
            _ => return Err(bad(format!("{path} is not a regular file"))),
        }
        if ino.size > max {
            return Err(bad(format!("{path} is larger than {max} bytes")));
        }
        self.data(&ino, path).map(Some)
    }

    /// The inode at `path`, symbolic links followed.
    fn lookup(&mut self, path: &str) -> Result<Option<Inode>, ErofsError> {
        let mut todo: Vec<String> = components(path).into_iter().rev().collect();
        let mut stack: Vec<Inode> = vec![self.inode(self.sb.root_nid)?];
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = *stack.last().unwrap_or(&stack[0]);
            if dir.mode & S_IFMT != S_IFDIR {
                return Ok(None);
            }
            let Some(nid) = self.find(&dir, &name)? else {
                return Ok(None);
            };
            let ino = self.inode(nid)?;
            if ino.mode & S_IFMT == S_IFLNK {
                links += 1;
                if links > MAX_LINKS {
                    return Err(bad(format!("{path}: more than {MAX_LINKS} symbolic links")));
                }
                if ino.size > 4096 {
                    return Err(bad(format!(
                        "{path}: a symbolic link of {} bytes",
                        ino.size
                    )));
                }
                let target = String::from_utf8_lossy(&self.data(&ino, path)?).into_owned();
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                todo.extend(components(&target).into_iter().rev());
                continue;
            }
            stack.push(ino);
        }
        Ok(stack.last().copied())
    }

    /// The inode number of `name` in directory `dir`.
    fn find(&mut self, dir: &Inode, name: &str) -> Result<Option<u64>, ErofsError> {
        if dir.size > MAX_DIR_BYTES {
            return Err(bad(format!("a directory of {} bytes", dir.size)));
        }
        let data = self.data(dir, name)?;
        let block = self.sb.block() as usize;
        for chunk in data.chunks(block) {
            if chunk.len() < DIRENT {
                return Err(bad("a directory block shorter than one entry"));
            }
            let first = usize::from(u16::from_le_bytes([chunk[8], chunk[9]]));
            if first < DIRENT || first % DIRENT != 0 || first > chunk.len() {
                return Err(bad(format!(
                    "a directory block whose first name is at {first}"
                )));
            }
            let n = first / DIRENT;
            for i in 0..n {
                let e = &chunk[i * DIRENT..(i + 1) * DIRENT];
                let start = usize::from(u16::from_le_bytes([e[8], e[9]]));
                let end = if i + 1 < n {
                    let next = &chunk[(i + 1) * DIRENT..];
                    usize::from(u16::from_le_bytes([next[8], next[9]]))
                } else {
                    chunk.len()
                };
                if start < first || end < start || end > chunk.len() {
                    return Err(bad(format!("a directory entry name at {start}..{end}")));
                }
                let mut raw = &chunk[start..end];
                if i + 1 == n
                    && let Some(z) = raw.iter().position(|&b| b == 0)
                {
                    raw = &raw[..z];
                }
                if raw == name.as_bytes() {
                    let nid = u64::from_le_bytes(e[..8].try_into().unwrap_or([0; 8]));
                    return Ok(Some(nid));
                }
            }
        }
        Ok(None)
    }

    /// The inode with number `nid`.
    fn inode(&mut self, nid: u64) -> Result<Inode, ErofsError> {
        let at = (u64::from(self.sb.meta_blkaddr) << self.sb.blkszbits)
            .checked_add(
                nid.checked_mul(32)
                    .ok_or_else(|| bad("inode number overflows"))?,
            )
            .ok_or_else(|| bad("inode offset overflows"))?;
        let mut b = [0u8; 64];
        self.r.seek(SeekFrom::Start(self.base + at))?;
        self.r
            .read_exact(&mut b[..32])
            .map_err(|_| bad(format!("inode {nid} lies past the image")))?;
        let format = u16::from_le_bytes([b[0], b[1]]);
        let icount = u16::from_le_bytes([b[2], b[3]]);
        let mode = u16::from_le_bytes([b[4], b[5]]);
        let extended = format & 1 == 1;
        let (size, len) = if extended {
            self.r
                .read_exact(&mut b[32..])
                .map_err(|_| bad(format!("inode {nid} lies past the image")))?;
            (
                u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8])),
                64,
            )
        } else {
            (
                u64::from(u32::from_le_bytes([b[8], b[9], b[10], b[11]])),
                32,
            )
        };
        let xattrs = if icount == 0 {
            0
        } else {
            12 + (u64::from(icount) - 1) * 4
        };
        Ok(Inode {
            at,
            head: len + xattrs,
            layout: (format >> 1) & 0x7,
            mode,
            size,
            raw_blkaddr: u32::from_le_bytes([b[16], b[17], b[18], b[19]]),
        })
    }

    /// All data of `ino` (its size is bounded by the caller).
    fn data(&mut self, ino: &Inode, path: &str) -> Result<Vec<u8>, ErofsError> {
        let block = self.sb.block();
        let start = u64::from(ino.raw_blkaddr) << self.sb.blkszbits;
        let mut out = vec![0u8; ino.size as usize];
        match ino.layout {
            0 => {
                self.r.seek(SeekFrom::Start(self.base + start))?;
                self.r
                    .read_exact(&mut out)
                    .map_err(|_| bad(format!("{path}: data past the image")))?;
            }
            2 => {
                let full = (ino.size / block) * block;
                if full > 0 {
                    self.r.seek(SeekFrom::Start(self.base + start))?;
                    self.r
                        .read_exact(&mut out[..full as usize])
                        .map_err(|_| bad(format!("{path}: data past the image")))?;
                }
                let tail = ino.at + ino.head;
                if ino.size > full {
                    if (tail % block) + (ino.size - full) > block {
                        return Err(bad(format!("{path}: inline data crosses a block")));
                    }
                    self.r.seek(SeekFrom::Start(self.base + tail))?;
                    self.r
                        .read_exact(&mut out[full as usize..])
                        .map_err(|_| bad(format!("{path}: inline data past the image")))?;
                }
            }
            1 | 3 => {
                return Err(ErofsError::Unsupported {
                    path: path.into(),
                    what: "compressed",
                });
            }
            4 => {
                return Err(ErofsError::Unsupported {
                    path: path.into(),
                    what: "chunk-based",
                });
            }
            n => return Err(bad(format!("{path}: unknown data layout {n}"))),
        }
        Ok(out)
    }
}

/// The non-empty, non-`.` components of a path.
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}
