//! Kind detection and inspection of arbitrary bytes: never a panic, whatever
//! the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    let _ = sik_image::kind::detect(&mut cursor);
    let _ = sik_image::squashfs::read_superblock(&mut cursor, 0);
    let _ = sik_image::elf::read_layout(&mut cursor);
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut file, data).is_ok() {
        let _ = sik_inspect::inspect(file.path());
    }
});
