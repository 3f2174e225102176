//! Typed client of the file-library API (API-CONTRACT.md §2): a signed
//! session token fetched lazily and renewed on 401, the private key never
//! sent. Knows nothing of the filesystem.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::{Digest, Md5};
use parking_lot::RwLock;
use reqwest::Method;
use serde_json::{Map, Value};
use url::Url;

use super::http::{join, segment, Auth, Call, HttpClient, NoAuth, Retry};
use super::transfer::Body;
use super::{RemoteError, RemoteResult};

/// A library item: the raw object (sent back whole on update) and the
/// fields bridgefs reads. Every field but the uuid may be absent.
#[derive(Debug, Clone)]
pub struct Item {
    pub raw: Map<String, Value>,
    pub uuid: String,
    pub name: String,
    pub folder: bool,
    pub parent: Option<String>,
    pub size: Option<u64>,
    pub created_ms: Option<i64>,
    pub modified_ms: Option<i64>,
    pub deleted: bool,
    pub public: bool,
    pub url: Option<String>,
}

impl Item {
    pub fn from_value(v: Value) -> RemoteResult<Item> {
        let Value::Object(raw) = v else {
            return Err(RemoteError::Decode(
                "a library item is not an object".into(),
            ));
        };
        let s = |k: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let n = |k: &str| {
            raw.get(k).and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        };
        let b = |k: &str| raw.get(k).and_then(Value::as_bool).unwrap_or(false);
        let uuid = s("fileLibraryUUID")
            .ok_or_else(|| RemoteError::Decode("item without fileLibraryUUID".into()))?;
        Ok(Item {
            name: s("fileName").unwrap_or_else(|| uuid.clone()),
            folder: s("fileLibraryType").as_deref() == Some("FOLDER"),
            parent: s("parentFileLibraryUUID"),
            size: n("fileSize").map(|v| v.max(0) as u64),
            created_ms: n("createdDate"),
            modified_ms: n("modifiedDate"),
            deleted: b("deleted"),
            public: b("publicVisible") || s("fileLibraryType").as_deref() == Some("ASSET"),
            url: s("url"),
            uuid,
            raw,
        })
    }
}

/// The session token, fetched with the md5 signature and renewed after 401.
struct Session {
    http: HttpClient,
    base: Url,
    api_key: String,
    private_key_file: PathBuf,
    token: RwLock<Option<String>>,
}

impl Session {
    async fn fetch(&self) -> RemoteResult<String> {
        let private = super::read_secret(&self.private_key_file).map_err(|e| {
            RemoteError::Local(format!(
                "cannot read {}: {e}",
                self.private_key_file.display()
            ))
        })?;
        let signature = hex::encode(Md5::digest(format!("{}{private}", self.api_key)));
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let call = Call::new(
            "library.session_token",
            Method::GET,
            join(&self.base, "/sessionToken")?,
        )
        .query("apiKey", &self.api_key)
        .query("timestamp", ts)
        .query("signature", signature);
        let v: Value = self.http.json(&call, &NoAuth).await?;
        let token = v
            .get("sessionToken")
            .and_then(Value::as_str)
            .ok_or_else(|| RemoteError::Decode("no sessionToken in the answer".into()))?
            .to_string();
        *self.token.write() = Some(token.clone());
        Ok(token)
    }
}

#[async_trait::async_trait]
impl Auth for Session {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        let cached = self.token.read().clone();
        let token = match cached {
            Some(t) => t,
            None => self.fetch().await?,
        };
        Ok(Some(format!("Bearer {token}")))
    }
    async fn refresh(&self) -> RemoteResult<bool> {
        self.fetch().await.map(|_| true)
    }
}

#[derive(Clone)]
pub struct LibraryClient {
    http: HttpClient,
    base: Url,
    upload_base: Url,
    business_id: u64,
    user_name: String,
    private_content_url: String,
    session: Arc<Session>,
}

/// What the library backend is configured with.
pub struct LibrarySettings<'a> {
    pub base_url: &'a str,
    pub upload_base: Option<&'a str>,
    pub api_key: &'a str,
    pub private_key_file: &'a Path,
    pub business_id: u64,
    pub user_name: &'a str,
    pub private_content_url: &'a str,
}

impl LibraryClient {
    pub fn new(http: HttpClient, s: LibrarySettings<'_>) -> Result<LibraryClient, String> {
        let base = Url::parse(s.base_url)
            .map_err(|e| format!("library.base_url {:?}: {e}", s.base_url))?;
        let upload_base = match s.upload_base {
            Some(u) => Url::parse(u).map_err(|e| format!("library.upload_base {u:?}: {e}"))?,
            None => base.clone(),
        };
        super::read_secret(s.private_key_file).map_err(|e| {
            format!(
                "library.private_key_file {}: {e}",
                s.private_key_file.display()
            )
        })?;
        let session = Arc::new(Session {
            http: http.clone(),
            base: base.clone(),
            api_key: s.api_key.to_string(),
            private_key_file: s.private_key_file.to_path_buf(),
            token: RwLock::new(None),
        });
        Ok(LibraryClient {
            http,
            base,
            upload_base,
            business_id: s.business_id,
            user_name: s.user_name.to_string(),
            private_content_url: s.private_content_url.to_string(),
            session,
        })
    }

    fn call(&self, endpoint: &'static str, method: Method, path: &str) -> RemoteResult<Call> {
        Ok(Call::new(endpoint, method, join(&self.base, path)?))
    }

    fn items(v: Value) -> RemoteResult<Vec<Item>> {
        let list = match v {
            Value::Array(a) => a,
            Value::Object(mut o) => match o.remove("data") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => return Err(RemoteError::Decode("the file list is not an array".into())),
        };
        list.into_iter().map(Item::from_value).collect()
    }

    /// `GET /files` (every item, deleted ones included) or the children of
    /// one folder.
    pub async fn list(&self, parent: Option<&str>) -> RemoteResult<Vec<Item>> {
        let mut call = self.call("library.list", Method::GET, "/files")?;
        if let Some(p) = parent {
            call = call.query("parentFileLibraryUUID", p);
        }
        Self::items(self.http.json(&call, self.session.as_ref()).await?)
    }

    /// `POST /files` creating a folder.
    pub async fn create_folder(&self, name: &str, parent: Option<&str>) -> RemoteResult<Item> {
        let mut body = serde_json::json!({
            "businessId": self.business_id,
            "fileLibraryType": "FOLDER",
            "fileName": name,
        });
        if let Some(p) = parent {
            body["parentFileLibraryUUID"] = Value::String(p.to_string());
        }
        let call = self
            .call("library.create_folder", Method::POST, "/files")?
            .json(body);
        Item::from_value(self.http.json(&call, self.session.as_ref()).await?)
    }

    /// `POST /files` with the whole object as last read, renamed and/or
    /// moved (`parent` `None`: the library's top level). Repeating it sets
    /// the same state, so it is retried like a PUT.
    pub async fn update(
        &self,
        item: &Item,
        name: &str,
        parent: Option<&str>,
    ) -> RemoteResult<Item> {
        let mut raw = item.raw.clone();
        raw.insert("fileName".into(), Value::String(name.to_string()));
        match parent {
            Some(p) => raw.insert("parentFileLibraryUUID".into(), Value::String(p.to_string())),
            None => raw.remove("parentFileLibraryUUID"),
        };
        raw.remove("url");
        raw.entry("businessId")
            .or_insert(Value::from(self.business_id));
        let call = self
            .call("library.update", Method::POST, "/files")?
            .json(Value::Object(raw))
            .retry(Retry::Idempotent);
        Item::from_value(self.http.json(&call, self.session.as_ref()).await?)
    }

    /// `POST {upload_base}/businessWeb/fileUploadS3.do` (multipart).
    pub async fn upload(
        &self,
        content: &Body,
        name: &str,
        parent: Option<&str>,
        public: bool,
    ) -> RemoteResult<Item> {
        let name = name.to_string();
        let (business, user, parent) = (
            self.business_id.to_string(),
            self.user_name.clone(),
            parent.map(str::to_string),
        );
        let tracker = self.http.transfers().track(content);
        let progress = tracker.clone();
        let factory = Arc::new(move || {
            let mut form = reqwest::multipart::Form::new()
                .part("file", tracker.file_part(&name)?)
                .text("businessId", business.clone())
                .text("uploadedFileName", name.clone())
                .text("userName", user.clone());
            if public {
                form = form.text("fileLibraryType", "ASSET");
            }
            if let Some(p) = &parent {
                form = form.text("parentFileLibraryUUID", p.clone());
            }
            Ok(form)
        });
        let url = join(&self.upload_base, "/businessWeb/fileUploadS3.do")?;
        let call = Call::new("library.upload", Method::POST, url)
            .multipart(factory)
            .progress(progress);
        Item::from_value(self.http.json(&call, self.session.as_ref()).await?)
    }

    /// `DELETE /files/{uuid}`.
    pub async fn delete(&self, uuid: &str) -> RemoteResult<()> {
        let call = self.call(
            "library.delete",
            Method::DELETE,
            &format!("/files/{}", segment(uuid)),
        )?;
        self.http
            .send(&call, self.session.as_ref())
            .await
            .map(|_| ())
    }

    /// Content of a file: its public `url` without credentials, or the
    /// private-content route with the session token.
    pub async fn download(&self, item: &Item, offset: u64, len: u64) -> RemoteResult<Bytes> {
        match (&item.url, item.public) {
            (Some(url), true) => {
                let call = Call::new(
                    "library.download_public",
                    Method::GET,
                    join(&self.base, url)?,
                );
                self.http.get_range(&call, &NoAuth, offset, len).await
            }
            _ => {
                let path = self
                    .private_content_url
                    .replace("{fileLibraryUUID}", &segment(&item.uuid));
                let call = self.call("library.download", Method::GET, &path)?;
                self.http
                    .get_range(&call, self.session.as_ref(), offset, len)
                    .await
            }
        }
    }
}
