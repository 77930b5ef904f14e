//! Shared knowledge of the file formats SystemImageKit reads and writes.
//!
//! Every tool of the workspace (create, inspect, sign, verify, link, boot,
//! the AppImage runtime) asks this crate what a file is and where its parts
//! are, so each fact about a format lives in exactly one place:
//!
//! * [`kind`]: what a file is (SquashFS/ExtensionImage, AppImage type 1/2,
//!   ISO 9660), decided from its magic numbers, never from its name.
//! * [`squashfs`]: the superblock facts of a SquashFS image (through
//!   backhand's parser) and the padding rule of images this project writes.
//! * [`elf`]: the ELF section table of an AppImage runtime, the reserved
//!   AppImage sections and the offset where the SquashFS payload starts.
//! * [`release`]: the extension-release metadata (systemd-sysext format).
//! * [`desktop`]: desktop entries of AppImages.
//! * [`iso9660`]: a careful ISO 9660 reader (Rock Ridge, Joliet) for live-ISO
//!   detection and the volume label.
//! * [`pe`]: PE/COFF boot files (shim, GRUB, kernels): sections, SBAT,
//!   shim's vendor certificate and the Authenticode signers.
//! * [`signature`]: what a signature covers (the payload), where it lives
//!   in an image, and the SSHSIG wire format.
//! * [`verity`]: the dm-verity hash tree of an ExtensionImage and the
//!   descriptor its signature binds.
//!
//! ```no_run
//! use sik_image::kind::{detect_path, ImageKind};
//! match detect_path("firmware.ExtensionImage".as_ref()).unwrap() {
//!     ImageKind::SquashFs => println!("an ExtensionImage"),
//!     other => println!("{other:?}"),
//! }
//! ```

#![forbid(unsafe_code)]

pub mod desktop;
pub mod elf;
pub mod erofs;
pub mod error;
pub mod iso9660;
pub mod kind;
pub mod pe;
pub mod release;
pub mod signature;
pub mod squashfs;
pub mod verity;

pub use error::{Error, Result};

/// Read into `buf` until it is full or the reader ends; returns how many
/// bytes were read (less than `buf.len()` only at the end of the input).
/// Unlike `read_exact`, a short input is a count, not an error, which is
/// what magic sniffing and block-wise hashing need.
pub fn read_full<R: std::io::Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
