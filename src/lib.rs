//! bridgefs: three remote file APIs mounted as one POSIX tree.
//!
//! Layers, bottom up: [`remote`] holds one typed client per API over a single
//! shared [`remote::http::HttpClient`] and knows no errno and no config;
//! [`fs`] is the filesystem logic (inodes, names, caches, spool, views)
//! and knows neither fuser nor HTTP; [`backends`] adapt each API client to
//! the filesystem's `Backend` trait (the only modules that see both);
//! [`fuse`] is the thin fuser adapter. The emulator that serves the three
//! APIs for tests, the demo and benchmarks is its own crate,
//! `bridgefs-emulator` (`crates/emulator`): only the binary's `demo` and
//! `emulator` commands link it (feature `emulator`, the default), so this
//! library's code uses no axum.

pub mod backends;
pub mod config;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod metrics;
pub mod remote;
pub mod service;
pub mod status;
