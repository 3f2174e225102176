//! Uploads a spooled file: the journal record first, then the upload, then
//! the settled entry; conflicts saved as copies; creating calls never
//! repeated blindly.

use crate::fs::backend::{Backend, Content, Entry, Key, Kind};
use crate::fs::core::{same_version, BridgeFs};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use crate::fs::namespace::names;
use crate::fs::writeback::journal::PendingUpload;
use crate::fs::writeback::spool::LocalFile;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// One upload about to go: what [`BridgeFs::commit`] gathered under the
/// file's upload lock, which it holds until the upload is done.
pub struct UploadJob {
    ino: Ino,
    local: Arc<LocalFile>,
    _guard: OwnedMutexGuard<()>,
    /// The change the upload sends (later writes leave the file dirty).
    generation: u64,
    bidx: usize,
    backend: Arc<dyn Backend>,
    record: PendingUpload,
    /// The remote file the bytes replace, if the file has one.
    existing: Option<Entry>,
}

impl BridgeFs {
    /// The spool's bytes and the journal record naming them on disk, before
    /// the upload starts (see [`WriteBack::durable`]): fsyncs, run on a
    /// blocking thread so that tokio's workers go on serving other files
    /// meanwhile.
    async fn make_durable(self: &Arc<Self>, job: &UploadJob) -> FsResult<Content> {
        let (me, local, record) = (self.clone(), job.local.clone(), job.record.clone());
        let written = self
            .background
            .wait_for(move || me.writeback.durable(&local, &record));
        written.await?
    }

    /// Someone else changed the remote file after the local change began:
    /// ours goes up next to it as `name (conflict …).ext` and this inode
    /// becomes that copy (an editor still holding it goes on writing its
    /// own copy); theirs shows under the name again. Never a silent
    /// overwrite.
    async fn save_as_conflict(&self, job: &UploadJob, content: &Content) -> FsResult<()> {
        let UploadJob {
            ino,
            local,
            generation,
            backend,
            record,
            ..
        } = job;
        let (ino, generation) = (*ino, *generation);
        let remote_name = names::conflict_name(&record.name, chrono::Local::now());
        let copy = PendingUpload {
            name: remote_name.clone(),
            existing_key: None,
            ..record.clone()
        };
        let entry = upload_informed(backend, &copy, content, None).await?;
        self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = ?record.display_path, kept_as = ?remote_name, "someone else changed this file meanwhile: theirs is kept, ours is saved as a conflict copy");
        local.mark_uploaded(generation);
        let (parent, old_name, new_name) = {
            let mut st = self.state.lock();
            let node = st.table.get(ino).ok_or(FsError::NotFound)?;
            let (parent, old_name) = (node.parent, node.name.clone());
            let new_name = names::escape(&remote_name);
            st.table.rebind(ino, entry);
            if let Some(n) = st.table.get_mut(ino) {
                n.name = new_name.clone();
            }
            // Theirs comes back under the name with the next listing.
            st.cache.invalidate(parent);
            st.cache.clear_negative(parent, &new_name);
            (parent, old_name, new_name)
        };
        if !local.dirty() {
            self.forget_record(&record.id).await;
            local.set_journaled(false);
        }
        self.forget_names_now(vec![(parent, old_name), (parent, new_name)])
            .await;
        self.tell_kernel(Vec::new(), vec![ino]);
        Ok(())
    }

    /// Uploads a file's spooled bytes if the remote lacks them: journal
    /// first, then one upload; on failure the spool and the record stay and
    /// a background retry starts.
    pub async fn commit(self: &Arc<Self>, ino: Ino) -> FsResult<()> {
        let Some(local) = self.local_of(ino) else {
            return Ok(());
        };
        let guard = local.upload.clone().lock_owned().await;
        let Some(job) = self.upload_job(ino, local, guard)? else {
            return Ok(());
        };
        let content = self.make_durable(&job).await?;
        self.upload_durable(job, content).await
    }

    /// [`BridgeFs::commit`]'s steps before the network, on the calling
    /// thread, for a caller that may block on the disk (a FUSE worker):
    /// the journal record is on disk when it returns the job, whose
    /// [`BridgeFs::upload_durable`] then needs tokio only for the remote
    /// call. `Ok(None)`: nothing to upload. `None`: another upload of the
    /// file runs; only `commit` can wait for it.
    pub(in crate::fs) fn commit_here(
        self: &Arc<Self>,
        ino: Ino,
    ) -> Option<FsResult<Option<(UploadJob, Content)>>> {
        let Some(local) = self.local_of(ino) else {
            return Some(Ok(None));
        };
        let guard = local.upload.clone().try_lock_owned().ok()?;
        let job = match self.upload_job(ino, local, guard) {
            Ok(Some(job)) => job,
            other => return Some(other.map(|_| None)),
        };
        Some(
            self.writeback
                .durable(&job.local, &job.record)
                .map(|content| Some((job, content))),
        )
    }

    /// What an upload of `ino` needs, read under its upload lock; `None`
    /// when the remote already holds the bytes (or the file is gone).
    fn upload_job(
        &self,
        ino: Ino,
        local: Arc<LocalFile>,
        guard: OwnedMutexGuard<()>,
    ) -> FsResult<Option<UploadJob>> {
        if !local.dirty() {
            return Ok(None);
        }
        // Incomplete bytes never go up; refused ones wait to be asked for.
        if let Some(e) = local.write_error().or_else(|| local.refused()) {
            return Err(e);
        }
        let generation = local.generation();
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        if node.gone {
            return Ok(None);
        }
        let bidx = node.backend.ok_or(FsError::NotPermitted)?;
        let record = self.pending_record(&st, ino).ok_or(FsError::NotFound)?;
        Ok(Some(UploadJob {
            ino,
            local,
            _guard: guard,
            generation,
            bidx,
            backend: self.mounts[bidx].backend.clone(),
            record,
            existing: node.is_remote().then(|| node.entry.clone()),
        }))
    }

    /// The upload of bytes already durable: a conflict copy if someone else
    /// changed the remote file meanwhile, else the upload itself.
    pub(in crate::fs) async fn upload_durable(
        self: &Arc<Self>,
        job: UploadJob,
        content: Content,
    ) -> FsResult<()> {
        let UploadJob {
            ino,
            local,
            generation,
            bidx,
            backend,
            record,
            existing,
            ..
        } = &job;
        local.set_journaled(true);
        if record.local_only {
            // Kept here for good: durable, and never uploaded.
            local.mark_uploaded(*generation);
            return Ok(());
        }
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        let existing = match existing {
            Some(base) => match backend.current(&record.dir_key, base).await? {
                Some(theirs) if !same_version(base, &theirs) => {
                    return self.save_as_conflict(&job, &content).await;
                }
                Some(_) => Some(base),
                // Deleted by someone else meanwhile: ours goes up as new.
                None => None,
            },
            None => None,
        };
        match upload_informed(backend, record, &content, existing).await {
            Ok(entry) => {
                self.on_uploaded(*ino, *bidx, local, *generation, entry);
                if !local.dirty() {
                    self.forget_record(&record.id).await;
                    local.set_journaled(false);
                }
                tracing::debug!(path = ?record.display_path, "uploaded");
                Ok(())
            }
            Err(e) if e.is_permanent() => Err(self.on_refused(local, record.clone(), e).await),
            Err(e) => {
                self.counters
                    .upload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = ?record.display_path, error = %e, "upload failed; the bytes stay spooled and journaled and will be retried");
                self.spawn_retry(*ino);
                Err(e)
            }
        }
    }

    /// The remote took the bytes of `generation`: the node takes the
    /// remote's entry (its times, mode and owner follow it).
    fn on_uploaded(
        &self,
        ino: Ino,
        bidx: usize,
        local: &Arc<LocalFile>,
        generation: u64,
        mut entry: Entry,
    ) {
        local.mark_uploaded(generation);
        if entry.size.is_none() {
            entry.size = Some(local.size());
        }
        let mut st = self.state.lock();
        let old_key = st.table.get(ino).map(|n| n.entry.key.clone());
        st.table.rebind(ino, entry);
        if let Some(n) = st.table.get_mut(ino) {
            n.local = Some(local.clone());
        }
        Self::invalidate_views(&mut st, bidx);
        drop(st);
        self.restamp(ino, old_key.as_deref());
    }

    /// The server refused the bytes for good (a 4xx): they stay spooled and
    /// journaled, marked refused, not retried until someone asks.
    async fn on_refused(&self, local: &LocalFile, record: PendingUpload, e: FsError) -> FsError {
        self.counters
            .upload_failures
            .fetch_add(1, Ordering::Relaxed);
        local.set_refused(Some(e.clone()));
        let record = PendingUpload {
            refused: Some(e.to_string()),
            ..record
        };
        if let Err(j) = self.rewrite_record(record.clone()).await {
            tracing::error!(path = ?record.display_path, error = %j, "cannot mark the journal record refused");
        }
        tracing::error!(path = ?record.display_path, error = %e, "upload refused by the server; kept spooled and journaled, not retried (SIGHUP or `bridgefs pending retry` tries again)");
        e
    }

    /// Forgets the journal record of bytes now on the remote: an unlink
    /// and a slot clear, disk work, so on a blocking thread (never on
    /// tokio's worker, which a slow disk would stall for every remote
    /// call). The caller holds the file's upload lock: no newer record of
    /// the file is written meanwhile, and the lock goes only once this one
    /// is gone.
    async fn forget_record(&self, id: &str) {
        let (journal, id) = (self.writeback.journal.clone(), id.to_string());
        let _ = self.background.wait_for(move || journal.remove(&id)).await;
    }

    /// Rewrites a journal record where its bytes already are (fsyncs), on
    /// a blocking thread, and waits for it: the caller's next step assumes
    /// it is on disk, and tokio's worker goes on serving meanwhile.
    pub(in crate::fs) async fn rewrite_record(&self, rec: PendingUpload) -> std::io::Result<()> {
        let journal = self.writeback.journal.clone();
        self.background
            .blocking(move || journal.record(&rec))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Waits for an upload of `ino` under way and holds off the next one
    /// (the guard), then reads the file's identity: the upload may have
    /// given it a remote one, or a new one.
    pub(in crate::fs) async fn settle(
        &self,
        ino: Ino,
    ) -> FsResult<(Option<tokio::sync::OwnedMutexGuard<()>>, bool, Entry)> {
        let local = self.local_of(ino);
        let guard = match local {
            Some(l) => Some(l.upload.clone().lock_owned().await),
            None => None,
        };
        let st = self.state.lock();
        let n = st.table.get(ino).ok_or(FsError::NotFound)?;
        Ok((guard, n.is_remote(), n.entry.clone()))
    }
}

/// Attempts of one creating call (a new file's upload, a mkdir) before the
/// error is reported; with growing pauses they span about 3 s, enough to
/// ride out a burst of 503/429/dropped answers (the background retry of a
/// file goes on after that).
pub(in crate::fs) const CREATE_ATTEMPTS: u32 = 6;

/// Uploads a spooled file: a new one through [`create_informed`]; a
/// replacing upload is not repeated here (its background retry is).
pub(in crate::fs) async fn upload_informed(
    backend: &Arc<dyn Backend>,
    rec: &PendingUpload,
    content: &Content,
    existing: Option<&Entry>,
) -> FsResult<Entry> {
    if existing.is_some() {
        return backend
            .upload(&rec.dir_key, &rec.name, existing, content)
            .await;
    }
    create_informed(backend, &rec.dir_key, &rec.name, Kind::File, || {
        backend.upload(&rec.dir_key, &rec.name, None, content)
    })
    .await
}

/// Runs a creating call that the HTTP client never repeats blindly (its
/// answer may have been lost after the server acted). After a transient
/// failure the parent is re-read: an entry of that name and kind is what
/// the failed call created, and is adopted; otherwise the call is tried
/// again. A 409 after such a failure means the same. A 409 on the first
/// attempt is a real EEXIST.
pub(in crate::fs) async fn create_informed<F, Fut>(
    backend: &Arc<dyn Backend>,
    dir: &Key,
    name: &str,
    kind: Kind,
    create: F,
) -> FsResult<Entry>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = FsResult<Entry>>,
{
    let mut attempt = 1;
    loop {
        let err = match create().await {
            Ok(e) => return Ok(e),
            Err(e) => e,
        };
        let after_failure = attempt > 1 && matches!(err, FsError::Exists);
        if !(is_transient(&err) || after_failure) || attempt >= CREATE_ATTEMPTS {
            return Err(err);
        }
        tracing::warn!(name = ?name, error = %err, attempt, "creating call failed; re-reading the folder before trying again");
        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        attempt += 1;
        if let Ok(list) = backend.list(dir).await {
            if let Some(found) = list.into_iter().find(|x| x.kind == kind && x.name == name) {
                return Ok(found);
            }
        }
        if after_failure {
            return Err(err);
        }
    }
}

/// Failures worth another attempt (5xx, 429, connection, timeout).
pub(in crate::fs) fn is_transient(e: &FsError) -> bool {
    match e {
        FsError::Io(_) | FsError::TimedOut(_) | FsError::TryAgain(_) => true,
        FsError::NotFound
        | FsError::Exists
        | FsError::NotEmpty
        | FsError::NotDir
        | FsError::IsDir
        | FsError::ReadOnly
        | FsError::NotPermitted
        | FsError::AccessDenied(_)
        | FsError::CrossDevice
        | FsError::Invalid(_)
        | FsError::NameTooLong
        | FsError::TooBig
        | FsError::NoData
        | FsError::NotSupported
        | FsError::Range
        | FsError::BadHandle
        | FsError::NoSuchIoctl
        | FsError::LeftToKernel
        | FsError::NoSpace
        | FsError::Stale => false,
    }
}
