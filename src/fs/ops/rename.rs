//! unlink and rename, and what they tell the kernel.

use crate::fs::backend::Kind;
use crate::fs::core::{BridgeFs, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::inode::{Ino, LOCAL_KEY_PREFIX, ROOT};
use crate::fs::namespace::names;
use crate::fs::writeback::spool::LocalFile;
use std::sync::Arc;

impl BridgeFs {
    /// Has the kernel forget names and waits until it has: the next open
    /// of such a name then looks it up again. Safe inside a request on the
    /// file (it takes the directory's lock, not the file's pages).
    pub(in crate::fs) async fn forget_names_now(&self, entries: Vec<(Ino, String)>) {
        let Some(k) = self.kernel.read().clone() else {
            return;
        };
        let forgotten = self.background.wait_for(move || {
            for (parent, name) in &entries {
                k.forget_entry(*parent, name);
            }
        });
        let _ = forgotten.await;
    }

    /// Removes the file remotely at once. As on a local disk, descriptors
    /// still open keep reading and writing its bytes (nlink 0) until the
    /// last close: they are spooled first if they were not, the journal
    /// record goes (nothing is uploaded after the unlink, even after a
    /// crash), and the spool is deleted at the last release.
    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        let ino = self.resolve(parent, name).await?;
        let (bidx, backend, entry) = self.remote_of(ino)?;
        if entry.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if self.is_open(ino) {
            self.ensure_local(ino, false).await?;
        }
        // Wait for an upload under way, or it would bring the file back.
        let (_upload, is_remote, entry) = self.settle(ino).await?;
        if is_remote {
            let (_, _, dir) = self.remote_of(parent)?;
            backend.remove(&dir.key, &entry).await?;
        }
        let mut st = self.state.lock();
        Self::drop_name(&mut st, parent, name);
        let spool = Self::unlink_node(&mut st, ino);
        Self::invalidate_views(&mut st, bidx);
        drop(st);
        self.forget_replaced(spool);
        self.overlay.remove(&self.mounts[bidx].name, &entry.key);
        self.touch_dir(parent);
        Ok(())
    }

    /// A file of a folder or an app, not an entry of a hidden view (moving
    /// a revision or a trashed file is that view's own operation).
    fn is_plain_file(&self, ino: Ino) -> bool {
        let st = self.state.lock();
        st.table
            .get(ino)
            .is_some_and(|n| !n.is_dir() && !n.hidden && !st.view_dirs.contains(&n.parent))
    }

    /// True while a descriptor of `ino` is open.
    fn is_open(&self, ino: Ino) -> bool {
        self.state
            .lock()
            .table
            .get(ino)
            .is_some_and(|n| n.open_handles > 0)
    }

    /// Marks a node unlinked (or replaced by a rename) and says what becomes
    /// of its spool: deleted now, or kept for the descriptors still open.
    pub(in crate::fs) fn unlink_node(st: &mut State, ino: Ino) -> Unlinked {
        st.table.mark_gone(ino);
        let Some(node) = st.table.get_mut(ino) else {
            return Unlinked::NoSpool;
        };
        if node.open_handles > 0 {
            return match node.local.clone() {
                Some(local) => Unlinked::StillOpen(local),
                None => Unlinked::NoSpool,
            };
        }
        st.locals.remove(&ino);
        match st.table.get_mut(ino).and_then(|n| n.local.take()) {
            Some(local) => Unlinked::Idle(local),
            None => Unlinked::NoSpool,
        }
    }

    /// rename(2): checked like a local disk's (EXDEV across backends,
    /// ENOTDIR/EISDIR/ENOTEMPTY onto a target), then, for a file, an
    /// editor's save (see `crate::fs::ops::save`), else an ordinary move.
    pub async fn rename(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        newparent: Ino,
        newname: &str,
        flags: u32,
    ) -> FsResult<()> {
        let (from, to) = ((parent, name), (newparent, newname));
        let Some(plan) = self.plan_rename(from, to, flags).await? else {
            return Ok(()); // onto itself
        };
        let RenamePlan {
            src,
            entry,
            target,
            target_entry,
        } = plan;
        if self.is_plain_file(src) {
            let src_remote = !entry.key.starts_with(LOCAL_KEY_PREFIX);
            if src_remote && self.opts.local_only.matches(newname) {
                return self.vacate(src, from, to, target).await;
            }
            let remote_target = target_entry
                .as_ref()
                .filter(|te| te.kind == Kind::File && !te.key.starts_with(LOCAL_KEY_PREFIX));
            if let (Some(t), Some(te)) = (target, remote_target) {
                return self.save_over(src, from, to, t, te.clone()).await;
            }
        }
        let is_local = entry.key.starts_with(LOCAL_KEY_PREFIX);
        let vacancy = match (target, is_local) {
            (None, true) => self.take_vacancy(newparent, newname),
            _ => None,
        };
        let leaves_local_only = is_local
            && self.opts.local_only.matches(name)
            && !self.opts.local_only.matches(newname);
        self.move_or_rename(src, from, to, target, target_entry)
            .await?;
        if let Some(v) = vacancy {
            // Onto a name an editor's backup rename vacated (`mv f f~`,
            // then `mv f~ f`): the next version of that remote file.
            self.state.lock().table.rebind(src, v.entry);
            return self.upload_moved(src).await;
        }
        if leaves_local_only {
            // A local-only file given an ordinary name is uploaded now.
            return self.upload_moved(src).await;
        }
        Ok(())
    }

    /// What a rename moves and replaces, after the checks a local disk
    /// makes; `None` for a rename onto itself (nothing to do).
    async fn plan_rename(
        &self,
        (parent, name): (Ino, &str),
        (newparent, newname): (Ino, &str),
        flags: u32,
    ) -> FsResult<Option<RenamePlan>> {
        names::check_local(newname)?;
        if parent == ROOT || newparent == ROOT {
            return Err(FsError::NotPermitted);
        }
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::NotSupported);
        }
        let src = self.resolve(parent, name).await?;
        let (bidx, _, entry) = self.remote_of(src)?;
        let (to_bidx, _, _) = self.remote_of(newparent)?;
        if to_bidx != bidx {
            return Err(FsError::CrossDevice);
        }
        let target = match self.resolve(newparent, newname).await {
            Ok(t) => Some(t),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if target == Some(src) {
            return Ok(None);
        }
        if target.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let target_entry = match target {
            Some(t) => Some(self.replaceable(entry.kind, t).await?),
            None => None,
        };
        Ok(Some(RenamePlan {
            src,
            entry,
            target,
            target_entry,
        }))
    }

    /// The entry of a rename's target, if a source of `kind` may replace
    /// it: a file a file, a directory an empty directory.
    async fn replaceable(&self, kind: Kind, target: Ino) -> FsResult<crate::fs::backend::Entry> {
        let (_, _, te) = self.remote_of(target)?;
        match (kind, te.kind) {
            (Kind::Dir, Kind::File) => Err(FsError::NotDir),
            (Kind::File, Kind::Dir) => Err(FsError::IsDir),
            (Kind::Dir, Kind::Dir) => {
                self.ensure_listing(target).await?;
                let mut st = self.state.lock();
                match st.cache.any(target).is_some_and(|l| !l.entries.is_empty()) {
                    true => Err(FsError::NotEmpty),
                    false => Ok(te),
                }
            }
            (Kind::File, Kind::File) => Ok(te),
        }
    }

    /// Uploads a file a rename gave an ordinary name or a remote identity.
    async fn upload_moved(self: &Arc<Self>, ino: Ino) -> FsResult<()> {
        if let Some(local) = self.local_of(ino) {
            local.mark_dirty();
        }
        self.commit(ino).await
    }

    /// An ordinary rename: on the remote if the file is there, else a local
    /// move of a file not uploaded yet.
    async fn move_or_rename(
        &self,
        src: Ino,
        (parent, name): (Ino, &str),
        (newparent, newname): (Ino, &str),
        target: Option<Ino>,
        target_entry: Option<crate::fs::backend::Entry>,
    ) -> FsResult<()> {
        let (_, backend, _) = self.remote_of(src)?;
        let (_, _, to_dir) = self.remote_of(newparent)?;
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
        let (replaced, old_key) = {
            let mut st = self.state.lock();
            let replaced = match target {
                Some(t) => Self::unlink_node(&mut st, t),
                None => Unlinked::NoSpool,
            };
            let old_key = st.table.get(src).map(|n| n.entry.key.clone());
            let rebound = new_entry.is_some();
            if let Some(e) = new_entry {
                st.table.rebind(src, e);
            }
            (replaced, old_key.filter(|_| rebound))
        };
        self.move_node(src, (parent, name), (newparent, newname));
        self.forget_replaced(replaced);
        if let Some(old) = old_key {
            self.restamp(src, Some(&old));
        }
        // Keep a pending record pointing where the file now is.
        let moved_record = src_local
            .as_ref()
            .filter(|l| l.journaled())
            .and_then(|_| self.pending_record(&self.state.lock(), src));
        if let Some(rec) = moved_record {
            if let Err(e) = self.rewrite_record(rec.clone()).await {
                tracing::error!(path = ?rec.display_path, error = %e, "cannot update journal record");
            }
        }
        Ok(())
    }
}

/// What a rename moves (`src`) and what it replaces (`target`).
struct RenamePlan {
    src: Ino,
    entry: crate::fs::backend::Entry,
    target: Option<Ino>,
    target_entry: Option<crate::fs::backend::Entry>,
}

/// What [`BridgeFs::unlink_node`] did with the spool of the removed file.
pub(in crate::fs) enum Unlinked {
    /// No descriptor open: delete the spool and its journal record.
    Idle(Arc<LocalFile>),
    /// Open descriptors keep using it: only its journal record goes.
    StillOpen(Arc<LocalFile>),
    NoSpool,
}
