//! The fast path: operations answered from memory and the local spool,
//! synchronously on the calling (FUSE worker) thread. Each returns `None`
//! when only remote work can answer; the caller then runs the async
//! operation of the same name, which reaches the same answer the long way.
//! Nothing here waits for the network or takes an async lock.

use bytes::Bytes;

use crate::fs::backend::XATTR_PREFIX;
use crate::fs::core::{Attr, BridgeFs, Handle, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::{Ino, ROOT};
use crate::fs::namespace::names;
use std::sync::atomic::Ordering;

impl BridgeFs {
    /// `lookup` of a name the fresh listing (or a negative entry) knows.
    pub fn lookup_cached(&self, parent: Ino, name: &str) -> Option<FsResult<Attr>> {
        if let Err(e) = names::check_length(name) {
            return Some(Err(e));
        }
        let mut st = self.state.lock();
        let ino = match self.cached_child(&mut st, parent, name)? {
            Ok(ino) => ino,
            Err(e) => return Some(Err(e)),
        };
        let node = st.table.get_mut(ino)?;
        if Self::needs_stat(node) {
            return None;
        }
        node.lookups += 1;
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        Some(Self::attr_locked(&st, ino))
    }

    /// How long the kernel may hold `name` as missing from `parent`: as
    /// long as the negative entry that answered its lookup. `None`: no
    /// such entry (it must ask again).
    pub fn missing_for(&self, parent: Ino, name: &str) -> Option<std::time::Duration> {
        self.state.lock().cache.negative_left(parent, name)
    }

    /// The child `name` of `parent` as far as fresh caches tell.
    fn cached_child(&self, st: &mut State, parent: Ino, name: &str) -> Option<FsResult<Ino>> {
        if parent == ROOT {
            return Some(self.top_level(st, name));
        }
        let Some(dir) = st.table.get(parent) else {
            return Some(Err(FsError::NotFound));
        };
        if !dir.is_dir() {
            return Some(Err(FsError::NotDir));
        }
        st.cache.fresh(parent)?;
        Self::cached_name(st, parent, name)
    }

    /// `create` of a name a fresh listing (or a negative entry) says is
    /// free; an existing name opened by `create` goes the long way.
    pub fn create_cached(
        &self,
        parent: Ino,
        name: &str,
        flags: i32,
        pid: u32,
    ) -> Option<FsResult<(Attr, u64)>> {
        if let Err(e) = names::check_local(name) {
            return Some(Err(e));
        }
        if parent == ROOT {
            return Some(Err(FsError::NotPermitted));
        }
        let found = self.cached_child(&mut self.state.lock(), parent, name)?;
        match found {
            Ok(_) if flags & libc::O_EXCL != 0 => Some(Err(FsError::Exists)),
            Ok(_) => None,
            Err(FsError::NotFound) => Some(self.create_new(parent, name, flags, pid)),
            Err(e) => Some(Err(e)),
        }
    }

    /// `getattr` of a node whose size is known.
    pub fn getattr_cached(&self, ino: Ino, fh: Option<u64>) -> Option<FsResult<Attr>> {
        let st = self.state.lock();
        let Some(node) = st.table.get(ino) else {
            return Some(Err(FsError::NotFound));
        };
        if Self::needs_stat(node) {
            return None;
        }
        let mut attr = Self::attr_locked(&st, ino);
        if let (Ok(a), Some(size)) = (
            &mut attr,
            fh.and_then(|f| self.handles.lock().pinned_size(f)),
        ) {
            a.size = size;
        }
        Some(attr)
    }

    /// `opendir` of the root or of a directory with a fresh listing.
    pub fn opendir_cached(&self, ino: Ino) -> Option<FsResult<u64>> {
        let mut st = self.state.lock();
        if ino != ROOT && st.table.get(ino).is_some_and(|n| n.is_dir()) {
            st.cache.fresh(ino)?;
        }
        Some(self.snapshot_dir(&mut st, ino))
    }

    /// `open` that needs no remote call: a read of a file whose size is
    /// known and whose version is current, or a write into an existing
    /// spool.
    pub fn open_cached(&self, ino: Ino, flags: i32, pid: u32) -> Option<FsResult<u64>> {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = write && flags & libc::O_TRUNC != 0;
        let local = {
            let st = self.state.lock();
            let Some(node) = st.table.get(ino) else {
                return Some(Err(FsError::NotFound));
            };
            if node.is_dir() {
                return Some(Err(FsError::IsDir));
            }
            if write && !node.entry.writable {
                return Some(Err(FsError::ReadOnly));
            }
            let takes_newer = node.stale && node.readers == 0;
            if (write && node.local.is_none())
                || (!write && (takes_newer || Self::needs_stat(node)))
            {
                return None;
            }
            node.local.clone()
        };
        if let (true, Some(local)) = (trunc, &local) {
            if local.size() > 0 {
                if let Err(e) = local.truncate(0) {
                    return Some(Err(e));
                }
            }
        }
        let fh = self.new_handle(ino, write, flags & libc::O_APPEND != 0, trunc, pid);
        if trunc {
            self.set_only_truncated(fh);
        }
        if !write {
            self.pin(ino, fh);
        }
        Some(Ok(fh))
    }

    /// `read` from the spool, or from blocks already in memory.
    pub fn read_cached(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Option<FsResult<Bytes>> {
        let data = {
            let guard = self.state.lock();
            let node = guard.table.get(ino)?;
            let mut handles = self.handles.lock();
            let Some(Handle::File(h)) = handles.get_mut(&fh) else {
                return None;
            };
            if let Some(local) = node.local.clone() {
                h.pattern.advance(offset, size as u64);
                drop(handles);
                drop(guard);
                local.read_at(offset, size as u64).map(Bytes::from)
            } else {
                if h.stale {
                    return Some(Err(FsError::Stale));
                }
                let backend = &self.mounts[node.backend?].backend;
                // Tried on a copy: the long way records the read itself.
                let mut pattern = h.pattern.clone();
                let ahead = pattern.advance(offset, size as u64);
                let src = h.pinned.as_ref()?.source(backend, ino);
                let data = self.blocks.cached(&src, ahead, offset, size as u64)?;
                h.pattern = pattern;
                h.served += data.len() as u64;
                Ok(data)
            }
        };
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        if let Ok(d) = &data {
            self.counters
                .bytes_read
                .fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        Some(data)
    }

    /// `flush` of a handle with nothing to upload (a reader's close, or
    /// another process's copy of a writer's descriptor).
    pub fn flush_cached(&self, ino: Ino, fh: u64, pid: u32) -> Option<FsResult<()>> {
        let (opener, uploads) = match self.handles.lock().get(&fh) {
            Some(Handle::File(h)) => (h.pid == pid, h.wrote && h.pid == pid && !h.only_truncated),
            _ => (false, false),
        };
        if uploads {
            return None;
        }
        if opener {
            self.reader_done(ino, fh);
        }
        Some(Ok(()))
    }

    /// `release` of a handle with nothing left to upload; `false`: the
    /// long way must upload.
    pub fn release_cached(&self, ino: Ino, fh: u64) -> bool {
        let wrote = matches!(self.handles.lock().get(&fh), Some(Handle::File(h)) if h.wrote);
        if wrote {
            return false;
        }
        self.reader_done(ino, fh);
        let removed = self.handles.lock().remove(&fh);
        if let Some(Handle::File(_)) = removed {
            if let Some(n) = self.state.lock().table.get_mut(ino) {
                n.open_handles = n.open_handles.saturating_sub(1);
            }
            self.release_local_if_idle(ino);
        }
        true
    }

    /// `getxattr` of a name outside `user.bridgefs.*`: answered by the
    /// namespace rule alone (see [`BridgeFs::getxattr`]).
    pub fn getxattr_cached(&self, name: &str) -> Option<FsResult<Vec<u8>>> {
        if !name.starts_with("user.") {
            return Some(Err(FsError::NotSupported));
        }
        (!name.starts_with(XATTR_PREFIX)).then_some(Err(FsError::NoData))
    }
}
