//! Fault injection for the three APIs: 5xx answers, 429 with `Retry-After`,
//! connections dropped mid-body, added latency and content endpoints that
//! ignore `Range`. Rates are random; `fail_next` is deterministic for tests.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Emu;

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction (0–1) of matching requests answered `error_status`.
    pub error_rate: f64,
    /// Status of injected errors. Default 503.
    pub error_status: Option<u16>,
    /// Fraction of matching requests answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds sent with 429. Default 1.
    pub retry_after_secs: Option<u64>,
    /// Fraction of matching responses whose connection drops mid-body.
    pub drop_rate: f64,
    /// The next N matching responses drop mid-body (deterministic).
    pub drop_next: u32,
    /// Milliseconds added before every matching request is handled.
    pub latency_ms: u64,
    /// Content endpoints answer 200 with the whole body, ignoring `Range`.
    pub ignore_range: bool,
    /// The next N matching requests fail with `error_status` (deterministic).
    pub fail_next: u32,
    /// The first N matching requests pass untouched before `fail_next` and
    /// `drop_next` apply: fails the second step of a sequence, not the first.
    pub pass_first: u32,
    /// Request bodies larger than this are answered 413 before they are
    /// read, and the connection is closed, as nginx's
    /// `client_max_body_size` does. Applies to every request.
    pub max_upload_bytes: Option<u64>,
    /// Only requests whose path contains this string are affected.
    pub path_contains: Option<String>,
    /// Only requests of this method (`GET`, `POST`, …) are affected.
    pub method: Option<String>,
}

impl Faults {
    fn matches(&self, req: &Request) -> bool {
        if let Some(p) = &self.path_contains {
            if !req.uri().path().contains(p.as_str()) {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if !req.method().as_str().eq_ignore_ascii_case(m) {
                return false;
            }
        }
        true
    }
}

fn roll(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// Middleware applying the current faults to one API request.
pub async fn inject(State(emu): State<Emu>, req: Request, next: Next) -> Response {
    if let Some(refused) = too_large(&emu, &req) {
        return refused;
    }
    let (latency, fail, limit, drop, status, retry_after) = {
        let mut f = emu.faults.lock();
        if !f.matches(&req) {
            (0, false, false, false, 503, 1)
        } else if f.pass_first > 0 {
            f.pass_first -= 1;
            (f.latency_ms, false, false, false, 503, 1)
        } else {
            let mut fail = roll(f.error_rate);
            if f.fail_next > 0 {
                f.fail_next -= 1;
                fail = true;
            }
            let mut drop = roll(f.drop_rate);
            if f.drop_next > 0 {
                f.drop_next -= 1;
                drop = true;
            }
            (
                f.latency_ms,
                fail,
                roll(f.rate_limit_rate),
                drop,
                f.error_status.unwrap_or(503),
                f.retry_after_secs.unwrap_or(1),
            )
        }
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    if fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (
            status,
            axum::Json(serde_json::json!({"message": "injected fault"})),
        )
            .into_response();
    }
    if limit {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, retry_after.to_string())],
            axum::Json(serde_json::json!({"message": "rate limited (injected)"})),
        )
            .into_response();
    }
    let resp = next.run(req).await;
    if drop {
        return drop_mid_body(resp).await;
    }
    resp
}

/// The early 413 of a body over `max_upload_bytes`, judged by its
/// `Content-Length` alone: the body is never read.
fn too_large(emu: &Emu, req: &Request) -> Option<Response> {
    let max = emu.faults.lock().max_upload_bytes?;
    let len: u64 = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (len > max).then(|| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(axum::http::header::CONNECTION, "close")],
            axum::Json(serde_json::json!({"message": format!("request body of {len} bytes is over the limit of {max}")})),
        )
            .into_response()
    })
}

/// Sends the headers (with the full `Content-Length`) and half the body,
/// then fails the stream so the connection is cut.
async fn drop_mid_body(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    if bytes.len() < 2 {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let half = bytes.slice(..bytes.len() / 2);
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected drop",
        )),
    ]);
    let mut resp = Response::from_parts(parts, Body::from_stream(stream));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_LENGTH,
        axum::http::HeaderValue::from(bytes.len()),
    );
    resp
}
