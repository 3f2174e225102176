//! Start-up recovery: every journal record of an earlier run is uploaded
//! again, or its spool set aside when the record cannot be honoured.

use crate::fs::backend::{Content, Kind};
use crate::fs::core::BridgeFs;
use crate::fs::error::{FsError, FsResult};
use crate::fs::writeback::journal::PendingUpload;
use std::collections::HashSet;
use std::path::PathBuf;

impl BridgeFs {
    /// Uploads every closed-but-not-uploaded file of an earlier run, before
    /// serving. Returns (uploaded, still pending).
    pub async fn recover(&self) -> (usize, usize) {
        // Inline bytes back into their spool files first: from here on a
        // record's bytes are in the file it names.
        let (restored, unrestored) = self.writeback.journal.restore_inline();
        if restored > 0 {
            tracing::info!(
                files = restored,
                "restored small files' bytes from the journal"
            );
        }
        let pending = self.writeback.journal.pending();
        // Spool files no record names are leftovers of files in sync.
        let kept: HashSet<PathBuf> = pending.iter().map(|r| r.spool.clone()).collect();
        let removed = self.writeback.spool.remove_unlisted(&kept);
        if removed > 0 {
            tracing::info!(files = removed, "removed leftover spool files");
        }
        let (mut done, mut left) = (0, 0);
        for rec in pending {
            if unrestored.contains(&rec.id) {
                left += 1; // its bytes stay in the journal for the next start
                continue;
            }
            if !rec.spool.exists() {
                self.set_aside_orphan(&rec);
                continue;
            }
            if rec.local_only {
                self.adopt(rec);
                continue;
            }
            if rec.refused.is_some() {
                tracing::info!(path = ?rec.display_path, reason = ?rec.refused, "kept an upload the server refused; not retried (SIGHUP or `bridgefs pending retry` tries again)");
                self.writeback.refused_at_start.lock().push(rec);
                left += 1;
                continue;
            }
            if self.recover_record(rec).await {
                done += 1;
            } else {
                left += 1;
            }
        }
        (done, left)
    }

    /// Uploads one journal record; true when it went up. A refusal marks
    /// the record and keeps it for `status` and a later retry.
    pub(in crate::fs) async fn recover_record(&self, rec: PendingUpload) -> bool {
        match self.recover_one(&rec).await {
            Ok(()) => {
                tracing::info!(path = ?rec.display_path, "recovered pending upload from the journal");
                self.writeback.journal.remove(&rec.id);
                let _ = std::fs::remove_file(&rec.spool);
                true
            }
            Err(e) => {
                tracing::error!(path = ?rec.display_path, error = %e, "pending upload still failing; kept in the journal");
                if e.is_permanent() {
                    let rec = PendingUpload {
                        refused: Some(e.to_string()),
                        ..rec
                    };
                    let _ = self.writeback.journal.record(&rec);
                    self.writeback.refused_at_start.lock().push(rec);
                }
                false
            }
        }
    }

    /// Keeps a local-only file of an earlier run, to be shown when its
    /// directory is listed (see `BridgeFs::install_adopted`).
    pub(in crate::fs) fn adopt(&self, rec: PendingUpload) {
        let Some(bidx) = self.mounts.iter().position(|m| m.name == rec.backend) else {
            tracing::warn!(path = ?rec.display_path, "a local-only file of a backend no longer configured is kept aside");
            return;
        };
        self.writeback
            .adopted
            .lock()
            .entry((bidx, rec.dir_key.clone()))
            .or_default()
            .push(rec);
    }

    /// A record whose bytes are gone can never upload: reported once, then
    /// kept aside for `bridgefs pending list|drop`, never retried.
    pub(in crate::fs) fn set_aside_orphan(&self, rec: &PendingUpload) {
        tracing::error!(
            path = ?rec.display_path,
            id = %rec.id,
            "pending upload lost its spool file; set aside (see `bridgefs pending list`)"
        );
        if let Err(e) = self.writeback.journal.mark_orphaned(&rec.id) {
            tracing::error!(id = %rec.id, error = %e, "cannot set the journal record aside");
        }
    }

    pub(in crate::fs) async fn recover_one(&self, rec: &PendingUpload) -> FsResult<()> {
        let m = self
            .mounts
            .iter()
            .find(|m| m.name == rec.backend)
            .ok_or_else(|| {
                FsError::Io(format!("backend {} is no longer configured", rec.backend))
            })?;
        if !rec.spool.exists() {
            return Err(FsError::Io(format!(
                "spool file {} is missing",
                rec.spool.display()
            )));
        }
        let listing = m.backend.list(&rec.dir_key).await?;
        // The object it replaces: by key, else by name (an upload that did
        // reach the server before the crash is replaced, not duplicated).
        let existing = listing
            .iter()
            .find(|e| Some(&e.key) == rec.existing_key.as_ref())
            .or_else(|| {
                listing
                    .iter()
                    .find(|e| e.kind == Kind::File && e.name == rec.name)
            });
        m.backend
            .upload(
                &rec.dir_key,
                &rec.name,
                existing,
                &Content::Spooled(rec.spool.clone()),
            )
            .await?;
        Ok(())
    }
}
