//! Background retries of uploads that failed transiently, and the list of
//! uploads the server refused for good (retried on SIGHUP).

use crate::fs::core::BridgeFs;
use crate::fs::namespace::inode::Ino;
use crate::fs::writeback::journal::PendingUpload;
use crate::fs::writeback::spool::LocalFile;
use std::sync::Arc;
use std::time::Duration;

impl BridgeFs {
    /// The files with a spool for which `keep(node, spool)` holds.
    pub(in crate::fs) fn locals_where(
        &self,
        keep: impl Fn(&crate::fs::namespace::inode::Node, &LocalFile) -> bool,
    ) -> Vec<Ino> {
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
        let kept = std::mem::take(&mut *self.writeback.refused_at_start.lock());
        if kept.is_empty() {
            return;
        }
        let fs = self.clone();
        self.background.spawn(async move {
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
        let kept = self.writeback.refused_at_start.lock();
        let earlier = kept
            .iter()
            .map(|r| format!("{}: {}", r.display_path, r.refused.as_deref().unwrap_or("")));
        live.chain(earlier).collect()
    }

    pub(in crate::fs) fn spawn_retry(self: &Arc<Self>, ino: Ino) {
        if !self.writeback.retrying.lock().insert(ino) {
            return;
        }
        let fs = self.clone();
        self.background.spawn(async move {
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
            fs.writeback.retrying.lock().remove(&ino);
        });
    }
}
