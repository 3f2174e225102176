//! Inodes: one stable number per remote object (kept across re-listings and
//! renames), with the kernel's lookup count so FORGET can free them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::fs::backend::{Entry, Key, Kind};
use crate::fs::namespace::overlay::Attrs;
use crate::fs::writeback::spool::LocalFile;

pub type Ino = u64;

/// The mount's root directory.
pub const ROOT: Ino = 1;

/// Prefix of keys of files that exist only locally (created, not uploaded).
pub const LOCAL_KEY_PREFIX: &str = "\u{0}local:";

#[derive(Debug)]
pub struct Node {
    pub ino: Ino,
    pub parent: Ino,
    /// The name shown in the parent directory.
    pub name: String,
    /// Index of the backend; `None` for the root.
    pub backend: Option<usize>,
    pub entry: Entry,
    /// Reached through `lookup_hidden` (a view or an on-demand item), so not
    /// part of the parent's listing.
    pub hidden: bool,
    /// Kept whatever the kernel says (root and backend roots).
    pub pinned: bool,
    /// Lookups the kernel holds (FORGET gives them back).
    pub lookups: u64,
    pub open_handles: u32,
    /// Spooled content of a file being written or not yet uploaded.
    pub local: Option<Arc<LocalFile>>,
    /// Changes whenever the content may have changed (read cache key).
    pub content_version: u64,
    /// Removed remotely or by unlink; kept only while the kernel holds it.
    pub gone: bool,
    pub refreshed: Instant,
    /// A re-listing saw a new remote version while the file was open: it
    /// is taken when the last handle closes, so that a reader's `stat` and
    /// bytes stay those of the version it opened.
    pub stale: bool,
    /// Read handles pinned to the current version and not yet closed.
    pub readers: u32,
    /// Created through this mount (a new file, not one found remotely):
    /// when it is saved over another file, its own remote copy is deleted
    /// for good rather than sent to a trash.
    pub created_here: bool,
    /// Times, mode and owner set locally (see `crate::fs::namespace::overlay`);
    /// boxed, as most nodes have none (a listed entry stays small).
    pub attrs: Option<Box<Attrs>>,
}

impl Node {
    /// True when the object exists on the remote (not only in the spool).
    pub fn is_remote(&self) -> bool {
        !self.entry.key.starts_with(LOCAL_KEY_PREFIX)
    }

    pub fn is_dir(&self) -> bool {
        self.entry.kind == Kind::Dir
    }

    /// The locally set attributes (none set: all `None`).
    pub fn attrs(&self) -> Attrs {
        self.attrs.as_deref().copied().unwrap_or_default()
    }

    /// The locally set attributes, to change them.
    pub fn attrs_mut(&mut self) -> &mut Attrs {
        self.attrs.get_or_insert_with(Default::default)
    }

    /// Replaces the locally set attributes.
    pub fn set_attrs(&mut self, attrs: Attrs) {
        self.attrs = (attrs != Attrs::default()).then(|| Box::new(attrs));
    }

    /// Whether garbage collection may drop this node.
    pub fn collectable(&self) -> bool {
        !self.pinned && self.lookups == 0 && self.open_handles == 0 && self.local.is_none()
    }
}

/// All live inodes and the index from remote identity to inode.
#[derive(Default)]
pub struct InodeTable {
    nodes: HashMap<Ino, Node>,
    by_key: HashMap<(usize, Key), Ino>,
    next: Ino,
    next_version: u64,
    /// Inodes whose remote content a re-listing found changed, for the
    /// kernel to forget (drained by [`InodeTable::take_changed`]).
    changed: Vec<Ino>,
}

impl InodeTable {
    /// The inodes found changed since the last call.
    pub fn take_changed(&mut self) -> Vec<Ino> {
        std::mem::take(&mut self.changed)
    }

    pub fn new() -> Self {
        InodeTable {
            next: ROOT + 1,
            ..Default::default()
        }
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn by_key(&self, backend: usize, key: &str) -> Option<Ino> {
        self.by_key.get(&(backend, key.to_string())).copied()
    }

    /// A fresh content version number.
    pub fn bump_version(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// Makes room for the entries of a listing not known yet, in one
    /// allocation (growing by doubling would hold two tables at once).
    pub fn reserve_for(&mut self, backend: usize, entries: &[Entry]) {
        let new = entries
            .iter()
            .filter(|e| !self.by_key.contains_key(&(backend, e.key.clone())))
            .count();
        self.nodes.reserve(new);
        self.by_key.reserve(new);
    }

    /// Inserts the root with a fixed number.
    pub fn insert_root(&mut self, entry: Entry) {
        let version = self.bump_version();
        self.nodes.insert(
            ROOT,
            Node {
                ino: ROOT,
                parent: ROOT,
                name: String::new(),
                backend: None,
                entry,
                hidden: false,
                pinned: true,
                lookups: 1,
                open_handles: 0,
                local: None,
                content_version: version,
                gone: false,
                stale: false,
                readers: 0,
                created_here: false,
                attrs: None,
                refreshed: Instant::now(),
            },
        );
    }

    /// Finds the node of a remote object or creates one; updates what the
    /// remote says of it (name, parent, attributes).
    pub fn upsert(
        &mut self,
        backend: usize,
        parent: Ino,
        name: String,
        entry: Entry,
        hidden: bool,
    ) -> Ino {
        if let Some(ino) = self.by_key(backend, &entry.key) {
            let version = self.next_version + 1;
            let node = self.nodes.get_mut(&ino).expect("indexed node exists");
            let changed = node.entry.size != entry.size
                || node.entry.mtime != entry.mtime
                || node.entry.version != entry.version;
            node.parent = parent;
            node.name = name;
            node.hidden = hidden;
            node.gone = false;
            node.refreshed = Instant::now();
            if changed && node.local.is_none() && node.readers > 0 {
                node.stale = true;
                return ino;
            }
            if node.local.is_none() {
                node.stale = false;
                // A file being written keeps its local size and times.
                node.entry = entry;
                if changed {
                    node.content_version = version;
                    self.next_version = version;
                    self.changed.push(ino);
                }
            }
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        let version = self.bump_version();
        self.by_key.insert((backend, entry.key.clone()), ino);
        self.nodes.insert(
            ino,
            Node {
                ino,
                parent,
                name,
                backend: Some(backend),
                entry,
                hidden,
                pinned: false,
                lookups: 0,
                open_handles: 0,
                local: None,
                content_version: version,
                gone: false,
                stale: false,
                readers: 0,
                created_here: false,
                attrs: None,
                refreshed: Instant::now(),
            },
        );
        ino
    }

    /// Points a node at a new remote identity (after an upload that replaced
    /// the object, or a restore out of a view).
    pub fn rebind(&mut self, ino: Ino, entry: Entry) {
        let version = self.bump_version();
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let Some(backend) = node.backend else { return };
        let old = (backend, node.entry.key.clone());
        if self.by_key.get(&old) == Some(&ino) {
            self.by_key.remove(&old);
        }
        // Another node may hold the new key (a replaced target): it is gone.
        if let Some(other) = self.by_key.insert((backend, entry.key.clone()), ino) {
            if other != ino {
                if let Some(o) = self.nodes.get_mut(&other) {
                    o.gone = true;
                }
            }
        }
        let node = self.nodes.get_mut(&ino).expect("node exists");
        node.entry = entry;
        node.content_version = version;
        node.gone = false;
        node.refreshed = Instant::now();
    }

    /// Marks a node removed: out of the key index, kept while referenced.
    pub fn mark_gone(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.gone = true;
            if let Some(b) = node.backend {
                let k = (b, node.entry.key.clone());
                if self.by_key.get(&k) == Some(&ino) {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    /// Inserts a pinned directory node (a backend's root).
    pub fn insert_pinned(&mut self, backend: usize, name: String, entry: Entry) -> Ino {
        let ino = self.upsert(backend, ROOT, name, entry, false);
        self.nodes.get_mut(&ino).expect("just inserted").pinned = true;
        ino
    }

    /// Inserts a node for a local-only file.
    pub fn insert_local(
        &mut self,
        backend: usize,
        parent: Ino,
        name: String,
        entry: Entry,
        local: Arc<LocalFile>,
    ) -> Ino {
        let ino = self.upsert(backend, parent, name, entry, false);
        self.nodes.get_mut(&ino).expect("just inserted").local = Some(local);
        ino
    }

    /// Drops every collectable node not in `keep`.
    pub fn collect(&mut self, keep: &std::collections::HashSet<Ino>) -> usize {
        let doomed: Vec<Ino> = self
            .nodes
            .values()
            .filter(|n| n.collectable() && !keep.contains(&n.ino))
            .map(|n| n.ino)
            .collect();
        for ino in &doomed {
            if let Some(node) = self.nodes.remove(ino) {
                if let Some(b) = node.backend {
                    let k = (b, node.entry.key);
                    if self.by_key.get(&k) == Some(ino) {
                        self.by_key.remove(&k);
                    }
                }
            }
        }
        doomed.len()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }
}
