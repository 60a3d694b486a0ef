//! The held-out check of device_health, the baselines and telemetry_minute: a raw
//! container generated at test time (`fixtures/generate.py --held-out`, seeded
//! random traffic never looked at while building), run for eight consecutive dates.
//! Every date's features_hourly (every default column: the point-in-time ones,
//! days_since_maintenance and the labels, too), device_health and telemetry_minute must
//! equal the contract's definitions as the generator computes them independently
//! (fixtures/pit.py), and the last date's page must render in headless Chromium.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::features::{assert_features_match, features_of};
use crate::health::{assert_feature_columns_are, assert_health_is, health_of};
use crate::minute::{assert_minutes, minutes_of};
use crate::report_html::{assert_clean, headless};

pub(crate) const DATES: [&str; 8] = [
    "2024-05-01",
    "2024-05-02",
    "2024-05-03",
    "2024-05-04",
    "2024-05-05",
    "2024-05-06",
    "2024-05-07",
    "2024-05-08",
];
pub(crate) const LABELS_AS_OF: &str = "2024-05-20T00:00:00Z";

/// The seed: `COLDPATH_HELD_OUT_SEED` to try another container, else a fixed one.
fn seed() -> String {
    std::env::var("COLDPATH_HELD_OUT_SEED").unwrap_or_else(|_| "20261129".to_string())
}

pub(crate) fn generate(dir: &Path) {
    let out = std::process::Command::new("python3")
        .arg(repo().join("fixtures/generate.py"))
        .arg("--held-out")
        .arg(dir)
        .args(["--seed", &seed()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn expectation(dir: &Path, date: &str) -> Value {
    let text = std::fs::read(dir.join(format!("expected/{date}.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().unwrap()
}

/// `date`'s features_hourly (the default columns, then the health and
/// baseline ones), device_health and telemetry_minute, as the generator
/// computed them (the first dates with less than 7 dates of history too).
fn assert_derived_as_designed(lake: &Path, date: &str, want: &Value) {
    let what = format!("held-out {date}");
    assert_features_match(&features_of(lake, date), array(want, "features"), &what);
    assert_health_is(lake, date, array(want, "health"));
    assert_feature_columns_are(lake, date, array(want, "features"));
    assert_minutes(&minutes_of(lake, date), array(want, "minutes"), date);
}

#[test]
fn eight_consecutive_dates_of_a_held_out_container_give_the_contracts_health_baselines_and_minutes()
{
    let (dir, lake, out) = (
        tempfile::tempdir().unwrap(),
        temp_lake(),
        tempfile::tempdir().unwrap(),
    );
    generate(dir.path());
    let source = dir.path().join("raw");
    let page = out.path().join("page.html");
    let last = DATES[DATES.len() - 1];
    for date in DATES {
        let mut extra = vec![
            "--source",
            source.to_str().unwrap(),
            "--labels-as-of",
            LABELS_AS_OF,
        ];
        if date == last {
            extra.extend(["--html", page.to_str().unwrap()]);
        }
        let (code, report) = run_date(date, lake.path(), &extra);
        assert_eq!(code, 0, "{date}: {report}");
        let want = expectation(dir.path(), date);
        for c in ["rows_written", "rejected", "duplicates", "other_dates"] {
            assert_eq!(report[c], want[c], "{date}: {c}");
        }
        // Silver's rows, value for value: the copy dedup kept of each retried
        // reading (earliest enqueued, then source file, then line) as designed.
        let silver = read_rows(lake.path(), "telemetry");
        let of_date: Vec<_> = silver
            .iter()
            .filter(|r| get(r, "event_date") == date)
            .collect();
        assert_rows_as_designed(&of_date, array(&want, "rows"), &format!("held-out {date}"));
        assert_derived_as_designed(lake.path(), date, &want);
    }
    // The derived tables of every date refreshed from silver (`features`, the gold
    // pass of a backfill and a catch-up), reading the history the runs left: the same.
    let extra = [
        "--from",
        DATES[0],
        "--to",
        last,
        "--labels-as-of",
        LABELS_AS_OF,
    ];
    let (code, report, stderr) = features_cmd(lake.path(), &source, &extra);
    assert_eq!(code, 0, "{report}\n{stderr}");
    for date in DATES {
        assert_derived_as_designed(lake.path(), date, &expectation(dir.path(), date));
    }
    let want = expectation(dir.path(), last);
    let (health, features) = (array(&want, "health"), array(&want, "features"));

    // Not vacuous: every kind of device the container was built with is there, as designed.
    let status = |id: &str| {
        health
            .iter()
            .find(|h| h["device_id"] == id)
            .map(|h| h["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("gone-12").as_deref(), Some("SILENT"));
    assert_eq!(
        status("spare-99").as_deref(),
        Some("SILENT"),
        "known from the log only"
    );
    assert_eq!(
        status("press-02").as_deref(),
        Some("DEGRADED"),
        "silent across midnight"
    );
    let chiller = health
        .iter()
        .find(|h| h["device_id"] == "chiller-04")
        .unwrap();
    assert!(chiller["stuck_temperature_hours"].as_u64() >= Some(1));
    let newbie = health
        .iter()
        .find(|h| h["device_id"] == "newbie-13")
        .unwrap();
    assert!(
        newbie["expected_readings"].is_u64(),
        "a median over D alone"
    );
    for c in ["duplicates", "rejected", "late_readings"] {
        assert!(health.iter().any(|h| h[c].as_u64() > Some(0)), "{c}");
    }
    assert!(features
        .iter()
        .any(|f| f["baseline_hours"].as_u64() >= Some(150)));
    assert!(features.iter().any(|f| f["temp_zscore"].is_f64()));
    assert!(features.iter().any(|f| f["temp_zscore"].is_null()));
    // The point in time is exercised: press-02's timestamped maintenance (13:20) is seen from
    // the 13:00 row on (t = 14:00), fan-09's failure at 12:34:56.5 seven days on turns its
    // 7-day label true from the 12:00 row on, press-01's date-only entry gives whole days.
    let pit = |id: &str, c: &str| -> BTreeSet<String> {
        features
            .iter()
            .filter(|f| f["device_id"] == id)
            .map(|f| f[c].to_string())
            .collect()
    };
    assert_eq!(
        pit("press-02", "days_since_maintenance"),
        ["0", "null"].map(String::from).into()
    );
    assert_eq!(
        pit("fan-09", "failure_within_7d"),
        ["false", "true"].map(String::from).into()
    );
    assert_eq!(
        pit("press-01", "days_since_maintenance"),
        ["10", "9"].map(String::from).into()
    );
    // And at the designed edges, the program's own rows, hour by hour (a row's t is its
    // window_start + 1 h): an entry at exactly t is not seen by that row, the next row sees it.
    let at = |date: &str, device: &str, hour: u32, column: &str| -> Value {
        let ws = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        let rows = features_of(lake.path(), date);
        let row = rows
            .iter()
            .find(|r| get(r, "device_id") == device && get(r, "window_start") == ws)
            .unwrap_or_else(|| panic!("no row of {device} at {date} {hour}:00"));
        get(row, column).clone()
    };
    let dsm = "days_since_maintenance";
    // robot-11's entry at 2024-05-06T10:00, the t of its 09:00 row.
    assert_eq!(at("2024-05-06", "robot-11", 9, dsm), Value::Null);
    assert_eq!(at("2024-05-06", "robot-11", 10, dsm), 0);
    // fan-09's date-only entry of 2024-05-07, taken at its end: the t of the 23:00 row.
    assert_eq!(at("2024-05-07", "fan-09", 23, dsm), Value::Null);
    assert_eq!(at("2024-05-08", "fan-09", 0, dsm), 0);
    // press-02's entry at 13:20: after the t of the 12:00 row, before that of the 13:00 row.
    assert_eq!(at("2024-05-08", "press-02", 12, dsm), Value::Null);
    assert_eq!(at("2024-05-08", "press-02", 13, dsm), 0);
    // fan-09's failure at 2024-05-15T12:34:56.5: inside [t, t + 7 d) from the 12:00 row (t =
    // 13:00) on, after the end of the 11:00 row's.
    assert_eq!(at("2024-05-08", "fan-09", 11, "failure_within_7d"), false);
    assert_eq!(at("2024-05-08", "fan-09", 12, "failure_within_7d"), true);

    // The page of the last date renders, one heatmap cell per device-hour with readings.
    let cells: BTreeSet<(&str, i64)> = array(&want, "rows")
        .iter()
        .map(|r| {
            let hour = r["event_time"].as_i64().unwrap() / 3_600_000_000 % 24;
            (r["device_id"].as_str().unwrap(), hour)
        })
        .collect();
    let r = headless(&page, "--dump-dom");
    assert_clean(&r);
    assert_eq!(r.dom.matches("class=\"cell\"").count(), cells.len());
    let count = |s: &str| health.iter().filter(|h| h["status"] == s).count();
    assert!(r.dom.contains(&format!(
        "{} devices known: {} OK, {} DEGRADED, {} SILENT.",
        health.len(),
        count("OK"),
        count("DEGRADED"),
        count("SILENT")
    )));

    digests_are_read_and_a_rerun_date_gets_a_new_one(lake.path(), &source, health);
}

/// The history digests (`_coldpath/history/<date>.<key>.<part>.parquet`) of `date`.
fn digests(lake: &Path, date: &str) -> BTreeSet<String> {
    std::fs::read_dir(lake.join("_coldpath/history"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("{date}.")))
        .collect()
}

fn key_of(files: &BTreeSet<String>) -> BTreeSet<String> {
    files
        .iter()
        .map(|n| n.split('.').nth(1).unwrap().to_string())
        .collect()
}

/// The last date's history comes from the digests the runs left, and a date rerun since
/// (new silver files) is read from its silver again, its old digest replaced.
fn digests_are_read_and_a_rerun_date_gets_a_new_one(lake: &Path, source: &Path, want: &[Value]) {
    let (first, seventh, last) = (DATES[0], DATES[6], DATES[7]);
    // One digest per history date: 16 buckets and the devices, under one key.
    for date in &DATES[..7] {
        let files = digests(lake, date);
        assert_eq!(files.len(), 17, "{date}: {files:?}");
        assert_eq!(key_of(&files).len(), 1, "{date}");
    }
    // Put the first date's digest under the seventh's name: a refresh of the last date must
    // then give other medians, so the digests are what it read.
    let dir = lake.join("_coldpath/history");
    let seventh_key = key_of(&digests(lake, seventh)).into_iter().next().unwrap();
    let first_files = digests(lake, first);
    let first_key = key_of(&first_files).into_iter().next().unwrap();
    for f in &first_files {
        let renamed = f
            .replacen(first, seventh, 1)
            .replacen(&first_key, &seventh_key, 1);
        std::fs::copy(dir.join(f), dir.join(renamed)).unwrap();
    }
    let refresh = |date: &str| {
        let extra = ["--date", date, "--labels-as-of", LABELS_AS_OF];
        let (code, report, stderr) = features_cmd(lake, source, &extra);
        assert_eq!(code, 0, "{report}\n{stderr}");
    };
    refresh(last);
    let expected_of = |rows: &[serde_json::Map<String, Value>]| -> Vec<Value> {
        rows.iter()
            .map(|r| get(r, "expected_readings").clone())
            .collect()
    };
    let want_expected: Vec<Value> = want
        .iter()
        .map(|w| w["expected_readings"].clone())
        .collect();
    assert_ne!(
        expected_of(&health_of(lake, last)),
        want_expected,
        "the planted digest was not read"
    );
    // Rerun the seventh date: its silver files change, the planted digest no longer
    // names them, and the next refresh reads its silver and replaces the digest.
    let (code, report) = run_date(
        seventh,
        lake,
        &[
            "--source",
            source.to_str().unwrap(),
            "--labels-as-of",
            LABELS_AS_OF,
        ],
    );
    assert_eq!(code, 0, "{report}");
    refresh(last);
    assert_health_is(lake, last, want);
    let now = digests(lake, seventh);
    assert_eq!(now.len(), 17, "{now:?}");
    assert!(
        !key_of(&now).contains(&seventh_key),
        "the old digest is removed"
    );
    // Without any digest (a lake from before them), the history is read from silver,
    // gives the same, and leaves the digests for the next night.
    std::fs::remove_dir_all(&dir).unwrap();
    refresh(last);
    assert_health_is(lake, last, want);
    for date in &DATES[..7] {
        assert_eq!(digests(lake, date).len(), 17, "{date}");
    }
    // Overwrites `date`'s digest file ending in `suffix` with `bytes`, then refreshes
    // the last date, whose health must not change; the file's name.
    let damage = |date: &str, suffix: &str, bytes: &[u8]| {
        let name = digests(lake, date)
            .into_iter()
            .find(|n| n.ends_with(suffix))
            .unwrap();
        std::fs::write(dir.join(&name), bytes).unwrap();
        refresh(last);
        assert_health_is(lake, last, want);
        name
    };
    // A damaged bucket (a partial copy, a bad disk) is made again from the date's silver.
    let damaged = damage(DATES[3], ".05.parquet", b"not parquet");
    let repaired = std::fs::read(dir.join(&damaged)).unwrap();
    assert!(
        repaired.starts_with(b"PAR1"),
        "the damaged bucket is written again"
    );
    // A damaged devices file is read past (the date's silver instead) and written again.
    let devices = damage(DATES[2], ".devices.parquet", b"PAR1 cut short");
    assert!(std::fs::read(dir.join(&devices))
        .unwrap()
        .ends_with(b"PAR1"));
    // Where no digest can be written (the folder is a file: a full or read-only disk
    // fails the same way), the refresh still succeeds from silver, and says so.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    let extra = ["--date", last, "--labels-as-of", LABELS_AS_OF];
    let (code, report, stderr) = features_cmd(lake, source, &extra);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert!(stderr.contains("was not stored"), "{stderr}");
    assert_health_is(lake, last, want);
}

/// The committed fixtures (`fixtures/raw`, `fixtures/expected`, `fixtures/hostile`)
/// are what their generators write, byte for byte: an expected value edited by hand,
/// or a generator changed without writing its output again, fails here. The
/// generators run in a copy, so the repository is not touched.
#[test]
fn the_committed_fixtures_are_what_their_generators_write() {
    let copy = tempfile::tempdir().unwrap();
    let fixtures = copy.path().join("fixtures");
    for file in ["generate.py", "pit.py"] {
        std::fs::create_dir_all(&fixtures).unwrap();
        std::fs::copy(repo().join("fixtures").join(file), fixtures.join(file)).unwrap();
    }
    copy_dir(&repo().join("fixtures/jobs"), &fixtures.join("jobs"));
    std::fs::create_dir_all(copy.path().join("jobs")).unwrap();
    std::fs::copy(
        repo().join("jobs/pdm.toml"),
        copy.path().join("jobs/pdm.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(fixtures.join("hostile")).unwrap();
    std::fs::copy(
        repo().join("fixtures/hostile/generate.py"),
        fixtures.join("hostile/generate.py"),
    )
    .unwrap();
    for script in ["generate.py", "hostile/generate.py"] {
        let out = std::process::Command::new("python3")
            .arg(fixtures.join(script))
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for folder in ["raw", "expected", "hostile"] {
        let (want, got) = (repo().join("fixtures").join(folder), fixtures.join(folder));
        assert_eq!(
            files_of(&got),
            files_of(&want),
            "fixtures/{folder}: the files written"
        );
        for name in files_of(&want) {
            // A gzip blob by what it holds: its compressed bytes depend on the zlib
            // the generator's Python was built with.
            if name.extension().is_some_and(|e| e == "gz") {
                let inflate = |p: std::path::PathBuf| {
                    let mut text = Vec::new();
                    let file = std::fs::File::open(p).unwrap();
                    std::io::Read::read_to_end(
                        &mut flate2::read::MultiGzDecoder::new(file),
                        &mut text,
                    )
                    .map(|_| text)
                    .ok()
                };
                let (a, b) = (inflate(want.join(&name)), inflate(got.join(&name)));
                // A gzip cut on purpose does not inflate: its bytes, then.
                if a.is_some() || b.is_some() {
                    let what = name.display();
                    assert!(
                        a == b,
                        "fixtures/{folder}/{what} holds what its generator writes"
                    );
                    continue;
                }
            }
            let (a, b) = (
                std::fs::read(want.join(&name)).unwrap(),
                std::fs::read(got.join(&name)).unwrap(),
            );
            assert!(
                a == b,
                "fixtures/{folder}/{} is not what its generator writes",
                name.display()
            );
        }
    }
}

/// The files under `dir`, as paths relative to it, sorted.
fn files_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}
