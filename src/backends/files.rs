//! The Files-apps namespace: `apps/<app>/` per configured app, with the
//! hidden views `<app>/.trash`, `<app>/.revisions/<file>/v<N><.ext>` and
//! `apps/.posts|.comments|.messages/<id>/` (TREE.md).
//!
//! Keys: `apps` (root), `app:<name>`, `f:<id>` (live file), `trash:<app>`,
//! `t:<id>` (trashed file), `revs:<app>`, `rd:<id>` (a file's revisions),
//! `r:<id>:<rev>`, `att:<kind>`, `att:<kind>:<id>`, `a:<id>` (attachment).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::config::FilesConfig;
use crate::fs::backend::{Backend, Content, Entry, Key, Kind, XATTR_PREFIX};
use crate::fs::error::{FsError, FsResult};
use crate::remote::files::{FileObject, FilesClient, Trashed};
use crate::remote::http::HttpClient;

const ROOT: &str = "apps";
/// Attachment views at the apps root: hidden name → API collection.
const ATTACHMENT_VIEWS: &[(&str, &str)] = &[
    (".posts", "posts"),
    (".comments", "comments"),
    (".messages", "messages"),
];

pub fn backend(
    cfg: &FilesConfig,
    http: HttpClient,
    memo_entries: usize,
) -> Result<Arc<dyn Backend>, String> {
    let client = FilesClient::new(http, &cfg.base_url, &cfg.api_key_file, &cfg.key_hosts)?;
    Ok(Arc::new(FilesBackend {
        client,
        apps: cfg.apps.clone(),
        objects: super::memo(memo_entries),
        mtime_key: cfg.mtime_metadata_key.clone(),
        revision_urls: Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(REVISION_URLS).expect("non-zero"),
        )),
    }))
}

/// Revision download URLs remembered (they never change).
const REVISION_URLS: usize = 10_000;

pub struct FilesBackend {
    client: FilesClient,
    apps: Vec<String>,
    /// The download URL of each (file, revision) read: a file's own URL
    /// serves whatever revision is newest when each range is asked for, so
    /// a read that spans several ranges could mix two; a revision's stays.
    revision_urls: Mutex<lru::LruCache<(u64, u64), String>>,
    /// Last object seen per file id (download URLs, tags, metadata), so
    /// reads and xattrs of listed files need no extra call.
    objects: Mutex<lru::LruCache<u64, FileObject>>,
    /// `mtime_metadata_key` of the config: where utimens' times go.
    mtime_key: Option<String>,
}

fn parse_time(s: &Option<String>) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(s.as_deref()?).ok()?;
    Some(SystemTime::from(t))
}

fn ext_of(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[i..],
        _ => "",
    }
}

/// What a key names.
enum Node<'a> {
    Root,
    App(&'a str),
    File(u64),
    TrashDir(&'a str),
    Trashed(u64),
    RevisionsDir(&'a str),
    FileRevisions(u64),
    Revision(u64, u64),
    AttachmentKind(&'a str),
    AttachmentDir(&'a str, &'a str),
    Attachment(u64),
}

fn parse(key: &str) -> FsResult<Node<'_>> {
    let bad = || FsError::Io(format!("unknown key {key:?}"));
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    if key == ROOT {
        return Ok(Node::Root);
    }
    let (kind, rest) = key.split_once(':').ok_or_else(bad)?;
    Ok(match kind {
        "app" => Node::App(rest),
        "f" => Node::File(num(rest)?),
        "trash" => Node::TrashDir(rest),
        "t" => Node::Trashed(num(rest)?),
        "revs" => Node::RevisionsDir(rest),
        "rd" => Node::FileRevisions(num(rest)?),
        "r" => {
            let (id, rev) = rest.split_once(':').ok_or_else(bad)?;
            Node::Revision(num(id)?, num(rev)?)
        }
        "att" => match rest.split_once(':') {
            Some((k, id)) => Node::AttachmentDir(k, id),
            None => Node::AttachmentKind(rest),
        },
        "a" => Node::Attachment(num(rest)?),
        _ => return Err(bad()),
    })
}

impl FilesBackend {
    fn entry(&self, prefix: &str, f: &FileObject, writable: bool) -> Entry {
        self.objects.lock().put(f.id, f.clone());
        Entry {
            key: format!("{prefix}:{}", f.id),
            name: f.name.clone().unwrap_or_else(|| format!("file-{}", f.id)),
            kind: Kind::File,
            id: f.id.to_string(),
            size: f.size,
            mtime: self
                .stored_mtime(f)
                .or_else(|| parse_time(&f.updated_at))
                .or_else(|| parse_time(&f.created_at)),
            ctime: parse_time(&f.created_at),
            writable,
            version: f.rev.map(|r| r.to_string()),
        }
    }

    /// The time utimens stored in the file's metadata, if it was stored at
    /// the file's current revision (a newer revision has its own time).
    fn stored_mtime(&self, f: &FileObject) -> Option<SystemTime> {
        let value = f
            .metadata
            .as_ref()?
            .get(self.mtime_key.as_ref()?)?
            .as_str()?;
        let (rev, time) = value.split_once('@')?;
        (rev.parse::<u64>().ok()? == f.rev?).then(|| parse_time(&Some(time.to_string())))?
    }

    fn revision_entry(&self, f: &FileObject, file_name: &str) -> Entry {
        let rev = f.rev.unwrap_or(0);
        Entry {
            key: format!("r:{}:{rev}", f.id),
            name: format!("v{rev}{}", ext_of(file_name)),
            kind: Kind::File,
            id: format!("{}.{rev}", f.id),
            size: f.size,
            mtime: parse_time(&f.updated_at).or_else(|| parse_time(&f.created_at)),
            ctime: parse_time(&f.created_at),
            writable: false,
            version: Some(rev.to_string()),
        }
    }

    /// The download URL of revision `rev` of file `id` (one call, then
    /// remembered: a revision's bytes never change).
    async fn revision_url(&self, id: u64, rev: u64) -> FsResult<String> {
        if let Some(u) = self.revision_urls.lock().get(&(id, rev)) {
            return Ok(u.clone());
        }
        let url = self
            .client
            .get_version(id, rev)
            .await?
            .download_url
            .ok_or_else(|| {
                FsError::Io(format!("revision {rev} of file {id} has no download_url"))
            })?;
        self.revision_urls.lock().put((id, rev), url.clone());
        Ok(url)
    }

    fn view_dir(key: String, name: &str) -> Entry {
        let mut e = Entry::dir(key, name, name);
        e.writable = false;
        e
    }

    fn app_of(dir: &Key) -> FsResult<&str> {
        match parse(dir)? {
            Node::App(a) => Ok(a),
            _ => Err(FsError::NotPermitted),
        }
    }

    async fn object(&self, id: u64) -> FsResult<FileObject> {
        if let Some(o) = self.objects.lock().get(&id).cloned() {
            return Ok(o);
        }
        let o = self.client.get_file(id).await?;
        self.objects.lock().put(id, o.clone());
        Ok(o)
    }

    /// The live file named `name` in app `app` as `f:<id>`.
    /// A read of a whole file in one request goes to the file's own
    /// download URL (known from the listing: no extra call). One response
    /// cannot mix two revisions; if it is not the listed size, a newer
    /// revision came meanwhile, and the caller reads the listed revision's
    /// own URL instead. Ranges of larger files always use that URL, since
    /// several responses could otherwise come from different revisions.
    async fn read_whole(&self, entry: &Entry, offset: u64, len: u64) -> Option<Bytes> {
        let size = entry.size?;
        let Ok(Node::File(id)) = parse(&entry.key) else {
            return None;
        };
        if offset != 0 || len < size {
            return None;
        }
        let url = self.objects.lock().get(&id).and_then(|o| {
            (o.rev.map(|r| r.to_string()) == entry.version).then(|| o.download_url.clone())?
        })?;
        let bytes = self.client.download(&url, 0, len).await.ok()?;
        (bytes.len() as u64 == size).then_some(bytes)
    }

    async fn patch(&self, id: u64, patch: Value) -> FsResult<FileObject> {
        let o = self.client.update_file(id, patch).await?;
        self.objects.lock().put(id, o.clone());
        Ok(o)
    }
}

#[async_trait::async_trait]
impl Backend for FilesBackend {
    fn root(&self) -> Key {
        ROOT.into()
    }

    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>> {
        match parse(dir)? {
            Node::Root => Ok(self
                .apps
                .iter()
                .map(|a| Entry::dir(format!("app:{a}"), a.clone(), a.clone()))
                .collect()),
            Node::App(app) => {
                let files = self.client.list_app_files(app, Trashed::Live).await?;
                Ok(files.iter().map(|f| self.entry("f", f, true)).collect())
            }
            Node::TrashDir(app) => {
                let files = self.client.list_app_files(app, Trashed::Only).await?;
                Ok(files.iter().map(|f| self.entry("t", f, false)).collect())
            }
            Node::RevisionsDir(app) => {
                let files = self.client.list_app_files(app, Trashed::Live).await?;
                Ok(files
                    .iter()
                    .map(|f| {
                        self.objects.lock().put(f.id, f.clone());
                        let name = f.name.clone().unwrap_or_else(|| format!("file-{}", f.id));
                        let mut e = Self::view_dir(format!("rd:{}", f.id), &name);
                        e.id = f.id.to_string();
                        e.mtime = parse_time(&f.updated_at);
                        e
                    })
                    .collect())
            }
            Node::FileRevisions(id) => {
                let name = self.object(id).await?.name.unwrap_or_default();
                let revs = self.client.versions(id).await?;
                Ok(revs.iter().map(|r| self.revision_entry(r, &name)).collect())
            }
            Node::AttachmentKind(_) => Ok(Vec::new()),
            Node::AttachmentDir(kind, id) => {
                let files = self.client.list_attachments(kind, id).await?;
                Ok(files.iter().map(|f| self.entry("a", f, false)).collect())
            }
            Node::File(_) | Node::Trashed(_) | Node::Revision(..) | Node::Attachment(_) => {
                Err(FsError::NotDir)
            }
        }
    }

    async fn lookup_hidden(&self, dir: &Key, name: &str) -> FsResult<Option<Entry>> {
        match parse(dir)? {
            Node::Root => Ok(ATTACHMENT_VIEWS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, kind)| Self::view_dir(format!("att:{kind}"), n))),
            Node::App(app) => Ok(match name {
                ".trash" => Some(Self::view_dir(format!("trash:{app}"), name)),
                ".revisions" => Some(Self::view_dir(format!("revs:{app}"), name)),
                _ => None,
            }),
            Node::AttachmentKind(kind) => {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_digit()) {
                    return Ok(None);
                }
                match self.client.list_attachments(kind, name).await {
                    Ok(_) => Ok(Some(Self::view_dir(format!("att:{kind}:{name}"), name))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(None),
        }
    }

    async fn stat(&self, entry: &Entry) -> FsResult<Entry> {
        match parse(&entry.key)? {
            Node::File(id) | Node::Trashed(id) | Node::Attachment(id) => {
                let o = self.client.get_file(id).await?;
                let prefix = entry.key.split(':').next().unwrap_or("f").to_string();
                Ok(self.entry(&prefix, &o, entry.writable))
            }
            Node::Revision(id, rev) => {
                let o = self.client.get_version(id, rev).await?;
                Ok(Entry {
                    size: o.size,
                    ..entry.clone()
                })
            }
            _ => Ok(entry.clone()),
        }
    }

    async fn read(&self, entry: &Entry, offset: u64, len: u64) -> FsResult<Bytes> {
        if let Some(bytes) = self.read_whole(entry, offset, len).await {
            return Ok(bytes);
        }
        let url = match parse(&entry.key)? {
            Node::File(id) => match entry.version.as_deref().and_then(|v| v.parse().ok()) {
                Some(rev) => Some(self.revision_url(id, rev).await?),
                None => self.object(id).await?.download_url,
            },
            Node::Trashed(id) | Node::Attachment(id) => self.object(id).await?.download_url,
            Node::Revision(id, rev) => self.client.get_version(id, rev).await?.download_url,
            _ => return Err(FsError::IsDir),
        };
        let url = url.ok_or_else(|| FsError::Io(format!("{} has no download_url", entry.name)))?;
        Ok(self.client.download(&url, offset, len).await?)
    }

    fn check_create(&self, dir: &Key) -> FsResult<()> {
        Self::app_of(dir).map(|_| ())
    }

    async fn upload(
        &self,
        dir: &Key,
        name: &str,
        existing: Option<&Entry>,
        content: &Content,
    ) -> FsResult<Entry> {
        let app = Self::app_of(dir)?;
        let blob = self.client.upload_blob(&super::body(content), name).await?;
        let o = match existing.map(|e| parse(&e.key)) {
            Some(Ok(Node::File(id))) => {
                self.patch(id, json!({"blob_id": blob.id, "backup": true}))
                    .await?
            }
            _ => self.client.create_file(app, blob.id, name).await?,
        };
        Ok(self.entry("f", &o, true))
    }

    async fn mkdir(&self, _dir: &Key, _name: &str) -> FsResult<Entry> {
        // Apps are flat; the root holds only configured apps.
        Err(FsError::NotPermitted)
    }

    /// The file's own record: one call, not the app's listing.
    async fn current(&self, _dir: &Key, entry: &Entry) -> FsResult<Option<Entry>> {
        let id = match parse(&entry.key)? {
            Node::File(id) => id,
            _ => return Ok(Some(entry.clone())),
        };
        match self.client.get_file(id).await {
            Ok(o) if o.is_trashed != Some(true) => Ok(Some(self.entry("f", &o, entry.writable))),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn root_from_config(&self) -> bool {
        true
    }

    /// The app's own record: one call, whatever the number of its files.
    async fn reach(&self, dir: &Key) -> FsResult<()> {
        match parse(dir)? {
            Node::App(app) => self
                .client
                .get_app(app)
                .await
                .map(|_| ())
                .map_err(Into::into),
            _ => self.list(dir).await.map(|_| ()),
        }
    }

    async fn rename(
        &self,
        entry: &Entry,
        from_dir: &Key,
        to_dir: &Key,
        new_name: &str,
        replace: Option<&Entry>,
    ) -> FsResult<Entry> {
        let to_app = match parse(to_dir)? {
            Node::App(a) => a,
            Node::Root | Node::TrashDir(_) | Node::RevisionsDir(_) | Node::FileRevisions(_) => {
                return Err(FsError::NotPermitted)
            }
            _ => return Err(FsError::NotPermitted),
        };
        let replace_id = match replace.map(|r| parse(&r.key)) {
            Some(Ok(Node::File(id))) => Some(id),
            Some(_) => return Err(FsError::NotPermitted),
            None => None,
        };
        match (parse(&entry.key)?, parse(from_dir)?) {
            (Node::File(id), Node::App(from_app)) => {
                if from_app != to_app {
                    return Err(FsError::CrossDevice);
                }
                // The replaced file goes to the trash first (recoverable),
                // and comes back if the rename fails.
                if let Some(t) = replace_id {
                    self.client.trash(t).await?;
                }
                match self.patch(id, json!({ "name": new_name })).await {
                    Ok(o) => Ok(self.entry("f", &o, true)),
                    Err(e) => {
                        if let Some(t) = replace_id {
                            if let Err(r) = self.client.restore(t).await {
                                tracing::error!(file_id = t, error = %r, "rename failed and the replaced file stays in the trash (restore it from .trash)");
                            }
                        }
                        Err(e)
                    }
                }
            }
            (Node::Trashed(id), Node::TrashDir(from_app)) => {
                if from_app != to_app {
                    return Err(FsError::CrossDevice);
                }
                if let Some(t) = replace_id {
                    self.client.trash(t).await?;
                }
                self.client.restore(id).await?;
                let current = self.client.get_file(id).await?;
                let o = if current.name.as_deref() != Some(new_name) {
                    self.patch(id, json!({ "name": new_name })).await?
                } else {
                    current
                };
                Ok(self.entry("f", &o, true))
            }
            (Node::Revision(id, rev), Node::FileRevisions(_)) => {
                // `mv .revisions/f/vN f`: restore revision N of f itself.
                if replace_id != Some(id) {
                    return Err(FsError::NotPermitted);
                }
                self.client.restore_version(id, rev).await?;
                let o = self.client.get_file(id).await?;
                Ok(self.entry("f", &o, true))
            }
            (Node::File(_), _) => Err(FsError::CrossDevice),
            _ => Err(FsError::NotPermitted),
        }
    }

    async fn remove(&self, _dir: &Key, entry: &Entry) -> FsResult<()> {
        match parse(&entry.key)? {
            // unlink in an app moves the file to the trash.
            Node::File(id) => Ok(self.client.trash(id).await?),
            Node::Trashed(id) => {
                self.objects.lock().pop(&id);
                Ok(self.client.delete(id).await?)
            }
            Node::Revision(id, rev) => Ok(self.client.delete_version(id, rev).await?),
            _ => Err(FsError::NotPermitted),
        }
    }

    fn forget_memos(&self) {
        self.objects.lock().clear();
        self.revision_urls.lock().clear();
    }

    /// With `mtime_metadata_key`, the time goes into the file's metadata
    /// (merged with the rest: a PATCH replaces the whole map).
    async fn set_mtime(&self, entry: &Entry, mtime: SystemTime) -> FsResult<Option<Entry>> {
        let (Some(key), Ok(Node::File(id))) = (&self.mtime_key, parse(&entry.key)) else {
            return Ok(None);
        };
        let o = self.object(id).await?;
        let mut metadata = o.metadata.clone().unwrap_or_default();
        let time = chrono::DateTime::<chrono::Utc>::from(mtime).to_rfc3339();
        metadata.insert(key.clone(), json!(format!("{}@{time}", o.rev.unwrap_or(0))));
        let o = self.patch(id, json!({ "metadata": metadata })).await?;
        Ok(Some(self.entry("f", &o, true)))
    }

    /// `DELETE /files/{id}`: a saved-over temporary file skips the trash.
    async fn discard(&self, dir: &Key, entry: &Entry) -> FsResult<()> {
        match parse(&entry.key)? {
            Node::File(id) => {
                self.objects.lock().pop(&id);
                Ok(self.client.delete(id).await?)
            }
            _ => self.remove(dir, entry).await,
        }
    }

    async fn xattr_list(&self, entry: &Entry) -> FsResult<Vec<String>> {
        let id = match parse(&entry.key)? {
            Node::File(id) | Node::Trashed(id) | Node::Attachment(id) => id,
            Node::Revision(..) => return Ok(vec![format!("{XATTR_PREFIX}id")]),
            _ => return Ok(Vec::new()),
        };
        let o = self.object(id).await?;
        let mut names = vec![
            format!("{XATTR_PREFIX}id"),
            format!("{XATTR_PREFIX}url"),
            format!("{XATTR_PREFIX}tags"),
        ];
        for k in o.metadata.iter().flat_map(|m| m.keys()) {
            names.push(format!("{XATTR_PREFIX}meta.{k}"));
        }
        Ok(names)
    }

    async fn xattr_get(&self, entry: &Entry, name: &str) -> FsResult<Vec<u8>> {
        let attr = name.strip_prefix(XATTR_PREFIX).ok_or(FsError::NoData)?;
        let id = match parse(&entry.key)? {
            Node::File(id) | Node::Trashed(id) | Node::Attachment(id) => id,
            Node::Revision(..) if attr == "id" => return Ok(entry.id.clone().into_bytes()),
            _ => return Err(FsError::NoData),
        };
        let o = self.object(id).await?;
        match attr {
            "id" => Ok(id.to_string().into_bytes()),
            "url" => o
                .download_url
                .map(String::into_bytes)
                .ok_or(FsError::NoData),
            "tags" => Ok(o.tags.unwrap_or_default().join(",").into_bytes()),
            _ => {
                let key = attr.strip_prefix("meta.").ok_or(FsError::NoData)?;
                match o.metadata.as_ref().and_then(|m| m.get(key)) {
                    Some(Value::String(s)) => Ok(s.clone().into_bytes()),
                    Some(v) => Ok(v.to_string().into_bytes()),
                    None => Err(FsError::NoData),
                }
            }
        }
    }

    async fn xattr_set(&self, entry: &Entry, name: &str, value: Option<&[u8]>) -> FsResult<()> {
        let attr = name
            .strip_prefix(XATTR_PREFIX)
            .ok_or(FsError::NotSupported)?;
        let id = match parse(&entry.key)? {
            Node::File(id) => id,
            _ => return Err(FsError::NotPermitted),
        };
        let text = |v: &[u8]| {
            String::from_utf8(v.to_vec())
                .map_err(|_| FsError::Invalid("value must be UTF-8".into()))
        };
        match (attr, value) {
            ("id" | "url", _) => Err(FsError::NotPermitted),
            ("tags", v) => {
                let tags: Vec<String> = match v {
                    Some(v) => text(v)?
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect(),
                    None => Vec::new(),
                };
                self.patch(id, json!({ "tags": tags })).await.map(|_| ())
            }
            (a, v) => {
                let key = a
                    .strip_prefix("meta.")
                    .filter(|k| !k.is_empty())
                    .ok_or(FsError::NotSupported)?;
                // Read the current metadata: PATCH replaces the whole object.
                let mut meta = self.client.get_file(id).await?.metadata.unwrap_or_default();
                match v {
                    Some(v) => {
                        meta.insert(key.to_string(), Value::String(text(v)?));
                    }
                    None => {
                        if meta.remove(key).is_none() {
                            return Err(FsError::NoData);
                        }
                    }
                }
                self.patch(id, json!({ "metadata": meta }))
                    .await
                    .map(|_| ())
            }
        }
    }
}
