//! Typed client of the Files-apps API (API-CONTRACT.md §3). Knows nothing of
//! the filesystem.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::RwLock;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::http::{join, segment, Auth, Call, HttpClient, NoAuth, Retry};
use super::transfer::Body;
use super::{RemoteError, RemoteResult};

/// Items per list page (the API's maximum).
pub const PAGE: usize = 100;
/// List pages fetched at once once the count is known.
const PAGE_CONCURRENCY: usize = 8;

/// A file or revision object; every field but the id may be absent.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct FileObject {
    pub id: u64,
    #[serde(default)]
    pub rev: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub download_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub is_trashed: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlobObject {
    pub id: u64,
}

/// Which files a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trashed {
    Live,
    Only,
}

/// Bearer API key read from a file, re-read after a 401.
struct KeyFile {
    path: PathBuf,
    key: RwLock<String>,
}

#[async_trait::async_trait]
impl Auth for KeyFile {
    async fn authorization(&self) -> RemoteResult<Option<String>> {
        Ok(Some(format!("Bearer {}", self.key.read())))
    }
    async fn refresh(&self) -> RemoteResult<bool> {
        let fresh = super::read_secret(&self.path)
            .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", self.path.display())))?;
        let mut key = self.key.write();
        let changed = *key != fresh;
        *key = fresh;
        Ok(changed)
    }
}

#[derive(Clone)]
pub struct FilesClient {
    http: HttpClient,
    base: Url,
    auth: Arc<KeyFile>,
    /// Hosts besides `base`'s origin that may receive the API key with a
    /// `download_url` (a CDN the admin trusts). Any other host gets none.
    key_hosts: Vec<String>,
}

impl FilesClient {
    pub fn new(
        http: HttpClient,
        base_url: &str,
        api_key_file: &Path,
        key_hosts: &[String],
    ) -> Result<FilesClient, String> {
        let base = Url::parse(base_url).map_err(|e| format!("files.base_url {base_url:?}: {e}"))?;
        let key = super::read_secret(api_key_file)
            .map_err(|e| format!("files.api_key_file {}: {e}", api_key_file.display()))?;
        Ok(FilesClient {
            http,
            base,
            auth: Arc::new(KeyFile {
                path: api_key_file.to_path_buf(),
                key: RwLock::new(key),
            }),
            key_hosts: key_hosts.to_vec(),
        })
    }

    /// True when `url` may be sent the API key: the API's own origin, or
    /// a host the config names.
    fn may_send_key(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
            || url
                .host_str()
                .is_some_and(|h| self.key_hosts.iter().any(|k| k.eq_ignore_ascii_case(h)))
    }

    fn call(&self, endpoint: &'static str, method: Method, path: &str) -> RemoteResult<Call> {
        Ok(Call::new(endpoint, method, join(&self.base, path)?))
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, call: Call) -> RemoteResult<T> {
        self.http.json(&call, self.auth.as_ref()).await
    }

    /// `GET /api/apps/{app}`.
    pub async fn get_app(&self, app: &str) -> RemoteResult<Value> {
        self.json(self.call(
            "files.get_app",
            Method::GET,
            &format!("/api/apps/{}", segment(app)),
        )?)
        .await
    }

    /// Every file of a paged list: page one, then the rest in parallel.
    async fn list_all(
        &self,
        endpoint: &'static str,
        path: &str,
        trashed: Trashed,
    ) -> RemoteResult<Vec<FileObject>> {
        let trashed = match trashed {
            Trashed::Live => "false",
            Trashed::Only => "true",
        };
        let page = |skip: usize| -> RemoteResult<Call> {
            Ok(self
                .call(endpoint, Method::GET, path)?
                .query("skip", skip)
                .query("take", PAGE)
                .query("trashed", trashed)
                .query("order_by", "id"))
        };
        let first: Value = self.json(page(0)?).await?;
        let (mut items, count) = decode_page(first)?;
        let Some(count) = count else {
            // No count (a bare array): keep paging while pages are full.
            let mut last = items.len();
            while last == PAGE {
                let (more, _) = decode_page(self.json(page(items.len())?).await?)?;
                last = more.len();
                items.extend(more);
            }
            return Ok(items);
        };
        if items.len() >= count || items.is_empty() {
            return Ok(items);
        }
        let skips: Vec<usize> = (items.len()..count).step_by(PAGE).collect();
        let calls: Vec<Call> = skips.into_iter().map(page).collect::<RemoteResult<_>>()?;
        // Each page is decoded as it arrives, so at most PAGE_CONCURRENCY
        // pages of JSON are held at once (a 100,000-file app once held all
        // 1,000 as JSON values: most of a 340 MiB peak).
        let mut pages = futures::stream::iter(calls.into_iter().map(|c| async move {
            let v: Value = self.json(c).await?;
            decode_page(v)
        }))
        .buffered(PAGE_CONCURRENCY);
        while let Some(page) = pages.next().await {
            items.extend(page?.0);
        }
        Ok(items)
    }

    /// The files of an app.
    pub async fn list_app_files(
        &self,
        app: &str,
        trashed: Trashed,
    ) -> RemoteResult<Vec<FileObject>> {
        self.list_all(
            "files.list_app_files",
            &format!("/api/apps/{}/files", segment(app)),
            trashed,
        )
        .await
    }

    /// Attachments of a post, comment or message (`kind` = `posts`, …).
    pub async fn list_attachments(&self, kind: &str, id: &str) -> RemoteResult<Vec<FileObject>> {
        self.list_all(
            "files.list_attachments",
            &format!("/api/{kind}/{}/attachments", segment(id)),
            Trashed::Live,
        )
        .await
    }

    pub async fn get_file(&self, id: u64) -> RemoteResult<FileObject> {
        self.json(
            self.call("files.get_file", Method::GET, &format!("/api/files/{id}"))?
                .query("trashed", "true"),
        )
        .await
    }

    /// Revisions, newest first.
    pub async fn versions(&self, id: u64) -> RemoteResult<Vec<FileObject>> {
        let v: Value = self
            .json(self.call(
                "files.versions",
                Method::GET,
                &format!("/api/files/{id}/versions"),
            )?)
            .await?;
        Ok(decode_page(v)?.0)
    }

    pub async fn get_version(&self, id: u64, rev: u64) -> RemoteResult<FileObject> {
        self.json(self.call(
            "files.get_version",
            Method::GET,
            &format!("/api/files/{id}/versions/{rev}"),
        )?)
        .await
    }

    /// `POST /api/blobs` with the file's bytes (read anew for each attempt).
    pub async fn upload_blob(&self, content: &Body, name: &str) -> RemoteResult<BlobObject> {
        let name = name.to_string();
        let tracker = self.http.transfers().track(content);
        let progress = tracker.clone();
        let factory = Arc::new(move || {
            Ok(reqwest::multipart::Form::new().part("blob", tracker.file_part(&name)?))
        });
        self.json(
            self.call("files.upload_blob", Method::POST, "/api/blobs")?
                .multipart(factory)
                .progress(progress),
        )
        .await
    }

    /// `POST /api/apps/{app}/files`.
    pub async fn create_file(
        &self,
        app: &str,
        blob_id: u64,
        name: &str,
    ) -> RemoteResult<FileObject> {
        let body = serde_json::json!({ "blob_id": blob_id, "name": name });
        self.json(
            self.call(
                "files.create_file",
                Method::POST,
                &format!("/api/apps/{}/files", segment(app)),
            )?
            .json(body),
        )
        .await
    }

    /// `PATCH /api/files/{id}`; a `204` answer is followed by a GET.
    pub async fn update_file(&self, id: u64, patch: Value) -> RemoteResult<FileObject> {
        // A PATCH with backup:true adds a revision: not repeated blindly.
        let retry = if patch.get("backup").is_some() {
            Retry::Never
        } else {
            Retry::Idempotent
        };
        let call = self
            .call(
                "files.update_file",
                Method::PATCH,
                &format!("/api/files/{id}"),
            )?
            .json(patch)
            .retry(retry);
        let resp = self.http.send(&call, self.auth.as_ref()).await?;
        if resp.body.is_empty() {
            return self.get_file(id).await;
        }
        resp.json()
    }

    async fn post_empty(&self, endpoint: &'static str, path: &str) -> RemoteResult<()> {
        // Trash and restore set a state: repeating them is harmless.
        let call = self
            .call(endpoint, Method::POST, path)?
            .retry(Retry::Idempotent);
        self.http.send(&call, self.auth.as_ref()).await.map(|_| ())
    }

    pub async fn trash(&self, id: u64) -> RemoteResult<()> {
        self.post_empty("files.trash", &format!("/api/files/{id}/trash"))
            .await
    }

    pub async fn restore(&self, id: u64) -> RemoteResult<()> {
        self.post_empty("files.restore", &format!("/api/files/{id}/restore"))
            .await
    }

    /// Adds a revision with revision `rev`'s content: sent once.
    pub async fn restore_version(&self, id: u64, rev: u64) -> RemoteResult<()> {
        let call = self.call(
            "files.restore_version",
            Method::POST,
            &format!("/api/files/{id}/versions/{rev}/restore"),
        )?;
        self.http.send(&call, self.auth.as_ref()).await.map(|_| ())
    }

    pub async fn delete(&self, id: u64) -> RemoteResult<()> {
        let call = self.call("files.delete", Method::DELETE, &format!("/api/files/{id}"))?;
        self.http.send(&call, self.auth.as_ref()).await.map(|_| ())
    }

    pub async fn delete_version(&self, id: u64, rev: u64) -> RemoteResult<()> {
        let call = self.call(
            "files.delete_version",
            Method::DELETE,
            &format!("/api/files/{id}/versions/{rev}"),
        )?;
        self.http.send(&call, self.auth.as_ref()).await.map(|_| ())
    }

    /// `len` bytes at `offset` of a `download_url` (absolute or relative).
    pub async fn download(&self, download_url: &str, offset: u64, len: u64) -> RemoteResult<Bytes> {
        let call = self.call("files.download", Method::GET, download_url)?;
        let auth: &dyn Auth = if self.may_send_key(&call.url) {
            self.auth.as_ref()
        } else {
            &NoAuth
        };
        self.http.get_range(&call, auth, offset, len).await
    }
}

/// A list answer: a bare array, or `{"data"?, "start"?, "end"?, "count"}`.
fn decode_page(v: Value) -> RemoteResult<(Vec<FileObject>, Option<usize>)> {
    let decode = |items: Vec<Value>| -> RemoteResult<Vec<FileObject>> {
        items
            .into_iter()
            .map(|i| {
                serde_json::from_value(i)
                    .map_err(|e| RemoteError::Decode(format!("file object: {e}")))
            })
            .collect()
    };
    match v {
        Value::Array(items) => Ok((decode(items)?, None)),
        Value::Object(mut o) => {
            let count = o.get("count").and_then(Value::as_u64).map(|c| c as usize);
            let items = match o.remove("data") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            Ok((decode(items)?, count))
        }
        _ => Err(RemoteError::Decode(
            "a list is neither an array nor an envelope".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_only_to_the_api_origin_and_named_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "k").unwrap();
        let http = HttpClient::new(Default::default()).unwrap();
        let hosts = vec!["cdn.example.com".to_string()];
        let c = FilesClient::new(http, "https://api.example.com/files", &key, &hosts).unwrap();
        let may = |u: &str| c.may_send_key(&Url::parse(u).unwrap());
        assert!(may("https://api.example.com/files/blobs/1"));
        assert!(may("https://CDN.example.com/x"));
        assert!(!may("https://evil.example.net/x"), "another host");
        assert!(
            !may("http://api.example.com/files/blobs/1"),
            "another scheme"
        );
        assert!(!may("https://api.example.com:8443/x"), "another port");
    }

    #[test]
    fn pages_decode_in_every_form() {
        let (items, count) =
            decode_page(serde_json::json!([{"id": 1}, {"id": 2, "name": "x", "extra": true}]))
                .unwrap();
        assert_eq!((items.len(), count), (2, None));
        let (items, count) = decode_page(serde_json::json!({"count": 0})).unwrap();
        assert_eq!((items.len(), count), (0, Some(0)));
        let (items, count) = decode_page(serde_json::json!({"data": [{"id": 3, "size": null}], "start": 0, "end": 1, "count": 7})).unwrap();
        assert_eq!((items[0].id, items[0].size, count), (3, None, Some(7)));
    }
}
