//! `coldpath maintain`: a checkpoint Synapse can read, no file left that no version needs, the same rows.

use std::path::Path;

use crate::common::*;

fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("_delta_log") {
            n += parquet_files(&path);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            n += 1;
        }
    }
    n
}

#[test]
fn maintain_checkpoints_and_vacuums_without_changing_a_row() {
    let lake = temp_lake();
    for date in ["2024-03-10", "2024-03-11", "2024-03-11", "2024-03-11"] {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    // Every table a job without expectations writes.
    let tables = RUN_TABLES;
    let before: Vec<_> = tables
        .iter()
        .map(|t| rows_without_run(lake.path(), t))
        .collect();
    // Reruns replaced 2024-03-11 twice: its earlier files are still on disk.
    assert!(
        parquet_files(&lake.path().join("telemetry"))
            > open_table(lake.path(), "telemetry")
                .get_file_uris()
                .unwrap()
                .count()
    );

    let maintain = |extra: &[&str]| {
        let job = job_file();
        let mut args = vec!["maintain", "--job", job.to_str().unwrap()];
        args.extend(["--lake", lake.path().to_str().unwrap()]);
        args.extend_from_slice(extra);
        coldpath(&args)
    };
    let refused = maintain(&["--vacuum-retention", "1h"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let out = maintain(&["--vacuum-retention", "0s", "--unsafe-retention"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["tables"].as_array().unwrap().len(),
        tables.len(),
        "{report}"
    );

    for (table, rows) in tables.iter().zip(before) {
        assert_eq!(
            rows_without_run(lake.path(), table),
            rows,
            "{table}: rows changed"
        );
        let t = open_table(lake.path(), table);
        let referenced = t.get_file_uris().unwrap().count();
        assert_eq!(
            parquet_files(&lake.path().join(table)),
            referenced,
            "{table}: unreferenced files left"
        );
        let last = std::fs::read(lake.path().join(table).join("_delta_log/_last_checkpoint"))
            .unwrap_or_else(|e| panic!("{table}: no _last_checkpoint: {e}"));
        assert!(
            last.len() < 200,
            "{table}: _last_checkpoint is {} bytes",
            last.len()
        );
        let last: serde_json::Value = serde_json::from_slice(&last).unwrap();
        let version = last["version"].as_u64().unwrap();
        assert!(lake
            .path()
            .join(table)
            .join(format!("_delta_log/{version:020}.checkpoint.parquet"))
            .is_file());
        let snapshot = t.snapshot().unwrap();
        assert_eq!(snapshot.protocol().min_reader_version(), 1, "{table}");
        assert_eq!(snapshot.protocol().min_writer_version(), 2, "{table}");
    }
}

#[test]
fn maintain_removes_the_files_of_runs_that_never_committed() {
    let lake = temp_lake();
    let (code, report) = run_date("2024-03-10", lake.path(), &["--labels-as-of", LABELS]);
    assert_eq!(code, 0, "{report}");
    assert!(unreferenced(lake.path(), "telemetry").is_empty());

    // A run killed a moment ago, mid-write of a date not yet committed, left a file.
    let fresh_dir = lake.path().join("telemetry/event_date=2024-03-11");
    std::fs::create_dir_all(&fresh_dir).unwrap();
    let fresh = fresh_dir.join("part-00000-killed-now-c000.snappy.parquet");
    std::fs::write(&fresh, b"PAR1 half-written PAR1").unwrap();
    let gated = vec![fresh];
    // A run killed long ago left a file in an existing partition.
    let killed = lake
        .path()
        .join("telemetry/event_date=2024-03-10/part-00000-killed-run-c000.snappy.parquet");
    std::fs::write(&killed, b"PAR1 half-written PAR1").unwrap();
    // And staging files of writes a killed process never renamed into place
    // (`<file>#<n>`), which no store listing shows: one old, one fresh.
    let staged_old = killed.with_extension("parquet#41230");
    let staged_fresh = fresh_dir.join("part-00001-killed-now-c000.snappy.parquet#41231");
    for file in [&staged_old, &staged_fresh] {
        std::fs::write(file, b"PAR1 half-written").unwrap();
    }
    let eight_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
    for file in [&killed, &staged_old] {
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(eight_days_ago)
            .unwrap();
    }
    let before = rows_without_run(lake.path(), "telemetry");

    let maintain = |extra: &[&str]| {
        let job = job_file();
        let mut args = vec!["maintain", "--job", job.to_str().unwrap()];
        args.extend(["--lake", lake.path().to_str().unwrap()]);
        args.extend_from_slice(extra);
        let out = coldpath(&args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    // The default 7-day retention: the old orphan goes, the fresh one stays
    // (it could still be a running writer's).
    maintain(&[]);
    assert!(
        !killed.exists(),
        "an unreferenced file older than the retention is vacuumed"
    );
    assert!(
        !staged_old.exists(),
        "a staging file older than the retention goes"
    );
    assert!(
        staged_fresh.exists(),
        "a younger one may be a write under way"
    );
    for file in &gated {
        assert!(
            file.exists(),
            "{} is younger than the retention",
            file.display()
        );
    }
    // A zero retention takes the rest.
    maintain(&["--vacuum-retention", "0s", "--unsafe-retention"]);
    assert!(!staged_fresh.exists());
    for table in [
        "telemetry",
        "features_hourly",
        "telemetry_minute",
        "device_health",
        "rejects",
    ] {
        assert_eq!(
            unreferenced(lake.path(), table),
            Vec::<std::path::PathBuf>::new(),
            "{table}"
        );
    }
    assert_eq!(
        rows_without_run(lake.path(), "telemetry"),
        before,
        "no row changed"
    );
}

#[test]
fn maintenance_commits_say_which_coldpath_made_them() {
    let lake = temp_lake();
    for _ in 0..2 {
        let (code, report) = run_date("2024-03-11", lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    let meta = user_metadata(lake.path(), "telemetry", 1);
    assert_eq!(meta["coldpath_version"], env!("CARGO_PKG_VERSION"));
    assert!(meta["coldpath_commit"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(meta["job"], "local");
    let report = maintain_with_no_retention(lake.path());
    let run_id = report["run_id"].as_str().expect("the report's run_id");
    assert_eq!(run_id.len(), 36, "{report}");
    // The rerun's replaced file is vacuumed: delta-rs commits its start and end.
    let table = open_table(lake.path(), "telemetry");
    let last = table.version().unwrap();
    assert!(last >= 3, "vacuum committed: version {last}");
    for version in 2..=last {
        let info = commit_info(lake.path(), "telemetry", version);
        if let Some(text) = info["userMetadata"].as_str() {
            let meta: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(meta["operation"], "maintain", "{info}");
            assert_eq!(meta["coldpath_version"], env!("CARGO_PKG_VERSION"));
            // CONTRACT.md §2: every commit names its run and its job.
            assert_eq!(meta["run_id"], run_id, "{info}");
            assert_eq!(meta["job"], "local", "{info}");
        } else {
            panic!("commit {version} has no userMetadata: {info}");
        }
    }
}

/// Compaction writes the tables' own Parquet: a date run with files rolled at
/// 1 KiB, compacted by `maintain` at the default size, is one file whose Arrow
/// schema says plain `string` (pyarrow 14 and Azure ML's reader refuse
/// `string_view`, which delta-rs's own compaction writes), Snappy, with the
/// same rows.
#[test]
fn compaction_writes_plain_strings_and_snappy_with_the_same_rows() {
    let dir = temp_lake();
    let lake = dir.path().join("lake");
    let small = dir.path().join("small.toml");
    let text = std::fs::read_to_string(job_file())
        .unwrap()
        .replace("\"../", &format!("\"{}/", repo().display()))
        + "\n[limits]\nfile_size = \"1KiB\"\n";
    std::fs::write(&small, text).unwrap();
    let mut args = run_args(
        "2024-03-11",
        fixtures_raw().to_str().unwrap(),
        lake.to_str().unwrap(),
    );
    args[2] = small.to_str().unwrap().to_string();
    let out = coldpath(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let files = |table: &str| open_table(&lake, table).get_file_uris().unwrap().count();
    assert!(
        files("telemetry") > 1,
        "rolled at 1 KiB: {}",
        files("telemetry")
    );
    let before = rows_without_run(&lake, "telemetry");

    let job = job_file();
    let maintain = [
        "maintain",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ];
    let out = coldpath(&maintain);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(files("telemetry"), 1, "compacted into one file");
    assert_eq!(rows_without_run(&lake, "telemetry"), before);
    let uri = open_table(&lake, "telemetry")
        .get_file_uris()
        .unwrap()
        .next()
        .unwrap();
    let path = std::path::PathBuf::from(uri.strip_prefix("file://").unwrap_or(&uri));
    let types = declared_arrow_types(&path);
    assert!(types.iter().any(|t| t == "device_id: Utf8"), "{types:?}");
    assert!(!types.iter().any(|t| t.contains("View")), "{types:?}");
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    for column in group.columns() {
        assert_eq!(
            column.compression(),
            deltalake::parquet::basic::Compression::SNAPPY,
            "{}",
            column.column_path()
        );
    }
}

/// A table that cannot be maintained (here its log's last commit is unreadable;
/// at night, a run's commit landing first) leaves the others maintained: the
/// report names it under `failed`, and the command exits 1 (retried).
#[test]
fn a_table_that_fails_leaves_the_others_maintained() {
    let lake = temp_lake();
    for date in ["2024-03-10", "2024-03-11"] {
        let (code, report) = run_date(date, lake.path(), &["--labels-as-of", LABELS]);
        assert_eq!(code, 0, "{report}");
    }
    let broken = lake
        .path()
        .join("telemetry/_delta_log/00000000000000000001.json");
    std::fs::write(&broken, b"{ not a commit").unwrap();
    let job = job_file();
    let lake_arg = lake.path().to_str().unwrap();
    let out = coldpath(&[
        "maintain",
        "--job",
        job.to_str().unwrap(),
        "--lake",
        lake_arg,
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["status"], "failed", "{report}");
    let failed: Vec<&str> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["table"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["telemetry"], "{report}");
    let kept: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    let others: Vec<&str> = RUN_TABLES
        .iter()
        .copied()
        .filter(|t| *t != "telemetry")
        .collect();
    assert_eq!(kept.len(), others.len(), "{report}");
    assert!(others.iter().all(|t| kept.contains(t)), "{report}");
}
