//! The volume guard: a date whose silver volume collapses against the median of the previous dates.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

fn job(dir: &Path, raw: &Path, action: &str) -> std::path::PathBuf {
    let text = format!(
        "name = \"volume\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\nmax_reject_ratio = 0.5\n[volume]\nmin_ratio = 0.5\naction = {action:?}\n",
        raw.to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
    );
    let path = dir.join(format!("{action}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(job: &Path, date: &str) -> (i32, Value) {
    let out = coldpath(&[
        "run",
        "--job",
        job.to_str().unwrap(),
        "--date",
        date,
        "--labels-as-of",
        LABELS,
    ]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

/// The generator's silver rows and distinct devices of a date.
fn designed(date: &str) -> (u64, u64) {
    designed_from(date, |_| true)
}

/// The generator's silver rows and distinct devices of a date, of the rows whose
/// source file `kept` keeps (the folders the test left in the container).
fn designed_from(date: &str, kept: impl Fn(&str) -> bool) -> (u64, u64) {
    let e = expected(date);
    let rows: Vec<&Value> = e["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| kept(r["source_file"].as_str().unwrap()))
        .collect();
    let devices: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    (rows.len() as u64, devices.len() as u64)
}

/// The median of two numbers, as the guard takes it over two earlier dates.
fn median2(a: u64, b: u64) -> f64 {
    (a + b) as f64 / 2.0
}

/// The volume the test planted for a date against the medians of the dates it ran
/// before: `(rows, devices, rows_ratio, devices_ratio)`, all from the test's own inputs.
fn planted_volume(rows: u64, devices: u64, median_rows: f64, median_devices: f64) -> Value {
    serde_json::json!({
        "rows": rows,
        "devices": devices,
        "median_rows": median_rows,
        "median_devices": median_devices,
        "rows_ratio": rows as f64 / median_rows,
        "devices_ratio": devices as f64 / median_devices,
    })
}

/// The report's volume figures against the planted ones (ratios to 1e-12).
fn assert_volume(report: &Value, want: &Value) {
    let volume = &report["volume"];
    for k in ["rows", "devices"] {
        assert_eq!(volume[k], want[k], "{k}: {report}");
    }
    for k in [
        "median_rows",
        "median_devices",
        "rows_ratio",
        "devices_ratio",
    ] {
        let got = volume[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k}: {report}"));
        let want = want[k].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-12,
            "{k}: {got} against {want}: {report}"
        );
    }
}

#[test]
fn a_collapsed_night_fails_or_warns_against_the_median_of_the_previous_dates() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    let fail = job(dir.path(), &raw, "fail");

    // The first date has no history; the second compares with the first.
    let (code, first) = run(&fail, "2024-03-10");
    assert_eq!(code, 0, "{first}");
    assert_eq!(first["volume"]["status"], "no_history");
    let (code, second) = run(&fail, "2024-03-11");
    assert_eq!(code, 0, "{second}");
    let (rows10, devices10) = designed("2024-03-10");
    assert_eq!(second["volume"]["dates_compared"], 1);
    assert_eq!(
        second["volume"]["median_rows"].as_f64(),
        Some(rows10 as f64)
    );
    assert_eq!(
        second["volume"]["median_devices"].as_f64(),
        Some(devices10 as f64)
    );
    assert_eq!(second["volume"]["status"], "ok");
    let (rows11, devices11) = designed("2024-03-11");
    assert_volume(
        &second,
        &planted_volume(rows11, devices11, rows10 as f64, devices10 as f64),
    );

    // Half the producers stop: 2024-03-12 keeps only its first two hour folders.
    let day = raw.join("telemetry/2024/03/12");
    for h in 2..24 {
        std::fs::remove_dir_all(day.join(format!("{h:02}"))).unwrap();
    }
    let (code, low) = run(&fail, "2024-03-12");
    assert_eq!(code, 3, "{low}");
    assert_eq!(low["status"], "quality_gate_failed");
    // What is left of the date: the rows the generator put in the two kept folders
    // (and any of its rows from another date's folder), against the medians of
    // the two dates run before; the ratio is computed here, not read from the report.
    let removed =
        |file: &str| (2..24).any(|h| file.starts_with(&format!("telemetry/2024/03/12/{h:02}/")));
    let (rows12, devices12) = designed_from("2024-03-12", |f| !removed(f));
    let want = planted_volume(
        rows12,
        devices12,
        median2(rows10, rows11),
        median2(devices10, devices11),
    );
    assert!(
        want["rows_ratio"].as_f64().unwrap() < 0.5,
        "the test plants a collapse: {want}"
    );
    assert_volume(&low, &want);
    assert_eq!(low["rows_written"], rows12, "{low}");
    assert_eq!(low["volume"]["dates_compared"], 2);
    assert_eq!(low["volume"]["status"], "failed");
    assert!(low["error"].as_str().unwrap().contains("volume.min_ratio"));
    // Like the gate: rejects written, silver and gold not.
    let lake = dir.path().join("lake");
    assert!(read_rows(&lake, "telemetry")
        .iter()
        .all(|r| get(r, "event_date") != "2024-03-12"));
    assert!(low["tables"].get("rejects").is_some(), "{low}");

    // As a warning the run goes on.
    let warn = job(dir.path(), &raw, "warn");
    let (code, warned) = run(&warn, "2024-03-12");
    assert_eq!(code, 0, "{warned}");
    assert_volume(&warned, &want);
    assert_eq!(warned["volume"]["status"], "warned");
    assert!(read_rows(&lake, "telemetry")
        .iter()
        .any(|r| get(r, "event_date") == "2024-03-12"));
}

#[test]
fn the_guard_reads_a_date_the_log_no_longer_holds_from_its_device_health() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    let warn = job(dir.path(), &raw, "warn");
    // A device known only from the maintenance log: a device_health row with no reading.
    let log = raw.join("reference/maintenance.csv");
    let text = std::fs::read_to_string(&log).unwrap() + "ghost-01,2024-03-01,inspection\n";
    std::fs::write(&log, text).unwrap();
    let reference = "[reference]\nmaintenance = \"reference/maintenance.csv\"\n";
    let job_text = std::fs::read_to_string(&warn).unwrap() + reference;
    std::fs::write(&warn, job_text).unwrap();
    let lake = dir.path().join("lake");
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, report) = run(&warn, date);
        assert_eq!(code, 0, "{report}");
    }
    // A month on: a checkpoint, then the next commit to `rejects` (the first run of
    // 2024-03-12) removes the expired commits before it, 2024-03-10's.
    maintain_with_no_retention(&lake);
    age_log(&lake, "rejects");
    let (code, first) = run(&warn, "2024-03-12");
    assert_eq!(code, 0, "{first}");
    assert!(
        !log_holds(&lake, "rejects", 0),
        "the scenario removes 2024-03-10's commit"
    );
    // A rerun still compares with both dates: 2024-03-10's volume from its device_health rows.
    let (code, rerun) = run(&warn, "2024-03-12");
    assert_eq!(code, 0, "{rerun}");
    let [(rows10, devices10), (rows11, devices11), (rows12, devices12)] =
        ["2024-03-10", "2024-03-11", "2024-03-12"].map(designed);
    assert_eq!(rerun["volume"]["dates_compared"], 2, "{rerun}");
    let want = planted_volume(
        rows12,
        devices12,
        median2(rows10, rows11),
        median2(devices10, devices11),
    );
    assert_volume(&rerun, &want);
    assert_volume(&first, &want);
    let ghost = read_rows(&lake, "device_health")
        .into_iter()
        .filter(|r| get(r, "device_id") == "ghost-01" && get(r, "health_date") == "2024-03-10")
        .count();
    assert_eq!(
        ghost, 1,
        "not vacuous: 2024-03-10 has a device_health row with no reading"
    );
}
