//! `sik key generate|fingerprint`: Ed25519 signing keys in OpenSSH format.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sik_sign::Key;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  sik key generate -o release-key --comment \"release@example.org\"\n  sik key fingerprint release-key.pub"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Write a new Ed25519 key: NAME (OpenSSH private key) and NAME.pub.
    Generate(GenerateArgs),
    /// Print the SHA256 fingerprint of a key, as `ssh-keygen -lf` does.
    Fingerprint(FingerprintArgs),
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  sik key generate -o release-key --passphrase-file pass.txt")]
pub struct GenerateArgs {
    /// Private key file to write; the public key goes to NAME.pub. Existing files are not overwritten.
    #[arg(short, long, value_name = "NAME")]
    pub output: PathBuf,
    /// Comment stored with the key (default: USER@HOSTNAME).
    #[arg(long)]
    pub comment: Option<String>,
    /// Encrypt the private key with the passphrase in this file (first line).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  sik key fingerprint ~/.ssh/id_ed25519.pub")]
pub struct FingerprintArgs {
    /// A public key file (.pub, allowed_signers-style lines are not accepted) or an OpenSSH private key.
    pub key: PathBuf,
}

pub fn run(a: Args) -> CmdResult {
    match a.command {
        KeyCommand::Generate(g) => generate(g),
        KeyCommand::Fingerprint(f) => fingerprint(f),
    }
}

/// Read a passphrase file: its first line, without the line ending.
pub fn read_passphrase(path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::input("cannot read passphrase file", Some(path), e))?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(line.to_vec())
}

fn default_comment() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

fn generate(a: GenerateArgs) -> CmdResult {
    let pass = a
        .passphrase_file
        .as_deref()
        .map(read_passphrase)
        .transpose()?;
    if pass.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(Failure::input(
            "empty passphrase",
            a.passphrase_file.as_deref(),
            "the file's first line is empty",
        ));
    }
    for p in [a.output.clone(), sik_sign::pub_path_of(&a.output)] {
        if p.symlink_metadata().is_ok() {
            return Err(
                Failure::input("key file exists", Some(&p), "refusing to overwrite it")
                    .hint("choose another -o NAME or remove the old key"),
            );
        }
    }
    let key = Key::generate(&a.comment.unwrap_or_else(default_comment));
    let pub_path = key
        .write_pair(&a.output, pass.as_deref())
        .map_err(|e| Failure::input("cannot write key", Some(&a.output), e))?;
    println!("{}", a.output.display());
    println!("{}", pub_path.display());
    println!("256 {} {} (ED25519)", key.fingerprint(), key.comment());
    Ok(ExitCode::SUCCESS)
}

fn fingerprint(a: FingerprintArgs) -> CmdResult {
    let (blob, comment) = sik_sign::read_public_key(&a.key)
        .map_err(|e| Failure::input("cannot read key", Some(&a.key), key_why(&e)))?;
    let kt = sik_image::signature::parse_ed25519_key_blob(&blob)
        .map(|_| "ED25519")
        .unwrap_or("OTHER");
    let comment = if comment.is_empty() {
        "no comment".to_string()
    } else {
        comment
    };
    println!(
        "256 {} {} ({kt})",
        sik_image::signature::fingerprint(&blob),
        comment
    );
    Ok(ExitCode::SUCCESS)
}

/// The reason of a key error without repeating the path.
pub fn key_why(e: &sik_sign::Error) -> String {
    match e {
        sik_sign::Error::Io { source, .. } => source.to_string(),
        sik_sign::Error::Key { why, .. } => why.clone(),
        sik_sign::Error::NeedPassphrase(_) => "the key is encrypted; a passphrase is needed".into(),
        sik_sign::Error::Image { why, .. } | sik_sign::Error::Signature { why, .. } => why.clone(),
    }
}

/// Load the private key of a `--sign KEY [--passphrase-file FILE]` option
/// pair, worded for the user (with a hint when a passphrase is needed).
pub fn load_signing_key(
    path: &Path,
    passphrase_file: Option<&Path>,
) -> Result<sik_sign::Key, Failure> {
    let pass = passphrase_file.map(read_passphrase).transpose()?;
    sik_sign::Key::load(path, pass.as_deref()).map_err(|e| {
        let f = Failure::input("cannot use key", Some(path), key_why(&e));
        match e {
            sik_sign::Error::NeedPassphrase(_) => {
                f.hint("give the passphrase with --passphrase-file FILE")
            }
            _ => f,
        }
    })
}
