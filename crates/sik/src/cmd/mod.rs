//! One module per command.

pub mod boot;
pub mod boot_check;
pub mod boot_list;
pub mod boot_remove;
pub mod completions;
pub mod create;
pub mod create_appimage;
pub mod extract;
pub mod inspect;
pub mod integrate;
pub mod key;
pub mod link;
pub mod manpages;
pub mod sign;
pub mod status;
pub mod unlink;
pub mod verify;
