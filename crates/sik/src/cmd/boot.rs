//! `sik boot detect|generate|install|add`: boot media that boot unchanged live ISOs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use sik_boot::detect::{self, Outcome};
use sik_boot::family;

use crate::fail::{CmdResult, Failure};

/// Example shown by `sik boot --help`.
pub const EXAMPLE: &str = "Example:\n  sik boot install --image stick.img --size 4G\n  sik boot add ubuntu-24.04.iso stick.img\n  sik boot generate stick.img";

#[derive(clap::Subcommand)]
pub enum BootCommand {
    /// Say which live ISO family each ISO belongs to, with kernel, initrd(s) and arguments.
    Detect(DetectArgs),
    /// Write boot/grub/grub.cfg and the secondary initrd boot/sik/initrd.img of a medium.
    Generate(GenerateArgs),
    /// Make a disk image or a device into a boot medium (MBR, exFAT DATA, FAT ESP, GRUB for BIOS and UEFI).
    Install(InstallArgs),
    /// Copy an ISO, ExtensionImage or AppImage into a medium (directory or disk image).
    Add(AddArgs),
    /// Show what a medium holds: ISOs and their distribution, extensions and where they link, apps, home.
    List(crate::cmd::boot_list::ListArgs),
    /// Check a medium: ISO checksums, signatures, generated files current, unreachable files.
    Check(crate::cmd::boot_check::CheckArgs),
    /// Take an ISO (with its checksum files), ExtensionImage or AppImage off a medium.
    Remove(crate::cmd::boot_remove::RemoveArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "--image needs no root and mounts nothing (exFAT and FAT are written in user space, GRUB's\nboot images are placed directly). --device erases the whole device; it is refused while mounted.\nA target that already holds a medium is refused (naming its files) unless --force; --update\nMEDIUM rewrites only GRUB (BIOS core.img, the ESP) and boot/sik/, keeping every other file.\n\nExample:\n  sik boot install --image stick.img --size 8G\n  sik boot install --image stick.img --size 2G --data-fs fat32\n  sik boot install --image stick.img --size 4G --secure-boot\n  sik boot install --device /dev/sdX --yes\n  sik boot install --update stick.img"
)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["image", "device", "update"])))]
pub struct InstallArgs {
    /// Disk image file to create (or overwrite).
    #[arg(long, requires = "size")]
    pub image: Option<PathBuf>,
    /// Size of the image, e.g. 2G or 512M.
    #[arg(long)]
    pub size: Option<String>,
    /// Whole block device to erase and install onto.
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// Do not ask for confirmation before erasing a device.
    #[arg(long)]
    pub yes: bool,
    /// Rewrite GRUB and boot/sik/ of this existing medium (image, device or directory), keeping every other file.
    #[arg(long, value_name = "MEDIUM", conflicts_with_all = ["size", "force", "data_fs"])]
    pub update: Option<PathBuf>,
    /// Erase a target that already holds a medium.
    #[arg(long)]
    pub force: bool,
    /// Filesystem of the DATA partition: exfat (files over 4 GiB) or fat32.
    #[arg(long, value_name = "FS", value_parser = ["exfat", "fat32"])]
    pub data_fs: Option<String>,
    /// FAT volume label.
    #[arg(long, default_value = "SIKBOOT")]
    pub label: String,
    /// The static sik put into the initrd [default: this program, or the static copy it carries].
    #[arg(long)]
    pub sik_binary: Option<PathBuf>,
    /// Boot on PCs with Secure Boot on: Microsoft-signed shim as BOOTX64.EFI, MokManager, and
    /// behind them the distribution-signed GRUB (distro, the default: nothing to enroll) or a
    /// GRUB signed with a Machine Owner Key sik generates (own-key: enroll EFI/sik/MOK.der once).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "distro", value_name = "GRUB")]
    pub secure_boot: Option<SecureBootMode>,
    /// The signed shim [default: /usr/lib/shim/shimx64.efi.signed, package shim-signed].
    #[arg(long, requires = "secure_boot", value_name = "PATH")]
    pub shim: Option<PathBuf>,
    /// The signed MokManager [default: /usr/lib/shim/mmx64.efi.signed, package shim-helpers-amd64-signed].
    #[arg(long, requires = "secure_boot", value_name = "PATH")]
    pub mokmanager: Option<PathBuf>,
    /// The distribution-signed GRUB [default: /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed,
    /// package grub-efi-amd64-signed].
    #[arg(long, requires = "secure_boot", value_name = "PATH")]
    pub signed_grub: Option<PathBuf>,
    /// Where the Machine Owner Key of --secure-boot=own-key is kept (made once; never put on the
    /// medium) [default: ~/.local/share/sik/mok].
    #[arg(long, requires = "secure_boot", value_name = "DIR")]
    pub mok_dir: Option<PathBuf>,
    /// Print a JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Which GRUB sits behind shim.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SecureBootMode {
    /// Debian's signed GRUB (FAT only; no enrolment).
    Distro,
    /// A GRUB built with every module and signed with sik's own MOK.
    OwnKey,
}

#[derive(clap::Args)]
#[command(
    after_help = "Without --to the place follows the file's contents: ISOs go to boot/iso/, ExtensionImages to\nboot/extensions/ARCH/, AppImages to Applications/. With --to any file or directory tree goes to\nthat path on the medium (keys, overlay, customize/init, home.img). An ExtensionImage for one ISO\nonly goes to boot/extensions/STEM/ARCH/ (STEM: the ISO's file name without .iso). Run `sik boot\ngenerate` afterwards.\n\nExample:\n  sik boot add ubuntu-24.04.iso stick.img\n  sik boot add firmware.ExtensionImage /media/stick\n  sik boot add codecs.ExtensionImage stick.img --to boot/extensions/ubuntu-24.04/x86_64/\n  sik boot add signer.pub stick.img --to boot/keys/\n  sik boot add ./overlay stick.img --to boot/customize/overlay"
)]
pub struct AddArgs {
    /// The file to copy.
    pub file: PathBuf,
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Architecture directory for ExtensionImages.
    #[arg(long, default_value = std::env::consts::ARCH)]
    pub arch: String,
    /// Put the file (or a directory's contents) at this path of the medium instead.
    #[arg(long, value_name = "MEDIUM_PATH")]
    pub to: Option<String>,
}

#[derive(clap::Args)]
#[command(
    after_help = "Checked: every name from the ISO that would reach grub.cfg or a script (an ISO with unsafe\nnames is skipped with the reason). Not checked: the ISO's content or signatures.\n\nExit status: 0 when every ISO was detected, 1 when at least one was skipped\n(listed with the reason), 2 on a usage error.\n\nExample:\n  sik boot detect ubuntu-24.04.iso Fedora-Workstation-Live-41.iso --json"
)]
pub struct DetectArgs {
    /// ISO files.
    #[arg(required = true)]
    pub isos: Vec<PathBuf>,
    /// Extra family files (directory of *.toml, like a medium's boot/formats).
    #[arg(long)]
    pub formats: Option<PathBuf>,
    /// Print a JSON document (formats/schema/detect.json).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
#[command(
    after_help = "The medium is a directory (a mounted stick) or a disk image made by `sik boot install --image`.\nFiles whose contents would not change are not rewritten. The sik put into the initrd must run in\na foreign initramfs: a static x86_64 ELF executable. Without --sik-binary: this program when it is\none (cargo xtask dist), else the static copy a release build carries (cargo build --release);\na debug build carries none. A binary that would not run there is refused (exit 2).\nChecked: every name from an ISO or family file that reaches grub.cfg or a script (unsafe ones\nare skipped with the reason); the medium is pinned by filesystem UUID; no symlink on a directory\nmedium is followed.\n\nExample:\n  sik boot generate /media/stick\n  sik boot generate disk.img --dry-run --json"
)]
pub struct GenerateArgs {
    /// Medium: directory or disk image file.
    pub medium: PathBuf,
    /// Report what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON document (formats/schema/generate.json).
    #[arg(long)]
    pub json: bool,
    /// The static sik put into the initrd [default: this program, or the static copy it carries].
    #[arg(long)]
    pub sik_binary: Option<PathBuf>,
    /// GRUB menu timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u32,
}

pub fn run(cmd: BootCommand) -> CmdResult {
    match cmd {
        BootCommand::Detect(a) => detect_cmd(a),
        BootCommand::Generate(a) => generate_cmd(a),
        BootCommand::Install(a) => install_cmd(a),
        BootCommand::Add(a) => add_cmd(a),
        BootCommand::List(a) => crate::cmd::boot_list::run(a),
        BootCommand::Check(a) => crate::cmd::boot_check::run(a),
        BootCommand::Remove(a) => crate::cmd::boot_remove::run(a),
    }
}

#[derive(Serialize)]
struct DetectDoc {
    isos: Vec<detect::IsoReport>,
    detected: usize,
    skipped: usize,
}

fn print_outcome(path: &std::path::Path, o: &Outcome) {
    match o {
        Outcome::Detected(d) => {
            println!("{}: {} (label {:?})", path.display(), d.describe(), d.label);
            if d.use_loopback_cfg {
                println!(
                    "  boots through {}",
                    d.config.as_deref().unwrap_or("/boot/grub/loopback.cfg")
                );
            }
            if let Some(k) = &d.kernel {
                println!("  kernel: {k}");
            }
            if !d.initrds.is_empty() {
                println!("  initrd: {}", d.initrds.join(" "));
            }
            if !d.use_loopback_cfg {
                println!("  args:   {}", d.args.join(" "));
            }
            if d.iso_access == sik_boot::family::IsoAccess::BlockDevice {
                println!("  the ISO file becomes a block device carrying its label (sik.iso=)");
            }
            if let Some(c) = &d.config {
                println!("  config: {c}");
            }
        }
        Outcome::Skipped { reason } => println!("{}: skipped: {reason}", path.display()),
    }
}

fn detect_cmd(a: DetectArgs) -> CmdResult {
    let families = match &a.formats {
        Some(dir) => {
            family::with_dir(dir).map_err(|e| Failure::input("boot detect", Some(dir), e))?
        }
        None => family::builtin(),
    };
    let anchor = sik_boot::secure_boot::shim_vendor(Path::new(sik_boot::secure_boot::HOST_SHIM));
    let isos: Vec<detect::IsoReport> = a
        .isos
        .iter()
        .map(|p| detect::IsoReport::of(p, &families, anchor.as_ref()))
        .collect();
    let skipped = isos
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Skipped { .. }))
        .count();
    if a.json {
        crate::output::print_json(&DetectDoc {
            detected: isos.len() - skipped,
            skipped,
            isos,
        });
    } else {
        for r in &isos {
            print_outcome(&r.path, &r.outcome);
            if let Some(sb) = &r.secure_boot {
                let who = if sb.kernel_signers.is_empty() {
                    "unsigned".to_string()
                } else {
                    sb.kernel_signers.join(", ")
                };
                println!(
                    "  Secure Boot: kernel signed by {who}; {}",
                    match &sb.enroll {
                        None => "the installed shim trusts it".to_string(),
                        Some(e) => format!("not trusted by the installed shim: enroll {e}"),
                    }
                );
            }
        }
    }
    Ok(if skipped > 0 {
        ExitCode::from(crate::fail::EXIT_CHECK)
    } else {
        ExitCode::SUCCESS
    })
}

fn generate_cmd(a: GenerateArgs) -> CmdResult {
    let (sik_binary, _tmp) = sik_binary(a.sik_binary.clone(), "boot generate")?;
    let opts = sik_boot::generate::Options {
        sik_binary,
        dry_run: a.dry_run,
        timeout: a.timeout,
    };
    let report = sik_boot::generate::generate(&a.medium, &opts).map_err(|e| match e {
        sik_boot::Error::ScriptCheck(_) => Failure::check("boot generate", Some(&a.medium), e),
        e => Failure::input("boot generate", Some(&a.medium), e),
    })?;
    for w in &report.warnings {
        crate::fail::warn(w);
    }
    if a.json {
        crate::output::print_json(&report);
    } else {
        for i in &report.isos {
            match &i.outcome {
                Outcome::Detected(d) => println!("{}: {}", i.path, d.describe()),
                Outcome::Skipped { reason } => {
                    crate::fail::warn(format!("{}: skipped: {reason}", i.path))
                }
            }
        }
        for f in &report.files {
            println!("{} {} ({} bytes)", f.action, f.path, f.size);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The static copy of `sik` a release build carries for the initrds it
/// generates (crates/sik/build.rs); empty in a debug build and in a build
/// that is itself static.
const STATIC_SIK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sik-static"));

/// The `sik` put into an initrd: the one given, else this program when it
/// can run in a foreign initramfs, else the static copy it carries
/// (written to a temporary file kept alive by the returned guard). A
/// program that can do neither is an error naming why.
fn sik_binary(
    given: Option<PathBuf>,
    what: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>), Failure> {
    if let Some(p) = given {
        return Ok((p, None));
    }
    let exe = std::env::current_exe().map_err(|e| {
        Failure::input(
            what.to_string(),
            None,
            format!("cannot find this program: {e}"),
        )
    })?;
    let bytes = std::fs::read(&exe).map_err(|e| Failure::input(what, Some(&exe), e))?;
    let Some(why) = sik_boot::generate::initrd_binary_problem(&bytes) else {
        return Ok((exe, None));
    };
    if STATIC_SIK.is_empty() {
        return Err(Failure::input(
            what,
            Some(&exe),
            format!("this sik {why}, and it carries no static copy for the initrd (a debug build)"),
        )
        .hint("build sik with cargo build --release (it carries a static copy), or give --sik-binary target/dist/sik (cargo xtask dist)"));
    }
    let dir = tempfile::tempdir().map_err(|e| Failure::input(what, None, e))?;
    let path = dir.path().join("sik");
    std::fs::write(&path, STATIC_SIK).map_err(|e| Failure::input(what, Some(&path), e))?;
    Ok((path, Some(dir)))
}

/// The Secure Boot options of `install`: the host's package files unless
/// a path is given.
fn secure_boot_options(a: &InstallArgs) -> Option<sik_boot::secure_boot::Options> {
    use sik_boot::secure_boot::{Mode, Options};
    let mode = a.secure_boot?;
    let mut o = Options::host(match mode {
        SecureBootMode::Distro => Mode::Distro,
        SecureBootMode::OwnKey => Mode::OwnKey,
    });
    if let Some(p) = &a.shim {
        o.shim = p.clone();
    }
    if let Some(p) = &a.mokmanager {
        o.mokmanager = p.clone();
    }
    if let Some(p) = &a.signed_grub {
        o.signed_grub = p.clone();
    }
    if let Some(p) = &a.mok_dir {
        o.mok_dir = p.clone();
    }
    Some(o)
}

/// The chain's files, as install and update print them.
fn print_uefi(report: &sik_boot::install::Report) {
    let Some(mode) = report.secure_boot else {
        return;
    };
    for p in &report.uefi {
        println!("  {:<24} {:>9} bytes  from {}", p.path, p.bytes, p.source);
    }
    if mode == sik_boot::secure_boot::Mode::OwnKey {
        println!(
            "Secure Boot: on first boot choose \"Enroll a Secure Boot key (MokManager)\", then \"Enroll key from disk\" and {}",
            sik_boot::secure_boot::MOK_DER
        );
    }
}

/// [`sik_binary`], checked before anything is written (install and update
/// end with a generate, after the boot files are in place).
fn checked_sik_binary(
    given: Option<PathBuf>,
    what: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>), Failure> {
    let sik = sik_binary(given, what)?;
    let bytes = std::fs::read(&sik.0).map_err(|e| Failure::input(what, Some(&sik.0), e))?;
    if let Some(why) = sik_boot::generate::initrd_binary_problem(&bytes) {
        return Err(Failure::input(what, Some(&sik.0), why)
            .hint("a release build of sik carries a static copy (cargo build --release), or give --sik-binary target/dist/sik (cargo xtask dist)"));
    }
    Ok(sik)
}

fn install_cmd(a: InstallArgs) -> CmdResult {
    let what = "boot install";
    if let Some(m) = &a.update {
        let sik_tmp = checked_sik_binary(a.sik_binary.clone(), what)?;
        let mut opts = sik_boot::install::Options::new(sik_tmp.0.clone(), None);
        opts.secure_boot = secure_boot_options(&a);
        let report =
            sik_boot::install::update(m, &opts).map_err(|e| Failure::input(what, Some(m), e))?;
        if a.json {
            crate::output::print_json(&report);
        } else {
            println!(
                "updated {}: GRUB BIOS core {} bytes, UEFI EFI/BOOT/BOOTX64.EFI {} bytes, boot/sik/ and grub.cfg regenerated; no other file touched",
                report.target.display(),
                report.bios_core_bytes,
                report.efi_bytes
            );
            print_uefi(&report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (target, size) = match (&a.image, &a.device) {
        (Some(img), _) => {
            let raw = a.size.as_deref().unwrap_or_default();
            let size = sik_boot::install::parse_size(raw).ok_or_else(|| {
                Failure::input(
                    what,
                    Some(img),
                    format!("size {raw:?} is not a size such as 2G or 512M"),
                )
            })?;
            (img.clone(), Some(size))
        }
        (None, Some(dev)) => {
            use std::os::unix::fs::FileTypeExt;
            let md = std::fs::metadata(dev).map_err(|e| Failure::input(what, Some(dev), e))?;
            if !md.file_type().is_block_device() {
                return Err(Failure::input(what, Some(dev), "not a block device")
                    .hint("use --image FILE --size SIZE for a disk image"));
            }
            sik_boot::install::check_not_mounted(dev)
                .map_err(|e| Failure::input(what, Some(dev), e))?;
            if !a.yes {
                use std::io::{BufRead, IsTerminal, Write};
                if !std::io::stdin().is_terminal() {
                    return Err(Failure::input(
                        what,
                        Some(dev),
                        "refusing to erase a device without confirmation",
                    )
                    .hint("pass --yes"));
                }
                eprint!(
                    "Erase everything on {} and install a boot medium? [y/N] ",
                    dev.display()
                );
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Err(Failure::input(
                        what,
                        Some(dev),
                        "not confirmed; nothing written",
                    ));
                }
            }
            (dev.clone(), None)
        }
        (None, None) => {
            return Err(Failure::input(
                what,
                None,
                "give --image FILE --size SIZE or --device DEV",
            ));
        }
    };
    let sik_tmp = checked_sik_binary(a.sik_binary.clone(), what)?;
    let mut opts = sik_boot::install::Options::new(sik_tmp.0.clone(), size);
    opts.label = a.label.clone();
    opts.force = a.force;
    opts.secure_boot = secure_boot_options(&a);
    // Debian's signed GRUB reads FAT only: distro mode makes DATA FAT32
    // unless exFAT is asked for (which install then refuses, naming why).
    let distro = matches!(a.secure_boot, Some(SecureBootMode::Distro));
    if a.data_fs.as_deref() == Some("fat32") || (distro && a.data_fs.is_none()) {
        opts.data_fs = sik_boot::medium::DataFs::Fat32;
    }
    let report = sik_boot::install::install(&target, &opts)
        .map_err(|e| Failure::input(what, Some(&target), e))?;
    if a.json {
        crate::output::print_json(&report);
    } else {
        println!(
            "installed {}: {} bytes, {} DATA at byte {} (UUID {}), ESP at byte {}, GRUB BIOS core {} bytes, UEFI EFI/BOOT/BOOTX64.EFI {} bytes",
            report.target.display(),
            report.size,
            report.data_fs.name(),
            report.partition_offset,
            report.data_uuid.as_deref().unwrap_or("none"),
            report.esp_offset.unwrap_or(0),
            report.bios_core_bytes,
            report.efi_bytes
        );
        print_uefi(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn add_cmd(a: AddArgs) -> CmdResult {
    let fail = |e| Failure::input("boot add", Some(&a.file), e);
    let written = match &a.to {
        Some(dest) => sik_boot::install::add_to(&a.file, &a.medium, dest).map_err(fail)?,
        None => vec![sik_boot::install::add(&a.file, &a.medium, &a.arch).map_err(fail)?],
    };
    for rel in written {
        println!("{} -> {}", a.file.display(), rel);
    }
    Ok(ExitCode::SUCCESS)
}
