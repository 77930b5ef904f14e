//! The medium's `boot/grub/grub.cfg`: one menu entry per ISO, booting the
//! ISO's kernel and initrd(s) through GRUB's `loopback`, with our secondary
//! initrd appended. Works for BIOS (`i386-pc`) and UEFI (`x86_64-efi`) GRUB.

use crate::detect::Detected;

/// Path of the medium's GRUB config, relative to the medium.
pub const GRUB_CFG: &str = "boot/grub/grub.cfg";
/// Path of the secondary initrd, relative to the medium.
pub const SIK_INITRD: &str = "boot/sik/initrd.img";

/// GRUB modules the config loads (they are built into the images `install`
/// makes; `insmod` of a built-in module is a no-op).
pub const MODULES: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "fat",
    "iso9660",
    "loopback",
    "linux",
    "search",
    "search_fs_file",
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

/// Characters safe inside a double-quoted GRUB string we write.
fn title_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || "\"\\$`".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whether a file name can be used in a GRUB path without quoting trouble.
pub fn path_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+~@,=".contains(c))
}

/// The whole grub.cfg text. `timeout` is the menu timeout in seconds.
pub fn render(isos: &[MenuIso], timeout: u32) -> String {
    let mut s = String::new();
    s.push_str("# boot/grub/grub.cfg, written by `sik boot generate`; changes are overwritten.\n");
    s.push_str("# The previous version is kept as grub.cfg.old.\n\n");
    for m in MODULES {
        s.push_str(&format!("insmod {m}\n"));
    }
    s.push_str(
        "if [ \"${grub_platform}\" = \"efi\" ]; then\n  insmod all_video\n  insmod efi_gop\nfi\n",
    );
    s.push_str("serial --unit=0 --speed=115200\n");
    s.push_str("terminal_input serial console\n");
    s.push_str("terminal_output serial console\n");
    s.push_str(&format!("set timeout={timeout}\n"));
    s.push_str("set default=0\n");
    if isos.is_empty() {
        s.push_str("\nmenuentry \"No ISO on this medium (add one with: sik boot add FILE.iso MEDIUM)\" {\n  echo \"Put ISO files into /boot/iso and run sik boot generate.\"\n}\n");
    }
    for m in isos {
        let d = &m.detected;
        let iso_path = format!("/boot/iso/{}", m.file_name);
        let title = format!("{} ({})", m.file_name.trim_end_matches(".iso"), d.family);
        let class = d
            .class
            .as_deref()
            .map(|c| format!(" --class {}", title_safe(c).replace(' ', "_")))
            .unwrap_or_default();
        s.push('\n');
        s.push_str(&format!(
            "menuentry \"{}\"{class} --class os {{\n",
            title_safe(&title)
        ));
        s.push_str(&format!("  set iso_path=\"{iso_path}\"\n"));
        s.push_str("  export iso_path\n");
        s.push_str("  search --no-floppy --file --set=root \"${iso_path}\"\n");
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
            let args = d.args.join(" ");
            s.push_str(&format!("  echo \"Loading {kernel} from ${{iso_path}}\"\n"));
            s.push_str(&format!(
                "  linux (loop){kernel}{}{args}\n",
                if args.is_empty() { "" } else { " " }
            ));
            let mut initrd = String::from("  initrd");
            for i in &d.initrds {
                initrd.push_str(&format!(" (loop){i}"));
            }
            initrd.push_str(&format!(" /{SIK_INITRD}"));
            s.push_str(&initrd);
            s.push('\n');
        }
        s.push_str("}\n");
    }
    s
}
