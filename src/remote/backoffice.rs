//! Typed client of the back-office API (API-CONTRACT.md §1): client files
//! and folders, the shared folder tree and its group permissions. The Bearer
//! token is read from a file and re-read once on 401. Knows nothing of the
//! filesystem.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::RwLock;
use reqwest::header::{ACCEPT, ACCEPT_LANGUAGE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use super::http::{join, Auth, Call, HttpClient, Retry};
use super::transfer::Body;
use super::{RemoteError, RemoteResult};

/// Items per list page.
pub const PAGE: usize = 100;

/// A client file as listed: `{id, name, file, directoryId, priority}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientFile {
    #[serde(deserialize_with = "lenient::id")]
    pub id: u64,
    /// The caption (`caption` in requests; some answers echo that name).
    #[serde(default, alias = "caption")]
    pub name: Option<String>,
    /// The stored path, e.g. `y/1662913861_file.pdf`.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default, rename = "directoryId", deserialize_with = "lenient::opt_u64")]
    pub directory_id: Option<u64>,
}

/// A folder: shared (`{id, name, directoryId, createdAt, updatedAt}`) or a
/// client's own (`{id, name, clientId, directoryId, treeFolderId}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Folder {
    #[serde(deserialize_with = "lenient::id")]
    pub id: u64,
    #[serde(default, alias = "caption")]
    pub name: Option<String>,
    #[serde(default, rename = "directoryId", deserialize_with = "lenient::opt_u64")]
    pub directory_id: Option<u64>,
    #[serde(default, rename = "createdAt")]
    pub created_at: Option<String>,
    #[serde(default, rename = "updatedAt")]
    pub updated_at: Option<String>,
}

/// One user group's access to a shared folder.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupAccess {
    #[serde(deserialize_with = "lenient::id")]
    pub id: u64,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
}

/// Tolerant field decoding: numbers may come as numeric strings and flags
/// as `0`/`1` or `"true"`; anything else unusable reads as absent (only an
/// unusable id fails the item).
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    }

    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        opt_u64(d)?.ok_or_else(|| serde::de::Error::custom("the id is not a number"))
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Bool(b)) => Some(b),
            Some(Value::Number(n)) => n.as_u64().map(|n| n != 0),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        })
    }
}

/// Size and time of a client file's content, from `HEAD`.
#[derive(Debug, Clone, Copy)]
pub struct ContentInfo {
    pub size: Option<u64>,
    pub modified: Option<SystemTime>,
}

/// The pre-issued token, re-read from its file after a 401.
struct TokenFile {
    path: PathBuf,
    token: RwLock<String>,
}

#[async_trait::async_trait]
impl Auth for TokenFile {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        Ok(Some(format!("Bearer {}", self.token.read())))
    }
    /// Re-reads the file and asks for the one retry whenever it could be
    /// read: "unchanged since the last read" does not mean "stale", since a
    /// concurrent call that got its 401 first may already have loaded the
    /// new token. The HTTP layer refreshes at most once per call, so a token
    /// that stays wrong costs one extra request, never a loop.
    async fn refresh(&self) -> RemoteResult<bool> {
        let fresh = super::read_secret(&self.path)
            .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", self.path.display())))?;
        *self.token.write() = fresh;
        Ok(true)
    }
}

#[derive(Clone)]
pub struct BackofficeClient {
    http: HttpClient,
    base: Url,
    language: String,
    content_url: String,
    auth: Arc<TokenFile>,
}

/// A list answer: `{"total", "data"}` or a bare array.
fn items<T: DeserializeOwned>(v: Value) -> RemoteResult<Vec<T>> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => {
            return Err(RemoteError::Decode(
                "a list is neither an array nor an envelope".into(),
            ))
        }
    };
    list.into_iter()
        .map(|i| serde_json::from_value(i).map_err(|e| RemoteError::Decode(e.to_string())))
        .collect()
}

impl BackofficeClient {
    pub fn new(
        http: HttpClient,
        base_url: &str,
        token_file: &Path,
        content_url: &str,
        language: &str,
    ) -> Result<BackofficeClient, String> {
        let base =
            Url::parse(base_url).map_err(|e| format!("backoffice.base_url {base_url:?}: {e}"))?;
        let token = super::read_secret(token_file)
            .map_err(|e| format!("backoffice.token_file {}: {e}", token_file.display()))?;
        Ok(BackofficeClient {
            http,
            base,
            language: language.to_string(),
            content_url: content_url.to_string(),
            auth: Arc::new(TokenFile {
                path: token_file.to_path_buf(),
                token: RwLock::new(token),
            }),
        })
    }

    fn call(&self, endpoint: &'static str, method: Method, path: &str) -> RemoteResult<Call> {
        Ok(Call::new(endpoint, method, join(&self.base, path)?)
            .header(ACCEPT, "application/json")
            .header(ACCEPT_LANGUAGE, &self.language))
    }

    async fn json<T: DeserializeOwned>(&self, call: Call) -> RemoteResult<T> {
        self.http.json(&call, self.auth.as_ref()).await
    }

    async fn send(&self, call: Call) -> RemoteResult<()> {
        self.http.send(&call, self.auth.as_ref()).await.map(|_| ())
    }

    /// Every page of a `limit`/`offset` list; a short page ends it.
    async fn list_all<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        filters: &[(&str, String)],
    ) -> RemoteResult<Vec<T>> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut call = self
                .call(endpoint, Method::GET, path)?
                .query("limit", PAGE)
                .query("offset", offset);
            for (k, v) in filters {
                call = call.query(k, v);
            }
            let page: Vec<T> = items(self.json(call).await?)?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
            offset += n;
        }
    }

    /// A client's files: all of them (`None`), or those of one folder.
    pub async fn list_files(
        &self,
        client: u64,
        directory: Option<u64>,
    ) -> RemoteResult<Vec<ClientFile>> {
        let filters: Vec<(&str, String)> = directory
            .map(|d| ("filter[directoryId]", d.to_string()))
            .into_iter()
            .collect();
        self.list_all(
            "backoffice.list_files",
            &format!("/api/v2/clients/{client}/files"),
            &filters,
        )
        .await
    }

    /// Whether a client exists (one cheap list call; 404 means no).
    pub async fn client_exists(&self, client: u64) -> RemoteResult<bool> {
        let call = self
            .call(
                "backoffice.list_files",
                Method::GET,
                &format!("/api/v2/clients/{client}/files"),
            )?
            .query("limit", 1);
        match self.http.send(&call, self.auth.as_ref()).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Multipart upload: `file` (bytes with `filename`), `caption`,
    /// `directoryId` (left out at the client root).
    pub async fn upload_file(
        &self,
        client: u64,
        content: &Body,
        filename: &str,
        caption: &str,
        directory: Option<u64>,
    ) -> RemoteResult<ClientFile> {
        let (filename, caption) = (filename.to_string(), caption.to_string());
        let tracker = self.http.transfers().track(content);
        let progress = tracker.clone();
        let factory = Arc::new(move || {
            let mut form = reqwest::multipart::Form::new()
                .part("file", tracker.file_part(&filename)?)
                .text("caption", caption.clone());
            if let Some(d) = directory {
                form = form.text("directoryId", d.to_string());
            }
            Ok(form)
        });
        let call = self
            .call(
                "backoffice.upload_file",
                Method::POST,
                &format!("/api/v2/clients/{client}/files"),
            )?
            .multipart(factory)
            .progress(progress);
        self.json(call).await
    }

    /// Renames and/or moves a client file (`directory`: `Some(None)` is the
    /// client root).
    pub async fn update_file(
        &self,
        client: u64,
        id: u64,
        caption: Option<&str>,
        directory: Option<Option<u64>>,
    ) -> RemoteResult<ClientFile> {
        let mut body = json!({});
        if let Some(c) = caption {
            body["caption"] = json!(c);
        }
        if let Some(d) = directory {
            body["directoryId"] = json!(d);
        }
        self.json(
            self.call(
                "backoffice.update_file",
                Method::PATCH,
                &format!("/api/v2/clients/{client}/files/{id}"),
            )?
            .json(body),
        )
        .await
    }

    pub async fn delete_file(&self, client: u64, id: u64) -> RemoteResult<()> {
        self.send(self.call(
            "backoffice.delete_file",
            Method::DELETE,
            &format!("/api/v2/clients/{client}/files/{id}"),
        )?)
        .await
    }

    fn content_path(&self, client: u64, file: &ClientFile) -> String {
        self.content_url
            .replace("{clientId}", &client.to_string())
            .replace("{fileId}", &file.id.to_string())
            .replace("{file}", file.file.as_deref().unwrap_or(""))
    }

    /// The content URL of a file (for `user.bridgefs.url`).
    pub fn content_url(&self, client: u64, file: &ClientFile) -> String {
        join(&self.base, &self.content_path(client, file))
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// `HEAD` of the content: size and time. A server whose `HEAD` gives no
    /// length is asked for one byte, and `Content-Range` tells the total.
    pub async fn head_content(&self, client: u64, file: &ClientFile) -> RemoteResult<ContentInfo> {
        let call = self.call(
            "backoffice.head_content",
            Method::HEAD,
            &self.content_path(client, file),
        )?;
        let resp = self.http.send(&call, self.auth.as_ref()).await?;
        let mut info = ContentInfo {
            size: resp.content_length(),
            modified: resp.last_modified(),
        };
        if info.size.is_none() {
            let probe = self
                .call(
                    "backoffice.head_content",
                    Method::GET,
                    &self.content_path(client, file),
                )?
                .header(reqwest::header::RANGE, "bytes=0-0");
            let resp = self.http.send(&probe, self.auth.as_ref()).await?;
            info.size = resp
                .headers
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|t| t.parse().ok())
                .or_else(|| {
                    (resp.status == reqwest::StatusCode::OK).then_some(resp.body.len() as u64)
                });
            info.modified = info.modified.or(resp.last_modified());
        }
        Ok(info)
    }

    pub async fn read_content(
        &self,
        client: u64,
        file: &ClientFile,
        offset: u64,
        len: u64,
    ) -> RemoteResult<Bytes> {
        let call = self.call(
            "backoffice.download",
            Method::GET,
            &self.content_path(client, file),
        )?;
        self.http
            .get_range(&call, self.auth.as_ref(), offset, len)
            .await
    }

    /// A client's own folders (**assumption**: this route exists). A server
    /// without it (404 or 405) has no own folders to show: the client's
    /// existence is told by the files list, not by this one.
    pub async fn list_client_folders(&self, client: u64) -> RemoteResult<Vec<Folder>> {
        match self
            .list_all(
                "backoffice.list_client_folders",
                &format!("/api/v2/clients/{client}/folders"),
                &[],
            )
            .await
        {
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                tracing::debug!(client, "no client-folder list on this server");
                Ok(Vec::new())
            }
            other => other,
        }
    }

    pub async fn create_client_folder(
        &self,
        client: u64,
        caption: &str,
        parent: Option<u64>,
    ) -> RemoteResult<Folder> {
        let mut body = json!({ "caption": caption });
        if let Some(p) = parent {
            body["directoryId"] = json!(p);
        }
        self.json(
            self.call(
                "backoffice.create_client_folder",
                Method::POST,
                &format!("/api/v2/clients/{client}/folders"),
            )?
            .json(body),
        )
        .await
    }

    pub async fn rename_client_folder(
        &self,
        client: u64,
        id: u64,
        caption: &str,
    ) -> RemoteResult<Folder> {
        let call = self.call(
            "backoffice.rename_client_folder",
            Method::PUT,
            &format!("/api/v2/clients/{client}/folders/{id}"),
        )?;
        self.json(call.json(json!({ "caption": caption }))).await
    }

    pub async fn delete_client_folder(&self, client: u64, id: u64) -> RemoteResult<()> {
        self.send(self.call(
            "backoffice.delete_client_folder",
            Method::DELETE,
            &format!("/api/v2/clients/{client}/folders/{id}"),
        )?)
        .await
    }

    /// The folder tree shared by all clients, flat.
    pub async fn list_shared(&self) -> RemoteResult<Vec<Folder>> {
        self.list_all("backoffice.list_shared", "/api/v2/folders", &[])
            .await
    }

    /// One shared folder.
    pub async fn get_shared(&self, id: u64) -> RemoteResult<Folder> {
        self.json(self.call(
            "backoffice.get_shared",
            Method::GET,
            &format!("/api/v2/folders/{id}"),
        )?)
        .await
    }

    pub async fn add_shared(&self, name: &str) -> RemoteResult<Folder> {
        self.json(
            self.call("backoffice.add_shared", Method::POST, "/api/v2/folders")?
                .json(json!({ "name": name })),
        )
        .await
    }

    /// Adds a subfolder; the API answers 204 without the new id.
    pub async fn add_subdirectory(&self, parent: u64, name: &str) -> RemoteResult<()> {
        let call = self.call(
            "backoffice.add_subdirectory",
            Method::POST,
            &format!("/api/v2/folders/{parent}/addSubdirectory"),
        )?;
        self.send(call.json(json!({ "name": name }))).await
    }

    pub async fn rename_shared(&self, id: u64, name: &str) -> RemoteResult<()> {
        self.send(
            self.call(
                "backoffice.rename_shared",
                Method::PUT,
                &format!("/api/v2/folders/{id}"),
            )?
            .json(json!({ "name": name })),
        )
        .await
    }

    pub async fn groups(&self, folder: u64) -> RemoteResult<Vec<GroupAccess>> {
        items(
            self.json(self.call(
                "backoffice.groups",
                Method::GET,
                &format!("/api/v2/folders/{folder}/groups"),
            )?)
            .await?,
        )
    }

    /// Flips one group's access and returns the new state. Not idempotent:
    /// sent once, never retried.
    pub async fn toggle_group(&self, folder: u64, group: u64) -> RemoteResult<bool> {
        let call = self
            .call(
                "backoffice.toggle_group",
                Method::PUT,
                &format!("/api/v2/folders/{folder}/groups/{group}"),
            )?
            .retry(Retry::Never);
        let v: Value = self.json(call).await?;
        v.get("status")
            .and_then(Value::as_bool)
            .ok_or_else(|| RemoteError::Decode("no status in the toggle answer".into()))
    }
}
