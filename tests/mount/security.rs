//! Security: credentials never reach the log, and hostile remote names
//! cannot escape their directory or shadow the hidden views.

use crate::common::remote::Remote;
use crate::common::*;
use md5::{Digest, Md5};

#[test]
fn credentials_never_reach_the_log() {
    let emu = Emulator::demo();
    let m = Mount::start(&emu);
    sh_ok(&format!("ls -laR {} > /dev/null", m.mountpoint.display()));
    sh_ok(&format!(
        "cat {}/library/price-list.xlsx > /dev/null",
        m.mountpoint.display()
    ));
    // A 401 and its refresh, a failing upload, and a retried read.
    emu.emu().library.lock().expire_sessions();
    sh_ok(&format!(
        "cat {}/library/tiny.txt > /dev/null",
        m.mountpoint.display()
    ));
    emu.set_faults(bridgefs_emulator::Faults {
        fail_next: 3,
        ..Default::default()
    });
    let _ = std::fs::write(m.path("library/denied.txt"), b"x");
    emu.set_faults(bridgefs_emulator::Faults::default());
    let sessions: Vec<String> = emu.emu().library.lock().sessions.iter().cloned().collect();
    assert!(!sessions.is_empty());
    let signature = hex::encode(Md5::digest(b"demo-api-keydemo-private-key"));
    let log = m.log_text();
    assert!(
        log.contains("request failed") || log.contains("upload"),
        "the log is being written:\n{log}"
    );
    let mut secrets = vec![
        "demo-backoffice-token".to_string(),
        "demo-private-key".into(),
        "demo-files-key".into(),
        signature,
    ];
    secrets.extend(sessions);
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a credential is in the log: {s}");
    }
}

#[test]
fn hostile_remote_names_stay_inside_their_directory() {
    let emu = Emulator::start(bridgefs_emulator::Dataset::empty());
    for name in ["..", "../../escape.txt", ".trash", ".", "a\u{0}b"] {
        emu.emu()
            .files
            .lock()
            .add_file("handbook", name, name.as_bytes().to_vec());
    }
    let m = Mount::start(&emu);
    let mut names: Vec<String> = std::fs::read_dir(m.path("apps/handbook"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for n in &names {
        assert!(
            !n.contains('/') && n != "." && n != ".." && n != ".trash",
            "{n:?}"
        );
        // Each one reads back its own bytes.
        let bytes = std::fs::read(m.path(&format!("apps/handbook/{n}"))).unwrap();
        assert!(!bytes.is_empty());
    }
    assert!(!m.path("escape.txt").exists() && !m.path("apps/escape.txt").exists());
    // The real hidden view is still the view, not the remote file named `.trash`.
    assert!(m.path("apps/handbook/.trash").is_dir());
    // The escaped names map back: a rename keeps the remote name intact.
    let remote = Remote::new(&emu.url());
    assert!(remote.app_file("handbook", "../../escape.txt").is_some());
}
