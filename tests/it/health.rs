//! `device_health` and the features' health and baseline columns against the contract:
//! on the fixtures, computed independently by fixtures/generate.py (run, features
//! refresh and backfill alike); and on a small hand-made pair of days with one device
//! per case (silent all day, silent across midnight, a stuck sensor, a newcomer, a
//! device known only from the maintenance log, 24 and 23 baseline hours), whose
//! values are worked out by hand below.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::common::*;

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];
const HEALTH_EXACT: [&str; 12] = [
    "device_id",
    "device_type",
    "readings",
    "expected_readings",
    "gaps_over_5m",
    "first_seen",
    "last_seen",
    "duplicates",
    "rejected",
    "late_readings",
    "stuck_temperature_hours",
    "status",
];
const HEALTH_FLOATS: [&str; 4] = ["coverage", "max_gap_s", "transit_p50_s", "transit_p95_s"];
const FEATURE_FLOATS: [&str; 6] = [
    "coverage",
    "max_gap_s",
    "temp_baseline_mean",
    "temp_baseline_std",
    "temp_zscore",
    "vibration_zscore",
];

fn close(got: &Value, want: &Value, at: &str) {
    match (got.as_f64(), want.as_f64()) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-9),
            "{at} = {a}, the contract says {b}"
        ),
        (a, b) => panic!("{at} = {a:?}, the contract says {b:?}"),
    }
}

pub(crate) fn health_of(lake: &Path, date: &str) -> Vec<Map<String, Value>> {
    let mut rows: Vec<_> = read_rows(lake, "device_health")
        .into_iter()
        .filter(|r| get(r, "health_date") == date)
        .collect();
    rows.sort_by_key(|r| get(r, "device_id").as_str().unwrap().to_string());
    rows
}

fn assert_health(lake: &Path, date: &str) -> Vec<Value> {
    let want = expected(date)["health"].as_array().unwrap().clone();
    assert_health_is(lake, date, &want);
    want
}

/// `device_health` of `date` in `lake` equals the generator's rows `want` (sorted by device).
pub(crate) fn assert_health_is(lake: &Path, date: &str, want: &[Value]) {
    let got = health_of(lake, date);
    assert_eq!(got.len(), want.len(), "{date}: device_health rows");
    for (g, w) in got.iter().zip(want) {
        let at = format!("{date}: {}", w["device_id"]);
        for c in HEALTH_EXACT {
            assert_eq!(get(g, c), &w[c], "{at}: {c}");
        }
        for c in HEALTH_FLOATS {
            close(get(g, c), &w[c], &format!("{at}: {c}"));
        }
    }
}

fn assert_feature_columns(lake: &Path, date: &str) -> Vec<Value> {
    let want = expected(date)["features"].as_array().unwrap().clone();
    assert_feature_columns_are(lake, date, &want);
    want
}

/// The health and baseline columns of `features_hourly` on `date` equal the generator's `want`.
pub(crate) fn assert_feature_columns_are(lake: &Path, date: &str, want: &[Value]) {
    let got: BTreeMap<(String, i64), Map<String, Value>> = read_rows(lake, "features_hourly")
        .into_iter()
        .filter(|r| get(r, "feature_date") == date)
        .map(|r| {
            let key = (
                get(&r, "device_id").as_str().unwrap().to_string(),
                get(&r, "window_start").as_i64().unwrap(),
            );
            (key, r)
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{date}: features rows");
    for w in want {
        let key = (
            w["device_id"].as_str().unwrap().to_string(),
            w["window_start"].as_i64().unwrap(),
        );
        let g = &got[&key];
        let at = format!("{date}: {key:?}");
        assert_eq!(get(g, "baseline_hours"), &w["baseline_hours"], "{at}");
        for c in FEATURE_FLOATS {
            close(get(g, c), &w[c], &format!("{at}: {c}"));
        }
    }
}

fn all_of<'a>(rows: &'a [Value], column: &str) -> impl Iterator<Item = &'a Value> + 'a {
    let column = column.to_string();
    rows.iter().map(move |r| &r[&column])
}

#[test]
fn health_and_baselines_match_the_contract_on_the_fixtures() {
    let lake = temp_lake();
    let (mut health, mut features) = (Vec::new(), Vec::new());
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
        let want = assert_health(lake.path(), date);
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        for w in &want {
            *statuses
                .entry(w["status"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(report["devices_by_status"], serde_json::json!(statuses));
        assert_eq!(report["tables"]["device_health"]["rows"], want.len());
        health.extend(want);
        features.extend(assert_feature_columns(lake.path(), date));
    }
    // Not vacuous: attribution, transit and the baselines all have values to compare.
    for c in ["duplicates", "rejected", "late_readings"] {
        assert!(all_of(&health, c).any(|v| v.as_u64() > Some(0)), "{c}");
    }
    assert!(all_of(&health, "transit_p95_s").any(Value::is_f64));
    assert!(all_of(&features, "temp_zscore").any(Value::is_f64));
    assert!(all_of(&features, "temp_zscore").any(Value::is_null));
    assert!(all_of(&features, "baseline_hours").any(|v| v.as_u64() >= Some(48)));
}

#[test]
fn a_features_refresh_and_a_backfill_give_the_same_health_and_baselines() {
    // Silver only, then the features command over the range, in date order.
    let lake = temp_lake();
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &["--silver-only"]);
        assert_eq!(code, 0, "{report}");
    }
    assert!(!lake.path().join("device_health").exists());
    let range = |command: &str, lake: &Path, extra: &[&str]| {
        let job = job_file();
        let mut args = vec![command, "--job", job.to_str().unwrap(), "--from", DATES[0]];
        args.extend(["--to", DATES[2], "--lake", lake.to_str().unwrap()]);
        args.extend(["--labels-as-of", LABELS]);
        args.extend(extra);
        let out = coldpath(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{command}: {err}");
        for date in DATES {
            assert_health(lake, date);
            assert_feature_columns(lake, date);
        }
    };
    range("features", lake.path(), &[]);
    // A backfill's features pass goes in date order, so every date sees its baselines.
    let lake = temp_lake();
    range("backfill", lake.path(), &["--parallel", "3"]);
}

#[test]
fn a_refresh_keeps_the_runs_counts_once_the_log_no_longer_holds_the_run() {
    let lake = temp_lake();
    for date in DATES {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    // A month on: a checkpoint, then the next commit to `rejects` (a rerun of the
    // last date) removes the expired commits before it, the second date's among them.
    maintain_with_no_retention(lake.path());
    age_log(lake.path(), "rejects");
    let (code, report) = run_date(DATES[2], lake.path(), &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{report}");
    assert!(
        !log_holds(lake.path(), "rejects", 1),
        "the scenario removes the date's commit"
    );
    // The refresh of the second date finds its counts in its device_health rows.
    let (code, report, stderr) = features_cmd(
        lake.path(),
        &fixtures_raw(),
        &["--date", DATES[1], "--labels-as-of", LABELS],
    );
    assert_eq!(code, 0, "{report}");
    assert!(!stderr.contains("counts them 0"), "{stderr}");
    let want = assert_health(lake.path(), DATES[1]);
    // Not vacuous: the date has counts to lose.
    for c in ["duplicates", "rejected", "late_readings"] {
        assert!(all_of(&want, c).any(|v| v.as_u64() > Some(0)), "{c}");
    }
}

// ---- A hand-made pair of days: 2024-05-01 (history) and 2024-05-02 (D) ----

const D0: i64 = 1_714_608_000; // 2024-05-02T00:00:00Z in seconds
const MIN: i64 = 60;
const HOUR: i64 = 3600;

/// One reading: device, type, seconds since the epoch, temperature, transit seconds, message id.
struct Reading {
    device: &'static str,
    ty: &'static str,
    t: i64,
    temp: f64,
    transit: i64,
    id: String,
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn reading(device: &'static str, ty: &'static str, t: i64, temp: f64, transit: i64) -> Reading {
    Reading {
        device,
        ty,
        t,
        temp,
        transit,
        id: format!("{device}-{t}"),
    }
}

fn json_line(r: &Reading) -> String {
    serde_json::json!({
        "deviceId": r.device, "deviceType": r.ty, "timestamp": iso(r.t),
        "temperature": r.temp, "pressure": 1.0, "vibration": 2.0,
        "messageId": r.id, "EventEnqueuedUtcTime": iso(r.t + r.transit),
    })
    .to_string()
}

/// Every `step` seconds in `[from, to)`.
fn every(step: i64, from: i64, to: i64) -> impl Iterator<Item = i64> {
    (0..)
        .map(move |i| from + i * step)
        .take_while(move |t| *t < to)
}

/// The readings of both days (D − 1 and D), by design.
fn designed() -> Vec<Reading> {
    let mut rs = Vec::new();
    let day = 24 * HOUR;
    let prev = D0 - day;
    // steady: every 2 min both days; an hour's temperatures alternate ±0.5 around 20 on even
    // hours and 21 on odd ones of D − 1, around 22 all of D (so each hour's mean is exactly
    // that); transit 1 s and 3 s alternating.
    for (i, t) in every(2 * MIN, prev, D0 + day).enumerate() {
        let centre = if t < D0 {
            20.0 + ((t - prev) / HOUR % 2) as f64
        } else {
            22.0
        };
        let (offset, transit) = if i % 2 == 0 { (-0.5, 1) } else { (0.5, 3) };
        rs.push(reading("steady", "pump", t, centre + offset, transit));
    }
    // quiet: every 2 min, silent from D − 1 22:30:00 (its last) to D 01:30:00, temperature 30.
    for t in every(2 * MIN, prev, prev + 22 * HOUR + 30 * MIN + 1).chain(every(
        2 * MIN,
        D0 + 90 * MIN,
        D0 + day,
    )) {
        rs.push(reading("quiet", "fan", t, 30.0, 2));
    }
    // stuck: every 2 min both days, temperature 20 + minute/100, but exactly 25.0 all of D's hour 5.
    for t in every(2 * MIN, prev, D0 + day) {
        let stuck = (D0 + 5 * HOUR..D0 + 6 * HOUR).contains(&t);
        let temp = if stuck {
            25.0
        } else {
            20.0 + ((t / MIN) % 60) as f64 / 100.0
        };
        rs.push(reading("stuck", "compressor", t, temp, 2));
    }
    // newbie: first seen on D, every 5 min from 12:00.
    for t in every(5 * MIN, D0 + 12 * HOUR, D0 + day) {
        rs.push(reading("newbie", "pump", t, 40.0, 2));
    }
    // gone: every 2 min on D − 1 only.
    for t in every(2 * MIN, prev, D0) {
        rs.push(reading("gone", "fan", t, 50.0, 2));
    }
    rs
}

/// Writes both days as JSON lines, an hour folder each; a few records are bent by design
/// (see [`hand_made_days_give_the_values_worked_out_by_hand`]).
fn write_source(root: &Path) {
    let mut by_folder: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let folder = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("telemetry/%Y/%m/%d/%H")
            .to_string()
    };
    for r in designed() {
        // stuck's last reading of D (23:58) arrives in D + 1's first partition: late.
        let t = if r.device == "stuck" && r.t == D0 + 24 * HOUR - 2 * MIN {
            D0 + 24 * HOUR
        } else {
            r.t
        };
        by_folder.entry(folder(t)).or_default().push(json_line(&r));
    }
    // steady: two of D's readings sent twice (copies in the next hour's folder, same message id,
    // later enqueued: the originals win), and one record with a temperature of the wrong type.
    for t in [D0 + 3 * HOUR, D0 + 7 * HOUR] {
        let r = reading("steady", "pump", t, 22.0, 9);
        by_folder
            .entry(folder(t + HOUR))
            .or_default()
            .push(json_line(&r));
    }
    by_folder.entry(folder(D0 + 10 * HOUR)).or_default().push(
        serde_json::json!({"deviceId": "steady", "timestamp": iso(D0 + 10 * HOUR + 1), "temperature": "hot"})
            .to_string(),
    );
    for (folder, lines) in by_folder {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.json"), lines.join("\n") + "\n").unwrap();
    }
    let reference = root.join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    std::fs::write(
        reference.join("maintenance.csv"),
        "device_id,maintenance_date,kind\nserviced,2024-04-20,inspection\n",
    )
    .unwrap();
    std::fs::write(
        reference.join("failures.csv"),
        "device_id,failure_time,component\n",
    )
    .unwrap();
}

fn row<'a>(rows: &'a [Map<String, Value>], device: &str) -> &'a Map<String, Value> {
    rows.iter()
        .find(|r| get(r, "device_id") == device)
        .unwrap_or_else(|| panic!("no row for {device}"))
}

fn f(r: &Map<String, Value>, c: &str) -> Option<f64> {
    get(r, c).as_f64()
}

fn i(r: &Map<String, Value>, c: &str) -> Option<i64> {
    get(r, c).as_i64()
}

#[test]
fn hand_made_days_give_the_values_worked_out_by_hand() {
    let source = tempfile::tempdir().unwrap();
    write_source(source.path());
    let lake = temp_lake();
    let src = source.path().to_str().unwrap();
    for date in ["2024-05-01", "2024-05-02"] {
        let (code, report) = run_job(
            &job_file(),
            date,
            lake.path(),
            &["--source", src, "--labels-as-of", "2024-06-01T00:00:00Z"],
        );
        assert_eq!(code, 0, "{report}");
    }
    let h = health_of(lake.path(), "2024-05-02");
    let names: Vec<&str> = h
        .iter()
        .map(|r| get(r, "device_id").as_str().unwrap())
        .collect();
    // Known from D's silver, D − 1's silver (gone), or only the maintenance log (serviced).
    assert_eq!(
        names,
        ["gone", "newbie", "quiet", "serviced", "steady", "stuck"]
    );

    // steady: 720 readings every 120 s (median 120 → 86400 / 120 = 720 expected), the 2
    // copies removed, the wrong-typed record rejected; gaps 120 s, 120 s to each edge too.
    let s = row(&h, "steady");
    assert_eq!(
        (
            i(s, "readings"),
            i(s, "expected_readings"),
            f(s, "coverage")
        ),
        (Some(720), Some(720), Some(1.0))
    );
    assert_eq!(
        (f(s, "max_gap_s"), i(s, "gaps_over_5m")),
        (Some(120.0), Some(0))
    );
    assert_eq!(
        (i(s, "duplicates"), i(s, "rejected"), i(s, "late_readings")),
        (Some(2), Some(1), Some(0))
    );
    // Transits 1, 3, 1, 3 …: sorted, 360 ones then 360 threes. p50 at rank 359.5 → 2;
    // p95 at rank 683.05 → 3.
    assert_eq!(
        (f(s, "transit_p50_s"), f(s, "transit_p95_s")),
        (Some(2.0), Some(3.0))
    );
    assert_eq!(
        (get(s, "status"), i(s, "first_seen")),
        (&Value::from("OK"), Some(D0 * 1_000_000))
    );

    // quiet: D's first reading at 01:30 (5400 s after midnight: the longest gap), then every
    // 120 s to 23:58: (86280 − 5400) / 120 + 1 = 675 readings of 720, coverage 0.9375.
    let q = row(&h, "quiet");
    assert_eq!(
        (i(q, "readings"), i(q, "expected_readings")),
        (Some(675), Some(720))
    );
    assert_eq!(
        (f(q, "coverage"), f(q, "max_gap_s")),
        (Some(0.9375), Some(5400.0))
    );
    assert_eq!(get(q, "status"), "DEGRADED");

    // stuck: hour 5 holds 30 readings of exactly 25.0; its 23:58 reading came in the look-ahead.
    let k = row(&h, "stuck");
    assert_eq!(
        (i(k, "stuck_temperature_hours"), i(k, "late_readings")),
        (Some(1), Some(1))
    );
    assert_eq!(
        (i(k, "readings"), get(k, "status")),
        (Some(720), &Value::from("DEGRADED"))
    );

    // newbie: no history, so D's own median (300 s): 288 expected, 144 read, coverage 0.5;
    // the gap from midnight to 12:00 is 43200 s.
    let n = row(&h, "newbie");
    assert_eq!(
        (
            i(n, "readings"),
            i(n, "expected_readings"),
            f(n, "coverage")
        ),
        (Some(144), Some(288), Some(0.5))
    );
    assert_eq!(
        (f(n, "max_gap_s"), i(n, "gaps_over_5m")),
        (Some(43_200.0), Some(0))
    );
    assert_eq!(get(n, "status"), "DEGRADED");

    // gone: silent all day, its type and 720 expected from D − 1.
    let g = row(&h, "gone");
    assert_eq!(
        (
            i(g, "readings"),
            i(g, "expected_readings"),
            f(g, "coverage")
        ),
        (Some(0), Some(720), Some(0.0))
    );
    assert_eq!(
        (f(g, "max_gap_s"), get(g, "first_seen")),
        (Some(86_400.0), &Value::Null)
    );
    assert_eq!(
        (get(g, "status"), get(g, "device_type")),
        (&Value::from("SILENT"), &Value::from("fan"))
    );

    // serviced: only in the maintenance log: silent, nothing to expect.
    let v = row(&h, "serviced");
    assert_eq!(
        (
            get(v, "status"),
            get(v, "expected_readings"),
            get(v, "coverage")
        ),
        (&Value::from("SILENT"), &Value::Null, &Value::Null)
    );

    // Baselines at D 00:00: steady has D − 1's 24 hours (means 20, 21, … : mean 20.5, sample
    // std sqrt(24 · 0.25 / 23)); D's 22 is (22 − 20.5) / std.
    let features = read_rows(lake.path(), "features_hourly");
    let at = |device: &str, secs: i64| {
        features
            .iter()
            .find(|r| {
                get(r, "device_id") == device
                    && get(r, "window_start").as_i64() == Some(secs * 1_000_000)
            })
            .unwrap_or_else(|| panic!("no features row for {device} at {secs}"))
    };
    let s0 = at("steady", D0);
    let std = (6.0f64 / 23.0).sqrt();
    assert_eq!(i(s0, "baseline_hours"), Some(24));
    assert_eq!(f(s0, "temp_baseline_mean"), Some(20.5));
    assert!((f(s0, "temp_baseline_std").unwrap() - std).abs() < 1e-12);
    assert!((f(s0, "temp_zscore").unwrap() - 1.5 / std).abs() < 1e-9);
    // Its vibration never changes: std 0, no z-score.
    assert_eq!(get(s0, "vibration_zscore"), &Value::Null);
    // quiet at D 01:00: D − 1's hours 0 to 22 only, 23 baseline hours: no z-score. Its hour
    // holds 01:30 … 01:58, 15 readings of 30 expected (coverage 0.5), the gap 01:00 → 01:30.
    let q1 = at("quiet", D0 + HOUR);
    assert_eq!(
        (i(q1, "baseline_hours"), get(q1, "temp_zscore")),
        (Some(23), &Value::Null)
    );
    assert_eq!(
        (f(q1, "coverage"), f(q1, "max_gap_s")),
        (Some(0.5), Some(1800.0))
    );
    // A later hour of D counts D's earlier hours too: steady at 05:00 has D − 1's 24 hours
    // and D's hours 0 to 4 (22 each): 29 hours.
    let s5 = at("steady", D0 + 5 * HOUR);
    assert_eq!(i(s5, "baseline_hours"), Some(29));
    let m = (12.0 * 20.0 + 12.0 * 21.0 + 5.0 * 22.0) / 29.0;
    assert!((f(s5, "temp_baseline_mean").unwrap() - m).abs() < 1e-12);
}
