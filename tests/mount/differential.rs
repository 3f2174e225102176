//! Differential test: the same seeded random sequence of file operations on
//! a library folder through the mount and on a local directory. Every
//! operation must give the same outcome (success or the same errno), and the
//! two trees must hold the same names and bytes, also after the daemon drops
//! its caches and re-reads everything from the emulator.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// xorshift: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FILES: &[&str] = &["a.txt", "b.bin", "c", "report.pdf", "x y.txt"];
const DIRS: &[&str] = &["", "d1", "d2", "d1/sub"];

fn outcome<T>(r: std::io::Result<T>) -> Result<(), i32> {
    r.map(|_| ()).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Applies one operation under `root`; returns its outcome.
fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let p = |rel: &str| root.join(rel);
    match op {
        Op::Write(f, data) => outcome(std::fs::write(p(f), data)),
        Op::Append(f, data) => outcome(
            std::fs::OpenOptions::new()
                .append(true)
                .custom_flags(0)
                .open(p(f))
                .and_then(|mut h| h.write_all(data)),
        ),
        Op::Truncate(f, len) => outcome(
            std::fs::OpenOptions::new()
                .write(true)
                .open(p(f))
                .and_then(|h| h.set_len(*len)),
        ),
        Op::Rename(a, b) => outcome(std::fs::rename(p(a), p(b))),
        Op::Unlink(f) => outcome(std::fs::remove_file(p(f))),
        Op::Mkdir(d) => outcome(std::fs::create_dir(p(d))),
        Op::Rmdir(d) => outcome(std::fs::remove_dir(p(d))),
    }
}

#[derive(Debug)]
enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
}

fn path_in(rng: &mut Rng, flat: bool) -> String {
    let dir = if flat { "" } else { rng.pick(DIRS) };
    let f = rng.pick(FILES);
    if dir.is_empty() {
        f.to_string()
    } else {
        format!("{dir}/{f}")
    }
}

fn random_op(rng: &mut Rng, flat: bool) -> Op {
    let data = |rng: &mut Rng| {
        let len = [0, 1, 100, 5000, 70_000][rng.below(5) as usize];
        let seed = rng.next() as u8;
        (0..len)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect::<Vec<u8>>()
    };
    match rng.below(if flat { 8 } else { 10 }) {
        0..=2 => Op::Write(path_in(rng, flat), data(rng)),
        3 => Op::Append(path_in(rng, flat), data(rng)),
        4 => Op::Truncate(path_in(rng, flat), rng.below(6000)),
        5 | 6 => Op::Rename(path_in(rng, flat), path_in(rng, flat)),
        7 => Op::Unlink(path_in(rng, flat)),
        8 => Op::Mkdir(rng.pick(&DIRS[1..]).to_string()),
        _ => Op::Rmdir(rng.pick(&DIRS[1..]).to_string()),
    }
}

/// An operation without its data bytes (for the trace).
fn describe(op: &Op) -> String {
    match op {
        Op::Write(f, d) => format!("write {f} ({} bytes)", d.len()),
        Op::Append(f, d) => format!("append {f} ({} bytes)", d.len()),
        other => format!("{other:?}"),
    }
}

/// Every path below `root` with its bytes (`None` for directories).
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                out.insert(rel, None);
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn summary(t: &BTreeMap<PathBuf, Option<Vec<u8>>>) -> Vec<String> {
    t.iter()
        .map(|(p, b)| match b {
            Some(b) => format!("{} ({} bytes)", p.display(), b.len()),
            None => format!("{}/", p.display()),
        })
        .collect()
}

#[test]
fn library_operations_match_a_local_directory() {
    differential("library/diff", false);
}

/// A Files app is flat: files only (overwrites are revisions, unlink trashes).
#[test]
fn files_app_operations_match_a_local_directory() {
    differential("apps/contracts", true);
}

fn differential(remote_dir: &str, flat: bool) {
    let emu = Emulator::start(bridgefs_emulator::Dataset::empty());
    let m = Mount::start(&emu);
    let remote_root = m.path(remote_dir);
    let local_root = m.files.path("local-diff");
    if !remote_root.exists() {
        std::fs::create_dir(&remote_root).unwrap();
    }
    std::fs::create_dir(&local_root).unwrap();
    // DIFF_SEED and DIFF_STEPS explore further by hand; CI runs the fixed seed.
    let seed = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_u64);
    let steps = std::env::var("DIFF_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160);
    let mut rng = Rng(seed | 1);
    for step in 0..steps {
        let op = random_op(&mut rng, flat);
        let local = apply(&local_root, &op);
        let mounted = apply(&remote_root, &op);
        if std::env::var("DIFF_TRACE").is_ok() {
            eprintln!("step {step}: {} -> {local:?}", describe(&op));
        }
        assert_eq!(mounted, local, "step {step}: {op:?}");
        if step % 40 == 39 {
            assert_eq!(
                summary(&tree(&remote_root)),
                summary(&tree(&local_root)),
                "after step {step}"
            );
        }
    }
    let expected = tree(&local_root);
    assert_eq!(tree(&remote_root), expected, "bytes through the mount");
    // Drop every cache: the emulator's state alone must give the same tree.
    let pid = sh_ok(&format!(
        "pgrep -f 'bridgefs mount --config {}'",
        m.config.display()
    ));
    sh_ok(&format!("kill -HUP {}", pid.trim()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let reread = tree(&remote_root);
    assert_eq!(
        summary(&reread),
        summary(&expected),
        "after dropping caches"
    );
    assert_eq!(reread, expected);
}
