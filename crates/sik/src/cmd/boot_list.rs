//! `sik boot list`: what a medium holds — ISOs with their family and the
//! distribution inside, extensions with their signature verdict against the
//! medium's `boot/keys` and, per ISO, whether the boot would link them
//! (sik-link's compatibility rule), AppImages, the customization, the
//! persistent home, the generated boot files and the free space.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use sik_boot::detect::Outcome;
use sik_boot::medium::Medium;
use sik_image::release::ReleaseFields;
use sik_verify::TrustStore;

use crate::fail::{CmdResult, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Reads the medium only (nothing is mounted or written). The distribution of each ISO is read\nfrom the root filesystem image inside it (SquashFS or EROFS; an os-release stored compressed in EROFS is\nreported as unknown). An extension\n\"links\" on an ISO when a key in boot/keys signed it and its extension-release fits the ISO's\nos-release (the rule `sik link` applies at boot).\n\nExample:\n  sik boot list stick.img\n  sik boot list /media/stick --json"
)]
pub struct ListArgs {
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Print a JSON document (formats/schema/boot-list.json).
    #[arg(long)]
    pub json: bool,
}

/// One ISO of the medium.
#[derive(Serialize)]
pub struct IsoItem {
    pub path: String,
    pub size: u64,
    /// The live ISO family, `None` when detection skipped it.
    pub family: Option<String>,
    pub label: Option<String>,
    /// Why detection skipped it.
    pub skipped: Option<String>,
    /// The distribution inside (`None` for a skipped ISO).
    pub os_release: Option<sik_boot::rootfs::OsRelease>,
}

/// Whether an extension would be linked in one ISO's boot.
#[derive(Serialize)]
pub struct LinkVerdict {
    pub iso: String,
    /// `None`: cannot be told (the ISO's os-release is unknown).
    pub links: Option<bool>,
    pub why: Option<String>,
}

/// One ExtensionImage or AppImage of the medium.
#[derive(Serialize)]
pub struct ImageItem {
    pub path: String,
    pub size: u64,
    /// Extension name (from its extension-release file).
    pub name: Option<String>,
    pub version: Option<String>,
    /// The verdict against boot/keys: trusted, unsigned, modified, untrusted, wrong-namespace, malformed.
    pub signature: String,
    pub signature_reason: String,
    /// Extensions only: per ISO.
    pub isos: Vec<LinkVerdict>,
    /// Why the file could not be read.
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Customization {
    pub overlay: bool,
    pub init: bool,
    pub initrd_files: bool,
    pub policy: Option<sik_boot::policy::Policy>,
}

#[derive(Serialize)]
pub struct Home {
    pub path: String,
    pub size: u64,
    /// `ext2/3/4` or `unknown`.
    pub filesystem: String,
}

#[derive(Serialize)]
pub struct BootFile {
    pub path: String,
    pub size: u64,
    /// The version the file says of itself, when it does.
    pub version: Option<String>,
}

/// The whole listing (`--json`).
#[derive(Serialize)]
pub struct Listing {
    pub medium: PathBuf,
    pub isos: Vec<IsoItem>,
    pub extensions: Vec<ImageItem>,
    pub apps: Vec<ImageItem>,
    pub keys: Vec<String>,
    pub customization: Customization,
    pub home: Option<Home>,
    pub boot_files: Vec<BootFile>,
    pub free_bytes: u64,
}

fn fail(m: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::input("boot list", Some(m), e)
}

/// The medium's boot/keys as a trust store (empty when there are none).
pub fn medium_trust(m: &Medium) -> Result<(TrustStore, Vec<String>), Failure> {
    let (dir, _g) = m.local_tree("boot/keys").map_err(|e| fail(m.path(), e))?;
    let names: Vec<String> = m
        .list("boot/keys")
        .map_err(|e| fail(m.path(), e))?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| format!("boot/keys/{}", e.name))
        .collect();
    if !dir.is_dir() {
        return Ok((TrustStore::default(), names));
    }
    let store = TrustStore::load(&[dir]).map_err(|e| fail(m.path(), e))?;
    Ok((store, names))
}

/// The medium's ISOs with their detection and distribution.
pub fn isos(m: &Medium) -> Result<Vec<IsoItem>, Failure> {
    let (families, found) = sik_boot::generate::detect_medium(m).map_err(|e| fail(m.path(), e))?;
    let mut out = Vec::new();
    for i in found {
        let size = m.file_size(&i.path).ok().flatten().unwrap_or(0);
        let item = match &i.outcome {
            Outcome::Detected(d) => {
                let os = families
                    .iter()
                    .find(|f| f.name == d.family)
                    .map(|f| sik_boot::rootfs::os_release(m, &i.path, f));
                IsoItem {
                    path: i.path.clone(),
                    size,
                    family: Some(d.family.clone()),
                    label: Some(d.label.clone()),
                    skipped: None,
                    os_release: os,
                }
            }
            Outcome::Skipped { reason } => IsoItem {
                path: i.path.clone(),
                size,
                family: None,
                label: None,
                skipped: Some(reason.clone()),
                os_release: None,
            },
        };
        out.push(item);
    }
    Ok(out)
}

/// Files named `*.SUFFIX` in the directories `dirs` of the medium (and in
/// their subdirectories one level down when `nested`).
pub fn files_in(m: &Medium, dirs: &[&str], suffix: &str, nested: bool) -> Vec<String> {
    let mut out = Vec::new();
    for d in dirs {
        for e in m.list(d).unwrap_or_default() {
            let rel = format!("{d}/{}", e.name);
            if e.is_dir {
                if nested {
                    out.extend(files_in(m, &[rel.as_str()], suffix, false));
                }
            } else if e.name.ends_with(suffix) {
                out.push(rel);
            }
        }
    }
    out
}

/// Every ExtensionImage a boot may link: `boot/extensions/ARCH/`,
/// `boot/customize/ARCH/` (found one level down; what is not in an
/// architecture directory is reported by `check`) and the ISOs' own
/// `boot/extensions/STEM/ARCH/` (a directory `STEM` that is not an
/// architecture name).
pub fn extension_files(m: &Medium) -> Vec<String> {
    let mut out = files_in(
        m,
        &["boot/extensions", "boot/customize"],
        ".ExtensionImage",
        true,
    );
    for e in m.list("boot/extensions").unwrap_or_default() {
        if e.is_dir && !sik_boot::grub::ARCH_DIRS.contains(&e.name.as_str()) {
            let dir = format!("boot/extensions/{}", e.name);
            for a in m.list(&dir).unwrap_or_default() {
                if a.is_dir {
                    out.extend(files_in(
                        m,
                        &[format!("{dir}/{}", a.name).as_str()],
                        ".ExtensionImage",
                        false,
                    ));
                }
            }
        }
    }
    out
}

/// The ISO file name an ExtensionImage is for when it lies in an ISO's
/// own directory `boot/extensions/STEM/ARCH/` (`STEM.iso`), else `None`
/// (shared by every ISO).
pub fn own_iso_stem(rel: &str) -> Option<&str> {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["boot", "extensions", stem, _arch, _file] if !sik_boot::grub::ARCH_DIRS.contains(stem) => {
            Some(stem)
        }
        _ => None,
    }
}

/// The systemd architecture name of an extensions directory (`uname -m`).
fn arch_of(rel: &str) -> &'static str {
    let dir = rel.rsplit('/').nth(1).unwrap_or("");
    match dir {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        "i686" | "i386" => "x86",
        _ => "unknown",
    }
}

/// Inspect and verify one image of the medium (read into a temporary copy:
/// what is checked is what was read).
pub fn image_item(
    m: &Medium,
    rel: &str,
    trust: &TrustStore,
    isos: &[IsoItem],
    ext: bool,
) -> ImageItem {
    let size = m.file_size(rel).ok().flatten().unwrap_or(0);
    let mut item = ImageItem {
        path: rel.to_string(),
        size,
        name: None,
        version: None,
        signature: "unknown".into(),
        signature_reason: String::new(),
        isos: Vec::new(),
        error: None,
    };
    let copy = (|| -> Result<tempfile::NamedTempFile, String> {
        let mut tmp = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        m.with_reader(rel, |r| std::io::copy(r, tmp.as_file_mut()))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{rel}: {e}"))?;
        Ok(tmp)
    })();
    let tmp = match copy {
        Ok(t) => t,
        Err(e) => {
            item.error = Some(e);
            return item;
        }
    };
    match sik_verify::verify_file(tmp.path(), trust) {
        Ok(r) => {
            item.signature = r.verdict.name().into();
            item.signature_reason = r.verdict.reason();
        }
        Err(e) => {
            item.signature = "malformed".into();
            item.signature_reason = e.to_string();
        }
    }
    if !ext {
        return item;
    }
    let release = match sik_inspect::inspect(tmp.path()) {
        Ok(rep) => rep.extension.map(|x| (x.name, x.release)),
        Err(e) => {
            item.error = Some(e.to_string());
            None
        }
    };
    let (name, release) = release.unwrap_or((None, ReleaseFields::default()));
    item.version = release
        .get("SYSEXT_VERSION_ID")
        .or_else(|| release.get("VERSION_ID"))
        .map(str::to_string);
    item.name = name.clone();
    let own = own_iso_stem(rel);
    for iso in isos.iter().filter(|i| i.family.is_some()) {
        let file = iso.path.rsplit('/').next().unwrap_or(&iso.path);
        let for_other = own.is_some_and(|stem| {
            sik_boot::grub::iso_extensions_dir(file).as_deref()
                != Some(format!("boot/extensions/{stem}").as_str())
        });
        let verdict = if for_other {
            (
                Some(false),
                Some(format!(
                    "in boot/extensions/{}/: linked only when that ISO boots",
                    own.unwrap_or_default()
                )),
            )
        } else if item.signature != "trusted" {
            (
                Some(false),
                Some(format!("signature: {}", item.signature_reason)),
            )
        } else if name.is_none() {
            (Some(false), Some("no extension-release file".to_string()))
        } else {
            match iso.os_release.as_ref().filter(|o| o.unknown.is_none()) {
                None => (None, Some("the ISO's os-release is unknown".to_string())),
                Some(os) => match sik_link::compat::check(&release, &os.fields, arch_of(rel)) {
                    Ok(()) => (Some(true), None),
                    Err(why) => (Some(false), Some(why)),
                },
            }
        };
        item.isos.push(LinkVerdict {
            iso: iso.path.clone(),
            links: verdict.0,
            why: verdict.1,
        });
    }
    item
}

/// The version a `sik` binary carries (`VERSION_MARK` in main.rs).
pub fn sik_version_in(bytes: &[u8]) -> Option<String> {
    // Put together here, so this program's own bytes hold the prefix only
    // where VERSION_MARK is.
    let mark = ["\0sik-", "version:"].concat();
    let mark = mark.as_bytes();
    let at = bytes.windows(mark.len()).position(|w| w == mark)? + mark.len();
    let end = bytes[at..].iter().position(|b| *b == 0)?;
    let v = std::str::from_utf8(&bytes[at..at + end]).ok()?;
    (v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic())).then(|| v.to_string())
}

pub fn listing(medium: &Path) -> Result<Listing, Failure> {
    let m = Medium::open(medium).map_err(|e| fail(medium, e))?;
    let (trust, keys) = medium_trust(&m)?;
    let isos = isos(&m)?;
    let ext_files = extension_files(&m);
    let extensions = ext_files
        .iter()
        .map(|rel| image_item(&m, rel, &trust, &isos, true))
        .collect();
    let apps = files_in(&m, &["Applications"], ".AppImage", false)
        .iter()
        .map(|rel| image_item(&m, rel, &trust, &isos, false))
        .collect();
    let exists = |rel: &str| m.exists(rel).unwrap_or(false);
    let customization = Customization {
        overlay: exists("boot/customize/overlay"),
        init: exists("boot/customize/init"),
        initrd_files: !m
            .list("boot/customize/initrd")
            .unwrap_or_default()
            .is_empty(),
        policy: exists(sik_boot::policy::POLICY_FILE)
            .then(|| sik_boot::policy::Policy::read(&m).ok())
            .flatten(),
    };
    let home = m.file_size("home.img").ok().flatten().map(|size| {
        let fs = m
            .with_reader("home.img", |r| {
                let mut b = [0u8; 2];
                r.seek(std::io::SeekFrom::Start(1080))?;
                r.read_exact(&mut b)?;
                Ok::<_, std::io::Error>(b)
            })
            .ok()
            .and_then(Result::ok);
        Home {
            path: "home.img".into(),
            size,
            filesystem: if fs == Some([0x53, 0xEF]) {
                "ext2/3/4".into()
            } else {
                "unknown".into()
            },
        }
    });
    let mut boot_files = Vec::new();
    for rel in [
        "boot/grub/grub.cfg",
        "boot/sik/initrd.img",
        "EFI/BOOT/BOOTX64.EFI",
    ] {
        if let Some(size) = m.file_size(rel).ok().flatten() {
            let version = match rel {
                "boot/sik/initrd.img" => m
                    .read(rel)
                    .ok()
                    .flatten()
                    .and_then(|gz| sik_boot::generate::initrd_member(&gz, "sik/sik"))
                    .and_then(|b| sik_version_in(&b).map(|v| format!("sik {v}"))),
                "EFI/BOOT/BOOTX64.EFI" => {
                    m.read(rel).ok().flatten().and_then(|b| grub_version_in(&b))
                }
                _ => None,
            };
            boot_files.push(BootFile {
                path: rel.into(),
                size,
                version,
            });
        }
    }
    let (free_bytes, _) = m.space().map_err(|e| fail(medium, e))?;
    Ok(Listing {
        medium: medium.to_path_buf(),
        isos,
        extensions,
        apps,
        keys,
        customization,
        home,
        boot_files,
        free_bytes,
    })
}

/// GRUB's version from the bytes of its image (`GRUB_VERSION` as built into
/// the kernel's `version` string), when present.
fn grub_version_in(bytes: &[u8]) -> Option<String> {
    let mark = b"GNU GRUB  version ";
    let at = bytes.windows(mark.len()).position(|w| w == mark)? + mark.len();
    let end = bytes[at..].iter().position(|b| *b == 0 || *b == b'\n')?;
    let v = std::str::from_utf8(&bytes[at..at + end.min(40)]).ok()?;
    Some(format!("GRUB {}", v.trim()))
}

pub fn run(a: ListArgs) -> CmdResult {
    let l = listing(&a.medium)?;
    if a.json {
        crate::output::print_json(&l);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}:", l.medium.display());
    println!("ISOs:");
    for i in &l.isos {
        match (&i.family, &i.skipped) {
            (Some(f), _) => {
                let os = i.os_release.as_ref().map_or_else(String::new, |o| {
                    match (o.fields.get("PRETTY_NAME"), &o.unknown) {
                        (Some(p), _) => format!(", {p}"),
                        (None, Some(why)) => format!(", distribution unknown: {why}"),
                        (None, None) => String::new(),
                    }
                });
                println!(
                    "  {} ({} bytes): {f}, label {:?}{os}",
                    i.path,
                    i.size,
                    i.label.as_deref().unwrap_or("")
                );
            }
            (None, why) => println!(
                "  {} ({} bytes): skipped: {}",
                i.path,
                i.size,
                why.as_deref().unwrap_or("")
            ),
        }
    }
    println!("Extensions:");
    for e in &l.extensions {
        println!(
            "  {} ({} bytes): {} {}, signature {}",
            e.path,
            e.size,
            e.name.as_deref().unwrap_or("?"),
            e.version.as_deref().unwrap_or("?"),
            e.signature
        );
        for v in &e.isos {
            let verdict = match v.links {
                Some(true) => "links".to_string(),
                Some(false) => format!("not linked: {}", v.why.as_deref().unwrap_or("")),
                None => format!("cannot tell: {}", v.why.as_deref().unwrap_or("")),
            };
            println!("    {}: {verdict}", v.iso);
        }
        if let Some(err) = &e.error {
            println!("    error: {err}");
        }
    }
    println!("Apps:");
    for a in &l.apps {
        println!("  {} ({} bytes), signature {}", a.path, a.size, a.signature);
    }
    println!(
        "Keys: {}",
        if l.keys.is_empty() {
            "none".into()
        } else {
            l.keys.join(" ")
        }
    );
    let c = &l.customization;
    println!(
        "Customization: overlay {}, init {}, initrd files {}, policy {}",
        yes(c.overlay),
        yes(c.init),
        yes(c.initrd_files),
        c.policy.map_or("none".to_string(), |p| format!(
            "allow_directories={} allow_unsigned_run={}",
            p.allow_directories, p.allow_unsigned_run
        ))
    );
    match &l.home {
        Some(h) => println!("Home: {} ({} bytes, {})", h.path, h.size, h.filesystem),
        None => println!("Home: none"),
    }
    println!("Boot files:");
    for b in &l.boot_files {
        println!(
            "  {} ({} bytes){}",
            b.path,
            b.size,
            b.version
                .as_ref()
                .map_or(String::new(), |v| format!(": {v}"))
        );
    }
    println!("Free: {} bytes", l.free_bytes);
    Ok(ExitCode::SUCCESS)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
