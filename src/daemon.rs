//! The daemon's life: build the backends from the config, replay the
//! pending-upload journal, mount, serve until a signal or an unmount, then
//! upload (or journal) what is pending and unmount cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backends;
use crate::config::Config;
use crate::fs::core::{BridgeFs, FsOptions, Mounted};
use crate::fuse::{FuseAdapter, Owner};
use crate::remote::http::{HttpClient, RetryPolicy};
use crate::service::instance::InstanceLock;

/// FUSE worker threads. Requests answered from memory run on them (the
/// fast path), remote work goes to tokio. Measured on 2 cores with a
/// cached `statx` forced to the daemon: 1 thread ~50 µs, 2 ~25 µs, 4
/// ~16 µs, 8 ~17 µs per request; 4 it is.
const FUSE_THREADS: usize = 4;

/// tokio worker threads, which run the remote calls (blocking disk work
/// goes to tokio's blocking pool). One: a request and its HTTP
/// connection's task then run on the same thread, with no wake-up of
/// another worker between them. Measured on 2 cores (the benchmark's
/// ratios, three alternating runs each, 1 worker against 2): cold `cat`
/// of 1,000 files 2.02–2.06× against 2.35–2.60×, `rm -r` of 500
/// 2.22–2.38× against 2.47–2.61×, `cp -r` of 500 alike (2.77–3.04× against
/// 3.04–3.15×), the 256 MiB read within its noise (1.38–2.82× against
/// 1.32–2.03×). 4 workers measured like 2.
const IO_THREADS: usize = 1;

/// Builds one [`Mounted`] per top-level directory the config asks for.
pub fn build_mounts(config: &Config, http: &HttpClient) -> Result<Vec<Mounted>, String> {
    let mut mounts = Vec::new();
    for b in &config.backoffice {
        let (clients, templates) =
            backends::backoffice::backends(b, http.clone(), config.cache.max_entries)?;
        mounts.push(Mounted {
            name: b.mount_as.clone(),
            api: "back office",
            backend: clients,
        });
        mounts.push(Mounted {
            name: b.templates_as.clone(),
            api: "back office",
            backend: templates,
        });
    }
    for l in &config.library {
        mounts.push(Mounted {
            name: l.mount_as.clone(),
            api: "file library",
            backend: backends::library::backend(l, http.clone(), config.cache.max_entries)?,
        });
    }
    for f in &config.files {
        mounts.push(Mounted {
            name: f.mount_as.clone(),
            api: "Files apps",
            backend: backends::files::backend(f, http.clone(), config.cache.max_entries)?,
        });
    }
    Ok(mounts)
}

/// The shared HTTP client for a config.
fn build_http(config: &Config) -> Result<HttpClient, String> {
    let policy = RetryPolicy {
        call_deadline: config.cache.call_deadline,
        ..RetryPolicy::default()
    };
    HttpClient::new(policy).map_err(|e| e.to_string())
}

/// The filesystem core for a config.
pub fn build_fs(config: &Config, http: &HttpClient) -> Result<Arc<BridgeFs>, String> {
    let mounts = build_mounts(config, http)?;
    let opts = FsOptions {
        metadata_ttl: config.cache.metadata_ttl,
        negative_ttl: config.cache.negative_ttl,
        max_entries: config.cache.max_entries,
        read_cache_bytes: config.cache.read_cache_bytes,
        cache_dir: config.cache.dir.clone(),
        state_dir: config.cache.state_dir.clone(),
        local_only: config.mount.local_only().map_err(|e| e.0)?,
    };
    BridgeFs::new(mounts, opts).map_err(|e| e.to_string())
}

/// Why the daemon did not run: a setup the admin must fix (the service
/// manager should not retry) or a failure at run time.
#[derive(Debug)]
pub enum RunError {
    Setup(String),
    Runtime(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Setup(m) | RunError::Runtime(m) => f.write_str(m),
        }
    }
}

/// The signals the daemon answers, installed before anything can be lost
/// (the journal replay, READY=1) so that a stop is never a kill.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Mounts `config` at `mountpoint` and serves in the foreground until
/// SIGINT/SIGTERM or an external unmount. SIGHUP drops cached metadata.
/// `config_path` names the mount's source in the mount table.
pub fn run(config: Config, mountpoint: &Path, config_path: Option<&Path>) -> Result<(), RunError> {
    let mountpoint = &crate::service::mountpoint::prepare(mountpoint).map_err(RunError::Setup)?;
    // Before anything reads or cleans the spool: one daemon per directory.
    let _lock = InstanceLock::acquire(&[&config.cache.dir, &config.cache.state_dir], mountpoint)
        .map_err(RunError::Setup)?;
    let _registration = crate::service::registry::register(mountpoint, &config.cache.state_dir);
    let runtime = |e: String| RunError::Runtime(e);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(IO_THREADS)
        .enable_all()
        .thread_name("bridgefs-io")
        .build()
        .map_err(|e| runtime(e.to_string()))?;
    let mut signals = {
        let _enter = rt.enter();
        Signals::install().map_err(|e| runtime(e.to_string()))?
    };
    let http = build_http(&config).map_err(RunError::Setup)?;
    let fs = {
        let _enter = rt.enter();
        build_fs(&config, &http).map_err(RunError::Setup)?
    };
    let unreachable = rt.block_on(warn_unreachable(&fs));
    let (done, left) = rt.block_on(fs.recover());
    if done + left > 0 {
        tracing::info!(uploaded = done, still_pending = left, "journal replayed");
    }
    let fuse_metrics = Arc::new(crate::metrics::FuseMetrics::default());
    if let Some(listen) = &config.metrics.listen {
        let exposition = exposition(&fs, &http, &config, fuse_metrics.clone());
        rt.block_on(crate::service::metrics::serve(listen, exposition))
            .map_err(RunError::Setup)?;
    }
    let adapter = FuseAdapter::new(
        fs.clone(),
        rt.handle().clone(),
        owner(&config),
        fuse_metrics,
    );
    let options = fuse_config(&config, config_path);
    let mut session = fuser::Session::new(adapter, mountpoint, &options)
        .map_err(|e| runtime(format!("cannot mount {}: {e}", mountpoint.display())))?;
    fs.set_kernel_cache(Arc::new(crate::fuse::KernelNotifier(session.notifier())));
    let mut unmounter = session.unmount_callable();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<Option<String>>();
    let serving = std::thread::Builder::new()
        .name("bridgefs-fuse".into())
        .spawn(move || {
            let failure = session.run().err().map(|e| e.to_string());
            if let Some(e) = &failure {
                tracing::error!(error = %e, "FUSE session ended with an error");
            }
            let _ = ended_tx.send(failure);
        })
        .map_err(|e| runtime(e.to_string()))?;
    let served = mountpoint.to_path_buf();
    std::thread::spawn(move || crate::service::readahead::raise(&served));
    tracing::info!(mountpoint = %mountpoint.display(), backends = ?fs.mount_names(), "mounted");
    let reporter = StatusReporter {
        fs: fs.clone(),
        http: http.clone(),
        state_dir: config.cache.state_dir.clone(),
        journal: crate::fs::writeback::journal::Journal::open(&config.cache.state_dir)
            .map_err(|e| runtime(e.to_string()))?,
        mountpoint: mountpoint.to_path_buf(),
        started: unix_now(),
        unreachable: Arc::new(parking_lot::Mutex::new(unreachable)),
        progress_logged: Default::default(),
    };
    let status_task = rt.spawn(reporter.clone().run());
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let wait = config.cache.shutdown_wait;
    let deadline = std::time::Instant::now() + wait;
    let stop = rt.block_on(async {
        let stop = serve_until_stop(&mut signals, ended_rx, &fs, &http).await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        // Journal first: whatever happens next, nothing closed is lost.
        fs.journal_dirty();
        drain(&fs, wait, &mut signals).await;
        stop
    });
    if stop == Stop::Signal && crate::service::mountpoint::mounted_at(mountpoint).is_some() {
        unmount_or_detach(&mut unmounter, mountpoint);
    }
    // A detached mount with files still open keeps the session alive: the
    // daemon does not wait for them (they see the mount gone at exit).
    let session_end = std::time::Instant::now() + Duration::from_secs(1);
    while !serving.is_finished() && std::time::Instant::now() < session_end {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Releases the kernel sent while unmounting may have dirtied more.
    rt.block_on(async {
        fs.journal_dirty();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        fs.shutdown(left.min(Duration::from_secs(2))).await
    });
    status_task.abort();
    reporter.write(false);
    rt.shutdown_background();
    if let Some(path) = config
        .metrics
        .listen
        .as_deref()
        .and_then(|l| l.strip_prefix("unix:"))
    {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    match stop {
        Stop::SessionFailed(e) => Err(runtime(format!("the FUSE session failed: {e}"))),
        Stop::Signal | Stop::Unmounted => Ok(()),
    }
}

/// Uploads what is pending for at most `wait`; a second SIGTERM/SIGINT
/// ends it at once (everything stays journaled for the next start).
async fn drain(fs: &Arc<BridgeFs>, wait: Duration, signals: &mut Signals) {
    tokio::select! {
        _ = fs.shutdown(wait) => {}
        _ = signals.term.recv() => tracing::info!("second signal: exiting now; pending uploads stay journaled"),
        _ = signals.int.recv() => tracing::info!("second signal: exiting now; pending uploads stay journaled"),
    }
}

/// Unmounts; a busy mount (an open file, a shell's working directory) is
/// detached instead (lazy unmount), so stopping never hangs on it.
fn unmount_or_detach(unmounter: &mut fuser::SessionUnmounter, mountpoint: &Path) {
    if let Err(e) = unmounter.unmount() {
        tracing::info!(error = %e, "the mount is busy; detaching it (lazy unmount)");
        if let Err(e) = crate::service::mountpoint::detach(mountpoint) {
            tracing::warn!(error = %e, "cannot detach the mount");
        }
    }
}

/// Why serving ended.
#[derive(Debug, PartialEq)]
enum Stop {
    /// SIGTERM/SIGINT: we unmount.
    Signal,
    /// `umount` from outside.
    Unmounted,
    /// The kernel connection failed: exit 1, so the service is restarted.
    SessionFailed(String),
}

/// How long the start-up check may delay the mount.
const START_CHECK_WAIT: Duration = Duration::from_secs(2);

/// Tries every place once before mounting and logs a warning for each one
/// that fails: the mount then serves the rest. Returns `check`'s lines.
async fn warn_unreachable(fs: &BridgeFs) -> Vec<String> {
    let failed = crate::service::probe::unreachable(fs.mounts(), START_CHECK_WAIT).await;
    for p in &failed {
        tracing::warn!("unreachable at start: {}", p.line());
    }
    failed.iter().map(|p| p.line()).collect()
}

/// What a metrics scrape shows, gathered afresh each time.
fn exposition(
    fs: &Arc<BridgeFs>,
    http: &HttpClient,
    config: &Config,
    fuse: Arc<crate::metrics::FuseMetrics>,
) -> crate::service::metrics::Exposition {
    let (fs, http) = (fs.clone(), http.clone());
    let limit = config.cache.read_cache_bytes;
    let journal = crate::fs::writeback::journal::Journal::open(&config.cache.state_dir).ok();
    Arc::new(move || {
        let (counters, pending, inodes) = fs.snapshot();
        let figures = crate::metrics::Figures {
            fs: counters,
            http: http.stats(),
            block_cache: fs.block_cache_stats(),
            read_cache_limit: limit,
            inodes,
            pending_uploads: pending,
            uploads_in_flight: http.transfers().snapshot().len(),
            upload_bytes_sent: http.transfers().bytes_sent(),
            orphaned_records: journal.as_ref().map_or(0, |j| j.orphaned().len()),
            disk_syncs: fs.disk_syncs(),
            idle_download_buffers: http.idle_buffers(),
        };
        crate::metrics::render(&fuse, &figures)
    })
}

/// Serves until a stop signal or an unmount from outside (then true).
async fn serve_until_stop(
    signals: &mut Signals,
    mut ended: tokio::sync::oneshot::Receiver<Option<String>>,
    fs: &Arc<BridgeFs>,
    http: &HttpClient,
) -> Stop {
    loop {
        tokio::select! {
            _ = signals.term.recv() => { tracing::info!("SIGTERM: unmounting"); return Stop::Signal; }
            _ = signals.int.recv() => { tracing::info!("SIGINT: unmounting"); return Stop::Signal; }
            _ = signals.hup.recv() => { tracing::info!("SIGHUP: dropping cached metadata and content, retrying refused uploads"); fs.refresh(); http.release_buffers(); fs.retry_refused(); }
            failure = &mut ended => {
                return match failure.ok().flatten() {
                    Some(e) => Stop::SessionFailed(e),
                    None => { tracing::info!("unmounted from outside"); Stop::Unmounted }
                };
            }
        }
    }
}

/// Owner shown on every entry: the config's, else the mounting user.
fn owner(config: &Config) -> Owner {
    // SAFETY: getuid/getgid cannot fail.
    Owner {
        uid: config
            .mount
            .uid
            .unwrap_or_else(|| unsafe { libc::getuid() }),
        gid: config
            .mount
            .gid
            .unwrap_or_else(|| unsafe { libc::getgid() }),
    }
}

/// The mount's options. The type shows as `fuse.bridgefs` and the source
/// as the config file, so `findmnt -t fuse.bridgefs` lists every mount and
/// `bridgefs status MOUNTPOINT` finds its state. As root fuser calls
/// mount(2) itself and drops `Subtype`, so it goes as a kernel option.
fn fuse_config(config: &Config, config_path: Option<&Path>) -> fuser::Config {
    use fuser::MountOption;
    let source = config_path
        .and_then(|p| std::path::absolute(p).ok())
        .map(|p| p.display().to_string())
        .filter(|p| !p.contains([',', ' ', '\t', '\n', '\\']))
        .unwrap_or_else(|| "bridgefs".into());
    // SAFETY: geteuid cannot fail.
    let subtype = if unsafe { libc::geteuid() } == 0 {
        MountOption::CUSTOM("subtype=bridgefs".into())
    } else {
        MountOption::Subtype("bridgefs".into())
    };
    let mut options = fuser::Config::default();
    options.mount_options = vec![
        MountOption::FSName(source),
        subtype,
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    options.acl = if config.mount.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    options.n_threads = Some(FUSE_THREADS);
    options
}

/// How often the status file is rewritten: often enough that `status`
/// shows an upload's progress as it goes.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// A long upload logs its progress every this many status ticks.
/// A long upload logs its progress each time it is this much older.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    crate::status::unix_now()
}

/// Writes `state_dir/status.json` for `bridgefs status`.
#[derive(Clone)]
struct StatusReporter {
    fs: Arc<BridgeFs>,
    http: HttpClient,
    state_dir: PathBuf,
    journal: crate::fs::writeback::journal::Journal,
    mountpoint: PathBuf,
    started: u64,
    /// Places the start-up probe could not reach.
    unreachable: Arc<parking_lot::Mutex<Vec<String>>>,
    /// Per upload in flight (by path), how many [`PROGRESS_EVERY`]s of it
    /// were logged: a late tick still logs, and never twice.
    progress_logged: Arc<parking_lot::Mutex<std::collections::HashMap<String, u64>>>,
}

impl StatusReporter {
    async fn run(self) {
        loop {
            // File work (a temp file, a rename): off tokio's one worker.
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.write(true)).await;
            self.log_progress();
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }

    /// Uploads in flight, named by the path users know.
    fn uploads(&self) -> Vec<crate::status::UploadProgress> {
        self.http
            .transfers()
            .snapshot()
            .into_iter()
            .map(|t| crate::status::UploadProgress {
                path: self
                    .fs
                    .display_path_of_spool(&t.path)
                    .unwrap_or_else(|| t.path.display().to_string()),
                sent: t.sent,
                total: t.total,
                elapsed_ms: t.elapsed_ms,
            })
            .collect()
    }

    /// One info line per long upload each time it turns another
    /// [`PROGRESS_EVERY`] older (checked every status tick; a tick late
    /// under load still logs it).
    fn log_progress(&self) {
        let every = PROGRESS_EVERY.as_millis() as u64;
        let uploads = self.uploads();
        let mut logged = self.progress_logged.lock();
        logged.retain(|path, _| uploads.iter().any(|u| &u.path == path));
        for u in uploads {
            let periods = u.elapsed_ms / every;
            let done = logged.entry(u.path.clone()).or_insert(0);
            if periods > *done {
                *done = periods;
                // Debug formatting escapes control characters in remote names.
                tracing::info!(path = ?u.path, sent = u.sent, total = u.total, bytes_per_s = u.rate(), "uploading");
            }
        }
    }

    fn write(&self, running: bool) {
        let (counters, pending, inodes) = self.fs.snapshot();
        let status = crate::status::Status {
            pid: std::process::id(),
            mountpoint: self.mountpoint.clone(),
            running,
            started: self.started,
            updated: unix_now(),
            backends: self.fs.mount_names(),
            fs: counters,
            pending_uploads: pending,
            inodes,
            http: self.http.stats(),
            uploads: self.uploads(),
            orphaned: self
                .journal
                .orphaned()
                .into_iter()
                .map(|r| format!("{} {}", r.id, r.display_path))
                .collect(),
            unreachable: self.unreachable.lock().clone(),
            refused: self.fs.refused_uploads(),
        };
        if let Err(e) = crate::status::write(&self.state_dir, &status) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }
}

/// `bridgefs check`: reaches every place and prints one line for each.
/// Returns whether everything answered. Retries are few: a check says
/// what is wrong now rather than waiting it out.
pub fn check(config: &Config) -> Result<bool, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let policy = RetryPolicy {
        max_attempts: 2,
        call_deadline: config.cache.call_deadline.min(Duration::from_secs(15)),
        ..RetryPolicy::default()
    };
    let http = HttpClient::new(policy).map_err(|e| e.to_string())?;
    let mounts = {
        let _enter = rt.enter();
        build_mounts(config, &http)?
    };
    let probes = rt.block_on(crate::service::probe::probe(&mounts));
    for p in &probes {
        println!("{}", p.line());
    }
    Ok(!probes.iter().any(|p| p.failed()))
}

/// What a demo config says about the emulator it points at: the secrets
/// written to credential files and the library account it names. The
/// binary fills it from the emulator's credentials (the library does not
/// link the emulator).
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub backoffice_token: String,
    pub library_api_key: String,
    pub library_private_key: String,
    pub library_business_id: u64,
    pub library_user_name: String,
    pub files_api_key: String,
}

/// Everything `bridgefs demo` needs besides the mountpoint: credential files
/// and cache directories in a temporary directory.
pub struct DemoFiles {
    pub dir: tempfile::TempDir,
    account: DemoAccount,
}

impl DemoFiles {
    pub fn create(account: DemoAccount) -> std::io::Result<DemoFiles> {
        let dir = tempfile::Builder::new()
            .prefix("bridgefs-demo-")
            .tempdir()?;
        let c = &account;
        std::fs::write(dir.path().join("backoffice.token"), &c.backoffice_token)?;
        std::fs::write(dir.path().join("library.key"), &c.library_private_key)?;
        std::fs::write(dir.path().join("files.key"), &c.files_api_key)?;
        Ok(DemoFiles { dir, account })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A config for an emulator at `base` (`http://ADDR`), as TOML text.
    pub fn config_text(&self, base: &str) -> String {
        let c = &self.account;
        format!(
            r#"[cache]
dir = {cache:?}
state_dir = {state:?}
metadata_ttl = "30s"

[[backoffice]]
base_url = "{base}/backoffice"
token_file = {token:?}
clients = [1, 2, 3]

[[library]]
base_url = "{base}/library/live"
api_key = "{api_key}"
private_key_file = {pk:?}
business_id = {bid}
user_name = "{user}"

[[files]]
base_url = "{base}/files"
api_key_file = {fk:?}
apps = ["handbook", "contracts"]
"#,
            cache = self.path("cache"),
            state = self.path("state"),
            token = self.path("backoffice.token"),
            api_key = c.library_api_key,
            pk = self.path("library.key"),
            bid = c.library_business_id,
            user = c.library_user_name,
            fk = self.path("files.key"),
        )
    }
}
