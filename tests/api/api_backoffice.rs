//! The back-office emulator over real HTTP: every route of API-CONTRACT.md
//! §1 (client files and folders, the shared tree, group permissions) and each
//! error status.

use crate::common::Emulator;
use reqwest::blocking::{multipart, Client, RequestBuilder};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Api {
    base: String,
    http: Client,
}

impl Api {
    fn new(emu: &Emulator) -> Api {
        Api {
            base: format!("{}/backoffice/api/v2", emu.url()),
            http: Client::new(),
        }
    }
    fn auth(&self, r: RequestBuilder) -> RequestBuilder {
        r.bearer_auth("demo-backoffice-token")
            .header("Accept-Language", "ja")
    }
    fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .unwrap()
    }
    fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().unwrap()
    }
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::blocking::Response {
        let mut r = self.auth(self.http.request(method, format!("{}{path}", self.base)));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().unwrap()
    }
    fn upload(
        &self,
        client: u64,
        caption: Option<&str>,
        dir: Option<u64>,
        data: &[u8],
    ) -> reqwest::blocking::Response {
        let mut form = multipart::Form::new().part(
            "file",
            multipart::Part::bytes(data.to_vec()).file_name("scan.pdf"),
        );
        if let Some(c) = caption {
            form = form.text("caption", c.to_string());
        }
        if let Some(d) = dir {
            form = form.text("directoryId", d.to_string());
        }
        self.auth(
            self.http
                .post(format!("{}/clients/{client}/files", self.base)),
        )
        .multipart(form)
        .send()
        .unwrap()
    }
}

#[test]
fn auth_and_unknown_ids() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    assert_eq!(
        api.http
            .get(format!("{}/folders", api.base))
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = api
        .http
        .get(format!("{}/folders", api.base))
        .bearer_auth("nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.json::<Value>().unwrap()["message"].is_string());
    assert_eq!(
        api.get("/clients/999/files").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.get("/folders/999").status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/clients/1/files/999/download").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/clients/1/files/999", None)
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn client_files_paging_filter_and_content() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let all = api.json("/clients/1/files?limit=100&offset=0");
    let total = all["total"].as_u64().unwrap();
    assert_eq!(all["data"].as_array().unwrap().len() as u64, total);
    for k in ["id", "name", "file", "directoryId", "priority"] {
        assert!(all["data"][0].get(k).is_some(), "missing {k}");
    }
    let page = api.json("/clients/1/files?limit=2&offset=2");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["id"], all["data"][2]["id"]);
    let dir = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f["directoryId"].as_u64())
        .unwrap();
    let filtered = api.json(&format!(
        "/clients/1/files?filter%5BdirectoryId%5D={dir}&limit=100"
    ));
    assert!(filtered["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["directoryId"] == dir));

    // Upload: 201 with the stored path; caption required (422); unknown folder 404.
    let r = api.upload(1, Some("Scan"), Some(dir), b"%PDF-1.4 scan");
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: Value = r.json().unwrap();
    assert!(f["file"].as_str().unwrap().ends_with(".pdf"), "{f}");
    assert_eq!(
        (f["clientId"].as_u64(), f["directoryId"].as_u64()),
        (Some(1), Some(dir))
    );
    assert_eq!(
        api.upload(1, None, None, b"x").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        api.upload(1, Some("x"), Some(9999), b"x").status(),
        StatusCode::NOT_FOUND
    );
    let id = f["id"].as_u64().unwrap();

    // Content: GET, Range 206/416, HEAD with size and time.
    let url = format!("/clients/1/files/{id}/download");
    assert_eq!(api.get(&url).bytes().unwrap().as_ref(), b"%PDF-1.4 scan");
    let r = api
        .auth(api.http.get(format!("{}{url}", api.base)))
        .header("Range", "bytes=5-7")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), b"1.4");
    let r = api
        .auth(api.http.get(format!("{}{url}", api.base)))
        .header("Range", "bytes=100-")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = api
        .auth(api.http.head(format!("{}{url}", api.base)))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-length"], "13");
    assert!(r.headers().contains_key("last-modified"));

    // Update by PUT and PATCH: caption, then move to the root (null).
    let r = api.send(
        reqwest::Method::PUT,
        &format!("/clients/1/files/{id}"),
        Some(json!({"caption": "Renamed"})),
    );
    assert_eq!(r.json::<Value>().unwrap()["name"], "Renamed");
    let r = api.send(
        reqwest::Method::PATCH,
        &format!("/clients/1/files/{id}"),
        Some(json!({"directoryId": null})),
    );
    assert!(r.json::<Value>().unwrap()["directoryId"].is_null());
    let r = api.send(
        reqwest::Method::PATCH,
        &format!("/clients/1/files/{id}"),
        Some(json!({"caption": ""})),
    );
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.send(
            reqwest::Method::DELETE,
            &format!("/clients/1/files/{id}"),
            None
        )
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get(&url).status(), StatusCode::NOT_FOUND);
}

#[test]
fn client_folders_in_the_shared_id_space() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let shared = api.json("/folders?limit=100&offset=0");
    let top = shared["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["directoryId"].is_null())
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    // A client folder inside a shared folder.
    let r = api.send(
        reqwest::Method::POST,
        "/clients/2/folders",
        Some(json!({"caption": "Mine", "directoryId": top})),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let f: Value = r.json().unwrap();
    assert_eq!(
        (f["directoryId"].as_u64(), f["clientId"].as_u64()),
        (Some(top), Some(2))
    );
    assert!(f.get("treeFolderId").is_some());
    let id = f["id"].as_u64().unwrap();
    assert!(api.json("/clients/2/folders")["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == id));
    assert_eq!(
        api.send(reqwest::Method::POST, "/clients/2/folders", Some(json!({})))
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Rename through the plural and the singular route; PUT and PATCH.
    let r = api.send(
        reqwest::Method::PUT,
        &format!("/clients/2/folders/{id}"),
        Some(json!({"caption": "Renamed"})),
    );
    assert_eq!(r.json::<Value>().unwrap()["name"], "Renamed");
    let r = api.send(
        reqwest::Method::PATCH,
        &format!("/clients/2/folder/{id}"),
        Some(json!({"caption": "Again"})),
    );
    assert_eq!(r.json::<Value>().unwrap()["name"], "Again");
    // Another client's folder is not this client's.
    assert_eq!(
        api.send(
            reqwest::Method::DELETE,
            &format!("/clients/1/folders/{id}"),
            None
        )
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.send(
            reqwest::Method::DELETE,
            &format!("/clients/2/folder/{id}"),
            None
        )
        .status(),
        StatusCode::NO_CONTENT
    );
}

#[test]
fn shared_tree_and_the_group_toggle() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let list = api.json("/folders?limit=2&offset=0");
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(list["total"].as_u64().unwrap() > 2);
    for k in ["id", "name", "directoryId", "createdAt", "updatedAt"] {
        assert!(list["data"][0].get(k).is_some(), "missing {k}");
    }
    let r = api.send(
        reqwest::Method::POST,
        "/folders",
        Some(json!({"name": "Top"})),
    );
    assert_eq!(r.status(), StatusCode::CREATED);
    let top: Value = r.json().unwrap();
    let id = top["id"].as_u64().unwrap();
    assert_eq!(api.json(&format!("/folders/{id}"))["name"], "Top");
    assert_eq!(
        api.send(reqwest::Method::POST, "/folders", Some(json!({})))
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // addSubdirectory answers 204 with no body: re-list to learn the id.
    let r = api.send(
        reqwest::Method::POST,
        &format!("/folders/{id}/addSubdirectory"),
        Some(json!({"name": "Sub"})),
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().unwrap().is_empty());
    let all = api.json("/folders?limit=1000");
    assert!(all["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "Sub" && f["directoryId"] == id));
    let r = api.send(
        reqwest::Method::PATCH,
        &format!("/folders/{id}"),
        Some(json!({"name": "Top2"})),
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.json(&format!("/folders/{id}"))["name"], "Top2");

    // Groups: three, and the toggle flips (not idempotent).
    let g = api.json(&format!("/folders/{id}/groups"));
    assert_eq!(g["total"], 3);
    let before = g["data"][0]["enabled"].as_bool().unwrap();
    let group = g["data"][0]["id"].as_u64().unwrap();
    let s1: Value = api
        .send(
            reqwest::Method::PUT,
            &format!("/folders/{id}/groups/{group}"),
            None,
        )
        .json()
        .unwrap();
    let s2: Value = api
        .send(
            reqwest::Method::PATCH,
            &format!("/folders/{id}/groups/{group}"),
            None,
        )
        .json()
        .unwrap();
    assert_eq!(
        (s1["status"].as_bool(), s2["status"].as_bool()),
        (Some(!before), Some(before))
    );
    assert_eq!(
        api.send(
            reqwest::Method::PUT,
            &format!("/folders/{id}/groups/99"),
            None
        )
        .status(),
        StatusCode::NOT_FOUND
    );
}
