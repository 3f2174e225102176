//! Filesystem logic. Knows nothing of fuser or HTTP: operations are
//! methods of [`core::BridgeFs`] returning plain structs or an
//! [`FsError`], and each remote namespace sits behind the
//! [`backend::Backend`] trait (implemented in `crate::backends`).
//!
//! - [`core`]: the shared state and the `BridgeFs` type;
//! - `background`: the daemon's runtime, where the core's own tasks run;
//! - `handles`: open file and directory handles, under their own lock;
//! - [`namespace`]: inodes, listings, names, hidden views;
//! - [`content`]: the block cache and read-ahead of remote content;
//! - [`writeback`]: spool, journal, upload, retry, recovery, drain;
//! - [`ops`]: the FUSE-shaped operations, fast path included.

pub mod backend;
mod background;
pub mod content;
pub mod core;
pub mod error;
mod handles;
pub mod kernel;
pub mod namespace;
mod ops;
pub mod writeback;

pub use error::{FsError, FsResult};
pub use ops::file::{DurableFlush, FlushStep};
pub use ops::SetAttr;
