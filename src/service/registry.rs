//! Running daemons, findable by mountpoint: each writes a small record
//! (`pid`, `mountpoint`, `state_dir`) into a runtime directory while it
//! serves, so `bridgefs status MOUNTPOINT` finds the state a daemon really
//! uses, e.g. systemd's `$STATE_DIRECTORY`, which the admin's shell lacks.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    pid: u32,
    mountpoint: PathBuf,
    state_dir: PathBuf,
}

/// `/run/bridgefs` for root, `$XDG_RUNTIME_DIR/bridgefs` otherwise.
fn runtime_dir() -> Option<PathBuf> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/run/bridgefs"));
    }
    std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("bridgefs"))
}

fn record_path(dir: &Path, mountpoint: &Path) -> PathBuf {
    let digest = Md5::digest(mountpoint.as_os_str().as_encoded_bytes());
    dir.join(format!("{}.json", hex::encode(digest)))
}

/// This daemon's record; removed when dropped.
pub struct Registration(Option<PathBuf>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Records that this process serves `mountpoint` with `state_dir`. A
/// failure (no runtime directory) only costs the lookup by mountpoint.
pub fn register(mountpoint: &Path, state_dir: &Path) -> Registration {
    let Some(dir) = runtime_dir() else {
        return Registration(None);
    };
    let rec = Record {
        pid: std::process::id(),
        mountpoint: mountpoint.to_path_buf(),
        state_dir: std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf()),
    };
    let path = record_path(&dir, mountpoint);
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .create(&dir)
        .and_then(|_| std::fs::write(&path, serde_json::to_vec(&rec).unwrap_or_default()));
    match written {
        Ok(()) => Registration(Some(path)),
        Err(e) => {
            tracing::debug!(error = %e, "no runtime record: status needs --state-dir");
            Registration(None)
        }
    }
}

/// The state directory of the daemon serving `mountpoint`, if it
/// registered (and is still that daemon).
pub fn lookup(mountpoint: &Path) -> Option<PathBuf> {
    let path = record_path(&runtime_dir()?, mountpoint);
    let rec: Record = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (rec.mountpoint == mountpoint && crate::status::alive(rec.pid)).then_some(rec.state_dir)
}
