//! Listings: a directory's entries fetched once per TTL, installed into the
//! inode table and the listing cache, with sizes a listing lacks filled by
//! `stat`.

use crate::fs::backend::{Backend, Entry, Kind};
use crate::fs::core::{BridgeFs, State};
use crate::fs::error::{FsError, FsResult};
use crate::fs::namespace::cache::Listing;
use crate::fs::namespace::inode::{Ino, ROOT};
use crate::fs::namespace::names;
use crate::fs::namespace::overlay::Kept;
use crate::fs::ops::file::local_entry;
use crate::fs::writeback::journal::PendingUpload;
use crate::fs::writeback::spool::LocalFile;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A listing after which the memory its pages took is handed back.
const LARGE_LISTING: usize = 10_000;

/// Returns freed heap pages to the system: a large listing's JSON pages
/// are gone once installed, but glibc keeps their pages otherwise.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl BridgeFs {
    /// Makes sure `dir` has a listing within its TTL, fetching it once even
    /// when many requests ask at the same moment.
    pub(in crate::fs) async fn ensure_listing(&self, dir: Ino) -> FsResult<()> {
        if dir == ROOT {
            return Ok(());
        }
        {
            let mut st = self.state.lock();
            let node = st.table.get(dir).ok_or(FsError::NotFound)?;
            if !node.is_dir() {
                return Err(FsError::NotDir);
            }
            if st.cache.fresh(dir).is_some() {
                return Ok(());
            }
        }
        let lock = self.lock_for(dir);
        let _guard = lock.lock().await;
        if self.state.lock().cache.fresh(dir).is_some() {
            return Ok(());
        }
        let (bidx, backend, entry) = self.remote_of(dir)?;
        self.counters.listings.fetch_add(1, Ordering::Relaxed);
        let mut entries = match backend.list(&entry.key).await {
            Ok(e) => e,
            Err(FsError::NotFound) => {
                self.state.lock().table.mark_gone(dir);
                return Err(FsError::NotFound);
            }
            Err(e) => {
                // The remote is failing: a stale listing beats an error.
                if self.state.lock().cache.any(dir).is_some() {
                    tracing::warn!(error = %e, "listing failed; serving the last one");
                    return Ok(());
                }
                return Err(e);
            }
        };
        fill_sizes(&backend, &mut entries).await;
        self.install_listing(dir, bidx, entries);
        Ok(())
    }

    pub(in crate::fs) fn install_listing(&self, dir: Ino, bidx: usize, mut entries: Vec<Entry>) {
        self.skip_vacated(dir, &mut entries);
        let adopted = self.reopen_adopted(dir, bidx);
        let names = names::assign(
            &entries
                .iter()
                .map(|e| (e.name.as_str(), e.id.as_str()))
                .collect::<Vec<_>>(),
        );
        let mut st = self.state.lock();
        let in_view = {
            let node = st.table.get(dir);
            node.is_some_and(|n| n.hidden || st.view_dirs.contains(&n.parent))
        };
        if in_view {
            st.view_dirs.insert(dir);
        }
        let before: Vec<String> = st
            .cache
            .any(dir)
            .map(|l| l.entries.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let appeared = appeared(&mut st, dir, &before, &names);
        let mut list = Vec::with_capacity(entries.len());
        st.table.reserve_for(bidx, &entries);
        let large = entries.len() >= LARGE_LISTING;
        for (entry, name) in entries.into_iter().zip(names) {
            let ino = st.table.upsert(bidx, dir, name.clone(), entry, false);
            list.push((name, ino));
        }
        // Remote renames, deletes and overwrites: the kernel forgets the
        // names that went and the pages of what changed.
        let now: HashSet<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<(Ino, String)> = before
            .into_iter()
            .filter(|n| !now.contains(n.as_str()))
            .map(|n| (dir, n))
            .collect();
        drop(now);
        let changed = st.table.take_changed();
        let stale = self.apply_overlay(&mut st, bidx, &list);
        Self::insert_adopted(&mut st, dir, bidx, adopted);
        // Files created here and not uploaded yet stay visible.
        let locals: Vec<(String, Ino)> = st
            .locals
            .iter()
            .filter_map(|i| st.table.get(*i))
            .filter(|n| n.parent == dir && !n.is_remote() && !n.gone)
            .map(|n| (n.name.clone(), n.ino))
            .collect();
        let mut listing = Listing::new(list);
        for (name, ino) in locals {
            if listing.get(&name).is_none() {
                listing.insert(name, ino);
            }
        }
        st.cache.put(dir, listing);
        // Names that went, and names the kernel may hold as missing that a
        // remote change brought.
        let gone: Vec<(Ino, String)> = gone
            .into_iter()
            .filter(|(_, n)| st.cache.any(dir).is_some_and(|l| l.get(n).is_none()))
            .chain(appeared)
            .collect();
        if st.table.len() > self.opts.max_entries {
            let mut keep = st.cache.referenced();
            keep.extend(st.hidden.values().copied());
            keep.extend(st.locals.iter().copied());
            let dropped = st.table.collect(&keep);
            st.hidden.retain(|_, i| keep.contains(i));
            self.locks.lock().retain(|_, l| Arc::strong_count(l) > 1);
            tracing::debug!(dropped, "inode table trimmed");
        }
        drop(st);
        for key in stale {
            self.overlay.remove(&self.mounts[bidx].name, &key);
        }
        self.tell_kernel(gone, changed);
        if large {
            give_back_freed_memory();
        }
    }

    /// Gives listed items the times, mode and owner kept for their current
    /// version; returns the keys whose kept entry is for another version
    /// (changed remotely), to be dropped once the lock is released.
    fn apply_overlay(&self, st: &mut State, bidx: usize, list: &[(String, Ino)]) -> Vec<String> {
        let mut stale = Vec::new();
        if self.overlay.is_empty() {
            return stale;
        }
        let backend = &self.mounts[bidx].name;
        for (_, ino) in list {
            let Some(node) = st.table.get_mut(*ino) else {
                continue;
            };
            if node.local.is_some() {
                continue; // being written: the node's own attributes rule
            }
            match self.overlay.get(backend, &node.entry) {
                Some(Kept::Stale) => {
                    node.set_attrs(Default::default());
                    stale.push(node.entry.key.clone());
                }
                Some(Kept::Current(a)) => node.set_attrs(a),
                None => {}
            }
        }
        stale
    }

    /// Leaves out remote files whose name an editor's backup rename vacated
    /// (the next version is on its way; see `crate::fs::ops::save`).
    fn skip_vacated(&self, dir: Ino, entries: &mut Vec<Entry>) {
        let st = self.state.lock();
        let vacated: HashSet<&str> = st
            .vacated
            .iter()
            .filter(|((d, _), _)| *d == dir)
            .map(|(_, v)| v.entry.key.as_str())
            .collect();
        if !vacated.is_empty() {
            entries.retain(|e| !vacated.contains(e.key.as_str()));
        }
    }

    /// Local-only files of an earlier run that live in `dir`, their spool
    /// files reopened (disk work: before the lock is taken).
    fn reopen_adopted(&self, dir: Ino, bidx: usize) -> Vec<(PendingUpload, Arc<LocalFile>)> {
        let Some(key) = self
            .state
            .lock()
            .table
            .get(dir)
            .map(|n| n.entry.key.clone())
        else {
            return Vec::new();
        };
        let records = self
            .writeback
            .adopted
            .lock()
            .remove(&(bidx, key))
            .unwrap_or_default();
        records
            .into_iter()
            .filter_map(|rec| match self.writeback.spool.reopen(&rec.id, &rec.spool) {
                Ok(l) => Some((rec, Arc::new(l))),
                Err(e) => {
                    tracing::warn!(path = ?rec.display_path, error = %e, "a local-only file of an earlier run cannot be reopened");
                    None
                }
            })
            .collect()
    }

    /// The reopened local-only files join the namespace (once: they are
    /// local nodes from then on).
    fn insert_adopted(
        st: &mut State,
        dir: Ino,
        bidx: usize,
        adopted: Vec<(PendingUpload, Arc<LocalFile>)>,
    ) {
        for (rec, local) in adopted {
            let entry = local_entry(&local, &rec.name, local.modified());
            let ino = st.table.insert_local(bidx, dir, rec.name, entry, local);
            st.locals.insert(ino);
        }
    }

    /// Re-lists views (trash, revisions) of a backend after a change there.
    pub(in crate::fs) fn invalidate_views(st: &mut State, bidx: usize) {
        let dirs: Vec<Ino> = st
            .view_dirs
            .iter()
            .copied()
            .filter(|i| st.table.get(*i).is_some_and(|n| n.backend == Some(bidx)))
            .collect();
        for d in dirs {
            st.cache.invalidate(d);
        }
    }
}

/// Names new in a listing that a negative entry held as missing (and so
/// may the kernel, for as long): cleared, for the kernel to forget too.
fn appeared(st: &mut State, dir: Ino, before: &[String], names: &[String]) -> Vec<(Ino, String)> {
    let before: HashSet<&str> = before.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    for name in names.iter().filter(|n| !before.contains(n.as_str())) {
        if st.cache.negative_left(dir, name).is_some() {
            st.cache.clear_negative(dir, name);
            found.push((dir, name.clone()));
        }
    }
    found
}

/// Fills the sizes a listing lacks with `stat`, several at once.
pub(in crate::fs) async fn fill_sizes(backend: &Arc<dyn Backend>, entries: &mut [Entry]) {
    let missing: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File && e.size.is_none())
        .map(|(i, _)| i)
        .collect();
    if missing.is_empty() {
        return;
    }
    let results: Vec<(usize, FsResult<Entry>)> =
        futures::stream::iter(missing.into_iter().map(|i| {
            let backend = backend.clone();
            let e = entries[i].clone();
            async move { (i, backend.stat(&e).await) }
        }))
        .buffer_unordered(STAT_CONCURRENCY)
        .collect()
        .await;
    for (i, r) in results {
        match r {
            Ok(fresh) => {
                entries[i].size = fresh.size;
                entries[i].mtime = fresh.mtime.or(entries[i].mtime);
            }
            Err(e) => {
                tracing::warn!(name = ?entries[i].name, error = %e, "no size for listed file")
            }
        }
    }
}

/// Most remote `stat` calls in flight while filling a listing's sizes.
pub(in crate::fs) const STAT_CONCURRENCY: usize = 16;
