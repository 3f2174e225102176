//! The kernel's read-ahead for the mount. A FUSE mount's backing device
//! starts at 128 KiB of read-ahead whatever the filesystem asks for, so a
//! sequential read arrives as 128 KiB requests; at 1 MiB the same read is
//! an eighth of the round trips (a cold 256 MiB read: 2,048 READ requests
//! become 256). Only root may change it (`/sys/class/bdi/*/read_ahead_kb`);
//! for anyone else the default stays.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Read-ahead asked for, in KiB (the block size of the content cache).
pub const READ_AHEAD_KIB: u64 = 1024;

/// Raises the read-ahead of the mount at `mountpoint` (served by this
/// process: call it from another thread than the FUSE session's, once the
/// session runs). Failures are logged at debug level: the mount works as
/// before, only sequential reads make more requests.
pub fn raise(mountpoint: &Path) {
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, READ_AHEAD_KIB.to_string()) {
        Ok(()) => tracing::debug!(path, kib = READ_AHEAD_KIB, "read-ahead raised"),
        Err(e) => tracing::debug!(path, error = %e, "read-ahead left at the kernel's default"),
    }
}
