//! The kernel's own price for a FUSE request: a filesystem that answers
//! every request at once from constants (one directory, one 4 KiB file),
//! mounted like the daemon's mount (same thread count, `default_permissions`,
//! the same open flags) and served, like the daemon, by a process of its
//! own (this bench binary run again: a switch between two processes costs
//! more than one between threads of the caller's). What a request costs
//! here is the round trip through the kernel and back, which no daemon can
//! go below; the latency rows set the mount against it to show the
//! daemon's own share.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr,
    Request,
};

/// The one file's name and size.
pub const FILE: &str = "f";
const SIZE: usize = 4096;
const TTL: Duration = Duration::from_secs(600);
/// As many request threads as the daemon runs.
const THREADS: usize = 4;

struct NullFs;

fn attr(ino: u64) -> FileAttr {
    let (kind, perm, size, nlink) = match ino {
        1 => (FileType::Directory, 0o755, 0, 2),
        _ => (FileType::RegularFile, 0o644, SIZE as u64, 1),
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

impl Filesystem for NullFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match (parent.0, name.to_str()) {
            (1, Some(FILE)) => reply.entry(&TTL, &attr(2), Generation(0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.attr(&TTL, &attr(ino.0));
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

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let flags = FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH;
        reply.opened(FileHandle(1), flags);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        static BYTES: [u8; SIZE] = [7; SIZE];
        let from = (offset as usize).min(SIZE);
        reply.data(&BYTES[from..(from + size as usize).min(SIZE)]);
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
    fuser::mount(NullFs, dir, &config).unwrap();
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
        let m = NullMount { server, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !m.file().exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "null FUSE fs not mounted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// The one file.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join(FILE)
    }
}

impl Drop for NullMount {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
    }
}
