//! The integration tests: one binary that drives the built `sik` (and the
//! real external tools it is judged by) on temporary directories, one module
//! per area, each test reading like the shell session it replaces.
//!
//! Tests that need root, loop devices, FUSE or QEMU skip outside CI and fail
//! with `CI=true` (see `util::require_root`).

mod util;

mod appimage;
mod boot;
mod boot_life;
mod extension;
mod hostile;
mod integrate;
mod link;
mod memory;
mod packages;
mod secure_boot;
mod signing;
mod triggers;
mod verity;
