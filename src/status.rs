//! The daemon's status file (`state_dir/status.json`), rewritten every few
//! seconds, and its reading by `bridgefs status`: counters, pending uploads
//! and per-endpoint HTTP statistics, without any IPC to the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::remote::http::EndpointStats;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub mountpoint: PathBuf,
    pub running: bool,
    /// Unix seconds.
    pub started: u64,
    pub updated: u64,
    pub backends: Vec<String>,
    /// Filesystem counters (lookups, listings, reads, bytes, uploads…).
    pub fs: BTreeMap<String, u64>,
    /// Files whose bytes the remote does not hold yet.
    pub pending_uploads: usize,
    pub inodes: usize,
    pub http: BTreeMap<String, EndpointStats>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// Writes the file atomically (temp file, rename).
pub fn write(state_dir: &Path, status: &Status) -> std::io::Result<()> {
    let tmp = state_dir.join("status.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path(state_dir))
}

pub fn read(state_dir: &Path) -> Result<Status, String> {
    let p = path(state_dir);
    let text = std::fs::read(&p).map_err(|e| {
        format!(
            "no status at {} ({e}): is the daemon running with this config?",
            p.display()
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("bad status file {}: {e}", p.display()))
}

/// True when a process with that pid exists.
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process.
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// The status as a few readable lines.
pub fn render(s: &Status, now: u64) -> String {
    let state = if s.running && alive(s.pid) {
        "running"
    } else {
        "not running"
    };
    let mut out = format!(
        "bridgefs {state} (pid {}), mounted at {}\nbackends: {}\nup {}s, status {}s old; inodes {}; pending uploads {}\n",
        s.pid,
        s.mountpoint.display(),
        s.backends.join(", "),
        s.updated.saturating_sub(s.started),
        now.saturating_sub(s.updated),
        s.inodes,
        s.pending_uploads,
    );
    out.push_str("counters:");
    for (k, v) in &s.fs {
        out.push_str(&format!(" {k}={v}"));
    }
    out.push_str("\nremote calls (calls / retries / failures):\n");
    for (k, v) in &s.http {
        out.push_str(&format!(
            "  {k:<36} {:>8} {:>8} {:>8}\n",
            v.calls, v.retries, v.failures
        ));
    }
    out
}
