//! Filesystem logic: inodes, names, caches, spool and views. Knows nothing
//! of fuser or HTTP: operations are async methods of [`core::BridgeFs`]
//! returning plain structs, and each remote namespace sits behind the
//! [`backend::Backend`] trait.

pub mod backend;
pub mod backends;
pub mod cache;
pub mod core;
pub mod error;
pub mod inode;
pub mod journal;
pub mod kernel;
pub mod names;
pub mod reader;
pub mod spool;

pub use error::{FsError, FsResult};
