//! The one HTTP client every remote call goes through: deadlines, retries with
//! backoff and jitter honouring `Retry-After`, one credential refresh on 401,
//! range downloads that cope with servers ignoring `Range`, and per-endpoint
//! counters for `status`, metrics and tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::remote::transfer::Tracker;

use super::buffers::{BufferPool, Download};
use super::error::{RemoteError, RemoteResult};
use super::transfer::Transfers;

/// Supplies the `Authorization` header of an API and renews it after a 401.
#[async_trait::async_trait]
pub trait Auth: Send + Sync {
    /// The header value to send (`Bearer …`), or `None` for no header.
    async fn authorization(&self) -> RemoteResult<Option<String>>;
    /// Called once after a 401. Returns true when the credentials changed and
    /// the call is worth repeating (re-read token file, new session token).
    async fn refresh(&self) -> RemoteResult<bool>;
}

/// No credentials (public URLs).
pub struct NoAuth;

#[async_trait::async_trait]
impl Auth for NoAuth {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        Ok(None)
    }
    async fn refresh(&self) -> RemoteResult<bool> {
        Ok(false)
    }
}

/// How often an upload's progress is looked at.
const PROGRESS_CHECK: Duration = Duration::from_millis(500);

/// Builds a multipart form anew for each attempt (forms cannot be cloned).
pub type FormFactory = Arc<dyn Fn() -> RemoteResult<reqwest::multipart::Form> + Send + Sync>;

/// A request body.
#[derive(Clone)]
pub enum Body {
    Empty,
    Json(serde_json::Value),
    Multipart(FormFactory),
}

/// Whether a failed call may be sent again without re-reading remote state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// GET, HEAD, PUT/PATCH of names, DELETE: retried on connection errors,
    /// 5xx and 429.
    Idempotent,
    /// Creating POSTs and toggles: sent once (a 401 before the server acted is
    /// still repeated after a credential refresh).
    Never,
}

/// One remote call, described as data so it can be re-sent.
#[derive(Clone)]
pub struct Call {
    /// Counter label, e.g. `files.list_app_files`.
    pub endpoint: &'static str,
    pub method: Method,
    pub url: Url,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Body,
    pub retry: Retry,
    /// An upload's byte counter: its attempts time out only when no byte
    /// moves for `attempt_timeout` (a large file takes as long as it takes),
    /// and the time an attempt runs past that limit while bytes still move
    /// is not held against `call_deadline`.
    pub progress: Option<Arc<Tracker>>,
}

impl Call {
    pub fn new(endpoint: &'static str, method: Method, url: Url) -> Self {
        let retry = if method == Method::POST {
            Retry::Never
        } else {
            Retry::Idempotent
        };
        Call {
            endpoint,
            method,
            url,
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            retry,
            progress: None,
        }
    }

    /// See [`Call::progress`].
    pub fn progress(mut self, tracker: Arc<Tracker>) -> Self {
        self.progress = Some(tracker);
        self
    }
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }
    pub fn header(mut self, name: HeaderName, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
    pub fn json(mut self, value: serde_json::Value) -> Self {
        self.body = Body::Json(value);
        self
    }
    pub fn multipart(mut self, factory: FormFactory) -> Self {
        self.body = Body::Multipart(factory);
        self
    }
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

/// A successful response with its whole body read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> RemoteResult<T> {
        serde_json::from_slice(&self.body).map_err(|e| RemoteError::Decode(e.to_string()))
    }
    /// `Content-Length` of a HEAD or GET.
    pub fn content_length(&self) -> Option<u64> {
        header_str(&self.headers, reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
    }
    /// `Last-Modified`, parsed.
    pub fn last_modified(&self) -> Option<SystemTime> {
        header_str(&self.headers, reqwest::header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(v).ok())
    }
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// How calls are retried and bounded.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff; doubled each retry, with full jitter.
    pub base_delay: Duration,
    /// Cap on one backoff or `Retry-After` wait.
    pub max_delay: Duration,
    /// Deadline of one attempt (connect, send, read the body).
    pub attempt_timeout: Duration,
    /// Deadline of the whole call, retries included.
    pub call_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
            call_deadline: Duration::from_secs(60),
        }
    }
}

/// Counters of one endpoint label.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EndpointStats {
    pub calls: u64,
    pub attempts: u64,
    pub retries: u64,
    pub failures: u64,
    pub bytes_in: u64,
    /// Time spent in calls, retries and backoff included.
    #[serde(default)]
    pub micros: u64,
}

/// The shared client. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: RetryPolicy,
    stats: Arc<Mutex<BTreeMap<&'static str, EndpointStats>>>,
    transfers: Transfers,
    buffers: Arc<BufferPool>,
}

impl HttpClient {
    pub fn new(policy: RetryPolicy) -> RemoteResult<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("bridgefs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        Ok(HttpClient {
            client,
            policy,
            stats: Arc::default(),
            transfers: Transfers::default(),
            buffers: Arc::default(),
        })
    }

    /// Uploads in flight; also builds their streamed file parts.
    pub fn transfers(&self) -> &Transfers {
        &self.transfers
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Lets go of the idle download buffers (SIGHUP).
    pub fn release_buffers(&self) {
        self.buffers.clear();
    }

    /// How many download buffers wait idle for reuse.
    pub fn idle_buffers(&self) -> usize {
        self.buffers.idle()
    }

    /// A snapshot of the per-endpoint counters.
    pub fn stats(&self) -> BTreeMap<String, EndpointStats> {
        self.stats
            .lock()
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// Sends the call (retrying as its policy allows) and returns the
    /// successful response with its body read; any non-2xx is an error.
    pub async fn send(&self, call: &Call, auth: &dyn Auth) -> RemoteResult<Response> {
        self.run(call, auth, None).await
    }

    /// Sends the call and decodes a JSON body.
    pub async fn json<T: DeserializeOwned>(&self, call: &Call, auth: &dyn Auth) -> RemoteResult<T> {
        self.send(call, auth).await?.json()
    }

    /// Downloads `len` bytes at `offset` with `Range: bytes=a-b`. Accepts
    /// `206` with that range or `200` with the whole body (then skips to the
    /// offset and stops reading after `len` bytes). Returns fewer bytes only at
    /// the end of the content; `416` means the offset is past the end (empty).
    pub async fn get_range(
        &self,
        call: &Call,
        auth: &dyn Auth,
        offset: u64,
        len: u64,
    ) -> RemoteResult<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut call = call.clone();
        call.headers.push((
            reqwest::header::RANGE,
            format!("bytes={}-{}", offset, offset + len - 1),
        ));
        match self.run(&call, auth, Some((offset, len))).await {
            Ok(resp) => Ok(resp.body),
            Err(RemoteError::Status { status: 416, .. }) => Ok(Bytes::new()),
            Err(e) => Err(e),
        }
    }

    fn count(&self, endpoint: &'static str, f: impl FnOnce(&mut EndpointStats)) {
        f(self.stats.lock().entry(endpoint).or_default());
    }

    /// One call, retries included: counted, timed and logged once at debug
    /// level (method, endpoint, status, time, retries).
    async fn run(
        &self,
        call: &Call,
        auth: &dyn Auth,
        range: Option<(u64, u64)>,
    ) -> RemoteResult<Response> {
        let started = Instant::now();
        let retries_before = self
            .stats
            .lock()
            .get(call.endpoint)
            .map_or(0, |s| s.retries);
        let result = self.run_with_retries(call, auth, range, started).await;
        let micros = started.elapsed().as_micros() as u64;
        let retries = self
            .stats
            .lock()
            .get(call.endpoint)
            .map_or(0, |s| s.retries)
            - retries_before;
        self.count(call.endpoint, |s| s.micros += micros);
        let status = match &result {
            Ok(r) => r.status.as_u16().to_string(),
            Err(e) => e
                .status()
                .map_or_else(|| "error".to_string(), |s| s.to_string()),
        };
        tracing::debug!(method = %call.method, endpoint = call.endpoint, status = %status, ms = micros / 1000, retries, "http");
        result
    }

    async fn run_with_retries(
        &self,
        call: &Call,
        auth: &dyn Auth,
        range: Option<(u64, u64)>,
        started: Instant,
    ) -> RemoteResult<Response> {
        self.count(call.endpoint, |s| s.calls += 1);
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        // Time uploads ran past their attempt limit while sending: not held
        // against the deadline.
        let mut sending = Duration::ZERO;
        loop {
            attempt += 1;
            self.count(call.endpoint, |s| s.attempts += 1);
            let remaining = self
                .policy
                .call_deadline
                .saturating_sub(started.elapsed().saturating_sub(sending))
                .min(self.policy.attempt_timeout);
            if remaining.is_zero() {
                self.count(call.endpoint, |s| s.failures += 1);
                return Err(RemoteError::Timeout(self.policy.call_deadline));
            }
            let attempt_started = Instant::now();
            let outcome = self.watched_attempt(call, auth, range, remaining).await;
            if call.progress.is_some() {
                sending += attempt_started.elapsed().saturating_sub(remaining);
            }
            let (err, retry_after) = match outcome {
                Ok(resp) => {
                    self.count(call.endpoint, |s| s.bytes_in += resp.body.len() as u64);
                    return Ok(resp);
                }
                Err(Attempt::Unauthorized(err)) => {
                    if !refreshed {
                        refreshed = true;
                        match auth.refresh().await {
                            Ok(true) => {
                                tracing::info!(
                                    endpoint = call.endpoint,
                                    "credentials refreshed after 401; retrying once"
                                );
                                continue;
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(endpoint = call.endpoint, error = %e, "credential refresh failed")
                            }
                        }
                    }
                    tracing::error!(endpoint = call.endpoint, error = %err, "authentication failed");
                    self.count(call.endpoint, |s| s.failures += 1);
                    return Err(err);
                }
                Err(Attempt::Final(err)) => {
                    self.count(call.endpoint, |s| s.failures += 1);
                    return Err(err);
                }
                Err(Attempt::Transient(err, retry_after)) => (err, retry_after),
            };
            let may_retry = call.retry == Retry::Idempotent && attempt < self.policy.max_attempts;
            if !may_retry {
                self.count(call.endpoint, |s| s.failures += 1);
                tracing::warn!(endpoint = call.endpoint, error = %err, attempts = attempt, "remote call failed");
                return Err(err);
            }
            let backoff = self.backoff(attempt, retry_after);
            if started.elapsed() + backoff >= self.policy.call_deadline {
                self.count(call.endpoint, |s| s.failures += 1);
                tracing::warn!(endpoint = call.endpoint, error = %err, attempts = attempt, "remote call failed; no time left to retry");
                return Err(err);
            }
            tracing::debug!(endpoint = call.endpoint, error = %err, ?backoff, "retrying");
            self.count(call.endpoint, |s| s.retries += 1);
            tokio::time::sleep(backoff).await;
        }
    }

    /// One attempt, cut after `limit`: of silence for an upload (no byte
    /// sent and no answer), of time for any other call.
    async fn watched_attempt(
        &self,
        call: &Call,
        auth: &dyn Auth,
        range: Option<(u64, u64)>,
        limit: Duration,
    ) -> Result<Response, Attempt> {
        let timed_out = || Attempt::Transient(RemoteError::Timeout(limit), None);
        let Some(tracker) = &call.progress else {
            return tokio::time::timeout(limit, self.attempt(call, auth, range))
                .await
                .unwrap_or_else(|_| Err(timed_out()));
        };
        let attempt = self.attempt(call, auth, range);
        tokio::pin!(attempt);
        let (mut last, mut quiet_since) = (tracker.sent(), Instant::now());
        loop {
            tokio::select! {
                outcome = &mut attempt => return outcome,
                _ = tokio::time::sleep(PROGRESS_CHECK) => {
                    let now = tracker.sent();
                    if now != last {
                        (last, quiet_since) = (now, Instant::now());
                    } else if quiet_since.elapsed() >= limit {
                        return Err(timed_out());
                    }
                }
            }
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.policy.max_delay);
        }
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.policy.max_delay);
        // Full jitter: anywhere between half and all of the exponential step.
        let half = exp / 2;
        half + exp.mul_f64(rand::random::<f64>() * 0.5)
    }

    async fn attempt(
        &self,
        call: &Call,
        auth: &dyn Auth,
        range: Option<(u64, u64)>,
    ) -> Result<Response, Attempt> {
        let mut req = self.client.request(call.method.clone(), call.url.clone());
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        for (name, value) in &call.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| Attempt::Final(RemoteError::Local(e.to_string())))?;
            req = req.header(name.clone(), value);
        }
        if let Some(authz) = auth.authorization().await.map_err(Attempt::Final)? {
            req = req.header(reqwest::header::AUTHORIZATION, authz);
        }
        req = match &call.body {
            Body::Empty => req,
            Body::Json(v) => req.json(v),
            Body::Multipart(factory) => req.multipart(form(call, factory).await?),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Attempt::Transient(RemoteError::Connection(describe(&e)), None))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if !status.is_success() {
            let retry_after = parse_retry_after(&headers);
            let body = resp.bytes().await.unwrap_or_default();
            let err = RemoteError::Status {
                status: status.as_u16(),
                message: error_message(&body),
            };
            return Err(match status.as_u16() {
                401 => Attempt::Unauthorized(err),
                429 | 500..=599 => Attempt::Transient(err, retry_after),
                _ => Attempt::Final(err),
            });
        }
        let body = match range {
            None => resp
                .bytes()
                .await
                .map_err(|e| Attempt::Transient(RemoteError::Connection(describe(&e)), None))?,
            Some((offset, len)) => {
                let skip = if status == StatusCode::PARTIAL_CONTENT {
                    0
                } else {
                    offset
                };
                read_window(
                    resp,
                    self.buffers.take(len.min(16 << 20) as usize),
                    skip,
                    len,
                )
                .await?
            }
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// An attempt's multipart form. One that streams a local file opens it
/// on a blocking thread: an `open` and `fstat` of the spool are disk work,
/// and the runtime's worker serves every other call meanwhile.
async fn form(call: &Call, factory: &FormFactory) -> Result<reqwest::multipart::Form, Attempt> {
    let opens_a_file = call.progress.as_ref().is_some_and(|t| t.opens_a_file());
    let built = if opens_a_file {
        let factory = factory.clone();
        tokio::task::spawn_blocking(move || factory())
            .await
            .unwrap_or_else(|e| Err(RemoteError::Local(e.to_string())))
    } else {
        factory()
    };
    built.map_err(Attempt::Final)
}

/// Why one attempt failed, and whether another may help.
enum Attempt {
    Transient(RemoteError, Option<Duration>),
    Unauthorized(RemoteError),
    Final(RemoteError),
}

/// Reads `len` bytes after skipping `skip` from a streamed body into
/// `out`, then stops.
async fn read_window(
    resp: reqwest::Response,
    mut out: Download,
    skip: u64,
    len: u64,
) -> Result<Bytes, Attempt> {
    let mut stream = resp.bytes_stream();
    let mut skipped = 0u64;
    while (out.len() as u64) < len {
        let Some(chunk) = stream.next().await else {
            break;
        };
        let mut chunk =
            chunk.map_err(|e| Attempt::Transient(RemoteError::Connection(describe(&e)), None))?;
        if skipped < skip {
            let drop = ((skip - skipped) as usize).min(chunk.len());
            skipped += drop as u64;
            chunk = chunk.slice(drop..);
        }
        let want = (len as usize - out.len()).min(chunk.len());
        out.extend_from_slice(&chunk[..want]);
    }
    Ok(out.freeze())
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest errors print the URL, never headers; drop the query string all
    // the same, as it may carry a signature.
    let mut msg = e.without_url_ref_string();
    if let Some(url) = e.url() {
        msg = format!(
            "{msg} ({}{})",
            url.origin().ascii_serialization(),
            url.path()
        );
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        use std::error::Error;
        let mut s = if self.is_timeout() {
            "timeout".to_string()
        } else if self.is_connect() {
            "connect failed".to_string()
        } else if self.is_body() || self.is_decode() {
            "body interrupted".to_string()
        } else {
            "request failed".to_string()
        };
        let mut source = self.source();
        while let Some(inner) = source {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            source = inner.source();
        }
        s
    }
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, RETRY_AFTER)?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The server's explanation: JSON `message`, `title`/`detail`, or the text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.to_string();
        }
        let title = v.get("title").and_then(|m| m.as_str());
        let detail = v.get("detail").and_then(|m| m.as_str());
        match (title, detail) {
            (Some(t), Some(d)) => return format!("{t}: {d}"),
            (Some(t), None) => return t.to_string(),
            (None, Some(d)) => return d.to_string(),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_string()
    } else {
        text.chars().take(200).collect()
    }
}

/// Joins a base URL that may carry a path (`https://api.timetap.com/live`)
/// with an API path (`/files`), keeping the base path. An absolute URL in
/// `path` is returned as it is.
pub fn join(base: &Url, path: &str) -> RemoteResult<Url> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return Url::parse(path).map_err(|e| RemoteError::Local(format!("bad URL: {e}")));
    }
    let mut s = base.as_str().trim_end_matches('/').to_string();
    if !path.starts_with('/') {
        s.push('/');
    }
    s.push_str(path);
    Url::parse(&s).map_err(|e| RemoteError::Local(format!("bad URL: {e}")))
}

/// What RFC 3986 lets stand unencoded in a path segment: unreserved
/// characters, sub-delims, `:` and `@` (so a uuid's `-` goes as `-`).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Percent-encodes one path segment (an id or uid).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_encode_only_what_rfc_3986_requires() {
        assert_eq!(segment("3f2a-11e9-b210"), "3f2a-11e9-b210");
        assert_eq!(segment("a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
    }

    #[test]
    fn join_keeps_base_path() {
        let base = Url::parse("https://api.timetap.com/live").unwrap();
        assert_eq!(
            join(&base, "/files").unwrap().as_str(),
            "https://api.timetap.com/live/files"
        );
        let base = Url::parse("https://api.timetap.com/live/").unwrap();
        assert_eq!(
            join(&base, "files").unwrap().as_str(),
            "https://api.timetap.com/live/files"
        );
        assert_eq!(join(&base, "http://x/y").unwrap().as_str(), "http://x/y");
    }

    #[test]
    fn messages_are_extracted() {
        assert_eq!(error_message(br#"{"message":"nope"}"#), "nope");
        assert_eq!(
            error_message(br#"{"title":"Not Found","detail":"file 3"}"#),
            "Not Found: file 3"
        );
        assert_eq!(error_message(b""), "(no message)");
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
    }
}
