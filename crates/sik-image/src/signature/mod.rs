//! Where signatures live in an image, what they cover, and the SSHSIG wire
//! format they use. The specification is `spec/signature.md`; this module is
//! its only implementation and every tool that signs or checks (sign,
//! verify, inspect, the linker) uses it. One submodule per section of the
//! specification, all re-exported here:
//!
//! * [`sshsig`] (section 1) **Signature**: OpenSSH SSHSIG ([`SshSig`]),
//!   namespace [`NAMESPACE`], message hash SHA-256 or SHA-512 of the
//!   payload; public key lines and fingerprints.
//! * [`payload`] (section 2) **Payload**, the signed bytes:
//!   - ExtensionImage: the SquashFS exactly as written, `padded_len(bytes_used)`
//!     bytes from offset 0 (bytes missing at the end of a file written
//!     without padding count as zeros);
//!   - AppImage: the whole file with the sections `.sha256_sig` and
//!     `.sig_key` read as zeros.
//! * [`block`] (section 3) **Where the signature is**:
//!   - ExtensionImage: a signature block after the payload, found from the
//!     end of the file by its fixed 32-byte [`Footer`];
//!   - AppImage: the armored SSHSIG in `.sha256_sig`, the signer's public key
//!     line in `.sig_key` (both NUL-padded).
//!
//! Hashing streams the payload through a fixed buffer ([`BUF_LEN`]), so memory
//! does not grow with the image.

pub mod block;
pub mod payload;
pub mod sshsig;

pub use block::*;
pub use payload::*;
pub use sshsig::*;

/// The SSHSIG namespace of SystemImageKit signatures.
pub const NAMESPACE: &str = "systemimagekit";
/// Largest SSHSIG blob accepted in a block or an armor.
pub const MAX_ENTRY_LEN: u32 = 16 * 1024;

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Read;

    use super::*;

    fn sample() -> SshSig {
        SshSig {
            public_key: SshSig::ed25519_key_blob(&[7u8; 32]),
            namespace: NAMESPACE.into(),
            reserved: Vec::new(),
            hash_alg: "sha256".into(),
            signature: SshSig::ed25519_sig_blob(&[9u8; 64]),
        }
    }

    #[test]
    fn blob_round_trip_and_armor() {
        let s = sample();
        assert_eq!(SshSig::decode(&s.encode()).unwrap(), s);
        let a = s.armor();
        assert!(a.lines().skip(1).all(|l| l.len() <= ARMOR_WIDTH));
        assert_eq!(SshSig::from_armored(&a).unwrap(), s);
        assert_eq!(s.ed25519_public_key(), Some([7u8; 32]));
        assert_eq!(s.ed25519_signature(), Some([9u8; 64]));
    }

    #[test]
    fn decode_rejects_truncation_and_trailing_bytes() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(SshSig::decode(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut t = b.clone();
        t.push(0);
        assert!(SshSig::decode(&t).is_err());
    }

    #[test]
    fn block_round_trip_and_damage() {
        let sigs = vec![sample(), sample()];
        let b = encode_block(&sigs, 8192);
        assert_eq!(decode_block(&b, 8192).unwrap(), sigs);
        assert!(decode_block(&b, 4096).is_err());
        assert!(decode_block(&b[1..], 8192).is_err());
        assert!(decode_block(&b[..b.len() - 1], 8192).is_err());
        let mut g = b.clone();
        g[10] ^= 0xff;
        assert!(decode_block(&g, 8192).is_err());
    }

    #[test]
    fn damaged_blocks_never_panic() {
        let b = encode_block(&[sample(), sample()], 4096);
        for n in 0..b.len() {
            let _ = decode_block(&b[..n], 4096);
            let _ = decode_block(&b[n..], 4096);
        }
        for i in 0..b.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut g = b.clone();
                g[i] = v;
                let _ = decode_block(&g, 4096);
            }
        }
        let a = sample().armor();
        for n in 0..a.len() {
            let _ = SshSig::from_armored(&a[..n]);
        }
    }

    #[test]
    fn payload_reader_zeroes_ranges_and_pads() {
        use std::io::Write;
        let mut f = tempfile_in_target();
        f.write_all(&[1u8; 100]).unwrap();
        let p = Payload {
            kind: SignedKind::AppImage,
            file_len: 100,
            len: 120,
            zeroed: vec![(10, 5), (50, 10)],
            bytes_used: None,
            place: SignaturePlace::Block,
            disagreement: None,
            verity: None,
        };
        let mut r = PayloadReader::new(&mut f, &p).unwrap();
        let mut out = Vec::new();
        let mut small = [0u8; 7];
        loop {
            let n = r.read(&mut small).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        let mut want = vec![1u8; 100];
        want[10..15].fill(0);
        want[50..60].fill(0);
        want.extend_from_slice(&[0u8; 20]);
        assert_eq!(out, want);
    }

    #[test]
    fn streaming_digest_equals_one_shot_hash() {
        use std::io::Write;
        let mut f = tempfile_in_target();
        let data: Vec<u8> = (0..(2 * BUF_LEN + 12345) as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        f.write_all(&data).unwrap();
        let len = data.len() as u64;
        let p = Payload {
            kind: SignedKind::AppImage,
            file_len: len,
            len: len + 100,
            zeroed: vec![(5, 1024), (BUF_LEN as u64 - 3, 8192)],
            bytes_used: None,
            place: SignaturePlace::Block,
            disagreement: None,
            verity: None,
        };
        let mut want = data.clone();
        want[5..5 + 1024].fill(0);
        want[BUF_LEN - 3..BUF_LEN - 3 + 8192].fill(0);
        want.extend_from_slice(&[0u8; 100]);
        let got = digest_payload(&mut f, &p, &[HashAlg::Sha256, HashAlg::Sha512]).unwrap();
        assert_eq!(
            got,
            vec![
                (HashAlg::Sha256, HashAlg::Sha256.hash(&want)),
                (HashAlg::Sha512, HashAlg::Sha512.hash(&want)),
            ]
        );
    }

    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("sik-sig-unit-{}-{n}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    /// The OpenSSH forms written through ssh-key/ssh-encoding are the ones
    /// spec/signature.md defines, byte for byte: armor in lines of 70
    /// base64 characters, fingerprint `SHA256:` + unpadded base64 of the
    /// SHA-256 of the key blob, key line `TYPE BASE64[ COMMENT]`.
    #[test]
    fn ssh_key_forms_are_the_spec_forms() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        use sha2::{Digest, Sha256};
        for len in [0usize, 1, 2, 3, 51, 52, 53, 104, 105, 211, 300, 1000] {
            let blob: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let b64 = STANDARD.encode(&blob);
            let mut want = format!("{ARMOR_BEGIN}\n");
            for chunk in b64.as_bytes().chunks(ARMOR_WIDTH) {
                want.push_str(std::str::from_utf8(chunk).unwrap());
                want.push('\n');
            }
            want.push_str(ARMOR_END);
            want.push('\n');
            assert_eq!(armor(&blob), want, "blob of {len} bytes");
            assert_eq!(
                fingerprint(&blob),
                format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
            );
        }
        let key = SshSig::ed25519_key_blob(&[5u8; 32]);
        let b64 = STANDARD.encode(&key);
        assert_eq!(public_key_line(&key, ""), format!("ssh-ed25519 {b64}"));
        assert_eq!(
            public_key_line(&key, "a b"),
            format!("ssh-ed25519 {b64} a b")
        );
    }

    #[test]
    fn public_key_lines() {
        let blob = SshSig::ed25519_key_blob(&[3u8; 32]);
        let line = public_key_line(&blob, "me@host");
        let (b, c) = parse_public_key_line(&line).unwrap();
        assert_eq!(b, blob);
        assert_eq!(c, "me@host");
        assert!(parse_public_key_line("ssh-rsa AAAA").is_none());
    }
}
