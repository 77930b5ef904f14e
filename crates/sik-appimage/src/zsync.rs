//! zsync control files (format 0.6.2, as `zsyncmake` writes them), so an
//! updater can fetch only the changed blocks of a new AppImage.
//!
//! Layout: text headers (`zsync`, `Filename`, `MTime`, `Blocksize`,
//! `Length`, `Hash-Lengths`, `URL`, `SHA-1`), an empty line, then for each
//! block (the last one padded with zeros) the last `rsum_bytes` bytes of the
//! rolling checksum (`a` and `b` as big-endian 16-bit words) followed by the
//! first `checksum_bytes` bytes of the block's MD4.

use std::io::{Read, Write};

use md4::Md4;
use sha1::{Digest, Sha1};

/// The hash lengths zsyncmake chooses for a file: (sequential matches,
/// rsum bytes, checksum bytes).
pub fn hash_lengths(len: u64, block_size: u64) -> (u32, u32, u32) {
    let seq: u32 = if len > block_size { 2 } else { 1 };
    let lenf = (len.max(1)) as f64;
    let bsf = block_size as f64;
    let rsum = (((lenf.ln() + bsf.ln()) / 2f64.ln() - 8.6) / f64::from(seq) / 8.0).ceil();
    let rsum = rsum.clamp(2.0, 4.0) as u32;
    let blocks = (1 + len / block_size) as f64;
    let mut check = ((20.0 + (lenf.ln() + blocks.ln()) / 2f64.ln()) / f64::from(seq) / 8.0).ceil();
    let check2 = ((7.9 + (20.0 + blocks.ln() / 2f64.ln())) / 8.0).floor();
    if check < check2 {
        check = check2;
    }
    (seq, rsum, check.min(16.0) as u32)
}

/// zsyncmake's block size: 2048, or 4096 for files of 100 MB and more.
pub fn block_size_for(len: u64) -> u64 {
    if len < 100_000_000 { 2048 } else { 4096 }
}

fn rsum(block: &[u8]) -> [u8; 4] {
    let mut a: u16 = 0;
    let mut b: u16 = 0;
    let mut n = block.len();
    for &c in block {
        a = a.wrapping_add(u16::from(c));
        b = b.wrapping_add((n as u16).wrapping_mul(u16::from(c)));
        n -= 1;
    }
    let [a0, a1] = a.to_be_bytes();
    let [b0, b1] = b.to_be_bytes();
    [a0, a1, b0, b1]
}

/// RFC 2822 date (`Wed, 25 Nov 2026 20:00:00 +0000`) of a Unix time.
pub fn rfc2822(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write the control file for `data` (length `len`) named `filename`,
/// fetched from `url` (usually the file name, relative to the .zsync),
/// modified at `mtime` (Unix seconds).
pub fn write_control<R: Read, W: Write>(
    mut data: R,
    len: u64,
    filename: &str,
    url: &str,
    mtime: i64,
    out: &mut W,
) -> std::io::Result<()> {
    let bs = block_size_for(len);
    let (seq, rsum_len, check_len) = hash_lengths(len, bs);
    let mut sha = Sha1::new();
    let mut sums = Vec::new();
    let mut block = vec![0u8; bs as usize];
    let mut total = 0u64;
    loop {
        let got = sik_image::read_full(&mut data, &mut block)?;
        if got == 0 {
            break;
        }
        total += got as u64;
        sha.update(&block[..got]);
        block[got..].fill(0);
        let r = rsum(&block);
        sums.extend_from_slice(&r[4 - rsum_len as usize..]);
        let m = Md4::digest(&block);
        sums.extend_from_slice(&m[..check_len as usize]);
        if got < block.len() {
            break;
        }
    }
    if total != len {
        return Err(std::io::Error::other(format!(
            "read {total} bytes, expected {len}"
        )));
    }
    let sha_hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    write!(
        out,
        "zsync: 0.6.2\nFilename: {filename}\nMTime: {}\nBlocksize: {bs}\nLength: {len}\nHash-Lengths: {seq},{rsum_len},{check_len}\nURL: {url}\nSHA-1: {sha_hex}\n\n",
        rfc2822(mtime)
    )?;
    out.write_all(&sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
    }

    #[test]
    fn control_file_shape() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        write_control(&data[..], 5000, "A.AppImage", "A.AppImage", 0, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("zsync: 0.6.2\nFilename: A.AppImage\n"));
        assert!(
            text.contains("Blocksize: 2048\nLength: 5000\nHash-Lengths: 2,2,3\n"),
            "{text}"
        );
        let head_end = out.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        // 3 blocks, 2 rsum bytes + 3 checksum bytes each.
        assert_eq!(out.len() - head_end, 3 * 5);
    }

    /// Vectors of spec/appimage.md, measured with zsyncmake 0.6.2.
    #[test]
    fn hash_lengths_match_zsyncmake() {
        for (len, bs, want) in [
            (100u64, 2048u64, (1, 2, 4)),
            (5000, 2048, (2, 2, 3)),
            (1_048_576, 2048, (2, 2, 4)),
            (150_000_000, 4096, (2, 2, 5)),
        ] {
            assert_eq!(block_size_for(len), bs, "{len}");
            assert_eq!(hash_lengths(len, bs), want, "{len}");
        }
    }

    #[test]
    fn rsum_of_known_block() {
        // a = 1+2+3 = 6, b = 3*1 + 2*2 + 1*3 = 10
        assert_eq!(rsum(&[1, 2, 3]), [0, 6, 0, 10]);
    }
}
