//! The daemon's life: build the backends from the config, replay the
//! pending-upload journal, mount, serve until a signal or an unmount, then
//! upload (or journal) what is pending and unmount cleanly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::fs::backends;
use crate::fs::core::{BridgeFs, FsOptions, Mounted};
use crate::fuse::{FuseAdapter, Owner};
use crate::remote::http::{HttpClient, RetryPolicy};
use crate::service::instance::InstanceLock;

/// FUSE worker threads: requests are handed to tokio at once, so a few
/// threads keep the kernel queue moving.
const FUSE_THREADS: usize = 4;

/// Builds one [`Mounted`] per top-level directory the config asks for.
pub fn build_mounts(config: &Config, http: &HttpClient) -> Result<Vec<Mounted>, String> {
    let mut mounts = Vec::new();
    for b in &config.backoffice {
        let (clients, templates) = backends::backoffice::backends(b, http.clone())?;
        mounts.push(Mounted {
            name: b.mount_as.clone(),
            backend: clients,
        });
        mounts.push(Mounted {
            name: b.templates_as.clone(),
            backend: templates,
        });
    }
    for l in &config.library {
        mounts.push(Mounted {
            name: l.mount_as.clone(),
            backend: backends::library::backend(l, http.clone())?,
        });
    }
    for f in &config.files {
        mounts.push(Mounted {
            name: f.mount_as.clone(),
            backend: backends::files::backend(f, http.clone())?,
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
    };
    BridgeFs::new(mounts, opts).map_err(|e| e.to_string())
}

/// Mounts `config` at `mountpoint` and serves in the foreground until
/// SIGINT/SIGTERM or an external unmount. SIGHUP drops cached metadata.
pub fn run(config: Config, mountpoint: &Path) -> Result<(), String> {
    let mountpoint = &crate::service::mountpoint::prepare(mountpoint)?;
    // Before anything reads or cleans the spool: one daemon per directory.
    let _lock = InstanceLock::acquire(&[&config.cache.dir, &config.cache.state_dir], mountpoint)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("bridgefs-io")
        .build()
        .map_err(|e| e.to_string())?;
    let http = build_http(&config)?;
    let fs = {
        let _enter = rt.enter();
        build_fs(&config, &http)?
    };
    let (done, left) = rt.block_on(fs.recover());
    if done + left > 0 {
        tracing::info!(uploaded = done, still_pending = left, "journal replayed");
    }

    // SAFETY: getuid/getgid cannot fail.
    let owner = Owner {
        uid: config
            .mount
            .uid
            .unwrap_or_else(|| unsafe { libc::getuid() }),
        gid: config
            .mount
            .gid
            .unwrap_or_else(|| unsafe { libc::getgid() }),
    };
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone(), owner);
    let mut options = fuser::Config::default();
    options.mount_options = vec![
        fuser::MountOption::FSName("bridgefs".into()),
        fuser::MountOption::Subtype("bridgefs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    options.acl = if config.mount.allow_other {
        fuser::SessionACL::All
    } else {
        fuser::SessionACL::Owner
    };
    options.n_threads = Some(FUSE_THREADS);
    let mut session = fuser::Session::new(adapter, mountpoint, &options)
        .map_err(|e| format!("cannot mount {}: {e}", mountpoint.display()))?;
    let mut unmounter = session.unmount_callable();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = std::thread::Builder::new()
        .name("bridgefs-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::error!(error = %e, "FUSE session ended with an error");
            }
            let _ = ended_tx.send(());
        })
        .map_err(|e| e.to_string())?;
    tracing::info!(mountpoint = %mountpoint.display(), backends = ?fs.mount_names(), "mounted");
    let reporter = StatusReporter {
        fs: fs.clone(),
        http: http.clone(),
        state_dir: config.cache.state_dir.clone(),
        mountpoint: mountpoint.to_path_buf(),
        started: unix_now(),
    };
    let status_task = {
        let reporter = reporter.clone();
        rt.spawn(async move {
            loop {
                reporter.write(true);
                tokio::time::sleep(STATUS_EVERY).await;
            }
        })
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let wait = config.cache.shutdown_wait;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut ended = ended_rx;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: unmounting"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: unmounting"); break; }
                _ = hup.recv() => { tracing::info!("SIGHUP: dropping cached metadata and content"); fs.refresh(); }
                _ = &mut ended => { tracing::info!("unmounted from outside"); break; }
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        // Journal first: whatever happens next, nothing closed is lost.
        fs.journal_dirty();
        fs.shutdown(wait).await;
    });
    if let Err(e) = unmounter.unmount() {
        tracing::warn!(error = %e, "unmount failed");
    }
    let _ = serving.join();
    // Releases the kernel sent while unmounting may have dirtied more.
    rt.block_on(async {
        fs.journal_dirty();
        fs.shutdown(Duration::from_secs(2).min(wait)).await
    });
    status_task.abort();
    reporter.write(false);
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(())
}

/// How often the status file is rewritten.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Writes `state_dir/status.json` for `bridgefs status`.
#[derive(Clone)]
struct StatusReporter {
    fs: Arc<BridgeFs>,
    http: HttpClient,
    state_dir: PathBuf,
    mountpoint: PathBuf,
    started: u64,
}

impl StatusReporter {
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
        };
        if let Err(e) = crate::status::write(&self.state_dir, &status) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }
}

/// `bridgefs check`: reaches every backend (its top level and, one level
/// down, each configured app or client) and reports per place. Returns
/// whether everything answered.
pub fn check(config: &Config) -> Result<bool, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let http = build_http(config)?;
    let mounts = {
        let _enter = rt.enter();
        build_mounts(config, &http)?
    };
    let mut ok = true;
    rt.block_on(async {
        for m in &mounts {
            let root = m.backend.root();
            match m.backend.list(&root).await {
                Ok(entries) => {
                    println!("ok    {}/ ({} entries)", m.name, entries.len());
                    for e in entries
                        .iter()
                        .filter(|e| e.kind == crate::fs::backend::Kind::Dir)
                        .take(20)
                    {
                        match m.backend.list(&e.key).await {
                            Ok(children) => println!(
                                "ok    {}/{}/ ({} entries)",
                                m.name,
                                e.name,
                                children.len()
                            ),
                            Err(err) => {
                                ok = false;
                                println!(
                                    "FAIL  {}/{}/: {err} (errno {})",
                                    m.name,
                                    e.name,
                                    err.errno()
                                );
                            }
                        }
                    }
                }
                Err(err) => {
                    ok = false;
                    println!("FAIL  {}/: {err} (errno {})", m.name, err.errno());
                }
            }
        }
    });
    Ok(ok)
}

/// Everything `bridgefs demo` needs besides the mountpoint: credential files
/// and cache directories in a temporary directory.
pub struct DemoFiles {
    pub dir: tempfile::TempDir,
}

impl DemoFiles {
    pub fn create() -> std::io::Result<DemoFiles> {
        let dir = tempfile::Builder::new()
            .prefix("bridgefs-demo-")
            .tempdir()?;
        let c = crate::emulator::Credentials::default();
        std::fs::write(dir.path().join("backoffice.token"), &c.backoffice_token)?;
        std::fs::write(dir.path().join("library.key"), &c.library_private_key)?;
        std::fs::write(dir.path().join("files.key"), &c.files_api_key)?;
        Ok(DemoFiles { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A config for an emulator at `base` (`http://ADDR`), as TOML text.
    pub fn config_text(&self, base: &str) -> String {
        let c = crate::emulator::Credentials::default();
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
