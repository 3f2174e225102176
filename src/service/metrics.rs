//! The opt-in Prometheus endpoint: `GET /metrics` on a TCP address
//! (loopback unless the admin says otherwise) or a unix socket, answered
//! from figures gathered at each scrape.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Builds the exposition text at each scrape.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

const MEDIA_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Removes a socket left by a daemon that is gone (nothing answers on
/// it); refuses a live one and anything that is not a socket.
fn remove_stale_socket(path: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!("metrics: {path} exists and is not a socket"));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!("metrics: {path} is in use by another process"));
    }
    std::fs::remove_file(path).map_err(|e| format!("metrics: cannot replace {path}: {e}"))
}

/// The answer to one request: the exposition for `GET`/`HEAD /metrics`,
/// 405 for another method there, 404 anywhere else.
fn answer<B>(req: &Request<B>, exposition: &Exposition) -> Response<Full<Bytes>> {
    let status = |code: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = code;
        r
    };
    if req.uri().path() != "/metrics" {
        return status(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET,HEAD"));
        return r;
    }
    // hyper leaves the body out of a HEAD answer and keeps its length.
    let mut r = Response::new(Full::new(Bytes::from(exposition())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    r
}

/// Serves HTTP/1.1 on one accepted connection until the scraper closes it.
fn serve_connection<S>(stream: S, exposition: Exposition)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let r = answer(&req, &exposition);
        async move { Ok::<_, Infallible>(r) }
    });
    tokio::spawn(async move {
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "metrics connection");
        }
    });
}

/// A listener the endpoint serves on: TCP or a unix socket.
trait Listener: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn next(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Accepts connections until the runtime stops; a failed accept (out of
/// descriptors, say) is logged and retried after a pause, never fatal.
fn spawn_accept_loop(listener: impl Listener, exposition: Exposition) {
    tokio::spawn(async move {
        loop {
            match listener.next().await {
                Ok(stream) => serve_connection(stream, exposition.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Binds `listen` (`ADDR:PORT` or `unix:/path`) and serves until the
/// runtime stops. Binding errors come back at once; serving runs on.
pub async fn serve(listen: &str, exposition: Exposition) -> Result<(), String> {
    match listen.strip_prefix("unix:") {
        Some(path) => {
            remove_stale_socket(path)?;
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("metrics: cannot listen on {path}: {e}"))?;
            spawn_accept_loop(listener, exposition);
        }
        None => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("metrics: cannot listen on {listen}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "metrics endpoint reachable beyond this machine");
            }
            tracing::info!(%addr, "metrics at http://{addr}/metrics");
            spawn_accept_loop(listener, exposition);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition() -> Exposition {
        Arc::new(|| "bridgefs_up 1\n".to_string())
    }

    fn request(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[test]
    fn metrics_answers_get_and_head_and_refuses_the_rest() {
        let e = exposition();
        let ok = answer(&request(Method::GET, "/metrics"), &e);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], MEDIA_TYPE);
        assert_eq!(
            answer(&request(Method::HEAD, "/metrics"), &e).status(),
            StatusCode::OK
        );
        let post = answer(&request(Method::POST, "/metrics"), &e);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET,HEAD");
        assert_eq!(
            answer(&request(Method::GET, "/"), &e).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&request(Method::GET, "/metrics/x"), &e).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn metrics_serve_over_a_unix_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        let listen = format!("unix:{}", path.display());
        serve(&listen, exposition()).await.unwrap();
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(MEDIA_TYPE), "{text}");
        assert!(text.ends_with("\r\n\r\nbridgefs_up 1\n"), "{text}");
    }
}
