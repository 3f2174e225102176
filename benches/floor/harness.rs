//! Alternating floor/mount pairs and their medians. Timings are printed,
//! never compared with anything: nothing here can fail on speed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::Emulator;

/// Pairs per item: 5, or more with `BRIDGEFS_BENCH_PAIRS` (never fewer,
/// so every median is over at least 5 pairs).
pub fn pair_count() -> usize {
    std::env::var("BRIDGEFS_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(5)
}

/// Requests per endpoint template (`GET /files/api/files/{id}/download`).
pub type Calls = BTreeMap<String, u64>;

/// One timed run: wall time, and the API requests the emulator served
/// meanwhile (none for a local floor).
pub struct Sample {
    pub time: Duration,
    pub calls: Calls,
}

/// Times `work` alone, counting the emulator's requests during it; setup
/// done before the call (a fresh mount, a warm-up) is neither.
pub fn timed(emu: &Emulator, work: impl FnOnce()) -> Sample {
    emu.reset_counts();
    let start = Instant::now();
    work();
    let time = start.elapsed();
    Sample {
        time,
        calls: emu.counts(),
    }
}

/// How a row shows its figures: a whole run in ms, or per operation.
#[derive(Clone, Copy)]
pub enum Unit {
    Ms,
    UsPerOp(u32),
}

impl Unit {
    fn show(self, secs: f64) -> String {
        match self {
            Unit::Ms => format!("{:.1} ms", secs * 1e3),
            Unit::UsPerOp(n) => format!("{:.2} µs/op", secs * 1e6 / f64::from(n)),
        }
    }
}

/// One line of the final table: medians over the pairs.
pub struct Row {
    pub work: String,
    pub unit: Unit,
    pub floor: f64,
    pub mount: f64,
    pub ratio: f64,
    pub floor_calls: Calls,
    pub mount_calls: Calls,
}

/// Runs `floor` and `mount` alternately, `pair_count()` times each (so
/// drift in the machine hits both sides alike); each gets the pair index.
pub fn pairs(
    work: &str,
    unit: Unit,
    mut floor: impl FnMut(usize) -> Sample,
    mut mount: impl FnMut(usize) -> Sample,
) -> Row {
    let (mut f, mut m) = (Vec::new(), Vec::new());
    for k in 0..pair_count() {
        let a = floor(k);
        let b = mount(k);
        println!(
            "  {work}, pair {}: floor {}, mount {}",
            k + 1,
            unit.show(a.time.as_secs_f64()),
            unit.show(b.time.as_secs_f64())
        );
        f.push(a);
        m.push(b);
    }
    let secs = |s: &[Sample]| median(s.iter().map(|x| x.time.as_secs_f64()).collect());
    let ratios = f.iter().zip(&m).map(|(a, b)| ratio(a.time, b.time));
    Row {
        work: work.to_string(),
        unit,
        floor: secs(&f),
        mount: secs(&m),
        ratio: median(ratios.collect()),
        floor_calls: f.pop().map(|s| s.calls).unwrap_or_default(),
        mount_calls: m.pop().map(|s| s.calls).unwrap_or_default(),
    }
}

fn ratio(floor: Duration, mount: Duration) -> f64 {
    mount.as_secs_f64() / floor.as_secs_f64().max(1e-9)
}

/// The median (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The markdown table of the rows, then the API calls each side made in
/// its last pair, by endpoint (what each side's time pays for).
pub fn print_table(rows: &[Row]) {
    println!("\n| work | floor | mount | ratio |\n|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} |",
            r.work,
            r.unit.show(r.floor),
            r.unit.show(r.mount),
            r.ratio
        );
    }
    println!("\n| work | floor API calls | mount API calls |\n|---|---|---|");
    for r in rows {
        let (f, m) = (show_calls(&r.floor_calls), show_calls(&r.mount_calls));
        println!("| {} | {f} | {m} |", r.work);
    }
}

/// `total: n × endpoint, …`, or `0`.
fn show_calls(c: &Calls) -> String {
    let total: u64 = c.values().sum();
    let each: Vec<String> = c.iter().map(|(e, n)| format!("{n} × `{e}`")).collect();
    match total {
        0 => "0".to_string(),
        _ => format!("{total}: {}", each.join(", ")),
    }
}
