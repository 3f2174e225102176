//! A pass-through proxy in front of the emulator that takes blob uploads
//! of any size. The emulator refuses request bodies over 1 GiB
//! (`MAX_UPLOAD_BYTES`, a 413 the daemon turns into EFBIG), so the 5 GiB
//! upload goes through here: its blob is streamed to a local file and put
//! into the emulator's state as a memory map of that file (so the bench
//! holds no 5 GiB in memory); every other request is forwarded unchanged,
//! `Host` included, so URLs in answers point back at the proxy.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bridgefs_emulator::files::Blob;
use bridgefs_emulator::Emu;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::common::Emulator;

type Answer = Response<Full<Bytes>>;

struct Ctx {
    emu: Emu,
    target: String,
    http: reqwest::Client,
    dir: PathBuf,
}

/// A running proxy; stops and deletes its files on drop.
pub struct Proxy {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Listens on a free loopback port, on its own thread and runtime.
    pub fn start(emu: &Emulator) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ctx = Arc::new(Ctx {
            emu: emu.emu().clone(),
            target: emu.url(),
            http: reqwest::Client::new(),
            dir: dir.path().to_path_buf(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || serve(listener, ctx, rx));
        Proxy {
            url,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, ctx: Arc<Ctx>, stop: tokio::sync::oneshot::Receiver<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::select! {
            _ = stop => {}
            _ = accept(listener, ctx) => {}
        }
    });
}

/// One HTTP/1 connection task per accepted socket.
async fn accept(listener: tokio::net::TcpListener, ctx: Arc<Ctx>) {
    while let Ok((stream, _)) = listener.accept().await {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, ctx.clone()));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Result<Answer, Infallible> {
    let blob = req.method() == Method::POST && req.uri().path() == "/files/api/blobs";
    let answer = match blob {
        true => store_blob(req, &ctx).await,
        false => forward(req, &ctx).await,
    };
    Ok(answer.unwrap_or_else(|e| {
        let mut r = Response::new(Full::new(Bytes::from(e)));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    }))
}

/// Sends the request on to the emulator and its answer back, whole.
async fn forward(req: Request<Incoming>, ctx: &Ctx) -> Result<Answer, String> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    let resp = ctx
        .http
        .request(parts.method, format!("{}{path}", ctx.target))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != CONTENT_LENGTH && k != TRANSFER_ENCODING {
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    out.body(Full::new(bytes)).map_err(|e| e.to_string())
}

/// `POST /files/api/blobs` of any size: the multipart body goes to a file,
/// its one part becomes a blob of the emulator; answers as the emulator.
async fn store_blob(req: Request<Incoming>, ctx: &Ctx) -> Result<Answer, String> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let boundary = ct
        .and_then(|c| c.split("boundary=").nth(1))
        .ok_or("no multipart boundary")?
        .trim_matches('"')
        .to_string();
    let path = ctx
        .dir
        .join(format!("body-{}", ctx.emu.files.lock().next_blob));
    let total = spool(req.into_body(), &path).await?;
    let (name, start) = part_head(&path)?;
    let end = total - format!("\r\n--{boundary}--\r\n").len() as u64;
    let bytes = map(&path)?.slice(start as usize..end as usize);
    let size = bytes.len();
    let id = {
        let mut st = ctx.emu.files.lock();
        let id = st.next_blob;
        st.next_blob += 1;
        let media_type = "application/octet-stream".to_string();
        let blob = Blob {
            id,
            name: name.clone(),
            media_type,
            bytes,
        };
        st.blobs.insert(id, blob);
        id
    };
    let json = serde_json::json!({"id": id, "name": name, "media_type": "application/octet-stream", "size": size});
    let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
    *r.status_mut() = StatusCode::CREATED;
    r.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    Ok(r)
}

/// Streams a request body to `path` through a 1 MiB buffer; its length.
async fn spool(mut body: Incoming, path: &Path) -> Result<u64, String> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
            total += data.len() as u64;
            w.write_all(&data).await.map_err(|e| e.to_string())?;
        }
    }
    w.flush().await.map_err(|e| e.to_string())?;
    Ok(total)
}

/// The part's file name and where its bytes start (after its headers).
fn part_head(path: &Path) -> Result<(String, u64), String> {
    use std::io::Read;
    let mut head = vec![0u8; 64 << 10];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head[..n]);
    let end = text.find("\r\n\r\n").ok_or("no part headers")? + 4;
    let name = text[..end]
        .split("filename=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("blob")
        .to_string();
    Ok((name, end as u64))
}

/// A read-only shared map of a whole file, unmapped when the last `Bytes`
/// of it goes.
struct Map {
    ptr: *mut libc::c_void,
    len: usize,
}

// The map is read-only and lives until its owner drops: shared reads are
// safe from any thread.
unsafe impl Send for Map {}
unsafe impl Sync for Map {}

impl AsRef<[u8]> for Map {
    fn as_ref(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn map(path: &Path) -> Result<Bytes, String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len() as usize;
    let ptr = unsafe {
        let fd = f.as_raw_fd();
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(Bytes::from_owner(Map { ptr, len }))
}
