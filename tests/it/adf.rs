//! `coldpath adf` in a folder laid out as Data Factory's Custom activity leaves it: activity.json in, outputs.json out.

use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;

/// A working folder with the activity's resource files (the job and its schema) and `activity.json`.
fn activity_folder(props: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["jobs/local.toml", "schemas/telemetry.toml"] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(file), to).unwrap();
    }
    let activity = json!({
        "name": "coldpath nightly",
        "type": "Custom",
        "typeProperties": {"command": "coldpath adf", "extendedProperties": props},
    });
    std::fs::write(dir.path().join("activity.json"), activity.to_string()).unwrap();
    dir
}

fn adf(dir: &Path) -> (i32, Value, String) {
    let out = command(&["adf"], &[]).current_dir(dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let outputs = std::fs::read_to_string(dir.join("outputs.json"))
        .unwrap_or_else(|e| panic!("no outputs.json ({e}): {err}"));
    (
        out.status.code().unwrap(),
        serde_json::from_str(&outputs).unwrap(),
        err,
    )
}

fn props(lake: &Path, dates: Value) -> Value {
    let mut p = json!({
        "job": "jobs/local.toml",
        "source": fixtures_raw().to_str().unwrap(),
        "lake": lake.to_str().unwrap(),
        "labels_as_of": LABELS,
    });
    p.as_object_mut()
        .unwrap()
        .extend(dates.as_object().unwrap().clone());
    p
}

#[test]
fn an_activity_for_a_date_writes_the_run_report_to_outputs_json() {
    let lake = temp_lake();
    let dir = activity_folder(props(lake.path(), json!({"date": "2024-03-11"})));
    let (code, report, err) = adf(dir.path());
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["date"], "2024-03-11");
    assert_eq!(
        report["rows_written"],
        expected("2024-03-11")["rows_written"]
    );
    assert_eq!(report["rejected"], expected("2024-03-11")["rejected"]);
    assert!(lake.path().join("telemetry/_delta_log").is_dir());
}

#[test]
fn an_activity_for_a_range_backfills_it() {
    let lake = temp_lake();
    let dates = json!({"from": "2024-03-10", "to": "2024-03-12", "parallel": "2"});
    let dir = activity_folder(props(lake.path(), dates));
    let (code, report, err) = adf(dir.path());
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["succeeded"], 3, "{report}");
    assert_eq!(report["parallel"], 2);
}

#[test]
fn a_mistyped_property_is_a_configuration_error_in_outputs_json() {
    let lake = temp_lake();
    let dir = activity_folder(props(lake.path(), json!({"dat": "2024-03-11"})));
    let (code, report, err) = adf(dir.path());
    assert_eq!(code, 2, "{report}");
    assert_eq!(report["status"], "config_error");
    assert!(
        report["error"].as_str().unwrap().contains("dat"),
        "{report}"
    );
    assert!(err.contains("activity.json"), "{err}");
    assert!(!lake.path().join("telemetry").exists());
}
