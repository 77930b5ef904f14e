//! One module per command.

pub mod completions;
pub mod create;
pub mod extract;
pub mod inspect;
