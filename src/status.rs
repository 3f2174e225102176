//! The daemon's status file (`state_dir/status.json`), rewritten every
//! second, and its reading by `bridgefs status`: uploads in flight with
//! their progress, records that cannot upload, counters and per-endpoint
//! HTTP statistics, without any IPC to the daemon.

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
    /// Upload bodies being sent now.
    #[serde(default)]
    pub uploads: Vec<UploadProgress>,
    /// Journal records set aside because their bytes are gone.
    #[serde(default)]
    pub orphaned: Vec<String>,
    /// Places the start-up probe could not reach (`check`'s lines).
    #[serde(default)]
    pub unreachable: Vec<String>,
    /// Uploads the server refused for good (`path: reason`), kept and not
    /// retried until SIGHUP or `bridgefs pending retry`.
    #[serde(default)]
    pub refused: Vec<String>,
}

/// One upload in flight, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadProgress {
    /// The file's path in the mount (`library/report.pdf`).
    pub path: String,
    pub sent: u64,
    pub total: u64,
    pub elapsed_ms: u64,
}

impl UploadProgress {
    /// Bytes per second so far.
    pub fn rate(&self) -> u64 {
        self.sent * 1000 / self.elapsed_ms.max(1)
    }

    /// `library/x.bin: 12.0 of 40.0 MiB (30%), 2.1 MiB/s`
    pub fn line(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "{}: {:.1} of {:.1} MiB ({}%), {:.1} MiB/s",
            self.path.escape_debug(),
            mib(self.sent),
            mib(self.total),
            self.sent * 100 / self.total.max(1),
            mib(self.rate())
        )
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("status.json")
}

/// Writes the file atomically (temp file, rename).
pub fn write(state_dir: &Path, status: &Status) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // It names users' files (uploads in flight, refusals): private.
    let tmp = state_dir.join("status.json.tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(&serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?)?;
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
    // EPERM: it exists, it is another user's.
    pid != 0
        && (unsafe { libc::kill(pid as i32, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
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
    out.push_str(&format!("uploads in flight: {}\n", s.uploads.len()));
    for u in &s.uploads {
        out.push_str(&format!("  {}\n", u.line()));
    }
    if !s.orphaned.is_empty() {
        out.push_str(&format!(
            "stuck: {} journal record(s) lost their bytes (bridgefs pending list):\n",
            s.orphaned.len()
        ));
        for o in &s.orphaned {
            out.push_str(&format!("  {}\n", o.escape_debug()));
        }
    }
    if !s.refused.is_empty() {
        out.push_str(&format!(
            "refused: {} upload(s) the server will not take (fix, then SIGHUP or bridgefs pending retry):\n",
            s.refused.len()
        ));
        for r in &s.refused {
            out.push_str(&format!("  {}\n", r.escape_debug()));
        }
    }
    if !s.unreachable.is_empty() {
        out.push_str("unreachable at start:\n");
        for u in &s.unreachable {
            out.push_str(&format!("  {u}\n"));
        }
    }
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

/// `bridgefs pending list`: every journal record, one line each.
pub fn render_pending(journal: &crate::fs::writeback::journal::Journal) -> String {
    let mut out = String::new();
    for (state, records) in [
        ("pending", journal.pending()),
        ("orphaned", journal.orphaned()),
    ] {
        for r in records {
            let state = match (&r.refused, r.local_only) {
                (Some(_), _) => "refused",
                // Kept here on purpose (mount.local_only), never uploaded.
                (None, true) => "local",
                (None, false) => state,
            };
            let size = std::fs::metadata(&r.spool)
                .map(|m| format!("{} bytes", m.len()))
                .unwrap_or_else(|_| "spool file missing".into());
            let why = r
                .refused
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<9} {}  {}  ({size}){why}\n",
                state,
                r.id,
                r.display_path.escape_debug()
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no pending uploads\n");
    }
    out
}
