//! The time the write-back component waits for the disk: every fsync and
//! fdatasync that keeps the durability promise (a close's bytes and
//! journal record on disk before its upload starts). Counted and timed so
//! that the metrics, and the benchmark, show what the promise costs on
//! the disk at hand, apart from the remote's time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Disk syncs made and the microseconds spent waiting for them.
#[derive(Debug, Default)]
pub struct Syncs {
    count: AtomicU64,
    micros: AtomicU64,
}

impl Syncs {
    /// Runs one sync (`fsync`, `fdatasync`, a directory's fsync), counted
    /// and timed whatever its outcome.
    pub fn timed<T, E>(&self, sync: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = Instant::now();
        let result = sync();
        let took = started.elapsed().as_micros() as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(took, Ordering::Relaxed);
        result
    }

    /// (syncs made, microseconds spent in them) since start.
    pub fn figures(&self) -> (u64, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.micros.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sync_is_counted_and_timed_even_a_failed_one() {
        let syncs = Syncs::default();
        let ok: std::io::Result<()> = syncs.timed(|| {
            std::thread::sleep(std::time::Duration::from_millis(2));
            Ok(())
        });
        assert!(ok.is_ok());
        let failed: std::io::Result<()> = syncs.timed(|| Err(std::io::Error::other("disk")));
        assert!(failed.is_err());
        let (count, micros) = syncs.figures();
        assert_eq!(count, 2);
        assert!(micros >= 2_000, "{micros} us");
    }
}
