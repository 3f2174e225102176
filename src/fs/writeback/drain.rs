//! Shutdown: uploads in flight are given time to finish, the rest is
//! journaled so the next start uploads it.

use crate::fs::core::{BridgeFs, State};
use crate::fs::namespace::inode::Ino;
use crate::fs::namespace::names;
use crate::fs::writeback::journal::PendingUpload;
use crate::fs::writeback::spool::LocalFile;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

impl BridgeFs {
    /// Uploads every dirty file (SIGTERM, unmount), waiting at most `wait`;
    /// what is left stays journaled for the next start. Disk work handed
    /// off (records and spools let go of) is waited for, the emptied spool
    /// files kept for reuse are deleted, and the attribute overlay's files
    /// are written.
    pub async fn shutdown(self: &Arc<Self>, wait: Duration) -> usize {
        let left = self.upload_before_exit(wait).await;
        // Journal records and spool files let go of: before spools go.
        self.background.settle().await;
        self.writeback.spool.remove_idle();
        // Times and modes set meanwhile, uploads' restamps included.
        self.overlay.flush();
        left
    }

    async fn upload_before_exit(self: &Arc<Self>, wait: Duration) -> usize {
        let dirty = self.locals_where(|n, l| !n.gone && l.dirty());
        if dirty.is_empty() {
            return 0;
        }
        tracing::info!(files = dirty.len(), "uploading pending files before exit");
        let uploads = futures::stream::iter(dirty.clone().into_iter().map(|ino| {
            let fs = self.clone();
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
    pub(in crate::fs) fn pending_record(&self, st: &State, ino: Ino) -> Option<PendingUpload> {
        let node = st.table.get(ino)?;
        let local = node.local.as_ref()?;
        let b = node.backend?;
        let dir = st.table.get(node.parent)?;
        let local_only = self.is_local_only(node);
        Some(PendingUpload {
            local_only,
            id: local.id.clone(),
            backend: self.mounts[b].name.clone(),
            dir_key: dir.entry.key.clone(),
            name: match local_only {
                true => node.name.clone(),
                false => names::to_remote(&node.name),
            },
            existing_key: node.is_remote().then(|| node.entry.key.clone()),
            spool: local.path.clone(),
            display_path: Self::display_path(st, ino),
            refused: local.refused().map(|e| e.to_string()),
            seq: 0,
            bytes_in_slot: false,
        })
    }

    /// Records every dirty file in the journal (SIGTERM: nothing written is
    /// lost even if its upload is still under way at exit).
    pub fn journal_dirty(&self) {
        let records: Vec<(Arc<LocalFile>, PendingUpload)> = {
            let st = self.state.lock();
            let dirty = |ino: &Ino| {
                let node = st.table.get(*ino).filter(|n| !n.gone)?;
                node.local.clone().filter(|l| l.dirty())
            };
            st.locals
                .iter()
                .filter_map(|ino| Some((dirty(ino)?, self.pending_record(&st, *ino)?)))
                .collect()
        };
        // Written (and fsynced) with no lock held.
        for (local, rec) in records {
            if let Err(e) = self.writeback.durable(&local, &rec) {
                tracing::error!(path = ?rec.display_path, error = %e, "cannot journal pending upload");
            }
        }
    }
}
