//! Instance safety: a daemon holds an exclusive lock on its state and cache
//! directories for as long as it runs, so a second daemon pointed at the
//! same directories (another mountpoint, a copied config, a second systemd
//! instance) refuses to start instead of deleting the first one's spool.
//!
//! The lock is an advisory `flock` on a `lock` file in each directory; the
//! kernel drops it when the process dies, so a crash never leaves a stale
//! lock behind. The file's text names the holder for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The locks of one running daemon; dropped (released) when it exits.
#[derive(Debug)]
pub struct InstanceLock {
    _files: Vec<File>,
}

/// Who holds a directory: the text a holder writes into its lock file.
fn holder_line(mountpoint: &Path) -> String {
    format!(
        "pid {} mountpoint {}\n",
        std::process::id(),
        mountpoint.display()
    )
}

impl InstanceLock {
    /// Locks every directory in `dirs` (created 0700 if missing) for the
    /// daemon serving `mountpoint`. Fails with a one-line message naming the
    /// holder's pid and mountpoint when another process has one of them.
    pub fn acquire(dirs: &[&Path], mountpoint: &Path) -> Result<InstanceLock, String> {
        let mut files = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            if seen.contains(&canonical) {
                continue;
            }
            files.push(lock_one(dir, mountpoint)?);
            seen.push(canonical);
        }
        Ok(InstanceLock { _files: files })
    }
}

fn lock_one(dir: &Path, mountpoint: &Path) -> Result<File, String> {
    let path = dir.join("lock");
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim();
            let holder = if holder.is_empty() {
                "another process"
            } else {
                holder
            };
            return Err(format!(
                "{} is in use by another bridgefs ({holder}); give each mount its own cache.dir and cache.state_dir",
                dir.display()
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()));
        }
    }
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(holder_line(mountpoint).as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_mountpoint() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(&[dir.path()], Path::new("/mnt/a")).unwrap();
        let err = InstanceLock::acquire(&[dir.path()], Path::new("/mnt/b")).unwrap_err();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("/mnt/a"), "{err}");
        drop(first);
        InstanceLock::acquire(&[dir.path()], Path::new("/mnt/b")).expect("free again");
    }

    #[test]
    fn one_directory_named_twice_is_locked_once() {
        let dir = tempfile::tempdir().unwrap();
        InstanceLock::acquire(&[dir.path(), dir.path()], Path::new("/mnt/a")).unwrap();
    }
}
