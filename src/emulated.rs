//! The binary's `demo` and `emulator` commands: the only code of the
//! daemon's binary that links the emulator (and axum), built with the
//! `emulator` feature (the default; `--no-default-features` leaves them out).

use std::path::PathBuf;

use clap::Args;

use bridgefs::config::Config;
use bridgefs::daemon;
use bridgefs_emulator::{Credentials, Dataset, Emu, EmulatorHandle, Faults};

#[derive(Args)]
pub struct EmulatorArgs {
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

pub fn demo(mountpoint: &std::path::Path) -> Result<(), String> {
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

pub fn emulator(a: EmulatorArgs) -> Result<(), String> {
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
