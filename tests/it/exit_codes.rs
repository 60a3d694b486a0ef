//! Exit codes 0/1/2/3 and what each leaves in the tables.

use std::path::Path;

use crate::common::*;

/// A job file like jobs/local.toml with absolute paths and `extra` appended.
fn job_with(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "name = \"test\"\nsource = {:?}\nlayout = \"telemetry/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/\"\nlake = {:?}\nschema = {:?}\n{extra}\n",
        fixtures_raw().to_str().unwrap(),
        dir.join("lake").to_str().unwrap(),
        repo().join("schemas/telemetry.toml").to_str().unwrap(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Neither `telemetry` nor `features_hourly` was ever committed in `lake`.
fn assert_no_silver_or_gold(lake: &Path) {
    assert!(
        !lake.join("telemetry/_delta_log").exists(),
        "silver untouched"
    );
    assert!(
        !lake.join("features_hourly/_delta_log").exists(),
        "gold untouched"
    );
}

fn run_job(job: &Path, date: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run", "--job", job.to_str().unwrap(), "--date", date];
    args.extend_from_slice(extra);
    let out = coldpath(&args);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_job_key_is_a_usage_error_naming_the_key() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "max_rejects = 0.1");
    let (code, stdout, stderr) = run_job(&job, "2024-03-11", &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("max_rejects"), "{stderr}");
    assert!(!dir.path().join("lake").exists(), "nothing written");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "config_error");
}

#[test]
fn missing_source_folder_is_a_configuration_error() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "");
    let missing = dir.path().join("no-such-container");
    let (code, _, stderr) = run_job(&job, "2024-03-11", &["--source", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-container"), "{stderr}");
}

/// Once its flags are accepted, every command prints a report, also when it fails: `plan` and
/// `maintain` of a job file that is not there print `config_error` and exit 2.
#[test]
fn plan_and_maintain_print_a_report_when_they_fail() {
    let dir = temp_lake();
    let missing = dir.path().join("no-such-job.toml");
    let job = missing.to_str().unwrap();
    for args in [
        vec!["plan", "--job", job, "--date", "2024-03-11"],
        vec!["maintain", "--job", job],
    ] {
        let out = coldpath(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: no report ({e}): {stderr}"));
        assert_eq!(report["status"], "config_error", "{args:?}: {report}");
        assert!(
            report["error"]
                .as_str()
                .is_some_and(|e| e.contains("no-such-job.toml")),
            "{args:?}: {report}"
        );
    }
}

/// Dates a new user might type that are not `YYYY-MM-DD` (chrono alone reads the
/// first two as 2024-03-11 and the year 24), or not a calendar date.
const MALFORMED_DATES: [&str; 4] = ["2024-3-11", "24-3-11", "20240311", "2024-13-01"];

#[test]
fn bad_date_is_a_usage_error() {
    for date in MALFORMED_DATES {
        let dir = temp_lake();
        let job = job_with(dir.path(), "");
        let (code, stdout, stderr) = run_job(&job, date, &[]);
        assert_eq!(code, 2, "{date}: {stdout}{stderr}");
        assert!(stderr.contains(date), "{date}: {stderr}");
        assert!(stderr.contains("--date"), "names the flag: {stderr}");
        assert!(!dir.path().join("lake").exists(), "{date}: no lake created");
    }
}

#[test]
fn bad_dates_are_usage_errors_in_every_date_flag_and_variable() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "");
    let job = job.to_str().unwrap();
    for date in MALFORMED_DATES {
        for (flag, args) in [
            (
                "--from",
                vec![
                    "backfill",
                    "--job",
                    job,
                    "--from",
                    date,
                    "--to",
                    "2024-03-12",
                ],
            ),
            (
                "--to",
                vec![
                    "backfill",
                    "--job",
                    job,
                    "--from",
                    "2024-03-11",
                    "--to",
                    date,
                ],
            ),
            (
                "--from",
                vec![
                    "catchup",
                    "--job",
                    job,
                    "--from",
                    date,
                    "--to",
                    "2024-03-12",
                ],
            ),
            ("--date", vec!["plan", "--job", job, "--date", date]),
        ] {
            let out = coldpath(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
        }
        let out = coldpath_env(
            &["run", "--job", job],
            &[("COLDPATH_DATE", date.to_string())],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "COLDPATH_DATE={date}: {stderr}");
        assert!(stderr.contains("--date"), "{stderr}");
    }
    // A year before 2000 or a date after tomorrow (UTC) is no night to run either.
    let tomorrow = chrono::Utc::now().date_naive().succ_opt().unwrap();
    let after = tomorrow.succ_opt().unwrap().format("%Y-%m-%d").to_string();
    for date in ["1999-12-31", "0024-03-11", after.as_str()] {
        let (code, _, stderr) = run_job(std::path::Path::new(job), date, &[]);
        assert_eq!(code, 2, "{date}: {stderr}");
        assert!(stderr.contains("--date"), "{stderr}");
    }
    assert!(!dir.path().join("lake").exists(), "no lake created");
}

#[test]
fn quality_gate_writes_rejects_but_not_silver() {
    let dir = temp_lake();
    // Files of 1 KiB: silver's writer closes some during the pass, before the gate.
    let job = job_with(
        dir.path(),
        "max_reject_ratio = 0.01\n[limits]\nfile_size = \"1KiB\"",
    );
    let (code, stdout, stderr) = run_job(&job, "2024-03-11", &[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], "quality_gate_failed");
    let lake = dir.path().join("lake");
    let rejects = read_rows(&lake, "rejects");
    assert_eq!(
        rejects.len() as u64,
        expected("2024-03-11")["rejected"].as_u64().unwrap()
    );
    assert_no_silver_or_gold(&lake);
    // The Parquet files silver streamed during the pass went with it.
    assert!(
        report["uncommitted_files_removed"].as_u64() > Some(0),
        "{report}"
    );
    assert_nothing_uncommitted(&lake);
}

#[test]
fn quality_gate_leaves_an_earlier_silver_partition_as_it_was() {
    let dir = temp_lake();
    let good = job_with(dir.path(), "max_reject_ratio = 0.5");
    assert_eq!(run_job(&good, "2024-03-11", &[]).0, 0);
    let lake = dir.path().join("lake");
    let before = read_rows(&lake, "telemetry").len();
    let strict = job_with(dir.path(), "max_reject_ratio = 0.001");
    // Gated again and again: each time, no file of the run is left outside the
    // log (whether delta-rs had finished a file when the stream was ended is a
    // race, so a few tries).
    for _ in 0..3 {
        assert_eq!(run_job(&strict, "2024-03-11", &[]).0, 3);
        assert_nothing_uncommitted(&lake);
    }
    assert_eq!(read_rows(&lake, "telemetry").len(), before);
    assert_eq!(open_table(&lake, "telemetry").version(), Some(0));
}

#[test]
fn a_failing_commit_exits_1_and_leaves_the_other_table_alone() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "max_reject_ratio = 0.5");
    assert_eq!(run_job(&job, "2024-03-11", &[]).0, 0);
    let lake = dir.path().join("lake");
    // Break the telemetry table's log: the next run cannot commit silver.
    std::fs::write(
        lake.join("telemetry/_delta_log/00000000000000000000.json"),
        "this is not a delta log\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_job(&job, "2024-03-11", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("telemetry"),
        "the error names the table: {stderr}"
    );
    assert_eq!(
        open_table(&lake, "rejects").version(),
        Some(0),
        "rejects not committed"
    );
    // No file of the failed run is left in a table whose log is whole (the
    // broken log is telemetry's).
    for table in [
        "rejects",
        "features_hourly",
        "telemetry_minute",
        "device_health",
    ] {
        let logged = logged_files(&lake.join(table));
        for file in table_parquet_files(&lake.join(table)) {
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(logged.contains(name), "{table}: {name} is in no version");
        }
    }
}

#[test]
fn report_can_go_to_a_file() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "max_reject_ratio = 0.5");
    let report = dir.path().join("report.json");
    let (code, stdout, _) = run_job(&job, "2024-03-10", &["--report", report.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.trim().is_empty(), "report not on stdout: {stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(r["records_read"], expected("2024-03-10")["records_read"]);
}

#[test]
fn plan_lists_prefixes_and_blobs_without_reading() {
    let dir = temp_lake();
    let lake = dir.path().join("lake");
    let out = coldpath(&[
        "plan",
        "--job",
        job_file().to_str().unwrap(),
        "--date",
        "2024-03-11",
        "--lake",
        lake.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!lake.exists(), "plan writes nothing");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The date's 24 hours and the look-ahead's: jobs/local.toml's late_arrival of 2h.
    assert_eq!(plan["prefixes"].as_array().unwrap().len(), 24 + 2);
    let on_disk =
        |hour: &str| std::fs::read_dir(fixtures_raw().join(hour)).map_or(0, |d| d.count());
    let want: usize = (0..24)
        .map(|h| on_disk(&format!("telemetry/2024/03/11/{h:02}")))
        .chain((0..2).map(|h| on_disk(&format!("telemetry/2024/03/12/{h:02}"))))
        .sum();
    assert_eq!(plan["blob_count"].as_u64().unwrap() as usize, want);
}

#[test]
fn a_table_folder_that_cannot_be_made_fails_before_any_commit() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "max_reject_ratio = 0.5");
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    // The last table in commit order cannot get its folder: nothing may be committed.
    std::fs::write(lake.join("rejects"), "not a folder").unwrap();
    let (code, stdout, stderr) = run_job(&job, "2024-03-11", &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("rejects"), "{stderr}");
    assert_no_silver_or_gold(&lake);
}

#[test]
fn a_date_without_blobs_is_an_empty_run_unless_the_job_says_fail() {
    let dir = temp_lake();
    let relaxed = job_with(dir.path(), "");
    let (code, stdout, stderr) = run_job(&relaxed, "2024-01-01", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("no blobs"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["records_read"], 0, "{report}");
    assert_eq!(report["rows_written"], 0, "{report}");
    let strict = job_with(dir.path(), "fail_on_no_blobs = true");
    let lake = dir.path().join("lake");
    let _ = std::fs::remove_dir_all(&lake);
    let (code, stdout, stderr) = run_job(&strict, "2024-01-02", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("no blobs for 2024-01-02"), "{stderr}");
    assert_no_silver_or_gold(&lake);
}

#[test]
fn version_names_the_build() {
    let out = coldpath(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let prefix = format!("coldpath {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = text
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // The run report says the same.
    let lake = temp_lake();
    let (code, report) = run_date("2024-03-10", lake.path(), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["coldpath_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["coldpath_commit"], commit);
    let meta = user_metadata(lake.path(), "telemetry", 0);
    assert_eq!(meta["coldpath_commit"], commit);
}

#[test]
fn allow_empty_is_taken_only_by_the_commands_that_read_blobs() {
    let dir = temp_lake();
    let job = job_with(dir.path(), "");
    // `run` takes the flag (tests/it/hostile.rs has what it does there).
    let (code, stdout, stderr) = run_job(&job, "2024-03-11", &["--allow-empty"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lake = dir.path().join("lake");
    let before = snapshot(&lake, &RUN_TABLES);
    let job = job.to_str().unwrap();
    // `features` reads silver: the flag would change nothing, so it is refused.
    let out = coldpath(&[
        "features",
        "--job",
        job,
        "--date",
        "2024-03-11",
        "--allow-empty",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-empty"), "names the flag: {stderr}");
    assert_eq!(before, snapshot(&lake, &RUN_TABLES), "nothing written");
    // The variable, set for every command of a pool, is read only where it means something.
    let env = [("COLDPATH_ALLOW_EMPTY", "true".to_string())];
    let out = coldpath_env(&["features", "--job", job, "--date", "2024-03-11"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_date_naming_more_devices_than_the_limit_fails_and_changes_nothing() {
    // The designed date's distinct devices, from the generator's rows; the first
    // hour names them all.
    let e = expected("2024-03-11");
    let rows = e["rows"].as_array().unwrap();
    let devices: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    let n = devices.len();
    assert!(n > 1, "{devices:?}");
    let dir = temp_lake();
    let lake = dir.path().join("lake");
    let (code, stdout, stderr) = run_job(&job_with(dir.path(), ""), "2024-03-11", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let before = snapshot(&lake, &RUN_TABLES);

    // One under the date's devices: the run stops in hour 00, before any commit.
    let limited = job_with(dir.path(), &format!("[limits]\ndevices = {}", n - 1));
    let (code, stdout, stderr) = run_job(&limited, "2024-03-11", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("limits.devices"), "{error}");
    assert!(error.contains(&format!("{n} distinct devices")), "{error}");
    assert!(error.contains("end of hour 00"), "{error}");
    assert_eq!(before, snapshot(&lake, &RUN_TABLES), "no table changed");
    assert_nothing_uncommitted(&lake);

    // Exactly the date's devices is within the limit.
    let exact = job_with(dir.path(), &format!("[limits]\ndevices = {n}"));
    let (code, stdout, stderr) = run_job(&exact, "2024-03-11", &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let before = snapshot(&lake, &RUN_TABLES);

    // A new device in hour 05: the limit is passed after hours 00-04 went to
    // silver's writer, whose files then belong to no version.
    let raw = dir.path().join("raw");
    copy_dir(&fixtures_raw(), &raw);
    let record = r#"{"deviceId": "gateway-99", "deviceType": "pump", "timestamp": "2024-03-11T05:30:00.000Z", "temperature": 40.0, "pressure": 100, "vibration": 8.0, "priority": "normal", "messageId": "gateway-99-0", "EventEnqueuedUtcTime": "2024-03-11T05:30:01.000000Z"}"#;
    std::fs::write(raw.join("telemetry/2024/03/11/05/1_gateway_0.json"), record).unwrap();
    let text = std::fs::read_to_string(&exact).unwrap().replace(
        &format!("source = {:?}", fixtures_raw().to_str().unwrap()),
        &format!("source = {:?}", raw.to_str().unwrap()),
    );
    assert!(text.contains(raw.to_str().unwrap()), "{text}");
    std::fs::write(&exact, text).unwrap();
    let (code, stdout, stderr) = run_job(&exact, "2024-03-11", &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    let past = format!(
        "{} distinct devices in the rows kept by the end of hour 05",
        n + 1
    );
    assert!(error.contains(&past), "{error}");
    assert_eq!(before, snapshot(&lake, &RUN_TABLES), "no table changed");
    assert_nothing_uncommitted(&lake);
}

/// A `COLDPATH_*` variable stands in for its flag and never conflicts with
/// another flag: `COLDPATH_DATE` gives way to `features --from --to`,
/// `COLDPATH_DAYS` to `catchup --from --to`, and the `COLDPATH_BATCH_*`
/// variables ask nothing of a command that emits no tasks.
/// `COLDPATH_ALLOW_EMPTY` takes 1 as well as true. The same flags given
/// together on the command line are still refused, exit 2.
#[test]
fn variables_give_way_to_the_flags_they_would_conflict_with() {
    let lake = temp_lake();
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, report) = run_date(date, lake.path(), &[]);
        assert_eq!(code, 0, "{report}");
    }
    let job = job_file();
    let (job, lake) = (job.to_str().unwrap(), lake.path().to_str().unwrap());
    let dates_of = |out: &std::process::Output| {
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // A catch-up's date before the range (its look-ahead) is not the range's.
        let dates: Vec<String> = report["dates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["before_range"] != true)
            .map(|d| d["date"].as_str().unwrap().to_string())
            .collect();
        (out.status.code(), dates)
    };
    let range = ["--from", "2024-03-10", "--to", "2024-03-11", "--lake", lake];
    let two = (
        Some(0),
        vec!["2024-03-10".to_string(), "2024-03-11".to_string()],
    );

    let features = [&["features", "--job", job][..], &range].concat();
    let env = [("COLDPATH_DATE", "2024-03-12".to_string())];
    assert_eq!(dates_of(&coldpath_env(&features, &env)), two);

    let catchup = [&["catchup", "--job", job, "--dry-run"][..], &range].concat();
    let env = [
        ("COLDPATH_DAYS", "3".to_string()),
        (
            "COLDPATH_BATCH_IMAGE",
            "contoso.azurecr.io/coldpath:1".to_string(),
        ),
        (
            "COLDPATH_BATCH_IDENTITY",
            "/subscriptions/x/identity".to_string(),
        ),
        ("COLDPATH_ALLOW_EMPTY", "1".to_string()),
    ];
    assert_eq!(dates_of(&coldpath_env(&catchup, &env)), two);

    let refused = |args: &[&str], env: &[(&str, String)], says: &str| {
        let out = coldpath_env(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    let f = [&features[..], &["--date", "2024-03-12"]].concat();
    refused(&f, &[], "--date cannot be used with --from and --to");
    let c = [&catchup[..], &["--days", "3"]].concat();
    refused(&c, &[], "--days cannot be used with --from and --to");
    let b = [&catchup[..], &["--batch-image", "x"]].concat();
    refused(&b, &[], "--batch-image needs --emit-batch-tasks");
    let env = [("COLDPATH_ALLOW_EMPTY", "maybe".to_string())];
    refused(&catchup, &env, "invalid value 'maybe'");
}
