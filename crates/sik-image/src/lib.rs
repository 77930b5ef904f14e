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
//!
//! ```no_run
//! use sik_image::kind::{detect_path, ImageKind};
//! match detect_path("firmware.ExtensionImage".as_ref()).unwrap() {
//!     ImageKind::SquashFs => println!("an ExtensionImage"),
//!     other => println!("{other:?}"),
//! }
//! ```

pub mod elf;
pub mod error;
pub mod kind;
pub mod release;
pub mod squashfs;

pub use error::{Error, Result};
