//! The Files-apps emulator over real HTTP: every route of API-CONTRACT.md §3,
//! each error status, the paging envelope, revisions and trash semantics.

use crate::common::Emulator;
use reqwest::blocking::{multipart, Client};
use reqwest::StatusCode;
use serde_json::{json, Value};

const KEY: &str = "demo-files-key";

struct Api {
    base: String,
    http: Client,
}

impl Api {
    fn new(emu: &Emulator) -> Api {
        Api {
            base: format!("{}/files", emu.url()),
            http: Client::new(),
        }
    }
    fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .send()
            .unwrap()
    }
    fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().unwrap()
    }
    fn post(&self, path: &str, body: Value) -> reqwest::blocking::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .unwrap()
    }
    fn blob(&self, name: &str, data: &[u8]) -> u64 {
        let form = multipart::Form::new().part(
            "blob",
            multipart::Part::bytes(data.to_vec()).file_name(name.to_string()),
        );
        let r = self
            .http
            .post(format!("{}/api/blobs", self.base))
            .bearer_auth(KEY)
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().unwrap();
        assert_eq!(v["size"], data.len());
        assert_eq!(v["name"], name);
        v["id"].as_u64().unwrap()
    }
    fn create(&self, app: &str, name: &str, data: &[u8]) -> Value {
        let blob = self.blob(name, data);
        let r = self.post(
            &format!("/api/apps/{app}/files"),
            json!({"blob_id": blob, "name": name}),
        );
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().unwrap()
    }
    fn bytes(&self, url: &str) -> Vec<u8> {
        self.http
            .get(url)
            .bearer_auth(KEY)
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec()
    }
}

#[test]
fn auth_apps_and_errors() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let r = api
        .http
        .get(format!("{}/api/apps/handbook", api.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = r.json().unwrap();
    assert_eq!(problem["status"], 401);
    assert!(problem["title"].is_string() && problem["type"].is_string());
    let r = api
        .http
        .get(format!("{}/api/apps/handbook", api.base))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let app = api.json("/api/apps/handbook");
    assert_eq!(
        (app["id"].as_u64(), app["uid"].as_str()),
        (Some(1), Some("handbook"))
    );
    assert_eq!(api.json("/api/apps/2")["uid"], "contracts");
    assert_eq!(api.get("/api/apps/nope").status(), StatusCode::NOT_FOUND);
    assert_eq!(api.get("/api/files/999999").status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/api/posts/999/attachments").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/api/apps/handbook/files?take=0").status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("/api/apps/handbook/files?take=101").status(),
        StatusCode::BAD_REQUEST
    );
    // Create: missing blob_id 422, unknown blob 404, name clash 409.
    assert_eq!(
        api.post("/api/apps/handbook/files", json!({"name": "x"}))
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        api.post("/api/apps/handbook/files", json!({"blob_id": 999999}))
            .status(),
        StatusCode::NOT_FOUND
    );
    let blob = api.blob("Welcome.md", b"dup");
    assert_eq!(
        api.post("/api/apps/handbook/files", json!({"blob_id": blob}))
            .status(),
        StatusCode::CONFLICT
    );
    let r = api.post(
        "/api/apps/handbook/files",
        json!({"blob_id": blob, "replace": true}),
    );
    assert!(r.status().is_success());
}

#[test]
fn paging_envelope_filters_and_order() {
    let emu = Emulator::start(bridgefs_emulator::Dataset::empty());
    let api = Api::new(&emu);
    for i in 0..7 {
        api.create(
            "contracts",
            &format!("f{i}.txt"),
            format!("{i}").repeat(i + 1).as_bytes(),
        );
    }
    let v = api.json("/api/apps/contracts/files?take=3");
    assert_eq!(
        (v["start"].as_u64(), v["end"].as_u64(), v["count"].as_u64()),
        (Some(0), Some(3), Some(7))
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    let v = api.json("/api/apps/contracts/files?skip=6&take=3");
    assert_eq!(
        (v["end"].as_u64(), v["data"].as_array().unwrap().len()),
        (Some(7), 1)
    );
    let v = api.json("/api/apps/contracts/files?skip=7&take=3");
    assert!(v.get("data").is_none(), "an empty page has no data: {v}");
    assert_eq!(v["count"], 7);
    assert_eq!(
        api.json("/api/apps/contracts/files?count_only=true"),
        json!({"count": 7})
    );
    let v = api.json("/api/apps/contracts/files?order_by=size+desc&take=1");
    assert_eq!(v["data"][0]["name"], "f6.txt");
    let v = api.json("/api/apps/contracts/files?q=F3");
    assert_eq!(v["count"], 1);
    assert_eq!(api.json("/api/files?take=100")["count"], 7);
    // Default take is 25; a file object has the contract's fields.
    let f = &api.json("/api/apps/contracts/files")["data"][0];
    for k in [
        "id",
        "rev",
        "name",
        "kind",
        "media_type",
        "size",
        "download_url",
        "created_at",
        "updated_at",
        "app",
    ] {
        assert!(f.get(k).is_some(), "missing {k}: {f}");
    }
    assert!(
        f.get("metadata").is_none() && f.get("tags").is_none(),
        "empty fields are omitted: {f}"
    );
}

#[test]
fn revisions_trash_update_and_downloads() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let f = api.create("handbook", "doc.txt", b"one");
    let id = f["id"].as_u64().unwrap();
    assert_eq!(f["rev"], 1);
    // PATCH with backup keeps the old content as a revision.
    let blob = api.blob("doc.txt", b"two!");
    let r = api
        .http
        .patch(format!("{}/api/files/{id}", api.base))
        .bearer_auth(KEY)
        .json(&json!({"blob_id": blob, "backup": true}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert_eq!((v["rev"].as_u64(), v["size"].as_u64()), (Some(2), Some(4)));
    let versions = api.json(&format!("/api/files/{id}/versions"));
    let revs: Vec<u64> = versions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rev"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, vec![2, 1], "newest first");
    let v1 = api.json(&format!("/api/files/{id}/versions/1"));
    assert_eq!(api.bytes(v1["download_url"].as_str().unwrap()), b"one");
    // Restoring revision 1 adds revision 3 with its content; all kept.
    assert_eq!(
        api.post(&format!("/api/files/{id}/versions/1/restore"), json!({}))
            .status(),
        StatusCode::NO_CONTENT
    );
    let cur = api.json(&format!("/api/files/{id}"));
    assert_eq!(cur["rev"], 3);
    assert_eq!(api.bytes(cur["download_url"].as_str().unwrap()), b"one");
    assert_eq!(
        api.json(&format!("/api/files/{id}/versions"))["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Delete a revision.
    let r = api
        .http
        .delete(format!("{}/api/files/{id}/versions/2", api.base))
        .bearer_auth(KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("/api/files/{id}/versions/2")).status(),
        StatusCode::NOT_FOUND
    );
    // Rename, tags, metadata; a clash is 409, an empty name 422.
    let r = api
        .http
        .patch(format!("{}/api/files/{id}", api.base))
        .bearer_auth(KEY)
        .json(&json!({"name": "renamed.txt", "tags": ["a"], "metadata": {"k": "v"}}))
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(
        (
            v["name"].as_str(),
            v["tags"][0].as_str(),
            v["metadata"]["k"].as_str()
        ),
        (Some("renamed.txt"), Some("a"), Some("v"))
    );
    let r = api
        .http
        .patch(format!("{}/api/files/{id}", api.base))
        .bearer_auth(KEY)
        .json(&json!({"name": "Welcome.md"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = api
        .http
        .patch(format!("{}/api/files/{id}", api.base))
        .bearer_auth(KEY)
        .json(&json!({"name": ""}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Trash: gone from the default list and from GET, back with trashed=true.
    assert_eq!(
        api.post(&format!("/api/files/{id}/trash"), json!({}))
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/api/files/{id}")).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.json(&format!("/api/files/{id}?trashed=true"))["is_trashed"],
        true
    );
    let trashed = api.json("/api/apps/handbook/files?trashed=true");
    assert!(trashed["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == id));
    let both = api.json("/api/apps/handbook/files?trashed=null&take=100")["count"]
        .as_u64()
        .unwrap();
    let live = api.json("/api/apps/handbook/files?take=100")["count"]
        .as_u64()
        .unwrap();
    assert_eq!(both, live + trashed["count"].as_u64().unwrap());
    assert_eq!(
        api.post(&format!("/api/files/{id}/restore"), json!({}))
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.json(&format!("/api/files/{id}"))["is_trashed"], false);
    // Delete for good.
    let r = api
        .http
        .delete(format!("{}/api/files/{id}", api.base))
        .bearer_auth(KEY)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("/api/files/{id}?trashed=true")).status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn ranges_head_and_attachments() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let f = api.create("handbook", "range.bin", b"0123456789");
    let url = f["download_url"].as_str().unwrap().to_string();
    let r = api
        .http
        .get(&url)
        .bearer_auth(KEY)
        .header("Range", "bytes=2-5")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-5/10");
    assert_eq!(r.bytes().unwrap().as_ref(), b"2345");
    let r = api
        .http
        .get(&url)
        .bearer_auth(KEY)
        .header("Range", "bytes=20-30")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = api.http.head(&url).bearer_auth(KEY).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "10");
    assert!(r.headers().contains_key("last-modified"));
    assert_eq!(
        api.http.get(&url).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    for kind in ["posts", "comments", "messages"] {
        let v = api.json(&format!("/api/{kind}/1/attachments"));
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{kind}");
        assert!(!api
            .bytes(data[0]["download_url"].as_str().unwrap())
            .is_empty());
    }
}
