//! Item 7: per-operation latency of calls the daemon answers from memory,
//! against the same call on a local file (the local filesystem: no remote
//! call is involved on either side), then against a FUSE filesystem that
//! answers from constants (the kernel's round trip, see `nullfs`): the
//! first ratio is what FUSE costs, the second the daemon's own share.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::harness::{pairs, Row, Unit};
use crate::nullfs::NullMount;
use crate::setup::{app_dir, fs_kind, Bench};

/// Operations per run; each row is the median over the runs.
const N: u32 = 2_000;
const KIB4: usize = 4096;
const FOREIGN: &CStr = c"security.selinux";

/// One operation timed on a floor's file and on the mount's.
type Op<'a> = (&'a str, &'a dyn Fn(&File, &Path));

/// The rows: cached getattr, foreign getxattr, open+read+close, each
/// against a local file, then against the null FUSE filesystem.
pub fn latency(b: &Bench) -> Vec<Row> {
    b.app_with("lat", 1, KIB4);
    let local = b.local_dir("lat", 1, KIB4).join(crate::setup::name(0));
    let m = b.mount(&["lat"], "600s");
    let null = NullMount::start();
    let remote = app_dir(&m, "lat").join(crate::setup::name(0));
    assert_eq!(open_read_close(&remote), KIB4); // now cached
    let floors = [
        (format!("local {}", fs_kind(&local)), local),
        ("null FUSE fs".to_string(), null.file()),
    ];
    let rf = File::open(&remote).unwrap();
    let ops: [Op; 3] = [
        ("getattr: statx FORCE_SYNC on an open fd", &|f, _| {
            statx_sync(f)
        }),
        ("getxattr security.selinux on an open fd", &|f, _| {
            foreign_getxattr(f);
        }),
        ("open + read 4 KiB + close, cached", &|_, p| {
            assert_eq!(open_read_close(p), KIB4)
        }),
    ];
    let mut rows = Vec::new();
    for (kind, path) in &floors {
        let ff = File::open(path).unwrap();
        assert_eq!(open_read_close(path), KIB4);
        println!(
            "  foreign getxattr answers: {kind} {}, mount {}",
            errno_name(foreign_getxattr(&ff)),
            errno_name(foreign_getxattr(&rf))
        );
        for (what, op) in ops {
            rows.push(pairs(
                &format!("{what} (floor: {kind})"),
                Unit::UsPerOp(N),
                |_| b.timed(|| (0..N).for_each(|_| op(&ff, path))),
                |_| b.timed(|| (0..N).for_each(|_| op(&rf, &remote))),
            ));
        }
    }
    drop(null);
    rows
}

/// `statx(fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC)`: the kernel may
/// not answer from its attribute cache, so on FUSE it is one GETATTR.
fn statx_sync(f: &File) {
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_EMPTY_PATH | libc::AT_STATX_FORCE_SYNC;
    let rc = unsafe {
        libc::statx(
            f.as_raw_fd(),
            c"".as_ptr(),
            flags,
            libc::STATX_BASIC_STATS,
            &mut buf,
        )
    };
    assert_eq!(rc, 0, "statx: {}", std::io::Error::last_os_error());
}

/// `fgetxattr` of a namespace the daemon does not implement; returns the
/// errno, which must be ENOTSUP or ENODATA (no label stored).
fn foreign_getxattr(f: &File) -> i32 {
    let mut buf = [0u8; 256];
    let rc = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            FOREIGN.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(rc, -1, "no {FOREIGN:?} expected");
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    assert!(e == libc::ENOTSUP || e == libc::ENODATA, "errno {e}");
    e
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOTSUP => "ENOTSUP",
        libc::ENODATA => "ENODATA",
        _ => "another errno",
    }
}

/// Opens, reads up to 4 KiB once, closes; returns the bytes read.
fn open_read_close(p: &Path) -> usize {
    let mut buf = [0u8; KIB4];
    File::open(p).unwrap().read(&mut buf).unwrap()
}
