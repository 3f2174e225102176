//! Real-mount fault suite: the emulator's deterministic fault switches
//! (`pass_first`, `fail_next`) against sequences of API calls, checked on
//! the remote's state: no failure may leave neither the old nor the new
//! bytes.

use crate::common::remote::Remote;
use crate::common::*;
use bridgefs_emulator::Faults;

/// Writes `keep.txt` (old bytes) and `tmp.txt` (new bytes) in `dir`, both
/// uploaded when `write` returns.
fn two_files(m: &Mount, dir: &str) {
    std::fs::write(m.path(&format!("{dir}/keep.txt")), b"old bytes").unwrap();
    std::fs::write(m.path(&format!("{dir}/tmp.txt")), b"new bytes").unwrap();
}

/// `mv tmp.txt keep.txt` with `faults` set; returns the errno it saw.
fn failing_mv(emu: &Emulator, m: &Mount, dir: &str, faults: Faults) -> i32 {
    emu.set_faults(faults);
    let err = std::fs::rename(
        m.path(&format!("{dir}/tmp.txt")),
        m.path(&format!("{dir}/keep.txt")),
    )
    .expect_err("the rename call fails");
    emu.set_faults(Faults::default());
    errno(&err)
}

/// A refused save over a file undoes the rename: through the mount both
/// files read as before it.
fn assert_both_as_before(m: &Mount, dir: &str) {
    let read = |n: &str| std::fs::read(m.path(&format!("{dir}/{n}"))).unwrap();
    assert_eq!(
        read("keep.txt"),
        b"old bytes",
        "{dir}: the target as it was"
    );
    assert_eq!(read("tmp.txt"), b"new bytes", "{dir}: the source as it was");
}

/// Uploads to a path containing `path` answer 400, once.
fn refuse_upload(path: &str) -> Faults {
    Faults {
        path_contains: Some(path.into()),
        fail_next: 1,
        error_status: Some(400),
        ..Faults::default()
    }
}

fn fail_once(method: &str, path: &str, pass_first: u32) -> Faults {
    Faults {
        method: Some(method.into()),
        path_contains: Some(path.into()),
        pass_first,
        fail_next: 1,
        error_status: Some(400),
        ..Faults::default()
    }
}

#[test]
fn library_rename_onto_existing_keeps_the_target_when_the_rename_fails() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    two_files(&m, "library");
    // The upload of the new bytes under the target's name is refused.
    let e = failing_mv(&emu, &m, "library", refuse_upload("fileUploadS3"));
    assert_eq!(e, libc::EINVAL, "the 400 is reported");
    assert_both_as_before(&m, "library");
    assert_eq!(
        remote.library_bytes_by_name("keep.txt").as_deref(),
        Some(&b"old bytes"[..]),
        "the target is back under its name"
    );
    assert_eq!(
        remote.library_bytes_by_name("tmp.txt").as_deref(),
        Some(&b"new bytes"[..])
    );
    let leftovers: Vec<_> = remote
        .library_items()
        .into_iter()
        .filter(|i| i["deleted"] != true)
        .filter(|i| {
            i["fileName"]
                .as_str()
                .unwrap_or("")
                .starts_with(".bridgefs")
        })
        .collect();
    assert!(leftovers.is_empty(), "nothing left aside: {leftovers:?}");

    // Without faults the same mv replaces the target: one live item.
    std::fs::rename(m.path("library/tmp.txt"), m.path("library/keep.txt")).unwrap();
    let live: Vec<_> = remote
        .library_items()
        .into_iter()
        .filter(|i| i["deleted"] != true && i["fileName"] == "keep.txt")
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(remote.library_bytes(&live[0]), b"new bytes");
    assert!(remote.library_item("tmp.txt").is_none());
    assert_eq!(
        std::fs::read(m.path("library/keep.txt")).unwrap(),
        b"new bytes"
    );
}

#[test]
fn app_rename_onto_existing_keeps_the_target_when_the_rename_fails() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    two_files(&m, "apps/handbook");
    // The new revision of the target is refused.
    let e = failing_mv(
        &emu,
        &m,
        "apps/handbook",
        fail_once("PATCH", "/files/api/files/", 0),
    );
    assert_eq!(e, libc::EINVAL, "the 400 is reported");
    assert_both_as_before(&m, "apps/handbook");
    assert_eq!(
        remote.app_bytes_by_name("handbook", "keep.txt").as_deref(),
        Some(&b"old bytes"[..]),
        "the target is out of the trash, under its name"
    );
    assert_eq!(
        remote.app_bytes_by_name("handbook", "tmp.txt").as_deref(),
        Some(&b"new bytes"[..])
    );
    assert!(
        !remote
            .app_trash("handbook")
            .iter()
            .any(|f| f["name"] == "keep.txt"),
        "not left in the trash"
    );
}

#[test]
fn client_rename_onto_existing_keeps_the_target_when_the_rename_fails() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    two_files(&m, "clients/1");
    // The upload of the new bytes as the target's next file is refused.
    let e = failing_mv(
        &emu,
        &m,
        "clients/1",
        fail_once("POST", "/clients/1/files", 0),
    );
    assert_eq!(e, libc::EINVAL, "the 400 is reported");
    assert_both_as_before(&m, "clients/1");
    let keep = remote
        .client_file_named(1, "keep.txt")
        .expect("target kept");
    let tmp = remote.client_file_named(1, "tmp.txt").expect("source kept");
    assert_eq!(
        remote.client_bytes(1, keep["id"].as_u64().unwrap()),
        b"old bytes"
    );
    assert_eq!(
        remote.client_bytes(1, tmp["id"].as_u64().unwrap()),
        b"new bytes"
    );
}

/// Each way a creating call can fail transiently: a 503, a 429, and an
/// answer dropped after the server acted.
fn transient(kind: &str, method: &str, path: &str) -> Faults {
    let base = Faults {
        method: Some(method.into()),
        path_contains: Some(path.into()),
        ..Faults::default()
    };
    match kind {
        "503" => Faults {
            fail_next: 1,
            ..base
        },
        "429" => Faults {
            fail_next: 1,
            error_status: Some(429),
            ..base
        },
        _ => Faults {
            drop_next: 1,
            ..base
        },
    }
}

#[test]
fn mkdir_answered_503_429_or_dropped_makes_one_visible_folder_on_every_backend() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    for kind in ["503", "429", "drop"] {
        // Library folders.
        let name = format!("lib-{kind}");
        emu.set_faults(transient(kind, "POST", "/library/live/files"));
        std::fs::create_dir(m.path(&format!("library/{name}")))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        emu.set_faults(Faults::default());
        let live = remote
            .library_items()
            .into_iter()
            .filter(|i| i["fileName"] == name.as_str() && i["deleted"] != true)
            .count();
        assert_eq!(live, 1, "{kind}: one library folder");
        assert!(std::fs::metadata(m.path(&format!("library/{name}")))
            .unwrap()
            .is_dir());

        // Client folders.
        let name = format!("own-{kind}");
        emu.set_faults(transient(kind, "POST", "/clients/1/folders"));
        std::fs::create_dir(m.path(&format!("clients/1/{name}")))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        emu.set_faults(Faults::default());
        let own = remote
            .client_folders(1)
            .into_iter()
            .filter(|f| f["name"] == name.as_str())
            .count();
        assert_eq!(own, 1, "{kind}: one client folder");
        assert!(std::fs::metadata(m.path(&format!("clients/1/{name}")))
            .unwrap()
            .is_dir());

        // Template folders.
        let name = format!("tpl-{kind}");
        emu.set_faults(transient(kind, "POST", "/backoffice/api/v2/folders"));
        std::fs::create_dir(m.path(&format!("folder-templates/{name}")))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        emu.set_faults(Faults::default());
        let shared = remote
            .shared_folders()
            .into_iter()
            .filter(|f| f["name"] == name.as_str())
            .count();
        assert_eq!(shared, 1, "{kind}: one template folder");
        assert!(
            std::fs::metadata(m.path(&format!("folder-templates/{name}")))
                .unwrap()
                .is_dir()
        );
    }
}

#[test]
fn mkdir_of_a_folder_another_client_made_is_eexist_and_stat_sees_it() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    std::fs::read_dir(m.path("library")).unwrap().count();
    // Made behind the mount's back, after its listing.
    let remote = Remote::new(&emu.url());
    remote.library_create_folder("elsewhere");
    let e = std::fs::create_dir(m.path("library/elsewhere")).unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert!(
        std::fs::metadata(m.path("library/elsewhere"))
            .unwrap()
            .is_dir(),
        "stat agrees at once"
    );
}

/// `cp -r` of `dirs` × `per_dir` files into the library while 10% of API
/// requests answer 503, 5% answer 429 (Retry-After: 1) and 2% of answers
/// are dropped after the server acted: cp must exit 0 with every file
/// there once, byte for byte.
fn cp_r_under_the_fault_mix(dirs: usize, per_dir: usize) {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let src = tempfile::tempdir().unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for d in 0..dirs {
        let dir = src.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..per_dir {
            let name = format!("d{d}-f{f}.bin");
            let bytes: Vec<u8> = (0..(500 + 37 * f))
                .map(|i| (i * 7 + d * 13 + f) as u8)
                .collect();
            std::fs::write(dir.join(&name), &bytes).unwrap();
            expected.insert(name, bytes);
        }
    }
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        error_rate: 0.10,
        rate_limit_rate: 0.05,
        retry_after_secs: Some(1),
        drop_rate: 0.02,
        ..Faults::default()
    });
    let (code, out, err) = sh(&format!(
        "cp -r {} {}",
        src.path().display(),
        m.path("library/copied").display()
    ));
    emu.set_faults(Faults::default());
    // A call that meets a fault on all of its attempts (about one in 7,000
    // at this mix) fails its file's close with EIO, truthfully; that file
    // is then uploaded by the background retry. Nothing else may fail.
    let closes_failed = err.lines().filter(|l| l.contains("Input/output error"));
    assert!(
        code == 0 || closes_failed.count() == err.lines().count(),
        "cp -r fails only where an upload ran out of attempts (EIO):\n{out}\n{err}"
    );
    if code != 0 {
        eventually(
            "the background retries",
            std::time::Duration::from_secs(90),
            || m.journal_records() == 0,
        );
    }
    let items = remote.library_items();
    for (name, bytes) in &expected {
        let live: Vec<_> = items
            .iter()
            .filter(|i| i["fileName"] == name.as_str() && i["deleted"] != true)
            .collect();
        assert_eq!(live.len(), 1, "{name} exactly once");
        assert_eq!(
            &remote.library_bytes(live[0]),
            bytes,
            "{name} byte for byte"
        );
    }
    for d in 0..dirs {
        let folders = items
            .iter()
            .filter(|i| i["fileName"] == format!("d{d}").as_str() && i["deleted"] != true)
            .count();
        assert_eq!(folders, 1, "folder d{d} exactly once");
    }
}

/// The full size: about a minute on two cores.
#[test]
fn cp_r_of_1000_files_in_100_folders_under_503_429_and_drops_arrives_whole_and_once() {
    cp_r_under_the_fault_mix(100, 10);
}

#[test]
fn a_file_not_yet_uploaded_renamed_onto_an_existing_one_never_deletes_it_first() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::write(m.path("library/keep.txt"), b"old bytes").unwrap();
    // Written, still open (nothing uploaded), then moved over keep.txt.
    let mut f = std::fs::File::create(m.path("library/draft.txt")).unwrap();
    std::io::Write::write_all(&mut f, b"new bytes").unwrap();
    std::fs::rename(m.path("library/draft.txt"), m.path("library/keep.txt")).unwrap();
    assert_eq!(
        remote.library_bytes_by_name("keep.txt").as_deref(),
        Some(&b"old bytes"[..]),
        "the target stays until the new bytes replace it"
    );
    // Uploads refused: close fails, the old bytes are still there.
    emu.set_faults(Faults {
        path_contains: Some("fileUploadS3".into()),
        error_rate: 1.0,
        ..Faults::default()
    });
    let closed = f.sync_all();
    assert!(closed.is_err(), "the upload's failure is reported");
    assert_eq!(
        remote.library_bytes_by_name("keep.txt").as_deref(),
        Some(&b"old bytes"[..])
    );
    // Uploads back: the background retry replaces it, one item.
    emu.set_faults(Faults::default());
    drop(f);
    let start = std::time::Instant::now();
    loop {
        let live: Vec<_> = remote
            .library_items()
            .into_iter()
            .filter(|i| i["fileName"] == "keep.txt" && i["deleted"] != true)
            .collect();
        if live.len() == 1 && remote.library_bytes(&live[0]) == b"new bytes" {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "replaced: {live:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(remote.library_item("draft.txt").is_none());
    assert_eq!(
        std::fs::read(m.path("library/keep.txt")).unwrap(),
        b"new bytes"
    );
}

#[test]
fn an_upload_refused_with_413_is_efbig_not_retried_shown_in_status_and_retried_on_sighup() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        max_upload_bytes: Some(100_000),
        ..Faults::default()
    });
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut f = std::fs::File::create(m.path("library/big.bin")).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG, "{e}");
    drop(f);
    let uploads = || emu.count(&["POST", "fileUploadS3"]);
    let tried = uploads();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(uploads(), tried, "no background retry of a refusal");
    let state = m.state_dir();
    let (code, status) = m.run_bin(&[
        std::ffi::OsStr::new("status"),
        std::ffi::OsStr::new("--state-dir"),
        state.as_os_str(),
    ]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("refused: 1") && status.contains("library/big.bin: file too large"),
        "{status}"
    );
    // The limit is raised; SIGHUP tries again.
    emu.set_faults(Faults::default());
    let pid = bridgefs::status::read(&state).unwrap().pid;
    // SAFETY: the test's own daemon.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let start = std::time::Instant::now();
    while remote.library_bytes_by_name("big.bin").as_deref() != Some(&data[..]) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "uploaded after SIGHUP"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_full_spool_disk_is_enospc_and_nothing_partial_is_uploaded() {
    let emu = Emulator::demo();
    // The spool on a 1 MiB tmpfs, unmounted at the end whatever happens.
    struct Tmpfs(std::path::PathBuf);
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            force_unmount(&self.0);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("cache");
    std::fs::create_dir(&small).unwrap();
    sh_ok(&format!(
        "mount -t tmpfs -o size=1m tmpfs {}",
        small.display()
    ));
    let _tmpfs = Tmpfs(small.clone());
    let m = Mount::start_with(
        &emu,
        MountOptions {
            extra_toml: String::new(),
            ..Default::default()
        },
    );
    // Point this mount's spool at the small disk: restart with it.
    let mut m = m;
    m.stop();
    let cfg = std::fs::read_to_string(&m.config).unwrap();
    let cfg = cfg.replace(
        &format!("dir = {:?}", m.files.path("cache")),
        &format!("dir = {small:?}"),
    );
    assert!(
        cfg.contains(&format!("{small:?}")),
        "config rewritten: {cfg}"
    );
    std::fs::write(&m.config, cfg).unwrap();
    m.spawn();
    let remote = Remote::new(&emu.url());
    std::fs::write(m.path("library/keep.bin"), b"old bytes").unwrap();
    let uploads = emu.count(&["POST", "fileUploadS3"]);
    let big = vec![7u8; 3 << 20];
    let e = std::fs::write(m.path("library/keep.bin"), &big).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    let e = std::fs::write(m.path("library/new.bin"), &big).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        emu.count(&["POST", "fileUploadS3"]),
        uploads,
        "nothing partial uploaded"
    );
    assert_eq!(
        remote.library_bytes_by_name("keep.bin").as_deref(),
        Some(&b"old bytes"[..])
    );
    assert!(remote.library_item("new.bin").is_none());
    assert_eq!(
        std::fs::read(m.path("library/keep.bin")).unwrap(),
        b"old bytes",
        "the old version again"
    );
    assert!(
        !m.path("library/new.bin").exists(),
        "a new file that never arrived is gone"
    );
    m.stop();
}

#[test]
fn a_control_character_name_is_refused_at_create_and_nothing_is_left_to_retry() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    for dir in ["library", "apps/handbook", "clients/1"] {
        let e = std::fs::write(m.path(&format!("{dir}/a\nb.txt")), b"x").unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{dir}");
        let e = std::fs::create_dir(m.path(&format!("{dir}/tab\there"))).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{dir}");
    }
    assert_eq!(emu.count(&["POST"]), 0, "nothing sent");
    let pending = m.journal_records();
    assert_eq!(pending, 0, "nothing journaled to retry");
}

#[test]
fn a_remote_name_holding_an_escape_character_survives_a_move_away_and_back() {
    let emu = Emulator::demo();
    let remote = Remote::new(&emu.url());
    remote.library_create_folder("／odd");
    remote.library_create_folder("a/b");
    let m = Mount::start(&emu);
    let names: Vec<String> = std::fs::read_dir(m.path("library"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&"⧵／odd".to_string()), "{names:?}");
    assert!(names.contains(&"a／b".to_string()), "{names:?}");
    std::fs::create_dir(m.path("library/away")).unwrap();
    std::fs::rename(m.path("library/⧵／odd"), m.path("library/away/⧵／odd")).unwrap();
    std::fs::rename(m.path("library/away/⧵／odd"), m.path("library/⧵／odd")).unwrap();
    assert!(remote.library_item("／odd").is_some(), "still its own name");
    assert!(remote.library_item("/odd").is_none());
}
