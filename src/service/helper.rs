//! The mount-helper calling convention, so that `mount -t fuse.bridgefs`,
//! an fstab line and `mount -a` work: mount(8) runs `mount.fuse.bridgefs
//! CONFIG MOUNTPOINT -o OPTS` (or `mount.fuse3` runs `bridgefs CONFIG
//! MOUNTPOINT -o OPTS`) and expects it to return once the filesystem is
//! mounted, leaving the daemon in the background.
//!
//! The daemon is this same binary re-executed as `bridgefs mount` in a new
//! session, logging to `state_dir/bridgefs.log`; no fork happens in a
//! process that already has threads.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::daemon::RunError;

/// The subcommands of the binary: a first argument that is one of them is
/// not a helper call.
const SUBCOMMANDS: &[&str] = &[
    "mount", "demo", "emulator", "check", "status", "pending", "help",
];

/// How long the helper waits for the daemon to mount (a long journal
/// replay comes first).
const READY_WAIT: Duration = Duration::from_secs(120);

/// A helper call: `CONFIG MOUNTPOINT [-o OPTS]…`, other flags ignored.
#[derive(Debug, PartialEq)]
pub struct HelperCall {
    pub config: PathBuf,
    pub mountpoint: PathBuf,
    pub options: Vec<String>,
}

/// True when the program was called as a mount helper: by the name
/// `mount.fuse.bridgefs`, or with a config path where a subcommand goes.
pub fn is_helper_call(args: &[OsString]) -> bool {
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("mount.") {
        return true;
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some(first) => args.len() >= 3 && !first.starts_with('-') && !SUBCOMMANDS.contains(&first),
        None => false,
    }
}

/// Parses `CONFIG MOUNTPOINT [-o OPTS] [-n] [-v] [-s] [-f] [-t TYPE]`.
pub fn parse(args: &[OsString]) -> Result<HelperCall, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => options.push(
                it.next()
                    .and_then(|o| o.to_str())
                    .ok_or("-o needs an option list")?
                    .to_string(),
            ),
            Some("-t") => {
                it.next();
            }
            Some(s) if s.starts_with("-o") => options.push(s[2..].to_string()),
            Some(s) if s.starts_with('-') => {}
            _ => positional.push(PathBuf::from(a)),
        }
    }
    match positional.as_slice() {
        [config, mountpoint] => Ok(HelperCall {
            config: config.clone(),
            mountpoint: mountpoint.clone(),
            options,
        }),
        _ => Err("usage: mount.fuse.bridgefs CONFIG MOUNTPOINT [-o OPTIONS]".into()),
    }
}

/// Checks the config, starts the daemon in the background and returns
/// once the mount is live (or the daemon has failed, with its reason and
/// its kind of exit status).
pub fn run(call: &HelperCall) -> Result<(), RunError> {
    start(call).map_err(RunError::Setup)?.wait()
}

/// The background daemon, started.
struct Started {
    child: std::process::Child,
    mountpoint: PathBuf,
    log_path: PathBuf,
    start_of_log: u64,
}

fn start(call: &HelperCall) -> Result<Started, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut config = Config::load(&call.config).map_err(|e| e.to_string())?;
    for o in &call.options {
        super::options::apply(&mut config, o)?;
    }
    let mountpoint = super::mountpoint::prepare(&call.mountpoint)?;
    let state_dir = &config.cache.state_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| format!("{}: {e}", state_dir.display()))?;
    // The log names users' files: private, like the spool.
    let log_path = state_dir.join("bridgefs.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let start_of_log = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg("--config")
        .arg(&call.config)
        .arg(&mountpoint);
    for o in &call.options {
        cmd.arg("-o").arg(o);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the daemon leaves the caller's
    // session so that a terminal's hangup or Ctrl-C does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    Ok(Started {
        child,
        mountpoint,
        log_path,
        start_of_log,
    })
}

impl Started {
    /// Until the mount is live, the daemon has exited, or time is up.
    fn wait(mut self) -> Result<(), RunError> {
        let started = Instant::now();
        loop {
            let exited = self
                .child
                .try_wait()
                .map_err(|e| RunError::Runtime(e.to_string()))?;
            if let Some(status) = exited {
                let why = format!(
                    "the daemon exited ({status}) before mounting: {}",
                    log_since(&self.log_path, self.start_of_log)
                );
                return Err(match status.code() {
                    Some(2) => RunError::Setup(why),
                    _ => RunError::Runtime(why),
                });
            }
            // Ours: the topmost mount there, of our type (not an automount
            // point, not something another mount(8) put there meanwhile).
            let top = super::mountpoint::mounted_at(&self.mountpoint);
            if top.is_some_and(|m| m.fstype == "fuse.bridgefs") {
                return Ok(());
            }
            if started.elapsed() > READY_WAIT {
                return Err(RunError::Runtime(format!(
                    "not mounted after {}s; the daemon (pid {}) goes on trying, see {}",
                    READY_WAIT.as_secs(),
                    self.child.id(),
                    self.log_path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The last error line the daemon logged since `offset`, for the caller.
fn log_since(path: &Path, offset: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let tail = String::from_utf8_lossy(&text[(offset as usize).min(text.len())..]).into_owned();
    tail.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_calls_are_told_from_subcommands() {
        assert!(is_helper_call(&args(&[
            "/sbin/mount.fuse.bridgefs",
            "/etc/b.toml",
            "/mnt"
        ])));
        assert!(is_helper_call(&args(&[
            "bridgefs",
            "/etc/b.toml",
            "/mnt",
            "-o",
            "rw"
        ])));
        assert!(!is_helper_call(&args(&[
            "bridgefs", "mount", "--config", "x", "/mnt"
        ])));
        assert!(!is_helper_call(&args(&["bridgefs", "status"])));
        assert!(!is_helper_call(&args(&["bridgefs", "--help"])));
    }

    #[test]
    fn the_mount_helper_convention_is_parsed() {
        let c = parse(&args(&[
            "mount.fuse.bridgefs",
            "/etc/b.toml",
            "/mnt/b",
            "-n",
            "-o",
            "rw,allow_other",
        ]))
        .unwrap();
        assert_eq!(c.config, PathBuf::from("/etc/b.toml"));
        assert_eq!(c.mountpoint, PathBuf::from("/mnt/b"));
        assert_eq!(c.options, vec!["rw,allow_other".to_string()]);
        assert!(parse(&args(&["bridgefs", "/etc/b.toml"])).is_err());
    }
}
