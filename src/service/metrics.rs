//! The opt-in Prometheus endpoint: `GET /metrics` on a TCP address
//! (loopback unless the admin says otherwise) or a unix socket, answered
//! from figures gathered at each scrape.

use std::sync::Arc;

use axum::routing::get;

/// Builds the exposition text at each scrape.
pub type Exposition = Arc<dyn Fn() -> String + Send + Sync>;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Binds `listen` (`ADDR:PORT` or `unix:/path`) and serves until the
/// runtime stops. Binding errors come back at once; serving runs on.
pub async fn serve(listen: &str, exposition: Exposition) -> Result<(), String> {
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = exposition();
            async move { ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text) }
        }),
    );
    match listen.strip_prefix("unix:") {
        Some(path) => {
            remove_stale_socket(path)?;
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("metrics: cannot listen on {path}: {e}"))?;
            tokio::spawn(async move { axum::serve(listener, router).await });
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
            tokio::spawn(async move { axum::serve(listener, router).await });
        }
    }
    Ok(())
}
