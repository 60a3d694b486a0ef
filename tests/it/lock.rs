//! The run lock between real processes: on Azurite (conditional puts) and on a local lake (OS file locks).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use deltalake::logstore::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

use crate::azurite::Azurite;
use crate::common::*;

const DATE: &str = "2024-03-11";

/// Starts `coldpath run` for `date` without waiting for it.
fn spawn_run(date: &str, source: &str, lake: &str, env: &[(&str, String)]) -> Child {
    command(&run_args(date, source, lake), env)
        .args(["--lock-wait", "5m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coldpath")
}

/// How long a test waits for an event before it fails instead of hanging. Only a guard: no
/// assertion compares durations.
const GUARD: Duration = Duration::from_secs(300);

pub(crate) const WAITING: &str = "waiting for another run's lock";
const ACQUIRED: &str = "run lock acquired after waiting";

/// `coldpath run` for `date` (or another command) with its log (info) on
/// stderr, which a thread reads line by line.
pub(crate) struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn spawn(date: &str, source: &str, lake: &str, env: &[(&str, String)]) -> Watched {
        Watched::of(command(&run_args(date, source, lake), env))
    }

    /// `cmd` with a lock wait of 5 minutes, watched.
    pub(crate) fn of(mut cmd: std::process::Command) -> Watched {
        let mut child = cmd
            .args(["--lock-wait", "5m"])
            .env("COLDPATH_LOG", "coldpath=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start coldpath");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in stderr.lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
            reader,
        }
    }

    /// Reads the run's log until a line contains `text` (the run must not end first).
    pub(crate) fn wait_for(&mut self, text: &str) {
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!("no `{text}` in the run's log ({e}): {:#?}", self.seen),
            }
        }
    }

    /// Waits for the run to end: its exit code, report and every log line.
    pub(crate) fn finish(mut self) -> (i32, Value, Vec<String>) {
        let mut stdout = Vec::new();
        std::io::Read::read_to_end(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        self.seen.extend(self.lines.try_iter());
        let report = serde_json::from_slice(&stdout)
            .unwrap_or_else(|e| panic!("report is not JSON ({e}): {:#?}", self.seen));
        (status.code().unwrap(), report, self.seen)
    }
}

/// Waits for a spawned run: its exit code, report and stderr.
fn finish(child: Child) -> (i32, Value, String) {
    let out = child.wait_with_output().expect("wait for coldpath");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {err}"));
    (out.status.code().unwrap(), report, err)
}

/// Runs `coldpath run` for two dates at once; both must succeed. Returns their reports.
fn run_both(dates: [&str; 2], source: &str, lake: &str, env: &[(&str, String)]) -> [Value; 2] {
    let children = dates.map(|date| spawn_run(date, source, lake, env));
    children.map(|child| {
        let (code, report, err) = finish(child);
        assert_eq!(code, 0, "{report}\n{err}");
        report
    })
}

/// A lock record as another run would have written it.
fn holder(run_id: &str, expires_in_s: i64) -> Value {
    let now = Utc::now();
    json!({
        "run_id": run_id,
        "job": "other",
        "host": "batch-node-7",
        "pid": 4242,
        "acquired_at": (now - chrono::Duration::minutes(30)).to_rfc3339(),
        "expires_at": (now + chrono::Duration::seconds(expires_in_s)).to_rfc3339(),
    })
}

fn lock_path(table: &str, date: &str) -> StorePath {
    StorePath::from(format!("iot/_coldpath/locks/{table}/{date}.lock"))
}

fn put_lock(az: &Azurite, table: &str, record: &Value) {
    let store = az.store("lake");
    block_on(async {
        store
            .put(
                &lock_path(table, DATE),
                PutPayload::from(serde_json::to_vec(record).unwrap()),
            )
            .await
            .unwrap();
    });
}

fn read_lock(az: &Azurite, table: &str, date: &str) -> Value {
    let store = az.store("lake");
    block_on(async {
        let bytes = store
            .get(&lock_path(table, date))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    })
}

fn azurite_with_raw() -> Azurite {
    let az = Azurite::start();
    az.create_container("raw");
    az.create_container("lake");
    az.upload_dir("raw", &fixtures_raw());
    az
}

/// Two runs committed every table, one run's three commits all before the
/// other's (same order in each table, and by commit time). Returns the run ids in order.
fn assert_took_turns(lake: &Path) -> Vec<String> {
    let tables = ["telemetry", "features_hourly", "rejects"];
    let order = committers(lake, tables[0]);
    assert_eq!(order.len(), 2, "{order:?}");
    assert_ne!(order[0], order[1]);
    for table in &tables[1..] {
        assert_eq!(committers(lake, table), order, "{table}");
    }
    let time = |table: &str, version: u64| {
        commit_info(lake, table, version)["timestamp"]
            .as_u64()
            .unwrap()
    };
    let first_last = tables.iter().map(|t| time(t, 0)).max().unwrap();
    let second_first = tables.iter().map(|t| time(t, 1)).min().unwrap();
    assert!(
        first_last <= second_first,
        "the second run committed at {second_first} before the first's last commit at {first_last}"
    );
    order
}

/// The run ids of a table's commits, oldest first.
fn committers(lake: &Path, table: &str) -> Vec<String> {
    let version = open_table(lake, table).version().unwrap();
    (0..=version)
        .map(|v| {
            user_metadata(lake, table, v)["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The date's partitions of `telemetry` and `rejects` hold as many rows as the fixtures expect.
fn assert_date_rows(lake: &Path, date: &str) {
    let want = expected(date);
    for (table, column, key) in [
        ("telemetry", "event_date", "rows_written"),
        ("rejects", "run_date", "rejected"),
    ] {
        let rows = read_rows(lake, table)
            .iter()
            .filter(|r| get(r, column).as_str() == Some(date))
            .count();
        assert_eq!(Some(rows as u64), want[key].as_u64(), "{table} {date}");
    }
}

/// The `run_id` a text log line names (its `run{… run_id=…}` span), if any.
fn run_of(line: &str) -> Option<&str> {
    let rest = &line[line.find("run_id=")? + "run_id=".len()..];
    rest.split(['}', ' ']).next()
}

#[test]
fn two_runs_of_one_date_on_azurite_take_turns_and_the_tables_end_right() {
    let az = azurite_with_raw();
    // A crashed attempt's lock, expiring in 3 s: both runs start waiting on it,
    // then race to take it over (a conditional update: exactly one wins).
    put_lock(&az, "telemetry", &holder("crashed-attempt", 3));
    // Both runs log into one pipe, so its lines are in the order they were written: a line
    // one run wrote before giving a lock back comes before any line the other wrote after
    // taking it.
    let (log, log_writer) = std::io::pipe().unwrap();
    let children = [0, 1].map(|_| {
        command(&run_args(DATE, "az://raw/", "az://lake/iot"), &az.env())
            .args(["--lock-wait", "5m"])
            .env("COLDPATH_LOG", "coldpath=info")
            .stdout(Stdio::piped())
            .stderr(log_writer.try_clone().unwrap())
            .spawn()
            .expect("start coldpath")
    });
    drop(log_writer);
    let reader = std::thread::spawn(move || {
        BufReader::new(log)
            .lines()
            .map(Result::unwrap)
            .collect::<Vec<String>>()
    });
    let [report_a, report_b] = children.map(|child| {
        let out = child.wait_with_output().expect("wait for coldpath");
        let report: Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(out.status.code(), Some(0), "{report}");
        report
    });
    let log = reader.join().unwrap();

    let lake = temp_lake();
    az.download("lake", "iot", lake.path());
    // Each table was committed by both runs, never interleaved: one run's three
    // commits all come before the other's.
    let order = assert_took_turns(lake.path());
    let (first, second) = if order[0] == report_a["run_id"] {
        (&report_a, &report_b)
    } else {
        (&report_b, &report_a)
    };
    // The second one waited for the first one's list-to-commit: it took the telemetry lock
    // (the last "acquired after waiting" of that table: the lock's log lines name no run) and
    // listed only after the first had committed every table.
    let (first_id, second_id) = (
        first["run_id"].as_str().unwrap(),
        second["run_id"].as_str().unwrap(),
    );
    let at = |id: &str, text: &str| -> Vec<usize> {
        log.iter()
            .enumerate()
            .filter(|(_, l)| run_of(l) == Some(id) && l.contains(text))
            .map(|(i, _)| i)
            .collect()
    };
    let first_commits = at(first_id, "committed");
    assert_eq!(first_commits.len(), 5, "the first run's commits: {log:#?}");
    let first_done = *first_commits.iter().max().unwrap();
    let first_listed = at(first_id, "listed");
    assert!(
        first_listed.len() == 1 && first_listed[0] < first_commits[0],
        "the first run listed, then committed: {log:#?}"
    );
    assert!(log.iter().any(|l| l.contains(WAITING)), "{log:#?}");
    let second_took = log
        .iter()
        .rposition(|l| l.contains(ACQUIRED) && l.contains("table=\"telemetry\""))
        .unwrap_or_else(|| panic!("the second run waited for the lock: {log:#?}"));
    let second_listed = at(second_id, "listed");
    assert_eq!(second_listed.len(), 1, "{log:#?}");
    assert!(
        first_done < second_took && second_took < second_listed[0],
        "the second run took the lock or listed before the first's last commit: {log:#?}"
    );
    assert!(second["durations"]["lock_ms"].as_u64().unwrap() > 0);
    // The date holds one run's rows, exactly as the contract says.
    assert_date_rows(lake.path(), DATE);
    let ids: std::collections::BTreeSet<String> = read_rows(lake.path(), "telemetry")
        .iter()
        .map(|r| get(r, "run_id").as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "rows of both runs in one partition: {ids:?}");
    // Every lock ends released, the last holder being the second run.
    for table in ["telemetry", "features_hourly", "rejects"] {
        let record = read_lock(&az, table, DATE);
        assert_eq!(record["released"], true, "{table}: {record}");
        assert_eq!(record["run_id"], second["run_id"], "{table}: {record}");
    }
}

#[test]
fn runs_of_two_dates_on_azurite_at_once_both_land() {
    let az = azurite_with_raw();
    run_both(
        ["2024-03-10", DATE],
        "az://raw/",
        "az://lake/iot",
        &az.env(),
    );
    let lake = temp_lake();
    az.download("lake", "iot", lake.path());
    for date in ["2024-03-10", DATE] {
        assert_date_rows(lake.path(), date);
    }
}

#[test]
fn a_held_lock_on_azurite_fails_the_run_clearly_after_lock_wait_and_writes_nothing() {
    let az = azurite_with_raw();
    put_lock(&az, "features_hourly", &holder("still-running-7", 600));
    let out = {
        let mut env = az.env();
        env.push(("COLDPATH_LOCK_WAIT", "1s".into()));
        let job = job_file();
        coldpath_env(
            &[
                "run",
                "--job",
                job.to_str().unwrap(),
                "--date",
                DATE,
                "--source",
                "az://raw/",
                "--lake",
                "az://lake/iot",
            ],
            &env,
        )
    };
    let code = out.status.code().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("still-running-7"), "{err}");
    assert!(err.contains("batch-node-7"), "{err}");
    assert!(err.contains("`features_hourly`"), "{err}");
    assert!(err.contains(DATE), "{err}");
    // It waited (the event in its log), then gave up at the lock.wait it was given (1 s,
    // not the job's or the default 10 min), which the error names.
    let waiting = err.find(WAITING).expect("it logged that it was waiting");
    let gave_up = err.find("gave up after waiting").expect("it gave up");
    assert!(waiting < gave_up, "{err}");
    assert!(
        err.contains("(lock.wait = 1s)"),
        "it gave up at lock.wait: {err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed", "{report}");
    // Nothing written, and the holder's lock untouched.
    let store = az.store("lake");
    let tables: Vec<String> = block_on(async {
        use futures::TryStreamExt;
        store
            .list(Some(&StorePath::from("iot")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|p| !p.starts_with("iot/_coldpath/"))
            .collect()
    });
    assert!(tables.is_empty(), "{tables:?}");
    assert_eq!(
        read_lock(&az, "features_hourly", DATE)["run_id"],
        "still-running-7"
    );
    // The lock taken before the held one (telemetry) was given back.
    assert_eq!(read_lock(&az, "telemetry", DATE)["released"], true);
}

#[test]
fn an_expired_lock_of_a_crashed_run_on_azurite_is_taken_over() {
    let az = azurite_with_raw();
    put_lock(&az, "telemetry", &holder("crashed-9", -60));
    let (code, report, err) = finish(spawn_run(DATE, "az://raw/", "az://lake/iot", &az.env()));
    assert_eq!(code, 0, "{report}\n{err}");
    let record = read_lock(&az, "telemetry", DATE);
    assert_eq!(record["run_id"], report["run_id"], "{record}");
    assert_eq!(record["released"], true, "{record}");
    assert!(err.contains("crashed-9"), "the takeover is logged: {err}");
}

/// The lock file of a local lake, held by this test process as another run would.
fn hold_local(lake: &Path, table: &str, run_id: &str) -> std::fs::File {
    let file = hold_local_lock(lake, table, DATE);
    let path = lake.join(format!("_coldpath/locks/{table}/{DATE}.lock"));
    std::fs::write(&path, serde_json::to_vec(&holder(run_id, 0)).unwrap()).unwrap();
    file
}

#[test]
fn a_held_local_lock_fails_the_run_after_lock_wait_then_frees() {
    let lake = temp_lake();
    let held = hold_local(lake.path(), "rejects", "local-holder-3");
    let (code, report) = run_date(DATE, lake.path(), &["--lock-wait", "1s"]);
    assert_eq!(code, 1, "{report}");
    let message = report["error"].as_str().unwrap();
    assert!(message.contains("local-holder-3"), "{message}");
    assert!(message.contains("`rejects`"), "{message}");
    assert!(!lake.path().join("telemetry/_delta_log").exists());
    drop(held);
    let (code, report) = run_date(DATE, lake.path(), &["--lock-wait", "1s"]);
    assert_eq!(code, 0, "{report}");
}

#[test]
fn two_local_runs_of_one_date_take_turns() {
    let lake = temp_lake();
    let held = hold_local(lake.path(), "telemetry", "test");
    let source = fixtures_raw();
    let source = source.to_str().unwrap();
    let lake_str = lake.path().to_str().unwrap();
    // Both are waiting on the same lock when it is let go: each has logged so.
    let mut runs = [0, 1].map(|_| Watched::spawn(DATE, source, lake_str, &[]));
    for run in &mut runs {
        run.wait_for(WAITING);
    }
    drop(held);
    let reports = runs.map(|run| {
        let (code, report, log) = run.finish();
        assert_eq!(code, 0, "{report}\n{log:#?}");
        // It waited on the held lock, then took it: the two events, in that order.
        let waiting = log.iter().position(|l| l.contains(WAITING));
        let took = log.iter().position(|l| l.contains(ACQUIRED));
        assert!(
            matches!((waiting, took), (Some(w), Some(t)) if w < t),
            "both runs waited on the held lock: {log:#?}"
        );
        assert!(
            log[waiting.unwrap()].contains("test"),
            "it names the holder"
        );
        report
    });
    assert_took_turns(lake.path());
    for report in &reports {
        assert!(
            report["durations"]["lock_ms"].as_u64().unwrap() > 0,
            "{report}"
        );
    }
    assert_date_rows(lake.path(), DATE);
}

#[test]
fn under_batch_the_lock_holder_report_and_logs_name_the_job_task_and_node() {
    let lake = temp_lake();
    let batch = [
        ("AZ_BATCH_JOB_ID", "coldpath-backfill-1".to_string()),
        ("AZ_BATCH_TASK_ID", "silver-2024-03-11".to_string()),
        ("AZ_BATCH_NODE_ID", "tvmps_0123_d".to_string()),
        // In a container task HOSTNAME is the container's id.
        ("HOSTNAME", "3f9c2a1b7e44".to_string()),
        ("COLDPATH_LOG_FORMAT", "json".to_string()),
    ];
    let mut args = run_args(
        DATE,
        fixtures_raw().to_str().unwrap(),
        lake.path().to_str().unwrap(),
    );
    args.push("--silver-only".into());
    let out = command(&args, &batch).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["batch"],
        json!({"job_id": "coldpath-backfill-1", "task_id": "silver-2024-03-11", "node_id": "tvmps_0123_d"})
    );
    // The local lock file keeps the last holder's record.
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            lake.path()
                .join(format!("_coldpath/locks/telemetry/{DATE}.lock")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["host"], "tvmps_0123_d");
    assert_eq!(record["batch"]["task_id"], "silver-2024-03-11");
    assert_eq!(record["run_id"], report["run_id"]);
    // Every JSON log line carries the ids.
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "{err}");
    for line in &lines {
        assert!(line.to_string().contains("silver-2024-03-11"), "{line}");
    }
    // Outside Batch, no ids.
    let (code, report) = run_date("2024-03-10", lake.path(), &[]);
    assert_eq!(code, 0);
    assert!(report.get("batch").is_none(), "{report}");
}
