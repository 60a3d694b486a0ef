//! `telemetry_minute` against the contract's definition, computed independently by fixtures/generate.py.

use std::path::Path;

use serde_json::{Map, Value};

use crate::common::*;

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];
const FLOATS: [&str; 6] = [
    "temp_mean",
    "temp_min",
    "temp_max",
    "pressure_mean",
    "vibration_mean",
    "vibration_max",
];

pub(crate) fn minutes_of(lake: &Path, date: &str) -> Vec<Map<String, Value>> {
    let mut rows: Vec<_> = read_rows(lake, "telemetry_minute")
        .into_iter()
        .filter(|r| get(r, "event_date") == date)
        .collect();
    rows.sort_by_key(|r| {
        (
            get(r, "device_id").as_str().unwrap().to_string(),
            get(r, "minute_start").as_i64().unwrap(),
        )
    });
    rows
}

pub(crate) fn assert_minutes(got: &[Map<String, Value>], want: &[Value], date: &str) {
    assert_eq!(got.len(), want.len(), "{date}: rows");
    for (g, w) in got.iter().zip(want) {
        let at = format!("{date}: {} @ {}", w["device_id"], w["minute_start"]);
        for c in ["device_id", "minute_start", "reading_count"] {
            assert_eq!(get(g, c), &w[c], "{at}: {c}");
        }
        for c in FLOATS {
            match (get(g, c).as_f64(), w[c].as_f64()) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "{at}: {c} = {a}, contract says {b}"
                ),
                (a, b) => panic!("{at}: {c} = {a:?}, contract says {b:?}"),
            }
        }
    }
}

#[test]
fn minutes_match_the_contract_and_the_features_command_recomputes_them() {
    let lake = temp_lake();
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
        let want = expected(date)["minutes"].as_array().unwrap().clone();
        assert!(want.len() > 50, "the comparison is not vacuous");
        assert_eq!(report["tables"]["telemetry_minute"]["rows"], want.len());
        assert_minutes(&minutes_of(lake.path(), date), &want, date);
    }
    // Some minute holds several readings, and some a null temperature, so both rules are exercised.
    let all: Vec<Value> = DATES
        .iter()
        .flat_map(|d| expected(d)["minutes"].as_array().unwrap().clone())
        .collect();
    assert!(all.iter().any(|m| m["reading_count"].as_u64() > Some(1)));
    assert!(all.iter().any(|m| m["temp_mean"].is_null()));

    // A silver-only run leaves the table to the features pass, which rebuilds it from silver.
    let silver_only = temp_lake();
    let (code, report) = run_date(DATES[1], silver_only.path(), &["--silver-only"]);
    assert_eq!(code, 0, "{report}");
    assert!(!silver_only
        .path()
        .join("telemetry_minute/_delta_log")
        .exists());
    let extra = ["--date", DATES[1], "--labels-as-of", LABELS];
    let (code, report, stderr) = features_cmd(silver_only.path(), &fixtures_raw(), &extra);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_minutes(
        &minutes_of(silver_only.path(), DATES[1]),
        expected(DATES[1])["minutes"].as_array().unwrap(),
        DATES[1],
    );
}
