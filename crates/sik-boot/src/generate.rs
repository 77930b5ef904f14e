//! `generate`: detect the ISOs in `boot/iso/`, write `boot/grub/grub.cfg`
//! and the secondary initrd `boot/sik/initrd.img` (plus the `init=` helper
//! files in `boot/sik/`). Files whose contents would not change are not
//! touched, so a second run with nothing changed rewrites nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::cpio::{Archive, Node};
use crate::detect::{self, Outcome};
use crate::error::{Error, Result};
use crate::family::{self, Family, RunMethod};
use crate::grub::{self, MenuIso};
use crate::medium::Medium;
use crate::policy::Policy;
use crate::quote;

/// The common hook script (template).
pub const BOOT_SH: &str = include_str!("hooks/boot.sh");
/// dracut pre-pivot hook (template).
pub const DRACUT_HOOK: &str = include_str!("hooks/dracut-hook.sh");
/// initramfs-tools conf.d file (template).
pub const ITOOLS_CONF: &str = include_str!("hooks/initramfs-tools.conf");
/// initramfs-tools phase script (template).
pub const ITOOLS_HOOK: &str = include_str!("hooks/initramfs-tools-hook.sh");
/// `init=` wrapper placed on the medium (template).
pub const INIT_SH: &str = include_str!("hooks/init.sh");
/// The script that makes the ISO file named by `sik.iso=` a block device
/// (`sik/iso-device.sh` in the initrd).
pub const ISO_DEVICE_SH: &str = include_str!("hooks/iso-device.sh");
/// dracut initqueue/settled hook that runs [`ISO_DEVICE_SH`].
pub const DRACUT_ISO_DEVICE_HOOK: &str = include_str!("hooks/dracut-iso-device.sh");
/// Where dracut sources initqueue/settled hooks (`/lib` is a symlink to
/// `/usr/lib` on merged-/usr initramfs, a directory on others): the ISO
/// device hook goes to both, for every medium (it does nothing without
/// `sik.iso=`).
pub const DRACUT_ISO_DEVICE_PATHS: &[&str] = &[
    "usr/lib/dracut/hooks/initqueue/settled/05-sik-iso-device.sh",
    "lib/dracut/hooks/initqueue/settled/05-sik-iso-device.sh",
];
/// Where `sik/iso-device.sh` mounts the medium (read-only) for the loop
/// device over the ISO file; the boot hook finds the medium there too.
pub const ISO_DEVICE_MEDIUM: &str = "/run/sik/medium";

/// Options of [`generate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of the static `sik` binary put into the initrd.
    pub sik_binary: PathBuf,
    /// Only report what would be written.
    pub dry_run: bool,
    /// GRUB menu timeout in seconds.
    pub timeout: u32,
}

impl Options {
    /// Defaults: write for real, 10 s menu timeout.
    pub fn new(sik_binary: impl Into<PathBuf>) -> Self {
        Options {
            sik_binary: sik_binary.into(),
            dry_run: false,
            timeout: 10,
        }
    }
}

/// What happened to one output file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileResult {
    /// Path relative to the medium.
    pub path: String,
    /// `written`, `unchanged` or `would-write`.
    pub action: String,
    /// Size in bytes.
    pub size: u64,
}

/// One ISO of the medium with its detection.
#[derive(Debug, Clone, Serialize)]
pub struct IsoResult {
    /// Path relative to the medium.
    pub path: String,
    /// Detection outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Result of [`generate`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The medium.
    pub medium: PathBuf,
    /// ISOs found and what became of them.
    pub isos: Vec<IsoResult>,
    /// Output files.
    pub files: Vec<FileResult>,
    /// Paths inside the secondary initrd.
    pub initrd_entries: Vec<String>,
    /// Whether grub-script-check checked the config.
    pub script_checked: bool,
    /// The filesystem UUID grub.cfg pins the medium by (`search --fs-uuid`);
    /// `null` when none was found and grub.cfg searches by file.
    pub medium_uuid: Option<String>,
    /// The link policy baked into the initrd (boot/customize/policy.toml).
    pub policy: Policy,
    /// Things that will not stop the build but may stop the boot.
    pub warnings: Vec<String>,
}

/// Why an executable cannot be the `sik` of a medium's initrd, `None` when
/// it can: it must be an ELF executable for x86_64 (the medium's GRUB is
/// `i386-pc` and `x86_64-efi`, and so are the kernels it boots) that asks
/// for no program interpreter (`PT_INTERP`): a foreign initramfs has none
/// of the host's dynamic loader and shared libraries.
pub fn initrd_binary_problem(bytes: &[u8]) -> Option<String> {
    use elf::abi;
    let Ok(f) = elf::ElfBytes::<elf::endian::AnyEndian>::minimal_parse(bytes) else {
        return Some("is not an ELF executable".into());
    };
    if f.ehdr.e_machine != abi::EM_X86_64 || f.ehdr.class != elf::file::Class::ELF64 {
        let m = match f.ehdr.e_machine {
            abi::EM_386 => "i386".to_string(),
            abi::EM_AARCH64 => "aarch64".to_string(),
            abi::EM_ARM => "arm".to_string(),
            abi::EM_RISCV => "riscv".to_string(),
            abi::EM_X86_64 => "x86_64 as a 32-bit ELF".to_string(),
            other => format!("ELF machine {other}"),
        };
        return Some(format!(
            "is built for {m}: the medium boots x86_64 systems (GRUB i386-pc and x86_64-efi)"
        ));
    }
    if f.ehdr.e_type != abi::ET_EXEC && f.ehdr.e_type != abi::ET_DYN {
        return Some(format!("is not an executable (ELF type {})", f.ehdr.e_type));
    }
    let Some(segs) = f.segments() else {
        return Some("is an ELF file without program headers (not an executable)".into());
    };
    if let Some(interp) = segs.iter().find(|p| p.p_type == abi::PT_INTERP) {
        let name = usize::try_from(interp.p_offset)
            .ok()
            .and_then(|o| bytes.get(o..o.checked_add(usize::try_from(interp.p_filesz).ok()?)?))
            .map(|b| {
                String::from_utf8_lossy(b)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_default();
        return Some(format!(
            "is dynamically linked (it asks for the program interpreter {name:?}): it would not run inside a foreign initramfs"
        ));
    }
    None
}

fn tool_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Check a grub.cfg text with `grub-script-check` when it is installed;
/// `Ok(false)` when it is not.
pub fn script_check(text: &str) -> Result<bool> {
    let Some(tool) = tool_path("grub-script-check") else {
        return Ok(false);
    };
    let mut tmp = tempfile::NamedTempFile::new().map_err(|e| Error::Io {
        path: "/tmp".into(),
        source: e,
    })?;
    tmp.write_all(text.as_bytes()).map_err(|e| Error::Io {
        path: tmp.path().into(),
        source: e,
    })?;
    let out = Command::new(tool)
        .arg(tmp.path())
        .output()
        .map_err(|e| Error::Tool {
            tool: "grub-script-check".into(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let msg = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(Error::ScriptCheck(msg.trim().replace('\n', " ")));
    }
    Ok(true)
}

/// Every place a family's initramfs may expose the medium, for the hook's search.
pub fn medium_candidates(families: &[Family]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        if !p.is_empty() && !v.iter().any(|x| x == p) {
            v.push(p.to_string());
        }
    };
    for f in families {
        add(&f.initramfs.medium);
    }
    for f in families {
        if !f.initramfs.newroot.is_empty() && !f.initramfs.medium.is_empty() {
            add(&format!("{}{}", f.initramfs.newroot, f.initramfs.medium));
        }
    }
    add("/lib/live/mount/findiso");
    add(ISO_DEVICE_MEDIUM);
    v.retain(|p| !p.contains(|c: char| c.is_whitespace() || "\"'$`\\;&|<>".contains(c)));
    v
}

/// The common hook script with the search list, the marker file and the
/// medium's link policy filled in, each single-quoted ([`quote::sh_quote`]).
pub fn boot_script(families: &[Family], policy: &Policy) -> String {
    BOOT_SH
        .replace(
            "@CANDIDATES@",
            &quote::sh_quote(&medium_candidates(families).join(" ")),
        )
        .replace("@MARKER@", &quote::sh_quote(grub::SIK_INITRD))
        .replace(
            "@LINK_POLICY@",
            &quote::sh_quote(&policy.link_flags().join(" ")),
        )
}

/// Build the secondary initrd's archive.
pub fn initrd_archive(
    families: &[Family],
    policy: &Policy,
    sik_binary: &[u8],
    extra: Option<&Path>,
) -> Result<Archive> {
    let mut a = Archive::new();
    a.add_dir_all("sik");
    a.add("sik/sik", Node::File(0o755, sik_binary.to_vec()));
    a.add(
        "sik/boot.sh",
        Node::File(0o755, boot_script(families, policy).into_bytes()),
    );
    a.add(
        "sik/iso-device.sh",
        Node::File(
            0o755,
            ISO_DEVICE_SH
                .replace("@MEDIUM@", &quote::sh_quote(ISO_DEVICE_MEDIUM))
                .into_bytes(),
        ),
    );
    for p in DRACUT_ISO_DEVICE_PATHS {
        a.add(
            p,
            Node::File(0o755, DRACUT_ISO_DEVICE_HOOK.as_bytes().to_vec()),
        );
    }
    for f in families {
        let newroot = quote::sh_quote(&f.initramfs.newroot);
        match f.hook.method {
            RunMethod::DracutHook => {
                let text = DRACUT_HOOK.replace("@NEWROOT@", &newroot);
                for p in &f.hook.paths {
                    a.add(p, Node::File(0o755, text.clone().into_bytes()));
                }
            }
            RunMethod::InitramfsToolsConf => {
                let phase = f.hook.phase.as_deref().unwrap_or("init-bottom");
                a.add(
                    "conf/conf.d/zz-sik.conf",
                    Node::File(
                        0o644,
                        ITOOLS_CONF
                            .replace("@PHASE@", &quote::sh_quote(phase))
                            .into_bytes(),
                    ),
                );
                a.add(
                    "sik/initramfs-tools-hook",
                    Node::File(
                        0o755,
                        ITOOLS_HOOK.replace("@NEWROOT@", &newroot).into_bytes(),
                    ),
                );
            }
            RunMethod::Init | RunMethod::None => {}
        }
    }
    if let Some(dir) = extra.filter(|d| d.is_dir()) {
        for e in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .sort_by_file_name()
            .min_depth(1)
        {
            let e = e.map_err(|e| Error::Io {
                path: dir.to_path_buf(),
                source: e.into(),
            })?;
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type();
            if ft.is_dir() {
                a.add(&rel, Node::Dir(0o755));
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).map_err(|err| Error::Io {
                    path: e.path().into(),
                    source: err,
                })?;
                a.add(&rel, Node::Symlink(t.to_string_lossy().into_owned()));
            } else if ft.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let data = std::fs::read(e.path()).map_err(|err| Error::Io {
                    path: e.path().into(),
                    source: err,
                })?;
                let mode = e
                    .metadata()
                    .map(|m| m.permissions().mode() & 0o7777)
                    .unwrap_or(0o644);
                a.add(
                    &rel,
                    Node::File(if mode & 0o111 != 0 { 0o755 } else { 0o644 }, data),
                );
            }
        }
    }
    Ok(a)
}

/// The compressed initrd bytes (gzip, no name, mtime 0: reproducible).
pub fn initrd_bytes(a: &Archive) -> Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    a.write(&mut gz).map_err(|e| Error::Io {
        path: "initrd".into(),
        source: e,
    })?;
    gz.finish().map_err(|e| Error::Io {
        path: "initrd".into(),
        source: e,
    })
}

/// The file `path` inside a secondary initrd (gzip-compressed newc, as
/// [`initrd_bytes`] writes it), read with a bound of 1 GiB; `None` when it
/// is not there or the initrd cannot be read.
pub fn initrd_member(gz: &[u8], path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(1 << 30)
        .read_to_end(&mut raw)
        .ok()?;
    crate::cpio::find(&raw, path)
}

/// Detect the ISOs of a medium (`boot/iso/*.iso`), using the built-in
/// families plus the medium's `boot/formats/*.toml`.
pub fn detect_medium(m: &Medium) -> Result<(Vec<Family>, Vec<IsoResult>)> {
    let (fdir, _g) = m.local_tree("boot/formats")?;
    let families = family::with_dir(&fdir)?;
    let mut isos = Vec::new();
    for e in m.list("boot/iso")? {
        if e.is_dir || !e.name.to_ascii_lowercase().ends_with(".iso") {
            continue;
        }
        let rel = format!("boot/iso/{}", e.name);
        let outcome = if !grub::path_safe(&e.name) {
            Outcome::Skipped { reason: "file name has characters GRUB paths cannot carry unquoted (use letters, digits and ._,+:=@%~-)".into() }
        } else {
            let o = m
                .with_reader(&rel, |r| detect::detect_reader(r, &families))
                .unwrap_or_else(|e| Outcome::Skipped {
                    reason: e.to_string(),
                });
            // The last guard before grub.cfg: every value in its class.
            match o {
                Outcome::Detected(d) => {
                    let menu = MenuIso {
                        file_name: e.name.clone(),
                        detected: d,
                    };
                    match grub::entry_check(&menu) {
                        Ok(()) => Outcome::Detected(menu.detected),
                        Err(why) => Outcome::Skipped {
                            reason: why.to_string(),
                        },
                    }
                }
                skipped => skipped,
            }
        };
        isos.push(IsoResult { path: rel, outcome });
    }
    Ok((families, isos))
}

fn put(
    m: &Medium,
    rel: &str,
    data: &[u8],
    mode: u32,
    dry: bool,
    files: &mut Vec<FileResult>,
) -> Result<bool> {
    let same = m.read(rel)?.is_some_and(|old| old == data);
    let action = if same {
        "unchanged"
    } else if dry {
        "would-write"
    } else {
        m.write(rel, data, mode)?;
        "written"
    };
    files.push(FileResult {
        path: rel.to_string(),
        action: action.into(),
        size: data.len() as u64,
    });
    Ok(!same)
}

/// Generate grub.cfg and the secondary initrd of a medium.
pub fn generate(medium: &Path, opts: &Options) -> Result<Report> {
    let m = Medium::open(medium)?;
    let (families, isos) = detect_medium(&m)?;
    let menu: Vec<MenuIso> = isos
        .iter()
        .filter_map(|i| match &i.outcome {
            Outcome::Detected(d) => Some(MenuIso {
                file_name: i.path.rsplit('/').next().unwrap_or(&i.path).to_string(),
                detected: d.clone(),
            }),
            Outcome::Skipped { .. } => None,
        })
        .collect();
    let mut warnings = Vec::new();
    let medium_uuid = m.fs_uuid()?.filter(|u| grub::uuid_ok(u));
    let pin = match &medium_uuid {
        Some(u) => grub::Pin::Uuid(u.clone()),
        None => {
            warnings.push(format!(
                "{}: no filesystem UUID found (not the root of a block device's filesystem): grub.cfg finds the medium by file (search --file), so another disk holding the same path could supply kernel and initrd",
                medium.display()
            ));
            grub::Pin::File
        }
    };
    // A directory medium's filesystem is not known here: exfat stays loaded.
    let data_exfat = m.data_fs() != Some(crate::medium::DataFs::Fat32);
    let mut cfg = grub::render(&menu, opts.timeout, &pin, data_exfat);
    warnings.extend(crate::secure_boot::medium_enrolment(
        &m,
        &isos,
        opts.dry_run,
    )?);
    let esp = m.esp();
    if esp.exists(crate::secure_boot::MMX64)? {
        let esp_pin = match esp.fs_uuid()?.filter(|u| grub::uuid_ok(u)) {
            Some(u) => grub::Pin::Uuid(u),
            None => grub::Pin::File,
        };
        cfg.push_str(&grub::mokmanager_entry(
            &esp_pin,
            esp.exists(crate::secure_boot::MOK_DER)?,
        ));
    }
    let script_checked = script_check(&cfg)?;

    let sik = std::fs::read(&opts.sik_binary).map_err(|e| Error::Io {
        path: opts.sik_binary.clone(),
        source: e,
    })?;
    if let Some(why) = initrd_binary_problem(&sik) {
        return Err(Error::Refused(format!(
            "{} {why}; a release build of sik carries a static copy (cargo build --release), or give the static build of cargo xtask dist with --sik-binary target/dist/sik",
            opts.sik_binary.display()
        )));
    }
    let policy = Policy::read(&m)?;
    let (extra, _g) = m.local_tree("boot/customize/initrd")?;
    let archive = initrd_archive(&families, &policy, &sik, Some(&extra))?;
    let initrd = initrd_bytes(&archive)?;

    let mut files = Vec::new();
    let dry = opts.dry_run;
    put(&m, grub::SIK_INITRD, &initrd, 0o644, dry, &mut files)?;
    if families.iter().any(|f| f.hook.method == RunMethod::Init) {
        put(
            &m,
            "boot/sik/init",
            INIT_SH.as_bytes(),
            0o755,
            dry,
            &mut files,
        )?;
        put(
            &m,
            "boot/sik/boot.sh",
            boot_script(&families, &policy).as_bytes(),
            0o755,
            dry,
            &mut files,
        )?;
        put(&m, "boot/sik/sik", &sik, 0o755, dry, &mut files)?;
    }
    // grub.cfg last: the menu only names what is already in place.
    let old = m.read(grub::GRUB_CFG)?;
    if let Some(old) = old.as_ref().filter(|o| o.as_slice() != cfg.as_bytes()) {
        put(&m, "boot/grub/grub.cfg.old", old, 0o644, dry, &mut files)?;
    }
    put(&m, grub::GRUB_CFG, cfg.as_bytes(), 0o644, dry, &mut files)?;
    Ok(Report {
        medium: medium.to_path_buf(),
        isos,
        files,
        initrd_entries: archive.paths().map(str::to_string).collect(),
        script_checked,
        medium_uuid,
        policy,
        warnings,
    })
}
