//! Section 2 of `spec/signature.md`: the payload, the bytes a signature
//! covers. An ExtensionImage's payload is its SquashFS padded to 4096
//! bytes; an AppImage's is the whole file with the `.sha256_sig` and
//! `.sig_key` sections read as zeros. Hashing streams the payload through
//! a fixed buffer ([`BUF_LEN`]), so memory does not grow with the image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

use super::block::{BLOCK_VERSION_VERITY, VERITY_END_LEN, decode_verity_end, read_footer};
use super::sshsig::HashAlg;
use crate::kind::{self, ImageKind};
use crate::{Error, Result, elf, squashfs, verity};

/// Read size of the streaming digest.
pub const BUF_LEN: usize = 1024 * 1024;

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
    /// ExtensionImage with a verity block whose descriptor is valid for
    /// this payload: the descriptor, which is then the signed message
    /// (the data is bound to it through the hash tree's root hash).
    pub verity: Option<verity::Descriptor>,
}

impl Payload {
    /// The signed message when it is not the file's bytes: the encoded
    /// verity descriptor of a verity image.
    pub fn message(&self) -> Option<[u8; verity::DESCRIPTOR_LEN]> {
        self.verity.as_ref().map(verity::Descriptor::encode)
    }
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
                verity: None,
            };
            let mut p = match (sb, footer) {
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
            }?;
            if let Some(f) = footer
                && f.version == BLOCK_VERSION_VERITY
                && f.payload_len == p.len
                && f.block_len >= VERITY_END_LEN
            {
                let mut end = [0u8; VERITY_END_LEN as usize];
                file.seek(SeekFrom::Start(file_len - VERITY_END_LEN))?;
                file.read_exact(&mut end)?;
                p.verity = decode_verity_end(&end, p.len, f.block_len)
                    .ok()
                    .map(|(_, d, _)| d);
            }
            Ok(p)
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
                verity: None,
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
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let p = payload_of(&mut f)?;
    if let Some(m) = p.message() {
        out.write_all(&m)?;
        return Ok(m.len() as u64);
    }
    let mut r = PayloadReader::new(f, &p).map_err(|e| Error::io(path, e))?;
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
    if let Some(m) = payload.message() {
        return Ok(algs.iter().map(|a| (*a, a.hash(&m))).collect());
    }
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
