//! The HTTP-level suites in one test binary (one link instead of six): the
//! emulator's routes, the shared HTTP client, and the back-office backends
//! through the `Backend` trait, all over real HTTP on loopback.

#[path = "../common/mod.rs"]
mod common;

mod api_backoffice;
mod api_faults;
mod api_files;
mod api_library;
mod backend_backoffice;
mod emulator_backoffice;
