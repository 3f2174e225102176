//! File handles: open, create, write into the spool, flush/fsync (which
//! hand the spool to the write-back) and release.

use crate::fs::backend::{Content, Entry, Kind};
use crate::fs::content::ReadPattern;
use crate::fs::core::{Attr, BridgeFs, FileHandle, Handle, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::{Ino, LOCAL_KEY_PREFIX, ROOT};
use crate::fs::namespace::names;
use crate::fs::ops::save::Vacancy;
use crate::fs::writeback::spool::LocalFile;
use crate::fs::writeback::upload::UploadJob;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

impl BridgeFs {
    pub(in crate::fs) fn new_handle(
        &self,
        ino: Ino,
        write: bool,
        append: bool,
        wrote: bool,
        pid: u32,
    ) -> u64 {
        let mut st = self.state.lock();
        let fh = self.handles.lock().insert(Handle::File(FileHandle {
            ino,
            write,
            append,
            wrote,
            only_truncated: false,
            pid,
            pattern: ReadPattern::default(),
            pinned: None,
            served: 0,
            reading: false,
            stale: false,
        }));
        if let Some(n) = st.table.get_mut(ino) {
            n.open_handles += 1;
        }
        fh
    }

    pub async fn open(&self, ino: Ino, flags: i32, pid: u32) -> FsResult<u64> {
        let (is_dir, writable) = {
            let st = self.state.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.is_dir(), n.entry.writable)
        };
        if is_dir {
            return Err(FsError::IsDir);
        }
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = write && flags & libc::O_TRUNC != 0;
        if write {
            if !writable {
                return Err(FsError::ReadOnly);
            }
            let local = self.ensure_local(ino, trunc).await?;
            if trunc && local.size() > 0 {
                local.truncate(0)?;
            }
        } else {
            self.take_newer_version(ino).await?;
            self.fresh_attr(ino).await?;
        }
        let fh = self.new_handle(ino, write, flags & libc::O_APPEND != 0, trunc, pid);
        if trunc {
            self.set_only_truncated(fh);
        }
        if !write {
            self.pin(ino, fh);
        }
        Ok(fh)
    }

    /// See [`FileHandle::only_truncated`].
    pub(in crate::fs) fn set_only_truncated(&self, fh: u64) {
        if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
            h.only_truncated = true;
        }
    }

    /// create(2): an existing name is opened (EEXIST with O_EXCL); a new
    /// file lives in the spool until its close uploads it.
    pub async fn create(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        flags: i32,
        pid: u32,
    ) -> FsResult<(Attr, u64)> {
        names::check_local(name)?;
        if parent == ROOT {
            return Err(FsError::NotPermitted);
        }
        match self.resolve(parent, name).await {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(FsError::Exists),
            Ok(ino) => self.open_as_created(ino, flags, pid).await,
            Err(FsError::NotFound) => {
                // It makes a spool file, disk work: on a blocking thread.
                let (me, name) = (self.clone(), name.to_string());
                let made = self
                    .background
                    .wait_for(move || me.create_new(parent, &name, flags, pid));
                made.await?
            }
            Err(e) => Err(e),
        }
    }

    /// create(2) of a name its directory does not hold: memory and the
    /// spool only, no remote call.
    pub(in crate::fs) fn create_new(
        &self,
        parent: Ino,
        name: &str,
        flags: i32,
        pid: u32,
    ) -> FsResult<(Attr, u64)> {
        let (bidx, backend, dir) = self.remote_of(parent)?;
        if !dir.writable {
            return Err(FsError::ReadOnly);
        }
        backend.check_create(&dir.key)?;
        let local = Arc::new(self.writeback.spool.create()?);
        // After an editor's backup rename, the new file is the next
        // version of the remote file that had this name.
        let vacancy = self.take_vacancy(parent, name);
        let created_here = vacancy.is_none();
        let entry = new_entry(vacancy, &local, name);
        let ino = self.insert_created(bidx, (parent, name), entry, local, created_here);
        // A new file is uploaded on close even if nothing is written (so
        // `touch` creates it remotely); the next version of a vacated file
        // waits for its bytes, like an overwrite (see
        // `FileHandle::only_truncated`).
        let fh = self.new_handle(ino, true, flags & libc::O_APPEND != 0, true, pid);
        if !created_here {
            self.set_only_truncated(fh);
        }
        self.touch_dir(parent);
        let attr = Self::attr_locked(&self.state.lock(), ino)?;
        Ok((attr, fh))
    }

    /// create(2) of a name that exists: an open, and the kernel's lookup.
    async fn open_as_created(&self, ino: Ino, flags: i32, pid: u32) -> FsResult<(Attr, u64)> {
        let fh = self.open(ino, flags, pid).await?;
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(ino) {
            n.lookups += 1;
        }
        Ok((Self::attr_locked(&st, ino)?, fh))
    }

    /// A new file's node, with its spool, in its directory's listing.
    fn insert_created(
        &self,
        bidx: usize,
        (parent, name): (Ino, &str),
        entry: Entry,
        local: Arc<LocalFile>,
        created_here: bool,
    ) -> Ino {
        let mut st = self.state.lock();
        let ino = st
            .table
            .insert_local(bidx, parent, name.to_string(), entry, local);
        st.locals.insert(ino);
        if let Some(n) = st.table.get_mut(ino) {
            n.created_here = created_here;
            n.lookups += 1;
        }
        if let Some(l) = st.cache.any(parent) {
            l.insert(name.to_string(), ino);
        }
        st.cache.clear_negative(parent, name);
        ino
    }

    /// The spool of a file, created (and filled from the remote unless the
    /// content is about to be truncated) on first use.
    pub(in crate::fs) async fn ensure_local(
        &self,
        ino: Ino,
        empty: bool,
    ) -> FsResult<Arc<LocalFile>> {
        if let Some(l) = self.local_of(ino) {
            return Ok(l);
        }
        let lock = self.lock_for(ino);
        let _guard = lock.lock().await;
        if let Some(l) = self.local_of(ino) {
            return Ok(l);
        }
        let local = self.new_spool().await?;
        if !empty {
            if let Err(e) = self.fill(ino, &local).await {
                self.recycle_later(local);
                return Err(e);
            }
            local.mark_clean();
        }
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(ino) {
            n.local = Some(local.clone());
        }
        st.locals.insert(ino);
        Ok(local)
    }

    /// A spool file for a new local copy, from a blocking thread: making
    /// one is disk work (a reused one was renamed and emptied already).
    async fn new_spool(&self) -> FsResult<Arc<LocalFile>> {
        let spool = self.writeback.spool.clone();
        let made = self.background.wait_for(move || spool.create()).await?;
        made.map(Arc::new)
    }

    /// Copies the remote content into a new spool file, a chunk at a time,
    /// each written on a blocking thread (disk work, off the worker that
    /// serves every remote call).
    async fn fill(&self, ino: Ino, local: &Arc<LocalFile>) -> FsResult<()> {
        let attr = self.fresh_attr(ino).await?;
        let (_, backend, entry) = self.remote_of(ino)?;
        let mut offset = 0;
        while offset < attr.size {
            let len = FILL_CHUNK.min(attr.size - offset);
            let chunk = backend.read(&entry, offset, len).await?;
            if chunk.is_empty() {
                break;
            }
            let (to, read) = (local.clone(), chunk.len() as u64);
            let written = self
                .background
                .wait_for(move || to.write_at(offset, &chunk));
            written.await??;
            offset += read;
        }
        Ok(())
    }

    /// New content: mtime and ctime are now (a time set by utimens
    /// before gives way, as on a local disk).
    pub(in crate::fs) fn touch(&self, ino: Ino) {
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(ino) {
            let now = SystemTime::now();
            n.entry.mtime = Some(now);
            let set = n.attrs_mut();
            set.mtime = None;
            set.ctime = Some(now);
        }
    }

    /// A directory whose entries changed: mtime and ctime are now (kept in
    /// memory; the remote folder's own times are what another machine sees).
    pub(in crate::fs) fn touch_dir(&self, dir: Ino) {
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(dir) {
            let now = SystemTime::now();
            let set = n.attrs_mut();
            set.mtime = Some(now);
            set.ctime = Some(now);
        }
    }

    pub(in crate::fs) fn parent_and_name(&self, ino: Ino) -> FsResult<(Ino, String)> {
        let st = self.state.lock();
        let n = st.table.get(ino).ok_or(FsError::NotFound)?;
        Ok((n.parent, n.name.clone()))
    }

    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (local, append) = {
            let st = self.state.lock();
            let append = match self.handles.lock().get_mut(&fh) {
                Some(Handle::File(h)) if h.write && h.ino == ino => {
                    h.wrote = true;
                    h.only_truncated = false;
                    h.append
                }
                _ => return Err(FsError::BadHandle),
            };
            let local = st
                .table
                .get(ino)
                .and_then(|n| n.local.clone())
                .ok_or(FsError::BadHandle)?;
            (local, append)
        };
        let offset = if append { local.size() } else { offset };
        local.write_at(offset, data)?;
        self.touch(ino);
        self.counters
            .bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data.len() as u32)
    }

    /// close(): uploads what this handle wrote and reports the upload's
    /// errno. A flush with nothing written, or from another process than the
    /// writer, does nothing.
    pub async fn flush(self: &Arc<Self>, ino: Ino, fh: u64, pid: u32) -> FsResult<()> {
        // Only the opener's close: a forked child closing its copy of the
        // descriptor (at exec) flushes too, and the reader goes on.
        let opener = matches!(self.handles.lock().get(&fh), Some(Handle::File(h)) if h.pid == pid);
        if opener {
            self.reader_done(ino, fh);
        }
        let should = match self.handles.lock().get(&fh) {
            Some(Handle::File(h)) => h.wrote && h.pid == pid && !h.only_truncated,
            _ => false,
        };
        if !should {
            return Ok(());
        }
        self.commit(ino).await?;
        self.flushed(fh);
        Ok(())
    }

    /// close()'s steps on the FUSE worker thread: a close with nothing to
    /// upload is answered, and a writer's close makes its bytes durable
    /// (the journal record fsynced) right here, so that tokio is needed
    /// only for the upload itself ([`BridgeFs::flush_upload`]).
    pub fn flush_here(self: &Arc<Self>, ino: Ino, fh: u64, pid: u32) -> FlushStep {
        if let Some(done) = self.flush_cached(ino, fh, pid) {
            return FlushStep::Done(done);
        }
        self.reader_done(ino, fh);
        match self.commit_here(ino) {
            None => FlushStep::LongWay,
            Some(Ok(Some((job, content)))) => {
                FlushStep::Upload(Box::new(DurableFlush { fh, job, content }))
            }
            Some(Ok(None)) => {
                self.flushed(fh);
                FlushStep::Done(Ok(()))
            }
            Some(Err(e)) => FlushStep::Done(Err(e)),
        }
    }

    /// The upload of a close whose bytes [`BridgeFs::flush_here`] made
    /// durable; its result is close()'s.
    pub async fn flush_upload(self: &Arc<Self>, flush: Box<DurableFlush>) -> FsResult<()> {
        self.upload_durable(flush.job, flush.content).await?;
        self.flushed(flush.fh);
        Ok(())
    }

    /// The handle's writes are on the remote: its release uploads nothing.
    fn flushed(&self, fh: u64) {
        if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
            h.wrote = false;
        }
    }

    pub async fn fsync(self: &Arc<Self>, ino: Ino) -> FsResult<()> {
        self.commit(ino).await
    }

    pub async fn release(self: &Arc<Self>, ino: Ino, fh: u64) {
        self.reader_done(ino, fh);
        let handle = self.handles.lock().remove(&fh);
        let Some(Handle::File(h)) = handle else {
            return;
        };
        if let Some(n) = self.state.lock().table.get_mut(ino) {
            n.open_handles = n.open_handles.saturating_sub(1);
        }
        if h.wrote {
            // The flush was skipped (another process closed last) or failed:
            // upload now; a failure keeps retrying in the background.
            let _ = self.commit(ino).await;
        }
        self.release_local_if_idle(ino);
    }

    /// Drops the spool of a file that is in sync and no longer open.
    pub(in crate::fs) fn release_local_if_idle(&self, ino: Ino) {
        let mut st = self.state.lock();
        let Some(node) = st.table.get_mut(ino) else {
            return;
        };
        let idle = node.open_handles == 0 && node.is_remote();
        let Some(local) = node.local.clone() else {
            return;
        };
        if node.open_handles == 0 && node.gone {
            // The last descriptor of an unlinked file: its bytes go now.
            node.local = None;
            st.locals.remove(&ino);
            drop(st);
            self.forget_spool(local);
            return;
        }
        if node.open_handles == 0 && local.write_error().is_some() {
            drop(local);
            let dropped = self.drop_incomplete(&mut st, ino);
            drop(st);
            if let Some((spool, entry)) = dropped {
                self.forget_spool(spool);
                self.tell_kernel(vec![entry], vec![ino]);
            }
            return;
        }
        if idle && !local.dirty() {
            node.local = None;
            st.locals.remove(&ino);
            let version = st.table.bump_version();
            if let Some(n) = st.table.get_mut(ino) {
                n.content_version = version;
            }
            drop(st);
            self.recycle_later(local);
        }
    }

    /// Empties a spool file nothing names any more for the next new file,
    /// off the runtime's worker (see `Background::off_the_runtime`).
    fn recycle_later(&self, local: Arc<LocalFile>) {
        let spool = self.writeback.spool.clone();
        self.background
            .off_the_runtime(move || spool.recycle(local));
    }

    /// Deletes a spool file and its journal record: disk work, so callers
    /// run it with no lock held (a slow disk must not stall other requests).
    pub(in crate::fs) fn forget_spool(&self, local: Arc<LocalFile>) {
        let (journal, spool) = (self.writeback.journal.clone(), self.writeback.spool.clone());
        let forget = move || {
            journal.remove(&local.id);
            spool.recycle(local);
        };
        // Nothing can journal this file again (it is gone or in sync), so
        // a blocking thread may do it later; a FUSE thread does it now.
        self.background.off_the_runtime(forget);
    }

    /// Forgets the spool of a file whose last writes failed (the disk was
    /// full), once it is closed: the remote keeps its previous version, and
    /// a file that was never uploaded is gone, as nothing of it arrived.
    /// Returns the spool to forget (see [`Self::forget_spool`]) and the name
    /// the kernel must forget.
    pub(in crate::fs) fn drop_incomplete(
        &self,
        st: &mut State,
        ino: Ino,
    ) -> Option<(Arc<LocalFile>, (Ino, String))> {
        let node = st.table.get_mut(ino)?;
        let local = node.local.take()?;
        tracing::warn!(id = %local.id, "a write to this file failed; its spool is dropped, nothing of it is uploaded");
        let (parent, name, remote) = (node.parent, node.name.clone(), node.is_remote());
        st.locals.remove(&ino);
        if !remote {
            if let Some(l) = st.cache.any(parent) {
                l.remove(&name);
            }
            st.table.mark_gone(ino);
        }
        let version = st.table.bump_version();
        if let Some(n) = st.table.get_mut(ino) {
            n.content_version = version;
        }
        Some((local, (parent, name)))
    }
}

/// How a `flush` goes on after [`BridgeFs::flush_here`].
pub enum FlushStep {
    /// Answered on the FUSE thread.
    Done(FsResult<()>),
    /// Durable; the upload remains, on tokio.
    Upload(Box<DurableFlush>),
    /// Another upload of the file runs: [`BridgeFs::flush`] waits for it.
    LongWay,
}

/// A close whose bytes and journal record are on disk, its upload to go.
pub struct DurableFlush {
    fh: u64,
    job: UploadJob,
    content: Content,
}

/// The entry of a new file: the vacated remote file's (its next version),
/// or a local one until the first upload.
fn new_entry(vacancy: Option<Vacancy>, local: &LocalFile, name: &str) -> Entry {
    let now = SystemTime::now();
    match vacancy {
        Some(v) => Entry {
            mtime: Some(now),
            ..v.entry
        },
        None => local_entry(local, name, Some(now)),
    }
}

/// The entry of a file that lives only in its spool (not uploaded yet, or
/// local-only): keyed by the spool's id.
pub(in crate::fs) fn local_entry(
    local: &LocalFile,
    name: &str,
    mtime: Option<SystemTime>,
) -> Entry {
    Entry {
        key: format!("{LOCAL_KEY_PREFIX}{}", local.id),
        name: name.to_string(),
        kind: Kind::File,
        id: String::new(),
        size: Some(local.size()),
        mtime,
        ctime: mtime,
        writable: true,
        version: None,
    }
}

/// Chunk used to fill a spool from the remote.
pub(in crate::fs) const FILL_CHUNK: u64 = 8 << 20;
