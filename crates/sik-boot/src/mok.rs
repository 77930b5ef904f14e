//! The Machine Owner Key that signs the own-key GRUB
//! (`sik boot install --secure-boot=own-key`): an RSA-2048 key and a
//! self-signed certificate made with `openssl` once and kept in a directory
//! outside the medium (`MOK.key` mode 0600, `MOK.crt` PEM, `MOK.der` for
//! MokManager). Only `MOK.der` is ever copied onto a medium.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::medium::run_tool;

/// Subject of a certificate sik generates.
pub const MOK_SUBJECT: &str = "/CN=SystemImageKit medium key/";

/// The key files of a MOK directory.
#[derive(Debug, Clone)]
pub struct Mok {
    /// Private key (PEM), readable by its owner only.
    pub key: PathBuf,
    /// Certificate (PEM), for sbsign.
    pub crt: PathBuf,
    /// Certificate (DER), for MokManager and the medium.
    pub der: PathBuf,
}

impl Mok {
    /// The file names in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Mok {
            key: dir.join("MOK.key"),
            crt: dir.join("MOK.crt"),
            der: dir.join("MOK.der"),
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The MOK of `dir`, made when the directory has none. A directory that
/// someone other than its owner can write, or a key readable by others, is
/// refused: whoever can replace the key signs what the medium boots.
pub fn ensure(dir: &Path) -> Result<Mok> {
    let mok = Mok::in_dir(dir);
    if mok.key.exists() {
        for p in [dir, mok.key.as_path()] {
            let mode = std::fs::metadata(p)
                .map_err(|e| io(p, e))?
                .permissions()
                .mode();
            let bad = if p == dir { 0o022 } else { 0o077 };
            if mode & bad != 0 {
                return Err(Error::Refused(format!(
                    "{}: mode {:o} lets others {} the Machine Owner Key",
                    p.display(),
                    mode & 0o777,
                    if p == dir { "replace" } else { "read" }
                )));
            }
        }
        if !mok.crt.is_file() || !mok.der.is_file() {
            return Err(Error::Refused(format!(
                "{}: MOK.key without MOK.crt and MOK.der",
                dir.display()
            )));
        }
        return Ok(mok);
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(dir, e))?;
    // Written beside, renamed into place when all three exist.
    let tmp = tempfile::tempdir_in(dir).map_err(|e| io(dir, e))?;
    let t = Mok::in_dir(tmp.path());
    run_tool(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-sha256", "-days", "36500", "-subj", MOK_SUBJECT])
            .arg("-keyout")
            .arg(&t.key)
            .arg("-out")
            .arg(&t.crt),
        "openssl",
    )?;
    run_tool(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&t.crt)
            .arg("-out")
            .arg(&t.der),
        "openssl",
    )?;
    std::fs::set_permissions(&t.key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(&t.key, e))?;
    for (from, to) in [(&t.crt, &mok.crt), (&t.der, &mok.der), (&t.key, &mok.key)] {
        std::fs::rename(from, to).map_err(|e| io(to, e))?;
    }
    Ok(mok)
}
