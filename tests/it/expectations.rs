//! Declared expectations (`[[expectations]]`): warn, drop and fail on literal rows, counted by hand.
//!
//! One blob of eight JSON lines for 2024-03-11 10:00, each designed for a
//! purpose (see [`LINES`]). The contract's rules and dedup run first: line 5
//! is out of range (vibration 600 > 500) and line 6 repeats line 1's message
//! id, so six rows reach the expectations: lines 1, 2, 3, 4, 7, 8.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::common::*;

const DATE: &str = "2024-03-11";
const BLOB: &str = "telemetry/2024/03/11/10/part.json";

/// (device, type, minute, temperature, vibration, message id); `None` leaves the field out.
type Line = (
    &'static str,
    Option<&'static str>,
    u32,
    Option<f64>,
    f64,
    &'static str,
);

const LINES: [Line; 8] = [
    ("d1", Some("pump"), 0, Some(20.0), 5.0, "m1"), // 1: passes every rule
    ("d1", Some("pump"), 1, Some(0.0), 5.0, "m2"),  // 2: temperature 0
    ("d2", None, 2, Some(30.0), 5.0, "m3"),         // 3: no type
    ("d2", None, 3, Some(0.0), 5.0, "m4"),          // 4: no type and temperature 0
    ("d3", Some("fan"), 4, Some(25.0), 600.0, "m5"), // 5: out_of_range, never checked
    ("d1", Some("pump"), 0, Some(20.0), 5.0, "m1"), // 6: a copy of line 1
    ("d3", Some("fan"), 5, None, 7.0, "m7"),        // 7: no temperature: `<> 0` is NULL
    ("d3", Some("fan"), 6, Some(40.0), 95.0, "m8"), // 8: vibration 95
];

/// Line 4's message id: 6,000 bytes, so its dropped row's `raw` is longer than the 4 KiB a
/// record's raw is cut at. A dropped row's raw is whole (CONTRACT.md: no value read is lost).
fn long_id() -> String {
    format!("m4-{}", "x".repeat(6_000))
}

/// The raw container: the blob and empty reference logs.
fn raw(dir: &Path) -> PathBuf {
    let raw = empty_container(dir);
    let blob = raw.join(BLOB);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    let text: Vec<String> = LINES
        .iter()
        .map(|&(device, ty, minute, temp, vib, id)| {
            let mut o = serde_json::json!({
                "deviceId": device,
                "timestamp": format!("{DATE}T10:{minute:02}:00Z"),
                "vibration": vib,
                "messageId": if id == "m4" { long_id() } else { id.to_string() },
            });
            if let Some(ty) = ty {
                o["deviceType"] = ty.into();
            }
            if let Some(t) = temp {
                o["temperature"] = t.into();
            }
            o.to_string()
        })
        .collect();
    std::fs::write(&blob, text.join("\n") + "\n").unwrap();
    raw
}

/// A job over `raw` into `dir/lake` with `expectations` (TOML) appended.
fn job(dir: &Path, raw: &Path, file: &str, expectations: &str) -> PathBuf {
    let text = format!(
        "name = \"expect\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\nmax_reject_ratio = 1.0\n{expectations}",
        raw.to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn expectation(name: &str, expr: &str, action: &str) -> String {
    format!("[[expectations]]\nname = {name:?}\nexpr = {expr:?}\naction = {action:?}\n")
}

/// The two drop rules and a warning: lines 2, 3, 4 and 7 dropped, line 4 by both.
fn drop_and_warn() -> String {
    [
        expectation("not_zero", "temperature <> 0", "drop"),
        expectation("has_type", "device_type IS NOT NULL", "drop"),
        expectation("calm", "vibration < 90", "warn"),
    ]
    .concat()
}

fn run(job: &Path) -> (i32, Value) {
    let lake = job.parent().unwrap().join("lake");
    run_job(job, DATE, &lake, &["--labels-as-of", LABELS])
}

/// (name, action, checked, passed, failed) of the report's expectations.
fn figures(report: &Value) -> Vec<(String, String, u64, u64, u64)> {
    report["expectations"]
        .as_array()
        .unwrap_or_else(|| panic!("no expectations in {report}"))
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["checked"].as_u64().unwrap(),
                e["passed"].as_u64().unwrap(),
                e["failed"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The outputs the report's `outputs_ms` times, by their tables.
fn output_keys(report: &Value) -> Vec<String> {
    let times = report["outputs_ms"].as_object().expect("outputs_ms");
    assert!(times.values().all(|ms| ms.is_u64()), "{report}");
    times.keys().cloned().collect()
}

fn fig(name: &str, action: &str, checked: u64, failed: u64) -> (String, String, u64, u64, u64) {
    (
        name.into(),
        action.into(),
        checked,
        checked - failed,
        failed,
    )
}

/// The table's rows of the date as (name, action, checked, failed, run_id).
fn table_rows(lake: &Path) -> Vec<(String, String, i64, i64, String)> {
    let mut rows: Vec<_> = read_rows(lake, "expectations")
        .iter()
        .filter(|r| get(r, "run_date") == DATE)
        .map(|r| {
            (
                get(r, "name").as_str().unwrap().to_string(),
                get(r, "action").as_str().unwrap().to_string(),
                get(r, "checked").as_i64().unwrap(),
                get(r, "failed").as_i64().unwrap(),
                get(r, "run_id").as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn expectation_rejects(lake: &Path) -> Vec<Map<String, Value>> {
    let mut rows: Vec<_> = read_rows(lake, "rejects")
        .into_iter()
        .filter(|r| get(r, "reason") == "failed_expectation")
        .collect();
    rows.sort_by_key(|r| get(r, "line").as_i64());
    rows
}

#[test]
fn drop_and_warn_count_by_hand_and_drop_rows_into_rejects() {
    let dir = temp_lake();
    let raw = raw(dir.path());
    let job = job(dir.path(), &raw, "drop.toml", &drop_and_warn());
    let (code, report) = run(&job);
    assert_eq!(code, 0, "{report}");

    // Six rows checked (lines 1 2 3 4 7 8). not_zero fails 2, 4 and 7 (NULL is
    // not true); has_type fails 3 and 4; calm fails 8.
    assert_eq!(
        figures(&report),
        vec![
            fig("not_zero", "drop", 6, 3),
            fig("has_type", "drop", 6, 2),
            fig("calm", "warn", 6, 1),
        ]
    );
    // Dropped: 2, 3, 4, 7 (line 4 once). Written: 1 and 8 (8 only warned).
    // read 8 = written 2 + rejected (1 out_of_range + 4 dropped) + 1 duplicate.
    assert_eq!(report["records_read"], 8);
    // Each output of the hours says what it spent, by its tables.
    assert_eq!(
        output_keys(&report),
        [
            "expectations",
            "features_hourly+device_health",
            "telemetry_minute"
        ]
    );
    assert_eq!(report["rows_written"], 2);
    assert_eq!(report["rejected"], 5);
    assert_eq!(report["duplicates"], 1);
    assert_eq!(report["other_dates"], 0);
    assert_eq!(report["rejects_by_reason"]["failed_expectation"], 4);
    assert_eq!(report["rejects_by_reason"]["out_of_range"], 1);

    let lake = dir.path().join("lake");
    let mut silver: Vec<String> = read_rows(&lake, "telemetry")
        .iter()
        .map(|r| get(r, "message_id").as_str().unwrap().to_string())
        .collect();
    silver.sort();
    assert_eq!(silver, ["m1", "m8"]);

    let dropped = expectation_rejects(&lake);
    let by_line: Vec<(i64, &str)> = dropped
        .iter()
        .map(|r| {
            (
                get(r, "line").as_i64().unwrap(),
                get(r, "detail").as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_line,
        [
            (2, "not_zero"),
            (3, "has_type"),
            (4, "not_zero, has_type"),
            (7, "not_zero")
        ]
    );
    for r in &dropped {
        assert!(
            get(r, "source_file").as_str().unwrap().ends_with(BLOB),
            "{r:?}"
        );
        assert_eq!(get(r, "run_date"), DATE);
    }
    // `raw` is the row as JSON: silver's data columns, nulls written out.
    let row4: Value = serde_json::from_str(get(&dropped[2], "raw").as_str().unwrap()).unwrap();
    let mut keys: Vec<&str> = row4
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut data = [
        "device_id",
        "device_type",
        "event_time",
        "temperature",
        "pressure",
        "vibration",
        "priority",
        "message_id",
        "enqueued_time",
    ];
    data.sort();
    assert_eq!(
        keys, data,
        "the contract's silver columns less the run's bookkeeping"
    );
    assert_eq!(row4["device_id"], "d2");
    assert_eq!(row4["device_type"], Value::Null);
    assert_eq!(row4["temperature"].as_f64(), Some(0.0));
    assert_eq!(row4["message_id"], long_id().as_str(), "raw is not cut");
    assert!(
        row4["event_time"]
            .as_str()
            .unwrap()
            .starts_with("2024-03-11T10:03:00"),
        "{row4}"
    );
    let row7: Value = serde_json::from_str(get(&dropped[3], "raw").as_str().unwrap()).unwrap();
    assert!(
        row7.get("temperature").is_some_and(Value::is_null),
        "{row7}"
    );

    // Features and minutes come from the rows kept: d1 has one reading in the
    // hour (line 2 went), d2 none at all, d3 one (line 7 went, line 5 was rejected).
    let mut features: Vec<(String, i64)> = read_rows(&lake, "features_hourly")
        .iter()
        .map(|r| {
            (
                get(r, "device_id").as_str().unwrap().to_string(),
                get(r, "reading_count").as_i64().unwrap(),
            )
        })
        .collect();
    features.sort();
    assert_eq!(features, [("d1".to_string(), 1), ("d3".to_string(), 1)]);
    let minutes: i64 = read_rows(&lake, "telemetry_minute")
        .iter()
        .map(|r| get(r, "reading_count").as_i64().unwrap())
        .sum();
    assert_eq!(minutes, 2);

    // The table, read back: one row per expectation, this run's.
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        table_rows(&lake),
        vec![
            ("calm".into(), "warn".into(), 6, 1, run_id.clone()),
            ("has_type".into(), "drop".into(), 6, 2, run_id.clone()),
            ("not_zero".into(), "drop".into(), 6, 3, run_id.clone()),
        ]
    );
    assert!(report["tables"].get("expectations").is_some(), "{report}");
    // And its Synapse view types every column as written.
    crate::consumers::assert_view_types(&lake, "expectations");

    // A rerun replaces the date with the same rows in every table.
    let tables = ["telemetry", "rejects", "expectations", "features_hourly"];
    let before: Vec<Vec<String>> = tables.iter().map(|t| rows_without_run(&lake, t)).collect();
    let (code, again) = run(&job);
    assert_eq!(code, 0, "{again}");
    assert_eq!(figures(&again), figures(&report));
    let after: Vec<Vec<String>> = tables.iter().map(|t| rows_without_run(&lake, t)).collect();
    assert_eq!(after, before);
    assert_eq!(table_rows(&lake).len(), 3, "replaced, not appended");

    // `maintain` keeps it like the other tables, rows unchanged.
    let out = coldpath(&[
        "maintain",
        "--job",
        job.to_str().unwrap(),
        "--vacuum-retention",
        "0s",
        "--unsafe-retention",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let maintained: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        maintained["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "expectations"),
        "{maintained}"
    );
    assert_eq!(rows_without_run(&lake, "expectations"), before[2]);
}

#[test]
fn a_fail_expectation_stops_the_run_like_the_gate() {
    let dir = temp_lake();
    let raw = raw(dir.path());
    let rules = [
        expectation("not_zero", "temperature <> 0", "drop"),
        expectation("calm", "vibration < 90", "fail"),
        // The run's bookkeeping columns can be named too: every row is from the blob.
        expectation(
            "elsewhere",
            &format!("source_file <> '{BLOB}' AND event_date = DATE '{DATE}'"),
            "warn",
        ),
    ]
    .concat();
    let job = job(dir.path(), &raw, "fail.toml", &rules);
    let (code, report) = run(&job);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["status"], "quality_gate_failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("`calm`") && error.contains("1 of 6"),
        "{error}"
    );
    // It says what was written: the rejects, and not the expectations table.
    assert!(error.contains("rejects written"), "{error}");
    assert!(!error.contains("expectations written"), "{error}");
    assert_eq!(
        figures(&report),
        vec![
            fig("not_zero", "drop", 6, 3),
            fig("calm", "fail", 6, 1),
            fig("elsewhere", "warn", 6, 6)
        ]
    );
    // Rejects written and nothing else (the figures are in the report); silver and gold not.
    let lake = dir.path().join("lake");
    assert_eq!(expectation_rejects(&lake).len(), 3);
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "expectations",
    ] {
        assert!(!lake.join(table).join("_delta_log").exists(), "{table}");
        assert!(report["tables"].get(table).is_none(), "{report}");
    }
    // Nor is any data file of the run left outside a log (silver streamed some).
    assert_nothing_uncommitted(&lake);

    // With the reject ratio over its bound as well (4 rejects of 8 records read
    // against 0.1), the error names both causes.
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("max_reject_ratio = 1.0", "max_reject_ratio = 0.1"),
    )
    .unwrap();
    let (code, report) = run(&job);
    assert_eq!(code, 3, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("`calm`"), "{error}");
    assert!(
        error.contains("reject ratio 0.5000 is over max_reject_ratio 0.1"),
        "{error}"
    );
}

#[test]
fn a_bad_expression_is_a_configuration_error_before_anything_is_read() {
    let dir = temp_lake();
    // The source does not exist: a run that got as far as reading would fail otherwise.
    let raw = dir.path().join("nowhere");
    for (expr, says) in [
        ("temperature >", "SQL"),
        ("humidity > 3", "humidity"),
        ("temperature + 1", "not boolean"),
    ] {
        let rules = [
            expectation("fine", "temperature > -40", "warn"),
            expectation("broken", expr, "drop"),
        ]
        .concat();
        let job = job(dir.path(), &raw, "bad.toml", &rules);
        let out = coldpath(&["run", "--job", job.to_str().unwrap(), "--date", DATE]);
        assert_eq!(out.status.code(), Some(2), "{expr}");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("expectation `broken`"), "{expr}: {text}");
        assert!(text.contains(says), "{expr}: {text}");
        assert!(!text.contains("`fine`"), "{text}");
        // Nothing locked, nothing written.
        assert!(!dir.path().join("lake").exists(), "{expr}");
    }
}

#[test]
fn with_no_expectations_nothing_changes() {
    let dir = temp_lake();
    let raw = raw(dir.path());
    let job = job(dir.path(), &raw, "none.toml", "");
    let (code, report) = run(&job);
    assert_eq!(code, 0, "{report}");
    assert!(report.get("expectations").is_none(), "{report}");
    assert_eq!(
        output_keys(&report),
        ["features_hourly+device_health", "telemetry_minute"]
    );
    // Every row of the contract: lines 1 2 3 4 7 8.
    assert_eq!(report["rows_written"], 6);
    assert!(report["rejects_by_reason"]
        .get("failed_expectation")
        .is_none());
    assert!(!dir.path().join("lake/expectations").exists());
}

#[test]
fn plan_lists_the_expectations_table_only_when_declared() {
    let dir = temp_lake();
    let raw = raw(dir.path());
    let replaces = |job: &Path| -> Vec<String> {
        let out = coldpath(&["plan", "--job", job.to_str().unwrap(), "--date", DATE]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        plan["replaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let table = format!("expectations: run_date={DATE}");
    let declared = replaces(&job(dir.path(), &raw, "drop.toml", &drop_and_warn()));
    assert!(declared.contains(&table), "{declared:?}");
    // Before rejects, the run's last commit.
    assert_eq!(
        declared.last().unwrap(),
        &format!("rejects: run_date={DATE}")
    );
    let none = replaces(&job(dir.path(), &raw, "none.toml", ""));
    assert!(!none.contains(&table), "{none:?}");
    assert_eq!(none.len() + 1, declared.len());
}

/// An expectation may name a column the schema declares and, with drift rescue,
/// `_rescued_data` (silver's columns, as docs/job-file.md says). Hour 10 holds
/// humidity 40, 97 and none, and one record with a field nothing declares; hour
/// 11 holds no humidity at all (its column is null there, as in silver). The
/// reading of 97 is dropped with its humidity in `raw`; the warning counts the
/// one rescued record.
#[test]
fn an_expectation_may_name_a_declared_column_and_the_rescued_data() {
    let dir = temp_lake();
    let raw = empty_container(dir.path());
    let record = |minute: u32, hour: u32, extra: Value| {
        let mut o = serde_json::json!({
            "deviceId": "d1",
            "timestamp": format!("{DATE}T{hour:02}:{minute:02}:00Z"),
            "temperature": 20.0,
            "messageId": format!("m{hour}-{minute}"),
        });
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o.to_string()
    };
    let ten = [
        record(0, 10, serde_json::json!({"humidity": 40.0})),
        record(1, 10, serde_json::json!({"humidity": 97.0})),
        record(2, 10, serde_json::json!({})),
        record(3, 10, serde_json::json!({"humidity": 41.0, "fw": "1.2"})),
    ];
    let eleven = [
        record(0, 11, serde_json::json!({})),
        record(1, 11, serde_json::json!({})),
    ];
    for (hour, lines) in [(10, &ten[..]), (11, &eleven[..])] {
        let path = raw.join(format!("telemetry/2024/03/11/{hour}/part.json"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let schema = schema_with_humidity(dir.path());
    let rules = [
        format!(
            "schema = {:?}\n[drift]\nrescue = true\n",
            schema.to_str().unwrap()
        ),
        expectation("dry", "humidity IS NULL OR humidity < 95", "drop"),
        expectation("known_fields", "_rescued_data IS NULL", "warn"),
    ]
    .concat();
    let job = job(dir.path(), &raw, "declared.toml", &rules);
    let (code, report) = run(&job);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        figures(&report),
        vec![fig("dry", "drop", 6, 1), fig("known_fields", "warn", 6, 1)]
    );
    let dropped = expectation_rejects(&dir.path().join("lake"));
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(get(&dropped[0], "line"), 2);
    assert_eq!(get(&dropped[0], "detail"), "dry");
    let raw: Value = serde_json::from_str(get(&dropped[0], "raw").as_str().unwrap()).unwrap();
    assert_eq!(raw["humidity"], 97.0, "{raw}");
    assert_eq!(raw["message_id"], "m10-1", "{raw}");
    assert_eq!(report["rows_written"], 5, "{report}");
}
