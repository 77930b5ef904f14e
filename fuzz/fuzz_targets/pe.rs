//! PE/COFF boot files: sections, `.sbat`, `.vendor_cert` and the
//! Authenticode certificate table of arbitrary bytes, and the parts alone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sik_image::pe::is_pe(data);
    if let Ok(info) = sik_image::pe::parse(data) {
        for name in [".sbat", ".vendor_cert"] {
            let _ = info.section_bytes(data, name);
        }
        if let Some(v) = &info.vendor_cert {
            for s in &info.signatures {
                for c in &v.certificates {
                    let _ = sik_image::pe::anchored_by(s, c);
                }
            }
        }
    }
    let _ = sik_image::pe::grub_modules(data);
    let _ = sik_image::pe::parse_sbat(data);
    let _ = sik_image::pe::parse_vendor_cert(data);
    let _ = sik_image::pe::signature_list_certs(data);
    let _ = sik_image::pe::parse_pkcs7(data);
});
