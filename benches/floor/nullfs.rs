//! The kernel's own price for a FUSE request: a filesystem that answers
//! every request at once from memory (any name is a 4 KiB file, a `big…`
//! name a 256 MiB one, and `new…` directories keep what is created in them),
//! mounted like the daemon's mount (same thread count, `default_permissions`,
//! the same open flags) and served, like the daemon, by a process of its
//! own (this bench binary run again: a switch between two processes costs
//! more than one between threads of the caller's). What a request costs
//! here is the round trip through the kernel and back, which no daemon can
//! go below; the latency rows set the mount against it to show the
//! daemon's own share, and item 9 times `cat`, `cp -r` and `rm -r` on it:
//! the kernel's share of those workloads.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request, WriteFlags,
};

/// The one file the latency rows use.
pub const FILE: &str = "f";
const SIZE: usize = 4096;
/// Names under the root starting so are files of `BIG_SIZE` bytes (item
/// 9's large read).
pub const BIG: &str = "big";
pub const BIG_SIZE: u64 = 256 << 20;
/// The largest read the kernel sends (`max_pages`: 256 pages).
const MAX_READ: usize = 1 << 20;
const TTL: Duration = Duration::from_secs(600);
/// As many request threads as the daemon runs.
const THREADS: usize = 4;
/// Names under the root starting so are empty directories that keep what
/// is created in them (a `cp -r` target); any other name under the root
/// is a 4 KiB file, so each run can use names never looked up before.
pub const NEW_DIR: &str = "new";

/// What it has handed out: the attributes of each inode, and the names
/// created in the `new…` directories.
#[derive(Default)]
struct NullFs {
    inodes: Mutex<HashMap<u64, FileAttr>>,
    created: Mutex<HashSet<(u64, String)>>,
}

/// An inode number for a name (never 1, the root's).
fn ino_of(parent: u64, name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (parent, name).hash(&mut h);
    h.finish() | (1 << 63)
}

fn attr(ino: u64, kind: FileType, size: u64) -> FileAttr {
    let (perm, nlink) = match kind {
        FileType::Directory => (0o755, 2),
        _ => (0o644, 1),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size / 512,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

impl NullFs {
    /// Hands out (and remembers) the inode of `name` in `parent`.
    fn entry(&self, parent: u64, name: &str, kind: FileType) -> FileAttr {
        let size = match kind {
            FileType::Directory => 0,
            _ if parent == 1 && name.starts_with(BIG) => BIG_SIZE,
            _ => SIZE as u64,
        };
        let a = attr(ino_of(parent, name), kind, size);
        self.inodes.lock().unwrap().insert(a.ino.0, a);
        a
    }

    fn found(&self, parent: u64, name: &str) -> Option<FileAttr> {
        if parent == 1 {
            let kind = match name.starts_with(NEW_DIR) {
                true => FileType::Directory,
                false => FileType::RegularFile,
            };
            return Some(self.entry(parent, name, kind));
        }
        let key = (parent, name.to_string());
        let made = self.created.lock().unwrap().contains(&key);
        made.then(|| self.entry(parent, name, FileType::RegularFile))
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        bridgefs::fuse::negotiate(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match name.to_str().and_then(|n| self.found(parent.0, n)) {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let known = self.inodes.lock().unwrap().get(&ino.0).copied();
        reply.attr(&TTL, &known.unwrap_or(attr(ino.0, FileType::Directory, 0)));
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(1), bridgefs::fuse::open_flags(flags.0));
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_string_lossy().into_owned();
        let a = self.entry(parent.0, &name, FileType::RegularFile);
        self.created.lock().unwrap().insert((parent.0, name));
        reply.created(&TTL, &a, Generation(0), FileHandle(1), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        static BYTES: [u8; MAX_READ] = [0; MAX_READ];
        let known = self.inodes.lock().unwrap().get(&ino.0).map(|a| a.size);
        let end = known.unwrap_or(0).min(offset + u64::from(size));
        let len = end.saturating_sub(offset) as usize;
        reply.data(&BYTES[..len.min(MAX_READ)]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let key = (parent.0, name.to_string_lossy().into_owned());
        self.created.lock().unwrap().remove(&key);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }
}

/// Set to a directory, the bench binary serves the null filesystem there
/// until it is unmounted, instead of benchmarking.
const SERVE_AT: &str = "BRIDGEFS_BENCH_NULLFS_AT";

/// In the server process: serves until unmounted, then exits.
pub fn serve_if_asked() {
    let Some(dir) = std::env::var_os(SERVE_AT) else {
        return;
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("nullfs".into()),
        MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(THREADS);
    fuser::mount(NullFs::default(), dir, &config).unwrap();
    std::process::exit(0);
}

/// The null filesystem served by a child process on a directory of its
/// own; unmounted and reaped when dropped (also when the bench panics).
pub struct NullMount {
    server: std::process::Child,
    dir: tempfile::TempDir,
}

impl NullMount {
    pub fn start() -> NullMount {
        let dir = tempfile::tempdir().unwrap();
        let server = std::process::Command::new(std::env::current_exe().unwrap())
            .env(SERVE_AT, dir.path())
            .spawn()
            .unwrap();
        crate::setup::remember_mountpoint(dir.path());
        let m = NullMount { server, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !m.file().exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "null FUSE fs not mounted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The daemon raises its mount's read-ahead; so does this mount, or
        // a large read would arrive as 128 KiB requests here and 1 MiB there.
        bridgefs::service::readahead::raise(m.dir.path());
        m
    }

    /// The one file.
    pub fn file(&self) -> PathBuf {
        self.path(FILE)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for NullMount {
    /// Unmounted as the tests' mounts are (lazily if busy, also while the
    /// bench panics); the server then ends by itself, or is killed.
    fn drop(&mut self) {
        crate::common::force_unmount(self.dir.path());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while matches!(self.server.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
