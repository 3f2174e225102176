//! Remote work done on the FUSE thread that received the request, on a
//! current-thread runtime of that thread's own, instead of handed to
//! tokio's worker. The hand-off costs a wake-up of another thread per
//! call, and on 2 cores that wake-up is much of a small call's time
//! (measured in the README's Speed section).
//!
//! Only requests whose remote work ends with the request take this way
//! (unlink, rmdir, mkdir, a writer's close): their HTTP calls start and
//! end inside `block_on`, so nothing another runtime waits for stays on
//! this one (the HTTP client pools this thread's connections apart, and the
//! core runs its own tasks on the daemon's runtime). Reads stay on tokio:
//! their block fetches are shared with read-ahead and other readers.
//!
//! All FUSE threads but one may be busy this way at a time; the next
//! request goes to tokio, so a thread always stays free for the requests
//! answered from memory.

use std::cell::OnceCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};

thread_local! {
    /// This FUSE thread's own runtime, built at its first remote request
    /// (`None`: it could not be built; the thread hands off instead).
    static OWN_RUNTIME: OnceCell<Option<Runtime>> = const { OnceCell::new() };
}

/// How many FUSE threads are driving a request's remote work themselves.
pub struct InPlace {
    busy: AtomicUsize,
    most: usize,
}

impl InPlace {
    /// For a session of `threads` FUSE threads.
    pub fn new(threads: usize) -> InPlace {
        InPlace {
            busy: AtomicUsize::new(0),
            most: threads.saturating_sub(1),
        }
    }

    /// Drives `work` to its end on this thread, or gives it back when
    /// the other threads already take all but one place (or this thread
    /// has no runtime of its own).
    pub fn drive<F: Future>(&self, work: F) -> Result<F::Output, F> {
        if Handle::try_current().is_ok() {
            return Err(work);
        }
        let Some(_place) = self.take_place() else {
            return Err(work);
        };
        OWN_RUNTIME.with(|own| match own.get_or_init(build_runtime) {
            Some(rt) => Ok(rt.block_on(work)),
            None => Err(work),
        })
    }

    fn take_place(&self) -> Option<Place<'_>> {
        let taken = self.busy.fetch_add(1, Ordering::AcqRel);
        let place = Place(&self.busy);
        (taken < self.most).then_some(place)
    }
}

/// A place taken, given back when dropped.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn build_runtime() -> Option<Runtime> {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "a FUSE thread hands its remote work to tokio: no runtime of its own"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_drives_its_work_while_a_place_is_free() {
        let in_place = InPlace::new(2);
        assert_eq!(in_place.drive(async { 7 }).ok(), Some(7));
        assert_eq!(in_place.busy.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_last_free_thread_hands_off() {
        let in_place = InPlace::new(2);
        let _taken = in_place.take_place().expect("one of two threads");
        assert!(in_place.drive(async { 7 }).is_err());
        assert_eq!(in_place.busy.load(Ordering::Acquire), 1);
    }

    #[test]
    fn code_already_in_a_runtime_hands_off() {
        let rt = Builder::new_current_thread().build().expect("runtime");
        let in_place = InPlace::new(4);
        let handed = rt.block_on(async { in_place.drive(async { 7 }).is_err() });
        assert!(handed);
    }
}
