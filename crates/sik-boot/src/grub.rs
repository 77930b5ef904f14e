//! The medium's `boot/grub/grub.cfg`: one menu entry per ISO, booting the
//! ISO's kernel and initrd(s) through GRUB's `loopback`, with our secondary
//! initrd appended. Works for BIOS (`i386-pc`) and UEFI (`x86_64-efi`) GRUB.

use crate::detect::Detected;
use crate::family::{IsoAccess, RunMethod};
use crate::quote;

/// Path of the medium's GRUB config, relative to the medium.
pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
/// Path of the secondary initrd, relative to the medium.
pub const SIK_INITRD: &str = "boot/sik/initrd.img";
/// The kernel argument naming the booted ISO (its file name without
/// `.iso`) to the boot hook, which then also links the ExtensionImages of
/// `boot/extensions/STEM/ARCH/` ([`iso_extensions_dir`]).
pub const ISO_ARG: &str = "sik.iso-name";
/// The kernel argument of a factory-state entry that still loads the
/// secondary initrd (an ISO reached as a block device needs it to be
/// found): the hook then applies nothing.
pub const FACTORY_ARG: &str = "sik.factory";
/// The names of architecture directories below `boot/extensions/`
/// (`uname -m`); an ISO whose stem is one of them has no directory of its
/// own there.
pub const ARCH_DIRS: &[&str] = &["x86_64", "aarch64", "i686", "armv7l", "riscv64"];
/// What the factory-state entry of an ISO adds to its title.
pub const FACTORY_SUFFIX: &str = " (factory state)";

/// The directory of an ISO's own ExtensionImages (below it one directory
/// per architecture, as in `boot/extensions/`): `boot/extensions/STEM`
/// for `boot/iso/STEM.iso`, or `None` when STEM cannot name one (an
/// architecture directory's name, or not a plain file name).
pub fn iso_extensions_dir(iso_file_name: &str) -> Option<String> {
    let stem = iso_file_name
        .strip_suffix(".iso")
        .or_else(|| iso_file_name.strip_suffix(".ISO"))
        .unwrap_or(iso_file_name);
    (path_safe(stem) && !ARCH_DIRS.contains(&stem) && quote::kernel_arg_ok(stem))
        .then(|| format!("boot/extensions/{stem}"))
}

/// GRUB modules the config loads (they are built into the images `install`
/// makes; `insmod` of a built-in module is a no-op). `exfat` is loaded only
/// on exFAT DATA ([`render`]): Debian's signed GRUB, which cannot load
/// modules under Secure Boot, has none, and reads FAT DATA.
pub const MODULES: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "fat",
    "iso9660",
    "loopback",
    "linux",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "probe",
    "regexp",
    "test",
    "serial",
    "terminal",
    "echo",
    "configfile",
    "normal",
];

/// One ISO for the menu.
#[derive(Debug, Clone)]
pub struct MenuIso {
    /// File name in `boot/iso/`.
    pub file_name: String,
    /// Detection result.
    pub detected: Detected,
}

/// Whether a file name can be used in a GRUB path (and, through
/// `${iso_path}`, on the kernel command line) without quoting: one
/// component of [`quote::grub_word_char`]s.
pub fn path_safe(name: &str) -> bool {
    quote::grub_word_ok(name) && !name.contains('/') && name != "." && name != ".."
}

/// How the menu finds the medium's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// `search --fs-uuid`: only the filesystem with this UUID (FAT volume
    /// serial `XXXX-XXXX`, or another filesystem's UUID) supplies kernel
    /// and initrd.
    Uuid(String),
    /// `search --file`: the first filesystem holding the ISO's path; another
    /// disk with the same path could supply kernel and initrd. Only for
    /// directory media whose filesystem UUID could not be found.
    File,
}

/// Whether a filesystem UUID can be written into grub.cfg: hex digits and
/// `-`, 4 to 64 characters.
pub fn uuid_ok(u: &str) -> bool {
    (4..=64).contains(&u.len()) && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// A value of an ISO's detection that cannot go into the menu: it is
/// outside its character class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeEntry {
    /// The ISO's file name.
    #[error(
        "file name has characters GRUB paths cannot carry unquoted (use letters, digits and ._,+:=@%~-)"
    )]
    FileName,
    /// The menu class.
    #[error("class {0:?} is not a plain name")]
    Class(String),
    /// The `loopback.cfg` path.
    #[error("config path {0:?} is not a plain path")]
    Config(String),
    /// A kernel or initrd path.
    #[error("path {0:?} is not a plain path")]
    Path(String),
    /// A kernel argument.
    #[error("kernel argument {0:?} is not a plain word")]
    Arg(String),
}

/// Which value of an ISO's detection cannot go into the menu, or `Ok` when
/// every value is safe. [`crate::detect`] checks the same; this is the last
/// guard before text is written.
pub fn entry_check(m: &MenuIso) -> Result<(), UnsafeEntry> {
    let d = &m.detected;
    if !path_safe(&m.file_name) {
        return Err(UnsafeEntry::FileName);
    }
    if let Some(c) = d.class.as_deref().filter(|c| !quote::name_ok(c)) {
        return Err(UnsafeEntry::Class(c.to_string()));
    }
    if d.use_loopback_cfg {
        if let Some(c) = d.config.as_deref().filter(|c| !quote::grub_path_ok(c)) {
            return Err(UnsafeEntry::Config(c.to_string()));
        }
        return Ok(());
    }
    if let Some(p) = d
        .kernel
        .iter()
        .chain(&d.initrds)
        .find(|p| !quote::grub_path_ok(p))
    {
        return Err(UnsafeEntry::Path(p.clone()));
    }
    if let Some(a) = d.args.iter().find(|a| !quote::kernel_arg_ok(a)) {
        return Err(UnsafeEntry::Arg(a.clone()));
    }
    Ok(())
}

/// The whole grub.cfg text. `timeout` is the menu timeout in seconds.
/// ISOs that fail [`entry_check`] are left out; `pin` says how each entry
/// finds the medium; `data_exfat` adds `insmod exfat`.
pub fn render(isos: &[MenuIso], timeout: u32, pin: &Pin, data_exfat: bool) -> String {
    let mut s = String::new();
    s.push_str("# boot/grub/grub.cfg, written by `sik boot generate`; changes are overwritten.\n");
    s.push_str("# The previous version is kept as grub.cfg.old.\n\n");
    for m in MODULES {
        s.push_str(&format!("insmod {m}\n"));
        if *m == "fat" && data_exfat {
            s.push_str("insmod exfat\n");
        }
    }
    s.push_str(
        "if [ \"${grub_platform}\" = \"efi\" ]; then\n  insmod all_video\n  insmod efi_gop\nfi\n",
    );
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input serial console\n");
    s.push_str("terminal_output serial console\n");
    s.push_str(&format!("set timeout={timeout}\n"));
    s.push_str("set default=0\n");
    let isos: Vec<&MenuIso> = isos.iter().filter(|m| entry_check(m).is_ok()).collect();
    if isos.is_empty() {
        s.push_str("\nmenuentry \"No ISO on this medium (add one with: sik boot add FILE.iso MEDIUM)\" {\n  echo \"Put ISO files into /boot/iso and run sik boot generate.\"\n}\n");
    }
    let search = match pin {
        Pin::Uuid(u) if uuid_ok(u) => format!("  search --no-floppy --fs-uuid --set=root {u}\n"),
        _ => "  search --no-floppy --file --set=root \"${iso_path}\"\n".to_string(),
    };
    for m in isos {
        s.push_str(&entry(m, &search, false));
        if !m.detected.use_loopback_cfg {
            s.push_str(&entry(m, &search, true));
        }
    }
    s
}

/// One ISO's menu entry. `factory`: the factory-state entry, which boots
/// the ISO with nothing of ours: the distribution's kernel, initrds and
/// arguments only, without the secondary initrd (so no hook links
/// extensions, applies the customization or mounts the home) and without
/// the `init=` of `init` families. An ISO reached as a block device needs
/// the secondary initrd to be found; its factory entry keeps it and passes
/// [`FACTORY_ARG`], on which the hook applies nothing. An ISO booted
/// through its own `loopback.cfg` gets no secondary initrd anyway and no
/// factory entry.
fn entry(m: &MenuIso, search: &str, factory: bool) -> String {
    let mut s = String::new();
    let d = &m.detected;
    let iso_path = format!("/boot/iso/{}", m.file_name);
    let mut title = format!("{} ({})", m.file_name.trim_end_matches(".iso"), d.family);
    if factory {
        title.push_str(FACTORY_SUFFIX);
    }
    let class = d
        .class
        .as_deref()
        .map(|c| format!(" --class {c}"))
        .unwrap_or_default();
    s.push('\n');
    s.push_str(&format!(
        "menuentry {}{class} --class os {{\n",
        quote::grub_quote(&title)
    ));
    s.push_str(&format!(
        "  set iso_path={}\n",
        quote::grub_quote(&iso_path)
    ));
    s.push_str("  export iso_path\n");
    s.push_str(search);
    s.push_str("  probe --set=uuid --fs-uuid \"${root}\"\n");
    s.push_str("  loopback loop \"${iso_path}\"\n");
    if d.use_loopback_cfg {
        s.push_str("  set root=(loop)\n");
        s.push_str(&format!(
            "  configfile {}\n",
            d.config.as_deref().unwrap_or("/boot/grub/loopback.cfg")
        ));
    } else {
        let kernel = d.kernel.as_deref().unwrap_or("/vmlinuz");
        let mut args: Vec<String> = d
            .args
            .iter()
            .filter(|a| !(factory && d.hook == RunMethod::Init && a.starts_with("init=")))
            .cloned()
            .collect();
        let needs_initrd = d.iso_access == IsoAccess::BlockDevice;
        if !factory && let Some(dir) = iso_extensions_dir(&m.file_name) {
            let stem = dir.trim_start_matches("boot/extensions/");
            args.push(format!("{ISO_ARG}={stem}"));
        }
        if factory && needs_initrd {
            args.push(FACTORY_ARG.to_string());
        }
        let args = args.join(" ");
        // One argument (quoted text joined to the quoted variable): GRUB
        // writes it to serial and console at once, not word by word.
        s.push_str(&format!(
            "  echo {}\"${{iso_path}}\"\n",
            quote::grub_quote(&format!("Loading {kernel} from "))
        ));
        s.push_str(&format!(
            "  linux (loop){kernel}{}{args}\n",
            if args.is_empty() { "" } else { " " }
        ));
        let mut initrd = String::from("  initrd");
        for i in &d.initrds {
            initrd.push_str(&format!(" (loop){i}"));
        }
        if !factory || needs_initrd {
            initrd.push_str(&format!(" /{SIK_INITRD}"));
        }
        s.push_str(&initrd);
        s.push('\n');
    }
    s.push_str("}\n");
    s
}

/// The menu entry of a Secure Boot medium that starts MokManager (next to
/// shim on the ESP), where a key is enrolled once: the medium's own
/// `EFI/sik/MOK.der` (own-key GRUB) or an ISO vendor's certificate. shim
/// verifies MokManager like any other image.
pub fn mokmanager_entry(pin: &Pin, has_mok_der: bool) -> String {
    let search = match pin {
        Pin::Uuid(u) if uuid_ok(u) => format!("  search --no-floppy --fs-uuid --set=root {u}\n"),
        _ => "  search --no-floppy --file --set=root /EFI/BOOT/mmx64.efi\n".to_string(),
    };
    let hint = if has_mok_der {
        "Enroll key from disk: EFI/sik/MOK.der (the key of this medium's GRUB)"
    } else {
        "Enroll key from disk: a vendor certificate in EFI/sik/"
    };
    format!(
        "\nmenuentry {} --class efi {{\n{search}  echo {}\n  chainloader /EFI/BOOT/mmx64.efi\n}}\n",
        quote::grub_quote("Enroll a Secure Boot key (MokManager)"),
        quote::grub_quote(hint)
    )
}
