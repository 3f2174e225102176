//! The floor's client: the cheapest way to make the same API calls, one
//! keep-alive `reqwest` blocking client reused by every floor run, calling
//! the emulator's Files routes directly.

use std::io::Read;

use reqwest::blocking::{multipart, Client};
use serde_json::Value;

/// The Files API key of the emulator's default credentials.
pub const KEY: &str = "demo-files-key";

/// Page size of a list call (the API's maximum, as the daemon uses).
const TAKE: usize = 100;

pub struct Raw {
    http: Client,
    base: String,
}

impl Raw {
    pub fn new(base: &str) -> Raw {
        Raw {
            http: Client::new(),
            base: base.to_string(),
        }
    }

    /// Every live file of `app`, one page after the other with the query
    /// the daemon sends (`trashed=false&order_by=id`).
    pub fn list(&self, app: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v: Value = self
                .http
                .get(format!("{}/files/api/apps/{app}/files", self.base))
                .query(&[("skip", out.len()), ("take", TAKE)])
                .query(&[("trashed", "false"), ("order_by", "id")])
                .bearer_auth(KEY)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let page = v["data"].as_array().cloned().unwrap_or_default();
            let done = page.is_empty() || out.len() + page.len() >= count(&v);
            out.extend(page);
            if done {
                return out;
            }
        }
    }

    /// One plain GET of a `download_url`, read through a 1 MiB buffer as
    /// the mount side reads; returns the byte count.
    pub fn download(&self, url: &str) -> u64 {
        let resp = self.http.get(url).bearer_auth(KEY).send().unwrap();
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        drain(resp)
    }

    /// A new file as the daemon makes one: a blob upload, then a create.
    pub fn upload(&self, app: &str, name: &str, data: Vec<u8>) -> Value {
        let part = multipart::Part::bytes(data).file_name(name.to_string());
        let blob: Value = self
            .http
            .post(format!("{}/files/api/blobs", self.base))
            .bearer_auth(KEY)
            .multipart(multipart::Form::new().part("blob", part))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let resp = self
            .http
            .post(format!("{}/files/api/apps/{app}/files", self.base))
            .bearer_auth(KEY)
            .json(&serde_json::json!({"blob_id": blob["id"], "name": name}))
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "create {name}: {}",
            resp.status()
        );
        resp.json().unwrap()
    }

    /// Moves a file to its app's trash, which is what `rm` does in an app.
    pub fn trash(&self, id: u64) {
        let resp = self
            .http
            .post(format!("{}/files/api/files/{id}/trash", self.base))
            .bearer_auth(KEY)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "trash {id}: {}", resp.status());
    }
}

/// A page's total count (a bare page without one ends the paging).
fn count(page: &Value) -> usize {
    page["count"].as_u64().unwrap_or(0) as usize
}

/// Reads `r` to its end through one 1 MiB buffer; returns the byte count.
pub fn drain(mut r: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}
