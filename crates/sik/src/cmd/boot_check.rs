//! `sik boot check`: whether a medium is intact and current. ISOs against
//! the checksum files beside them (hashed in parallel, with a progress bar
//! on a terminal), extension and AppImage signatures against the medium's
//! `boot/keys`, grub.cfg and the initrd against what `generate` would
//! write now, and files that GRUB or the boot hook cannot reach.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use rayon::prelude::*;
use serde::Serialize;
use sha2::Digest;
use sik_boot::medium::Medium;

use crate::cmd::boot_list;
use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "ISO checksums come from files in boot/iso/: NAME.iso.sha256, .sha512, .sha1, .md5 (\"HEX\" or\n\"HEX  NAME\"), SHA256SUMS-style lists (\"HEX  NAME\") and BSD-style CHECKSUM files\n(\"SHA256 (NAME) = HEX\", as Fedora publishes them). An ISO without any is reported, not failed.\nThe initrd and grub.cfg are current when `sik boot generate` with the initrd's own sik would\nwrite nothing. Nothing is written.\n\nExit status: 0 when every check passes, 1 when one fails, 2 on a usage or input error.\n\nExample:\n  sik boot check stick.img\n  sik boot check /media/stick --json"
)]
pub struct CheckArgs {
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Print a JSON document (formats/schema/boot-check.json).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One expected digest of an ISO.
#[derive(Serialize, Clone)]
pub struct Expected {
    pub algorithm: &'static str,
    pub expected: String,
    /// The checksum file it came from.
    pub source: String,
    pub actual: Option<String>,
    pub ok: bool,
}

#[derive(Serialize)]
pub struct IsoCheck {
    pub path: String,
    /// `ok`, `mismatch`, `unchecked` (no checksum file names it) or `error`.
    pub status: &'static str,
    pub checksums: Vec<Expected>,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct SignatureCheck {
    pub path: String,
    pub signature: String,
    pub reason: String,
    pub ok: bool,
}

#[derive(Serialize)]
pub struct Generated {
    /// Whether generate would write nothing.
    pub current: bool,
    /// The files generate would write.
    pub would_change: Vec<String>,
    /// Why it could not be told.
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Unreachable {
    pub path: String,
    pub why: String,
}

#[derive(Serialize)]
pub struct CheckDoc {
    pub medium: PathBuf,
    pub ok: bool,
    pub isos: Vec<IsoCheck>,
    pub signatures: Vec<SignatureCheck>,
    pub generated: Generated,
    pub unreachable: Vec<Unreachable>,
}

fn algorithm_of_hex(hex: &str) -> Option<&'static str> {
    match hex.len() {
        32 => Some("md5"),
        40 => Some("sha1"),
        64 => Some("sha256"),
        128 => Some("sha512"),
        _ => None,
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The digests a checksum file's text names, as (file name or `None` for a
/// bare digest, algorithm, hex). GNU lines `HEX  NAME` / `HEX *NAME`, bare
/// `HEX`, BSD lines `ALGO (NAME) = HEX`; anything else is ignored (PGP
/// armor around Fedora's CHECKSUM files, comments).
pub fn parse_checksums(text: &str) -> Vec<(Option<String>, &'static str, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((head, hex)) = line.rsplit_once(" = ")
            && let Some((algo, rest)) = head.split_once(" (")
            && let Some(name) = rest.strip_suffix(')')
        {
            let algo = match algo.to_ascii_uppercase().as_str() {
                "MD5" => "md5",
                "SHA1" => "sha1",
                "SHA256" => "sha256",
                "SHA512" => "sha512",
                _ => continue,
            };
            let hex = hex.trim().to_ascii_lowercase();
            if is_hex(&hex) && algorithm_of_hex(&hex) == Some(algo) {
                out.push((Some(name.to_string()), algo, hex));
            }
            continue;
        }
        let mut words = line.splitn(2, char::is_whitespace);
        let hex = words.next().unwrap_or("").to_ascii_lowercase();
        let Some(algo) = algorithm_of_hex(&hex).filter(|_| is_hex(&hex)) else {
            continue;
        };
        let name = words
            .next()
            .map(|n| n.trim_start().trim_start_matches('*').trim().to_string())
            .filter(|n| !n.is_empty());
        out.push((name, algo, hex));
    }
    out
}

/// Every expected digest of the ISOs in boot/iso, by ISO path.
fn expected_digests(m: &Medium, isos: &[String]) -> BTreeMap<String, Vec<Expected>> {
    let mut map: BTreeMap<String, Vec<Expected>> = BTreeMap::new();
    let entries = m.list("boot/iso").unwrap_or_default();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let lower = e.name.to_ascii_lowercase();
        let sidecar = [".sha256", ".sha512", ".sha1", ".md5"]
            .iter()
            .find_map(|s| {
                lower
                    .strip_suffix(s)
                    .map(|_| &e.name[..e.name.len() - s.len()])
            });
        let list = lower.ends_with("sums") || lower.ends_with("checksum");
        if sidecar.is_none() && !list {
            continue;
        }
        let rel = format!("boot/iso/{}", e.name);
        let Some(text) = m.read(&rel).ok().flatten().filter(|t| t.len() <= 1 << 20) else {
            continue;
        };
        for (name, algo, hex) in parse_checksums(&String::from_utf8_lossy(&text)) {
            let target = match (&name, sidecar) {
                (Some(n), _) => n.rsplit('/').next().unwrap_or(n).to_string(),
                (None, Some(iso)) => iso.to_string(),
                (None, None) => continue,
            };
            let iso = format!("boot/iso/{target}");
            if !isos.contains(&iso) {
                continue;
            }
            map.entry(iso).or_default().push(Expected {
                algorithm: algo,
                expected: hex,
                source: rel.clone(),
                actual: None,
                ok: false,
            });
        }
    }
    map
}

/// Hash one file of the medium with every algorithm in `algos`, in one pass.
fn hash(
    m: &Medium,
    rel: &str,
    algos: &[&'static str],
    bar: &indicatif::ProgressBar,
) -> Result<BTreeMap<&'static str, String>, String> {
    let mut s256 = sha2::Sha256::new();
    let mut s512 = sha2::Sha512::new();
    let mut s1 = sha1::Sha1::new();
    let mut m5 = md5::Md5::new();
    let want = |a: &str| algos.contains(&a);
    m.with_reader(rel, |r| {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let b = &buf[..n];
            if want("sha256") {
                s256.update(b);
            }
            if want("sha512") {
                s512.update(b);
            }
            if want("sha1") {
                s1.update(b);
            }
            if want("md5") {
                m5.update(b);
            }
            bar.inc(n as u64);
        }
        Ok::<(), std::io::Error>(())
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{rel}: {e}"))?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut out = BTreeMap::new();
    for a in algos {
        let v = match *a {
            "sha256" => hex(&s256.clone().finalize()),
            "sha512" => hex(&s512.clone().finalize()),
            "sha1" => hex(&s1.clone().finalize()),
            _ => hex(&m5.clone().finalize()),
        };
        out.insert(*a, v);
    }
    Ok(out)
}

fn check_isos(m: &Medium, quiet: bool) -> Vec<IsoCheck> {
    let isos: Vec<String> = m
        .list("boot/iso")
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.is_dir && e.name.to_ascii_lowercase().ends_with(".iso"))
        .map(|e| format!("boot/iso/{}", e.name))
        .collect();
    let expected = expected_digests(m, &isos);
    let total: u64 = expected
        .keys()
        .map(|i| m.file_size(i).ok().flatten().unwrap_or(0))
        .sum();
    let bar = crate::output::progress(total, quiet, "hashing ISOs");
    let mut out: Vec<IsoCheck> = isos
        .par_iter()
        .map(|iso| {
            let Some(exp) = expected.get(iso) else {
                return IsoCheck {
                    path: iso.clone(),
                    status: "unchecked",
                    checksums: Vec::new(),
                    error: None,
                };
            };
            let mut algos: Vec<&'static str> = exp.iter().map(|e| e.algorithm).collect();
            algos.sort_unstable();
            algos.dedup();
            match hash(m, iso, &algos, &bar) {
                Err(e) => IsoCheck {
                    path: iso.clone(),
                    status: "error",
                    checksums: exp.clone(),
                    error: Some(e),
                },
                Ok(actual) => {
                    let checksums: Vec<Expected> = exp
                        .iter()
                        .map(|e| {
                            let a = actual.get(e.algorithm).cloned();
                            Expected {
                                ok: a.as_deref() == Some(e.expected.as_str()),
                                actual: a,
                                ..e.clone()
                            }
                        })
                        .collect();
                    let ok = checksums.iter().all(|c| c.ok);
                    IsoCheck {
                        path: iso.clone(),
                        status: if ok { "ok" } else { "mismatch" },
                        checksums,
                        error: None,
                    }
                }
            }
        })
        .collect();
    bar.finish_and_clear();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Would `generate`, with the initrd's own sik, write anything?
fn generated(m: &Medium) -> Generated {
    let fail = |why: String| Generated {
        current: false,
        would_change: Vec::new(),
        error: Some(why),
    };
    let Some(gz) = m.read(sik_boot::grub::SIK_INITRD).ok().flatten() else {
        return fail(format!(
            "{} is missing: run sik boot generate",
            sik_boot::grub::SIK_INITRD
        ));
    };
    let Some(sik) = sik_boot::generate::initrd_member(&gz, "sik/sik") else {
        return fail(format!("{} holds no sik/sik", sik_boot::grub::SIK_INITRD));
    };
    let timeout = m
        .read(sik_boot::grub::GRUB_CFG)
        .ok()
        .flatten()
        .and_then(|c| {
            String::from_utf8_lossy(&c)
                .lines()
                .find_map(|l| l.trim().strip_prefix("set timeout=")?.parse().ok())
        })
        .unwrap_or(10);
    let tmp = match tempfile::NamedTempFile::new()
        .and_then(|mut f| std::io::Write::write_all(&mut f, &sik).map(|()| f))
    {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let opts = sik_boot::generate::Options {
        sik_binary: tmp.path().to_path_buf(),
        dry_run: true,
        timeout,
    };
    match sik_boot::generate::generate(m.path(), &opts) {
        Err(e) => fail(e.to_string()),
        Ok(r) => {
            let would_change: Vec<String> = r
                .files
                .into_iter()
                .filter(|f| f.action != "unchanged")
                .map(|f| f.path)
                .collect();
            Generated {
                current: would_change.is_empty(),
                would_change,
                error: None,
            }
        }
    }
}

/// Files in the medium's boot places that GRUB or the boot hook never use.
fn unreachable(m: &Medium, isos: &[boot_list::IsoItem]) -> Vec<Unreachable> {
    let mut out = Vec::new();
    // The ISOs whose boot names them (sik.iso=STEM): their own extension
    // directories boot/extensions/STEM/.
    let iso_stems: Vec<String> = isos
        .iter()
        .filter(|i| i.skipped.is_none())
        .filter_map(|i| {
            let file = i.path.rsplit('/').next().unwrap_or(&i.path);
            sik_boot::grub::iso_extensions_dir(file)
                .map(|d| d.trim_start_matches("boot/extensions/").to_string())
        })
        .collect();
    for i in isos {
        if let Some(why) = &i.skipped {
            out.push(Unreachable {
                path: i.path.clone(),
                why: format!("no menu entry: {why}"),
            });
        }
    }
    let checksum = |n: &str| {
        let l = n.to_ascii_lowercase();
        [".sha256", ".sha512", ".sha1", ".md5"]
            .iter()
            .any(|s| l.ends_with(s))
            || l.ends_with("sums")
            || l.ends_with("checksum")
    };
    for e in m.list("boot/iso").unwrap_or_default() {
        if e.is_dir || !(e.name.to_ascii_lowercase().ends_with(".iso") || checksum(&e.name)) {
            out.push(Unreachable {
                path: format!("boot/iso/{}", e.name),
                why: "not an .iso file: GRUB's menu lists only boot/iso/*.iso".into(),
            });
        }
    }
    for base in ["boot/extensions", "boot/customize"] {
        for e in m.list(base).unwrap_or_default() {
            let rel = format!("{base}/{}", e.name);
            if !e.is_dir {
                if e.name.ends_with(".ExtensionImage") {
                    out.push(Unreachable {
                        path: rel,
                        why: format!("the boot links {base}/ARCH/*.ExtensionImage only (ARCH as uname -m, e.g. x86_64)"),
                    });
                }
                continue;
            }
            if base == "boot/customize" && ["overlay", "initrd"].contains(&e.name.as_str()) {
                continue;
            }
            if !sik_boot::grub::ARCH_DIRS.contains(&e.name.as_str()) {
                // An ISO's own directory: boot/extensions/STEM/ARCH/.
                if base == "boot/extensions" && iso_stems.contains(&e.name) {
                    for a in m.list(&rel).unwrap_or_default() {
                        let arel = format!("{rel}/{}", a.name);
                        if !a.is_dir || !sik_boot::grub::ARCH_DIRS.contains(&a.name.as_str()) {
                            out.push(Unreachable {
                                path: arel,
                                why: format!("the boot of {}.iso links only {rel}/ARCH/*.ExtensionImage (ARCH as uname -m, e.g. x86_64)", e.name),
                            });
                        } else {
                            unreachable_in_arch_dir(m, &arel, &mut out);
                        }
                    }
                    continue;
                }
                out.push(Unreachable {
                    path: rel.clone(),
                    why: if base == "boot/extensions" {
                        format!("neither an architecture directory (uname -m, e.g. x86_64) nor the directory of an ISO boot/iso/{}.iso: nothing in it is linked", e.name)
                    } else {
                        "not an architecture directory (uname -m, e.g. x86_64): nothing in it is linked".into()
                    },
                });
                continue;
            }
            unreachable_in_arch_dir(m, &rel, &mut out);
        }
    }
    out
}

/// What in an architecture directory of extensions no boot links.
fn unreachable_in_arch_dir(m: &Medium, rel: &str, out: &mut Vec<Unreachable>) {
    for f in m.list(rel).unwrap_or_default() {
        if f.is_dir || !f.name.ends_with(".ExtensionImage") {
            out.push(Unreachable {
                path: format!("{rel}/{}", f.name),
                why: "the boot links only *.ExtensionImage files here".into(),
            });
        }
    }
}

pub fn run(a: CheckArgs) -> CmdResult {
    let m =
        Medium::open(&a.medium).map_err(|e| Failure::input("boot check", Some(&a.medium), e))?;
    let (trust, _) = boot_list::medium_trust(&m)?;
    let isos = check_isos(&m, a.quiet || a.json);
    let listed = boot_list::isos(&m)?;
    let signatures: Vec<SignatureCheck> = boot_list::extension_files(&m)
        .into_iter()
        .chain(boot_list::files_in(
            &m,
            &["Applications"],
            ".AppImage",
            false,
        ))
        .map(|rel| {
            let item = boot_list::image_item(&m, &rel, &trust, &[], false);
            SignatureCheck {
                ok: item.signature == "trusted",
                path: item.path,
                signature: item.signature,
                reason: item.error.unwrap_or(item.signature_reason),
            }
        })
        .collect();
    let generated = generated(&m);
    let unreachable = unreachable(&m, &listed);
    let ok = isos.iter().all(|i| matches!(i.status, "ok" | "unchecked"))
        && signatures.iter().all(|s| s.ok)
        && generated.current
        && unreachable.is_empty();
    let doc = CheckDoc {
        medium: a.medium.clone(),
        ok,
        isos,
        signatures,
        generated,
        unreachable,
    };
    if a.json {
        crate::output::print_json(&doc);
    } else {
        print(&doc);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::fail::EXIT_CHECK)
    })
}

fn print(d: &CheckDoc) {
    for i in &d.isos {
        match i.status {
            "ok" => {
                let algos: Vec<String> = i
                    .checksums
                    .iter()
                    .map(|c| format!("{} ({})", c.algorithm, c.source))
                    .collect();
                println!("ok        {}: {}", i.path, algos.join(", "));
            }
            "unchecked" => println!("unchecked {}: no checksum file names it", i.path),
            "mismatch" => {
                for c in i.checksums.iter().filter(|c| !c.ok) {
                    println!(
                        "MISMATCH  {}: {} {} says {}, the file has {}",
                        i.path,
                        c.algorithm,
                        c.source,
                        c.expected,
                        c.actual.as_deref().unwrap_or("?")
                    );
                }
            }
            _ => println!("ERROR     {}: {}", i.path, i.error.as_deref().unwrap_or("")),
        }
    }
    for s in &d.signatures {
        if s.ok {
            println!("ok        {}: {}", s.path, s.reason);
        } else {
            println!("NOT TRUSTED {}: {}: {}", s.path, s.signature, s.reason);
        }
    }
    let g = &d.generated;
    match (&g.error, g.current) {
        (Some(e), _) => println!("STALE     generated files: {e}"),
        (None, true) => println!("ok        grub.cfg and initrd are current"),
        (None, false) => println!(
            "STALE     sik boot generate would write: {}",
            g.would_change.join(" ")
        ),
    }
    for u in &d.unreachable {
        println!("UNREACHABLE {}: {}", u.path, u.why);
    }
    println!(
        "{}",
        if d.ok {
            "medium ok"
        } else {
            "medium has problems"
        }
    );
}
