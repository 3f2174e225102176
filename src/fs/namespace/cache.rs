//! The metadata cache: directory listings and negative lookups in bounded
//! LRUs with TTLs. Attributes live on the inodes and are refreshed with the
//! listing of their directory.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::fs::namespace::inode::Ino;

/// The names of one directory, as last listed.
#[derive(Debug, Clone)]
pub struct Listing {
    pub entries: Vec<(String, Ino)>,
    index: HashMap<String, usize>,
    pub fetched: Instant,
}

impl Listing {
    pub fn new(entries: Vec<(String, Ino)>) -> Listing {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Listing {
            entries,
            index,
            fetched: Instant::now(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Ino> {
        self.index.get(name).map(|i| self.entries[*i].1)
    }

    /// Adds or replaces one name (our own create, mkdir, rename).
    pub fn insert(&mut self, name: String, ino: Ino) {
        if let Some(i) = self.index.get(&name) {
            self.entries[*i].1 = ino;
        } else {
            self.index.insert(name.clone(), self.entries.len());
            self.entries.push((name, ino));
        }
    }

    /// Removes one name (our own unlink, rmdir, rename).
    pub fn remove(&mut self, name: &str) -> Option<Ino> {
        let i = self.index.remove(name)?;
        let (_, ino) = self.entries.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        Some(ino)
    }
}

/// Bounded listing and negative-lookup caches.
pub struct MetaCache {
    listings: LruCache<Ino, Listing>,
    negatives: LruCache<(Ino, String), Instant>,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

impl MetaCache {
    /// `max_entries` bounds negative entries; listings are bounded to a
    /// fraction of it (each holds many names).
    pub fn new(max_entries: usize, ttl: Duration, negative_ttl: Duration) -> MetaCache {
        let listings = NonZeroUsize::new((max_entries / 16).max(64)).expect("non-zero");
        let negatives = NonZeroUsize::new(max_entries.max(64)).expect("non-zero");
        MetaCache {
            listings: LruCache::new(listings),
            negatives: LruCache::new(negatives),
            ttl,
            negative_ttl,
        }
    }

    /// A listing still within its TTL.
    pub fn fresh(&mut self, dir: Ino) -> Option<&mut Listing> {
        let ttl = self.ttl;
        match self.listings.get_mut(&dir) {
            Some(l) if l.fetched.elapsed() < ttl => Some(l),
            _ => None,
        }
    }

    /// How long the listing of `dir` stays fresh (zero once expired).
    pub fn remaining(&self, dir: Ino) -> Option<Duration> {
        self.listings
            .peek(&dir)
            .map(|l| self.ttl.saturating_sub(l.fetched.elapsed()))
    }

    /// A listing whatever its age (for our own changes and stale reads).
    pub fn any(&mut self, dir: Ino) -> Option<&mut Listing> {
        self.listings.get_mut(&dir)
    }

    pub fn put(&mut self, dir: Ino, listing: Listing) {
        self.listings.put(dir, listing);
    }

    pub fn invalidate(&mut self, dir: Ino) {
        self.listings.pop(&dir);
    }

    /// Every inode named by a cached listing (kept by garbage collection).
    pub fn referenced(&self) -> HashSet<Ino> {
        let mut set = HashSet::new();
        for (dir, l) in self.listings.iter() {
            set.insert(*dir);
            set.extend(l.entries.iter().map(|(_, i)| *i));
        }
        set
    }

    pub fn is_negative(&mut self, dir: Ino, name: &str) -> bool {
        let key = (dir, name.to_string());
        match self.negatives.get(&key) {
            Some(t) if t.elapsed() < self.negative_ttl => true,
            Some(_) => {
                self.negatives.pop(&key);
                false
            }
            None => false,
        }
    }

    /// How long a negative entry stays true (the kernel may keep the
    /// missing name that long too).
    pub fn negative_left(&mut self, dir: Ino, name: &str) -> Option<Duration> {
        let at = *self.negatives.get(&(dir, name.to_string()))?;
        Some(self.negative_ttl.saturating_sub(at.elapsed())).filter(|d| !d.is_zero())
    }

    /// Every name a negative entry holds (the kernel must forget them
    /// when they go before their time).
    pub fn negative_names(&self) -> Vec<(Ino, String)> {
        self.negatives.iter().map(|(k, _)| k.clone()).collect()
    }

    pub fn put_negative(&mut self, dir: Ino, name: &str) {
        if !self.negative_ttl.is_zero() {
            self.negatives.put((dir, name.to_string()), Instant::now());
        }
    }

    pub fn clear_negative(&mut self, dir: Ino, name: &str) {
        self.negatives.pop(&(dir, name.to_string()));
    }

    /// Forgets everything (SIGHUP: a manual refresh).
    pub fn clear(&mut self) {
        self.listings.clear();
        self.negatives.clear();
    }
}
