//! Real-mount write tests: ordinary tools writing, moving and deleting
//! through the mount, checked against the bytes and objects on the emulator
//! and the API calls it counted; plus upload faults and crash recovery.

use std::io::Write;
use std::time::Duration;

use crate::common::remote::{md5_hex, Remote};
use crate::common::*;
use bridgefs_emulator::Faults;

fn posts(emu: &Emulator) -> u64 {
    emu.count(&["POST "])
}

#[test]
fn new_files_are_one_upload_each_and_readable_at_once() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let data = pattern(4096, 7);

    // Listing first, so only the upload is counted.
    for dir in ["apps/handbook", "library", "clients/1"] {
        std::fs::read_dir(m.path(dir)).unwrap().count();
    }
    emu.reset_counts();
    std::fs::write(m.path("apps/handbook/new-4k.bin"), &data).unwrap();
    assert_eq!(
        posts(&emu),
        2,
        "Files app: blob + create: {:?}",
        emu.counts()
    );
    assert_eq!(
        remote.app_bytes_by_name("handbook", "new-4k.bin").unwrap(),
        data
    );

    emu.reset_counts();
    std::fs::write(m.path("library/new-4k.bin"), &data).unwrap();
    assert_eq!(posts(&emu), 1, "library: one upload: {:?}", emu.counts());
    assert_eq!(remote.library_bytes_by_name("new-4k.bin").unwrap(), data);

    emu.reset_counts();
    std::fs::write(m.path("clients/1/new-4k.bin"), &data).unwrap();
    assert_eq!(
        posts(&emu),
        1,
        "back office: one upload: {:?}",
        emu.counts()
    );
    let f = remote
        .client_file_named(1, "new-4k.bin")
        .expect("client file created");
    assert_eq!(remote.client_bytes(1, f["id"].as_u64().unwrap()), data);

    // Read-your-writes: visible and readable at once, sizes true.
    for p in [
        "apps/handbook/new-4k.bin",
        "library/new-4k.bin",
        "clients/1/new-4k.bin",
    ] {
        assert_eq!(std::fs::read(m.path(p)).unwrap(), data, "{p}");
        assert_eq!(std::fs::metadata(m.path(p)).unwrap().len(), 4096, "{p}");
        let ls = sh_ok(&format!("ls {}", m.path(p).parent().unwrap().display()));
        assert!(ls.contains("new-4k.bin"), "{p}: {ls}");
    }
    // An empty new file is created too.
    sh_ok(&format!("touch {}", m.path("library/empty.txt").display()));
    assert_eq!(remote.library_bytes_by_name("empty.txt").unwrap(), b"");
}

#[test]
fn overwrite_append_truncate_keep_name_and_make_revisions() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    for (dir, check) in [("apps/handbook", 0), ("library", 1), ("clients/2", 2)] {
        let p = m.path(&format!("{dir}/edit.txt"));
        std::fs::write(&p, b"first\n").unwrap();
        // Overwrite (O_TRUNC), append (>>), truncate.
        std::fs::write(&p, b"second\n").unwrap();
        sh_ok(&format!("echo third >> {}", p.display()));
        assert_eq!(std::fs::read(&p).unwrap(), b"second\nthird\n", "{dir}");
        sh_ok(&format!("truncate -s 3 {}", p.display()));
        assert_eq!(std::fs::read(&p).unwrap(), b"sec", "{dir}");
        let remote_bytes = match check {
            0 => remote.app_bytes_by_name("handbook", "edit.txt"),
            1 => remote.library_bytes_by_name("edit.txt"),
            _ => remote
                .client_file_named(2, "edit.txt")
                .map(|f| remote.client_bytes(2, f["id"].as_u64().unwrap())),
        };
        assert_eq!(remote_bytes.as_deref(), Some(&b"sec"[..]), "{dir}");
        let same_name = match check {
            0 => remote
                .app_files("handbook")
                .iter()
                .filter(|f| f["name"] == "edit.txt")
                .count(),
            1 => remote
                .library_items()
                .iter()
                .filter(|f| f["fileName"] == "edit.txt" && f["deleted"] != true)
                .count(),
            _ => remote
                .client_files(2)
                .iter()
                .filter(|f| f["name"] == "edit.txt")
                .count(),
        };
        assert_eq!(
            same_name, 1,
            "{dir}: the old file was replaced, not duplicated"
        );
    }
    // A Files-app overwrite is a new revision of the same file.
    let f = remote.app_file("handbook", "edit.txt").unwrap();
    let versions = remote.file_versions(f["id"].as_u64().unwrap());
    assert!(versions.len() >= 4, "revisions: {}", versions.len());
}

#[test]
fn tools_copy_move_and_delete_trees() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let src = m.files.path("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("top.txt"), b"top\n").unwrap();
    std::fs::write(src.join("a/one.bin"), pattern(100_000, 1)).unwrap();
    std::fs::write(src.join("a/b/two.txt"), b"two\n").unwrap();

    // cp -r, rsync -a, tar x into the library; mkdir -p.
    sh_ok(&format!(
        "cp -r {} {}",
        src.display(),
        m.path("library/copied").display()
    ));
    sh_ok(&format!(
        "rsync -a {}/ {}",
        src.display(),
        m.path("library/synced").display()
    ));
    sh_ok(&format!(
        "tar -C {} -cf {} .",
        src.display(),
        m.files.path("t.tar").display()
    ));
    sh_ok(&format!(
        "mkdir -p {} && tar -C {} -xf {}",
        m.path("library/untarred/x/y").display(),
        m.path("library/untarred").display(),
        m.files.path("t.tar").display()
    ));
    for d in ["copied", "synced", "untarred"] {
        // `-x x`: untarred also holds the x/y made by mkdir -p.
        sh_ok(&format!(
            "diff -r -x x {} {}",
            src.display(),
            m.path(&format!("library/{d}")).display()
        ));
    }
    assert_eq!(
        remote.library_bytes_by_name("one.bin").map(|b| md5_hex(&b)),
        Some(md5_hex(&pattern(100_000, 1)))
    );
    let folders = remote
        .library_items()
        .into_iter()
        .filter(|i| {
            i["fileLibraryType"] == "FOLDER" && (i["fileName"] == "x" || i["fileName"] == "y")
        })
        .count();
    assert_eq!(folders, 2, "mkdir -p made both folders remotely");

    // mv within a directory, across directories, across backends (EXDEV → copy).
    sh_ok(&format!(
        "mv {} {}",
        m.path("library/copied/top.txt").display(),
        m.path("library/copied/renamed.txt").display()
    ));
    sh_ok(&format!(
        "mv {} {}",
        m.path("library/copied/renamed.txt").display(),
        m.path("library/synced/a/").display()
    ));
    assert_eq!(
        std::fs::read(m.path("library/synced/a/renamed.txt")).unwrap(),
        b"top\n"
    );
    assert!(remote.library_item("renamed.txt").is_some());
    assert!(
        remote.library_item("top.txt").is_some(),
        "the other copies stay"
    );
    sh_ok(&format!(
        "mv {} {}",
        m.path("library/synced/a/renamed.txt").display(),
        m.path("apps/handbook/").display()
    ));
    assert_eq!(
        remote.app_bytes_by_name("handbook", "renamed.txt").unwrap(),
        b"top\n"
    );
    assert!(
        remote.library_item("renamed.txt").is_none(),
        "moved out of the library"
    );
    // Directory rename in the library (one call).
    sh_ok(&format!(
        "mv {} {}",
        m.path("library/untarred").display(),
        m.path("library/untarred2").display()
    ));
    assert!(m.path("library/untarred2/a/b/two.txt").exists());

    // The same tools on a client tree and (flat) on an app.
    sh_ok(&format!(
        "cp -r {} {}",
        src.display(),
        m.path("clients/2/copied").display()
    ));
    sh_ok(&format!(
        "diff -r {} {}",
        src.display(),
        m.path("clients/2/copied").display()
    ));
    let two = remote
        .client_file_named(2, "two.txt")
        .expect("nested client file uploaded");
    assert_eq!(
        remote.client_bytes(2, two["id"].as_u64().unwrap()),
        b"two\n"
    );
    sh_ok(&format!("rm -r {}", m.path("clients/2/copied").display()));
    assert!(remote.client_file_named(2, "two.txt").is_none());
    assert!(!remote
        .client_folders(2)
        .iter()
        .any(|f| f["name"] == "copied" || f["name"] == "a"));
    sh_ok(&format!(
        "rsync -a {}/top.txt {}/a/one.bin {}/",
        src.display(),
        src.display(),
        m.path("apps/contracts").display()
    ));
    assert_eq!(
        remote
            .app_bytes_by_name("contracts", "one.bin")
            .map(|b| md5_hex(&b)),
        Some(md5_hex(&pattern(100_000, 1)))
    );

    // rm -r removes everything remotely.
    sh_ok(&format!("rm -r {}", m.path("library/copied").display()));
    assert!(!m.path("library/copied").exists());
    assert!(remote
        .library_items()
        .iter()
        .all(|i| i["fileName"] != "copied" || i["deleted"] == true));
}

#[test]
fn editors_atomic_save_and_sed_in_place() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    for dir in ["apps/handbook", "library", "clients/1"] {
        let p = m.path(&format!("{dir}/notes.txt"));
        std::fs::write(&p, b"hello world\n").unwrap();
        sh_ok(&format!("sed -i 's/world/there/' {}", p.display()));
        assert_eq!(std::fs::read(&p).unwrap(), b"hello there\n", "{dir}");
        // Write x.tmp, rename onto x (the atomic-save pattern), file still open.
        let tmp = m.path(&format!("{dir}/notes.txt.tmp"));
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(b"saved\n").unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"saved\n", "{dir}");
        assert!(!tmp.exists());
    }
    assert_eq!(
        remote.app_bytes_by_name("handbook", "notes.txt").unwrap(),
        b"saved\n"
    );
    assert_eq!(
        remote.library_bytes_by_name("notes.txt").unwrap(),
        b"saved\n"
    );
    let f = remote.client_file_named(1, "notes.txt").unwrap();
    assert_eq!(
        remote.client_bytes(1, f["id"].as_u64().unwrap()),
        b"saved\n"
    );
    assert_eq!(
        remote
            .app_files("handbook")
            .iter()
            .filter(|f| f["name"] == "notes.txt")
            .count(),
        1
    );
    assert!(remote.app_file("handbook", "notes.txt.tmp").is_none());
}

#[test]
fn git_works_inside_a_library_folder() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let repo = m.path("library/repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("README"), b"hello\n").unwrap();
    let git = format!(
        "cd {} && git -c init.defaultBranch=main init -q && git add . && git -c user.name=t -c user.email=t@e commit -qm first && git log --oneline",
        repo.display()
    );
    let log = sh_ok(&git);
    assert!(log.contains("first"), "{log}");
    assert_eq!(
        sh_ok(&format!("cd {} && git status --porcelain", repo.display())),
        ""
    );
}

#[test]
fn errors_are_truthful() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    // Non-empty rmdir, mkdir where the API cannot, files where none may be.
    std::fs::create_dir(m.path("library/full")).unwrap();
    std::fs::write(m.path("library/full/f"), b"x").unwrap();
    assert_eq!(
        errno(&std::fs::remove_dir(m.path("library/full")).unwrap_err()),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno(&std::fs::create_dir(m.path("apps/handbook/sub")).unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&std::fs::create_dir(m.path("newtop")).unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&std::fs::write(m.path("folder-templates/f.txt"), b"x").unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&std::fs::write(m.path("apps/f.txt"), b"x").unwrap_err()),
        libc::EPERM
    );
    let e = std::fs::write(m.path("library/.trash/f.txt"), b"x").unwrap_err();
    assert!([libc::EROFS, libc::EPERM].contains(&errno(&e)), "{e}");
    // Bad names.
    assert_eq!(
        errno(&std::fs::write(m.path(&format!("library/{}", "n".repeat(256))), b"x").unwrap_err()),
        libc::ENAMETOOLONG
    );
    // Reserved names cannot be created.
    assert_eq!(
        errno(&std::fs::create_dir(m.path("library/.trash")).unwrap_err()),
        libc::EEXIST
    );
    // chmod/chown/utimens succeed without effect.
    sh_ok(&format!(
        "chmod 600 {p} && touch -d 2001-01-01 {p}",
        p = m.path("library/full/f").display()
    ));
    // A move across apps is EXDEV underneath; mv copes.
    std::fs::write(m.path("apps/handbook/moving.txt"), b"m").unwrap();
    let e = std::fs::rename(
        m.path("apps/handbook/moving.txt"),
        m.path("apps/contracts/moving.txt"),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EXDEV);
    sh_ok(&format!(
        "mv {} {}",
        m.path("apps/handbook/moving.txt").display(),
        m.path("apps/contracts/").display()
    ));
    assert_eq!(
        std::fs::read(m.path("apps/contracts/moving.txt")).unwrap(),
        b"m"
    );
}

#[test]
fn a_failed_upload_is_retried_and_arrives_once() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("library")).unwrap().count();

    // One 503 on the upload: close still succeeds (re-read, then retried).
    emu.set_faults(Faults {
        fail_next: 1,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    std::fs::write(m.path("library/flaky.bin"), pattern(5000, 3)).unwrap();
    assert_eq!(
        remote
            .library_items()
            .iter()
            .filter(|i| i["fileName"] == "flaky.bin")
            .count(),
        1
    );
    assert_eq!(
        remote.library_bytes_by_name("flaky.bin").unwrap(),
        pattern(5000, 3)
    );

    // Every upload refused: close reports EIO, the bytes stay readable from
    // the spool, and the file arrives once the server accepts again.
    emu.set_faults(Faults {
        error_rate: 1.0,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let p = m.path("library/refused.bin");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(&pattern(7000, 9)).unwrap();
    let err = f.sync_all().unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "fsync reports the failed upload");
    drop(f);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        pattern(7000, 9),
        "readable from the spool"
    );
    let pending = m.journal_records();
    assert!(pending >= 1, "journaled");
    assert!(remote.library_item("refused.bin").is_none());
    emu.set_faults(Faults::default());
    eventually("the background retry", Duration::from_secs(30), || {
        remote.library_item("refused.bin").is_some()
    });
    assert_eq!(
        remote.library_bytes_by_name("refused.bin").unwrap(),
        pattern(7000, 9)
    );
    assert_eq!(
        remote
            .library_items()
            .iter()
            .filter(|i| i["fileName"] == "refused.bin")
            .count(),
        1
    );
    eventually("the journal to empty", Duration::from_secs(10), || {
        m.journal_records() == 0
    });
}

#[test]
fn kill_9_before_the_upload_lands_then_restart_uploads_once() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::read_dir(m.path("apps/handbook")).unwrap().count();
    // Uploads hang for a while: close blocks in the upload.
    emu.set_faults(Faults {
        latency_ms: 4000,
        path_contains: Some("/api/blobs".into()),
        ..Default::default()
    });
    let p = m.path("apps/handbook/crash.bin");
    let data = pattern(20_000, 5);
    let writer = {
        let (p, data) = (p.clone(), data.clone());
        std::thread::spawn(move || std::fs::write(p, data))
    };
    eventually("the journal record", Duration::from_secs(10), || {
        m.journal_records() > 0
    });
    m.kill9();
    let _ = writer.join();
    emu.set_faults(Faults::default());
    std::thread::sleep(Duration::from_millis(4500));
    m.spawn();
    // Uploaded before serving: visible at once.
    assert_eq!(
        remote
            .app_files("handbook")
            .iter()
            .filter(|f| f["name"] == "crash.bin")
            .count(),
        1
    );
    assert_eq!(
        remote.app_bytes_by_name("handbook", "crash.bin").unwrap(),
        data
    );
    assert_eq!(
        std::fs::read(m.path("apps/handbook/crash.bin")).unwrap(),
        data
    );
    assert!(
        m.log_text().contains("recovered pending upload"),
        "{}",
        m.log_text()
    );
    assert_eq!(m.journal_records(), 0);
}

#[test]
fn sigterm_waits_for_pending_uploads() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let p = m.path("library/at-exit.txt");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(b"written, never closed\n").unwrap();
    // The daemon is stopped with the file still open.
    let status = {
        let waiter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(f);
        });
        let s = m.stop();
        let _ = waiter.join();
        s
    };
    assert!(status.is_some());
    assert_eq!(
        remote.library_bytes_by_name("at-exit.txt").as_deref(),
        Some(&b"written, never closed\n"[..])
    );
}

#[test]
fn inodes_are_stable_sessions_refresh_and_open_files_read_their_writes() {
    use std::os::unix::fs::MetadataExt;
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    // Same inode across a rename and across a re-listing (SIGHUP drops caches).
    std::fs::write(m.path("library/stable.txt"), b"s").unwrap();
    let ino = std::fs::metadata(m.path("library/stable.txt"))
        .unwrap()
        .ino();
    std::fs::rename(
        m.path("library/stable.txt"),
        m.path("library/Policies/stable2.txt"),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(m.path("library/Policies/stable2.txt"))
            .unwrap()
            .ino(),
        ino
    );
    let pid = sh_ok(&format!(
        "pgrep -f 'bridgefs mount --config {}'",
        m.config.display()
    ));
    sh_ok(&format!("kill -HUP {}", pid.trim()));
    std::thread::sleep(Duration::from_millis(200));
    sh_ok(&format!(
        "ls -l {} >/dev/null",
        m.path("library/Policies").display()
    ));
    assert_eq!(
        std::fs::metadata(m.path("library/Policies/stable2.txt"))
            .unwrap()
            .ino(),
        ino
    );

    // An expired library session is renewed transparently (one refresh).
    emu.emu().library.lock().expire_sessions();
    emu.reset_counts();
    let bytes = std::fs::read(m.path("library/price-list.xlsx")).unwrap();
    assert!(!bytes.is_empty());
    assert_eq!(emu.count(&["/sessionToken"]), 1, "{:?}", emu.counts());

    // A file open for writing: other readers see the bytes written so far,
    // and the directory shows it at once.
    let p = m.path("apps/handbook/in-progress.txt");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(b"partial").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"partial");
    assert!(sh_ok(&format!("ls {}", m.path("apps/handbook").display())).contains("in-progress.txt"));
    f.write_all(b" and more").unwrap();
    drop(f);
    let remote = Remote::new(&emu.url());
    assert_eq!(
        remote
            .app_bytes_by_name("handbook", "in-progress.txt")
            .unwrap(),
        b"partial and more"
    );
}

#[test]
fn spool_and_journal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    for dir in [m.files.path("cache/spool"), m.state_dir().join("pending")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn close_from_another_thread_reports_the_upload_error() {
    use std::os::fd::IntoRawFd;
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    std::fs::read_dir(m.path("library")).unwrap().count();
    emu.set_faults(Faults {
        error_rate: 1.0,
        path_contains: Some("fileUploadS3".into()),
        ..Default::default()
    });
    let mut f = std::fs::File::create(m.path("library/threaded.txt")).unwrap();
    f.write_all(b"from a worker thread").unwrap();
    let fd = f.into_raw_fd();
    let (rc, err) = std::thread::spawn(move || {
        // SAFETY: the fd is ours; close reports the flush's error.
        let rc = unsafe { libc::close(fd) };
        (rc, std::io::Error::last_os_error().raw_os_error())
    })
    .join()
    .unwrap();
    assert_eq!(
        (rc, err),
        (-1, Some(libc::EIO)),
        "close in another thread of the writer reports EIO"
    );
    emu.set_faults(Faults::default());
}

/// Closes held up by the remote wait on tokio, not on the FUSE threads
/// (more of them than there are threads): a listing answered from memory
/// comes back before any of those closes has.
#[test]
fn closes_held_by_the_remote_never_hold_up_cached_requests() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let emu = Emulator::demo();
    let (m, port) = Mount::start_metered(&emu, MountOptions::default());
    let remote = Remote::new(&emu.url());
    let listed = std::fs::read_dir(m.path("library")).unwrap().count();
    std::fs::read_dir(m.path("apps/handbook")).unwrap().count();
    emu.set_faults(Faults {
        latency_ms: 3000,
        path_contains: Some("/api/blobs".into()),
        ..Default::default()
    });
    let closed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let (p, closed) = (
                m.path(&format!("apps/handbook/held-{i}.txt")),
                closed.clone(),
            );
            std::thread::spawn(move || {
                let written = std::fs::write(p, format!("held {i}"));
                closed.fetch_add(1, Ordering::SeqCst);
                written
            })
        })
        .collect();
    eventually("six uploads in flight", Duration::from_secs(10), || {
        sample(&scrape(port), "bridgefs_uploads_in_flight") >= 6.0
    });
    // OPENDIR and READDIR of another directory, answered from memory.
    assert_eq!(
        std::fs::read_dir(m.path("library")).unwrap().count(),
        listed
    );
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "the listing waited for a held upload"
    );
    for w in writers {
        w.join().unwrap().unwrap();
    }
    emu.set_faults(Faults::default());
    for i in 0..6 {
        assert_eq!(
            remote.app_bytes_by_name("handbook", &format!("held-{i}.txt")),
            Some(format!("held {i}").into_bytes())
        );
    }
}

/// The POSIX corners a script meets, each with the errno a local disk gives.
#[test]
fn posix_corners_answer_their_errnos() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let long = "n".repeat(256);
    let _ = std::fs::metadata(m.path("library/x")); // listings warm: the fast path answers too
    for dir in ["apps/handbook", "library", "clients/1"] {
        let err = std::fs::metadata(m.path(&format!("{dir}/{long}"))).unwrap_err();
        assert_eq!(
            errno(&err),
            libc::ENAMETOOLONG,
            "stat of a 256-byte name in {dir}"
        );
    }
    let p = m.path("library/corner.txt");
    std::fs::write(&p, b"keep").unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let err = f.set_len(999_999_999_999_999).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::EFBIG,
        "truncate beyond the spool's limit"
    );
    drop(f);
    assert_eq!(std::fs::read(&p).unwrap(), b"keep");
    assert_eq!(
        remote.library_bytes_by_name("corner.txt").as_deref(),
        Some(&b"keep"[..])
    );

    let fifo = std::ffi::CString::new(m.path("library/fifo").into_os_string().into_encoded_bytes())
        .unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM),
        "mkfifo"
    );
    let err = std::os::unix::fs::symlink("corner.txt", m.path("library/link")).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM, "symlink");
    let err = std::fs::hard_link(&p, m.path("library/hard")).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM, "hard link");

    std::fs::create_dir_all(m.path("library/outer/inner")).unwrap();
    let err =
        std::fs::rename(m.path("library/outer"), m.path("library/outer/inner/moved")).unwrap_err();
    assert_eq!(
        errno(&err),
        libc::EINVAL,
        "a directory into its own subtree"
    );
    assert!(m.path("library/outer/inner").is_dir());

    // A socket is a file type the APIs cannot hold either.
    let err = std::os::unix::net::UnixListener::bind(m.path("library/sock")).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM, "bind of a unix socket");
    // A write beyond what the spool can hold: EFBIG, the file unchanged.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    let err = f.write_at(b"x", 1 << 60).unwrap_err();
    assert_eq!(errno(&err), libc::EFBIG, "pwrite at 1 EiB");
    drop(f);
    assert_eq!(std::fs::read(&p).unwrap(), b"keep");
}
