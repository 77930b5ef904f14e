//! Ed25519 keys in OpenSSH format and SSHSIG signing of ExtensionImages and
//! AppImages.
//!
//! Keys are OpenSSH private keys (unencrypted, or encrypted with a passphrase
//! the way `ssh-keygen` does: bcrypt-pbkdf + aes256-ctr), so existing
//! `~/.ssh/id_ed25519` keys sign too. Signatures are OpenSSH SSHSIG
//! (namespace `systemimagekit`) over an image's payload; where they are
//! stored is defined in [`sik_image::signature`] (spec: `spec/signature.md`).
//! Signing an image rewrites it atomically: a temporary copy in the same
//! directory is signed, synced and renamed over the original.
//!
//! ```no_run
//! use sik_image::signature::HashAlg;
//! use sik_sign::{Key, sign_file};
//! let key = Key::load("release-key".as_ref(), None).unwrap();
//! let sig = sign_file("firmware.ExtensionImage".as_ref(), &key, HashAlg::Sha256).unwrap();
//! println!("{}", sig.fingerprint());
//! ```

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use sik_image::signature::{
    self as sig, Embedded, HashAlg, NAMESPACE, Payload, SignaturePlace, SignedKind, SshSig,
};
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{LineEnding, PrivateKey};

/// Why a key could not be used or an image not signed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The key file cannot be used.
    #[error("{path}: {why}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key is encrypted and no passphrase was given.
    #[error("{0}: the key is encrypted; a passphrase is needed")]
    NeedPassphrase(PathBuf),
    /// The file is not an image that can carry a signature.
    #[error("{path}: {why}")]
    Image {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A signature given to embed does not fit the image.
    #[error("{path}: {why}")]
    Signature {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// An Ed25519 signing key with its comment.
#[derive(Clone)]
pub struct Key {
    signing: SigningKey,
    comment: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("fingerprint", &self.fingerprint())
            .field("comment", &self.comment)
            .finish()
    }
}

impl Key {
    /// A new random key (from the operating system's generator).
    pub fn generate(comment: &str) -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Key::from_seed(&seed, comment)
    }

    /// The key of a 32-byte Ed25519 seed (RFC 8032 "secret key").
    pub fn from_seed(seed: &[u8; 32], comment: &str) -> Self {
        Key {
            signing: SigningKey::from_bytes(seed),
            comment: comment.to_string(),
        }
    }

    /// Parse an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    /// `path` only names the key in errors.
    pub fn from_openssh(
        text: &[u8],
        passphrase: Option<&[u8]>,
        path: &Path,
    ) -> Result<Self, Error> {
        let bad = |why: String| Error::Key {
            path: path.to_path_buf(),
            why,
        };
        let mut pk = PrivateKey::from_openssh(text)
            .map_err(|e| bad(format!("not an OpenSSH private key ({e})")))?;
        if pk.is_encrypted() {
            let pass = passphrase.ok_or_else(|| Error::NeedPassphrase(path.to_path_buf()))?;
            pk = pk
                .decrypt(pass)
                .map_err(|_| bad("wrong passphrase (the key cannot be decrypted)".into()))?;
        }
        let kp = pk.key_data().ed25519().ok_or_else(|| {
            bad(format!(
                "{} key; only Ed25519 keys sign images",
                pk.algorithm()
            ))
        })?;
        let key = Key::from_seed(&kp.private.to_bytes(), pk.comment());
        if key.signing.verifying_key().to_bytes() != kp.public.0 {
            return Err(bad("the public half does not match the private key".into()));
        }
        Ok(key)
    }

    /// Read an OpenSSH private key file.
    pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let text = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Key::from_openssh(&text, passphrase, path)
    }

    /// The OpenSSH private key text, encrypted when a passphrase is given.
    pub fn to_openssh(&self, passphrase: Option<&[u8]>) -> Result<String, Error> {
        let err = |e: ssh_key::Error| Error::Key {
            path: PathBuf::new(),
            why: e.to_string(),
        };
        let kp = Ed25519Keypair::from_seed(&self.signing.to_bytes());
        let mut pk = PrivateKey::new(KeypairData::from(kp), self.comment.clone()).map_err(err)?;
        if let Some(p) = passphrase {
            pk = pk.encrypt(&mut OsRng, p).map_err(err)?;
        }
        Ok(pk.to_openssh(LineEnding::LF).map_err(err)?.to_string())
    }

    /// Write `path` (private key, mode 0600) and `path.pub` (public key line).
    /// Refuses to overwrite existing files.
    pub fn write_pair(&self, path: &Path, passphrase: Option<&[u8]>) -> Result<PathBuf, Error> {
        let pub_path = pub_path_of(path);
        let private = self.to_openssh(passphrase)?;
        for (p, text, mode) in [
            (path.to_path_buf(), private, 0o600),
            (
                pub_path.clone(),
                format!("{}\n", self.public_key_line()),
                0o644,
            ),
        ] {
            let io = |e| Error::Io {
                path: p.clone(),
                source: e,
            };
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&p)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        Ok(pub_path)
    }

    /// The comment.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The 32 public key bytes.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The OpenSSH public key blob.
    pub fn public_key_blob(&self) -> Vec<u8> {
        SshSig::ed25519_key_blob(&self.public_key_bytes())
    }

    /// `ssh-ed25519 AAAA… comment`.
    pub fn public_key_line(&self) -> String {
        sig::public_key_line(&self.public_key_blob(), &self.comment)
    }

    /// `SHA256:…` fingerprint (as `ssh-keygen -l` prints it).
    pub fn fingerprint(&self) -> String {
        sig::fingerprint(&self.public_key_blob())
    }

    /// Plain Ed25519 (RFC 8032) signature of `msg`; the primitive under
    /// every SSHSIG this crate makes.
    pub fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// An SSHSIG (namespace `systemimagekit`) for a message whose hash with
    /// `alg` is `digest`.
    pub fn sign_digest(&self, alg: HashAlg, digest: &[u8]) -> SshSig {
        self.sign_digest_ns(NAMESPACE, alg, digest)
    }

    /// An SSHSIG for another namespace (tests and interop).
    pub fn sign_digest_ns(&self, namespace: &str, alg: HashAlg, digest: &[u8]) -> SshSig {
        let data = sig::signed_data(namespace, &[], alg.name(), digest);
        SshSig {
            public_key: self.public_key_blob(),
            namespace: namespace.to_string(),
            reserved: Vec::new(),
            hash_alg: alg.name().to_string(),
            signature: SshSig::ed25519_sig_blob(&self.sign_raw(&data)),
        }
    }

    /// An SSHSIG over a whole message in memory.
    pub fn sign_message(&self, alg: HashAlg, msg: &[u8]) -> SshSig {
        self.sign_digest(alg, &alg.hash(msg))
    }
}

/// `NAME.pub` beside `NAME`.
pub fn pub_path_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Read a public key: an OpenSSH `.pub` line, or the public half of a
/// private key file (which may be encrypted: the public key is stored in clear).
/// Returns the key blob and the comment.
pub fn read_public_key(path: &Path) -> Result<(Vec<u8>, String), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bad = |why: &str| Error::Key {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    if let Ok(pk) = PrivateKey::from_openssh(&bytes) {
        let blob = pk
            .public_key()
            .to_bytes()
            .map_err(|e| bad(&e.to_string()))?;
        return Ok((blob, pk.comment().to_string()));
    }
    let text = String::from_utf8_lossy(&bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| bad("empty key file"))?;
    sig::parse_public_key_line(line)
        .ok_or_else(|| bad("neither an OpenSSH private key nor a public key line"))
}

// ---------------------------------------------------------------------------
// Signing images
// ---------------------------------------------------------------------------

fn image_err(path: &Path, e: sik_image::Error) -> Error {
    match e {
        sik_image::Error::Io { path, source } => Error::Io { path, source },
        sik_image::Error::Stream(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::Image {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// Sign the image at `path` in place with `key`. An ExtensionImage keeps the
/// signatures of other keys and replaces the one of this key; an AppImage
/// holds exactly one signature, which is replaced. Returns the new signature.
pub fn sign_file(path: &Path, key: &Key, alg: HashAlg) -> Result<SshSig, Error> {
    sign_file_with(path, key, alg, Verity::Write)
}

/// Whether signing an ExtensionImage writes the dm-verity hash tree
/// (`spec/signature.md` section 3.1). AppImages carry no tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verity {
    /// Compute the tree from the data and write it with its descriptor; the
    /// signature covers the descriptor (the default).
    Write,
    /// Leave the tree out (removing one the image had); the signature
    /// covers the filesystem bytes, as before verity.
    Leave,
    /// Keep the image's form: a tree (recomputed) when it has one.
    Keep,
}

/// [`sign_file`] choosing whether the image gets a dm-verity tree.
/// Signatures of other keys are kept only when the signed message stays
/// the same (they would no longer match otherwise).
pub fn sign_file_with(
    path: &Path,
    key: &Key,
    alg: HashAlg,
    verity: Verity,
) -> Result<SshSig, Error> {
    rewrite(path, key.comment(), verity, |tmp, tmp_path, payload| {
        let digest = digest_one(tmp, payload, alg).map_err(|e| Error::Io {
            path: tmp_path.to_path_buf(),
            source: e,
        })?;
        Ok(key.sign_digest(alg, &digest))
    })
}

/// Embed a signature made elsewhere (e.g. `ssh-keygen -Y sign -n
/// systemimagekit` over the exported payload) into the image at `path`,
/// after checking that it is an Ed25519 SSHSIG for namespace
/// `systemimagekit` that matches the image's payload.
pub fn embed_signature(path: &Path, signature: &SshSig) -> Result<(), Error> {
    let bad = |why: String| Error::Signature {
        path: path.to_path_buf(),
        why,
    };
    if signature.namespace != NAMESPACE {
        return Err(bad(format!(
            "the signature is for namespace {:?}, not {NAMESPACE:?}",
            signature.namespace
        )));
    }
    let alg = signature.hash().ok_or_else(|| {
        bad(format!(
            "unsupported hash algorithm {:?}",
            signature.hash_alg
        ))
    })?;
    if signature.ed25519_public_key().is_none() {
        return Err(bad(format!(
            "unsupported key type {:?} (Ed25519 is required)",
            signature.key_type()
        )));
    }
    rewrite(path, "", Verity::Keep, |tmp, tmp_path, payload| {
        let digest = digest_one(tmp, payload, alg).map_err(|e| Error::Io {
            path: tmp_path.to_path_buf(),
            source: e,
        })?;
        if !sik_verify::signature_valid(signature, &digest) {
            return Err(bad(
                "the signature does not match this image's payload".to_string()
            ));
        }
        Ok(signature.clone())
    })
    .map(|_| ())
}

fn digest_one(f: &mut File, payload: &Payload, alg: HashAlg) -> io::Result<Vec<u8>> {
    let mut d = sig::digest_payload(f, payload, &[alg])?;
    Ok(d.pop().map(|(_, v)| v).unwrap_or_default())
}

/// Copy the image to a temporary file beside it, let `make` produce the
/// signature from the copy's payload, store it in the copy, sync and rename
/// over the original. `comment` goes beside an AppImage's public key. On any error the temporary file is removed and the
/// original is untouched.
fn rewrite(
    path: &Path,
    comment: &str,
    verity: Verity,
    make: impl FnOnce(&mut File, &Path, &Payload) -> Result<SshSig, Error>,
) -> Result<SshSig, Error> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::Io { path: p, source: e }
    };
    // Rewrite the file a symlink points to, not the symlink.
    let real = std::fs::canonicalize(path).map_err(io(path))?;
    let path = real.as_path();
    // Signers of the same image take turns: each holds an exclusive lock on
    // the file it read until its copy has replaced it. A signer that waited
    // for a file that was replaced meanwhile starts over on the new one, so
    // concurrent signatures by different keys are all kept.
    let (mut src, meta) = loop {
        let src = File::open(path).map_err(io(path))?;
        src.lock().map_err(io(path))?;
        let meta = src.metadata().map_err(io(path))?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => break (src, meta),
            Ok(_) => continue,
            Err(e) => return Err(io(path)(e)),
        }
    };
    if !meta.is_file() {
        return Err(Error::Image {
            path: path.to_path_buf(),
            why: "not a regular file".into(),
        });
    }
    let payload = sig::payload_of(&mut src).map_err(|e| image_err(path, e))?;
    if let Some(why) = &payload.disagreement {
        return Err(Error::Image {
            path: path.to_path_buf(),
            why: format!(
                "the SquashFS superblock is damaged or disagrees with the signature block: {why}"
            ),
        });
    }
    if let SignaturePlace::Missing(why) = &payload.place {
        return Err(Error::Image {
            path: path.to_path_buf(),
            why: format!("{why}; it cannot carry a signature"),
        });
    }
    let mut existing =
        match sig::read_embedded(&mut src, &payload).map_err(|e| image_err(path, e))? {
            Embedded::Signatures(s) => s,
            // A malformed block is replaced by a fresh one.
            Embedded::Unsigned | Embedded::Malformed(_) => Vec::new(),
        };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".sik-sign-")
        .tempfile_in(&dir)
        .map_err(io(&dir))?;
    let tmp_path = tmp.path().to_path_buf();
    // Copy only what is kept (copy_file_range/reflink where the kernel can).
    let keep = match payload.kind {
        SignedKind::Extension => payload.len.min(payload.file_len),
        SignedKind::AppImage => payload.file_len,
    };
    src.seek(SeekFrom::Start(0)).map_err(io(path))?;
    let copied = io::copy(&mut (&mut src).take(keep), tmp.as_file_mut()).map_err(io(&tmp_path))?;
    if copied != keep {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied",
            ),
        });
    }
    let f = tmp.as_file_mut();
    if payload.kind == SignedKind::Extension && keep < payload.len {
        // A SquashFS written without padding gets its zero padding.
        f.set_len(payload.len).map_err(io(&tmp_path))?;
    }
    // The tree is always computed from the data being signed, never
    // taken from the image.
    let mut signed = payload.clone();
    let mut tree = None;
    if payload.kind == SignedKind::Extension {
        let want = match verity {
            Verity::Write => true,
            Verity::Leave => false,
            Verity::Keep => payload.verity.is_some(),
        };
        signed.verity = None;
        if want {
            let (desc, t) =
                sik_image::verity::compute_tree(f, payload.len, 0).map_err(io(&tmp_path))?;
            signed.verity = Some(desc);
            tree = Some(t.bytes);
        }
        if signed.message() != payload.message() {
            existing.clear();
        }
    }
    let payload = signed;
    let new_sig = make(f, &tmp_path, &payload)?;
    match &payload.place {
        SignaturePlace::Block => {
            let mut sigs: Vec<SshSig> = existing
                .into_iter()
                .filter(|s| s.public_key != new_sig.public_key)
                .collect();
            sigs.push(new_sig.clone());
            if sigs.len() > sig::MAX_ENTRIES as usize {
                sigs.remove(0);
            }
            let block = match (&payload.verity, tree) {
                (Some(desc), Some(mut t)) => {
                    t.extend_from_slice(&sig::encode_verity_tail(desc, &sigs));
                    t
                }
                _ => sig::encode_block(&sigs, payload.len),
            };
            f.seek(SeekFrom::Start(payload.len))
                .map_err(io(&tmp_path))?;
            f.write_all(&block).map_err(io(&tmp_path))?;
        }
        SignaturePlace::Sections { sig: s, key: k } => {
            let armored = new_sig.armor();
            let key_line = format!("{}\n", sig::public_key_line(&new_sig.public_key, comment));
            for (section, text) in [(s, armored.as_bytes()), (k, key_line.as_bytes())] {
                if section.size > sig::MAX_SECTION_LEN {
                    return Err(Error::Image {
                        path: path.to_path_buf(),
                        why: format!(
                            "the signature section at offset {} is {} bytes, more than {}",
                            section.offset,
                            section.size,
                            sig::MAX_SECTION_LEN
                        ),
                    });
                }
                if text.len() as u64 > section.size {
                    return Err(Error::Image {
                        path: path.to_path_buf(),
                        why: format!(
                            "{} bytes do not fit the {}-byte section at offset {}",
                            text.len(),
                            section.size,
                            section.offset
                        ),
                    });
                }
                let mut buf = vec![0u8; section.size as usize];
                buf[..text.len()].copy_from_slice(text);
                f.seek(SeekFrom::Start(section.offset))
                    .map_err(io(&tmp_path))?;
                f.write_all(&buf).map_err(io(&tmp_path))?;
            }
        }
        SignaturePlace::Missing(_) => {}
    }
    f.sync_all().map_err(io(&tmp_path))?;
    // Same mode and (where permitted) owner as the original.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    let _ = std::os::unix::fs::fchown(&*f, Some(meta.uid()), Some(meta.gid()));
    let _ = f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    tmp.persist(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(new_sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8032 section 7.1, tests 1-3 and SHA(abc).
    #[test]
    fn rfc8032_vectors() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (sk, pk, msg, sig) in vectors {
            let seed: [u8; 32] = hex(sk).try_into().unwrap();
            let key = Key::from_seed(&seed, "");
            assert_eq!(key.public_key_bytes().to_vec(), hex(pk));
            assert_eq!(key.sign_raw(&hex(msg)).to_vec(), hex(sig));
        }
    }

    #[test]
    fn sshsig_verifies_and_key_text_round_trips() {
        let key = Key::generate("test@sik");
        let s = key.sign_message(HashAlg::Sha512, b"payload");
        assert!(sik_verify::signature_valid(
            &s,
            &HashAlg::Sha512.hash(b"payload")
        ));
        assert!(!sik_verify::signature_valid(
            &s,
            &HashAlg::Sha512.hash(b"other")
        ));
        let text = key.to_openssh(None).unwrap();
        let back = Key::from_openssh(text.as_bytes(), None, Path::new("k")).unwrap();
        assert_eq!(back.public_key_bytes(), key.public_key_bytes());
        assert_eq!(back.comment(), "test@sik");
        let enc = key.to_openssh(Some(b"pw")).unwrap();
        assert!(matches!(
            Key::from_openssh(enc.as_bytes(), None, Path::new("k")),
            Err(Error::NeedPassphrase(_))
        ));
        assert!(Key::from_openssh(enc.as_bytes(), Some(b"no"), Path::new("k")).is_err());
        let back = Key::from_openssh(enc.as_bytes(), Some(b"pw"), Path::new("k")).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
    }
}
