//! Running as a service: instance safety, mountpoint handling and crash
//! restarts, with real daemon processes, real mounts and the emulator.

use std::ffi::OsStr;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::remote::Remote;
use crate::common::*;
use bridgefs_emulator::Faults;

/// Writes `rel` while every library upload answers 503: close reports
/// the failure, the bytes stay spooled and journaled. Faults stay on.
fn write_with_uploads_refused(emu: &Emulator, m: &Mount, rel: &str, data: &[u8]) {
    emu.set_faults(Faults {
        error_rate: 1.0,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let mut f = std::fs::File::create(m.path(rel)).unwrap();
    f.write_all(data).unwrap();
    assert!(f.sync_all().is_err(), "the upload failed");
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
    let data = pattern(50_000, 9);
    write_with_uploads_refused(&emu, &m, "library/crash.bin", &data);
    assert_eq!(m.journal_records(), 1, "journaled");
    m.kill9_keep_mount();
    let dead = std::fs::read_dir(&m.mountpoint).unwrap_err();
    assert_eq!(errno(&dead), libc::ENOTCONN, "the crash left a dead mount");
    emu.set_faults(Faults::default());
    assert!(
        remote.library_item("crash.bin").is_none(),
        "only the journal has it"
    );

    m.spawn();
    assert!(
        m.log_text().contains("recovered pending upload"),
        "{}",
        m.log_text()
    );
    assert_eq!(m.journal_records(), 0, "the record is gone once uploaded");
    assert_eq!(remote.library_bytes_by_name("crash.bin").unwrap(), data);
    let live = remote
        .library_items()
        .into_iter()
        .filter(|i| i["fileName"] == "crash.bin" && i["deleted"] != true)
        .count();
    assert_eq!(live, 1, "uploaded once");
    assert_eq!(std::fs::read(m.path("library/crash.bin")).unwrap(), data);
}

#[test]
fn a_small_file_lives_in_its_journal_record_and_survives_the_loss_of_its_spool_file() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("library")).unwrap().count();
    let data = pattern(9_000, 4);
    write_with_uploads_refused(&emu, &m, "library/small.bin", &data);
    assert_eq!(m.journal_records(), 1, "journaled");
    m.kill9();
    // Its spool file was never fsynced (the record holds the bytes): a
    // power cut may take it; here it is gone altogether.
    let spool = m.files.path("cache/spool");
    let spooled: Vec<_> = std::fs::read_dir(&spool).unwrap().flatten().collect();
    assert_eq!(spooled.len(), 1, "one spool file");
    spooled
        .iter()
        .for_each(|e| std::fs::remove_file(e.path()).unwrap());
    emu.set_faults(Faults::default());
    m.spawn();
    assert!(
        m.log_text()
            .contains("restored small files' bytes from the journal"),
        "{}",
        m.log_text()
    );
    assert_eq!(remote.library_bytes_by_name("small.bin").unwrap(), data);
    assert_eq!(m.journal_records(), 0, "the record is gone once uploaded");
    assert_eq!(std::fs::read(m.path("library/small.bin")).unwrap(), data);
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

/// A daemon started by mount(8): unmounted and stopped at the end even if
/// the test fails.
struct HelperMount {
    mountpoint: std::path::PathBuf,
    state_dir: std::path::PathBuf,
}

impl HelperMount {
    fn daemon_pid(&self) -> u32 {
        let mut pid = 0;
        eventually("the status file", Duration::from_secs(10), || {
            pid = bridgefs::status::read(&self.state_dir)
                .map(|s| s.pid)
                .unwrap_or(0);
            pid != 0
        });
        pid
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("bridgefs.log")).unwrap_or_default()
    }
}

impl Drop for HelperMount {
    fn drop(&mut self) {
        if let Ok(s) = bridgefs::status::read(&self.state_dir) {
            if std::thread::panicking() {
                eprintln!("---- daemon log ----\n{}", self.log());
            }
            force_unmount(&self.mountpoint);
            let pid = s.pid as i32;
            for _ in 0..100 {
                // SAFETY: signal 0 only probes.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: our own child's pid, still alive.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only probes.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// mount(8) runs `mount.fuse3`, which runs `bridgefs` from a fixed PATH
/// (`/usr/local/sbin:/usr/local/bin:…`): for the test's length the built
/// binary is linked first on it; whatever was there comes back after.
struct HelperInstall {
    link: std::path::PathBuf,
    aside: Option<std::path::PathBuf>,
}

impl HelperInstall {
    fn new() -> HelperInstall {
        let link = std::path::PathBuf::from("/usr/local/sbin/bridgefs");
        std::fs::create_dir_all("/usr/local/sbin").unwrap();
        let aside = link.symlink_metadata().is_ok().then(|| {
            let a = link.with_extension("test-aside");
            std::fs::rename(&link, &a).unwrap();
            a
        });
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bridgefs"), &link).unwrap();
        HelperInstall { link, aside }
    }
}

impl Drop for HelperInstall {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
        if let Some(a) = &self.aside {
            let _ = std::fs::rename(a, &self.link);
        }
    }
}

fn umount_and_wait(h: &HelperMount, pid: u32) {
    sh_ok(&format!("umount {}", h.mountpoint.display()));
    eventually(
        "the daemon to exit after umount",
        Duration::from_secs(30),
        || !alive(pid),
    );
}

#[test]
fn fstab_and_mount_t_mount_in_the_background_refuse_bad_options_and_umount_stops_the_daemon() {
    let emu = Emulator::demo();
    let remote = Remote::new(&emu.url());
    let files = crate::common::demo_files();
    let config = files.path("office.toml");
    std::fs::write(&config, files.config_text(&emu.url())).unwrap();
    let h = HelperMount {
        mountpoint: files.path("mnt"),
        state_dir: files.path("state"),
    };
    std::fs::create_dir(&h.mountpoint).unwrap();

    // An fstab line, in a private fstab.
    let fstab = files.path("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{} {} fuse.bridgefs _netdev,nofail,allow_other,metadata_ttl=10s 0 0\n",
            config.display(),
            h.mountpoint.display()
        ),
    )
    .unwrap();
    let _helper = HelperInstall::new();
    // A misspelt option is refused by name, and nothing is mounted.
    let (code, _, err) = sh(&format!(
        "mount -t fuse.bridgefs -o allow_otehr {} {}",
        config.display(),
        h.mountpoint.display()
    ));
    assert_ne!(code, 0);
    assert!(err.contains("allow_otehr"), "{err}");
    assert!(!is_mounted(&h.mountpoint));

    sh_ok(&format!(
        "mount -T {} {}",
        fstab.display(),
        h.mountpoint.display()
    ));
    let findmnt = sh_ok(&format!(
        "findmnt -n -t fuse.bridgefs -o TARGET,SOURCE {}",
        h.mountpoint.display()
    ));
    assert!(
        findmnt.contains(&config.display().to_string()),
        "type and source: {findmnt}"
    );
    let pid = h.daemon_pid();
    std::fs::write(h.mountpoint.join("library/from-fstab.txt"), b"fstab bytes").unwrap();
    sh_ok(&format!(
        "sed -i s/bytes/words/ {}",
        h.mountpoint.join("library/from-fstab.txt").display()
    ));
    umount_and_wait(&h, pid);
    assert_eq!(
        remote.library_bytes_by_name("from-fstab.txt").unwrap(),
        b"fstab words"
    );

    // mount -t with -o, the same config.
    sh_ok(&format!(
        "mount -t fuse.bridgefs -o allow_other {} {}",
        config.display(),
        h.mountpoint.display()
    ));
    let pid2 = h.daemon_pid();
    assert!(
        std::fs::read_dir(h.mountpoint.join("apps/handbook"))
            .unwrap()
            .count()
            > 0
    );
    umount_and_wait(&h, pid2);

    let log = h.log();
    for noise in [
        "\u{1b}[",
        "Not Implemented",
        "unmount failed",
        "Failed to umount",
    ] {
        assert!(!log.contains(noise), "{noise:?} in the log:\n{log}");
    }
    assert!(
        log.contains("unmounted from outside") && log.contains("stopped"),
        "{log}"
    );
}

#[test]
fn status_shows_an_upload_in_flight_with_its_bytes() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        latency_ms: 3000,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let data = pattern(4 << 20, 3);
    let writer = {
        let (p, data) = (m.path("library/slow.bin"), data.clone());
        std::thread::spawn(move || std::fs::write(p, data))
    };
    let mut out = String::new();
    eventually("the upload in status", Duration::from_secs(10), || {
        let (_, o) = m.run_bin(&[OsStr::new("status"), m.mountpoint.as_os_str()]);
        out = o;
        out.contains("library/slow.bin:")
    });
    assert!(out.contains("uploads in flight: 1"), "{out}");
    assert!(out.contains("of 4.0 MiB"), "{out}");
    writer.join().unwrap().unwrap();
    emu.set_faults(Faults::default());
    let (_, after) = m.run_bin(&[
        OsStr::new("status"),
        OsStr::new("--state-dir"),
        m.state_dir().as_os_str(),
    ]);
    assert!(after.contains("bridgefs running"), "{after}");
}

#[test]
fn the_metrics_endpoint_counts_as_files_are_copied() {
    let emu = Emulator::demo();
    let (m, port) = Mount::start_metered(&emu, MountOptions::default());
    let before = scrape(port);
    assert!(
        before.contains("# TYPE bridgefs_fuse_requests_total counter"),
        "{before}"
    );
    let src = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(src.path().join(format!("m{i}.bin")), pattern(10_000, i)).unwrap();
    }
    sh_ok(&format!(
        "cp -r {} {}",
        src.path().display(),
        m.path("library/copied").display()
    ));
    let after = scrape(port);
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert!(
        delta("bridgefs_remote_calls_total{endpoint=\"library.upload\"}") >= 5.0,
        "{after}"
    );
    assert!(
        delta("bridgefs_upload_bytes_sent_total") >= 50_000.0,
        "{after}"
    );
    assert!(
        delta("bridgefs_fuse_requests_total{op=\"write\"}") >= 5.0,
        "{after}"
    );
    assert!(
        delta("bridgefs_fuse_requests_total{op=\"create\"}") >= 5.0,
        "{after}"
    );
    assert!(after.contains("bridgefs_pending_uploads 0"), "{after}");
    // Each small file's close: one fdatasync of its journal slot, timed.
    assert_eq!(delta("bridgefs_disk_syncs_total"), 5.0, "{after}");
    assert!(delta("bridgefs_disk_sync_seconds_total") > 0.0, "{after}");
}

/// Range downloads land in reused 1 MiB buffers, at most 16 of them idle;
/// SIGHUP, which drops cached content, lets go of them.
#[test]
fn sighup_lets_go_of_the_idle_download_buffers() {
    let emu = Emulator::demo();
    let bytes = pattern(8 << 20, 3);
    emu.emu()
        .files
        .lock()
        .add_file("handbook", "big.bin", bytes.clone());
    let (m, port) = Mount::start_metered(&emu, MountOptions::default());
    let idle = || sample(&scrape(port), "bridgefs_download_buffers_idle");
    assert_eq!(idle(), 0.0, "none before a download");
    assert!(read_direct(&m.path("apps/handbook/big.bin")) == bytes);
    eventually(
        "buffers idle after the read",
        Duration::from_secs(2),
        || idle() > 0.0,
    );
    assert!(idle() <= 16.0, "at most 16 idle");
    unsafe { libc::kill(m.pid().unwrap() as i32, libc::SIGHUP) };
    eventually(
        "no idle buffer after SIGHUP",
        Duration::from_secs(2),
        || idle() == 0.0,
    );
}

/// The file's bytes read with `O_DIRECT`, 1 MiB at a time in order: the
/// daemon then gets exactly those reads, one after the other, whatever
/// the kernel's read-ahead would have made of a buffered read under load
/// (smaller reads leave whole blocks cached, and their buffers busy).
fn read_direct(path: &std::path::Path) -> Vec<u8> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const MIB: usize = 1 << 20;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    // O_DIRECT wants an aligned buffer: 1 MiB at a 4 KiB boundary.
    let mut backing = vec![0u8; MIB + 4096];
    let skip = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[skip..skip + MIB];
    let mut out = Vec::new();
    loop {
        let n = f.read_at(buf, out.len() as u64).unwrap();
        out.extend_from_slice(&buf[..n]);
        if n < MIB {
            return out;
        }
    }
}

#[test]
fn check_against_a_dead_port_reports_every_place_failed() {
    let files = crate::common::demo_files();
    let config = files.path("dead.toml");
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(&config, files.config_text(&dead)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bridgefs"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("ok")),
        "nothing reached: {text}"
    );
    for place in [
        "clients/1/",
        "clients/2/",
        "clients/3/",
        "folder-templates/",
        "library/",
        "apps/handbook/",
        "apps/contracts/",
    ] {
        let lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("FAIL  {place} ")))
            .count();
        assert_eq!(lines, 1, "{place} once: {text}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "no log lines repeat it"
    );
}

#[test]
fn a_journal_record_whose_spool_is_gone_is_reported_once_listed_and_dropped() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    m.stop();
    let journal = bridgefs::fs::writeback::journal::Journal::open(&m.state_dir()).unwrap();
    journal
        .record(&bridgefs::fs::writeback::journal::PendingUpload {
            id: "deadbeef".into(),
            backend: "library".into(),
            dir_key: "lib".into(),
            name: "lost.txt".into(),
            existing_key: None,
            spool: m.files.path("cache/spool/gone"),
            display_path: "library/lost.txt".into(),
            refused: None,
            local_only: false,
            seq: 0,
            bytes_in_slot: false,
        })
        .unwrap();
    m.spawn();
    let reported = |log: &str| log.matches("lost its spool file").count();
    assert_eq!(reported(&m.log_text()), 1, "{}", m.log_text());
    let (code, status) = m.run_bin(&[OsStr::new("status"), m.mountpoint.as_os_str()]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("stuck: 1") && status.contains("library/lost.txt"),
        "{status}"
    );
    m.stop();
    m.spawn();
    assert_eq!(
        reported(&m.log_text()),
        1,
        "not reported again: {}",
        m.log_text()
    );
    let state = m.state_dir();
    let (_, list) = m.run_bin(&[
        OsStr::new("pending"),
        OsStr::new("list"),
        OsStr::new("--state-dir"),
        state.as_os_str(),
    ]);
    assert!(
        list.contains("orphaned") && list.contains("deadbeef"),
        "{list}"
    );
    let (code, out) = m.run_bin(&[
        OsStr::new("pending"),
        OsStr::new("drop"),
        OsStr::new("deadbeef"),
        OsStr::new("--state-dir"),
        state.as_os_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = m.run_bin(&[
        OsStr::new("pending"),
        OsStr::new("list"),
        OsStr::new("--state-dir"),
        state.as_os_str(),
    ]);
    assert!(list.contains("no pending uploads"), "{list}");
}

#[test]
fn the_systemd_unit_verifies_cleanly_and_keeps_the_host_mount_namespace() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/bridgefs@.service"
    ))
    .unwrap();
    for key in [
        "StateDirectory=bridgefs/%i",
        "CacheDirectory=bridgefs/%i",
        "RestartPreventExitStatus=2",
        "Type=notify",
    ] {
        assert!(unit.contains(key), "{key} missing");
    }
    // Each of these would give the service a private mount namespace (or
    // close /dev/fuse), hiding the mount from the host.
    for key in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectControlGroups=",
        "ReadWritePaths=",
        "DevicePolicy=",
        "ProtectClock=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(key)),
            "{key} hides the mount"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's program exists: point it at the build.
    let local = unit.replace("/usr/local/bin/bridgefs", env!("CARGO_BIN_EXE_bridgefs"));
    std::fs::write(dir.path().join("bridgefs@.service"), &local).unwrap();
    std::fs::write(dir.path().join("bridgefs@office.service"), &local).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("bridgefs@office.service"))
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.trim().is_empty(), "warnings: {text}");
}

#[test]
fn a_refused_credential_is_warned_at_start_shown_in_status_and_the_rest_is_served() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    m.stop();
    std::fs::write(m.files.path("files.key"), "rotated-away").unwrap();
    m.spawn();
    let log = m.log_text();
    assert!(
        log.contains("unreachable at start: FAIL  apps/handbook/ Files apps"),
        "{log}"
    );
    assert!(!log.contains("rotated-away"), "the key is never logged");
    let (code, status) = m.run_bin(&[OsStr::new("status"), m.mountpoint.as_os_str()]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("unreachable at start:") && status.contains("apps/contracts/"),
        "{status}"
    );
    assert!(
        !status.contains("FAIL  library/"),
        "the library answered: {status}"
    );
    assert!(
        std::fs::read_dir(m.path("library")).unwrap().count() > 0,
        "the rest is served"
    );
    assert_eq!(
        errno(&std::fs::read_dir(m.path("apps/handbook")).unwrap_err()),
        libc::EACCES
    );
}

#[test]
fn status_by_mountpoint_finds_a_daemon_whose_directories_came_from_systemd() {
    let emu = Emulator::demo();
    let files = crate::common::demo_files();
    let config = files.path("unit.toml");
    // As under the unit: no cache.dir / state_dir in the config.
    let text: String = files
        .config_text(&emu.url())
        .lines()
        .filter(|l| !l.starts_with("dir =") && !l.starts_with("state_dir ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, text).unwrap();
    let h = HelperMount {
        mountpoint: files.path("mnt"),
        state_dir: files.path("systemd-state"),
    };
    std::fs::create_dir(&h.mountpoint).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bridgefs"))
        .args(["mount", "--config"])
        .arg(&config)
        .arg(&h.mountpoint)
        .env("STATE_DIRECTORY", &h.state_dir)
        .env("CACHE_DIRECTORY", files.path("systemd-cache"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the mount", Duration::from_secs(20), || {
        is_mounted(&h.mountpoint) && std::fs::read_dir(&h.mountpoint).is_ok()
    });
    assert!(
        h.state_dir.join("pending").is_dir(),
        "the journal is in $STATE_DIRECTORY"
    );
    assert!(
        files.path("systemd-cache/spool").is_dir(),
        "the spool is in $CACHE_DIRECTORY"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bridgefs"))
        .arg("status")
        .arg(&h.mountpoint)
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("pid {}", child.id())), "{text}");
    // SAFETY: our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn sigterm_with_the_mount_busy_detaches_it_exits_promptly_and_loses_nothing() {
    let emu = Emulator::demo();
    let mut m = Mount::start_with(
        &emu,
        MountOptions {
            shutdown_wait: "2s",
            ..Default::default()
        },
    );
    let remote = Remote::new(&emu.url());
    // A shell sitting in the mount, and a file written but still open.
    let mut shell = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(m.path("library"))
        .spawn()
        .unwrap();
    let data = pattern(20_000, 4);
    let mut open = std::fs::File::create(m.path("library/open.bin")).unwrap();
    open.write_all(&data).unwrap();
    let started = Instant::now();
    let status = m.stop().expect("the daemon exits");
    let took = started.elapsed();
    let _ = shell.kill();
    let _ = shell.wait();
    drop(open);
    assert!(status.success(), "{status}");
    // shutdown_wait + 1 s, plus slack for a loaded machine; before, it never exited.
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    assert!(!is_mounted(&m.mountpoint), "detached");
    assert!(
        m.log_text().contains("detaching it (lazy unmount)"),
        "{}",
        m.log_text()
    );
    // Nothing lost: the open file went up at stop, or goes up from the journal.
    if remote.library_item("open.bin").is_none() {
        m.spawn();
    }
    assert_eq!(remote.library_bytes_by_name("open.bin").unwrap(), data);
}

#[test]
fn a_second_sigterm_exits_at_once_and_the_upload_stays_journaled() {
    let emu = Emulator::demo();
    let mut m = Mount::start_with(
        &emu,
        MountOptions {
            shutdown_wait: "60s",
            ..Default::default()
        },
    );
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("library")).unwrap().count();
    // The file stays dirty: the drain would take 60 s.
    let data = pattern(30_000, 6);
    write_with_uploads_refused(&emu, &m, "library/slow.bin", &data);
    let pid = m.pid().unwrap() as i32;
    let started = Instant::now();
    // SAFETY: the test's own daemon.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually("the drain to start", Duration::from_secs(10), || {
        m.log_text().contains("SIGTERM")
    });
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = m.stop().expect("the daemon exits");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not wait for shutdown_wait"
    );
    assert!(m.log_text().contains("second signal"), "{}", m.log_text());
    emu.set_faults(Faults::default());
    m.spawn();
    assert_eq!(remote.library_bytes_by_name("slow.bin").unwrap(), data);
}

#[test]
fn a_long_upload_logs_its_progress_at_info_level() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        latency_ms: 12_000,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let writer = {
        let p = m.path("library/progress.bin");
        std::thread::spawn(move || std::fs::write(p, pattern(1 << 20, 2)))
    };
    eventually("a progress line", Duration::from_secs(20), || {
        m.log_text().lines().any(|l| {
            l.contains("INFO")
                && l.contains("uploading")
                && l.contains("library/progress.bin")
                && l.contains("total=1048576")
        })
    });
    writer.join().unwrap().unwrap();
}
