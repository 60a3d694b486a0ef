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
    let e = expected(date);
    let rows = e["rows"].as_array().unwrap();
    let devices: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    (e["rows_written"].as_u64().unwrap(), devices.len() as u64)
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

    // Half the producers stop: 2024-03-12 keeps only its first two hour folders.
    let day = raw.join("telemetry/2024/03/12");
    for h in 2..24 {
        std::fs::remove_dir_all(day.join(format!("{h:02}"))).unwrap();
    }
    let (code, low) = run(&fail, "2024-03-12");
    assert_eq!(code, 3, "{low}");
    assert_eq!(low["status"], "quality_gate_failed");
    let (rows11, _) = designed("2024-03-11");
    let median = (rows10 + rows11) as f64 / 2.0;
    assert_eq!(low["volume"]["median_rows"].as_f64(), Some(median));
    let ratio = low["volume"]["rows_ratio"].as_f64().unwrap();
    assert!(ratio < 0.5, "{low}");
    assert!((ratio - low["rows_written"].as_f64().unwrap() / median).abs() < 1e-12);
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
    assert_eq!(warned["volume"]["status"], "warned");
    assert!(read_rows(&lake, "telemetry")
        .iter()
        .any(|r| get(r, "event_date") == "2024-03-12"));
}
