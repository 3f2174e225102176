//! The library emulator over real HTTP: the session-token flow, every route
//! of API-CONTRACT.md §2 and each error status.

use crate::common::Emulator;
use md5::{Digest, Md5};
use reqwest::blocking::{multipart, Client};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Api {
    base: String,
    http: Client,
    token: String,
}

fn token(http: &Client, base: &str) -> String {
    let sig = hex::encode(Md5::digest(b"demo-api-keydemo-private-key"));
    let v: Value = http
        .get(format!("{base}/sessionToken"))
        .query(&[
            ("apiKey", "demo-api-key"),
            ("timestamp", "1700000000"),
            ("signature", sig.as_str()),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["sessionToken"].as_str().unwrap().to_string()
}

impl Api {
    fn new(emu: &Emulator) -> Api {
        let base = format!("{}/library/live", emu.url());
        let http = Client::new();
        let token = token(&http, &base);
        Api { base, http, token }
    }
    fn items(&self, query: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/files{query}", self.base))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>()
            .unwrap()
            .as_array()
            .expect("a bare array")
            .clone()
    }
    fn post(&self, body: Value) -> reqwest::blocking::Response {
        self.http
            .post(format!("{}/files", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .unwrap()
    }
    fn upload(
        &self,
        name: &str,
        data: &[u8],
        parent: Option<&str>,
        public: bool,
    ) -> reqwest::blocking::Response {
        let mut form = multipart::Form::new()
            .part(
                "file",
                multipart::Part::bytes(data.to_vec()).file_name(name.to_string()),
            )
            .text("businessId", "1")
            .text("uploadedFileName", name.to_string())
            .text("userName", "demo");
        if let Some(p) = parent {
            form = form.text("parentFileLibraryUUID", p.to_string());
        }
        if public {
            form = form.text("fileLibraryType", "ASSET");
        }
        self.http
            .post(format!("{}/businessWeb/fileUploadS3.do", self.base))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .unwrap()
    }
}

#[test]
fn session_tokens() {
    let emu = Emulator::demo();
    let base = format!("{}/library/live", emu.url());
    let http = Client::new();
    let r = http
        .get(format!("{base}/sessionToken"))
        .query(&[("apiKey", "demo-api-key")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .get(format!("{base}/sessionToken"))
        .query(&[
            ("apiKey", "demo-api-key"),
            ("timestamp", "1"),
            ("signature", "00000000000000000000000000000000"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        http.get(format!("{base}/files")).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        http.get(format!("{base}/files"))
            .bearer_auth("forged")
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let t = token(&http, &base);
    assert_eq!(
        http.get(format!("{base}/files"))
            .bearer_auth(&t)
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    emu.emu().library.lock().expire_sessions();
    assert_eq!(
        http.get(format!("{base}/files"))
            .bearer_auth(&t)
            .send()
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn list_create_update_upload_delete() {
    let emu = Emulator::demo();
    let api = Api::new(&emu);
    let all = api.items("");
    assert!(
        all.iter().any(|i| i["deleted"] == true),
        "deleted items are listed"
    );
    for k in [
        "businessId",
        "fileLibraryUUID",
        "fileName",
        "fileLibraryType",
        "createdDate",
        "modifiedDate",
    ] {
        assert!(all[0].get(k).is_some(), "missing {k}");
    }
    let folders = api.items("?fileLibraryType=FOLDER");
    assert!(folders.iter().all(|f| f["fileLibraryType"] == "FOLDER") && !folders.is_empty());
    let marketing = folders
        .iter()
        .find(|f| f["fileName"] == "Marketing")
        .unwrap()["fileLibraryUUID"]
        .as_str()
        .unwrap()
        .to_string();
    let children = api.items(&format!("?parentFileLibraryUUID={marketing}"));
    assert!(
        children
            .iter()
            .all(|c| c["parentFileLibraryUUID"] == marketing.as_str())
            && !children.is_empty()
    );

    // Create a folder; missing fields 422, wrong business 403, clash 409, unknown parent 404.
    let r = api.post(json!({"businessId": 1, "fileLibraryType": "FOLDER", "fileName": "New", "parentFileLibraryUUID": marketing}));
    assert_eq!(r.status(), StatusCode::OK);
    let new: Value = r.json().unwrap();
    assert_eq!(
        api.post(json!({"businessId": 1, "fileLibraryType": "FOLDER"}))
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        api.post(json!({"fileLibraryType": "FOLDER", "fileName": "x"}))
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        api.post(json!({"businessId": 2, "fileLibraryType": "FOLDER", "fileName": "x"}))
            .status(),
        StatusCode::FORBIDDEN
    );
    let clash = json!({"businessId": 1, "fileLibraryType": "FOLDER", "fileName": "New", "parentFileLibraryUUID": marketing});
    assert_eq!(api.post(clash).status(), StatusCode::CONFLICT);
    let orphan = json!({"businessId": 1, "fileLibraryType": "FOLDER", "fileName": "x", "parentFileLibraryUUID": "nope"});
    assert_eq!(api.post(orphan).status(), StatusCode::NOT_FOUND);

    // Update: the whole object with a new name and parent (moved to the top).
    let mut obj = new.clone();
    obj["fileName"] = json!("Renamed");
    obj.as_object_mut().unwrap().remove("parentFileLibraryUUID");
    let r = api.post(obj);
    assert_eq!(r.status(), StatusCode::OK);
    let moved: Value = r.json().unwrap();
    assert_eq!(moved["fileName"], "Renamed");
    assert!(moved.get("parentFileLibraryUUID").is_none());

    // Upload private and public files.
    let r = api.upload(
        "a.txt",
        b"private bytes",
        Some(new["fileLibraryUUID"].as_str().unwrap()),
        false,
    );
    assert_eq!(r.status(), StatusCode::OK);
    let private: Value = r.json().unwrap();
    assert_eq!(
        (
            private["fileSize"].as_u64(),
            private["publicVisible"].as_bool()
        ),
        (Some(13), Some(false))
    );
    let uuid = private["fileLibraryUUID"].as_str().unwrap();
    let content = format!("{}/files/{uuid}/content", api.base);
    let r = api
        .http
        .get(&content)
        .bearer_auth(&api.token)
        .header("Range", "bytes=8-12")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().unwrap().as_ref(), b"bytes");
    assert_eq!(
        api.http.get(&content).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let head = api
        .http
        .head(&content)
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(head.headers()["content-length"], "13");
    let r = api.upload("pub.txt", b"public", None, true);
    let public: Value = r.json().unwrap();
    let url = public["url"].as_str().expect("public files have a url");
    assert_eq!(
        api.http.get(url).send().unwrap().bytes().unwrap().as_ref(),
        b"public"
    );
    // Upload errors.
    let form = multipart::Form::new().text("businessId", "1");
    let r = api
        .http
        .post(format!("{}/businessWeb/fileUploadS3.do", api.base))
        .bearer_auth(&api.token)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.upload("x", b"x", Some("nope"), false).status(),
        StatusCode::NOT_FOUND
    );

    // Delete: gone for good; unknown ids 404.
    let r = api
        .http
        .delete(format!("{}/files/{uuid}", api.base))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert!(!api.items("").iter().any(|i| i["fileLibraryUUID"] == uuid));
    let r = api
        .http
        .delete(format!("{}/files/{uuid}", api.base))
        .bearer_auth(&api.token)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        api.http
            .get(&content)
            .bearer_auth(&api.token)
            .send()
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}
