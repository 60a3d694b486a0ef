//! `coldpath backfill`: parallel dates give the same tables as one run per date in order; a failed date stops no other.

use serde_json::Value;

use crate::common::*;

const DATES: [&str; 3] = ["2024-03-10", "2024-03-11", "2024-03-12"];

/// `command` of `job` over the fixture dates.
fn over_dates<'a>(command: &'a str, job: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        command,
        "--job",
        job.to_str().unwrap(),
        "--from",
        DATES[0],
        "--to",
        DATES[2],
    ]
}

/// Runs `backfill` of the fixture dates into `lake` with `extra` flags.
fn backfill_out(lake: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let job = job_file();
    let mut args = over_dates("backfill", &job);
    args.extend(["--lake", lake.to_str().unwrap(), "--labels-as-of", LABELS]);
    args.extend_from_slice(extra);
    coldpath(&args)
}

fn backfill(lake: &std::path::Path, extra: &[&str]) -> (i32, Value, String) {
    let out = backfill_out(lake, extra);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {err}"));
    (out.status.code().unwrap(), report, err)
}

#[test]
fn a_parallel_backfill_gives_the_tables_of_one_run_per_date_in_order() {
    let lake = temp_lake();
    let (code, summary, err) = backfill(lake.path(), &["--parallel", "3"]);
    assert_eq!(code, 0, "{summary}\n{err}");
    assert_eq!(summary["succeeded"], 3, "{summary}");
    assert_eq!(summary["failed_dates"], serde_json::json!([]));
    for (entry, date) in summary["dates"].as_array().unwrap().iter().zip(DATES) {
        assert_eq!(entry["date"], date);
        assert_eq!(entry["status"], "succeeded", "{entry}");
        assert_eq!(
            entry["rows_written"],
            expected(date)["rows_written"],
            "{date}"
        );
        assert_eq!(entry["rejected"], expected(date)["rejected"], "{date}");
    }
    // Every date's features saw its previous date's silver, except the first's.
    let lookback: Vec<&Value> = summary["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["lookback_complete"])
        .collect();
    assert_eq!(
        lookback,
        [&Value::Bool(false), &Value::Bool(true), &Value::Bool(true)]
    );

    let sequential = temp_lake();
    for date in DATES {
        let (code, report) = run_date(date, sequential.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
        let backfilled = rows_without_run(lake.path(), table);
        assert!(!backfilled.is_empty(), "{table}");
        assert_eq!(
            backfilled,
            rows_without_run(sequential.path(), table),
            "{table}"
        );
    }
}

#[test]
fn a_failed_date_stops_no_other_and_rerunning_the_range_completes_it() {
    let lake = temp_lake();
    // Another run holds 2024-03-11's silver: that date fails after lock.wait.
    let held = hold_local_lock(lake.path(), "telemetry", "2024-03-11");
    let (code, summary, err) = backfill(lake.path(), &["--parallel", "2", "--lock-wait", "1s"]);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["failed_dates"], serde_json::json!(["2024-03-11"]));
    assert_eq!(summary["succeeded"], 2);
    assert!(err.contains("2024-03-11"), "{err}");
    let statuses: Vec<&Value> = summary["dates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["status"])
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "succeeded"]);
    let dates_in = |table: &str, column: &str| -> std::collections::BTreeSet<String> {
        read_rows(lake.path(), table)
            .iter()
            .filter_map(|r| get(r, column).as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        dates_in("telemetry", "event_date"),
        ["2024-03-10", "2024-03-12"].map(String::from).into()
    );
    // What the dates that succeeded wrote, to compare after the rerun.
    let of_date = |table: &str, column: &str, date: &str| -> Vec<String> {
        let tag = format!("\"{column}\":\"{date}\"");
        rows_without_run(lake.path(), table)
            .into_iter()
            .filter(|r| r.contains(&tag))
            .collect()
    };
    let kept: Vec<Vec<String>> = ["2024-03-10", "2024-03-12"]
        .iter()
        .flat_map(|d| {
            [
                of_date("telemetry", "event_date", d),
                of_date("rejects", "run_date", d),
            ]
        })
        .chain([of_date("features_hourly", "feature_date", "2024-03-10")])
        .collect();
    assert!(!kept[0].is_empty() && !kept[4].is_empty());
    drop(held);
    let (code, summary, err) = backfill(lake.path(), &["--parallel", "2"]);
    assert_eq!(code, 0, "{summary}\n{err}");
    // Rerunning left the dates that had succeeded as they were, row for row (2024-03-12's
    // features change: their look-back, 2024-03-11, is there now) ...
    let again: Vec<Vec<String>> = ["2024-03-10", "2024-03-12"]
        .iter()
        .flat_map(|d| {
            [
                of_date("telemetry", "event_date", d),
                of_date("rejects", "run_date", d),
            ]
        })
        .chain([of_date("features_hourly", "feature_date", "2024-03-10")])
        .collect();
    assert_eq!(again, kept, "rows of the dates that had succeeded");
    // ... and every date's rejects and features are the designed ones.
    let rejects = read_rows(lake.path(), "rejects");
    for date in DATES {
        assert_rejects_as_designed(&rejects, date);
        crate::features::assert_features_match(
            &crate::features::features_of(lake.path(), date),
            expected(date)["features"].as_array().unwrap(),
            date,
        );
    }
    assert_eq!(
        dates_in("features_hourly", "feature_date"),
        DATES.map(String::from).into()
    );
    let rows = read_rows(lake.path(), "telemetry");
    for date in DATES {
        let n = rows
            .iter()
            .filter(|r| get(r, "event_date").as_str() == Some(date))
            .count() as u64;
        assert_eq!(Some(n), expected(date)["rows_written"].as_u64(), "{date}");
    }
}

#[test]
fn the_emitted_batch_tasks_run_here_in_dependency_order_give_the_same_tables() {
    let lake = temp_lake();
    let dir = tempfile::tempdir().unwrap();
    // The job as a task finds it in the image (relative to its working
    // directory); here, relative to the repository the tasks run in.
    let emit_with = |job: &str, extra: &[&str]| {
        let mut args = over_dates("backfill", std::path::Path::new(job));
        args.extend([
            "--lake",
            lake.path().to_str().unwrap(),
            "--labels-as-of",
            LABELS,
        ]);
        args.extend(["--emit-batch-tasks", dir.path().to_str().unwrap()]);
        args.extend_from_slice(extra);
        coldpath(&args)
    };
    let emit = |extra: &[&str]| emit_with("jobs/local.toml", extra);
    // Without a place for the tasks' reports and logs: a usage error, nothing written.
    let out = emit(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let outputs = [
        "--batch-output-container",
        "https://contosoiotlake.blob.core.windows.net/batch-logs",
        "--batch-identity",
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/coldpath",
        "--batch-image",
        "contoso.azurecr.io/coldpath:1.0.0",
    ];
    // Refused, nothing written: no image named; an output place Batch cannot
    // upload to (a lake URL, a folder in a container); a job path outside the image.
    let without_image = &outputs[..4];
    let mut lake_url = outputs.to_vec();
    lake_url[1] = "abfss://batch-logs@contosoiotlake.dfs.core.windows.net/";
    let mut folder = outputs.to_vec();
    folder[1] = "https://contosoiotlake.blob.core.windows.net/batch-logs/backfills";
    for (flags, says) in [
        (without_image, "--batch-image"),
        (&lake_url[..], "not a blob container"),
        (&folder[..], "not a blob container"),
    ] {
        let out = emit(flags);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let absolute = job_file();
    let out = emit_with(absolute.to_str().unwrap(), &outputs);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside its image"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let given = [&outputs[..], &["--lock-wait", "10m", "--allow-empty"]].concat();
    let out = emit(&given);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        !lake.path().join("telemetry").exists(),
        "emitting runs nothing"
    );
    // Three dates: one collection.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["tasks-001.json"]);
    let text = std::fs::read_to_string(dir.path().join("tasks-001.json")).unwrap();
    let tasks: Value = serde_json::from_str(&text).unwrap();
    // A bare array: what `az batch task create --json-file` takes for many tasks.
    let tasks = tasks.as_array().unwrap().clone();
    assert_eq!(tasks.len(), 6);
    assert!(tasks
        .iter()
        .all(|t| t["outputFiles"].as_array().unwrap().len() == 2));
    // The write flags given reach every task that uses them: a features task reads silver,
    // not blobs, so `--allow-empty` is the silver tasks' only.
    for t in &tasks {
        let line = t["commandLine"].as_str().unwrap();
        assert!(line.contains("--lock-wait 600s"), "{line}");
        let silver = line.contains("--silver-only");
        assert_eq!(line.contains("--allow-empty"), silver, "{line}");
        assert_eq!(line.contains("--labels-as-of"), !silver, "{line}");
    }
    // A second emit into the same folder would mix two ranges' files: refused.
    let out = emit(&outputs);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Run each task once all it depends on has run, as Batch would.
    let mut done: Vec<String> = Vec::new();
    while done.len() < tasks.len() {
        let ready = tasks
            .iter()
            .find(|t| {
                !done.contains(&t["id"].as_str().unwrap().to_string())
                    && t["dependsOn"]["taskIds"]
                        .as_array()
                        .is_none_or(|d| d.iter().all(|id| done.iter().any(|x| x == id)))
            })
            .expect("a task is ready");
        let line = ready["commandLine"].as_str().unwrap();
        let args: Vec<&str> = line.split(' ').skip(1).collect();
        let out = coldpath(&args);
        assert_eq!(out.status.code(), Some(0), "{line}: {out:?}");
        done.push(ready["id"].as_str().unwrap().to_string());
    }
    let backfilled = temp_lake();
    let (code, summary, _) = backfill(backfilled.path(), &["--parallel", "3"]);
    assert_eq!(code, 0, "{summary}");
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
        assert_eq!(
            rows_without_run(lake.path(), table),
            rows_without_run(backfilled.path(), table),
            "{table}"
        );
    }
}

/// A catch-up's task repeats the catch-up's own flags as given: a dry run stays a dry run.
#[test]
fn an_emitted_catch_up_task_keeps_the_flags_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let job = std::path::Path::new("jobs/local.toml");
    let emit = |sub: &str, extra: &[&str]| {
        let out_dir = dir.path().join(sub);
        let mut args = over_dates("catchup", job);
        args.extend([
            "--emit-batch-tasks",
            out_dir.to_str().unwrap(),
            "--batch-output-container",
            "https://contosoiotlake.blob.core.windows.net/batch-logs",
            "--batch-identity",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/coldpath",
            "--batch-image",
            "contoso.azurecr.io/coldpath:1.0.0",
        ]);
        args.extend_from_slice(extra);
        let out = coldpath(&args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let text = std::fs::read_to_string(out_dir.join("tasks-001.json")).unwrap();
        let tasks: Value = serde_json::from_str(&text).unwrap();
        tasks[0]["commandLine"].as_str().unwrap().to_string()
    };
    let dry = emit("dry", &["--dry-run"]);
    assert!(dry.contains("--dry-run"), "{dry}");
    for absent in [
        "--refresh-labels",
        "--include-missing",
        "--allow-empty",
        "--lock-wait",
    ] {
        assert!(!dry.contains(absent), "{dry}");
    }
    let full = emit(
        "full",
        &[
            "--include-missing",
            "--refresh-labels",
            "--allow-empty",
            "--lock-wait",
            "90s",
        ],
    );
    for present in [
        "--include-missing",
        "--refresh-labels",
        "--allow-empty",
        "--lock-wait 90s",
    ] {
        assert!(full.contains(present), "{full} lacks {present}");
    }
    assert!(!full.contains("--dry-run"), "{full}");
}

/// Issue 32, "same input, same bits": `run` of two dates and a `backfill` of the
/// same two (whose gold pass reads silver back) sum every minute, hour and
/// device in the same order, so every derived table is the same to the bit.
#[test]
fn run_and_backfill_of_the_same_two_dates_give_the_same_minutes_to_the_bit() {
    let dir = tempfile::tempdir().unwrap();
    crate::held_out::generate(dir.path());
    let raw = dir.path().join("raw");
    let (dates, labels) = (&crate::held_out::DATES[3..5], crate::held_out::LABELS_AS_OF);
    let source = ["--source", raw.to_str().unwrap(), "--labels-as-of", labels];
    let run = dir.path().join("run");
    for date in dates {
        let (code, report) = run_date(date, &run, &source);
        assert_eq!(code, 0, "{report}");
    }
    let backfilled = dir.path().join("backfill");
    let job = job_file();
    let out = coldpath(
        &[
            &[
                "backfill",
                "--job",
                job.to_str().unwrap(),
                "--from",
                dates[0],
                "--to",
                dates[1],
                "--lake",
                backfilled.to_str().unwrap(),
            ][..],
            &source[..],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for table in ["telemetry_minute", "features_hourly", "device_health"] {
        let (a, b) = (
            rows_without_run(&run, table),
            rows_without_run(&backfilled, table),
        );
        assert_eq!(a.len(), b.len(), "{table}");
        let differ: Vec<(&String, &String)> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
        assert!(
            differ.is_empty(),
            "{table}: {} of {} rows differ between run and backfill; first: {:?}",
            differ.len(),
            a.len(),
            differ.first()
        );
    }
    // Not vacuous: many minutes sum three readings or more, where the order shows.
    let minutes = read_rows(&run, "telemetry_minute");
    let busy = minutes
        .iter()
        .filter(|m| get(m, "reading_count").as_i64() >= Some(3))
        .count();
    assert!(busy > 1000, "{busy} minutes of three readings or more");
}

/// A date with no blobs at all (an outage day, never run before) gets its
/// `device_health` rows from a backfill as from a run: every device the week
/// before knew, `SILENT`. Its silver pass commits no row, so only its manifest
/// says it was run; the features pass then writes its health.
#[test]
fn a_backfill_gives_a_silent_day_its_device_health_as_a_run_does() {
    let dir = temp_lake();
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    // No blob of 2024-03-11, nor of the next date's first two hours, where late
    // readings of it land: the date reads no record at all.
    for folder in ["2024/03/11", "2024/03/12/00", "2024/03/12/01"] {
        std::fs::remove_dir_all(raw.join("telemetry").join(folder)).unwrap();
    }
    let source = ["--source", raw.to_str().unwrap()];
    let backfilled = dir.path().join("backfilled");
    let (code, summary, err) = backfill(&backfilled, &source);
    assert_eq!(code, 0, "{summary}\n{err}");
    let sequential = dir.path().join("sequential");
    for date in DATES {
        let mut extra = vec!["--labels-as-of", LABELS];
        extra.extend(source);
        let (code, report) = run_date(date, &sequential, &extra);
        assert_eq!(code, 0, "{report}");
    }
    let health_of = |lake: &std::path::Path| -> Vec<String> {
        rows_without_run(lake, "device_health")
            .into_iter()
            .filter(|r| r.contains("2024-03-11"))
            .collect()
    };
    let silent = health_of(&sequential);
    assert!(
        !silent.is_empty() && silent.iter().all(|r| r.contains("SILENT")),
        "{silent:?}"
    );
    assert_eq!(health_of(&backfilled), silent);
    for table in ["telemetry", "features_hourly", "device_health", "rejects"] {
        assert_eq!(
            rows_without_run(&backfilled, table),
            rows_without_run(&sequential, table),
            "{table}"
        );
    }
}

/// A date whose silver landed and whose `expectations` commit then failed
/// (partly committed: the date fails) still gets its features from the new
/// silver, as the later dates' look-back reads it: the features pass takes
/// every date whose silver landed, not only those whose whole run succeeded.
#[test]
fn a_date_whose_silver_landed_before_a_later_commit_failed_gets_its_features() {
    let dir = temp_lake();
    let local = std::fs::read_to_string(job_file()).unwrap();
    let text = local.replace("\"../", &format!("\"{}/", repo().display()))
        + "\n[[expectations]]\nname = \"calm\"\nexpr = \"vibration < 90\"\naction = \"warn\"\n";
    let job = dir.path().join("job.toml");
    std::fs::write(&job, text).unwrap();
    let lake = dir.path().join("lake");
    let run = || {
        let mut args = over_dates("backfill", &job);
        args.extend(["--lake", lake.to_str().unwrap(), "--labels-as-of", LABELS]);
        // With backtraces on, as an engineer debugging would set them: the
        // kernel's error carries one in its text, which the report leaves out.
        let out = coldpath_env(&args, &[("RUST_BACKTRACE", "1".to_string())]);
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code().unwrap(),
            summary,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, summary, err) = run();
    assert_eq!(code, 0, "{summary}\n{err}");
    // Break expectations' log: the next runs commit telemetry, then fail there.
    std::fs::write(
        lake.join("expectations/_delta_log/00000000000000000000.json"),
        "this is not a delta log\n",
    )
    .unwrap();
    let (code, summary, err) = run();
    assert_eq!(code, 1, "{summary}\n{err}");
    for entry in summary["dates"].as_array().unwrap() {
        assert_eq!(entry["silver"], "failed", "{entry}");
        let error = entry["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("already committed for") && error.contains("telemetry"),
            "partly committed: {entry}"
        );
        assert_eq!(entry["features"], "succeeded", "{entry}");
        assert!(
            !error.contains("with_backtrace"),
            "a backtrace in the report: {entry}"
        );
    }
}
