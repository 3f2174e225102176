//! The back-office emulator as a strict server, over real HTTP: the demo
//! dataset's shape, paging to the end, the stored path and times of
//! uploads, the one folder-id space, the state API tests use, and every
//! route's 401/404/422 answers. (`api_backoffice.rs` walks the happy path of
//! each route; this file covers what a client bug would trip over.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::Emulator;
use bridgefs_emulator::Dataset;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "demo-backoffice-token";

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(emu: &Emulator) -> Api {
        Api {
            base: format!("{}/backoffice/api/v2", emu.url()),
            http: reqwest::Client::new(),
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("Accept-Language", "ja")
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.send(Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// Every item of a list, `limit` at a time, until a short page.
    async fn all(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        loop {
            let page = self
                .json(&format!("{path}{sep}limit={limit}&offset={}", out.len()))
                .await;
            let data = page["data"].as_array().unwrap().clone();
            let n = data.len();
            out.extend(data);
            if n < limit {
                assert_eq!(page["total"].as_u64().unwrap() as usize, out.len());
                return out;
            }
        }
    }

    async fn upload(&self, client: u64, form: Form) -> Response {
        self.req(Method::POST, &format!("/clients/{client}/files"))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    async fn head(&self, path: &str) -> Response {
        self.req(Method::HEAD, path).send().await.unwrap()
    }
}

fn file_part(bytes: &[u8], filename: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(filename.to_string())
}

fn id_of(items: &[Value], name: &str) -> u64 {
    items
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items:?}"))["id"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn demo_dataset_has_every_awkward_case() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let shared = api.all("/folders", 100).await;
    let top: Vec<&str> = shared
        .iter()
        .filter(|f| f["directoryId"].is_null())
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["Onboarding", "Contracts", "Statements"]);
    let (onboarding, statements) = (id_of(&shared, "Onboarding"), id_of(&shared, "Statements"));
    assert_eq!(
        shared.iter().find(|f| f["name"] == "KYC").unwrap()["directoryId"],
        onboarding
    );
    assert_eq!(
        shared.iter().find(|f| f["name"] == "2025").unwrap()["directoryId"],
        statements
    );
    for f in &shared {
        for k in ["createdAt", "updatedAt"] {
            assert!(
                f[k].as_str().is_some_and(|t| t.ends_with('Z')),
                "{k} of {f}"
            );
        }
    }

    // Three groups, permissions that differ between folders.
    let mut patterns = std::collections::BTreeSet::new();
    for f in &shared {
        let g = api.json(&format!("/folders/{}/groups", f["id"])).await;
        assert_eq!(g["total"], 3);
        let captions: Vec<&str> = g["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["caption"].as_str().unwrap())
            .collect();
        assert_eq!(
            captions,
            ["Administrators", "B2B Account Manager", "B2B L1 Support"]
        );
        patterns.insert(g["data"].to_string());
    }
    assert!(patterns.len() >= 3, "permissions hardly vary: {patterns:?}");

    // Every client: own folders, nested, and files.
    for client in 1..=3u64 {
        let own = api.all(&format!("/clients/{client}/folders"), 100).await;
        let ids: Vec<&Value> = own.iter().map(|f| &f["id"]).collect();
        assert!(
            own.iter().any(|f| ids.contains(&&f["directoryId"])),
            "client {client} has no nested own folder: {own:?}"
        );
        assert!(own.iter().all(|f| f["clientId"] == client));
        assert!(!api
            .all(&format!("/clients/{client}/files"), 100)
            .await
            .is_empty());
    }
    let files = api.all("/clients/1/files", 100).await;
    let captions: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    // At the root, in a shared folder and in an own folder.
    assert!(files.iter().any(|f| f["directoryId"].is_null()));
    assert!(files
        .iter()
        .any(|f| shared.iter().any(|s| s["id"] == f["directoryId"])));
    assert!(files.iter().any(
        |f| !f["directoryId"].is_null() && !shared.iter().any(|s| s["id"] == f["directoryId"])
    ));
    // Duplicate captions in one folder.
    let dups = files
        .iter()
        .filter(|f| f["name"] == "Statement")
        .collect::<Vec<_>>();
    assert_eq!(dups.len(), 2);
    assert_eq!(dups[0]["directoryId"], dups[1]["directoryId"]);
    // A caption without extension over a `.pdf`, one with `/`, one over 255 bytes.
    let agreement = files
        .iter()
        .find(|f| f["name"] == "Service agreement")
        .unwrap();
    assert!(agreement["file"].as_str().unwrap().ends_with(".pdf"));
    assert!(captions.iter().any(|c| c.contains('/')));
    assert!(captions.iter().any(|c| c.len() > 255));
    // Sizes from a few bytes to about 3 MiB.
    let mut sizes = Vec::new();
    for client in 1..=3u64 {
        for f in api.all(&format!("/clients/{client}/files"), 100).await {
            let r = api
                .head(&format!("/clients/{client}/files/{}/download", f["id"]))
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            sizes.push(length(&r).unwrap());
        }
    }
    assert!(sizes.iter().any(|s| *s < 16), "{sizes:?}");
    assert!(sizes.iter().any(|s| *s >= 3 << 20), "{sizes:?}");
}

#[tokio::test]
async fn empty_dataset_still_has_clients_and_groups() {
    let emu = Emulator::start(Dataset::empty());
    let api = Api::new(&emu);
    for client in 1..=3 {
        assert_eq!(
            api.json(&format!("/clients/{client}/files")).await["total"],
            0
        );
        assert_eq!(
            api.json(&format!("/clients/{client}/folders")).await["total"],
            0
        );
    }
    assert_eq!(
        api.send(Method::GET, "/clients/4/files", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.json("/folders").await["total"], 0);
    let r = api
        .send(Method::POST, "/folders", Some(json!({"name": "New"})))
        .await;
    let id = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let g = api.json(&format!("/folders/{id}/groups")).await;
    assert_eq!(g["total"], 3);
    assert!(g["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["enabled"] == false));
}

#[tokio::test]
async fn paging_filters_and_bad_parameters() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    // Walking pages of 2 gives the same items as one page of 100.
    let one = api.json("/clients/1/files?limit=100").await["data"].clone();
    let paged = api.all("/clients/1/files", 2).await;
    assert_eq!(Value::Array(paged), one);
    let shared = api.all("/folders", 1).await;
    assert_eq!(shared.len(), 5);
    // An offset past the end: an empty page, the total still told.
    let past = api.json("/folders?limit=10&offset=50").await;
    assert_eq!(
        (
            past["total"].as_u64(),
            past["data"].as_array().map(Vec::len)
        ),
        (Some(5), Some(0))
    );
    // filter[directoryId]: one folder; null is the client root.
    let y2025 = id_of(&shared, "2025");
    let in_2025 = api
        .json(&format!(
            "/clients/1/files?filter[directoryId]={y2025}&limit=100"
        ))
        .await;
    assert_eq!(in_2025["total"], 2);
    let root = api
        .json("/clients/1/files?filter%5BdirectoryId%5D=null&limit=100")
        .await;
    assert!(root["total"].as_u64().unwrap() > 0);
    assert!(root["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["directoryId"].is_null()));
    // Strict validation of the paging parameters.
    for q in [
        "limit=0",
        "limit=abc",
        "offset=-1",
        "filter[directoryId]=abc",
    ] {
        assert_eq!(
            api.send(Method::GET, &format!("/clients/1/files?{q}"), None)
                .await
                .status(),
            StatusCode::BAD_REQUEST,
            "{q}"
        );
    }
}

#[tokio::test]
async fn uploads_store_path_time_and_validate_parts() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let form = Form::new()
        .part("file", file_part(b"JPEG bytes", "holiday photo.JPG"))
        .text("caption", "Holiday");
    let r = api.upload(2, form).await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: Value = r.json().await.unwrap();
    assert_eq!(
        (f["name"].as_str(), f["clientId"].as_u64()),
        (Some("Holiday"), Some(2))
    );
    assert!(f["directoryId"].is_null(), "no directoryId part: the root");
    // Stored path: y/<epoch of the upload>_<file name>, extension from the filename.
    let stored = f["file"].as_str().unwrap();
    let rest = stored.strip_prefix("y/").unwrap();
    let (epoch, name) = rest.split_once('_').unwrap();
    let epoch: u64 = epoch.parse().unwrap();
    assert!((before..=after).contains(&epoch), "{stored}");
    assert!(name.ends_with(".JPG"), "{stored}");
    // Last-Modified is the upload time.
    let id = f["id"].as_u64().unwrap();
    let url = format!("/clients/2/files/{id}/download");
    let r = api.head(&url).await;
    let modified =
        httpdate::parse_http_date(r.headers()["last-modified"].to_str().unwrap()).unwrap();
    assert_eq!(modified, UNIX_EPOCH + Duration::from_secs(epoch));
    assert_eq!(length(&r), Some(10));
    assert_eq!(
        emu.emu().backoffice.lock().bytes(id),
        Some(&b"JPEG bytes"[..])
    );

    // Duplicate captions are allowed: a second upload is another file.
    let again = api
        .upload(
            2,
            Form::new()
                .part("file", file_part(b"other", "x.jpg"))
                .text("caption", "Holiday"),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_ne!(again.json::<Value>().await.unwrap()["id"], id);

    // directoryId: a shared folder or this client's own folder; others fail.
    let shared = api.all("/folders", 100).await;
    let contracts = id_of(&shared, "Contracts");
    let other_clients = id_of(&api.all("/clients/1/folders", 100).await, "Personal");
    let own = id_of(&api.all("/clients/2/folders", 100).await, "Correspondence");
    for (dir, status) in [
        (contracts.to_string(), StatusCode::CREATED),
        (own.to_string(), StatusCode::CREATED),
        (other_clients.to_string(), StatusCode::NOT_FOUND),
        ("9999".to_string(), StatusCode::NOT_FOUND),
        ("abc".to_string(), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let form = Form::new()
            .part("file", file_part(b"x", "x.pdf"))
            .text("caption", "x")
            .text("directoryId", dir.clone());
        assert_eq!(
            api.upload(2, form).await.status(),
            status,
            "directoryId {dir}"
        );
    }
    // Missing parts: 422; unknown client: 404.
    let no_caption = Form::new().part("file", file_part(b"x", "x.pdf"));
    assert_eq!(
        api.upload(2, no_caption).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let empty_caption = Form::new()
        .part("file", file_part(b"x", "x.pdf"))
        .text("caption", "");
    assert_eq!(
        api.upload(2, empty_caption).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let no_file = Form::new().text("caption", "x");
    assert_eq!(
        api.upload(2, no_file).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let form = Form::new()
        .part("file", file_part(b"x", "x.pdf"))
        .text("caption", "x");
    assert_eq!(api.upload(99, form).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_folder_id_space_and_its_rules() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let shared = api.all("/folders", 100).await;
    let kyc = id_of(&shared, "KYC");
    // A client folder inside a shared folder takes the next id of the one space.
    let r = api
        .send(
            Method::POST,
            "/clients/3/folders",
            Some(json!({"caption": "Docs", "directoryId": kyc})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let docs = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let r = api
        .send(
            Method::POST,
            "/folders",
            Some(json!({"name": "Shared next"})),
        )
        .await;
    let next_shared = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    assert_eq!(next_shared, docs + 1, "one id space for both kinds");
    // A client folder is not a shared folder, nor another client's.
    assert_eq!(
        api.send(Method::GET, &format!("/folders/{docs}"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(Method::GET, &format!("/folders/{docs}/groups"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(
            Method::POST,
            "/clients/2/folders",
            Some(json!({"caption": "X", "directoryId": docs}))
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/clients/2/folders/{docs}"),
            Some(json!({"caption": "X"}))
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    // A file moves into it, and a non-empty folder cannot be deleted.
    let readme = id_of(&api.all("/clients/3/files", 100).await, "readme.txt");
    let r = api
        .send(
            Method::PUT,
            &format!("/clients/3/files/{readme}"),
            Some(json!({"directoryId": docs})),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["directoryId"], docs);
    assert_eq!(
        api.send(Method::DELETE, &format!("/clients/3/folder/{docs}"), None)
            .await
            .status(),
        StatusCode::CONFLICT
    );
    // Moving a file to another client's folder fails; PUT of an unknown file too.
    let personal = id_of(&api.all("/clients/1/folders", 100).await, "Personal");
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/clients/3/files/{readme}"),
            Some(json!({"directoryId": personal}))
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(
            Method::PUT,
            "/clients/3/files/9999",
            Some(json!({"caption": "x"}))
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    // Renames need their field: caption for client folders, name for shared.
    for (method, path, body) in [
        (Method::PUT, format!("/clients/3/folders/{docs}"), json!({})),
        (
            Method::PATCH,
            format!("/clients/3/folder/{docs}"),
            json!({"caption": ""}),
        ),
        (Method::PUT, format!("/folders/{kyc}"), json!({})),
        (
            Method::POST,
            format!("/folders/{kyc}/addSubdirectory"),
            json!({"name": ""}),
        ),
    ] {
        assert_eq!(
            api.send(method.clone(), &path, Some(body)).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path}"
        );
    }
    // Shared-tree routes on an unknown folder.
    for (method, path) in [
        (Method::GET, "/folders/9999"),
        (Method::PUT, "/folders/9999"),
        (Method::POST, "/folders/9999/addSubdirectory"),
        (Method::GET, "/folders/9999/groups"),
        (Method::PATCH, "/folders/9999/groups/1"),
    ] {
        assert_eq!(
            api.send(method.clone(), path, Some(json!({"name": "x"})))
                .await
                .status(),
            StatusCode::NOT_FOUND,
            "{method} {path}"
        );
    }
    // Emptied, it goes (singular route), and is gone.
    api.send(
        Method::PATCH,
        &format!("/clients/3/files/{readme}"),
        Some(json!({"directoryId": null})),
    )
    .await;
    assert_eq!(
        api.send(Method::DELETE, &format!("/clients/3/folder/{docs}"), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(!emu.emu().backoffice.lock().folders.contains_key(&docs));
}

#[tokio::test]
async fn every_route_wants_the_bearer_token() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let routes = [
        (Method::GET, "/clients/1/files"),
        (Method::POST, "/clients/1/files"),
        (Method::PUT, "/clients/1/files/1"),
        (Method::PATCH, "/clients/1/files/1"),
        (Method::DELETE, "/clients/1/files/1"),
        (Method::GET, "/clients/1/files/1/download"),
        (Method::HEAD, "/clients/1/files/1/download"),
        (Method::GET, "/clients/1/folders"),
        (Method::POST, "/clients/1/folders"),
        (Method::PUT, "/clients/1/folders/6"),
        (Method::PATCH, "/clients/1/folder/6"),
        (Method::DELETE, "/clients/1/folders/6"),
        (Method::DELETE, "/clients/1/folder/6"),
        (Method::GET, "/folders"),
        (Method::POST, "/folders"),
        (Method::GET, "/folders/1"),
        (Method::PUT, "/folders/1"),
        (Method::PATCH, "/folders/1"),
        (Method::POST, "/folders/1/addSubdirectory"),
        (Method::GET, "/folders/1/groups"),
        (Method::PUT, "/folders/1/groups/1"),
        (Method::PATCH, "/folders/1/groups/1"),
    ];
    let before = state_json(&emu);
    for (method, path) in routes {
        // No header, a wrong token, the right token without its scheme.
        for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
            let mut r = api
                .http
                .request(method.clone(), format!("{}{path}", api.base))
                .json(&json!({"name": "x", "caption": "x"}));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            if method != Method::HEAD {
                let body: Value = resp.json().await.unwrap();
                assert!(body["message"].is_string());
            }
        }
    }
    assert_eq!(state_json(&emu), before, "a refused call changed nothing");
}

#[tokio::test]
async fn content_ranges_and_head() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let files = api.all("/clients/1/files", 100).await;
    let big = id_of(&files, "call recording.mp3");
    let expected = emu.emu().backoffice.lock().bytes(big).unwrap().to_vec();
    let url = format!("/clients/1/files/{big}/download");
    let r = api
        .req(Method::GET, &url)
        .header("Range", "bytes=2097152-2097251")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 2097152-2097251/{}", expected.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), &expected[2_097_152..2_097_252]);
    // Open-ended and suffix ranges; past the end is 416.
    let r = api
        .req(Method::GET, &url)
        .header("Range", format!("bytes={}-", expected.len() - 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &expected[expected.len() - 3..]);
    let r = api
        .req(Method::GET, &url)
        .header("Range", format!("bytes={}-", expected.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // Whole body and HEAD agree.
    let r = api.send(Method::GET, &url, None).await;
    assert_eq!(r.bytes().await.unwrap(), expected);
    let r = api.head(&url).await;
    assert_eq!(length(&r), Some(expected.len() as u64));
    assert!(r.bytes().await.unwrap().is_empty());
    // Another client's file is not reachable through this client.
    assert_eq!(
        api.send(
            Method::GET,
            &format!("/clients/2/files/{big}/download"),
            None
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn state_api_and_counters() {
    let emu = Emulator::start(Dataset::empty());
    let api = Api::new(&emu);
    assert_eq!(
        api.send(Method::GET, "/clients/7/files", None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (folder, file) = {
        let mut st = emu.emu().backoffice.lock();
        st.add_client(7);
        let shared = st.add_folder(None, None, "Shared");
        let folder = st.add_folder(Some(7), Some(shared), "Own");
        let file = st.add_file(7, Some(folder), "Deed", "deed.pdf", b"deed".to_vec());
        (folder, file)
    };
    let listed = api
        .json(&format!("/clients/7/files?filter[directoryId]={folder}"))
        .await;
    assert_eq!(listed["data"][0]["id"], file);
    assert_eq!(listed["data"][0]["name"], "Deed");
    assert!(listed["data"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("_deed.pdf"));
    let body = api
        .send(
            Method::GET,
            &format!("/clients/7/files/{file}/download"),
            None,
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), b"deed");
    // Counters by route template, over the control surface.
    let counts: Value = reqwest::get(format!("{}/_emulator/counts", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["GET /backoffice/api/v2/clients/{client}/files"], 2);
    assert_eq!(
        counts["GET /backoffice/api/v2/clients/{client}/files/{id}/download"],
        1
    );
    // The group toggle flips each time: not idempotent.
    let shared = api.all("/folders", 100).await;
    let id = shared[0]["id"].as_u64().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = api
            .send(Method::PUT, &format!("/folders/{id}/groups/2"), None)
            .await;
        seen.push(
            r.json::<Value>().await.unwrap()["status"]
                .as_bool()
                .unwrap(),
        );
    }
    assert_eq!(seen, [true, false, true]);
    assert_eq!(
        emu.emu()
            .backoffice
            .lock()
            .permissions
            .get(&format!("{id}:2")),
        Some(&true)
    );
}

/// The back-office state, to check that a refused call changed nothing.
fn state_json(emu: &Emulator) -> String {
    serde_json::to_string(&*emu.emu().backoffice.lock()).unwrap()
}

/// `Content-Length` as sent (also on `HEAD`, whose body is empty).
fn length(r: &Response) -> Option<u64> {
    r.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
