//! Every producer's raw layout (fixtures/layouts): the same readings, written once in each
//! layout and format, must give the same `telemetry` rows — the rows the generator designed.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::common::*;

fn layouts_dir() -> std::path::PathBuf {
    repo().join("fixtures/layouts")
}

fn expected_layouts() -> Value {
    let text = std::fs::read_to_string(layouts_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn us(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap()
        .timestamp_micros()
}

/// The generator's rows in the shape `read_rows` gives (timestamps as µs, nulls absent).
fn designed_rows(expected: &Value) -> Vec<Value> {
    expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut row = r.as_object().unwrap().clone();
            for t in ["event_time", "enqueued_time"] {
                let v = us(row[t].as_str().unwrap());
                row.insert(t.into(), json!(v));
            }
            row.insert("event_date".into(), json!(expected["date"]));
            row.retain(|_, v| !v.is_null());
            Value::Object(row)
        })
        .collect()
}

/// A silver row without what differs by run or by file (run_id, ingested_at, source_file).
fn comparable(row: &Map<String, Value>) -> Value {
    let mut row = row.clone();
    for k in ["run_id", "ingested_at", "source_file"] {
        row.remove(k);
    }
    row.retain(|_, v| !v.is_null());
    Value::Object(row)
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| (r["device_id"].to_string(), r["event_time"].as_i64()));
    rows
}

/// The blobs under `dir`, at any depth: its files but the reference logs.
fn files_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("reference"))
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

fn run_layout(name: &str, date: &str) -> (tempfile::TempDir, Value) {
    let lake = temp_lake();
    let job = layouts_dir().join(format!("jobs/{name}.toml"));
    let (code, report) = run_job(&job, date, lake.path(), &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{name}: {report}");
    (lake, report)
}

#[test]
fn every_layout_and_format_gives_the_same_telemetry_rows() {
    let expected = expected_layouts();
    let date = expected["date"].as_str().unwrap();
    let designed = sorted(designed_rows(&expected));
    assert!(designed.len() > 50, "the fixture has too few readings");
    let mut summary = BTreeMap::new();
    for name in expected["layouts"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (lake, report) = run_layout(name, date);
        let rows = read_rows(lake.path(), "telemetry");
        let got = sorted(rows.iter().map(comparable).collect());
        assert_eq!(got.len(), designed.len(), "{name}: row count");
        for (g, d) in got.iter().zip(&designed) {
            assert_eq!(g, d, "{name}: a row differs from the designed reading");
        }
        // Every file the producer wrote was read, the idle ones as empty.
        let want_rejects = expected["rejects"][name].as_u64().unwrap_or(0);
        assert_eq!(report["rejected"], json!(want_rejects), "{name}: {report}");
        assert_eq!(report["rows_written"], json!(designed.len()), "{name}");
        assert!(
            report["blobs"]["empty"].as_u64().unwrap_or(0) >= 1,
            "{name}: the idle producer's empty file is counted as empty: {report}"
        );
        let files = files_under(&layouts_dir().join("raw").join(name));
        assert_eq!(report["blobs"]["read"], json!(files), "{name}: {report}");
        // The features of the same readings agree too (they come from silver).
        let features = read_rows(lake.path(), "features_hourly").len();
        summary.insert(name.to_string(), features);
        // ... value for value, with what the contract's definitions give for those readings
        // (fixtures/layouts/generate.py computes them as fixtures/generate.py does).
        let want = expected["features"].as_array().unwrap();
        assert_eq!(features, want.len(), "{name}: features_hourly rows");
        crate::features::assert_features_match(
            &crate::features::features_of(lake.path(), date),
            want,
            name,
        );
    }
    // Not vacuous: the designed readings give every device hours, a label known to be true
    // and one not known yet, and a maintenance date counted.
    let want = expected["features"].as_array().unwrap();
    assert!(want.len() >= 40, "{} feature rows", want.len());
    assert!(want.iter().any(|r| r["failure_within_7d"] == true));
    assert!(want.iter().any(|r| r["failure_within_14d"].is_null()));
    assert!(want.iter().any(|r| r["days_since_maintenance"] == 1));
    let counts: Vec<_> = summary.values().collect();
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]) && *counts[0] > 0,
        "features_hourly rows per layout: {summary:?}"
    );
}

#[test]
fn an_iot_hub_body_that_does_not_decode_is_a_malformed_record_with_its_envelope() {
    let expected = expected_layouts();
    let date = expected["date"].as_str().unwrap();
    for name in ["iothub-json", "iothub-avro"] {
        let (lake, _) = run_layout(name, date);
        let rejects = read_rows(lake.path(), "rejects");
        assert_eq!(rejects.len(), 1, "{name}: {rejects:?}");
        let r = &rejects[0];
        assert_eq!(get(r, "reason"), "malformed_record", "{name}");
        assert_eq!(
            get(r, "source_file"),
            "plant-hub/2/2024/03/11/07/30",
            "{name}"
        );
        assert_eq!(get(r, "line"), 1, "{name}");
        let raw = get(r, "raw").as_str().unwrap();
        assert!(
            raw.contains("SystemProperties") && raw.contains("bad-body"),
            "{name}: the envelope is kept: {raw}"
        );
        let detail = get(r, "detail").as_str().unwrap();
        assert!(detail.contains("Body"), "{name}: {detail}");
    }
}

#[test]
fn plan_lists_the_iot_hub_partitions_it_found() {
    let job = layouts_dir().join("jobs/iothub-json.toml");
    let out = coldpath(&[
        "plan",
        "--job",
        job.to_str().unwrap(),
        "--date",
        "2024-03-11",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefixes: Vec<&str> = plan["prefixes"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // Three partition folders (0, 1 and the one holding the bad message) × 26 hours.
    assert_eq!(prefixes.len(), 3 * 26, "{prefixes:?}");
    assert!(prefixes.contains(&"plant-hub/2/2024/03/12/01/"));
    assert!(prefixes.iter().all(|p| !p.contains('{')));
}
