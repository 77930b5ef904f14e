//! ISO 9660 facts read straight from the primary volume descriptor.
//! (Directory reading for live-ISO detection lives in sik-boot's reader.)

use std::io::{Read, Seek, SeekFrom};

use crate::Result;

/// Offset of the primary volume descriptor (sector 16).
pub const PVD_OFFSET: u64 = 16 * 2048;

/// The volume identifier (label) of an ISO 9660 image, trailing spaces
/// removed; `None` when there is no primary volume descriptor.
pub fn volume_label<R: Read + Seek>(reader: &mut R) -> Result<Option<String>> {
    let mut pvd = [0u8; 2048];
    reader.seek(SeekFrom::Start(PVD_OFFSET))?;
    if reader.read_exact(&mut pvd).is_err() {
        return Ok(None);
    }
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Ok(None);
    }
    let label = String::from_utf8_lossy(&pvd[40..72])
        .trim_end_matches([' ', '\0'])
        .to_string();
    Ok(Some(label))
}
