//! `sik link`, `sik unlink`, `sik status` against real loop mounts.

mod util;
