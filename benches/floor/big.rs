//! Item 8, opt-in (`BRIDGEFS_BENCH_BIG=1`): the daemon's peak memory
//! (`VmHWM`) for a 100,000-entry listing and for a 5 GiB upload. Each has
//! an emulator of its own, dropped at the end, so its memory goes with it.

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::time::Instant;

use crate::harness::{median, pairs, Row, Unit};
use crate::proxy::Proxy;
use crate::setup::{app_dir, free_bytes, ls_l, name, peak_rss, resident, Bench};

const HUGE_N: usize = 100_000;
const UPLOAD: u64 = 5 << 30;
const MIB: usize = 1 << 20;
/// Room for the daemon's spool and the proxy's copy, with a margin.
const NEEDED_FREE: u64 = 15 << 30;

pub fn enabled() -> bool {
    std::env::var("BRIDGEFS_BENCH_BIG").is_ok_and(|v| v == "1")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// A cold `ls -l` of a 100,000-file app, a new daemon per pair (floor:
/// the 1,000 list pages), and the daemon's `VmHWM` before and after it;
/// its `VmRSS` growth over the listing, per entry, is what one listed
/// entry holds (inode, name, attributes, listing).
pub fn huge_listing() -> (Row, String) {
    let b = Bench::new();
    b.add_app("huge");
    {
        let mut st = b.emu.emu().files.lock();
        let body = bytes::Bytes::from_static(b"one small file\n");
        for i in 0..HUGE_N {
            st.add_file("huge", &name(i), body.clone());
        }
    }
    b.raw.list("huge"); // the emulator builds its list index once
    let (mut before, mut after, mut held) = (Vec::new(), Vec::new(), Vec::new());
    let row = pairs(
        "cold `ls -l`, 100,000 files",
        Unit::Ms,
        |_| b.timed(|| assert_eq!(b.raw.list("huge").len(), HUGE_N)),
        |_| {
            let m = b.mount(&["huge"], "600s");
            before.push(mib(peak_rss(&m)));
            let rss = resident(&m);
            let s = b.timed(|| assert_eq!(ls_l(&app_dir(&m, "huge")), HUGE_N));
            after.push(mib(peak_rss(&m)));
            held.push(resident(&m).saturating_sub(rss) as f64 / HUGE_N as f64);
            s
        },
    );
    let line = format!(
        "daemon VmHWM, cold `ls -l` of 100,000 files: {:.1} MiB after start, {:.1} MiB after the listing (median of {} mounts; max {:.1} MiB); resident growth over the listing: {:.0} bytes per listed entry (median)",
        median(before),
        median(after.clone()),
        after.len(),
        after.iter().cloned().fold(0.0, f64::max),
        median(held)
    );
    (row, line)
}

/// Writes 5 GiB of a pattern into a new file with 1 MiB writes and closes
/// it (close returns once the remote holds the bytes), through the proxy
/// that takes blobs over the emulator's 1 GiB limit; checks the remote
/// copy and reports the daemon's `VmHWM`.
pub fn huge_upload() -> String {
    let tmp = std::env::temp_dir();
    let free = free_bytes(&tmp);
    if free < NEEDED_FREE {
        return format!(
            "5 GiB upload skipped: {:.1} GiB free in {} (needs 15 GiB)",
            mib(free) / 1024.0,
            tmp.display()
        );
    }
    let b = Bench::new();
    b.add_app("upload");
    let proxy = Proxy::start(&b.emu);
    let m = b.mount_at(&proxy.url, &["upload"], "60s", "600s");
    let start_rss = mib(peak_rss(&m));
    let path = app_dir(&m, "upload").join("big5g.bin");
    let (write, close) = write_pattern(&path);
    let peak = mib(peak_rss(&m));
    let outcome = match close.1 {
        Ok(()) => check_remote(&b),
        Err(e) => format!("close failed: {e}"),
    };
    format!(
        "daemon VmHWM, 5 GiB upload (1 MiB writes, then close): {start_rss:.1} MiB after start, {peak:.1} MiB after close; writes {:.1} s, close (the upload) {:.1} s; {outcome}",
        write, close.0
    )
}

/// The 1 MiB block `i` of the upload: a pattern stamped with its index.
fn block(buf: &mut [u8], i: u64) {
    buf[..8].copy_from_slice(&i.to_le_bytes());
}

/// Writes the 5 GiB, then closes by hand so close's own answer is seen;
/// returns (seconds writing, (seconds closing, close's result)).
fn write_pattern(path: &std::path::Path) -> (f64, (f64, std::io::Result<()>)) {
    let mut buf = crate::common::pattern(MIB, 9);
    let t = Instant::now();
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..UPLOAD / MIB as u64 {
        block(&mut buf, i);
        f.write_all(&buf).unwrap();
    }
    let write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rc = unsafe { libc::close(f.into_raw_fd()) };
    let result = match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    (write, (t.elapsed().as_secs_f64(), result))
}

/// Size and a few blocks of the remote copy, from the emulator's state.
fn check_remote(b: &Bench) -> String {
    let st = b.emu.emu().files.lock();
    let f = st.files.values().find(|f| f.name == "big5g.bin");
    let Some(bytes) = f.and_then(|f| st.bytes(f.id)) else {
        return "the remote has no big5g.bin".to_string();
    };
    assert_eq!(bytes.len() as u64, UPLOAD, "remote size");
    let mut want = crate::common::pattern(MIB, 9);
    let blocks = UPLOAD / MIB as u64;
    for i in [0, blocks / 2, blocks - 1] {
        block(&mut want, i);
        let at = i as usize * MIB;
        assert!(bytes[at..at + MIB] == want[..], "remote block {i}");
    }
    "the remote holds 5 GiB, sampled blocks match".to_string()
}
