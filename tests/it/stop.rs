//! A clean stop: SIGTERM mid-run (Batch task termination, `docker stop`) commits
//! nothing more, gives the locks back at once and reports `cancelled`.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use deltalake::logstore::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use serde_json::Value;

use crate::azurite::{Azurite, Stall};
use crate::common::*;

const DATE: &str = "2024-03-11";

/// The blob whose read the proxy holds ([`Stall`]): in the date's last hour, so
/// the hours before it close and silver streams them to files before the signal.
const STALLED: &str = "telemetry/2024/03/11/23/stall-here.json";

/// Azurite with the fixtures in `raw` and an empty `lake`, the stalled blob
/// added, and the proxy that holds its read.
fn stalling_azurite() -> (Azurite, Stall) {
    let az = Azurite::with_fixtures();
    let store = az.store("raw");
    let record = r#"{"deviceId":"stalled","timestamp":"2024-03-11T23:10:00Z"}"#;
    block_on(async {
        store
            .put(&StorePath::from(STALLED), PutPayload::from(record))
            .await
            .unwrap();
    });
    let stall = Stall::start(&az, "stall-here.json");
    (az, stall)
}

/// Starts `cmd`, waits until its read of the stalled blob is held, sends SIGTERM:
/// the run is mid-read whatever the build's speed. Returns the exit code, the
/// report, and the log.
fn terminate_mid_read(cmd: std::process::Command, stall: &Stall) -> (Option<i32>, Value, String) {
    let (child, stderr, seen) = start_until(cmd, "listed");
    assert!(
        stall.wait_stalled(std::time::Duration::from_secs(60)),
        "the run never asked for the stalled blob: {seen}"
    );
    let (code, report, rest) = terminate(child, stderr);
    (code, report, format!("{seen}{rest}"))
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
    stderr: BufReader<std::process::ChildStderr>,
) -> (Option<i32>, Value, String) {
    terminate_then(child, stderr, |_, _| String::new())
}

/// Lets the commit the proxy holds through once the run has taken the signal
/// (its log says so) and is still running: it is then waiting for that commit.
fn release_soon(
    stall: &Stall,
) -> impl FnOnce(&mut std::process::Child, &mut BufReader<std::process::ChildStderr>) -> String + '_
{
    |child, stderr| {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap_or(0) > 0,
                "the run ended before it said it took the signal: {seen}"
            );
            seen.push_str(&line);
            if line.contains("stop requested") {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended with its commit held: {seen}"
        );
        stall.release();
        seen
    }
}

/// [`terminate`], doing `after_signal` (which may read the log) before it waits.
fn terminate_then(
    mut child: std::process::Child,
    mut stderr: BufReader<std::process::ChildStderr>,
    after_signal: impl FnOnce(
        &mut std::process::Child,
        &mut BufReader<std::process::ChildStderr>,
    ) -> String,
) -> (Option<i32>, Value, String) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut rest = after_signal(&mut child, &mut stderr);
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, rest)
}

#[test]
fn sigterm_mid_run_changes_nothing_and_frees_the_locks_at_once() {
    let (az, stall) = stalling_azurite();
    let env = stall.env();
    let dir = temp_lake();
    let mut args = run_args(DATE, "az://raw/", "az://lake/iot");
    // Files rolled at 1 KiB: the hours before the stalled one are in finished files.
    args[2] = small_files_job(dir.path(), 0.5);
    // A first, complete run (without the stalled blob: it is added after).
    let store = az.store("raw");
    let stalled = block_on(async {
        store
            .get(&StorePath::from(STALLED))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });
    block_on(async { store.delete(&StorePath::from(STALLED)).await.unwrap() });
    let out = command(&args, &env).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    block_on(async {
        store
            .put(&StorePath::from(STALLED), PutPayload::from(stalled))
            .await
            .unwrap();
    });
    let scratch = temp_lake();
    let before = table_versions(&az, scratch.path());

    // The read of one blob never ends: the signal lands mid-read.
    let (code, report, log) = terminate_mid_read(command(&args, &env), &stall);
    assert_eq!(code, Some(143), "{log}");
    assert_eq!(report["status"], "cancelled", "{report}");
    assert_eq!(report["exit_code"], 143);
    assert!(log.contains("signal 15"), "{log}");
    assert!(
        report["uncommitted_files_removed"].as_u64() > Some(0),
        "silver's finished files were removed: {report}"
    );

    // Nothing committed, no data file left outside the logs, and every lock
    // given back (not left to its TTL).
    assert_eq!(table_versions(&az, scratch.path()), before);
    assert_nothing_uncommitted(&scratch.path().join("lake"));
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
        assert_eq!(lock_record(&az, table)["released"], true, "{table}");
    }
    // So the next attempt starts at once, without waiting (straight to the
    // emulator: the stalled blob is read this time).
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

/// The local job in `dir` with `max_reject_ratio` and Parquet files rolled at
/// 1 KiB, so a run has finished silver files long before its commit; its path.
fn small_files_job(dir: &std::path::Path, max_reject_ratio: f64) -> String {
    let job = dir.join("small-files.toml");
    let text = std::fs::read_to_string(job_file())
        .unwrap()
        .replace(
            "max_reject_ratio = 0.5",
            &format!("max_reject_ratio = {max_reject_ratio}"),
        )
        .replace("\"../schemas/", &format!("\"{}/schemas/", repo().display()))
        + "\n[limits]\nfile_size = \"1KiB\"\n";
    assert!(text.contains(&format!("max_reject_ratio = {max_reject_ratio}")));
    std::fs::write(&job, text).unwrap();
    job.to_str().unwrap().to_string()
}

/// Issue 32: a run stopped mid-read leaves no data file outside the tables'
/// logs in a local lake either: the files silver streamed before the signal go.
#[test]
fn sigterm_mid_run_leaves_no_uncommitted_file_in_a_local_lake() {
    let (_az, stall) = stalling_azurite();
    let lake = temp_lake();
    let dir = temp_lake();
    let mut args = run_args(DATE, "az://raw/", lake.path().to_str().unwrap());
    // The stalled blob is of the date's last hour: the hours before it have
    // streamed to silver, in files rolled at 1 KiB, before the signal.
    args[2] = small_files_job(dir.path(), 0.5);
    let (code, report, log) = terminate_mid_read(command(&args, &stall.env()), &stall);
    assert_eq!(code, Some(143), "{log}");
    assert_eq!(report["status"], "cancelled", "{report}");
    assert!(
        report["uncommitted_files_removed"].as_u64() > Some(0),
        "silver's finished files were removed: {report}"
    );
    for table in ["telemetry", "features_hourly", "telemetry_minute"] {
        assert!(
            !lake.path().join(table).join("_delta_log").exists(),
            "{table} committed"
        );
    }
    assert_nothing_uncommitted(lake.path());
}

/// A refresh (`features`) stopped while a table's commit is under way, its
/// files already written: the commit was sent, so it may still land (here the
/// proxy lets it through half a second after the signal). The refresh waits for
/// it before it looks for uncommitted files, so every file the landed commit
/// references is still there, and none is left outside the tables' logs.
#[test]
fn sigterm_mid_refresh_commit_waits_for_it_before_cleaning_up() {
    let az = Azurite::with_fixtures();
    let dir = temp_lake();
    let job = small_files_job(dir.path(), 0.5);
    let mut args = run_args(DATE, "az://raw/", "az://lake/iot");
    args[2] = job.clone();
    let out = command(&args, &az.env()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // telemetry_minute's next version is its refresh's commit: held, with the
    // refresh's files (rolled at 1 KiB) written before it.
    let stall = Stall::start(&az, "telemetry_minute/_delta_log/00000000000000000001");
    // The run's flags, for `features`.
    let mut features = args.clone();
    features[0] = "features".to_string();
    let mut child = command(&features, &stall.env())
        .env("COLDPATH_LOG", "coldpath=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let held = stall.wait_stalled(std::time::Duration::from_secs(60));
    let (code, report, log) = terminate_then(child, stderr, release_soon(&stall));
    assert!(held, "the refresh never reached the commit: {log}");
    assert_eq!(code, Some(143), "{log}");
    assert_eq!(report["status"], "cancelled", "{report}");
    let copy = dir.path().join("lake");
    az.download("lake", "iot", &copy);
    let delta_log = copy.join("telemetry_minute/_delta_log");
    assert!(
        delta_log.join("00000000000000000001.json").is_file(),
        "the commit landed"
    );
    assert_nothing_uncommitted(&copy);
    // Every file the landed version references is there: the table reads back whole.
    let minutes = read_rows(&copy, "telemetry_minute");
    let want = expected(DATE)["minutes"].as_array().unwrap().len();
    assert_eq!(
        minutes
            .iter()
            .filter(|r| get(r, "event_date") == DATE)
            .count(),
        want
    );
}

/// A stop while silver's commit is under way: the writer already has every
/// batch, so the commit lands after the signal (here once the proxy lets it
/// through, while the run waits for its writer). The run then says telemetry
/// was committed and the date needs a rerun, not that nothing was.
#[test]
fn a_stop_during_silvers_commit_says_the_commit_landed() {
    let az = Azurite::with_fixtures();
    let stall = Stall::start(&az, "telemetry/_delta_log/00000000000000000000");
    let args = run_args(DATE, "az://raw/", "az://lake/iot");
    let (child, stderr, seen) = start_until(command(&args, &stall.env()), "listed");
    assert!(
        stall.wait_stalled(std::time::Duration::from_secs(60)),
        "the run never committed silver: {seen}"
    );
    let (code, report, rest) = terminate_then(child, stderr, release_soon(&stall));
    let log = format!("{seen}{rest}");
    assert_eq!(code, Some(1), "{report}\n{log}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("after committing telemetry for 2024-03-11"),
        "{report}"
    );
    assert_eq!(report["tables"]["telemetry"]["version"], 0, "{report}");
    let dir = temp_lake();
    let copy = dir.path().join("lake");
    az.download("lake", "iot", &copy);
    assert!(copy
        .join("telemetry/_delta_log/00000000000000000000.json")
        .is_file());
    assert!(!copy.join("features_hourly/_delta_log").exists());
    assert_nothing_uncommitted(&copy);
}

/// Issue 32: a gated run (exit 3) on an Azure lake leaves no data file outside
/// the tables' logs (silver streamed its files during the pass).
#[test]
fn a_gated_run_leaves_no_uncommitted_file_in_an_azure_lake() {
    let az = Azurite::with_fixtures();
    let dir = temp_lake();
    let mut args = run_args(DATE, "az://raw/", "az://lake/iot");
    // Silver's first files are finished (and uploaded) before the gate, so
    // there is something the run must remove.
    args[2] = small_files_job(dir.path(), 0.001);
    let out = command(&args, &az.env()).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "quality_gate_failed");
    assert!(
        report["uncommitted_files_removed"].as_u64() > Some(0),
        "silver's finished files were removed: {report}"
    );
    let copy = dir.path().join("lake");
    az.download("lake", "iot", &copy);
    assert!(
        copy.join("rejects/_delta_log").is_dir(),
        "the gate writes rejects"
    );
    assert!(!copy.join("telemetry/_delta_log").exists());
    assert_nothing_uncommitted(&copy);
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

/// A backfill stopped while its first date is read starts no further date: the
/// later dates are reported `cancelled`, not started, and take no lock; the
/// report is printed and the exit is 143.
#[test]
fn a_stopped_backfill_starts_no_further_date() {
    let (_az, stall) = stalling_azurite();
    let lake = temp_lake();
    let job = job_file();
    let args = [
        "backfill",
        "--job",
        job.to_str().unwrap(),
        "--from",
        DATE,
        "--to",
        "2024-03-13",
        "--parallel",
        "1",
        "--source",
        "az://raw/",
        "--lake",
        lake.path().to_str().unwrap(),
        "--labels-as-of",
        LABELS,
    ];
    let (code, report, log) = terminate_mid_read(command(&args, &stall.env()), &stall);
    assert_eq!(code, Some(143), "{log}");
    assert_eq!(report["status"], "cancelled", "{report}");
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 3, "{report}");
    for later in &dates[1..] {
        assert_eq!(later["status"], "cancelled", "{later}");
        assert!(
            later["error"].as_str().unwrap().contains("not started"),
            "{later}"
        );
        let date = later["date"].as_str().unwrap();
        let lock = lake
            .path()
            .join(format!("_coldpath/locks/telemetry/{date}.lock"));
        assert!(!lock.exists(), "{date} took a lock");
    }
}
