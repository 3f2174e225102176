//! A small blocking client written from API-CONTRACT.md alone, used by the
//! mount tests to check what the emulator holds (bytes on the server, not
//! what the daemon believes).

#![allow(dead_code)]

use md5::{Digest, Md5};
use reqwest::blocking::Client;
use serde_json::Value;

pub struct Remote {
    base: String,
    http: Client,
    session: String,
}

const BO_TOKEN: &str = "demo-backoffice-token";
const FILES_KEY: &str = "demo-files-key";

impl Remote {
    pub fn new(base: &str) -> Remote {
        let http = Client::new();
        let sig = hex::encode(Md5::digest(b"demo-api-keydemo-private-key"));
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let v: Value = http
            .get(format!("{base}/library/live/sessionToken"))
            .query(&[
                ("apiKey", "demo-api-key".to_string()),
                ("timestamp", ts.to_string()),
                ("signature", sig),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = v["sessionToken"]
            .as_str()
            .expect("session token")
            .to_string();
        Remote {
            base: base.to_string(),
            http,
            session,
        }
    }

    fn get(&self, url: &str, bearer: &str) -> reqwest::blocking::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        self.http.get(url).bearer_auth(bearer).send().unwrap()
    }

    fn get_json(&self, url: &str, bearer: &str) -> Value {
        let r = self.get(url, bearer);
        assert!(r.status().is_success(), "GET {url}: {}", r.status());
        r.json().unwrap()
    }

    // ----- Files apps ----------------------------------------------------

    /// Every live file of an app (all pages).
    pub fn app_files(&self, app: &str) -> Vec<Value> {
        self.app_files_q(app, "false")
    }

    pub fn app_trash(&self, app: &str) -> Vec<Value> {
        self.app_files_q(app, "true")
    }

    fn app_files_q(&self, app: &str, trashed: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut skip = 0;
        loop {
            let v = self.get_json(
                &format!("/files/api/apps/{app}/files?skip={skip}&take=100&trashed={trashed}"),
                FILES_KEY,
            );
            let data = v["data"].as_array().cloned().unwrap_or_default();
            let count = v["count"].as_u64().unwrap_or(0);
            let n = data.len();
            out.extend(data);
            skip += n;
            if n == 0 || skip as u64 >= count {
                return out;
            }
        }
    }

    pub fn app_file(&self, app: &str, name: &str) -> Option<Value> {
        self.app_files(app).into_iter().find(|f| f["name"] == name)
    }

    pub fn file_by_id(&self, id: u64) -> Value {
        self.get_json(&format!("/files/api/files/{id}?trashed=true"), FILES_KEY)
    }

    pub fn file_versions(&self, id: u64) -> Vec<Value> {
        let v = self.get_json(&format!("/files/api/files/{id}/versions"), FILES_KEY);
        match v {
            Value::Array(a) => a,
            v => v["data"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// Bytes of a Files-app file object.
    pub fn app_bytes(&self, file: &Value) -> Vec<u8> {
        let url = file["download_url"].as_str().expect("download_url");
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}/files{url}", self.base)
        };
        self.get(&url, FILES_KEY).bytes().unwrap().to_vec()
    }

    pub fn app_bytes_by_name(&self, app: &str, name: &str) -> Option<Vec<u8>> {
        self.app_file(app, name).map(|f| self.app_bytes(&f))
    }

    // ----- library ---------------------------------------------------------

    pub fn library_items(&self) -> Vec<Value> {
        match self.get_json("/library/live/files", &self.session) {
            Value::Array(a) => a,
            v => v["data"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn library_item(&self, name: &str) -> Option<Value> {
        self.library_items()
            .into_iter()
            .find(|f| f["fileName"] == name && f["deleted"] != true)
    }

    /// Overwrites a Files-app file as another client would: a blob, then
    /// `PATCH` with `backup: true` (a new revision).
    pub fn app_overwrite(&self, id: u64, bytes: &[u8]) {
        let form = reqwest::blocking::multipart::Form::new().part(
            "blob",
            reqwest::blocking::multipart::Part::bytes(bytes.to_vec()).file_name("x"),
        );
        let blob: Value = self
            .http
            .post(format!("{}/files/api/blobs", self.base))
            .bearer_auth(FILES_KEY)
            .multipart(form)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let r = self
            .http
            .patch(format!("{}/files/api/files/{id}", self.base))
            .bearer_auth(FILES_KEY)
            .json(&serde_json::json!({"blob_id": blob["id"], "backup": true}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "overwrite: {}", r.status());
    }

    /// Replaces a library file as another client would: a new item of the
    /// same name, then the old one deleted.
    pub fn library_replace(&self, name: &str, bytes: &[u8]) {
        let old = self.library_item(name).expect("the item exists");
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(bytes.to_vec())
                    .file_name(name.to_string()),
            )
            .text("businessId", "1")
            .text("uploadedFileName", name.to_string())
            .text("userName", "demo");
        let r = self
            .http
            .post(format!(
                "{}/library/live/businessWeb/fileUploadS3.do",
                self.base
            ))
            .bearer_auth(&self.session)
            .multipart(form)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "upload: {}", r.status());
        self.library_delete(old["fileLibraryUUID"].as_str().unwrap());
    }

    /// Deletes a library item as another client would.
    pub fn library_delete(&self, uuid: &str) {
        let r = self
            .http
            .delete(format!("{}/library/live/files/{uuid}", self.base))
            .bearer_auth(&self.session)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "delete: {}", r.status());
    }

    /// Renames a library item as another client would.
    pub fn library_rename(&self, name: &str, new_name: &str) {
        let mut item = self.library_item(name).expect("the item exists");
        item["fileName"] = Value::String(new_name.to_string());
        let r = self
            .http
            .post(format!("{}/library/live/files", self.base))
            .bearer_auth(&self.session)
            .json(&item)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "rename: {}", r.status());
    }

    /// A folder at the library's top level, made as another client would.
    pub fn library_create_folder(&self, name: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/library/live/files", self.base))
            .bearer_auth(&self.session)
            .json(&serde_json::json!({"businessId": 1, "fileLibraryType": "FOLDER", "fileName": name}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create folder: {}", r.status());
        r.json().unwrap()
    }

    pub fn library_bytes(&self, item: &Value) -> Vec<u8> {
        let uuid = item["fileLibraryUUID"].as_str().unwrap();
        self.get(
            &format!("/library/live/files/{uuid}/content"),
            &self.session,
        )
        .bytes()
        .unwrap()
        .to_vec()
    }

    pub fn library_bytes_by_name(&self, name: &str) -> Option<Vec<u8>> {
        self.library_item(name).map(|i| self.library_bytes(&i))
    }

    // ----- back office -------------------------------------------------------

    pub fn client_files(&self, client: u64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let v = self.get_json(
                &format!("/backoffice/api/v2/clients/{client}/files?limit=100&offset={offset}"),
                BO_TOKEN,
            );
            let data = match v {
                Value::Array(a) => a,
                v => v["data"].as_array().cloned().unwrap_or_default(),
            };
            let n = data.len();
            out.extend(data);
            offset += n;
            if n < 100 {
                return out;
            }
        }
    }

    pub fn client_folders(&self, client: u64) -> Vec<Value> {
        match self.get_json(
            &format!("/backoffice/api/v2/clients/{client}/folders?limit=100"),
            BO_TOKEN,
        ) {
            Value::Array(a) => a,
            v => v["data"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn shared_folders(&self) -> Vec<Value> {
        match self.get_json("/backoffice/api/v2/folders?limit=100&offset=0", BO_TOKEN) {
            Value::Array(a) => a,
            v => v["data"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn client_bytes(&self, client: u64, id: u64) -> Vec<u8> {
        self.get(
            &format!("/backoffice/api/v2/clients/{client}/files/{id}/download"),
            BO_TOKEN,
        )
        .bytes()
        .unwrap()
        .to_vec()
    }

    pub fn client_file_named(&self, client: u64, caption: &str) -> Option<Value> {
        self.client_files(client)
            .into_iter()
            .find(|f| f["name"] == caption)
    }
}

pub fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

/// Reads an extended attribute through the mount (`None`: ENODATA).
pub fn xattr(path: &std::path::Path, name: &str) -> Result<Option<Vec<u8>>, std::io::Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    let r = unsafe {
        libc::getxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODATA) {
            return Ok(None);
        }
        return Err(e);
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}
