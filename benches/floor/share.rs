//! Item 9: the kernel's share of items 3–6. The same large read, `cat`,
//! `cp -r` and `rm -r` on the null FUSE filesystem (no remote, no daemon work: only
//! the kernel's round trips), and from it the lowest ratio any FUSE daemon
//! could reach over those items' floors: (API floor + kernel alone) / API
//! floor. A target below that bound is out of reach on this machine.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use crate::harness::{median, pair_count, Row};
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
    let dd = timed_runs(|k| {
        let path = null.path(&format!("{BIG}{k}"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BIG_SIZE);
        let t = Instant::now();
        assert_eq!(drain(std::fs::File::open(&path).unwrap()), BIG_SIZE);
        t.elapsed().as_secs_f64()
    });
    drop(null);
    let big = rows.iter().find(|r| r.work.starts_with("cold read"));
    let mut lines = vec![big_line(dd, big)];
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
fn big_line(secs: f64, row: Option<&Row>) -> String {
    let alone = format!(
        "the 256 MiB read, 1 MiB reads, on a null FUSE fs (the kernel alone): {:.1} ms",
        secs * 1e3
    );
    match row {
        Some(r) => format!(
            "{alone}; over that item's floor of {:.1} ms no FUSE daemon goes below {:.2}× if download and delivery overlap perfectly, {:.2}× if not (the mount: {:.2}×)",
            r.floor * 1e3,
            r.floor.max(secs) / r.floor,
            (r.floor + secs) / r.floor,
            r.ratio
        ),
        None => alone,
    }
}

/// The median of `pair_count()` runs of `work` (given the run's index).
fn timed_runs(mut work: impl FnMut(usize) -> f64) -> f64 {
    median((0..pair_count()).map(&mut work).collect())
}

fn line(what: &str, secs: f64, row: Option<&Row>) -> String {
    let alone = format!(
        "{what} on a null FUSE fs (the kernel alone): {:.1} ms",
        secs * 1e3
    );
    match row {
        Some(r) => format!(
            "{alone}; over that item's API floor of {:.1} ms no FUSE daemon goes below {:.2}× (the mount: {:.2}×)",
            r.floor * 1e3,
            (r.floor + secs) / r.floor,
            r.ratio
        ),
        None => alone,
    }
}

fn refs(v: &[OsString]) -> Vec<&OsStr> {
    v.iter().map(OsString::as_os_str).collect()
}
