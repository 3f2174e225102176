//! Content reads: a bounded cache of aligned blocks shared by all handles,
//! with adaptive read-ahead. Sequential reads widen the window (several
//! block requests in flight at once); a random read fetches exactly the
//! bytes asked for and does not touch the cache.
//!
//! A whole block read whole by a sequential reader leaves the cache then:
//! the kernel's page cache holds it now (readers open with
//! `FOPEN_KEEP_CACHE`), so a stream holds no more than its read-ahead
//! window here, and its buffers go back to the download pool for the next
//! blocks instead of costing fresh memory.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use parking_lot::Mutex;

use super::backend::{Backend, Entry};
use super::background::Background;
use super::error::FsResult;

/// Size of one cached block.
pub const BLOCK: u64 = 1 << 20;
/// Widest read-ahead, in blocks.
pub const MAX_READAHEAD_BLOCKS: u64 = 8;

type Fetch = Shared<BoxFuture<'static, FsResult<Bytes>>>;
/// (inode, content version, block index).
type BlockId = (u64, u64, u64);

/// Per-handle access pattern.
#[derive(Debug, Default, Clone)]
pub struct ReadPattern {
    next: Option<u64>,
    window: u64,
}

impl ReadPattern {
    /// Records a read; returns the read-ahead in blocks for a sequential
    /// read, `None` for a random one.
    pub fn advance(&mut self, offset: u64, len: u64) -> Option<u64> {
        // Reads the kernel sends in parallel arrive slightly out of order:
        // anything within two blocks of the expected offset is sequential.
        let sequential = match self.next {
            None => offset == 0,
            Some(next) => offset + 2 * BLOCK >= next && offset <= next + 2 * BLOCK,
        };
        self.next = Some(offset + len);
        if sequential {
            self.window = (self.window * 2).clamp(1, MAX_READAHEAD_BLOCKS);
            Some(self.window)
        } else {
            self.window = 0;
            None
        }
    }
}

/// The content a read is about: a remote file at one version.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub backend: &'a Arc<dyn Backend>,
    pub entry: &'a Entry,
    /// The inode and its content version: together, the cache key.
    pub ino: u64,
    pub version: u64,
    pub size: u64,
}

impl Source<'_> {
    /// The cache key of its block `idx`.
    fn block_id(&self, idx: u64) -> BlockId {
        (self.ino, self.version, idx)
    }
}

/// Blocks of content keyed by inode, content version and block index.
pub struct BlockCache {
    inner: Mutex<Inner>,
    /// Where read-ahead runs: on the daemon's runtime, whichever runtime
    /// drives the read that starts it.
    background: Background,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

/// What metrics show of the block cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockCacheStats {
    /// Blocks found in memory or already being fetched.
    pub hits: u64,
    /// Blocks fetched from the remote.
    pub misses: u64,
    pub blocks: u64,
    pub bytes: u64,
}

struct Inner {
    lru: LruCache<BlockId, Bytes>,
    inflight: HashMap<BlockId, Fetch>,
    /// Blocks lately let go of once delivered: read-ahead does not fetch
    /// them again (the kernel sends reads in parallel, so the one for a
    /// block can start after the next block was delivered).
    delivered: LruCache<BlockId, ()>,
}

/// How many delivered blocks are remembered: a few read-ahead windows.
const DELIVERED_REMEMBERED: usize = 64;

impl Inner {
    /// Whether read-ahead needs to start `id`.
    fn wanted_ahead(&self, id: &BlockId) -> bool {
        !(self.lru.contains(id) || self.inflight.contains_key(id) || self.delivered.contains(id))
    }
}

impl BlockCache {
    pub(in crate::fs) fn new(max_bytes: u64, background: Background) -> BlockCache {
        let blocks = NonZeroUsize::new(((max_bytes / BLOCK) as usize).max(4)).expect("non-zero");
        BlockCache {
            inner: Mutex::new(Inner {
                lru: LruCache::new(blocks),
                inflight: HashMap::new(),
                delivered: LruCache::new(
                    NonZeroUsize::new(DELIVERED_REMEMBERED).expect("non-zero"),
                ),
            }),
            background,
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    pub fn stats(&self) -> BlockCacheStats {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = self.inner.lock();
        BlockCacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            blocks: inner.lru.len() as u64,
            bytes: inner.lru.iter().map(|(_, b)| b.len() as u64).sum(),
        }
    }

    /// The block, from the cache, from a fetch already under way, or by
    /// starting one.
    fn block(self: &Arc<Self>, src: &Source<'_>, idx: u64) -> Fetch {
        let Source {
            backend,
            entry,
            size,
            ..
        } = *src;
        let id = src.block_id(idx);
        let mut inner = self.inner.lock();
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(b) = inner.lru.get(&id) {
            let b = b.clone();
            self.hits.fetch_add(1, Relaxed);
            return async move { Ok(b) }.boxed().shared();
        }
        if let Some(f) = inner.inflight.get(&id) {
            self.hits.fetch_add(1, Relaxed);
            return f.clone();
        }
        self.misses.fetch_add(1, Relaxed);
        let start = idx * BLOCK;
        let len = BLOCK.min(size.saturating_sub(start));
        let (backend, entry, cache) = (backend.clone(), entry.clone(), self.clone());
        let fetch = async move {
            let result = backend.read(&entry, start, len).await;
            let mut inner = cache.inner.lock();
            inner.inflight.remove(&id);
            if let Ok(b) = &result {
                inner.lru.put(id, b.clone());
            }
            result
        }
        .boxed()
        .shared();
        inner.inflight.insert(id, fetch.clone());
        fetch
    }

    /// Reads `len` bytes at `offset` of a remote file; `pattern` is the
    /// handle's read-ahead (`None`: a random read).
    pub async fn read(
        self: &Arc<Self>,
        src: &Source<'_>,
        pattern: Option<u64>,
        offset: u64,
        len: u64,
    ) -> FsResult<Bytes> {
        let Source {
            backend,
            entry,
            size,
            ..
        } = *src;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len).min(size);
        let Some(readahead) = pattern else {
            return backend.read(entry, offset, end - offset).await;
        };
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        let last_block = (size - 1) / BLOCK;
        // Start the read-ahead first so it runs while we wait.
        let ahead = (last + 1)..=(last + readahead).min(last_block);
        let id = |idx| src.block_id(idx);
        let wanted: Vec<u64> = {
            let mut inner = self.inner.lock();
            // A read of a block already delivered: the kernel no longer has
            // its pages, nor likely those after it; fetch them again.
            if (first..=last).any(|i| inner.delivered.pop(&id(i)).is_some()) {
                ahead.clone().for_each(|i| _ = inner.delivered.pop(&id(i)));
            }
            ahead.filter(|&i| inner.wanted_ahead(&id(i))).collect()
        };
        for idx in wanted {
            let f = self.block(src, idx);
            self.background.spawn(async move {
                let _ = f.await;
            });
        }
        let fetches: Vec<Fetch> = (first..=last).map(|i| self.block(src, i)).collect();
        let blocks = futures::future::try_join_all(fetches).await?;
        self.let_go_of_delivered(src, offset, end);
        Ok(assemble(&blocks, first, offset, end))
    }

    /// Drops the whole blocks a sequential read covers whole: they are
    /// being handed to the kernel's page cache. Blocks shorter than a
    /// whole one (a small file, a file's tail) stay, as a read that covers
    /// part of a block may still be followed by one of the rest.
    fn let_go_of_delivered(&self, src: &Source<'_>, offset: u64, end: u64) {
        let first_whole = offset.div_ceil(BLOCK);
        let end_whole = end.min(src.size) / BLOCK;
        if first_whole >= end_whole {
            return;
        }
        let mut inner = self.inner.lock();
        for idx in first_whole..end_whole {
            let id = src.block_id(idx);
            inner.lru.pop(&id);
            inner.delivered.put(id, ());
        }
    }

    /// The bytes of a read, if memory already holds them and every block of
    /// its read-ahead is held or on its way: a read that needs nothing
    /// started can be answered without the runtime (`None`: it cannot).
    pub fn cached(
        &self,
        src: &Source<'_>,
        pattern: Option<u64>,
        offset: u64,
        len: u64,
    ) -> Option<Bytes> {
        let size = src.size;
        if offset >= size || len == 0 {
            return Some(Bytes::new());
        }
        let end = (offset + len).min(size);
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let last_block = (size - 1) / BLOCK;
        let mut inner = self.inner.lock();
        let ahead = (last + 1)..=(last + pattern.unwrap_or(0)).min(last_block);
        let id = |idx| src.block_id(idx);
        if ahead.into_iter().any(|i| inner.wanted_ahead(&id(i))) {
            return None;
        }
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for idx in first..=last {
            blocks.push(inner.lru.get(&id(idx))?.clone());
        }
        drop(inner);
        self.hits
            .fetch_add(last - first + 1, std::sync::atomic::Ordering::Relaxed);
        if pattern.is_some() {
            self.let_go_of_delivered(src, offset, end);
        }
        Some(assemble(&blocks, first, offset, end))
    }

    /// Drops every block (SIGHUP).
    pub fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.lru.clear();
        inner.delivered.clear();
    }
}

/// The bytes `offset..end` out of consecutive blocks starting at block
/// `first`. Within one block (the usual read: the kernel asks for at most
/// 1 MiB, aligned) it is a slice of the block, no copy.
fn assemble(blocks: &[Bytes], first: u64, offset: u64, end: u64) -> Bytes {
    let range = |i: usize, b: &Bytes| {
        let block_start = (first + i as u64) * BLOCK;
        let to = ((end - block_start) as usize).min(b.len());
        // A block shorter than asked for (a remote that sent less) gives
        // what it has, never a slice past its end.
        let from = (offset.saturating_sub(block_start) as usize).min(to);
        from..to
    };
    if let [only] = blocks {
        return only.slice(range(0, only));
    }
    let mut out = BytesMut::with_capacity((end - offset) as usize);
    for (i, b) in blocks.iter().enumerate() {
        out.extend_from_slice(&b[range(i, b)]);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_widens_random_resets() {
        let mut p = ReadPattern::default();
        assert_eq!(p.advance(0, 131072), Some(1));
        assert_eq!(p.advance(131072, 131072), Some(2));
        assert_eq!(p.advance(262144, 131072), Some(4));
        assert_eq!(p.advance(393216, 131072), Some(8));
        assert_eq!(p.advance(524288, 131072), Some(8));
        assert_eq!(p.advance(500 << 20, 4096), None);
        assert_eq!(p.advance((500 << 20) + 4096, 4096), Some(1));
    }
}
