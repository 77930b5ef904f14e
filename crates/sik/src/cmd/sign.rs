//! `sik sign IMAGE --key KEY` / `sik sign IMAGE --signature FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sik_image::signature::{HashAlg, SshSig};
use sik_sign::Key;

use crate::cmd::key::{key_why, read_passphrase};
use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "A signature says which key holder made the payload bytes, not that the content is harmless.\n\nExamples:\n  sik sign firmware.ExtensionImage --key ~/.ssh/id_ed25519\n  sik inspect --payload App.AppImage > payload\n  ssh-keygen -Y sign -f ~/.ssh/id_ed25519 -n systemimagekit payload\n  sik sign App.AppImage --signature payload.sig"
)]
pub struct Args {
    /// ExtensionImage or AppImage to sign in place.
    pub image: PathBuf,
    /// OpenSSH Ed25519 private key (e.g. from `sik key generate` or `ssh-keygen -t ed25519`).
    #[arg(
        long,
        value_name = "KEY",
        required_unless_present = "signature",
        conflicts_with = "signature"
    )]
    pub key: Option<PathBuf>,
    /// Embed this armored SSHSIG (namespace systemimagekit) made elsewhere over the image's payload.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Message hash of the signature.
    #[arg(long, value_name = "ALG", default_value = "sha256", value_parser = ["sha256", "sha512"])]
    pub hash: String,
    /// Passphrase of an encrypted key, first line of this file.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// ExtensionImage: sign the filesystem bytes and write no dm-verity hash tree
    /// (removing one the image has). Default: the tree is computed from the data
    /// and the signature covers its root hash.
    #[arg(long, conflicts_with = "signature")]
    pub no_verity: bool,
}

pub fn run(a: Args) -> CmdResult {
    if let Some(sig_path) = &a.signature {
        return embed(&a.image, sig_path);
    }
    let Some(key_path) = a.key.as_deref() else {
        return Err(Failure::input(
            "sign",
            Some(&a.image),
            "--key KEY or --signature FILE is needed",
        ));
    };
    let alg = HashAlg::from_name(&a.hash).unwrap_or(HashAlg::Sha256);
    let pass = a
        .passphrase_file
        .as_deref()
        .map(read_passphrase)
        .transpose()?;
    let key = Key::load(key_path, pass.as_deref()).map_err(|e| {
        let f = Failure::input("cannot use key", Some(key_path), key_why(&e));
        match e {
            sik_sign::Error::NeedPassphrase(_) => {
                f.hint("give the passphrase with --passphrase-file FILE")
            }
            _ => f,
        }
    })?;
    let verity = if a.no_verity {
        sik_sign::Verity::Leave
    } else {
        sik_sign::Verity::Write
    };
    let sig = sik_sign::sign_file_with(&a.image, &key, alg, verity)
        .map_err(|e| sign_failure(&a.image, &e))?;
    println!(
        "signed {} with {} ({}, {})",
        a.image.display(),
        sig.fingerprint(),
        sig.hash_alg,
        key.comment()
    );
    Ok(ExitCode::SUCCESS)
}

fn embed(image: &Path, sig_path: &Path) -> CmdResult {
    let text = std::fs::read(sig_path)
        .map_err(|e| Failure::input("cannot read signature", Some(sig_path), e))?;
    let sig = SshSig::from_armored(&String::from_utf8_lossy(&text))
        .map_err(|e| Failure::input("not an armored SSH signature", Some(sig_path), e))?;
    sik_sign::embed_signature(image, &sig).map_err(|e| sign_failure(image, &e))?;
    println!(
        "embedded signature by {} ({}) into {}",
        sig.fingerprint(),
        sig.hash_alg,
        image.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign_failure(image: &Path, e: &sik_sign::Error) -> Failure {
    match e {
        sik_sign::Error::Io { path, source } => Failure::input("cannot sign", Some(path), source),
        sik_sign::Error::Signature { why, .. } => {
            Failure::input("signature does not fit", Some(image), why)
        }
        other => Failure::input("cannot sign", Some(image), key_why(other)),
    }
}
