//! Filesystem logic: inodes, names, caches, spool and views. Knows nothing
//! of fuser or HTTP.

pub mod backend;
pub mod backends;
pub mod error;

pub use error::{FsError, FsResult};
