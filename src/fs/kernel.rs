//! What the core may ask of the kernel's caches: forget a name it looked
//! up, or the attributes and pages of an inode, when the core learns they
//! are wrong (a remote change, a file dropped after a failed write). The
//! FUSE adapter implements it; the core knows nothing of how.
//!
//! Calls are made outside every lock of the core and off the request
//! threads: the kernel may wait for a directory lock that a request in
//! progress holds.

use crate::fs::namespace::inode::Ino;

pub trait KernelCache: Send + Sync {
    /// The kernel forgets `name` in `parent` (its next use looks it up).
    fn forget_entry(&self, parent: Ino, name: &str);
    /// The kernel forgets the attributes and cached pages of `ino`.
    fn forget_inode(&self, ino: Ino);
}
