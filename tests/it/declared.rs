//! Declared feature sets (docs/features.md, `[features]`): the worked example `jobs/pdm.toml`
//! and `fixtures/jobs/every-feature.toml` on the fixture dates, every declared column of every
//! row against fixtures/pit.py's independent implementation of the contract; the point in time
//! at its edges (a maintenance, an event and a failure exactly at a row's t, just before and
//! just after), asserted from hand-worked definitions; and the declarations refused before
//! any read.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::common::*;
use crate::features::{assert_features_match, features_of};

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];

fn pdm_job() -> PathBuf {
    repo().join("jobs/pdm.toml")
}

fn every_feature_job() -> PathBuf {
    repo().join("fixtures/jobs/every-feature.toml")
}

/// fixtures/expected/<job>/<date>.json: the declared columns (name, type) and their values per row.
fn declared_expected(job: &str, date: &str) -> Value {
    let path = repo().join(format!("fixtures/expected/{job}/{date}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `job` for every fixture date, in order, into `lake`, with the fixtures' label cut-off.
fn run_dates(job: &Path, lake: &Path) {
    for date in DATES {
        let (code, report) = run_job(job, date, lake, &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{}: {date}: {report}", job.display());
    }
}

/// The table's columns as (name, Delta type).
fn table_columns(lake: &Path) -> Vec<(String, String)> {
    let table = open_table(lake, "features_hourly");
    let snapshot = table.snapshot().unwrap();
    snapshot
        .schema()
        .fields()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

/// Every declared column of every row equal to the oracle's: doubles to 1e-6 relative,
/// counts, days, labels and strings exactly, nulls as nulls.
fn assert_declared_match(got: &[Map<String, Value>], want: &Value, what: &str) {
    let rows = want["features"].as_array().unwrap();
    let columns = want["columns"].as_array().unwrap();
    assert_eq!(got.len(), rows.len(), "{what}: row count");
    for (g, w) in got.iter().zip(rows) {
        let at = format!("{what}: {} @ {}", w["device_id"], w["window_start"]);
        assert_eq!(
            (get(g, "device_id"), get(g, "window_start")),
            (&w["device_id"], &w["window_start"]),
            "{at}"
        );
        for c in columns {
            let (name, ty) = (c[0].as_str().unwrap(), c[1].as_str().unwrap());
            let (a, b) = (get(g, name), &w[name]);
            if ty == "double" {
                match (a.as_f64(), b.as_f64()) {
                    (None, None) => {}
                    (Some(x), Some(y)) => assert!(
                        (x - y).abs() <= 1e-6 * y.abs() + 1e-9,
                        "{at}: {name} = {x}, the contract says {y}"
                    ),
                    _ => panic!("{at}: {name} = {a}, the contract says {b}"),
                }
            } else {
                assert_eq!(a, b, "{at}: {name}");
            }
        }
    }
}

/// The declared columns are in the table, after the default ones, in the documented order and
/// with the documented types; the default columns are untouched (names, types, order).
fn assert_schema(lake: &Path, want: &Value, what: &str) {
    let columns = table_columns(lake);
    let declared: Vec<(String, String)> = want["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    let default_lake = temp_lake();
    let (code, report) = run_date(
        "2024-03-10",
        default_lake.path(),
        &["--labels-as-of", LABELS],
    );
    assert_eq!(code, 0, "{report}");
    let defaults = table_columns(default_lake.path());
    // The table starts with the default columns, in their order and typed as they were.
    assert_eq!(
        &columns[..defaults.len().min(columns.len())],
        &defaults[..],
        "{what}: every default column, as it was, first and in order"
    );
    let got_declared: Vec<(String, String)> = columns
        .iter()
        .filter(|c| !defaults.iter().any(|d| d.0 == c.0))
        .cloned()
        .collect();
    assert_eq!(
        got_declared, declared,
        "{what}: the declared columns, in order, typed"
    );
}

/// Runs a declaring job over the fixture dates: its default columns are the default job's
/// (a declaration never changes one), and every declared column of every row is the oracle's.
fn declared_job_matches_the_oracle(job: &Path, name: &str) {
    let lake = temp_lake();
    run_dates(job, lake.path());
    for date in DATES {
        let got = features_of(lake.path(), date);
        let defaults = expected(date)["features"].as_array().unwrap().clone();
        assert_features_match(&got, &defaults, &format!("{name} {date} (default columns)"));
        assert_declared_match(
            &got,
            &declared_expected(name, date),
            &format!("{name} {date}"),
        );
    }
    assert_schema(lake.path(), &declared_expected(name, DATES[0]), name);
}

#[test]
fn the_pdm_example_gives_the_contracts_declared_columns_for_every_row() {
    declared_job_matches_the_oracle(&pdm_job(), "pdm");
    // Not vacuous: the example's columns hold values of every kind, nulls and not.
    let want = declared_expected("pdm", "2024-03-11");
    let rows = want["features"].as_array().unwrap();
    for c in [
        "temperature_slope_3h",
        "vibration_std_24h",
        "age",
        "model",
        "days_since_maintenance_seal",
    ] {
        assert!(rows.iter().any(|r| !r[c].is_null()), "{c}");
    }
    assert!(
        rows.iter().any(|r| r["age"].is_null()),
        "a device without attributes"
    );
    assert!(rows
        .iter()
        .any(|r| r["errors_error1_count_24h"].as_u64() > Some(0)));
    assert!(rows.iter().any(|r| r["failure_within_24h"] == true));
    assert!(rows.iter().any(|r| r["failure_seal_within_7d"] == true));
}

#[test]
fn every_aggregate_window_event_log_and_horizon_gives_the_contracts_columns() {
    declared_job_matches_the_oracle(&every_feature_job(), "every-feature");
    let want = declared_expected("every-feature", "2024-03-12");
    let rows = want["features"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["failure_within_10d"].is_null()),
        "an unseen horizon"
    );
    assert!(rows
        .iter()
        .any(|r| r["errors_error1_count_7d"].as_u64() > Some(0)));
}

/// The value of `column` in the row of `device` whose window starts at `ws` (`YYYY-MM-DDTHH`).
fn at<'a>(rows: &'a [Map<String, Value>], device: &str, ws: &str, column: &str) -> &'a Value {
    let start = chrono::DateTime::parse_from_rfc3339(&format!("{ws}:00:00Z"))
        .unwrap()
        .timestamp_micros();
    let row = rows
        .iter()
        .find(|r| get(r, "device_id") == device && get(r, "window_start").as_i64() == Some(start))
        .unwrap_or_else(|| panic!("no row {device} @ {ws}"));
    get(row, column)
}

/// Asserts `column` of `device` at each window start: (window start, value).
fn sees(rows: &[Map<String, Value>], device: &str, column: &str, want: &[(&str, Value)]) {
    for (ws, value) in want {
        assert_eq!(
            at(rows, device, ws, column),
            value,
            "{device} @ {ws}: {column}"
        );
    }
}

/// The point in time at its edges, from the definitions (docs/features.md, "Point in time"),
/// worked by hand on fixtures/raw/reference (each entry's comment there says which row must see
/// it). A row's t is the end of its hour: an input counts when its time < t, a window is
/// [t - w, t), a label looks at [t, t + h).
#[test]
fn a_maintenance_an_event_and_a_failure_at_t_just_before_and_just_after() {
    let lake = temp_lake();
    run_dates(&every_feature_job(), lake.path());
    let rows: Vec<Map<String, Value>> = DATES
        .iter()
        .flat_map(|d| features_of(lake.path(), d))
        .collect();
    let (null, t, f) = (Value::Null, Value::Bool(true), Value::Bool(false));
    let n = |x: i64| Value::from(x);

    // Maintenance. pump-02's seal at 2024-03-11T06:00:00Z, exactly the t of the 05:00 row:
    // that row does not see it, the 06:00 row does (0 whole days); no earlier entry counts
    // (its date-only 2024-03-12 inspection counts from 2024-03-13 00:00).
    for c in ["days_since_maintenance", "days_since_maintenance_seal"] {
        sees(
            &rows,
            "pump-02",
            c,
            &[("2024-03-11T05", null.clone()), ("2024-03-11T06", n(0))],
        );
        // 24 h later to the µs: a whole day.
        sees(
            &rows,
            "pump-02",
            c,
            &[("2024-03-12T04", n(0)), ("2024-03-12T05", n(1))],
        );
    }
    sees(
        &rows,
        "pump-02",
        "days_since_maintenance",
        &[("2024-03-12T23", n(1))],
    );
    // compressor-07's valve at 09:59:59.999999, 1 µs before the t of the 09:00 row.
    sees(
        &rows,
        "compressor-07",
        "days_since_maintenance_valve",
        &[("2024-03-11T08", null.clone()), ("2024-03-11T09", n(0))],
    );
    // fan-03's bearing at 12:00:00.000001, 1 µs after the t of the 11:00 row.
    sees(
        &rows,
        "fan-03",
        "days_since_maintenance_bearing",
        &[("2024-03-11T11", null.clone()), ("2024-03-11T12", n(0))],
    );
    // fan-03's filter dated 2024-03-10 (no time): taken at the end of its date, 2024-03-11
    // 00:00, exactly the t of the 2024-03-10 23:00 row.
    sees(
        &rows,
        "fan-03",
        "days_since_maintenance_filter",
        &[
            ("2024-03-10T22", null.clone()),
            ("2024-03-10T23", null.clone()),
            ("2024-03-11T00", n(0)),
        ],
    );
    // pump-01's bearing dated 2024-03-09 counts from 2024-03-10 00:00: 23 h at the 22:00 row,
    // exactly a day at the 23:00 row (t = 2024-03-11 00:00), three at 2024-03-12 23:00.
    sees(
        &rows,
        "pump-01",
        "days_since_maintenance_bearing",
        &[
            ("2024-03-10T00", n(0)),
            ("2024-03-10T22", n(0)),
            ("2024-03-10T23", n(1)),
            ("2024-03-12T22", n(2)),
            ("2024-03-12T23", n(3)),
        ],
    );
    // pump-01's seal at 17:59:59, 1 s before the t of the 17:00 row.
    sees(
        &rows,
        "pump-01",
        "days_since_maintenance_seal",
        &[("2024-03-11T16", null.clone()), ("2024-03-11T17", n(0))],
    );

    // Events over 1 h windows [t - 1h, t): exactly the row's own hour.
    // pump-01's error1 at 2024-03-11T10:00:00Z, exactly the t of the 09:00 row.
    sees(
        &rows,
        "pump-01",
        "errors_error1_count_1h",
        &[
            ("2024-03-11T09", n(0)),
            ("2024-03-11T10", n(1)),
            ("2024-03-11T11", n(0)),
        ],
    );
    // pump-02's error2 at 13:59:59.999999, 1 µs before the t of the 13:00 row.
    sees(
        &rows,
        "pump-02",
        "errors_error2_count_1h",
        &[
            ("2024-03-11T12", n(0)),
            ("2024-03-11T13", n(1)),
            ("2024-03-11T14", n(0)),
        ],
    );
    // compressor-07's error3 at 16:00:00.000001, 1 µs after the t of the 15:00 row.
    sees(
        &rows,
        "compressor-07",
        "errors_error3_count_1h",
        &[
            ("2024-03-11T15", n(0)),
            ("2024-03-11T16", n(1)),
            ("2024-03-11T17", n(0)),
        ],
    );
    // pump-02's error2 at 2024-03-12T23:59:59 counts for the date's last row (t = 2024-03-13
    // 00:00); the one exactly at that t does not.
    sees(
        &rows,
        "pump-02",
        "errors_error2_count_1h",
        &[("2024-03-12T22", n(0)), ("2024-03-12T23", n(1))],
    );
    // A window's start is inside it: pump-01's error1 of 2024-03-05T08:00 is in the 7 d window
    // [t - 7d, t) up to the row whose t - 7d is that time (t = 2024-03-12T08:00), not after.
    sees(
        &rows,
        "pump-01",
        "errors_error1_count_7d",
        &[("2024-03-12T07", n(2)), ("2024-03-12T08", n(1))],
    );
    // A second log: one alarm 1 µs before and one exactly at the t of 2024-03-10 23:00.
    sees(
        &rows,
        "pump-01",
        "alarms_low_pressure_count_1h",
        &[
            ("2024-03-10T23", n(1)),
            ("2024-03-11T00", n(1)),
            ("2024-03-11T01", n(0)),
        ],
    );

    // Failures: a label looks at [t, t + h).
    // pump-02's at 2024-03-11T20:00:00Z, exactly the t of the 19:00 row: its positive, not
    // the 20:00 row's. At the far end, the row whose t + 24h is the failure is not a positive.
    for c in [
        "failure_within_24h",
        "failure_seal_within_24h",
        "failure_within_1h",
    ] {
        sees(
            &rows,
            "pump-02",
            c,
            &[("2024-03-11T19", t.clone()), ("2024-03-11T20", f.clone())],
        );
    }
    sees(
        &rows,
        "pump-02",
        "failure_within_1h",
        &[("2024-03-11T18", f.clone())],
    );
    sees(
        &rows,
        "pump-02",
        "failure_within_24h",
        &[("2024-03-10T19", f.clone()), ("2024-03-10T20", t.clone())],
    );
    // compressor-07's filter at 03:59:59.999999, 1 µs before the t of the 03:00 row: a
    // positive of the 02:00 row, not of the 03:00 row (it happened before that row's t).
    sees(
        &rows,
        "compressor-07",
        "failure_filter_within_24h",
        &[
            ("2024-03-10T02", f.clone()),
            ("2024-03-10T03", t.clone()),
            ("2024-03-11T02", t.clone()),
            ("2024-03-11T03", f.clone()),
        ],
    );
    sees(
        &rows,
        "compressor-07",
        "failure_filter_within_1h",
        &[
            ("2024-03-11T01", f.clone()),
            ("2024-03-11T02", t.clone()),
            ("2024-03-11T03", f.clone()),
        ],
    );
    // fan-03's seal at 07:00:00.000001, 1 µs after the t of the 06:00 row: that row's positive.
    sees(
        &rows,
        "fan-03",
        "failure_seal_within_1h",
        &[
            ("2024-03-11T05", f.clone()),
            ("2024-03-11T06", t.clone()),
            ("2024-03-11T07", f.clone()),
        ],
    );
    // pump-01's bearing at 2024-03-12T08:30, off the hour: a positive of the 07:00 row (t =
    // 08:00), not of the 08:00 row, whose hour it falls in (t = 09:00 is after it).
    for c in [
        "failure_bearing_within_24h",
        "failure_within_1h",
        "failure_within_7d",
    ] {
        sees(
            &rows,
            "pump-01",
            c,
            &[("2024-03-12T07", t.clone()), ("2024-03-12T08", f.clone())],
        );
    }
    // A horizon not yet seen by the cut-off (2024-03-20): null, unless a failure is in it.
    sees(
        &rows,
        "pump-02",
        "failure_within_10d",
        &[
            ("2024-03-11T19", t.clone()),
            ("2024-03-11T20", null.clone()),
        ],
    );

    // Readings: [t - w, t). pump-01 reads at :00:00, :15, :30 and :45 of every hour of the
    // plain 2024-03-10 (fixtures/generate.py: temperature = 40 + (minute of day % 37) / 10), so
    // the reading at exactly t (the next hour's :00:00) is the next row's, never this one's;
    // hour 23 also holds a late reading at 23:58 (read from the next date's first blobs).
    for h in 0..24 {
        let ws = format!("2024-03-10T{h:02}");
        let (count, minute) = if h == 23 { (5, 58) } else { (4, 45) };
        assert_eq!(
            at(&rows, "pump-01", &ws, "temperature_count_1h"),
            &n(count),
            "{ws}"
        );
        let last = 40.0 + ((h * 60 + minute) % 37) as f64 / 10.0;
        let got = at(&rows, "pump-01", &ws, "temperature_last_1h")
            .as_f64()
            .unwrap();
        assert!(
            (got - last).abs() < 1e-9,
            "{ws}: last {got}, minute {minute}'s {last}"
        );
    }
    // The 1 h window is the row's own hour and the 6 h one the default look-back: the declared
    // aggregates over them equal the default columns, row for row.
    let same = [
        ("temperature_mean_1h", "temp_mean"),
        ("temperature_min_1h", "temp_min"),
        ("temperature_max_1h", "temp_max"),
        ("temperature_std_1h", "temp_std"),
        ("pressure_mean_1h", "pressure_mean"),
        ("vibration_mean_1h", "vibration_mean"),
        ("vibration_std_1h", "vibration_std"),
        ("vibration_max_1h", "vibration_max"),
        ("temperature_mean_6h", "temp_rolling_mean_6h"),
        ("temperature_std_6h", "temp_rolling_std_6h"),
        ("vibration_std_6h", "vibration_rolling_std_6h"),
    ];
    for r in &rows {
        for (declared, default) in same {
            let (a, b) = (get(r, declared).as_f64(), get(r, default).as_f64());
            let ok = match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                _ => false,
            };
            assert!(
                ok,
                "{} @ {}: {declared} {a:?} != {default} {b:?}",
                get(r, "device_id"),
                get(r, "window_start")
            );
        }
    }
    // A row per device of fixtures/generate.py's four, per hour of each date.
    assert_eq!(rows.len(), DATES.len() * 4 * 24);
}

/// A job file: jobs/pdm.toml with the fixtures' raw container as an absolute source and
/// `replace` applied to its text.
fn pdm_variant(dir: &Path, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(pdm_job()).unwrap();
    let source = format!("source = \"{}\"", fixtures_raw().display());
    text = text.replace("source = \"../fixtures/raw\"", &source);
    let schema = format!(
        "schema = \"{}\"",
        repo().join("schemas/telemetry.toml").display()
    );
    text = text.replace("schema = \"../schemas/telemetry.toml\"", &schema);
    for (from, to) in replace {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_declarations_are_refused_before_any_read_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // An attributes file whose column is named like a default column.
    let clash = dir.path().join("clash.csv");
    std::fs::write(&clash, "device_id,temp_mean\npump-01,3\n").unwrap();
    let clash_path = format!("path = \"{}\"", clash.display());
    // And one named like a declared feature.
    let own = dir.path().join("own.csv");
    std::fs::write(&own, "device_id,pressure_mean_3h\npump-01,3\n").unwrap();
    let own_path = format!("path = \"{}\"", own.display());
    // (what, text replacements in jobs/pdm.toml, words the message must hold)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "an unknown signal",
            vec![(
                "signals = [\"temperature\",",
                "signals = [\"humidity\", \"temperature\",",
            )],
            vec!["signals", "humidity"],
        ),
        (
            "a signal that is not numeric",
            vec![(
                "signals = [\"temperature\",",
                "signals = [\"priority\", \"temperature\",",
            )],
            vec!["signals", "priority"],
        ),
        (
            "a window of 0",
            vec![("windows = [\"3h\", \"24h\"]", "windows = [\"0h\", \"24h\"]")],
            vec!["windows", "0h"],
        ),
        (
            "a window of no whole hours",
            vec![(
                "windows = [\"3h\", \"24h\"]",
                "windows = [\"90m\", \"24h\"]",
            )],
            vec!["windows", "90m"],
        ),
        (
            "a window over 30 days",
            vec![("windows = [\"3h\", \"24h\"]", "windows = [\"31d\"]")],
            vec!["windows", "31d"],
        ),
        (
            "a window declared twice",
            vec![(
                "windows = [\"3h\", \"24h\"]",
                "windows = [\"24h\", \"24h\"]",
            )],
            vec!["windows", "24h"],
        ),
        (
            "a horizon of 0",
            vec![(
                "label_horizons = [\"24h\", \"7d\"]",
                "label_horizons = [\"0d\"]",
            )],
            vec!["label_horizons", "0d"],
        ),
        (
            "an unknown aggregate",
            vec![("\"slope\"]", "\"slope\", \"median\"]")],
            vec!["aggregates", "median"],
        ),
        (
            "a component that is not a name",
            vec![("\"filter\"]", "\"filter\", \"air-filter\"]")],
            vec!["components", "air-filter"],
        ),
        (
            "an attribute column named like a default column",
            vec![
                ("path = \"reference/machines.csv\"", &clash_path),
                (
                    "columns = [\"model\", \"age\"]",
                    "columns = [\"temp_mean\"]",
                ),
            ],
            vec!["temp_mean"],
        ),
        (
            "an attribute column named like a declared feature",
            vec![
                ("path = \"reference/machines.csv\"", &own_path),
                (
                    "columns = [\"model\", \"age\"]",
                    "columns = [\"pressure_mean_3h\"]",
                ),
            ],
            vec!["pressure_mean_3h"],
        ),
        (
            "a missing event log",
            vec![(
                "path = \"reference/errors.csv\"",
                "path = \"reference/no-such-log.csv\"",
            )],
            vec!["no-such-log.csv"],
        ),
        (
            "a missing attributes file",
            vec![(
                "path = \"reference/machines.csv\"",
                "path = \"reference/no-machines.csv\"",
            )],
            vec!["no-machines.csv"],
        ),
    ];
    for (what, replace, named) in cases {
        let case = tempfile::tempdir().unwrap();
        let job = pdm_variant(case.path(), &replace);
        let lake = case.path().join("lake");
        let out = coldpath(&[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--date",
            "2024-03-11",
            "--lake",
            lake.to_str().unwrap(),
            "--labels-as-of",
            LABELS,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        for word in named {
            assert!(
                stderr.contains(word),
                "{what}: the message names `{word}`: {stderr}"
            );
        }
        assert!(!lake.join("telemetry").exists(), "{what}: nothing written");
        assert!(
            !lake.join("features_hourly").exists(),
            "{what}: nothing written"
        );
    }
}

/// count, mean, std, min, max, last and slope (per hour) of `(hours, value)` points, from their
/// definitions (docs/features.md), for a window's values written out by hand.
fn by_hand(points: &[(f64, f64)]) -> [Option<f64>; 7] {
    let n = points.len() as f64;
    if points.is_empty() {
        return [Some(0.0), None, None, None, None, None, None];
    }
    let mean = points.iter().map(|p| p.1).sum::<f64>() / n;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - mean)).sum();
    let two = points.len() >= 2;
    let std =
        two.then(|| (points.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    // The latest reading; readings tied on time: the largest value (docs/features.md).
    let last = points
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .unwrap()
        .1;
    let slope = (two && sxx > 0.0).then(|| sxy / sxx);
    [
        Some(n),
        Some(mean),
        std,
        Some(min),
        Some(max),
        Some(last),
        slope,
    ]
}

/// A numeric column declared in the schema (`[[declared]]`) is a signal like the canonical
/// ones: every aggregate over a 2 h window, worked by hand from the readings written here; a
/// reading exactly at a row's t belongs to the next row's window; a null value is not a value;
/// two values at one instant have no slope.
#[test]
fn a_declared_schema_column_is_a_signal_with_every_aggregate_worked_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let raw = empty_container(dir.path());
    // (device, time of 2024-03-11, humidity, temperature, message id)
    type Reading<'a> = (&'a str, &'a str, Option<f64>, Option<f64>, &'a str);
    let readings: [Reading; 8] = [
        ("d1", "10:00:00", Some(10.0), Some(20.0), "a"),
        ("d1", "10:30:00", Some(20.0), None, "b"),
        ("d1", "11:00:00", Some(30.0), None, "c"),
        ("d1", "11:30:00", Some(40.0), None, "d"),
        ("d1", "11:45:00", None, Some(21.0), "e"),
        ("d1", "12:00:00", Some(99.0), None, "f"),
        // Tied on time, the larger value read first: `last` is the larger, not the last read.
        ("d2", "12:00:00", None, Some(27.0), "g"),
        ("d2", "12:00:00", None, Some(25.0), "h"),
    ];
    for (i, (device, time, humidity, temperature, id)) in readings.iter().enumerate() {
        let hour: u32 = time[..2].parse().unwrap();
        let dir = raw.join(format!("telemetry/2024/03/11/{hour:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rec = serde_json::json!({"deviceId": device, "timestamp": format!("2024-03-11T{time}Z"),
                                         "messageId": id});
        if let Some(h) = humidity {
            rec["humidity"] = Value::from(*h);
        }
        if let Some(t) = temperature {
            rec["temperature"] = Value::from(*t);
        }
        std::fs::write(dir.join(format!("{i}.json")), format!("{rec}\n")).unwrap();
    }
    let schema = schema_with_humidity(dir.path());
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"declared-signal\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\n\
             lake = {:?}\nschema = {:?}\nmax_reject_ratio = 0.5\n\n[features]\n\
             signals = [\"humidity\", \"temperature\"]\nwindows = [\"2h\"]\n\
             aggregates = [\"count\", \"mean\", \"std\", \"min\", \"max\", \"last\", \"slope\"]\n",
            raw.to_str().unwrap(),
            dir.path().join("lake").to_str().unwrap(),
            schema.to_str().unwrap(),
        ),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let (code, report) = run_job(&job, "2024-03-11", &lake, &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{report}");
    let rows = features_of(&lake, "2024-03-11");
    // Hours after 10:00 of each window's values (the window of the row at ws is [ws - 1h, ws + 1h)).
    type Window<'a> = (&'a str, &'a str, &'a str, Vec<(f64, f64)>);
    let cases: [Window; 7] = [
        (
            "d1",
            "2024-03-11T10",
            "humidity",
            vec![(0.0, 10.0), (0.5, 20.0)],
        ),
        (
            "d1",
            "2024-03-11T11",
            "humidity",
            vec![(0.0, 10.0), (0.5, 20.0), (1.0, 30.0), (1.5, 40.0)],
        ),
        (
            "d1",
            "2024-03-11T12",
            "humidity",
            vec![(1.0, 30.0), (1.5, 40.0), (2.0, 99.0)],
        ),
        ("d1", "2024-03-11T10", "temperature", vec![(0.0, 20.0)]),
        (
            "d1",
            "2024-03-11T11",
            "temperature",
            vec![(0.0, 20.0), (1.75, 21.0)],
        ),
        ("d1", "2024-03-11T12", "temperature", vec![(1.75, 21.0)]),
        (
            "d2",
            "2024-03-11T12",
            "temperature",
            vec![(2.0, 27.0), (2.0, 25.0)],
        ),
    ];
    let aggregates = ["count", "mean", "std", "min", "max", "last", "slope"];
    for (device, ws, signal, points) in cases {
        for (agg, want) in aggregates.iter().zip(by_hand(&points)) {
            let column = format!("{signal}_{agg}_2h");
            let got = at(&rows, device, ws, &column).as_f64();
            let ok = match (got, want) {
                (None, None) => true,
                (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                _ => false,
            };
            assert!(ok, "{device} @ {ws}: {column} = {got:?}, by hand {want:?}");
        }
    }
    assert_eq!(rows.len(), 4, "d1 10:00, 11:00, 12:00 and d2 12:00");
}

/// The earlier dates' stored partials (`_coldpath/partials/`) of the pdm example: what
/// `run` reports it merged, and the same bits as reading those dates' silver again.
fn partial_files(lake: &Path, date: &str) -> Vec<PathBuf> {
    let dir = lake.join("_coldpath/partials");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{date}."))
    });
    files.sort();
    files
}

#[test]
fn later_dates_merge_the_partials_earlier_runs_stored_and_get_silvers_bits() {
    let lake = temp_lake();
    let job = pdm_job();
    let run = |date: &str| {
        let (code, report) = run_job(&job, date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{date}: {report}");
        report["earlier_windows"].clone()
    };
    let (first, second, third) = (DATES[0], DATES[1], DATES[2]);
    assert_eq!(
        run(first),
        serde_json::json!({"partials": [], "silver": []})
    );
    assert_eq!(
        run(second),
        serde_json::json!({"partials": [first], "silver": []})
    );
    assert_eq!(
        run(third),
        serde_json::json!({"partials": [second], "silver": []})
    );
    let merged = features_of(lake.path(), third);
    assert_eq!(
        partial_files(lake.path(), second).len(),
        1,
        "one file per date"
    );

    // Without them the date's silver is read, to the same bits.
    std::fs::remove_dir_all(lake.path().join("_coldpath/partials")).unwrap();
    assert_eq!(
        run(third),
        serde_json::json!({"partials": [], "silver": [second]})
    );
    assert_eq!(features_of(lake.path(), third), merged);

    // A rerun of the second date replaces its silver files: partials named by the old
    // files are never merged again, even when they are still there.
    run(second);
    let current = partial_files(lake.path(), second);
    assert_eq!(current.len(), 1);
    let stale = lake.path().join("stale.parquet");
    std::fs::copy(&current[0], &stale).unwrap();
    run(second);
    let renamed = partial_files(lake.path(), second);
    assert_eq!(renamed.len(), 1, "the rerun's file replaces the one before");
    assert_ne!(renamed, current, "named by the new silver files");
    std::fs::remove_file(&renamed[0]).unwrap();
    std::fs::rename(&stale, &current[0]).unwrap();
    assert_eq!(
        run(third),
        serde_json::json!({"partials": [], "silver": [second]})
    );
    assert_eq!(features_of(lake.path(), third), merged);

    // A damaged file under the current name (a truncated copy, then bytes that are
    // no Parquet at all) is a warning: the date's silver is read, to the same bits.
    run(second);
    let current = partial_files(lake.path(), second);
    assert_eq!(current.len(), 1);
    let bytes = std::fs::read(&current[0]).unwrap();
    for damaged in [bytes[..bytes.len() / 2].to_vec(), b"not parquet".to_vec()] {
        std::fs::write(&current[0], damaged).unwrap();
        assert_eq!(
            run(third),
            serde_json::json!({"partials": [], "silver": [second]})
        );
        assert_eq!(features_of(lake.path(), third), merged);
    }

    // The features command merges them too, says so in its report, to the same bits.
    run(second);
    let (job, lake_dir) = (job.to_str().unwrap(), lake.path().to_str().unwrap());
    let refreshed = |date: &str| {
        let args = ["features", "--job", job, "--lake", lake_dir, "--date", date];
        let out = coldpath(&[&args[..], &["--labels-as-of", LABELS]].concat());
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{report}");
        report["dates"][0]["earlier_windows"].clone()
    };
    assert_eq!(
        refreshed(third),
        serde_json::json!({"partials": [second], "silver": []})
    );
    assert_eq!(features_of(lake.path(), third), merged);
    std::fs::remove_dir_all(lake.path().join("_coldpath/partials")).unwrap();
    assert_eq!(
        refreshed(third),
        serde_json::json!({"partials": [], "silver": [second]})
    );
    assert_eq!(features_of(lake.path(), third), merged);
}

/// A declared window longer than a day reaches back over several dates: a 49 h
/// window of the row at 2024-03-11 00:00 (t = 01:00) is [03-09 00:00, 03-11 01:00),
/// so a reading exactly at its start counts, and one a microsecond before it,
/// on 03-08, is not read at all; the next row's, [03-09 01:00, 03-11 02:00), takes
/// neither that reading nor one a microsecond before its start, but one at its
/// start. A reading a microsecond before t is the row's; one at t, the next
/// row's. Worked by hand, and the same when the earlier dates' stored partials
/// are gone and their silver is read instead.
#[test]
fn a_window_of_49_hours_reaches_two_dates_back_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let raw = empty_container(dir.path());
    // (event time, temperature)
    let readings: [(&str, f64); 8] = [
        ("2024-03-08T23:59:59.999999Z", 100.0),
        ("2024-03-09T00:00:00Z", 10.0),
        ("2024-03-09T00:59:59.999999Z", 15.0),
        ("2024-03-09T01:00:00Z", 25.0),
        ("2024-03-10T12:00:00Z", 20.0),
        ("2024-03-11T00:30:00Z", 30.0),
        ("2024-03-11T00:59:59.999999Z", 35.0),
        ("2024-03-11T01:00:00Z", 40.0),
    ];
    for (i, (time, temperature)) in readings.iter().enumerate() {
        let folder = raw.join(format!(
            "telemetry/{}/{}/{}/{}",
            &time[..4],
            &time[5..7],
            &time[8..10],
            &time[11..13]
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let rec = serde_json::json!({"deviceId": "d1", "timestamp": time,
                                     "temperature": temperature, "messageId": format!("m{i}")});
        std::fs::write(folder.join(format!("{i}.json")), format!("{rec}\n")).unwrap();
    }
    let lake = dir.path().join("lake");
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"long-window\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\n\
             lake = {:?}\n\n[features]\nsignals = [\"temperature\"]\nwindows = [\"49h\"]\n\
             aggregates = [\"count\", \"mean\", \"std\", \"min\", \"max\", \"last\", \"slope\"]\n",
            raw.to_str().unwrap(),
            lake.to_str().unwrap(),
        ),
    )
    .unwrap();
    let run = |date: &str| {
        let (code, report) = run_job(&job, date, &lake, &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{date}: {report}");
    };
    for date in ["2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11"] {
        run(date);
    }
    // Hours after 03-09 00:00 of each window's readings (a microsecond is 1 / 3.6e9 h).
    let us = 1.0 / 3.6e9;
    let cases: [(&str, Vec<(f64, f64)>); 2] = [
        (
            "2024-03-11T00",
            vec![
                (0.0, 10.0),
                (1.0 - us, 15.0),
                (1.0, 25.0),
                (36.0, 20.0),
                (48.5, 30.0),
                (49.0 - us, 35.0),
            ],
        ),
        (
            "2024-03-11T01",
            vec![
                (1.0, 25.0),
                (36.0, 20.0),
                (48.5, 30.0),
                (49.0 - us, 35.0),
                (49.0, 40.0),
            ],
        ),
    ];
    let aggregates = ["count", "mean", "std", "min", "max", "last", "slope"];
    let check = |what: &str| {
        let rows = features_of(&lake, "2024-03-11");
        assert_eq!(rows.len(), 2, "{what}: the rows of 00:00 and 01:00");
        for (ws, points) in &cases {
            for (agg, want) in aggregates.iter().zip(by_hand(points)) {
                let column = format!("temperature_{agg}_49h");
                let got = at(&rows, "d1", ws, &column).as_f64();
                let ok = match (got, want) {
                    (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    (g, w) => g == w,
                };
                assert!(
                    ok,
                    "{what}: d1 @ {ws}: {column} = {got:?}, by hand {want:?}"
                );
            }
        }
    };
    check("with the stored partials");
    std::fs::remove_dir_all(lake.join("_coldpath/partials")).unwrap();
    run("2024-03-11");
    check("from the earlier dates' silver");
}
