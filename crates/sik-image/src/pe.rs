//! PE/COFF files of the UEFI boot chain: shim, MokManager, GRUB and Linux
//! kernels (a bzImage with the EFI stub is a PE file too).
//!
//! What Secure Boot decides by, read from the bytes (never from a name):
//! * the section table (through the `object` crate's PE reader);
//! * `.sbat`: the SBAT CSV (`component,generation,vendor,package,version,url`
//!   per line), which shim compares with its revocation level;
//! * `.vendor_cert`: shim's built-in trust anchor, a header of four
//!   little-endian u32 (`authorized_size`, `deauthorized_size`,
//!   `authorized_offset`, `deauthorized_offset`, offsets from the section's
//!   start) followed by the DER certificate (or an `EFI_SIGNATURE_LIST`) and
//!   the vendor's own revocation list;
//! * the Authenticode certificate table (data directory 4, whose address is
//!   a file offset): `WIN_CERTIFICATE` entries (`u32 length`,
//!   `u16 revision`, `u16 type` = 2 for PKCS#7, the DER `ContentInfo`),
//!   each padded to 8 bytes; every `SignerInfo` names its certificate by
//!   issuer and serial number, found among the certificates the signature
//!   carries.
//!
//! Everything is bounded ([`MAX_SIGNATURES`], [`MAX_CERTIFICATES`],
//! [`MAX_SBAT_BYTES`]); a part that does not parse is reported in
//! [`PeInfo::problems`], the rest is still read. Nothing here checks a
//! signature cryptographically: the signer is who the signature names, the
//! firmware and shim do the checking.

use std::fmt::Write as _;

use der::{Decode, Encode};
use object::pe;
use object::read::coff::CoffHeader;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile};
use serde::Serialize;
use sha2::Digest;

/// The largest PE file read (a kernel is ~10 MiB, a signed GRUB ~4 MiB).
pub const MAX_PE_BYTES: u64 = 256 << 20;
/// At most this many Authenticode signatures are read.
pub const MAX_SIGNATURES: usize = 8;
/// At most this many certificates per signature (and per vendor list).
pub const MAX_CERTIFICATES: usize = 16;
/// The largest `.sbat` section read.
pub const MAX_SBAT_BYTES: usize = 64 * 1024;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 2;
/// The SBAT section's name.
pub const SBAT_SECTION: &str = ".sbat";
/// shim's vendor certificate section.
pub const VENDOR_CERT_SECTION: &str = ".vendor_cert";
/// PKCS#7 `signedData` (1.2.840.113549.1.7.2).
const ID_SIGNED_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `EFI_CERT_X509_GUID` (a5c059a1-94e4-4aa7-87b5-ab155c2bf072) as stored.
const EFI_CERT_X509_GUID: [u8; 16] = [
    0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0, 0x72,
];

/// Why a file is not a PE file this module can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    /// Not PE/COFF, or its headers are broken.
    #[error("not a PE/COFF file: {0}")]
    NotPe(String),
    /// Larger than [`MAX_PE_BYTES`].
    #[error("{0} bytes is larger than the {MAX_PE_BYTES} bytes a boot file may have")]
    TooLarge(u64),
}

/// What kind of boot file a PE file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeKind {
    /// A Linux kernel (bzImage with the EFI stub: `HdrS` at 0x202).
    LinuxKernel,
    /// An EFI application (subsystem 10): shim, MokManager, GRUB.
    EfiApplication,
    /// An EFI boot or runtime services driver (subsystem 11, 12).
    EfiDriver,
    /// Another PE file.
    Other,
}

/// One section of the section table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// Name (long names resolved through the COFF string table).
    pub name: String,
    /// Relative virtual address.
    pub virtual_address: u32,
    /// Size in memory.
    pub virtual_size: u32,
    /// Offset of its data in the file.
    pub file_offset: u32,
    /// Size of its data in the file.
    pub file_size: u32,
}

/// One line of an `.sbat` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SbatEntry {
    /// Component name (`sbat`, `shim`, `grub`, `grub.debian` …).
    pub component: String,
    /// Generation number the revocation level is compared with.
    pub generation: String,
    /// Vendor name, package, version and URL (may be empty).
    pub vendor: String,
    /// Vendor's package name.
    pub package: String,
    /// Vendor's version.
    pub version: String,
    /// URL.
    pub url: String,
}

/// An X.509 certificate, as far as trust decisions need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject (RFC 4514 string).
    pub subject: String,
    /// Issuer (RFC 4514 string).
    pub issuer: String,
    /// Serial number in hex.
    pub serial: String,
    /// SHA-256 of the DER encoding, hex.
    pub sha256: String,
    /// The DER encoding.
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// One Authenticode signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// The signer's certificate (the one its `SignerInfo` names), `None`
    /// when the signature does not carry it.
    pub signer: Option<CertInfo>,
    /// Issuer named by the `SignerInfo` (RFC 4514), also when the
    /// certificate is missing.
    pub signer_issuer: String,
    /// Every certificate the signature carries (the signer's chain).
    pub certificates: Vec<CertInfo>,
}

/// shim's built-in vendor certificate(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorCert {
    /// The authorized certificates (one DER certificate, or the X.509
    /// entries of an `EFI_SIGNATURE_LIST`).
    pub certificates: Vec<CertInfo>,
    /// Size of the vendor's revocation list (dbx) in bytes.
    pub deauthorized_bytes: u32,
}

/// What [`parse`] found in a PE file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeInfo {
    /// Kernel, EFI application, driver or other.
    pub kind: PeKind,
    /// Machine name (`x86_64`, `i386`, `aarch64`, or the number in hex).
    pub machine: String,
    /// PE subsystem number (10 = EFI application).
    pub subsystem: u16,
    /// The section table.
    pub sections: Vec<Section>,
    /// The `.sbat` lines, `None` without an `.sbat` section.
    pub sbat: Option<Vec<SbatEntry>>,
    /// shim's `.vendor_cert`, `None` without one.
    pub vendor_cert: Option<VendorCert>,
    /// Authenticode signatures (empty: unsigned).
    pub signatures: Vec<Signature>,
    /// Parts that could not be read (a broken signature, a bad `.sbat`…).
    pub problems: Vec<String>,
}

impl PeInfo {
    /// The bytes of a section, by name.
    pub fn section_bytes<'a>(&self, data: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.sections.iter().find(|s| s.name == name)?;
        let start = s.file_offset as usize;
        let len = s.file_size.min(s.virtual_size.max(s.file_size)) as usize;
        data.get(start..start.checked_add(len)?)
    }
}

/// Whether the bytes start like a PE file (`MZ` and a `PE\0\0` header).
pub fn is_pe(data: &[u8]) -> bool {
    if data.len() < 0x40 || &data[..2] != b"MZ" {
        return false;
    }
    let off = u32::from_le_bytes([data[0x3c], data[0x3d], data[0x3e], data[0x3f]]) as usize;
    data.get(off..off.saturating_add(4)) == Some(b"PE\0\0")
}

/// Read a PE file's sections, SBAT, vendor certificate and signatures.
pub fn parse(data: &[u8]) -> Result<PeInfo, PeError> {
    if data.len() as u64 > MAX_PE_BYTES {
        return Err(PeError::TooLarge(data.len() as u64));
    }
    match object::FileKind::parse(data) {
        Ok(object::FileKind::Pe32) => parse_as::<pe::ImageNtHeaders32>(data),
        Ok(object::FileKind::Pe64) => parse_as::<pe::ImageNtHeaders64>(data),
        Ok(other) => Err(PeError::NotPe(format!("{other:?} file"))),
        Err(e) => Err(PeError::NotPe(e.to_string())),
    }
}

fn parse_as<Pe: ImageNtHeaders>(data: &[u8]) -> Result<PeInfo, PeError> {
    let file = PeFile::<Pe>::parse(data).map_err(|e| PeError::NotPe(e.to_string()))?;
    let nt = file.nt_headers();
    let machine = match nt.file_header().machine.get(object::LittleEndian) {
        pe::IMAGE_FILE_MACHINE_AMD64 => "x86_64".to_string(),
        pe::IMAGE_FILE_MACHINE_I386 => "i386".to_string(),
        pe::IMAGE_FILE_MACHINE_ARM64 => "aarch64".to_string(),
        m => format!("{m:#06x}"),
    };
    let subsystem = nt.optional_header().subsystem();
    let kind = if data.get(0x202..0x206) == Some(b"HdrS") {
        PeKind::LinuxKernel
    } else {
        match subsystem {
            pe::IMAGE_SUBSYSTEM_EFI_APPLICATION => PeKind::EfiApplication,
            pe::IMAGE_SUBSYSTEM_EFI_BOOT_SERVICE_DRIVER
            | pe::IMAGE_SUBSYSTEM_EFI_RUNTIME_DRIVER => PeKind::EfiDriver,
            _ => PeKind::Other,
        }
    };
    let strings = nt
        .file_header()
        .symbols(data)
        .map(|s| s.strings())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let mut sections = Vec::new();
    for s in file.section_table().iter() {
        let name = match s.name(strings) {
            Ok(n) => String::from_utf8_lossy(n).into_owned(),
            Err(_) => String::from_utf8_lossy(s.raw_name()).into_owned(),
        };
        let (file_offset, file_size) = s.pe_file_range();
        sections.push(Section {
            name,
            virtual_address: s.virtual_address.get(object::LittleEndian),
            virtual_size: s.virtual_size.get(object::LittleEndian),
            file_offset,
            file_size,
        });
    }
    let mut info = PeInfo {
        kind,
        machine,
        subsystem,
        sections,
        sbat: None,
        vendor_cert: None,
        signatures: Vec::new(),
        problems: Vec::new(),
    };
    if let Some(bytes) = info.section_bytes(data, SBAT_SECTION) {
        match parse_sbat(bytes) {
            Ok(v) => info.sbat = Some(v),
            Err(e) => problems.push(format!("{SBAT_SECTION}: {e}")),
        }
    } else if info.sections.iter().any(|s| s.name == SBAT_SECTION) {
        problems.push(format!("{SBAT_SECTION}: outside the file"));
    }
    if let Some(bytes) = info.section_bytes(data, VENDOR_CERT_SECTION) {
        match parse_vendor_cert(bytes) {
            Ok(v) => info.vendor_cert = Some(v),
            Err(e) => problems.push(format!("{VENDOR_CERT_SECTION}: {e}")),
        }
    }
    if let Some(dir) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_SECURITY) {
        let (offset, size) = (
            dir.virtual_address.get(object::LittleEndian),
            dir.size.get(object::LittleEndian),
        );
        if size > 0 {
            match data.get(offset as usize..(offset as usize).saturating_add(size as usize)) {
                Some(table) => info.signatures = parse_cert_table(table, &mut problems),
                None => problems.push(format!(
                    "certificate table at {offset} ({size} bytes) is outside the file"
                )),
            }
        }
    }
    info.problems = problems;
    Ok(info)
}

/// Parse an SBAT CSV (NUL-padded text, one entry per line, six fields;
/// missing trailing fields are empty).
pub fn parse_sbat(bytes: &[u8]) -> Result<Vec<SbatEntry>, String> {
    if bytes.len() > MAX_SBAT_BYTES {
        return Err(format!("{} bytes, more than {MAX_SBAT_BYTES}", bytes.len()));
    }
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| "not UTF-8 text".to_string())?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.chars().any(|c| c.is_control()) {
            return Err(format!("line {}: control characters", n + 1));
        }
        let mut f = line.splitn(6, ',').map(str::to_string);
        let mut next = || f.next().unwrap_or_default();
        let e = SbatEntry {
            component: next(),
            generation: next(),
            vendor: next(),
            package: next(),
            version: next(),
            url: next(),
        };
        if e.component.is_empty() || e.generation.parse::<u32>().is_err() {
            return Err(format!(
                "line {}: needs a component name and a generation number",
                n + 1
            ));
        }
        out.push(e);
    }
    Ok(out)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse shim's `.vendor_cert` section.
pub fn parse_vendor_cert(bytes: &[u8]) -> Result<VendorCert, String> {
    let field = |at| le32(bytes, at).ok_or_else(|| "shorter than its 16-byte header".to_string());
    let (auth_size, deauth_size, auth_off) = (field(0)?, field(4)?, field(8)?);
    let auth = bytes
        .get(auth_off as usize..(auth_off as usize).saturating_add(auth_size as usize))
        .ok_or_else(|| format!("certificate at {auth_off} ({auth_size} bytes) is outside"))?;
    let certificates = if auth.is_empty() {
        Vec::new()
    } else if auth[0] == 0x30 {
        vec![cert_info(auth).map_err(|e| format!("certificate: {e}"))?]
    } else {
        signature_list_certs(auth)?
    };
    Ok(VendorCert {
        certificates,
        deauthorized_bytes: deauth_size,
    })
}

/// The X.509 certificates of an `EFI_SIGNATURE_LIST` sequence (a `db`).
pub fn signature_list_certs(mut b: &[u8]) -> Result<Vec<CertInfo>, String> {
    let mut out = Vec::new();
    while b.len() >= 28 {
        let list_size = le32(b, 16).unwrap_or(0) as usize;
        let header_size = le32(b, 20).unwrap_or(0) as usize;
        let sig_size = le32(b, 24).unwrap_or(0) as usize;
        let list = b
            .get(..list_size)
            .filter(|_| list_size >= 28 + header_size && sig_size > 16)
            .ok_or("EFI_SIGNATURE_LIST with impossible sizes")?;
        if b[..16] == EFI_CERT_X509_GUID {
            for entry in list[28 + header_size..].chunks(sig_size) {
                if out.len() >= MAX_CERTIFICATES {
                    return Err(format!("more than {MAX_CERTIFICATES} certificates"));
                }
                let der = entry.get(16..).ok_or("short signature entry")?;
                out.push(cert_info(der).map_err(|e| format!("certificate: {e}"))?);
            }
        }
        b = &b[list_size..];
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Describe one DER-encoded X.509 certificate.
pub fn cert_info(der_bytes: &[u8]) -> Result<CertInfo, String> {
    let cert = x509_cert::Certificate::from_der(der_bytes).map_err(|e| e.to_string())?;
    let der = cert.to_der().map_err(|e| e.to_string())?;
    Ok(describe(&cert, der))
}

fn describe(cert: &x509_cert::Certificate, der: Vec<u8>) -> CertInfo {
    let tbs = &cert.tbs_certificate;
    CertInfo {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex(tbs.serial_number.as_bytes()),
        sha256: hex(&sha2::Sha256::digest(&der)),
        der,
    }
}

/// Read the `WIN_CERTIFICATE` entries of a certificate table.
fn parse_cert_table(mut table: &[u8], problems: &mut Vec<String>) -> Vec<Signature> {
    let mut out = Vec::new();
    while table.len() >= 8 {
        let len = le32(table, 0).unwrap_or(0) as usize;
        let kind = u16::from_le_bytes([table[6], table[7]]);
        let Some(entry) = table.get(8..len).filter(|_| len >= 8) else {
            problems.push(format!(
                "certificate table entry of {len} bytes does not fit the table"
            ));
            break;
        };
        if out.len() >= MAX_SIGNATURES {
            problems.push(format!(
                "more than {MAX_SIGNATURES} signatures; the rest is not read"
            ));
            break;
        }
        if kind == WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            match parse_pkcs7(entry) {
                Ok(mut sigs) => out.append(&mut sigs),
                Err(e) => problems.push(format!("signature {}: {e}", out.len() + 1)),
            }
        } else {
            problems.push(format!(
                "certificate table entry of type {kind:#x} is not PKCS#7"
            ));
        }
        let padded = len.div_ceil(8).saturating_mul(8);
        table = table.get(padded..).unwrap_or(&[]);
    }
    out
}

/// The signatures of one PKCS#7 `ContentInfo` (trailing padding allowed).
pub fn parse_pkcs7(bytes: &[u8]) -> Result<Vec<Signature>, String> {
    let mut reader = der::SliceReader::new(bytes).map_err(|e| e.to_string())?;
    let ci = cms::content_info::ContentInfo::decode(&mut reader).map_err(|e| e.to_string())?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "content type {} is not SignedData",
            ci.content_type
        ));
    }
    let sd: cms::signed_data::SignedData = ci.content.decode_as().map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    for c in sd.certificates.iter().flat_map(|s| s.0.iter()) {
        if let cms::cert::CertificateChoices::Certificate(cert) = c {
            if certs.len() >= MAX_CERTIFICATES {
                return Err(format!("more than {MAX_CERTIFICATES} certificates"));
            }
            let der = cert.to_der().map_err(|e| e.to_string())?;
            certs.push((cert.clone(), describe(cert, der)));
        }
    }
    let mut out = Vec::new();
    for si in sd.signer_infos.0.iter().take(MAX_SIGNATURES) {
        let (signer, signer_issuer) = match &si.sid {
            cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(ias) => {
                let found = certs.iter().find(|(c, _)| {
                    c.tbs_certificate.issuer == ias.issuer
                        && c.tbs_certificate.serial_number == ias.serial_number
                });
                (found.map(|(_, i)| i.clone()), ias.issuer.to_string())
            }
            cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_) => (None, String::new()),
        };
        out.push(Signature {
            signer,
            signer_issuer,
            certificates: certs.iter().map(|(_, i)| i.clone()).collect(),
        });
    }
    if out.is_empty() {
        return Err("no SignerInfo".into());
    }
    Ok(out)
}

/// Whether `anchor` (a certificate shim or the firmware trusts) vouches
/// for the signature by name: the signer or a certificate of its chain is
/// the anchor itself or names it as issuer. This is what to enroll or look
/// for; the firmware and shim check the cryptography at boot.
pub fn anchored_by(sig: &Signature, anchor: &CertInfo) -> bool {
    let chain = sig.signer.iter().chain(&sig.certificates);
    sig.signer_issuer == anchor.subject
        || chain
            .clone()
            .any(|c| c.sha256 == anchor.sha256 || c.issuer == anchor.subject)
}

/// GRUB's module area magic (`mimg`), at the start of a GRUB image's
/// `mods` section.
const GRUB_MODULE_MAGIC: u32 = 0x676d_696d;
/// At most this many modules are listed.
pub const MAX_GRUB_MODULES: usize = 1024;

/// The names of the modules built into a GRUB EFI image (its `mods`
/// section: a `mimg` header — u32 magic, u32 padding, u64 offset and u64
/// size of the area — then entries of u32 type and u32 size including that
/// header; type 0 is an ELF module whose `.modname` section is its name).
/// A monolithic signed GRUB loads nothing else under Secure Boot.
pub fn grub_modules(data: &[u8]) -> Result<Vec<String>, String> {
    let info = parse(data).map_err(|e| e.to_string())?;
    let mods = info
        .section_bytes(data, "mods")
        .ok_or("no mods section: not a GRUB image")?;
    let le64 = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(mods.get(at..at + 8)?.try_into().ok()?))
    };
    if le32(mods, 0) != Some(GRUB_MODULE_MAGIC) {
        return Err("mods section without the mimg magic".into());
    }
    let (Some(offset), Some(size)) = (le64(8), le64(16)) else {
        return Err("short mimg header".into());
    };
    let area = usize::try_from(size)
        .ok()
        .and_then(|s| mods.get(..s))
        .ok_or("module area larger than the section")?;
    let mut at = usize::try_from(offset).map_err(|_| "bad module offset")?;
    let mut names = Vec::new();
    while at + 8 <= area.len() {
        let (Some(kind), Some(len)) = (le32(area, at), le32(area, at + 4)) else {
            break;
        };
        let len = len as usize;
        let body = area
            .get(at + 8..at.saturating_add(len))
            .filter(|_| len >= 8)
            .ok_or("module entry outside the module area")?;
        if kind == 0 {
            if names.len() >= MAX_GRUB_MODULES {
                return Err(format!("more than {MAX_GRUB_MODULES} modules"));
            }
            names.push(module_name(body).ok_or("module without a readable .modname")?);
        }
        at += len;
    }
    Ok(names)
}

/// The `.modname` of one GRUB ELF module.
fn module_name(elf_bytes: &[u8]) -> Option<String> {
    let f = ::elf::ElfBytes::<::elf::endian::AnyEndian>::minimal_parse(elf_bytes).ok()?;
    let (shdrs, strtab) = f.section_headers_with_strtab().ok()?;
    let (shdrs, strtab) = (shdrs?, strtab?);
    let sh = shdrs
        .iter()
        .find(|s| strtab.get(s.sh_name as usize).ok() == Some(".modname"))?;
    let (bytes, _) = f.section_data(&sh).ok()?;
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let name = std::str::from_utf8(&bytes[..end]).ok()?;
    (!name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbat_csv() {
        let v = parse_sbat(b"sbat,1,SBAT Version,sbat,1,https://x/SBAT.md\ngrub,3,Free Software Foundation,grub,2.06,https://www.gnu.org/software/grub/\n\0\0").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].component, "grub");
        assert_eq!(v[1].generation, "3");
        assert_eq!(v[1].version, "2.06");
        assert!(parse_sbat(b"grub,x\n").is_err());
        assert!(parse_sbat(b"\xff\xfe").is_err());
        assert!(parse_sbat(b"a,1,\x1b[2J\n").is_err());
        assert!(parse_sbat(&vec![b'a'; MAX_SBAT_BYTES + 1]).is_err());
    }

    #[test]
    fn hostile_inputs_are_errors_not_panics() {
        assert!(parse(b"").is_err());
        assert!(parse(b"MZ").is_err());
        let mut mz = vec![0u8; 0x200];
        mz[..2].copy_from_slice(b"MZ");
        mz[0x3c..0x40].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(!is_pe(&mz));
        assert!(parse(&mz).is_err());
        mz[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        mz[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert!(is_pe(&mz));
        assert!(parse(&mz).is_err());
        // Vendor cert headers that point outside.
        assert!(parse_vendor_cert(&[0; 8]).is_err());
        let mut vc = vec![0u8; 16];
        vc[0..4].copy_from_slice(&100u32.to_le_bytes());
        vc[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(parse_vendor_cert(&vc).is_err());
        // Signature lists with impossible sizes.
        let mut sl = vec![0u8; 40];
        sl[..16].copy_from_slice(&EFI_CERT_X509_GUID);
        sl[16..20].copy_from_slice(&40u32.to_le_bytes());
        sl[24..28].copy_from_slice(&1u32.to_le_bytes());
        assert!(signature_list_certs(&sl).is_err());
        // Certificate tables: lengths too short, too long, garbage PKCS#7.
        let mut p = Vec::new();
        assert!(parse_cert_table(&[4, 0, 0, 0, 0, 2, 2, 0], &mut p).is_empty());
        assert!(!p.is_empty());
        let mut p = Vec::new();
        let mut t = vec![0u8; 24];
        t[0..4].copy_from_slice(&24u32.to_le_bytes());
        t[4..8].copy_from_slice(&[0, 2, 2, 0]);
        t[8..12].copy_from_slice(&[0x30, 0x84, 0xff, 0xff]);
        assert!(parse_cert_table(&t, &mut p).is_empty());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(parse_pkcs7(&[0x30, 0x80, 0, 0]).is_err());
    }
}
