//! Real-mount fault suite: the emulator's deterministic fault switches
//! (`pass_first`, `fail_next`) against sequences of API calls, checked on
//! the remote's state: no failure may leave neither the old nor the new
//! bytes.

mod common;

use bridgefs::emulator::Faults;
use common::remote::Remote;
use common::*;

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
    // The first update (the target moved aside) passes, the rename fails.
    let e = failing_mv(
        &emu,
        &m,
        "library",
        fail_once("POST", "/library/live/files", 1),
    );
    assert_eq!(e, libc::EINVAL, "the 400 is reported");
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
fn library_rename_onto_existing_fails_cleanly_when_the_target_cannot_move_aside() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    two_files(&m, "library");
    failing_mv(
        &emu,
        &m,
        "library",
        fail_once("POST", "/library/live/files", 0),
    );
    assert_eq!(
        remote.library_bytes_by_name("keep.txt").as_deref(),
        Some(&b"old bytes"[..])
    );
    assert_eq!(
        remote.library_bytes_by_name("tmp.txt").as_deref(),
        Some(&b"new bytes"[..])
    );
    assert_eq!(
        std::fs::read(m.path("library/keep.txt")).unwrap(),
        b"old bytes"
    );
}

#[test]
fn app_rename_onto_existing_keeps_the_target_when_the_rename_fails() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    two_files(&m, "apps/handbook");
    failing_mv(
        &emu,
        &m,
        "apps/handbook",
        fail_once("PATCH", "/files/api/files/", 0),
    );
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
    failing_mv(
        &emu,
        &m,
        "clients/1",
        fail_once("PATCH", "/clients/1/files/", 0),
    );
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
