//! End to end on small raw folders designed here: the quality gate exactly at
//! `max_reject_ratio`, non-default `late_arrival` and `clock_skew` at and just past their
//! (inclusive) edges, and the default label cut-off ("now").

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::common::*;

const DATE: &str = "2024-05-01";

/// One JSON-lines record of a reading (`temperature` as given, so a string makes a type mismatch).
fn reading(device: &str, at: &str, temperature: Value) -> String {
    json!({
        "deviceId": device,
        "deviceType": "pump",
        "timestamp": at,
        "temperature": temperature,
        "pressure": 101.5,
        "vibration": 4.25,
        "messageId": format!("{device}@{at}"),
    })
    .to_string()
}

/// Writes `lines` as the blob `name` under the hour folder `hour` (`YYYY/MM/DD/HH`) of `raw`.
fn blob(raw: &Path, hour: &str, name: &str, lines: &[String]) {
    let dir = raw.join("telemetry").join(hour);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

/// A raw folder with empty reference logs, and a job reading it into `dir/lake`.
fn setup(dir: &Path, settings: &str) -> (PathBuf, PathBuf) {
    let raw = empty_container(dir);
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"edges\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\n{settings}\n",
            raw.to_str().unwrap(),
            dir.join("lake").to_str().unwrap()
        ),
    )
    .unwrap();
    (raw, job)
}

fn rows_of<'a>(
    rows: &'a [Map<String, Value>],
    column: &str,
    date: &str,
) -> Vec<&'a Map<String, Value>> {
    rows.iter().filter(|r| get(r, column) == date).collect()
}

fn us(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap()
        .timestamp_micros()
}

#[test]
fn a_reject_ratio_exactly_at_max_reject_ratio_passes_and_one_more_reject_fails() {
    let dir = temp_lake();
    // 2 rejects of 8 records: 0.25, exactly the limit (both exact in binary).
    let (raw, job) = setup(dir.path(), "max_reject_ratio = 0.25");
    let mut lines: Vec<String> = (0..6)
        .map(|i| {
            reading(
                "pump-01",
                &format!("{DATE}T10:0{i}:00Z"),
                json!(20.0 + i as f64),
            )
        })
        .collect();
    lines.push(reading(
        "pump-02",
        &format!("{DATE}T10:30:00Z"),
        json!("hot"),
    ));
    lines.push(reading(
        "pump-02",
        &format!("{DATE}T10:31:00Z"),
        json!("cold"),
    ));
    blob(&raw, "2024/05/01/10", "a.json", &lines);
    let lake = dir.path().join("lake");
    let (code, report) = run_job(&job, DATE, &lake, &[]);
    assert_eq!(code, 0, "at the limit the gate passes: {report}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["records_read"], 8);
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["reject_ratio"].as_f64(), Some(2.0 / 8.0));
    let silver = read_rows(&lake, "telemetry");
    assert_eq!(silver.len(), 6);

    // One more reject: 3 of 9 is over the limit. Rejects written, silver and gold not.
    blob(
        &raw,
        "2024/05/01/10",
        "b.json",
        &[reading(
            "pump-02",
            &format!("{DATE}T10:32:00Z"),
            json!("warm"),
        )],
    );
    let (code, report) = run_job(&job, DATE, &lake, &[]);
    assert_eq!(code, 3, "one reject more fails the gate: {report}");
    assert_eq!(report["status"], "quality_gate_failed");
    assert_eq!(report["records_read"], 9);
    assert_eq!(report["rejected"], 3);
    assert_eq!(read_rows(&lake, "rejects").len(), 3);
    assert_eq!(open_table(&lake, "telemetry").version(), Some(0));
    assert_eq!(open_table(&lake, "features_hourly").version(), Some(0));
    assert_eq!(rows_without_run(&lake, "telemetry").len(), 6);
}

#[test]
fn non_default_late_arrival_and_clock_skew_hold_at_their_edges_and_not_past_them() {
    let dir = temp_lake();
    let (raw, job) = setup(
        dir.path(),
        "late_arrival = \"30m\"\nclock_skew = \"90s\"\nmax_reject_ratio = 0.5",
    );
    // The 10:00 partition: valid from 09:30:00 (10:00 - 30m) to 11:01:30 (11:00 + 90s), both included.
    blob(
        &raw,
        "2024/05/01/10",
        "edges.json",
        &[
            reading("pump-01", "2024-05-01T09:30:00Z", json!(21.0)), // the late edge: valid
            reading("pump-01", "2024-05-01T09:29:59.999999Z", json!(22.0)), // 1 µs past it
            reading("pump-02", "2024-05-01T11:01:30Z", json!(23.0)), // the skew edge: valid
            reading("pump-02", "2024-05-01T11:01:30.000001Z", json!(24.0)), // 1 µs past it
            reading("pump-01", "2024-05-01T10:15:00Z", json!(25.0)),
        ],
    );
    // Look-ahead: with late_arrival = 30m only the next day's 00 folder is listed.
    blob(
        &raw,
        "2024/05/02/00",
        "ahead.json",
        &[
            reading("pump-01", "2024-05-01T23:30:00Z", json!(26.0)), // the date's, at the edge
            reading("pump-02", "2024-05-01T23:29:59Z", json!(27.0)), // late: the next date's reject
            reading("pump-01", "2024-05-02T00:10:00Z", json!(28.0)), // the next date's
        ],
    );
    // A reading of the date in the next day's 01 folder: listed under the default 2 h, not 30 m.
    blob(
        &raw,
        "2024/05/02/01",
        "beyond.json",
        &[reading("pump-02", "2024-05-01T23:59:00Z", json!(29.0))],
    );

    // plan: the date's 24 hour folders and one look-ahead folder.
    let out = coldpath(&["plan", "--job", job.to_str().unwrap(), "--date", DATE]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefixes: Vec<&str> = plan["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(prefixes.len(), 25, "{prefixes:?}");
    assert!(
        prefixes.contains(&"telemetry/2024/05/02/00/"),
        "{prefixes:?}"
    );
    assert!(
        !prefixes.iter().any(|p| p.contains("2024/05/02/01")),
        "{prefixes:?}"
    );

    let lake = dir.path().join("lake");
    let (code, report) = run_job(&job, DATE, &lake, &[]);
    assert_eq!(code, 0, "{report}");
    // Own records 5 (2 rejected) + the one valid look-ahead record of the date.
    for (key, want) in [
        ("records_read", 6),
        ("rows_written", 4),
        ("rejected", 2),
        ("duplicates", 0),
        ("other_dates", 0),
    ] {
        assert_eq!(report[key], want, "{key}: {report}");
    }
    let silver = read_rows(&lake, "telemetry");
    let mut got: Vec<(String, i64)> = rows_of(&silver, "event_date", DATE)
        .iter()
        .map(|r| {
            (
                get(r, "device_id").as_str().unwrap().to_string(),
                get(r, "event_time").as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, i64)> = [
        ("pump-01", "2024-05-01T09:30:00Z"),
        ("pump-01", "2024-05-01T10:15:00Z"),
        ("pump-01", "2024-05-01T23:30:00Z"),
        ("pump-02", "2024-05-01T11:01:30Z"),
    ]
    .iter()
    .map(|(d, t)| (d.to_string(), us(t)))
    .collect();
    want.sort();
    assert_eq!(got, want);
    let rejects_of = |date: &str| -> Vec<(String, Option<i64>, String)> {
        let mut v: Vec<_> = read_rows(&lake, "rejects")
            .iter()
            .filter(|r| get(r, "run_date") == date)
            .map(|r| {
                (
                    get(r, "source_file").as_str().unwrap().to_string(),
                    get(r, "line").as_i64(),
                    get(r, "reason").as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let edges = "telemetry/2024/05/01/10/edges.json".to_string();
    assert_eq!(
        rejects_of(DATE),
        vec![
            (edges.clone(), Some(2), "late_beyond_window".into()),
            (edges, Some(4), "event_time_in_future".into()),
        ]
    );

    // The next date: its own 00 and 01 folders, each with a reading later than 30 m before it.
    let (code, report) = run_job(&job, "2024-05-02", &lake, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        rejects_of("2024-05-02"),
        vec![
            (
                "telemetry/2024/05/02/00/ahead.json".into(),
                Some(2),
                "late_beyond_window".into()
            ),
            (
                "telemetry/2024/05/02/01/beyond.json".into(),
                Some(1),
                "late_beyond_window".into()
            ),
        ]
    );
    let silver = read_rows(&lake, "telemetry");
    let next: Vec<i64> = rows_of(&silver, "event_date", "2024-05-02")
        .iter()
        .map(|r| get(r, "event_time").as_i64().unwrap())
        .collect();
    assert_eq!(next, vec![us("2024-05-02T00:10:00Z")]);
    // The date's partition is untouched by the next date's run.
    assert_eq!(rows_of(&silver, "event_date", DATE).len(), 4);
}

#[test]
fn without_labels_as_of_the_cut_off_is_now_and_past_horizons_are_labelled() {
    let lake = temp_lake();
    let date = "2024-03-11";
    let before = chrono::Utc::now();
    let (code, report) = run_date(date, lake.path(), &[]);
    let after = chrono::Utc::now();
    assert_eq!(code, 0, "{report}");
    // The cut-off is the time of the run: between its start and its end.
    let cut_off = chrono::DateTime::parse_from_rfc3339(report["labels_as_of"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {report}"));
    assert!(
        before <= cut_off && cut_off <= after,
        "{before} <= {cut_off} <= {after}"
    );
    let meta = user_metadata(lake.path(), "features_hourly", 0);
    assert_eq!(meta["labels_as_of"], report["labels_as_of"]);
    // Every horizon of 2024-03-11 ended long before now: each label is true or false, never
    // null. The generator's labels (cut-off 2024-03-20) are the same where it knew them; where
    // it did not (null: no failure in the log within the horizon), the horizon is now over: false.
    let want = expected(date)["features"].as_array().unwrap().clone();
    let got = crate::features::features_of(lake.path(), date);
    assert_eq!(got.len(), want.len());
    let mut nulls_before = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (get(g, "device_id"), get(g, "window_start")),
            (&w["device_id"], &w["window_start"])
        );
        for label in ["failure_within_7d", "failure_within_14d"] {
            let now_known = if w[label].is_null() {
                nulls_before += 1;
                Value::Bool(false)
            } else {
                w[label].clone()
            };
            assert_eq!(
                get(g, label),
                &now_known,
                "{} @ {}: {label}",
                w["device_id"],
                w["window_start"]
            );
        }
    }
    assert!(
        nulls_before > 0,
        "the comparison covers horizons the fixture's cut-off had not seen"
    );
    assert!(want.iter().any(|w| w["failure_within_7d"] == true));
}
