//! Mountpoint checks before mounting: a relative path is made absolute, a
//! live mount is refused (mounting over it would hide it and its daemon),
//! and a dead FUSE mount left by a crashed daemon (`ENOTCONN`, "Transport
//! endpoint is not connected") is detached so a restart just works.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\012`, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text (see proc(5)).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = unescape(r.next().unwrap_or(""));
            Some(MountEntry {
                mountpoint: PathBuf::from(mountpoint),
                fstype,
                source,
            })
        })
        .collect()
}

/// The mount whose mountpoint is exactly `path`, the topmost if stacked.
pub fn mounted_at(path: &Path) -> Option<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == path)
}

/// The state directory of the bridgefs mount at `mountpoint`: its source
/// in the mount table is the config file, which names the directory.
pub fn state_dir_of(mountpoint: &Path) -> Result<PathBuf, String> {
    let abs = resolve(mountpoint)?;
    if let Some(dir) = super::registry::lookup(&abs) {
        return Ok(dir);
    }
    let m = mounted_at(&abs)
        .filter(|m| m.fstype == "fuse.bridgefs")
        .ok_or_else(|| format!("{} is not a bridgefs mount", abs.display()))?;
    let config = crate::config::Config::load(Path::new(&m.source)).map_err(|e| {
        format!(
            "{} (its config, {}): {e}; pass --state-dir",
            abs.display(),
            m.source
        )
    })?;
    Ok(config.cache.state_dir)
}

/// `path` as the mount table spells it: absolute, symlinks and `..`
/// resolved. A dead mount cannot be resolved itself, so its parent is, and
/// its name joined back.
pub fn resolve(path: &Path) -> Result<PathBuf, String> {
    let abs =
        std::path::absolute(path).map_err(|e| format!("mountpoint {}: {e}", path.display()))?;
    if let Ok(real) = abs.canonicalize() {
        return Ok(real);
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map(|p| p.join(name))
            .map_err(|e| format!("mountpoint {}: {e}", abs.display())),
        _ => Ok(abs),
    }
}

/// Makes `path` absolute, refuses a live mount, detaches a dead FUSE one,
/// and checks that a directory is left. Returns the absolute path.
pub fn prepare(path: &Path) -> Result<PathBuf, String> {
    let abs = resolve(path)?;
    // systemd's automount point: mounting over it is what it waits for
    // (and reading it would wait for this very mount).
    if let Some(m) = mounted_at(&abs).filter(|m| m.fstype != "autofs") {
        // `stat` of a dead mount's root can be answered from the kernel's
        // attribute cache; reading the directory needs its daemon.
        match std::fs::read_dir(&abs) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => detach_dead(&abs)?,
            _ => {
                return Err(format!(
                    "mountpoint {} is already a live mount ({} from {}): unmount it first",
                    abs.display(),
                    m.fstype,
                    m.source
                ))
            }
        }
    }
    let meta = std::fs::metadata(&abs).map_err(|e| format!("mountpoint {}: {e}", abs.display()))?;
    if !meta.is_dir() {
        return Err(format!("mountpoint {} is not a directory", abs.display()));
    }
    Ok(abs)
}

/// Lazily unmounts the dead FUSE mount at `path` (its daemon is gone).
fn detach_dead(path: &Path) -> Result<(), String> {
    let entry = mounted_at(path);
    if !entry.as_ref().is_some_and(|m| m.fstype.starts_with("fuse")) {
        return Err(format!(
            "mountpoint {}: transport endpoint is not connected, and it is not a FUSE mount",
            path.display()
        ));
    }
    tracing::warn!(mountpoint = %path.display(), "detaching the dead mount a stopped daemon left behind");
    detach(path)
}

/// Lazily unmounts `path`: it leaves the tree at once, and goes for good
/// when nothing uses it any more.
pub fn detach(path: &Path) -> Result<(), String> {
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "-q"])
        .arg(path)
        .status();
    if status.is_ok_and(|s| s.success()) || mounted_at(path).is_none() {
        return Ok(());
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("mountpoint {}: NUL in path", path.display()))?;
    // SAFETY: a valid C string; MNT_DETACH only detaches.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    Err(format!(
        "mountpoint {}: cannot detach the dead mount ({}); run `fusermount3 -uz {}`",
        path.display(),
        std::io::Error::last_os_error(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let text = "36 35 98:0 / /mnt/my\\040docs rw,noatime master:1 - fuse.bridgefs bridgefs rw,user_id=0\n\
                    37 35 98:0 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mountpoint, PathBuf::from("/mnt/my docs"));
        assert_eq!(m[0].fstype, "fuse.bridgefs");
        assert_eq!(m[0].source, "bridgefs");
    }

    #[test]
    fn a_plain_directory_is_accepted_and_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(prepare(dir.path()).unwrap(), dir.path());
        assert!(prepare(Path::new("/proc"))
            .unwrap_err()
            .contains("already a live mount"));
        let f = dir.path().join("f");
        std::fs::write(&f, b"").unwrap();
        assert!(prepare(&f).unwrap_err().contains("not a directory"));
    }
}
