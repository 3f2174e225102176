//! `bridgefs`: mount, check, status and pending commands; demo and
//! emulator too with the `emulator` feature (the default).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use bridgefs::config::Config;
use bridgefs::daemon;
use bridgefs::service::{helper, options};
#[cfg(feature = "emulator")]
mod emulated;

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
    #[cfg(feature = "emulator")]
    Demo {
        /// An existing empty directory.
        mountpoint: PathBuf,
    },
    /// Serve the three APIs on one listener: /backoffice, /library/live, /files.
    #[cfg(feature = "emulator")]
    Emulator(emulated::EmulatorArgs),
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
        #[cfg(feature = "emulator")]
        Command::Demo { mountpoint } => emulated::demo(&mountpoint).map_err(Failure::Runtime),
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => emulated::emulator(args).map_err(Failure::Runtime),
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
