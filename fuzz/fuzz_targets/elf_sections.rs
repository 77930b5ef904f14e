//! ELF/AppImage section parsing: the layout, every section's bytes and the
//! payload (signature footer and ELF runtime offset) of arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    if let Ok(layout) = sik_image::elf::read_layout(&mut cursor) {
        let _ = layout.appimage_arch();
        for section in &layout.sections {
            if let Ok(bytes) = sik_image::elf::read_section(&mut cursor, section) {
                let _ = sik_image::elf::nul_padded_text(&bytes);
            }
        }
    }
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut file, data).is_ok() {
        let _ = sik_image::signature::payload_of(file.as_file_mut());
    }
});
