//! `coldpath adf` in a folder laid out as Data Factory's Custom activity leaves it: activity.json in, outputs.json out.

use std::path::Path;

use serde_json::{json, Value};

use crate::adf_expr::{evaluate, Scope};
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

// ---------------------------------------------------------------------------
// The working directory exactly as Data Factory's Custom activity leaves it on a
// Batch node: activity.json, linkedServices.json, datasets.json and the resource
// files flat beside them (Data Factory drops the folders), the command run with
// no shell and a bare environment.

fn shipped(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap()
}

/// The shipped pipeline's activity `name`.
fn pipeline_activity(name: &str) -> Value {
    shipped("jobs/adf/pipeline.json")["properties"]["activities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no activity {name}"))
        .clone()
}

/// The date the shipped trigger passes to the pipeline for a window starting at `window_start`.
fn trigger_date(window_start: &str) -> String {
    let trigger = shipped("jobs/adf/trigger.json");
    let scope = Scope {
        trigger_outputs: json!({"windowStartTime": window_start}),
        ..Scope::default()
    };
    let date = evaluate(
        &trigger["properties"]["pipeline"]["parameters"]["date"],
        &scope,
    );
    date.as_str().unwrap().to_string()
}

/// The shipped pipeline's Custom activity `name`, as Data Factory writes it into
/// activity.json: its expressions evaluated with the pipeline's `date`, plus `extra` properties.
fn shipped_activity(name: &str, date: &str, extra: Value) -> Value {
    let mut activity = pipeline_activity(name);
    let scope = Scope {
        parameters: json!({"date": date}),
        ..Scope::default()
    };
    let props = activity["typeProperties"]["extendedProperties"]
        .as_object_mut()
        .unwrap();
    for value in props.values_mut() {
        *value = evaluate(value, &scope);
    }
    props.extend(extra.as_object().unwrap().clone());
    // What Data Factory adds around the definition.
    activity["id"] = json!("0f6b4c1e-5a3c-4a53-9e0b-4c1f2b1a9d10");
    activity
}

/// A flat working directory: Data Factory's three files and `resources` (name, text).
fn flat_folder(activity: &Value, resources: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("activity.json"), activity.to_string()).unwrap();
    let linked = json!([{
        "name": "AzureBlobStorageResources",
        "properties": {"type": "AzureBlobStorage", "typeProperties": {"connectionString": "DefaultEndpointsProtocol=https;AccountName=contosoiotres;AccountKey=c2VjcmV0"}}
    }]);
    std::fs::write(dir.path().join("linkedServices.json"), linked.to_string()).unwrap();
    std::fs::write(dir.path().join("datasets.json"), "[]").unwrap();
    for (name, text) in resources {
        assert!(!name.contains('/'), "flat: {name}");
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// `coldpath adf` in `dir` with nothing but a minimal PATH in the environment
/// (no HOME, no COLDPATH_*, no AZURE_*), as a Batch node's task would have.
fn adf_bare(dir: &Path) -> (i32, Value, String) {
    adf_as(dir, None)
}

/// The user id of this process (the owner of /proc/self).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// `nobody`, and the binary where it may run it, when the tests run as root
/// (a Batch auto-user is never root): `None` otherwise.
fn unprivileged() -> Option<(u32, tempfile::TempDir)> {
    use std::os::unix::fs::PermissionsExt;
    if euid() != 0 {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("coldpath");
    if std::fs::hard_link(bin(), &exe).is_err() {
        std::fs::copy(bin(), &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((65534, dir))
}

/// Lets `uid` write into `dirs` (the working directory, the lake).
fn open_to_all(dirs: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    for dir in dirs {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
}

/// Folders 0755 and files 0644 under `dir` (a copy keeps its files' modes, and a
/// checkout made with umask 077 has 0600 files).
fn readable_by_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            readable_by_all(&path);
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// `coldpath adf` in `dir`, bare environment, as `user` (uid, folder of the binary) when given.
fn adf_as(dir: &Path, user: Option<&(u32, tempfile::TempDir)>) -> (i32, Value, String) {
    let exe = match user {
        Some((_, d)) => d.path().join("coldpath"),
        None => bin(),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("adf")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    if let Some((uid, _)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(*uid).gid(*uid);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(dir.join("outputs.json"))
        .unwrap_or_else(|e| panic!("no outputs.json ({e}): {err}"));
    assert!(text.len() <= 2 * 1024 * 1024, "outputs.json over 2 MB");
    (
        out.status.code().unwrap(),
        serde_json::from_str(&text).unwrap(),
        err,
    )
}

/// The shipped nightly job with its schema file beside it, named relatively.
fn flat_resources() -> Vec<(&'static str, String)> {
    let nightly = std::fs::read_to_string(repo().join("jobs/nightly.toml")).unwrap();
    let schema = std::fs::read_to_string(repo().join("schemas/telemetry.toml")).unwrap();
    vec![
        (
            "nightly.toml",
            format!("schema = \"telemetry.toml\"\n{nightly}"),
        ),
        ("telemetry.toml", schema),
    ]
}

fn where_to(lake: &Path) -> Value {
    where_from(&fixtures_raw(), lake)
}

fn where_from(source: &Path, lake: &Path) -> Value {
    json!({
        "source": source.to_str().unwrap(),
        "lake": lake.to_str().unwrap(),
        "labels_as_of": LABELS,
    })
}

/// (device, event time, message id) of a date's rows, as the table holds them and as designed.
fn keys(rows: &[serde_json::Map<String, Value>], col: &str, date: &str) -> Vec<String> {
    let mut k: Vec<String> = rows
        .iter()
        .filter(|r| get(r, col) == date)
        .map(|r| {
            format!(
                "{} {} {}",
                get(r, "device_id"),
                get(r, "event_time"),
                get(r, "message_id")
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn a_flat_data_factory_folder_runs_a_manual_and_a_scheduled_date() {
    let lake = temp_lake();
    // As a non-root user where the tests run as root (they may not switch otherwise).
    let user = unprivileged();
    // The unprivileged user reads the raw container from a copy anyone may read:
    // the checkout may lie where it cannot (under /root, mode 0700).
    let readable = tempfile::tempdir().unwrap();
    let source = match user {
        Some(_) => {
            open_to_all(&[lake.path()]);
            let raw = readable.path().join("raw");
            copy_dir(&fixtures_raw(), &raw);
            readable_by_all(readable.path());
            raw
        }
        None => fixtures_raw(),
    };
    // A manual run gives the pipeline's `date`; the tumbling-window trigger passes
    // its window's start (the window of 2024-03-11 starts at its midnight UTC).
    let scheduled = trigger_date("2024-03-11T00:00:00Z");
    assert_eq!(scheduled, "2024-03-11");
    for date in ["2024-03-10", scheduled.as_str()] {
        let activity = shipped_activity("coldpath-run", date, where_from(&source, lake.path()));
        let dir = flat_folder(&activity, &flat_resources());
        if user.is_some() {
            open_to_all(&[dir.path()]);
        }
        let (code, report, err) = adf_as(dir.path(), user.as_ref());
        assert_eq!(code, 0, "{report}\n{err}");
        assert_eq!(report["status"], "succeeded", "{report}");
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["retryable"], false);
        assert_eq!(report["job"], "nightly");
        assert_eq!(report["date"], date);
        assert_eq!(report["coldpath_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(report["rows_written"], expected(date)["rows_written"]);
        // Nothing written beside the resources but outputs.json.
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "activity.json",
                "datasets.json",
                "linkedServices.json",
                "nightly.toml",
                "outputs.json",
                "telemetry.toml"
            ]
        );
    }
    let telemetry = read_rows(lake.path(), "telemetry");
    let rejects = read_rows(lake.path(), "rejects");
    let features = read_rows(lake.path(), "features_hourly");
    for date in ["2024-03-10", "2024-03-11"] {
        let exp = expected(date);
        let designed: Vec<serde_json::Map<String, Value>> = exp["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.as_object().unwrap().clone();
                r.insert("event_date".into(), json!(date));
                r
            })
            .collect();
        assert_eq!(
            keys(&telemetry, "event_date", date),
            keys(&designed, "event_date", date),
            "{date}: telemetry"
        );
        let rejected = rejects
            .iter()
            .filter(|r| get(r, "run_date") == date)
            .count();
        assert_eq!(rejected, exp["rejects"].as_array().unwrap().len(), "{date}");
        assert_rejects_as_designed(&rejects, date);
        let hours = features
            .iter()
            .filter(|r| get(r, "feature_date") == date)
            .count();
        assert_eq!(hours, exp["features"].as_array().unwrap().len(), "{date}");
    }
    if user.is_some() {
        use std::os::unix::fs::MetadataExt;
        let log = lake
            .path()
            .join("telemetry/_delta_log/00000000000000000000.json");
        assert_eq!(
            std::fs::metadata(log).unwrap().uid(),
            65534,
            "written by the unprivileged user"
        );
    }
    // The scheduled date's features saw the manual date's silver.
    assert!(features
        .iter()
        .filter(|r| get(r, "feature_date") == "2024-03-11")
        .all(|r| get(r, "lookback_complete") == true));
}

#[test]
fn the_shipped_catchup_runs_in_a_flat_folder_and_refreshes_the_labels() {
    let lake = temp_lake();
    // The nightly run sees the labels as of the next midnight: a 7-day horizon from a
    // row of 2024-03-11 is not over then, so its label is unknown unless a failure
    // was already seen. The catch-up sees them as of LABELS, when every 7-day one is over.
    let mut nightly = where_to(lake.path());
    nightly["labels_as_of"] = json!("2024-03-12T00:00:00Z");
    let run = shipped_activity("coldpath-run", "2024-03-11", nightly);
    let (code, report, err) = adf_bare(flat_folder(&run, &flat_resources()).path());
    assert_eq!(code, 0, "{report}\n{err}");
    let want = expected("2024-03-11")["features"]
        .as_array()
        .unwrap()
        .clone();
    let before = crate::features::features_of(lake.path(), "2024-03-11");
    assert_eq!(before.len(), want.len());
    let unknown_then = |label: &str| {
        before
            .iter()
            .zip(&want)
            .filter(|(g, w)| get(g, label).is_null() && w[label].is_boolean())
            .count()
    };
    assert!(unknown_then("failure_within_7d") > 0);
    let features_version = || {
        open_table(lake.path(), "features_hourly")
            .version()
            .unwrap()
    };
    let run_version = features_version();
    // Data Factory evaluates `from` (date - 13 days) before the node sees it.
    let refresh = shipped_activity("coldpath-catchup-14d", "2024-03-11", where_to(lake.path()));
    assert_eq!(
        refresh["typeProperties"]["extendedProperties"]["from"],
        "2024-02-27"
    );
    let (code, report, err) = adf_bare(flat_folder(&refresh, &flat_resources()).path());
    assert_eq!(code, 0, "{report}\n{err}");
    // The 14 dates, and the one before, whose look-ahead reads the first one's hours.
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 15, "{report}");
    assert_eq!(dates[0]["date"], "2024-02-26", "{report}");
    assert_eq!(dates[0]["before_range"], true, "{report}");
    assert!(dates[1..].iter().all(|d| d.get("before_range").is_none()));
    assert_eq!(report["exit_code"], 0);
    // The date the run just wrote is unchanged (not read again); its labels are refreshed.
    let day = report["dates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == "2024-03-11")
        .unwrap();
    assert_eq!(day["state"], "unchanged", "{report}");
    assert_eq!(day["blobs_read"], 0);
    assert_eq!(day["features_refreshed"], "succeeded");
    assert_eq!(report["rerun"], json!([]));
    // The refresh is a commit of its own to features_hourly, for that date, with the
    // activity's label cut-off.
    let refreshed = features_version();
    assert_eq!(refreshed, run_version + 1);
    let meta = user_metadata(lake.path(), "features_hourly", refreshed);
    assert_eq!(meta["date"], "2024-03-11", "{meta}");
    let instant = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert_eq!(
        instant(meta["labels_as_of"].as_str().unwrap()),
        instant(LABELS),
        "{meta}"
    );
    // Every row's labels as the contract gives them with LABELS (2024-03-10 was never
    // run, and the catch-up leaves it so: the look-back stays incomplete, so only the
    // labels are compared with the expectation, which has it).
    let after = crate::features::features_of(lake.path(), "2024-03-11");
    assert_eq!(after.len(), want.len());
    for (g, w) in after.iter().zip(&want) {
        assert_eq!(
            (get(g, "device_id"), get(g, "window_start")),
            (&w["device_id"], &w["window_start"])
        );
        for label in ["failure_within_7d", "failure_within_14d"] {
            assert_eq!(get(g, label), &w[label], "{label} of {g:?}");
        }
    }
}

/// What the shipped pipeline does after `coldpath-run` ended with `outputs`: its If
/// Condition, evaluated as Data Factory would; `Some((message, error code))` of
/// the Fail activity when it fails the pipeline, `None` when the pipeline goes on.
fn pipeline_verdict(outputs: &Value) -> Option<(String, String)> {
    let check = pipeline_activity("coldpath-run-outcome");
    let scope = Scope {
        parameters: json!({"date": "2024-03-11"}),
        activities: json!({"coldpath-run": {"customOutput": outputs}}),
        ..Scope::default()
    };
    let ok = evaluate(&check["typeProperties"]["expression"]["value"], &scope);
    if ok.as_bool().unwrap() {
        return None;
    }
    let fail = &check["typeProperties"]["ifFalseActivities"][0];
    assert_eq!(fail["type"], "Fail");
    let text = |key: &str| {
        evaluate(&fail["typeProperties"][key], &scope)
            .as_str()
            .unwrap()
            .to_string()
    };
    Some((text("message"), text("errorCode")))
}

/// A flat folder for `coldpath-run` of 2024-03-11 with `extra` properties and a job file `job`.
fn outcome(job: Option<&str>, extra: Value, lake: &Path) -> (i32, Value, String) {
    let mut props = where_to(lake);
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let activity = shipped_activity("coldpath-run", "2024-03-11", props);
    let mut resources = flat_resources();
    if let Some(text) = job {
        resources.push(("strict.toml", text.to_string()));
    }
    adf_bare(flat_folder(&activity, &resources).path())
}

#[test]
fn only_a_failure_a_retry_can_cure_fails_the_activity() {
    // The shipped pipeline asks for `unretryable = report`: exits 2 and 3 exit 0
    // with the real status and exit code in outputs.json; exit 1 stays 1.
    let lake = temp_lake();

    // Configuration error: a job file that is not there.
    let (code, report, err) = outcome(None, json!({"job": "missing.toml"}), lake.path());
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["status"], "config_error");
    assert_eq!(report["exit_code"], 2);
    assert_eq!(report["retryable"], false);
    assert!(report["error"].as_str().unwrap().contains("missing.toml"));
    // The activity succeeded, so no retry; the If Condition fails the pipeline.
    let (message, code) = pipeline_verdict(&report).expect("the pipeline fails");
    assert_eq!(code, "2");
    assert!(message.contains("config_error (exit 2)"), "{message}");

    // A mistyped property: activity.json itself does not parse, and still the
    // declared `unretryable` applies.
    let (code, report, _) = outcome(None, json!({"dat": "2024-03-11"}), lake.path());
    assert_eq!((code, &report["exit_code"]), (0, &json!(2)), "{report}");
    assert_eq!(report["coldpath_version"], env!("CARGO_PKG_VERSION"));

    // Quality gate: a job that tolerates no reject (the fixtures' date has 14).
    let strict = "name = \"strict\"\nsource = \"raw\"\nlayout = \"telemetry/{yyyy}/{MM}/{dd}/{HH}/\"\nlake = \"lake\"\nmax_reject_ratio = 0.0\n";
    let (code, report, err) = outcome(Some(strict), json!({"job": "strict.toml"}), lake.path());
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["status"], "quality_gate_failed");
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["retryable"], false);
    assert!(!lake.path().join("telemetry/_delta_log").exists());
    let (message, code) = pipeline_verdict(&report).expect("the pipeline fails");
    assert_eq!(code, "3");
    assert!(message.contains("quality_gate_failed"), "{message}");

    // A failure a retry may cure: the date is locked by another run.
    let held = hold_local_lock(lake.path(), "telemetry", "2024-03-11");
    let (code, report, err) = outcome(None, json!({"lock_wait": "0s"}), lake.path());
    assert_eq!(code, 1, "{report}\n{err}");
    assert_eq!(report["status"], "failed");
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["retryable"], true);
    drop(held);

    // A job named with the folder it had in the repository: Data Factory drops folders.
    let (code, report, _) = outcome(None, json!({"job": "jobs/nightly.toml"}), lake.path());
    assert_eq!((code, &report["exit_code"]), (0, &json!(2)), "{report}");
    let message = report["error"].as_str().unwrap();
    assert!(message.contains("name the job `nightly.toml`"), "{message}");

    // And the run succeeds once the lock is free; the pipeline goes on.
    let (code, report, _) = outcome(None, json!({}), lake.path());
    assert_eq!(
        (code, &report["status"]),
        (0, &json!("succeeded")),
        "{report}"
    );
    assert_eq!(pipeline_verdict(&report), None);
}

#[test]
fn without_unretryable_the_exit_code_is_the_contracts() {
    let lake = temp_lake();
    let strict = "name = \"strict\"\nsource = \"raw\"\nlayout = \"telemetry/{yyyy}/{MM}/{dd}/{HH}/\"\nlake = \"lake\"\nmax_reject_ratio = 0.0\n";
    let (code, report, _) = outcome(
        Some(strict),
        json!({"job": "strict.toml", "unretryable": "fail"}),
        lake.path(),
    );
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["exit_code"], 3);
}

/// The shipped weekly pipeline's activity (`jobs/adf/pipeline-maintain.json`),
/// as Data Factory writes it into activity.json, plus `extra` properties.
fn maintain_activity(extra: Value) -> Value {
    let mut activity = shipped("jobs/adf/pipeline-maintain.json")["properties"]["activities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "coldpath-maintain")
        .expect("the maintain activity")
        .clone();
    let props = activity["typeProperties"]["extendedProperties"]
        .as_object_mut()
        .unwrap();
    props.extend(extra.as_object().unwrap().clone());
    activity["id"] = json!("5d1c7e0a-2b7f-4c3e-8d2a-6f0e9b1c4a77");
    activity
}

/// The weekly pipeline runs `coldpath maintain` through `coldpath adf` in a flat
/// folder: every table kept (compacted, checkpointed), not a row changed, its
/// report in outputs.json; and its trigger starts it weekly, away from the nightly
/// window. A `date` given to it is refused (exit 2 reported as 0, not retried).
#[test]
fn the_shipped_weekly_maintenance_keeps_every_table_through_adf() {
    let lake = temp_lake();
    for date in ["2024-03-10", "2024-03-11", "2024-03-11"] {
        let run = shipped_activity("coldpath-run", date, where_to(lake.path()));
        let (code, report, err) = adf_bare(flat_folder(&run, &flat_resources()).path());
        assert_eq!(code, 0, "{report}\n{err}");
    }
    let before = rows_without_run(lake.path(), "telemetry");
    let activity = maintain_activity(where_to(lake.path()));
    let (code, report, err) = adf_bare(flat_folder(&activity, &flat_resources()).path());
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["exit_code"], 0, "{report}");
    let kept: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert!(kept.contains(&"telemetry"), "{report}");
    assert_eq!(rows_without_run(lake.path(), "telemetry"), before);

    let mut dated = where_to(lake.path());
    dated["date"] = json!("2024-03-11");
    let (code, report, _) =
        adf_bare(flat_folder(&maintain_activity(dated), &flat_resources()).path());
    assert_eq!((code, &report["exit_code"]), (0, &json!(2)), "{report}");

    let trigger = shipped("jobs/adf/trigger-weekly.json");
    let recurrence = &trigger["properties"]["typeProperties"]["recurrence"];
    assert_eq!(recurrence["frequency"], "Week");
    assert_eq!(recurrence["timeZone"], "UTC");
    // Sunday noon: far from the nightly window (its runs start at 02:30).
    assert_eq!(recurrence["schedule"]["weekDays"], json!(["Sunday"]));
    assert_eq!(recurrence["schedule"]["hours"], json!([12]));
    // The If Condition judges the maintain activity's own exit code.
    let pipeline = shipped("jobs/adf/pipeline-maintain.json");
    let outcome = &pipeline["properties"]["activities"][1];
    assert_eq!(outcome["dependsOn"][0]["activity"], "coldpath-maintain");
    let expression = outcome["typeProperties"]["expression"]["value"]
        .as_str()
        .unwrap();
    assert!(
        expression.contains("activity('coldpath-maintain')"),
        "{expression}"
    );
    assert_eq!(
        trigger["properties"]["pipelines"][0]["pipelineReference"]["referenceName"],
        shipped("jobs/adf/pipeline-maintain.json")["name"]
    );
}
