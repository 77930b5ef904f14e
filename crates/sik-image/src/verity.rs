//! The dm-verity hash tree of an ExtensionImage and the verity descriptor
//! that a signature binds (`spec/extension-image.md`, "dm-verity hash
//! tree"; `spec/signature.md` section 3.1).
//!
//! The tree is exactly what `veritysetup format --no-superblock` writes for
//! the padded SquashFS: format version 1 (each digest is
//! `SHA-256(salt || block)`), 4096-byte data and hash blocks, a 32-byte
//! salt, levels stored from the top (next to the root) down to the hashes of
//! the data blocks, each level padded with zeros to whole hash blocks. There
//! is no verity superblock: every parameter is in the [`Descriptor`], which
//! is what a verity image's signature covers. The kernel's dm-verity target
//! and `veritysetup verify` take the same parameters
//! ([`Descriptor::dm_table_params`], [`Descriptor::veritysetup_args`]).
//!
//! Hashing reads the data with positioned reads on several threads
//! ([`compute_tree`]), so it runs at the speed of SHA-256 on every core.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK_LEN: u64 = 4096;
/// Length of a SHA-256 digest (the root hash and each tree entry).
pub const DIGEST_LEN: usize = 32;
/// Length of the salt.
pub const SALT_LEN: usize = 32;
/// Length of the encoded [`Descriptor`].
pub const DESCRIPTOR_LEN: usize = 128;
/// Magic of the descriptor.
pub const DESCRIPTOR_MAGIC: &[u8; 8] = b"SIK-VRTY";
/// Version of the descriptor layout.
pub const DESCRIPTOR_VERSION: u32 = 1;
/// The dm-verity hash format version (1: salt before the block).
pub const HASH_TYPE: u32 = 1;
/// The hash algorithm, as dm-verity and veritysetup name it.
pub const HASH_NAME: &str = "sha256";
/// Domain prefix of the salt derivation ([`derive_salt`]).
pub const SALT_DOMAIN: &[u8; 16] = b"sik-verity-salt\0";
/// Digests per hash block.
const PER_BLOCK: u64 = BLOCK_LEN / DIGEST_LEN as u64;

/// Why a descriptor cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// Not the descriptor magic.
    #[error("no verity descriptor (magic missing)")]
    Magic,
    /// A field has a value this project does not write or read.
    #[error("verity descriptor: unsupported {field} {value}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value, printed.
        value: String,
    },
    /// The offsets or sizes do not describe this image.
    #[error("verity descriptor: {0}")]
    Layout(String),
}

/// The verity parameters of an image (the signed message of a verity
/// image). Encoded as 128 bytes, integers big-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `SIK-VRTY` |
/// | 8 | 4 | descriptor version, 1 |
/// | 12 | 4 | hash type (dm-verity format version), 1 |
/// | 16 | 8 | hash algorithm, `sha256` NUL-padded |
/// | 24 | 4 | data block size, 4096 |
/// | 28 | 4 | hash block size, 4096 |
/// | 32 | 8 | data blocks (the padded SquashFS / 4096) |
/// | 40 | 8 | hash offset in bytes (= data blocks × 4096) |
/// | 48 | 8 | hash tree size in bytes |
/// | 56 | 4 | salt length, 32 |
/// | 60 | 4 | root hash length, 32 |
/// | 64 | 32 | salt |
/// | 96 | 32 | root hash |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Number of 4096-byte data blocks, from offset 0.
    pub data_blocks: u64,
    /// Where the hash tree starts, in bytes.
    pub hash_offset: u64,
    /// Length of the hash tree in bytes.
    pub hash_size: u64,
    /// The salt.
    pub salt: [u8; SALT_LEN],
    /// The root hash.
    pub root_hash: [u8; DIGEST_LEN],
}

impl Descriptor {
    /// The 128 descriptor bytes.
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut b = [0u8; DESCRIPTOR_LEN];
        b[0..8].copy_from_slice(DESCRIPTOR_MAGIC);
        b[8..12].copy_from_slice(&DESCRIPTOR_VERSION.to_be_bytes());
        b[12..16].copy_from_slice(&HASH_TYPE.to_be_bytes());
        b[16..16 + HASH_NAME.len()].copy_from_slice(HASH_NAME.as_bytes());
        b[24..28].copy_from_slice(&(BLOCK_LEN as u32).to_be_bytes());
        b[28..32].copy_from_slice(&(BLOCK_LEN as u32).to_be_bytes());
        b[32..40].copy_from_slice(&self.data_blocks.to_be_bytes());
        b[40..48].copy_from_slice(&self.hash_offset.to_be_bytes());
        b[48..56].copy_from_slice(&self.hash_size.to_be_bytes());
        b[56..60].copy_from_slice(&(SALT_LEN as u32).to_be_bytes());
        b[60..64].copy_from_slice(&(DIGEST_LEN as u32).to_be_bytes());
        b[64..96].copy_from_slice(&self.salt);
        b[96..128].copy_from_slice(&self.root_hash);
        b
    }

    /// Parse descriptor bytes and check that the fixed fields have the
    /// values of this version and that the sizes are consistent with each
    /// other (not yet with a file: see [`Descriptor::check_layout`]).
    pub fn decode(b: &[u8; DESCRIPTOR_LEN]) -> Result<Self, DescriptorError> {
        if &b[0..8] != DESCRIPTOR_MAGIC {
            return Err(DescriptorError::Magic);
        }
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let want = |field: &'static str, got: u32, want: u32| {
            if got == want {
                Ok(())
            } else {
                Err(DescriptorError::Unsupported {
                    field,
                    value: got.to_string(),
                })
            }
        };
        want("descriptor version", u32_at(8), DESCRIPTOR_VERSION)?;
        want("hash type", u32_at(12), HASH_TYPE)?;
        let mut alg = [0u8; 8];
        alg[..HASH_NAME.len()].copy_from_slice(HASH_NAME.as_bytes());
        if b[16..24] != alg {
            return Err(DescriptorError::Unsupported {
                field: "hash algorithm",
                value: format!("{:?}", String::from_utf8_lossy(&b[16..24])),
            });
        }
        want("data block size", u32_at(24), BLOCK_LEN as u32)?;
        want("hash block size", u32_at(28), BLOCK_LEN as u32)?;
        want("salt length", u32_at(56), SALT_LEN as u32)?;
        want("root hash length", u32_at(60), DIGEST_LEN as u32)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&b[64..96]);
        let mut root_hash = [0u8; DIGEST_LEN];
        root_hash.copy_from_slice(&b[96..128]);
        let d = Descriptor {
            data_blocks: u64_at(32),
            hash_offset: u64_at(40),
            hash_size: u64_at(48),
            salt,
            root_hash,
        };
        d.check_sizes()?;
        Ok(d)
    }

    fn check_sizes(&self) -> Result<(), DescriptorError> {
        if self.data_blocks == 0 || self.data_blocks > u64::MAX / BLOCK_LEN / 2 {
            return Err(DescriptorError::Layout(format!(
                "{} data blocks",
                self.data_blocks
            )));
        }
        if self.hash_offset != self.data_blocks * BLOCK_LEN {
            return Err(DescriptorError::Layout(format!(
                "the hash tree starts at {}, not at the end of the data ({})",
                self.hash_offset,
                self.data_blocks * BLOCK_LEN
            )));
        }
        let want = tree_len(self.data_blocks);
        if self.hash_size != want {
            return Err(DescriptorError::Layout(format!(
                "the hash tree is {} bytes, {} data blocks need {want}",
                self.hash_size, self.data_blocks
            )));
        }
        Ok(())
    }

    /// Check the descriptor against the image: the data is the padded
    /// SquashFS of `data_len` bytes and the tree follows it.
    pub fn check_layout(&self, data_len: u64) -> Result<(), DescriptorError> {
        self.check_sizes()?;
        if self.data_blocks * BLOCK_LEN != data_len {
            return Err(DescriptorError::Layout(format!(
                "{} data blocks, but the filesystem is {data_len} bytes",
                self.data_blocks
            )));
        }
        Ok(())
    }

    /// Length of the data in bytes.
    pub fn data_len(&self) -> u64 {
        self.data_blocks * BLOCK_LEN
    }

    /// The root hash in lower-case hex.
    pub fn root_hex(&self) -> String {
        hex(&self.root_hash)
    }

    /// The salt in lower-case hex.
    pub fn salt_hex(&self) -> String {
        hex(&self.salt)
    }

    /// The parameters of a dm-verity table line after the target name, for
    /// data and hash device `dev` (`MAJOR:MINOR` or a path): `1 DEV DEV 4096
    /// 4096 DATA_BLOCKS HASH_START_BLOCK sha256 ROOT SALT`.
    pub fn dm_table_params(&self, dev: &str) -> String {
        format!(
            "{HASH_TYPE} {dev} {dev} {BLOCK_LEN} {BLOCK_LEN} {} {} {HASH_NAME} {} {}",
            self.data_blocks,
            self.hash_offset / BLOCK_LEN,
            self.root_hex(),
            self.salt_hex()
        )
    }

    /// The options of `veritysetup verify IMAGE IMAGE ROOT_HASH` that
    /// check this image.
    pub fn veritysetup_args(&self) -> Vec<String> {
        vec![
            "--no-superblock".into(),
            format!("--format={HASH_TYPE}"),
            format!("--hash={HASH_NAME}"),
            format!("--data-block-size={BLOCK_LEN}"),
            format!("--hash-block-size={BLOCK_LEN}"),
            format!("--data-blocks={}", self.data_blocks),
            format!("--hash-offset={}", self.hash_offset),
            format!("--salt={}", self.salt_hex()),
        ]
    }
}

/// The parameters of a verity image as `sik inspect --json` and
/// `sik verify --json` print them: what `veritysetup verify` and a
/// dm-verity table need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    /// dm-verity hash type (format version), 1.
    pub hash_type: u32,
    /// Hash algorithm, `sha256`.
    pub hash_algorithm: &'static str,
    /// Data block size in bytes.
    pub data_block_size: u64,
    /// Hash block size in bytes.
    pub hash_block_size: u64,
    /// Number of data blocks from offset 0.
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the file.
    pub hash_offset: u64,
    /// Length of the hash tree in bytes.
    pub hash_size: u64,
    /// Salt, hex.
    pub salt: String,
    /// Root hash, hex.
    pub root_hash: String,
}

impl From<&Descriptor> for Facts {
    fn from(d: &Descriptor) -> Self {
        Facts {
            hash_type: HASH_TYPE,
            hash_algorithm: HASH_NAME,
            data_block_size: BLOCK_LEN,
            hash_block_size: BLOCK_LEN,
            data_blocks: d.data_blocks,
            hash_offset: d.hash_offset,
            hash_size: d.hash_size,
            salt: d.salt_hex(),
            root_hash: d.root_hex(),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Block counts of the tree's levels, bottom (hashes of data blocks) first,
/// as the kernel computes them: no level for a single data block, else
/// levels until one block holds the top.
pub fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut n = data_blocks;
    if data_blocks <= 1 {
        return v;
    }
    loop {
        n = n.div_ceil(PER_BLOCK);
        v.push(n);
        if n == 1 {
            return v;
        }
    }
}

/// Length in bytes of the tree of `data_blocks` data blocks.
pub fn tree_len(data_blocks: u64) -> u64 {
    level_blocks(data_blocks).iter().sum::<u64>() * BLOCK_LEN
}

/// The salt this project writes: SHA-256 of [`SALT_DOMAIN`], the 96-byte
/// SquashFS superblock and the filesystem's tables (from
/// `inode_table_start` to `bytes_used`), which name every entry and the
/// size of every compressed block. Deterministic, so the same image gets
/// the same tree, and different images get different salts.
pub fn derive_salt(file: &File, data_len: u64) -> io::Result<[u8; SALT_LEN]> {
    let mut sb = [0u8; 96];
    file.read_exact_at(&mut sb, 0)?;
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let bytes_used = u64_at(40).min(data_len);
    let tables = u64_at(64).min(bytes_used);
    let mut h = Sha256::new();
    h.update(SALT_DOMAIN);
    h.update(sb);
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = tables;
    while pos < bytes_used {
        let n = (bytes_used - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize().into())
}

fn hash_block(salt: &[u8; SALT_LEN], block: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Read `buf.len()` bytes at `pos`; bytes past the end of the file read as
/// zeros (the padding of a SquashFS written without it).
fn read_at_padded(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The digests of data blocks `0..data_blocks` of `file`, hashed on
/// `threads` threads (0: every core), each reading 1 MiB at a time.
pub fn hash_data_blocks(
    file: &File,
    data_blocks: u64,
    salt: &[u8; SALT_LEN],
    threads: usize,
) -> io::Result<Vec<[u8; DIGEST_LEN]>> {
    const CHUNK: u64 = 256; // blocks per read
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let chunks = data_blocks.div_ceil(CHUNK);
    let threads = (threads as u64).clamp(1, chunks.max(1));
    let per_thread = chunks.div_ceil(threads) * CHUNK;
    let mut out = vec![[0u8; DIGEST_LEN]; data_blocks as usize];
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, part) in out.chunks_mut(per_thread as usize).enumerate() {
            let first = i as u64 * per_thread;
            handles.push(s.spawn(move || -> io::Result<()> {
                let mut buf = vec![0u8; (CHUNK * BLOCK_LEN) as usize];
                for (j, group) in part.chunks_mut(CHUNK as usize).enumerate() {
                    let pos = (first + j as u64 * CHUNK) * BLOCK_LEN;
                    let len = group.len() * BLOCK_LEN as usize;
                    read_at_padded(file, &mut buf[..len], pos)?;
                    for (d, block) in group.iter_mut().zip(buf.chunks(BLOCK_LEN as usize)) {
                        *d = hash_block(salt, block);
                    }
                }
                Ok(())
            }));
        }
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok(out)
}

/// A computed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The tree as stored after the data (top level first).
    pub bytes: Vec<u8>,
    /// The root hash.
    pub root_hash: [u8; DIGEST_LEN],
}

/// Build the tree above the digests of the data blocks.
pub fn tree_from_digests(digests: &[[u8; DIGEST_LEN]], salt: &[u8; SALT_LEN]) -> Tree {
    if digests.len() <= 1 {
        return Tree {
            bytes: Vec::new(),
            root_hash: digests.first().copied().unwrap_or([0u8; DIGEST_LEN]),
        };
    }
    // Levels bottom first, each as whole zero-padded hash blocks.
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<[u8; DIGEST_LEN]> = digests.to_vec();
    loop {
        let blocks = (cur.len() as u64).div_ceil(PER_BLOCK) as usize;
        let mut level = vec![0u8; blocks * BLOCK_LEN as usize];
        for (i, d) in cur.iter().enumerate() {
            level[i * DIGEST_LEN..(i + 1) * DIGEST_LEN].copy_from_slice(d);
        }
        cur = level
            .chunks(BLOCK_LEN as usize)
            .map(|b| hash_block(salt, b))
            .collect();
        levels.push(level);
        if blocks == 1 {
            break;
        }
    }
    let mut bytes = Vec::with_capacity(levels.iter().map(Vec::len).sum());
    for l in levels.iter().rev() {
        bytes.extend_from_slice(l);
    }
    Tree {
        bytes,
        root_hash: cur[0],
    }
}

/// Compute the tree of the first `data_len` bytes of `file` (a multiple of
/// [`BLOCK_LEN`]) with the salt [`derive_salt`] gives, and its descriptor.
pub fn compute_tree(file: &File, data_len: u64, threads: usize) -> io::Result<(Descriptor, Tree)> {
    let salt = derive_salt(file, data_len)?;
    compute_tree_with_salt(file, data_len, salt, threads)
}

/// [`compute_tree`] with a given salt.
pub fn compute_tree_with_salt(
    file: &File,
    data_len: u64,
    salt: [u8; SALT_LEN],
    threads: usize,
) -> io::Result<(Descriptor, Tree)> {
    let data_blocks = data_len / BLOCK_LEN;
    let digests = hash_data_blocks(file, data_blocks, &salt, threads)?;
    let tree = tree_from_digests(&digests, &salt);
    let d = Descriptor {
        data_blocks,
        hash_offset: data_len,
        hash_size: tree.bytes.len() as u64,
        salt,
        root_hash: tree.root_hash,
    };
    Ok((d, tree))
}

/// How a stored tree disagrees with the data and the descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeMismatch {
    /// Data blocks whose digest is not the one stored in the tree (the data
    /// was changed); `first` is the first such block.
    #[error("data block {first} (byte offset {}) does not match the hash tree ({count} of {total} blocks differ)", first * BLOCK_LEN)]
    Data {
        /// First differing data block.
        first: u64,
        /// How many differ.
        count: u64,
        /// Data blocks in all.
        total: u64,
    },
    /// No data block matches its stored digest: the salt is not the one
    /// the tree was made with.
    #[error("no data block matches the hash tree: the salt is not the one the tree was made with")]
    Salt,
    /// A stored hash block is not what its entry in the level above (or
    /// the root hash) says.
    #[error("hash tree block at byte offset {0} of the tree is damaged")]
    Tree(u64),
    /// The top block of the stored tree does not give the descriptor's
    /// root hash (the root hash or the top block was changed).
    #[error("the root hash does not match the hash tree")]
    Root,
}

/// Check the stored tree `stored` against the data of `file` and the
/// descriptor `d`: hash every data block, compare with the stored lowest
/// level, rebuild the levels above and compare, compare the root.
pub fn verify_tree(
    file: &File,
    d: &Descriptor,
    stored: &[u8],
    threads: usize,
) -> io::Result<Result<(), TreeMismatch>> {
    let digests = hash_data_blocks(file, d.data_blocks, &d.salt, threads)?;
    let tree = tree_from_digests(&digests, &d.salt);
    if tree.bytes == stored && tree.root_hash == d.root_hash {
        return Ok(Ok(()));
    }
    Ok(Err(locate_mismatch(d, stored, &digests)))
}

/// Why `stored` and the data digests `digests` do not give the root hash of
/// `d`: the salt, a damaged tree block (the stored levels checked against
/// each other and the root, top down), or changed data blocks.
fn locate_mismatch(d: &Descriptor, stored: &[u8], digests: &[[u8; DIGEST_LEN]]) -> TreeMismatch {
    let levels = level_blocks(d.data_blocks);
    if stored.len() as u64 != tree_len(d.data_blocks) || levels.is_empty() {
        return TreeMismatch::Data {
            first: 0,
            count: 1,
            total: d.data_blocks,
        };
    }
    // Byte offset in the tree of each level (bottom first); stored top first.
    let mut offsets = vec![0u64; levels.len()];
    let mut at = 0;
    for i in (0..levels.len()).rev() {
        offsets[i] = at;
        at += levels[i] * BLOCK_LEN;
    }
    let block = |level: usize, n: u64| {
        let o = (offsets[level] + n * BLOCK_LEN) as usize;
        &stored[o..o + BLOCK_LEN as usize]
    };
    let entry = |level: usize, n: u64| {
        let o = (offsets[level] + n * DIGEST_LEN as u64) as usize;
        &stored[o..o + DIGEST_LEN]
    };
    let bottom_differs: Vec<u64> = (0..d.data_blocks)
        .filter(|&i| entry(0, i) != digests[i as usize])
        .collect();
    if d.data_blocks > 1 && bottom_differs.len() as u64 == d.data_blocks {
        return TreeMismatch::Salt;
    }
    // Top down: the top block against the root, then each block against
    // its entry in the level above.
    let top = levels.len() - 1;
    if hash_block(&d.salt, block(top, 0)) != d.root_hash {
        return TreeMismatch::Root;
    }
    for level in (0..top).rev() {
        for n in 0..levels[level] {
            if hash_block(&d.salt, block(level, n)) != entry(level + 1, n) {
                return TreeMismatch::Tree(offsets[level] + n * BLOCK_LEN);
            }
        }
    }
    match bottom_differs.first() {
        Some(&first) => TreeMismatch::Data {
            first,
            count: bottom_differs.len() as u64,
            total: d.data_blocks,
        },
        None => TreeMismatch::Tree(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_kernel() {
        assert_eq!(level_blocks(1), Vec::<u64>::new());
        assert_eq!(level_blocks(2), vec![1]);
        assert_eq!(level_blocks(128), vec![1]);
        assert_eq!(level_blocks(129), vec![2, 1]);
        assert_eq!(level_blocks(300), vec![3, 1]);
        assert_eq!(level_blocks(16384), vec![128, 1]);
        assert_eq!(level_blocks(16385), vec![129, 2, 1]);
        assert_eq!(tree_len(300), 4 * BLOCK_LEN);
    }

    #[test]
    fn descriptor_round_trip_and_refusals() {
        let d = Descriptor {
            data_blocks: 300,
            hash_offset: 300 * BLOCK_LEN,
            hash_size: tree_len(300),
            salt: [1; 32],
            root_hash: [2; 32],
        };
        let b = d.encode();
        assert_eq!(Descriptor::decode(&b).unwrap(), d);
        assert!(d.check_layout(300 * BLOCK_LEN).is_ok());
        assert!(d.check_layout(301 * BLOCK_LEN).is_err());
        for (at, v) in [
            (0, 0u8),
            (11, 2),
            (15, 0),
            (16, b'S'),
            (26, 0),
            (43, 1),
            (54, 0),
            (59, 1),
            (63, 1),
        ] {
            let mut g = b;
            g[at] = v;
            assert!(Descriptor::decode(&g).is_err(), "byte {at} = {v}");
        }
    }
}
