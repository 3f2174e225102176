//! An emulator of the three APIs, strict like a real server, with a request
//! log, per-endpoint counters and fault injection. One listener serves the
//! back office under `/backoffice`, the library under `/library/live` and the
//! Files apps under `/files`; the control surface lives under `/_emulator/`.
//!
//! Its own crate, so the `bridgefs` library (filesystem and HTTP clients)
//! builds without the HTTP server stack: only the `bridgefs` binary (the
//! `demo` and `emulator` commands), the tests and the benches use it.

// Handlers answer errors as ready `Response`s, axum's idiom; their size
// does not matter on this path.
#![allow(clippy::result_large_err)]

pub mod backoffice;
pub mod content;
pub mod faults;
pub mod files;
pub mod library;
mod ranked;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use faults::Faults;

/// Path prefix of each API on the emulator's listener.
pub const BACKOFFICE_PREFIX: &str = "/backoffice";
pub const LIBRARY_PREFIX: &str = "/library/live";
pub const FILES_PREFIX: &str = "/files";

/// Credentials the emulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub backoffice_token: String,
    pub library_api_key: String,
    pub library_private_key: String,
    pub library_business_id: u64,
    pub library_user_name: String,
    pub files_api_key: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            backoffice_token: "demo-backoffice-token".into(),
            library_api_key: "demo-api-key".into(),
            library_private_key: "demo-private-key".into(),
            library_business_id: 1,
            library_user_name: "demo".into(),
            files_api_key: "demo-files-key".into(),
        }
    }
}

/// The whole remote state of the three APIs; serialisable so a dataset can
/// be loaded from a file and state persisted to a directory.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Dataset {
    pub backoffice: backoffice::BackofficeState,
    pub library: library::LibraryState,
    pub files: files::FilesState,
}

impl Dataset {
    /// The demo: every feature and edge of `TREE.md`, deterministic.
    pub fn demo() -> Dataset {
        Dataset {
            backoffice: backoffice::BackofficeState::demo(),
            library: library::LibraryState::demo(),
            files: files::FilesState::demo(),
        }
    }

    /// No objects at all (apps `handbook` and `contracts` and clients 1-3
    /// still exist, empty, so a config written for the demo mounts).
    pub fn empty() -> Dataset {
        Dataset {
            backoffice: backoffice::BackofficeState::empty(),
            library: library::LibraryState::empty(),
            files: files::FilesState::empty(),
        }
    }

    /// `demo`, `empty`, or a JSON file of a [`Dataset`].
    pub fn load(spec: &str) -> Result<Dataset, String> {
        match spec {
            "demo" => Ok(Dataset::demo()),
            "empty" => Ok(Dataset::empty()),
            path => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read dataset {path}: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("bad dataset {path}: {e}"))
            }
        }
    }
}

/// Query parameters that carry credentials: logged as `REDACTED`, so the
/// request log (served at `/_emulator/requests`) never holds a secret.
const SECRET_PARAMS: &[&str] = &[
    "apikey",
    "signature",
    "sessiontoken",
    "token",
    "key",
    "access_token",
];

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}=REDACTED")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The route template, e.g. `GET /files/api/apps/{app}/files`.
    pub endpoint: String,
    pub status: u16,
}

/// Shared state of a running emulator. Handlers take `State<Emu>`.
#[derive(Clone)]
pub struct Emu(pub Arc<EmuInner>);

pub struct EmuInner {
    pub creds: Credentials,
    pub backoffice: Mutex<backoffice::BackofficeState>,
    pub library: Mutex<library::LibraryState>,
    pub files: Mutex<files::FilesState>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub counts: Mutex<BTreeMap<String, u64>>,
    /// The dataset `reset` goes back to.
    pub initial: Dataset,
    /// Where state is persisted after each change, if anywhere.
    pub persist_dir: Option<PathBuf>,
}

/// Largest request body the emulator accepts (uploads).
pub const MAX_UPLOAD_BYTES: usize = 1 << 30;

/// Most requests kept in the log.
const LOG_LIMIT: usize = 20_000;

impl std::ops::Deref for Emu {
    type Target = EmuInner;
    fn deref(&self) -> &EmuInner {
        &self.0
    }
}

impl Emu {
    pub fn new(
        dataset: Dataset,
        creds: Credentials,
        faults: Faults,
        persist_dir: Option<PathBuf>,
    ) -> Emu {
        let state = persist_dir
            .as_ref()
            .and_then(|d| {
                let text = std::fs::read_to_string(d.join("state.json")).ok()?;
                hexbytes::with_blobs(&d.join("content"), || {
                    serde_json::from_str::<Dataset>(&text).ok()
                })
                .0
            })
            .unwrap_or_else(|| dataset.clone());
        Emu(Arc::new(EmuInner {
            creds,
            backoffice: Mutex::new(state.backoffice),
            library: Mutex::new(state.library),
            files: Mutex::new(state.files),
            faults: Mutex::new(faults),
            log: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            initial: dataset,
            persist_dir,
        }))
    }

    /// A copy of the current state (tests compare bytes against it).
    pub fn snapshot(&self) -> Dataset {
        Dataset {
            backoffice: self.backoffice.lock().clone(),
            library: self.library.lock().clone(),
            files: self.files.lock().clone(),
        }
    }

    /// Writes the state to the persistence directory, if one is set: the
    /// metadata as `state.json`, each new content once as a blob; blobs no
    /// longer referenced are removed.
    pub fn persist(&self) {
        let Some(dir) = &self.persist_dir else {
            return;
        };
        let snap = self.snapshot();
        let blobs = dir.join("content");
        let (text, used) = hexbytes::with_blobs(&blobs, || serde_json::to_vec(&snap));
        let Ok(text) = text else {
            return;
        };
        let tmp = dir.join("state.json.tmp");
        if std::fs::write(&tmp, text).is_ok()
            && std::fs::rename(&tmp, dir.join("state.json")).is_ok()
        {
            for e in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !used.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    fn reset(&self) {
        let d = self.initial.clone();
        *self.backoffice.lock() = d.backoffice;
        *self.library.lock() = d.library;
        *self.files.lock() = d.files;
        *self.faults.lock() = Faults::default();
        self.log.lock().clear();
        self.counts.lock().clear();
        self.persist();
    }

    /// Serves the router on `listener` until `shutdown` completes
    /// (`bridgefs emulator`).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The router of the three APIs plus the control surface.
    pub fn router(&self) -> Router {
        let apis: Router<Emu> = Router::new()
            .nest(BACKOFFICE_PREFIX, backoffice::routes())
            .nest(LIBRARY_PREFIX, library::routes())
            .nest(FILES_PREFIX, files::routes())
            .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
            .layer(middleware::from_fn_with_state(self.clone(), faults::inject))
            .layer(middleware::from_fn_with_state(self.clone(), record));
        let control: Router<Emu> = Router::new()
            .route("/_emulator/requests", get(requests))
            .route("/_emulator/counts", get(counts))
            .route("/_emulator/reset", post(reset))
            .route("/_emulator/faults", get(get_faults).post(set_faults))
            .route("/_emulator/state", get(state));
        apis.merge(control)
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(serde_json::json!({"message": "no such route"})),
                )
            })
            .with_state(self.clone())
    }
}

/// Logs and counts every API request by its route template.
async fn record(State(emu): State<Emu>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = redact_query(req.uri().query().unwrap_or(""));
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(m) => format!("{method} {}", m.as_str()),
        None => format!("{method} {path}"),
    };
    let resp = next.run(req).await;
    *emu.counts.lock().entry(endpoint.clone()).or_default() += 1;
    let mut log = emu.log.lock();
    if log.len() >= LOG_LIMIT {
        log.drain(..LOG_LIMIT / 2);
    }
    log.push(LoggedRequest {
        method,
        path,
        query,
        endpoint,
        status: resp.status().as_u16(),
    });
    resp
}

async fn requests(State(emu): State<Emu>) -> Json<Vec<LoggedRequest>> {
    Json(emu.log.lock().clone())
}

async fn counts(State(emu): State<Emu>) -> Json<BTreeMap<String, u64>> {
    Json(emu.counts.lock().clone())
}

async fn reset(State(emu): State<Emu>) -> StatusCode {
    emu.reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(emu): State<Emu>) -> Json<Faults> {
    Json(emu.faults.lock().clone())
}

/// Replaces the fault settings; fields left out keep their defaults (off).
async fn set_faults(State(emu): State<Emu>, Json(f): Json<Faults>) -> Json<Faults> {
    *emu.faults.lock() = f.clone();
    Json(f)
}

async fn state(State(emu): State<Emu>) -> Json<Dataset> {
    Json(emu.snapshot())
}

/// A running emulator on a loopback port (tests and `bridgefs demo`).
pub struct EmulatorHandle {
    pub addr: SocketAddr,
    pub emu: Emu,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Starts an emulator on its own thread and runtime, listening on `addr`
    /// (port 0 picks a free one).
    pub fn start(addr: &str, emu: Emu) -> std::io::Result<EmulatorHandle> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = emu.router();
        let thread = std::thread::Builder::new()
            .name("emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                });
                rt.shutdown_timeout(std::time::Duration::from_millis(200));
            })?;
        Ok(EmulatorHandle {
            addr: local,
            emu,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `{"message": …}` error body of the back office and the library.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "message": message.into() })),
    )
        .into_response()
}

/// RFC 7807 error body of the Files API.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "type": format!("https://tools.ietf.org/html/rfc9110#status.{}", status.as_u16()),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// Checks `Authorization: Bearer <expected>`.
pub fn bearer_ok(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == expected)
}

/// Now, in Unix milliseconds (the APIs' timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// ISO 8601 UTC with milliseconds, as the Files and back-office APIs write it.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The request's `Host`, for absolute URLs the emulator hands out.
pub fn host(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string()
}

/// Content bytes in the serialised state, held as `Bytes` so a range
/// request does not copy the whole file. In a dataset file: hex text. In
/// the persisted state (`--state-dir`): `blob:<md5>`, the bytes stored once
/// in `content/<md5>`, so each change rewrites only the small metadata.
pub mod hexbytes {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use bytes::Bytes;
    use md5::{Digest, Md5};
    use serde::{Deserialize, Deserializer, Serializer};

    thread_local! {
        /// The blob directory of the (de)serialisation under way, and the
        /// blobs it referenced.
        static BLOBS: RefCell<Option<(PathBuf, HashSet<String>)>> = const { RefCell::new(None) };
    }

    /// Runs `f` with content going to / coming from `dir`'s blobs; returns
    /// its result and the blob names it referenced.
    pub fn with_blobs<T>(dir: &Path, f: impl FnOnce() -> T) -> (T, HashSet<String>) {
        let _ = std::fs::create_dir_all(dir);
        BLOBS.with(|b| *b.borrow_mut() = Some((dir.to_path_buf(), HashSet::new())));
        let out = f();
        let used = BLOBS
            .with(|b| b.borrow_mut().take())
            .map(|(_, u)| u)
            .unwrap_or_default();
        (out, used)
    }

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        let blob = BLOBS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let (dir, used) = cell.as_mut()?;
            let name = hex::encode(Md5::digest(b));
            let path = dir.join(&name);
            if !path.exists() {
                let tmp = dir.join(format!("{name}.tmp"));
                std::fs::write(&tmp, b).ok()?;
                std::fs::rename(&tmp, &path).ok()?;
            }
            used.insert(name.clone());
            Some(name)
        });
        match blob {
            Some(name) => s.serialize_str(&format!("blob:{name}")),
            None => s.serialize_str(&hex::encode(b)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        match text.strip_prefix("blob:") {
            Some(name) => {
                let dir = BLOBS
                    .with(|b| b.borrow().as_ref().map(|(d, _)| d.clone()))
                    .ok_or_else(|| {
                        serde::de::Error::custom("a blob reference outside a state directory")
                    })?;
                std::fs::read(dir.join(name))
                    .map(Bytes::from)
                    .map_err(|e| serde::de::Error::custom(format!("blob {name}: {e}")))
            }
            None => hex::decode(text)
                .map(Bytes::from)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Deterministic pseudo-random content for the demo (xorshift over a seed).
pub fn demo_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Deterministic text content for the demo: readable lines.
pub fn demo_text(title: &str, lines: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..lines {
        s.push_str(&format!("{title} — line {i}\n"));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn persisted_state_keeps_content_as_blobs_and_reloads_the_same() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let emu = Emu::new(
            Dataset::demo(),
            Credentials::default(),
            Faults::default(),
            Some(dir.path().to_path_buf()),
        );
        emu.persist();
        let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
        let blobs = std::fs::read_dir(dir.path().join("content"))
            .unwrap()
            .count();
        assert!(
            blobs > 0 && state.contains("\"blob:"),
            "content stored as blobs"
        );
        let largest_demo_file = 4 << 20;
        assert!(
            state.len() < largest_demo_file,
            "no content inline: {} bytes",
            state.len()
        );
        let again = Emu::new(
            Dataset::empty(),
            Credentials::default(),
            Faults::default(),
            Some(dir.path().to_path_buf()),
        );
        let text = |e: &Emu| serde_json::to_string(&e.snapshot()).unwrap();
        assert_eq!(text(&again), text(&emu), "reloaded as it was");
        emu.persist();
        assert_eq!(
            std::fs::read_dir(dir.path().join("content"))
                .unwrap()
                .count(),
            blobs,
            "each content once"
        );
    }

    #[test]
    fn credentials_in_queries_are_redacted() {
        assert_eq!(
            super::redact_query("apiKey=k&timestamp=1&signature=abc"),
            "apiKey=REDACTED&timestamp=1&signature=REDACTED"
        );
    }
}
