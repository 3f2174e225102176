//! Real-mount tests of the hidden views (`.trash`, `.revisions`, attachment
//! views), the shared folder tree with its group permissions, and xattrs,
//! with `ls`, `cat`, `rm`, `mv`, `getfattr`/`setfattr`, checked on the
//! emulator.

use crate::common::remote::{md5_hex, xattr, Remote};
use crate::common::*;

fn ls(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("ls {}: {e}", path.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn app_trash_is_readable_restorable_and_deletable() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let app = m.path("apps/handbook");
    let trash = m.path("apps/handbook/.trash");
    assert!(ls(&trash).contains(&"Old Policy.pdf".to_string()));
    let old = remote
        .app_trash("handbook")
        .into_iter()
        .find(|f| f["name"] == "Old Policy.pdf")
        .unwrap();
    assert_eq!(
        md5_hex(&std::fs::read(trash.join("Old Policy.pdf")).unwrap()),
        md5_hex(&remote.app_bytes(&old))
    );

    // unlink in the app moves to the trash, visible at once.
    std::fs::write(app.join("gone.txt"), b"bye\n").unwrap();
    std::fs::remove_file(app.join("gone.txt")).unwrap();
    assert!(!app.join("gone.txt").exists());
    assert!(
        ls(&trash).contains(&"gone.txt".to_string()),
        "{:?}",
        ls(&trash)
    );
    assert!(remote
        .app_trash("handbook")
        .iter()
        .any(|f| f["name"] == "gone.txt"));
    assert_eq!(std::fs::read(trash.join("gone.txt")).unwrap(), b"bye\n");
    // Writes in the trash are refused.
    let e = std::fs::write(trash.join("new.txt"), b"x").unwrap_err();
    assert!([libc::EROFS, libc::EPERM].contains(&errno(&e)), "{e}");

    // mv out of the trash restores (under another name too).
    sh_ok(&format!(
        "mv '{}' '{}'",
        trash.join("gone.txt").display(),
        app.join("back.txt").display()
    ));
    assert_eq!(std::fs::read(app.join("back.txt")).unwrap(), b"bye\n");
    assert_eq!(
        remote.app_bytes_by_name("handbook", "back.txt").unwrap(),
        b"bye\n"
    );
    assert!(!ls(&trash).contains(&"gone.txt".to_string()));
    sh_ok(&format!(
        "mv '{}' '{}/'",
        trash.join("Old Policy.pdf").display(),
        app.display()
    ));
    assert!(remote.app_file("handbook", "Old Policy.pdf").is_some());

    // rm in the trash deletes for good.
    std::fs::remove_file(app.join("back.txt")).unwrap();
    let id = remote
        .app_trash("handbook")
        .into_iter()
        .find(|f| f["name"] == "back.txt")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    std::fs::remove_file(trash.join("back.txt")).unwrap();
    assert!(!remote.app_trash("handbook").iter().any(|f| f["id"] == id));
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/files/api/files/{id}?trashed=true", emu.url()))
        .bearer_auth("demo-files-key")
        .send()
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
}

#[test]
fn revisions_are_listed_read_deleted_and_restored() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let revs = m.path("apps/handbook/.revisions");
    emu.reset_counts();
    ls(&revs);
    assert_eq!(
        emu.count(&["/versions"]),
        0,
        "listing .revisions fetches no revisions"
    );
    let live: Vec<String> = remote
        .app_files("handbook")
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let mut live_sorted = live.clone();
    live_sorted.sort();
    assert_eq!(ls(&revs), live_sorted, "one directory per live file");

    let f = remote
        .app_file("handbook", "Employee Handbook.pdf")
        .unwrap();
    let id = f["id"].as_u64().unwrap();
    let dir = revs.join("Employee Handbook.pdf");
    emu.reset_counts();
    let entries = ls(&dir);
    assert_eq!(entries, vec!["v1.pdf", "v2.pdf", "v3.pdf", "v4.pdf"]);
    assert!(
        emu.count(&["/versions"]) >= 1,
        "revisions fetched when the directory is opened"
    );
    let versions = remote.file_versions(id);
    for v in &versions {
        let rev = v["rev"].as_u64().unwrap();
        let p = dir.join(format!("v{rev}.pdf"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            v["size"].as_u64().unwrap(),
            "v{rev}"
        );
        assert_eq!(
            md5_hex(&std::fs::read(&p).unwrap()),
            md5_hex(&remote.app_bytes(v)),
            "v{rev}"
        );
    }
    // Read-only entries.
    assert!(std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("v1.pdf"))
        .is_err());

    // rm deletes one revision.
    std::fs::remove_file(dir.join("v2.pdf")).unwrap();
    assert!(!remote.file_versions(id).iter().any(|v| v["rev"] == 2));
    assert!(!ls(&dir).contains(&"v2.pdf".to_string()));

    // mv .revisions/f/v1 onto f restores revision 1 as a new revision.
    let v1 = std::fs::read(dir.join("v1.pdf")).unwrap();
    let live_path = m.path("apps/handbook/Employee Handbook.pdf");
    sh_ok(&format!(
        "mv '{}' '{}'",
        dir.join("v1.pdf").display(),
        live_path.display()
    ));
    assert_eq!(md5_hex(&std::fs::read(&live_path).unwrap()), md5_hex(&v1));
    assert_eq!(
        remote
            .app_bytes_by_name("handbook", "Employee Handbook.pdf")
            .unwrap(),
        v1
    );
    let after: Vec<u64> = remote
        .file_versions(id)
        .iter()
        .map(|v| v["rev"].as_u64().unwrap())
        .collect();
    assert_eq!(
        after,
        vec![5, 4, 3, 1],
        "all revisions kept, a new one added"
    );
    assert!(ls(&dir).contains(&"v5.pdf".to_string()));
    assert!(ls(&dir).contains(&"v1.pdf".to_string()));
}

#[test]
fn hidden_views_stay_out_of_find_and_rm_r() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let trashed_before = remote.app_trash("contracts").len();
    emu.reset_counts();
    let found = sh_ok(&format!("find {}", m.path("apps").display()));
    assert!(!found.contains(".trash") && !found.contains(".revisions"));
    assert!(
        emu.handle
            .emu
            .log
            .lock()
            .iter()
            .all(|r| !r.query.contains("trashed=true")),
        "find listed a trash"
    );
    // rm -r of an app's files: they go to the trash, the views untouched.
    sh_ok(&format!("rm -rf {}/*", m.path("apps/contracts").display()));
    assert!(ls(&m.path("apps/contracts")).is_empty());
    assert_eq!(remote.app_trash("contracts").len(), trashed_before + 4);
    assert!(m.path("apps/contracts/.trash").is_dir());
    // The app directory itself cannot be removed.
    assert_eq!(
        errno(&std::fs::remove_dir(m.path("apps/contracts")).unwrap_err()),
        libc::EPERM
    );
}

#[test]
fn library_trash_and_attachments_are_read_only() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let trash = m.path("library/.trash");
    assert_eq!(ls(&trash), vec!["Old Price List.xlsx"]);
    let item = remote
        .library_items()
        .into_iter()
        .find(|i| i["fileName"] == "Old Price List.xlsx")
        .unwrap();
    assert_eq!(
        md5_hex(&std::fs::read(trash.join("Old Price List.xlsx")).unwrap()),
        md5_hex(&remote.library_bytes(&item))
    );
    assert_eq!(
        errno(&std::fs::remove_file(trash.join("Old Price List.xlsx")).unwrap_err()),
        libc::EPERM
    );
    let e = std::fs::rename(
        trash.join("Old Price List.xlsx"),
        m.path("library/restored.xlsx"),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    assert!(std::fs::metadata(trash.join("Old Price List.xlsx"))
        .unwrap()
        .permissions()
        .readonly());

    for (view, name) in [
        (".posts", "slides.pdf"),
        (".comments", "screenshot.png"),
        (".messages", "invoice.pdf"),
    ] {
        let dir = m.path(&format!("apps/{view}/1"));
        assert_eq!(ls(&dir), vec![name.to_string()], "{view}");
        assert!(!std::fs::read(dir.join(name)).unwrap().is_empty());
        let e = std::fs::remove_file(dir.join(name)).unwrap_err();
        assert!(
            [libc::EPERM, libc::EROFS].contains(&errno(&e)),
            "{view}: {e}"
        );
        assert_eq!(
            errno(&std::fs::metadata(m.path(&format!("apps/{view}/999"))).unwrap_err()),
            libc::ENOENT
        );
    }
}

#[test]
fn folder_templates_tree_and_group_permissions() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    let tpl = m.path("folder-templates");
    assert_eq!(ls(&tpl), vec!["Contracts", "Onboarding", "Statements"]);
    assert_eq!(ls(&tpl.join("Onboarding")), vec!["KYC"]);
    // mkdir at the top and below (the API gives no id for a subfolder).
    std::fs::create_dir(tpl.join("Compliance")).unwrap();
    std::fs::create_dir(tpl.join("Compliance/AML")).unwrap();
    assert!(tpl.join("Compliance/AML").is_dir());
    let shared = remote.shared_folders();
    let comp = shared.iter().find(|f| f["name"] == "Compliance").unwrap()["id"].clone();
    assert!(shared
        .iter()
        .any(|f| f["name"] == "AML" && f["directoryId"] == comp));
    // Rename within the parent; another parent is EXDEV; rmdir is EPERM.
    std::fs::rename(tpl.join("Compliance/AML"), tpl.join("Compliance/KYC-AML")).unwrap();
    assert!(remote
        .shared_folders()
        .iter()
        .any(|f| f["name"] == "KYC-AML"));
    assert_eq!(
        errno(
            &std::fs::rename(
                tpl.join("Compliance/KYC-AML"),
                tpl.join("Contracts/KYC-AML")
            )
            .unwrap_err()
        ),
        libc::EXDEV
    );
    assert_eq!(
        errno(&std::fs::remove_dir(tpl.join("Compliance/KYC-AML")).unwrap_err()),
        libc::EPERM
    );
    assert_eq!(
        errno(&std::fs::write(tpl.join("Compliance/f.txt"), b"x").unwrap_err()),
        libc::EPERM
    );
    // The new folders show in every client's tree.
    assert!(m.path("clients/2/Compliance/KYC-AML").is_dir());

    // Groups as xattrs: list, grant, revoke; the toggle only when needed.
    let folder = tpl.join("Onboarding");
    let groups =
        String::from_utf8(xattr(&folder, "user.bridgefs.groups").unwrap().unwrap()).unwrap();
    assert_eq!(groups.lines().count(), 3, "{groups}");
    assert!(groups.contains("3\tB2B L1 Support\t0"), "{groups}");
    emu.reset_counts();
    sh_ok(&format!(
        "setfattr -n user.bridgefs.group.3 -v 1 '{}'",
        folder.display()
    ));
    assert_eq!(
        emu.count(&["PUT /backoffice/api/v2/folders/{id}/groups/{group}"]),
        1
    );
    assert_eq!(
        xattr(&folder, "user.bridgefs.group.3").unwrap().unwrap(),
        b"1"
    );
    let id = remote
        .shared_folders()
        .into_iter()
        .find(|f| f["name"] == "Onboarding")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let state = emu
        .emu()
        .backoffice
        .lock()
        .permissions
        .get(&format!("{id}:3"))
        .copied();
    assert_eq!(state, Some(true), "granted on the emulator");
    emu.reset_counts();
    sh_ok(&format!(
        "setfattr -n user.bridgefs.group.3 -v 1 '{}'",
        folder.display()
    ));
    assert_eq!(
        emu.count(&["groups/{group}"]),
        0,
        "already granted: no toggle"
    );
    sh_ok(&format!(
        "setfattr -n user.bridgefs.group.3 -v 0 '{}'",
        folder.display()
    ));
    assert_eq!(
        emu.emu()
            .backoffice
            .lock()
            .permissions
            .get(&format!("{id}:3"))
            .copied(),
        Some(false)
    );
    let (code, _, _) = sh(&format!(
        "setfattr -n user.bridgefs.group.3 -v maybe '{}'",
        folder.display()
    ));
    assert_ne!(code, 0);
    let (code, _, err) = sh(&format!(
        "setfattr -n user.bridgefs.group.99 -v 1 '{}'",
        folder.display()
    ));
    assert_ne!(code, 0, "{err}");
}

#[test]
fn xattrs_on_every_backend() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    let remote = Remote::new(&emu.url());
    // Files app: id, url, tags and metadata, get and set.
    let p = m.path("apps/handbook/Travel Policy.docx");
    let f = remote.app_file("handbook", "Travel Policy.docx").unwrap();
    assert_eq!(
        xattr(&p, "user.bridgefs.id").unwrap().unwrap(),
        f["id"].to_string().into_bytes()
    );
    assert!(
        String::from_utf8(xattr(&p, "user.bridgefs.url").unwrap().unwrap())
            .unwrap()
            .starts_with("http")
    );
    assert_eq!(
        xattr(&p, "user.bridgefs.tags").unwrap().unwrap(),
        b"policy,travel"
    );
    assert_eq!(
        xattr(&p, "user.bridgefs.meta.owner").unwrap().unwrap(),
        b"hr"
    );
    let listed = sh_ok(&format!("getfattr -d '{}'", p.display()));
    assert!(
        listed.contains("user.bridgefs.meta.status=\"approved\""),
        "{listed}"
    );
    sh_ok(&format!(
        "setfattr -n user.bridgefs.tags -v 'a, b' '{}'",
        p.display()
    ));
    sh_ok(&format!(
        "setfattr -n user.bridgefs.meta.color -v blue '{}'",
        p.display()
    ));
    sh_ok(&format!(
        "setfattr -x user.bridgefs.meta.owner '{}'",
        p.display()
    ));
    let f = remote.app_file("handbook", "Travel Policy.docx").unwrap();
    assert_eq!(f["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(f["metadata"]["color"], "blue");
    assert!(f["metadata"].get("owner").is_none());
    assert_eq!(
        xattr(&p, "user.bridgefs.meta.color").unwrap().unwrap(),
        b"blue"
    );
    // Unknown: ENODATA, never EIO; unsupported sets: ENOTSUP or EPERM.
    assert_eq!(xattr(&p, "user.bridgefs.nope").unwrap(), None);
    assert_eq!(xattr(&p, "user.other").unwrap(), None);
    // Namespaces bridgefs has none of: ENOTSUP, so `ls -l` stops asking.
    for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        let e = xattr(&p, name).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{name}: {e}");
    }
    let (code, _, err) = sh(&format!(
        "setfattr -n user.bridgefs.id -v 5 '{}'",
        p.display()
    ));
    assert!(
        code != 0 && (err.contains("not permitted") || err.contains("not supported")),
        "{err}"
    );
    let (code, _, err) = sh(&format!(
        "setfattr -n user.elsewhere -v 5 '{}'",
        p.display()
    ));
    assert!(code != 0 && err.contains("not supported"), "{err}");

    // Library: id, public, url where public.
    let public = m.path("library/Company Profile.pdf");
    assert_eq!(
        xattr(&public, "user.bridgefs.public").unwrap().unwrap(),
        b"1"
    );
    assert!(xattr(&public, "user.bridgefs.url").unwrap().is_some());
    let private = m.path("library/price-list.xlsx");
    assert_eq!(
        xattr(&private, "user.bridgefs.public").unwrap().unwrap(),
        b"0"
    );
    assert_eq!(xattr(&private, "user.bridgefs.url").unwrap(), None);
    let item = remote.library_item("price-list.xlsx").unwrap();
    assert_eq!(
        xattr(&private, "user.bridgefs.id").unwrap().unwrap(),
        item["fileLibraryUUID"].as_str().unwrap().as_bytes()
    );

    // Back office: id, stored path, content URL.
    let p = m.path("clients/1/Contracts/Service agreement.pdf");
    let f = remote.client_file_named(1, "Service agreement").unwrap();
    assert_eq!(
        xattr(&p, "user.bridgefs.id").unwrap().unwrap(),
        f["id"].to_string().into_bytes()
    );
    assert_eq!(
        xattr(&p, "user.bridgefs.path").unwrap().unwrap(),
        f["file"].as_str().unwrap().as_bytes()
    );
    assert!(
        String::from_utf8(xattr(&p, "user.bridgefs.url").unwrap().unwrap())
            .unwrap()
            .contains("/download")
    );
    let names = sh_ok(&format!("getfattr -m - '{}'", p.display()));
    assert!(names.contains("user.bridgefs.path"), "{names}");
}

#[test]
fn ls_l_stops_asking_for_security_xattrs_after_the_first_entry() {
    let emu = Emulator::demo();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = Mount::start_with(
        &emu,
        MountOptions {
            extra_toml: format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
            ..Default::default()
        },
    );
    for i in 0..40 {
        std::fs::write(m.path(&format!("library/x{i}.txt")), b"x").unwrap();
    }
    let getxattrs = || {
        let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("bridgefs_fuse_requests_total{op=\"getxattr\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = getxattrs();
    sh_ok(&format!(
        "ls -l {} > /dev/null",
        m.path("library").display()
    ));
    let asked = getxattrs() - before;
    // ENODATA made ls ask twice per entry (over 80 here); ENOTSUP once.
    assert!(
        asked < 10,
        "getxattr requests for ls -l of 40+ entries: {asked}"
    );
}
