//! Section 1 of `spec/signature.md`: the OpenSSH SSHSIG signature, its
//! binary blob, its armored form, the data the Ed25519 signature is made
//! over, and the OpenSSH public key forms (key blob, key line, fingerprint).
//!
//! The blob is decoded here rather than by `ssh_key::SshSig` because a
//! verifier must read signatures it will refuse (another namespace, an
//! unknown hash algorithm or key type) to say why; public key lines,
//! fingerprints and the armor are written by `ssh-key`/`ssh-encoding`, the
//! code `ssh-keygen`-compatible tools share.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256, Sha512};
use ssh_encoding::{EncodePem as _, LineEnding};

use super::MAX_ENTRY_LEN;
use crate::{Error, Result};

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

pub(super) fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A reader of SSH wire-format fields over a byte slice, bounded by it.
pub(super) struct Wire<'a>(pub(super) &'a [u8]);

impl<'a> Wire<'a> {
    pub(super) fn u32(&mut self) -> Option<u32> {
        let (h, t) = self.0.split_at_checked(4)?;
        self.0 = t;
        Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }
    pub(super) fn string(&mut self) -> Option<&'a [u8]> {
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

/// Armor a binary SSHSIG blob: `ssh-encoding`'s PEM encoder with the
/// `SSH SIGNATURE` label and [`ARMOR_WIDTH`]-character lines, as
/// `ssh-keygen -Y sign` writes.
pub fn armor(blob: &[u8]) -> String {
    if blob.is_empty() {
        // ssh-encoding writes an empty body line; no line at all is the
        // form the specification gives (no SSHSIG blob is empty anyway).
        return format!("{ARMOR_BEGIN}\n{ARMOR_END}\n");
    }
    Armor(blob)
        .encode_pem_string(LineEnding::LF)
        // Encoding bytes that are already in memory into a String cannot
        // fail; an empty armor would be refused by every reader.
        .unwrap_or_default()
}

/// An SSHSIG blob as `ssh-encoding` sees it: bytes written as they are,
/// under the `SSH SIGNATURE` PEM label.
struct Armor<'a>(&'a [u8]);

impl ssh_encoding::Encode for Armor<'_> {
    fn encoded_len(&self) -> ssh_encoding::Result<usize> {
        Ok(self.0.len())
    }

    fn encode(&self, writer: &mut impl ssh_encoding::Writer) -> ssh_encoding::Result<()> {
        writer.write(self.0)
    }
}

impl ssh_encoding::pem::PemLabel for Armor<'_> {
    const PEM_LABEL: &'static str = "SSH SIGNATURE";
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

/// `SHA256:<base64 without padding>` of a public key blob (ssh-keygen's
/// form, written by `ssh-key`). Any blob has one, also a key this project
/// cannot use, so that a report can name it.
pub fn fingerprint(key_blob: &[u8]) -> String {
    ssh_key::Fingerprint::Sha256(Sha256::digest(key_blob).into()).to_string()
}

/// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`) of a key blob,
/// written by `ssh-key`. A blob `ssh-key` cannot decode is written as its
/// type name and base64 all the same.
pub fn public_key_line(key_blob: &[u8], comment: &str) -> String {
    if let Ok(line) = ssh_key::PublicKey::from_bytes(key_blob).and_then(|mut k| {
        k.set_comment(comment);
        k.to_openssh()
    }) {
        return line;
    }
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

/// Parse the key part of an OpenSSH public key line: `TYPE BASE64 [COMMENT]`,
/// fields separated by spaces or tabs. Returns the key blob and the comment.
/// The blob's own type must match TYPE; the key data is not decoded (unlike
/// `ssh_key::PublicKey::from_openssh`), because a trust store reads keys of
/// every type, also ones it cannot use, and they simply never match.
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
