//! Running bridgefs as a service an admin can trust: one daemon per state
//! and cache directory, mountpoint checks and stale-mount recovery.

pub mod instance;
pub mod mountpoint;
