//! lookup, forget, getattr and setattr.

use crate::fs::core::{Attr, BridgeFs, Handle};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use crate::fs::namespace::names;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

impl BridgeFs {
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

    /// A size truncates (uploaded by the writer's close, or at once); times,
    /// mode and owner go to the local overlay (see
    /// `crate::fs::namespace::overlay`).
    pub async fn setattr(
        self: &Arc<Self>,
        ino: Ino,
        change: SetAttr,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        self.set_overlay(ino, &change)?;
        if change.mtime.is_some() {
            self.push_mtime(ino).await;
        }
        if let Some(size) = change.size {
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
                matches!(self.handles.lock().get(fh), Some(Handle::File(h)) if h.write && h.ino == ino)
            });
            let local = self.ensure_local(ino, size == 0).await?;
            local.truncate(size)?;
            self.touch(ino);
            match writer {
                Some(fh) => {
                    if let Some(Handle::File(h)) = self.handles.lock().get_mut(&fh) {
                        h.wrote = true;
                        h.only_truncated = false;
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

    /// Stores chmod/chown/utimens in the node and, for a remote item, on
    /// disk (after the lock is dropped); ctime moves, as POSIX wants.
    fn set_overlay(&self, ino: Ino, change: &SetAttr) -> FsResult<()> {
        if change.only_size() {
            return Ok(());
        }
        let keep = {
            let mut st = self.state.lock();
            let node = st.table.get_mut(ino).ok_or(FsError::NotFound)?;
            let set = node.attrs_mut();
            set.mode = change.mode.or(set.mode);
            set.uid = change.uid.or(set.uid);
            set.gid = change.gid.or(set.gid);
            set.mtime = change.mtime.or(set.mtime);
            set.atime = change.atime.or(set.atime);
            set.ctime = Some(SystemTime::now());
            let attrs = *set;
            let remote = node.is_remote() && !node.gone;
            let backend = node.backend.filter(|_| remote);
            backend.map(|b| (self.mounts[b].name.clone(), node.entry.clone(), attrs))
        };
        if let Some((backend, entry, attrs)) = keep {
            self.overlay.put(&backend, &entry, attrs);
        }
        Ok(())
    }

    /// Drops set-user-id and set-group-id bits set by chmod (a write by an
    /// unprivileged user, as the kernel tells with KILLPRIV_V2). In memory:
    /// the next upload's restamp keeps the result.
    pub fn kill_suid(&self, ino: Ino) {
        if let Some(n) = self.state.lock().table.get_mut(ino) {
            if let Some(m) = n.attrs_mut().mode.as_mut() {
                *m &= !0o6000;
            }
        }
    }

    /// Stores the mtime set on a remote file in the remote too, where the
    /// backend has a place for it (a Files app's `mtime_metadata_key`). A
    /// failure only logs: the local overlay holds the time anyway.
    pub(in crate::fs) async fn push_mtime(&self, ino: Ino) {
        let found = {
            let st = self.state.lock();
            st.table.get(ino).and_then(|n| {
                let mtime = n.attrs().mtime.filter(|_| n.is_remote() && !n.gone)?;
                Some((n.backend?, n.entry.clone(), mtime))
            })
        };
        let Some((b, entry, mtime)) = found else {
            return;
        };
        match self.mounts[b].backend.set_mtime(&entry, mtime).await {
            Ok(Some(updated)) => {
                if let Some(n) = self.state.lock().table.get_mut(ino) {
                    n.entry.version = updated.version;
                    n.entry.mtime = updated.mtime;
                }
                self.restamp(ino, None);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(name = ?entry.name, error = %e, "the time set by utimens is kept locally only")
            }
        }
    }

    /// After an upload or a rename of ours gave `ino` a new remote version
    /// (or identity), its overlay entry follows it; the one under
    /// `old_key` goes.
    pub(in crate::fs) fn restamp(&self, ino: Ino, old_key: Option<&str>) {
        let found = {
            let st = self.state.lock();
            st.table.get(ino).and_then(|n| {
                let b = n.backend?;
                Some((
                    self.mounts[b].name.clone(),
                    n.entry.clone(),
                    n.attrs(),
                    n.is_remote(),
                ))
            })
        };
        let Some((backend, entry, attrs, remote)) = found else {
            return;
        };
        if let Some(old) = old_key.filter(|k| *k != entry.key) {
            self.overlay.remove(&backend, &old.to_string());
        }
        if remote && !attrs.is_empty() {
            self.overlay.put(&backend, &entry, attrs);
        }
    }
}

/// What a `setattr` asks to change.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl SetAttr {
    fn only_size(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}
