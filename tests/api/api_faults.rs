//! Fault injection, the control surface and the shared HTTP client against
//! it: 5xx (rate and deterministic), 429 with Retry-After, connections
//! dropped mid-body, latency, Range ignored; counters, log, reset; retries,
//! no retry of creating POSTs, one credential refresh, deadlines.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::Emulator;
use bridgefs::remote::http::{join, Auth, Call, HttpClient, NoAuth, RetryPolicy};
use bridgefs::remote::transfer::Body;
use bridgefs::remote::{RemoteError, RemoteResult};
use bridgefs_emulator::Faults;
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const KEY: &str = "demo-files-key";

fn control(emu: &Emulator, faults: Value) {
    let r = Client::new()
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&faults)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn get(emu: &Emulator, path: &str) -> reqwest::blocking::Response {
    Client::new()
        .get(format!("{}{path}", emu.url()))
        .bearer_auth(KEY)
        .send()
        .unwrap()
}

/// The download URL of the demo's 4 MiB video.
fn big_file(emu: &Emulator) -> String {
    let v: Value = get(emu, "/files/api/apps/handbook/files?q=video")
        .json()
        .unwrap();
    v["data"][0]["download_url"].as_str().unwrap().to_string()
}

#[test]
fn control_surface_counts_logs_and_resets() {
    let emu = Emulator::demo();
    let http = Client::new();
    get(&emu, "/files/api/apps/handbook");
    get(&emu, "/files/api/apps/handbook");
    get(&emu, "/files/api/apps/contracts/files");
    let counts: Value = http
        .get(format!("{}/_emulator/counts", emu.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(counts["GET /files/api/apps/{app}"], 2);
    assert_eq!(counts["GET /files/api/apps/{app}/files"], 1);
    let log: Value = http
        .get(format!("{}/_emulator/requests", emu.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(log.as_array().unwrap().len(), 3);
    assert_eq!(log[0]["path"], "/files/api/apps/handbook");
    assert_eq!(log[0]["status"], 200);
    // State, faults readable; reset clears counters and faults.
    let state: Value = http
        .get(format!("{}/_emulator/state", emu.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(state["files"]["apps"].is_array());
    control(&emu, serde_json::json!({"latency_ms": 5}));
    let f: Value = http
        .get(format!("{}/_emulator/faults", emu.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(f["latency_ms"], 5);
    let r = http
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&serde_json::json!({"bogus": 1}))
        .send()
        .unwrap();
    assert!(
        r.status().is_client_error(),
        "unknown fault fields are refused"
    );
    assert_eq!(
        http.post(format!("{}/_emulator/reset", emu.url()))
            .send()
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let counts: Value = http
        .get(format!("{}/_emulator/counts", emu.url()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(counts, serde_json::json!({}));
    assert_eq!(emu.emu().faults.lock().clone(), Faults::default());
}

#[test]
fn each_fault_switch() {
    let emu = Emulator::demo();
    // 5xx at rate 1, only for matching paths and methods.
    control(
        &emu,
        serde_json::json!({"error_rate": 1.0, "error_status": 502, "path_contains": "/apps/handbook"}),
    );
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        get(&emu, "/files/api/apps/contracts").status(),
        StatusCode::OK
    );
    control(
        &emu,
        serde_json::json!({"error_rate": 1.0, "method": "POST"}),
    );
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::OK
    );
    // fail_next: exactly N failures.
    control(&emu, serde_json::json!({"fail_next": 2}));
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::OK
    );
    // 429 with Retry-After.
    control(
        &emu,
        serde_json::json!({"rate_limit_rate": 1.0, "retry_after_secs": 7}),
    );
    let r = get(&emu, "/files/api/apps/handbook");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    // Latency (only a lower bound: timings stay out of assertions' upper side).
    control(&emu, serde_json::json!({"latency_ms": 150}));
    let t = Instant::now();
    assert_eq!(
        get(&emu, "/files/api/apps/handbook").status(),
        StatusCode::OK
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    // Range ignored: 200 with the whole body.
    control(&emu, serde_json::json!({}));
    let url = big_file(&emu);
    control(&emu, serde_json::json!({"ignore_range": true}));
    let r = Client::new()
        .get(&url)
        .bearer_auth(KEY)
        .header("Range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().unwrap().len(), 4 << 20);
    // A connection dropped mid-body: the client sees a body error.
    control(&emu, serde_json::json!({"drop_rate": 1.0}));
    let r = Client::new().get(&url).bearer_auth(KEY).send().unwrap();
    assert_eq!(r.headers()["content-length"], (4u64 << 20).to_string());
    assert!(r.bytes().is_err(), "the body must be cut short");
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(10),
        call_deadline: Duration::from_secs(20),
    }
}

struct Key(&'static str);

#[async_trait::async_trait]
impl Auth for Key {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        Ok(Some(format!("Bearer {}", self.0)))
    }
    async fn refresh(&self) -> RemoteResult<bool> {
        Ok(false)
    }
}

/// Starts with a wrong key; a refresh switches to the right one.
struct Rotating {
    refreshed: AtomicU32,
}

#[async_trait::async_trait]
impl Auth for Rotating {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        let key = if self.refreshed.load(Ordering::SeqCst) > 0 {
            KEY
        } else {
            "stale"
        };
        Ok(Some(format!("Bearer {key}")))
    }
    async fn refresh(&self) -> RemoteResult<bool> {
        self.refreshed.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

#[test]
fn the_http_client_retries_what_it_may_and_nothing_else() {
    // The emulator (its own runtime) is started and dropped outside ours.
    let emu = Emulator::demo();
    let big = big_file(&emu);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client_checks(&emu, &big));
}

async fn client_checks(emu: &Emulator, big: &str) {
    let http = HttpClient::new(policy()).unwrap();
    let base = url::Url::parse(&format!("{}/files", emu.url())).unwrap();
    let app = Call::new(
        "test.app",
        Method::GET,
        join(&base, "/api/apps/handbook").unwrap(),
    );

    // Two 503s, then success: three attempts.
    emu.set_faults(Faults {
        fail_next: 2,
        ..Default::default()
    });
    emu.reset_counts();
    let v: Value = http.json(&app, &Key(KEY)).await.unwrap();
    assert_eq!(v["uid"], "handbook");
    assert_eq!(emu.count(&["GET /files/api/apps/{app}"]), 3);
    assert_eq!(http.stats()["test.app"].retries, 2);

    // 429 with Retry-After: 1 s is honoured (lower bound only).
    emu.set_faults(Faults {
        fail_next: 1,
        error_status: Some(429),
        ..Default::default()
    });
    http.json::<Value>(&app, &Key(KEY)).await.unwrap();
    emu.set_faults(Faults {
        rate_limit_rate: 1.0,
        retry_after_secs: Some(1),
        path_contains: Some("contracts".into()),
        ..Default::default()
    });
    let t = Instant::now();
    let contracts = Call::new(
        "test.app",
        Method::GET,
        join(&base, "/api/apps/contracts").unwrap(),
    );
    let err = http.json::<Value>(&contracts, &Key(KEY)).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "Retry-After honoured between attempts"
    );

    // A POST that creates is sent once, even on 503.
    emu.set_faults(Faults {
        error_rate: 1.0,
        method: Some("POST".into()),
        ..Default::default()
    });
    emu.reset_counts();
    let create = Call::new(
        "test.create",
        Method::POST,
        join(&base, "/api/apps/handbook/files").unwrap(),
    )
    .json(serde_json::json!({"blob_id": 1}));
    let err = http.send(&create, &Key(KEY)).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(emu.count(&["POST /files/api/apps/{app}/files"]), 1);
    assert_eq!(errno_of(&err), libc::EIO);

    // A body dropped mid-way is retried; a server ignoring Range still
    // yields the right window.
    emu.set_faults(Faults::default());
    let download = Call::new("test.download", Method::GET, url::Url::parse(big).unwrap());
    let whole = http
        .get_range(&download, &Key(KEY), 0, 4 << 20)
        .await
        .unwrap();
    emu.set_faults(Faults {
        ignore_range: true,
        ..Default::default()
    });
    let window = http
        .get_range(&download, &Key(KEY), 1_000_000, 5000)
        .await
        .unwrap();
    assert_eq!(&window[..], &whole[1_000_000..1_005_000]);
    emu.set_faults(Faults {
        drop_next: 2,
        ..Default::default()
    });
    emu.reset_counts();
    let again = http
        .get_range(&download, &Key(KEY), 0, 4 << 20)
        .await
        .unwrap();
    assert_eq!(again, whole);
    assert_eq!(
        emu.count(&["/download"]),
        3,
        "two dropped bodies, then the whole one"
    );
    let tail = http
        .get_range(&download, &Key(KEY), (4 << 20) + 10, 10)
        .await
        .unwrap();
    assert!(tail.is_empty(), "416 past the end is an empty read");

    // 401: one refresh, one retry.
    let rotating = Rotating {
        refreshed: AtomicU32::new(0),
    };
    http.json::<Value>(&app, &rotating).await.unwrap();
    assert_eq!(rotating.refreshed.load(Ordering::SeqCst), 1);
    let err = http.json::<Value>(&app, &Key("bad")).await.unwrap_err();
    assert_eq!((err.status(), errno_of(&err)), (Some(401), libc::EACCES));
    let err = http.json::<Value>(&app, &NoAuth).await.unwrap_err();
    assert_eq!(err.status(), Some(401));

    // The deadline bounds every call.
    let short = HttpClient::new(RetryPolicy {
        call_deadline: Duration::from_millis(300),
        attempt_timeout: Duration::from_millis(300),
        ..policy()
    })
    .unwrap();
    emu.set_faults(Faults {
        latency_ms: 1500,
        ..Default::default()
    });
    let err = short.json::<Value>(&app, &Key(KEY)).await.unwrap_err();
    assert!(matches!(err, RemoteError::Timeout(_)), "{err:?}");
    assert_eq!(errno_of(&err), libc::ETIMEDOUT);
    emu.set_faults(Faults::default());
}

/// The errno the mount answers for a failed call: the production table
/// (status → `FsError` in the backends, `FsError` → errno in the core).
fn errno_of(err: &RemoteError) -> i32 {
    bridgefs::fs::FsError::from(err.clone()).errno()
}

/// A server that reads a request's body slowly (1 MiB every 100 ms) and
/// then answers 201 with a blob object. Returns its base URL.
fn slow_reader_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("a body of known length");
        let mut left = length;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = s.read(&mut buf[..left.min(1 << 20)]).unwrap();
            assert!(n > 0, "the client stopped sending");
            left -= n;
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = r#"{"id":7,"name":"slow.bin","media_type":"application/octet-stream","size":1}"#;
        let _ = write!(
            s,
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    format!("http://{addr}")
}

/// An upload that takes longer than one attempt's timeout but keeps
/// sending is not cut: only silence times out (a large file over a slow
/// link would otherwise never arrive).
#[test]
fn a_slow_upload_that_keeps_sending_is_not_cut_by_the_attempt_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.bin");
    // Larger than the sockets' buffers, so the sender waits for the reader.
    std::fs::write(&file, vec![5u8; 32 << 20]).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "k").unwrap();
    let http = HttpClient::new(RetryPolicy {
        attempt_timeout: Duration::from_secs(1),
        call_deadline: Duration::from_secs(2),
        ..policy()
    })
    .unwrap();
    let client =
        bridgefs::remote::files::FilesClient::new(http, &slow_reader_server(), &key, &[]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let blob = rt.block_on(client.upload_blob(&Body::File(file.clone()), "slow.bin"));
    assert_eq!(blob.expect("uploaded").id, 7);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "it did take longer than the deadline"
    );
}
