//! Real-mount test harness: an in-process emulator on a loopback port and
//! the real `bridgefs` binary mounted on a temporary directory. Guards stop
//! and unmount everything on drop, even when a test panics.

#![allow(dead_code)]

pub mod remote;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bridgefs::daemon::{DemoAccount, DemoFiles};
use bridgefs_emulator::{Credentials, Dataset, Emu, EmulatorHandle, Faults};

/// Credential files and a config for the emulator's default credentials.
pub fn demo_files() -> DemoFiles {
    let c = Credentials::default();
    DemoFiles::create(DemoAccount {
        backoffice_token: c.backoffice_token,
        library_api_key: c.library_api_key,
        library_private_key: c.library_private_key,
        library_business_id: c.library_business_id,
        library_user_name: c.library_user_name,
        files_api_key: c.files_api_key,
    })
    .expect("temp dir")
}

/// An emulator serving on 127.0.0.1 for the length of a test.
pub struct Emulator {
    pub handle: EmulatorHandle,
}

impl Emulator {
    pub fn start(dataset: Dataset) -> Emulator {
        let emu = Emu::new(dataset, Credentials::default(), Faults::default(), None);
        Emulator {
            handle: EmulatorHandle::start("127.0.0.1:0", emu).expect("emulator starts"),
        }
    }

    pub fn demo() -> Emulator {
        Emulator::start(Dataset::demo())
    }

    pub fn url(&self) -> String {
        self.handle.url()
    }

    pub fn emu(&self) -> &Emu {
        &self.handle.emu
    }

    /// Requests per endpoint template since the last reset.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.handle.emu.counts.lock().clone()
    }

    /// Sum of the counters whose endpoint contains every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> u64 {
        self.counts()
            .iter()
            .filter(|(k, _)| parts.iter().all(|p| k.contains(p)))
            .map(|(_, v)| v)
            .sum()
    }

    /// Total API requests.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    pub fn reset_counts(&self) {
        self.handle.emu.counts.lock().clear();
        self.handle.emu.log.lock().clear();
    }

    pub fn set_faults(&self, f: Faults) {
        *self.handle.emu.faults.lock() = f;
    }
}

/// Options for a test mount's config.
#[derive(Clone)]
pub struct MountOptions {
    pub metadata_ttl: &'static str,
    pub negative_ttl: &'static str,
    pub shutdown_wait: &'static str,
    pub call_deadline: &'static str,
    /// Appended to the config (e.g. a `[metrics]` table).
    pub extra_toml: String,
    /// `BRIDGEFS_LOG` of the daemon: debug lines for tests to read; the
    /// benchmark runs the daemon at the level users get by default.
    pub log_filter: &'static str,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            metadata_ttl: "60s",
            negative_ttl: "5s",
            shutdown_wait: "20s",
            call_deadline: "20s",
            extra_toml: String::new(),
            log_filter: "info,bridgefs=debug",
        }
    }
}

/// A mounted `bridgefs` daemon process.
pub struct Mount {
    pub files: DemoFiles,
    pub mountpoint: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    log_filter: &'static str,
}

fn bin() -> String {
    // A bench may compare two builds of the daemon (`BRIDGEFS_BENCH_DAEMON`).
    std::env::var("BRIDGEFS_BENCH_DAEMON").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bridgefs").into())
}

pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    text.lines().any(|l| l.split(' ').nth(4) == Some(&p))
}

impl Mount {
    pub fn start(emu: &Emulator) -> Mount {
        Mount::start_with(emu, MountOptions::default())
    }

    /// [`Mount::start_with`] serving the daemon's metrics on a free port,
    /// returned with the mount (read it with [`scrape`]).
    pub fn start_metered(emu: &Emulator, mut opts: MountOptions) -> (Mount, u16) {
        let port = free_port();
        opts.extra_toml += &metrics_on(port);
        (Mount::start_with(emu, opts), port)
    }

    pub fn start_with(emu: &Emulator, opts: MountOptions) -> Mount {
        let files = demo_files();
        let mountpoint = files.path("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let text = files
            .config_text(&emu.url())
            .replace("metadata_ttl = \"30s\"", &format!(
                "metadata_ttl = \"{}\"\nnegative_ttl = \"{}\"\nshutdown_wait = \"{}\"\ncall_deadline = \"{}\"",
                opts.metadata_ttl, opts.negative_ttl, opts.shutdown_wait, opts.call_deadline
            ));
        let config = files.path("bridgefs.toml");
        std::fs::write(&config, text + &opts.extra_toml).unwrap();
        // It holds a credential: private, as an admin keeps it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = files.path("daemon.log");
        let mut m = Mount {
            files,
            mountpoint,
            config,
            child: None,
            log,
            log_filter: opts.log_filter,
        };
        m.spawn();
        m
    }

    /// Starts the daemon and waits until the mount is live.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin())
            .args(["mount", "--config"])
            .arg(&self.config)
            .arg(&self.mountpoint)
            .env("BRIDGEFS_LOG", self.log_filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bridgefs starts");
        self.child = Some(child);
        let start = Instant::now();
        // A dead mount left by a killed daemon is in mountinfo too: wait
        // for one that answers.
        while !(is_mounted(&self.mountpoint) && std::fs::read_dir(&self.mountpoint).is_ok()) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "bridgefs exited with {status} before mounting:\n{}",
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not mounted after 30 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn state_dir(&self) -> PathBuf {
        self.files.path("state")
    }

    /// Pending-upload records in the journal (record files and inline
    /// slots alike), as the daemon's recovery would read them.
    pub fn journal_records(&self) -> usize {
        bridgefs::fs::writeback::journal::Journal::open(&self.state_dir())
            .map_or(0, |j| j.pending().len())
    }

    /// `kill -9` of the daemon (the mount is left dead, then cleaned up).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        force_unmount(&self.mountpoint);
    }

    /// `kill -9` of the daemon, leaving its dead mount in place as a crash
    /// does (`ENOTCONN` on the mountpoint until someone detaches it).
    pub fn kill9_keep_mount(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Runs `bridgefs ARGS…` to completion with this mount's log level;
    /// returns (exit code, stdout + stderr).
    pub fn run_bin(&self, args: &[&std::ffi::OsStr]) -> (i32, String) {
        let out = Command::new(bin())
            .args(args)
            .env("BRIDGEFS_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("bridgefs runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if start.elapsed() > Duration::from_secs(40) {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn force_unmount(path: &Path) {
    for _ in 0..50 {
        if !is_mounted(path) {
            return;
        }
        let _ = Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(path)
            .stderr(Stdio::null())
            .status();
        if is_mounted(path) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(path)
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop();
        force_unmount(&self.mountpoint);
        if panicking {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- bridgefs log (last lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// `len` bytes of a pattern that differs by `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Polls until `f` is true (uploads retried in the background, remote
/// changes showing), failing the test after `timeout`.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a shell command line, returns (status code, stdout, stderr).
pub fn sh(cmd: &str) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns stdout.
pub fn sh_ok(cmd: &str) -> String {
    let (code, out, err) = sh(cmd);
    assert_eq!(code, 0, "`{cmd}` failed ({code}):\n{out}\n{err}");
    out
}

/// The errno of an io::Error.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// A loopback port free now (for a daemon's metrics endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The config section that serves a daemon's metrics on `port`.
pub fn metrics_on(port: u16) -> String {
    format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// One scrape of the metrics a daemon serves on `port`.
pub fn scrape(port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The value of one sample line (`name{labels} value`) in a scrape.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
