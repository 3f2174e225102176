//! The FUSE-shaped operations of [`crate::fs::core::BridgeFs`], one file per
//! kind: attributes, directories, file handles, reads, rename/unlink and
//! extended attributes. `cached` holds the synchronous fast path of each
//! (answered from memory on the FUSE thread); the async methods do the
//! remote work.

mod attr;
pub use attr::SetAttr;
mod cached;
mod dir;
pub(in crate::fs) mod file;
mod read;
mod rename;
pub(in crate::fs) mod save;
mod xattr;
