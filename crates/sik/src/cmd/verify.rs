//! `sik verify IMAGE [--trust PATH]... [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use sik_verify::{Report, TrustStore, Verdict};

use crate::fail::{CmdResult, Failure, warn};
use crate::output::print_json;

#[derive(clap::Args)]
#[command(
    after_help = "Checked: the signature over every payload byte, read from one open file, against the trusted keys;\nfor an image with a dm-verity tree, every data block and the tree against the signed root hash.\nNot checked: what the content does.\n\nExamples:\n  sik verify firmware.ExtensionImage --trust release-key.pub\n  sik verify App.AppImage --trust ~/.ssh/allowed_signers --json\n\nWithout --trust the keys in /etc/sik/trusted.d and $XDG_CONFIG_HOME/sik/trusted.d\n(~/.config/sik/trusted.d; not for root, which trusts only /etc/sik/trusted.d) are\ntrusted. A file in a trust directory that holds no readable key is skipped with a\nwarning. Exit status: 0 signed by a trusted key, 1 not (unsigned, modified,\nuntrusted key, wrong namespace, malformed), 2 input error."
)]
pub struct Args {
    /// ExtensionImage or AppImage.
    pub image: PathBuf,
    /// Trusted keys: a .pub file, an OpenSSH allowed_signers file, or a directory of them (repeatable).
    #[arg(long, value_name = "PATH")]
    pub trust: Vec<PathBuf>,
    /// Print one JSON document (schema: formats/schema/verify.json).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CmdResult {
    let (trust_paths, trust) = load_trust(&a.trust)?;
    let report = sik_verify::verify_file(&a.image, &trust).map_err(|e| match e {
        sik_verify::Error::Io { path, source } => {
            Failure::input("cannot read", Some(&path), source)
        }
        sik_verify::Error::NotAnImage { why, .. } => {
            Failure::input("not a signable image", Some(&a.image), why)
        }
        other => Failure::input("cannot verify", Some(&a.image), other),
    })?;
    if a.json {
        print_json(&document(&a.image, &trust_paths, &trust, &report));
    } else if report.verdict.is_trusted() {
        println!("{}: {}", a.image.display(), report.verdict.reason());
        if let Some(v) = &report.verity {
            println!(
                "{}: dm-verity hash tree matches the data (root hash {})",
                a.image.display(),
                v.descriptor.root_hex()
            );
        }
    }
    if report.verdict.is_trusted() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut f = Failure::check(
        "verification failed",
        Some(&a.image),
        report.verdict.reason(),
    );
    if matches!(report.verdict, Verdict::Untrusted { .. }) && trust.is_empty() {
        f = f.hint("no trusted keys: give --trust KEY.pub or put keys into /etc/sik/trusted.d");
    }
    Err(f)
}

fn verdict_json(v: &Verdict) -> serde_json::Value {
    let mut doc = json!({ "status": v.name(), "reason": v.reason() });
    match v {
        Verdict::Trusted {
            fingerprint,
            principal,
            comment,
        } => {
            doc["fingerprint"] = json!(fingerprint);
            doc["principal"] = json!(principal);
            doc["comment"] = json!(comment);
        }
        Verdict::Untrusted { fingerprint } => doc["fingerprint"] = json!(fingerprint),
        Verdict::WrongNamespace { found } => doc["namespace"] = json!(found),
        Verdict::Malformed { why } | Verdict::DataModified { why } => doc["why"] = json!(why),
        Verdict::Unsigned | Verdict::Modified => {}
    }
    doc
}

fn document(
    image: &std::path::Path,
    trust_paths: &[PathBuf],
    trust: &TrustStore,
    r: &Report,
) -> serde_json::Value {
    let mut doc = verdict_json(&r.verdict);
    doc["file"] = json!(image.display().to_string());
    doc["kind"] = json!(r.kind);
    doc["trusted"] = json!(r.verdict.is_trusted());
    doc["payload_len"] = json!(r.payload_len);
    doc["trust_paths"] = json!(
        trust_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    );
    doc["trusted_keys"] = json!(trust.keys().len());
    doc["skipped_trust_files"] = trust
        .skipped()
        .iter()
        .map(|s| json!({ "path": s.path.display().to_string(), "reason": s.why }))
        .collect();
    doc["verity"] = match &r.verity {
        None => serde_json::Value::Null,
        Some(v) => {
            let mut o = json!(sik_image::verity::Facts::from(&v.descriptor));
            o["tree"] = match &v.tree {
                None => json!("not checked"),
                Some(Ok(())) => json!("ok"),
                Some(Err(m)) => {
                    o["tree_why"] = json!(m.to_string());
                    json!("mismatch")
                }
            };
            o
        }
    };
    doc["signatures"] = r
        .signatures
        .iter()
        .map(|s| {
            let mut v = verdict_json(&s.verdict);
            v["fingerprint"] = json!(s.fingerprint);
            v["key_type"] = json!(s.key_type);
            v["hash"] = json!(s.hash);
            v["namespace"] = json!(s.namespace);
            v
        })
        .collect();
    doc
}

/// `sik inspect --signature IMAGE`: print the armored signature(s) of an
/// image (exit 1 when it carries none or a malformed block).
pub fn print_signature(image: &std::path::Path) -> CmdResult {
    match sik_image::signature::armored_signatures(image) {
        Ok(Some(text)) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => Err(Failure::check(
            "no signature",
            Some(image),
            "the image is unsigned",
        )),
        Err(sik_image::Error::Malformed {
            what: "signature",
            why,
        }) => Err(Failure::check("malformed signature", Some(image), why)),
        Err(e) => Err(Failure::input("cannot read signature", Some(image), e)),
    }
}

/// `sik inspect --payload IMAGE`: write the exact signed bytes to stdout.
pub fn print_payload(image: &std::path::Path) -> CmdResult {
    use std::io::{IsTerminal, Write};
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(Failure::input(
            "refusing to write binary data to a terminal",
            Some(image),
            "stdout is a terminal",
        )
        .hint("redirect it: sik inspect --payload IMAGE > payload"));
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    sik_image::signature::write_payload(image, &mut out)
        .and_then(|_| out.flush().map_err(sik_image::Error::from))
        .map_err(|e| Failure::input("cannot write payload", Some(image), e))?;
    Ok(ExitCode::SUCCESS)
}

/// The trust store of `--trust PATH…` (every path must exist), else the
/// default trust directories; trust files that hold no readable key are
/// skipped with a warning. Returns the paths read and the store. Used by
/// `verify` and `integrate`.
pub(crate) fn load_trust(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, TrustStore), Failure> {
    for p in paths {
        if std::fs::metadata(p).is_err() {
            return Err(Failure::input(
                "trust path does not exist",
                Some(p),
                "no such file or directory",
            ));
        }
    }
    let paths = if paths.is_empty() {
        TrustStore::default_paths()
    } else {
        paths.to_vec()
    };
    let trust = TrustStore::load(&paths).map_err(|e| match &e {
        sik_verify::Error::TrustFile { path, line, why } => {
            Failure::input("bad trust file", Some(path), format!("line {line}: {why}"))
        }
        sik_verify::Error::Io { path, source } => {
            Failure::input("cannot read trust path", Some(path), source)
        }
        other => Failure::input("cannot read trust store", None, other),
    })?;
    for s in trust.skipped() {
        warn(format!(
            "trust file skipped: {}: {} (its keys are not trusted)",
            s.path.display(),
            s.why
        ));
    }
    Ok((paths, trust))
}
