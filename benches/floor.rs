//! Speed against the floor, measured in the same run: each item's work is
//! done by the cheapest client (one keep-alive blocking HTTP client making
//! the same API calls, or the local filesystem), then through a real
//! mount, in alternating pairs; the table shows the median floor, the
//! median mount time and the median of the per-pair ratios (mount/floor).
//! It asserts results (byte and file counts), never times.
//!
//! `cargo bench --bench floor`; `BRIDGEFS_BENCH_BIG=1` adds item 8 (a
//! 100,000-file listing and a 5 GiB upload, with the daemon's peak RSS);
//! `BRIDGEFS_BENCH_PAIRS=N` runs more than 5 pairs; `BRIDGEFS_BENCH_ONLY=4,5`
//! runs only the items listed.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "floor/big.rs"]
mod big;
#[path = "floor/harness.rs"]
mod harness;
#[path = "floor/items.rs"]
mod items;
#[path = "floor/latency.rs"]
mod latency;
#[path = "floor/nullfs.rs"]
mod nullfs;
#[path = "floor/proxy.rs"]
mod proxy;
#[path = "floor/raw.rs"]
mod raw;
#[path = "floor/setup.rs"]
mod setup;
#[path = "floor/share.rs"]
mod share;

use harness::Row;

/// One item of the default run: its heading and what measures it.
type Item = (&'static str, fn(&setup::Bench) -> Row);

/// Items 1–7 on one emulator (each in apps of its own).
fn default_items() -> Vec<Row> {
    let b = setup::Bench::new();
    let mut rows = Vec::new();
    let items: [Item; 6] = [
        ("1. cold listing", items::cold_listing),
        ("2. warm listing", items::warm_listing),
        ("3. large read", items::big_read),
        ("4. small reads", items::small_reads),
        ("5. cp -r", items::copy_in),
        ("6. rm -r", items::remove),
    ];
    for (what, item) in items.into_iter().filter(|(what, _)| selected(what)) {
        println!("{what}");
        rows.push(item(&b));
    }
    if selected("7.") {
        println!("7. per-op latency");
        rows.extend(latency::latency(&b));
    }
    rows
}

/// Whether an item runs: all do, unless `BRIDGEFS_BENCH_ONLY` lists item
/// numbers (`BRIDGEFS_BENCH_ONLY=5,6`), to measure one change quickly.
fn selected(heading: &str) -> bool {
    let Ok(only) = std::env::var("BRIDGEFS_BENCH_ONLY") else {
        return true;
    };
    let number = heading.split('.').next().unwrap_or_default();
    only.split(',').any(|n| n.trim() == number)
}

fn main() {
    nullfs::serve_if_asked();
    println!("{} pairs per item", harness::pair_count());
    let mut rows = default_items();
    let mut lines = Vec::new();
    if selected("9.") {
        println!("9. the kernel's share of items 3-6");
        lines.extend(share::kernel_share(&setup::Bench::new(), &rows));
    }
    if big::enabled() {
        println!("8. peak RSS: 100,000-file listing");
        let (row, line) = big::huge_listing();
        rows.push(row);
        lines.push(line);
        println!("8. peak RSS: 5 GiB upload");
        lines.push(big::huge_upload());
    } else {
        lines.push("item 8 (100,000 files, 5 GiB upload) skipped: set BRIDGEFS_BENCH_BIG=1".into());
    }
    harness::print_table(&rows);
    println!();
    lines.iter().for_each(|l| println!("- {l}"));
    let n = setup::assert_all_unmounted();
    println!("- {n} mounts made, none left mounted");
}
