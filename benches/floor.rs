//! Speed against the raw-HTTP floor, measured in the same run: the same work
//! done with plain HTTP calls to the emulator, then through the mount. Prints
//! ratios (mount time / floor time); it asserts nothing.
//!
//! `cargo bench --bench floor`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Emulator, Mount};
use reqwest::blocking::{multipart, Client};
use serde_json::Value;

const KEY: &str = "demo-files-key";

fn upload(http: &Client, base: &str, app: &str, name: &str, data: Vec<u8>) -> Value {
    let form = multipart::Form::new().part(
        "blob",
        multipart::Part::bytes(data).file_name(name.to_string()),
    );
    let blob: Value = http
        .post(format!("{base}/files/api/blobs"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    http.post(format!("{base}/files/api/apps/{app}/files"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"blob_id": blob["id"], "name": name}))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn report(what: &str, floor: Duration, mount: Duration) {
    println!(
        "{what:<40} floor {:>8.1} ms   mount {:>8.1} ms   ratio {:>5.2}",
        floor.as_secs_f64() * 1e3,
        mount.as_secs_f64() * 1e3,
        mount.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
}

fn main() {
    let emu = Emulator::start(bridgefs_emulator::Dataset::empty());
    let base = emu.url();
    let http = Client::new();

    // Large sequential reads: 4 files of 32 MiB, each read once, cold.
    let big: Vec<Value> = (0..4)
        .map(|i| {
            upload(
                &http,
                &base,
                "handbook",
                &format!("big{i}.bin"),
                bridgefs_emulator::demo_bytes(i, 32 << 20),
            )
        })
        .collect();
    // Many small files: 300 of 4 KiB.
    for i in 0..300 {
        upload(
            &http,
            &base,
            "contracts",
            &format!("s{i:03}.txt"),
            vec![b'x'; 4096],
        );
    }
    let m = Mount::start(&emu);

    let floor = timed(|| {
        for f in &big[..2] {
            let b = http
                .get(f["download_url"].as_str().unwrap())
                .bearer_auth(KEY)
                .send()
                .unwrap()
                .bytes()
                .unwrap();
            assert_eq!(b.len(), 32 << 20);
        }
    });
    let mount = timed(|| {
        for i in 2..4 {
            assert_eq!(
                std::fs::read(m.path(&format!("apps/handbook/big{i}.bin")))
                    .unwrap()
                    .len(),
                32 << 20
            );
        }
    });
    report("sequential read, 2 x 32 MiB", floor, mount);

    let list_floor = timed(|| {
        let mut skip = 0;
        loop {
            let v: Value = http
                .get(format!(
                    "{base}/files/api/apps/contracts/files?skip={skip}&take=100"
                ))
                .bearer_auth(KEY)
                .send()
                .unwrap()
                .json()
                .unwrap();
            skip += 100;
            if skip as u64 >= v["count"].as_u64().unwrap() {
                break;
            }
        }
    });
    let list_mount = timed(|| {
        assert_eq!(
            std::fs::read_dir(m.path("apps/contracts")).unwrap().count(),
            300
        );
    });
    report("cold listing of 300 files", list_floor, list_mount);

    let files: Vec<Value> = {
        let mut out = Vec::new();
        for skip in [0, 100, 200] {
            let v: Value = http
                .get(format!(
                    "{base}/files/api/apps/contracts/files?skip={skip}&take=100"
                ))
                .bearer_auth(KEY)
                .send()
                .unwrap()
                .json()
                .unwrap();
            out.extend(v["data"].as_array().unwrap().clone());
        }
        out
    };
    let small_floor = timed(|| {
        for f in &files {
            http.get(f["download_url"].as_str().unwrap())
                .bearer_auth(KEY)
                .send()
                .unwrap()
                .bytes()
                .unwrap();
        }
    });
    let small_mount = timed(|| {
        for i in 0..300 {
            std::fs::read(m.path(&format!("apps/contracts/s{i:03}.txt"))).unwrap();
        }
    });
    report("reading 300 small files", small_floor, small_mount);

    let src = m.files.path("small-src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..100 {
        std::fs::write(src.join(format!("w{i:03}.txt")), vec![b'y'; 4096]).unwrap();
    }
    let write_floor = timed(|| {
        for i in 0..100 {
            upload(
                &http,
                &base,
                "handbook",
                &format!("raw{i:03}.txt"),
                vec![b'y'; 4096],
            );
        }
    });
    let write_mount = timed(|| {
        common::sh_ok(&format!(
            "cp {}/* {}",
            src.display(),
            m.path("apps/handbook").display()
        ));
    });
    report("writing 100 small files (cp)", write_floor, write_mount);
}
