//! ELF layout of AppImage runtimes: the reserved sections and where the
//! SquashFS payload starts.
//!
//! The payload starts where the ELF ends, which the AppImage specification
//! defines as `max(e_shoff + e_shnum * e_shentsize, end of the last section
//! with file content)`. That is the value `--appimage-offset` prints and
//! `unsquashfs -o` needs.

use std::io::{Read, Seek, SeekFrom};

use ::elf::ElfStream;
use ::elf::abi::SHT_NOBITS;
use ::elf::endian::AnyEndian;

use crate::{Error, Result};

/// A reserved section of the AppImage type 2 runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// Section name.
    pub name: &'static str,
    /// Size the specification reserves, in bytes.
    pub size: u64,
}

/// MD5 digest of the image (unused by this project, kept zero).
pub const DIGEST_MD5: Reserved = Reserved {
    name: ".digest_md5",
    size: 16,
};
/// Update information, NUL-padded text.
pub const UPD_INFO: Reserved = Reserved {
    name: ".upd_info",
    size: 1024,
};
/// Signature (armored SSHSIG in this project).
pub const SHA256_SIG: Reserved = Reserved {
    name: ".sha256_sig",
    size: 1024,
};
/// Signer's public key (OpenSSH public key line in this project).
pub const SIG_KEY: Reserved = Reserved {
    name: ".sig_key",
    size: 8192,
};
/// All reserved sections of a type 2 runtime.
pub const RESERVED: [Reserved; 4] = [DIGEST_MD5, UPD_INFO, SHA256_SIG, SIG_KEY];

/// A section with file content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Section {
    /// Section name (empty when the file has no name table).
    pub name: String,
    /// File offset of the section's bytes.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The facts of an ELF file this project needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ElfLayout {
    /// ELF machine (`e_machine`).
    pub machine: u16,
    /// 32 or 64.
    pub class_bits: u8,
    /// Sections that occupy bytes in the file.
    pub sections: Vec<Section>,
    /// Where the ELF ends: the offset of an AppImage's SquashFS.
    pub end: u64,
    /// Offset and length of the section header table.
    #[serde(skip)]
    pub shdr_table: (u64, u64),
}

impl ElfLayout {
    /// Find a section by name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// A reserved section that tools write into (`.upd_info`, `.sha256_sig`,
    /// `.sig_key`, `.digest_md5`), checked so that writing it cannot damage
    /// anything else: it lies after the ELF header and overlaps no other
    /// section and not the section header table. `Ok(None)` when absent.
    pub fn reserved(&self, r: Reserved) -> Result<Option<&Section>> {
        let Some(sec) = self.section(r.name) else {
            return Ok(None);
        };
        let end = sec.offset.saturating_add(sec.size);
        let overlaps = |o: u64, n: u64| sec.offset < o.saturating_add(n) && o < end;
        let header = if self.class_bits == 32 { 52 } else { 64 };
        if overlaps(0, header) {
            return Err(Error::malformed(
                "ELF",
                format!("section {} overlaps the ELF header", r.name),
            ));
        }
        if overlaps(self.shdr_table.0, self.shdr_table.1) {
            return Err(Error::malformed(
                "ELF",
                format!("section {} overlaps the section header table", r.name),
            ));
        }
        if let Some(other) = self
            .sections
            .iter()
            .find(|o| !std::ptr::eq(*o, sec) && o.size > 0 && overlaps(o.offset, o.size))
        {
            let other = if other.name.is_empty() {
                format!("the section at offset {}", other.offset)
            } else {
                format!("section {}", other.name)
            };
            return Err(Error::malformed(
                "ELF",
                format!("section {} overlaps {other}", r.name),
            ));
        }
        Ok(Some(sec))
    }

    /// The architecture name AppImage file names use (`x86_64`, `aarch64` …).
    pub fn appimage_arch(&self) -> Option<&'static str> {
        appimage_arch(self.machine)
    }
}

/// The architecture name AppImage file names use for an ELF machine
/// (`x86_64`, `i686`, `aarch64`, `armhf`, `riscv64`).
pub fn appimage_arch(machine: u16) -> Option<&'static str> {
    match machine {
        0x3e => Some("x86_64"),
        0x03 => Some("i686"),
        0xb7 => Some("aarch64"),
        0x28 => Some("armhf"),
        0xf3 => Some("riscv64"),
        _ => None,
    }
}

/// The architecture name systemd uses (extension-release `ARCHITECTURE=`)
/// for an ELF machine (`x86-64`, `arm64` …).
pub fn systemd_arch(machine: u16) -> Option<&'static str> {
    match machine {
        0x3e => Some("x86-64"),
        0x03 => Some("x86"),
        0xb7 => Some("arm64"),
        0x28 => Some("arm"),
        0xf3 => Some("riscv64"),
        0x15 => Some("ppc64"),
        0x16 => Some("s390x"),
        _ => None,
    }
}

/// Parse the ELF header and section table of `reader` (which must start at
/// the ELF header). Every section range is checked against the file length,
/// so a hostile file cannot make this read or allocate beyond it.
pub fn read_layout<R: Read + Seek>(reader: &mut R) -> Result<ElfLayout> {
    let file_len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 64];
    reader
        .read_exact(&mut head)
        .map_err(|_| Error::malformed("ELF", "file is shorter than an ELF header"))?;
    check_header_ranges(&head, file_len)?;
    reader.seek(SeekFrom::Start(0))?;
    let mut stream = ElfStream::<AnyEndian, _>::open_stream(&mut *reader)
        .map_err(|e| Error::malformed("ELF", e.to_string()))?;
    let ehdr = stream.ehdr;
    let headers: Vec<_> = stream.section_headers().clone();
    for h in &headers {
        if h.sh_type != SHT_NOBITS
            && h.sh_offset
                .checked_add(h.sh_size)
                .is_none_or(|e| e > file_len)
        {
            return Err(Error::malformed(
                "ELF",
                format!(
                    "section at offset {} of size {} lies beyond the file",
                    h.sh_offset, h.sh_size
                ),
            ));
        }
    }
    let (shdrs, strtab) = stream
        .section_headers_with_strtab()
        .map_err(|e| Error::malformed("ELF section names", e.to_string()))?;
    let mut sections = Vec::new();
    let shdr_len = u64::from(ehdr.e_shnum) * u64::from(ehdr.e_shentsize);
    let mut end = ehdr.e_shoff + shdr_len;
    for h in shdrs.iter() {
        if h.sh_type == SHT_NOBITS || h.sh_type == 0 {
            continue;
        }
        let name = match &strtab {
            Some(t) => t.get(h.sh_name as usize).unwrap_or("").to_string(),
            None => String::new(),
        };
        end = end.max(h.sh_offset + h.sh_size);
        sections.push(Section {
            name,
            offset: h.sh_offset,
            size: h.sh_size,
        });
    }
    let class_bits = if head[4] == 1 { 32 } else { 64 };
    Ok(ElfLayout {
        machine: ehdr.e_machine,
        class_bits,
        sections,
        end,
        shdr_table: (ehdr.e_shoff, shdr_len),
    })
}

/// Check the section-header table range of the raw header before the ELF
/// parser allocates for it.
fn check_header_ranges(head: &[u8; 64], file_len: u64) -> Result<()> {
    if &head[0..4] != b"\x7fELF" {
        return Err(Error::malformed("ELF", "no ELF magic"));
    }
    let le = match head[5] {
        1 => true,
        2 => false,
        _ => return Err(Error::malformed("ELF", "unknown byte order")),
    };
    let u16_at = |o: usize| {
        let b = [head[o], head[o + 1]];
        u64::from(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let (shoff, shentsize, shnum) = match head[4] {
        1 => {
            let b = [head[0x20], head[0x21], head[0x22], head[0x23]];
            let off = if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            };
            (u64::from(off), u16_at(0x2e), u16_at(0x30))
        }
        2 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[0x28..0x30]);
            let off = if le {
                u64::from_le_bytes(b)
            } else {
                u64::from_be_bytes(b)
            };
            (off, u16_at(0x3a), u16_at(0x3c))
        }
        _ => return Err(Error::malformed("ELF", "unknown class")),
    };
    if shnum == 0 {
        return Ok(());
    }
    match shoff.checked_add(shentsize * shnum) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::malformed(
            "ELF",
            "section header table lies beyond the file",
        )),
    }
}

/// Read the bytes of a section, which [`read_layout`] has checked to lie in the file.
pub fn read_section<R: Read + Seek>(reader: &mut R, section: &Section) -> Result<Vec<u8>> {
    let len =
        usize::try_from(section.size).map_err(|_| Error::malformed("ELF", "section too large"))?;
    let mut buf = vec![0u8; len];
    reader.seek(SeekFrom::Start(section.offset))?;
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

/// Text of a NUL-padded section (`.upd_info`, `.sha256_sig`, `.sig_key`):
/// the bytes up to the first NUL, or `None` when empty.
pub fn nul_padded_text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if end == 0 {
        None
    } else {
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let mut f = std::fs::File::open(&exe).unwrap();
        let layout = read_layout(&mut f).unwrap();
        let len = std::fs::metadata(&exe).unwrap().len();
        assert_eq!(
            layout.end, len,
            "a plain ELF ends at its section table or last section"
        );
        assert!(layout.section(".text").is_some());
    }

    #[test]
    fn rejects_short_and_bad_headers() {
        assert!(read_layout(&mut std::io::Cursor::new(b"\x7fELF".to_vec())).is_err());
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[0x28] = 0xff; // shoff far away
        h[0x3c] = 5;
        h[0x3a] = 64;
        assert!(read_layout(&mut std::io::Cursor::new(h)).is_err());
    }

    #[test]
    fn nul_text() {
        assert_eq!(nul_padded_text(&[0; 4]), None);
        assert_eq!(nul_padded_text(b"zsync|x\0\0").as_deref(), Some("zsync|x"));
    }
}
