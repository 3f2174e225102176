//! The pending-upload journal: one small JSON record per closed file whose
//! bytes the remote does not hold yet, written (and fsynced) before the
//! upload starts and removed when it succeeds. After a crash, the next start
//! uploads every record before serving.
//!
//! A small file's record carries its bytes in a slot of one file (see
//! [`super::slots`]): one fdatasync makes both durable. A larger file's
//! record is a file of its own naming the (fsynced) spool file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::slots::Slots;
use super::syncs::Syncs;
use crate::fs::backend::Key;

/// One upload the remote has not confirmed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingUpload {
    /// The spool file's id.
    pub id: String,
    /// The backend's `mount_as` name (stable across restarts).
    pub backend: String,
    /// The directory the file goes to.
    pub dir_key: Key,
    /// The remote name.
    pub name: String,
    /// The remote object it replaces, if any.
    pub existing_key: Option<Key>,
    /// Where the bytes are.
    pub spool: PathBuf,
    /// A path for humans and logs (`clients/1/report.pdf`).
    pub display_path: String,
    /// The server's reason when it refused the upload for good (a 4xx):
    /// such a record is kept but not retried until someone asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A local-only file (see `mount.local_only`): never uploaded; the
    /// record keeps it across a restart. `name` is then the local name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_only: bool,
    /// Order of writing, set by the journal: of two records of one id (a
    /// crash between writing the new one and removing the old), the
    /// higher is the one that counts.
    #[serde(default)]
    pub seq: u64,
    /// Written by another process than the daemon (`pending retry`) over
    /// a record whose bytes are in a journal slot: they stay there and are
    /// still restored at start, though this record counts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bytes_in_slot: bool,
}

/// The file extension of an orphaned record.
const ORPHANED: &str = "orphaned";

#[derive(Clone)]
pub struct Journal {
    dir: PathBuf,
    slots: Arc<Slots>,
    /// The daemon's own journal (it holds the instance lock): only it
    /// writes and reuses slots. Another process (`status`, `pending`)
    /// writes record files, which a later `seq` makes count.
    owner: bool,
    /// The last `seq` given.
    seq: Arc<AtomicU64>,
    /// The disk syncs its records cost (shared with the slots).
    syncs: Arc<Syncs>,
}

impl Journal {
    /// The journal as another process reads it (`status`, `pending`, tests).
    pub fn open(state_dir: &Path) -> std::io::Result<Journal> {
        Self::open_as(state_dir, false)
    }

    /// The daemon's journal (see [`Journal::owner`](Journal)).
    pub fn open_owned(state_dir: &Path) -> std::io::Result<Journal> {
        Self::open_as(state_dir, true)
    }

    fn open_as(state_dir: &Path, owner: bool) -> std::io::Result<Journal> {
        let dir = state_dir.join("pending");
        std::fs::create_dir_all(&dir)?;
        crate::fs::writeback::spool::private(&dir)?;
        let syncs = Arc::new(Syncs::default());
        let slots = Arc::new(Slots::open(&dir, owner, syncs.clone())?);
        let journal = Journal {
            dir,
            slots,
            owner,
            seq: Arc::default(),
            syncs,
        };
        // Above every record on disk, whatever the clock says now.
        let last = journal.every_record().map(|r| r.seq).max().unwrap_or(0);
        journal.seq.store(last, Ordering::Relaxed);
        Ok(journal)
    }

    /// The disk syncs made for records and their bytes.
    pub fn syncs(&self) -> &Syncs {
        &self.syncs
    }

    /// Every record on disk, of every id and kind (slots, record files,
    /// orphaned records).
    fn every_record(&self) -> impl Iterator<Item = PendingUpload> {
        let inline = self.slots.all().into_iter().map(|s| s.record);
        let files = self.read_all("json").into_iter().chain(self.orphaned());
        files.chain(inline)
    }

    /// A `seq` above every one given before or found on disk (nanoseconds
    /// of the clock, or one more than the last).
    fn next_seq(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let last = self.seq.fetch_max(now, Ordering::Relaxed).max(now);
        let next = last + 1;
        self.seq.fetch_max(next, Ordering::Relaxed);
        next
    }

    fn sequenced(&self, p: &PendingUpload) -> PendingUpload {
        PendingUpload {
            seq: self.next_seq(),
            ..p.clone()
        }
    }

    /// Writes a record with the file's bytes inline, durably (one
    /// fdatasync); `Ok(false)`: they do not fit a slot, or every slot is
    /// taken; the caller then syncs the spool and calls
    /// [`Journal::record_spooled`].
    pub fn record_inline(&self, p: &PendingUpload, data: &[u8]) -> std::io::Result<bool> {
        if !self.owner {
            return Ok(false);
        }
        let p = self.sequenced(p);
        let json = serde_json::to_vec(&p).map_err(std::io::Error::other)?;
        if !Slots::fits(&json, data) || !self.slots.write(&p, data)? {
            return Ok(false);
        }
        let _ = std::fs::remove_file(self.path(&p.id));
        Ok(true)
    }

    /// Whether a slot already holds this record (whatever its `seq`) with
    /// these bytes.
    pub fn holds(&self, p: &PendingUpload, data: &[u8]) -> bool {
        self.slots.get(&p.id).is_some_and(|held| {
            let same = PendingUpload {
                seq: held.record.seq,
                ..p.clone()
            };
            held.record == same && held.data == data
        })
    }

    /// Rewrites a record whose bytes are where its last version left them
    /// (a rename, a refusal): inline bytes stay inline, else the spool
    /// file is named.
    pub fn record(&self, p: &PendingUpload) -> std::io::Result<()> {
        if let Some(held) = self.slots.get(&p.id) {
            if self.record_inline(p, &held.data)? {
                return Ok(());
            }
            // It no longer fits a slot, or another process writes: the
            // record file names the spool file, made durable first (the
            // daemon's spool holds the bytes; another process leaves
            // them in the slot too).
            match std::fs::File::open(&p.spool) {
                Ok(spool) => self.syncs.timed(|| spool.sync_all())?,
                Err(e) if self.owner => return Err(e),
                Err(_) => {}
            }
        }
        self.record_spooled(p)
    }

    /// Before serving, after a crash: each inline record's bytes are
    /// written back to its spool file (fsynced), the last closed version,
    /// which the rest of recovery then reads like any spool.
    /// A slot that a later record file of the daemon's outdates (the file
    /// outgrew its slot; the crash came before the slot was cleared) is
    /// cleared instead: that record's bytes are in its fsynced spool.
    /// Each spool is written whole (temp file, rename) or not at all.
    /// Returns how many were restored and the ids that could not be:
    /// recovery leaves those pending, their bytes still in the journal.
    pub fn restore_inline(&self) -> (usize, HashSet<String>) {
        let files: HashMap<String, PendingUpload> = self
            .read_all("json")
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let (mut restored, mut failed) = (0, HashSet::new());
        for slot in self.slots.all() {
            let rec = &slot.record;
            let outdated = files
                .get(&rec.id)
                .is_some_and(|f| f.seq > rec.seq && !f.bytes_in_slot);
            if outdated {
                self.slots.remove(&rec.id);
                continue;
            }
            let tmp = rec.spool.with_extension("restoring");
            let restored_file = write_private(&tmp, &slot.data)
                .and_then(|f| self.syncs.timed(|| f.sync_data()))
                .and_then(|()| std::fs::rename(&tmp, &rec.spool));
            match restored_file {
                Ok(()) => restored += 1,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::error!(path = ?rec.display_path, error = %e, "cannot restore a file's bytes kept in the journal; left pending");
                    failed.insert(rec.id.clone());
                }
            }
        }
        (restored, failed)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a record naming the spool file durably (temp file,
    /// fdatasync, rename, fsync of the dir), then drops an inline one of
    /// the same id. fdatasync suffices for a new file's bytes and length;
    /// the directory's fsync makes the name durable.
    pub fn record_spooled(&self, p: &PendingUpload) -> std::io::Result<()> {
        let p = PendingUpload {
            bytes_in_slot: !self.owner && self.slots.get(&p.id).is_some(),
            ..self.sequenced(p)
        };
        let tmp = self.dir.join(format!("{}.tmp", p.id));
        let json = serde_json::to_vec_pretty(&p).map_err(std::io::Error::other)?;
        let file = write_private(&tmp, &json)?;
        self.syncs.timed(|| file.sync_data())?;
        std::fs::rename(&tmp, self.path(&p.id))?;
        let dir = std::fs::File::open(&self.dir)?;
        self.syncs.timed(|| dir.sync_all())?;
        if self.owner {
            self.slots.remove(&p.id);
        }
        Ok(())
    }

    /// Forgets a record. Another process than the daemon leaves slots
    /// alone: the daemon may be reusing them.
    pub fn remove(&self, id: &str) {
        if self.owner {
            self.slots.remove(id);
        }
        let _ = std::fs::remove_file(self.path(id));
    }

    fn orphan_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ORPHANED}"))
    }

    /// Sets aside a record whose spool file is gone: it can never upload,
    /// so it is not retried; `bridgefs pending` lists and drops it. Only
    /// a record file: a slot holds the bytes themselves, never orphaned.
    pub fn mark_orphaned(&self, id: &str) -> std::io::Result<()> {
        std::fs::rename(self.path(id), self.orphan_path(id))
    }

    /// Clears a record's refusal so that the next start or SIGHUP retries
    /// it; false when no pending record has that id.
    pub fn clear_refused(&self, id: &str) -> std::io::Result<bool> {
        match self.pending().into_iter().find(|r| r.id == id) {
            Some(mut rec) => {
                rec.refused = None;
                self.record(&rec).map(|_| true)
            }
            None => Ok(false),
        }
    }

    /// Records set aside by [`Journal::mark_orphaned`].
    pub fn orphaned(&self) -> Vec<PendingUpload> {
        self.read_all(ORPHANED)
    }

    /// Deletes a record, pending or orphaned, and its spool file; false
    /// when no record has that id.
    pub fn drop_record(&self, id: &str) -> bool {
        let found = self
            .pending()
            .into_iter()
            .chain(self.orphaned())
            .find(|r| r.id == id);
        let Some(rec) = found else {
            return false;
        };
        let _ = std::fs::remove_file(&rec.spool);
        self.remove(id);
        let _ = std::fs::remove_file(self.orphan_path(id));
        true
    }

    /// Every record on disk (unreadable ones are logged and skipped); of
    /// two of one id, the later.
    pub fn pending(&self) -> Vec<PendingUpload> {
        let mut latest: HashMap<String, PendingUpload> = Default::default();
        let inline = self.slots.all().into_iter().map(|s| s.record);
        for rec in self.read_all("json").into_iter().chain(inline) {
            match latest.get(&rec.id) {
                Some(had) if had.seq >= rec.seq => {}
                _ => drop(latest.insert(rec.id.clone(), rec)),
            }
        }
        let mut out: Vec<PendingUpload> = latest.into_values().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn read_all(&self, extension: &str) -> Vec<PendingUpload> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some(extension) {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "unreadable journal record")
                }
            }
        }
        out.sort_by(|a: &PendingUpload, b| a.id.cmp(&b.id));
        out
    }
}

/// Writes `bytes` to a new private (0600) file at `path`, for the caller
/// to sync.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Records and spool files hold users' files and names: private.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(f)
}

#[cfg(test)]
pub(in crate::fs::writeback) mod tests {
    use super::*;

    /// A record of `id` whose spool file is `dir/id` (slots' tests too).
    pub(in crate::fs::writeback) fn rec(dir: &Path, id: &str) -> PendingUpload {
        PendingUpload {
            id: id.into(),
            backend: "apps".into(),
            dir_key: "app/handbook".into(),
            name: format!("{id}.txt"),
            existing_key: None,
            spool: dir.join(id),
            display_path: format!("apps/handbook/{id}.txt"),
            refused: None,
            local_only: false,
            seq: 0,
            bytes_in_slot: false,
        }
    }

    /// The records without their `seq`, which the journal sets.
    fn unsequenced(v: Vec<PendingUpload>) -> Vec<PendingUpload> {
        v.into_iter()
            .map(|r| PendingUpload { seq: 0, ..r })
            .collect()
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let rec = rec(dir.path(), "a1");
        j.record(&rec).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pending/a1.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "a record is private");
        let reopened = Journal::open_owned(dir.path()).unwrap();
        assert_eq!(unsequenced(reopened.pending()), vec![rec]);
        j.remove("a1");
        assert!(j.pending().is_empty());
    }

    #[test]
    fn an_orphaned_record_is_set_aside_then_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let rec = rec(dir.path(), "b2");
        j.record(&rec).unwrap();
        j.mark_orphaned("b2").unwrap();
        assert!(j.pending().is_empty(), "no longer retried");
        assert_eq!(unsequenced(j.orphaned()), vec![rec]);
        assert!(j.drop_record("b2"));
        assert!(j.orphaned().is_empty());
        assert!(!j.drop_record("b2"));
    }

    #[test]
    fn inline_bytes_survive_a_rename_and_come_back_into_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let first = rec(dir.path(), "c3");
        assert!(j.record_inline(&first, b"closed bytes").unwrap());
        assert!(
            !dir.path().join("pending/c3.json").exists(),
            "no record file"
        );
        // A rename rewrites the record: the bytes stay with it.
        let renamed = PendingUpload {
            name: "moved.txt".into(),
            ..first.clone()
        };
        j.record(&renamed).unwrap();
        let reopened = Journal::open_owned(dir.path()).unwrap();
        assert_eq!(unsequenced(reopened.pending()), vec![renamed.clone()]);
        std::fs::write(&first.spool, b"newer bytes never closed").unwrap();
        assert_eq!(reopened.restore_inline().0, 1);
        assert_eq!(std::fs::read(&first.spool).unwrap(), b"closed bytes");
        assert!(reopened.holds(&renamed, b"closed bytes"));
        assert!(!reopened.holds(&renamed, b"other bytes"));
        assert!(!reopened.holds(&first, b"closed bytes"), "another name");
        reopened.remove("c3");
        assert!(Journal::open_owned(dir.path())
            .unwrap()
            .pending()
            .is_empty());
    }

    #[test]
    fn a_spooled_record_replaces_an_inline_one_and_the_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let small = rec(dir.path(), "d4");
        assert!(j.record_inline(&small, b"small").unwrap());
        let too_big = vec![7u8; super::super::slots::SLOT];
        assert!(!j.record_inline(&small, &too_big).unwrap(), "does not fit");
        let grown = PendingUpload {
            display_path: "grown".into(),
            ..small.clone()
        };
        j.record_spooled(&grown).unwrap();
        assert_eq!(unsequenced(j.pending()), vec![grown.clone()]);
        assert_eq!(j.restore_inline().0, 0, "the inline copy is gone");
        // A crash between writing one and removing the other leaves both:
        // the later counts.
        let later = PendingUpload {
            display_path: "later".into(),
            ..small.clone()
        };
        j.slots.write(&j.sequenced(&later), b"x").unwrap();
        assert_eq!(unsequenced(j.pending()), vec![later]);
    }

    #[test]
    fn another_process_never_writes_slots_yet_its_change_counts() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Journal::open_owned(dir.path()).unwrap();
        let refused = PendingUpload {
            refused: Some("413".into()),
            ..rec(dir.path(), "e5")
        };
        assert!(daemon.record_inline(&refused, b"kept bytes").unwrap());
        let cli = Journal::open(dir.path()).unwrap();
        let slots_before = std::fs::read(dir.path().join("pending/slots")).unwrap();
        assert!(cli.clear_refused("e5").unwrap());
        let slots_after = std::fs::read(dir.path().join("pending/slots")).unwrap();
        assert_eq!(slots_before, slots_after, "the slot file untouched");
        let restarted = Journal::open_owned(dir.path()).unwrap();
        let pending = restarted.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].refused, None, "the later record counts");
        assert_eq!(restarted.restore_inline().0, 1);
        assert_eq!(std::fs::read(&refused.spool).unwrap(), b"kept bytes");
        restarted.remove("e5");
        assert!(Journal::open(dir.path()).unwrap().pending().is_empty());
    }

    #[test]
    fn a_slot_outdated_by_a_later_record_file_never_overwrites_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let rec = rec(dir.path(), "f6");
        assert!(j.record_inline(&rec, b"small, closed first").unwrap());
        let old = j.slots.get("f6").unwrap().record;
        // The file grew past a slot and was closed again: its fsynced spool
        // and a record file; then a crash before the old slot was cleared.
        std::fs::write(&rec.spool, b"grown, closed last").unwrap();
        j.record_spooled(&rec).unwrap();
        assert!(j.slots.write(&old, b"small, closed first").unwrap());
        let restarted = Journal::open_owned(dir.path()).unwrap();
        assert_eq!(restarted.restore_inline(), (0, HashSet::new()));
        assert_eq!(std::fs::read(&rec.spool).unwrap(), b"grown, closed last");
        assert!(
            restarted.slots.all().is_empty(),
            "the outdated slot is cleared"
        );
        assert_eq!(unsequenced(restarted.pending()), vec![rec]);
    }

    #[test]
    fn a_restore_that_fails_leaves_the_bytes_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open_owned(dir.path()).unwrap();
        let rec = PendingUpload {
            spool: dir.path().join("no such dir/g7"),
            ..rec(dir.path(), "g7")
        };
        assert!(j.record_inline(&rec, b"only here").unwrap());
        let (restored, failed) = Journal::open_owned(dir.path()).unwrap().restore_inline();
        assert_eq!((restored, failed), (0, HashSet::from(["g7".to_string()])));
        assert!(j.mark_orphaned("g7").is_err(), "a slot is never set aside");
        let again = Journal::open_owned(dir.path()).unwrap();
        assert_eq!(again.slots.get("g7").unwrap().data, b"only here");
    }

    #[test]
    fn another_process_removes_no_slot_and_sequences_past_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Journal::open_owned(dir.path()).unwrap();
        let future = PendingUpload {
            seq: u64::MAX / 2,
            ..rec(dir.path(), "h8")
        };
        assert!(daemon.slots.write(&future, b"x").unwrap());
        let cli = Journal::open(dir.path()).unwrap();
        assert!(cli.next_seq() > u64::MAX / 2, "above what is on disk");
        cli.remove("h8");
        assert_eq!(Journal::open(dir.path()).unwrap().pending().len(), 1);
    }
}
