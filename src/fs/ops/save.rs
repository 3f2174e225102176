//! Editors' saves. Tools save a file in one of three ways, and each must end
//! with the target's remote identity (id, name, tags, metadata, earlier
//! revisions, visibility) kept and the new bytes as its newest content:
//!
//! - **write a temporary file, rename it over the target** (`sed -i`,
//!   gedit, LibreOffice, rsync, scripts): the rename is a *save over*: the
//!   temporary file's bytes are uploaded as the target's new content
//!   (a new revision in a Files app) and the temporary file's own remote
//!   copy, if it had one, is deleted;
//! - **rename the target to a backup name, write a new file under the old
//!   name** (vim): when the backup name is local-only, the rename *vacates*
//!   the name: the backup becomes a local-only file holding the old bytes,
//!   and the remote file waits, untouched, for the new file of that name,
//!   which is uploaded as its new content. If no file of that name comes
//!   within [`VACANCY_GRACE`], the rename is carried out (the remote file
//!   is removed, as the backup lives only here);
//! - **rewrite in place** (nano, `>`): an ordinary overwrite, already an
//!   upload onto the same remote file.

use std::sync::Arc;
use std::time::Duration;

use crate::fs::backend::Entry;
use crate::fs::core::{BridgeFs, State};
use crate::fs::error::FsResult;
use crate::fs::namespace::inode::{Ino, LOCAL_KEY_PREFIX};
use crate::fs::ops::rename::Unlinked;
use crate::fs::writeback::spool::LocalFile;

/// How long a vacated name waits for the editor's new file.
pub const VACANCY_GRACE: Duration = Duration::from_secs(10);

/// A remote file whose name was vacated by a rename to a local-only name.
#[derive(Debug, Clone)]
pub struct Vacancy {
    pub entry: Entry,
    pub backend: usize,
}

/// What a save over another file changed, to undo it.
struct Before {
    src_entry: Entry,
    target: Ino,
    target_entry: Entry,
    src_remote: bool,
}

/// Where a rename goes from and to: (parent, name).
pub(in crate::fs) type Place<'a> = (Ino, &'a str);

impl BridgeFs {
    /// `rename(src, target)` onto an existing remote file: the target keeps
    /// its identity and gets `src`'s bytes; `src` goes. Returns the upload's
    /// result. A refusal (a 4xx) undoes the rename: both files as they
    /// were. A transient failure keeps it: the bytes stay spooled and
    /// journaled under the target's name, the background retry uploads
    /// them, and the source's remote copy stays until then. A source still
    /// open for writing is uploaded by its close, as any write.
    pub(in crate::fs) async fn save_over(
        self: &Arc<Self>,
        src: Ino,
        from: Place<'_>,
        to: Place<'_>,
        target: Ino,
        target_entry: Entry,
    ) -> FsResult<()> {
        let local = self.ensure_local(src, false).await?;
        let (upload, src_remote, src_entry) = self.settle(src).await?;
        let (bidx, replaced, created_here) = {
            let mut st = self.state.lock();
            let node = st.table.get(src);
            let (bidx, created_here) = (
                node.and_then(|n| n.backend),
                node.is_some_and(|n| n.created_here),
            );
            let replaced = Self::unlink_node(&mut st, target);
            st.table.rebind(src, target_entry.clone());
            (bidx, replaced, created_here)
        };
        self.move_node(src, from, to);
        self.forget_replaced(replaced);
        local.mark_dirty();
        drop(upload);
        if !src_remote && self.has_writer(src) {
            return Ok(());
        }
        match self.commit(src).await {
            Ok(()) => {
                if src_remote {
                    self.drop_saved_source(bidx, from.0, &src_entry, created_here)
                        .await;
                }
                self.push_mtime(src).await;
                Ok(())
            }
            Err(e) if e.is_permanent() => {
                let before = Before {
                    src_entry,
                    target,
                    target_entry,
                    src_remote,
                };
                self.undo_save_over(src, from, to, before, &local).await;
                Err(e)
            }
            other => other,
        }
    }

    /// True while a handle may still write to `ino`.
    fn has_writer(&self, ino: Ino) -> bool {
        self.handles
            .lock()
            .values()
            .any(|h| matches!(h, crate::fs::core::Handle::File(f) if f.ino == ino && f.write))
    }

    /// Puts both files of a refused save back as they were before the rename.
    async fn undo_save_over(
        &self,
        src: Ino,
        from: Place<'_>,
        to: Place<'_>,
        b: Before,
        local: &LocalFile,
    ) {
        {
            let mut st = self.state.lock();
            st.table.rebind(b.target, b.target_entry);
            st.table.rebind(src, b.src_entry);
        }
        self.move_node(src, to, from);
        if let Some(l) = self.state.lock().cache.any(to.0) {
            l.insert(to.1.to_string(), b.target);
        }
        local.set_refused(None);
        if b.src_remote {
            local.mark_clean();
            local.set_journaled(false);
            self.writeback.journal.remove(&local.id);
            return;
        }
        let record = self.pending_record(&self.state.lock(), src);
        if let Some(rec) = record {
            if let Err(e) = self.rewrite_record(rec.clone()).await {
                tracing::error!(path = ?rec.display_path, error = %e, "cannot restore the journal record of a refused save");
            }
        }
    }

    /// Deletes the remote copy of a file saved over another: for good if
    /// this mount created it (a temporary file), else as `unlink` would.
    async fn drop_saved_source(
        &self,
        bidx: Option<usize>,
        dir: Ino,
        entry: &Entry,
        created_here: bool,
    ) {
        let Some(b) = bidx else { return };
        let backend = self.mounts[b].backend.clone();
        let Ok((_, _, dir)) = self.remote_of(dir) else {
            return;
        };
        let done = match created_here {
            true => backend.discard(&dir.key, entry).await,
            false => backend.remove(&dir.key, entry).await,
        };
        if let Err(e) = done {
            tracing::warn!(name = ?entry.name, error = %e, "a file saved over another is still on the remote");
        }
        let mut st = self.state.lock();
        Self::invalidate_views(&mut st, b);
    }

    /// `rename(remote file, local-only name)`: the file becomes local-only
    /// (its bytes spooled) and its remote copy keeps the old name, waiting
    /// for the editor's new file (see the module's doc).
    pub(in crate::fs) async fn vacate(
        self: &Arc<Self>,
        src: Ino,
        from: Place<'_>,
        to: Place<'_>,
        target: Option<Ino>,
    ) -> FsResult<()> {
        let local = self.ensure_local(src, false).await?;
        let (upload, _, entry) = self.settle(src).await?;
        let replaced = {
            let mut st = self.state.lock();
            let Some(backend) = st.table.get(src).and_then(|n| n.backend) else {
                return Ok(());
            };
            let replaced = target.map(|t| Self::unlink_node(&mut st, t));
            let local_entry = Entry {
                key: format!("{LOCAL_KEY_PREFIX}{}", local.id),
                ..entry.clone()
            };
            st.table.rebind(src, local_entry);
            let vacancy = Vacancy { entry, backend };
            st.vacated.insert((from.0, from.1.to_string()), vacancy);
            replaced
        };
        self.move_node(src, from, to);
        if let Some(r) = replaced {
            self.forget_replaced(r);
        }
        local.mark_dirty();
        drop(upload);
        self.expire_later(from.0, from.1.to_string());
        // Journals the local-only file (it survives a restart).
        self.commit(src).await
    }

    /// Carries out a vacating rename whose name got no new file in time:
    /// the remote file is removed (its bytes live on in the local backup).
    fn expire_later(self: &Arc<Self>, dir: Ino, name: String) {
        let me = self.clone();
        self.background.spawn(async move {
            tokio::time::sleep(VACANCY_GRACE).await;
            let Some(v) = me.state.lock().vacated.remove(&(dir, name.clone())) else {
                return;
            };
            let backend = me.mounts[v.backend].backend.clone();
            let removed = match me.remote_of(dir) {
                Ok((_, _, d)) => backend.remove(&d.key, &v.entry).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(name = ?name, error = %e, "a file renamed to a local-only name is still on the remote");
            }
            let mut st = me.state.lock();
            st.cache.invalidate(dir);
            Self::invalidate_views(&mut st, v.backend);
        });
    }

    /// The remote file a new file of this name is the next version of (the
    /// name was vacated by an editor's backup rename).
    pub(in crate::fs) fn take_vacancy(&self, dir: Ino, name: &str) -> Option<Vacancy> {
        let mut st = self.state.lock();
        st.vacated.remove(&(dir, name.to_string()))
    }

    /// Moves a node to its new place in the namespace (the kernel already
    /// did so in its own caches); both directories' times move.
    pub(in crate::fs) fn move_node(&self, ino: Ino, from: Place<'_>, to: Place<'_>) {
        let mut st = self.state.lock();
        Self::drop_name(&mut st, from.0, from.1);
        if let Some(n) = st.table.get_mut(ino) {
            n.parent = to.0;
            n.name = to.1.to_string();
            n.hidden = false;
        }
        if let Some(l) = st.cache.any(to.0) {
            l.insert(to.1.to_string(), ino);
        }
        st.cache.clear_negative(to.0, to.1);
        if let Some(b) = st.table.get(ino).and_then(|n| n.backend) {
            Self::invalidate_views(&mut st, b);
        }
        drop(st);
        self.touch_dir(from.0);
        self.touch_dir(to.0);
    }

    /// A name leaves its directory's listing (and the hidden names).
    pub(in crate::fs) fn drop_name(st: &mut State, dir: Ino, name: &str) {
        if let Some(l) = st.cache.any(dir) {
            l.remove(name);
        }
        st.hidden.remove(&(dir, name.to_string()));
    }

    /// Disk work for a file replaced by a rename, with no lock held.
    pub(in crate::fs) fn forget_replaced(&self, replaced: Unlinked) {
        match replaced {
            Unlinked::Idle(local) => self.forget_spool(local),
            // Gone from the namespace: nothing journals it again.
            Unlinked::StillOpen(local) => {
                let journal = self.writeback.journal.clone();
                self.background
                    .off_the_runtime(move || journal.remove(&local.id));
            }
            Unlinked::NoSpool => {}
        }
    }
}
