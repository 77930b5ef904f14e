//! Where signatures live in an image, what they cover, and the SSHSIG wire
//! format they use. The specification is `spec/signature.md`; this module is
//! its only implementation and every tool (sign, verify, inspect, the linker,
//! the AppImage runtime) uses it.
//!
//! * **Payload** (the signed bytes):
//!   - ExtensionImage: the SquashFS exactly as written, `padded_len(bytes_used)`
//!     bytes from offset 0 (bytes missing at the end of a file written
//!     without padding count as zeros);
//!   - AppImage: the whole file with the sections `.sha256_sig` and
//!     `.sig_key` read as zeros.
//! * **Where the signature is**:
//!   - ExtensionImage: a signature block after the payload, found from the
//!     end of the file by its fixed 32-byte [`Footer`];
//!   - AppImage: the armored SSHSIG in `.sha256_sig`, the signer's public key
//!     line in `.sig_key` (both NUL-padded).
//! * **Signature**: OpenSSH SSHSIG ([`SshSig`]), namespace [`NAMESPACE`],
//!   message hash SHA-256 or SHA-512 of the payload.
//!
//! Hashing streams the payload through a fixed buffer ([`BUF_LEN`]), so memory
//! does not grow with the image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256, Sha512};

use crate::kind::{self, ImageKind};
use crate::{Error, Result, elf, squashfs};

/// The SSHSIG namespace of SystemImageKit signatures.
pub const NAMESPACE: &str = "systemimagekit";
/// Magic preamble of an SSHSIG blob and of its signed data.
pub const SSHSIG_MAGIC: &[u8; 6] = b"SSHSIG";
/// The SSHSIG version this project writes and reads.
pub const SSHSIG_VERSION: u32 = 1;
/// First line of an armored SSHSIG.
pub const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
/// Last line of an armored SSHSIG.
pub const ARMOR_END: &str = "-----END SSH SIGNATURE-----";
/// Base64 characters per armored line (as `ssh-keygen -Y sign` writes).
pub const ARMOR_WIDTH: usize = 70;
/// OpenSSH name of the Ed25519 key and signature type.
pub const ED25519: &str = "ssh-ed25519";

/// Magic of the signature-block footer of an ExtensionImage.
pub const FOOTER_MAGIC: &[u8; 8] = b"SIK-SIG\0";
/// Version of the signature block layout.
pub const BLOCK_VERSION: u32 = 1;
/// Length of the footer.
pub const FOOTER_LEN: u64 = 32;
/// Most signatures one ExtensionImage block may hold.
pub const MAX_ENTRIES: u32 = 16;
/// Largest SSHSIG blob accepted in a block or an armor.
pub const MAX_ENTRY_LEN: u32 = 16 * 1024;
/// Largest `.sha256_sig`/`.sig_key` section read or written (the runtime
/// reserves 1024 and 8192 bytes).
pub const MAX_SECTION_LEN: u64 = 64 * 1024;
/// Read size of the streaming digest.
pub const BUF_LEN: usize = 1024 * 1024;

/// Message hash of an SSHSIG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    /// `sha256` (default: the fast one on CPUs with SHA extensions).
    Sha256,
    /// `sha512`.
    Sha512,
}

impl HashAlg {
    /// The name in the SSHSIG blob.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// From the name in the SSHSIG blob.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(HashAlg::Sha256),
            "sha512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// Hash a byte string at once (small inputs).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------
// SSHSIG wire format (OpenSSH PROTOCOL.sshsig)
// ---------------------------------------------------------------------------

/// A decoded SSHSIG blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSig {
    /// The signer's public key blob (`string key_type || key data`).
    pub public_key: Vec<u8>,
    /// The namespace the signature was made for.
    pub namespace: String,
    /// The reserved field (empty in every known writer).
    pub reserved: Vec<u8>,
    /// The message hash name as written (`sha256`, `sha512`, or anything).
    pub hash_alg: String,
    /// The signature blob (`string sig_type || string sig_bytes`).
    pub signature: Vec<u8>,
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A reader of SSH wire-format fields over a byte slice, bounded by it.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (h, t) = self.0.split_at_checked(4)?;
        self.0 = t;
        Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let (h, t) = self.0.split_at_checked(n)?;
        self.0 = t;
        Some(h)
    }
}

fn malformed(why: impl Into<String>) -> Error {
    Error::malformed("SSHSIG", why)
}

impl SshSig {
    /// An Ed25519 public key blob from the 32 key bytes.
    pub fn ed25519_key_blob(key: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::with_capacity(51);
        put_string(&mut b, ED25519.as_bytes());
        put_string(&mut b, key);
        b
    }

    /// An Ed25519 signature blob from the 64 signature bytes.
    pub fn ed25519_sig_blob(sig: &[u8; 64]) -> Vec<u8> {
        let mut b = Vec::with_capacity(83);
        put_string(&mut b, ED25519.as_bytes());
        put_string(&mut b, sig);
        b
    }

    /// The Ed25519 key bytes, when the key is Ed25519.
    pub fn ed25519_public_key(&self) -> Option<[u8; 32]> {
        parse_ed25519_key_blob(&self.public_key)
    }

    /// The Ed25519 signature bytes, when the signature is Ed25519.
    pub fn ed25519_signature(&self) -> Option<[u8; 64]> {
        let mut w = Wire(&self.signature);
        if w.string()? != ED25519.as_bytes() {
            return None;
        }
        let s = w.string()?;
        if !w.0.is_empty() {
            return None;
        }
        s.try_into().ok()
    }

    /// The key type named in the public key blob.
    pub fn key_type(&self) -> String {
        Wire(&self.public_key)
            .string()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default()
    }

    /// The hash algorithm, when it is one this project knows.
    pub fn hash(&self) -> Option<HashAlg> {
        HashAlg::from_name(&self.hash_alg)
    }

    /// `SHA256:…` fingerprint of the signer's key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_key)
    }

    /// The binary blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            64 + self.public_key.len() + self.namespace.len() + self.signature.len(),
        );
        b.extend_from_slice(SSHSIG_MAGIC);
        b.extend_from_slice(&SSHSIG_VERSION.to_be_bytes());
        put_string(&mut b, &self.public_key);
        put_string(&mut b, self.namespace.as_bytes());
        put_string(&mut b, &self.reserved);
        put_string(&mut b, self.hash_alg.as_bytes());
        put_string(&mut b, &self.signature);
        b
    }

    /// Decode a binary blob; every length is checked against the input and
    /// trailing bytes are refused.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        if blob.len() > MAX_ENTRY_LEN as usize {
            return Err(malformed("signature blob is too large"));
        }
        let rest = blob
            .strip_prefix(SSHSIG_MAGIC.as_slice())
            .ok_or_else(|| malformed("no SSHSIG magic"))?;
        let mut w = Wire(rest);
        let version = w.u32().ok_or_else(|| malformed("truncated"))?;
        if version != SSHSIG_VERSION {
            return Err(malformed(format!("unsupported version {version}")));
        }
        let mut field = |name: &str| {
            w.string()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| malformed(format!("truncated {name} field")))
        };
        let public_key = field("public key")?;
        let namespace = field("namespace")?;
        let reserved = field("reserved")?;
        let hash_alg = field("hash algorithm")?;
        let signature = field("signature")?;
        if !w.0.is_empty() {
            return Err(malformed("bytes after the signature field"));
        }
        let text = |v: Vec<u8>, name: &str| {
            String::from_utf8(v).map_err(|_| malformed(format!("{name} is not UTF-8")))
        };
        Ok(SshSig {
            public_key,
            namespace: text(namespace, "namespace")?,
            reserved,
            hash_alg: text(hash_alg, "hash algorithm")?,
            signature,
        })
    }

    /// The armored form (`-----BEGIN SSH SIGNATURE-----` …), newline-terminated,
    /// byte-identical to what `ssh-keygen -Y sign` writes.
    pub fn armor(&self) -> String {
        armor(&self.encode())
    }

    /// Parse an armored signature (surrounding whitespace allowed, any line width).
    pub fn from_armored(text: &str) -> Result<Self> {
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        let body = text
            .strip_prefix(ARMOR_BEGIN)
            .ok_or_else(|| malformed("no BEGIN SSH SIGNATURE line"))?
            .strip_suffix(ARMOR_END)
            .ok_or_else(|| malformed("no END SSH SIGNATURE line"))?;
        if body.len() > 2 * MAX_ENTRY_LEN as usize {
            return Err(malformed("armored signature is too large"));
        }
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let blob = STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| malformed(format!("bad base64: {e}")))?;
        Self::decode(&blob)
    }
}

/// Armor a binary SSHSIG blob.
pub fn armor(blob: &[u8]) -> String {
    let b64 = STANDARD.encode(blob);
    let mut out = String::with_capacity(b64.len() + b64.len() / ARMOR_WIDTH + 64);
    out.push_str(ARMOR_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(ARMOR_WIDTH) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out
}

/// The Ed25519 key bytes of an OpenSSH public key blob.
pub fn parse_ed25519_key_blob(blob: &[u8]) -> Option<[u8; 32]> {
    let mut w = Wire(blob);
    if w.string()? != ED25519.as_bytes() {
        return None;
    }
    let k = w.string()?;
    if !w.0.is_empty() {
        return None;
    }
    k.try_into().ok()
}

/// `SHA256:<base64 without padding>` of a public key blob (ssh-keygen's form).
pub fn fingerprint(key_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(key_blob))
    )
}

/// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`) of a key blob.
pub fn public_key_line(key_blob: &[u8], comment: &str) -> String {
    let kt = Wire(key_blob)
        .string()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    let mut line = format!("{kt} {}", STANDARD.encode(key_blob));
    if !comment.is_empty() {
        line.push(' ');
        line.push_str(comment);
    }
    line
}

/// Parse the key part of an OpenSSH public key line: `TYPE BASE64 [COMMENT]`.
/// Returns the key blob and the comment. The blob's own type must match TYPE.
pub fn parse_public_key_line(line: &str) -> Option<(Vec<u8>, String)> {
    let line = line.trim();
    let (kt, rest) = line.split_once([' ', '\t'])?;
    let rest = rest.trim_start();
    let (b64, comment) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let comment = comment.trim().to_string();
    let blob = STANDARD.decode(b64.as_bytes()).ok()?;
    if Wire(&blob).string()? != kt.as_bytes() {
        return None;
    }
    Some((blob, comment))
}

/// The data an SSHSIG signature is made over:
/// `"SSHSIG" || string(namespace) || string(reserved) || string(hash_alg) || string(H(message))`.
pub fn signed_data(namespace: &str, reserved: &[u8], hash_alg: &str, digest: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(
        6 + 16 + namespace.len() + reserved.len() + hash_alg.len() + digest.len(),
    );
    d.extend_from_slice(SSHSIG_MAGIC);
    put_string(&mut d, namespace.as_bytes());
    put_string(&mut d, reserved);
    put_string(&mut d, hash_alg.as_bytes());
    put_string(&mut d, digest);
    d
}

// ---------------------------------------------------------------------------
// ExtensionImage signature block
// ---------------------------------------------------------------------------

/// The fixed footer at the very end of a signed ExtensionImage.
///
/// Layout (32 bytes, integers big-endian): magic `SIK-SIG\0` (8),
/// version u32 = 1, count u32 (entries), block_len u64 (whole block including
/// this footer), payload_len u64 (offset where the block starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
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
        b[8..12].copy_from_slice(&BLOCK_VERSION.to_be_bytes());
        b[12..16].copy_from_slice(&self.count.to_be_bytes());
        b[16..24].copy_from_slice(&self.block_len.to_be_bytes());
        b[24..32].copy_from_slice(&self.payload_len.to_be_bytes());
        b
    }

    /// Parse footer bytes. `Ok(None)`: no footer magic (not a signature block).
    pub fn decode(b: &[u8; FOOTER_LEN as usize]) -> std::result::Result<Option<Self>, String> {
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
        if version != BLOCK_VERSION {
            return Err(format!("unsupported signature block version {version}"));
        }
        Ok(Some(Footer {
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
        count: sigs.len() as u32,
        block_len: b.len() as u64 + FOOTER_LEN,
        payload_len,
    };
    b.extend_from_slice(&footer.encode());
    b
}

/// Decode the block bytes that follow a payload of `payload_len` bytes
/// (everything from `payload_len` to the end of the file).
pub fn decode_block(block: &[u8], payload_len: u64) -> std::result::Result<Vec<SshSig>, String> {
    let total = block.len() as u64;
    if total < FOOTER_LEN {
        return Err(format!(
            "{total} bytes after the filesystem are too few for a signature block"
        ));
    }
    let (entries, foot) = block.split_at(block.len() - FOOTER_LEN as usize);
    let foot: &[u8; FOOTER_LEN as usize] = foot.try_into().map_err(|_| "footer".to_string())?;
    let footer = Footer::decode(foot)?.ok_or_else(|| {
        format!("{total} bytes after the filesystem are not a signature block (no footer)")
    })?;
    if footer.block_len != total {
        return Err(format!(
            "footer says the block is {} bytes, but {total} bytes follow the filesystem (truncated or extended)",
            footer.block_len
        ));
    }
    if footer.payload_len != payload_len {
        return Err(format!(
            "footer says the payload is {} bytes, the filesystem is {payload_len}",
            footer.payload_len
        ));
    }
    if footer.count == 0 || footer.count > MAX_ENTRIES {
        return Err(format!("unsupported signature count {}", footer.count));
    }
    let mut w = Wire(entries);
    let mut sigs = Vec::new();
    for i in 0..footer.count {
        let blob = w
            .string()
            .ok_or_else(|| format!("signature {} is truncated", i + 1))?;
        sigs.push(SshSig::decode(blob).map_err(|e| format!("signature {}: {e}", i + 1))?);
    }
    if !w.0.is_empty() {
        return Err("bytes between the last signature and the footer".to_string());
    }
    Ok(sigs)
}

// ---------------------------------------------------------------------------
// Payload of an image
// ---------------------------------------------------------------------------

/// Which kind of signed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignedKind {
    /// A SquashFS ExtensionImage.
    Extension,
    /// A type 2 AppImage.
    AppImage,
}

/// Where the signature of an image lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignaturePlace {
    /// ExtensionImage: a block from `payload_len` to the end of the file.
    Block,
    /// AppImage: the two reserved ELF sections (offset, size each).
    Sections {
        /// `.sha256_sig` (armored signature).
        sig: elf::Section,
        /// `.sig_key` (public key line).
        key: elf::Section,
    },
    /// An AppImage without `.sha256_sig`/`.sig_key`: it cannot carry one.
    Missing(String),
}

/// The payload of an image: what is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Image kind.
    pub kind: SignedKind,
    /// Length of the file on disk.
    pub file_len: u64,
    /// Length of the payload.
    pub len: u64,
    /// Byte ranges `(offset, len)` of the payload read as zeros (sorted).
    pub zeroed: Vec<(u64, u64)>,
    /// For ExtensionImages: the SquashFS `bytes_used`.
    pub bytes_used: Option<u64>,
    /// Where the signature lives.
    pub place: SignaturePlace,
    /// ExtensionImage whose superblock is damaged or disagrees with its
    /// signature block: why. The payload is then the one the block names,
    /// so signatures can be checked (they cannot be valid unless the signer
    /// made the block so); such an image is never trusted and never signed.
    pub disagreement: Option<String>,
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
            if f.block_len >= FOOTER_LEN
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

/// Work out the payload of the image in `file`. Fails when the file is not
/// an ExtensionImage (SquashFS) or a type 2 AppImage.
pub fn payload_of(file: &mut File) -> Result<Payload> {
    let file_len = file.seek(SeekFrom::End(0))?;
    match kind::detect(file)? {
        ImageKind::SquashFs => {
            let footer = read_footer(file, file_len)?;
            let sb = squashfs::read_superblock(file, 0).and_then(|sb| {
                if sb.bytes_used > file_len {
                    Err(Error::malformed(
                        "squashfs",
                        format!(
                            "the file ({file_len} bytes) is shorter than its filesystem ({} bytes)",
                            sb.bytes_used
                        ),
                    ))
                } else {
                    Ok(sb)
                }
            });
            let extension = |len, bytes_used, disagreement| Payload {
                kind: SignedKind::Extension,
                file_len,
                len,
                zeroed: Vec::new(),
                bytes_used,
                place: SignaturePlace::Block,
                disagreement,
            };
            match (sb, footer) {
                (Ok(sb), Some(f)) if f.payload_len != sb.padded_len() => Ok(extension(
                    f.payload_len,
                    Some(sb.bytes_used),
                    Some(format!(
                        "the signature block starts at {}, but the superblock says the filesystem ends at {}",
                        f.payload_len,
                        sb.padded_len()
                    )),
                )),
                (Ok(sb), _) => Ok(extension(sb.padded_len(), Some(sb.bytes_used), None)),
                // A damaged superblock in front of a signature block: the
                // block says what was signed, so verification can say
                // "modified" instead of giving up.
                (Err(e), Some(f)) => Ok(extension(f.payload_len, None, Some(e.to_string()))),
                (Err(e), None) => Err(e),
            }
        }
        ImageKind::AppImage { image_type: 2 } => {
            let layout = elf::read_layout(file)?;
            let sig = layout.reserved(elf::SHA256_SIG)?.cloned();
            let key = layout.reserved(elf::SIG_KEY)?.cloned();
            let (zeroed, place) = match (sig, key) {
                (Some(sig), Some(key)) => {
                    let mut z = vec![(sig.offset, sig.size), (key.offset, key.size)];
                    z.sort_unstable();
                    (z, SignaturePlace::Sections { sig, key })
                }
                (s, k) => {
                    let missing: Vec<&str> = [
                        (s.is_none(), elf::SHA256_SIG.name),
                        (k.is_none(), elf::SIG_KEY.name),
                    ]
                    .iter()
                    .filter(|(m, _)| *m)
                    .map(|(_, n)| *n)
                    .collect();
                    let why = format!(
                        "the AppImage runtime has no {} section",
                        missing.join(" and no ")
                    );
                    (Vec::new(), SignaturePlace::Missing(why))
                }
            };
            Ok(Payload {
                kind: SignedKind::AppImage,
                file_len,
                len: file_len,
                zeroed,
                bytes_used: None,
                place,
                disagreement: None,
            })
        }
        other => Err(Error::malformed(
            "image",
            format!(
                "{} cannot be signed (an ExtensionImage or a type 2 AppImage is needed)",
                other.describe()
            ),
        )),
    }
}

/// [`payload_of`] for a path.
pub fn payload_of_path(path: &Path) -> Result<Payload> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    payload_of(&mut f)
}

/// A reader of the payload bytes of an image: the file's bytes, with the
/// zeroed ranges read as zeros and reads past the end of the file (the
/// padding of an unpadded SquashFS) as zeros, ending at the payload length.
pub struct PayloadReader<R> {
    inner: R,
    pos: u64,
    len: u64,
    file_len: u64,
    zeroed: Vec<(u64, u64)>,
}

impl<R: Read + Seek> PayloadReader<R> {
    /// Read the payload `payload` of `inner` (rewinds it).
    pub fn new(mut inner: R, payload: &Payload) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(0))?;
        Ok(PayloadReader {
            inner,
            pos: 0,
            len: payload.len,
            file_len: payload.file_len,
            zeroed: payload.zeroed.clone(),
        })
    }
}

impl<R: Read + Seek> Read for PayloadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let mut want = (self.len - self.pos).min(buf.len() as u64);
        // Inside a zeroed range, or past the end of the file: zeros.
        let zero_end = self
            .zeroed
            .iter()
            .find(|(o, l)| self.pos >= *o && self.pos < o + l)
            .map(|(o, l)| o + l)
            .or((self.pos >= self.file_len).then_some(self.len));
        if let Some(end) = zero_end {
            let n = (end - self.pos).min(want) as usize;
            buf[..n].fill(0);
            self.pos += n as u64;
            if self.pos < self.file_len {
                self.inner.seek(SeekFrom::Start(self.pos))?;
            }
            return Ok(n);
        }
        // File bytes up to the next zeroed range or the end of the file.
        if let Some((o, _)) = self.zeroed.iter().find(|(o, _)| *o > self.pos) {
            want = want.min(o - self.pos);
        }
        want = want.min(self.file_len - self.pos);
        let n = self.inner.read(&mut buf[..want as usize])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Open `path` and return a reader of its payload bytes (for
/// `sik inspect --payload` and `ssh-keygen -Y sign/verify` interop).
pub fn payload_reader(path: &Path) -> Result<PayloadReader<File>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let p = payload_of(&mut f)?;
    PayloadReader::new(f, &p).map_err(|e| Error::io(path, e))
}

/// Write the payload bytes of the image at `path` to `out`; returns the length.
pub fn write_payload(path: &Path, out: &mut dyn io::Write) -> Result<u64> {
    let mut r = payload_reader(path)?;
    let mut buf = vec![0u8; BUF_LEN];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok(total)
}

/// Digests of the payload, one per requested algorithm, from one streaming
/// pass with [`BUF_LEN`] reads.
pub fn digest_payload(
    file: &mut File,
    payload: &Payload,
    algs: &[HashAlg],
) -> io::Result<Vec<(HashAlg, Vec<u8>)>> {
    let mut s256 = algs.contains(&HashAlg::Sha256).then(Sha256::new);
    let mut s512 = algs.contains(&HashAlg::Sha512).then(Sha512::new);
    let mut r = PayloadReader::new(&mut *file, payload)?;
    // One thread, large reads into one buffer that stays in cache while it
    // is hashed: the same work as `openssl dgst`, and the SHA-NI path of sha2
    // (detected at run time) does the hashing.
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = crate::read_full(&mut r, &mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(h) = s256.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(h) = s512.as_mut() {
            h.update(&buf[..n]);
        }
    }
    let mut out = Vec::new();
    if let Some(h) = s256 {
        out.push((HashAlg::Sha256, h.finalize().to_vec()));
    }
    if let Some(h) = s512 {
        out.push((HashAlg::Sha512, h.finalize().to_vec()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Embedded signatures
// ---------------------------------------------------------------------------

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
                    Err(e) => e,
                }));
            }
            let mut block = vec![0u8; tail as usize];
            file.seek(SeekFrom::Start(payload.len))?;
            file.read_exact(&mut block)?;
            Ok(match decode_block(&block, payload.len) {
                Ok(s) => Embedded::Signatures(s),
                Err(e) => Embedded::Malformed(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SshSig {
        SshSig {
            public_key: SshSig::ed25519_key_blob(&[7u8; 32]),
            namespace: NAMESPACE.into(),
            reserved: Vec::new(),
            hash_alg: "sha256".into(),
            signature: SshSig::ed25519_sig_blob(&[9u8; 64]),
        }
    }

    #[test]
    fn blob_round_trip_and_armor() {
        let s = sample();
        assert_eq!(SshSig::decode(&s.encode()).unwrap(), s);
        let a = s.armor();
        assert!(a.lines().skip(1).all(|l| l.len() <= ARMOR_WIDTH));
        assert_eq!(SshSig::from_armored(&a).unwrap(), s);
        assert_eq!(s.ed25519_public_key(), Some([7u8; 32]));
        assert_eq!(s.ed25519_signature(), Some([9u8; 64]));
    }

    #[test]
    fn decode_rejects_truncation_and_trailing_bytes() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(SshSig::decode(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut t = b.clone();
        t.push(0);
        assert!(SshSig::decode(&t).is_err());
    }

    #[test]
    fn block_round_trip_and_damage() {
        let sigs = vec![sample(), sample()];
        let b = encode_block(&sigs, 8192);
        assert_eq!(decode_block(&b, 8192).unwrap(), sigs);
        assert!(decode_block(&b, 4096).is_err());
        assert!(decode_block(&b[1..], 8192).is_err());
        assert!(decode_block(&b[..b.len() - 1], 8192).is_err());
        let mut g = b.clone();
        g[10] ^= 0xff;
        assert!(decode_block(&g, 8192).is_err());
    }

    #[test]
    fn damaged_blocks_never_panic() {
        let b = encode_block(&[sample(), sample()], 4096);
        for n in 0..b.len() {
            let _ = decode_block(&b[..n], 4096);
            let _ = decode_block(&b[n..], 4096);
        }
        for i in 0..b.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut g = b.clone();
                g[i] = v;
                let _ = decode_block(&g, 4096);
            }
        }
        let a = sample().armor();
        for n in 0..a.len() {
            let _ = SshSig::from_armored(&a[..n]);
        }
    }

    #[test]
    fn payload_reader_zeroes_ranges_and_pads() {
        use std::io::Write;
        let mut f = tempfile_in_target();
        f.write_all(&[1u8; 100]).unwrap();
        let p = Payload {
            kind: SignedKind::AppImage,
            file_len: 100,
            len: 120,
            zeroed: vec![(10, 5), (50, 10)],
            bytes_used: None,
            place: SignaturePlace::Block,
            disagreement: None,
        };
        let mut r = PayloadReader::new(&mut f, &p).unwrap();
        let mut out = Vec::new();
        let mut small = [0u8; 7];
        loop {
            let n = r.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        let mut want = vec![1u8; 100];
        want[10..15].fill(0);
        want[50..60].fill(0);
        want.extend_from_slice(&[0u8; 20]);
        assert_eq!(out, want);
    }

    #[test]
    fn streaming_digest_equals_one_shot_hash() {
        use std::io::Write;
        let mut f = tempfile_in_target();
        let data: Vec<u8> = (0..(2 * BUF_LEN + 12345) as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let len = data.len() as u64;
        let p = Payload {
            kind: SignedKind::AppImage,
            file_len: len,
            len: len + 100,
            zeroed: vec![(5, 1024), (BUF_LEN as u64 - 3, 8192)],
            bytes_used: None,
            place: SignaturePlace::Block,
            disagreement: None,
        };
        let mut want = data.clone();
        want[5..5 + 1024].fill(0);
        want[BUF_LEN - 3..BUF_LEN - 3 + 8192].fill(0);
        want.extend_from_slice(&[0u8; 100]);
        let got = digest_payload(&mut f, &p, &[HashAlg::Sha256, HashAlg::Sha512]).unwrap();
        assert_eq!(
            got,
            vec![
                (HashAlg::Sha256, HashAlg::Sha256.hash(&want)),
                (HashAlg::Sha512, HashAlg::Sha512.hash(&want)),
            ]
        );
    }

    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("sik-sig-unit-{}-{n}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    #[test]
    fn public_key_lines() {
        let blob = SshSig::ed25519_key_blob(&[3u8; 32]);
        let line = public_key_line(&blob, "me@host");
        let (b, c) = parse_public_key_line(&line).unwrap();
        assert_eq!(b, blob);
        assert_eq!(c, "me@host");
        assert!(parse_public_key_line("ssh-rsa AAAA").is_none());
    }
}
