//! Where the core's own work runs: retries, read-ahead, delayed removals
//! and blocking disk work. Always on the daemon's runtime, whichever
//! runtime drives the request that starts it: a request may be driven to
//! its end on a FUSE thread's runtime of its own (see `crate::fuse`), and
//! a task left on that runtime would wait until that thread serves its
//! next request.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::fs::error::{FsError, FsResult};

/// A handle on the daemon's runtime.
#[derive(Clone)]
pub(in crate::fs) struct Background(Handle);

impl Background {
    /// The runtime the caller runs in: the core is built inside the
    /// daemon's runtime (or a test's).
    pub fn current() -> FsResult<Background> {
        Handle::try_current()
            .map(Background)
            .map_err(|_| FsError::Io("the filesystem core needs a tokio runtime".into()))
    }

    /// Starts a task that outlives the request.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.0.spawn(task));
    }

    /// Disk or kernel work on a blocking thread of the daemon's runtime.
    pub fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        self.0.spawn_blocking(work)
    }

    /// Disk work nothing waits for: done now when called outside async
    /// code (on a FUSE thread answering from memory, where it costs less
    /// than a hand-off), else later on a blocking thread, so that no
    /// runtime's worker waits for the disk.
    pub fn off_the_runtime(&self, work: impl FnOnce() + Send + 'static) {
        match Handle::try_current() {
            Ok(_) => drop(self.blocking(work)),
            Err(_) => work(),
        }
    }
}
