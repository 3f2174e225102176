//! The filesystem core driven in process, without FUSE or HTTP, over an
//! in-memory backend: what the fast path answers from memory (and that it
//! then makes no remote call), and the write-back's outcomes on the
//! "remote". These run in seconds; the real-mount suites stay the proof
//! that the whole product works.

mod memory;

use std::sync::Arc;
use std::time::Duration;

use bridgefs::fs::core::{BridgeFs, FsOptions, Mounted};
use bridgefs::fs::namespace::inode::{Ino, ROOT};
use bridgefs::fs::namespace::local_only::LocalOnly;
use bridgefs::fs::writeback::journal::Journal;
use bridgefs::fs::{FlushStep, FsError};
use memory::{MemoryBackend, ROOT_KEY};

const PID: u32 = 4242;

struct Core {
    fs: Arc<BridgeFs>,
    remote: Arc<MemoryBackend>,
    top: Ino,
    _dirs: tempfile::TempDir,
}

async fn core_with(files: &[(&str, &[u8])]) -> Core {
    let remote = Arc::new(MemoryBackend::default());
    for (name, bytes) in files {
        remote.put_file(ROOT_KEY, name, bytes);
    }
    let dirs = tempfile::tempdir().expect("temp dir");
    let opts = FsOptions {
        metadata_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        max_entries: 1000,
        read_cache_bytes: 16 << 20,
        cache_dir: dirs.path().join("cache"),
        state_dir: dirs.path().join("state"),
        local_only: LocalOnly::defaults(),
    };
    let mounted = Mounted {
        name: "docs".into(),
        api: "memory",
        backend: remote.clone(),
    };
    let fs = BridgeFs::new(vec![mounted], opts).expect("core starts");
    let top = fs.lookup(ROOT, "docs").await.expect("top level").ino;
    Core {
        fs,
        remote,
        top,
        _dirs: dirs,
    }
}

/// A core over `n` one-byte files named `{prefix}00`, `{prefix}01`…
async fn core_with_many(prefix: &str, n: usize) -> (Core, Vec<(String, Vec<u8>)>) {
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("{prefix}{i:02}"), vec![1]))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    (core_with(&refs).await, files)
}

/// Names a directory handle hands out, `.` and `..` included.
fn names_of(fs: &BridgeFs, fh: u64) -> Vec<String> {
    let mut names = Vec::new();
    fs.readdir(fh, 0, false, |item, _| {
        names.push(item.name.clone());
        false
    })
    .expect("readdir");
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_path_answers_from_a_fresh_listing_without_remote_calls() {
    let c = core_with(&[("a.txt", b"alpha"), ("b.txt", b"beta")]).await;
    let fh = c.fs.opendir(c.top).await.expect("opendir");
    assert_eq!(names_of(&c.fs, fh), [".", "..", "a.txt", "b.txt"]);
    assert_eq!(c.remote.calls("list"), 1);

    let a =
        c.fs.lookup_cached(c.top, "a.txt")
            .expect("cached")
            .expect("found");
    assert_eq!(a.size, 5);
    let attr =
        c.fs.getattr_cached(a.ino, None)
            .expect("cached")
            .expect("attr");
    assert_eq!(attr.size, 5);
    assert!(c.fs.opendir_cached(c.top).is_some(), "fresh listing");
    // A name the listing lacks: only the remote can tell, once; then the
    // negative entry answers.
    assert!(c.fs.lookup_cached(c.top, "zzz").is_none());
    assert!(matches!(
        c.fs.lookup(c.top, "zzz").await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        c.fs.lookup_cached(c.top, "zzz"),
        Some(Err(FsError::NotFound))
    ));
    assert_eq!(c.remote.calls("list"), 1, "no listing beyond the first");
    assert_eq!(c.remote.calls("stat"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_xattr_namespaces_are_answered_without_the_backend() {
    let c = core_with(&[]).await;
    let answer = |name| c.fs.getxattr_cached(name);
    assert!(matches!(
        answer("security.selinux"),
        Some(Err(FsError::NotSupported))
    ));
    assert!(matches!(
        answer("system.posix_acl_access"),
        Some(Err(FsError::NotSupported))
    ));
    assert!(matches!(answer("user.other"), Some(Err(FsError::NoData))));
    assert!(
        answer("user.bridgefs.id").is_none(),
        "the backend's own names go the long way"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_read_is_served_from_cached_blocks() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let c = core_with(&[("big.bin", &body)]).await;
    let ino = c.fs.lookup(c.top, "big.bin").await.unwrap().ino;
    let first =
        c.fs.open_cached(ino, libc::O_RDONLY, PID)
            .expect("no remote call")
            .unwrap();
    let data = c.fs.read(ino, first, 0, 200_000).await.unwrap();
    assert_eq!(&data[..], &body[..]);
    let reads = c.remote.calls("read");
    assert!(
        c.fs.flush_cached(ino, first, PID).is_some(),
        "a reader's close uploads nothing"
    );
    assert!(c.fs.release_cached(ino, first));

    let second = c.fs.open_cached(ino, libc::O_RDONLY, PID).unwrap().unwrap();
    let again =
        c.fs.read_cached(ino, second, 0, 200_000)
            .expect("from memory")
            .unwrap();
    assert_eq!(&again[..], &body[..]);
    let tail =
        c.fs.read_cached(ino, second, 150_000, 100_000)
            .expect("from memory")
            .unwrap();
    assert_eq!(&tail[..], &body[150_000..]);
    assert_eq!(
        c.remote.calls("read"),
        reads,
        "no remote read for cached blocks"
    );
}

/// A stream holds only its read-ahead in the daemon: each whole block it
/// has read whole is now in the kernel's page cache and leaves the block
/// cache; the short tail block stays, and so does a block read in part.
#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_read_lets_go_of_the_whole_blocks_it_has_read() {
    const MIB: u64 = 1 << 20;
    let size = 3 * MIB + 100;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let c = core_with(&[("stream.bin", &body)]).await;
    let ino = c.fs.lookup(c.top, "stream.bin").await.unwrap().ino;
    let fh = c.fs.open_cached(ino, libc::O_RDONLY, PID).unwrap().unwrap();
    let mut read = Vec::new();
    for at in (0..size).step_by(MIB as usize) {
        read.extend_from_slice(&c.fs.read(ino, fh, at, MIB as u32).await.unwrap());
    }
    assert!(read == body, "the stream reads the file's bytes");
    let stats = c.fs.block_cache_stats();
    assert_eq!((stats.blocks, stats.bytes), (1, 100), "only the tail stays");
    assert_eq!(stats.misses, 4, "each block fetched once");

    let tail = c.fs.read_cached(ino, fh, 3 * MIB, 100);
    let tail = tail.expect("the tail is in memory").unwrap();
    assert_eq!(&tail[..], &body[3 * MIB as usize..]);
    assert!(c.fs.release_cached(ino, fh));

    let fh = c.fs.open_cached(ino, libc::O_RDONLY, PID).unwrap().unwrap();
    assert!(
        c.fs.read_cached(ino, fh, 0, 4096).is_none(),
        "a let-go block is not in memory"
    );
    let part = c.fs.read(ino, fh, 0, 4096).await.unwrap();
    assert_eq!(&part[..], &body[..4096]);
    assert!(c.fs.release_cached(ino, fh));
    // A first read elsewhere than at 0 is a random one: memory or nothing.
    let fh = c.fs.open_cached(ino, libc::O_RDONLY, PID).unwrap().unwrap();
    let rest = c.fs.read_cached(ino, fh, 4096, 4096);
    let rest = rest.expect("a block read in part stays").unwrap();
    assert_eq!(&rest[..], &body[4096..8192]);
    assert!(c.fs.release_cached(ino, fh));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_written_file_is_uploaded_by_its_close_and_not_by_the_fast_path() {
    let c = core_with(&[]).await;
    let (attr, fh) =
        c.fs.create(c.top, "new.txt", libc::O_WRONLY, PID)
            .await
            .unwrap();
    assert_eq!(c.fs.write(attr.ino, fh, 0, b"hello").unwrap(), 5);
    assert!(
        c.fs.flush_cached(attr.ino, fh, PID).is_none(),
        "must upload"
    );
    assert_eq!(c.remote.calls("upload"), 0, "nothing before close");
    c.fs.flush(attr.ino, fh, PID).await.expect("uploaded");
    assert_eq!(c.remote.find(ROOT_KEY, "new.txt").unwrap().bytes, b"hello");
    assert!(c.fs.release_cached(attr.ino, fh), "nothing left to upload");
    assert_eq!(c.remote.calls("upload"), 1);
}

/// `cp -r` makes a folder, then looks up each name it is about to create
/// there: a folder just made is known empty, and none of that asks the
/// remote.
#[tokio::test(flavor = "multi_thread")]
async fn a_folder_just_made_is_known_empty_without_a_listing() {
    let c = core_with(&[]).await;
    let dir = c.fs.mkdir(c.top, "new").await.expect("mkdir");
    let lists = c.remote.calls("list");
    assert!(matches!(
        c.fs.lookup(dir.ino, "a.txt").await,
        Err(FsError::NotFound)
    ));
    let fh = c.fs.opendir(dir.ino).await.expect("opendir");
    assert_eq!(names_of(&c.fs, fh), [".", ".."]);
    let (attr, _) =
        c.fs.create_cached(dir.ino, "a.txt", libc::O_WRONLY, PID)
            .expect("created on the calling thread")
            .unwrap();
    assert_eq!(attr.size, 0);
    assert_eq!(
        c.remote.calls("list"),
        lists,
        "no listing of the new folder"
    );
}

/// A close on the FUSE thread: the journal record is on disk before tokio
/// sees the upload; a small file's bytes go up from memory (read once, for
/// the journal), a large one's from its spool file.
#[tokio::test(flavor = "multi_thread")]
async fn a_close_journals_on_the_calling_thread_and_sends_small_files_from_memory() {
    let c = core_with(&[]).await;
    let pending = || {
        Journal::open(&c._dirs.path().join("state"))
            .unwrap()
            .pending()
    };
    let big = vec![7u8; 100 << 10];
    // A small file: one fdatasync of its slot; a large one: its spool
    // file's, its record file's and the journal directory's.
    for (name, bytes, syncs) in [("small.txt", &b"hello"[..], 1), ("big.bin", &big[..], 3)] {
        assert!(c.fs.lookup(c.top, name).await.is_err(), "a new name");
        let (attr, fh) =
            c.fs.create_cached(c.top, name, libc::O_WRONLY, PID)
                .expect("created on the calling thread")
                .unwrap();
        c.fs.write(attr.ino, fh, 0, bytes).unwrap();
        let uploads = c.remote.calls("upload");
        let (syncs_before, _) = c.fs.disk_syncs();
        let FlushStep::Upload(durable) = c.fs.flush_here(attr.ino, fh, PID) else {
            panic!("{name}: an upload must remain");
        };
        assert_eq!(c.fs.disk_syncs().0 - syncs_before, syncs, "{name}");
        let journaled = pending();
        assert_eq!(journaled.len(), 1, "{name}: on disk before the upload");
        assert_eq!(journaled[0].name, name);
        assert_eq!(
            c.remote.calls("upload"),
            uploads,
            "{name}: not yet uploaded"
        );
        c.fs.flush_upload(durable).await.expect("uploaded");
        assert_eq!(c.remote.find(ROOT_KEY, name).unwrap().bytes, bytes);
        assert!(
            pending().is_empty(),
            "{name}: the record goes once uploaded"
        );
        assert!(c.fs.release_cached(attr.ino, fh), "nothing left to upload");
    }
    assert_eq!(c.remote.calls("upload from memory"), 1, "small.txt");
    assert_eq!(c.remote.calls("upload from the spool file"), 1, "big.bin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_reports_eio_then_the_retry_delivers_the_bytes() {
    let c = core_with(&[]).await;
    // More failures than one close's informed attempts (6): close reports
    // EIO, and the background retry delivers.
    c.remote
        .failing_uploads
        .store(8, std::sync::atomic::Ordering::SeqCst);
    let (attr, fh) =
        c.fs.create(c.top, "flaky.txt", libc::O_WRONLY, PID)
            .await
            .unwrap();
    c.fs.write(attr.ino, fh, 0, b"kept").unwrap();
    let closed = c.fs.flush(attr.ino, fh, PID).await;
    assert_eq!(closed.map_err(|e| e.errno()), Err(libc::EIO));
    c.fs.release(attr.ino, fh).await;
    let mut delivered = None;
    for _ in 0..300 {
        delivered = c.remote.find(ROOT_KEY, "flaky.txt");
        if delivered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered.expect("retried upload").bytes, b"kept");
    assert_eq!(c.remote.calls("upload"), 9, "8 refused, then 1 delivered");
    assert_eq!(
        c.remote.names(ROOT_KEY),
        ["flaky.txt"],
        "one item, no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_onto_an_existing_file_leaves_one_item_with_the_new_bytes() {
    let c = core_with(&[("target.txt", b"old"), ("source.txt", b"new")]).await;
    c.fs.rename(c.top, "source.txt", c.top, "target.txt", 0)
        .await
        .unwrap();
    assert_eq!(c.remote.names(ROOT_KEY), ["target.txt"]);
    assert_eq!(c.remote.find(ROOT_KEY, "target.txt").unwrap().bytes, b"new");
    c.fs.unlink(c.top, "target.txt").await.unwrap();
    assert!(c.remote.names(ROOT_KEY).is_empty());
    assert!(matches!(
        c.fs.lookup(c.top, "target.txt").await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn readdir_hands_out_only_what_fits_and_resumes_at_the_offset() {
    let (c, files) = core_with_many("f", 50).await;
    let fh = c.fs.opendir(c.top).await.unwrap();
    let (mut seen, mut offset) = (Vec::new(), 0);
    loop {
        let mut batch = 0;
        c.fs.readdir(fh, offset, true, |item, next| {
            if batch == 7 {
                return true; // this reply is full
            }
            batch += 1;
            seen.push(item.name.clone());
            offset = next;
            false
        })
        .unwrap();
        if batch == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 52, ". and .. and 50 files, each once");
    assert_eq!(
        seen[2..],
        files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()[..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_save_over_keeps_the_target_item_and_removes_the_source() {
    let c = core_with(&[("target.txt", b"old"), ("source.txt", b"new")]).await;
    let target_key = c.remote.find(ROOT_KEY, "target.txt").unwrap().entry.key;
    c.fs.rename(c.top, "source.txt", c.top, "target.txt", 0)
        .await
        .unwrap();
    let now = c.remote.find(ROOT_KEY, "target.txt").unwrap();
    assert_eq!(now.entry.key, target_key, "the same remote item");
    assert_eq!(now.bytes, b"new");
    assert_eq!(c.remote.calls("rename"), 0, "no remote rename");
    assert_eq!(c.remote.calls("upload"), 1, "one upload onto the target");
    assert_eq!(c.remote.calls("remove"), 1, "the source removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unlinked_open_file_keeps_its_bytes_and_uploads_nothing() {
    let c = core_with(&[("open.txt", b"first")]).await;
    let ino = c.fs.lookup(c.top, "open.txt").await.unwrap().ino;
    let fh = c.fs.open(ino, libc::O_RDWR, PID).await.unwrap();
    c.fs.write(ino, fh, 5, b" more").unwrap();
    c.fs.unlink(c.top, "open.txt").await.unwrap();
    assert!(
        c.remote.find(ROOT_KEY, "open.txt").is_none(),
        "removed at once"
    );
    let bytes = c.fs.read(ino, fh, 0, 100).await.unwrap();
    assert_eq!(&bytes[..], b"first more");
    assert_eq!(c.fs.getattr_of(ino, Some(fh)).await.unwrap().nlink, 0);
    c.fs.flush(ino, fh, PID).await.unwrap();
    c.fs.release(ino, fh).await;
    assert_eq!(
        c.remote.calls("upload"),
        0,
        "nothing uploaded after the unlink"
    );
    assert!(c.remote.names(ROOT_KEY).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_only_file_is_never_uploaded_until_renamed_to_an_ordinary_name() {
    let c = core_with(&[]).await;
    let (attr, fh) =
        c.fs.create(c.top, ".notes.txt.swp", libc::O_WRONLY, PID)
            .await
            .unwrap();
    c.fs.write(attr.ino, fh, 0, b"swap").unwrap();
    c.fs.flush(attr.ino, fh, PID).await.unwrap();
    c.fs.release(attr.ino, fh).await;
    assert_eq!(c.remote.calls("upload"), 0);
    let listed = c.fs.opendir(c.top).await.unwrap();
    assert!(names_of(&c.fs, listed).contains(&".notes.txt.swp".to_string()));
    c.fs.rename(c.top, ".notes.txt.swp", c.top, "notes.txt", 0)
        .await
        .unwrap();
    assert_eq!(c.remote.calls("upload"), 1, "uploaded by the rename");
    assert_eq!(c.remote.find(ROOT_KEY, "notes.txt").unwrap().bytes, b"swap");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_drops_unreferenced_inodes_and_listings() {
    let (c, _) = core_with_many("g", 40).await;
    let fh = c.fs.opendir(c.top).await.unwrap();
    assert_eq!(names_of(&c.fs, fh).len(), 42);
    c.fs.releasedir(fh);
    let (_, _, before) = c.fs.snapshot();
    assert!(before >= 42, "root, top level and 40 files: {before}");
    c.fs.refresh();
    let (_, _, after) = c.fs.snapshot();
    assert!(after <= 2, "only the root and the top level stay: {after}");
    assert!(
        c.fs.opendir_cached(c.top).is_none(),
        "the listing is gone too"
    );
    let fh = c.fs.opendir(c.top).await.unwrap();
    assert_eq!(names_of(&c.fs, fh).len(), 42, "listed again");
    assert_eq!(c.remote.calls("list"), 2);
}

/// Disk work handed off with nothing waiting for it (here the journal
/// record of a file unlinked while its upload was refused) is
/// waited for by shutdown: tokio drops blocking work not yet started when
/// its runtime stops, and a record left behind would upload the removed
/// file again at the next start.
#[test]
fn shutdown_waits_for_the_disk_work_handed_off() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = core_with(&[]).await;
        let pending = || {
            Journal::open(&c._dirs.path().join("state"))
                .unwrap()
                .pending()
        };
        c.remote
            .refusing_uploads
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (attr, fh) =
            c.fs.create(c.top, "doomed.txt", libc::O_WRONLY, PID)
                .await
                .unwrap();
        c.fs.write(attr.ino, fh, 0, b"never to return").unwrap();
        assert!(c.fs.flush(attr.ino, fh, PID).await.is_err());
        c.fs.release(attr.ino, fh).await;
        assert_eq!(pending().len(), 1, "kept journaled, refused");
        // The one blocking thread is busy: what the unlink hands off waits.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (busy, started) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || {
            busy.send(()).unwrap();
            let _ = held.recv();
        });
        started.recv().unwrap();
        c.fs.unlink(c.top, "doomed.txt").await.unwrap();
        assert_eq!(pending().len(), 1, "its removal handed off, not done");
        let fs = c.fs.clone();
        let shutdown = tokio::spawn(async move { fs.shutdown(Duration::from_secs(1)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !shutdown.is_finished(),
            "shutdown returned with the record's removal still queued"
        );
        release.send(()).unwrap();
        blocker.await.unwrap();
        shutdown.await.unwrap();
        assert!(
            pending().is_empty(),
            "the record went before shutdown ended"
        );
    });
}
