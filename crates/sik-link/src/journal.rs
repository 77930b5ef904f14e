//! The journal: an append-only record, in the state directory, of every
//! change the linker is about to make in ROOT. A record is written before
//! the change it announces, so after a kill at any point the journal lists
//! a superset of what exists; unlink acts on a record only while ROOT still
//! holds what the record describes (our symlink, an empty directory), so the
//! extra records are harmless. Format: `spec/link-state.md`.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// First line of every journal.
pub const MAGIC: &str = "sik-link-journal 1";

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `S <source> <identity>`: the linked source and its identity.
    Source { path: Vec<u8>, identity: String },
    /// `M <mode>`: how the content is provided (`mount`, `bind`, `extract`).
    Mode(String),
    /// `D <path>`: a directory created in ROOT.
    Dir(Vec<u8>),
    /// `L <path> <target>`: a symlink created in ROOT.
    Link(Vec<u8>, Vec<u8>),
    /// `R <path>`: an existing entry moved aside before linking.
    Replaced(Vec<u8>),
    /// `X <reason>`: the link was refused or failed and is being undone;
    /// the next run completes the undoing.
    Undo(String),
}

/// Percent-encode bytes that would break a space-separated line.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    escape_into(&mut s, b);
    s
}

/// [`escape`], appended to `out`.
pub fn escape_into(out: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if b.is_empty() {
        out.push('%');
        return;
    }
    for &c in b {
        if c <= b' ' || c >= 0x7f || c == b'%' {
            out.push('%');
            out.push(HEX[usize::from(c >> 4)] as char);
            out.push(HEX[usize::from(c & 15)] as char);
        } else {
            out.push(c as char);
        }
    }
}

/// The escaped form of the path `dir/leaf` (`leaf` when `dir` is empty), appended to `out`.
pub fn escape_path_into(out: &mut String, dir: &[u8], leaf: &[u8]) {
    if dir.is_empty() {
        escape_into(out, leaf);
    } else {
        escape_into(out, dir);
        out.push('/');
        escape_into(out, leaf);
    }
}

/// Reverse of [`escape`]; `None` on malformed input.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    unescape_bytes(s.as_bytes())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// [`unescape`] of bytes.
pub fn unescape_bytes(b: &[u8]) -> Option<Vec<u8>> {
    if b == b"%" {
        return Some(Vec::new());
    }
    if !b.contains(&b'%') {
        return Some(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl Record {
    /// The record as one line (with the newline).
    pub fn line(&self) -> String {
        match self {
            Record::Source { path, identity } => {
                format!("S {} {}\n", escape(path), escape(identity.as_bytes()))
            }
            Record::Mode(m) => format!("M {}\n", escape(m.as_bytes())),
            Record::Dir(p) => format!("D {}\n", escape(p)),
            Record::Link(p, t) => format!("L {} {}\n", escape(p), escape(t)),
            Record::Replaced(p) => format!("R {}\n", escape(p)),
            Record::Undo(why) => format!("X {}\n", escape(why.as_bytes())),
        }
    }

    /// The record as one line, in the short `l` form when it is a symlink
    /// whose target is `content/PATH`.
    #[cfg(test)]
    pub fn line_in(&self, content: &[u8]) -> String {
        if let Record::Link(p, t) = self
            && t.len() == content.len() + 1 + p.len()
            && t.starts_with(content)
            && t[content.len()] == b'/'
            && t.ends_with(p)
        {
            return format!("l {}\n", escape(p));
        }
        self.line()
    }

    /// Parse one line (without the newline).
    #[cfg(test)]
    pub fn parse(line: &str) -> Option<Record> {
        Self::parse_bytes(line.as_bytes(), None)
    }

    /// Parse one line of bytes (without the newline). `content`: the
    /// extension's CONTENT as seen from inside ROOT, which an `l PATH`
    /// record's target starts with (`l` is rejected without it).
    pub fn parse_bytes(line: &[u8], content: Option<&[u8]>) -> Option<Record> {
        let mut it = line.split(|&c| c == b' ');
        let tag = it.next()?;
        let a = it.next().map(unescape_bytes);
        let b = it.next().map(unescape_bytes);
        if it.next().is_some() {
            return None;
        }
        Some(match (tag, a, b) {
            (b"S", Some(Some(p)), Some(Some(i))) => Record::Source {
                path: p,
                identity: String::from_utf8(i).ok()?,
            },
            (b"M", Some(Some(m)), None) => Record::Mode(String::from_utf8(m).ok()?),
            (b"D", Some(Some(p)), None) => Record::Dir(p),
            (b"L", Some(Some(p)), Some(Some(t))) => Record::Link(p, t),
            (b"l", Some(Some(p)), None) => {
                let content = content?;
                let mut t = Vec::with_capacity(content.len() + 1 + p.len());
                t.extend_from_slice(content);
                t.push(b'/');
                t.extend_from_slice(&p);
                Record::Link(p, t)
            }
            (b"R", Some(Some(p)), None) => Record::Replaced(p),
            (b"X", Some(Some(w)), None) => Record::Undo(String::from_utf8_lossy(&w).into_owned()),
            _ => return None,
        })
    }
}

/// Read a journal of the extension whose CONTENT, as seen from inside
/// ROOT, is `content` (for `l` records). A torn last line (a kill in the
/// middle of a write) is ignored; any other malformed line is an error.
pub fn read(path: &Path, content: &[u8]) -> io::Result<Vec<Record>> {
    let data = std::fs::read(path)?;
    let mut lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    // The piece after the last newline is empty, or a record torn by a
    // kill in the middle of a write: dropped either way.
    lines.pop();
    let mut it = lines.into_iter();
    if it.next() != Some(MAGIC.as_bytes()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a sik-link journal",
        ));
    }
    let mut out = Vec::with_capacity(it.len());
    for (n, l) in it.enumerate() {
        match Record::parse_bytes(l, Some(content)) {
            Some(r) => out.push(r),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("journal line {}: malformed", n + 2),
                ));
            }
        }
    }
    Ok(out)
}

/// An open journal, appended to with one write(2) per batch.
pub struct Journal {
    file: File,
    /// Whether each append is made durable (`fdatasync`) before it returns.
    durable: bool,
}

impl Journal {
    /// Open for appending; a new file gets the magic line first. `durable`:
    /// every append is on stable storage when it returns (one
    /// `fdatasync` per batch), so it is before the changes it announces
    /// even across a power loss. (A journal on a volatile file system
    /// does not outlive a reboot anyway; there it is not synced.)
    pub fn open(path: &Path, durable: bool) -> io::Result<Journal> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        if file.metadata()?.len() == 0 {
            file.write_all(format!("{MAGIC}\n").as_bytes())?;
        }
        Ok(Journal { file, durable })
    }

    /// Append records in one write; durable when this returns (see [`Journal::open`]).
    pub fn append(&self, recs: &[Record]) -> io::Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for r in recs {
            buf.push_str(&r.line());
        }
        self.append_text(&buf)
    }

    /// Append lines already formatted (each ending in a newline), in one
    /// write; durable when this returns (see [`Journal::open`]).
    pub fn append_text(&self, text: &str) -> io::Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        (&self.file).write_all(text.as_bytes())?;
        if self.durable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Flush to stable storage.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let recs = [
            Record::Source {
                path: b"/a b/x.ExtensionImage".to_vec(),
                identity: "1:2:3:4".into(),
            },
            Record::Mode("mount".into()),
            Record::Dir(b"usr/lib/fir%mware".to_vec()),
            Record::Link(
                b"usr/bin/t\nool".to_vec(),
                b"/run/sik/extensions/x/mnt/usr/bin/t\nool".to_vec(),
            ),
            Record::Replaced(vec![0xff, b' ']),
            Record::Dir(Vec::new()),
        ];
        for r in &recs {
            let l = r.line();
            assert_eq!(
                Record::parse(l.trim_end_matches('\n')).as_ref(),
                Some(r),
                "{l}"
            );
        }
        assert_eq!(
            Record::Link(b"a b".to_vec(), b"/t".to_vec()).line(),
            "L a%20b /t\n"
        );
    }

    #[test]
    fn torn_tail_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j");
        std::fs::write(&p, format!("{MAGIC}\nD a\nL b /x\nL c /")).unwrap();
        assert_eq!(
            read(&p, b"/c").unwrap(),
            vec![
                Record::Dir(b"a".to_vec()),
                Record::Link(b"b".to_vec(), b"/x".to_vec())
            ]
        );
        std::fs::write(&p, format!("{MAGIC}\nQ a\n")).unwrap();
        assert!(read(&p, b"/c").is_err());
        std::fs::write(&p, format!("{MAGIC}\nl a%20b\n")).unwrap();
        assert_eq!(
            read(&p, b"/c").unwrap(),
            vec![Record::Link(b"a b".to_vec(), b"/c/a b".to_vec())]
        );
        assert_eq!(Record::parse("l a"), None);
    }

    /// The block after `<!-- vectors:NAME -->` in spec/link-state.md.
    fn vector_block(name: &str) -> String {
        let spec = include_str!("../../../spec/link-state.md");
        let start = spec
            .find(&format!("<!-- vectors:{name} -->"))
            .expect("marker");
        let rest = &spec[start..];
        let open = rest.find("```text\n").expect("block") + 8;
        let close = rest[open..].find("```").expect("end");
        rest[open..open + close].to_string()
    }

    /// A Rust byte-string literal `b"…"` with `\t`, `\n`, `\xNN`, `\\`, `\"`.
    fn byte_literal(s: &str) -> Vec<u8> {
        let inner = s
            .strip_prefix("b\"")
            .and_then(|s| s.strip_suffix('"'))
            .expect("literal");
        let b = inner.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                match b[i + 1] {
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'x' => {
                        out.push(u8::from_str_radix(&inner[i + 2..i + 4], 16).unwrap());
                        i += 2;
                    }
                    c => out.push(c),
                }
                i += 2;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn spec_vectors() {
        let block = vector_block("escape");
        let mut n = 0;
        for line in block.lines() {
            let (lit, want) = line.rsplit_once(char::is_whitespace).unwrap();
            let input = byte_literal(lit.trim());
            assert_eq!(escape(&input), want, "{line}");
            assert_eq!(unescape(want).unwrap(), input, "{line}");
            n += 1;
        }
        assert_eq!(n, 6);

        let text = vector_block("journal");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        std::fs::write(&p, text.strip_suffix('\n').unwrap()).unwrap();
        let recs = read(&p, b"/run/sik/extensions/acme/mnt").unwrap();
        assert_eq!(recs.len(), 9);
        assert_eq!(
            recs[7],
            Record::Link(
                b"usr/share/acme/a b.txt".to_vec(),
                b"/run/sik/extensions/acme/mnt/usr/share/acme/a b.txt".to_vec()
            )
        );
        assert_eq!(
            recs[8],
            Record::Undo(
                "unusable image entry /usr/share/a\\0b: the name contains a NUL byte".into()
            )
        );
        let count = |f: fn(&Record) -> bool| recs.iter().filter(|r| f(r)).count();
        assert_eq!(count(|r| matches!(r, Record::Dir(_))), 2);
        assert_eq!(count(|r| matches!(r, Record::Link(..))), 3);
        assert_eq!(count(|r| matches!(r, Record::Replaced(_))), 1);
        assert_eq!(
            recs[4],
            Record::Link(
                b"usr/lib/firmware/acme/fw v2.bin".to_vec(),
                b"/run/sik/extensions/acme/mnt/lib/firmware/acme/fw v2.bin".to_vec()
            )
        );
        // Every record is written back exactly as in the spec.
        let mut again = format!("{}\n", MAGIC);
        for r in &recs {
            again.push_str(&r.line_in(b"/run/sik/extensions/acme/mnt"));
        }
        assert!(text.starts_with(&again), "{again}");
        assert_eq!(
            crate::walk::aside_name(b"etc/hostname"),
            b"etc%2Fhostname".to_vec()
        );
    }
}
