//! The signature block parsers (binary block versions 1 and 2 with the
//! dm-verity descriptor, SSHSIG blobs, armored text) and full verification
//! of arbitrary bytes against an empty trust store (which checks a verity
//! image's hash tree against its data).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sik_image::signature::decode_block(data, data.len() as u64);
    for payload_len in [0, 4096, data.len() as u64] {
        let _ = sik_image::signature::decode_verity_block(data, payload_len);
    }
    if let Some(d) = data.get(..sik_image::verity::DESCRIPTOR_LEN) {
        let d: &[u8; sik_image::verity::DESCRIPTOR_LEN] = d.try_into().expect("descriptor length");
        if let Ok(desc) = sik_image::verity::Descriptor::decode(d) {
            let _ = desc.check_layout(4096);
            let _ = desc.dm_table_params("7:0");
        }
    }
    if let Ok(sig) = sik_image::signature::SshSig::decode(data) {
        let _ = sig.fingerprint();
        let _ = sig.hash();
        let _ = sig.ed25519_public_key();
        let _ = sig.ed25519_signature();
        let _ = sig.armor();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sik_image::signature::SshSig::from_armored(text);
        let _ = sik_image::signature::parse_public_key_line(text);
    }
    if data.len() >= sik_image::signature::FOOTER_LEN as usize {
        let tail: [u8; sik_image::signature::FOOTER_LEN as usize] = data
            [data.len() - sik_image::signature::FOOTER_LEN as usize..]
            .try_into()
            .expect("slice has footer length");
        let _ = sik_image::signature::Footer::decode(&tail);
    }
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut file, data).is_ok() {
        let trust = sik_verify::TrustStore::default();
        let _ = sik_verify::verify_path(file.path(), &trust);
        let _ = sik_verify::verify_file(file.path(), &trust);
    }
});
