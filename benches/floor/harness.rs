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

/// One timed run: wall time, the machine's busy CPU time, and the API
/// requests the emulator served meanwhile (none for a local floor).
pub struct Sample {
    pub time: Duration,
    pub cpu: Duration,
    pub calls: Calls,
}

/// Times `work` alone, counting the emulator's requests during it; setup
/// done before the call (a fresh mount, a warm-up) is neither.
pub fn timed(emu: &Emulator, work: impl FnOnce()) -> Sample {
    emu.reset_counts();
    let (time, cpu) = clocked(work);
    Sample {
        time,
        cpu,
        calls: emu.counts(),
    }
}

/// The wall time of `work` and the machine's busy CPU time meanwhile.
pub fn clocked(work: impl FnOnce()) -> (Duration, Duration) {
    let (busy, start) = (machine_busy(), Instant::now());
    work();
    (start.elapsed(), machine_busy().saturating_sub(busy))
}

/// CPU time the whole machine has spent busy so far (every process and
/// the kernel: user, nice, system, irq, softirq, steal; `/proc/stat`, in
/// clock ticks of 10 ms). Over a run it is the work the run cost, whoever
/// did it: the emulator, the daemon, the kernel, the reading program.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Cores this machine runs on: at most this many CPU-seconds per second.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
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
    /// Medians of the machine's busy CPU time per run, in seconds.
    pub floor_cpu: f64,
    pub mount_cpu: f64,
    /// Median seconds per run the daemon itself waited for disk syncs
    /// (its durability promise), where the item measured them.
    pub mount_disk_sync: Option<f64>,
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
    let cpu = |s: &[Sample]| median(s.iter().map(|x| x.cpu.as_secs_f64()).collect());
    let ratios = f.iter().zip(&m).map(|(a, b)| ratio(a.time, b.time));
    Row {
        work: work.to_string(),
        unit,
        floor: secs(&f),
        mount: secs(&m),
        ratio: median(ratios.collect()),
        floor_cpu: cpu(&f),
        mount_cpu: cpu(&m),
        floor_calls: f.pop().map(|s| s.calls).unwrap_or_default(),
        mount_calls: m.pop().map(|s| s.calls).unwrap_or_default(),
        mount_disk_sync: None,
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
    print_cpu_table(rows);
}

/// For whole-run rows: the machine's busy CPU time per run on each side,
/// and the lowest ratio that CPU work allows: on `cores()` cores a run
/// lasts at least its CPU time / cores.
fn print_cpu_table(rows: &[Row]) {
    println!(
        "\n| work | floor CPU busy | mount CPU busy | mount CPU / ({} cores × floor) |\n|---|---|---|---|",
        cores()
    );
    for r in rows.iter().filter(|r| matches!(r.unit, Unit::Ms)) {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.2} |",
            r.work,
            r.floor_cpu * 1e3,
            r.mount_cpu * 1e3,
            r.mount_cpu / (cores() * r.floor)
        );
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
