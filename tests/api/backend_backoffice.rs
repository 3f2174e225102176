//! The back-office backends (`clients/`, `folder-templates/`) driven through
//! the `Backend` trait against the emulator over real HTTP, without FUSE:
//! what each operation sends (per-route counters) and what the emulator
//! holds afterwards.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::common::Emulator;
use bridgefs::backends::backoffice::backends;
use bridgefs::config::{BackofficeConfig, DEFAULT_BACKOFFICE_CONTENT_URL};
use bridgefs::fs::backend::{Backend, Content, Entry, Kind};
use bridgefs::fs::FsError;
use bridgefs::remote::http::{HttpClient, RetryPolicy};
use bridgefs_emulator::{Credentials, Dataset, Emu, EmulatorHandle, Faults};

const LIST_FILES: &str = "GET /backoffice/api/v2/clients/{client}/files";
const HEAD: &str = "HEAD /backoffice/api/v2/clients/{client}/files/{id}/download";
const TOGGLE: &str = "/backoffice/api/v2/folders/{id}/groups/{group}";

struct Fixture {
    emu: Emulator,
    clients: Arc<dyn Backend>,
    templates: Arc<dyn Backend>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let emu = Emulator::demo();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "demo-backoffice-token\n").unwrap();
    let cfg = BackofficeConfig {
        mount_as: "clients".into(),
        templates_as: "folder-templates".into(),
        base_url: format!("{}/backoffice", emu.url()),
        token_file: token,
        clients: vec![1, 2],
        content_url: DEFAULT_BACKOFFICE_CONTENT_URL.into(),
        language: "ja".into(),
    };
    let http = HttpClient::new(RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    })
    .unwrap();
    let (clients, templates) = backends(&cfg, http, 1000).unwrap();
    Fixture {
        emu,
        clients,
        templates,
        _dir: dir,
    }
}

impl Fixture {
    fn count(&self, endpoint: &str) -> u64 {
        self.emu.counts().get(endpoint).copied().unwrap_or(0)
    }

    /// The entry called `name` in `dir`.
    async fn find(&self, backend: &Arc<dyn Backend>, dir: &str, name: &str) -> Entry {
        backend
            .list(&dir.to_string())
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name:?} in {dir}"))
    }

    /// Id of the shared folder called `name` on the emulator.
    fn shared(&self, name: &str) -> u64 {
        let st = self.emu.emu().backoffice.lock();
        st.folders
            .values()
            .find(|f| f.client.is_none() && f.name == name)
            .unwrap()
            .id
    }

    /// (caption, directory, bytes) of a client file on the emulator.
    fn file(&self, id: &str) -> Option<(String, Option<u64>, Vec<u8>)> {
        let st = self.emu.emu().backoffice.lock();
        st.files
            .get(&id.parse().unwrap())
            .map(|f| (f.caption.clone(), f.directory, f.bytes.to_vec()))
    }

    fn spool(&self, bytes: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new_in(self._dir.path()).unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }
}

fn names(entries: &[Entry]) -> Vec<(&str, Kind)> {
    let mut v: Vec<(&str, Kind)> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn client_tree_with_sizes_from_head_cached_for_good() {
    let fx = fixture();
    let root = fx.clients.root();
    let ids: Vec<String> = fx
        .clients
        .list(&root)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(ids, ["1", "2"], "the configured clients");
    assert_eq!(fx.emu.total(), 0, "the root costs no call");
    // Other ids on demand; non-digits without a call.
    assert!(fx
        .clients
        .lookup_hidden(&root, "3")
        .await
        .unwrap()
        .is_some());
    assert!(fx
        .clients
        .lookup_hidden(&root, "999")
        .await
        .unwrap()
        .is_none());
    let calls = fx.emu.total();
    assert!(fx
        .clients
        .lookup_hidden(&root, "x1")
        .await
        .unwrap()
        .is_none());
    assert_eq!(fx.emu.total(), calls);

    // A client's root: shared folders, own folders, root files.
    fx.emu.reset_counts();
    let c1 = fx.find(&fx.clients, &root, "1").await;
    let top = fx.clients.list(&c1.key).await.unwrap();
    assert_eq!(
        names(&top),
        [
            ("Contracts", Kind::Dir),
            ("Onboarding", Kind::Dir),
            ("Personal", Kind::Dir),
            ("Q1/Q2 report.pdf", Kind::File),
            ("Statements", Kind::Dir),
            ("call recording.mp3", Kind::File),
        ]
    );
    // Sizes and times of files come from HEAD, one per file.
    let snap = fx.emu.emu().snapshot().backoffice;
    for e in top.iter().filter(|e| e.kind == Kind::File) {
        let f = &snap.files[&e.id.parse().unwrap()];
        assert_eq!(e.size, Some(f.bytes.len() as u64), "{}", e.name);
        let secs = (f.uploaded / 1000) as u64;
        assert_eq!(e.mtime, Some(UNIX_EPOCH + Duration::from_secs(secs)));
    }
    assert_eq!(fx.count(HEAD), 2);
    assert_eq!(fx.count(LIST_FILES), 1);
    // Listed again: no HEAD at all (content of an id never changes).
    fx.clients.list(&c1.key).await.unwrap();
    let big = top.iter().find(|e| e.name == "call recording.mp3").unwrap();
    let stat = fx.clients.stat(big).await.unwrap();
    assert_eq!(stat.size, Some(3 << 20));
    assert_eq!(fx.count(HEAD), 2, "cached for good");

    // The extension rule, nested own folders inside shared ones, duplicates kept.
    let contracts = fx.find(&fx.clients, &c1.key, "Contracts").await;
    assert_eq!(
        names(&fx.clients.list(&contracts.key).await.unwrap()),
        [("Service agreement.pdf", Kind::File)]
    );
    let onboarding = fx.find(&fx.clients, &c1.key, "Onboarding").await;
    let kyc = fx.find(&fx.clients, &onboarding.key, "KYC").await;
    assert_eq!(
        names(&fx.clients.list(&kyc.key).await.unwrap()),
        [("Passport scan.jpg", Kind::File), ("Scans", Kind::Dir)]
    );
    let statements = fx.find(&fx.clients, &c1.key, "Statements").await;
    let y2025 = fx.find(&fx.clients, &statements.key, "2025").await;
    let dups = fx.clients.list(&y2025.key).await.unwrap();
    assert_eq!(
        names(&dups),
        [("Statement.pdf", Kind::File), ("Statement.pdf", Kind::File)]
    );
    assert_ne!(dups[0].id, dups[1].id);
    // Client 2 sees the same shared tree, not client 1's own folders.
    let c2 = fx.find(&fx.clients, &root, "2").await;
    let t2 = names(&fx.clients.list(&c2.key).await.unwrap())
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect::<Vec<_>>();
    assert!(t2.contains(&"Contracts".to_string()) && !t2.contains(&"Personal".to_string()));
    // An unknown client's tree is ENOENT.
    assert!(matches!(
        fx.clients.list(&"c:999".to_string()).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_ranges_of_the_stored_bytes() {
    let fx = fixture();
    let c1 = fx.find(&fx.clients, "clients", "1").await;
    let big = fx.find(&fx.clients, &c1.key, "call recording.mp3").await;
    let expected = fx.file(&big.id).unwrap().2;
    let got = fx.clients.read(&big, 1 << 20, 4096).await.unwrap();
    assert_eq!(got.as_ref(), &expected[1 << 20..(1 << 20) + 4096]);
    let tail = fx
        .clients
        .read(&big, expected.len() as u64 - 10, 100)
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &expected[expected.len() - 10..]);
    assert!(matches!(
        fx.clients.read(&c1, 0, 1).await,
        Err(FsError::IsDir)
    ));
    // A server that ignores Range still gives the right bytes.
    fx.emu.set_faults(Faults {
        ignore_range: true,
        ..Faults::default()
    });
    let got = fx.clients.read(&big, 77, 5).await.unwrap();
    assert_eq!(got.as_ref(), &expected[77..82]);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_new_and_overwrite_keep_caption_and_folder() {
    let fx = fixture();
    let c1 = fx.find(&fx.clients, "clients", "1").await;
    let contracts = fx.find(&fx.clients, &c1.key, "Contracts").await;
    fx.clients.list(&contracts.key).await.unwrap();
    fx.emu.reset_counts();
    // New: one multipart POST into the shared folder, no HEAD afterwards.
    let spool = fx.spool(b"fresh contract");
    let new = fx
        .clients
        .upload(
            &contracts.key,
            "addendum.txt",
            None,
            &Content::Spooled(spool.path().to_path_buf()),
        )
        .await
        .unwrap();
    assert_eq!((new.name.as_str(), new.size), ("addendum.txt", Some(14)));
    assert_eq!(
        fx.file(&new.id),
        Some((
            "addendum.txt".into(),
            Some(fx.shared("Contracts")),
            b"fresh contract".to_vec()
        ))
    );
    let listed = fx.find(&fx.clients, &contracts.key, "addendum.txt").await;
    assert_eq!(listed.size, Some(14));
    assert_eq!(fx.count(HEAD), 0, "our own upload needs no HEAD");

    // Overwrite: upload the new content, then delete the old file; the
    // caption without extension and the folder are kept.
    let old = fx
        .find(&fx.clients, &contracts.key, "Service agreement.pdf")
        .await;
    fx.emu.reset_counts();
    let spool = fx.spool(b"%PDF new version");
    let over = fx
        .clients
        .upload(
            &contracts.key,
            "Service agreement.pdf",
            Some(&old),
            &Content::Spooled(spool.path().to_path_buf()),
        )
        .await
        .unwrap();
    assert_ne!(over.id, old.id);
    assert_eq!(over.name, "Service agreement.pdf");
    assert_eq!(fx.file(&old.id), None, "the old file is deleted");
    assert_eq!(
        fx.file(&over.id),
        Some((
            "Service agreement".into(),
            Some(fx.shared("Contracts")),
            b"%PDF new version".to_vec()
        ))
    );
    let counts = fx.emu.counts();
    assert_eq!(counts["POST /backoffice/api/v2/clients/{client}/files"], 1);
    assert_eq!(
        counts["DELETE /backoffice/api/v2/clients/{client}/files/{id}"],
        1
    );
    // An old file already gone remotely: the upload is simply a new file.
    let spool = fx.spool(b"again");
    let again = fx
        .clients
        .upload(
            &contracts.key,
            "Service agreement.pdf",
            Some(&old),
            &Content::Spooled(spool.path().to_path_buf()),
        )
        .await
        .unwrap();
    assert_eq!(fx.file(&again.id).unwrap().2, b"again");
    // Uploads into the clients root are refused at create time.
    assert!(fx.clients.check_create(&"clients".to_string()).is_err());
    assert!(fx.clients.check_create(&c1.key).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn mkdir_rename_move_and_remove() {
    let fx = fixture();
    let c2 = fx.find(&fx.clients, "clients", "2").await;
    let onboarding = fx.find(&fx.clients, &c2.key, "Onboarding").await;
    let kyc = fx.find(&fx.clients, &onboarding.key, "KYC").await;
    // mkdir inside a shared folder: an own folder whose parent is it.
    let mine = fx.clients.mkdir(&kyc.key, "Mine").await.unwrap();
    let kyc_id = fx.shared("KYC");
    let folder = fx.emu.emu().backoffice.lock().folders[&mine.id.parse().unwrap()].clone();
    assert_eq!(
        (folder.client, folder.parent, folder.name.as_str()),
        (Some(2), Some(kyc_id), "Mine")
    );
    let sub = fx.clients.mkdir(&mine.key, "Sub").await.unwrap();
    assert_eq!(
        names(&fx.clients.list(&mine.key).await.unwrap()),
        [("Sub", Kind::Dir)]
    );

    // Rename a file: the extension shown is stripped from the caption again.
    let notes = fx.find(&fx.clients, &c2.key, "notes.txt").await;
    let letters = fx.find(&fx.clients, &c2.key, "Correspondence").await;
    let y2024 = fx.find(&fx.clients, &letters.key, "2024").await;
    let reply = fx.find(&fx.clients, &y2024.key, "Reply.pdf").await;
    let renamed = fx
        .clients
        .rename(&reply, &y2024.key, &y2024.key, "Answer.pdf", None)
        .await
        .unwrap();
    assert_eq!(renamed.name, "Answer.pdf");
    assert_eq!(
        fx.file(&reply.id).unwrap().0,
        "Answer",
        "stored without .pdf"
    );
    // Move: caption and directoryId in one call, bytes untouched.
    let before = fx.file(&notes.id).unwrap().2;
    fx.emu.reset_counts();
    let moved = fx
        .clients
        .rename(&notes, &c2.key, &sub.key, "notes moved.txt", None)
        .await
        .unwrap();
    assert_eq!(moved.key, notes.key, "same identity");
    assert_eq!(
        fx.file(&notes.id),
        Some((
            "notes moved.txt".into(),
            Some(sub.id.parse().unwrap()),
            before
        ))
    );
    assert_eq!(fx.emu.total(), 1, "one PATCH");
    // Back to the client root: directoryId null.
    fx.clients
        .rename(&moved, &sub.key, &c2.key, "notes.txt", None)
        .await
        .unwrap();
    assert_eq!(fx.file(&notes.id).unwrap().1, None);

    // Rename over a target whose move is refused: the target is untouched.
    let letter = fx.find(&fx.clients, &letters.key, "letter.docx").await;
    let notes = fx.find(&fx.clients, &c2.key, "notes.txt").await;
    fx.emu.set_faults(Faults {
        fail_next: 1,
        error_status: Some(400),
        method: Some("PATCH".into()),
        ..Faults::default()
    });
    assert!(matches!(
        fx.clients
            .rename(&letter, &letters.key, &c2.key, "notes.txt", Some(&notes))
            .await,
        Err(FsError::Invalid(_))
    ));
    assert!(
        fx.file(&notes.id).is_some(),
        "a failed move deletes nothing"
    );
    // Rename over a target: the source moves first, then the target goes.
    let letter = fx.find(&fx.clients, &letters.key, "letter.docx").await;
    let letter_bytes = fx.file(&letter.id).unwrap().2;
    let notes = fx.find(&fx.clients, &c2.key, "notes.txt").await;
    fx.clients
        .rename(&letter, &letters.key, &c2.key, "notes.txt", Some(&notes))
        .await
        .unwrap();
    assert_eq!(fx.file(&notes.id), None, "the replaced target is gone");
    assert_eq!(
        fx.file(&letter.id),
        Some(("notes.txt".into(), None, letter_bytes))
    );

    // Directories: rename in place; another parent is EXDEV; shared is EPERM.
    let renamed = fx
        .clients
        .rename(&sub, &mine.key, &mine.key, "Sub2", None)
        .await
        .unwrap();
    assert_eq!(renamed.name, "Sub2");
    assert_eq!(
        fx.emu.emu().backoffice.lock().folders[&sub.id.parse().unwrap()].name,
        "Sub2"
    );
    assert!(matches!(
        fx.clients
            .rename(&sub, &mine.key, &c2.key, "Sub2", None)
            .await,
        Err(FsError::CrossDevice)
    ));
    assert!(matches!(
        fx.clients
            .rename(&kyc, &onboarding.key, &onboarding.key, "K", None)
            .await,
        Err(FsError::NotPermitted)
    ));
    // A shared folder as the replaced target: refused before anything moves.
    let contracts = fx.find(&fx.clients, &c2.key, "Contracts").await;
    fx.emu.reset_counts();
    assert!(matches!(
        fx.clients
            .rename(&mine, &kyc.key, &c2.key, "Contracts", Some(&contracts))
            .await,
        Err(FsError::NotPermitted)
    ));
    assert_eq!(fx.emu.total(), 0);
    // Across clients: EXDEV.
    let c1 = fx.find(&fx.clients, "clients", "1").await;
    // The stored path keeps `.docx`, so the new caption is shown with it.
    let notes = fx.find(&fx.clients, &c2.key, "notes.txt.docx").await;
    assert_eq!(notes.id, letter.id);
    assert!(matches!(
        fx.clients.rename(&notes, &c2.key, &c1.key, "x", None).await,
        Err(FsError::CrossDevice)
    ));

    // Remove: files and own folders; shared folders are EPERM.
    assert!(matches!(
        fx.clients.remove(&onboarding.key, &kyc).await,
        Err(FsError::NotPermitted)
    ));
    let sub = fx.find(&fx.clients, &mine.key, "Sub2").await;
    fx.clients.remove(&mine.key, &sub).await.unwrap();
    fx.clients.remove(&c2.key, &notes).await.unwrap();
    assert_eq!(fx.file(&notes.id), None);
    assert!(!fx
        .emu
        .emu()
        .backoffice
        .lock()
        .folders
        .contains_key(&sub.id.parse().unwrap()));
    assert!(matches!(
        fx.clients.remove(&c2.key, &notes).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn client_xattrs_read_only() {
    let fx = fixture();
    let c1 = fx.find(&fx.clients, "clients", "1").await;
    let report = fx.find(&fx.clients, &c1.key, "Q1/Q2 report.pdf").await;
    let stored = fx.emu.emu().backoffice.lock().files[&report.id.parse().unwrap()]
        .file
        .clone();
    let get = |n: &'static str| {
        let (b, e) = (fx.clients.clone(), report.clone());
        async move { b.xattr_get(&e, n).await }
    };
    assert_eq!(get("user.bridgefs.id").await.unwrap(), report.id.as_bytes());
    assert_eq!(get("user.bridgefs.path").await.unwrap(), stored.as_bytes());
    let url = String::from_utf8(get("user.bridgefs.url").await.unwrap()).unwrap();
    assert_eq!(
        url,
        format!(
            "{}/backoffice/api/v2/clients/1/files/{}/download",
            fx.emu.url(),
            report.id
        )
    );
    assert!(matches!(
        get("user.bridgefs.nope").await,
        Err(FsError::NoData)
    ));
    let mut listed = fx.clients.xattr_list(&report).await.unwrap();
    listed.sort();
    assert_eq!(
        listed,
        [
            "user.bridgefs.id",
            "user.bridgefs.path",
            "user.bridgefs.url"
        ]
    );
    assert!(matches!(
        fx.clients
            .xattr_set(&report, "user.bridgefs.id", Some(b"5"))
            .await,
        Err(FsError::NotSupported)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_file_is_reread_after_401() {
    let emu = EmulatorHandle::start(
        "127.0.0.1:0",
        Emu::new(
            Dataset::demo(),
            Credentials {
                backoffice_token: "rotated-token".into(),
                ..Credentials::default()
            },
            Faults::default(),
            None,
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "demo-backoffice-token").unwrap();
    let cfg = BackofficeConfig {
        mount_as: "clients".into(),
        templates_as: "folder-templates".into(),
        base_url: format!("{}/backoffice", emu.url()),
        token_file: token.clone(),
        clients: vec![1],
        content_url: DEFAULT_BACKOFFICE_CONTENT_URL.into(),
        language: "en".into(),
    };
    let http = HttpClient::new(RetryPolicy::default()).unwrap();
    // Built with the old token; an external job then rotates the file.
    let (clients, _) = backends(&cfg, http.clone(), 1000).unwrap();
    std::fs::write(&token, "rotated-token\n").unwrap();
    // Three calls at once all meet the 401 (the added latency keeps them in
    // flight together), and all recover: a call that finds the file already
    // re-read by another still retries.
    *emu.emu.faults.lock() = Faults {
        latency_ms: 100,
        ..Faults::default()
    };
    let listed = clients.list(&"c:1".to_string()).await.unwrap();
    assert!(listed.iter().any(|e| e.name == "Personal"));
    let statuses: Vec<u16> = emu.emu.log.lock().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s < 400),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "shared, own folders, files: each refused once, {statuses:?}"
    );
    *emu.emu.faults.lock() = Faults::default();
    // The token in use stays until a 401. One that stays wrong: one
    // re-read, one repeat, then EACCES.
    std::fs::write(&token, "still-wrong").unwrap();
    let (clients, _) = backends(&cfg, http, 1000).unwrap();
    emu.emu.log.lock().clear();
    assert!(matches!(
        clients.lookup_hidden(&clients.root(), "3").await,
        Err(FsError::AccessDenied(_))
    ));
    let statuses: Vec<u16> = emu.emu.log.lock().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401]);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_mkdir_rename_and_refusals() {
    let fx = fixture();
    let root = fx.templates.root();
    assert_eq!(
        names(&fx.templates.list(&root).await.unwrap()),
        [
            ("Contracts", Kind::Dir),
            ("Onboarding", Kind::Dir),
            ("Statements", Kind::Dir)
        ]
    );
    // Top level: the POST answers the new folder.
    fx.emu.reset_counts();
    let top = fx.templates.mkdir(&root, "Compliance").await.unwrap();
    assert_eq!(top.name, "Compliance");
    assert_eq!(top.id, fx.shared("Compliance").to_string());
    assert_eq!(fx.emu.total(), 1);
    // Subfolder: 204 without a body, so one re-list finds the id.
    fx.emu.reset_counts();
    let sub = fx.templates.mkdir(&top.key, "AML").await.unwrap();
    assert_eq!(sub.id, fx.shared("AML").to_string());
    assert_eq!(
        fx.count("POST /backoffice/api/v2/folders/{id}/addSubdirectory"),
        1
    );
    assert_eq!(fx.count("GET /backoffice/api/v2/folders"), 1);
    // A second subfolder of the same name: the newest is the one returned.
    let sub2 = fx.templates.mkdir(&top.key, "AML").await.unwrap();
    assert!(sub2.id.parse::<u64>().unwrap() > sub.id.parse::<u64>().unwrap());
    let compliance = fx.shared("Compliance");
    let folder = fx.emu.emu().backoffice.lock().folders[&sub.id.parse().unwrap()].clone();
    assert_eq!((folder.client, folder.parent), (None, Some(compliance)));
    // Rename in place; another parent is EXDEV; rmdir, files and replace are EPERM.
    let r = fx
        .templates
        .rename(&sub, &top.key, &top.key, "KYC-AML", None)
        .await
        .unwrap();
    assert_eq!(r.name, "KYC-AML");
    assert_eq!(
        fx.emu.emu().backoffice.lock().folders[&sub.id.parse().unwrap()].name,
        "KYC-AML"
    );
    assert!(matches!(
        fx.templates
            .rename(&sub, &top.key, &root, "KYC-AML", None)
            .await,
        Err(FsError::CrossDevice)
    ));
    assert!(matches!(
        fx.templates.remove(&top.key, &sub).await,
        Err(FsError::NotPermitted)
    ));
    assert!(matches!(
        fx.templates.check_create(&top.key),
        Err(FsError::NotPermitted)
    ));
    let spool = fx.spool(b"x");
    assert!(matches!(
        fx.templates
            .upload(
                &top.key,
                "f.txt",
                None,
                &Content::Spooled(spool.path().to_path_buf())
            )
            .await,
        Err(FsError::NotPermitted)
    ));
    // The new folders appear in every client's tree.
    let c1 = fx.find(&fx.clients, "clients", "1").await;
    let comp = fx.find(&fx.clients, &c1.key, "Compliance").await;
    let mut inside: Vec<String> = fx
        .clients
        .list(&comp.key)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    inside.sort();
    assert_eq!(inside, ["AML", "KYC-AML"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_permissions_toggle_only_when_needed() {
    let fx = fixture();
    let onboarding = fx.find(&fx.templates, "tpl", "Onboarding").await;
    let id = fx.shared("Onboarding");
    let perm = |g: u64| {
        fx.emu
            .emu()
            .backoffice
            .lock()
            .permissions
            .get(&format!("{id}:{g}"))
            .copied()
            .unwrap_or(false)
    };
    let text = String::from_utf8(
        fx.templates
            .xattr_get(&onboarding, "user.bridgefs.groups")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        text,
        "1\tAdministrators\t1\n2\tB2B Account Manager\t1\n3\tB2B L1 Support\t0\n"
    );
    assert_eq!(
        fx.templates
            .xattr_get(&onboarding, "user.bridgefs.group.3")
            .await
            .unwrap(),
        b"0"
    );
    // Grant: read, toggle once, read again.
    fx.emu.reset_counts();
    fx.templates
        .xattr_set(&onboarding, "user.bridgefs.group.3", Some(b"1"))
        .await
        .unwrap();
    assert!(perm(3));
    assert_eq!(fx.count(&format!("PUT {TOGGLE}")), 1);
    assert_eq!(fx.count("GET /backoffice/api/v2/folders/{id}/groups"), 2);
    // Already granted: no toggle at all.
    fx.emu.reset_counts();
    fx.templates
        .xattr_set(&onboarding, "user.bridgefs.group.3", Some(b"true"))
        .await
        .unwrap();
    assert_eq!(fx.count(&format!("PUT {TOGGLE}")), 0);
    assert!(perm(3));
    // A toggle whose answer is lost mid-body did happen: the re-read says
    // so, and it is not sent again.
    fx.emu.set_faults(Faults {
        drop_next: 1,
        path_contains: Some("/groups/".into()),
        ..Faults::default()
    });
    fx.emu.reset_counts();
    fx.templates
        .xattr_set(&onboarding, "user.bridgefs.group.3", Some(b"0"))
        .await
        .unwrap();
    assert!(!perm(3));
    assert_eq!(fx.count(&format!("PUT {TOGGLE}")), 1);
    // A toggle refused by the server (503) is not retried: EIO, state unchanged.
    fx.emu.set_faults(Faults {
        fail_next: 1,
        path_contains: Some("/groups/".into()),
        method: Some("PUT".into()),
        ..Faults::default()
    });
    fx.emu.reset_counts();
    assert!(matches!(
        fx.templates
            .xattr_set(&onboarding, "user.bridgefs.group.2", Some(b"0"))
            .await,
        Err(FsError::Io(_))
    ));
    assert!(perm(2));
    assert_eq!(fx.count(&format!("PUT {TOGGLE}")), 1);
    // Bad values and unknown groups.
    assert!(matches!(
        fx.templates
            .xattr_set(&onboarding, "user.bridgefs.group.3", Some(b"maybe"))
            .await,
        Err(FsError::Invalid(_))
    ));
    assert!(matches!(
        fx.templates
            .xattr_get(&onboarding, "user.bridgefs.group.99")
            .await,
        Err(FsError::NoData)
    ));
    assert!(matches!(
        fx.templates
            .xattr_set(&onboarding, "user.bridgefs.groups", Some(b"x"))
            .await,
        Err(FsError::NotPermitted)
    ));
}
