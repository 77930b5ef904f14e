//! Section 3 of `spec/signature.md`: where the signature lives. An
//! ExtensionImage carries a signature block after its payload, found from
//! the end of the file by its fixed 32-byte [`Footer`]; an AppImage carries
//! one armored SSHSIG in its `.sha256_sig` section.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::MAX_ENTRY_LEN;
use super::payload::{Payload, SignaturePlace, payload_of};
use super::sshsig::{SshSig, Wire, put_string};
use crate::{Error, Result, elf, squashfs, verity};

/// Magic of the signature-block footer of an ExtensionImage.
pub const FOOTER_MAGIC: &[u8; 8] = b"SIK-SIG\0";
/// Version of the signature block layout: signatures over the SquashFS.
pub const BLOCK_VERSION: u32 = 1;
/// Version of the block that starts with a dm-verity hash tree and ends
/// with a [`verity::Descriptor`] in front of the footer; its signatures are
/// over the descriptor.
pub const BLOCK_VERSION_VERITY: u32 = 2;
/// Length of the descriptor and footer at the end of a verity block.
pub const VERITY_END_LEN: u64 = verity::DESCRIPTOR_LEN as u64 + FOOTER_LEN;
/// Length of the footer.
pub const FOOTER_LEN: u64 = 32;
/// Most signatures one ExtensionImage block may hold.
pub const MAX_ENTRIES: u32 = 16;
/// Largest `.sha256_sig`/`.sig_key` section read or written (the runtime
/// reserves 1024 and 8192 bytes).
pub const MAX_SECTION_LEN: u64 = 64 * 1024;

/// Why the bytes after an ExtensionImage's payload are not a valid
/// signature block (the image is then "malformed").
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Fewer bytes than a footer.
    #[error("{0} bytes after the filesystem are too few for a signature block")]
    TooShort(u64),
    /// The last 32 bytes are not a footer.
    #[error("{0} bytes after the filesystem are not a signature block (no footer)")]
    NoFooter(u64),
    /// A footer of a layout version this project does not know.
    #[error("unsupported signature block version {0}")]
    Version(u32),
    /// The footer's block length is not what follows the payload.
    #[error(
        "footer says the block is {footer} bytes, but {actual} bytes follow the filesystem (truncated or extended)"
    )]
    BlockLen {
        /// What the footer says.
        footer: u64,
        /// What the file has.
        actual: u64,
    },
    /// The footer's payload length is not the payload's.
    #[error("footer says the payload is {footer} bytes, the filesystem is {actual}")]
    PayloadLen {
        /// What the footer says.
        footer: u64,
        /// The payload length of the filesystem.
        actual: u64,
    },
    /// A signature count of 0 or above [`MAX_ENTRIES`].
    #[error("unsupported signature count {0}")]
    Count(u32),
    /// Entry `n` (from 1) runs past the footer.
    #[error("signature {0} is truncated")]
    Truncated(u32),
    /// Entry `n` (from 1) is not an SSHSIG blob.
    #[error("signature {index}: {source}")]
    Entry {
        /// Which entry, from 1.
        index: u32,
        /// Why its blob does not decode.
        source: Box<Error>,
    },
    /// Bytes between the last entry and the footer.
    #[error("bytes between the last signature and the footer")]
    Trailing,
    /// The verity descriptor cannot be used.
    #[error("{0}")]
    Verity(#[from] verity::DescriptorError),
}

/// The fixed footer at the very end of a signed ExtensionImage.
///
/// Layout (32 bytes, integers big-endian): magic `SIK-SIG\0` (8),
/// version u32 = 1, count u32 (entries), block_len u64 (whole block including
/// this footer), payload_len u64 (offset where the block starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Block layout version: [`BLOCK_VERSION`] or [`BLOCK_VERSION_VERITY`].
    pub version: u32,
    /// Number of entries.
    pub count: u32,
    /// Length of the whole block including the footer.
    pub block_len: u64,
    /// Length of the payload (= offset of the block).
    pub payload_len: u64,
}

impl Footer {
    /// The 32 footer bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0..8].copy_from_slice(FOOTER_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_be_bytes());
        b[12..16].copy_from_slice(&self.count.to_be_bytes());
        b[16..24].copy_from_slice(&self.block_len.to_be_bytes());
        b[24..32].copy_from_slice(&self.payload_len.to_be_bytes());
        b
    }

    /// Parse footer bytes. `Ok(None)`: no footer magic (not a signature block).
    pub fn decode(b: &[u8; FOOTER_LEN as usize]) -> std::result::Result<Option<Self>, BlockError> {
        if &b[0..8] != FOOTER_MAGIC {
            return Ok(None);
        }
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let version = u32_at(8);
        if version != BLOCK_VERSION && version != BLOCK_VERSION_VERITY {
            return Err(BlockError::Version(version));
        }
        Ok(Some(Footer {
            version,
            count: u32_at(12),
            block_len: u64_at(16),
            payload_len: u64_at(24),
        }))
    }
}

/// Encode a whole signature block (entries then footer) for a payload of
/// `payload_len` bytes. Each entry is `u32 length || SSHSIG blob`.
pub fn encode_block(sigs: &[SshSig], payload_len: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for s in sigs {
        put_string(&mut b, &s.encode());
    }
    let footer = Footer {
        version: BLOCK_VERSION,
        count: sigs.len() as u32,
        block_len: b.len() as u64 + FOOTER_LEN,
        payload_len,
    };
    b.extend_from_slice(&footer.encode());
    b
}

/// Decode the block bytes that follow a payload of `payload_len` bytes
/// (everything from `payload_len` to the end of the file).
pub fn decode_block(
    block: &[u8],
    payload_len: u64,
) -> std::result::Result<Vec<SshSig>, BlockError> {
    let total = block.len() as u64;
    let Some(split) = block.len().checked_sub(FOOTER_LEN as usize) else {
        return Err(BlockError::TooShort(total));
    };
    let (entries, foot) = block.split_at(split);
    let foot: &[u8; FOOTER_LEN as usize] =
        foot.try_into().map_err(|_| BlockError::TooShort(total))?;
    let footer = Footer::decode(foot)?.ok_or(BlockError::NoFooter(total))?;
    if footer.version != BLOCK_VERSION {
        return Err(BlockError::Version(footer.version));
    }
    if footer.block_len != total {
        return Err(BlockError::BlockLen {
            footer: footer.block_len,
            actual: total,
        });
    }
    if footer.payload_len != payload_len {
        return Err(BlockError::PayloadLen {
            footer: footer.payload_len,
            actual: payload_len,
        });
    }
    if footer.count == 0 || footer.count > MAX_ENTRIES {
        return Err(BlockError::Count(footer.count));
    }
    decode_entries(entries, footer.count)
}

/// Decode exactly `count` entries (`u32 length || SSHSIG blob`) filling `entries`.
fn decode_entries(entries: &[u8], count: u32) -> std::result::Result<Vec<SshSig>, BlockError> {
    let mut w = Wire(entries);
    let mut sigs = Vec::new();
    for i in 1..=count {
        let blob = w.string().ok_or(BlockError::Truncated(i))?;
        sigs.push(SshSig::decode(blob).map_err(|e| BlockError::Entry {
            index: i,
            source: Box::new(e),
        })?);
    }
    if !w.0.is_empty() {
        return Err(BlockError::Trailing);
    }
    Ok(sigs)
}

/// The end of a verity block (entries, descriptor, footer) for a tree of
/// `desc.hash_size` bytes written at `desc.hash_offset` (the payload
/// length). The block is the tree followed by these bytes.
pub fn encode_verity_tail(desc: &verity::Descriptor, sigs: &[SshSig]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in sigs {
        put_string(&mut b, &s.encode());
    }
    b.extend_from_slice(&desc.encode());
    let footer = Footer {
        version: BLOCK_VERSION_VERITY,
        count: sigs.len() as u32,
        block_len: desc.hash_size + b.len() as u64 + FOOTER_LEN,
        payload_len: desc.hash_offset,
    };
    b.extend_from_slice(&footer.encode());
    b
}

/// Check the last [`VERITY_END_LEN`] bytes of a verity block (descriptor
/// and footer) that follows a payload of `payload_len` bytes and is
/// `block_len` bytes long. Returns the footer, the descriptor and the
/// length of the entries between the tree and the descriptor.
pub fn decode_verity_end(
    end: &[u8; VERITY_END_LEN as usize],
    payload_len: u64,
    block_len: u64,
) -> std::result::Result<(Footer, verity::Descriptor, u64), BlockError> {
    let (d, f) = end.split_at(verity::DESCRIPTOR_LEN);
    let foot: &[u8; FOOTER_LEN as usize] = f.try_into().map_err(|_| BlockError::TooShort(0))?;
    let footer = Footer::decode(foot)?.ok_or(BlockError::NoFooter(block_len))?;
    if footer.version != BLOCK_VERSION_VERITY {
        return Err(BlockError::Version(footer.version));
    }
    if footer.block_len != block_len {
        return Err(BlockError::BlockLen {
            footer: footer.block_len,
            actual: block_len,
        });
    }
    if footer.payload_len != payload_len {
        return Err(BlockError::PayloadLen {
            footer: footer.payload_len,
            actual: payload_len,
        });
    }
    if footer.count > MAX_ENTRIES {
        return Err(BlockError::Count(footer.count));
    }
    let d: &[u8; verity::DESCRIPTOR_LEN] = d.try_into().map_err(|_| BlockError::TooShort(0))?;
    let desc = verity::Descriptor::decode(d)?;
    desc.check_layout(payload_len)?;
    let entries = block_len
        .checked_sub(desc.hash_size + VERITY_END_LEN)
        .ok_or(BlockError::Truncated(0))?;
    let max = u64::from(footer.count) * (u64::from(MAX_ENTRY_LEN) + 4);
    if entries > max {
        return Err(BlockError::Trailing);
    }
    Ok((footer, desc, entries))
}

/// Decode a whole verity block (tree, entries, descriptor, footer: every
/// byte after a payload of `payload_len` bytes). The tree itself is not
/// looked at here ([`verity::verify_tree`] checks it).
pub fn decode_verity_block(
    block: &[u8],
    payload_len: u64,
) -> std::result::Result<(verity::Descriptor, Vec<SshSig>), BlockError> {
    let total = block.len() as u64;
    let Some(split) = block.len().checked_sub(VERITY_END_LEN as usize) else {
        return Err(BlockError::TooShort(total));
    };
    let end: &[u8; VERITY_END_LEN as usize] = block[split..]
        .try_into()
        .map_err(|_| BlockError::TooShort(total))?;
    let (footer, desc, entries) = decode_verity_end(end, payload_len, total)?;
    let sigs = decode_entries(&block[split - entries as usize..split], footer.count)?;
    Ok((desc, sigs))
}

/// The footer at the end of `file` when it is a plausible signature-block
/// footer (magic, version, a block inside the file starting at a multiple
/// of [`squashfs::PAD_LEN`] exactly where the footer says the payload ends).
pub fn read_footer(file: &mut File, file_len: u64) -> Result<Option<Footer>> {
    if file_len < FOOTER_LEN {
        return Ok(None);
    }
    let mut foot = [0u8; FOOTER_LEN as usize];
    file.seek(SeekFrom::Start(file_len - FOOTER_LEN))?;
    file.read_exact(&mut foot)?;
    Ok(match Footer::decode(&foot) {
        Ok(Some(f))
            if f.block_len
                >= if f.version == BLOCK_VERSION_VERITY {
                    VERITY_END_LEN
                } else {
                    FOOTER_LEN
                }
                && f.block_len <= file_len
                && f.payload_len == file_len - f.block_len
                && f.payload_len > 0
                && f.payload_len % squashfs::PAD_LEN == 0 =>
        {
            Some(f)
        }
        _ => None,
    })
}

/// What an image carries in its signature place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Embedded {
    /// No signature.
    Unsigned,
    /// Something that is not a valid signature block / armored signature.
    Malformed(String),
    /// One or more decoded signatures (not yet checked).
    Signatures(Vec<SshSig>),
}

/// Read the signatures embedded in the image whose payload is `payload`.
pub fn read_embedded(file: &mut File, payload: &Payload) -> Result<Embedded> {
    match &payload.place {
        SignaturePlace::Missing(_) => Ok(Embedded::Unsigned),
        SignaturePlace::Block => {
            if payload.file_len <= payload.len {
                return Ok(Embedded::Unsigned);
            }
            let tail = payload.file_len - payload.len;
            if tail >= FOOTER_LEN {
                let mut foot = [0u8; FOOTER_LEN as usize];
                file.seek(SeekFrom::Start(payload.file_len - FOOTER_LEN))?;
                file.read_exact(&mut foot)?;
                if let Ok(Some(f)) = Footer::decode(&foot)
                    && f.version == BLOCK_VERSION_VERITY
                {
                    return read_verity_embedded(file, payload, tail);
                }
            }
            let max = u64::from(MAX_ENTRIES) * (u64::from(MAX_ENTRY_LEN) + 4) + FOOTER_LEN;
            if tail > max {
                // Only the footer is read to tell what it claims.
                let mut foot = [0u8; FOOTER_LEN as usize];
                file.seek(SeekFrom::Start(payload.file_len - FOOTER_LEN))?;
                file.read_exact(&mut foot)?;
                return Ok(Embedded::Malformed(match Footer::decode(&foot) {
                    Ok(Some(_)) => format!("signature block of {tail} bytes is too large"),
                    Ok(None) => format!(
                        "{tail} bytes after the filesystem are not a signature block (no footer)"
                    ),
                    Err(e) => e.to_string(),
                }));
            }
            let mut block = vec![0u8; tail as usize];
            file.seek(SeekFrom::Start(payload.len))?;
            file.read_exact(&mut block)?;
            Ok(match decode_block(&block, payload.len) {
                Ok(s) => Embedded::Signatures(s),
                Err(e) => Embedded::Malformed(e.to_string()),
            })
        }
        SignaturePlace::Sections { sig, .. } => {
            if sig.size > MAX_SECTION_LEN {
                return Ok(Embedded::Malformed(format!(
                    "{} is {} bytes, more than the {MAX_SECTION_LEN} this project reads",
                    elf::SHA256_SIG.name,
                    sig.size
                )));
            }
            let bytes = elf::read_section(file, sig)?;
            if bytes.iter().all(|&b| b == 0) {
                return Ok(Embedded::Unsigned);
            }
            let text = match elf::nul_padded_text(&bytes) {
                Some(t) => t,
                None => {
                    return Ok(Embedded::Malformed(format!(
                        "{} does not start with an armored signature",
                        elf::SHA256_SIG.name
                    )));
                }
            };
            Ok(match SshSig::from_armored(&text) {
                Ok(s) => Embedded::Signatures(vec![s]),
                Err(e) => Embedded::Malformed(format!("{}: {e}", elf::SHA256_SIG.name)),
            })
        }
    }
}

/// [`read_embedded`] for a verity block of `tail` bytes.
fn read_verity_embedded(file: &mut File, payload: &Payload, tail: u64) -> Result<Embedded> {
    if tail < VERITY_END_LEN {
        return Ok(Embedded::Malformed(BlockError::TooShort(tail).to_string()));
    }
    let mut end = [0u8; VERITY_END_LEN as usize];
    file.seek(SeekFrom::Start(payload.file_len - VERITY_END_LEN))?;
    file.read_exact(&mut end)?;
    let (footer, _desc, entries) = match decode_verity_end(&end, payload.len, tail) {
        Ok(x) => x,
        Err(e) => return Ok(Embedded::Malformed(e.to_string())),
    };
    let mut buf = vec![0u8; entries as usize];
    file.seek(SeekFrom::Start(payload.file_len - VERITY_END_LEN - entries))?;
    file.read_exact(&mut buf)?;
    Ok(match decode_entries(&buf, footer.count) {
        Ok(s) if s.is_empty() => Embedded::Unsigned,
        Ok(s) => Embedded::Signatures(s),
        Err(e) => Embedded::Malformed(e.to_string()),
    })
}

/// The armored signatures of the image at `path` (for
/// `sik inspect --signature`), concatenated; `None` when unsigned.
pub fn armored_signatures(path: &Path) -> Result<Option<String>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let p = payload_of(&mut f)?;
    match read_embedded(&mut f, &p)? {
        Embedded::Unsigned => Ok(None),
        Embedded::Malformed(why) => Err(Error::malformed("signature", why)),
        Embedded::Signatures(s) => Ok(Some(s.iter().map(SshSig::armor).collect())),
    }
}
