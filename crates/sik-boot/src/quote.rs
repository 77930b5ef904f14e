//! The one place where values are checked or quoted before they go into a
//! generated GRUB config or POSIX shell script. Whoever wrote an ISO, a
//! medium or a family file may be hostile: every ISO file name, kernel and
//! initrd path, kernel argument, label, menu title and family-file field
//! that reaches `grub.cfg` or a hook script passes one of these functions.
//!
//! * GRUB bare words (paths, kernel arguments) are *validated* against a
//!   strict character class ([`grub_word_ok`], [`grub_path_ok`],
//!   [`kernel_arg_ok`]); nothing outside the class is ever written unquoted.
//! * GRUB strings (menu titles, messages) are *quoted* by [`grub_quote`]
//!   (single quotes, in which GRUB expands nothing).
//! * Shell values substituted into hook templates are *quoted* by
//!   [`sh_quote`] (POSIX single quotes) and, where a field is also used as
//!   a path or a word in a list, validated by [`sh_path_ok`] or [`name_ok`].

/// Characters of a GRUB bare word we write: ASCII letters and digits and
/// `. _ , + : = @ % / ~ -`. None of them is special to GRUB's script parser
/// (no quoting, variables, command separators, blocks, comments or the
/// `*?[` wildcards the `regexp` module expands), to the kernel's command
/// line parser (no spaces or quotes) or to a POSIX shell.
pub fn grub_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._,+:=@%/~-".contains(c)
}

/// Whether `s` is a non-empty GRUB bare word of [`grub_word_char`]s.
pub fn grub_word_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(grub_word_char)
}

/// Whether `p` is an absolute path (inside an ISO or on the medium) that
/// can be written into grub.cfg unquoted: `/` then non-empty components of
/// [`grub_word_char`]s, none `.` or `..`.
pub fn grub_path_ok(p: &str) -> bool {
    match p.strip_prefix('/') {
        Some(rest) => rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.chars().all(grub_word_char)),
        None => false,
    }
}

/// The GRUB variables a kernel argument may hold: set by the menu entry we
/// write, with values of [`grub_word_char`]s only.
pub const GRUB_VARIABLES: &[&str] = &["${iso_path}", "${uuid}"];

/// Whether a kernel argument can be written into grub.cfg as a bare word:
/// [`grub_word_char`]s, plus the exact variable references of
/// [`GRUB_VARIABLES`].
pub fn kernel_arg_ok(a: &str) -> bool {
    let mut rest = a.to_string();
    for v in GRUB_VARIABLES {
        rest = rest.replace(v, "_");
    }
    grub_word_ok(&rest)
}

/// A GRUB string in single quotes: GRUB expands nothing inside them; a `'`
/// is written as `'\''` (close, escaped quote, reopen). Control characters
/// (a newline would end the command) become `?`.
pub fn grub_quote(s: &str) -> String {
    single_quoted(s)
}

/// A POSIX shell word in single quotes, which the shell expands nothing
/// inside; a `'` is written as `'\''`. Control characters become `?`.
pub fn sh_quote(s: &str) -> String {
    single_quoted(s)
}

/// The single-quoting rule GRUB's script language took from POSIX sh, the
/// same for both: nothing inside `'…'` is expanded, `'` itself is written
/// as `'\''`, and control characters become `?`. Kept behind one function
/// per language so each caller names the language it writes.
fn single_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Whether `p` is an absolute path a hook script may use as a plain word
/// (in a `for` list or a message): `/` alone, or `/` then non-empty
/// components of ASCII letters, digits and `. _ -`, none `.` or `..`.
pub fn sh_path_ok(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    match p.strip_prefix('/') {
        Some(rest) => rest.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }),
        None => false,
    }
}

/// Whether `s` is a short name (GRUB `--class`, an initramfs-tools phase):
/// 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_words_and_paths() {
        assert!(grub_path_ok("/casper/vmlinuz"));
        assert!(grub_path_ok("/live/initrd.img-6.1.0-25-amd64"));
        assert!(!grub_path_ok("casper/vmlinuz"));
        assert!(!grub_path_ok("/casper//vmlinuz"));
        assert!(!grub_path_ok("/casper/../x"));
        assert!(!grub_path_ok(
            "/casper/vmlinuz; } ; set timeout=0 ; menuentry x { echo"
        ));
        for bad in [
            "a b", "a;b", "a}", "$x", "a*", "a?", "[a]", "a\"", "a'", "a\\x20", "a#b", "é",
        ] {
            assert!(!grub_word_ok(bad), "{bad}");
        }
        assert!(kernel_arg_ok("iso-scan/filename=${iso_path}"));
        assert!(kernel_arg_ok("img_dev=/dev/disk/by-uuid/${uuid}"));
        assert!(!kernel_arg_ok("x=${root}"));
        assert!(!kernel_arg_ok("x=${iso_path"));
        assert!(kernel_arg_ok("console=ttyS0,115200n8"));
        assert!(kernel_arg_ok("root=live:CDLABEL=Fedora-WS-Live-41-1-4"));
    }

    #[test]
    fn quoting() {
        assert_eq!(grub_quote("a b"), "'a b'");
        assert_eq!(grub_quote("it's"), "'it'\\''s'");
        assert_eq!(grub_quote("a\nb"), "'a?b'");
        assert_eq!(sh_quote("/root"), "'/root'");
        assert_eq!(sh_quote("x'; rm -rf /; '"), "'x'\\''; rm -rf /; '\\'''");
    }

    #[test]
    fn shell_paths_and_names() {
        assert!(sh_path_ok("/"));
        assert!(sh_path_ok("/run/initramfs/isoscan"));
        assert!(!sh_path_ok("/root; reboot"));
        assert!(!sh_path_ok("/root/../etc"));
        assert!(!sh_path_ok("root"));
        assert!(name_ok("init-bottom"));
        assert!(!name_ok("init-bottom/../x"));
        assert!(!name_ok(""));
    }
}
