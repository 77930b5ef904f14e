//! One module per command.

pub mod boot;
pub mod completions;
pub mod create;
pub mod create_appimage;
pub mod extract;
pub mod inspect;
pub mod manpages;
pub mod link;
pub mod status;
pub mod unlink;
pub mod key;
pub mod sign;
pub mod verify;
