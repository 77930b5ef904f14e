//! ISO 9660 reading (volume label, directory listing, file reads) and ISO
//! family detection with the built-in families, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut iso) = sik_image::iso9660::Iso::new(Cursor::new(data)) {
        let _ = iso.label();
        if let Ok(root) = iso.list_dir("/") {
            for entry in root.iter().take(8) {
                let _ = iso.read_dir_entry(entry);
            }
        }
        for path in [
            "/boot/grub/loopback.cfg",
            "/boot/grub/grub.cfg",
            "/isolinux/isolinux.cfg",
            "/isolinux/live.cfg",
            "/live/filesystem.squashfs",
            "/casper",
        ] {
            let _ = iso.exists(path);
            let _ = iso.is_file(path);
            let _ = iso.read_file(path, 1 << 16);
        }
    }
    let families = sik_boot::family::builtin();
    let _ = sik_boot::detect::detect_reader(Cursor::new(data), &families);
});
