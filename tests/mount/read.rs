//! Real-mount read tests: the demo tree through `ls`, `find`, `stat`, reads
//! and `md5sum`, checked against the emulator through its API, plus the
//! API-call budgets of listing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::common::remote::{md5_hex, xattr, Remote};
use crate::common::*;

/// Every regular file below `dir` (readdir does not show hidden views).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn id_of(path: &Path) -> String {
    let v = xattr(path, "user.bridgefs.id")
        .unwrap_or_else(|e| panic!("xattr of {}: {e}", path.display()))
        .unwrap_or_else(|| panic!("{} has no user.bridgefs.id", path.display()));
    String::from_utf8(v).unwrap()
}

#[test]
fn root_lists_the_configured_backends() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let mut names: Vec<String> = std::fs::read_dir(&m.mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["apps", "clients", "folder-templates", "library"]
    );
    let mut apps: Vec<String> = std::fs::read_dir(m.path("apps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    apps.sort();
    assert_eq!(apps, vec!["contracts", "handbook"]);
    let clients = sh_ok(&format!("ls {}", m.path("clients").display()));
    assert_eq!(
        clients.split_whitespace().collect::<Vec<_>>(),
        vec!["1", "2", "3"]
    );
}

#[test]
fn every_demo_file_reads_back_the_emulators_bytes() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    // The whole tree lists with true sizes and times.
    let out = sh_ok(&format!("ls -laR {}", m.mountpoint.display()));
    assert!(out.contains("handbook"), "{out}");
    let found = sh_ok(&format!("find {} | wc -l", m.mountpoint.display()));
    assert!(
        found.trim().parse::<usize>().unwrap() > 20,
        "find saw {found}"
    );

    // Files apps: one entry per live file, bytes and sizes equal.
    for app in ["handbook", "contracts"] {
        let files = remote.app_files(app);
        let by_id: HashMap<String, &serde_json::Value> =
            files.iter().map(|f| (f["id"].to_string(), f)).collect();
        let local = walk_files(&m.path(&format!("apps/{app}")));
        assert_eq!(local.len(), files.len(), "apps/{app}: {local:?}");
        for p in local {
            let f = by_id
                .get(&id_of(&p))
                .unwrap_or_else(|| panic!("{} has an unknown id", p.display()));
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(
                bytes.len() as u64,
                std::fs::metadata(&p).unwrap().len(),
                "{}",
                p.display()
            );
            assert_eq!(
                Some(bytes.len() as u64),
                f["size"].as_u64(),
                "{}",
                p.display()
            );
            assert_eq!(
                md5_hex(&bytes),
                md5_hex(&remote.app_bytes(f)),
                "{}",
                p.display()
            );
        }
    }

    // Library: every live file, nothing deleted in the live tree.
    let items = remote.library_items();
    let live: HashMap<String, &serde_json::Value> = items
        .iter()
        .filter(|i| i["fileLibraryType"] != "FOLDER" && i["deleted"] != true)
        .map(|i| (i["fileLibraryUUID"].as_str().unwrap().to_string(), i))
        .collect();
    let mut seen = HashSet::new();
    for p in walk_files(&m.path("library")) {
        let id = id_of(&p);
        let item = live
            .get(&id)
            .unwrap_or_else(|| panic!("{} is not a live library file", p.display()));
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(
            Some(bytes.len() as u64),
            item["fileSize"].as_u64(),
            "{}",
            p.display()
        );
        assert_eq!(
            md5_hex(&bytes),
            md5_hex(&remote.library_bytes(item)),
            "{}",
            p.display()
        );
        seen.insert(id);
    }
    assert!(!seen.is_empty());

    // Back office: each client's files, wherever their folder is.
    for client in 1..=3u64 {
        let files = remote.client_files(client);
        let local = walk_files(&m.path(&format!("clients/{client}")));
        assert_eq!(local.len(), files.len(), "clients/{client}: {local:?}");
        for p in local {
            let id: u64 = id_of(&p).parse().unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(
                bytes.len() as u64,
                std::fs::metadata(&p).unwrap().len(),
                "{}",
                p.display()
            );
            assert_eq!(
                md5_hex(&bytes),
                md5_hex(&remote.client_bytes(client, id)),
                "{}",
                p.display()
            );
        }
    }

    // md5sum (a real tool) over the whole mount agrees with std::fs reads.
    let sums = sh_ok(&format!(
        "cd {} && find . -type f -print0 | xargs -0 md5sum",
        m.mountpoint.display()
    ));
    assert!(sums.lines().count() > 10);
}

#[test]
fn names_follow_the_tree_rules() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let mut names_seen = Vec::new();
    for client in 1..=3u64 {
        for p in walk_files(&m.path(&format!("clients/{client}"))) {
            names_seen.push((
                client,
                p.file_name().unwrap().to_string_lossy().into_owned(),
                id_of(&p),
            ));
        }
    }
    for client in 1..=3u64 {
        let files = remote.client_files(client);
        let mut count: HashMap<String, usize> = HashMap::new();
        for f in &files {
            *count
                .entry(f["name"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        for f in &files {
            let caption = f["name"].as_str().unwrap_or("");
            let id = f["id"].to_string();
            let shown = &names_seen
                .iter()
                .find(|(c, _, i)| *c == client && *i == id)
                .unwrap_or_else(|| panic!("file {id} of client {client} not shown"))
                .1;
            assert!(shown.len() <= 255 && !shown.contains('/'), "{shown:?}");
            if caption.contains('/') {
                assert!(shown.contains('\u{FF0F}'), "slash not escaped: {shown:?}");
            }
            if caption.len() > 255 {
                assert!(
                    shown.contains(&format!("~{id}")),
                    "long name without id: {shown:?}"
                );
            }
            // A caption lacking the stored file's extension shows it.
            let stored = f["file"].as_str().unwrap_or("");
            if let Some(ext) = Path::new(stored).extension().and_then(|e| e.to_str()) {
                if caption.len() < 200 && !caption.contains('/') {
                    assert!(
                        shown.ends_with(&format!(".{ext}")),
                        "{caption:?} ({stored}) shown as {shown:?}"
                    );
                }
            }
        }
        // Duplicate captions: all shown, the later ones with ~id.
        for (caption, n) in count.iter().filter(|(c, n)| **n > 1 && c.len() < 200) {
            let dups: Vec<&(u64, String, String)> = names_seen
                .iter()
                .filter(|(c, name, _)| {
                    *c == client && name.starts_with(caption.trim_end_matches(".pdf"))
                })
                .collect();
            assert!(dups.len() >= *n, "duplicates of {caption:?}: {dups:?}");
            assert!(
                dups.iter()
                    .any(|(_, name, id)| name.contains(&format!("~{id}"))),
                "{dups:?}"
            );
        }
    }
}

#[test]
fn missing_names_are_enoent_and_hidden_views_are_reachable_only_by_path() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    for p in [
        "nope",
        "apps/nope",
        "apps/handbook/nope.txt",
        "library/nope",
        "clients/1/nope",
        "clients/999999",
        "apps/.posts/999999",
    ] {
        let e = std::fs::metadata(m.path(p)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT, "{p}");
    }
    // Twice: the negative answer is cached, and still ENOENT.
    assert_eq!(
        errno(&std::fs::metadata(m.path("apps/handbook/nope.txt")).unwrap_err()),
        libc::ENOENT
    );

    let listing = sh_ok(&format!("ls -a {}", m.path("apps/handbook").display()));
    assert!(
        !listing.contains(".trash") && !listing.contains(".revisions"),
        "{listing}"
    );
    let listing = sh_ok(&format!("ls -a {}", m.path("apps").display()));
    assert!(!listing.contains(".posts"), "{listing}");
    let found = sh_ok(&format!("find {}", m.mountpoint.display()));
    assert!(
        !found.contains("/.trash") && !found.contains("/.revisions") && !found.contains("/.posts"),
        "{found}"
    );

    assert!(m.path("apps/handbook/.trash").is_dir());
    assert!(m.path("apps/handbook/.revisions").is_dir());
    assert!(m.path("library/.trash").is_dir());
    sh_ok(&format!("ls {}", m.path("apps/handbook/.trash").display()));
    sh_ok(&format!("cd {} && ls", m.path("library/.trash").display()));
    // Clients not in the config are reachable by path.
    assert!(m.path("clients/1").is_dir());
}

#[test]
fn a_server_ignoring_range_still_gives_the_right_bytes() {
    let emu = Emulator::demo();
    let remote = Remote::new(&emu.url());
    let m = Mount::start(&emu);
    // The largest app file, read through the mount with Range ignored.
    let mut best = None;
    for app in ["handbook", "contracts"] {
        for f in remote.app_files(app) {
            let size = f["size"].as_u64().unwrap_or(0);
            if best
                .as_ref()
                .is_none_or(|(_, s, _): &(String, u64, serde_json::Value)| size > *s)
            {
                best = Some((app.to_string(), size, f));
            }
        }
    }
    let (app, size, f) = best.unwrap();
    assert!(
        size > 1 << 20,
        "demo needs a file over 1 MiB, largest is {size}"
    );
    let expected = remote.app_bytes(&f);
    emu.set_faults(bridgefs_emulator::Faults {
        ignore_range: true,
        ..Default::default()
    });
    let path = m.path(&format!("apps/{app}/{}", f["name"].as_str().unwrap()));
    let got = std::fs::read(&path).unwrap();
    assert_eq!(got.len(), expected.len());
    assert_eq!(md5_hex(&got), md5_hex(&expected));
    // A read in the middle (random access) too.
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 4096];
    let off = size / 2;
    let n = file.read_at(&mut buf, off).unwrap();
    assert_eq!(&buf[..n], &expected[off as usize..off as usize + n]);
}

/// Adds `n` files to an app through the API (blob + create).
fn add_app_files(base: &str, app: &str, n: usize) {
    let http = reqwest::blocking::Client::new();
    for i in 0..n {
        let form = reqwest::blocking::multipart::Form::new().part(
            "blob",
            reqwest::blocking::multipart::Part::bytes(format!("file {i}\n").into_bytes())
                .file_name(format!("f{i:04}.txt")),
        );
        let blob: serde_json::Value = http
            .post(format!("{base}/files/api/blobs"))
            .bearer_auth("demo-files-key")
            .multipart(form)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let r = http
            .post(format!("{base}/files/api/apps/{app}/files"))
            .bearer_auth("demo-files-key")
            .json(&serde_json::json!({"blob_id": blob["id"], "name": format!("f{i:04}.txt")}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create {i}: {}", r.status());
    }
}

#[test]
fn listing_call_budgets() {
    let emu = Emulator::start(bridgefs_emulator::Dataset::empty());
    add_app_files(&emu.url(), "contracts", 2000);
    let m = Mount::start(&emu);
    emu.reset_counts();
    let out = sh_ok(&format!("ls -l {}", m.path("apps/contracts").display()));
    assert_eq!(out.lines().filter(|l| l.ends_with(".txt")).count(), 2000);
    let lists = emu.count(&["GET", "/apps/{", "/files"]);
    assert!(
        lists <= 21,
        "cold ls -l of 2000 files made {lists} list calls: {:?}",
        emu.counts()
    );
    // Nothing per entry: sizes came with the listing.
    assert!(
        emu.total() <= 22,
        "cold ls -l made {} calls: {:?}",
        emu.total(),
        emu.counts()
    );

    emu.reset_counts();
    let again = sh_ok(&format!("ls -l {}", m.path("apps/contracts").display()));
    assert_eq!(again.lines().count(), out.lines().count());
    sh_ok(&format!(
        "stat {} >/dev/null",
        m.path("apps/contracts/f1999.txt").display()
    ));
    assert_eq!(
        emu.total(),
        0,
        "warm ls -l and stat made calls: {:?}",
        emu.counts()
    );
}

#[test]
fn a_failing_remote_serves_the_last_listing_and_reports_eio_for_content() {
    let emu = Emulator::demo();
    let opts = MountOptions {
        metadata_ttl: "1s",
        call_deadline: "3s",
        ..MountOptions::default()
    };
    let m = Mount::start_with(&emu, opts);
    let before = sh_ok(&format!("ls {}", m.path("apps/handbook").display()));
    emu.set_faults(bridgefs_emulator::Faults {
        error_rate: 1.0,
        method: Some("GET".into()),
        ..Default::default()
    });
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let after = sh_ok(&format!("ls {}", m.path("apps/handbook").display()));
    assert_eq!(
        before, after,
        "the stale listing is served while the remote fails"
    );
    let e = std::fs::read(m.path("apps/handbook/Welcome.md")).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "content cannot be faked: {e}");
    emu.set_faults(bridgefs_emulator::Faults::default());
    assert!(!std::fs::read(m.path("apps/handbook/Welcome.md"))
        .unwrap()
        .is_empty());
}
