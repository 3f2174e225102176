//! Serving file content as a strict server does: `Range` (206, 416), `HEAD`
//! with `Content-Length` and `Last-Modified`, and the fault switch that
//! ignores `Range`.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::Emu;

/// Answers a content request (GET or HEAD) for `data`.
pub fn serve(
    emu: &Emu,
    method: &Method,
    headers: &HeaderMap,
    data: Bytes,
    modified: SystemTime,
    media_type: &str,
) -> Response {
    let ignore_range = emu.faults.lock().ignore_range;
    let total = data.len() as u64;
    let range = if ignore_range {
        None
    } else {
        headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| parse_range(v, total))
    };
    let (status, body, content_range) = match range {
        None | Some(RangeSpec::Unsupported) => (StatusCode::OK, data, None),
        Some(RangeSpec::Unsatisfiable) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{total}")).unwrap(),
            );
            return r;
        }
        Some(RangeSpec::Satisfiable(a, b)) => (
            StatusCode::PARTIAL_CONTENT,
            data.slice(a as usize..=b as usize),
            Some(format!("bytes {a}-{b}/{total}")),
        ),
    };
    let len = body.len();
    let mut r = Response::new(if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&httpdate::fmt_http_date(modified)).unwrap(),
    );
    if !ignore_range {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
    }
    r
}

enum RangeSpec {
    Satisfiable(u64, u64),
    Unsatisfiable,
    /// Multi-range or malformed: answered with the whole body, as RFC 9110 allows.
    Unsupported,
}

fn parse_range(v: &str, total: u64) -> RangeSpec {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeSpec::Unsupported;
    };
    if spec.contains(',') {
        return RangeSpec::Unsupported;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsupported;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Unsupported;
        };
        if n == 0 || total == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Satisfiable(total.saturating_sub(n), total - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Unsupported;
    };
    let end = if b.is_empty() {
        total.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) => e.min(total.saturating_sub(1)),
            Err(_) => return RangeSpec::Unsupported,
        }
    };
    if start >= total || (!b.is_empty() && b.parse::<u64>().unwrap_or(0) < start) {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Satisfiable(start, end)
}
