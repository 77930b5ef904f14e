//! The lines of a trust file: OpenSSH public key lines (`.pub`) and
//! `allowed_signers` lines (`principals [options] KEYTYPE BASE64 [comment]`,
//! options `namespaces="…"` with `*`/`?` patterns, `valid-after`,
//! `valid-before`, `cert-authority`), as section 4 of `spec/signature.md`
//! describes them.

use std::path::PathBuf;

use sik_image::signature as sig;

/// Why a line of a trust file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A double quote is not closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// No word names a key type.
    #[error("no key type (ssh-ed25519 …) on this line")]
    NoKeyType,
    /// More than principals and options before the key type.
    #[error("unexpected words before the key type")]
    WordsBeforeKeyType,
    /// The key type is the last word.
    #[error("key type without key data")]
    NoKeyData,
    /// The key data does not decode to a key of the named type.
    #[error("key data is not valid base64 of a key of this type")]
    BadKeyData,
    /// An option this project does not know (lower-cased).
    #[error("unsupported option {0:?}")]
    Option(String),
    /// A `valid-after`/`valid-before` time that is not `YYYYMMDD[HHMM[SS]][Z]`.
    #[error("bad time {0:?} (YYYYMMDD[HHMM[SS]][Z])")]
    Time(String),
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// OpenSSH public key blob.
    pub key_blob: Vec<u8>,
    /// `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// Principals of an `allowed_signers` line (`None` for `.pub` lines).
    pub principal: Option<String>,
    /// Comment after the key.
    pub comment: String,
    /// `namespaces="…"` patterns of an `allowed_signers` line.
    pub namespaces: Option<Vec<String>>,
    /// `valid-after` (seconds since the epoch, UTC).
    pub valid_after: Option<i64>,
    /// `valid-before` (seconds since the epoch, UTC).
    pub valid_before: Option<i64>,
    /// The file it was read from.
    pub source: PathBuf,
}

impl TrustedKey {
    pub(crate) fn allows(&self, namespace: &str, now: i64) -> bool {
        if let Some(ns) = &self.namespaces
            && !ns.iter().any(|p| glob_match(p, namespace))
        {
            return false;
        }
        if self.valid_after.is_some_and(|t| now < t) {
            return false;
        }
        if self.valid_before.is_some_and(|t| now > t) {
            return false;
        }
        true
    }
}

/// Split a line into whitespace-separated tokens; double quotes group.
fn tokens(line: &str) -> Result<Vec<String>, LineError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut has = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_q = !in_q;
                cur.push(c);
                has = true;
            }
            ' ' | '\t' if !in_q => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            _ => {
                cur.push(c);
                has = true;
            }
        }
    }
    if in_q {
        return Err(LineError::UnterminatedQuote);
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")
}

/// Parse one line of a `.pub` or `allowed_signers` file.
pub(crate) fn parse_trust_line(line: &str) -> Result<Option<TrustedKey>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let toks = tokens(line)?;
    let Some(ki) = toks.iter().position(|t| is_key_type(t)) else {
        return Err(LineError::NoKeyType);
    };
    let (principal, options) = match ki {
        0 => (None, None),
        1 => (Some(toks[0].clone()), None),
        2 => (Some(toks[0].clone()), Some(toks[1].clone())),
        _ => return Err(LineError::WordsBeforeKeyType),
    };
    let b64 = toks.get(ki + 1).ok_or(LineError::NoKeyData)?;
    let comment = toks.get(ki + 2..).map(|c| c.join(" ")).unwrap_or_default();
    let (key_blob, _) = sig::parse_public_key_line(&format!("{} {}", toks[ki], b64))
        .ok_or(LineError::BadKeyData)?;
    let mut k = TrustedKey {
        fingerprint: sig::fingerprint(&key_blob),
        key_blob,
        principal,
        comment,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        source: PathBuf::new(),
    };
    if let Some(opts) = options {
        for opt in split_options(&opts) {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (
                    n.to_ascii_lowercase(),
                    Some(v.trim_matches('"').to_string()),
                ),
                None => (opt.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("namespaces", Some(v)) => {
                    k.namespaces = Some(v.split(',').map(str::to_string).collect())
                }
                ("valid-after", Some(v)) => k.valid_after = Some(parse_time(&v)?),
                ("valid-before", Some(v)) => k.valid_before = Some(parse_time(&v)?),
                ("cert-authority", None) => {
                    // Certificates are not used by this project: such a line
                    // trusts nothing here.
                    return Ok(None);
                }
                (n, _) => return Err(LineError::Option(n.to_string())),
            }
        }
    }
    Ok(Some(k))
}

/// Split `a,b="x,y",c` at commas outside quotes.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in s.chars() {
        match c {
            '"' => {
                in_q = !in_q;
                cur.push(c);
            }
            ',' if !in_q => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `YYYYMMDD[HHMM[SS]][Z]` as seconds since the epoch (read as UTC).
fn parse_time(v: &str) -> Result<i64, LineError> {
    let d = v.strip_suffix(['Z', 'z']).unwrap_or(v);
    let bad = || LineError::Time(v.to_string());
    if !d.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&d.len()) {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, day) = (n(0..4), n(4..6), n(6..8));
    let (hh, mm, ss) = (n(8..10), n(10..12), n(12..14));
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 59 {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, day) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// OpenSSH pattern match (`*` and `?`).
fn glob_match(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOmcDY2gaHyDykOUJOrbnRqOcTz5ZqOUBvHcEAkCrzhG";

    #[test]
    fn parses_pub_and_allowed_signers_lines() {
        let k = parse_trust_line(&format!("{KEY} me@host"))
            .unwrap()
            .unwrap();
        assert_eq!(k.principal, None);
        assert_eq!(k.comment, "me@host");
        let k = parse_trust_line(&format!("alice@example.org {KEY}"))
            .unwrap()
            .unwrap();
        assert_eq!(k.principal.as_deref(), Some("alice@example.org"));
        let k = parse_trust_line(&format!(
            "a,b namespaces=\"file,system*\",valid-after=20200101 {KEY} c"
        ))
        .unwrap()
        .unwrap();
        assert!(k.allows("systemimagekit", 1_700_000_000));
        assert!(!k.allows("git", 1_700_000_000));
        assert!(!k.allows("systemimagekit", 1_000_000_000));
        assert_eq!(
            parse_trust_line(&format!("ca cert-authority {KEY}")).unwrap(),
            None
        );
        assert_eq!(parse_trust_line("# comment").unwrap(), None);
        assert!(parse_trust_line("garbage").is_err());
        assert!(parse_trust_line("ssh-ed25519 !!!").is_err());
    }

    #[test]
    fn times_and_globs() {
        assert_eq!(parse_time("19700101").unwrap(), 0);
        assert_eq!(parse_time("20000301000000Z").unwrap(), 951_868_800);
        assert!(parse_time("2020").is_err());
        assert!(glob_match("sys*kit", "systemimagekit"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("file", "systemimagekit"));
    }
}
