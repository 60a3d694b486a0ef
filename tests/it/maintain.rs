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
    let tables = ["telemetry", "features_hourly", "rejects"];
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
    assert_eq!(report["tables"].as_array().unwrap().len(), 3, "{report}");

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
