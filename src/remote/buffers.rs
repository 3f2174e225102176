//! Reusable buffers for range downloads. A download lands in a buffer of
//! its own, and fresh memory costs a page fault and a zeroed page per
//! 4 KiB at first touch: in a streamed 256 MiB read that was a fifth of
//! the daemon's CPU time. A buffer comes back here when the last `Bytes`
//! pointing into it is dropped, and the next download of about its size
//! reuses it, its pages already mapped.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// The capacity of a pooled buffer: the largest range the filesystem asks
/// for at once (one content block).
pub const POOLED: usize = 1 << 20;
/// Idle buffers kept at most (16 MiB): a read-ahead window's worth, so a
/// streamed read recycles its own buffers.
const MAX_IDLE: usize = 16;

/// Idle download buffers, all of capacity [`POOLED`].
#[derive(Default)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer able to hold `len` bytes: a pooled one for a
    /// download of more than half a pooled buffer (a smaller one would pin
    /// a whole megabyte for a few bytes), else a fresh allocation.
    pub fn take(self: &Arc<Self>, len: usize) -> Download {
        let pooled = len > POOLED / 2 && len <= POOLED;
        let data = match pooled {
            true => self
                .idle
                .lock()
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(POOLED)),
            false => Vec::with_capacity(len),
        };
        Download {
            data,
            pool: pooled.then(|| self.clone()),
        }
    }

    /// How many buffers are idle.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// Lets go of every idle buffer (SIGHUP).
    pub fn clear(&self) {
        self.idle.lock().clear();
    }

    fn give_back(&self, mut data: Vec<u8>) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE && data.capacity() == POOLED {
            data.clear();
            idle.push(data);
        }
    }
}

/// The body of one download as it arrives; back to its pool when the last
/// `Bytes` made of it is dropped.
pub struct Download {
    data: Vec<u8>,
    pool: Option<Arc<BufferPool>>,
}

impl Download {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// The bytes, shared without a copy.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Download {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_sized_buffer_comes_back_when_its_last_bytes_go() {
        let pool = Arc::new(BufferPool::default());
        let mut d = pool.take(POOLED);
        d.extend_from_slice(&[7; POOLED]);
        let bytes = d.freeze();
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still points into it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(POOLED - 1);
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert_eq!(pool.idle(), 0, "and is the idle one");
    }

    #[test]
    fn small_downloads_and_overflow_are_not_kept() {
        let pool = Arc::new(BufferPool::default());
        drop(pool.take(4096).freeze());
        assert_eq!(pool.idle(), 0, "a small download is a fresh allocation");
        let many: Vec<Download> = (0..MAX_IDLE + 3).map(|_| pool.take(POOLED)).collect();
        drop(many);
        assert_eq!(pool.idle(), MAX_IDLE, "idle buffers are bounded");
        pool.clear();
        assert_eq!(pool.idle(), 0);
    }
}
