//! The file-library namespace: `library/` with its folders and files, and
//! `library/.trash` (items marked deleted, read-only).
//!
//! Keys: `lib` (root), `d:<uuid>` (folder), `f:<uuid>` (file), `trash`,
//! `x:<uuid>` (a deleted file), `xd:<uuid>` (a deleted folder, shown empty).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::LibraryConfig;
use crate::fs::backend::{Backend, Content, Entry, Key, Kind, XATTR_PREFIX};
use crate::fs::error::{FsError, FsResult};
use crate::remote::http::HttpClient;
use crate::remote::library::{Item, LibraryClient, LibrarySettings};

const ROOT: &str = "lib";
const TRASH: &str = "trash";

pub fn backend(
    cfg: &LibraryConfig,
    http: HttpClient,
    memo_entries: usize,
) -> Result<Arc<dyn Backend>, String> {
    let client = LibraryClient::new(
        http,
        LibrarySettings {
            base_url: &cfg.base_url,
            upload_base: cfg.upload_base.as_deref(),
            api_key: &cfg.api_key,
            private_key_file: &cfg.private_key_file,
            business_id: cfg.business_id,
            user_name: &cfg.user_name,
            private_content_url: &cfg.private_content_url,
        },
    )?;
    Ok(Arc::new(LibraryBackend {
        client,
        items: super::memo(memo_entries),
    }))
}

pub struct LibraryBackend {
    client: LibraryClient,
    /// Last object seen per uuid: updates send it back whole, downloads
    /// need its url.
    items: Mutex<lru::LruCache<String, Item>>,
}

fn time(ms: Option<i64>) -> Option<SystemTime> {
    ms.filter(|m| *m > 0)
        .map(|m| UNIX_EPOCH + Duration::from_millis(m as u64))
}

impl LibraryBackend {
    fn entry(&self, item: &Item) -> Entry {
        self.items.lock().put(item.uuid.clone(), item.clone());
        let (prefix, kind) = match (item.deleted, item.folder) {
            (false, true) => ("d", Kind::Dir),
            (false, false) => ("f", Kind::File),
            (true, true) => ("xd", Kind::Dir),
            (true, false) => ("x", Kind::File),
        };
        Entry {
            key: format!("{prefix}:{}", item.uuid),
            name: item.name.clone(),
            kind,
            id: item.uuid.clone(),
            size: if item.folder {
                None
            } else {
                Some(item.size.unwrap_or(0))
            },
            mtime: time(item.modified_ms).or_else(|| time(item.created_ms)),
            ctime: time(item.created_ms),
            writable: !item.deleted,
            version: item
                .modified_ms
                .map(|m| format!("{m}:{}", item.size.unwrap_or(0))),
        }
    }

    fn uuid(key: &str) -> Option<&str> {
        key.split_once(':').map(|(_, u)| u)
    }

    /// The folder uuid a directory key stands for (`None`: the top level).
    fn folder_of(dir: &Key) -> FsResult<Option<&str>> {
        match dir.split_once(':') {
            None if dir == ROOT => Ok(None),
            Some(("d", u)) => Ok(Some(u)),
            _ => Err(FsError::ReadOnly),
        }
    }

    async fn item(&self, uuid: &str) -> FsResult<Item> {
        if let Some(i) = self.items.lock().get(uuid).cloned() {
            return Ok(i);
        }
        let all = self.client.list(None).await?;
        for i in &all {
            self.items.lock().put(i.uuid.clone(), i.clone());
        }
        all.into_iter()
            .find(|i| i.uuid == uuid)
            .ok_or(FsError::NotFound)
    }
}

/// The hidden name a replaced item holds between the two steps of a rename
/// onto it; unique per item, so a leftover never collides.
fn aside_name(uuid: &str) -> String {
    format!(".bridgefs-replaced-{uuid}")
}

impl LibraryBackend {
    /// Renames a rename's target to its hidden name, freeing its own.
    async fn move_aside(&self, target: &Item) -> FsResult<Item> {
        let parent = target.parent.as_deref();
        let aside = self
            .client
            .update(target, &aside_name(&target.uuid), parent)
            .await?;
        self.items.lock().put(aside.uuid.clone(), aside.clone());
        Ok(aside)
    }

    /// The rename succeeded: the replaced item goes. A failure leaves it
    /// under its hidden name (logged), never the other way round.
    async fn delete_aside(&self, aside: &Item) {
        if let Err(e) = self.client.delete(&aside.uuid).await {
            tracing::warn!(kept_as = ?aside.name, error = %e, "replaced library item not deleted");
        }
        self.items.lock().pop(&aside.uuid);
    }

    /// The rename failed: the replaced item gets its name back.
    async fn put_back(&self, aside: &Item, name: &str) {
        match self
            .client
            .update(aside, name, aside.parent.as_deref())
            .await
        {
            Ok(back) => {
                self.items.lock().put(back.uuid.clone(), back);
            }
            Err(e) => {
                tracing::error!(kept_as = ?aside.name, name = ?name, error = %e, "rename failed and the replaced library item could not get its name back")
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for LibraryBackend {
    fn root(&self) -> Key {
        ROOT.into()
    }

    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>> {
        let items = match dir.split_once(':') {
            // The top level has no filter: every item, keep the parentless.
            None if dir == ROOT => self
                .client
                .list(None)
                .await?
                .into_iter()
                .filter(|i| i.parent.is_none() && !i.deleted)
                .collect(),
            None if dir == TRASH => self
                .client
                .list(None)
                .await?
                .into_iter()
                .filter(|i| i.deleted)
                .collect(),
            Some(("d", uuid)) => self
                .client
                .list(Some(uuid))
                .await?
                .into_iter()
                .filter(|i| !i.deleted)
                .collect(),
            Some(("xd", _)) => Vec::new(),
            _ => return Err(FsError::NotDir),
        };
        Ok(items.iter().map(|i| self.entry(i)).collect::<Vec<Entry>>())
    }

    async fn lookup_hidden(&self, dir: &Key, name: &str) -> FsResult<Option<Entry>> {
        if dir == ROOT && name == ".trash" {
            let mut e = Entry::dir(TRASH, ".trash", ".trash");
            e.writable = false;
            return Ok(Some(e));
        }
        Ok(None)
    }

    async fn stat(&self, entry: &Entry) -> FsResult<Entry> {
        let uuid = Self::uuid(&entry.key).ok_or(FsError::NotFound)?;
        self.items.lock().pop(uuid);
        Ok(self.entry(&self.item(uuid).await?))
    }

    async fn read(&self, entry: &Entry, offset: u64, len: u64) -> FsResult<Bytes> {
        let uuid = Self::uuid(&entry.key).ok_or(FsError::IsDir)?;
        let item = self.item(uuid).await?;
        Ok(self.client.download(&item, offset, len).await?)
    }

    fn check_create(&self, dir: &Key) -> FsResult<()> {
        Self::folder_of(dir).map(|_| ())
    }

    /// New content goes up as a new item, then the old one is deleted: the
    /// library has no in-place update of bytes. Visibility is kept.
    async fn upload(
        &self,
        dir: &Key,
        name: &str,
        existing: Option<&Entry>,
        content: &Content,
    ) -> FsResult<Entry> {
        let parent = Self::folder_of(dir)?;
        let old = match existing.and_then(|e| Self::uuid(&e.key)) {
            Some(u) => Some(self.item(u).await?),
            None => None,
        };
        let name = old
            .as_ref()
            .map(|o| o.name.clone())
            .unwrap_or_else(|| name.to_string());
        let public = old.as_ref().is_some_and(|o| o.public);
        let item = self
            .client
            .upload(&super::body(content), &name, parent, public)
            .await?;
        if let Some(o) = old {
            if let Err(e) = self.client.delete(&o.uuid).await {
                // The new bytes are safe; the old copy stays as a duplicate.
                tracing::warn!(name = ?o.name, error = %e, "old library item not deleted after upload");
            }
            self.items.lock().pop(&o.uuid);
        }
        Ok(self.entry(&item))
    }

    async fn mkdir(&self, dir: &Key, name: &str) -> FsResult<Entry> {
        let parent = Self::folder_of(dir)?;
        let item = self.client.create_folder(name, parent).await?;
        Ok(self.entry(&item))
    }

    /// The API refuses two live items of one name, so a replaced target is
    /// first renamed aside (a hidden name in its folder), then the source
    /// takes the name, and only then is the target deleted. If the rename
    /// fails the target gets its name back: no sequence of failures leaves
    /// neither the old nor the new bytes on the remote.
    async fn rename(
        &self,
        entry: &Entry,
        _from_dir: &Key,
        to_dir: &Key,
        new_name: &str,
        replace: Option<&Entry>,
    ) -> FsResult<Entry> {
        let parent = Self::folder_of(to_dir).map_err(|_| FsError::NotPermitted)?;
        let uuid = match entry.key.split_once(':') {
            Some(("d" | "f", u)) => u,
            _ => return Err(FsError::NotPermitted),
        };
        if parent == Some(uuid) {
            return Err(FsError::Invalid("a folder cannot move into itself".into()));
        }
        let item = self.item(uuid).await?;
        let target = match replace.and_then(|r| Self::uuid(&r.key)) {
            Some(t) if t != uuid => Some(self.item(t).await?),
            _ => None,
        };
        let Some(target) = target else {
            let updated = self.client.update(&item, new_name, parent).await?;
            return Ok(self.entry(&updated));
        };
        let aside = self.move_aside(&target).await?;
        match self.client.update(&item, new_name, parent).await {
            Ok(updated) => {
                self.delete_aside(&aside).await;
                Ok(self.entry(&updated))
            }
            Err(e) => {
                self.put_back(&aside, &target.name).await;
                Err(e.into())
            }
        }
    }

    async fn remove(&self, _dir: &Key, entry: &Entry) -> FsResult<()> {
        match entry.key.split_once(':') {
            Some(("d" | "f", u)) => {
                self.client.delete(u).await?;
                self.items.lock().pop(u);
                Ok(())
            }
            _ => Err(FsError::NotPermitted),
        }
    }

    fn forget_memos(&self) {
        self.items.lock().clear();
    }

    async fn xattr_list(&self, entry: &Entry) -> FsResult<Vec<String>> {
        let Some(uuid) = Self::uuid(&entry.key) else {
            return Ok(Vec::new());
        };
        let item = self.item(uuid).await?;
        let mut names = vec![format!("{XATTR_PREFIX}id")];
        if !item.folder {
            names.push(format!("{XATTR_PREFIX}public"));
            if item.public && item.url.is_some() {
                names.push(format!("{XATTR_PREFIX}url"));
            }
        }
        Ok(names)
    }

    async fn xattr_get(&self, entry: &Entry, name: &str) -> FsResult<Vec<u8>> {
        let uuid = Self::uuid(&entry.key).ok_or(FsError::NoData)?;
        let item = self.item(uuid).await?;
        match name.strip_prefix(XATTR_PREFIX) {
            Some("id") => Ok(item.uuid.into_bytes()),
            Some("public") if !item.folder => Ok(if item.public {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            }),
            Some("url") if item.public => item.url.map(String::into_bytes).ok_or(FsError::NoData),
            _ => Err(FsError::NoData),
        }
    }

    async fn xattr_set(&self, _entry: &Entry, name: &str, _value: Option<&[u8]>) -> FsResult<()> {
        // The API has no way to change visibility or ids after upload.
        match name.strip_prefix(XATTR_PREFIX) {
            Some("id" | "public" | "url") => Err(FsError::NotPermitted),
            _ => Err(FsError::NotSupported),
        }
    }
}
