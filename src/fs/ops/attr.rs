//! lookup, forget, getattr and setattr.

use crate::fs::core::{Attr, BridgeFs, Handle};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::Ino;
use crate::fs::namespace::names;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
}
