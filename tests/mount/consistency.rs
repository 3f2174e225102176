//! Real-mount consistency with other clients changing the remote: one
//! version per read, replaced items found again, remote renames and
//! deletes shown within the TTL, conflicting overwrites keeping both.

use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use crate::common::remote::Remote;
use crate::common::*;

fn short_ttl() -> MountOptions {
    MountOptions {
        metadata_ttl: "2s",
        negative_ttl: "1s",
        ..Default::default()
    }
}

#[test]
fn a_read_during_a_remote_overwrite_returns_the_old_bytes_whole_never_a_mix() {
    let emu = Emulator::demo();
    let m = Mount::start_with(&emu, short_ttl());
    let remote = Remote::new(&emu.url());
    let old = pattern(32 << 20, 1);
    std::fs::write(m.path("apps/handbook/big.bin"), &old).unwrap();
    let id = remote.app_file("handbook", "big.bin").unwrap()["id"]
        .as_u64()
        .unwrap();

    let mut f = std::fs::File::open(m.path("apps/handbook/big.bin")).unwrap();
    let mut head = vec![0u8; 2 << 20];
    f.read_exact(&mut head).unwrap();
    // Another client overwrites it, shorter, while it is open.
    let new = pattern(20 << 20, 77);
    remote.app_overwrite(id, &new);
    std::thread::sleep(Duration::from_millis(2500)); // past the TTL: re-listed
    let _ = std::fs::read_dir(m.path("apps/handbook")).unwrap().count();
    assert_eq!(
        f.metadata().unwrap().len(),
        old.len() as u64,
        "fstat agrees with the reads"
    );
    let mut rest = Vec::new();
    match f.read_to_end(&mut rest) {
        Ok(_) => {
            head.extend_from_slice(&rest);
            assert!(
                head == old,
                "the old version whole ({} bytes read)",
                head.len()
            );
        }
        Err(e) => assert!(
            matches!(errno(&e), libc::EIO | libc::ESTALE),
            "or an error: {e}"
        ),
    }
    drop(f);
    // A fresh read is the new version, whole.
    assert_eq!(std::fs::read(m.path("apps/handbook/big.bin")).unwrap(), new);
}

#[test]
fn a_library_item_replaced_by_another_client_is_readable_under_its_name_at_once() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu); // a long TTL: the listing still has the old item
    let remote = Remote::new(&emu.url());
    std::fs::write(m.path("library/shared.txt"), b"version one").unwrap();
    // Known by name and size; its bytes not read yet.
    assert_eq!(
        std::fs::metadata(m.path("library/shared.txt"))
            .unwrap()
            .len(),
        11
    );
    let old = remote.library_item("shared.txt").expect("the item");
    let old_uuid = old["fileLibraryUUID"].as_str().unwrap().to_string();
    remote.library_replace("shared.txt", b"version two, longer");
    // This emulator still serves a deleted item's bytes; a server that does
    // not answers 404, as here.
    emu.set_faults(bridgefs_emulator::Faults {
        path_contains: Some(format!("/files/{old_uuid}/content")),
        fail_next: 10,
        error_status: Some(404),
        ..Default::default()
    });
    // The first read finds the old item gone: the new one's bytes whole,
    // or ESTALE when its size differs (the kernel knows the old size); the
    // next open reads the new item whole. Never a mix.
    match std::fs::read(m.path("library/shared.txt")) {
        Ok(b) => assert_eq!(b, b"version two, longer"),
        Err(e) => assert_eq!(errno(&e), libc::ESTALE, "{e}"),
    }
    assert_eq!(
        std::fs::read(m.path("library/shared.txt")).unwrap(),
        b"version two, longer"
    );
}

#[test]
fn remote_renames_and_deletes_show_within_the_ttl() {
    let emu = Emulator::demo();
    let m = Mount::start_with(&emu, short_ttl());
    let remote = Remote::new(&emu.url());
    std::fs::write(m.path("library/before.txt"), b"x").unwrap();
    std::fs::write(m.path("library/doomed.txt"), b"y").unwrap();
    assert!(m.path("library/before.txt").exists());
    assert!(m.path("library/doomed.txt").exists());
    remote.library_rename("before.txt", "after.txt");
    let doomed = remote.library_item("doomed.txt").unwrap();
    let uuid = doomed["fileLibraryUUID"].as_str().unwrap().to_string();
    remote.library_delete(&uuid);
    let changed = Instant::now();
    eventually("the remote changes to show", Duration::from_secs(6), || {
        !m.path("library/before.txt").exists()
            && m.path("library/after.txt").exists()
            && !m.path("library/doomed.txt").exists()
    });
    // metadata_ttl is 2 s; a kernel entry never outlives its listing.
    assert!(changed.elapsed() < Duration::from_secs(6));
    assert_eq!(std::fs::read(m.path("library/after.txt")).unwrap(), b"x");
}

/// A missing name is a negative dentry for as long as the daemon's own
/// negative entry (the kernel asks no more of it meanwhile); a re-listing
/// that brings the name, or SIGHUP, has the kernel forget it at once.
#[test]
fn a_missing_name_the_kernel_keeps_shows_once_the_remote_has_it() {
    let emu = Emulator::demo();
    let (m, port) = Mount::start_metered(
        &emu,
        MountOptions {
            metadata_ttl: "1s",
            negative_ttl: "60s",
            ..Default::default()
        },
    );
    let lookups = || sample(&scrape(port), "bridgefs_fuse_requests_total{op=\"lookup\"}");
    let (late, later) = (
        m.path("apps/handbook/late.txt"),
        m.path("apps/handbook/later.txt"),
    );
    assert!(!late.exists() && !later.exists());
    let asked = lookups();
    for _ in 0..10 {
        assert!(!late.exists());
    }
    assert_eq!(lookups(), asked, "the kernel kept the missing name");

    // A re-listing (after the 1 s TTL, brought by another name's lookup)
    // holds the name: the kernel forgets that it was missing.
    emu.emu()
        .files
        .lock()
        .add_file("handbook", "late.txt", &b"arrived"[..]);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!m.path("apps/handbook/other.txt").exists());
    eventually("the re-listed name to show", Duration::from_secs(2), || {
        std::fs::read(&late).is_ok_and(|b| b == b"arrived")
    });

    // SIGHUP: every missing name is forgotten.
    emu.emu()
        .files
        .lock()
        .add_file("handbook", "later.txt", &b"too"[..]);
    unsafe { libc::kill(m.pid().unwrap() as i32, libc::SIGHUP) };
    eventually(
        "the name to show after SIGHUP",
        Duration::from_secs(2),
        || later.exists(),
    );
}

#[test]
fn an_overwrite_of_a_file_someone_else_changed_keeps_both_versions() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    std::fs::write(m.path("apps/handbook/plan.txt"), b"base").unwrap();
    let id = remote.app_file("handbook", "plan.txt").unwrap()["id"]
        .as_u64()
        .unwrap();

    // Ours starts from "base"; theirs lands first.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("apps/handbook/plan.txt"))
        .unwrap();
    remote.app_overwrite(id, b"theirs");
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(b"ours!").unwrap();
    f.sync_all().unwrap();
    drop(f);

    assert_eq!(
        remote.app_bytes_by_name("handbook", "plan.txt").unwrap(),
        b"theirs",
        "theirs kept"
    );
    let files = remote.app_files("handbook");
    let copies: Vec<_> = files
        .iter()
        .filter(|f| {
            f["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("plan (conflict ")
        })
        .collect();
    assert_eq!(copies.len(), 1, "one conflict copy: {files:?}");
    assert_eq!(remote.app_bytes(copies[0]), b"ours!");
    let name = copies[0]["name"].as_str().unwrap().to_string();
    assert!(name.ends_with(".txt"), "{name}");
    // The mount shows both, and counts it.
    assert_eq!(
        std::fs::read(m.path("apps/handbook/plan.txt")).unwrap(),
        b"theirs"
    );
    assert_eq!(
        std::fs::read(m.path(&format!("apps/handbook/{name}"))).unwrap(),
        b"ours!"
    );
    assert!(m.log_text().contains("conflict copy"), "{}", m.log_text());
}

#[test]
fn an_overwrite_of_an_unchanged_file_is_a_plain_overwrite() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    for dir in ["apps/handbook", "library", "clients/2"] {
        std::fs::write(m.path(&format!("{dir}/same.txt")), b"one").unwrap();
        std::fs::write(m.path(&format!("{dir}/same.txt")), b"two").unwrap();
        let names: Vec<String> = std::fs::read_dir(m.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names.iter().any(|n| n.contains("conflict")),
            "{dir}: {names:?}"
        );
        assert_eq!(
            std::fs::read(m.path(&format!("{dir}/same.txt"))).unwrap(),
            b"two"
        );
    }
    assert_eq!(
        remote.app_bytes_by_name("handbook", "same.txt").unwrap(),
        b"two"
    );
    assert_eq!(remote.library_bytes_by_name("same.txt").unwrap(), b"two");
}
