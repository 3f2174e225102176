//! A sorted set with positional access, the index behind the emulator's
//! paged lists: a page at `skip` must not cost a walk over the `skip` keys
//! before it, and the standard library has no order-statistic tree.

/// Most keys in one chunk before it splits in two.
const CHUNK: usize = 512;

/// A sorted set of keys held in sorted chunks of at most [`CHUNK`] keys,
/// with the number of keys before each chunk. Reaching position `skip` is a
/// binary search over the chunks (O(log n)) and a page then walks its
/// `take` keys; an insert or a removal moves the keys of one chunk and
/// recounts the chunks after it (O(CHUNK + n / CHUNK)), cheaper than the
/// whole-list scans the mutating routes already make.
#[derive(Debug, Clone, Default)]
pub struct RankedSet<K> {
    /// Never an empty chunk; each chunk's keys are above the previous one's.
    chunks: Vec<Vec<K>>,
    /// `starts[i]`: how many keys the chunks before chunk `i` hold.
    starts: Vec<usize>,
    len: usize,
}

impl<K: Ord> RankedSet<K> {
    /// An empty set (`const`, so a `static` empty set can stand for an
    /// absent one).
    pub const fn new() -> Self {
        RankedSet {
            chunks: Vec::new(),
            starts: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key` or would: the last one whose first key is
    /// not above it (0 when `key` is below them all).
    fn chunk_of(&self, key: &K) -> usize {
        self.chunks
            .partition_point(|c| c[0] <= *key)
            .saturating_sub(1)
    }

    /// Adds `key`; false when it was already there.
    pub fn insert(&mut self, key: K) -> bool {
        if self.chunks.is_empty() {
            self.chunks.push(vec![key]);
            self.starts.push(0);
            self.len = 1;
            return true;
        }
        let c = self.chunk_of(&key);
        let Err(at) = self.chunks[c].binary_search(&key) else {
            return false;
        };
        self.chunks[c].insert(at, key);
        self.len += 1;
        if self.chunks[c].len() > CHUNK {
            let half = self.chunks[c].len() / 2;
            let tail = self.chunks[c].split_off(half);
            self.chunks.insert(c + 1, tail);
            self.starts.insert(c + 1, 0);
        }
        self.recount_from(c + 1);
        true
    }

    /// Takes `key` out; false when it was not there.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some((c, at)) = self.find(key) else {
            return false;
        };
        self.chunks[c].remove(at);
        self.len -= 1;
        self.tidy(c);
        self.recount_from(c);
        true
    }

    /// Drops chunk `c` if it emptied, or merges the next chunk into it when
    /// the two fill at most half a chunk, so removals do not leave a trail
    /// of tiny chunks (and a merged chunk does not split again at once).
    fn tidy(&mut self, c: usize) {
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
            self.starts.remove(c);
        } else if c + 1 < self.chunks.len()
            && self.chunks[c].len() + self.chunks[c + 1].len() <= CHUNK / 2
        {
            let next = self.chunks.remove(c + 1);
            self.starts.remove(c + 1);
            self.chunks[c].extend(next);
        }
    }

    /// Recomputes `starts` from chunk `from` on (`starts[0]` is always 0).
    fn recount_from(&mut self, from: usize) {
        for i in from.max(1)..self.chunks.len() {
            self.starts[i] = self.starts[i - 1] + self.chunks[i - 1].len();
        }
    }

    /// The chunk and the place in it of `key`, if it is there.
    fn find(&self, key: &K) -> Option<(usize, usize)> {
        if self.chunks.is_empty() {
            return None;
        }
        let c = self.chunk_of(key);
        self.chunks[c].binary_search(key).ok().map(|at| (c, at))
    }

    /// The position of `key` in the set's order, if it is there.
    pub fn rank(&self, key: &K) -> Option<usize> {
        self.find(key).map(|(c, at)| self.starts[c] + at)
    }

    /// The keys from position `pos` on, in order (none when `pos` is past
    /// the end). Getting there is O(log n); each key after it O(1).
    pub fn iter_from(&self, pos: usize) -> impl Iterator<Item = &K> {
        let c = self.starts.partition_point(|s| *s <= pos).saturating_sub(1);
        let (head, rest): (&[K], &[Vec<K>]) = match self.chunks.get(c) {
            Some(chunk) if pos < self.len => {
                (&chunk[pos - self.starts[c]..], &self.chunks[c + 1..])
            }
            _ => (&[], &[]),
        };
        head.iter().chain(rest.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random inserts and removals over a key space a few chunks wide (so
    /// chunks split, empty and merge), checked against a `BTreeSet` after
    /// each step: contents, length, ranks and positional walks.
    #[test]
    fn behaves_as_a_sorted_set_with_positions() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut set = RankedSet::new();
        let mut model = BTreeSet::new();
        for step in 0..20_000 {
            let key = rng.random_range(0..3_000u32);
            let grow = step < 8_000 || rng.random_bool(0.45);
            if grow {
                assert_eq!(set.insert(key), model.insert(key));
            } else {
                assert_eq!(set.remove(&key), model.remove(&key));
            }
            assert_eq!(set.len(), model.len());
            if step % 97 == 0 {
                check(&set, &model, &mut rng);
            }
        }
        while let Some(k) = model.pop_first() {
            assert!(set.remove(&k));
        }
        assert!(set.is_empty() && set.chunks.is_empty());
        assert_eq!(set.iter_from(0).count(), 0);
    }

    fn check(set: &RankedSet<u32>, model: &BTreeSet<u32>, rng: &mut StdRng) {
        let all: Vec<u32> = model.iter().copied().collect();
        assert!(set.iter_from(0).copied().eq(all.iter().copied()));
        assert!(set.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        for _ in 0..20 {
            let pos = rng.random_range(0..all.len() + 2);
            let got: Vec<u32> = set.iter_from(pos).take(5).copied().collect();
            let want: Vec<u32> = all.iter().skip(pos).take(5).copied().collect();
            assert_eq!(got, want, "page at {pos}");
            let key = rng.random_range(0..3_000u32);
            assert_eq!(set.rank(&key), all.binary_search(&key).ok());
        }
    }
}
