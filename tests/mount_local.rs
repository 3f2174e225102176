//! Real-mount tests of local-disk semantics: what the tools people use
//! expect of a filesystem (descriptors that outlive an unlink, editors'
//! saves, temp files, times and modes), checked against the remote's state
//! and the API calls the emulator counted.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use common::remote::Remote;
use common::*;

/// Upload-shaped calls (a new blob, item, revision or rename).
fn writes(emu: &Emulator) -> u64 {
    emu.count(&["POST "]) + emu.count(&["PUT "]) + emu.count(&["PATCH "])
}

/// Files left in the spool directory.
fn spooled(m: &Mount) -> usize {
    std::fs::read_dir(m.files.path("cache/spool"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// As on ext4: after `unlink`, open descriptors keep reading and writing
/// the file's bytes (nlink 0) until the last close; the remote item goes
/// at once and nothing is uploaded afterwards; the spool goes at the close.
#[test]
fn an_unlinked_open_file_keeps_its_bytes_until_the_last_close() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    for dir in ["apps/handbook", "library", "clients/1"] {
        let p = m.path(&format!("{dir}/open-unlinked.txt"));
        let reader_path = m.path(&format!("{dir}/read-unlinked.txt"));
        std::fs::write(&p, b"first bytes").unwrap();
        std::fs::write(&reader_path, b"only read").unwrap();
        // Dropped from the kernel's page cache: reads reach the daemon.
        sh_ok("echo 1 > /proc/sys/vm/drop_caches || true");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let mut reader = std::fs::File::open(&reader_path).unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        f.write_all(b" more").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::remove_file(&reader_path).unwrap();
        assert!(!p.exists(), "{dir}: the name is gone at once");
        emu.reset_counts();

        let mut back = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut back).unwrap();
        assert_eq!(back, "first bytes more", "{dir}: read after unlink");
        assert_eq!(f.metadata().unwrap().nlink(), 0, "{dir}: fstat's nlink");
        f.write_all(b" again").unwrap();
        f.sync_all().unwrap();
        let mut all = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut all).unwrap();
        assert_eq!(all, "first bytes more again", "{dir}: written after unlink");
        let mut read_only = String::new();
        reader.read_to_string(&mut read_only).unwrap();
        assert_eq!(read_only, "only read", "{dir}: a reader after unlink");
        drop(f);
        drop(reader);
        assert_eq!(writes(&emu), 0, "{dir}: nothing uploaded after the unlink");
        assert!(!p.exists());
    }
    assert!(remote.app_file("handbook", "open-unlinked.txt").is_none());
    assert!(remote.library_item("open-unlinked.txt").is_none());
    assert!(remote.client_file_named(1, "open-unlinked.txt").is_none());
    eventually(
        "spools deleted at the last close",
        std::time::Duration::from_secs(5),
        || spooled(&m) == 0,
    );
}
