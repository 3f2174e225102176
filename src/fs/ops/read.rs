//! Reads: a read-only handle pins the remote version it opened and reads
//! it through the block cache; a handle on a spooled file reads the spool.

use crate::fs::content::Source;
use crate::fs::core::{BridgeFs, Handle, Pinned};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use bytes::Bytes;
use std::sync::atomic::Ordering;

impl BridgeFs {
    /// A file whose newer remote version was seen while it was open takes
    /// it now (its directory is listed again).
    pub(in crate::fs) async fn take_newer_version(&self, ino: Ino) -> FsResult<()> {
        let parent = {
            let st = self.state.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            if !(n.stale && n.readers == 0) {
                return Ok(());
            }
            n.parent
        };
        self.state.lock().cache.invalidate(parent);
        self.ensure_listing(parent).await
    }

    /// Pins a read-only handle of a remote file to its current version.
    pub(in crate::fs) fn pin(&self, ino: Ino, fh: u64) {
        let mut st = self.state.lock();
        let Some(node) = st.table.get(ino) else {
            return;
        };
        // A clean spool holds the uploaded version, the one pinned; a dirty
        // one is read as written (read-your-writes), not pinned.
        if !node.is_remote() || node.local.as_ref().is_some_and(|l| l.dirty()) {
            return;
        }
        let pinned = Pinned {
            entry: node.entry.clone(),
            version: node.content_version,
            size: node
                .local
                .as_ref()
                .map(|l| l.size())
                .or(node.entry.size)
                .unwrap_or(0),
        };
        if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
            h.pinned = Some(pinned);
            h.reading = true;
            if let Some(n) = st.table.get_mut(ino) {
                n.readers += 1;
            }
        }
    }

    /// A reader is done with the version it pinned (its first flush, or
    /// its release): the last one lets the newer version in.
    pub(in crate::fs) fn reader_done(&self, ino: Ino, fh: u64) {
        let stale_parent = {
            let mut st = self.state.lock();
            let was_reading = match self.handles.lock().get_mut(&fh) {
                Some(Handle::File(h)) => std::mem::take(&mut h.reading),
                _ => false,
            };
            if !was_reading {
                return;
            }
            let stale = st.table.get_mut(ino).and_then(|n| {
                n.readers = n.readers.saturating_sub(1);
                (n.readers == 0 && n.stale).then_some(n.parent)
            });
            if let Some(parent) = stale {
                // The newer version is taken at the next use.
                st.cache.invalidate(parent);
            }
            stale
        };
        if stale_parent.is_some() {
            self.tell_kernel(Vec::new(), vec![ino]);
        }
    }

    /// The size a handle sees (`fstat`): its pinned version's, if pinned.
    pub fn handle_size(&self, fh: u64) -> Option<u64> {
        self.handles.lock().pinned_size(fh)
    }

    /// Reads a pinned handle's version. A file replaced by another client
    /// (the library gives the new bytes a new item) answers ENOENT: a handle
    /// that has returned nothing yet moves to the item that now has the
    /// name, once; one that has returned bytes fails rather than mix.
    pub(in crate::fs) async fn read_pinned(
        &self,
        ino: Ino,
        fh: u64,
        p: Pinned,
        pattern: Option<u64>,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        let backend = self.backend_of(ino)?;
        let read = |p: Pinned| {
            let backend = backend.clone();
            async move {
                let src = p.source(&backend, ino);
                self.blocks.read(&src, pattern, offset, size as u64).await
            }
        };
        let (served, stale) = match self.handles.lock().get(&fh) {
            Some(Handle::File(h)) => (h.served, h.stale),
            _ => (0, false),
        };
        if stale {
            return Err(FsError::Stale);
        }
        let data = match read(p.clone()).await {
            Err(FsError::NotFound) if served == 0 => {
                let now = self.replacement(ino).await?;
                // The kernel reads up to the size it knows: another size
                // would cut or pad the new bytes. The next open is right.
                let same_size = now.size == p.size;
                if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
                    match same_size {
                        true => h.pinned = Some(now.clone()),
                        false => h.stale = true,
                    }
                }
                if !same_size {
                    let (parent, name) = self.parent_and_name(ino)?;
                    self.forget_names_now(vec![(parent, name)]).await;
                    return Err(FsError::Stale);
                }
                read(now).await?
            }
            other => other?,
        };
        if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
            h.served += data.len() as u64;
        }
        Ok(data)
    }

    /// The item that holds `ino`'s name now, after a re-listing of its
    /// directory; the kernel is told to forget the old one.
    pub(in crate::fs) async fn replacement(&self, ino: Ino) -> FsResult<Pinned> {
        let (parent, name) = self.parent_and_name(ino)?;
        self.state.lock().cache.invalidate(parent);
        self.ensure_listing(parent).await?;
        let now = self.resolve(parent, &name).await?;
        if now == ino {
            return Err(FsError::NotFound);
        }
        self.fresh_attr(now).await?;
        let pinned = {
            let st = self.state.lock();
            let n = st.table.get(now).ok_or(FsError::NotFound)?;
            Pinned {
                entry: n.entry.clone(),
                version: n.content_version,
                size: n.entry.size.unwrap_or(0),
            }
        };
        tracing::info!(path = ?name, size = pinned.size, "a file replaced by another client is read from its new item");
        self.tell_kernel(vec![(parent, name)], vec![ino]);
        Ok(pinned)
    }

    pub async fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let (local, pattern, pinned) = {
            let st = self.state.lock();
            let local = st.table.get(ino).ok_or(FsError::NotFound)?.local.clone();
            let (pattern, pinned) = match self.handles.lock().get_mut(&fh) {
                Some(Handle::File(h)) => (h.pattern.advance(offset, size as u64), h.pinned.clone()),
                _ => (None, None),
            };
            (local, pattern, pinned)
        };
        let data = match (local, pinned) {
            // The fast path reads spools; one made since is read here, on
            // a blocking thread (disk work).
            (Some(l), _) => {
                let read = self
                    .background
                    .wait_for(move || l.read_at(offset, size as u64));
                Bytes::from(read.await??)
            }
            (None, Some(p)) => self.read_pinned(ino, fh, p, pattern, offset, size).await?,
            (None, None) => {
                let attr = self.fresh_attr(ino).await?;
                let (_, backend, entry) = self.remote_of(ino)?;
                let version = self
                    .state
                    .lock()
                    .table
                    .get(ino)
                    .map(|n| n.content_version)
                    .unwrap_or(0);
                {
                    let src = Source {
                        backend: &backend,
                        entry: &entry,
                        ino,
                        version,
                        size: attr.size,
                    };
                    self.blocks.read(&src, pattern, offset, size as u64).await?
                }
            }
        };
        self.counters
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }
}
