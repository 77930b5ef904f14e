//! Reading a distribution's own boot configuration (GRUB `grub.cfg` and
//! `loopback.cfg`, syslinux/isolinux `isolinux.cfg` and `live.cfg`,
//! systemd-boot loader entries) for kernel, initrd(s) and arguments.
//!
//! The parser is line based and forgiving: it understands the commands that
//! name a kernel (`linux`, `linuxefi`, `linux16`, `kernel`, kiwi's `$linux`),
//! initrds (`initrd`, `initrdefi`, `initrd16`, `$initrd`, syslinux
//! `initrd=a,b` in `append`) and arguments (`append`, `options`), and ignores
//! everything else.

/// One boot entry of a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CfgEntry {
    /// Entry title when the config gives one.
    pub title: String,
    /// Kernel path inside the ISO (absolute, device prefix removed).
    pub kernel: Option<String>,
    /// Initrd paths inside the ISO, in order.
    pub initrds: Vec<String>,
    /// Kernel arguments as written.
    pub args: Vec<String>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Turn a path as a config writes it into an absolute ISO path; `None`
/// when it depends on a variable that is only known at boot time.
pub fn resolve_path(raw: &str, cfg_dir: &str) -> Option<String> {
    let mut p = unquote(raw);
    // GRUB device prefixes: (loop)/x, ($root)/x, (cd0)/x.
    if p.starts_with('(') {
        let close = p.find(')')?;
        p = &p[close + 1..];
    }
    if p.is_empty() || p.contains('$') || p.contains('\0') {
        return None;
    }
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{}", cfg_dir.trim_end_matches('/'), p)
    };
    // Normalise `.` and `..`.
    let mut out: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    Some(format!("/{}", out.join("/")))
}

fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in s.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => cur.push(ch),
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                any = true;
            }
            None if ch.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            None => cur.push(ch),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parse a config's text. `cfg_dir` is the directory of the config inside
/// the ISO (relative kernel paths of syslinux configs are relative to it).
pub fn parse(text: &str, cfg_dir: &str) -> Vec<CfgEntry> {
    let mut entries: Vec<CfgEntry> = Vec::new();
    let mut cur = CfgEntry::default();
    let mut started = false;
    let flush = |cur: &mut CfgEntry, entries: &mut Vec<CfgEntry>| {
        if cur.kernel.is_some() {
            entries.push(std::mem::take(cur));
        } else {
            *cur = CfgEntry::default();
        }
    };
    for line in text.lines().take(100_000) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_words(line);
        let Some(cmd) = words.first() else { continue };
        let rest = &words[1..];
        match cmd.to_ascii_lowercase().as_str() {
            "menuentry" | "label" | "title" => {
                if started {
                    flush(&mut cur, &mut entries);
                }
                started = true;
                cur.title = rest
                    .first()
                    .map(|s| s.trim_end_matches('{').to_string())
                    .unwrap_or_default();
            }
            "}" => {
                flush(&mut cur, &mut entries);
                started = false;
            }
            "linux" | "linuxefi" | "linux16" | "kernel" | "$linux" => {
                if cur.kernel.is_some() {
                    flush(&mut cur, &mut entries);
                }
                if let Some(k) = rest.first() {
                    cur.kernel = resolve_path(k, cfg_dir);
                    cur.args
                        .extend(rest[1..].iter().filter(|a| !a.is_empty()).cloned());
                }
            }
            "initrd" | "initrdefi" | "initrd16" | "$initrd" => {
                for w in rest {
                    cur.initrds
                        .extend(w.split(',').filter_map(|p| resolve_path(p, cfg_dir)));
                }
            }
            "append" | "options" => {
                for a in rest {
                    if let Some(list) = a.strip_prefix("initrd=") {
                        cur.initrds
                            .extend(list.split(',').filter_map(|p| resolve_path(p, cfg_dir)));
                    } else if !a.is_empty() {
                        cur.args.push(a.clone());
                    }
                }
            }
            _ => {}
        }
    }
    flush(&mut cur, &mut entries);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_loopback_cfg() {
        let t = r#"menuentry "Try or Install Ubuntu" {
	set gfxpayload=keep
	linux	/casper/vmlinuz  iso-scan/filename=${iso_path} --- quiet splash
	initrd	/casper/initrd
}
menuentry "Ubuntu (safe graphics)" {
	linux	/casper/vmlinuz  nomodeset iso-scan/filename=${iso_path} --- quiet splash
	initrd	/casper/initrd
}"#;
        let e = parse(t, "/boot/grub");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].title, "Try or Install Ubuntu");
        assert_eq!(e[0].kernel.as_deref(), Some("/casper/vmlinuz"));
        assert_eq!(e[0].initrds, vec!["/casper/initrd"]);
        assert_eq!(
            e[0].args,
            vec!["iso-scan/filename=${iso_path}", "---", "quiet", "splash"]
        );
    }

    #[test]
    fn syslinux_relative_and_commas() {
        let t = "LABEL arch64\nMENU LABEL Arch\nLINUX ../x86_64/vmlinuz-linux\nINITRD /arch/boot/intel-ucode.img,/arch/boot/amd-ucode.img,/arch/boot/x86_64/initramfs-linux.img\nAPPEND archisobasedir=arch archisolabel=ARCH_202411\n";
        let e = parse(t, "/arch/boot/syslinux");
        assert_eq!(
            e[0].kernel.as_deref(),
            Some("/arch/boot/x86_64/vmlinuz-linux")
        );
        assert_eq!(e[0].initrds.len(), 3);
        assert_eq!(
            e[0].args,
            vec!["archisobasedir=arch", "archisolabel=ARCH_202411"]
        );
    }

    #[test]
    fn isolinux_append_initrd() {
        let t = "label linux0\n  menu label ^Start CentOS\n  kernel vmlinuz0\n  append initrd=initrd0.img root=live:CDLABEL=CentOS-7-x86_64-LiveGNOME-1804 rootfstype=auto ro rd.live.image quiet  rhgb rd.luks=0 rd.md=0 rd.dm=0\n";
        let e = parse(t, "/isolinux");
        assert_eq!(e[0].kernel.as_deref(), Some("/isolinux/vmlinuz0"));
        assert_eq!(e[0].initrds, vec!["/isolinux/initrd0.img"]);
        assert!(e[0].args.contains(&"rhgb".to_string()));
    }

    #[test]
    fn device_prefix_and_variables() {
        assert_eq!(
            resolve_path("(loop)/casper/vmlinuz", "/"),
            Some("/casper/vmlinuz".into())
        );
        assert_eq!(resolve_path("($root)/a/../b", "/"), Some("/b".into()));
        assert_eq!(resolve_path("/boot/${kernel}", "/"), None);
    }
}
