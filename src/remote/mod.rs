//! One typed client per remote API, all over the shared [`http::HttpClient`].
//! The clients know nothing of the filesystem: they speak the API contract
//! (`shared/API-CONTRACT.md`) and return its objects.

pub mod backoffice;
pub mod buffers;
pub mod error;
pub mod files;
pub mod http;
pub mod library;
pub mod transfer;

pub use error::{RemoteError, RemoteResult};

/// Reads a credential file, trimming the trailing newline. Read anew on
/// each authentication, so a rotated file takes effect without a restart.
pub fn read_secret(path: &std::path::Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}
