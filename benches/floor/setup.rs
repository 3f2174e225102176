//! The bench's world: an emulator with apps made for each item, the
//! floor's raw client, local directories, and mounts that show the bench
//! apps under `bench/` (a second `[[files]]` backend, so every item gets
//! apps of its own without touching the test helpers' config).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bridgefs_emulator::files::App;
use bridgefs_emulator::Dataset;
use tempfile::TempDir;

use crate::common::{self, Emulator, Mount, MountOptions};
use crate::harness::{self, Sample};
use crate::raw::{Raw, KEY};

/// Every mountpoint the bench made, checked at the end: none may be left.
static MOUNTPOINTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

pub struct Bench {
    pub emu: Emulator,
    pub raw: Raw,
    /// Holds the bench backend's API key file.
    keys: TempDir,
    /// Local files: the ext4/tmpfs floors and `cp` sources.
    pub local: TempDir,
}

impl Bench {
    /// An emulator with the empty dataset and nothing else yet.
    pub fn new() -> Bench {
        let emu = Emulator::start(Dataset::empty());
        let raw = Raw::new(&emu.url());
        let keys = tempfile::tempdir().unwrap();
        write_private(&keys.path().join("files.key"), KEY);
        Bench {
            emu,
            raw,
            keys,
            local: tempfile::tempdir().unwrap(),
        }
    }

    /// Times `work` (see [`harness::timed`]).
    pub fn timed(&self, work: impl FnOnce()) -> Sample {
        harness::timed(&self.emu, work)
    }

    /// A new, empty app, made in the emulator's state in-process.
    pub fn add_app(&self, uid: &str) {
        let mut st = self.emu.emu().files.lock();
        let id = st.apps.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        st.apps.push(App {
            id,
            uid: uid.to_string(),
            name: uid.to_string(),
        });
    }

    /// A new app holding `n` files of `size` bytes named by [`name`],
    /// made in-process (setup is not what is measured); returns their ids.
    pub fn app_with(&self, uid: &str, n: usize, size: usize) -> Vec<u64> {
        self.add_app(uid);
        let mut st = self.emu.emu().files.lock();
        (0..n)
            .map(|i| st.add_file(uid, &name(i), common::pattern(size, i as u8)))
            .collect()
    }

    /// (live files, their total bytes) of an app, read from the
    /// emulator's state: what the remote holds, not what a mount believes.
    pub fn live(&self, uid: &str) -> (usize, u64) {
        let st = self.emu.emu().files.lock();
        let app = st.apps.iter().find(|a| a.uid == uid).map(|a| a.id);
        let live = st.files.values().filter(|f| f.app == app && !f.trashed);
        live.fold((0, 0), |(n, b), f| {
            (n + 1, b + st.bytes(f.id).map_or(0, |x| x.len() as u64))
        })
    }

    /// A fresh daemon (empty caches, a new FUSE superblock) showing `apps`
    /// under `bench/`, trusting listings for `ttl`.
    pub fn mount(&self, apps: &[&str], ttl: &'static str) -> Mount {
        self.mount_at(&self.emu.url(), apps, ttl, "20s")
    }

    /// [`Bench::mount`] with the bench apps served from `base` and a
    /// call deadline of `deadline`.
    pub fn mount_at(
        &self,
        base: &str,
        apps: &[&str],
        ttl: &'static str,
        deadline: &'static str,
    ) -> Mount {
        self.mount_configured(base, apps, ttl, deadline, "")
    }

    /// [`Bench::mount`] serving its metrics, and their port: for items
    /// that report what the daemon measured of itself.
    pub fn mount_metered(&self, apps: &[&str], ttl: &'static str) -> (Mount, u16) {
        let port = common::free_port();
        let metrics = common::metrics_on(port);
        let m = self.mount_configured(&self.emu.url(), apps, ttl, "20s", &metrics);
        (m, port)
    }

    fn mount_configured(
        &self,
        base: &str,
        apps: &[&str],
        ttl: &'static str,
        deadline: &'static str,
        more_toml: &str,
    ) -> Mount {
        let extra = format!(
            "\n[[files]]\nmount_as = \"bench\"\nbase_url = \"{base}/files\"\napi_key_file = {:?}\napps = {:?}\n{more_toml}",
            self.keys.path().join("files.key"),
            apps
        );
        let opts = MountOptions {
            metadata_ttl: ttl,
            call_deadline: deadline,
            extra_toml: extra,
            log_filter: "info",
            ..MountOptions::default()
        };
        let m = Mount::start_with(&self.emu, opts);
        remember_mountpoint(&m.mountpoint);
        m
    }

    /// A local directory of `n` files of `size` bytes named by [`name`].
    pub fn local_dir(&self, dir: &str, n: usize, size: usize) -> PathBuf {
        let d = self.local.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            std::fs::write(d.join(name(i)), common::pattern(size, i as u8)).unwrap();
        }
        d
    }
}

/// Records a mountpoint for [`assert_all_unmounted`].
pub fn remember_mountpoint(path: &Path) {
    MOUNTPOINTS.lock().unwrap().push(path.to_path_buf());
}

/// Panics if a mount the bench made is still mounted (each `Mount`
/// unmounts on drop; this proves it did); returns how many there were.
pub fn assert_all_unmounted() -> usize {
    let all = MOUNTPOINTS.lock().unwrap();
    let left: Vec<&PathBuf> = all.iter().filter(|p| common::is_mounted(p)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:?}");
    all.len()
}

/// The name of file `i` of an item's app or local directory.
pub fn name(i: usize) -> String {
    format!("f{i:06}.txt")
}

/// A bench app's directory in a mount.
pub fn app_dir(m: &Mount, app: &str) -> PathBuf {
    m.path(&format!("bench/{app}"))
}

/// A credential file, private as an admin keeps one.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Runs a program to success; returns its stdout.
pub fn run(program: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ls -l DIR`; returns the number of entries it printed.
pub fn ls_l(dir: &Path) -> usize {
    let out = run("ls", &["-l".as_ref(), dir.as_os_str()]);
    let text = String::from_utf8(out).unwrap();
    text.lines().filter(|l| !l.starts_with("total ")).count()
}

/// What kind of filesystem holds `path` (labels the local floors).
pub fn fs_kind(path: &Path) -> &'static str {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return "local disk";
    }
    match s.f_type {
        0xEF53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        _ => "local disk",
    }
}

/// Bytes free for an unprivileged writer on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_bavail as u64 * s.f_frsize as u64
}

/// The daemon's peak resident set so far (`VmHWM`), in bytes.
pub fn peak_rss(m: &Mount) -> u64 {
    status_kb(m, "VmHWM:") * 1024
}

/// The daemon's resident memory now (`VmRSS`), in bytes.
pub fn resident(m: &Mount) -> u64 {
    status_kb(m, "VmRSS:") * 1024
}

/// One `kB` line of `/proc/<daemon pid>/status`.
fn status_kb(m: &Mount, key: &str) -> u64 {
    let pid = m.pid().expect("the daemon runs");
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
