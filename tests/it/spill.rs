//! Rejects past what a run may hold in memory (`[limits] memory` / 32) are spilled
//! to a local file and committed from it: the `rejects` table is the same as
//! when they are held, row for row, and every record read is in it once.
//!
//! Eight blobs of 750 lines each, one per hour of readings, in one daily folder:
//! every 125th line is not JSON (a `malformed_record` whose raw is the line),
//! every other line is a reading that the expectation `cold` drops
//! (`temperature < -100`, and every temperature is 20 or more), its raw the row
//! as JSON with its 600-byte message id. About 0.7 MB of rejects an hour, 5.6 MB
//! in all: over the 2 MiB that `memory = "64MiB"` allows, under the 64 MiB of
//! the default. With daily blobs no hour can close before the last blob is read,
//! so every hour is checked at the end of the pass: their dropped rows still
//! count against the bound as each hour is checked, and are spilled in several
//! parts, not held until the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const DATE: &str = "2024-03-11";
const HOURS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const LINES: u64 = 750;
const MALFORMED_EVERY: u64 = 125;

fn message_id(hour: u32, line: u64) -> String {
    format!("m{hour:02}-{line:05}-{}", "x".repeat(600))
}

fn blob(hour: u32) -> String {
    format!("telemetry/2024/03/11/part-{hour:02}.json")
}

/// The raw container: the eight blobs, written line by line.
fn raw(dir: &Path) -> PathBuf {
    let raw = empty_container(dir);
    for hour in HOURS {
        let path = raw.join(blob(hour));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let lines: Vec<String> = (1..=LINES)
            .map(|line| {
                if line.is_multiple_of(MALFORMED_EVERY) {
                    return format!("not json {hour} {line}");
                }
                serde_json::json!({
                    "deviceId": format!("d{}", line % 7),
                    "deviceType": "pump",
                    "timestamp": format!("{DATE}T{hour:02}:{:02}:{:02}Z", line / 60, line % 60),
                    "temperature": 20.0 + (line % 10) as f64,
                    "vibration": 5.0,
                    "messageId": message_id(hour, line),
                })
                .to_string()
            })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    raw
}

fn job(dir: &Path, raw: &Path, limits: &str) -> PathBuf {
    let text = format!(
        "name = \"spill\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/\"\nlake = {:?}\nmax_reject_ratio = 1.0\nallow_empty = true\n{limits}\n[[expectations]]\nname = \"cold\"\nexpr = \"temperature < -100\"\naction = \"drop\"\n",
        raw.to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

type Row = (String, i64, String, String, String);

/// `coldpath run` of `job` for the date into `lake`.
fn run_args<'a>(job: &'a Path, lake: &'a Path) -> [&'a str; 9] {
    [
        "run",
        "--job",
        job.to_str().unwrap(),
        "--date",
        DATE,
        "--lake",
        lake.to_str().unwrap(),
        "--labels-as-of",
        LABELS,
    ]
}

/// Runs the job; its exit code, report, stderr and the `rejects` rows, sorted.
fn run(dir: &Path, limits: &str) -> (i32, serde_json::Value, String, Vec<Row>) {
    let raw = raw(dir);
    let job = job(dir, &raw, limits);
    let lake = dir.join("lake");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A folder of the test's own, so the run's spill file (which has no name) is made there.
    let args = run_args(&job, &lake);
    let env = [
        ("TMPDIR", tmp.to_str().unwrap().to_string()),
        (
            "COLDPATH_LOG",
            "warn,coldpath::run::rejects=debug".to_string(),
        ),
    ];
    let out = coldpath_env(&args, &env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stderr}"));
    let mut rows: Vec<Row> = read_rows(&lake, "rejects")
        .iter()
        .map(|r| {
            (
                get(r, "source_file").as_str().unwrap().to_string(),
                get(r, "line").as_i64().unwrap(),
                get(r, "reason").as_str().unwrap().to_string(),
                get(r, "detail").as_str().unwrap().to_string(),
                get(r, "raw").as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    (out.status.code().unwrap(), report, stderr, rows)
}

const SPILLING: &str = "spilling them to a local file";
const PART: &str = "a part of the rejects spilled";

#[test]
fn rejects_past_their_memory_bound_are_spilled_and_committed_whole() {
    let (spilled_dir, held_dir) = (temp_lake(), temp_lake());
    let (code, report, stderr, spilled) = run(spilled_dir.path(), "[limits]\nmemory = \"64MiB\"\n");
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert!(stderr.contains(SPILLING), "2 MiB held at most: {stderr}");
    let parts = stderr.matches(PART).count();
    assert!(parts >= 2, "{parts} parts spilled: {stderr}");
    let (code, _, stderr, held) = run(held_dir.path(), "");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(SPILLING), "64 MiB held at most: {stderr}");

    // Every line of every blob, once, as the blobs were written.
    let want_lines = HOURS.len() as u64 * LINES;
    let malformed = HOURS.len() as u64 * (LINES / MALFORMED_EVERY);
    assert_eq!(report["records_read"], want_lines);
    assert_eq!(report["rejected"], want_lines);
    assert_eq!(report["rejects_by_reason"]["malformed_record"], malformed);
    assert_eq!(
        report["rejects_by_reason"]["failed_expectation"],
        want_lines - malformed
    );
    assert_eq!(spilled.len() as u64, want_lines);
    let mut per_blob: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (file, line, reason, detail, raw) in &spilled {
        per_blob.entry(file).or_default().push(*line);
        let hour: u32 = file["telemetry/2024/03/11/part-".len()..][..2]
            .parse()
            .unwrap();
        let line = *line as u64;
        if line.is_multiple_of(MALFORMED_EVERY) {
            assert_eq!(reason, "malformed_record", "{file}:{line}");
            assert_eq!(raw, &format!("not json {hour} {line}"));
        } else {
            assert_eq!(
                (reason.as_str(), detail.as_str()),
                ("failed_expectation", "cold")
            );
            let row: serde_json::Value = serde_json::from_str(raw).unwrap();
            assert_eq!(row["message_id"], message_id(hour, line), "{file}:{line}");
            assert_eq!(
                row["temperature"],
                20.0 + (line % 10) as f64,
                "{file}:{line}"
            );
        }
    }
    let every_line: Vec<i64> = (1..=LINES as i64).collect();
    for hour in HOURS {
        let mut lines = per_blob.remove(blob(hour).as_str()).unwrap_or_default();
        lines.sort();
        assert_eq!(lines, every_line, "{}", blob(hour));
    }
    assert!(per_blob.is_empty(), "{per_blob:?}");

    // Held or spilled, the same rows.
    assert_eq!(spilled, held);

    // Spilled again into the same lake: the table exists now, so the rows go to
    // delta-rs's partition writer of the table as it is (the first run created
    // it through the write operation); the date's rows are replaced, not added.
    let (code, again_report, stderr, again) =
        run(spilled_dir.path(), "[limits]\nmemory = \"64MiB\"\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(SPILLING), "{stderr}");
    assert_eq!(again, spilled);
    let run_id = again_report["run_id"].as_str().unwrap();
    for row in read_rows(&spilled_dir.path().join("lake"), "rejects") {
        assert_eq!(get(&row, "run_id"), run_id);
    }
}

#[test]
fn a_spill_folder_that_cannot_be_written_fails_the_run_naming_it_and_commits_nothing() {
    let dir = temp_lake();
    let raw = raw(dir.path());
    let job = job(dir.path(), &raw, "[limits]\nmemory = \"64MiB\"\n");
    let lake = dir.path().join("lake");
    let missing = dir.path().join("no-such-folder");
    let out = coldpath_env(
        &run_args(&job, &lake),
        &[("TMPDIR", missing.to_str().unwrap().to_string())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("spill file"), "{error}");
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
    // Nothing committed: no table has a version, and no data file is left.
    for table in ["telemetry", "rejects", "expectations"] {
        assert!(!lake.join(table).join("_delta_log").exists(), "{table}");
    }
    assert_nothing_uncommitted(&lake);
}

/// A day of 2,000 devices, each reading every 30 minutes, in a blob an hour.
fn many_devices(dir: &Path) -> PathBuf {
    let raw = empty_container(dir);
    for hour in 0..24u32 {
        let path = raw.join(format!("telemetry/2024/03/11/part-{hour:02}.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = String::new();
        for minute in [7u32, 37] {
            for d in 0..2_000u32 {
                let reading = serde_json::json!({
                    "deviceId": format!("gw-{d:04}"),
                    "deviceType": "pump",
                    "timestamp": format!("{DATE}T{hour:02}:{minute:02}:{:02}Z", d % 60),
                    "temperature": 20.0 + f64::from(d % 13),
                    "pressure": 100 + d % 7,
                    "vibration": 5.0 + f64::from(hour % 5),
                    "messageId": format!("gw-{d:04}-{hour:02}{minute:02}"),
                });
                text.push_str(&reading.to_string());
                text.push('\n');
            }
        }
        std::fs::write(&path, text).unwrap();
    }
    raw
}

/// The derived tables a run stages are held up to `[limits] memory` / 16 each
/// and spilled past it: at 64 MiB (4 MiB a table) the day's 48,000
/// `features_hourly` rows and 96,000 `telemetry_minute` rows are spilled, at the
/// default they are held, and every table is the same both ways. Where the
/// spill file cannot be made, the run fails naming the folder and commits nothing.
#[test]
fn derived_tables_past_their_share_are_spilled_and_the_same_as_held() {
    let dir = temp_lake();
    let raw = many_devices(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let run = |name: &str, limits: &str, tmp: &Path| {
        let lake = dir.path().join(name);
        let text = format!(
            "name = \"spill\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/\"\nlake = {:?}\n{limits}\n",
            raw.to_str().unwrap(),
            lake.to_str().unwrap(),
        );
        let job = dir.path().join(format!("{name}.toml"));
        std::fs::write(&job, text).unwrap();
        let env = [
            ("TMPDIR", tmp.to_str().unwrap().to_string()),
            ("COLDPATH_LOG", "warn".to_string()),
        ];
        let out = coldpath_env(&run_args(&job, &lake), &env);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out, lake, stderr)
    };
    // A spill folder that cannot be written: exit 1 naming it, nothing committed.
    let missing = dir.path().join("no-such-folder");
    let (out, lake, stderr) = run("failed", "[limits]\nmemory = \"64MiB\"", &missing);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("telemetry_minute: creating its spill file"),
        "{error}"
    );
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
    for table in RUN_TABLES {
        assert!(!lake.join(table).join("_delta_log").exists(), "{table}");
    }
    assert_nothing_uncommitted(&lake);

    let ok = |(out, lake, stderr): (std::process::Output, PathBuf, String)| {
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (lake, stderr)
    };
    let (spilled, stderr) = ok(run("spilled", "[limits]\nmemory = \"64MiB\"", &tmp));
    for table in ["features_hourly", "telemetry_minute"] {
        let said = format!("`{table}` passed what a staged table may hold in memory");
        assert!(stderr.contains(&said), "{table}: {stderr}");
    }
    assert!(
        !stderr.contains("`device_health` passed"),
        "2,000 rows: {stderr}"
    );
    let (held, stderr) = ok(run("held", "", &tmp));
    assert!(!stderr.contains("may hold in memory"), "{stderr}");
    assert_eq!(read_rows(&held, "features_hourly").len(), 2_000 * 24);
    assert_eq!(read_rows(&held, "telemetry_minute").len(), 2_000 * 24 * 2);
    for table in RUN_TABLES {
        let (a, b) = (
            rows_without_run(&spilled, table),
            rows_without_run(&held, table),
        );
        assert!(
            a == b,
            "{table}: {} rows spilled, {} held",
            a.len(),
            b.len()
        );
    }
    assert_nothing_uncommitted(&spilled);
}
