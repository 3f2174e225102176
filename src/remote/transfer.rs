//! Uploads in flight: each multipart file part streams from its local file
//! (never held whole in memory), or is sent from bytes the caller already
//! holds (a small file), through a counter, so `status`, metrics and
//! progress logs can say how many bytes of which file have been sent.
//!
//! Entries are keyed by the local file's path; the caller maps that to a
//! name its users know. An entry lives as long as its upload call (until
//! the server has answered); a retried attempt counts again from zero, as
//! the bytes go again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use super::error::{RemoteError, RemoteResult};

/// Read size of a streamed part: large enough for few syscalls, small
/// enough that memory stays flat whatever the file's size.
const CHUNK: usize = 256 * 1024;

/// What an upload sends as its file part.
#[derive(Debug, Clone)]
pub enum Body {
    /// Streamed from a local file, opened anew for each attempt.
    File(PathBuf),
    /// Bytes the caller already holds (read once to make them durable),
    /// sent from memory: no file to open and read again. `path` names the
    /// upload in `status`.
    Memory { path: PathBuf, bytes: Bytes },
}

impl Body {
    /// The local file this body's bytes are (or come from).
    pub fn path(&self) -> &Path {
        match self {
            Body::File(p) | Body::Memory { path: p, .. } => p,
        }
    }
}

/// One upload body being sent.
#[derive(Debug)]
struct Transfer {
    path: PathBuf,
    body: Body,
    total: AtomicU64,
    sent: AtomicU64,
    started: Instant,
}

/// What `status` shows of one upload in flight.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransferSnapshot {
    pub path: PathBuf,
    pub sent: u64,
    pub total: u64,
    pub elapsed_ms: u64,
}

/// The registry of uploads in flight, shared by every clone of the client.
#[derive(Debug, Clone, Default)]
pub struct Transfers {
    live: Arc<Mutex<BTreeMap<u64, Arc<Transfer>>>>,
    next_id: Arc<AtomicU64>,
    bytes_sent: Arc<AtomicU64>,
}

/// Removes its entry when the body that owns it is dropped.
struct Registration {
    id: u64,
    transfers: Transfers,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.transfers.live.lock().remove(&self.id);
    }
}

impl Transfers {
    /// Every upload body being sent now.
    pub fn snapshot(&self) -> Vec<TransferSnapshot> {
        self.live
            .lock()
            .values()
            .map(|t| TransferSnapshot {
                path: t.path.clone(),
                sent: t.sent.load(Ordering::Relaxed),
                total: t.total.load(Ordering::Relaxed),
                elapsed_ms: t.started.elapsed().as_millis() as u64,
            })
            .collect()
    }

    /// Bytes of file content sent since start, every attempt counted.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Registers one upload call of `body`; the entry goes when the
    /// returned tracker (held by the call's form factory) is dropped.
    pub fn track(&self, body: &Body) -> Arc<Tracker> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let transfer = Arc::new(Transfer {
            path: body.path().to_path_buf(),
            body: body.clone(),
            total: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            started: Instant::now(),
        });
        self.live.lock().insert(id, transfer.clone());
        Arc::new(Tracker {
            transfer,
            bytes_sent: self.bytes_sent.clone(),
            _registration: Registration {
                id,
                transfers: self.clone(),
            },
        })
    }
}

/// One upload call of one local file.
pub struct Tracker {
    transfer: Arc<Transfer>,
    bytes_sent: Arc<AtomicU64>,
    _registration: Registration,
}

impl Tracker {
    /// Whether building this upload's part opens a local file (disk work,
    /// for a blocking thread), rather than taking bytes from memory.
    pub fn opens_a_file(&self) -> bool {
        matches!(self.transfer.body, Body::File(_))
    }

    /// Bytes of the current attempt sent so far.
    pub fn sent(&self) -> u64 {
        self.transfer.sent.load(Ordering::Relaxed)
    }

    /// The multipart part of one attempt: the bytes in memory, or a
    /// stream of the file opened anew.
    pub fn file_part(&self, file_name: &str) -> RemoteResult<reqwest::multipart::Part> {
        self.transfer.sent.store(0, Ordering::Relaxed);
        let part = match &self.transfer.body {
            Body::File(path) => self.streamed_part(path)?,
            Body::Memory { bytes, .. } => self.memory_part(bytes.clone()),
        };
        Ok(part.file_name(file_name.to_string()))
    }

    /// Bytes already in memory, counted as sent once handed over.
    fn memory_part(&self, bytes: Bytes) -> reqwest::multipart::Part {
        let total = bytes.len() as u64;
        self.transfer.total.store(total, Ordering::Relaxed);
        self.transfer.sent.store(total, Ordering::Relaxed);
        self.bytes_sent.fetch_add(total, Ordering::Relaxed);
        reqwest::multipart::Part::stream_with_length(reqwest::Body::from(bytes), total)
    }

    /// A file's bytes read in chunks as they are sent, counted per chunk.
    fn streamed_part(&self, path: &Path) -> RemoteResult<reqwest::multipart::Part> {
        let local =
            |e: std::io::Error| RemoteError::Local(format!("spool {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(local)?;
        let total = file.metadata().map_err(local)?.len();
        self.transfer.total.store(total, Ordering::Relaxed);
        let (transfer, counter) = (self.transfer.clone(), self.bytes_sent.clone());
        // Exactly the declared length, even if the file grows meanwhile.
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), total);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK).map(move |chunk| {
            if let Ok(c) = &chunk {
                transfer.sent.fetch_add(c.len() as u64, Ordering::Relaxed);
                counter.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
            chunk
        });
        let body = reqwest::Body::wrap_stream(stream);
        Ok(reqwest::multipart::Part::stream_with_length(body, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_is_registered_while_its_tracker_lives() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 1000]).unwrap();
        let t = Transfers::default();
        let tracker = t.track(&Body::File(p));
        let part = tracker.file_part("f").unwrap();
        let live = t.snapshot();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].total, live[0].sent), (1000, 0));
        drop(part);
        assert_eq!(t.snapshot().len(), 1, "still waiting for the answer");
        drop(tracker);
        assert!(t.snapshot().is_empty());
    }
}
