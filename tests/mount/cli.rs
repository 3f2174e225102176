//! The command line: one-line config errors, `check` against the emulator,
//! `status` of a running and a stopped mount.

use std::process::Command;

use crate::common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bridgefs"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_configs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cases = [
        ("[cache]\nmetadata_tll = \"5s\"\n", "metadata_tll"),
        ("[[files]]\napps = [\"handbook\"]\napi_key_file = \"/x\"\n", "base_url"),
        ("[[files]]\nbase_url = \"http://127.0.0.1:1/files\"\napi_key_file = \"/nonexistent/key\"\napps = [\"a\"]\n", "api_key_file"),
        ("[cache]\nmetadata_ttl = \"soon\"\n", "soon"),
        ("", "no backend configured"),
    ];
    for (text, named) in cases {
        let cfg = dir.path().join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let (code, _, err) = run(&[
            "mount",
            "--config",
            cfg.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(named), "{named} not named: {err}");
    }
    let (code, _, err) = run(&[
        "mount",
        "--config",
        "/nonexistent.toml",
        mnt.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"), "{err}");
}

#[test]
fn check_reaches_every_backend_and_names_failures() {
    let emu = Emulator::demo();
    let files = crate::common::demo_files();
    let cfg = files.path("c.toml");
    std::fs::write(&cfg, files.config_text(&emu.url())).unwrap();
    let (code, out, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "ok    clients/",
        "ok    clients/1/",
        "ok    folder-templates/",
        "ok    library/",
        "ok    apps/handbook/",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }
    // A rotated-away Files key: that backend fails with EACCES, the rest pass.
    std::fs::write(files.path("files.key"), "wrong-key").unwrap();
    let (code, out, _) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  apps/handbook/") && out.contains(&format!("errno {}", libc::EACCES)),
        "{out}"
    );
    assert!(out.contains("ok    library/"), "{out}");
    assert!(
        !out.contains("wrong-key") && !out.contains("demo-files-key"),
        "credentials never printed: {out}"
    );
}

#[test]
fn status_reports_a_running_mount() {
    let emu = Emulator::demo();
    let mut m = Mount::start(&emu);
    std::fs::write(m.path("library/status.txt"), b"x").unwrap();
    let cfg = m.config.to_str().unwrap().to_string();
    let mut out = String::new();
    for _ in 0..50 {
        let (code, o, _) = run(&["status", "--config", &cfg]);
        out = o;
        if code == 0 && out.contains("uploads=1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(out.contains("bridgefs running"), "{out}");
    assert!(out.contains("pending uploads 0"), "{out}");
    assert!(out.contains("library.upload"), "{out}");
    m.stop();
    let (code, out, _) = run(&["status", "--config", &cfg]);
    assert_ne!(code, 0);
    assert!(out.contains("not running"), "{out}");
}
