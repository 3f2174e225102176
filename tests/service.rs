//! Running as a service: instance safety, mountpoint handling and crash
//! restarts, with real daemon processes, real mounts and the emulator.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::time::{Duration, Instant};

use bridgefs::emulator::Faults;
use common::remote::Remote;
use common::*;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_daemon_on_the_same_directories_refuses_and_the_first_keeps_its_spool() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let data = pattern(300_000, 1);
    // A file half written: its bytes are only in the first daemon's spool.
    let mut f = std::fs::File::create(m.path("library/half.bin")).unwrap();
    f.write_all(&data[..150_000]).unwrap();

    let other = m.files.path("other-mnt");
    std::fs::create_dir(&other).unwrap();
    let (code, out) = m.run_bin(&[
        OsStr::new("mount"),
        OsStr::new("--config"),
        m.config.as_os_str(),
        other.as_os_str(),
    ]);
    assert_ne!(code, 0, "the second daemon refuses: {out}");
    let pid = m.pid().unwrap();
    assert!(
        out.contains(&format!("pid {pid}")),
        "names the holder's pid: {out}"
    );
    assert!(
        out.contains(&m.mountpoint.display().to_string()),
        "names the holder's mountpoint: {out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(!is_mounted(&other));

    f.write_all(&data[150_000..]).unwrap();
    drop(f);
    assert_eq!(remote.library_bytes_by_name("half.bin").unwrap(), data);
}

#[test]
fn kill_9_then_a_plain_restart_on_the_same_mountpoint_serves_and_uploads_the_journal() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        latency_ms: 4000,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let data = pattern(50_000, 9);
    let writer = {
        let (p, data) = (m.path("library/crash.bin"), data.clone());
        std::thread::spawn(move || std::fs::write(p, data))
    };
    eventually("the journal record", Duration::from_secs(10), || {
        std::fs::read_dir(m.state_dir().join("pending"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
    m.kill9_keep_mount();
    let _ = writer.join();
    let dead = std::fs::read_dir(&m.mountpoint).unwrap_err();
    assert_eq!(errno(&dead), libc::ENOTCONN, "the crash left a dead mount");
    emu.set_faults(Faults::default());
    std::thread::sleep(Duration::from_millis(4500));

    m.spawn();
    assert_eq!(std::fs::read(m.path("library/crash.bin")).unwrap(), data);
    assert_eq!(remote.library_bytes_by_name("crash.bin").unwrap(), data);
    let live = remote
        .library_items()
        .into_iter()
        .filter(|i| i["fileName"] == "crash.bin" && i["deleted"] != true)
        .count();
    assert_eq!(live, 1, "uploaded once");
}

#[test]
fn mounting_over_a_live_mount_is_refused() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let other = tempfile::tempdir().unwrap();
    let config = other.path().join("other.toml");
    // Another config (own directories), the same mountpoint.
    let text = std::fs::read_to_string(&m.config)
        .unwrap()
        .replace(
            &m.files.path("cache").display().to_string(),
            &other.path().join("c").display().to_string(),
        )
        .replace(
            &m.files.path("state").display().to_string(),
            &other.path().join("s").display().to_string(),
        );
    std::fs::write(&config, text).unwrap();
    let (code, out) = m.run_bin(&[
        OsStr::new("mount"),
        OsStr::new("--config"),
        config.as_os_str(),
        m.mountpoint.as_os_str(),
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("already a live mount"), "{out}");
    // The first mount still serves.
    assert!(std::fs::read_dir(m.path("library")).unwrap().count() > 0);
}
