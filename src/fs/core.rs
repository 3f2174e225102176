//! The filesystem: every FUSE operation as a plain async method returning
//! plain structs or an [`FsError`]. The fuser adapter (`crate::fuse`) only
//! translates; everything with meaning lives here and in the backends.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use super::backend::{fallback_time, Backend, Entry, Key, Kind, XATTR_PREFIX};
use super::cache::{Listing, MetaCache};
use super::error::{FsError, FsResult};
use super::inode::{Ino, InodeTable, LOCAL_KEY_PREFIX, ROOT};
use super::journal::{Journal, PendingUpload};
use super::names;
use super::reader::{BlockCache, ReadPattern, Source};
use super::spool::{LocalFile, Spool};

mod cached;

/// Attributes as the kernel sees them (owner added by the adapter).
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    /// How long the kernel may keep this entry and these attributes: never
    /// past the expiry of the listing they came from, so a remote change
    /// shows within `metadata_ttl`.
    pub valid_for: Duration,
}

/// One entry of a directory handle's snapshot.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub name: String,
    pub attr: Attr,
}

/// Settings of the filesystem core.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub metadata_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: usize,
    pub read_cache_bytes: u64,
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// A backend mounted under a top-level name.
pub struct Mounted {
    pub name: String,
    /// The API behind it, as admins name it (`back office`), for messages.
    pub api: &'static str,
    pub backend: Arc<dyn Backend>,
}

/// Counters for `status` and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub lookups: AtomicU64,
    pub listings: AtomicU64,
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_failures: AtomicU64,
    /// Overwrites saved as conflict copies (someone else changed the file).
    pub conflicts: AtomicU64,
}

// Not boxed: most handles are files, so a box would cost an allocation per
// open and save nothing.
#[allow(clippy::large_enum_variant)]
enum Handle {
    /// A snapshot shared with the readdir in progress (no copy per reply).
    Dir(Arc<Vec<DirItem>>),
    File(FileHandle),
}

struct FileHandle {
    ino: Ino,
    write: bool,
    append: bool,
    /// Wrote (or truncated) since the last successful flush.
    wrote: bool,
    /// The writer: a flush from another process is a no-op.
    pid: u32,
    pattern: ReadPattern,
    /// A read-only handle reads the remote version it opened, whatever
    /// re-listings learn meanwhile: never a mix of two versions.
    pinned: Option<Pinned>,
    /// Bytes returned so far: a handle that has returned nothing may move
    /// to a replacement of its file (see [`BridgeFs::read`]).
    served: u64,
    /// Counted in its node's `readers` (until its first flush: `close()`
    /// sends that at once, the release comes later).
    reading: bool,
    /// Its file was replaced by one of another size: every read fails with
    /// ESTALE (the kernel would cut or pad the new bytes to the old size).
    stale: bool,
}

/// The remote object a read-only handle reads.
#[derive(Clone)]
struct Pinned {
    entry: Entry,
    version: u64,
    size: u64,
}

impl Pinned {
    /// What the block cache reads for this version of `ino`.
    fn source<'a>(&'a self, backend: &'a Arc<dyn Backend>, ino: Ino) -> Source<'a> {
        Source {
            backend,
            entry: &self.entry,
            ino,
            version: self.version,
            size: self.size,
        }
    }
}

struct State {
    table: InodeTable,
    cache: MetaCache,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Nodes with spooled content.
    locals: HashSet<Ino>,
    /// Names found by `lookup_hidden`: (parent, name) → inode.
    hidden: HashMap<(Ino, String), Ino>,
    /// Directories inside hidden views: re-listed after any change.
    view_dirs: HashSet<Ino>,
    /// Files with a background upload retry running.
    retrying: HashSet<Ino>,
}

pub struct BridgeFs {
    mounts: Vec<Mounted>,
    state: Mutex<State>,
    locks: Mutex<HashMap<Ino, Arc<tokio::sync::Mutex<()>>>>,
    blocks: Arc<BlockCache>,
    /// Journal records of earlier runs that the server refused for good:
    /// kept, shown by `status`, retried on SIGHUP.
    refused_at_start: parking_lot::Mutex<Vec<PendingUpload>>,
    /// Set once mounted: how the core tells the kernel to drop what it
    /// cached.
    kernel: parking_lot::RwLock<Option<Arc<dyn super::kernel::KernelCache>>>,
    spool: Spool,
    journal: Journal,
    opts: FsOptions,
    pub counters: Counters,
}

/// Most remote `stat` calls in flight while filling a listing's sizes.
const STAT_CONCURRENCY: usize = 16;
/// Chunk used to fill a spool from the remote.
const FILL_CHUNK: u64 = 8 << 20;

impl BridgeFs {
    pub fn new(mounts: Vec<Mounted>, opts: FsOptions) -> FsResult<Arc<BridgeFs>> {
        let spool = Spool::open(&opts.cache_dir)
            .map_err(|e| FsError::Io(format!("cache dir {}: {e}", opts.cache_dir.display())))?;
        let journal = Journal::open(&opts.state_dir)
            .map_err(|e| FsError::Io(format!("state dir {}: {e}", opts.state_dir.display())))?;
        let mut table = InodeTable::new();
        table.insert_root(Entry::dir("", "", "root"));
        for (i, m) in mounts.iter().enumerate() {
            let mut e = Entry::dir(m.backend.root(), m.name.clone(), m.name.clone());
            e.writable = true;
            table.insert_pinned(i, m.name.clone(), e);
        }
        Ok(Arc::new(BridgeFs {
            state: Mutex::new(State {
                table,
                cache: MetaCache::new(opts.max_entries, opts.metadata_ttl, opts.negative_ttl),
                handles: HashMap::new(),
                next_fh: 1,
                locals: HashSet::new(),
                hidden: HashMap::new(),
                view_dirs: HashSet::new(),
                retrying: HashSet::new(),
            }),
            locks: Mutex::new(HashMap::new()),
            blocks: Arc::new(BlockCache::new(opts.read_cache_bytes)),
            refused_at_start: Default::default(),
            kernel: Default::default(),
            mounts,
            spool,
            journal,
            opts,
            counters: Counters::default(),
        }))
    }

    // ----- helpers -------------------------------------------------------

    fn lock_for(&self, ino: Ino) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(ino).or_default().clone()
    }

    /// (backend index, backend, entry) of a node below a backend.
    /// The spool of `ino`, if it has one.
    fn local_of(&self, ino: Ino) -> Option<Arc<LocalFile>> {
        self.state
            .lock()
            .table
            .get(ino)
            .and_then(|n| n.local.clone())
    }

    /// The backend serving `ino` (no copy of its entry: reads ask this).
    fn backend_of(&self, ino: Ino) -> FsResult<Arc<dyn Backend>> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let b = node.backend.ok_or(FsError::NotPermitted)?;
        Ok(self.mounts[b].backend.clone())
    }

    fn remote_of(&self, ino: Ino) -> FsResult<(usize, Arc<dyn Backend>, Entry)> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let b = node.backend.ok_or(FsError::NotPermitted)?;
        Ok((b, self.mounts[b].backend.clone(), node.entry.clone()))
    }

    fn attr_locked(st: &State, ino: Ino) -> FsResult<Attr> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let e = &node.entry;
        let mtime = e.mtime.unwrap_or_else(fallback_time);
        let (size, perm, nlink) = match e.kind {
            Kind::Dir => (4096, if e.writable { 0o755 } else { 0o555 }, 2),
            Kind::File => (
                node.local
                    .as_ref()
                    .map(|l| l.size())
                    .or(e.size)
                    .unwrap_or(0),
                if e.writable { 0o644 } else { 0o444 },
                1,
            ),
        };
        let valid_for = st.cache.remaining(node.parent).unwrap_or(st.cache.ttl);
        Ok(Attr {
            ino,
            kind: e.kind,
            size,
            mtime,
            ctime: e.ctime.unwrap_or(mtime).max(mtime),
            perm,
            nlink,
            valid_for,
        })
    }

    fn display_path(st: &State, mut ino: Ino) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(n) = st.table.get(ino) else { break };
            parts.push(n.name.clone());
            ino = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Makes sure `dir` has a listing within its TTL, fetching it once even
    /// when many requests ask at the same moment.
    async fn ensure_listing(&self, dir: Ino) -> FsResult<()> {
        if dir == ROOT {
            return Ok(());
        }
        {
            let mut st = self.state.lock();
            let node = st.table.get(dir).ok_or(FsError::NotFound)?;
            if !node.is_dir() {
                return Err(FsError::NotDir);
            }
            if st.cache.fresh(dir).is_some() {
                return Ok(());
            }
        }
        let lock = self.lock_for(dir);
        let _guard = lock.lock().await;
        if self.state.lock().cache.fresh(dir).is_some() {
            return Ok(());
        }
        let (bidx, backend, entry) = self.remote_of(dir)?;
        self.counters.listings.fetch_add(1, Ordering::Relaxed);
        let mut entries = match backend.list(&entry.key).await {
            Ok(e) => e,
            Err(FsError::NotFound) => {
                self.state.lock().table.mark_gone(dir);
                return Err(FsError::NotFound);
            }
            Err(e) => {
                // The remote is failing: a stale listing beats an error.
                if self.state.lock().cache.any(dir).is_some() {
                    tracing::warn!(error = %e, "listing failed; serving the last one");
                    return Ok(());
                }
                return Err(e);
            }
        };
        fill_sizes(&backend, &mut entries).await;
        self.install_listing(dir, bidx, entries);
        Ok(())
    }

    fn install_listing(&self, dir: Ino, bidx: usize, entries: Vec<Entry>) {
        let names = names::assign(
            &entries
                .iter()
                .map(|e| (e.name.as_str(), e.id.as_str()))
                .collect::<Vec<_>>(),
        );
        let mut st = self.state.lock();
        let in_view = {
            let node = st.table.get(dir);
            node.is_some_and(|n| n.hidden || st.view_dirs.contains(&n.parent))
        };
        if in_view {
            st.view_dirs.insert(dir);
        }
        let before: Vec<String> = st
            .cache
            .any(dir)
            .map(|l| l.entries.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let mut list = Vec::with_capacity(entries.len());
        for (entry, name) in entries.into_iter().zip(names) {
            let ino = st.table.upsert(bidx, dir, name.clone(), entry, false);
            list.push((name, ino));
        }
        // Remote renames, deletes and overwrites: the kernel forgets the
        // names that went and the pages of what changed.
        let now: HashSet<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<(Ino, String)> = before
            .into_iter()
            .filter(|n| !now.contains(n.as_str()))
            .map(|n| (dir, n))
            .collect();
        drop(now);
        let changed = st.table.take_changed();
        // Files created here and not uploaded yet stay visible.
        let locals: Vec<(String, Ino)> = st
            .locals
            .iter()
            .filter_map(|i| st.table.get(*i))
            .filter(|n| n.parent == dir && !n.is_remote() && !n.gone)
            .map(|n| (n.name.clone(), n.ino))
            .collect();
        let mut listing = Listing::new(list);
        for (name, ino) in locals {
            if listing.get(&name).is_none() {
                listing.insert(name, ino);
            }
        }
        st.cache.put(dir, listing);
        let gone: Vec<(Ino, String)> = gone
            .into_iter()
            .filter(|(_, n)| st.cache.any(dir).is_some_and(|l| l.get(n).is_none()))
            .collect();
        if st.table.len() > self.opts.max_entries {
            let mut keep = st.cache.referenced();
            keep.extend(st.hidden.values().copied());
            keep.extend(st.locals.iter().copied());
            let dropped = st.table.collect(&keep);
            st.hidden.retain(|_, i| keep.contains(i));
            self.locks.lock().retain(|_, l| Arc::strong_count(l) > 1);
            tracing::debug!(dropped, "inode table trimmed");
        }
        drop(st);
        self.tell_kernel(gone, changed);
    }

    /// Re-lists views (trash, revisions) of a backend after a change there.
    fn invalidate_views(st: &mut State, bidx: usize) {
        let dirs: Vec<Ino> = st
            .view_dirs
            .iter()
            .copied()
            .filter(|i| st.table.get(*i).is_some_and(|n| n.backend == Some(bidx)))
            .collect();
        for d in dirs {
            st.cache.invalidate(d);
        }
    }

    /// The top-level directory named `name`.
    fn top_level(&self, st: &State, name: &str) -> FsResult<Ino> {
        self.mounts
            .iter()
            .position(|m| m.name == name)
            .and_then(|b| st.table.by_key(b, &self.mounts[b].backend.root()))
            .ok_or(FsError::NotFound)
    }

    /// What the caches alone know of `name` in `parent` (its listing, the
    /// hidden names found before, the negative entries); `None`: only the
    /// remote can tell.
    fn cached_name(st: &mut State, parent: Ino, name: &str) -> Option<FsResult<Ino>> {
        if let Some(ino) = st.cache.any(parent).and_then(|l| l.get(name)) {
            return Some(Ok(ino));
        }
        if let Some(ino) = st.hidden.get(&(parent, name.to_string())).copied() {
            if st.table.get(ino).is_some_and(|n| !n.gone) {
                return Some(Ok(ino));
            }
        }
        st.cache
            .is_negative(parent, name)
            .then_some(Err(FsError::NotFound))
    }

    /// The inode of `name` in `parent`, without taking a lookup.
    async fn resolve(&self, parent: Ino, name: &str) -> FsResult<Ino> {
        if parent == ROOT {
            return self.top_level(&self.state.lock(), name);
        }
        self.ensure_listing(parent).await?;
        if let Some(known) = Self::cached_name(&mut self.state.lock(), parent, name) {
            return known;
        }
        let (bidx, backend, entry) = self.remote_of(parent)?;
        match backend.lookup_hidden(&entry.key, name).await? {
            Some(found) => {
                let mut st = self.state.lock();
                let ino = st.table.upsert(bidx, parent, name.to_string(), found, true);
                st.hidden.insert((parent, name.to_string()), ino);
                Ok(ino)
            }
            None => {
                self.state.lock().cache.put_negative(parent, name);
                Err(FsError::NotFound)
            }
        }
    }

    /// A remote file whose listing gave no size: only a `stat` tells it.
    fn needs_stat(node: &super::inode::Node) -> bool {
        node.entry.kind == Kind::File
            && node.local.is_none()
            && node.entry.size.is_none()
            && node.is_remote()
    }

    /// Attributes, asking the backend for a size the listing lacked.
    async fn fresh_attr(&self, ino: Ino) -> FsResult<Attr> {
        let needs_stat = {
            let st = self.state.lock();
            Self::needs_stat(st.table.get(ino).ok_or(FsError::NotFound)?)
        };
        if needs_stat {
            let (_, backend, entry) = self.remote_of(ino)?;
            let fresh = backend.stat(&entry).await?;
            let mut st = self.state.lock();
            if let Some(node) = st.table.get_mut(ino) {
                node.entry.size = fresh.size.or(Some(0));
                node.entry.mtime = fresh.mtime.or(node.entry.mtime);
            }
        }
        Self::attr_locked(&self.state.lock(), ino)
    }

    // ----- lookups and attributes ----------------------------------------

    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        names::check_length(name)?;
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let ino = self.resolve(parent, name).await?;
        let attr = self.fresh_attr(ino).await?;
        if let Some(n) = self.state.lock().table.get_mut(ino) {
            n.lookups += 1;
        }
        Ok(attr)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        let mut st = self.state.lock();
        if let Some(node) = st.table.get_mut(ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
    }

    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        self.fresh_attr(ino).await
    }

    /// `fstat` agrees with the handle's reads: a pinned handle shows the
    /// size of the version it reads.
    pub async fn getattr_of(&self, ino: Ino, fh: Option<u64>) -> FsResult<Attr> {
        let mut attr = self.fresh_attr(ino).await?;
        if let Some(size) = fh.and_then(|f| self.handle_size(f)) {
            attr.size = size;
        }
        Ok(attr)
    }

    /// chmod/chown/utimens succeed without remote effect; a size truncates.
    pub async fn setattr(
        self: &Arc<Self>,
        ino: Ino,
        size: Option<u64>,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        if let Some(size) = size {
            if i64::try_from(size).is_err() {
                return Err(FsError::TooBig);
            }
            let (is_dir, writable) = {
                let st = self.state.lock();
                let n = st.table.get(ino).ok_or(FsError::NotFound)?;
                (n.is_dir(), n.entry.writable)
            };
            if is_dir {
                return Err(FsError::IsDir);
            }
            if !writable {
                return Err(FsError::ReadOnly);
            }
            let writer = fh.filter(|fh| {
                matches!(self.state.lock().handles.get(fh), Some(Handle::File(h)) if h.write && h.ino == ino)
            });
            let local = self.ensure_local(ino, size == 0).await?;
            local.truncate(size)?;
            self.touch(ino);
            match writer {
                Some(fh) => {
                    if let Some(Handle::File(h)) = self.state.lock().handles.get_mut(&fh) {
                        h.wrote = true;
                    }
                }
                // `truncate FILE` with no open handle: upload now and report.
                None => {
                    self.commit(ino).await?;
                    self.release_local_if_idle(ino);
                }
            }
        }
        self.fresh_attr(ino).await
    }

    // ----- directories ---------------------------------------------------

    /// Snapshots a directory for readdir (`.` and `..` first).
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        self.ensure_listing(ino).await?;
        self.snapshot_dir(&mut self.state.lock(), ino)
    }

    /// A directory handle holding the listing as it is now.
    fn snapshot_dir(&self, st: &mut State, ino: Ino) -> FsResult<u64> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        if !node.is_dir() {
            return Err(FsError::NotDir);
        }
        let parent = node.parent;
        let mut items = vec![
            DirItem {
                name: ".".into(),
                attr: Self::attr_locked(st, ino)?,
            },
            DirItem {
                name: "..".into(),
                attr: Self::attr_locked(st, parent)?,
            },
        ];
        let children: Vec<(String, Ino)> = if ino == ROOT {
            self.mounts
                .iter()
                .enumerate()
                .filter_map(|(b, m)| {
                    st.table
                        .by_key(b, &m.backend.root())
                        .map(|i| (m.name.clone(), i))
                })
                .collect()
        } else {
            st.cache
                .any(ino)
                .map(|l| l.entries.clone())
                .unwrap_or_default()
        };
        for (name, child) in children {
            if let Ok(attr) = Self::attr_locked(st, child) {
                items.push(DirItem { name, attr });
            }
        }
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Handle::Dir(Arc::new(items)));
        Ok(fh)
    }

    /// Hands the entries of a directory handle from `offset` on to `add`
    /// (given each entry and its offset) until it says its buffer is full:
    /// a reply takes only what fits, so a listing costs its length once,
    /// not once per reply. `plus` (READDIRPLUS): each entry handed out but
    /// `.` and `..` counts as a kernel lookup.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(&DirItem, u64) -> bool,
    ) -> FsResult<()> {
        let items = match self.state.lock().handles.get(&fh) {
            Some(Handle::Dir(items)) => items.clone(),
            _ => return Err(FsError::BadHandle),
        };
        let mut looked_up = Vec::new();
        for (i, item) in items.iter().enumerate().skip(offset as usize) {
            if add(item, i as u64 + 1) {
                break;
            }
            if plus && item.name != "." && item.name != ".." {
                looked_up.push(item.attr.ino);
            }
        }
        let mut st = self.state.lock();
        for ino in looked_up {
            if let Some(n) = st.table.get_mut(ino) {
                n.lookups += 1;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.state.lock().handles.remove(&fh);
    }

    pub async fn mkdir(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        names::check_local(name)?;
        if parent == ROOT {
            return Err(FsError::NotPermitted);
        }
        match self.resolve(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let (bidx, backend, dir) = self.remote_of(parent)?;
        if !dir.writable {
            return Err(FsError::ReadOnly);
        }
        let remote_name = names::to_remote(name);
        let created = create_informed(&backend, &dir.key, &remote_name, Kind::Dir, || {
            backend.mkdir(&dir.key, &remote_name)
        })
        .await;
        let entry = match created {
            Ok(entry) => entry,
            Err(FsError::Exists) => {
                // The remote has it and this listing did not: re-list, so
                // that `stat` sees what EEXIST speaks of.
                let mut st = self.state.lock();
                st.cache.invalidate(parent);
                st.cache.clear_negative(parent, name);
                return Err(FsError::Exists);
            }
            Err(e) => return Err(e),
        };
        let mut st = self.state.lock();
        let ino = st
            .table
            .upsert(bidx, parent, name.to_string(), entry, false);
        if let Some(l) = st.cache.any(parent) {
            l.insert(name.to_string(), ino);
        }
        st.cache.clear_negative(parent, name);
        if let Some(n) = st.table.get_mut(ino) {
            n.lookups += 1;
        }
        Self::attr_locked(&st, ino)
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        let ino = self.resolve(parent, name).await?;
        let (bidx, backend, entry) = self.remote_of(ino)?;
        if entry.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        self.ensure_listing(ino).await?;
        if self
            .state
            .lock()
            .cache
            .any(ino)
            .is_some_and(|l| !l.entries.is_empty())
        {
            return Err(FsError::NotEmpty);
        }
        let (_, _, dir) = self.remote_of(parent)?;
        backend.remove(&dir.key, &entry).await?;
        let mut st = self.state.lock();
        if let Some(l) = st.cache.any(parent) {
            l.remove(name);
        }
        st.cache.invalidate(ino);
        st.table.mark_gone(ino);
        Self::invalidate_views(&mut st, bidx);
        Ok(())
    }

    // ----- files ----------------------------------------------------------

    fn new_handle(&self, ino: Ino, write: bool, append: bool, wrote: bool, pid: u32) -> u64 {
        let mut st = self.state.lock();
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(
            fh,
            Handle::File(FileHandle {
                ino,
                write,
                append,
                wrote,
                pid,
                pattern: ReadPattern::default(),
                pinned: None,
                served: 0,
                reading: false,
                stale: false,
            }),
        );
        if let Some(n) = st.table.get_mut(ino) {
            n.open_handles += 1;
        }
        fh
    }

    pub async fn open(&self, ino: Ino, flags: i32, pid: u32) -> FsResult<u64> {
        let (is_dir, writable) = {
            let st = self.state.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.is_dir(), n.entry.writable)
        };
        if is_dir {
            return Err(FsError::IsDir);
        }
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = write && flags & libc::O_TRUNC != 0;
        if write {
            if !writable {
                return Err(FsError::ReadOnly);
            }
            let local = self.ensure_local(ino, trunc).await?;
            if trunc && local.size() > 0 {
                local.truncate(0)?;
            }
        } else {
            self.take_newer_version(ino).await?;
            self.fresh_attr(ino).await?;
        }
        let fh = self.new_handle(ino, write, flags & libc::O_APPEND != 0, trunc, pid);
        if !write {
            self.pin(ino, fh);
        }
        Ok(fh)
    }

    /// A file whose newer remote version was seen while it was open takes
    /// it now (its directory is listed again).
    async fn take_newer_version(&self, ino: Ino) -> FsResult<()> {
        let parent = {
            let st = self.state.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            if !(n.stale && n.readers == 0) {
                return Ok(());
            }
            n.parent
        };
        self.state.lock().cache.invalidate(parent);
        self.ensure_listing(parent).await
    }

    /// Pins a read-only handle of a remote file to its current version.
    fn pin(&self, ino: Ino, fh: u64) {
        let mut st = self.state.lock();
        let Some(node) = st.table.get(ino) else {
            return;
        };
        // A clean spool holds the uploaded version, the one pinned; a dirty
        // one is read as written (read-your-writes), not pinned.
        if !node.is_remote() || node.local.as_ref().is_some_and(|l| l.dirty()) {
            return;
        }
        let pinned = Pinned {
            entry: node.entry.clone(),
            version: node.content_version,
            size: node
                .local
                .as_ref()
                .map(|l| l.size())
                .or(node.entry.size)
                .unwrap_or(0),
        };
        if let Some(Handle::File(h)) = st.handles.get_mut(&fh) {
            h.pinned = Some(pinned);
            h.reading = true;
            if let Some(n) = st.table.get_mut(ino) {
                n.readers += 1;
            }
        }
    }

    /// A reader is done with the version it pinned (its first flush, or
    /// its release): the last one lets the newer version in.
    fn reader_done(&self, ino: Ino, fh: u64) {
        let stale_parent = {
            let mut st = self.state.lock();
            let was_reading = match st.handles.get_mut(&fh) {
                Some(Handle::File(h)) => std::mem::take(&mut h.reading),
                _ => false,
            };
            if !was_reading {
                return;
            }
            let stale = st.table.get_mut(ino).and_then(|n| {
                n.readers = n.readers.saturating_sub(1);
                (n.readers == 0 && n.stale).then_some(n.parent)
            });
            if let Some(parent) = stale {
                // The newer version is taken at the next use.
                st.cache.invalidate(parent);
            }
            stale
        };
        if stale_parent.is_some() {
            self.tell_kernel(Vec::new(), vec![ino]);
        }
    }

    /// The size a handle sees (`fstat`): its pinned version's, if pinned.
    pub fn handle_size(&self, fh: u64) -> Option<u64> {
        Self::pinned_size(&self.state.lock(), fh)
    }

    fn pinned_size(st: &State, fh: u64) -> Option<u64> {
        match st.handles.get(&fh) {
            Some(Handle::File(FileHandle {
                pinned: Some(p), ..
            })) => Some(p.size),
            _ => None,
        }
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        flags: i32,
        pid: u32,
    ) -> FsResult<(Attr, u64)> {
        names::check_local(name)?;
        if parent == ROOT {
            return Err(FsError::NotPermitted);
        }
        match self.resolve(parent, name).await {
            Ok(ino) => {
                if flags & libc::O_EXCL != 0 {
                    return Err(FsError::Exists);
                }
                let fh = self.open(ino, flags, pid).await?;
                let mut st = self.state.lock();
                if let Some(n) = st.table.get_mut(ino) {
                    n.lookups += 1;
                }
                return Ok((Self::attr_locked(&st, ino)?, fh));
            }
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let (bidx, backend, dir) = self.remote_of(parent)?;
        if !dir.writable {
            return Err(FsError::ReadOnly);
        }
        backend.check_create(&dir.key)?;
        let local = Arc::new(self.spool.create()?);
        let now = SystemTime::now();
        let entry = Entry {
            key: format!("{LOCAL_KEY_PREFIX}{}", local.id),
            name: name.to_string(),
            kind: Kind::File,
            id: String::new(),
            size: Some(0),
            mtime: Some(now),
            ctime: Some(now),
            writable: true,
            version: None,
        };
        let ino = {
            let mut st = self.state.lock();
            let ino = st
                .table
                .insert_local(bidx, parent, name.to_string(), entry, local);
            st.locals.insert(ino);
            if let Some(l) = st.cache.any(parent) {
                l.insert(name.to_string(), ino);
            }
            st.cache.clear_negative(parent, name);
            if let Some(n) = st.table.get_mut(ino) {
                n.lookups += 1;
            }
            ino
        };
        // A new file is uploaded on close even if nothing is written.
        let fh = self.new_handle(ino, true, flags & libc::O_APPEND != 0, true, pid);
        let attr = Self::attr_locked(&self.state.lock(), ino)?;
        Ok((attr, fh))
    }

    /// The spool of a file, created (and filled from the remote unless the
    /// content is about to be truncated) on first use.
    async fn ensure_local(&self, ino: Ino, empty: bool) -> FsResult<Arc<LocalFile>> {
        if let Some(l) = self.local_of(ino) {
            return Ok(l);
        }
        let lock = self.lock_for(ino);
        let _guard = lock.lock().await;
        if let Some(l) = self.local_of(ino) {
            return Ok(l);
        }
        let local = Arc::new(self.spool.create()?);
        if !empty {
            let attr = self.fresh_attr(ino).await?;
            let (_, backend, entry) = self.remote_of(ino)?;
            let mut offset = 0;
            while offset < attr.size {
                let len = FILL_CHUNK.min(attr.size - offset);
                let chunk = match backend.read(&entry, offset, len).await {
                    Ok(c) => c,
                    Err(e) => {
                        local.discard();
                        return Err(e);
                    }
                };
                if chunk.is_empty() {
                    break;
                }
                local.write_at(offset, &chunk)?;
                offset += chunk.len() as u64;
            }
            local.mark_clean();
        }
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(ino) {
            n.local = Some(local.clone());
        }
        st.locals.insert(ino);
        Ok(local)
    }

    fn touch(&self, ino: Ino) {
        let mut st = self.state.lock();
        if let Some(n) = st.table.get_mut(ino) {
            n.entry.mtime = Some(SystemTime::now());
        }
    }

    /// Reads a pinned handle's version. A file replaced by another client
    /// (the library gives the new bytes a new item) answers ENOENT: a handle
    /// that has returned nothing yet moves to the item that now has the
    /// name, once; one that has returned bytes fails rather than mix.
    async fn read_pinned(
        &self,
        ino: Ino,
        fh: u64,
        p: Pinned,
        pattern: Option<u64>,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        let backend = self.backend_of(ino)?;
        let read = |p: Pinned| {
            let backend = backend.clone();
            async move {
                let src = p.source(&backend, ino);
                self.blocks.read(&src, pattern, offset, size as u64).await
            }
        };
        let (served, stale) = match self.state.lock().handles.get(&fh) {
            Some(Handle::File(h)) => (h.served, h.stale),
            _ => (0, false),
        };
        if stale {
            return Err(FsError::Stale);
        }
        let data = match read(p.clone()).await {
            Err(FsError::NotFound) if served == 0 => {
                let now = self.replacement(ino).await?;
                // The kernel reads up to the size it knows: another size
                // would cut or pad the new bytes. The next open is right.
                let same_size = now.size == p.size;
                if let Some(Handle::File(h)) = self.state.lock().handles.get_mut(&fh) {
                    match same_size {
                        true => h.pinned = Some(now.clone()),
                        false => h.stale = true,
                    }
                }
                if !same_size {
                    let (parent, name) = self.parent_and_name(ino)?;
                    self.forget_names_now(vec![(parent, name)]).await;
                    return Err(FsError::Stale);
                }
                read(now).await?
            }
            other => other?,
        };
        if let Some(Handle::File(h)) = self.state.lock().handles.get_mut(&fh) {
            h.served += data.len() as u64;
        }
        Ok(data)
    }

    fn parent_and_name(&self, ino: Ino) -> FsResult<(Ino, String)> {
        let st = self.state.lock();
        let n = st.table.get(ino).ok_or(FsError::NotFound)?;
        Ok((n.parent, n.name.clone()))
    }

    /// The item that holds `ino`'s name now, after a re-listing of its
    /// directory; the kernel is told to forget the old one.
    async fn replacement(&self, ino: Ino) -> FsResult<Pinned> {
        let (parent, name) = self.parent_and_name(ino)?;
        self.state.lock().cache.invalidate(parent);
        self.ensure_listing(parent).await?;
        let now = self.resolve(parent, &name).await?;
        if now == ino {
            return Err(FsError::NotFound);
        }
        self.fresh_attr(now).await?;
        let pinned = {
            let st = self.state.lock();
            let n = st.table.get(now).ok_or(FsError::NotFound)?;
            Pinned {
                entry: n.entry.clone(),
                version: n.content_version,
                size: n.entry.size.unwrap_or(0),
            }
        };
        tracing::info!(path = ?name, size = pinned.size, "a file replaced by another client is read from its new item");
        self.tell_kernel(vec![(parent, name)], vec![ino]);
        Ok(pinned)
    }

    pub async fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        let (local, pattern, pinned) = {
            let mut st = self.state.lock();
            let local = st.table.get(ino).ok_or(FsError::NotFound)?.local.clone();
            let (pattern, pinned) = match st.handles.get_mut(&fh) {
                Some(Handle::File(h)) => (h.pattern.advance(offset, size as u64), h.pinned.clone()),
                _ => (None, None),
            };
            (local, pattern, pinned)
        };
        let data = match (local, pinned) {
            (Some(l), _) => Bytes::from(l.read_at(offset, size as u64)?),
            (None, Some(p)) => self.read_pinned(ino, fh, p, pattern, offset, size).await?,
            (None, None) => {
                let attr = self.fresh_attr(ino).await?;
                let (_, backend, entry) = self.remote_of(ino)?;
                let version = self
                    .state
                    .lock()
                    .table
                    .get(ino)
                    .map(|n| n.content_version)
                    .unwrap_or(0);
                {
                    let src = Source {
                        backend: &backend,
                        entry: &entry,
                        ino,
                        version,
                        size: attr.size,
                    };
                    self.blocks.read(&src, pattern, offset, size as u64).await?
                }
            }
        };
        self.counters
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }

    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (local, append) = {
            let mut st = self.state.lock();
            let append = match st.handles.get_mut(&fh) {
                Some(Handle::File(h)) if h.write && h.ino == ino => {
                    h.wrote = true;
                    h.append
                }
                _ => return Err(FsError::BadHandle),
            };
            let local = st
                .table
                .get(ino)
                .and_then(|n| n.local.clone())
                .ok_or(FsError::BadHandle)?;
            (local, append)
        };
        let offset = if append { local.size() } else { offset };
        local.write_at(offset, data)?;
        self.touch(ino);
        self.counters
            .bytes_written
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data.len() as u32)
    }

    /// close(): uploads what this handle wrote and reports the upload's
    /// errno. A flush with nothing written, or from another process than the
    /// writer, does nothing.
    pub async fn flush(self: &Arc<Self>, ino: Ino, fh: u64, pid: u32) -> FsResult<()> {
        // Only the opener's close: a forked child closing its copy of the
        // descriptor (at exec) flushes too, and the reader goes on.
        let opener =
            matches!(self.state.lock().handles.get(&fh), Some(Handle::File(h)) if h.pid == pid);
        if opener {
            self.reader_done(ino, fh);
        }
        let should = match self.state.lock().handles.get(&fh) {
            Some(Handle::File(h)) => h.wrote && h.pid == pid,
            _ => false,
        };
        if !should {
            return Ok(());
        }
        self.commit(ino).await?;
        if let Some(Handle::File(h)) = self.state.lock().handles.get_mut(&fh) {
            h.wrote = false;
        }
        Ok(())
    }

    pub async fn fsync(self: &Arc<Self>, ino: Ino) -> FsResult<()> {
        self.commit(ino).await
    }

    pub async fn release(self: &Arc<Self>, ino: Ino, fh: u64) {
        self.reader_done(ino, fh);
        let handle = self.state.lock().handles.remove(&fh);
        let Some(Handle::File(h)) = handle else {
            return;
        };
        if let Some(n) = self.state.lock().table.get_mut(ino) {
            n.open_handles = n.open_handles.saturating_sub(1);
        }
        if h.wrote {
            // The flush was skipped (another process closed last) or failed:
            // upload now; a failure keeps retrying in the background.
            let _ = self.commit(ino).await;
        }
        self.release_local_if_idle(ino);
    }

    /// Drops the spool of a file that is in sync and no longer open.
    fn release_local_if_idle(&self, ino: Ino) {
        let mut st = self.state.lock();
        let Some(node) = st.table.get_mut(ino) else {
            return;
        };
        let idle = node.open_handles == 0 && node.is_remote();
        let Some(local) = node.local.clone() else {
            return;
        };
        if node.open_handles == 0 && local.write_error().is_some() {
            drop(local);
            let dropped = self.drop_incomplete(&mut st, ino);
            drop(st);
            if let Some((spool, entry)) = dropped {
                self.forget_spool(&spool);
                self.tell_kernel(vec![entry], vec![ino]);
            }
            return;
        }
        if idle && !local.dirty() {
            node.local = None;
            st.locals.remove(&ino);
            let version = st.table.bump_version();
            if let Some(n) = st.table.get_mut(ino) {
                n.content_version = version;
            }
            drop(st);
            local.discard();
        }
    }

    /// The spool's bytes and the journal record naming them on disk, before
    /// the upload starts: fsyncs, run on a blocking thread so that tokio's
    /// workers go on serving other files meanwhile.
    async fn make_durable(
        self: &Arc<Self>,
        local: &Arc<LocalFile>,
        record: &PendingUpload,
    ) -> FsResult<()> {
        let (me, local, record) = (self.clone(), local.clone(), record.clone());
        let written = tokio::task::spawn_blocking(move || {
            local.sync()?;
            me.journal
                .record(&record)
                .map_err(|e| FsError::Io(format!("journal: {e}")))
        });
        written
            .await
            .map_err(|e| FsError::Io(format!("journal: {e}")))?
    }

    /// Deletes a spool file and its journal record: disk work, so callers
    /// run it with no lock held (a slow disk must not stall other requests).
    fn forget_spool(&self, local: &LocalFile) {
        self.journal.remove(&local.id);
        local.discard();
    }

    /// The backends served, as configured (the start-up check reaches
    /// them through the same clients, sessions and caches).
    pub fn mounts(&self) -> &[Mounted] {
        &self.mounts
    }

    /// Connects the kernel's caches (after mounting).
    pub fn set_kernel_cache(&self, k: Arc<dyn super::kernel::KernelCache>) {
        *self.kernel.write() = Some(k);
    }

    /// Has the kernel forget names and inodes, on a blocking thread and
    /// with no lock of ours held (see [`super::kernel`]).
    fn tell_kernel(&self, entries: Vec<(Ino, String)>, inodes: Vec<Ino>) {
        let Some(k) = self.kernel.read().clone() else {
            return;
        };
        if entries.is_empty() && inodes.is_empty() {
            return;
        }
        let forget = move || {
            for (parent, name) in &entries {
                k.forget_entry(*parent, name);
            }
            for ino in &inodes {
                k.forget_inode(*ino);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(forget)),
            Err(_) => drop(std::thread::spawn(forget)),
        }
    }

    /// Someone else changed the remote file after the local change began:
    /// ours goes up next to it as `name (conflict …).ext` and this inode
    /// becomes that copy (an editor still holding it goes on writing its
    /// own copy); theirs shows under the name again. Never a silent
    /// overwrite.
    async fn save_as_conflict(
        &self,
        ino: Ino,
        backend: &Arc<dyn Backend>,
        record: &PendingUpload,
        local: &Arc<LocalFile>,
        generation: u64,
    ) -> FsResult<()> {
        let remote_name = names::conflict_name(&record.name, chrono::Local::now());
        let copy = PendingUpload {
            name: remote_name.clone(),
            existing_key: None,
            ..record.clone()
        };
        let entry = upload_informed(backend, &copy, None).await?;
        self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = ?record.display_path, kept_as = ?remote_name, "someone else changed this file meanwhile: theirs is kept, ours is saved as a conflict copy");
        local.mark_uploaded(generation);
        let (parent, old_name, new_name) = {
            let mut st = self.state.lock();
            let node = st.table.get(ino).ok_or(FsError::NotFound)?;
            let (parent, old_name) = (node.parent, node.name.clone());
            let new_name = names::escape(&remote_name);
            st.table.rebind(ino, entry);
            if let Some(n) = st.table.get_mut(ino) {
                n.name = new_name.clone();
            }
            // Theirs comes back under the name with the next listing.
            st.cache.invalidate(parent);
            st.cache.clear_negative(parent, &new_name);
            (parent, old_name, new_name)
        };
        if !local.dirty() {
            self.journal.remove(&record.id);
            local.set_journaled(false);
        }
        self.forget_names_now(vec![(parent, old_name), (parent, new_name)])
            .await;
        self.tell_kernel(Vec::new(), vec![ino]);
        Ok(())
    }

    /// Has the kernel forget names and waits until it has: the next open
    /// of such a name then looks it up again. Safe inside a request on the
    /// file (it takes the directory's lock, not the file's pages).
    async fn forget_names_now(&self, entries: Vec<(Ino, String)>) {
        let Some(k) = self.kernel.read().clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            for (parent, name) in &entries {
                k.forget_entry(*parent, name);
            }
        })
        .await;
    }

    /// Forgets the spool of a file whose last writes failed (the disk was
    /// full), once it is closed: the remote keeps its previous version, and
    /// a file that was never uploaded is gone, as nothing of it arrived.
    /// Returns the spool to forget (see [`Self::forget_spool`]) and the name
    /// the kernel must forget.
    fn drop_incomplete(&self, st: &mut State, ino: Ino) -> Option<(Arc<LocalFile>, (Ino, String))> {
        let node = st.table.get_mut(ino)?;
        let local = node.local.take()?;
        tracing::warn!(id = %local.id, "a write to this file failed; its spool is dropped, nothing of it is uploaded");
        let (parent, name, remote) = (node.parent, node.name.clone(), node.is_remote());
        st.locals.remove(&ino);
        if !remote {
            if let Some(l) = st.cache.any(parent) {
                l.remove(&name);
            }
            st.table.mark_gone(ino);
        }
        let version = st.table.bump_version();
        if let Some(n) = st.table.get_mut(ino) {
            n.content_version = version;
        }
        Some((local, (parent, name)))
    }

    /// The files with a spool for which `keep(node, spool)` holds.
    fn locals_where(&self, keep: impl Fn(&super::inode::Node, &LocalFile) -> bool) -> Vec<Ino> {
        let st = self.state.lock();
        st.locals
            .iter()
            .copied()
            .filter(|i| {
                st.table
                    .get(*i)
                    .is_some_and(|n| n.local.as_ref().is_some_and(|l| keep(n, l)))
            })
            .collect()
    }

    /// SIGHUP: uploads the server refused are tried once more, those of
    /// this run and those a previous run kept in the journal.
    pub fn retry_refused(self: &Arc<Self>) {
        let refused = self.locals_where(|_, l| l.refused().is_some());
        for ino in refused {
            if let Some(l) = self.local_of(ino) {
                l.set_refused(None);
            }
            self.spawn_retry(ino);
        }
        let kept = std::mem::take(&mut *self.refused_at_start.lock());
        if kept.is_empty() {
            return;
        }
        let fs = self.clone();
        tokio::spawn(async move {
            for rec in kept {
                let rec = PendingUpload {
                    refused: None,
                    ..rec
                };
                fs.recover_record(rec).await;
            }
        });
    }

    /// Uploads of this run and of earlier ones that the server refused for
    /// good, as `path: reason` lines for `status`.
    pub fn refused_uploads(&self) -> Vec<String> {
        let st = self.state.lock();
        let live = st.locals.iter().filter_map(|i| {
            let why = st.table.get(*i)?.local.as_ref()?.refused()?;
            Some(format!("{}: {why}", Self::display_path(&st, *i)))
        });
        let kept = self.refused_at_start.lock();
        let earlier = kept
            .iter()
            .map(|r| format!("{}: {}", r.display_path, r.refused.as_deref().unwrap_or("")));
        live.chain(earlier).collect()
    }

    /// Uploads a file's spooled bytes if the remote lacks them: journal
    /// first, then one upload; on failure the spool and the record stay and
    /// a background retry starts.
    pub async fn commit(self: &Arc<Self>, ino: Ino) -> FsResult<()> {
        let Some(local) = self.local_of(ino) else {
            return Ok(());
        };
        let _upload = local.upload.lock().await;
        if !local.dirty() {
            return Ok(());
        }
        // Incomplete bytes never go up; refused ones wait to be asked for.
        if let Some(e) = local.write_error().or_else(|| local.refused()) {
            return Err(e);
        }
        let generation = local.generation();
        let (bidx, backend, record, existing) = {
            let st = self.state.lock();
            let node = st.table.get(ino).ok_or(FsError::NotFound)?;
            if node.gone {
                return Ok(());
            }
            let bidx = node.backend.ok_or(FsError::NotPermitted)?;
            let record = self.pending_record(&st, ino).ok_or(FsError::NotFound)?;
            let existing = node.is_remote().then(|| node.entry.clone());
            (bidx, self.mounts[bidx].backend.clone(), record, existing)
        };
        self.make_durable(&local, &record).await?;
        local.set_journaled(true);
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        let existing = match existing {
            Some(base) => match backend.current(&record.dir_key, &base).await? {
                Some(theirs) if !same_version(&base, &theirs) => {
                    return self
                        .save_as_conflict(ino, &backend, &record, &local, generation)
                        .await;
                }
                Some(_) => Some(base),
                // Deleted by someone else meanwhile: ours goes up as new.
                None => None,
            },
            None => None,
        };
        match upload_informed(&backend, &record, existing.as_ref()).await {
            Ok(mut entry) => {
                local.mark_uploaded(generation);
                if entry.size.is_none() {
                    entry.size = Some(local.size());
                }
                let mut st = self.state.lock();
                st.table.rebind(ino, entry);
                if let Some(n) = st.table.get_mut(ino) {
                    n.local = Some(local.clone());
                }
                Self::invalidate_views(&mut st, bidx);
                drop(st);
                if !local.dirty() {
                    self.journal.remove(&record.id);
                    local.set_journaled(false);
                }
                tracing::debug!(path = ?record.display_path, "uploaded");
                Ok(())
            }
            Err(e) if e.is_permanent() => {
                self.counters
                    .upload_failures
                    .fetch_add(1, Ordering::Relaxed);
                local.set_refused(Some(e.clone()));
                let record = PendingUpload {
                    refused: Some(e.to_string()),
                    ..record
                };
                if let Err(j) = self.journal.record(&record) {
                    tracing::error!(path = ?record.display_path, error = %j, "cannot mark the journal record refused");
                }
                tracing::error!(path = ?record.display_path, error = %e, "upload refused by the server; kept spooled and journaled, not retried (SIGHUP or `bridgefs pending retry` tries again)");
                Err(e)
            }
            Err(e) => {
                self.counters
                    .upload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = ?record.display_path, error = %e, "upload failed; the bytes stay spooled and journaled and will be retried");
                self.spawn_retry(ino);
                Err(e)
            }
        }
    }

    fn spawn_retry(self: &Arc<Self>, ino: Ino) {
        if !self.state.lock().retrying.insert(ino) {
            return;
        }
        let fs = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                tokio::time::sleep(delay).await;
                let alive = {
                    let st = fs.state.lock();
                    st.table
                        .get(ino)
                        .is_some_and(|n| !n.gone && n.local.as_ref().is_some_and(|l| l.dirty()))
                };
                if !alive {
                    break;
                }
                // A failing commit finds this retry registered and spawns none.
                match fs.commit(ino).await {
                    Ok(()) => {
                        fs.release_local_if_idle(ino);
                        break;
                    }
                    Err(e) if e.is_permanent() => break,
                    Err(_) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            fs.state.lock().retrying.remove(&ino);
        });
    }

    /// Waits for an upload of `ino` under way and holds off the next one
    /// (the guard), then reads the file's identity: the upload may have
    /// given it a remote one, or a new one.
    async fn settle(
        &self,
        ino: Ino,
    ) -> FsResult<(Option<tokio::sync::OwnedMutexGuard<()>>, bool, Entry)> {
        let local = self.local_of(ino);
        let guard = match local {
            Some(l) => Some(l.upload.clone().lock_owned().await),
            None => None,
        };
        let st = self.state.lock();
        let n = st.table.get(ino).ok_or(FsError::NotFound)?;
        Ok((guard, n.is_remote(), n.entry.clone()))
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        let ino = self.resolve(parent, name).await?;
        let (bidx, backend, entry) = self.remote_of(ino)?;
        if entry.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        // Wait for an upload under way, or it would bring the file back.
        let (_upload, is_remote, entry) = self.settle(ino).await?;
        if is_remote {
            let (_, _, dir) = self.remote_of(parent)?;
            backend.remove(&dir.key, &entry).await?;
        }
        let mut st = self.state.lock();
        if let Some(l) = st.cache.any(parent) {
            l.remove(name);
        }
        st.hidden.remove(&(parent, name.to_string()));
        st.table.mark_gone(ino);
        let spool = st.table.get_mut(ino).and_then(|n| n.local.take());
        st.locals.remove(&ino);
        Self::invalidate_views(&mut st, bidx);
        drop(st);
        if let Some(local) = spool {
            self.forget_spool(&local);
        }
        Ok(())
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        newparent: Ino,
        newname: &str,
        flags: u32,
    ) -> FsResult<()> {
        names::check_local(newname)?;
        if parent == ROOT || newparent == ROOT {
            return Err(FsError::NotPermitted);
        }
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::NotSupported);
        }
        let src = self.resolve(parent, name).await?;
        let (bidx, backend, entry) = self.remote_of(src)?;
        let (to_bidx, _, to_dir) = self.remote_of(newparent)?;
        if to_bidx != bidx {
            return Err(FsError::CrossDevice);
        }
        let target = match self.resolve(newparent, newname).await {
            Ok(t) => Some(t),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if target == Some(src) {
            return Ok(());
        }
        if target.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let target_entry = match target {
            Some(t) => {
                let (_, _, te) = self.remote_of(t)?;
                match (entry.kind, te.kind) {
                    (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
                    (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
                    (Kind::Dir, Kind::Dir) => {
                        self.ensure_listing(t).await?;
                        if self
                            .state
                            .lock()
                            .cache
                            .any(t)
                            .is_some_and(|l| !l.entries.is_empty())
                        {
                            return Err(FsError::NotEmpty);
                        }
                    }
                    _ => {}
                }
                Some(te)
            }
            None => None,
        };
        let (_, _, from_dir) = self.remote_of(parent)?;
        // Hold the file's upload so it cannot go out under the old name.
        let (_upload, src_remote, entry) = self.settle(src).await?;
        let src_local = self.local_of(src);
        let new_entry = if src_remote {
            Some(
                backend
                    .rename(
                        &entry,
                        &from_dir.key,
                        &to_dir.key,
                        &names::to_remote(newname),
                        target_entry.as_ref(),
                    )
                    .await?,
            )
        } else {
            // Not uploaded yet: a local move. A replaced remote target stays
            // on the remote until the pending upload overwrites it, so no
            // failure can leave neither the old bytes nor the new.
            target_entry
                .as_ref()
                .filter(|te| !te.key.starts_with(LOCAL_KEY_PREFIX))
                .cloned()
        };
        let mut st = self.state.lock();
        if let Some(l) = st.cache.any(parent) {
            l.remove(name);
        }
        st.hidden.remove(&(parent, name.to_string()));
        let mut replaced_spool = None;
        if let Some(t) = target {
            st.table.mark_gone(t);
            replaced_spool = st.table.get_mut(t).and_then(|n| n.local.take());
            st.locals.remove(&t);
        }
        if let Some(e) = new_entry {
            st.table.rebind(src, e);
        }
        if let Some(n) = st.table.get_mut(src) {
            n.parent = newparent;
            n.name = newname.to_string();
            n.hidden = false;
        }
        if let Some(l) = st.cache.any(newparent) {
            l.insert(newname.to_string(), src);
        }
        st.cache.clear_negative(newparent, newname);
        Self::invalidate_views(&mut st, bidx);
        // Keep a pending record pointing where the file now is.
        let moved_record = src_local
            .as_ref()
            .filter(|l| l.journaled())
            .and_then(|_| self.pending_record(&st, src));
        drop(st);
        if let Some(local) = replaced_spool {
            self.forget_spool(&local);
        }
        if let Some(rec) = moved_record {
            if let Err(e) = self.journal.record(&rec) {
                tracing::error!(path = ?rec.display_path, error = %e, "cannot update journal record");
            }
        }
        Ok(())
    }

    // ----- extended attributes --------------------------------------------

    fn xattr_target(&self, ino: Ino) -> FsResult<(Arc<dyn Backend>, Entry)> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        match node.backend {
            Some(b) if node.is_remote() => Ok((self.mounts[b].backend.clone(), node.entry.clone())),
            _ => Err(FsError::NoData),
        }
    }

    pub async fn listxattr(&self, ino: Ino) -> FsResult<Vec<String>> {
        match self.xattr_target(ino) {
            Ok((b, e)) => b.xattr_list(&e).await,
            Err(FsError::NoData) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `user.bridgefs.*` is the backends'; any other `user.*` name simply
    /// is not there (ENODATA). The namespaces bridgefs does not implement
    /// (`security.*`, `system.*`, `trusted.*`) answer ENOTSUP: `ls -l` then
    /// stops asking for them for the rest of a listing, where ENODATA makes
    /// it ask again for every entry.
    pub async fn getxattr(&self, ino: Ino, name: &str) -> FsResult<Vec<u8>> {
        if let Some(answer) = self.getxattr_cached(name) {
            return answer;
        }
        let (b, e) = self.xattr_target(ino)?;
        b.xattr_get(&e, name).await
    }

    pub async fn setxattr(&self, ino: Ino, name: &str, value: Option<&[u8]>) -> FsResult<()> {
        if !name.starts_with(XATTR_PREFIX) {
            return Err(FsError::NotSupported);
        }
        let (b, e) = self.xattr_target(ino).map_err(|_| FsError::NotSupported)?;
        b.xattr_set(&e, name, value).await
    }

    // ----- lifecycle ------------------------------------------------------

    /// Forgets cached listings and content (SIGHUP: a manual refresh).
    pub fn refresh(&self) {
        self.state.lock().cache.clear();
        self.blocks.clear();
    }

    /// Uploads every closed-but-not-uploaded file of an earlier run, before
    /// serving. Returns (uploaded, still pending).
    pub async fn recover(&self) -> (usize, usize) {
        let pending = self.journal.pending();
        // Spool files no record names are leftovers of files in sync.
        let kept: HashSet<PathBuf> = pending.iter().map(|r| r.spool.clone()).collect();
        let removed = self.spool.remove_unlisted(&kept);
        if removed > 0 {
            tracing::info!(files = removed, "removed leftover spool files");
        }
        let (mut done, mut left) = (0, 0);
        for rec in pending {
            if !rec.spool.exists() {
                self.set_aside_orphan(&rec);
                continue;
            }
            if rec.refused.is_some() {
                tracing::info!(path = ?rec.display_path, reason = ?rec.refused, "kept an upload the server refused; not retried (SIGHUP or `bridgefs pending retry` tries again)");
                self.refused_at_start.lock().push(rec);
                left += 1;
                continue;
            }
            if self.recover_record(rec).await {
                done += 1;
            } else {
                left += 1;
            }
        }
        (done, left)
    }

    /// Uploads one journal record; true when it went up. A refusal marks
    /// the record and keeps it for `status` and a later retry.
    async fn recover_record(&self, rec: PendingUpload) -> bool {
        match self.recover_one(&rec).await {
            Ok(()) => {
                tracing::info!(path = ?rec.display_path, "recovered pending upload from the journal");
                self.journal.remove(&rec.id);
                let _ = std::fs::remove_file(&rec.spool);
                true
            }
            Err(e) => {
                tracing::error!(path = ?rec.display_path, error = %e, "pending upload still failing; kept in the journal");
                if e.is_permanent() {
                    let rec = PendingUpload {
                        refused: Some(e.to_string()),
                        ..rec
                    };
                    let _ = self.journal.record(&rec);
                    self.refused_at_start.lock().push(rec);
                }
                false
            }
        }
    }

    /// A record whose bytes are gone can never upload: reported once, then
    /// kept aside for `bridgefs pending list|drop`, never retried.
    fn set_aside_orphan(&self, rec: &PendingUpload) {
        tracing::error!(
            path = ?rec.display_path,
            id = %rec.id,
            "pending upload lost its spool file; set aside (see `bridgefs pending list`)"
        );
        if let Err(e) = self.journal.mark_orphaned(&rec.id) {
            tracing::error!(id = %rec.id, error = %e, "cannot set the journal record aside");
        }
    }

    async fn recover_one(&self, rec: &PendingUpload) -> FsResult<()> {
        let m = self
            .mounts
            .iter()
            .find(|m| m.name == rec.backend)
            .ok_or_else(|| {
                FsError::Io(format!("backend {} is no longer configured", rec.backend))
            })?;
        if !rec.spool.exists() {
            return Err(FsError::Io(format!(
                "spool file {} is missing",
                rec.spool.display()
            )));
        }
        let listing = m.backend.list(&rec.dir_key).await?;
        // The object it replaces: by key, else by name (an upload that did
        // reach the server before the crash is replaced, not duplicated).
        let existing = listing
            .iter()
            .find(|e| Some(&e.key) == rec.existing_key.as_ref())
            .or_else(|| {
                listing
                    .iter()
                    .find(|e| e.kind == Kind::File && e.name == rec.name)
            });
        m.backend
            .upload(&rec.dir_key, &rec.name, existing, &rec.spool)
            .await?;
        Ok(())
    }

    /// Uploads every dirty file (SIGTERM, unmount), waiting at most `wait`;
    /// what is left stays journaled for the next start.
    pub async fn shutdown(self: &Arc<Self>, wait: Duration) -> usize {
        let dirty = self.locals_where(|n, l| !n.gone && l.dirty());
        if dirty.is_empty() {
            return 0;
        }
        tracing::info!(files = dirty.len(), "uploading pending files before exit");
        let uploads = futures::stream::iter(dirty.iter().map(|i| {
            let fs = self.clone();
            let ino = *i;
            async move { fs.commit(ino).await }
        }))
        .buffer_unordered(4)
        .collect::<Vec<_>>();
        let _ = tokio::time::timeout(wait, uploads).await;
        let left = {
            let st = self.state.lock();
            dirty
                .iter()
                .filter(|i| {
                    st.table
                        .get(**i)
                        .is_some_and(|n| n.local.as_ref().is_some_and(|l| l.dirty()))
                })
                .count()
        };
        if left > 0 {
            tracing::warn!(
                files = left,
                "files not uploaded before exit stay in the journal for the next start"
            );
        }
        left
    }

    /// The journal record of a spooled file: where its bytes go.
    fn pending_record(&self, st: &State, ino: Ino) -> Option<PendingUpload> {
        let node = st.table.get(ino)?;
        let local = node.local.as_ref()?;
        let b = node.backend?;
        let dir = st.table.get(node.parent)?;
        Some(PendingUpload {
            id: local.id.clone(),
            backend: self.mounts[b].name.clone(),
            dir_key: dir.entry.key.clone(),
            name: names::to_remote(&node.name),
            existing_key: node.is_remote().then(|| node.entry.key.clone()),
            spool: local.path.clone(),
            display_path: Self::display_path(st, ino),
            refused: local.refused().map(|e| e.to_string()),
        })
    }

    /// Records every dirty file in the journal (SIGTERM: nothing written is
    /// lost even if its upload is still under way at exit).
    pub fn journal_dirty(&self) {
        let records: Vec<PendingUpload> = {
            let st = self.state.lock();
            st.locals
                .iter()
                .filter(|ino| {
                    st.table
                        .get(**ino)
                        .is_some_and(|n| !n.gone && n.local.as_ref().is_some_and(|l| l.dirty()))
                })
                .filter_map(|ino| self.pending_record(&st, *ino))
                .collect()
        };
        // Written (and fsynced) with no lock held.
        for rec in records {
            if let Err(e) = self.journal.record(&rec) {
                tracing::error!(path = ?rec.display_path, error = %e, "cannot journal pending upload");
            }
        }
    }

    /// Counters by name, the number of files not uploaded yet, and of inodes.
    /// Block cache hits, misses and size, for metrics.
    pub fn block_cache_stats(&self) -> super::reader::BlockCacheStats {
        self.blocks.stats()
    }

    /// The path users know (`library/report.pdf`) of the file whose bytes
    /// are spooled at `spool`, if one is open or pending here.
    pub fn display_path_of_spool(&self, spool: &Path) -> Option<String> {
        let st = self.state.lock();
        st.locals
            .iter()
            .find(|i| {
                st.table
                    .get(**i)
                    .and_then(|n| n.local.as_ref())
                    .is_some_and(|l| l.path == spool)
            })
            .map(|i| Self::display_path(&st, *i))
    }

    pub fn snapshot(&self) -> (std::collections::BTreeMap<String, u64>, usize, usize) {
        let c = &self.counters;
        let counters = [
            ("lookups", &c.lookups),
            ("listings", &c.listings),
            ("reads", &c.reads),
            ("bytes_read", &c.bytes_read),
            ("bytes_written", &c.bytes_written),
            ("uploads", &c.uploads),
            ("upload_failures", &c.upload_failures),
            ("conflicts", &c.conflicts),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed)))
        .collect();
        let st = self.state.lock();
        let pending = st
            .locals
            .iter()
            .filter(|i| {
                st.table
                    .get(**i)
                    .is_some_and(|n| n.local.as_ref().is_some_and(|l| l.dirty()))
            })
            .count();
        (counters, pending, st.table.len())
    }

    /// Backend names, for `status` and logs.
    pub fn mount_names(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.name.clone()).collect()
    }
}

/// Attempts of one creating call (a new file's upload, a mkdir) before the
/// error is reported; with growing pauses they span about 3 s, enough to
/// ride out a burst of 503/429/dropped answers (the background retry of a
/// file goes on after that).
const CREATE_ATTEMPTS: u32 = 6;

/// Uploads a spooled file: a new one through [`create_informed`]; a
/// replacing upload is not repeated here (its background retry is).
async fn upload_informed(
    backend: &Arc<dyn Backend>,
    rec: &PendingUpload,
    existing: Option<&Entry>,
) -> FsResult<Entry> {
    if existing.is_some() {
        return backend
            .upload(&rec.dir_key, &rec.name, existing, &rec.spool)
            .await;
    }
    create_informed(backend, &rec.dir_key, &rec.name, Kind::File, || {
        backend.upload(&rec.dir_key, &rec.name, None, &rec.spool)
    })
    .await
}

/// Runs a creating call that the HTTP client never repeats blindly (its
/// answer may have been lost after the server acted). After a transient
/// failure the parent is re-read: an entry of that name and kind is what
/// the failed call created, and is adopted; otherwise the call is tried
/// again. A 409 after such a failure means the same. A 409 on the first
/// attempt is a real EEXIST.
async fn create_informed<F, Fut>(
    backend: &Arc<dyn Backend>,
    dir: &Key,
    name: &str,
    kind: Kind,
    create: F,
) -> FsResult<Entry>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = FsResult<Entry>>,
{
    let mut attempt = 1;
    loop {
        let err = match create().await {
            Ok(e) => return Ok(e),
            Err(e) => e,
        };
        let after_failure = attempt > 1 && matches!(err, FsError::Exists);
        if !(is_transient(&err) || after_failure) || attempt >= CREATE_ATTEMPTS {
            return Err(err);
        }
        tracing::warn!(name = ?name, error = %err, attempt, "creating call failed; re-reading the folder before trying again");
        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        attempt += 1;
        if let Ok(list) = backend.list(dir).await {
            if let Some(found) = list.into_iter().find(|x| x.kind == kind && x.name == name) {
                return Ok(found);
            }
        }
        if after_failure {
            return Err(err);
        }
    }
}

/// True when two looks at one remote object saw the same content: by its
/// version where the API has one, else by size and time.
fn same_version(a: &Entry, b: &Entry) -> bool {
    match (&a.version, &b.version) {
        (Some(x), Some(y)) => x == y,
        _ => a.size == b.size && a.mtime == b.mtime,
    }
}

/// Failures worth another attempt (5xx, 429, connection, timeout).
fn is_transient(e: &FsError) -> bool {
    match e {
        FsError::Io(_) | FsError::TimedOut(_) | FsError::TryAgain(_) => true,
        FsError::NotFound
        | FsError::Exists
        | FsError::NotEmpty
        | FsError::NotDir
        | FsError::IsDir
        | FsError::ReadOnly
        | FsError::NotPermitted
        | FsError::AccessDenied(_)
        | FsError::CrossDevice
        | FsError::Invalid(_)
        | FsError::NameTooLong
        | FsError::TooBig
        | FsError::NoData
        | FsError::NotSupported
        | FsError::Range
        | FsError::BadHandle
        | FsError::NoSuchIoctl
        | FsError::LeftToKernel
        | FsError::NoSpace
        | FsError::Stale => false,
    }
}

/// Fills the sizes a listing lacks with `stat`, several at once.
async fn fill_sizes(backend: &Arc<dyn Backend>, entries: &mut [Entry]) {
    let missing: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File && e.size.is_none())
        .map(|(i, _)| i)
        .collect();
    if missing.is_empty() {
        return;
    }
    let results: Vec<(usize, FsResult<Entry>)> =
        futures::stream::iter(missing.into_iter().map(|i| {
            let backend = backend.clone();
            let e = entries[i].clone();
            async move { (i, backend.stat(&e).await) }
        }))
        .buffer_unordered(STAT_CONCURRENCY)
        .collect()
        .await;
    for (i, r) in results {
        match r {
            Ok(fresh) => {
                entries[i].size = fresh.size;
                entries[i].mtime = fresh.mtime.or(entries[i].mtime);
            }
            Err(e) => {
                tracing::warn!(name = ?entries[i].name, error = %e, "no size for listed file")
            }
        }
    }
}
