//! Item 9: the kernel's share of items 3–6. The same large read, `cat`,
//! `cp -r` and `rm -r` on the null FUSE filesystem (no remote, no daemon work: only
//! the kernel's round trips), and from it the lowest ratio any FUSE daemon
//! could reach over those items' floors: (API floor + kernel alone) / API
//! floor. A target below that bound is out of reach on this machine.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use crate::harness::{clocked, cores, median, pair_count, Row};
use crate::nullfs::{NullMount, BIG, BIG_SIZE, NEW_DIR};
use crate::raw::drain;
use crate::setup::{name, run, Bench};

const CAT_N: usize = 1_000;
const WRITE_N: usize = 500;
const KIB4: usize = 4096;

/// One line per workload: its median time on the null filesystem, and
/// the bound it sets against the row of `rows` that item measured.
pub fn kernel_share(b: &Bench, rows: &[Row]) -> Vec<String> {
    let null = NullMount::start();
    let src = b.local_dir("share-src", WRITE_N, KIB4);
    let names = |tag: &str, k: usize, n: usize| -> Vec<OsString> {
        let path = |i| null.path(&format!("{tag}{k}-{}", name(i)));
        (0..n).map(|i| path(i).into_os_string()).collect()
    };
    let cat = timed_runs(|k| {
        let files = names("cat", k, CAT_N);
        let t = Instant::now();
        assert_eq!(run("cat", &refs(&files)).len(), CAT_N * KIB4);
        t.elapsed().as_secs_f64()
    });
    let cp = timed_runs(|k| {
        let (from, to) = (src.join("."), null.path(&format!("{NEW_DIR}{k}")));
        let t = Instant::now();
        run("cp", &["-r".as_ref(), from.as_os_str(), to.as_os_str()]);
        t.elapsed().as_secs_f64()
    });
    let rm = timed_runs(|k| {
        let files = names("rm", k, WRITE_N);
        // Looked up first, as item 6 lists the app before its clock starts.
        for f in &files {
            std::fs::metadata(f).unwrap();
        }
        let mut args: Vec<OsString> = vec!["-r".into(), "--".into()];
        args.extend(files);
        let t = Instant::now();
        run("rm", &refs(&args));
        t.elapsed().as_secs_f64()
    });
    let mut dd_cpu = Vec::new();
    let dd = runs(|k| {
        let path = null.path(&format!("{BIG}{k}"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BIG_SIZE);
        let (time, cpu) = clocked(|| {
            assert_eq!(drain(std::fs::File::open(&path).unwrap()), BIG_SIZE);
        });
        dd_cpu.push(cpu.as_secs_f64());
        time.as_secs_f64()
    });
    drop(null);
    let big = rows.iter().find(|r| r.work.starts_with("cold read"));
    let mut lines = vec![big_line(dd, big), big_cpu_line(dd_cpu, big)];
    lines.extend(
        [
            ("`cat` of 1,000 files", cat, "cold `cat`"),
            ("`cp -r` of 500 files", cp, "`cp -r`"),
            ("`rm -r` of 500 files", rm, "`rm -r`"),
        ]
        .into_iter()
        .map(|(what, secs, item)| line(what, secs, rows.iter().find(|r| r.work.starts_with(item)))),
    );
    lines
}

/// A large read can overlap its download with its delivery to the
/// reader, so its bound lies between the slower of the two and their sum.
/// The kernel's time for it moves with how fast this VM hands out fresh
/// pages for the page cache (the first touch of 256 MiB here takes 90 ms
/// to 800 ms), so the bound takes the fastest run, the weakest claim.
fn big_line(secs: Vec<f64>, row: Option<&Row>) -> String {
    let fastest = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = secs.iter().copied().fold(0.0, f64::max);
    let alone = format!(
        "the 256 MiB read, 1 MiB reads, on a null FUSE fs (the kernel alone): fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
        fastest * 1e3,
        median(secs) * 1e3,
        slowest * 1e3
    );
    match row {
        Some(r) => format!(
            "{alone}; over that item's floor of {:.1} ms no FUSE daemon goes below {:.2}× if download and delivery overlap perfectly, {:.2}× if not (fastest run; the mount: {:.2}×)",
            r.floor * 1e3,
            r.floor.max(fastest) / r.floor,
            (r.floor + fastest) / r.floor,
            r.ratio
        ),
        None => alone,
    }
}

/// Whatever overlaps, the CPU work must be done: any FUSE daemon's large
/// read costs at least the floor's work (serving and receiving the bytes)
/// plus the kernel's alone (the null fs run: page cache, copies, the
/// reader), and the machine does at most `cores()` seconds of it per second.
fn big_cpu_line(cpu: Vec<f64>, row: Option<&Row>) -> String {
    let least = cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let alone = format!(
        "CPU busy during that null-fs read (all processes and the kernel): least {:.0} ms, median {:.0} ms",
        least * 1e3,
        median(cpu) * 1e3
    );
    match row {
        Some(r) => format!(
            "{alone}; with the floor's {:.0} ms of CPU, no FUSE daemon's read on {} cores goes below {:.2}× (least run; the mount's own CPU: {:.0} ms, {:.2}×)",
            r.floor_cpu * 1e3,
            cores(),
            (r.floor_cpu + least) / (cores() * r.floor),
            r.mount_cpu * 1e3,
            r.mount_cpu / (cores() * r.floor)
        ),
        None => alone,
    }
}

/// `pair_count()` runs of `work` (given the run's index), in seconds.
fn runs(work: impl FnMut(usize) -> f64) -> Vec<f64> {
    (0..pair_count()).map(work).collect()
}

/// The median of `pair_count()` runs of `work` (given the run's index).
fn timed_runs(work: impl FnMut(usize) -> f64) -> f64 {
    median(runs(work))
}

fn line(what: &str, secs: f64, row: Option<&Row>) -> String {
    let alone = format!(
        "{what} on a null FUSE fs (the kernel alone): {:.1} ms",
        secs * 1e3
    );
    match row {
        Some(r) => format!(
            "{alone}; over that item's API floor of {:.1} ms no FUSE daemon goes below {:.2}×{} (the mount: {:.2}×)",
            r.floor * 1e3,
            (r.floor + secs) / r.floor,
            durable_bound(secs, r),
            r.ratio
        ),
        None => alone,
    }
}

/// For an item whose daemon timed its own disk syncs: the bound of a
/// daemon that keeps the same durability promise, which cannot overlap
/// those syncs with the upload they must precede, nor with the kernel's
/// round trips of a sequential `cp`.
fn durable_bound(kernel: f64, r: &Row) -> String {
    match r.mount_disk_sync {
        Some(sync) => format!(
            ", nor below {:.2}× with the mount's durability promise (its own journal fdatasyncs: {:.1} ms, median per run)",
            (r.floor + kernel + sync) / r.floor,
            sync * 1e3
        ),
        None => String::new(),
    }
}

fn refs(v: &[OsString]) -> Vec<&OsStr> {
    v.iter().map(OsString::as_os_str).collect()
}
