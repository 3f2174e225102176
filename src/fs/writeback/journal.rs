//! The pending-upload journal: one small JSON record per closed file whose
//! bytes the remote does not hold yet, written (and fsynced) before the
//! upload starts and removed when it succeeds. After a crash, the next start
//! uploads every record before serving.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

/// The file extension of an orphaned record.
const ORPHANED: &str = "orphaned";

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub fn open(state_dir: &Path) -> std::io::Result<Journal> {
        let dir = state_dir.join("pending");
        std::fs::create_dir_all(&dir)?;
        crate::fs::writeback::spool::private(&dir)?;
        Ok(Journal { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a record durably (temp file, fdatasync, rename, fsync of the
    /// dir). fdatasync suffices for a new file's bytes and length; the
    /// directory's fsync makes the name durable.
    pub fn record(&self, p: &PendingUpload) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.dir.join(format!("{}.tmp", p.id));
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Records name users' files: private, like the spool.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, self.path(&p.id))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }

    fn orphan_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ORPHANED}"))
    }

    /// Sets aside a record whose spool file is gone: it can never upload,
    /// so it is not retried; `bridgefs pending` lists and drops it.
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

    /// Every record on disk (unreadable ones are logged and skipped).
    pub fn pending(&self) -> Vec<PendingUpload> {
        self.read_all("json")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let rec = PendingUpload {
            id: "a1".into(),
            backend: "apps".into(),
            dir_key: "app/handbook".into(),
            name: "x.txt".into(),
            existing_key: None,
            spool: dir.path().join("s"),
            display_path: "apps/handbook/x.txt".into(),
            refused: None,
            local_only: false,
        };
        j.record(&rec).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("pending/a1.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "a record is private");
        assert_eq!(Journal::open(dir.path()).unwrap().pending(), vec![rec]);
        j.remove("a1");
        assert!(j.pending().is_empty());
    }

    #[test]
    fn an_orphaned_record_is_set_aside_then_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let rec = PendingUpload {
            id: "b2".into(),
            backend: "library".into(),
            dir_key: "lib".into(),
            name: "y.txt".into(),
            existing_key: None,
            spool: dir.path().join("gone"),
            display_path: "library/y.txt".into(),
            refused: None,
            local_only: false,
        };
        j.record(&rec).unwrap();
        j.mark_orphaned("b2").unwrap();
        assert!(j.pending().is_empty(), "no longer retried");
        assert_eq!(j.orphaned(), vec![rec]);
        assert!(j.drop_record("b2"));
        assert!(j.orphaned().is_empty());
        assert!(!j.drop_record("b2"));
    }
}
