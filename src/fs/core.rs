//! The filesystem: every FUSE operation as a plain async method returning
//! plain structs or an [`FsError`]. The fuser adapter (`crate::fuse`) only
//! translates; everything with meaning lives here and in the backends.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::fs::backend::{fallback_time, Backend, Entry, Kind};
use crate::fs::background::Background;
use crate::fs::content::BlockCache;
use crate::fs::error::{FsError, FsResult};
use crate::fs::handles::Handles;
pub(in crate::fs) use crate::fs::handles::{FileHandle, Handle, Pinned};
use crate::fs::namespace::cache::MetaCache;
use crate::fs::namespace::inode::{Ino, InodeTable, Node, ROOT};
use crate::fs::namespace::local_only::LocalOnly;
use crate::fs::namespace::overlay::Overlay;
use crate::fs::ops::save::Vacancy;
use crate::fs::writeback::spool::LocalFile;
use crate::fs::writeback::WriteBack;

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
    pub atime: SystemTime,
    /// Set by `chown`; `None`: the mount's owner.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
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
    /// Names whose files are never uploaded.
    pub local_only: LocalOnly,
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

pub(in crate::fs) struct State {
    pub(in crate::fs) table: InodeTable,
    pub(in crate::fs) cache: MetaCache,
    /// Nodes with spooled content.
    pub(in crate::fs) locals: HashSet<Ino>,
    /// Names found by `lookup_hidden`: (parent, name) → inode.
    pub(in crate::fs) hidden: HashMap<(Ino, String), Ino>,
    /// Directories inside hidden views: re-listed after any change.
    pub(in crate::fs) view_dirs: HashSet<Ino>,
    /// Names whose remote file was renamed to a local-only name (an
    /// editor's backup), waiting for the editor to write the new version:
    /// (directory, name) → the remote file.
    pub(in crate::fs) vacated: HashMap<(Ino, String), Vacancy>,
}

pub struct BridgeFs {
    pub(in crate::fs) mounts: Vec<Mounted>,
    pub(in crate::fs) state: Mutex<State>,
    /// Open file and directory handles: their own lock, taken after
    /// `state` when both are needed (never the other way round).
    pub(in crate::fs) handles: Mutex<Handles>,
    pub(in crate::fs) locks: Mutex<HashMap<Ino, Arc<tokio::sync::Mutex<()>>>>,
    pub(in crate::fs) blocks: Arc<BlockCache>,
    /// Set once mounted: how the core tells the kernel to drop what it
    /// cached.
    pub(in crate::fs) kernel: parking_lot::RwLock<Option<Arc<dyn super::kernel::KernelCache>>>,
    /// The write-back component: spool, journal and their own state.
    pub(in crate::fs) writeback: WriteBack,
    pub(in crate::fs) overlay: Overlay,
    pub(in crate::fs) opts: FsOptions,
    /// The daemon's runtime: the core's own tasks run there.
    pub(in crate::fs) background: Background,
    pub counters: Counters,
}

impl BridgeFs {
    pub fn new(mounts: Vec<Mounted>, opts: FsOptions) -> FsResult<Arc<BridgeFs>> {
        let writeback = WriteBack::open(&opts.cache_dir, &opts.state_dir)?;
        let overlay = Overlay::open(&opts.state_dir)
            .map_err(|e| FsError::Io(format!("state dir {}: {e}", opts.state_dir.display())))?;
        let background = Background::current()?;
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
                locals: HashSet::new(),
                hidden: HashMap::new(),
                view_dirs: HashSet::new(),
                vacated: HashMap::new(),
            }),
            handles: Mutex::new(Handles::default()),
            locks: Mutex::new(HashMap::new()),
            blocks: Arc::new(BlockCache::new(opts.read_cache_bytes, background.clone())),
            kernel: Default::default(),
            mounts,
            writeback,
            overlay,
            opts,
            background,
            counters: Counters::default(),
        }))
    }

    pub(in crate::fs) fn lock_for(&self, ino: Ino) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(ino).or_default().clone()
    }

    /// (backend index, backend, entry) of a node below a backend.
    /// The spool of `ino`, if it has one.
    pub(in crate::fs) fn local_of(&self, ino: Ino) -> Option<Arc<LocalFile>> {
        self.state
            .lock()
            .table
            .get(ino)
            .and_then(|n| n.local.clone())
    }

    /// The backend serving `ino` (no copy of its entry: reads ask this).
    pub(in crate::fs) fn backend_of(&self, ino: Ino) -> FsResult<Arc<dyn Backend>> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let b = node.backend.ok_or(FsError::NotPermitted)?;
        Ok(self.mounts[b].backend.clone())
    }

    pub(in crate::fs) fn remote_of(&self, ino: Ino) -> FsResult<(usize, Arc<dyn Backend>, Entry)> {
        let st = self.state.lock();
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let b = node.backend.ok_or(FsError::NotPermitted)?;
        Ok((b, self.mounts[b].backend.clone(), node.entry.clone()))
    }

    pub(in crate::fs) fn attr_locked(st: &State, ino: Ino) -> FsResult<Attr> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let (e, set) = (&node.entry, node.attrs());
        let mtime = set.mtime.or(e.mtime).unwrap_or_else(fallback_time);
        let (size, perm, nlink) = match e.kind {
            Kind::Dir => (4096, if e.writable { 0o755 } else { 0o555 }, 2),
            Kind::File => (
                node.local
                    .as_ref()
                    .map(|l| l.size())
                    .or(e.size)
                    .unwrap_or(0),
                if e.writable { 0o644 } else { 0o444 },
                // Unlinked, still open (or replaced by a rename).
                u32::from(!node.gone),
            ),
        };
        let ctime = e.ctime.unwrap_or(mtime).max(mtime);
        let valid_for = st.cache.remaining(node.parent).unwrap_or(st.cache.ttl);
        Ok(Attr {
            ino,
            kind: e.kind,
            size,
            mtime,
            atime: set.atime.unwrap_or(mtime),
            ctime: set.ctime.map_or(ctime, |c| c.max(ctime)),
            perm: set.mode.map_or(perm, |m| m & 0o7777),
            nlink,
            uid: set.uid,
            gid: set.gid,
            valid_for,
        })
    }

    /// A file that is never uploaded: not on the remote, and named by a
    /// `mount.local_only` pattern.
    pub(in crate::fs) fn is_local_only(&self, node: &Node) -> bool {
        !node.is_remote() && !node.is_dir() && self.opts.local_only.matches(&node.name)
    }

    pub(in crate::fs) fn display_path(st: &State, mut ino: Ino) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(n) = st.table.get(ino) else { break };
            parts.push(n.name.clone());
            ino = n.parent;
        }
        parts.reverse();
        parts.join("/")
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
    pub(in crate::fs) fn tell_kernel(&self, entries: Vec<(Ino, String)>, inodes: Vec<Ino>) {
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
        drop(self.background.blocking(forget));
    }

    /// Forgets cached listings and content (SIGHUP: a manual refresh).
    pub fn refresh(&self) {
        let missing = {
            let mut st = self.state.lock();
            let missing = st.cache.negative_names();
            st.cache.clear();
            // Unreferenced inodes go too (the kernel holds the rest).
            let mut keep: HashSet<Ino> = st.locals.iter().copied().collect();
            keep.extend(st.hidden.values().copied());
            let dropped = st.table.collect(&keep);
            let hidden: HashSet<Ino> = keep;
            st.hidden.retain(|_, i| hidden.contains(i));
            tracing::debug!(dropped, "inode table trimmed by SIGHUP");
            missing
        };
        // The kernel keeps missing names as long as the daemon did.
        self.tell_kernel(missing, Vec::new());
        self.blocks.clear();
        for m in &self.mounts {
            m.backend.forget_memos();
        }
    }

    /// Counters by name, the number of files not uploaded yet, and of inodes.
    /// Block cache hits, misses and size, for metrics.
    pub fn block_cache_stats(&self) -> crate::fs::content::BlockCacheStats {
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

    /// The write-back component's disk syncs: (count, microseconds).
    pub fn disk_syncs(&self) -> (u64, u64) {
        self.writeback.journal.syncs().figures()
    }

    /// Backend names, for `status` and logs.
    pub fn mount_names(&self) -> Vec<String> {
        self.mounts.iter().map(|m| m.name.clone()).collect()
    }
}

/// True when two looks at one remote object saw the same content: by its
/// version where the API has one, else by size and time.
pub(in crate::fs) fn same_version(a: &Entry, b: &Entry) -> bool {
    match (&a.version, &b.version) {
        (Some(x), Some(y)) => x == y,
        _ => a.size == b.size && a.mtime == b.mtime,
    }
}
