//! The back-office namespaces: `clients/<id>/…` (each client's tree: the
//! shared folders, the client's own folders and its files, placed by
//! `directoryId` in one folder-id space) and `folder-templates/…` (the shared
//! tree itself, with its user-group permissions as xattrs).
//!
//! Keys: `clients` (root), `c:<client>` (a client's root), `c:<client>:s:<id>`
//! (a shared folder in a client's tree), `c:<client>:o:<id>` (an own folder),
//! `c:<client>:f:<id>` (a file); `tpl` (templates root), `t:<id>`.
//!
//! Names (TREE.md): a caption lacking the extension of its stored file
//! (`y/1662913861_file.pdf`) is shown with it appended (`Service
//! agreement.pdf`); a rename of such a file to a name ending in that
//! extension stores the caption without it again, so the caption stays
//! extension-less. A caption that already carries it is stored as given. A
//! new upload keeps the full name as caption (its filename part gives the
//! stored path the same extension, so nothing is appended). Escaping and
//! duplicate suffixes are the core's business, not this module's.
//!
//! Sizes and times: listings have neither, so `list` and `stat` ask `HEAD`
//! on the content URL (16 at once), cached for good per (file id, stored
//! path) because the content of an id never changes; the time falls back to
//! the epoch prefix of the stored path.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::config::BackofficeConfig;
use crate::fs::backend::{fallback_time, Backend, Content, Entry, Key, Kind, XATTR_PREFIX};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::LOCAL_KEY_PREFIX;
use crate::remote::backoffice::{BackofficeClient, ClientFile, ContentInfo, Folder};
use crate::remote::http::HttpClient;

const CLIENTS: &str = "clients";
const TEMPLATES: &str = "tpl";
/// `HEAD` calls in flight while a listing learns sizes.
const HEAD_CONCURRENCY: usize = 16;

type Pair = (Arc<dyn Backend>, Arc<dyn Backend>);

/// The `clients` and `folder-templates` backends, sharing one client.
pub fn backends(
    cfg: &BackofficeConfig,
    http: HttpClient,
    memo_entries: usize,
) -> Result<Pair, String> {
    let client = BackofficeClient::new(
        http,
        &cfg.base_url,
        &cfg.token_file,
        &cfg.content_url,
        &cfg.language,
    )?;
    let clients = ClientsBackend {
        client: client.clone(),
        listed: cfg.clients.clone(),
        content: super::memo(memo_entries),
        files: super::memo(memo_entries),
    };
    Ok((Arc::new(clients), Arc::new(TemplatesBackend { client })))
}

/// The extension of a stored path, without the dot (`pdf`).
fn stored_ext(file: &str) -> Option<&str> {
    let last = file.rsplit('/').next().unwrap_or(file);
    last.rfind('.')
        .filter(|i| *i > 0 && last.len() - i <= 8)
        .map(|i| &last[i + 1..])
}

/// Caption as shown: with the stored file's extension when it lacks it.
pub fn display_name(caption: &str, file: &str) -> String {
    match stored_ext(file) {
        Some(ext)
            if !caption
                .to_lowercase()
                .ends_with(&format!(".{}", ext.to_lowercase())) =>
        {
            format!("{caption}.{ext}")
        }
        _ => caption.to_string(),
    }
}

/// Caption to store for a name given by a user: the extension that display
/// appended is stripped again.
fn caption_for(new_name: &str, old_caption: &str, file: &str) -> String {
    match stored_ext(file) {
        Some(ext) if display_name(old_caption, file) != old_caption => {
            let suffix = format!(".{ext}");
            new_name
                .strip_suffix(&suffix)
                .filter(|s| !s.is_empty())
                .unwrap_or(new_name)
                .to_string()
        }
        _ => new_name.to_string(),
    }
}

/// The upload time in a stored path (`y/1662913861_x.pdf`).
fn stored_time(file: &str) -> Option<SystemTime> {
    let last = file.rsplit('/').next()?;
    let secs: u64 = last.split('_').next()?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn parse_time(s: &Option<String>) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s.as_deref()?)
        .ok()
        .map(SystemTime::from)
}

/// What a clients-backend key names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Root,
    Client(u64),
    Shared(u64, u64),
    Own(u64, u64),
    File(u64, u64),
}

fn parse(key: &str) -> FsResult<Node> {
    if key == CLIENTS {
        return Ok(Node::Root);
    }
    let bad = || FsError::Io(format!("unknown key {key:?}"));
    let parts: Vec<&str> = key.split(':').collect();
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    match parts.as_slice() {
        ["c", c] => Ok(Node::Client(num(c)?)),
        ["c", c, "s", id] => Ok(Node::Shared(num(c)?, num(id)?)),
        ["c", c, "o", id] => Ok(Node::Own(num(c)?, num(id)?)),
        ["c", c, "f", id] => Ok(Node::File(num(c)?, num(id)?)),
        _ => Err(bad()),
    }
}

/// (client, folder id or `None` for the client's root) of a directory key.
fn place(dir: &Key) -> FsResult<(u64, Option<u64>)> {
    match parse(dir)? {
        Node::Client(c) => Ok((c, None)),
        Node::Shared(c, id) | Node::Own(c, id) => Ok((c, Some(id))),
        Node::Root => Err(FsError::NotPermitted),
        Node::File(..) => Err(FsError::NotDir),
    }
}

pub struct ClientsBackend {
    client: BackofficeClient,
    listed: Vec<u64>,
    /// Size and time per (file id, stored path): content never changes for
    /// one id, so a `HEAD` answer is good for good.
    content: Mutex<lru::LruCache<(u64, String), ContentInfo>>,
    /// Last record seen per file id (caption, stored path).
    files: Mutex<lru::LruCache<u64, ClientFile>>,
}

impl ClientsBackend {
    fn file_entry(&self, client: u64, f: &ClientFile) -> Entry {
        self.files.lock().put(f.id, f.clone());
        let stored = f.file.clone().unwrap_or_default();
        let info = self.content.lock().get(&(f.id, stored.clone())).copied();
        Entry {
            key: format!("c:{client}:f:{}", f.id),
            name: display_name(f.name.as_deref().unwrap_or(""), &stored),
            kind: Kind::File,
            id: f.id.to_string(),
            size: info.and_then(|i| i.size),
            mtime: info
                .and_then(|i| i.modified)
                .or_else(|| stored_time(&stored)),
            ctime: stored_time(&stored),
            writable: true,
            // The stored path: the content of one stored file never changes.
            version: Some(stored),
        }
    }

    fn folder_entry(client: u64, f: &Folder, shared: bool) -> Entry {
        let mut e = Entry::dir(
            format!("c:{client}:{}:{}", if shared { "s" } else { "o" }, f.id),
            f.name.clone().unwrap_or_else(|| format!("folder-{}", f.id)),
            f.id.to_string(),
        );
        e.mtime = parse_time(&f.updated_at).or_else(|| parse_time(&f.created_at));
        e
    }

    /// Learns sizes and times by `HEAD`, several at once, once per file.
    async fn learn_content(&self, client: u64, files: &[ClientFile]) {
        let missing: Vec<ClientFile> = {
            let known = self.content.lock();
            files
                .iter()
                .filter(|f| !known.contains(&(f.id, f.file.clone().unwrap_or_default())))
                .cloned()
                .collect()
        };
        let results: Vec<(ClientFile, Result<ContentInfo, crate::remote::RemoteError>)> =
            futures::stream::iter(missing.into_iter().map(|f| async move {
                let r = self.client.head_content(client, &f).await;
                (f, r)
            }))
            .buffer_unordered(HEAD_CONCURRENCY)
            .collect()
            .await;
        let mut known = self.content.lock();
        for (f, r) in results {
            match r {
                Ok(info) => {
                    known.put((f.id, f.file.clone().unwrap_or_default()), info);
                }
                Err(e) => tracing::warn!(file = f.id, error = %e, "no size for client file"),
            }
        }
    }

    async fn record(&self, client: u64, id: u64) -> FsResult<ClientFile> {
        if let Some(f) = self.files.lock().get(&id).cloned() {
            return Ok(f);
        }
        let all = self.client.list_files(client, None).await?;
        all.into_iter()
            .find(|f| f.id == id)
            .ok_or(FsError::NotFound)
    }
}

#[async_trait::async_trait]
impl Backend for ClientsBackend {
    fn root(&self) -> Key {
        CLIENTS.into()
    }

    fn root_from_config(&self) -> bool {
        true
    }

    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>> {
        if parse(dir)? == Node::Root {
            return Ok(self
                .listed
                .iter()
                .map(|c| Entry::dir(format!("c:{c}"), c.to_string(), c.to_string()))
                .collect());
        }
        let (client, folder) = place(dir)?;
        let in_shared = !matches!(parse(dir)?, Node::Own(..));
        let (shared, own, files) = futures::try_join!(
            async {
                if in_shared {
                    self.client.list_shared().await
                } else {
                    Ok(Vec::new())
                }
            },
            self.client.list_client_folders(client),
            async {
                match folder {
                    Some(id) => self.client.list_files(client, Some(id)).await,
                    // No filter means every file: keep those at the root.
                    None => Ok(self
                        .client
                        .list_files(client, None)
                        .await?
                        .into_iter()
                        .filter(|f| f.directory_id.is_none())
                        .collect()),
                }
            },
        )?;
        self.learn_content(client, &files).await;
        let mut out: Vec<Entry> = shared
            .iter()
            .filter(|f| f.directory_id == folder)
            .map(|f| Self::folder_entry(client, f, true))
            .collect();
        out.extend(
            own.iter()
                .filter(|f| f.directory_id == folder)
                .map(|f| Self::folder_entry(client, f, false)),
        );
        out.extend(
            files
                .iter()
                .filter(|f| f.directory_id == folder)
                .map(|f| self.file_entry(client, f)),
        );
        Ok(out)
    }

    async fn lookup_hidden(&self, dir: &Key, name: &str) -> FsResult<Option<Entry>> {
        if dir != CLIENTS || name.is_empty() || !name.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let Ok(id) = name.parse::<u64>() else {
            return Ok(None);
        };
        if self.client.client_exists(id).await? {
            Ok(Some(Entry::dir(format!("c:{id}"), name, name)))
        } else {
            Ok(None)
        }
    }

    async fn stat(&self, entry: &Entry) -> FsResult<Entry> {
        match parse(&entry.key)? {
            Node::File(client, id) => {
                let f = self.record(client, id).await?;
                let key = (f.id, f.file.clone().unwrap_or_default());
                if !self.content.lock().contains(&key) {
                    match self.client.head_content(client, &f).await {
                        Ok(info) => {
                            self.content.lock().put(key, info);
                        }
                        Err(e) => {
                            if e.is_not_found() {
                                self.files.lock().pop(&id);
                            }
                            return Err(e.into());
                        }
                    }
                }
                Ok(self.file_entry(client, &f))
            }
            _ => Ok(entry.clone()),
        }
    }

    async fn read(&self, entry: &Entry, offset: u64, len: u64) -> FsResult<Bytes> {
        let Node::File(client, id) = parse(&entry.key)? else {
            return Err(FsError::IsDir);
        };
        let f = self.record(client, id).await?;
        Ok(self.client.read_content(client, &f, offset, len).await?)
    }

    fn check_create(&self, dir: &Key) -> FsResult<()> {
        place(dir).map(|_| ())
    }

    /// A new file is one upload. Overwriting uploads the new content, then
    /// deletes the old file, keeping its caption, folder and original file
    /// name (so the stored extension too). The old file goes only after the
    /// new one is stored: a failed delete leaves a visible duplicate, never
    /// a loss. An old file already gone remotely makes this a new upload.
    async fn upload(
        &self,
        dir: &Key,
        name: &str,
        existing: Option<&Entry>,
        content: &Content,
    ) -> FsResult<Entry> {
        let (client, folder) = place(dir)?;
        let old = match existing.map(|e| parse(&e.key)) {
            Some(Ok(Node::File(_, id))) => match self.record(client, id).await {
                Ok(f) => Some(f),
                Err(FsError::NotFound) => None,
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let (caption, filename) = match &old {
            Some(o) => {
                let stored = o.file.clone().unwrap_or_default();
                let original = stored
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .split_once('_')
                    .map(|(_, n)| n.to_string());
                (
                    o.name.clone().unwrap_or_else(|| name.to_string()),
                    original.unwrap_or_else(|| name.to_string()),
                )
            }
            None => (name.to_string(), name.to_string()),
        };
        let f = self
            .client
            .upload_file(client, &super::body(content), &filename, &caption, folder)
            .await?;
        if let Some(o) = old {
            if let Err(e) = self.client.delete_file(client, o.id).await {
                tracing::warn!(file = o.id, error = %e, "old client file not deleted after upload");
            }
            self.files.lock().pop(&o.id);
        }
        // The size is the spool's: no HEAD needed for our own upload.
        let size = content.size();
        let modified = Some(SystemTime::now());
        self.content.lock().put(
            (f.id, f.file.clone().unwrap_or_default()),
            ContentInfo { size, modified },
        );
        Ok(self.file_entry(client, &f))
    }

    async fn mkdir(&self, dir: &Key, name: &str) -> FsResult<Entry> {
        let (client, folder) = place(dir)?;
        let f = self
            .client
            .create_client_folder(client, name, folder)
            .await?;
        Ok(Self::folder_entry(client, &f, false))
    }

    /// Files: one update of caption and folder. Own folders: caption only,
    /// in place; another parent is EXDEV. Shared folders belong to every
    /// client: EPERM here (rename them under `folder-templates/`).
    ///
    /// A replaced target is deleted only after the source has moved: if the
    /// move fails nothing changed, and if the delete then fails both files
    /// exist (the error is reported) — the source's data is never at risk.
    /// A target that was never uploaded (a local key) has nothing remote.
    /// One file-list call of one entry (limit 1): the client exists and
    /// the token is accepted.
    async fn reach(&self, dir: &Key) -> FsResult<()> {
        match parse(dir)? {
            Node::Client(c) => match self.client.client_exists(c).await? {
                true => Ok(()),
                false => Err(FsError::NotFound),
            },
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
        let (to_client, to_folder) = place(to_dir).map_err(|_| FsError::NotPermitted)?;
        let source = parse(&entry.key)?;
        let target = match replace.filter(|t| !t.key.starts_with(LOCAL_KEY_PREFIX)) {
            None => None,
            Some(t) => match parse(&t.key)? {
                n if n == source => None,
                n @ (Node::File(..) | Node::Own(..)) => Some(n),
                Node::Shared(..) | Node::Client(_) | Node::Root => {
                    return Err(FsError::NotPermitted)
                }
            },
        };
        let result = match source {
            Node::File(client, id) => {
                if client != to_client {
                    return Err(FsError::CrossDevice);
                }
                let old = self.record(client, id).await?;
                let stored = old.file.clone().unwrap_or_default();
                let caption = caption_for(new_name, old.name.as_deref().unwrap_or(""), &stored);
                let moved = place(from_dir)?.1 != to_folder;
                let f = self
                    .client
                    .update_file(
                        client,
                        id,
                        Some(&caption),
                        if moved { Some(to_folder) } else { None },
                    )
                    .await?;
                self.file_entry(client, &f)
            }
            Node::Own(client, id) => {
                if from_dir != to_dir || client != to_client {
                    return Err(FsError::CrossDevice);
                }
                let f = self
                    .client
                    .rename_client_folder(client, id, new_name)
                    .await?;
                Self::folder_entry(client, &f, false)
            }
            Node::Shared(..) | Node::Client(_) | Node::Root => return Err(FsError::NotPermitted),
        };
        match target {
            Some(Node::File(c, id)) => {
                self.files.lock().pop(&id);
                self.client.delete_file(c, id).await?
            }
            Some(Node::Own(c, id)) => self.client.delete_client_folder(c, id).await?,
            _ => {}
        }
        Ok(result)
    }

    async fn remove(&self, _dir: &Key, entry: &Entry) -> FsResult<()> {
        match parse(&entry.key)? {
            Node::File(c, id) => {
                self.files.lock().pop(&id);
                Ok(self.client.delete_file(c, id).await?)
            }
            Node::Own(c, id) => Ok(self.client.delete_client_folder(c, id).await?),
            // Shared folders belong to every client: not removable here.
            Node::Shared(..) | Node::Client(_) | Node::Root => Err(FsError::NotPermitted),
        }
    }

    fn forget_memos(&self) {
        self.files.lock().clear();
        self.content.lock().clear();
    }

    async fn xattr_list(&self, entry: &Entry) -> FsResult<Vec<String>> {
        Ok(match parse(&entry.key)? {
            Node::File(..) => vec![
                format!("{XATTR_PREFIX}id"),
                format!("{XATTR_PREFIX}path"),
                format!("{XATTR_PREFIX}url"),
            ],
            Node::Shared(..) | Node::Own(..) | Node::Client(_) => vec![format!("{XATTR_PREFIX}id")],
            Node::Root => Vec::new(),
        })
    }

    async fn xattr_get(&self, entry: &Entry, name: &str) -> FsResult<Vec<u8>> {
        let attr = name.strip_prefix(XATTR_PREFIX).ok_or(FsError::NoData)?;
        match (parse(&entry.key)?, attr) {
            (Node::File(_, id), "id")
            | (Node::Shared(_, id), "id")
            | (Node::Own(_, id), "id")
            | (Node::Client(id), "id") => Ok(id.to_string().into_bytes()),
            (Node::File(c, id), "path") => Ok(self
                .record(c, id)
                .await?
                .file
                .unwrap_or_default()
                .into_bytes()),
            (Node::File(c, id), "url") => Ok(self
                .client
                .content_url(c, &self.record(c, id).await?)
                .into_bytes()),
            _ => Err(FsError::NoData),
        }
    }

    /// Client items have no settable attribute: id, path and url are the
    /// server's.
    async fn xattr_set(&self, _entry: &Entry, _name: &str, _value: Option<&[u8]>) -> FsResult<()> {
        Err(FsError::NotSupported)
    }
}

/// `folder-templates/`: the shared tree, directories only.
pub struct TemplatesBackend {
    client: BackofficeClient,
}

fn template_id(key: &str) -> FsResult<Option<u64>> {
    if key == TEMPLATES {
        return Ok(None);
    }
    key.strip_prefix("t:")
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| FsError::Io(format!("unknown key {key:?}")))
}

impl TemplatesBackend {
    fn entry(f: &Folder) -> Entry {
        let mut e = Entry::dir(
            format!("t:{}", f.id),
            f.name.clone().unwrap_or_else(|| format!("folder-{}", f.id)),
            f.id.to_string(),
        );
        e.mtime = parse_time(&f.updated_at)
            .or_else(|| parse_time(&f.created_at))
            .or_else(|| Some(fallback_time()));
        e.ctime = parse_time(&f.created_at);
        e
    }

    /// `user.bridgefs.groups`: one `id<TAB>caption<TAB>enabled` line per
    /// group, enabled as 1 or 0.
    async fn groups_text(&self, id: u64) -> FsResult<Vec<u8>> {
        let groups = self.client.groups(id).await?;
        let mut s = String::new();
        for g in groups {
            s.push_str(&format!(
                "{}\t{}\t{}\n",
                g.id,
                g.caption.unwrap_or_default(),
                u8::from(g.enabled.unwrap_or(false))
            ));
        }
        Ok(s.into_bytes())
    }

    async fn group_state(&self, folder: u64, group: u64) -> FsResult<bool> {
        let groups = self.client.groups(folder).await?;
        groups
            .iter()
            .find(|g| g.id == group)
            .map(|g| g.enabled.unwrap_or(false))
            .ok_or(FsError::NoData)
    }
}

#[async_trait::async_trait]
impl Backend for TemplatesBackend {
    fn root(&self) -> Key {
        TEMPLATES.into()
    }

    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>> {
        let parent = template_id(dir)?;
        let all = self.client.list_shared().await?;
        Ok(all
            .iter()
            .filter(|f| f.directory_id == parent)
            .map(Self::entry)
            .collect())
    }

    async fn lookup_hidden(&self, _dir: &Key, _name: &str) -> FsResult<Option<Entry>> {
        Ok(None)
    }

    async fn stat(&self, entry: &Entry) -> FsResult<Entry> {
        Ok(entry.clone())
    }

    async fn read(&self, _entry: &Entry, _offset: u64, _len: u64) -> FsResult<Bytes> {
        Err(FsError::IsDir)
    }

    fn check_create(&self, _dir: &Key) -> FsResult<()> {
        // Templates hold folders only.
        Err(FsError::NotPermitted)
    }

    async fn upload(
        &self,
        _dir: &Key,
        _name: &str,
        _existing: Option<&Entry>,
        _content: &Content,
    ) -> FsResult<Entry> {
        Err(FsError::NotPermitted)
    }

    /// A top-level folder comes back with its id; a subfolder does not, so
    /// the tree is re-listed to find it (the newest of that name).
    async fn mkdir(&self, dir: &Key, name: &str) -> FsResult<Entry> {
        match template_id(dir)? {
            None => Ok(Self::entry(&self.client.add_shared(name).await?)),
            Some(parent) => {
                self.client.add_subdirectory(parent, name).await?;
                let all = self.client.list_shared().await?;
                all.iter()
                    .filter(|f| f.directory_id == Some(parent) && f.name.as_deref() == Some(name))
                    .max_by_key(|f| f.id)
                    .map(Self::entry)
                    .ok_or_else(|| {
                        FsError::Io(format!("subfolder {name:?} not found after creating it"))
                    })
            }
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
        if from_dir != to_dir {
            return Err(FsError::CrossDevice);
        }
        if replace.is_some() {
            // Replacing would need deleting a shared folder: no such endpoint.
            return Err(FsError::NotPermitted);
        }
        let id = template_id(&entry.key)?.ok_or(FsError::NotPermitted)?;
        self.client.rename_shared(id, new_name).await?;
        Ok(Entry {
            name: new_name.to_string(),
            ..entry.clone()
        })
    }

    async fn remove(&self, _dir: &Key, _entry: &Entry) -> FsResult<()> {
        // No endpoint deletes a shared folder.
        Err(FsError::NotPermitted)
    }

    async fn xattr_list(&self, entry: &Entry) -> FsResult<Vec<String>> {
        if template_id(&entry.key)?.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![
            format!("{XATTR_PREFIX}id"),
            format!("{XATTR_PREFIX}groups"),
        ])
    }

    async fn xattr_get(&self, entry: &Entry, name: &str) -> FsResult<Vec<u8>> {
        let id = template_id(&entry.key)?.ok_or(FsError::NoData)?;
        match name.strip_prefix(XATTR_PREFIX) {
            Some("id") => Ok(id.to_string().into_bytes()),
            Some("groups") => self.groups_text(id).await,
            Some(g) => {
                let group: u64 = g
                    .strip_prefix("group.")
                    .and_then(|s| s.parse().ok())
                    .ok_or(FsError::NoData)?;
                Ok(if self.group_state(id, group).await? {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                })
            }
            None => Err(FsError::NoData),
        }
    }

    /// `user.bridgefs.group.<id>` = `1`/`true` grants, `0`/`false` (or
    /// removing the attribute) revokes: read the state, toggle only when it
    /// differs, read again to confirm. The toggle is never repeated blindly.
    async fn xattr_set(&self, entry: &Entry, name: &str, value: Option<&[u8]>) -> FsResult<()> {
        let id = template_id(&entry.key)?.ok_or(FsError::NotPermitted)?;
        let attr = name
            .strip_prefix(XATTR_PREFIX)
            .ok_or(FsError::NotSupported)?;
        let Some(group) = attr.strip_prefix("group.") else {
            return Err(if attr == "id" || attr == "groups" {
                FsError::NotPermitted
            } else {
                FsError::NotSupported
            });
        };
        let group: u64 = group
            .parse()
            .map_err(|_| FsError::Invalid(format!("bad group id in {name}")))?;
        let want = match value.map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()) {
            Some(v) if v == "1" || v == "true" => true,
            Some(v) if v == "0" || v == "false" => false,
            None => false,
            Some(v) => return Err(FsError::Invalid(format!("{name} takes 1 or 0, not {v:?}"))),
        };
        if self.group_state(id, group).await? == want {
            return Ok(());
        }
        // A toggle that failed may still have happened (a lost answer): the
        // state read afterwards decides, never a second toggle.
        let toggled = self.client.toggle_group(id, group).await;
        if self.group_state(id, group).await? == want {
            return Ok(());
        }
        toggled?;
        Err(FsError::Io(format!(
            "group {group} on folder {id} is still {} after the toggle",
            !want
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_rule_round_trips() {
        assert_eq!(
            display_name("Service agreement", "y/1662913861_file.pdf"),
            "Service agreement.pdf"
        );
        assert_eq!(
            display_name("Contract.pdf", "y/1_contract.pdf"),
            "Contract.pdf"
        );
        assert_eq!(display_name("notes", "y/1_notes"), "notes");
        assert_eq!(
            caption_for("New name.pdf", "Service agreement", "y/1_file.pdf"),
            "New name"
        );
        assert_eq!(
            caption_for("New name.pdf", "Contract.pdf", "y/1_contract.pdf"),
            "New name.pdf"
        );
        assert_eq!(
            stored_time("y/1662913861_file.pdf"),
            Some(UNIX_EPOCH + Duration::from_secs(1_662_913_861))
        );
    }
}
