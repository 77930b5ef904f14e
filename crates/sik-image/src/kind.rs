//! What a file is, decided from its content.
//!
//! Magic numbers checked, in this order:
//! * SquashFS 4.0: `hsqs` at offset 0 (an ExtensionImage, signed or not).
//! * AppImage: an ELF header (`\x7fELF`) with `AI` at offset 8 and the type
//!   byte (1 or 2) at offset 10.
//! * ISO 9660: `CD001` at offset 0x8001 (the primary volume descriptor).
//! * PE/COFF (EFI applications, kernels with the EFI stub): `MZ` at 0 and
//!   `PE\0\0` where the u32 at 0x3c points (see [`crate::pe`]); checked
//!   after ISO 9660, since a hybrid ISO's first sector is boot code.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::{Error, Result};

/// SquashFS 4.0 little-endian magic.
pub const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
/// ELF magic.
pub const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// AppImage magic at offset 8 of the file (followed by the type byte).
pub const APPIMAGE_MAGIC: &[u8; 2] = b"AI";
/// Offset of [`APPIMAGE_MAGIC`].
pub const APPIMAGE_MAGIC_OFFSET: usize = 8;
/// Offset of the ISO 9660 standard identifier `CD001`.
pub const ISO9660_MAGIC_OFFSET: u64 = 0x8001;

/// The kinds of file SystemImageKit knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// A SquashFS 4.0 image: an ExtensionImage (or any SquashFS).
    SquashFs,
    /// An AppImage of the given type (1: ISO 9660 payload, 2: SquashFS payload).
    AppImage {
        /// 1 or 2.
        image_type: u8,
    },
    /// An ELF file that is not an AppImage.
    Elf,
    /// An ISO 9660 image.
    Iso9660,
    /// A PE/COFF file: an EFI application (shim, GRUB) or a Linux kernel.
    Pe,
    /// None of the above.
    Unknown,
}

impl ImageKind {
    /// A short human name.
    pub fn describe(&self) -> &'static str {
        match self {
            ImageKind::SquashFs => "ExtensionImage (SquashFS)",
            ImageKind::AppImage { image_type: 1 } => "AppImage (type 1)",
            ImageKind::AppImage { .. } => "AppImage (type 2)",
            ImageKind::Elf => "ELF executable",
            ImageKind::Iso9660 => "ISO 9660 image",
            ImageKind::Pe => "PE/COFF file (EFI application or kernel)",
            ImageKind::Unknown => "not a known image",
        }
    }
}

/// Detect the kind from the first bytes of a file and, for ISO 9660, the
/// bytes at 0x8001.
pub fn detect<R: Read + Seek>(reader: &mut R) -> std::io::Result<ImageKind> {
    let mut head = [0u8; 64];
    reader.seek(SeekFrom::Start(0))?;
    let n = crate::read_full(reader, &mut head)?;
    let head = &head[..n];
    if head.starts_with(SQUASHFS_MAGIC) {
        return Ok(ImageKind::SquashFs);
    }
    if head.starts_with(ELF_MAGIC) {
        if head.len() >= 11 && &head[8..10] == APPIMAGE_MAGIC && matches!(head[10], 1 | 2) {
            return Ok(ImageKind::AppImage {
                image_type: head[10],
            });
        }
        return Ok(ImageKind::Elf);
    }
    let mut cd = [0u8; 5];
    reader.seek(SeekFrom::Start(ISO9660_MAGIC_OFFSET))?;
    if crate::read_full(reader, &mut cd)? == 5 && &cd == b"CD001" {
        return Ok(ImageKind::Iso9660);
    }
    if head.len() == 64 && head.starts_with(b"MZ") {
        let off = u32::from_le_bytes([head[0x3c], head[0x3d], head[0x3e], head[0x3f]]);
        let mut sig = [0u8; 4];
        reader.seek(SeekFrom::Start(u64::from(off)))?;
        if crate::read_full(reader, &mut sig)? == 4 && &sig == b"PE\0\0" {
            return Ok(ImageKind::Pe);
        }
    }
    Ok(ImageKind::Unknown)
}

/// [`detect`] on a file by path.
pub fn detect_path(path: &Path) -> Result<ImageKind> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    detect(&mut f).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn detects_magics() {
        assert_eq!(
            detect(&mut Cursor::new(b"hsqs....".to_vec())).unwrap(),
            ImageKind::SquashFs
        );
        let mut elf = b"\x7fELF\x02\x01\x01\x00AI\x02\x00\x00\x00\x00\x00".to_vec();
        assert_eq!(
            detect(&mut Cursor::new(elf.clone())).unwrap(),
            ImageKind::AppImage { image_type: 2 }
        );
        elf[10] = 1;
        assert_eq!(
            detect(&mut Cursor::new(elf.clone())).unwrap(),
            ImageKind::AppImage { image_type: 1 }
        );
        elf[8] = 0;
        assert_eq!(detect(&mut Cursor::new(elf)).unwrap(), ImageKind::Elf);
        let mut iso = vec![0u8; 0x8010];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(detect(&mut Cursor::new(iso)).unwrap(), ImageKind::Iso9660);
        assert_eq!(
            detect(&mut Cursor::new(Vec::new())).unwrap(),
            ImageKind::Unknown
        );
        assert_eq!(
            detect(&mut Cursor::new(b"hsq".to_vec())).unwrap(),
            ImageKind::Unknown
        );
    }
}
