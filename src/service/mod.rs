//! Running bridgefs as a service an admin can trust: one daemon per state
//! and cache directory, mountpoint checks and stale-mount recovery, the
//! mount-helper convention for fstab, `-o` options, and the metrics
//! endpoint.

pub mod helper;
pub mod instance;
pub mod metrics;
pub mod mountpoint;
pub mod options;
pub mod probe;
pub mod readahead;
pub mod registry;
