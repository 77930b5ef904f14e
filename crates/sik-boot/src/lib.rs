//! Boot media for SystemImageKit: one medium with GRUB that boots many
//! unchanged live ISOs from their `.iso` files, plus a secondary initrd that
//! links ExtensionImages, applies the customization and mounts the
//! persistent home inside each distribution's own initramfs.
//!
//! * [`iso9660`]: a small ISO 9660 reader (Rock Ridge, Joliet), no mounting.
//! * [`family`]: live ISO families as data (`formats/live/*.toml`).
//! * [`bootcfg`]: reading a distribution's grub/syslinux configs.
//! * [`detect`]: which family an ISO belongs to, kernel, initrds, arguments.
//! * [`grub`]: the medium's grub.cfg; [`cpio`]: the initrd archive format.
//! * [`generate`]: grub.cfg plus the secondary initrd of a medium.
//! * [`medium`]: a medium as a directory or as a disk image or device
//!   (exFAT or FAT DATA, FAT ESP): the one place that writes to a medium.
//! * [`exfat`]: sik's user-space exFAT reader and writer; [`mkfs`]:
//!   making the partitions' filesystems without mounting.
//! * [`bootchain`]: every bootloader file (BIOS core.img, the ESP's UEFI
//!   files), for `install` and `install --update`.
//! * [`policy`]: the medium's link policy (`boot/customize/policy.toml`).
//! * [`secure_boot`]: the UEFI chain (unsigned GRUB, or shim + MokManager +
//!   signed GRUB) and [`mok`], the Machine Owner Key of the own-key GRUB.
//! * [`quote`]: the one place values are validated or quoted for GRUB and sh.
//! * [`rootfs`]: the os-release of the distribution inside an ISO.
//!
//! ```no_run
//! use sik_boot::{detect, family};
//! let families = family::builtin();
//! match detect::detect_path("ubuntu.iso".as_ref(), &families) {
//!     detect::Outcome::Detected(d) => println!("{} {:?}", d.family, d.kernel),
//!     detect::Outcome::Skipped { reason } => println!("skipped: {reason}"),
//! }
//! ```
//!
//! Making a medium image and generating its menu (what `cargo xtask` does):
//!
//! ```no_run
//! use sik_boot::{generate, install};
//! let sik = "target/x86_64-unknown-linux-gnu/release/sik";
//! install::install("disk.img".as_ref(), &install::Options::new(sik, Some(2 << 30))).unwrap();
//! install::add("ubuntu.iso".as_ref(), "disk.img".as_ref(), "x86_64").unwrap();
//! let report = generate::generate("disk.img".as_ref(), &generate::Options::new(sik)).unwrap();
//! println!("{} ISOs", report.isos.len());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bootcfg;
pub mod bootchain;
pub mod cpio;
pub mod detect;
pub mod dirfs;
pub mod error;
pub mod exfat;
pub mod family;
pub mod generate;
pub mod grub;
pub mod install;
pub mod mkfs;
/// The ISO 9660 reader lives with the other format knowledge in sik-image.
pub use sik_image::iso9660;
pub mod medium;
pub mod mok;
pub mod policy;
pub mod quote;
pub mod rootfs;
pub mod secure_boot;

pub use error::{Error, Result};
