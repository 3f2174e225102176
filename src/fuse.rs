//! The thin fuser adapter. A request the core can answer from memory or
//! the local spool (its `*_cached` methods: lookups and attributes of
//! listed entries, directory snapshots, reads of cached blocks, spool
//! writes, closes with nothing to upload, foreign xattr namespaces) is
//! answered on the FUSE thread; anything else is spawned on tokio with its
//! reply moved into the task, so a slow remote call never blocks other
//! requests. It only translates between fuser's types and [`BridgeFs`];
//! errors become errnos through [`FsError::errno`].

use std::ffi::OsStr;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::backend::Kind;
use crate::fs::core::{Attr, BridgeFs};
use crate::fs::{FlushStep, FsError, FsResult, SetAttr};
use crate::metrics::FuseMetrics;

/// The kernel's caches, through fuser's notifier: what the core asks to
/// forget (see [`crate::fs::kernel`]). Errors (`ENOENT`: the kernel had
/// nothing cached) change nothing.
pub struct KernelNotifier(pub fuser::Notifier);

impl crate::fs::kernel::KernelCache for KernelNotifier {
    fn forget_entry(&self, parent: u64, name: &str) {
        let _ = self.0.inval_entry(INodeNo(parent), OsStr::new(name));
    }

    fn forget_inode(&self, ino: u64) {
        let _ = self.0.inval_inode(INodeNo(ino), 0, 0);
    }
}

/// Owner shown on every entry.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

pub struct FuseAdapter {
    fs: Arc<BridgeFs>,
    rt: Handle,
    owner: Owner,
    metrics: Arc<FuseMetrics>,
}

impl FuseAdapter {
    pub fn new(
        fs: Arc<BridgeFs>,
        rt: Handle,
        owner: Owner,
        metrics: Arc<FuseMetrics>,
    ) -> FuseAdapter {
        FuseAdapter {
            fs,
            rt,
            owner,
            metrics,
        }
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        to_file_attr(a, self.owner)
    }
}

fn to_file_attr(a: &Attr, owner: Owner) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid.unwrap_or(owner.uid),
        gid: a.gid.unwrap_or(owner.gid),
        rdev: 0,
        blksize: 1 << 20,
        flags: 0,
    }
}

/// The process (thread group) a request comes from: FUSE gives the thread,
/// and "a flush from another process" must not mean "another thread".
/// Asked at every create, open for writing and flush: most callers are a
/// process's only thread, which `pidfd_open` tells in two syscalls; for
/// the others, `Tgid:` is within the first lines of `/proc/TID/status`
/// (one read of them, though the kernel renders the whole file).
fn process_of(req: &Request) -> u32 {
    let tid = req.pid();
    tgid_of(tid).unwrap_or(tid)
}

fn tgid_of(tid: u32) -> Option<u32> {
    if leads_its_process(tid) {
        return Some(tid);
    }
    use std::io::Read;
    let mut head = [0u8; 512];
    let n = std::fs::File::open(format!("/proc/{tid}/status"))
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    // Only a whole line counts: a number cut at the buffer's end is wrong.
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What a lookup tells the kernel: the entry, or that the name is missing
/// and for how long it may keep that (a negative dentry).
enum Found {
    Entry(Attr),
    Missing(Duration),
}

/// A name missing because a negative entry says so is answered as a
/// negative dentry valid as long as that entry: the kernel then asks
/// nothing more of that name meanwhile (`cp` probes each name before
/// creating it). The core tells the kernel to forget it if the name comes
/// sooner (a re-listing, SIGHUP).
fn found_or_missing(
    fs: &BridgeFs,
    parent: u64,
    name: &str,
    found: FsResult<Attr>,
) -> FsResult<Found> {
    match found {
        Ok(a) => Ok(Found::Entry(a)),
        Err(FsError::NotFound) => match fs.missing_for(parent, name) {
            Some(valid_for) => Ok(Found::Missing(valid_for)),
            None => Err(FsError::NotFound),
        },
        Err(e) => Err(e),
    }
}

/// The attributes of a negative entry: node id 0 is how FUSE says
/// "no such name, and keep knowing it".
fn missing_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: std::time::UNIX_EPOCH,
        mtime: std::time::UNIX_EPOCH,
        ctime: std::time::UNIX_EPOCH,
        crtime: std::time::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// Whether `tid` is its process's main thread (its tid is the tgid):
/// `pidfd_open` (without `PIDFD_THREAD`) accepts only those.
fn leads_its_process(tid: u32) -> bool {
    // SAFETY: plain syscalls on integers; the fd returned is ours to close.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, 0) };
    if fd < 0 {
        return false;
    }
    unsafe { libc::close(fd as libc::c_int) };
    true
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn name_str(name: &OsStr) -> Result<String, Errno> {
    name.to_str()
        .map(str::to_string)
        .ok_or(Errno::from_i32(libc::EINVAL))
}

/// Logs errors worth an operator's attention (not ENOENT and friends).
fn log_error(op: &str, e: &FsError) {
    match e {
        // Asked for on every write (security.capability): not worth a line.
        FsError::NoData => {}
        FsError::Io(_) | FsError::TimedOut(_) | FsError::AccessDenied(_) => {
            tracing::warn!(op, error = %e, "request failed")
        }
        _ => tracing::trace!(op, error = %e, "request failed"),
    }
}

/// The one thing every reply type can do: fail with an errno.
trait Fail {
    fn fail(self, e: Errno);
}

macro_rules! fail_via_error {
    ($($t:ty),*) => { $(impl Fail for $t { fn fail(self, e: Errno) { self.error(e) } })* };
}
fail_via_error!(
    ReplyEntry,
    ReplyAttr,
    ReplyEmpty,
    ReplyOpen,
    ReplyData,
    ReplyXattr,
    ReplyCreate,
    ReplyDirectory,
    ReplyDirectoryPlus
);

/// Sends one answer: `ok` answers a success, an error its errno; both are
/// counted in the metrics.
fn finish<R: Fail, T>(
    metrics: &FuseMetrics,
    op: &'static str,
    started: Instant,
    reply: R,
    result: FsResult<T>,
    ok: impl FnOnce(R, T),
) {
    match result {
        Ok(v) => {
            ok(reply, v);
            metrics.record(op, started.elapsed(), None);
        }
        Err(e) => {
            log_error(op, &e);
            reply.fail(errno(&e));
            metrics.record(op, started.elapsed(), Some(e.errno()));
        }
    }
}

impl FuseAdapter {
    /// Runs one request on tokio with its reply moved into the task, so
    /// that remote work never holds a FUSE thread.
    fn run<R, T, F>(
        &self,
        op: &'static str,
        started: Instant,
        reply: R,
        fut: F,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: Fail + Send + 'static,
        T: Send + 'static,
        F: std::future::Future<Output = FsResult<T>> + Send + 'static,
    {
        let metrics = self.metrics.clone();
        self.rt.spawn(async move {
            let result = fut.await;
            finish(&metrics, op, started, reply, result, ok);
        });
    }

    /// The fast path: the core's answer from memory, given on this FUSE
    /// thread (`fast`), or else the long way on tokio (`slow`).
    fn answer<R, T, F>(
        &self,
        op: &'static str,
        reply: R,
        fast: impl FnOnce() -> Option<FsResult<T>>,
        slow: impl FnOnce() -> F,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        R: Fail + Send + 'static,
        T: Send + 'static,
        F: std::future::Future<Output = FsResult<T>> + Send + 'static,
    {
        let started = Instant::now();
        match fast() {
            Some(result) => finish(&self.metrics, op, started, reply, result, ok),
            None => self.run(op, started, reply, slow(), ok),
        }
    }
}

/// What the daemon asks of the kernel at INIT (the benchmark's null
/// filesystem asks the same, so that the kernel talks to both alike).
/// READDIRPLUS: `ls -l` gets attributes with the listing. Atomic O_TRUNC:
/// `echo x > f` is one open with O_TRUNC, not a separate truncate that
/// would upload an empty version first. KILLPRIV_V2: the daemon clears
/// set-id bits itself, so the kernel asks for no `security.capability`
/// before writes. A read-ahead of 1 MiB: one block of the content cache.
pub fn negotiate(config: &mut KernelConfig) {
    let _ = config.add_capabilities(
        InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2,
    );
    let _ = config.set_max_readahead(1 << 20);
}

/// The open flags of a handle opened with `flags`. A reader keeps the
/// pages an earlier open cached: the core tells the kernel to drop them
/// whenever the content changes (a new remote version seen, a
/// replacement), so they are never stale beyond what a read through the
/// daemon would be. Its close sends no FLUSH (one round trip fewer per
/// `cat`): a reader has nothing to upload, and its release lets go of the
/// version it pinned.
pub fn open_flags(flags: i32) -> FopenFlags {
    match flags & libc::O_ACCMODE == libc::O_RDONLY {
        true => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        false => FopenFlags::empty(),
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        negotiate(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENOENT));
        };
        let (fs, owner) = (self.fs.clone(), self.owner);
        self.answer(
            "lookup",
            reply,
            || {
                let found = self.fs.lookup_cached(parent.0, &name)?;
                Some(found_or_missing(&self.fs, parent.0, &name, found))
            },
            || {
                let name = name.clone();
                async move {
                    let found = fs.lookup(parent.0, &name).await;
                    found_or_missing(&fs, parent.0, &name, found)
                }
            },
            move |r, found| match found {
                Found::Entry(a) => r.entry(&a.valid_for, &to_file_attr(&a, owner), Generation(0)),
                Found::Missing(valid_for) => r.entry(&valid_for, &missing_attr(), Generation(0)),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, owner) = (self.fs.clone(), self.owner);
        let fh = fh.map(|f| f.0);
        self.answer(
            "getattr",
            reply,
            || self.fs.getattr_cached(ino.0, fh),
            || async move { fs.getattr_of(ino.0, fh).await },
            move |r, a| r.attr(&a.valid_for, &to_file_attr(&a, owner)),
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (fs, owner) = (self.fs.clone(), self.owner);
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        let change = SetAttr {
            size,
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        self.run(
            "setattr",
            Instant::now(),
            reply,
            async move { fs.setattr(ino.0, change, fh.map(|f| f.0)).await },
            move |r, a| r.attr(&a.valid_for, &to_file_attr(&a, owner)),
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::EINVAL));
        };
        let (fs, owner) = (self.fs.clone(), self.owner);
        self.run(
            "mkdir",
            Instant::now(),
            reply,
            async move { fs.mkdir(parent.0, &name).await },
            move |r, a| r.entry(&a.valid_for, &to_file_attr(&a, owner), Generation(0)),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENOENT));
        };
        let fs = self.fs.clone();
        self.run(
            "unlink",
            Instant::now(),
            reply,
            async move { fs.unlink(parent.0, &name).await },
            move |r, ()| r.ok(),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENOENT));
        };
        let fs = self.fs.clone();
        self.run(
            "rmdir",
            Instant::now(),
            reply,
            async move { fs.rmdir(parent.0, &name).await },
            move |r, ()| r.ok(),
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (Ok(name), Ok(newname)) = (name_str(name), name_str(newname)) else {
            return reply.error(Errno::from_i32(libc::EINVAL));
        };
        let fs = self.fs.clone();
        let flags = flags.bits();
        let rename = async move {
            fs.rename(parent.0, &name, newparent.0, &newname, flags)
                .await
        };
        self.run("rename", Instant::now(), reply, rename, |r, ()| r.ok());
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let pid = process_of(req);
        let keep = open_flags(flags.0);
        self.answer(
            "open",
            reply,
            || self.fs.open_cached(ino.0, flags.0, pid),
            || async move { fs.open(ino.0, flags.0, pid).await },
            move |r, fh| r.opened(FileHandle(fh), keep),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.answer(
            "read",
            reply,
            || self.fs.read_cached(ino.0, fh.0, offset, size),
            || async move { fs.read(ino.0, fh.0, offset, size).await },
            move |r, data| r.data(&data),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Local spool I/O: answered on the FUSE thread, no remote call.
        let started = Instant::now();
        // FUSE_HANDLE_KILLPRIV_V2: the kernel says when a write by an
        // unprivileged writer must drop set-user/group-id bits.
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            self.fs.kill_suid(ino.0);
        }
        match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => {
                reply.written(n);
                self.metrics.record("write", started.elapsed(), None);
            }
            Err(e) => {
                log_error("write", &e);
                reply.error(errno(&e));
                self.metrics
                    .record("write", started.elapsed(), Some(e.errno()));
            }
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let (fs, started) = (self.fs.clone(), Instant::now());
        let pid = process_of(req);
        let ok = |r: ReplyEmpty, ()| r.ok();
        match self.fs.flush_here(ino.0, fh.0, pid) {
            FlushStep::Done(result) => finish(&self.metrics, "flush", started, reply, result, ok),
            FlushStep::Upload(durable) => {
                let upload = async move { fs.flush_upload(durable).await };
                self.run("flush", started, reply, upload, ok)
            }
            FlushStep::LongWay => {
                let flush = async move { fs.flush(ino.0, fh.0, pid).await };
                self.run("flush", started, reply, flush, ok)
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let (fs, metrics) = (self.fs.clone(), self.metrics.clone());
        let started = Instant::now();
        if fs.release_cached(ino.0, fh.0) {
            reply.ok();
            return metrics.record("release", started.elapsed(), None);
        }
        self.rt.spawn(async move {
            fs.release(ino.0, fh.0).await;
            reply.ok();
            metrics.record("release", started.elapsed(), None);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(
            "fsync",
            Instant::now(),
            reply,
            async move { fs.fsync(ino.0).await },
            move |r, ()| r.ok(),
        );
    }

    // ----- requests bridgefs has no use for, answered quietly -----------
    // (fuser's defaults log a warning for each; `sed -i` alone sends ioctls.)

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(errno(&FsError::NoSuchIoctl));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(errno(&FsError::LeftToKernel));
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(errno(&FsError::LeftToKernel));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno(&FsError::NotSupported));
    }

    /// Device nodes, FIFOs and sockets cannot exist on the remote (POSIX:
    /// EPERM where the file type is not supported).
    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::NotPermitted));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::NotPermitted));
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(errno(&FsError::NotPermitted));
    }

    /// Directory changes are made on the remote as they happen.
    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.answer(
            "opendir",
            reply,
            || self.fs.opendir_cached(ino.0),
            || async move { fs.opendir(ino.0).await },
            move |r, fh| r.opened(FileHandle(fh), FopenFlags::empty()),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let started = Instant::now();
        let result = self.fs.readdir(fh.0, offset, false, |item, next| {
            let kind = match item.attr.kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
            };
            reply.add(INodeNo(item.attr.ino), next, kind, &item.name)
        });
        finish(&self.metrics, "readdir", started, reply, result, |r, ()| {
            r.ok()
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let started = Instant::now();
        let result = self.fs.readdir(fh.0, offset, true, |item, next| {
            let attr = self.file_attr(&item.attr);
            let valid = &item.attr.valid_for;
            reply.add(
                INodeNo(item.attr.ino),
                next,
                &item.name,
                valid,
                &attr,
                Generation(0),
            )
        });
        finish(
            &self.metrics,
            "readdirplus",
            started,
            reply,
            result,
            |r, ()| r.ok(),
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Remote capacity is unknown: report plenty so cp and rsync proceed.
        let blocks = 1u64 << 32;
        reply.statfs(blocks, blocks, blocks, 1 << 24, 1 << 24, 4096, 255, 4096);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENOTSUP));
        };
        let fs = self.fs.clone();
        let value = value.to_vec();
        self.run(
            "setxattr",
            Instant::now(),
            reply,
            async move { fs.setxattr(ino.0, &name, Some(&value)).await },
            move |r, ()| r.ok(),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENODATA));
        };
        let fs = self.fs.clone();
        let asked = name.clone();
        self.answer(
            "getxattr",
            reply,
            || self.fs.getxattr_cached(&asked),
            || async move { fs.getxattr(ino.0, &name).await },
            move |r, v| xattr_reply(r, size, &v),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.run(
            "listxattr",
            Instant::now(),
            reply,
            async move { fs.listxattr(ino.0).await },
            move |r, names| {
                // NUL-terminated names, as listxattr(2) returns them.
                let buf: Vec<u8> = names.iter().flat_map(|n| n.bytes().chain([0])).collect();
                xattr_reply(r, size, &buf)
            },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::ENODATA));
        };
        let fs = self.fs.clone();
        self.run(
            "removexattr",
            Instant::now(),
            reply,
            async move { fs.setxattr(ino.0, &name, None).await },
            move |r, ()| r.ok(),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::from_i32(libc::EINVAL));
        };
        let (fs, owner) = (self.fs.clone(), self.owner);
        let pid = process_of(req);
        self.answer(
            "create",
            reply,
            || self.fs.create_cached(parent.0, &name, flags, pid),
            || {
                let name = name.clone();
                async move { fs.create(parent.0, &name, flags, pid).await }
            },
            move |r, (a, fh)| {
                r.created(
                    &a.valid_for,
                    &to_file_attr(&a, owner),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            },
        );
    }
}

/// Answers a size probe (`size == 0`), the value, or ERANGE.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

#[cfg(test)]
mod tests {
    use super::{leads_its_process, tgid_of};

    #[test]
    fn a_thread_maps_to_its_process() {
        let pid = std::process::id();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            wait.recv().unwrap(); // alive while its /proc entry is read
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, pid);
        assert!(leads_its_process(pid) && !leads_its_process(tid));
        assert_eq!(tgid_of(tid), Some(pid));
        assert_eq!(tgid_of(pid), Some(pid));
        assert_eq!(tgid_of(u32::MAX), None);
        done.send(()).unwrap();
        t.join().unwrap();
    }
}
