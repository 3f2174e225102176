//! Directories: opendir (a snapshot per handle), readdir, mkdir, rmdir.

use crate::fs::backend::Kind;
use crate::fs::core::{Attr, BridgeFs, DirItem, Handle, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::{Ino, ROOT};
use crate::fs::namespace::names;
use crate::fs::writeback::upload::create_informed;
use std::sync::Arc;

impl BridgeFs {
    /// Snapshots a directory for readdir (`.` and `..` first).
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        self.ensure_listing(ino).await?;
        self.snapshot_dir(&mut self.state.lock(), ino)
    }

    /// A directory handle holding the listing as it is now.
    pub(in crate::fs) fn snapshot_dir(&self, st: &mut State, ino: Ino) -> FsResult<u64> {
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
        Ok(self.handles.lock().insert(Handle::Dir(Arc::new(items))))
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
        let items = match self.handles.lock().get(&fh) {
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
        self.handles.lock().remove(&fh);
    }

    /// mkdir(2): one creating call; the new folder's listing is known (it
    /// is empty) until the metadata TTL ends, like any listing.
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
        let attr = Self::attr_locked(&st, ino);
        drop(st);
        // A folder just made holds nothing: its listing is known without
        // a call (`cp -r` looks up every name it is about to create).
        self.install_listing(ino, bidx, Vec::new());
        self.touch_dir(parent);
        attr
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
        Self::drop_name(&mut st, parent, name);
        st.cache.invalidate(ino);
        st.table.mark_gone(ino);
        Self::invalidate_views(&mut st, bidx);
        drop(st);
        self.overlay.remove(&self.mounts[bidx].name, &entry.key);
        self.touch_dir(parent);
        Ok(())
    }
}
