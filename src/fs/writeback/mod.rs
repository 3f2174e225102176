//! Write-back: the local spool that holds written bytes, the journal that
//! makes them survive a crash, the upload of a closed file (with conflict
//! copies and informed retries of creating calls), background retries,
//! recovery at start and the drain at shutdown.

pub(in crate::fs) mod drain;
pub mod journal;
pub(in crate::fs) mod recover;
pub(in crate::fs) mod retry;
pub mod slots;
pub mod spool;
pub mod syncs;
pub(in crate::fs) mod upload;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use parking_lot::Mutex;

use crate::fs::backend::{Content, Key};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use journal::{Journal, PendingUpload};
use spool::{LocalFile, Spool};

/// The write-back component's own state, under its own locks: where
/// written bytes wait (spool), what makes them survive a crash (journal),
/// which files a background retry is uploading, and what an earlier run
/// left (refused uploads, local-only files).
pub struct WriteBack {
    pub(in crate::fs) spool: Spool,
    pub(in crate::fs) journal: Journal,
    /// Files with a background upload retry running.
    pub(in crate::fs) retrying: Mutex<HashSet<Ino>>,
    /// Journal records of earlier runs that the server refused for good:
    /// kept, shown by `status`, retried on SIGHUP.
    pub(in crate::fs) refused_at_start: Mutex<Vec<PendingUpload>>,
    /// Local-only files of an earlier run, by (backend, directory key):
    /// shown when their directory is first listed.
    pub(in crate::fs) adopted: Mutex<HashMap<(usize, Key), Vec<PendingUpload>>>,
}

impl WriteBack {
    /// Opens the spool in `cache_dir` and the journal in `state_dir`.
    pub fn open(cache_dir: &Path, state_dir: &Path) -> FsResult<WriteBack> {
        let spool = Spool::open(cache_dir)
            .map_err(|e| FsError::Io(format!("cache dir {}: {e}", cache_dir.display())))?;
        let journal = Journal::open_owned(state_dir)
            .map_err(|e| FsError::Io(format!("state dir {}: {e}", state_dir.display())))?;
        Ok(WriteBack {
            spool,
            journal,
            retrying: Mutex::default(),
            refused_at_start: Mutex::default(),
            adopted: Mutex::default(),
        })
    }

    /// Makes a closed file's bytes and its journal record durable: a small
    /// file's bytes go inline into the record's slot (one fdatasync in
    /// all), a larger one's spool file is fsynced and named by a record
    /// file. Returns what the upload sends: a small file's bytes, already
    /// read, from memory (the very bytes journaled), a larger one's from
    /// its spool file. Blocking: callers run it off tokio's workers.
    pub(in crate::fs) fn durable(
        &self,
        local: &LocalFile,
        record: &PendingUpload,
    ) -> FsResult<Content> {
        let journal_error = |e: std::io::Error| FsError::Io(format!("journal: {e}"));
        if local.size() >= slots::SLOT as u64 {
            self.journal.syncs().timed(|| local.sync())?;
            self.journal.record_spooled(record).map_err(journal_error)?;
            return Ok(Content::Spooled(record.spool.clone()));
        }
        let data = local.read_at(0, local.size())?;
        // A retry of the same bytes: already durable, and left in its
        // slot (a record that moved at each retry could be missed by
        // `status` reading the slots meanwhile).
        let inline = self.journal.holds(record, &data)
            || self
                .journal
                .record_inline(record, &data)
                .map_err(journal_error)?;
        if !inline {
            self.journal.syncs().timed(|| local.sync())?;
            self.journal.record_spooled(record).map_err(journal_error)?;
        }
        Ok(Content::InMemory {
            spool: record.spool.clone(),
            bytes: data.into(),
        })
    }
}
