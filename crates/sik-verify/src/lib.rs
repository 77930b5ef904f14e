//! Trust stores and verification of signed ExtensionImages and AppImages.
//!
//! A [`TrustStore`] holds the Ed25519 public keys a user trusts, read from
//! OpenSSH `.pub` files, OpenSSH `allowed_signers` files, or directories of
//! them. [`verify_path`] reads the signatures embedded in an image (layout:
//! [`sik_image::signature`], spec: `spec/signature.md`), hashes the payload
//! in one streaming pass and answers with a [`Verdict`].
//!
//! ```no_run
//! use sik_verify::{TrustStore, verify_path};
//! let trust = TrustStore::load(&TrustStore::default_paths()).unwrap();
//! let verdict = verify_path("firmware.ExtensionImage".as_ref(), &trust).unwrap();
//! if verdict.is_trusted() {
//!     println!("ok");
//! } else {
//!     println!("refused: {}", verdict.reason());
//! }
//! ```

#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use sik_image::signature::{
    self as sig, Embedded, HashAlg, NAMESPACE, Payload, SignedKind, SshSig,
};
use sik_image::verity as sig_verity;

pub mod allowed_signers;

use allowed_signers::parse_trust_line;
pub use allowed_signers::{LineError, TrustedKey};

/// Why verification could not be carried out (as opposed to a [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not an ExtensionImage or a type 2 AppImage.
    #[error("{path}: {why}")]
    NotAnImage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A line of a trust file cannot be parsed.
    #[error("{path}:{line}: {why}")]
    TrustFile {
        /// The trust file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: LineError,
    },
}

/// The answer of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid signature by a trusted key.
    Trusted {
        /// `SHA256:…` fingerprint of the signer.
        fingerprint: String,
        /// The principal of the matching `allowed_signers` line, if any.
        principal: Option<String>,
        /// The comment of the trusted key.
        comment: String,
    },
    /// The image carries no signature.
    Unsigned,
    /// The signature does not match the payload (the image was modified
    /// after signing, or the signature belongs to another image).
    Modified,
    /// A valid signature by a key that is not trusted.
    Untrusted {
        /// `SHA256:…` fingerprint of the signer.
        fingerprint: String,
    },
    /// The signature was made for another namespace.
    WrongNamespace {
        /// The namespace it was made for.
        found: String,
    },
    /// The signature block or armored signature cannot be decoded.
    Malformed {
        /// What is wrong.
        why: String,
    },
    /// A valid signature over a verity descriptor, but the data or the
    /// hash tree on disk is not what the descriptor's root hash names.
    DataModified {
        /// Where they differ.
        why: String,
    },
}

impl Verdict {
    /// True only for [`Verdict::Trusted`].
    pub fn is_trusted(&self) -> bool {
        matches!(self, Verdict::Trusted { .. })
    }

    /// A short machine name: `trusted`, `unsigned`, `modified`, `untrusted`,
    /// `wrong-namespace`, `malformed`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Trusted { .. } => "trusted",
            Verdict::Unsigned => "unsigned",
            Verdict::Modified | Verdict::DataModified { .. } => "modified",
            Verdict::Untrusted { .. } => "untrusted",
            Verdict::WrongNamespace { .. } => "wrong-namespace",
            Verdict::Malformed { .. } => "malformed",
        }
    }

    /// One line for a human.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Trusted {
                fingerprint,
                principal,
                comment,
            } => {
                let who = principal
                    .clone()
                    .filter(|p| !p.is_empty())
                    .or_else(|| (!comment.is_empty()).then(|| comment.clone()));
                match who {
                    Some(w) => format!("signed by trusted key {fingerprint} ({w})"),
                    None => format!("signed by trusted key {fingerprint}"),
                }
            }
            Verdict::Unsigned => "unsigned: the image carries no signature".into(),
            Verdict::Modified => {
                "signature invalid: the payload was modified after signing (or the signature belongs to another image)"
                    .into()
            }
            Verdict::Untrusted { fingerprint } => {
                format!("key not trusted: the image is signed by {fingerprint}, which no trust file lists")
            }
            Verdict::WrongNamespace { found } => format!(
                "wrong namespace: the signature was made for namespace {found:?}, not {NAMESPACE:?}"
            ),
            Verdict::Malformed { why } => format!("malformed signature: {why}"),
            Verdict::DataModified { why } => {
                format!("modified after signing: the signature is valid, but {why}")
            }
        }
    }

    /// Rank for choosing among several signatures (higher wins).
    fn rank(&self) -> u8 {
        match self {
            Verdict::Trusted { .. } => 6,
            Verdict::Untrusted { .. } => 5,
            Verdict::Modified | Verdict::DataModified { .. } => 4,
            Verdict::WrongNamespace { .. } => 3,
            Verdict::Malformed { .. } => 2,
            Verdict::Unsigned => 1,
        }
    }
}

// ---------------------------------------------------------------------------
// Trust store
// ---------------------------------------------------------------------------

/// The keys a user trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    skipped: Vec<Skipped>,
}

/// A file of a trust directory that was left out because it cannot be read
/// as keys (a stray README, a broken line): the others are still used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why, one line (`line N: …` for a line that cannot be parsed).
    pub why: String,
}

impl TrustStore {
    /// Read trust files and directories of them (every regular file in a
    /// directory whose name does not start with `.`, in name order). A path
    /// that does not exist contributes nothing. Lines: OpenSSH public key
    /// lines (`ssh-ed25519 AAAA… comment`) or `allowed_signers` lines
    /// (`principals [options] ssh-ed25519 AAAA… [comment]`); `#` comments and
    /// blank lines are skipped; keys of other types are read and never match.
    ///
    /// A file named in `paths` that cannot be read or parsed is an error. A
    /// file found in a directory that cannot be is left out as a whole
    /// (none of its keys is trusted) and listed in [`TrustStore::skipped`],
    /// so one stray file does not stop every check that uses the directory.
    pub fn load(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut store = TrustStore::default();
        for p in paths {
            let meta = match std::fs::metadata(p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Io {
                        path: p.clone(),
                        source: e,
                    });
                }
            };
            if meta.is_dir() {
                let rd = std::fs::read_dir(p).map_err(|e| Error::Io {
                    path: p.clone(),
                    source: e,
                })?;
                let mut files = Vec::new();
                for entry in rd {
                    let entry = entry.map_err(|e| Error::Io {
                        path: p.clone(),
                        source: e,
                    })?;
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    let path = entry.path();
                    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                        files.push(path);
                    }
                }
                files.sort();
                for f in files {
                    let mut one = TrustStore::default();
                    match one.add_file(&f) {
                        Ok(()) => store.keys.append(&mut one.keys),
                        Err(e) => store.skipped.push(Skipped {
                            why: match e {
                                Error::TrustFile { line, why, .. } => format!("line {line}: {why}"),
                                Error::Io { source, .. } => source.to_string(),
                                other => other.to_string(),
                            },
                            path: f,
                        }),
                    }
                }
            } else {
                store.add_file(p)?;
            }
        }
        Ok(store)
    }

    /// `/etc/sik/trusted.d` and, for users other than root,
    /// `$XDG_CONFIG_HOME/sik/trusted.d` (`~/.config/sik/trusted.d` when
    /// `XDG_CONFIG_HOME` is unset or empty). Root (effective uid 0) trusts
    /// only the system directory: its environment may come from whoever
    /// started it (`sudo` keeps `HOME`), and keys root trusts decide what
    /// runs as root.
    pub fn default_paths() -> Vec<PathBuf> {
        let euid = rustix::process::geteuid().as_raw();
        Self::default_paths_for(euid)
    }

    /// [`TrustStore::default_paths`] for effective uid `euid`.
    pub fn default_paths_for(euid: u32) -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from("/etc/sik/trusted.d")];
        if euid == 0 {
            return v;
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            });
        if let Some(c) = config {
            v.push(c.join("sik/trusted.d"));
        }
        v
    }

    /// Files of trust directories left out by [`TrustStore::load`], with why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Add the keys of one file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let text = String::from_utf8_lossy(&text);
        for (i, line) in text.lines().enumerate() {
            match parse_trust_line(line) {
                Ok(None) => {}
                Ok(Some(mut k)) => {
                    k.source = path.to_path_buf();
                    self.keys.push(k);
                }
                Err(why) => {
                    return Err(Error::TrustFile {
                        path: path.to_path_buf(),
                        line: i + 1,
                        why,
                    });
                }
            }
        }
        Ok(())
    }

    /// The trusted entry allowing `key_blob` to sign for `namespace` now.
    pub fn find(&self, key_blob: &[u8], namespace: &str) -> Option<&TrustedKey> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.keys
            .iter()
            .find(|k| k.key_blob == key_blob && k.allows(namespace, now))
    }
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Whether `sig` is a valid Ed25519 SSHSIG over a message whose hash (with
/// the signature's own hash algorithm) is `digest`. Namespace and trust are
/// not looked at.
pub fn signature_valid(sig: &SshSig, digest: &[u8]) -> bool {
    let (Some(pk), Some(s)) = (sig.ed25519_public_key(), sig.ed25519_signature()) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    let data = sig::signed_data(&sig.namespace, &sig.reserved, &sig.hash_alg, digest);
    vk.verify_strict(&data, &Signature::from_bytes(&s)).is_ok()
}

/// The result for one embedded signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureReport {
    /// `SHA256:…` fingerprint of the signer's key.
    pub fingerprint: String,
    /// Key type (`ssh-ed25519`).
    pub key_type: String,
    /// Hash algorithm name as written.
    pub hash: String,
    /// Namespace as written.
    pub namespace: String,
    /// What this signature alone says.
    pub verdict: Verdict,
}

/// How much of a verity image [`verify_open_with`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCheck {
    /// Hash every data block and compare the stored hash tree and the
    /// root hash (what reading the file without dm-verity needs).
    Full,
    /// Check only the signature over the descriptor: the caller reads the
    /// data through a dm-verity device with the descriptor's parameters,
    /// so the kernel checks every block read.
    Kernel,
}

/// The verity part of a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityReport {
    /// The descriptor (what the signatures cover).
    pub descriptor: sig_verity::Descriptor,
    /// The comparison of data, tree and root hash; `None` when not done
    /// ([`DataCheck::Kernel`]).
    pub tree: Option<Result<(), sig_verity::TreeMismatch>>,
}

/// The full result of [`verify_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Image kind.
    pub kind: SignedKind,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// The verdict (the best of the signatures).
    pub verdict: Verdict,
    /// Each embedded signature.
    pub signatures: Vec<SignatureReport>,
    /// A verity image's descriptor and tree check.
    pub verity: Option<VerityReport>,
}

/// Verify the image at `path` against `trust` and report each signature.
/// The payload is hashed once (per hash algorithm in use), streaming.
pub fn verify_file(path: &Path, trust: &TrustStore) -> Result<Report, Error> {
    let f = File::open(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    verify_open(&f, path, trust)
}

/// [`verify_file`] on an image already open: what is checked is exactly
/// what `file` reads, whatever happens to the path afterwards (a caller
/// that goes on using the same descriptor uses the checked bytes). `path`
/// only names the file in errors. The file's offset is moved.
pub fn verify_open(file: &File, path: &Path, trust: &TrustStore) -> Result<Report, Error> {
    verify_open_with(file, path, trust, DataCheck::Full)
}

/// [`verify_open`] choosing how much of a verity image's data is checked
/// here. With [`DataCheck::Kernel`] a trusted verdict means only that a
/// trusted key signed the descriptor in [`Report::verity`]; the data is
/// safe to use only through dm-verity with exactly those parameters.
pub fn verify_open_with(
    file: &File,
    path: &Path,
    trust: &TrustStore,
    check: DataCheck,
) -> Result<Report, Error> {
    let mut r = verify_signatures(file, path, trust)?;
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(v) = r.verity.as_mut()
        && check == DataCheck::Full
    {
        use std::os::unix::fs::FileExt;
        let d = v.descriptor;
        let mut stored = vec![0u8; d.hash_size as usize];
        file.read_exact_at(&mut stored, d.hash_offset).map_err(io)?;
        let result = sig_verity::verify_tree(file, &d, &stored, 0).map_err(io)?;
        if let Err(m) = &result
            && matches!(
                r.verdict,
                Verdict::Trusted { .. } | Verdict::Untrusted { .. }
            )
        {
            r.verdict = Verdict::DataModified { why: m.to_string() };
        }
        v.tree = Some(result);
    }
    Ok(r)
}

fn verify_signatures(file: &File, path: &Path, trust: &TrustStore) -> Result<Report, Error> {
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = file.try_clone().map_err(io)?;
    let payload: Payload = sig::payload_of(&mut f).map_err(|e| image_error(path, e))?;
    let embedded = sig::read_embedded(&mut f, &payload).map_err(|e| image_error(path, e))?;
    let sigs = match embedded {
        Embedded::Unsigned => {
            return Ok(Report {
                kind: payload.kind,
                payload_len: payload.len,
                verdict: Verdict::Unsigned,
                signatures: Vec::new(),
                verity: verity_of(&payload),
            });
        }
        Embedded::Malformed(why) => {
            return Ok(Report {
                kind: payload.kind,
                payload_len: payload.len,
                verdict: Verdict::Malformed { why },
                signatures: Vec::new(),
                verity: None,
            });
        }
        Embedded::Signatures(s) => s,
    };
    // Pre-checks that need no hashing.
    let mut pre: Vec<Option<Verdict>> = sigs
        .iter()
        .map(|s| {
            if s.namespace != NAMESPACE {
                Some(Verdict::WrongNamespace {
                    found: s.namespace.clone(),
                })
            } else if s.hash().is_none() {
                Some(Verdict::Malformed {
                    why: format!("unsupported hash algorithm {:?}", s.hash_alg),
                })
            } else if s.ed25519_public_key().is_none() || s.ed25519_signature().is_none() {
                Some(Verdict::Malformed {
                    why: format!(
                        "unsupported key type {:?} (Ed25519 is required)",
                        s.key_type()
                    ),
                })
            } else {
                None
            }
        })
        .collect();
    let mut algs: Vec<HashAlg> = sigs
        .iter()
        .zip(&pre)
        .filter(|(_, p)| p.is_none())
        .filter_map(|(s, _)| s.hash())
        .collect();
    algs.sort_unstable();
    algs.dedup();
    let digests = if algs.is_empty() {
        Vec::new()
    } else {
        sig::digest_payload(&mut f, &payload, &algs).map_err(io)?
    };
    let mut reports = Vec::new();
    for (s, p) in sigs.iter().zip(pre.iter_mut()) {
        let verdict = match p.take() {
            Some(v) => v,
            None => {
                let digest = digests
                    .iter()
                    .find(|(a, _)| Some(*a) == s.hash())
                    .map(|(_, d)| d.as_slice())
                    .unwrap_or_default();
                if !signature_valid(s, digest) {
                    Verdict::Modified
                } else if let Some(why) = &payload.disagreement {
                    Verdict::Malformed { why: why.clone() }
                } else {
                    match trust.find(&s.public_key, &s.namespace) {
                        Some(k) => Verdict::Trusted {
                            fingerprint: k.fingerprint.clone(),
                            principal: k.principal.clone(),
                            comment: k.comment.clone(),
                        },
                        None => Verdict::Untrusted {
                            fingerprint: s.fingerprint(),
                        },
                    }
                }
            }
        };
        reports.push(SignatureReport {
            fingerprint: s.fingerprint(),
            key_type: s.key_type(),
            hash: s.hash_alg.clone(),
            namespace: s.namespace.clone(),
            verdict,
        });
    }
    let verdict = reports
        .iter()
        .map(|r| &r.verdict)
        .max_by_key(|v| v.rank())
        .cloned()
        .unwrap_or(Verdict::Unsigned);
    Ok(Report {
        kind: payload.kind,
        payload_len: payload.len,
        verdict,
        signatures: reports,
        verity: verity_of(&payload),
    })
}

fn verity_of(p: &Payload) -> Option<VerityReport> {
    p.verity.map(|descriptor| VerityReport {
        descriptor,
        tree: None,
    })
}

/// Verify the image at `path` against `trust`. `Err` only for I/O errors and
/// files that are not an ExtensionImage or a type 2 AppImage.
pub fn verify_path(path: &Path, trust: &TrustStore) -> Result<Verdict, Error> {
    verify_file(path, trust).map(|r| r.verdict)
}

fn image_error(path: &Path, e: sik_image::Error) -> Error {
    match e {
        sik_image::Error::Io { path, source } => Error::Io { path, source },
        sik_image::Error::Stream(source) => Error::Io {
            path: path.to_path_buf(),
            source,
        },
        other => Error::NotAnImage {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmcDY2gaHyDykOUJOrbnRqOcTz5ZqOUBvHcEAkCrzhG";

    #[test]
    fn root_trusts_only_the_system_directory() {
        assert_eq!(
            TrustStore::default_paths_for(0),
            vec![PathBuf::from("/etc/sik/trusted.d")]
        );
        assert_eq!(
            TrustStore::default_paths_for(1000)[0],
            PathBuf::from("/etc/sik/trusted.d")
        );
    }

    #[test]
    fn stray_files_in_a_trust_directory_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("good.pub"), format!("{KEY} me@host\n")).unwrap();
        std::fs::write(d.path().join("README"), "Put keys here.\n").unwrap();
        std::fs::write(
            d.path().join("mixed.pub"),
            format!("{KEY} other\nnot a key\n"),
        )
        .unwrap();
        let store = TrustStore::load(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(store.keys().len(), 1);
        assert_eq!(store.keys()[0].comment, "me@host");
        let skipped: Vec<_> = store
            .skipped()
            .iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_string_lossy().into_owned(),
                    s.why.clone(),
                )
            })
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, "README");
        assert!(skipped[0].1.starts_with("line 1: "), "{skipped:?}");
        assert_eq!(skipped[1].0, "mixed.pub");
        assert!(skipped[1].1.starts_with("line 2: "), "{skipped:?}");
        // Named directly, a broken file is still an error.
        assert!(TrustStore::load(&[d.path().join("README")]).is_err());
    }

    #[test]
    fn loads_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing.d");
        let store = TrustStore::load(std::slice::from_ref(&missing)).unwrap();
        assert!(store.is_empty());
        let dir = d.path().join("trusted.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.pub"), format!("{KEY} a@host\n")).unwrap();
        std::fs::write(dir.join(".hidden"), "garbage\n").unwrap();
        std::fs::write(
            dir.join("allowed_signers"),
            format!(
                "# team\n\nbob@example.org {KEY}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ== x\n"
            ),
        )
        .unwrap();
        let store = TrustStore::load(&[dir.clone(), missing]).unwrap();
        assert_eq!(
            store.keys().len(),
            3,
            "other key types are read and never match"
        );
        let blob = store.keys()[0].key_blob.clone();
        let found = store.find(&blob, NAMESPACE).unwrap();
        assert_eq!(found.principal, None);
        assert_eq!(found.comment, "a@host");
        assert_eq!(
            store.keys()[1].principal.as_deref(),
            Some("bob@example.org")
        );
        std::fs::write(dir.join("zz-bad"), "nonsense\n").unwrap();
        let store = TrustStore::load(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(
            store.keys().len(),
            3,
            "a stray file leaves the others usable"
        );
        assert_eq!(store.skipped().len(), 1);
        assert!(store.skipped()[0].path.ends_with("zz-bad"));
        match TrustStore::load(&[dir.join("zz-bad")]) {
            Err(Error::TrustFile { line: 1, path, .. }) => assert!(path.ends_with("zz-bad")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verdict_wording() {
        let v = Verdict::Untrusted {
            fingerprint: "SHA256:x".into(),
        };
        assert!(v.reason().contains("SHA256:x"));
        assert!(v.reason().starts_with("key not trusted"));
        assert!(Verdict::Modified.reason().contains("modified"));
        assert!(!Verdict::Unsigned.is_trusted());
    }
}
