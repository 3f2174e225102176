//! An in-memory backend for driving the filesystem core without FUSE or
//! HTTP: every call is counted, uploads can be made to fail, and the
//! remote's state can be read back to assert on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use bridgefs::fs::backend::{Backend, Content, Entry, Key, Kind};
use bridgefs::fs::{FsError, FsResult};
use bytes::Bytes;
use parking_lot::Mutex;

/// One remote object: its entry, its folder and (files) its bytes.
#[derive(Clone)]
pub struct Object {
    pub entry: Entry,
    pub dir: Key,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
pub struct MemoryBackend {
    objects: Mutex<HashMap<Key, Object>>,
    calls: Mutex<HashMap<&'static str, u32>>,
    next_id: AtomicU64,
    /// The next this many uploads fail with EIO, as a flaky server would.
    pub failing_uploads: AtomicU32,
    /// Uploads are refused for good (EFBIG), as a 413 is: never retried.
    pub refusing_uploads: std::sync::atomic::AtomicBool,
}

pub const ROOT_KEY: &str = "root";

impl MemoryBackend {
    fn count(&self, call: &'static str) {
        *self.calls.lock().entry(call).or_default() += 1;
    }

    /// How many times `call` reached the "remote".
    pub fn calls(&self, call: &str) -> u32 {
        self.calls.lock().get(call).copied().unwrap_or(0)
    }

    fn new_entry(&self, name: &str, kind: Kind, size: u64) -> Entry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now();
        Entry {
            key: format!("k{id}"),
            name: name.to_string(),
            kind,
            id: id.to_string(),
            size: (kind == Kind::File).then_some(size),
            mtime: Some(now),
            ctime: Some(now),
            writable: true,
            version: Some("1".into()),
        }
    }

    /// Puts a file on the "remote" (as another client would).
    pub fn put_file(&self, dir: &str, name: &str, bytes: &[u8]) -> Key {
        let entry = self.new_entry(name, Kind::File, bytes.len() as u64);
        let key = entry.key.clone();
        let object = Object {
            entry,
            dir: dir.to_string(),
            bytes: bytes.to_vec(),
        };
        self.objects.lock().insert(key.clone(), object);
        key
    }

    /// The object named `name` in `dir`, as the remote has it now.
    pub fn find(&self, dir: &str, name: &str) -> Option<Object> {
        self.objects
            .lock()
            .values()
            .find(|o| o.dir == dir && o.entry.name == name)
            .cloned()
    }

    /// Names in `dir`, sorted.
    pub fn names(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .objects
            .lock()
            .values()
            .filter(|o| o.dir == dir)
            .map(|o| o.entry.name.clone())
            .collect();
        names.sort();
        names
    }

    fn object(&self, key: &Key) -> FsResult<Object> {
        self.objects
            .lock()
            .get(key)
            .cloned()
            .ok_or(FsError::NotFound)
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn root(&self) -> Key {
        ROOT_KEY.into()
    }

    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>> {
        self.count("list");
        let objects = self.objects.lock();
        let mut entries: Vec<Entry> = objects
            .values()
            .filter(|o| &o.dir == dir)
            .map(|o| o.entry.clone())
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn lookup_hidden(&self, _dir: &Key, _name: &str) -> FsResult<Option<Entry>> {
        Ok(None)
    }

    async fn stat(&self, entry: &Entry) -> FsResult<Entry> {
        self.count("stat");
        Ok(self.object(&entry.key)?.entry)
    }

    async fn read(&self, entry: &Entry, offset: u64, len: u64) -> FsResult<Bytes> {
        self.count("read");
        let bytes = self.object(&entry.key)?.bytes;
        let start = (offset as usize).min(bytes.len());
        let end = (start + len as usize).min(bytes.len());
        Ok(Bytes::copy_from_slice(&bytes[start..end]))
    }

    async fn upload(
        &self,
        dir: &Key,
        name: &str,
        existing: Option<&Entry>,
        content: &Content,
    ) -> FsResult<Entry> {
        self.count("upload");
        if self.refusing_uploads.load(Ordering::SeqCst) {
            return Err(FsError::TooBig);
        }
        let failing = &self.failing_uploads;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(FsError::Io("injected upload failure".into()));
        }
        let bytes = match content {
            Content::Spooled(spool) => {
                self.count("upload from the spool file");
                std::fs::read(spool).map_err(|e| FsError::Io(e.to_string()))?
            }
            Content::InMemory { bytes, .. } => {
                self.count("upload from memory");
                bytes.to_vec()
            }
        };
        let mut objects = self.objects.lock();
        let replaced = existing.and_then(|e| objects.get(&e.key).cloned());
        let mut entry = self.new_entry(name, Kind::File, bytes.len() as u64);
        if let Some(old) = replaced {
            let version: u64 = old
                .entry
                .version
                .as_deref()
                .unwrap_or("1")
                .parse()
                .unwrap_or(1);
            entry.key = old.entry.key;
            entry.id = old.entry.id;
            entry.version = Some((version + 1).to_string());
        }
        let object = Object {
            entry: entry.clone(),
            dir: dir.clone(),
            bytes,
        };
        objects.insert(entry.key.clone(), object);
        Ok(entry)
    }

    async fn mkdir(&self, dir: &Key, name: &str) -> FsResult<Entry> {
        self.count("mkdir");
        let entry = self.new_entry(name, Kind::Dir, 0);
        let object = Object {
            entry: entry.clone(),
            dir: dir.clone(),
            bytes: Vec::new(),
        };
        self.objects.lock().insert(entry.key.clone(), object);
        Ok(entry)
    }

    async fn rename(
        &self,
        entry: &Entry,
        _from_dir: &Key,
        to_dir: &Key,
        new_name: &str,
        replace: Option<&Entry>,
    ) -> FsResult<Entry> {
        self.count("rename");
        let mut objects = self.objects.lock();
        if let Some(target) = replace {
            objects.remove(&target.key);
        }
        let object = objects.get_mut(&entry.key).ok_or(FsError::NotFound)?;
        object.dir = to_dir.clone();
        object.entry.name = new_name.to_string();
        Ok(object.entry.clone())
    }

    async fn remove(&self, _dir: &Key, entry: &Entry) -> FsResult<()> {
        self.count("remove");
        self.objects
            .lock()
            .remove(&entry.key)
            .map(|_| ())
            .ok_or(FsError::NotFound)
    }

    async fn xattr_list(&self, _entry: &Entry) -> FsResult<Vec<String>> {
        Ok(Vec::new())
    }

    async fn xattr_get(&self, _entry: &Entry, _name: &str) -> FsResult<Vec<u8>> {
        Err(FsError::NoData)
    }

    async fn xattr_set(&self, _e: &Entry, _n: &str, _v: Option<&[u8]>) -> FsResult<()> {
        Err(FsError::NotSupported)
    }
}
