//! Real-mount tests of local-disk semantics: what the tools people use
//! expect of a filesystem (descriptors that outlive an unlink, editors'
//! saves, temp files, times and modes), checked against the remote's state
//! and the API calls the emulator counted.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use crate::common::remote::Remote;
use crate::common::*;

/// Upload-shaped calls (a new blob, item, revision or rename).
fn writes(emu: &Emulator) -> u64 {
    emu.count(&["POST "]) + emu.count(&["PUT "]) + emu.count(&["PATCH "])
}

/// Files left in the spool directory.
/// Bytes held in the spool directory (emptied spool files may wait there
/// for reuse; they hold none).
fn spooled(m: &Mount) -> u64 {
    std::fs::read_dir(m.files.path("cache/spool"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|md| md.len())
                .sum()
        })
        .unwrap_or(0)
}

/// As on ext4: after `unlink`, open descriptors keep reading and writing
/// the file's bytes (nlink 0) until the last close; the remote item goes
/// at once and nothing is uploaded afterwards; the spooled bytes go at the
/// close.
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
        "spooled bytes deleted at the last close",
        std::time::Duration::from_secs(5),
        || spooled(&m) == 0,
    );
}

/// The three ways tools save a file, each run on the mount and on a local
/// copy: the remote must end with the local copy's bytes.
const SAVES: [(&str, &str); 4] = [
    // A temporary file renamed over the target.
    ("sed -i", "sed -i 's/a/A/' {}"),
    // vim with its default options (swap file, backup on write).
    ("vim", "vim -es -c '%s/e/E/' -c wq {}"),
    // vim with `backupcopy=no`: the file renamed to its backup, a new file
    // written under its name, the backup removed.
    ("backup rename", "mv {0} {0}~ && tr 'i' 'I' < {0}~ > {0} && rm {0}~"),
    // nano's way: the file rewritten in place.
    ("in-place", "cp {0} /tmp/bridgefs-inplace.$$ && tr 'o' 'O' < /tmp/bridgefs-inplace.$$ > {0}; rm -f /tmp/bridgefs-inplace.$$"),
];

/// Runs one save on `path` and on a local copy; returns the expected bytes.
fn save_both(tool: &str, cmd: &str, path: &std::path::Path, copy: &std::path::Path) -> Vec<u8> {
    for p in [path, copy] {
        let quoted = format!("'{}'", p.display());
        sh_ok(&cmd.replace("{0}", &quoted).replace("{}", &quoted));
    }
    let expected = std::fs::read(copy).unwrap();
    assert_eq!(
        std::fs::read(path).unwrap(),
        expected,
        "{tool}: bytes through the mount"
    );
    expected
}

fn names_of(files: &[serde_json::Value], key: &str) -> Vec<String> {
    let mut n: Vec<String> = files
        .iter()
        .map(|f| f[key].as_str().unwrap_or("").to_string())
        .collect();
    n.sort();
    n
}

/// On a Files app an editor's save keeps the file (same id, tags,
/// metadata) and adds its new content as the newest revision; no temp,
/// swap or backup file reaches the remote or its trash.
#[test]
fn editor_saves_on_an_app_file_add_a_revision_to_the_same_file() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let path = m.path("apps/handbook/Travel Policy.docx");
    let copy = m.files.path("travel-copy");
    std::fs::copy(&path, &copy).unwrap();
    let original = remote.app_file("handbook", "Travel Policy.docx").unwrap();
    let id = original["id"].as_u64().unwrap();
    let names = names_of(&remote.app_files("handbook"), "name");
    let trashed = remote.app_trash("handbook").len();
    for (tool, cmd) in SAVES {
        let revisions = remote.file_versions(id).len();
        emu.reset_counts();
        let expected = save_both(tool, cmd, &path, &copy);
        let calls = emu.counts();
        let now = remote.app_file("handbook", "Travel Policy.docx").unwrap();
        assert_eq!(now["id"].as_u64(), Some(id), "{tool}: the same file");
        assert_eq!(
            remote.file_versions(id).len(),
            revisions + 1,
            "{tool}: one more revision; calls {calls:?}"
        );
        assert_eq!(
            remote.app_bytes(&now),
            expected,
            "{tool}: the newest revision's bytes"
        );
        assert_eq!(
            (&now["tags"], &now["metadata"]),
            (&original["tags"], &original["metadata"]),
            "{tool}: tags and metadata kept"
        );
        assert_eq!(
            names_of(&remote.app_files("handbook"), "name"),
            names,
            "{tool}: no other file on the remote"
        );
        assert_eq!(
            remote.app_trash("handbook").len(),
            trashed,
            "{tool}: nothing new in the trash"
        );
    }
}

/// In the library and the back office (no revisions) the same saves leave
/// exactly one item of that name, with the new bytes, in the original's
/// folder, and a public library file stays public.
#[test]
fn editor_saves_on_library_and_client_files_leave_one_item_with_the_new_bytes() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let lib = m.path("library/Company Profile.pdf");
    let lib_copy = m.files.path("profile-copy");
    std::fs::copy(&lib, &lib_copy).unwrap();
    assert_eq!(
        remote.library_item("Company Profile.pdf").unwrap()["publicVisible"],
        true
    );
    let lib_names = names_of(&remote.library_items(), "fileName");

    let client = m.path("clients/1/notes.txt");
    std::fs::write(&client, b"one line of notes\nanother one\n").unwrap();
    let client_copy = m.files.path("notes-copy");
    std::fs::copy(&client, &client_copy).unwrap();
    let client_names = names_of(&remote.client_files(1), "name");
    for (tool, cmd) in SAVES {
        let expected = save_both(tool, cmd, &lib, &lib_copy);
        let item = remote.library_item("Company Profile.pdf").unwrap();
        assert_eq!(
            remote.library_bytes(&item),
            expected,
            "{tool}: library bytes"
        );
        assert_eq!(item["publicVisible"], true, "{tool}: still public");
        assert_eq!(
            names_of(&remote.library_items(), "fileName"),
            lib_names,
            "{tool}: one library item, nothing else"
        );

        let expected = save_both(tool, cmd, &client, &client_copy);
        let file = remote.client_file_named(1, "notes.txt").unwrap();
        let id = file["id"].as_u64().unwrap();
        assert_eq!(
            remote.client_bytes(1, id),
            expected,
            "{tool}: client file bytes"
        );
        assert_eq!(
            names_of(&remote.client_files(1), "name"),
            client_names,
            "{tool}: one client file, nothing else"
        );
    }
}

/// Files named by `mount.local_only` (editor swap, backup and lock files)
/// live in the spool: usable and listed, never uploaded, kept across a
/// restart, gone on unlink.
#[test]
fn local_only_files_stay_on_this_machine_and_survive_a_restart() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let dirs = ["apps/handbook", "library", "clients/1"];
    for dir in dirs {
        std::fs::read_dir(m.path(dir)).unwrap().count();
    }
    emu.reset_counts();
    for dir in dirs {
        std::fs::write(m.path(&format!("{dir}/.draft.txt.swp")), b"swap bytes").unwrap();
        std::fs::write(m.path(&format!("{dir}/draft.txt~")), b"backup bytes").unwrap();
        let listed: Vec<String> = std::fs::read_dir(m.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            listed.contains(&".draft.txt.swp".to_string())
                && listed.contains(&"draft.txt~".to_string()),
            "{dir}: {listed:?}"
        );
    }
    assert_eq!(writes(&emu), 0, "nothing uploaded: {:?}", emu.counts());
    m.stop();
    m.spawn();
    for dir in dirs {
        assert_eq!(
            std::fs::read(m.path(&format!("{dir}/.draft.txt.swp"))).unwrap(),
            b"swap bytes",
            "{dir} after a restart"
        );
        assert_eq!(
            std::fs::read(m.path(&format!("{dir}/draft.txt~"))).unwrap(),
            b"backup bytes",
            "{dir} after a restart"
        );
        std::fs::remove_file(m.path(&format!("{dir}/.draft.txt.swp"))).unwrap();
        assert!(!m.path(&format!("{dir}/.draft.txt.swp")).exists());
    }
    assert_eq!(
        writes(&emu),
        0,
        "nothing uploaded after the restart either: {:?}",
        emu.counts()
    );
    let remote = Remote::new(&emu.url());
    assert!(remote.app_file("handbook", "draft.txt~").is_none());
    assert!(remote.library_item("draft.txt~").is_none());
    assert!(remote.client_file_named(1, "draft.txt~").is_none());
    let records = m.journal_records();
    assert_eq!(
        records, 3,
        "one record per backup file left, the swap files' went"
    );
}

/// `rsync -a` into each backend, twice: the second run finds every time,
/// mode and size as it left them and transfers nothing.
#[test]
fn rsync_a_twice_transfers_nothing_the_second_time() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    // Apps are flat: they get the files without the folder.
    let flat = m.files.path("flat");
    let tree = m.files.path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::create_dir_all(&flat).unwrap();
    for src in [&flat, &tree] {
        std::fs::write(src.join("one.txt"), b"one\n").unwrap();
        std::fs::write(src.join("two.bin"), pattern(70_000, 3)).unwrap();
    }
    std::fs::write(tree.join("sub/three.txt"), b"three\n").unwrap();
    sh_ok(&format!(
        "touch -d @1614834367 {0}/*.* {1}/*.* {1}/sub/three.txt",
        flat.display(),
        tree.display()
    ));
    let transfers = |out: &str| out.lines().filter(|l| l.starts_with('>')).count();
    for (src, dest) in [
        (&flat, "apps/handbook"),
        (&tree, "library/synced"),
        (&tree, "clients/1/synced"),
    ] {
        let rsync = format!("rsync -ai {}/ {}", src.display(), m.path(dest).display());
        let first = sh_ok(&rsync);
        assert!(
            transfers(&first) >= 2,
            "{dest}: the first run copies: {first}"
        );
        let second = sh_ok(&rsync);
        assert_eq!(
            transfers(&second),
            0,
            "{dest}: the second run transfers nothing: {second}"
        );
    }
    let one = std::fs::metadata(m.path("library/synced/one.txt")).unwrap();
    assert_eq!(one.mtime(), 1_614_834_367, "the mtime rsync set");
}

/// `cp -p`, `touch -d`, chmod and chown show in `stat`, survive a restart,
/// and go when the remote file changes under another client.
#[test]
fn times_modes_and_owners_are_kept_until_the_remote_changes() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let local = m.files.path("stamped.txt");
    std::fs::write(&local, b"stamped").unwrap();
    sh_ok(&format!("touch -d @1600000000 {}", local.display()));
    let p = m.path("apps/handbook/stamped.txt");
    sh_ok(&format!("cp -p {} {}", local.display(), p.display()));
    sh_ok(&format!(
        "chmod 0600 {0} && chown 1234:5678 {0}",
        p.display()
    ));
    let check = |m: &Mount, when: &str| {
        let md = std::fs::metadata(m.path("apps/handbook/stamped.txt")).unwrap();
        assert_eq!(md.mtime(), 1_600_000_000, "{when}: mtime");
        assert_eq!(md.mode() & 0o7777, 0o600, "{when}: mode");
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{when}: owner");
    };
    check(&m, "after cp -p, chmod, chown");
    // ctime moves with chmod; a directory's mtime with a create in it.
    let before = std::fs::metadata(&p).unwrap().ctime();
    let dir_before = std::fs::metadata(m.path("apps/handbook")).unwrap().mtime();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    sh_ok(&format!("chmod 0640 {0} && chmod 0600 {0}", p.display()));
    assert!(
        std::fs::metadata(&p).unwrap().ctime() > before,
        "chmod bumps ctime"
    );
    std::fs::write(m.path("apps/handbook/another.txt"), b"a").unwrap();
    let dir_after = std::fs::metadata(m.path("apps/handbook")).unwrap().mtime();
    assert!(
        dir_after > dir_before,
        "a create bumps its directory's mtime"
    );
    m.stop();
    m.spawn();
    check(&m, "after a restart");
    // Another client writes a new revision: the remote's values show again.
    let id = remote.app_file("handbook", "stamped.txt").unwrap()["id"]
        .as_u64()
        .unwrap();
    remote.app_overwrite(id, b"changed elsewhere");
    m.stop();
    m.spawn();
    let md = std::fs::metadata(&p).unwrap();
    assert_ne!(md.mtime(), 1_600_000_000, "the remote's new time");
    assert_eq!(md.mode() & 0o7777, 0o644, "the default mode again");
}

/// With `allow_other`, modes set by chmod are enforced by the kernel: a
/// folder chmod 0700 by its owner refuses another user.
#[test]
fn chmod_0700_refuses_other_users_with_allow_other() {
    let emu = Emulator::demo();
    let opts = MountOptions {
        extra_toml: "\n[mount]\nallow_other = true\n".into(),
        ..MountOptions::default()
    };
    let m = Mount::start_with(&emu, opts);
    let dir = m.path("library/private");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), b"s").unwrap();
    let as_nobody = |cmd: &str| {
        sh(&format!(
            "setpriv --reuid 65534 --regid 65534 --clear-groups {cmd}"
        ))
    };
    let (code, _, _) = as_nobody(&format!("ls {}", dir.display()));
    assert_eq!(code, 0, "readable before the chmod");
    sh_ok(&format!("chmod 0700 {}", dir.display()));
    let (code, _, err) = as_nobody(&format!("ls {}", dir.display()));
    assert_ne!(code, 0, "refused after chmod 0700");
    assert!(err.contains("Permission denied"), "EACCES: {err}");
    let (code, _, err) = as_nobody(&format!("cat {}/secret.txt", dir.display()));
    assert!(
        code != 0 && err.contains("Permission denied"),
        "EACCES on a file inside: {err}"
    );
}

/// `mv f f~` (a local-only name) vacates `f`: moved back, it is the same
/// remote file again; left as a backup, the remote copy goes after the
/// grace period (its bytes live on in the local backup).
#[test]
fn a_file_renamed_to_a_local_only_name_leaves_the_remote_after_the_grace() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let f = m.path("apps/contracts/tiny.txt");
    let backup = m.path("apps/contracts/tiny.txt~");
    let id = remote.app_file("contracts", "tiny.txt").unwrap()["id"].as_u64();
    std::fs::rename(&f, &backup).unwrap();
    assert!(!f.exists() && backup.exists());
    std::fs::rename(&backup, &f).unwrap();
    let back = remote.app_file("contracts", "tiny.txt").unwrap();
    assert_eq!(back["id"].as_u64(), id, "moved back: the same remote file");
    assert_eq!(std::fs::read(&f).unwrap(), b"hi\n");

    std::fs::rename(&f, &backup).unwrap();
    assert!(
        remote.app_file("contracts", "tiny.txt").is_some(),
        "kept during the grace"
    );
    eventually(
        "the remote copy trashed after the grace",
        std::time::Duration::from_secs(20),
        || remote.app_file("contracts", "tiny.txt").is_none(),
    );
    assert_eq!(
        std::fs::read(&backup).unwrap(),
        b"hi\n",
        "the local backup keeps the bytes"
    );
    assert!(remote
        .app_trash("contracts")
        .iter()
        .any(|t| t["id"].as_u64() == id));
}

/// With `mtime_metadata_key`, a time set on a Files-app file is stored in
/// its metadata too: another machine (a second mount with its own state)
/// sees it, until another client uploads a newer revision.
#[test]
fn files_apps_can_store_mtime_in_metadata_for_other_machines() {
    let emu = Emulator::demo();
    let opts = MountOptions {
        extra_toml: "mtime_metadata_key = \"bridgefs_mtime\"\n".into(),
        ..MountOptions::default()
    };
    let m = Mount::start_with(&emu, opts.clone());
    let remote = Remote::new(&emu.url());
    sh_ok(&format!(
        "touch -d @1600000000 '{}'",
        m.path("apps/handbook/Readme.txt").display()
    ));
    let file = remote.app_file("handbook", "Readme.txt").unwrap();
    let stored = file["metadata"]["bridgefs_mtime"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stored.ends_with("@2020-09-13T12:26:40+00:00"), "{file}");
    let other = Mount::start_with(&emu, opts.clone());
    let mtime = |m: &Mount| {
        std::fs::metadata(m.path("apps/handbook/Readme.txt"))
            .unwrap()
            .mtime()
    };
    assert_eq!(
        mtime(&other),
        1_600_000_000,
        "another machine sees the time"
    );
    drop(other);
    remote.app_overwrite(file["id"].as_u64().unwrap(), b"a newer revision");
    let third = Mount::start_with(&emu, opts);
    assert_ne!(
        mtime(&third),
        1_600_000_000,
        "a newer revision has its own time"
    );
}
