//! Items 1–6: listings, reads and writes of whole workloads, each against
//! the floor of the same API calls made by the raw client.

use std::ffi::OsString;

use crate::common::{self, Mount};
use crate::harness::{median, pair_count, pairs, Row, Unit};
use crate::raw::drain;
use crate::setup::{app_dir, fs_kind, ls_l, name, run, Bench};

const LIST_N: usize = 2_000;
const BIG: u64 = 256 << 20;
const SMALL_N: usize = 1_000;
const WRITE_N: usize = 500;
const KIB4: usize = 4096;

/// The `n` file paths of an app in a mount, as `cat`, `rm` take them.
fn paths(m: &Mount, app: &str, n: usize) -> Vec<OsString> {
    let dir = app_dir(m, app);
    (0..n).map(|i| dir.join(name(i)).into_os_string()).collect()
}

/// Item 1: cold `ls -l` of 2,000 files: each mount run is a new daemon, so its
/// listing and attribute caches and the kernel's dentries are empty.
/// Floor: the list pages (`take=100`, 20 calls) one after the other.
pub fn cold_listing(b: &Bench) -> Row {
    b.app_with("list2k", LIST_N, 1024);
    b.raw.list("list2k"); // the emulator builds its list index once
    pairs(
        "cold `ls -l`, 2,000 files",
        Unit::Ms,
        |_| b.timed(|| assert_eq!(b.raw.list("list2k").len(), LIST_N)),
        |_| {
            let m = b.mount(&["list2k"], "60s");
            b.timed(|| assert_eq!(ls_l(&app_dir(&m, "list2k")), LIST_N))
        },
    )
}

/// Item 2: warm `ls -l` of the same 2,000 entries (listed once, trusted for
/// 600 s) against `ls -l` of a local directory of 2,000 files.
pub fn warm_listing(b: &Bench) -> Row {
    let local = b.local_dir("ls2k", LIST_N, 1024);
    let m = b.mount(&["list2k"], "600s");
    let dir = app_dir(&m, "list2k");
    assert_eq!(ls_l(&dir), LIST_N);
    assert_eq!(ls_l(&local), LIST_N);
    pairs(
        &format!(
            "warm `ls -l`, 2,000 files (floor: local {})",
            fs_kind(&local)
        ),
        Unit::Ms,
        |_| b.timed(|| assert_eq!(ls_l(&local), LIST_N)),
        |_| b.timed(|| assert_eq!(ls_l(&dir), LIST_N)),
    )
}

/// Item 3: cold read of a 256 MiB file with 1 MiB reads: a new daemon per run
/// (empty content cache, no page cache on the new superblock); the file is
/// looked up before the clock starts, so only the content is timed.
/// Floor: one plain GET of its `download_url`.
pub fn big_read(b: &Bench) -> Row {
    b.add_app("big");
    let data = bridgefs_emulator::demo_bytes(3, BIG as usize);
    b.emu.emu().files.lock().add_file("big", "big.bin", data);
    let url = b.raw.list("big")[0]["download_url"]
        .as_str()
        .unwrap()
        .to_string();
    pairs(
        "cold read, 256 MiB file, 1 MiB reads",
        Unit::Ms,
        |_| b.timed(|| assert_eq!(b.raw.download(&url), BIG)),
        |_| {
            let m = b.mount(&["big"], "60s");
            let path = app_dir(&m, "big").join("big.bin");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), BIG);
            b.timed(|| assert_eq!(drain(std::fs::File::open(&path).unwrap()), BIG))
        },
    )
}

/// Item 4: cold `cat` of 1,000 4 KiB files in one app, a new daemon per run.
/// Floor: what a client must do knowing only the app, as the mount knows
/// only the names: the 10 list pages, then the 1,000 downloads.
pub fn small_reads(b: &Bench) -> Row {
    b.app_with("small1k", SMALL_N, KIB4);
    let total = (SMALL_N * KIB4) as u64;
    let floor = || {
        let files = b.raw.list("small1k");
        let urls = files.iter().map(|f| f["download_url"].as_str().unwrap());
        assert_eq!(urls.map(|u| b.raw.download(u)).sum::<u64>(), total);
    };
    pairs(
        "cold `cat`, 1,000 files of 4 KiB",
        Unit::Ms,
        |_| b.timed(floor),
        |_| {
            let m = b.mount(&["small1k"], "60s");
            let args = paths(&m, "small1k", SMALL_N);
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            b.timed(|| assert_eq!(run("cat", &args).len() as u64, total))
        },
    )
}

/// Item 5: `cp -r` of a local directory of 500 4 KiB files into an empty app
/// (a new app per run); durable when `cp` returns, which is checked
/// against the emulator's state. Floor: 500 blob uploads + 500 creates.
/// The daemon's own disk-sync time per run (its metrics) is kept for
/// item 9's bound: the floor promises no durability.
pub fn copy_in(b: &Bench) -> Row {
    let src = b.local_dir("cp-src", WRITE_N, KIB4);
    let data: Vec<Vec<u8>> = (0..WRITE_N)
        .map(|i| std::fs::read(src.join(name(i))).unwrap())
        .collect();
    let apps = fresh_apps(b, "cp");
    let (m, metrics) = b.mount_metered(&refs(&apps.1), "600s");
    let synced = || common::sample(&common::scrape(metrics), "bridgefs_disk_sync_seconds_total");
    let mut syncs = Vec::new();
    let want = (WRITE_N, (WRITE_N * KIB4) as u64);
    let mut row = pairs(
        "`cp -r`, 500 files of 4 KiB into the mount",
        Unit::Ms,
        |k| {
            let app = &apps.0[k];
            let s = b.timed(|| {
                for (i, d) in data.iter().enumerate() {
                    b.raw.upload(app, &name(i), d.clone());
                }
            });
            assert_eq!(b.live(app), want);
            s
        },
        |k| {
            let (from, to) = (src.join("."), app_dir(&m, &apps.1[k]));
            let before = synced();
            let s = b.timed(|| {
                run("cp", &["-r".as_ref(), from.as_os_str(), to.as_os_str()]);
            });
            syncs.push(synced() - before);
            assert_eq!(b.live(&apps.1[k]), want, "durable when cp returns");
            s
        },
    );
    row.mount_disk_sync = Some(median(syncs));
    row
}

/// Item 6: `rm -r` of 500 files (a new app of 500 per run; the mount has
/// listed it before the clock starts, so only the removals are timed).
/// Floor: 500 trash calls, what `rm` does in an app.
pub fn remove(b: &Bench) -> Row {
    let (floor_apps, mount_apps) = fresh_apps(b, "rm");
    let ids: Vec<Vec<u64>> = floor_apps.iter().map(|a| fill(b, a)).collect();
    mount_apps.iter().for_each(|a| drop(fill(b, a)));
    let m = b.mount(&refs(&mount_apps), "600s");
    pairs(
        "`rm -r`, 500 files",
        Unit::Ms,
        |k| {
            let s = b.timed(|| ids[k].iter().for_each(|id| b.raw.trash(*id)));
            assert_eq!(b.live(&floor_apps[k]).0, 0);
            s
        },
        |k| {
            let app = &mount_apps[k];
            assert_eq!(ls_l(&app_dir(&m, app)), WRITE_N);
            let mut args: Vec<OsString> = vec!["-r".into(), "--".into()];
            args.extend(paths(&m, app, WRITE_N));
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let s = b.timed(|| drop(run("rm", &args)));
            assert_eq!(b.live(app).0, 0, "gone from the remote when rm returns");
            s
        },
    )
}

/// 500 small files in the (already made) app `uid`; their ids.
fn fill(b: &Bench, uid: &str) -> Vec<u64> {
    let mut st = b.emu.emu().files.lock();
    (0..WRITE_N)
        .map(|i| st.add_file(uid, &name(i), crate::common::pattern(KIB4, i as u8)))
        .collect()
}

/// One new empty app per pair for each side: (floor apps, mount apps).
fn fresh_apps(b: &Bench, tag: &str) -> (Vec<String>, Vec<String>) {
    let make = |side: &str| -> Vec<String> {
        (0..pair_count())
            .map(|k| format!("{tag}-{side}{k}"))
            .collect()
    };
    let (f, m) = (make("floor"), make("mount"));
    f.iter().chain(&m).for_each(|a| b.add_app(a));
    (f, m)
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
