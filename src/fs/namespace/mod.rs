//! The namespace: which inode is which remote object, what each directory
//! holds and until when that is fresh, and the rules for names. The hidden
//! `.trash` and `.revisions` views are nodes of the same inode table,
//! registered by their backend.

mod attr_files;
pub mod cache;
pub mod inode;
pub(in crate::fs) mod listing;
pub mod local_only;
pub mod names;
pub mod overlay;
pub(in crate::fs) mod resolve;
