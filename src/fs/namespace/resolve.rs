//! Name resolution: a (parent, name) pair to an inode, from the cached
//! listing when it is fresh, else by listing the parent.

use crate::fs::backend::Kind;
use crate::fs::core::{Attr, BridgeFs, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::{Ino, ROOT};

impl BridgeFs {
    /// The top-level directory named `name`.
    pub(in crate::fs) fn top_level(&self, st: &State, name: &str) -> FsResult<Ino> {
        self.mounts
            .iter()
            .position(|m| m.name == name)
            .and_then(|b| st.table.by_key(b, &self.mounts[b].backend.root()))
            .ok_or(FsError::NotFound)
    }

    /// What the caches alone know of `name` in `parent` (its listing, the
    /// hidden names found before, the negative entries); `None`: only the
    /// remote can tell.
    pub(in crate::fs) fn cached_name(
        st: &mut State,
        parent: Ino,
        name: &str,
    ) -> Option<FsResult<Ino>> {
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
    pub(in crate::fs) async fn resolve(&self, parent: Ino, name: &str) -> FsResult<Ino> {
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
    pub(in crate::fs) fn needs_stat(node: &crate::fs::namespace::inode::Node) -> bool {
        node.entry.kind == Kind::File
            && node.local.is_none()
            && node.entry.size.is_none()
            && node.is_remote()
    }

    /// Attributes, asking the backend for a size the listing lacked.
    pub(in crate::fs) async fn fresh_attr(&self, ino: Ino) -> FsResult<Attr> {
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
}
