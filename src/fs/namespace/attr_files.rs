//! The overlay's files on disk, written in the order they were asked for
//! on a thread of their own: `cp -p`, `rsync -a` and `tar x` set times or
//! modes on every file, and each setting is a small file created and
//! renamed in `state_dir/attrs/`, which on a slow disk takes long enough
//! to stall tokio's worker and every remote call waiting for it. The
//! overlay's memory is the truth while the daemon runs; the files are for
//! the next start, so no request waits for them. One thread keeps them in
//! order (the last setting of an item wins on disk as in memory).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use parking_lot::Mutex;

/// One step for the writer thread.
enum Job {
    Write {
        path: PathBuf,
        bytes: Vec<u8>,
    },
    Remove(PathBuf),
    /// Answered once every step asked for before it is done.
    Flush(mpsc::SyncSender<()>),
}

/// The writer thread's queue. Dropping it lets the thread finish what
/// is queued, then waits for it.
#[derive(Debug)]
pub struct AttrFiles {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AttrFiles {
    pub fn start() -> std::io::Result<AttrFiles> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bridgefs-attrs".into())
            .spawn(move || rx.into_iter().for_each(run))?;
        Ok(AttrFiles {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes `bytes` to `path` (through a temp file and a rename: a crash
    /// leaves the old file or the new one).
    pub fn write(&self, path: PathBuf, bytes: Vec<u8>) {
        self.send(Job::Write { path, bytes });
    }

    pub fn remove(&self, path: PathBuf) {
        self.send(Job::Remove(path));
    }

    /// Waits until everything asked for so far is on disk (shutdown).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Job::Flush(tx));
        let _ = rx.recv();
    }

    fn send(&self, job: Job) {
        let queue = self.queue.lock();
        // The thread gone (a panic): the step is done here.
        match queue.as_ref().map(|q| q.send(job)) {
            Some(Ok(())) => {}
            Some(Err(mpsc::SendError(job))) => run(job),
            None => {}
        }
    }
}

impl Drop for AttrFiles {
    fn drop(&mut self) {
        drop(self.queue.lock().take());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn run(job: Job) {
    let done = match &job {
        Job::Write { path, bytes } => write_atomically(path, bytes),
        Job::Remove(path) => match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
        Job::Flush(answer) => {
            let _ = answer.send(());
            Ok(())
        }
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "cannot keep times and modes in the state dir");
    }
}

/// Temp file + rename. Not fsynced: attributes are worth less than a
/// file's bytes, and a lost entry only shows the remote's values again.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_land_in_the_order_asked_and_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        let files = AttrFiles::start().unwrap();
        for i in 0..100u8 {
            files.write(a.clone(), vec![i]);
        }
        files.write(b.clone(), b"gone".to_vec());
        files.remove(b.clone());
        files.flush();
        assert_eq!(std::fs::read(&a).unwrap(), vec![99]);
        assert!(!b.exists());
        assert!(!a.with_extension("tmp").exists());
    }

    #[test]
    fn dropping_the_queue_finishes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let files = AttrFiles::start().unwrap();
        files.write(a.clone(), b"kept".to_vec());
        drop(files);
        assert_eq!(std::fs::read(&a).unwrap(), b"kept");
    }
}
