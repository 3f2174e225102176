//! Counters of FUSE requests (count, time, failures by errno) kept by the
//! adapter, and the Prometheus text exposition of everything the daemon
//! measures: FUSE requests, remote calls, caches, bytes moved, uploads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

/// Counters of one FUSE operation.
#[derive(Debug, Clone, Default)]
struct OpCounters {
    count: u64,
    micros: u64,
    /// Failures per errno.
    errors: BTreeMap<i32, u64>,
}

/// Every FUSE operation's counters, shared by the adapter's threads.
#[derive(Debug, Default)]
pub struct FuseMetrics {
    ops: Mutex<BTreeMap<&'static str, OpCounters>>,
}

impl FuseMetrics {
    /// One answered request: its time and, when it failed, its errno.
    pub fn record(&self, op: &'static str, took: Duration, errno: Option<i32>) {
        let mut ops = self.ops.lock();
        let c = ops.entry(op).or_default();
        c.count += 1;
        c.micros += took.as_micros() as u64;
        if let Some(e) = errno {
            *c.errors.entry(e).or_default() += 1;
        }
    }
}

/// A snapshot of the daemon's figures to expose, gathered by the caller.
#[derive(Debug, Default)]
pub struct Figures {
    pub fs: BTreeMap<String, u64>,
    pub http: BTreeMap<String, crate::remote::http::EndpointStats>,
    pub block_cache: crate::fs::content::BlockCacheStats,
    pub read_cache_limit: u64,
    pub inodes: usize,
    pub pending_uploads: usize,
    pub uploads_in_flight: usize,
    pub upload_bytes_sent: u64,
    pub orphaned_records: usize,
    /// (fsyncs and fdatasyncs made for the durability promise, the
    /// microseconds spent waiting for them).
    pub disk_syncs: (u64, u64),
    /// Reusable download buffers held idle.
    pub idle_download_buffers: usize,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline) per the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text format (version 0.0.4) of `fuse` and `figures`.
pub fn render(fuse: &FuseMetrics, f: &Figures) -> String {
    let mut out = String::new();
    render_fuse(&mut out, fuse);
    render_remote(&mut out, f);
    render_local(&mut out, f);
    out
}

fn render_fuse(out: &mut String, fuse: &FuseMetrics) {
    let ops = fuse.ops.lock().clone();
    family(
        out,
        "bridgefs_fuse_requests_total",
        "counter",
        "FUSE requests answered, per operation.",
    );
    for (op, c) in &ops {
        let _ = writeln!(
            out,
            "bridgefs_fuse_requests_total{{op=\"{op}\"}} {}",
            c.count
        );
    }
    family(
        out,
        "bridgefs_fuse_request_seconds_total",
        "counter",
        "Time spent answering FUSE requests, per operation.",
    );
    for (op, c) in &ops {
        let _ = writeln!(
            out,
            "bridgefs_fuse_request_seconds_total{{op=\"{op}\"}} {:.6}",
            c.micros as f64 / 1e6
        );
    }
    family(
        out,
        "bridgefs_fuse_errors_total",
        "counter",
        "FUSE requests answered with an error, per operation and errno.",
    );
    for (op, c) in &ops {
        for (errno, n) in &c.errors {
            let name = std::io::Error::from_raw_os_error(*errno).kind();
            let _ = writeln!(
                out,
                "bridgefs_fuse_errors_total{{op=\"{op}\",errno=\"{errno}\",kind=\"{name:?}\"}} {n}"
            );
        }
    }
}

fn render_remote(out: &mut String, f: &Figures) {
    type Pick = fn(&crate::remote::http::EndpointStats) -> String;
    let rows: [(&str, &str, Pick); 5] = [
        (
            "bridgefs_remote_calls_total",
            "Remote API calls, per endpoint.",
            |s| s.calls.to_string(),
        ),
        (
            "bridgefs_remote_retries_total",
            "Retried attempts, per endpoint.",
            |s| s.retries.to_string(),
        ),
        (
            "bridgefs_remote_failures_total",
            "Calls that failed after their retries, per endpoint.",
            |s| s.failures.to_string(),
        ),
        (
            "bridgefs_remote_call_seconds_total",
            "Time spent in remote calls, retries included, per endpoint.",
            |s| format!("{:.6}", s.micros as f64 / 1e6),
        ),
        (
            "bridgefs_remote_bytes_received_total",
            "Response body bytes received, per endpoint.",
            |s| s.bytes_in.to_string(),
        ),
    ];
    for (name, help, pick) in rows {
        family(out, name, "counter", help);
        for (endpoint, s) in &f.http {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\"}} {}",
                label(endpoint),
                pick(s)
            );
        }
    }
}

fn render_local(out: &mut String, f: &Figures) {
    family(
        out,
        "bridgefs_fs_events_total",
        "counter",
        "Filesystem events (lookups, listings, reads, bytes, uploads).",
    );
    for (k, v) in &f.fs {
        let _ = writeln!(
            out,
            "bridgefs_fs_events_total{{event=\"{}\"}} {v}",
            label(k)
        );
    }
    let b = &f.block_cache;
    let rows: [(&str, &str, &str, String); 12] = [
        (
            "bridgefs_block_cache_hits_total",
            "counter",
            "Content blocks found in memory or already being fetched.",
            b.hits.to_string(),
        ),
        (
            "bridgefs_block_cache_misses_total",
            "counter",
            "Content blocks fetched from the remote.",
            b.misses.to_string(),
        ),
        (
            "bridgefs_block_cache_bytes",
            "gauge",
            "Bytes of content held in memory.",
            b.bytes.to_string(),
        ),
        (
            "bridgefs_block_cache_limit_bytes",
            "gauge",
            "Configured bound of the content cache (cache.read_cache_bytes).",
            f.read_cache_limit.to_string(),
        ),
        (
            "bridgefs_inodes",
            "gauge",
            "Inodes held.",
            f.inodes.to_string(),
        ),
        (
            "bridgefs_pending_uploads",
            "gauge",
            "Files whose bytes the remote does not hold yet.",
            f.pending_uploads.to_string(),
        ),
        (
            "bridgefs_uploads_in_flight",
            "gauge",
            "Upload bodies being sent now.",
            f.uploads_in_flight.to_string(),
        ),
        (
            "bridgefs_upload_bytes_sent_total",
            "counter",
            "File bytes sent in upload bodies, every attempt counted.",
            f.upload_bytes_sent.to_string(),
        ),
        (
            "bridgefs_orphaned_journal_records",
            "gauge",
            "Journal records whose bytes are gone (bridgefs pending list).",
            f.orphaned_records.to_string(),
        ),
        (
            "bridgefs_disk_syncs_total",
            "counter",
            "fsyncs and fdatasyncs of spool files and journal records (the durability promise).",
            f.disk_syncs.0.to_string(),
        ),
        (
            "bridgefs_disk_sync_seconds_total",
            "counter",
            "Time spent waiting for those syncs.",
            format!("{:.6}", f.disk_syncs.1 as f64 / 1e6),
        ),
        (
            "bridgefs_download_buffers_idle",
            "gauge",
            "1 MiB download buffers kept for reuse (at most 16; SIGHUP releases them).",
            f.idle_download_buffers.to_string(),
        ),
    ];
    for (name, kind, help, value) in rows {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_errors_are_exposed_per_op() {
        let m = FuseMetrics::default();
        m.record("lookup", Duration::from_micros(30), None);
        m.record("lookup", Duration::from_micros(10), Some(libc::ENOENT));
        let text = render(&m, &Figures::default());
        assert!(
            text.contains("bridgefs_fuse_requests_total{op=\"lookup\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(&format!("op=\"lookup\",errno=\"{}\"", libc::ENOENT)),
            "{text}"
        );
        assert!(
            text.contains("bridgefs_fuse_request_seconds_total{op=\"lookup\"} 0.000040"),
            "{text}"
        );
    }
}
