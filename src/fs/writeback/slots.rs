//! Journal slots: a record with a small file's bytes inline, written into a
//! fixed-size slot of one file with one `pwrite` and one `fdatasync`.
//!
//! Why: a record as a file of its own costs a temp file, its fdatasync, a
//! rename and a directory fsync, and the spooled bytes their own fsync;
//! about 0.9 ms a file on the 2-core machine's disk, most of what `cp -r`
//! of small files pays. A slot inside an already allocated file changes no
//! directory and no file size, so its fdatasync is the one flush the
//! promise needs (0.1–0.25 ms measured there). The file grows by whole
//! slots and never shrinks; a bounded number of slots keeps it small.
//!
//! A slot: magic, record length, data length, md5 of both, then the JSON
//! record and the data. A torn write fails the md5 and is skipped: a record
//! is only relied on once its fdatasync returned, and a record is never
//! overwritten in place (a new version goes to another slot first), so a
//! torn slot never held a promised record.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use md5::{Digest, Md5};
use parking_lot::Mutex;

use super::journal::PendingUpload;
use super::syncs::Syncs;

/// Size of one slot.
pub const SLOT: usize = 32 << 10;
/// Most slots the file holds; records past that are files of their own.
pub const MAX_SLOTS: usize = 2048;
/// Slots added at once when none is free.
const GROW: usize = 16;
const MAGIC: &[u8; 4] = b"BFJ1";
/// Magic, record length, data length, md5.
const HEADER: usize = 4 + 4 + 4 + 16;

/// A record read back from a slot, with the file's bytes it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRecord {
    pub record: PendingUpload,
    pub data: Vec<u8>,
}

/// The slot file and which slot holds which record.
pub struct Slots {
    file: File,
    map: Mutex<SlotMap>,
    /// Where its fdatasyncs are counted (the journal's).
    syncs: Arc<Syncs>,
}

#[derive(Default)]
struct SlotMap {
    /// Record id → its slot.
    by_id: HashMap<String, (usize, u64)>,
    free: Vec<usize>,
    /// Slots the file has room for.
    len: usize,
}

impl Slots {
    /// Opens (or makes) `dir/slots` and reads which slots hold records.
    /// Only the `owner` (the daemon, which holds the instance lock) clears
    /// what a crash left; another reader (`status`, `pending`) must not
    /// touch slots the daemon may be reusing.
    pub fn open(dir: &Path, owner: bool, syncs: Arc<Syncs>) -> std::io::Result<Slots> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("slots");
        let new = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        if new {
            // The file's name durable once, so that later fdatasyncs of it
            // are all a record needs.
            File::open(dir)?.sync_all()?;
        }
        let len = (file.metadata()?.len() as usize / SLOT).min(MAX_SLOTS);
        let slots = Slots {
            file,
            map: Mutex::new(SlotMap {
                len,
                ..SlotMap::default()
            }),
            syncs,
        };
        let stale = slots.index(len);
        if owner {
            stale.into_iter().for_each(|s| slots.zero(s));
        }
        Ok(slots)
    }

    /// Which slot holds which id, read off the file. Of two slots of one
    /// id (a crash between writing the new one and clearing the old) the
    /// later counts; the other is returned, to be cleared by the owner, or
    /// it would come back at each start.
    fn index(&self, len: usize) -> Vec<usize> {
        let mut latest: HashMap<String, (u64, usize)> = HashMap::new();
        let mut stale = Vec::new();
        for slot in 0..len {
            let Some(r) = self.read_slot(slot) else {
                continue;
            };
            let (id, seq) = (r.record.id, r.record.seq);
            match latest.get(&id) {
                Some(&(had, _)) if had > seq => stale.push(slot),
                Some(&(_, old)) => {
                    stale.push(old);
                    latest.insert(id, (seq, slot));
                }
                None => drop(latest.insert(id, (seq, slot))),
            }
        }
        let mut map = self.map.lock();
        map.by_id = latest
            .into_iter()
            .map(|(id, (seq, s))| (id, (s, seq)))
            .collect();
        let held: std::collections::HashSet<usize> = map.by_id.values().map(|v| v.0).collect();
        map.free = (0..len).rev().filter(|s| !held.contains(s)).collect();
        drop(map);
        stale
    }

    /// Whether a record and `data` fit in one slot.
    pub fn fits(json: &[u8], data: &[u8]) -> bool {
        HEADER + json.len() + data.len() <= SLOT
    }

    /// Writes the record with `data` durably into a free slot, then frees
    /// the slot its id held before. `Ok(false)`: no slot is free and the
    /// file is at its bound (the caller writes a record file instead).
    pub fn write(&self, record: &PendingUpload, data: &[u8]) -> std::io::Result<bool> {
        let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        debug_assert!(Self::fits(&json, data));
        let Some(slot) = self.take_free()? else {
            return Ok(false);
        };
        let written = self
            .file
            .write_all_at(&encode(&json, data), (slot * SLOT) as u64)
            .and_then(|()| self.syncs.timed(|| self.file.sync_data()));
        if let Err(e) = written {
            // The bytes may have reached the slot: unmade before reuse.
            self.clear(slot);
            return Err(e);
        }
        let mut map = self.map.lock();
        // Two writes of one id at once (the SIGTERM pass and an upload):
        // the later record stays, whichever finishes first.
        if map
            .by_id
            .get(&record.id)
            .is_some_and(|&(_, seq)| seq > record.seq)
        {
            drop(map);
            self.clear(slot);
            return Ok(true);
        }
        let old = map.by_id.insert(record.id.clone(), (slot, record.seq));
        drop(map);
        if let Some((old, _)) = old {
            self.clear(old);
        }
        Ok(true)
    }

    /// A free slot, growing the file by [`GROW`] slots when none is.
    fn take_free(&self) -> std::io::Result<Option<usize>> {
        let mut map = self.map.lock();
        if let Some(slot) = map.free.pop() {
            return Ok(Some(slot));
        }
        if map.len >= MAX_SLOTS {
            return Ok(None);
        }
        let grown = (map.len + GROW).min(MAX_SLOTS);
        self.file.set_len((grown * SLOT) as u64)?;
        let slot = map.len;
        map.free.extend((slot + 1..grown).rev());
        map.len = grown;
        Ok(Some(slot))
    }

    /// Forgets the id's record; true if a slot held it. Not synced: a
    /// record that outlives a power cut is uploaded once more, which
    /// replaces the same name (and a crash of the process alone keeps the
    /// cleared slot, which sits in the page cache).
    pub fn remove(&self, id: &str) -> bool {
        let slot = self.map.lock().by_id.remove(id);
        slot.inspect(|(s, _)| self.clear(*s)).is_some()
    }

    fn clear(&self, slot: usize) {
        self.zero(slot);
        self.map.lock().free.push(slot);
    }

    /// Unmakes a slot's record (its magic zeroed).
    fn zero(&self, slot: usize) {
        if let Err(e) = self.file.write_all_at(&[0; 4], (slot * SLOT) as u64) {
            tracing::error!(error = %e, "cannot clear a journal slot");
        }
    }

    /// The record the id's slot holds, if any.
    pub fn get(&self, id: &str) -> Option<SlotRecord> {
        let (slot, _) = *self.map.lock().by_id.get(id)?;
        // Read after the lock: the slot may have moved on meanwhile.
        self.read_slot(slot).filter(|r| r.record.id == id)
    }

    /// Every record the slots hold.
    pub fn all(&self) -> Vec<SlotRecord> {
        let held: Vec<usize> = self.map.lock().by_id.values().map(|v| v.0).collect();
        held.into_iter().filter_map(|s| self.read_slot(s)).collect()
    }

    /// The slot's record, if it holds a whole one.
    fn read_slot(&self, slot: usize) -> Option<SlotRecord> {
        let mut buf = vec![0u8; SLOT];
        self.file
            .read_exact_at(&mut buf, (slot * SLOT) as u64)
            .ok()?;
        decode(&buf)
    }
}

fn encode(json: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&digest(json, data));
    out.extend_from_slice(json);
    out.extend_from_slice(data);
    out
}

fn decode(slot: &[u8]) -> Option<SlotRecord> {
    if &slot[..4] != MAGIC {
        return None;
    }
    let len = |at: usize| u32::from_le_bytes(slot[at..at + 4].try_into().unwrap()) as usize;
    let (json_len, data_len) = (len(4), len(8));
    let body = slot.get(HEADER..HEADER + json_len + data_len)?;
    let (json, data) = body.split_at(json_len);
    if digest(json, data)[..] != slot[12..HEADER] {
        tracing::warn!("skipped a torn journal slot");
        return None;
    }
    let record = serde_json::from_slice(json).ok()?;
    Some(SlotRecord {
        record,
        data: data.to_vec(),
    })
}

fn digest(json: &[u8], data: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(json);
    h.update(data);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> PendingUpload {
        super::super::journal::tests::rec(Path::new("/spool"), id)
    }

    #[test]
    fn records_and_bytes_survive_reopen_and_removal_frees_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert!(slots.write(&rec("a"), b"alpha").unwrap());
        assert!(slots.write(&rec("b"), b"beta").unwrap());
        let reopened = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert_eq!(reopened.get("a").unwrap().data, b"alpha");
        assert_eq!(reopened.get("b").unwrap().record, rec("b"));
        assert!(reopened.remove("a"));
        assert!(!reopened.remove("a"));
        let again = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert_eq!(again.all().len(), 1, "a removed record stays removed");
        let size = std::fs::metadata(dir.path().join("slots")).unwrap().len();
        assert_eq!(size, (GROW * SLOT) as u64, "grown by whole slots once");
    }

    #[test]
    fn a_rewritten_record_moves_to_another_slot_and_a_torn_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert!(slots.write(&rec("a"), b"v1").unwrap());
        let (first, _) = *slots.map.lock().by_id.get("a").unwrap();
        assert!(slots.write(&rec("a"), b"v2").unwrap());
        let (second, _) = *slots.map.lock().by_id.get("a").unwrap();
        assert_ne!(first, second, "never overwritten in place");
        // Tear the live slot: one byte of its data changes.
        let at = (second * SLOT + HEADER + 5) as u64;
        slots.file.write_all_at(b"X", at).unwrap();
        let reopened = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert!(reopened.get("a").is_none(), "a torn slot fails its md5");
        assert!(
            reopened.all().is_empty(),
            "the cleared first slot stays cleared"
        );
    }

    #[test]
    fn of_two_slots_of_one_id_left_by_a_crash_the_later_stays_and_the_other_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), true, Arc::default()).unwrap();
        let (old, new) = (
            PendingUpload { seq: 5, ..rec("a") },
            PendingUpload { seq: 9, ..rec("a") },
        );
        assert!(slots.write(&new, b"new").unwrap());
        // The crash: the old version's slot was never cleared.
        let spare = slots.take_free().unwrap().unwrap();
        let json = serde_json::to_vec(&old).unwrap();
        slots
            .file
            .write_all_at(&encode(&json, b"old"), (spare * SLOT) as u64)
            .unwrap();
        let reopened = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert_eq!(reopened.get("a").unwrap().data, b"new", "the later wins");
        assert_eq!(reopened.all().len(), 1);
        assert!(reopened.remove("a"));
        assert!(
            Slots::open(dir.path(), true, Arc::default())
                .unwrap()
                .all()
                .is_empty(),
            "nothing comes back"
        );
    }

    #[test]
    fn of_two_writes_of_one_id_the_later_record_stays_whichever_ends_first() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), true, Arc::default()).unwrap();
        assert!(slots
            .write(&PendingUpload { seq: 9, ..rec("a") }, b"later")
            .unwrap());
        assert!(slots
            .write(&PendingUpload { seq: 5, ..rec("a") }, b"earlier")
            .unwrap());
        assert_eq!(slots.get("a").unwrap().data, b"later");
        assert_eq!(
            Slots::open(dir.path(), true, Arc::default())
                .unwrap()
                .all()
                .len(),
            1
        );
    }

    #[test]
    fn the_file_stops_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), true, Arc::default()).unwrap();
        for i in 0..MAX_SLOTS {
            assert!(slots.write(&rec(&i.to_string()), b"x").unwrap());
        }
        assert!(!slots.write(&rec("one more"), b"x").unwrap());
        assert_eq!(
            Slots::open(dir.path(), true, Arc::default())
                .unwrap()
                .all()
                .len(),
            MAX_SLOTS
        );
    }
}
