//! The seam between the generic filesystem logic and one remote namespace
//! (like mountpoint-s3's `Metablock`). A backend turns paths-by-key into API
//! calls through its typed client; the core above it owns inodes, names,
//! caches, the spool and the FUSE-facing semantics.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

use super::error::FsResult;

/// Identity of a remote object within one backend, chosen by the backend
/// (e.g. `c1/f/12`, `lib/uuid`, `app/handbook/f/5`). Stable while the object
/// exists, so the core can keep one inode per object across re-listings and
/// renames.
pub type Key = String;

/// The bytes an upload sends.
#[derive(Clone, Debug)]
pub enum Content {
    /// A spooled file, streamed from disk (a large file).
    Spooled(PathBuf),
    /// A small file's bytes, read from `spool` once to journal them and
    /// sent from memory.
    InMemory { spool: PathBuf, bytes: Bytes },
}

impl Content {
    /// The spool file the bytes are (or came from).
    pub fn spool(&self) -> &Path {
        match self {
            Content::Spooled(p) | Content::InMemory { spool: p, .. } => p,
        }
    }

    /// How many bytes go up.
    pub fn size(&self) -> Option<u64> {
        match self {
            Content::Spooled(p) => std::fs::metadata(p).map(|m| m.len()).ok(),
            Content::InMemory { bytes, .. } => Some(bytes.len() as u64),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    File,
}

/// One remote object as a directory listing shows it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Key,
    /// The name to show, before escaping and duplicate suffixes (the backend
    /// applies its own rules, such as the back office's extension rule).
    pub name: String,
    pub kind: Kind,
    /// The remote id: the `~id` duplicate suffix and `user.bridgefs.id`.
    pub id: String,
    /// `None` when the listing has no size: the core then asks [`Backend::stat`].
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    /// False in read-only places (trash, revisions, template folders' files):
    /// shown without write bits, and writes there fail.
    pub writable: bool,
    /// The remote content's version, opaque (a Files revision, a stored
    /// path): a new one means new bytes, so cached blocks and the kernel's
    /// pages of the old one are dropped, and a read of an open file stays
    /// on the version it opened. `None` where the API has none.
    pub version: Option<String>,
}

impl Entry {
    pub fn dir(key: impl Into<Key>, name: impl Into<String>, id: impl Into<String>) -> Entry {
        Entry {
            key: key.into(),
            name: name.into(),
            kind: Kind::Dir,
            id: id.into(),
            size: None,
            mtime: None,
            ctime: None,
            writable: true,
            version: None,
        }
    }
}

/// One remote namespace mounted under its own top-level directory.
///
/// Errors are [`FsError`](super::error::FsError)s: map remote errors with `?`
/// (the contract's table lives in `From<RemoteError>`), and return
/// `NotPermitted`/`ReadOnly`/`CrossDevice` where `TREE.md` says so.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The key of this backend's top-level directory.
    fn root(&self) -> Key;

    /// The remote object `entry` is now, read afresh (no cache), or `None`
    /// if it is gone: what an overwrite compares with the version it is
    /// based on. Default: re-listing `dir`.
    async fn current(&self, dir: &Key, entry: &Entry) -> FsResult<Option<Entry>> {
        Ok(self
            .list(dir)
            .await?
            .into_iter()
            .find(|e| e.key == entry.key))
    }

    /// True when the top level is listed from the config alone (client
    /// ids, app names): reaching it proves nothing, its children are
    /// reached instead.
    fn root_from_config(&self) -> bool {
        false
    }

    /// One cheap call showing that `dir` answers and accepts the
    /// credentials (the start-up check). Default: listing it.
    async fn reach(&self, dir: &Key) -> FsResult<()> {
        self.list(dir).await.map(|_| ())
    }

    /// The visible entries of a directory, every page fetched. Hidden views
    /// (`.trash`, `.revisions`, …) are not returned here.
    async fn list(&self, dir: &Key) -> FsResult<Vec<Entry>>;

    /// Resolves a name that the listing of `dir` does not hold: the reserved
    /// hidden names and things looked up on demand (`clients/<id>`,
    /// `.posts/<id>`). `Ok(None)` (without any remote call) for anything else.
    async fn lookup_hidden(&self, dir: &Key, name: &str) -> FsResult<Option<Entry>>;

    /// Fresh attributes of one object, for objects whose listing lacks a size
    /// or time (the back office's `HEAD` on content).
    async fn stat(&self, entry: &Entry) -> FsResult<Entry>;

    /// `len` bytes at `offset` (fewer only at the end of the content).
    async fn read(&self, entry: &Entry, offset: u64, len: u64) -> FsResult<Bytes>;

    /// Uploads `content` as file `name` in `dir`. `existing` is the file it
    /// replaces (same name, same folder), if any. Returns the new entry (its
    /// key may differ from the replaced one's).
    async fn upload(
        &self,
        dir: &Key,
        name: &str,
        existing: Option<&Entry>,
        content: &Content,
    ) -> FsResult<Entry>;

    /// Whether a file may be created in `dir`, checked at `create` so the
    /// error comes at once rather than from the upload on close (template
    /// folders and the apps root hold no files). Default: allowed.
    fn check_create(&self, dir: &Key) -> FsResult<()> {
        let _ = dir;
        Ok(())
    }

    /// Creates directory `name` in `dir`.
    async fn mkdir(&self, dir: &Key, name: &str) -> FsResult<Entry>;

    /// Renames or moves `entry` from `from_dir` to `to_dir` as `new_name`.
    /// `replace` is an existing target the rename must replace. `CrossDevice`
    /// where the API cannot move (then `mv` copies by itself). Returns the
    /// entry as it is afterwards (restores out of views return the live key).
    async fn rename(
        &self,
        entry: &Entry,
        from_dir: &Key,
        to_dir: &Key,
        new_name: &str,
        replace: Option<&Entry>,
    ) -> FsResult<Entry>;

    /// Removes a file (`unlink`) or an empty directory (`rmdir`; the core has
    /// already checked that it is empty).
    async fn remove(&self, dir: &Key, entry: &Entry) -> FsResult<()>;

    /// Drops what the backend remembers of remote objects (SIGHUP): the
    /// next use fetches them again.
    fn forget_memos(&self) {}

    /// Stores a modification time set by utimens on the remote, where the
    /// API has a place for it; returns the updated entry, or `None` when
    /// this backend keeps times only locally (the default).
    async fn set_mtime(
        &self,
        _entry: &Entry,
        _mtime: std::time::SystemTime,
    ) -> FsResult<Option<Entry>> {
        Ok(None)
    }

    /// Deletes a file for good, bypassing any trash: the remote copy of a
    /// temporary file whose bytes were saved over another file. Where the
    /// API has no trash this is `remove`.
    async fn discard(&self, dir: &Key, entry: &Entry) -> FsResult<()> {
        self.remove(dir, entry).await
    }

    /// Names of the `user.bridgefs.*` attributes of an object.
    async fn xattr_list(&self, entry: &Entry) -> FsResult<Vec<String>>;

    /// Value of one attribute; `NoData` for an unknown name.
    async fn xattr_get(&self, entry: &Entry, name: &str) -> FsResult<Vec<u8>>;

    /// Sets (`Some`) or removes (`None`) an attribute; `NotSupported` or
    /// `NotPermitted` where it cannot be set.
    async fn xattr_set(&self, entry: &Entry, name: &str, value: Option<&[u8]>) -> FsResult<()>;
}

/// Attribute prefix shared by every backend.
pub const XATTR_PREFIX: &str = "user.bridgefs.";

/// Times for objects whose API gives none: the Unix epoch is wrong-looking,
/// so the documented fallback is the moment the daemon started.
pub fn fallback_time() -> SystemTime {
    static START: std::sync::OnceLock<SystemTime> = std::sync::OnceLock::new();
    *START.get_or_init(SystemTime::now)
}
