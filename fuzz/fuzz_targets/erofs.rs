//! The EROFS reader `sik boot list` uses for a live ISO's os-release, on
//! arbitrary bytes: Ok or Err, never a panic, never more memory than the
//! bounds it promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut fs) = sik_image::erofs::Erofs::new(Cursor::new(data), 0) {
        for path in ["/usr/lib/os-release", "/etc/os-release", "/a/../b/./c"] {
            let _ = fs.read_file(path, 1 << 16);
        }
    }
});
