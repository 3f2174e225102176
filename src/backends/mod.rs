//! One [`Backend`](crate::fs::backend::Backend) per remote namespace: the
//! only modules that see both the filesystem and the API clients, so the
//! contract's HTTP status → [`FsError`] table lives here.

pub mod backoffice;
pub mod files;
pub mod library;

use crate::fs::backend::Content;
use crate::fs::FsError;
use crate::remote::transfer::Body;
use crate::remote::RemoteError;

/// An upload's bytes as the API clients send them.
fn body(content: &Content) -> Body {
    match content {
        Content::Spooled(path) => Body::File(path.clone()),
        Content::InMemory { spool, bytes } => Body::Memory {
            path: spool.clone(),
            bytes: bytes.clone(),
        },
    }
}

impl From<RemoteError> for FsError {
    /// The contract's status → errno table.
    fn from(e: RemoteError) -> Self {
        match &e {
            RemoteError::Status { status, message } => match status {
                400 | 422 => FsError::Invalid(message.clone()),
                401 | 403 => FsError::AccessDenied(message.clone()),
                404 | 410 => FsError::NotFound,
                409 => FsError::Exists,
                413 => FsError::TooBig,
                _ => FsError::Io(e.to_string()),
            },
            RemoteError::Timeout(_) => FsError::TimedOut(e.to_string()),
            RemoteError::Connection(_) | RemoteError::Decode(_) | RemoteError::Local(_) => {
                FsError::Io(e.to_string())
            }
        }
    }
}

/// A backend's memo of objects it has seen (ids, download URLs, records),
/// bounded by a quarter of `cache.max_entries` (an object costs more than
/// an inode: the LRU entries alone of 100,000 Files-app objects took 25 MiB,
/// their strings more): a miss costs
/// one call to fetch the object again, never a wrong answer.
pub(crate) fn memo<K: std::hash::Hash + Eq, V>(
    max_entries: usize,
) -> parking_lot::Mutex<lru::LruCache<K, V>> {
    let capacity = (max_entries / 4).max(1000);
    let capacity = std::num::NonZeroUsize::new(capacity).expect("at least 1");
    parking_lot::Mutex::new(lru::LruCache::new(capacity))
}
