//! `bridgefs`: mount, demo and emulator commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use bridgefs::config::Config;
use bridgefs::daemon;
use bridgefs::service::{helper, options};
use bridgefs_emulator::{Credentials, Dataset, Emu, EmulatorHandle, Faults};

#[derive(Parser)]
#[command(
    name = "bridgefs",
    version,
    about = "Mount a back office, a file library and Files apps as one POSIX tree"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the backends of a config file (foreground; Ctrl-C or SIGTERM unmounts).
    Mount {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// An existing empty directory.
        mountpoint: PathBuf,
        /// Mount options, as in fstab (`allow_other,metadata_ttl=10s`).
        #[arg(short = 'o')]
        options: Vec<String>,
    },
    /// Start the emulator with the demo dataset on a free loopback port and mount it.
    Demo {
        /// An existing empty directory.
        mountpoint: PathBuf,
    },
    /// Serve the three APIs on one listener: /backoffice, /library/live, /files.
    Emulator(EmulatorArgs),
    /// Check a config: parse it and reach every backend (exit 1 if any fails).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a running mount's uploads in flight, counters and remote calls.
    Status(StateArgs),
    /// List or drop the pending-upload journal's records.
    Pending {
        #[command(subcommand)]
        action: PendingAction,
    },
}

/// Where a daemon's state is: its config, its state directory, or the
/// mountpoint it serves (found through the mount table).
#[derive(Args)]
struct StateArgs {
    #[arg(long, conflicts_with = "state_dir")]
    config: Option<PathBuf>,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A bridgefs mountpoint.
    mountpoint: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PendingAction {
    /// Every record: waiting, failing, or set aside because its bytes are gone.
    List(StateArgs),
    /// Clear a refusal so the upload is tried again (now, if the daemon runs).
    Retry {
        /// The record's id, as `pending list` shows it.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Forget one record and its spool file (its bytes are never uploaded).
    Drop {
        /// The record's id, as `pending list` shows it.
        id: String,
        #[command(flatten)]
        state: StateArgs,
    },
}

#[derive(Args)]
struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18400")]
    listen: String,
    /// `demo`, `empty`, or a JSON dataset file.
    #[arg(long, default_value = "demo")]
    dataset: String,
    /// Persist state to this directory (state.json) and reload it at start.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Back-office Bearer token.
    #[arg(
        long,
        env = "EMULATOR_BACKOFFICE_TOKEN",
        default_value = "demo-backoffice-token"
    )]
    backoffice_token: String,
    /// Library apiKey.
    #[arg(long, env = "EMULATOR_LIBRARY_API_KEY", default_value = "demo-api-key")]
    library_api_key: String,
    /// Library private key (signature = md5(apiKey + privateKey)).
    #[arg(
        long,
        env = "EMULATOR_LIBRARY_PRIVATE_KEY",
        default_value = "demo-private-key"
    )]
    library_private_key: String,
    /// Library businessId.
    #[arg(long, default_value_t = 1)]
    library_business_id: u64,
    /// Library userName.
    #[arg(long, default_value = "demo")]
    library_user_name: String,
    /// Files-app API key.
    #[arg(long, env = "EMULATOR_FILES_API_KEY", default_value = "demo-files-key")]
    files_api_key: String,
    /// Fraction (0-1) of API requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of API requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    /// Retry-After seconds sent with injected 429s.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Fraction of responses whose connection drops mid-body.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Milliseconds added to every API request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Content endpoints ignore Range and send the whole body.
    #[arg(long)]
    ignore_range: bool,
    /// Request bodies over this many bytes are answered 413 unread.
    #[arg(long)]
    max_upload_bytes: Option<u64>,
}

/// Logs go to stderr (the journal under systemd, `state_dir/bridgefs.log`
/// for a mount started by mount(8)); colours only on a terminal;
/// `BRIDGEFS_LOG_FORMAT=json` gives one JSON object per line.
fn init_logging(default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRIDGEFS_LOG").unwrap_or_else(|_| {
        // fuser's own lines repeat ours ("Mounting"), or are false alarms:
        // its session ends after a plain umount by failing to unmount again.
        tracing_subscriber::EnvFilter::new(format!(
            "{default_level},fuser=warn,fuser::session=error"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("BRIDGEFS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if helper::is_helper_call(&args) {
        init_logging("info");
        let result = helper::parse(&args)
            .map_err(Failure::Setup)
            .and_then(|call| {
                helper::run(&call).map_err(|e| match e {
                    daemon::RunError::Setup(m) => Failure::Setup(m),
                    daemon::RunError::Runtime(m) => Failure::Runtime(m),
                })
            });
        return exit(result);
    }
    let cli = Cli::parse();
    // `check` prints one line per place; its log would say each failure again.
    init_logging(if matches!(cli.command, Command::Check { .. }) {
        "error"
    } else {
        "info"
    });
    exit(match cli.command {
        Command::Mount {
            config,
            mountpoint,
            options,
        } => mount(&config, &mountpoint, &options),
        Command::Demo { mountpoint } => demo(&mountpoint).map_err(Failure::Runtime),
        Command::Emulator(args) => emulator(args).map_err(Failure::Runtime),
        Command::Check { config } => check(&config),
        Command::Status(state) => status(&state),
        Command::Pending { action } => pending(action),
    })
}

/// Why a command failed, which decides its exit status: 2 for a setup the
/// admin must fix (systemd's `RestartPreventExitStatus=2` then stops
/// retrying), 1 for a failure at run time, 3 for "not running".
enum Failure {
    Setup(String),
    Runtime(String),
    NotRunning(String),
}

fn exit(result: Result<(), Failure>) -> ExitCode {
    let (code, message) = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Setup(m)) => (2, m),
        Err(Failure::Runtime(m)) => (1, m),
        Err(Failure::NotRunning(m)) => (3, m),
    };
    if !message.is_empty() {
        eprintln!("bridgefs: {message}");
    }
    ExitCode::from(code)
}

fn load(config: &std::path::Path, options: &[String]) -> Result<Config, Failure> {
    let mut c = Config::load(config).map_err(|e| Failure::Setup(e.to_string()))?;
    for o in options {
        options::apply(&mut c, o).map_err(Failure::Setup)?;
    }
    Ok(c)
}

fn mount(
    config: &std::path::Path,
    mountpoint: &std::path::Path,
    options: &[String],
) -> Result<(), Failure> {
    let c = load(config, options)?;
    daemon::run(c, mountpoint, Some(config)).map_err(|e| match e {
        daemon::RunError::Setup(m) => Failure::Setup(m),
        daemon::RunError::Runtime(m) => Failure::Runtime(m),
    })
}

fn check(config: &std::path::Path) -> Result<(), Failure> {
    match daemon::check(&load(config, &[])?) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Runtime(String::new())),
        Err(e) => Err(Failure::Runtime(e)),
    }
}

/// The state directory `args` point at.
fn state_dir(args: &StateArgs) -> Result<PathBuf, Failure> {
    if let Some(d) = &args.state_dir {
        return Ok(d.clone());
    }
    if let Some(c) = &args.config {
        return Ok(load(c, &[])?.cache.state_dir);
    }
    let mountpoint = args.mountpoint.as_ref().ok_or_else(|| {
        Failure::Setup("say which mount: --config FILE, --state-dir DIR or MOUNTPOINT".into())
    })?;
    bridgefs::service::mountpoint::state_dir_of(mountpoint).map_err(Failure::NotRunning)
}

fn status(args: &StateArgs) -> Result<(), Failure> {
    let dir = state_dir(args)?;
    let s = bridgefs::status::read(&dir).map_err(Failure::NotRunning)?;
    print!(
        "{}",
        bridgefs::status::render(&s, bridgefs::status::unix_now())
    );
    if s.running && bridgefs::status::alive(s.pid) {
        Ok(())
    } else {
        Err(Failure::NotRunning("not running".into()))
    }
}

fn pending(action: PendingAction) -> Result<(), Failure> {
    match action {
        PendingAction::List(args) => {
            let journal = open_journal(&state_dir(&args)?)?;
            print!("{}", bridgefs::status::render_pending(&journal));
            Ok(())
        }
        PendingAction::Retry { id, state } => retry_pending(&id, &state),
        PendingAction::Drop { id, state } => {
            let dir = state_dir(&state)?;
            // A running daemon may be uploading that spool: only records
            // whose bytes are already gone may be dropped under it. With
            // no daemon, this holds its lock and its journal (slots too).
            let holder = std::path::Path::new("(pending drop)");
            let lock = bridgefs::service::instance::InstanceLock::acquire(&[&dir], holder);
            let running = lock.is_err();
            let journal = open_journal_as(&dir, !running)?;
            if running && !journal.orphaned().iter().any(|r| r.id == id) {
                return Err(Failure::Setup(format!(
                    "{id}: the daemon using {} is running; stop it to drop a record it may be uploading",
                    dir.display()
                )));
            }
            if journal.drop_record(&id) {
                println!("dropped {id}");
                Ok(())
            } else {
                Err(Failure::Setup(format!(
                    "no journal record {id:?} (see `bridgefs pending list`)"
                )))
            }
        }
    }
}

/// `pending retry`: clears the refusal, then asks a running daemon to try
/// now (SIGHUP); otherwise the next start does.
fn retry_pending(id: &str, state: &StateArgs) -> Result<(), Failure> {
    let dir = state_dir(state)?;
    match open_journal(&dir)?.clear_refused(id) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Failure::Setup(format!(
                "no pending record {id:?} (see `bridgefs pending list`)"
            )))
        }
        Err(e) => return Err(Failure::Runtime(e.to_string())),
    }
    match bridgefs::status::read(&dir) {
        Ok(s) if s.running && bridgefs::status::alive(s.pid) => {
            // SAFETY: a signal to the daemon that owns this journal.
            unsafe { libc::kill(s.pid as i32, libc::SIGHUP) };
            println!("{id}: retrying now (daemon pid {})", s.pid);
        }
        _ => println!("{id}: retried at the next start"),
    }
    Ok(())
}

fn open_journal(
    state_dir: &std::path::Path,
) -> Result<bridgefs::fs::writeback::journal::Journal, Failure> {
    open_journal_as(state_dir, false)
}

/// The journal of `state_dir`; `owned`: as its daemon would, which only
/// a holder of the instance lock may do (it may clear slots).
fn open_journal_as(
    state_dir: &std::path::Path,
    owned: bool,
) -> Result<bridgefs::fs::writeback::journal::Journal, Failure> {
    use bridgefs::fs::writeback::journal::Journal;
    if !state_dir.join("pending").is_dir() {
        return Err(Failure::Setup(format!(
            "no journal in {}",
            state_dir.display()
        )));
    }
    let opened = match owned {
        true => Journal::open_owned(state_dir),
        false => Journal::open(state_dir),
    };
    opened.map_err(|e| Failure::Runtime(e.to_string()))
}

fn demo(mountpoint: &std::path::Path) -> Result<(), String> {
    let files = daemon::DemoFiles::create(demo_account(&Credentials::default()))
        .map_err(|e| format!("demo files: {e}"))?;
    let emu = Emu::new(
        Dataset::demo(),
        Credentials::default(),
        Faults::default(),
        None,
    );
    let handle = EmulatorHandle::start("127.0.0.1:0", emu).map_err(|e| format!("emulator: {e}"))?;
    let text = files.config_text(&handle.url());
    let config = Config::parse(&text, std::path::Path::new("(demo)")).map_err(|e| e.to_string())?;
    eprintln!(
        "bridgefs demo: emulator at {} ; mounting at {} (Ctrl-C to unmount)\n  state: {} (bridgefs status --state-dir {})",
        handle.url(),
        mountpoint.display(),
        config.cache.state_dir.display(),
        config.cache.state_dir.display()
    );
    daemon::run(config, mountpoint, None).map_err(|e| e.to_string())
}

/// The emulator's credentials as a demo config names them.
fn demo_account(c: &Credentials) -> daemon::DemoAccount {
    daemon::DemoAccount {
        backoffice_token: c.backoffice_token.clone(),
        library_api_key: c.library_api_key.clone(),
        library_private_key: c.library_private_key.clone(),
        library_business_id: c.library_business_id,
        library_user_name: c.library_user_name.clone(),
        files_api_key: c.files_api_key.clone(),
    }
}

fn emulator(a: EmulatorArgs) -> Result<(), String> {
    let dataset = Dataset::load(&a.dataset)?;
    let creds = Credentials {
        backoffice_token: a.backoffice_token,
        library_api_key: a.library_api_key,
        library_private_key: a.library_private_key,
        library_business_id: a.library_business_id,
        library_user_name: a.library_user_name,
        files_api_key: a.files_api_key,
    };
    let faults = Faults {
        error_rate: a.error_rate,
        rate_limit_rate: a.rate_limit_rate,
        retry_after_secs: Some(a.retry_after),
        drop_rate: a.drop_rate,
        latency_ms: a.latency_ms,
        ignore_range: a.ignore_range,
        max_upload_bytes: a.max_upload_bytes,
        ..Faults::default()
    };
    if let Some(dir) = &a.state_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("state dir {}: {e}", dir.display()))?;
    }
    let emu = Emu::new(dataset, creds.clone(), faults, a.state_dir);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("bridgefs emulator listening on http://{addr}");
        eprintln!("  back office: http://{addr}/backoffice   token {}", shown(&creds.backoffice_token, "demo-backoffice-token"));
        eprintln!(
            "  library:     http://{addr}/library/live apiKey {}, private key {}, businessId {}, userName {}",
            shown(&creds.library_api_key, "demo-api-key"),
            shown(&creds.library_private_key, "demo-private-key"),
            creds.library_business_id,
            creds.library_user_name
        );
        eprintln!("  files apps:  http://{addr}/files        API key {}", shown(&creds.files_api_key, "demo-files-key"));
        eprintln!("  control:     http://{addr}/_emulator/{{requests,counts,reset,faults,state}}");
        emu.serve(listener, async {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await
            .map_err(|e| e.to_string())
    })
}

/// A credential as the start banner shows it: the well-known demo default
/// in clear, anything set by the operator never.
fn shown<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value == default {
        value
    } else {
        "(set by flag or environment)"
    }
}
