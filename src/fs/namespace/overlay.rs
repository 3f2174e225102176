//! Times, modes and owners the remote APIs cannot hold (`utimens`, `chmod`,
//! `chown`), kept on this machine in `state_dir/attrs/`, one small file per
//! remote item. Each is stamped with the item's version (its revision, or
//! size and modification time): when the remote item changes under another
//! client, or disappears, the entry is dropped and the remote's own values
//! show again. So `rsync -a` finds its times again on the next run, `cp -p`
//! and `tar x` keep them, and with `allow_other` the kernel enforces modes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::{Digest, Md5};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::attr_files::AttrFiles;
use crate::fs::backend::{Entry, Key, Kind};

/// What the user set; `None` shows the remote's (or the default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atime: Option<SystemTime>,
    /// Bumped locally by every change of content or attributes (POSIX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime: Option<SystemTime>,
}

impl Attrs {
    /// True when nothing was set (nothing to keep on disk).
    pub fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.mtime.is_none()
            && self.atime.is_none()
    }
}

/// The version an overlay entry belongs to: a directory's attributes stay
/// while it exists; a file's while its content is the same.
pub fn stamp(entry: &Entry) -> String {
    match (entry.kind, &entry.version) {
        (Kind::Dir, _) => "dir".into(),
        (Kind::File, Some(v)) => format!("v:{v}"),
        (Kind::File, None) => {
            let ms = entry
                .mtime
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis());
            format!("s:{:?}/{:?}", entry.size, ms)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    backend: String,
    key: Key,
    stamp: String,
    attrs: Attrs,
}

/// What the overlay keeps for one remote item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kept {
    /// Set for this version of the item.
    Current(Attrs),
    /// Set for another version: the remote item changed; drop the entry.
    Stale,
}

/// The persistent overlay. Lookups are in memory and allocate nothing (a
/// listing asks for each of its entries); its files are written in order
/// on a thread of their own ([`AttrFiles`]), so no request waits for the
/// disk.
#[derive(Debug)]
pub struct Overlay {
    dir: PathBuf,
    /// backend name → remote key → entry.
    entries: Mutex<HashMap<String, HashMap<Key, Stored>>>,
    files: AttrFiles,
}

impl Overlay {
    /// Opens `state_dir/attrs`, reading every entry.
    pub fn open(state_dir: &Path) -> std::io::Result<Overlay> {
        let dir = state_dir.join("attrs");
        std::fs::create_dir_all(&dir)?;
        let mut entries: HashMap<String, HashMap<Key, Stored>> = HashMap::new();
        for e in std::fs::read_dir(&dir)?.flatten() {
            let Ok(text) = std::fs::read(e.path()) else {
                continue;
            };
            match serde_json::from_slice::<Stored>(&text) {
                Ok(s) => {
                    let backend = entries.entry(s.backend.clone()).or_default();
                    backend.insert(s.key.clone(), s);
                }
                Err(_) => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(Overlay {
            dir,
            entries: Mutex::new(entries),
            files: AttrFiles::start()?,
        })
    }

    /// What is kept for an item, if anything.
    pub fn get(&self, backend: &str, entry: &Entry) -> Option<Kept> {
        let entries = self.entries.lock();
        let s = entries.get(backend)?.get(&entry.key)?;
        Some(match s.stamp == stamp(entry) {
            true => Kept::Current(s.attrs),
            false => Kept::Stale,
        })
    }

    /// Keeps `attrs` for this version of an item (an empty set removes it).
    pub fn put(&self, backend: &str, entry: &Entry, attrs: Attrs) {
        if attrs.is_empty() {
            return self.remove(backend, &entry.key);
        }
        let stored = Stored {
            backend: backend.to_string(),
            key: entry.key.clone(),
            stamp: stamp(entry),
            attrs,
        };
        let path = self.path(backend, &entry.key);
        let bytes = serde_json::to_vec(&stored).expect("attributes serialize");
        let mut entries = self.entries.lock();
        let kept = entries.entry(backend.to_string()).or_default();
        kept.insert(entry.key.clone(), stored);
        // Queued under the lock: the files change in the memory's order.
        self.files.write(path, bytes);
    }

    /// Forgets an item's attributes (it changed remotely or went).
    pub fn remove(&self, backend: &str, key: &Key) {
        let mut entries = self.entries.lock();
        if entries
            .get_mut(backend)
            .and_then(|kept| kept.remove(key))
            .is_some()
        {
            self.files.remove(self.path(backend, key));
        }
    }

    /// Waits until the files hold what memory does (shutdown).
    pub fn flush(&self) {
        self.files.flush();
    }

    pub fn len(&self) -> usize {
        self.entries.lock().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn path(&self, backend: &str, key: &str) -> PathBuf {
        let mut h = Md5::new();
        h.update(backend.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        self.dir.join(format!("{}.json", hex::encode(h.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: Option<&str>, size: u64) -> Entry {
        Entry {
            key: "f:1".into(),
            name: "a".into(),
            kind: Kind::File,
            id: "1".into(),
            size: Some(size),
            mtime: Some(SystemTime::UNIX_EPOCH),
            ctime: None,
            writable: true,
            version: version.map(str::to_string),
        }
    }

    #[test]
    fn an_entry_survives_reopening_and_is_void_for_another_version() {
        let dir = tempfile::tempdir().unwrap();
        let attrs = Attrs {
            mode: Some(0o600),
            mtime: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7)),
            ..Attrs::default()
        };
        Overlay::open(dir.path())
            .unwrap()
            .put("apps", &file(Some("3"), 5), attrs);
        let o = Overlay::open(dir.path()).unwrap();
        assert_eq!(
            o.get("apps", &file(Some("3"), 5)),
            Some(Kept::Current(attrs))
        );
        assert_eq!(o.get("apps", &file(Some("4"), 5)), Some(Kept::Stale));
        assert_eq!(o.get("library", &file(Some("3"), 5)), None);
        o.remove("apps", &"f:1".to_string());
        o.flush();
        assert!(Overlay::open(dir.path()).unwrap().is_empty());
    }
}
