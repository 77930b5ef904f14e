//! Boot-config parsers (loopback.cfg, grub.cfg, isolinux.cfg, live.cfg) and
//! family definitions (TOML) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for dir in ["/", "/isolinux", "/boot/grub"] {
        for entry in sik_boot::bootcfg::parse(&text, dir) {
            let _ = format!("{entry:?}");
        }
    }
    for line in text.lines().take(16) {
        let _ = sik_boot::bootcfg::resolve_path(line, "/isolinux");
    }
    let _ = sik_boot::family::parse(std::path::Path::new("fuzz.toml"), &text);
});
