//! Schema drift (issue 17): devices that start sending an undeclared field and a retyped one part-way through a day lose nothing; declared columns evolve silver.
//!
//! The raw container is written here, record by record, and every expected
//! value is taken from those records (the inputs), never from coldpath's output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::common::*;

/// The contract's silver columns (CONTRACT.md §2), in order.
const CONTRACT: [&str; 13] = [
    "device_id",
    "device_type",
    "event_time",
    "temperature",
    "pressure",
    "vibration",
    "priority",
    "message_id",
    "enqueued_time",
    "source_file",
    "ingested_at",
    "run_id",
    "event_date",
];

/// A raw container with the reference logs (empty) and nothing else yet.
fn container(dir: &Path) -> PathBuf {
    empty_container(dir)
}

/// Writes one blob of the `telemetry/{yyyy}/{MM}/{dd}/{HH}/` layout.
fn blob(raw: &Path, date: &str, hour: u32, name: &str, text: &str) {
    let dir = raw.join(format!("telemetry/{}/{hour:02}", date.replace('-', "/")));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

fn json_lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// A job over `raw` into `dir/lake`, with `extra` appended (a `schema = …`, a `[drift]`).
fn job(dir: &Path, raw: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"drift\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\nmax_reject_ratio = 0.9\n{extra}",
        raw.to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(job: &Path, date: &str) -> Value {
    let out = coldpath(&[
        "run",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--labels-as-of",
        "2024-06-01T00:00:00Z",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    report
}

fn plan(job: &Path, date: &str) -> Value {
    let out = coldpath(&["plan", "--job", job.to_str().unwrap(), "--date", date]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn us(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .timestamp_micros()
}

/// The drift day: old firmware at 08:00, new firmware at 10:00 (adds `humidity`
/// and `fw`, sends `temp` for p1 and `vibration` as an object for p2), and a
/// CSV producer at 12:00 with an extra `humidity` column and one `n/a`.
/// Returns the JSON records and the CSV rows (as header → cell maps).
fn drift_day(raw: &Path) -> (Vec<Value>, Vec<Map<String, Value>>) {
    let date = "2024-03-11";
    let old: Vec<Value> = (0..4)
        .map(|i| {
            json!({"deviceId": format!("p{}", i % 2 + 1), "timestamp": format!("{date}T08:0{i}:00Z"),
                   "temperature": 20 + i, "vibration": 1.5 + i as f64, "messageId": format!("m08-{i}"),
                   "EventProcessedUtcTime": "2024-03-11T08:30:00Z", "PartitionId": 1})
        })
        .collect();
    let new: Vec<Value> = (0..6)
        .map(|i| {
            let ts = format!("{date}T10:0{i}:00Z");
            if i % 2 == 0 {
                json!({"deviceId": "p1", "timestamp": ts, "temp": 30 + i, "vibration": 2.0 + i as f64,
                       "humidity": 40 + i, "fw": "2.0", "messageId": format!("m10-{i}")})
            } else {
                json!({"deviceId": "p2", "timestamp": ts, "temperature": 30 + i,
                       "vibration": {"x": i, "y": i as f64 + 0.5},
                       "humidity": 40 + i, "fw": "2.0", "messageId": format!("m10-{i}")})
            }
        })
        .collect();
    blob(raw, date, 8, "old.json", &json_lines(&old));
    blob(raw, date, 10, "new.json", &json_lines(&new));
    let header = [
        "deviceId",
        "timestamp",
        "temperature",
        "humidity",
        "messageId",
    ];
    let cells = [
        ["p3", "2024-03-11T12:00:00Z", "21.5", "50", "m12-0"],
        ["p3", "2024-03-11T12:01:00Z", "n/a", "51", "m12-1"],
    ];
    let mut csv = header.join(",") + "\n";
    for row in &cells {
        csv += &(row.join(",") + "\n");
    }
    blob(raw, date, 12, "c.csv", &csv);
    let csv_rows = cells
        .iter()
        .map(|row| {
            header
                .iter()
                .zip(row)
                .map(|(h, c)| (h.to_string(), Value::String(c.to_string())))
                .collect()
        })
        .collect();
    (old.into_iter().chain(new).collect(), csv_rows)
}

/// The silver column a raw field feeds (the shipped column map), or `None`.
fn column_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "deviceId" => "device_id",
        "timestamp" => "event_time",
        "temperature" | "temp" => "temperature",
        "vibration" => "vibration",
        "messageId" => "message_id",
        _ => return None,
    })
}

/// Whether the column holds the raw value (numbers as numbers, times as µs).
fn column_holds(row: &Map<String, Value>, column: &str, raw: &Value) -> bool {
    let got = get(row, column);
    match (column, raw) {
        ("event_time", Value::String(s)) => got.as_i64() == Some(us(s)),
        (_, Value::String(s)) => match s.parse::<f64>() {
            Ok(n) if column != "device_id" && column != "message_id" => got.as_f64() == Some(n),
            _ => got.as_str() == Some(s),
        },
        (_, Value::Number(n)) => got.as_f64() == n.as_f64(),
        _ => false,
    }
}

/// Every value of every record is in its column, in `_rescued_data` under its
/// name, in the ignore list, or its whole record is in `rejects`; returns the
/// message ids rejected.
fn assert_every_value_kept(
    lake: &Path,
    records: &[Map<String, Value>],
    ignored: &[&str],
) -> Vec<String> {
    let silver = read_rows(lake, "telemetry");
    let rejects = read_rows(lake, "rejects");
    let mut rejected = Vec::new();
    for rec in records {
        let id = rec["messageId"].as_str().unwrap();
        let Some(row) = silver.iter().find(|r| get(r, "message_id") == id) else {
            assert!(
                rejects
                    .iter()
                    .any(|r| get(r, "raw").as_str().unwrap().contains(id)),
                "{id} is neither in silver nor in rejects"
            );
            rejected.push(id.to_string());
            continue;
        };
        let rescued: Map<String, Value> = match get(row, "_rescued_data") {
            Value::String(s) => serde_json::from_str(s).unwrap(),
            _ => Map::new(),
        };
        for (field, value) in rec {
            let in_column = column_of(field).is_some_and(|c| column_holds(row, c, value));
            let in_rescued = rescued.get(field) == Some(value);
            assert!(
                in_column || in_rescued || ignored.contains(&field.as_str()),
                "{id}: `{field}` = {value} is lost (row {row:?})"
            );
        }
    }
    rejected
}

fn as_maps(records: &[Value]) -> Vec<Map<String, Value>> {
    records
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

fn field_names(lake: &Path) -> Vec<String> {
    let table = open_table(lake, "telemetry");
    let snapshot = table.snapshot().unwrap();
    snapshot
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect()
}

const SA_SYSTEM: [&str; 2] = ["EventProcessedUtcTime", "PartitionId"];

#[test]
fn with_drift_off_the_tables_are_as_the_contract_and_a_retyped_value_is_a_reject() {
    let dir = temp_lake();
    let raw = container(dir.path());
    drift_day(&raw);
    let report = run(&job(dir.path(), &raw, "off", ""), "2024-03-11");
    let lake = dir.path().join("lake");
    assert_eq!(field_names(&lake), CONTRACT.map(String::from).to_vec());
    assert!(report.get("drift").is_none(), "{report}");
    // p2's three object vibrations and the CSV's `n/a` are type mismatches.
    assert_eq!(report["rejects_by_reason"]["type_mismatch"], 4, "{report}");
    assert_eq!(report["rows_written"], 4 + 6 + 2 - 4);
    let silver = read_rows(&lake, "telemetry");
    assert!(silver.iter().all(|r| r.get("_rescued_data").is_none()));
}

#[test]
fn a_retyped_field_is_rejected_or_rescued_and_undeclared_fields_are_rescued() {
    let dir = temp_lake();
    let raw = container(dir.path());
    let (json_records, csv_rows) = drift_day(&raw);
    let all: Vec<Map<String, Value>> = as_maps(&json_records).into_iter().chain(csv_rows).collect();
    let lake = dir.path().join("lake");

    // on_type_mismatch = "reject": the retyped records are rejects, the new fields rescued.
    let reject = job(
        dir.path(),
        &raw,
        "reject",
        "[drift]\nrescue = true\ncandidate_share = 0.1\n",
    );
    let report = run(&reject, "2024-03-11");
    assert_eq!(report["rejects_by_reason"]["type_mismatch"], 4, "{report}");
    let rejected = assert_every_value_kept(&lake, &all, &SA_SYSTEM);
    assert_eq!(rejected, ["m10-1", "m10-3", "m10-5", "m12-1"]);
    // Rescued: p1's three new-firmware records (humidity, fw) and the CSV's first row (humidity).
    let drift = &report["drift"];
    assert_eq!(drift["rows"], 8, "{report}");
    assert_eq!(drift["rescued_records"], 3 + 1);
    assert_eq!(drift["rescued_fields"], 3 * 2 + 1);
    assert_eq!(drift["rescued_by_field"], json!({"fw": 3, "humidity": 4}));
    assert_eq!(drift["candidate_columns"], json!(["fw", "humidity"]));
    assert_eq!(
        drift["added_columns"],
        json!([]),
        "a new table is created, not evolved"
    );

    // on_type_mismatch = "rescue", the same date again: every record is a row.
    let rescue = job(
        dir.path(),
        &raw,
        "rescue",
        "[drift]\nrescue = true\non_type_mismatch = \"rescue\"\ncandidate_share = 0.1\n",
    );
    let report = run(&rescue, "2024-03-11");
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(report["rows_written"], 12);
    assert!(assert_every_value_kept(&lake, &all, &SA_SYSTEM).is_empty());
    let silver = read_rows(&lake, "telemetry");
    let row = |id: &str| {
        silver
            .iter()
            .find(|r| get(r, "message_id") == id)
            .unwrap()
            .clone()
    };
    let rescued = |id: &str| -> Value {
        serde_json::from_str(get(&row(id), "_rescued_data").as_str().unwrap()).unwrap()
    };
    assert_eq!(get(&row("m10-3"), "vibration"), &Value::Null);
    assert_eq!(
        rescued("m10-3"),
        json!({"vibration": {"x": 3, "y": 3.5}, "humidity": 43, "fw": "2.0"})
    );
    assert_eq!(
        get(&row("m10-2"), "temperature").as_f64(),
        Some(32.0),
        "`temp` is an alias"
    );
    assert_eq!(rescued("m10-2"), json!({"humidity": 42, "fw": "2.0"}));
    assert_eq!(
        rescued("m12-1"),
        json!({"temperature": "n/a", "humidity": "51"})
    );
    assert_eq!(
        get(&row("m08-0"), "_rescued_data"),
        &Value::Null,
        "SA's system fields are ignored"
    );
    // 12 rows: p1 ×3 (2 fields), p2 ×3 (3), CSV (1 and 2); over 10 % = 1.2 rows is a candidate.
    let drift = &report["drift"];
    assert_eq!(drift["rows"], 12);
    assert_eq!(drift["rescued_records"], 8);
    assert_eq!(drift["rescued_fields"], 3 * 2 + 3 * 3 + 1 + 2);
    assert_eq!(
        drift["rescued_by_field"],
        json!({"fw": 6, "humidity": 8, "temperature": 1, "vibration": 3})
    );
    assert_eq!(
        drift["candidate_columns"],
        json!(["fw", "humidity", "vibration"])
    );
}

/// The data files of one partition, from the table's current state.
fn partition_files(lake: &Path, date: &str) -> Vec<String> {
    let table = open_table(lake, "telemetry");
    let mut files: Vec<String> = table
        .get_file_uris()
        .unwrap()
        .filter(|u| u.contains(&format!("event_date={date}")))
        .collect();
    files.sort();
    files
}

/// Every `protocol` action in the table's log, as (minReader, minWriter).
fn protocols_in_log(lake: &Path) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(lake.join("telemetry/_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let action: Value = serde_json::from_str(line).unwrap();
                if let Some(p) = action.get("protocol") {
                    let v = |k: &str| p[k].as_i64().unwrap();
                    out.push((v("minReaderVersion"), v("minWriterVersion")));
                }
            }
        }
    }
    out
}

#[test]
fn a_declared_column_evolves_silver_old_partitions_read_null_and_reruns_are_stable() {
    let dir = temp_lake();
    let raw = container(dir.path());
    let lake = dir.path().join("lake");
    let day = |date: &str, field: &str, base: i64| -> Vec<Value> {
        (0..3)
            .map(|i| {
                json!({"deviceId": "p1", "timestamp": format!("{date}T09:0{i}:00Z"), "temperature": 20,
                       field: base + i, "messageId": format!("{date}-{i}")})
            })
            .collect()
    };
    // 2024-03-10: devices already send `humidity`; nothing declares it yet.
    blob(
        &raw,
        "2024-03-10",
        9,
        "a.json",
        &json_lines(&day("2024-03-10", "humidity", 40)),
    );
    // 2024-03-11: half the devices send it as `hum` (the alias).
    let mut records = day("2024-03-11", "humidity", 50);
    records[1] = json!({"deviceId": "p1", "timestamp": "2024-03-11T09:01:00Z", "temperature": 20,
                        "hum": 51, "messageId": "2024-03-11-1"});
    blob(&raw, "2024-03-11", 9, "a.json", &json_lines(&records));

    let rescue = job(dir.path(), &raw, "rescue", "[drift]\nrescue = true\n");
    run(&rescue, "2024-03-10");
    let before = partition_files(&lake, "2024-03-10");
    assert!(!field_names(&lake).contains(&"humidity".to_string()));

    // Declaring the column: plan names it, the run adds it by a metadata change.
    let schema = schema_with_humidity(dir.path());
    let declared = job(
        dir.path(),
        &raw,
        "declared",
        &format!(
            "schema = {:?}\n[drift]\nrescue = true\n",
            schema.to_str().unwrap()
        ),
    );
    assert_eq!(
        plan(&declared, "2024-03-11")["adds_columns"],
        json!(["humidity"])
    );
    let report = run(&declared, "2024-03-11");
    assert_eq!(
        report["drift"]["added_columns"],
        json!(["humidity"]),
        "{report}"
    );
    assert_eq!(
        report["drift"]["rescued_records"], 0,
        "humidity and hum are named now"
    );
    assert_eq!(plan(&declared, "2024-03-11")["adds_columns"], json!([]));
    // delta-rs keeps the partition column last; the new ones come before it.
    let mut names = field_names(&lake);
    names.sort();
    let mut want: Vec<String> = CONTRACT.map(String::from).to_vec();
    want.extend(["_rescued_data".to_string(), "humidity".to_string()]);
    want.sort();
    assert_eq!(names, want);
    assert!(
        protocols_in_log(&lake).iter().all(|p| *p == (1, 2)),
        "{:?}",
        protocols_in_log(&lake)
    );
    assert_eq!(
        partition_files(&lake, "2024-03-10"),
        before,
        "old partitions are not rewritten"
    );

    // Read back across both partitions: the old one null (its values still rescued), the new one typed.
    let silver = read_rows(&lake, "telemetry");
    assert_eq!(silver.len(), 6);
    for r in &silver {
        let id = get(r, "message_id").as_str().unwrap();
        let (date, i) = id.rsplit_once('-').unwrap();
        let i: i64 = i.parse().unwrap();
        if date == "2024-03-10" {
            assert_eq!(get(r, "humidity"), &Value::Null, "{id}");
            let rescued: Value =
                serde_json::from_str(get(r, "_rescued_data").as_str().unwrap()).unwrap();
            assert_eq!(rescued, json!({"humidity": 40 + i}), "{id}");
        } else {
            assert_eq!(get(r, "humidity").as_f64(), Some((50 + i) as f64), "{id}");
            assert_eq!(get(r, "_rescued_data"), &Value::Null, "{id}");
        }
    }

    // Rerunning the evolved date gives the same rows; so does the old date, now with the column.
    let rows = rows_without_run(&lake, "telemetry");
    run(&declared, "2024-03-11");
    assert_eq!(rows_without_run(&lake, "telemetry"), rows);
    run(&declared, "2024-03-10");
    let again: BTreeMap<String, Value> = read_rows(&lake, "telemetry")
        .into_iter()
        .filter(|r| get(r, "event_date") == "2024-03-10")
        .map(|r| {
            (
                get(&r, "message_id").as_str().unwrap().to_string(),
                get(&r, "humidity").clone(),
            )
        })
        .collect();
    assert_eq!(
        again.values().map(|v| v.as_f64()).collect::<Vec<_>>(),
        [Some(40.0), Some(41.0), Some(42.0)]
    );
    assert!(protocols_in_log(&lake).iter().all(|p| *p == (1, 2)));

    // Drift turned off again: the table keeps its columns, the run writes them null.
    let off = job(dir.path(), &raw, "off", "");
    run(&off, "2024-03-11");
    let silver = read_rows(&lake, "telemetry");
    assert!(silver
        .iter()
        .filter(|r| get(r, "event_date") == "2024-03-11")
        .all(|r| get(r, "humidity").is_null() && get(r, "_rescued_data").is_null()));
    assert_eq!(silver.len(), 6);
}

/// Issue 32: with drift on, a row a `drop` expectation removes goes to `rejects`
/// with every value it had: its `raw` holds the contract's data columns, the
/// declared `humidity` and `_rescued_data`, each equal to the record's input.
#[test]
fn a_dropped_row_keeps_every_value_with_drift_on() {
    let dir = temp_lake();
    let raw = container(dir.path());
    let date = "2024-03-11";
    let records = vec![
        // Kept: temperature under 100.
        json!({"deviceId": "p1", "deviceType": "pump", "timestamp": "2024-03-11T09:00:00Z", "temperature": 20.5,
               "humidity": 40.0, "fw": "2.0", "messageId": "k1"}),
        // Dropped: declared humidity (by its alias), two undeclared fields, a nested one.
        json!({"deviceId": "p1", "deviceType": "pump", "timestamp": "2024-03-11T09:01:00Z", "temperature": 120.25,
               "pressure": 3.5, "vibration": 7.0, "priority": "high", "hum": 41.5, "fw": "2.1",
               "note": {"x": 1, "y": [2, 3]}, "messageId": "d1",
               "EventEnqueuedUtcTime": "2024-03-11T09:01:02.5Z"}),
        // Dropped: nothing beyond the contract's fields (humidity and _rescued_data null).
        json!({"deviceId": "p2", "timestamp": "2024-03-11T09:02:00Z", "temperature": 130.0, "messageId": "d2"}),
    ];
    blob(&raw, date, 9, "a.json", &json_lines(&records));
    let schema = schema_with_humidity(dir.path());
    let extra = format!(
        "schema = {:?}\n[[expectations]]\nname = \"cool\"\nexpr = \"temperature < 100\"\naction = \"drop\"\n[drift]\nrescue = true\n",
        schema.to_str().unwrap()
    );
    let report = run(&job(dir.path(), &raw, "dropping", &extra), date);
    assert_eq!(report["rows_written"], 1, "{report}");
    assert_eq!(
        report["rejects_by_reason"]["failed_expectation"], 2,
        "{report}"
    );

    let lake = dir.path().join("lake");
    let mut dropped: Vec<Map<String, Value>> = read_rows(&lake, "rejects")
        .into_iter()
        .filter(|r| get(r, "reason") == "failed_expectation")
        .collect();
    dropped.sort_by_key(|r| get(r, "line").as_i64());
    assert_eq!(dropped.len(), 2);
    // The columns a dropped row had: the contract's data columns (not the run's
    // bookkeeping: source_file, ingested_at, run_id, event_date), and the drift ones.
    let mut want_keys: Vec<&str> = CONTRACT[..9].to_vec();
    want_keys.extend(["humidity", "_rescued_data"]);
    want_keys.sort();
    for (reject, (record, line)) in dropped.iter().zip([(&records[1], 2), (&records[2], 3)]) {
        assert_eq!(get(reject, "line").as_i64(), Some(line));
        assert_eq!(get(reject, "detail"), "cool");
        let row: Value = serde_json::from_str(get(reject, "raw").as_str().unwrap()).unwrap();
        let row = row.as_object().unwrap();
        let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, want_keys, "{row:?}");
        let input = record.as_object().unwrap();
        let field = |names: &[&str]| -> Value {
            names
                .iter()
                .find_map(|n| input.get(*n))
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(row["device_id"], field(&["deviceId"]));
        assert_eq!(row["device_type"], field(&["deviceType"]));
        assert_eq!(row["message_id"], field(&["messageId"]));
        assert_eq!(row["priority"], field(&["priority"]));
        for (column, names) in [
            ("temperature", &["temperature"][..]),
            ("pressure", &["pressure"]),
            ("vibration", &["vibration"]),
            ("humidity", &["humidity", "hum"]),
        ] {
            assert_eq!(
                row[column].as_f64(),
                field(names).as_f64(),
                "{column}: {row:?}"
            );
        }
        let time = |v: &Value| v.as_str().map(us);
        assert_eq!(
            time(&row["event_time"]),
            time(&field(&["timestamp"])),
            "{row:?}"
        );
        assert_eq!(
            time(&row["enqueued_time"]),
            time(&field(&["EventEnqueuedUtcTime"])),
            "{row:?}"
        );
        // _rescued_data: the fields the column map does not name, as they were sent.
        let named = [
            "deviceId",
            "deviceType",
            "timestamp",
            "temperature",
            "pressure",
            "vibration",
            "priority",
            "hum",
            "humidity",
            "messageId",
            "EventEnqueuedUtcTime",
        ];
        let unnamed: Map<String, Value> = input
            .iter()
            .filter(|(k, _)| !named.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let rescued = match &row["_rescued_data"] {
            Value::Null => Value::Null,
            text => serde_json::from_str(text.as_str().unwrap()).unwrap(),
        };
        let want = if unnamed.is_empty() {
            Value::Null
        } else {
            Value::Object(unnamed)
        };
        assert_eq!(rescued, want, "{row:?}");
    }
}
