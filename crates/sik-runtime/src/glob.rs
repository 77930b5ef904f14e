//! Shell-style pattern matching for `--appimage-extract PATTERN`, the way
//! `fnmatch(3)` without flags does it: `*` and `?` also match `/`.

/// Whether `text` matches `pat` (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\x`).
pub fn matches(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Position after the last `*` in the pattern and the text position it
    // is trying to swallow up to, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(pat, p, text[t])
                        && ok
                    {
                        p = next;
                        t += 1;
                        continue;
                    } else if class(pat, p, text[t]).is_none() && text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() => {
                    if pat[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Match one byte against the bracket expression starting at `pat[start]`
/// (`[`). Returns whether it matched and the index after `]`, or `None` when
/// the bracket is not closed (then `[` is literal).
fn class(pat: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = pat.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pat[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches(b"*.desktop", b"app.desktop"));
        assert!(matches(b"usr/*", b"usr/bin/x"));
        assert!(!matches(b"*.desktop", b"app.desktop.bak"));
        assert!(matches(b"a?c", b"abc"));
        assert!(matches(b"[ab]*", b"bx"));
        assert!(!matches(b"[!ab]*", b"bx"));
        assert!(matches(b"[a-c]x", b"bx"));
        assert!(matches(b"AppRun", b"AppRun"));
        assert!(!matches(b"AppRun", b"AppRunx"));
        assert!(matches(b"*", b""));
        assert!(matches(b"\\*", b"*"));
        assert!(matches(b"[x", b"[x"));
    }
}
