//! `features_hourly`: the fixture dates against the generator's independent implementation of the contract,
//! the `features` command, the look-back, and what a bad reference log does.

use std::path::Path;

use serde_json::{Map, Value};

use crate::common::*;

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];

fn labels_as_of() -> String {
    expected("2024-03-10")["labels_as_of"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The table's rows of one feature_date, sorted by device and hour.
pub(crate) fn features_of(lake: &Path, date: &str) -> Vec<Map<String, Value>> {
    let mut rows: Vec<Map<String, Value>> = read_rows(lake, "features_hourly")
        .into_iter()
        .filter(|r| get(r, "feature_date") == date)
        .collect();
    rows.sort_by_key(|r| {
        (
            get(r, "device_id").as_str().unwrap().to_string(),
            get(r, "window_start").as_i64().unwrap(),
        )
    });
    rows
}

const FLOATS: [&str; 11] = [
    "temp_mean",
    "temp_min",
    "temp_max",
    "temp_std",
    "pressure_mean",
    "vibration_mean",
    "vibration_std",
    "vibration_max",
    "temp_rolling_mean_6h",
    "temp_rolling_std_6h",
    "vibration_rolling_std_6h",
];

const EXACT: [&str; 13] = [
    "device_id",
    "window_start",
    "feature_date",
    "device_type",
    "reading_count",
    "temp_spike_count",
    "hour",
    "day_of_week",
    "days_since_maintenance",
    "maintenance_status",
    "failure_within_7d",
    "failure_within_14d",
    "lookback_complete",
];

/// Every default column of every row equal to the expectation (floats to 1e-6 relative, nulls
/// as nulls), the point-in-time ones (days_since_maintenance, the labels) among them.
pub(crate) fn assert_features_match(got: &[Map<String, Value>], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (g, w) in got.iter().zip(want) {
        let at = format!("{what}: {} @ {}", w["device_id"], w["window_start"]);
        for c in EXACT {
            assert_eq!(get(g, c), &w[c], "{at}: {c}");
        }
        for c in FLOATS {
            match (get(g, c).as_f64(), w[c].as_f64()) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-6 * b.abs() + 1e-9,
                    "{at}: {c} = {a}, contract says {b}"
                ),
                (a, b) => panic!("{at}: {c} = {a:?}, contract says {b:?}"),
            }
        }
    }
}

fn run_all_dates(lake: &Path, labels: &str) {
    for date in DATES {
        let (code, report) = run_date(date, lake, &["--labels-as-of", labels]);
        assert_eq!(code, 0, "{report}");
    }
}

#[test]
fn every_date_matches_the_contract_definitions_value_for_value() {
    let lake = temp_lake();
    let labels = labels_as_of();
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", &labels]);
        assert_eq!(code, 0, "{report}");
        let want = expected(date)["features"].as_array().unwrap().clone();
        assert_eq!(report["tables"]["features_hourly"]["rows"], want.len());
        assert_eq!(
            report["lookback_complete"],
            Value::Bool(date != "2024-03-10"),
            "{date}"
        );
        assert_features_match(&features_of(lake.path(), date), &want, date);
    }
    // The designed cases are in there, so the comparison above is not vacuous.
    let day2 = expected("2024-03-11")["features"]
        .as_array()
        .unwrap()
        .clone();
    let pump01_09 = day2
        .iter()
        .find(|r| r["device_id"] == "pump-01" && r["hour"] == 9)
        .unwrap();
    assert_eq!(pump01_09["temp_spike_count"], 1, "the 140° reading");
    assert!(day2.iter().any(|r| r["maintenance_status"] == "CRITICAL"));
    assert!(day2.iter().any(|r| r["failure_within_14d"].is_null()));
    assert!(day2.iter().any(|r| r["days_since_maintenance"].is_null()));
    // The expected value of `column` in `device`'s row of `date` at `hour`.
    let cell = |date: &str, device: &str, hour: u64, column: &str| {
        expected(date)["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["device_id"] == device && r["hour"] == hour)
            .unwrap()[column]
            .clone()
    };
    let (t, f) = (Value::Bool(true), Value::Bool(false));
    // pump-02 fails at 20:00: the window starting 19:00 sees it, the one starting 20:00 does not.
    let label = |date, device, h| cell(date, device, h, "failure_within_7d");
    assert_eq!(
        (
            label("2024-03-11", "pump-02", 19),
            label("2024-03-11", "pump-02", 20)
        ),
        (t.clone(), f.clone())
    );
    // pump-01 fails at 2024-03-12T08:30, off the hour: a positive of the 07:00 row, whose t is
    // 08:00, not of the 08:00 row, whose t (09:00) is after it.
    assert_eq!(
        (
            label("2024-03-12", "pump-01", 7),
            label("2024-03-12", "pump-01", 8)
        ),
        (t, f)
    );
    // The point in time (fixtures/pit.py): pump-02's seal at 06:00 exactly is seen from the
    // 06:00 row on (t = 07:00), not by the 05:00 row (t = 06:00).
    let since = |h| cell("2024-03-11", "pump-02", h, "days_since_maintenance");
    assert_eq!((since(5), since(6)), (Value::Null, Value::from(0)));
}

#[test]
fn features_table_is_what_synapse_and_azure_ml_read() {
    let lake = temp_lake();
    let labels = labels_as_of();
    let (code, report) = run_date("2024-03-11", lake.path(), &["--labels-as-of", &labels]);
    assert_eq!(code, 0, "{report}");
    let table = open_table(lake.path(), "features_hourly");
    let snapshot = table.snapshot().unwrap();
    assert_eq!(snapshot.protocol().min_reader_version(), 1);
    assert_eq!(snapshot.protocol().min_writer_version(), 2);
    assert_eq!(
        snapshot.metadata().partition_columns(),
        &vec!["feature_date".to_string()]
    );
    let fields: Vec<(String, String)> = snapshot
        .schema()
        .fields()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    let expect = [
        ("device_id", "string"),
        ("window_start", "timestamp"),
        ("device_type", "string"),
        ("reading_count", "long"),
        ("temp_mean", "double"),
        ("temp_min", "double"),
        ("temp_max", "double"),
        ("temp_std", "double"),
        ("pressure_mean", "double"),
        ("vibration_mean", "double"),
        ("vibration_std", "double"),
        ("vibration_max", "double"),
        ("temp_rolling_mean_6h", "double"),
        ("temp_rolling_std_6h", "double"),
        ("vibration_rolling_std_6h", "double"),
        ("temp_spike_count", "long"),
        ("hour", "integer"),
        ("day_of_week", "integer"),
        ("days_since_maintenance", "integer"),
        ("maintenance_status", "string"),
        ("failure_within_7d", "boolean"),
        ("failure_within_14d", "boolean"),
        ("lookback_complete", "boolean"),
        ("coverage", "double"),
        ("max_gap_s", "double"),
        ("baseline_hours", "long"),
        ("temp_baseline_mean", "double"),
        ("temp_baseline_std", "double"),
        ("temp_zscore", "double"),
        ("vibration_zscore", "double"),
        ("feature_date", "date"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(fields, expect);
    // The commit names the run and the label cut-off.
    let meta = user_metadata(lake.path(), "features_hourly", 0);
    assert_eq!(meta["run_id"], report["run_id"]);
    assert_eq!(meta["date"], "2024-03-11");
    assert_eq!(meta["labels_as_of"], report["labels_as_of"]);
}

#[test]
fn a_missing_previous_day_is_flagged_and_the_features_command_completes_it() {
    let lake = temp_lake();
    let labels = labels_as_of();
    // 2024-03-11 first: its 00:00-04:00 windows cannot see 2024-03-10.
    let (code, report) = run_date("2024-03-11", lake.path(), &["--labels-as-of", &labels]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["lookback_complete"], false);
    let alone = features_of(lake.path(), "2024-03-11");
    assert!(alone.iter().all(|r| get(r, "lookback_complete") == false));
    let want = expected("2024-03-11")["features"]
        .as_array()
        .unwrap()
        .clone();
    let first_hour_differs = alone.iter().zip(&want).any(|(g, w)| {
        w["hour"] == 0
            && get(g, "temp_rolling_std_6h").as_f64() != w["temp_rolling_std_6h"].as_f64()
    });
    assert!(
        first_hour_differs,
        "without the look-back the 00:00 windows are shorter"
    );

    // Then the previous day, then a features refresh of 2024-03-11 from silver alone.
    assert_eq!(
        run_date("2024-03-10", lake.path(), &["--labels-as-of", &labels]).0,
        0
    );
    let refresh = features_cmd(
        lake.path(),
        &fixtures_raw(),
        &["--date", "2024-03-11", "--labels-as-of", &labels],
    );
    assert_eq!(refresh.0, 0, "{}", refresh.1);
    assert_eq!(refresh.1["dates"][0]["lookback_complete"], true);
    assert_features_match(&features_of(lake.path(), "2024-03-11"), &want, "refreshed");
}

#[test]
fn the_features_command_refreshes_labels_from_silver_without_raw() {
    let lake = temp_lake();
    // The nightly runs saw the labels as of the morning after the last date: most horizons unknown.
    run_all_dates(lake.path(), "2024-03-13T00:00:00Z");
    let early = features_of(lake.path(), "2024-03-11");
    assert!(early.iter().any(|r| get(r, "failure_within_7d").is_null()));

    // A source holding only the reference logs: the refresh cannot have read raw.
    let refs = temp_lake();
    std::fs::create_dir_all(refs.path().join("reference")).unwrap();
    for f in ["maintenance.csv", "failures.csv"] {
        std::fs::copy(
            fixtures_raw().join("reference").join(f),
            refs.path().join("reference").join(f),
        )
        .unwrap();
    }
    let silver_before = read_rows(lake.path(), "telemetry").len();
    let labels = labels_as_of();
    let (code, report, stderr) = features_cmd(
        lake.path(),
        refs.path(),
        &[
            "--from",
            "2024-03-10",
            "--to",
            "2024-03-12",
            "--labels-as-of",
            &labels,
        ],
    );
    assert_eq!(code, 0, "{report} {stderr}");
    let dates: Vec<&str> = report["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, DATES);
    for date in DATES {
        let want = expected(date)["features"].as_array().unwrap().clone();
        assert_features_match(&features_of(lake.path(), date), &want, date);
    }
    assert_eq!(read_rows(lake.path(), "telemetry").len(), silver_before);
}

#[test]
fn a_bad_reference_row_is_a_configuration_error_naming_file_and_line() {
    let lake = temp_lake();
    let source = temp_lake();
    // A copy of the raw container whose failure log has a bad timestamp on line 3.
    copy_dir(&fixtures_raw(), source.path());
    std::fs::write(
        source.path().join("reference/failures.csv"),
        "device_id,failure_time,component\npump-01,2024-03-12T00:00:00Z,seal\npump-02,last tuesday,seal\n",
    )
    .unwrap();
    let job = job_file();
    let run = || {
        coldpath(&[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--date",
            "2024-03-11",
            "--source",
            source.path().to_str().unwrap(),
            "--lake",
            lake.path().to_str().unwrap(),
        ])
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("reference/failures.csv")
            && stderr.contains("line 3")
            && stderr.contains("last tuesday"),
        "{stderr}"
    );
    assert!(!lake.path().join("telemetry").exists(), "nothing written");

    // A missing log is an error too, never an empty one (that would make every label false).
    std::fs::remove_file(source.path().join("reference/failures.csv")).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("failures.csv"), "{stderr}");
}

/// Asserts that every 7- and 14-day label of `dates` in `lake` is what the
/// definition gives over the fixtures' failure log at `cut_off` (µs); how many
/// of each value (`true`, `false`, `null`) there were.
pub fn labels_as_defined(
    lake: &Path,
    dates: &[&str],
    cut_off: i64,
) -> std::collections::BTreeMap<String, usize> {
    let failures = fixture_failures();
    let mut seen = std::collections::BTreeMap::new();
    for date in dates {
        for r in features_of(lake, date) {
            let device = get(&r, "device_id").as_str().unwrap();
            let ws = get(&r, "window_start").as_i64().unwrap();
            for days in [7, 14] {
                let want = label_within(&failures, device, ws, cut_off, days);
                let column = format!("failure_within_{days}d");
                assert_eq!(get(&r, &column), &want, "{date} {device} {ws} {column}");
                *seen.entry(want.to_string()).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// A failure log last written before `--labels-as-of` is the labels' cut-off:
/// a failure after it may not be in it yet, so a label whose horizon ends
/// later is null, not false (CONTRACT.md: never a false negative from a future
/// not yet seen). The log here was written at 2024-03-19 10:00, exactly where
/// the 7-day horizon of 2024-03-12 09:00 ends; the cut-off is ten days later.
#[test]
fn labels_look_no_further_than_the_failure_log_was_written() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    let written = chrono::DateTime::parse_from_rfc3339("2024-03-19T10:00:00Z").unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(written.timestamp() as u64);
    let log = std::fs::File::options()
        .write(true)
        .open(raw.join("reference/failures.csv"))
        .unwrap();
    log.set_modified(at).unwrap();
    let lake = dir.path().join("lake");
    let source = [
        "--source",
        raw.to_str().unwrap(),
        "--labels-as-of",
        "2024-03-30T00:00:00Z",
    ];
    for date in ["2024-03-10", "2024-03-11", "2024-03-12"] {
        let (code, report) = run_date(date, &lake, &source);
        assert_eq!(code, 0, "{report}");
    }
    let dates = ["2024-03-10", "2024-03-11", "2024-03-12"];
    let seen = labels_as_defined(&lake, &dates, written.timestamp_micros());
    assert!(seen.len() == 3, "true, false and null all there: {seen:?}");
    // The edge itself: pump-02 fails on 03-11 20:00 and not again; its 7-day
    // horizon from 03-12 09:00's prediction time (10:00) ends at the log's time.
    let pump = |hour: i64| {
        let ws = 1_710_201_600_000_000 + hour * 3_600_000_000; // 2024-03-12 00:00 + hours
        features_of(&lake, "2024-03-12")
            .into_iter()
            .find(|r| get(r, "device_id") == "pump-02" && get(r, "window_start") == ws)
            .map(|r| get(&r, "failure_within_7d").clone())
    };
    assert_eq!(pump(8), Some(Value::Bool(false)));
    assert_eq!(
        pump(9),
        Some(Value::Bool(false)),
        "ends at the log's time: seen"
    );
    assert_eq!(pump(10), Some(Value::Null), "ends after it: not yet seen");
}

/// `features` over a date never run (no silver, no device_health rows) refreshes
/// nothing there: device_health would otherwise list every device of the week
/// before as silent on a date nothing was read for, and the date would then
/// read as run. A date run before it is refreshed as ever.
#[test]
fn the_features_command_leaves_a_date_never_run_alone() {
    let lake = temp_lake();
    run_all_dates(lake.path(), LABELS);
    let range = [
        "--from",
        "2024-03-12",
        "--to",
        "2024-03-13",
        "--labels-as-of",
        LABELS,
    ];
    let (code, report, stderr) = features_cmd(lake.path(), &fixtures_raw(), &range);
    assert_eq!(code, 0, "{report}\n{stderr}");
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 2, "{report}");
    assert!(
        dates[0]["table"].is_object(),
        "2024-03-12 refreshed: {report}"
    );
    assert!(
        dates[1].get("table").is_none(),
        "2024-03-13 left alone: {report}"
    );
    assert!(stderr.contains("never run"), "{stderr}");
    for table in ["device_health", "features_hourly", "telemetry_minute"] {
        let column = match table {
            "device_health" => "health_date",
            "features_hourly" => "feature_date",
            _ => "event_date",
        };
        let rows = read_rows(lake.path(), table);
        assert!(
            rows.iter().all(|r| get(r, column) != "2024-03-13"),
            "{table}"
        );
        assert!(
            rows.iter().any(|r| get(r, column) == "2024-03-12"),
            "{table}"
        );
    }
}

/// A refresh whose `telemetry_minute` commit fails after `features_hourly`'s
/// landed says so, as a run does: the date's entry is failed, naming the table
/// committed before the failure, and the refresh stays to be done again.
#[test]
fn a_refresh_that_commits_part_of_its_tables_says_which() {
    let lake = temp_lake();
    run_all_dates(lake.path(), LABELS);
    std::fs::write(
        lake.path()
            .join("telemetry_minute/_delta_log/00000000000000000000.json"),
        "this is not a delta log\n",
    )
    .unwrap();
    let range = ["--date", "2024-03-12", "--labels-as-of", LABELS];
    let (code, report, stderr) = features_cmd(lake.path(), &fixtures_raw(), &range);
    assert_eq!(code, 1, "{report}\n{stderr}");
    let error = report["dates"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("after committing features_hourly for 2024-03-12"),
        "{report}"
    );
}

/// A date whose run cannot be looked up (its manifest unreadable: here a
/// folder where the document would be) fails alone: the dates after it in the
/// range are refreshed, and the command exits 1 naming it.
#[test]
fn a_date_that_cannot_be_looked_up_fails_alone() {
    let lake = temp_lake();
    run_all_dates(lake.path(), LABELS);
    std::fs::create_dir_all(lake.path().join("_coldpath/manifests/2024-03-09.json")).unwrap();
    let range = [
        "--from",
        "2024-03-09",
        "--to",
        "2024-03-11",
        "--labels-as-of",
        LABELS,
    ];
    let (code, report, stderr) = features_cmd(lake.path(), &fixtures_raw(), &range);
    assert_eq!(code, 1, "{report}\n{stderr}");
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 3, "{report}");
    assert_eq!(dates[0]["status"], "failed", "{report}");
    assert!(
        dates[0]["error"].as_str().unwrap().contains("manifests"),
        "{report}"
    );
    for later in &dates[1..] {
        assert_eq!(later["status"], "succeeded", "{later}");
        assert!(later["table"].is_object(), "refreshed: {later}");
    }
}
