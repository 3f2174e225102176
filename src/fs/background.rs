//! Where the core's own work runs: retries, read-ahead, delayed removals
//! and blocking disk work, always on the daemon's runtime, named once.
//! A request's future may be polled anywhere (a FUSE thread answering from
//! memory runs in no runtime at all); what it starts must not depend on
//! that: a task left on a runtime nothing drives any more would never run,
//! and a thread spawned per kernel notice costs more than the notice.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::fs::error::{FsError, FsResult};

/// A handle on the daemon's runtime.
#[derive(Clone)]
pub(in crate::fs) struct Background {
    rt: Handle,
    /// Disk work handed off with nothing waiting for it, which shutdown
    /// waits for: tokio drops blocking work not yet started when its
    /// runtime shuts down, and a journal record whose removal was dropped
    /// would upload its file again at the next start.
    detached: TaskTracker,
}

impl Background {
    /// The runtime the caller runs in: the core is built inside the
    /// daemon's runtime (or a test's).
    pub fn current() -> FsResult<Background> {
        let rt = Handle::try_current()
            .map_err(|_| FsError::Io("the filesystem core needs a tokio runtime".into()))?;
        Ok(Background {
            rt,
            detached: TaskTracker::new(),
        })
    }

    /// Starts a task that outlives the request.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.rt.spawn(task));
    }

    /// Disk or kernel work on a blocking thread of the daemon's runtime.
    pub fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        self.rt.spawn_blocking(work)
    }

    /// Disk work on a blocking thread, waited for: the caller's next step
    /// needs its outcome. A panic in it is an I/O error of the request.
    pub async fn wait_for<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> FsResult<T> {
        self.blocking(work)
            .await
            .map_err(|e| FsError::Io(format!("disk work: {e}")))
    }

    /// Disk work nothing waits for: done now when called outside async
    /// code (on a FUSE thread answering from memory, where it costs less
    /// than a hand-off), else later on a blocking thread, so that no
    /// runtime's worker waits for the disk; [`Background::settle`] waits
    /// for it.
    pub fn off_the_runtime(&self, work: impl FnOnce() + Send + 'static) {
        match Handle::try_current() {
            Ok(_) => drop(self.detached.spawn_blocking_on(work, &self.rt)),
            Err(_) => work(),
        }
    }

    /// Waits for the disk work [`Background::off_the_runtime`] handed off
    /// so far (shutdown).
    pub async fn settle(&self) {
        self.detached.close();
        self.detached.wait().await;
        self.detached.reopen();
    }
}
