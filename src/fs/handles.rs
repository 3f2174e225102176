//! Open handles: what each open file or directory descriptor holds (its
//! read pattern, the version it pinned, whether it wrote), behind a lock of
//! their own, taken after the namespace's when an operation needs both
//! (never the other way round).

use std::collections::HashMap;
use std::sync::Arc;

use crate::fs::backend::{Backend, Entry};
use crate::fs::content::{ReadPattern, Source};
use crate::fs::core::DirItem;
use crate::fs::namespace::inode::Ino;

/// Every open handle by number.
#[derive(Default)]
pub(in crate::fs) struct Handles {
    map: HashMap<u64, Handle>,
    last: u64,
}

impl Handles {
    /// Stores a new handle; returns its number (never 0).
    pub(in crate::fs) fn insert(&mut self, handle: Handle) -> u64 {
        self.last += 1;
        self.map.insert(self.last, handle);
        self.last
    }

    pub(in crate::fs) fn get(&self, fh: &u64) -> Option<&Handle> {
        self.map.get(fh)
    }

    pub(in crate::fs) fn get_mut(&mut self, fh: &u64) -> Option<&mut Handle> {
        self.map.get_mut(fh)
    }

    pub(in crate::fs) fn remove(&mut self, fh: &u64) -> Option<Handle> {
        self.map.remove(fh)
    }

    pub(in crate::fs) fn values(&self) -> impl Iterator<Item = &Handle> {
        self.map.values()
    }

    /// The size a handle sees (`fstat`): its pinned version's, if pinned.
    pub(in crate::fs) fn pinned_size(&self, fh: u64) -> Option<u64> {
        match self.map.get(&fh) {
            Some(Handle::File(FileHandle {
                pinned: Some(p), ..
            })) => Some(p.size),
            _ => None,
        }
    }
}

// Not boxed: most handles are files, so a box would cost an allocation per
// open and save nothing.
#[allow(clippy::large_enum_variant)]
pub(in crate::fs) enum Handle {
    /// A snapshot shared with the readdir in progress (no copy per reply).
    Dir(Arc<Vec<DirItem>>),
    File(FileHandle),
}

pub(in crate::fs) struct FileHandle {
    pub(in crate::fs) ino: Ino,
    pub(in crate::fs) write: bool,
    pub(in crate::fs) append: bool,
    /// Wrote (or truncated) since the last successful flush.
    pub(in crate::fs) wrote: bool,
    /// Opened with O_TRUNC (or created as the next version of a vacated
    /// file) and not written to yet. A flush then comes from
    /// closing a duplicate (a shell's `> file` closes its first descriptor
    /// after dup2, before the program writes): uploading the empty file
    /// would add an empty revision, so the upload waits for the writes'
    /// flush, or the release.
    pub(in crate::fs) only_truncated: bool,
    /// The writer: a flush from another process is a no-op.
    pub(in crate::fs) pid: u32,
    pub(in crate::fs) pattern: ReadPattern,
    /// A read-only handle reads the remote version it opened, whatever
    /// re-listings learn meanwhile: never a mix of two versions.
    pub(in crate::fs) pinned: Option<Pinned>,
    /// Bytes returned so far: a handle that has returned nothing may move
    /// to a replacement of its file (see `BridgeFs::read`).
    pub(in crate::fs) served: u64,
    /// Counted in its node's `readers` until its release (a read-only open
    /// asks the kernel for no FLUSH) or the first flush of another handle
    /// kind: a newer remote version waits for the last reader.
    pub(in crate::fs) reading: bool,
    /// Its file was replaced by one of another size: every read fails with
    /// ESTALE (the kernel would cut or pad the new bytes to the old size).
    pub(in crate::fs) stale: bool,
}

/// The remote object a read-only handle reads.
#[derive(Clone)]
pub(in crate::fs) struct Pinned {
    pub(in crate::fs) entry: Entry,
    pub(in crate::fs) version: u64,
    pub(in crate::fs) size: u64,
}

impl Pinned {
    /// What the block cache reads for this version of `ino`.
    pub(in crate::fs) fn source<'a>(
        &'a self,
        backend: &'a Arc<dyn Backend>,
        ino: Ino,
    ) -> Source<'a> {
        Source {
            backend,
            entry: &self.entry,
            ino,
            version: self.version,
            size: self.size,
        }
    }
}
