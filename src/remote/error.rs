//! What can go wrong talking to a remote API, before any filesystem meaning.

use std::time::Duration;

/// A failed remote call. Carries the HTTP status and the server's message
/// (never a credential) so the backends can map it to the filesystem's errors and log it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// The call's deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connection refused, reset or dropped mid-body.
    #[error("connection error: {0}")]
    Connection(String),
    /// The response could not be decoded as the contract says.
    #[error("bad response: {0}")]
    Decode(String),
    /// Local problem preparing the request (unreadable spool file, bad URL).
    #[error("local error: {0}")]
    Local(String),
}

impl RemoteError {
    /// The HTTP status, where the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404 (the object is gone: drop it from the caches).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

pub type RemoteResult<T> = Result<T, RemoteError>;
