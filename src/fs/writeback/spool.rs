//! The local spool: a file being written lives in a local file until the
//! remote holds its bytes. Reads of a file being written see the spool.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use parking_lot::Mutex;

use crate::fs::error::{FsError, FsResult};

/// Spooled bytes are the users' documents: only the daemon's user may
/// read the directories that hold them.
pub fn private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// At most this many emptied spool files wait for reuse. Creating a file
/// is the costliest disk step of a small write on some disks (ext4
/// allocating an inode took 15–330 µs on one machine, depending on the
/// directory's block group), while renaming and emptying one takes about
/// 25 µs; a copy of many small files reuses one spool file after another.
const IDLE_FILES: usize = 16;

/// The spool directory, and the emptied spool files waiting for reuse.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    idle: Arc<Mutex<Vec<Emptied>>>,
}

/// An empty spool file under a fresh id: no journal record names it, so
/// a crash leaves only a leftover that start-up deletes.
#[derive(Debug)]
struct Emptied {
    id: String,
    path: PathBuf,
    file: File,
}

/// A spool id no file of this or another run has had.
fn fresh_id() -> String {
    format!("{:016x}{:08x}", rand::random::<u64>(), std::process::id())
}

impl Spool {
    pub fn open(cache_dir: &Path) -> std::io::Result<Spool> {
        let dir = cache_dir.join("spool");
        std::fs::create_dir_all(&dir)?;
        private(&dir)?;
        Ok(Spool {
            dir,
            idle: Arc::default(),
        })
    }

    /// Reopens the spool file of a journal record (a local-only file kept
    /// across a restart). It counts as in sync: it lives here.
    pub fn reopen(&self, id: &str, path: &Path) -> FsResult<LocalFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        let (size, modified) = (meta.len(), meta.modified().ok());
        Ok(LocalFile {
            id: id.to_string(),
            path: path.to_path_buf(),
            inner: Mutex::new(LocalState {
                file,
                size,
                generation: 0,
                uploaded_generation: Some(0),
                journaled: true,
                write_error: None,
                refused: None,
                modified,
            }),
            upload: Arc::default(),
        })
    }

    /// Deletes every spool file not in `keep` (start-up, before serving).
    pub fn remove_unlisted(&self, keep: &std::collections::HashSet<PathBuf>) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| !keep.contains(p))
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count()
    }

    /// A new, empty spool file: an emptied one if any waits, else a file
    /// created now.
    pub fn create(&self) -> FsResult<LocalFile> {
        if let Some(e) = self.idle.lock().pop() {
            return Ok(LocalFile::empty(e.id, e.path, e.file));
        }
        let id = fresh_id();
        let path = self.dir.join(&id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(LocalFile::empty(id, path, file))
    }

    /// Done with a spool file (the remote holds its bytes, or the file was
    /// removed): renamed to a fresh id, so that nothing naming the old one
    /// (a journal record) can ever reach it, then emptied and kept for the
    /// next [`Spool::create`]. Deleted instead while another holder may
    /// still read it, when enough wait already, or when either step fails.
    pub fn recycle(&self, local: Arc<LocalFile>) {
        let local = match Arc::try_unwrap(local) {
            Ok(l) if self.idle.lock().len() < IDLE_FILES => l,
            Ok(l) => return l.discard(),
            Err(shared) => return shared.discard(),
        };
        let id = fresh_id();
        let path = self.dir.join(&id);
        let file = local.inner.into_inner().file;
        // Renamed first: a crash before the truncation leaves a file no
        // record names, never an emptied file a record points to.
        let emptied = std::fs::rename(&local.path, &path).and_then(|()| file.set_len(0));
        let mut idle = self.idle.lock();
        if emptied.is_err() || idle.len() >= IDLE_FILES {
            drop(idle);
            let _ = std::fs::remove_file(&local.path);
            let _ = std::fs::remove_file(&path);
            return;
        }
        idle.push(Emptied { id, path, file });
    }

    /// Deletes the emptied files kept for reuse (at shutdown).
    pub fn remove_idle(&self) {
        for e in self.idle.lock().drain(..) {
            let _ = std::fs::remove_file(&e.path);
        }
    }
}

/// One spooled file.
#[derive(Debug)]
pub struct LocalFile {
    /// Also the journal record's id.
    pub id: String,
    pub path: PathBuf,
    inner: Mutex<LocalState>,
    /// Serialises uploads of this file.
    pub upload: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct LocalState {
    file: File,
    size: u64,
    /// Bumped by every change; an upload remembers the one it sent.
    generation: u64,
    uploaded_generation: Option<u64>,
    journaled: bool,
    /// A write or truncate that failed (a full disk): the spool no longer
    /// holds what the user wrote, so it must never be uploaded.
    write_error: Option<FsError>,
    /// Why the remote refused these bytes for good (a 4xx answer): not
    /// retried until someone asks (SIGHUP, `bridgefs pending retry`).
    refused: Option<FsError>,
    /// The spool file's time when it was reopened after a restart.
    modified: Option<std::time::SystemTime>,
}

impl LocalFile {
    fn empty(id: String, path: PathBuf, file: File) -> LocalFile {
        LocalFile {
            id,
            path,
            inner: Mutex::new(LocalState {
                file,
                size: 0,
                generation: 0,
                uploaded_generation: None,
                journaled: false,
                write_error: None,
                refused: None,
                modified: None,
            }),
            upload: Arc::default(),
        }
    }

    pub fn size(&self) -> u64 {
        self.inner.lock().size
    }

    /// When the spool file was last written (read once, when a local-only
    /// file of an earlier run is shown again).
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.inner.lock().modified
    }

    /// True while the remote lacks the latest bytes.
    pub fn dirty(&self) -> bool {
        let s = self.inner.lock();
        s.uploaded_generation != Some(s.generation)
    }

    pub fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Records that the bytes of `generation` reached the remote.
    pub fn mark_uploaded(&self, generation: u64) {
        self.inner.lock().uploaded_generation = Some(generation);
    }

    /// Marks the bytes as not on the remote (a local-only file renamed to
    /// an ordinary name, or saved over another file): the next commit
    /// uploads them.
    pub fn mark_dirty(&self) {
        self.inner.lock().uploaded_generation = None;
    }

    /// Marks a file as already in sync (a spool filled from the remote).
    pub fn mark_clean(&self) {
        let mut s = self.inner.lock();
        s.uploaded_generation = Some(s.generation);
    }

    pub fn journaled(&self) -> bool {
        self.inner.lock().journaled
    }

    pub fn set_journaled(&self, v: bool) {
        self.inner.lock().journaled = v;
    }

    /// The failed write that made the spool incomplete, if one did.
    pub fn write_error(&self) -> Option<FsError> {
        self.inner.lock().write_error.clone()
    }

    /// Why the remote refused the bytes for good, if it did.
    pub fn refused(&self) -> Option<FsError> {
        self.inner.lock().refused.clone()
    }

    pub fn set_refused(&self, why: Option<FsError>) {
        self.inner.lock().refused = why;
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> FsResult<()> {
        let mut s = self.inner.lock();
        s.generation += 1;
        if let Err(e) = s.file.write_all_at(data, offset) {
            let e = FsError::from(e);
            s.write_error = Some(e.clone());
            return Err(e);
        }
        s.size = s.size.max(offset + data.len() as u64);
        Ok(())
    }

    pub fn read_at(&self, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        let s = self.inner.lock();
        if offset >= s.size {
            return Ok(Vec::new());
        }
        let len = len.min(s.size - offset) as usize;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = s.file.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn truncate(&self, size: u64) -> FsResult<()> {
        let mut s = self.inner.lock();
        s.generation += 1;
        if let Err(e) = s.file.set_len(size) {
            let e = FsError::from(e);
            s.write_error = Some(e.clone());
            return Err(e);
        }
        s.size = size;
        Ok(())
    }

    /// Makes the spooled bytes durable before they are journaled.
    pub fn sync(&self) -> FsResult<()> {
        self.inner.lock().file.sync_data().map_err(FsError::from)
    }

    /// Deletes the spool file (the remote holds the bytes, or the file was
    /// removed).
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(spool: &Spool) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&spool.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_done_spool_file_is_renamed_emptied_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let done = Arc::new(spool.create().unwrap());
        done.write_at(0, b"old bytes").unwrap();
        let old = done.path.clone();
        let witness = File::open(&old).unwrap();
        spool.recycle(done);
        assert!(!old.exists(), "nothing naming the old id reaches it");
        let next = spool.create().unwrap();
        assert_ne!(next.path, old);
        assert_eq!(files(&spool), vec![next.path.clone()]);
        assert_eq!(
            (next.size(), next.read_at(0, 100).unwrap()),
            (0, Vec::new())
        );
        assert_eq!(std::fs::metadata(&next.path).unwrap().len(), 0);
        next.write_at(0, b"new").unwrap();
        let mut seen = Vec::new();
        std::io::Read::read_to_end(&mut &witness, &mut seen).unwrap();
        assert_eq!(seen, b"new", "the same file, reused");
    }

    #[test]
    fn a_shared_spool_file_is_deleted_and_idle_ones_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let read_meanwhile = Arc::new(spool.create().unwrap());
        read_meanwhile.write_at(0, b"being read").unwrap();
        spool.recycle(read_meanwhile.clone());
        assert!(
            files(&spool).is_empty(),
            "deleted, not emptied under a reader"
        );
        assert_eq!(read_meanwhile.read_at(0, 100).unwrap(), b"being read");

        let many: Vec<_> = (0..IDLE_FILES + 4)
            .map(|_| Arc::new(spool.create().unwrap()))
            .collect();
        many.into_iter().for_each(|l| spool.recycle(l));
        assert_eq!(files(&spool).len(), IDLE_FILES);
        spool.remove_idle();
        assert!(files(&spool).is_empty());
    }
}
