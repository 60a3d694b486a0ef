//! A clean stop: SIGTERM mid-run (Batch task termination, `docker stop`) commits
//! nothing more, gives the locks back at once and reports `cancelled`.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use deltalake::logstore::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use serde_json::Value;

use crate::azurite::Azurite;
use crate::common::*;

const DATE: &str = "2024-03-11";

/// ~400 MiB of blank lines in ~400 KB of gzip: seconds of inflating in a debug build.
fn slow_blob() -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let line = [b' '; 1023];
    for _ in 0..1024 {
        enc.write_all(&line).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    enc.finish().unwrap().repeat(400)
}

fn table_versions(az: &Azurite, dir: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let lake = dir.join("lake");
    let _ = std::fs::remove_dir_all(&lake);
    az.download("lake", "iot", &lake);
    [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ]
    .iter()
    .map(|t| {
        let log = lake.join(t).join("_delta_log");
        let mut files: Vec<String> = std::fs::read_dir(log)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        (t.to_string(), files)
    })
    .collect()
}

fn lock_record(az: &Azurite, table: &str) -> Value {
    let store = az.store("lake");
    block_on(async {
        let path = StorePath::from(format!("iot/_coldpath/locks/{table}/{DATE}.lock"));
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    })
}

/// Starts `coldpath` with `args`, its log on a pipe; waits for a log line holding `needle`.
// The child goes back to the caller, which waits for it in `terminate`.
#[allow(clippy::zombie_processes)]
fn start_until(
    mut cmd: std::process::Command,
    needle: &str,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = cmd
        .env("COLDPATH_LOG", "coldpath=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.wait();
            panic!("the run ended before `{needle}`: {seen}");
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return (child, stderr, seen);
        }
    }
}

/// Sends SIGTERM and waits: the exit code, the report, and the rest of the log.
fn terminate(
    child: std::process::Child,
    mut stderr: BufReader<std::process::ChildStderr>,
) -> (Option<i32>, Value, String) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, rest)
}

#[test]
fn sigterm_mid_run_changes_nothing_and_frees_the_locks_at_once() {
    let az = Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw());
    let args = run_args(DATE, "az://raw/", "az://lake/iot");
    let out = command(&args, &az.env()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scratch = temp_lake();
    let before = table_versions(&az, scratch.path());

    // A blob that takes seconds to read, so the signal lands mid-read.
    let store = az.store("raw");
    block_on(async {
        store
            .put(
                &StorePath::from("telemetry/2024/03/11/12/slow.json.gz"),
                PutPayload::from(slow_blob()),
            )
            .await
            .unwrap();
    });
    let (child, stderr, seen) = start_until(command(&args, &az.env()), "listed");
    let (code, report, rest) = terminate(child, stderr);
    assert_eq!(code, Some(143), "{seen}{rest}");
    assert_eq!(report["status"], "cancelled", "{report}");
    assert_eq!(report["exit_code"], 143);
    assert!(rest.contains("signal 15"), "{rest}");

    // Nothing committed, and every lock given back (not left to its TTL).
    assert_eq!(table_versions(&az, scratch.path()), before);
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
        assert_eq!(lock_record(&az, table)["released"], true, "{table}");
    }
    // So the next attempt starts at once, without waiting.
    let mut again = args.clone();
    again.extend(["--lock-wait".to_string(), "0s".to_string()]);
    let out = command(&again, &az.env()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_while_waiting_for_a_lock_reports_cancelled_and_gives_back_the_locks_taken() {
    let lake = temp_lake();
    // Another run holds features_hourly: this one takes telemetry, then waits.
    let held = hold_local_lock(lake.path(), "features_hourly", DATE);
    let args = run_args(
        DATE,
        fixtures_raw().to_str().unwrap(),
        lake.path().to_str().unwrap(),
    );
    let mut cmd = command(&args, &[]);
    cmd.args(["--lock-wait", "5m"]);
    let (child, stderr, seen) = start_until(cmd, "waiting for another run's lock");
    let (code, report, rest) = terminate(child, stderr);
    assert_eq!(code, Some(143), "{seen}{rest}");
    assert_eq!(report["status"], "cancelled", "{report}");
    assert!(!rest.contains("panic"), "{rest}");
    // The telemetry lock it had taken is free again: another holder takes it at once.
    let telemetry = lake
        .path()
        .join(format!("_coldpath/locks/telemetry/{DATE}.lock"));
    let file = std::fs::File::open(&telemetry).unwrap();
    file.try_lock().expect("released");
    drop(held);
}
